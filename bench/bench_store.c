/*
 * bench_store - memory and speed of the informer store with 10,000 cached
 * IPClaim-like objects (~650 bytes of JSON each, managedFields omitted).
 *
 * Each scenario runs in its own forked child so its RSS baseline is clean:
 *   jsonc-trees    parse and keep the json-c trees, no store (json-c's own cost)
 *   store-shared   parse + store_add into a STORE_SHARED store, index by-pool
 *   store-compact  parse + store_add into a STORE_COMPACT store, index by-pool
 * For each: insert rate (parse + add, what the reflector does), heap bytes per
 * object (mallinfo2 in-use delta), RSS growth per object (VmRSS delta), and the
 * read rates readers see (store_get, store_by_index of one pool).
 *
 * Usage: bench_store [N]   (default 10000)
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

#include "kc_error.h"
#include "store.h"

#define N_POOLS 10

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return -1;
    char *line = NULL;
    size_t cap = 0;
    long kib = -1;
    while (getline(&line, &cap, f) > 0)
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    free(line);
    fclose(f);
    return kib;
}

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

/* One object's JSON text, malloc'd. */
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
    int n = snprintf(NULL, 0, fmt, i / 60 % 60, i % 60, i % 50, i, i % 20, 100000 + i, i, pool, hi,
                     lo, pool, hi, lo, pool, i / 60 % 60, i % 60);
    char *s = malloc((size_t)n + 1);
    if (s == NULL) {
        perror("malloc");
        exit(1);
    }
    snprintf(s, (size_t)n + 1, fmt, i / 60 % 60, i % 60, i % 50, i, i % 20, 100000 + i, i, pool, hi,
             lo, pool, hi, lo, pool, i / 60 % 60, i % 60);
    return s;
}

static json_object *parse(const char *s)
{
    json_object *o = json_tokener_parse(s);
    if (o == NULL) {
        fprintf(stderr, "parse failed\n");
        exit(1);
    }
    return o;
}

typedef enum { SC_TREES, SC_SHARED, SC_COMPACT } scenario;

static void run(scenario sc, char **texts, int n)
{
    static const char *names[] = {"jsonc-trees", "store-shared", "store-compact"};
    json_object **held = NULL;
    store *s = NULL;
    if (sc == SC_TREES) {
        held = calloc((size_t)n, sizeof(*held));
        if (held == NULL)
            exit(1);
    } else {
        store_opts o = {sc == SC_SHARED ? STORE_SHARED : STORE_COMPACT};
        if (store_new(&o, &s) != KC_OK ||
            store_add_index(s, "by-pool", store_index_field, (void *)"spec.pool") != KC_OK)
            exit(1);
    }
    malloc_trim(0);
    long rss0 = rss_kib();
    size_t heap0 = heap_in_use();
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        json_object *obj = parse(texts[i]);
        if (sc == SC_TREES)
            held[i] = obj;
        else if (store_add(s, obj, NULL) != KC_OK)
            exit(1);
    }
    double t1 = now_s();
    long rss1 = rss_kib();
    size_t heap1 = heap_in_use();

    double get_rate = 0, idx_rate = 0;
    if (s != NULL) {
        char key[64];
        int gets = n < 20000 ? 20000 : n;
        unsigned seed = 1;
        double g0 = now_s();
        for (int j = 0; j < gets; j++) {
            int i = (int)(rand_r(&seed) % (unsigned)n);
            snprintf(key, sizeof(key), "team-%d/claim-%05d", i % 20, i);
            json_object *o;
            if (store_get(s, key, &o) != KC_OK)
                exit(1);
            store_obj_put(o);
        }
        get_rate = gets / (now_s() - g0);
        double x0 = now_s();
        int rounds = 20;
        size_t got = 0;
        for (int r = 0; r < rounds; r++) {
            json_object **objs;
            size_t m;
            if (store_by_index(s, "by-pool", "pool-3", &objs, &m) != KC_OK)
                exit(1);
            got += m;
            store_objs_free(objs, m);
        }
        idx_rate = (double)got / (now_s() - x0);
    }
    printf("%-14s insert %8.0f obj/s | heap %6.0f B/obj | RSS %6.0f B/obj (%5.1f MiB total "
           "growth)",
           names[sc], n / (t1 - t0), (double)(heap1 - heap0) / n, (double)(rss1 - rss0) * 1024 / n,
           (double)(rss1 - rss0) / 1024);
    if (s != NULL)
        printf(" | get %8.0f/s | by_index %8.0f obj/s", get_rate, idx_rate);
    printf("\n");
    fflush(stdout);
    /* Teardown is not measured. */
    if (held != NULL) {
        for (int i = 0; i < n; i++)
            json_object_put(held[i]);
        free(held);
    }
    store_free(s);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 10000;
    if (n <= 0)
        n = 10000;
    char **texts = malloc((size_t)n * sizeof(*texts));
    if (texts == NULL)
        return 1;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        texts[i] = claim_json(i);
        total += strlen(texts[i]);
    }
    struct utsname u;
    uname(&u);
    char model[256] = "?";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f != NULL) {
        char *line = NULL;
        size_t cap = 0;
        while (getline(&line, &cap, f) > 0)
            if (strncmp(line, "model name", 10) == 0) {
                char *c = strchr(line, ':');
                snprintf(model, sizeof(model), "%s", c ? c + 2 : line);
                model[strcspn(model, "\n")] = '\0';
                break;
            }
        free(line);
        fclose(f);
    }
    printf("bench_store: %d objects, %.0f bytes of JSON each on average; json-c %s; %s %s; "
           "%ld CPUs; %s\n",
           n, (double)total / n, json_c_version(), u.sysname, u.release,
           sysconf(_SC_NPROCESSORS_ONLN), model);
    fflush(stdout); /* or every child prints the header again */
    for (int sc = SC_TREES; sc <= SC_COMPACT; sc++) {
        pid_t pid = fork();
        if (pid == 0) {
            run((scenario)sc, texts, n);
            _exit(0);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "scenario %d failed\n", sc);
            return 1;
        }
    }
    for (int i = 0; i < n; i++)
        free(texts[i]);
    free(texts);
    return 0;
}
