/*
 * Unit tests of rec_events: Events, their folding, the queue and its sender
 * thread, tries again after transient failures, shutdown; the writes against
 * the replay server (tests/support/rec_api_fixture.h).
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "pv_clock.h"
#include "rec_api_fixture.h"
#include "rec_events.h"
#include "rec_util.h"

static rec_events *live; /* the test's recorder: teardown frees it if the test did not */

static void teardown(void)
{
    /* Before the client: the recorder's sender may still be writing through it. */
    rec_events_free(live);
    live = NULL;
    raf_stop();
}

TestSuite(rec_events, .fini = teardown, .timeout = 60);

/* Generous: the sender writes to a local server; a loaded machine is slow, not this slow. */
#define FLUSH_MS 30000

typedef struct fake_clock {
    time_t now;
} fake_clock;

static time_t fake_now(void *user)
{
    return ((fake_clock *)user)->now;
}

/* What the log hook was told (it runs on the sender thread, or on the emitter's). */
typedef struct log_seen {
    int n;
    int last_code;
    bool last_expected;
    int dropped; /* reports with REC_EVENTS_ERR_DROPPED */
    char last_message[512];
} log_seen;

/*
 * Tests keep their sink static: after a failed assertion the test body is
 * gone but the sender may still report until teardown frees the recorder.
 */
typedef struct log_sink {
    pthread_mutex_t mu;
    log_seen seen;
} log_sink;

#define LOG_SINK_INIT                                                                              \
    {                                                                                              \
        .mu = PTHREAD_MUTEX_INITIALIZER                                                            \
    }

static void sink_log(int code, bool expected, const char *message, void *user)
{
    log_sink *s = user;
    cr_assert_not_null(message);
    pthread_mutex_lock(&s->mu);
    s->seen.n++;
    s->seen.last_code = code;
    s->seen.last_expected = expected;
    s->seen.dropped += code == REC_EVENTS_ERR_DROPPED;
    snprintf(s->seen.last_message, sizeof(s->seen.last_message), "%s", message);
    pthread_mutex_unlock(&s->mu);
}

/* A copy of what the sink has seen, taken under its lock. */
static log_seen sink_get(log_sink *s)
{
    pthread_mutex_lock(&s->mu);
    log_seen copy = s->seen;
    pthread_mutex_unlock(&s->mu);
    return copy;
}

static const char CLAIM_OBJ[] =
    "{\"apiVersion\":\"provisio.dev/v1alpha1\",\"kind\":\"IPClaim\",\"metadata\":{\"name\":\"a\","
    "\"namespace\":\"ns\",\"uid\":\"u-a\",\"resourceVersion\":\"41\"}}";

/* A recorder from o (the fake clock, instance and sink filled in), remembered for teardown. */
static rec_events *recorder_with(rec_events_opts o, fake_clock *clk, log_sink *sink)
{
    o.reporting_instance = "pod-1_abc";
    o.clock = fake_now;
    o.clock_user = clk;
    o.log = sink ? sink_log : NULL;
    o.log_user = sink;
    cr_assert_null(live, "one recorder per test");
    cr_assert_eq(rec_events_new(raf_cli, &o, &live), 0);
    return live;
}

static rec_events *new_recorder(fake_clock *clk, log_sink *sink, size_t cache)
{
    return recorder_with((rec_events_opts){.cache_size = cache}, clk, sink);
}

static void free_recorder(void)
{
    rec_events_free(live);
    live = NULL;
}

static void flush(rec_events *e)
{
    cr_assert_eq(rec_events_flush(e, FLUSH_MS), 0, "the queued Events were not written in time");
}

static const char EVENT_OK[] = "{\"kind\":\"Event\",\"apiVersion\":\"v1\"}";

