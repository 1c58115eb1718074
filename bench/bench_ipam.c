/*
 * bench_ipam - cost of picking a free address with ipam (src/reconcilers/ip/ipam.c).
 *
 * Scenarios, each allocating N addresses one after another into an
 * initially empty pool (hint -> ipam_next_free -> ipam_used_add, what the
 * reconciler does per claim, minus the API call):
 *   v4-/16 uid-hints      10.20.0.0/16, hint = ipam_hint(pool, claim uid)
 *   v4-/16 same-hint      every claim starts at offset 0 (hints not spread):
 *                         the search runs into one ever-longer used run
 *   v6-/64 range uid-hints fd00::/64 narrowed to 2^40 addresses by range,
 *                         with 64 single-address excludes
 *   rebuild               ipam_used_add of N addresses in random order, as when
 *                         the reconciler rebuilds the set from its cache
 * References measured in the same run (v4 /16 only):
 *   bitmap-probe          a flat 8 KiB bitmap of the /16, probing address by
 *                         address from the same hints: the floor for a dense
 *                         small pool, but O(pool size) memory and unusable for
 *                         IPv6
 *   first-fit-scan        Whereabouts-style: walk from the first address,
 *                         testing each against the bitmap (O(N) per allocation)
 *
 * Every allocation is checked (allocatable, not used before); the final
 * count must equal N. Reported: CPU ns per allocation (best and median of
 * REPS runs) and the number of runs in the used set.
 *
 * Usage: bench_ipam [N ...]   (default 10000 65000; N <= 65534 for the /16)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

#include "ipam.h"

#define REPS 5

/*
 * Thread CPU time, not wall time: shared build machines are often
 * oversubscribed, and waiting for a core is not the allocator's cost. Read
 * only around whole loops (it is a system call on some VMs).
 */
static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static uint64_t rng = 0x853c49e6748fea9bull;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_ipam: %s\n", what);
    exit(1);
}

static ipam_pool *make_pool(const char *cidr, const char *rs, const char *re, const char *const *ex,
                            size_t n_ex)
{
    ipam_pool_spec spec = {cidr, rs, re, NULL, ex, n_ex};
    ipam_pool *p = NULL;
    ipam_error err = IPAM_ERROR_INIT;
    if (ipam_pool_new(&spec, &p, &err) != 0) {
        fprintf(stderr, "pool %s: %s\n", cidr, err.message ? err.message : "?");
        exit(1);
    }
    return p;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *name, int n, double *ns, int reps, const char *extra)
{
    qsort(ns, (size_t)reps, sizeof *ns, cmp_double);
    printf("  %-26s N=%-6d best %8.1f ns/alloc   median %8.1f ns/alloc   %s\n", name, n, ns[0] / n,
           ns[reps / 2] / n, extra ? extra : "");
}

/* Claim UIDs, made up front so their formatting is not timed. */
static char (*make_uids(int n))[40]
{
    char(*uids)[40] = malloc((size_t)n * sizeof *uids);
    if (!uids)
        die("out of memory");
    for (int i = 0; i < n; i++)
        snprintf(uids[i], sizeof uids[i], "%08x-%04x-4%03x-8%03x-%012llx", (unsigned)rnd(),
                 (unsigned)(rnd() & 0xffff), (unsigned)(rnd() & 0xfff), (unsigned)(rnd() & 0xfff),
                 (unsigned long long)(rnd() & 0xffffffffffffull));
    return uids;
}

/* Allocate n addresses; same_hint makes every claim start at offset 0. */
static double run_ipam(const ipam_pool *p, char (*uids)[40], int n, bool same_hint,
                       size_t *runs_out)
{
    ipam_used *u = NULL;
    if (ipam_used_new(&u))
        die("out of memory");
    double t0 = now_ns();
    for (int i = 0; i < n; i++) {
        ipam_u128 hint = same_hint ? 0 : ipam_hint(p, uids[i]);
        ipam_addr a;
        if (!ipam_next_free(p, u, hint, &a))
            die("pool exhausted early");
        if (ipam_used_add(u, a))
            die("out of memory");
    }
    double t = now_ns() - t0;
    if (ipam_used_count(u) != (uint64_t)n || ipam_used_count_in_pool(p, u) != (ipam_u128)n)
        die("wrong count");
    *runs_out = ipam_used_runs(u);
    ipam_used_free(u);
    return t;
}

