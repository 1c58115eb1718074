/*
 * bench_informer - time to has_synced and peak memory of a shared informer
 * whose initial list is 10,000 small custom objects (IPClaim-like, ~650
 * bytes of JSON each) served by the HTTPS replay server of the tests in pages
 * of 500, over real TLS on loopback.
 *
 * Each run is a forked child, so its memory figures start clean:
 *   raw-list        kc_list page by page, parse, drop (the client's floor:
 *                   transport + JSON parse, nothing kept)
 *   informer-shared inf_factory_get + start, STORE_SHARED store
 *   informer-compact the same with STORE_COMPACT
 * Reported: objects/s from start to synced (ratio against raw-list of the
 * same run set), VmHWM growth over the baseline per cached object (peak
 * RSS: the list's parsed pages and the store coexist for a moment), and
 * VmRSS growth per object once synced (steady state). The baseline is taken
 * after the server holds every page; VmHWM is reset there through
 * /proc/self/clear_refs ("5") when the kernel allows it.
 *
 * Usage: bench_informer [N [PAGE [RUNS]]]   (defaults 10000 500 3)
 */
#include <json-c/json.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "informer.h"
#include "kc_client.h"
#include "replay_server.h"

#define N_POOLS 10

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A field of /proc/self/status in KiB, or -1. */
static long status_kib(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return -1;
    char *line = NULL;
    size_t cap = 0, flen = strlen(field);
    long kib = -1;
    while (getline(&line, &cap, f) > 0) {
        if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
            kib = strtol(line + flen + 1, NULL, 10);
            break;
        }
    }
    free(line);
    fclose(f);
    return kib;
}

/* Reset VmHWM to the current RSS (Linux >= 4.0). True if it worked. */
static bool reset_hwm(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f == NULL)
        return false;
    bool ok = fputs("5", f) >= 0;
    ok = fclose(f) == 0 && ok;
    return ok;
}

static char *claim_json(int i)
{
    static const char fmt[] =
        "{\"apiVersion\":\"provisio.dev/v1alpha1\",\"kind\":\"IPClaim\",\"metadata\":{"
        "\"creationTimestamp\":\"2024-05-01T10:%02d:%02dZ\",\"finalizers\":[\"provisio.dev/"
        "ip-release\"],\"generation\":1,\"labels\":{\"app.kubernetes.io/name\":\"web-%d\","
        "\"tier\":\"frontend\"},\"name\":\"claim-%05d\","
        "\"namespace\":\"team-%d\",\"resourceVersion\":\"%d\",\"uid\":\"5f0c2a9e-1d7b-4c8e-9a3f-"
        "%012x\"},\"spec\":{\"pool\":\"pool-%d\"},\"status\":{\"address\":\"10.20.%d.%d/16\","
        "\"gateway\":\"10.20.0.1\",\"pool\":\"pool-%d\",\"observedGeneration\":1,"
        "\"conditions\":[{\"type\":\"Ready\","
        "\"status\":\"True\",\"reason\":\"Allocated\",\"message\":\"address 10.20.%d.%d "
        "allocated from pool pool-%d\",\"lastTransitionTime\":\"2024-05-01T10:%02d:%02dZ\","
        "\"observedGeneration\":1}]}}";
    int pool = i % N_POOLS, hi = (i / 250) % 256, lo = i % 250 + 2;
    char *s = NULL;
    if (asprintf(&s, fmt, i / 60 % 60, i % 60, i % 50, i, i % 20, 100000 + i, i, pool, hi, lo, pool,
                 hi, lo, pool, i / 60 % 60, i % 60) < 0) {
        perror("asprintf");
        exit(1);
    }
    return s;
}