Test(rec_events, first_event_is_created_with_the_full_shape)
{
    raf_start();
    rs_push_simple(raf_srv, 201, EVENT_OK);
    fake_clock clk = {RAF_T0};
    rec_events *e = new_recorder(&clk, NULL, 0);
    json_object *obj = raf_parse(CLAIM_OBJ);
    cr_assert_eq(
        rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Allocated", "address %s", "10.0.0.5/24"),
        0);
    /* Nothing of obj is kept: it may go (or change in the store) before the write. */
    json_object_put(obj);
    flush(e);
    const rs_request *r = rs_request_at(raf_srv, 0);
    cr_assert_str_eq(r->method, "POST");
    cr_assert_str_eq(r->target, "/api/v1/namespaces/ns/events");
    json_object *b = raf_body_json(r);
    const char *name = raf_str_at(b, "metadata.name");
    cr_assert_eq(strlen(name), strlen("a.") + 16, "name %s", name);
    cr_assert_eq(strncmp(name, "a.", 2), 0);
    cr_assert_eq(strspn(name + 2, "0123456789abcdef"), 16);
    cr_assert_str_eq(raf_str_at(b, "metadata.namespace"), "ns");
    cr_assert_str_eq(raf_str_at(b, "involvedObject.kind"), "IPClaim");
    cr_assert_str_eq(raf_str_at(b, "involvedObject.apiVersion"), "provisio.dev/v1alpha1");
    cr_assert_str_eq(raf_str_at(b, "involvedObject.name"), "a");
    cr_assert_str_eq(raf_str_at(b, "involvedObject.namespace"), "ns");
    cr_assert_str_eq(raf_str_at(b, "involvedObject.uid"), "u-a");
    cr_assert_str_eq(raf_str_at(b, "involvedObject.resourceVersion"), "41");
    cr_assert_str_eq(raf_str_at(b, "reason"), "Allocated");
    cr_assert_str_eq(raf_str_at(b, "message"), "address 10.0.0.5/24");
    cr_assert_str_eq(raf_str_at(b, "type"), "Normal");
    cr_assert_str_eq(raf_str_at(b, "source.component"), "provisio");
    cr_assert_str_eq(raf_str_at(b, "reportingComponent"), "provisio.dev/operator");
    cr_assert_str_eq(raf_str_at(b, "reportingInstance"), "pod-1_abc");
    cr_assert_str_eq(raf_str_at(b, "firstTimestamp"), "2025-01-02T15:04:05Z");
    cr_assert_str_eq(raf_str_at(b, "lastTimestamp"), "2025-01-02T15:04:05Z");
    cr_assert_eq(raf_int_at(b, "count"), 1);
    json_object_put(b);
    free_recorder();
}

Test(rec_events, repeat_within_ten_minutes_patches_count_and_last_timestamp)
{
    raf_start();
    rs_push_simple(raf_srv, 201, EVENT_OK);
    rs_push_simple(raf_srv, 200, EVENT_OK);
    rs_push_simple(raf_srv, 200, EVENT_OK);
    fake_clock clk = {RAF_T0};
    rec_events *e = new_recorder(&clk, NULL, 0);
    json_object *obj = raf_parse(CLAIM_OBJ);
    /* The time is the emission's, not the write's: no flush between the emissions. */
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_WARNING, "PoolExhausted", "full"), 0);
    clk.now = RAF_T0 + 300;
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_WARNING, "PoolExhausted", "full"), 0);
    clk.now = RAF_T0 + 600;
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_WARNING, "PoolExhausted", "full"), 0);
    flush(e);
    cr_assert_eq(rs_request_count(raf_srv), 3);

    json_object *created = raf_body_json(rs_request_at(raf_srv, 0));
    const char *name = raf_str_at(created, "metadata.name");
    for (size_t i = 1; i < 3; i++) {
        const rs_request *r = rs_request_at(raf_srv, i);
        cr_assert_str_eq(r->method, "PATCH");
        char *want = NULL;
        cr_assert(asprintf(&want, "/api/v1/namespaces/ns/events/%s", name) > 0);
        cr_assert_str_eq(r->target, want);
        free(want);
        json_object *p = raf_body_json(r);
        cr_assert_eq(raf_int_at(p, "count"), (int64_t)i + 1);
        cr_assert_str_eq(raf_str_at(p, "lastTimestamp"),
                         i == 1 ? "2025-01-02T15:09:05Z" : "2025-01-02T15:14:05Z");
        json_object_put(p);
    }
    json_object_put(created);
    json_object_put(obj);
    free_recorder();
}