/* Reference: flat bitmap over the /16's offsets, probe one by one from the hint. */
static double run_bitmap(const ipam_pool *p, char (*uids)[40], int n)
{
    uint64_t total = (uint64_t)ipam_pool_total(p);
    uint64_t *bits = calloc((total + 63) / 64, sizeof *bits);
    if (!bits)
        die("out of memory");
    double t0 = now_ns();
    for (int i = 0; i < n; i++) {
        uint64_t off = (uint64_t)ipam_hint(p, uids[i]);
        uint64_t k = 0;
        while (k < total && (bits[off / 64] >> (off % 64) & 1)) {
            off = off + 1 == total ? 0 : off + 1;
            k++;
        }
        if (k == total)
            die("bitmap exhausted early");
        bits[off / 64] |= 1ull << (off % 64);
        ipam_addr a;
        if (!ipam_offset_to_addr(p, off, &a))
            die("bad offset");
    }
    double t = now_ns() - t0;
    free(bits);
    return t;
}

/* Reference: first fit from the first address, as Whereabouts iterates. */
static double run_first_fit(const ipam_pool *p, int n)
{
    uint64_t total = (uint64_t)ipam_pool_total(p);
    uint64_t *bits = calloc((total + 63) / 64, sizeof *bits);
    if (!bits)
        die("out of memory");
    double t0 = now_ns();
    for (int i = 0; i < n; i++) {
        uint64_t off = 0;
        while (off < total && (bits[off / 64] >> (off % 64) & 1))
            off++;
        if (off == total)
            die("first fit exhausted early");
        bits[off / 64] |= 1ull << (off % 64);
    }
    double t = now_ns() - t0;
    free(bits);
    return t;
}

/* Rebuild a used set from n addresses of the pool given in random order. */
static double run_rebuild(const ipam_pool *p, int n, size_t *runs_out)
{
    ipam_addr *addrs = malloc((size_t)n * sizeof *addrs);
    if (!addrs)
        die("out of memory");
    /* The first n allocatable addresses of a random permutation of offsets. */
    uint64_t total = (uint64_t)ipam_pool_total(p);
    uint64_t *perm = malloc(total * sizeof *perm);
    if (!perm)
        die("out of memory");
    for (uint64_t i = 0; i < total; i++)
        perm[i] = i;
    for (uint64_t i = total - 1; i > 0; i--) {
        uint64_t j = rnd() % (i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int i = 0; i < n; i++)
        if (!ipam_offset_to_addr(p, perm[i], &addrs[i]))
            die("bad offset");
    free(perm);
    ipam_used *u = NULL;
    if (ipam_used_new(&u))
        die("out of memory");
    double t0 = now_ns();
    for (int i = 0; i < n; i++)
        if (ipam_used_add(u, addrs[i]))
            die("out of memory");
    double t = now_ns() - t0;
    if (ipam_used_count(u) != (uint64_t)n)
        die("wrong count");
    *runs_out = ipam_used_runs(u);
    ipam_used_free(u);
    free(addrs);
    return t;
}

static void machine(void)
{
    struct utsname un;
    char model[256] = "unknown CPU";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "model name", 10) == 0) {
                char *c = strchr(line, ':');
                if (c) {
                    snprintf(model, sizeof model, "%s", c + 2);
                    model[strcspn(model, "\n")] = '\0';
                }
                break;
            }
        }
        fclose(f);
    }
    uname(&un);
    printf("machine: %s, %s %s %s\n", model, un.sysname, un.release, un.machine);
