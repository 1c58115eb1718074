/*
 * bench_vol_quota - what a hard limit costs the node agent per volume: the
 * time of vol_dir_ensure (the directory of a Volume with its limit), of the
 * vol_dir_usage read the agent makes right after it, and of vol_dir_remove
 * (src/reconcilers/volume/agent/), N volumes one after another, on:
 *
 *   btrfs Auto    a fresh loop-mounted btrfs: a subvolume and a qgroup limit
 *                 per volume (the first ensure enables quotas: timed apart)
 *   btrfs Off     a fresh loop-mounted btrfs, quota Off: plain mkdir
 *   xfs Auto      XFS mounted with -o prjquota: a project id and a limit per
 *                 volume, when this kernel mounts it (else a SKIP line)
 *   ext4 Auto     ext4 -O quota,project mounted with -o prjquota, likewise
 *   host Off      a plain directory on the filesystem of --dir, quota Off
 *
 * Each loop-mounted case gets a filesystem of its own (mkfs on a sparse
 * file, `mount -o loop`), so one case's quota state never reaches another,
 * all in a private mount namespace of this process: nothing stays mounted
 * if it is killed. The loop and mount need root; without it only "host
 * Off" runs. Each volume is 1 MiB (the end-to-end bench's size), in the
 * pool directory <mount>/pool, named bench_v<i>_<uid>.
 *
 * The filesystem work a call leaves to a later transaction commit (btrfs
 * commits every 30 s; a subvolume's deletion is finished by the cleaner
 * thread) is not in the per-call times: "sync" is the syncfs() after the N
 * ensures and after the N removes, given apart.
 *
 *   bench_vol_quota [-n N] [--dir DIR] [--cases btrfs,btrfs-off,xfs,ext4,host]
 *
 * One RESULT line per case on stdout:
 *   RESULT case=btrfs mode=Auto backend=btrfs quota=Enforced n=... ensure_us=<mean>
 *     ensure_p50_us=... ensure_p99_us=... usage_us=... remove_us=... remove_p50_us=...
 *     remove_p99_us=... sync_ensure_ms=... sync_remove_ms=... first_ensure_us=...
 *   RESULT case=xfs skipped="why"
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench_stats.h"
#include "vol_agent.h"

#define VOLUME_BYTES (1u << 20)

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench_vol_quota: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int rc = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (rc < 0)
        fail("out of memory");
    return s;
}

/* Run a shell command, its output to log; its exit status. */
static int sh(const char *log, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int sh(const char *log, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *cmd = NULL;
    if (vasprintf(&cmd, fmt, ap) < 0)
        fail("out of memory");
    va_end(ap);
    char *full = xasprintf("(%s) >'%s' 2>&1", cmd, log);
    int rc = system(full);
    free(full);
    free(cmd);
    return rc == -1 ? -1 : WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

/* The first line of a log file (static buffer, spaces squeezed), for SKIP
 * reasons. */
static const char *first_line(const char *log)
{
    static char line[256];
    line[0] = '\0';
    FILE *f = fopen(log, "r");
    if (!f)
        return line;
    char buf[256] = "";
    while (fgets(buf, sizeof buf, f) && buf[strspn(buf, " \t\n")] == '\0')
        ;
    fclose(f);
    size_t o = 0;
    for (const char *p = buf; *p && *p != '\n' && o + 1 < sizeof line; p++) {
        if ((*p == ' ' || *p == '\t') && (o == 0 || line[o - 1] == ' '))
            continue;
        line[o++] = *p == '"' ? '\'' : *p == '\t' ? ' ' : *p;
    }
    line[o] = '\0';
    return line;
}

/* Volume i's key (name and uid written into the caller's buffers). */
static vol_key volume_key(long i, char name[32], char uid[48])
{
    snprintf(name, 32, "v%ld", i);
    snprintf(uid, 48, "00000000-0000-0000-0000-%012ld", i);
    return (vol_key){.ns = "bench", .name = name, .uid = uid};
}

static double mean(const double *v, long n)
{
    double s = 0;
    for (long i = 0; i < n; i++)
        s += v[i];
    return n ? s / (double)n : 0;
}

static double sync_ms(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    double t0 = now_us();
    syncfs(fd);
    double t = (now_us() - t0) / 1e3;
    close(fd);
    return t;
}

typedef struct bench_case {
    const char *name;
    const char *mkfs;  /* NULL: no filesystem of its own (the host's) */
    const char *mount; /* mount options, NULL: none */
    unsigned mib;      /* the image's size */
    vol_quota_mode mode;
} bench_case;

static const bench_case cases[] = {
    {"btrfs", "mkfs.btrfs -q -f", NULL, 1024, VOL_QUOTA_AUTO},
    {"btrfs-off", "mkfs.btrfs -q -f", NULL, 1024, VOL_QUOTA_OFF},
    {"xfs", "mkfs.xfs -q -f", "prjquota", 1024, VOL_QUOTA_AUTO},
    {"ext4", "mkfs.ext4 -q -F -O quota,project", "prjquota", 1024, VOL_QUOTA_AUTO},
    {"host", NULL, NULL, 0, VOL_QUOTA_OFF},
};

static const char *mode_name(vol_quota_mode m)
{
    return m == VOL_QUOTA_OFF ? "Off" : m == VOL_QUOTA_REQUIRED ? "Required" : "Auto";
}

/* N ensures, usage reads and removes in pool (absolute, host root ""). */
static void run_volumes(const bench_case *c, const char *pool, long n)
{
    double *ens = calloc((size_t)n, sizeof *ens), *use = calloc((size_t)n, sizeof *use),
           *rem = calloc((size_t)n, sizeof *rem);
    if (!ens || !use || !rem)
        fail("out of memory");
    vol_error err = {0};

    /* The first ensure on a fresh pool (btrfs: enables quotas), apart. */
    vol_key warm = {.ns = "bench", .name = "warm", .uid = "00000000-0000-0000-0000-ffffffffffff"};
    vol_dir_result r = {0};
    double t0 = now_us();
    if (vol_dir_ensure("", pool, &warm, VOLUME_BYTES, c->mode, &r, &err) != 0)
        fail("%s: first ensure: %s", c->name, err.message ? err.message : "failed");
    double first = now_us() - t0;
    vol_backend backend = r.backend;
    vol_quota_state quota = r.quota;
    char *reason = r.quota_reason ? strdup(r.quota_reason) : NULL;
    vol_dir_result_free(&r);
    if (vol_dir_remove("", pool, &warm, &err) != 0)
        fail("%s: first remove: %s", c->name, err.message ? err.message : "failed");
    sync_ms(pool);

    char name[32], uid[48];
    long usage_ok = 0;
    for (long i = 0; i < n; i++) {
        vol_key k = volume_key(i, name, uid);
        t0 = now_us();
        int rc = vol_dir_ensure("", pool, &k, VOLUME_BYTES, c->mode, &r, &err);
        ens[i] = now_us() - t0;
        if (rc != 0)
            fail("%s: ensure %s: %s", c->name, name, err.message ? err.message : "failed");
        vol_dir_result_free(&r);
        vol_usage u = {0};
        t0 = now_us();
        rc = vol_dir_usage("", pool, &k, 0, &u, NULL); /* -ENOTSUP without a quota */
        use[i] = now_us() - t0;
        usage_ok += rc == 0;
    }
    double sync_e = sync_ms(pool);
    for (long i = 0; i < n; i++) {
        vol_key k = volume_key(i, name, uid);
        t0 = now_us();
        int rc = vol_dir_remove("", pool, &k, &err);
        rem[i] = now_us() - t0;
        if (rc != 0)
            fail("%s: remove %s: %s", c->name, name, err.message ? err.message : "failed");
    }
    double sync_r = sync_ms(pool);
    vol_error_clear(&err);

    double e_mean = mean(ens, n), u_mean = mean(use, n), r_mean = mean(rem, n);
    qsort(ens, (size_t)n, sizeof *ens, bench_cmp_double);
    qsort(rem, (size_t)n, sizeof *rem, bench_cmp_double);
    fprintf(stderr,
            "%-9s %-4s %-7s %-11s n=%ld: ensure %.0f us (p50 %.0f, p99 %.0f), usage read %.0f us "
            "(%ld with a quota), remove %.0f us (p50 %.0f, p99 %.0f); syncfs after the ensures "
            "%.1f ms, after the removes %.1f ms; first ensure %.0f us%s%s\n",
            c->name, mode_name(c->mode), vol_backend_name(backend), vol_quota_state_name(quota), n,
            e_mean, bench_pct(ens, n, 50), bench_pct(ens, n, 99), u_mean, usage_ok, r_mean,
            bench_pct(rem, n, 50), bench_pct(rem, n, 99), sync_e, sync_r, first, reason ? "; " : "",
            reason ? reason : "");
    printf("RESULT case=%s mode=%s backend=%s quota=%s n=%ld ensure_us=%.1f ensure_p50_us=%.1f "
           "ensure_p99_us=%.1f usage_us=%.1f remove_us=%.1f remove_p50_us=%.1f "
           "remove_p99_us=%.1f sync_ensure_ms=%.1f sync_remove_ms=%.1f first_ensure_us=%.1f\n",
           c->name, mode_name(c->mode), vol_backend_name(backend), vol_quota_state_name(quota), n,
           e_mean, bench_pct(ens, n, 50), bench_pct(ens, n, 99), u_mean, r_mean,
           bench_pct(rem, n, 50), bench_pct(rem, n, 99), sync_e, sync_r, first);
    fflush(stdout);
    free(reason);
    free(ens);
    free(use);
    free(rem);
}

static void skip(const bench_case *c, const char *why)
{
    fprintf(stderr, "%-9s SKIP: %s\n", c->name, why);
    printf("RESULT case=%s mode=%s skipped=\"%s\"\n", c->name, mode_name(c->mode), why);
    fflush(stdout);
}

static void run_case(const bench_case *c, const char *dir, long n, bool root)
{
    char *mnt = xasprintf("%s/%s", dir, c->name), *pool = xasprintf("%s/pool", mnt);
    char *img = xasprintf("%s/%s.img", dir, c->name), *log = xasprintf("%s/%s.log", dir, c->name);
    if (mkdir(mnt, 0755) != 0 && errno != EEXIST)
        fail("mkdir %s: %s", mnt, strerror(errno));
    bool mounted = false;
    if (c->mkfs) {
        if (!root) {
            skip(c, "needs root (loop mount)");
            goto out;
        }
        int fd = open(img, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
        if (fd < 0 || ftruncate(fd, (off_t)c->mib << 20) != 0)
            fail("%s: %s", img, strerror(errno));
        close(fd);
        if (sh(log, "%s '%s'", c->mkfs, img) != 0) {
            char *why = xasprintf("%s failed: %s", c->mkfs, first_line(log));
            skip(c, why);
            free(why);
            goto out;
        }
        if (sh(log, "mount -o loop%s%s '%s' '%s'", c->mount ? "," : "", c->mount ? c->mount : "",
               img, mnt) != 0) {
            char *why = xasprintf("mount -o loop%s%s refused: %s", c->mount ? "," : "",
                                  c->mount ? c->mount : "", first_line(log));
            skip(c, why);
            free(why);
            goto out;
        }
        mounted = true;
    }
    if (mkdir(pool, 0755) != 0 && errno != EEXIST)
        fail("mkdir %s: %s", pool, strerror(errno));
    run_volumes(c, pool, n);
out:
    if (mounted && umount2(mnt, 0) != 0)
        umount2(mnt, MNT_DETACH);
    if (!c->mkfs)
        rmdir(pool);
    rmdir(mnt);
    unlink(img);
    unlink(log);
    free(mnt);
    free(pool);
    free(img);
    free(log);
}

int main(int argc, char **argv)
{
    long n = 200;
    const char *dir = NULL, *only = "btrfs,btrfs-off,xfs,ext4,host";
    static const struct option lo[] = {
        {"dir", required_argument, NULL, 'd'},
        {"cases", required_argument, NULL, 'c'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "n:", lo, NULL)) != -1) {
        if (ch == 'n')
            n = strtol(optarg, NULL, 10);
        else if (ch == 'd')
            dir = optarg;
        else if (ch == 'c')
            only = optarg;
        else
            fail("usage: bench_vol_quota [-n N] [--dir DIR] [--cases btrfs,btrfs-off,xfs,ext4,"
                 "host]");
    }
    if (n < 1)
        fail("-n must be at least 1");
    const char *tmp = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/bench_vol_quota.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    bool own_dir = dir == NULL;
    if (own_dir && (dir = mkdtemp(tmpl)) == NULL)
        fail("mkdtemp %s: %s", tmpl, strerror(errno));

    /* Mounts in a namespace of our own, gone with the process. */
    bool root = geteuid() == 0 && unshare(CLONE_NEWNS) == 0 &&
                mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0;
    fprintf(stderr, "bench_vol_quota: %ld volumes of %u bytes per case in %s%s\n", n, VOLUME_BYTES,
            dir, root ? "" : " (not root: loop mounts skipped)");
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        /* a case named in the comma-separated list */
        size_t len = strlen(cases[k].name);
        bool want = false;
        for (const char *p = only; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
            if (!strncmp(p, cases[k].name, len) && (p[len] == ',' || p[len] == '\0'))
                want = true;
        if (want)
            run_case(&cases[k], dir, n, root);
    }
    if (own_dir)
        rmdir(dir);
    return 0;
}