Test(rec_events, identical_events_queued_while_the_first_is_written_still_patch)
{
    raf_start();
    /* The POST is slow: the repeat is queued before the first Event exists. */
    rs_response post = {.method = "POST", .status = 201, .body = EVENT_OK, .delay_ms = 500};
    rs_response patch = {.method = "PATCH", .status = 200, .body = EVENT_OK, .times = -1};
    rs_push(raf_srv, &post);
    rs_push(raf_srv, &patch);
    fake_clock clk = {RAF_T0};
    rec_events *e = new_recorder(&clk, NULL, 0);
    json_object *obj = raf_parse(CLAIM_OBJ);
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Allocated", "10.0.0.5"), 0);
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Allocated", "10.0.0.5"), 0);
    flush(e);
    cr_assert_eq(rs_request_count(raf_srv), 2);
    cr_assert_str_eq(rs_request_at(raf_srv, 0)->method, "POST");
    cr_assert_str_eq(rs_request_at(raf_srv, 1)->method, "PATCH");
    json_object *created = raf_body_json(rs_request_at(raf_srv, 0));
    char *want = NULL;
    cr_assert(asprintf(&want, "/api/v1/namespaces/ns/events/%s",
                       raf_str_at(created, "metadata.name")) > 0);
    cr_assert_str_eq(rs_request_at(raf_srv, 1)->target, want);
    json_object *p = raf_body_json(rs_request_at(raf_srv, 1));
    cr_assert_eq(raf_int_at(p, "count"), 2);
    cr_assert_eq(rec_events_cached(e), 1);
    free(want);
    json_object_put(p);
    json_object_put(created);
    json_object_put(obj);
    free_recorder();
}

Test(rec_events, another_message_or_an_expired_window_creates_a_new_event)
{
    raf_start();
    rs_response created = {.method = "POST", .status = 201, .body = EVENT_OK, .times = -1};
    rs_push(raf_srv, &created);
    fake_clock clk = {RAF_T0};
    rec_events *e = new_recorder(&clk, NULL, 0);
    json_object *obj = raf_parse(CLAIM_OBJ);
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Allocated", "10.0.0.5"), 0);
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Allocated", "10.0.0.6"), 0);
    clk.now = RAF_T0 + 601;
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Allocated", "10.0.0.5"), 0);
    flush(e);
    cr_assert_eq(rs_request_count(raf_srv), 3);
    for (size_t i = 0; i < 3; i++)
        cr_assert_str_eq(rs_request_at(raf_srv, i)->method, "POST");
    json_object *a = raf_body_json(rs_request_at(raf_srv, 0));
    json_object *c = raf_body_json(rs_request_at(raf_srv, 2));
    cr_assert_str_neq(raf_str_at(a, "metadata.name"), raf_str_at(c, "metadata.name"));
    cr_assert_eq(raf_int_at(c, "count"), 1);
    json_object_put(a);
    json_object_put(c);
    json_object_put(obj);
    free_recorder();
}

Test(rec_events, patch_of_an_expired_event_falls_back_to_create)
{
    raf_start();
    rs_push_simple(raf_srv, 201, EVENT_OK);
    rs_push_simple(raf_srv, 404,
                   "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
                   "\"reason\":\"NotFound\",\"code\":404}");
    rs_push_simple(raf_srv, 201, EVENT_OK);
    fake_clock clk = {RAF_T0};
    static log_sink sink = LOG_SINK_INIT;
    rec_events *e = new_recorder(&clk, &sink, 0);
    json_object *obj = raf_parse(CLAIM_OBJ);
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Allocated", "x"), 0);
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Allocated", "x"), 0);
    flush(e);
    cr_assert_eq(rs_request_count(raf_srv), 3);
    cr_assert_str_eq(rs_request_at(raf_srv, 1)->method, "PATCH");
    cr_assert_str_eq(rs_request_at(raf_srv, 2)->method, "POST");
    json_object *b = raf_body_json(rs_request_at(raf_srv, 2));
    cr_assert_eq(raf_int_at(b, "count"), 1);
    cr_assert_eq(sink_get(&sink).n, 0, "a PATCH 404 is not a failure");
    json_object_put(b);
    json_object_put(obj);
    free_recorder();
}