/* Page p of n objects (page size ps) as a List body; malloc'd. */
static char *page_json(int p, int n, int ps, size_t *json_bytes)
{
    size_t cap = 1024, len = 0;
    char *b = malloc(cap);
    if (b == NULL)
        exit(1);
    int first = p * ps, last = first + ps < n ? first + ps : n;
    char head[256];
    if (last < n)
        snprintf(head, sizeof(head),
                 "{\"kind\":\"IPClaimList\",\"apiVersion\":\"provisio.dev/v1alpha1\",\"metadata\":"
                 "{\"resourceVersion\":\"200000\",\"continue\":\"page-%d\"},\"items\":[",
                 p + 1);
    else
        snprintf(head, sizeof(head),
                 "{\"kind\":\"IPClaimList\",\"apiVersion\":\"provisio.dev/v1alpha1\",\"metadata\":"
                 "{\"resourceVersion\":\"200000\"},\"items\":[");
    for (int i = first - 1; i < last; i++) {
        char *piece = i < first ? strdup(head) : claim_json(i);
        if (piece == NULL)
            exit(1);
        size_t pl = strlen(piece);
        if (i >= first)
            *json_bytes += pl;
        while (len + pl + 4 > cap) {
            cap *= 2;
            char *nb = realloc(b, cap);
            if (nb == NULL)
                exit(1);
            b = nb;
        }
        if (i > first)
            b[len++] = ',';
        memcpy(b + len, piece, pl);
        len += pl;
        free(piece);
    }
    memcpy(b + len, "]}", 3);
    return b;
}

typedef enum scenario { SC_RAW, SC_SHARED, SC_COMPACT } scenario;
static const char *const names[] = {"raw-list", "informer-shared", "informer-compact"};

typedef struct result {
    double seconds;
    long hwm_kib, rss_kib;
    size_t objects;
    int hwm_reset;
} result;

