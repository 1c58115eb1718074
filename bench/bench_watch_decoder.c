/*
 * bench_watch_decoder - throughput of the watch stream decoder on one core.
 *
 * Builds a synthetic watch stream in memory: N events (default 200,000) of
 * realistic shape and size (an ipclaim-like object with labels, annotations,
 * finalizers, managedFields, spec and status conditions; about 1 KiB each),
 * one per line as the API server sends them. Then, on the calling thread:
 *
 *   decoder    kc_watch_decoder_feed over the stream in fixed chunks (default
 *              16 KiB, as curl hands over a chunked body), the callback reading
 *              metadata.resourceVersion as an informer would;
 *   reference  json-c's one-shot json_tokener_parse of each line, already
 *              split: the floor any json-c based decoder pays.
 *
 * Prints wall and CPU time, events/s and MB/s of each, and the ratio. Not part
 * of the test suite; run it on a quiet machine and note the machine.
 *
 * Usage: bench_watch_decoder [events [chunk_bytes [rounds]]]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "kc_client.h"

typedef struct counter {
    size_t events;
    size_t rv_bytes; /* so the compiler cannot drop the reads */
} counter;

static int count_cb(kc_event_type type, json_object *object, void *user)
{
    counter *c = user;
    (void)type;
    json_object *md, *rv;
    if (json_object_object_get_ex(object, "metadata", &md) &&
        json_object_object_get_ex(md, "resourceVersion", &rv))
        c->rv_bytes += (size_t)json_object_get_string_len(rv);
    c->events++;
    return 0;
}