Test(rec_events, failure_is_logged_not_fatal_and_forgotten)
{
    raf_start();
    rs_push_simple(raf_srv, 403,
                   "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
                   "\"reason\":\"Forbidden\",\"message\":\"events is forbidden\",\"code\":403}");
    rs_push_simple(raf_srv, 201, EVENT_OK);
    fake_clock clk = {RAF_T0};
    static log_sink sink = LOG_SINK_INIT;
    rec_events *e = new_recorder(&clk, &sink, 0);
    json_object *obj = raf_parse(CLAIM_OBJ);
    /* queued: the write's outcome goes to the log hook */
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Allocated", "x"), 0);
    flush(e);
    log_seen got = sink_get(&sink);
    cr_assert_eq(got.n, 1);
    cr_assert_eq(got.last_code, KC_ERR_FORBIDDEN);
    cr_assert_not(got.last_expected, "a plain 403 is an error worth seeing");
    cr_assert(strstr(got.last_message, "events is forbidden"), "%s", got.last_message);
    cr_assert(strstr(got.last_message, "IPClaim ns/a"), "%s", got.last_message);
    cr_assert_eq(rec_events_cached(e), 0);
    /* the next emission creates again rather than patching an Event that never was */
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Allocated", "x"), 0);
    flush(e);
    cr_assert_str_eq(rs_request_at(raf_srv, 1)->method, "POST");
    cr_assert_eq(sink_get(&sink).n, 1);
    json_object_put(obj);
    free_recorder();
}

static const char UNAVAILABLE[] =
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
    "\"reason\":\"ServiceUnavailable\",\"message\":\"apiserver is shutting down\","
    "\"code\":503}";

Test(rec_events, an_event_refused_by_a_restarting_api_server_is_written_on_a_later_try)
{
    /* Two 503s (an API server going down and coming back), then written:
     * the same Event, three POSTs, nothing reported; the Event behind it
     * is written after it, in order. */
    raf_start();
    rs_push_simple(raf_srv, 503, UNAVAILABLE);
    rs_push_simple(raf_srv, 503, UNAVAILABLE);
    rs_push_simple(raf_srv, 201, EVENT_OK);
    rs_push_simple(raf_srv, 201, EVENT_OK);
    fake_clock clk = {RAF_T0};
    static log_sink sink = LOG_SINK_INIT;
    rec_events *e = new_recorder(&clk, &sink, 0);
    json_object *obj = raf_parse(CLAIM_OBJ);
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Allocated", "first"), 0);
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Released", "second"), 0);
    json_object_put(obj);
    flush(e);
    cr_assert_eq(rs_request_count(raf_srv), 4);
    for (size_t i = 0; i < 3; i++) {
        json_object *b = raf_body_json(rs_request_at(raf_srv, i));
        cr_assert_str_eq(raf_str_at(b, "message"), "first", "try %zu", i + 1);
        json_object_put(b);
    }
    json_object *b = raf_body_json(rs_request_at(raf_srv, 3));
    cr_assert_str_eq(raf_str_at(b, "message"), "second");
    json_object_put(b);
    cr_assert_eq(sink_get(&sink).n, 0, "%s", sink_get(&sink).last_message);
    cr_assert_eq(rec_events_cached(e), 2);
    free_recorder();
}

Test(rec_events, transient_failures_are_tried_max_tries_times_then_reported)
{
    raf_start();
    rs_response down = {.method = "POST", .status = 503, .body = UNAVAILABLE, .times = -1};
    rs_push(raf_srv, &down);
    fake_clock clk = {RAF_T0};
    static log_sink sink = LOG_SINK_INIT;
    rec_events *e = recorder_with((rec_events_opts){.max_tries = 3}, &clk, &sink);
    json_object *obj = raf_parse(CLAIM_OBJ);
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Allocated", "x"), 0);
    json_object_put(obj);
    flush(e);
    cr_assert_eq(rs_request_count(raf_srv), 3);
    log_seen got = sink_get(&sink);
    cr_assert_eq(got.n, 1, "reported once, after the last try");
    cr_assert_eq(got.last_code, KC_ERR_SERVICE_UNAVAILABLE);
    cr_assert(strstr(got.last_message, "apiserver is shutting down"), "%s", got.last_message);
    cr_assert_eq(rec_events_cached(e), 0);
    free_recorder();
}