static int run(scenario sc, int n, int ps, result *out)
{
    rs_server *srv = rs_start(NULL);
    if (srv == NULL)
        return 1;
    size_t json_bytes = 0;
    int pages = (n + ps - 1) / ps;
    if (pages == 0)
        pages = 1;
    for (int p = 0; p < pages; p++) {
        char *body = page_json(p, n, ps, &json_bytes);
        rs_response r = {.method = "GET", .path_prefix = "/apis/provisio.dev/", .body = body};
        rs_push(srv, &r);
        free(body);
    }
    rs_response idle = {.method = "GET",
                        .path_prefix = "/apis/provisio.dev/v1alpha1/ipclaims?watch=1",
                        .hold = true,
                        .times = -1};
    rs_push(srv, &idle);

    rs_kubeconfig_opts ko = {.user_yaml = "    token: bench\n"};
    char *yaml = rs_kubeconfig(srv, &ko);
    kc_config *cfg = NULL;
    kc_client *cli = NULL;
    kc_error err = KC_ERROR_INIT;
    if (yaml == NULL || kc_config_from_yaml(yaml, strlen(yaml), NULL, &cfg, &err) != KC_OK ||
        kc_client_new(cfg, NULL, &cli, &err) != KC_OK) {
        fprintf(stderr, "client: %s\n", err.message ? err.message : "?");
        return 1;
    }
    free(yaml);
    kc_ref ref = {.group = "provisio.dev", .version = "v1alpha1", .resource = "ipclaims"};

    malloc_trim(0);
    out->hwm_reset = reset_hwm();
    long hwm0 = status_kib("VmHWM"), rss0 = status_kib("VmRSS");
    double t0 = now_s();
    inf_factory *fac = NULL;
    if (sc == SC_RAW) {
        char *token = NULL;
        do {
            kc_list_opts lo = {.limit = ps, .continue_token = token};
            json_object *page = NULL;
            if (kc_list(cli, &ref, &lo, &page, &err) != KC_OK) {
                fprintf(stderr, "list: %s\n", err.message);
                return 1;
            }
            json_object *items, *md, *cont;
            if (json_object_object_get_ex(page, "items", &items))
                out->objects += json_object_array_length(items);
            free(token);
            token = NULL;
            if (json_object_object_get_ex(page, "metadata", &md) &&
                json_object_object_get_ex(md, "continue", &cont))
                token = strdup(json_object_get_string(cont));
            json_object_put(page);
        } while (token != NULL);
        out->seconds = now_s() - t0;
    } else {
        inf_factory_opts fo = {
            .store_mode = sc == SC_COMPACT ? INF_STORE_COMPACT : INF_STORE_SHARED, .page_size = ps};
        inf_informer *inf = NULL;
        if (inf_factory_new(cli, &fo, &fac) != KC_OK ||
            inf_factory_get(fac, &ref, NULL, &inf) != KC_OK || inf_factory_start(fac) != KC_OK ||
            !inf_wait_for_sync(inf, 120)) {
            fprintf(stderr, "informer did not sync\n");
            return 1;
        }
        out->seconds = now_s() - t0;
        out->objects = store_len(inf_store(inf));
    }
    out->hwm_kib = status_kib("VmHWM") - hwm0;
    out->rss_kib = status_kib("VmRSS") - rss0;
    inf_factory_free(fac);
    kc_client_free(cli);
    kc_config_free(cfg);
    kc_error_clear(&err);
    rs_stop(srv);
    (void)json_bytes;
    return 0;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 10000;
    int ps = argc > 2 ? atoi(argv[2]) : 500;
    int runs = argc > 3 ? atoi(argv[3]) : 3;
    if (n <= 0 || ps <= 0 || runs <= 0) {
        fprintf(stderr, "usage: bench_informer [N [PAGE [RUNS]]]\n");
        return 2;
    }
    struct utsname u;
    uname(&u);
    char model[512] = "unknown CPU";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f != NULL) {
        char line[512];
        while (fgets(line, sizeof(line), f)) {
            if (strncmp(line, "model name", 10) == 0) {
                char *c = strchr(line, ':');
                snprintf(model, sizeof(model), "%s", c ? c + 2 : line);
                model[strcspn(model, "\n")] = '\0';
                break;
            }
        }
        fclose(f);
    }
    size_t sample = 0;
    free(page_json(0, 1, 1, &sample));
    printf("bench_informer: %d objects (~%zu bytes of JSON each) in pages of %d over TLS on "
           "loopback; json-c %s; %s %s; %s; %ld CPUs\n",
           n, sample, ps, json_c_version(), u.sysname, u.release, model,
           sysconf(_SC_NPROCESSORS_ONLN));
    fflush(stdout);

    double best[3] = {0, 0, 0};
    for (int sc = 0; sc < 3; sc++) {
        for (int r = 0; r < runs; r++) {
            int fds[2];
            if (pipe(fds) != 0)
                return 1;
            pid_t pid = fork();
            if (pid == 0) {
                close(fds[0]);
                result res = {0};
                int rc = run((scenario)sc, n, ps, &res);
                if (write(fds[1], &res, sizeof(res)) != (ssize_t)sizeof(res))
                    rc = 1;
                _exit(rc);
            }
            close(fds[1]);
            result res = {0};
            ssize_t got = read(fds[0], &res, sizeof(res));
            close(fds[0]);
            int status = 0;
            waitpid(pid, &status, 0);
            if (got != (ssize_t)sizeof(res) || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "%s run %d failed\n", names[sc], r);
                return 1;
            }
            double rate = (double)res.objects / res.seconds;
            if (rate > best[sc])
                best[sc] = rate;
            double objs = res.objects ? (double)res.objects : 1;
            printf("%-17s run %d: %6zu objects in %6.3f s = %8.0f obj/s | peak RSS +%6.1f MiB "
                   "= %5.0f B/obj%s | RSS after +%6.1f MiB = %5.0f B/obj\n",
                   names[sc], r, res.objects, res.seconds, rate, (double)res.hwm_kib / 1024.0,
                   (double)res.hwm_kib * 1024.0 / objs, res.hwm_reset ? "" : " (HWM not reset)",
                   (double)res.rss_kib / 1024.0, (double)res.rss_kib * 1024.0 / objs);
            fflush(stdout);
        }
    }
    printf("best obj/s: raw-list %.0f, informer-shared %.0f (%.2fx of raw), informer-compact "
           "%.0f (%.2fx of raw)\n",
           best[0], best[1], best[1] / best[0], best[2], best[2] / best[0]);
    return 0;
}