static double now(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One event line, ~1 KiB, varied by i. Returns its length (without NUL). */
static int event_line(char *buf, size_t cap, size_t i)
{
    static const char *types[] = {"ADDED", "MODIFIED", "MODIFIED", "MODIFIED", "DELETED"};
    return snprintf(
        buf, cap,
        "{\"type\":\"%s\",\"object\":{\"apiVersion\":\"provisio.dev/v1alpha1\",\"kind\":"
        "\"IPClaim\",\"metadata\":{\"name\":\"claim-%06zu\",\"namespace\":\"team-%02zu\","
        "\"uid\":\"%08zx-52c4-4d0b-9d6e-0f3c2b1a9e77\",\"resourceVersion\":\"%zu\","
        "\"generation\":%zu,\"creationTimestamp\":\"2024-05-14T09:21:07Z\",\"labels\":{"
        "\"app.kubernetes.io/name\":\"web\",\"app.kubernetes.io/part-of\":\"shop\","
        "\"provisio.dev/pool\":\"pool-%zu\"},\"annotations\":{\"provisio.dev/note\":"
        "\"allocated by replica provisio-6f7d9c-x2kqp \\u2013 ok\"},\"finalizers\":["
        "\"provisio.dev/release\"],\"managedFields\":[{\"manager\":\"kubectl-client-side-apply\","
        "\"operation\":\"Update\",\"apiVersion\":\"provisio.dev/v1alpha1\",\"time\":"
        "\"2024-05-14T09:21:07Z\",\"fieldsType\":\"FieldsV1\",\"fieldsV1\":{\"f:spec\":{"
        "\".\":{},\"f:pool\":{},\"f:count\":{}}}},{\"manager\":\"provisio\",\"operation\":"
        "\"Update\",\"apiVersion\":\"provisio.dev/v1alpha1\",\"time\":\"2024-05-14T09:21:08Z\","
        "\"fieldsType\":\"FieldsV1\",\"fieldsV1\":{\"f:status\":{\".\":{},\"f:addresses\":{},"
        "\"f:conditions\":{}}},\"subresource\":\"status\"}]},\"spec\":{\"pool\":\"pool-%zu\","
        "\"count\":1,\"family\":\"IPv4\"},\"status\":{\"observedGeneration\":%zu,\"addresses\":["
        "\"10.%zu.%zu.%zu\"],\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\","
        "\"observedGeneration\":%zu,\"lastTransitionTime\":\"2024-05-14T09:21:08Z\",\"reason\":"
        "\"Allocated\",\"message\":\"address 10.%zu.%zu.%zu allocated from pool-%zu\"}]}}}\n",
        types[i % 5], i, i % 50, i, 1000000 + i, 1 + i % 7, i % 16, i % 16, 1 + i % 7,
        (i >> 16) & 255, (i >> 8) & 255, i & 255, 1 + i % 7, (i >> 16) & 255, (i >> 8) & 255,
        i & 255, i % 16);
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
    size_t chunk = argc > 2 ? strtoul(argv[2], NULL, 10) : 16384;
    int rounds = argc > 3 ? atoi(argv[3]) : 3;
    if (n == 0 || chunk == 0 || rounds <= 0) {
        fprintf(stderr, "usage: %s [events [chunk_bytes [rounds]]]\n", argv[0]);
        return 2;
    }

    /* Build the stream and remember where each line starts (for the reference). */
    size_t cap = n * 1400 + 1, len = 0;
    char *stream = malloc(cap);
    size_t *starts = malloc((n + 1) * sizeof(size_t));
    if (!stream || !starts) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        starts[i] = len;
        int w = event_line(stream + len, cap - len, i);
        if (w < 0 || (size_t)w >= cap - len) {
            fprintf(stderr, "event %zu does not fit\n", i);
            return 1;
        }
        len += (size_t)w;
    }
    starts[n] = len;
    double mb = (double)len / 1e6;
    printf("stream: %zu events, %.1f MB (%.0f bytes/event), chunks of %zu bytes, best of %d\n", n,
           mb, (double)len / (double)n, chunk, rounds);

    double best_dec = 1e30, best_dec_cpu = 1e30, best_ref = 1e30, best_ref_cpu = 1e30;
    for (int r = 0; r < rounds; r++) {
        /* decoder */
        kc_watch_decoder *d = kc_watch_decoder_new(0);
        counter c = {0};
        kc_error err = KC_ERROR_INIT;
        double t0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
        for (size_t off = 0; off < len; off += chunk) {
            size_t k = len - off < chunk ? len - off : chunk;
            int rc = kc_watch_decoder_feed(d, stream + off, k, count_cb, &c, &err);
            if (rc != 0) {
                fprintf(stderr, "decoder: %d %s\n", rc, err.message ? err.message : "");
                return 1;
            }
        }
        double t1 = now(CLOCK_MONOTONIC), c1 = now(CLOCK_PROCESS_CPUTIME_ID);
        kc_watch_decoder_free(d);
        if (c.events != n) {
            fprintf(stderr, "decoder saw %zu events, want %zu\n", c.events, n);
            return 1;
        }
        if (t1 - t0 < best_dec)
            best_dec = t1 - t0;
        if (c1 - c0 < best_dec_cpu)
            best_dec_cpu = c1 - c0;

        /* reference: one-shot parse of each pre-split line */
        counter rc_ = {0};
        json_tokener *tok = json_tokener_new();
        t0 = now(CLOCK_MONOTONIC);
        c0 = now(CLOCK_PROCESS_CPUTIME_ID);
        for (size_t i = 0; i < n; i++) {
            json_object *ev =
                json_tokener_parse_ex(tok, stream + starts[i], (int)(starts[i + 1] - starts[i]));
            json_object *obj;
            if (!ev || !json_object_object_get_ex(ev, "object", &obj)) {
                fprintf(stderr, "reference parse failed at %zu\n", i);
                return 1;
            }
            count_cb(KC_EVENT_MODIFIED, obj, &rc_);
            json_object_put(ev);
            json_tokener_reset(tok);
        }
        t1 = now(CLOCK_MONOTONIC);
        c1 = now(CLOCK_PROCESS_CPUTIME_ID);
        json_tokener_free(tok);
        if (t1 - t0 < best_ref)
            best_ref = t1 - t0;
        if (c1 - c0 < best_ref_cpu)
            best_ref_cpu = c1 - c0;
    }

    /* Rates per CPU second are the ones to quote on a shared machine. */
    printf("decoder:   %.3f s wall, %.3f s cpu: %8.0f events/s %6.1f MB/s per cpu-second "
           "(%.0f events/s wall)\n",
           best_dec, best_dec_cpu, (double)n / best_dec_cpu, mb / best_dec_cpu,
           (double)n / best_dec);
    printf("reference: %.3f s wall, %.3f s cpu: %8.0f events/s %6.1f MB/s per cpu-second "
           "(json_tokener_parse per pre-split line)\n",
           best_ref, best_ref_cpu, (double)n / best_ref_cpu, mb / best_ref_cpu);
    printf("decoder / reference cpu time: %.2f\n", best_dec_cpu / best_ref_cpu);
    free(stream);
    free(starts);
    return 0;
}