Test(rec_events, a_repeat_whose_patch_is_tried_again_keeps_its_count)
{
    /* The dedup decision is made once per emission: a PATCH tried twice
     * carries the same count, and the next repeat the one after it. */
    raf_start();
    rs_push_simple(raf_srv, 201, EVENT_OK);
    rs_push_simple(raf_srv, 503, UNAVAILABLE);
    rs_push_simple(raf_srv, 200, EVENT_OK);
    rs_push_simple(raf_srv, 200, EVENT_OK);
    fake_clock clk = {RAF_T0};
    static log_sink sink = LOG_SINK_INIT;
    rec_events *e = new_recorder(&clk, &sink, 0);
    json_object *obj = raf_parse(CLAIM_OBJ);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_WARNING, "PoolExhausted", "full"), 0);
        flush(e);
    }
    json_object_put(obj);
    cr_assert_eq(rs_request_count(raf_srv), 4);
    const int64_t want[] = {2, 2, 3};
    for (size_t i = 1; i < 4; i++) {
        cr_assert_str_eq(rs_request_at(raf_srv, i)->method, "PATCH");
        json_object *p = raf_body_json(rs_request_at(raf_srv, i));
        cr_assert_eq(raf_int_at(p, "count"), want[i - 1], "request %zu", i);
        json_object_put(p);
    }
    cr_assert_eq(sink_get(&sink).n, 0, "%s", sink_get(&sink).last_message);
    free_recorder();
}

Test(rec_events, free_stops_a_sender_waiting_to_try_again)
{
    /* The API server refuses every write: the sender waits 0.5, 1, 2, 4 s
     * between tries. free (0.2 s to drain) wakes it from its wait: it does
     * not sleep out the 4 s (a bound far from both), and reports once. */
    raf_start();
    rs_response down = {.method = "POST", .status = 503, .body = UNAVAILABLE, .times = -1};
    rs_push(raf_srv, &down);
    fake_clock clk = {RAF_T0};
    static log_sink sink = LOG_SINK_INIT;
    rec_events *e = recorder_with((rec_events_opts){.drain_timeout_ms = 200}, &clk, &sink);
    json_object *obj = raf_parse(CLAIM_OBJ);
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Allocated", "x"), 0);
    json_object_put(obj);
    cr_assert(rs_wait_requests(raf_srv, 4, FLUSH_MS)); /* the fourth try: 4 s to the next */
    double t0 = pv_clock_monotonic();
    free_recorder();
    double took = pv_clock_monotonic() - t0;
    cr_assert_lt(took, 2.5, "rec_events_free took %.3f s", took);
    cr_assert_eq(rs_request_count(raf_srv), 4);
    log_seen got = sink_get(&sink);
    cr_assert_eq(got.n, 1, "%s", got.last_message);
    cr_assert_eq(got.last_code, KC_ERR_SERVICE_UNAVAILABLE);
}

Test(rec_events, namespace_being_deleted_or_gone_is_reported_as_expected)
{
    raf_start();
    rs_push_simple(raf_srv, 403,
                   "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
                   "\"reason\":\"Forbidden\",\"message\":\"events \\\"a.1\\\" is forbidden: "
                   "unable to create new content in namespace ns because it is being "
                   "terminated\",\"code\":403}");
    rs_push_simple(raf_srv, 404,
                   "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
                   "\"reason\":\"NotFound\",\"message\":\"namespaces \\\"ns\\\" not found\","
                   "\"code\":404}");
    fake_clock clk = {RAF_T0};
    static log_sink sink = LOG_SINK_INIT;
    rec_events *e = new_recorder(&clk, &sink, 0);
    json_object *obj = raf_parse(CLAIM_OBJ);
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Released", "one"), 0);
    flush(e);
    log_seen got = sink_get(&sink);
    cr_assert_eq(got.n, 1);
    cr_assert_eq(got.last_code, KC_ERR_FORBIDDEN);
    cr_assert(got.last_expected, "terminating namespace: %s", got.last_message);
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Released", "two"), 0);
    flush(e);
    got = sink_get(&sink);
    cr_assert_eq(got.n, 2);
    cr_assert_eq(got.last_code, KC_ERR_NOT_FOUND);
    cr_assert(got.last_expected, "namespace gone: %s", got.last_message);
    json_object_put(obj);
    free_recorder();
}

Test(rec_events, cluster_scoped_object_events_go_to_default_namespace)
{
    raf_start();
    rs_push_simple(raf_srv, 201, EVENT_OK);
    fake_clock clk = {RAF_T0};
    rec_events *e = new_recorder(&clk, NULL, 0);
    /* a List item: no apiVersion/kind of its own */
    json_object *pool = raf_parse("{\"metadata\":{\"name\":\"demo-v4\",\"uid\":\"u-p\"}}");
    cr_assert_eq(rec_event(e, pool, "provisio.dev/v1alpha1", "IPPool", REC_EVENT_WARNING,
                           "InvalidSpec", "bad cidr"),
                 0);
    flush(e);
    const rs_request *r = rs_request_at(raf_srv, 0);
    cr_assert_str_eq(r->target, "/api/v1/namespaces/default/events");
    json_object *b = raf_body_json(r);
    cr_assert_str_eq(raf_str_at(b, "involvedObject.kind"), "IPPool");
    cr_assert_null(rec_obj_at(b, "involvedObject.namespace"));
    cr_assert_str_eq(raf_str_at(b, "type"), "Warning");
    json_object_put(b);
    json_object_put(pool);
    free_recorder();
}