#if defined(__OPTIMIZE__)
    printf("build: optimized");
#else
    printf("build: not optimized");
#endif
#if defined(__SANITIZE_ADDRESS__)
    printf(", ASan (figures are not representative)");
#endif
    printf("\n");
}

int main(int argc, char **argv)
{
    int ns_list[16] = {10000, 65000};
    int n_ns = 2;
    if (argc > 1) {
        n_ns = 0;
        for (int i = 1; i < argc && n_ns < 16; i++) {
            int n = atoi(argv[i]);
            if (n <= 0 || n > 65534)
                die("N must be 1..65534");
            ns_list[n_ns++] = n;
        }
    }
    machine();

    ipam_pool *v4 = make_pool("10.20.0.0/16", NULL, NULL, NULL, 0);
    char exbuf[64][IPAM_ADDR_STRLEN];
    const char *ex[64];
    ipam_addr base;
    if (ipam_addr_parse("fd00::1:0:0:0", &base))
        die("parse");
    for (int i = 0; i < 64; i++) {
        ipam_addr a = {base.v + ((ipam_u128)1 << 34) * (ipam_u128)i + (ipam_u128)(rnd() & 0xffff)};
        ex[i] = ipam_addr_format(a, exbuf[i]);
    }
    ipam_pool *v6 = make_pool("fd00::/64", "fd00::1:0:0:0", "fd00::1:ff:ffff:ffff", ex, 64);
    char tb[IPAM_U128_STRLEN];
    printf("pools: 10.20.0.0/16 total %s; ", ipam_u128_format(ipam_pool_total(v4), tb));
    printf("fd00::/64 range fd00::1:0:0:0..fd00::1:ff:ffff:ffff, 64 excludes, total %s\n",
           ipam_u128_format(ipam_pool_total(v6), tb));

    for (int k = 0; k < n_ns; k++) {
        int n = ns_list[k];
        char(*uids)[40] = make_uids(n);
        double t[REPS];
        char extra[128];
        size_t runs = 0;
        printf("N = %d\n", n);

        for (int r = 0; r < REPS; r++)
            t[r] = run_ipam(v4, uids, n, false, &runs);
        snprintf(extra, sizeof extra, "(%zu runs in the used set)", runs);
        report("ipam v4-/16 uid-hints", n, t, REPS, extra);
        double ipam_best = t[0];

        for (int r = 0; r < REPS; r++)
            t[r] = run_ipam(v4, uids, n, true, &runs);
        snprintf(extra, sizeof extra, "(%zu runs)", runs);
        report("ipam v4-/16 same-hint", n, t, REPS, extra);

        for (int r = 0; r < REPS; r++)
            t[r] = run_ipam(v6, uids, n, false, &runs);
        snprintf(extra, sizeof extra, "(%zu runs)", runs);
        report("ipam v6-/64 range uid-hints", n, t, REPS, extra);

        for (int r = 0; r < REPS; r++)
            t[r] = run_rebuild(v4, n, &runs);
        snprintf(extra, sizeof extra, "(%zu runs; ns per add)", runs);
        report("ipam rebuild (random order)", n, t, REPS, extra);

        for (int r = 0; r < REPS; r++)
            t[r] = run_bitmap(v4, uids, n);
        snprintf(extra, sizeof extra, "(ipam uid-hints / this = %.2f)", ipam_best / t[0]);
        report("ref bitmap-probe", n, t, REPS, extra);

        int reps_ff = n > 20000 ? 1 : REPS;
        for (int r = 0; r < reps_ff; r++)
            t[r] = run_first_fit(v4, n);
        snprintf(extra, sizeof extra, "(this / ipam uid-hints = %.1f)", t[0] / ipam_best);
        report("ref first-fit-scan", n, t, reps_ff, extra);
        free(uids);
    }
    ipam_pool_free(v4);
    ipam_pool_free(v6);
    return 0;
}