Test(rec_events, dedup_cache_is_bounded_and_evicts_the_least_recent)
{
    raf_start();
    rs_response ok = {.status = 201, .body = EVENT_OK, .times = -1};
    rs_push(raf_srv, &ok);
    fake_clock clk = {RAF_T0};
    rec_events *e = new_recorder(&clk, NULL, 2);
    json_object *obj = raf_parse(CLAIM_OBJ);
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "R", "one"), 0);
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "R", "two"), 0);
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "R", "two"), 0); /* patch */
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "R", "three"), 0);
    flush(e);
    cr_assert_eq(rec_events_cached(e), 2);
    /* "one" was evicted: a new Event; "two" is still folded */
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "R", "one"), 0);
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "R", "three"), 0);
    flush(e);
    const char *want[] = {"POST", "POST", "PATCH", "POST", "POST", "PATCH"};
    cr_assert_eq(rs_request_count(raf_srv), 6);
    for (size_t i = 0; i < 6; i++)
        cr_assert_str_eq(rs_request_at(raf_srv, i)->method, want[i], "request %zu", i);
    json_object_put(obj);
    free_recorder();
}

Test(rec_events, long_object_names_are_cut_to_a_valid_event_name)
{
    raf_start();
    rs_push_simple(raf_srv, 201, EVENT_OK);
    fake_clock clk = {RAF_T0};
    rec_events *e = new_recorder(&clk, NULL, 0);
    /* On the heap and freed at once: rec_event_ref copies what it needs. */
    char *longname = malloc(254);
    cr_assert_not_null(longname);
    memset(longname, 'a', 253);
    longname[253] = '\0';
    longname[235] = '-'; /* the cut would end on '-' */
    rec_object_ref ref = {.api_version = "v1",
                          .kind = "PersistentVolumeClaim",
                          .namespace_ = "ns",
                          .name = longname,
                          .uid = "u-l"};
    cr_assert_eq(rec_event_ref(e, &ref, REC_EVENT_NORMAL, "Provisioned", "ok"), 0);
    memset(longname, 'z', 253);
    free(longname);
    flush(e);
    json_object *b = raf_body_json(rs_request_at(raf_srv, 0));
    const char *name = raf_str_at(b, "metadata.name");
    cr_assert_leq(strlen(name), 253);
    cr_assert_eq(strlen(name), 235 + 17);
    cr_assert_eq(name[234], 'a');
    cr_assert_eq(name[235], '.');
    json_object_put(b);
    free_recorder();
}

Test(rec_events, unusable_arguments_are_refused_and_queue_nothing)
{
    raf_start();
    fake_clock clk = {RAF_T0};
    rec_events *e = new_recorder(&clk, NULL, 0);
    rec_object_ref noname = {.api_version = "v1", .kind = "Pod", .namespace_ = "ns"};
    cr_assert_eq(rec_event_ref(e, &noname, REC_EVENT_NORMAL, "R", "m"), KC_ERR_INVALID_ARG);
    json_object *obj = raf_parse(CLAIM_OBJ);
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "", "m"), KC_ERR_INVALID_ARG);
    cr_assert_eq(rec_event(NULL, obj, NULL, NULL, REC_EVENT_NORMAL, "R", "m"), KC_ERR_INVALID_ARG);
    cr_assert_eq(rec_events_flush(e, 0), 0, "nothing was queued");
    cr_assert_eq(rec_events_flush(NULL, 0), KC_ERR_INVALID_ARG);
    free_recorder();
    cr_assert_eq(rs_request_count(raf_srv), 0);
    json_object_put(obj);
}

Test(rec_events, emitting_returns_at_once_while_the_server_is_slow)
{
    raf_start();
    /* The first write takes 5 s; a synchronous rec_event would wait for it. */
    rs_response slow = {.method = "POST", .status = 201, .body = EVENT_OK, .delay_ms = 5000};
    rs_response fast = {.method = "POST", .status = 201, .body = EVENT_OK, .times = -1};
    rs_push(raf_srv, &slow);
    rs_push(raf_srv, &fast);
    fake_clock clk = {RAF_T0};
    rec_events *e = new_recorder(&clk, NULL, 0);
    json_object *obj = raf_parse(CLAIM_OBJ);
    double t0 = pv_clock_monotonic();
    for (int i = 0; i < 3; i++)
        cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Tick", "%d", i), 0);
    double took = pv_clock_monotonic() - t0;
    cr_assert_lt(took, 2.5, "emitting 3 Events took %.3f s", took);
    /* Condition, not timing: the first write cannot have been answered yet. */
    cr_assert_eq(rec_events_flush(e, 0), KC_ERR_TIMEOUT);
    flush(e);
    cr_assert_eq(rs_request_count(raf_srv), 3);
    json_object_put(obj);
    free_recorder();
}

Test(rec_events, several_senders_write_in_parallel)
{
    raf_start();
    /* Every write takes 3 s. One sender would have one request at the server
     * until the first answer; four have four. */
    rs_response slow = {
        .method = "POST", .status = 201, .body = EVENT_OK, .delay_ms = 3000, .times = -1};
    rs_push(raf_srv, &slow);
    fake_clock clk = {RAF_T0};
    rec_events *e = recorder_with((rec_events_opts){.senders = 4}, &clk, NULL);
    json_object *obj = raf_parse(CLAIM_OBJ);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Tick", "%d", i), 0);
    /* Condition, not timing: all four arrive before any is answered. */
    cr_assert(rs_wait_requests(raf_srv, 4, 2500), "%zu requests in flight",
              rs_request_count(raf_srv));
    cr_assert_eq(rec_events_flush(e, 0), KC_ERR_TIMEOUT, "none can be answered yet");
    flush(e);
    cr_assert_eq(rs_request_count(raf_srv), 4);
    json_object_put(obj);
    free_recorder();
}

Test(rec_events, queue_full_drops_the_new_event_and_reports_once)
{
    raf_start();
    rs_response slow = {.method = "POST", .status = 201, .body = EVENT_OK, .delay_ms = 5000};
    rs_response fast = {.method = "POST", .status = 201, .body = EVENT_OK, .times = -1};
    rs_push(raf_srv, &slow);
    rs_push(raf_srv, &fast);
    fake_clock clk = {RAF_T0};
    static log_sink sink = LOG_SINK_INIT;
    rec_events *e = recorder_with((rec_events_opts){.queue_size = 2}, &clk, &sink);
    json_object *obj = raf_parse(CLAIM_OBJ);
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Tick", "0"), 0);
    /* Once the server has the first write, the sender is held for 5 s and the queue is empty. */
    cr_assert(rs_wait_requests(raf_srv, 1, FLUSH_MS));
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Tick", "1"), 0);
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Tick", "2"), 0);
    for (int i = 3; i < 6; i++)
        cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Tick", "%d", i),
                     REC_EVENTS_ERR_DROPPED, "event %d", i);
    cr_assert_eq(rec_events_dropped(e), 3);
    log_seen got = sink_get(&sink);
    cr_assert_eq(got.n, 1, "one report for the overflow, not one per Event");
    cr_assert_eq(got.last_code, REC_EVENTS_ERR_DROPPED);
    cr_assert_not(got.last_expected);
    cr_assert(strstr(got.last_message, "queue full"), "%s", got.last_message);

    flush(e);
    cr_assert_eq(rs_request_count(raf_srv), 3, "the queued Events are written, the dropped not");
    got = sink_get(&sink);
    cr_assert_eq(got.n, 2, "and how many were dropped once the queue is empty again");
    cr_assert(strstr(got.last_message, "3 Events dropped"), "%s", got.last_message);
    /* room again */
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Tick", "6"), 0);
    flush(e);
    cr_assert_eq(rs_request_count(raf_srv), 4);
    cr_assert_eq(sink_get(&sink).n, 2);
    json_object *b = raf_body_json(rs_request_at(raf_srv, 3));
    cr_assert_str_eq(raf_str_at(b, "message"), "6");
    json_object_put(b);
    json_object_put(obj);
    free_recorder();
}

Test(rec_events, free_writes_what_is_still_queued)
{
    raf_start();
    rs_response post = {
        .method = "POST", .status = 201, .body = EVENT_OK, .delay_ms = 200, .times = -1};
    rs_push(raf_srv, &post);
    fake_clock clk = {RAF_T0};
    static log_sink sink = LOG_SINK_INIT;
    rec_events *e = recorder_with((rec_events_opts){.drain_timeout_ms = 60000}, &clk, &sink);
    json_object *obj = raf_parse(CLAIM_OBJ);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Tick", "%d", i), 0);
    json_object_put(obj);
    /* 5 writes of 200 ms each: still queued when free starts. */
    cr_assert_eq(rec_events_flush(e, 0), KC_ERR_TIMEOUT);
    free_recorder();
    cr_assert_eq(rs_request_count(raf_srv), 5);
    for (size_t i = 0; i < 5; i++) {
        json_object *b = raf_body_json(rs_request_at(raf_srv, i));
        char want[8];
        snprintf(want, sizeof(want), "%zu", i);
        cr_assert_str_eq(raf_str_at(b, "message"), want, "in order");
        json_object_put(b);
    }
    cr_assert_eq(sink_get(&sink).n, 0, "nothing dropped or failed");
}

Test(rec_events, free_with_a_hung_server_returns_within_the_bound)
{
    /* Each write hangs until the client's 1 s request timeout. */
    raf_start_with_timeout(1000);
    rs_response hung = {
        .method = "POST", .status = 201, .body = EVENT_OK, .delay_ms = 60000, .times = -1};
    rs_push(raf_srv, &hung);
    fake_clock clk = {RAF_T0};
    static log_sink sink = LOG_SINK_INIT;
    rec_events *e = recorder_with((rec_events_opts){.drain_timeout_ms = 500}, &clk, &sink);
    json_object *obj = raf_parse(CLAIM_OBJ);
    for (int i = 0; i < 20; i++)
        cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Tick", "%d", i), 0);
    json_object_put(obj);
    cr_assert(rs_wait_requests(raf_srv, 1, FLUSH_MS));
    /* Writing them all would take 20 s; free gives 0.5 s plus the write in flight (<= 1 s). */
    double t0 = pv_clock_monotonic();
    free_recorder();
    double took = pv_clock_monotonic() - t0;
    cr_assert_lt(took, 10.0, "rec_events_free took %.3f s", took);
    cr_assert_lt(rs_request_count(raf_srv), 10);
    log_seen got = sink_get(&sink);
    cr_assert_eq(got.dropped, 1, "the rest dropped, reported once");
    cr_assert_geq(got.n, 2, "the timed-out write and the drop");
    cr_assert(strstr(got.last_message, "queued Events dropped"), "%s", got.last_message);
}

typedef struct emitter {
    rec_events *e;
    json_object *obj; /* shared read-only, as a store object would be */
    int id;
} emitter;

static void *emit_many(void *arg)
{
    emitter *em = arg;
    for (int i = 0; i < 5; i++)
        rec_event(em->e, em->obj, NULL, NULL, REC_EVENT_NORMAL, "Tick", "worker %d", em->id);
    return NULL;
}

Test(rec_events, concurrent_emitters_each_fold_into_their_own_event)
{
    raf_start();
    rs_response post = {.method = "POST", .status = 201, .body = EVENT_OK, .times = -1};
    rs_response patch = {.method = "PATCH", .status = 200, .body = EVENT_OK, .times = -1};
    rs_push(raf_srv, &post);
    rs_push(raf_srv, &patch);
    fake_clock clk = {RAF_T0};
    rec_events *e = new_recorder(&clk, NULL, 0);
    json_object *obj = raf_parse(CLAIM_OBJ);
    pthread_t th[4];
    emitter em[4];
    for (int i = 0; i < 4; i++) {
        em[i] = (emitter){e, obj, i};
        cr_assert_eq(pthread_create(&th[i], NULL, emit_many, &em[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    flush(e);
    cr_assert_eq(rs_request_count(raf_srv), 20);
    size_t posts = 0;
    for (size_t i = 0; i < 20; i++)
        posts += strcmp(rs_request_at(raf_srv, i)->method, "POST") == 0;
    cr_assert_eq(posts, 4, "one Event per worker message, the rest folded");
    cr_assert_eq(rec_events_cached(e), 4);
    json_object_put(obj);
    free_recorder();
}
