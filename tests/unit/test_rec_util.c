/*
 * Unit tests of rec_util (conditions, finalizers, owner references,
 * change-only status and finalizer writes) and rec_events (Events, their
 * folding, the queue and its sender thread), the writes against the replay
 * server (tests/support).
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "kc_client.h"
#include "rec_events.h"
#include "rec_util.h"
#include "replay_server.h"
#include "pv_clock.h"

/* ---- fixture ------------------------------------------------------------- */

static rs_server *srv;
static kc_config *cfg;
static kc_client *cli;

static rec_events *live; /* the test's recorder: teardown frees it if the test did not */

/* request_timeout_ms: the client's bound on one request; 0 = its default. */
static void start_with_timeout(long request_timeout_ms)
{
    srv = rs_start(NULL);
    cr_assert_not_null(srv);
    rs_kubeconfig_opts ko = {.user_yaml = "    token: abc123\n"};
    char *yaml = rs_kubeconfig(srv, &ko);
    cr_assert_not_null(yaml);
    kc_error err = KC_ERROR_INIT;
    int rc = kc_config_from_yaml(yaml, strlen(yaml), NULL, &cfg, &err);
    free(yaml);
    cr_assert_eq(rc, KC_OK, "kc_config_from_yaml: %s", err.message);
    kc_client_opts co = {.max_retries = -1, .request_timeout_ms = request_timeout_ms};
    rc = kc_client_new(cfg, &co, &cli, &err);
    cr_assert_eq(rc, KC_OK, "kc_client_new: %s", err.message);
}

static void start(void)
{
    start_with_timeout(0);
}

static void teardown(void)
{
    /* Before the client: the recorder's sender may still be writing through it. */
    rec_events_free(live);
    live = NULL;
    kc_client_free(cli);
    kc_config_free(cfg);
    rs_stop(srv);
    cli = NULL;
    cfg = NULL;
    srv = NULL;
}

/*
 * Every suite has the same timeout: criterion 2.4.1's runner leaks a timer
 * record (LeakSanitizer reports 48 bytes in libcriterion) when suites of one
 * binary run with different timeouts under --jobs=2.
 */
TestSuite(rec_conditions, .timeout = 60);
TestSuite(rec_finalizers, .timeout = 60);
TestSuite(rec_owner, .timeout = 60);
TestSuite(rec_status, .fini = teardown, .timeout = 60);
TestSuite(rec_events, .fini = teardown, .timeout = 60);

static json_object *parse(const char *text)
{
    json_object *o = json_tokener_parse(text);
    cr_assert_not_null(o, "not JSON: %s", text);
    return o;
}

static json_object *body_json(const rs_request *r)
{
    cr_assert_not_null(r);
    return parse(r->body);
}

static const char *str_at(json_object *o, const char *path)
{
    const char *s = rec_obj_str(o, path);
    return s ? s : "(none)";
}

static int64_t int_at(json_object *o, const char *path)
{
    json_object *v = rec_obj_at(o, path);
    cr_assert_not_null(v, "no %s", path);
    return json_object_get_int64(v);
}

/* 2025-01-02T15:04:05Z and one hour later. */
#define T0 ((time_t)1735830245)
#define T1 ((time_t)(1735830245 + 3600))

/* ---- conditions ---------------------------------------------------------- */

Test(rec_conditions, format_time_is_rfc3339_utc_seconds_with_z)
{
    char buf[REC_TIME_STRLEN];
    cr_assert_str_eq(rec_format_time(T0, buf), "2025-01-02T15:04:05Z");
    cr_assert_str_eq(rec_format_time(0, buf), "1970-01-01T00:00:00Z");
}

Test(rec_conditions, new_condition_has_every_field_and_now_as_transition_time)
{
    json_object *st = json_object_new_object();
    bool changed = false;
    cr_assert_eq(
        rec_set_condition(st, "Ready", "False", "PoolNotFound", "no pool \"x\"", 3, T0, &changed),
        0);
    cr_assert(changed);
    json_object *c = rec_get_condition(st, "Ready");
    cr_assert_not_null(c);
    cr_assert_str_eq(str_at(c, "type"), "Ready");
    cr_assert_str_eq(str_at(c, "status"), "False");
    cr_assert_str_eq(str_at(c, "reason"), "PoolNotFound");
    cr_assert_str_eq(str_at(c, "message"), "no pool \"x\"");
    cr_assert_str_eq(str_at(c, "lastTransitionTime"), "2025-01-02T15:04:05Z");
    cr_assert_eq(int_at(c, "observedGeneration"), 3);
    cr_assert_not(rec_condition_is_true(st, "Ready"));
    json_object_put(st);
}

Test(rec_conditions, same_status_keeps_transition_time_but_updates_reason_message_generation)
{
    json_object *st = json_object_new_object();
    cr_assert_eq(rec_set_condition(st, "Ready", "False", "PoolNotFound", "no pool", 1, T0, NULL),
                 0);
    bool changed = false;
    cr_assert_eq(
        rec_set_condition(st, "Ready", "False", "PoolExhausted", "pool is full", 2, T1, &changed),
        0);
    cr_assert(changed);
    json_object *c = rec_get_condition(st, "Ready");
    cr_assert_str_eq(str_at(c, "lastTransitionTime"), "2025-01-02T15:04:05Z");
    cr_assert_str_eq(str_at(c, "reason"), "PoolExhausted");
    cr_assert_str_eq(str_at(c, "message"), "pool is full");
    cr_assert_eq(int_at(c, "observedGeneration"), 2);
    cr_assert_eq(json_object_array_length(rec_obj_at(st, "conditions")), 1);
    json_object_put(st);
}

Test(rec_conditions, flipped_status_moves_transition_time)
{
    json_object *st = json_object_new_object();
    cr_assert_eq(rec_set_condition(st, "Ready", "False", "PoolNotFound", "", 1, T0, NULL), 0);
    bool changed = false;
    cr_assert_eq(
        rec_set_condition(st, "Ready", "True", "Allocated", "10.0.0.5/24", 1, T1, &changed), 0);
    cr_assert(changed);
    cr_assert_str_eq(str_at(rec_get_condition(st, "Ready"), "lastTransitionTime"),
                     "2025-01-02T16:04:05Z");
    cr_assert(rec_condition_is_true(st, "Ready"));
    json_object_put(st);
}

Test(rec_conditions, setting_the_same_condition_again_is_no_change)
{
    json_object *st = json_object_new_object();
    cr_assert_eq(rec_set_condition(st, "Ready", "True", "Allocated", "ok", 4, T0, NULL), 0);
    json_object *before = NULL;
    cr_assert_eq(json_object_deep_copy(st, &before, NULL), 0);
    bool changed = true;
    cr_assert_eq(rec_set_condition(st, "Ready", "True", "Allocated", "ok", 4, T1, &changed), 0);
    cr_assert_not(changed);
    cr_assert(json_object_equal(st, before), "status changed: %s", json_object_to_json_string(st));
    json_object_put(before);
    json_object_put(st);
}

Test(rec_conditions, several_types_are_kept_apart_and_removable)
{
    json_object *st = json_object_new_object();
    cr_assert_eq(rec_set_condition(st, "Ready", "True", "Allocated", "", 1, T0, NULL), 0);
    cr_assert_eq(
        rec_set_condition(st, "DevicesHealthy", "False", "DeviceUnhealthy", "fpga0", 1, T0, NULL),
        0);
    cr_assert_str_eq(str_at(rec_get_condition(st, "DevicesHealthy"), "status"), "False");
    cr_assert(rec_condition_is_true(st, "Ready"));
    bool changed = false;
    cr_assert_eq(rec_remove_condition(st, "DevicesHealthy", &changed), 0);
    cr_assert(changed);
    cr_assert_null(rec_get_condition(st, "DevicesHealthy"));
    cr_assert_eq(rec_remove_condition(st, "DevicesHealthy", &changed), 0);
    cr_assert_not(changed);
    cr_assert_not_null(rec_get_condition(st, "Ready"));
    json_object_put(st);
}

Test(rec_conditions, invalid_status_reason_or_type_is_refused_and_changes_nothing)
{
    json_object *st = json_object_new_object();
    cr_assert_eq(rec_set_condition(st, "Ready", "Yes", "Allocated", "", 1, T0, NULL),
                 KC_ERR_INVALID_ARG);
    cr_assert_eq(rec_set_condition(st, "Ready", "True", "not camel case", "", 1, T0, NULL),
                 KC_ERR_INVALID_ARG);
    cr_assert_eq(rec_set_condition(st, "Ready", "True", "Trailing:", "", 1, T0, NULL),
                 KC_ERR_INVALID_ARG);
    cr_assert_eq(rec_set_condition(st, "", "True", "Allocated", "", 1, T0, NULL),
                 KC_ERR_INVALID_ARG);
    cr_assert_eq(rec_set_condition(st, "Bad Type", "True", "Allocated", "", 1, T0, NULL),
                 KC_ERR_INVALID_ARG);
    cr_assert_eq(json_object_object_length(st), 0);
    /* domain/CamelCase types and reasons with ':' ',' '_' are fine. */
    cr_assert_eq(rec_set_condition(st, "provisio.dev/Synced", "Unknown", "Pending_Sync:a,b", NULL,
                                   0, T0, NULL),
                 0);
    cr_assert_str_eq(str_at(rec_get_condition(st, "provisio.dev/Synced"), "message"), "");
    json_object_put(st);
}

/* ---- finalizers ---------------------------------------------------------- */

Test(rec_finalizers, add_is_idempotent_and_keeps_other_finalizers)
{
    json_object *o = parse("{\"metadata\":{\"name\":\"a\",\"finalizers\":[\"other/x\"]}}");
    bool changed = false;
    cr_assert_not(rec_has_finalizer(o, REC_FINALIZER));
    cr_assert_eq(rec_add_finalizer(o, REC_FINALIZER, &changed), 0);
    cr_assert(changed);
    cr_assert_eq(rec_add_finalizer(o, REC_FINALIZER, &changed), 0);
    cr_assert_not(changed);
    json_object *f = rec_obj_at(o, "metadata.finalizers");
    cr_assert_eq(json_object_array_length(f), 2);
    cr_assert_str_eq(json_object_get_string(json_object_array_get_idx(f, 0)), "other/x");
    cr_assert_str_eq(json_object_get_string(json_object_array_get_idx(f, 1)),
                     "provisio.dev/finalizer");
    cr_assert(rec_has_finalizer(o, REC_FINALIZER));
    json_object_put(o);
}

Test(rec_finalizers, add_creates_metadata_finalizers_when_missing)
{
    json_object *o = parse("{\"metadata\":{\"name\":\"a\"}}");
    cr_assert_eq(rec_add_finalizer(o, REC_FINALIZER, NULL), 0);
    cr_assert(rec_has_finalizer(o, REC_FINALIZER));
    json_object_put(o);
}

Test(rec_finalizers, remove_is_idempotent_and_drops_an_emptied_list)
{
    json_object *o = parse("{\"metadata\":{\"finalizers\":[\"provisio.dev/finalizer\"]}}");
    bool changed = false;
    cr_assert_eq(rec_remove_finalizer(o, REC_FINALIZER, &changed), 0);
    cr_assert(changed);
    cr_assert_null(rec_obj_at(o, "metadata.finalizers"));
    cr_assert_eq(rec_remove_finalizer(o, REC_FINALIZER, &changed), 0);
    cr_assert_not(changed);
    json_object_put(o);

    o = parse("{\"metadata\":{\"finalizers\":[\"a/b\",\"provisio.dev/finalizer\"]}}");
    cr_assert_eq(rec_remove_finalizer(o, REC_FINALIZER, &changed), 0);
    cr_assert(changed);
    cr_assert_eq(json_object_array_length(rec_obj_at(o, "metadata.finalizers")), 1);
    cr_assert(rec_has_finalizer(o, "a/b"));
    json_object_put(o);
}

/* ---- owner references ---------------------------------------------------- */

Test(rec_owner, controller_owner_ref_has_the_kubernetes_shape)
{
    json_object *r = NULL;
    cr_assert_eq(rec_owner_ref_new("provisio.dev/v1alpha1", "Volume", "data", "u-1", &r), 0);
    json_object *want =
        parse("{\"apiVersion\":\"provisio.dev/v1alpha1\",\"kind\":\"Volume\",\"name\":\"data\","
              "\"uid\":\"u-1\",\"controller\":true,\"blockOwnerDeletion\":true}");
    cr_assert(json_object_equal(r, want), "got %s", json_object_to_json_string(r));
    json_object_put(want);
    json_object_put(r);
    cr_assert_eq(rec_owner_ref_new("v1", "Volume", "data", NULL, &r), KC_ERR_INVALID_ARG);
    cr_assert_null(r);
}

Test(rec_owner, owner_ref_of_list_item_takes_the_given_kind)
{
    json_object *owner = parse("{\"metadata\":{\"name\":\"data\",\"uid\":\"u-2\"}}");
    json_object *r = NULL;
    cr_assert_eq(rec_owner_ref_of(owner, NULL, NULL, &r), KC_ERR_INVALID_ARG);
    cr_assert_eq(rec_owner_ref_of(owner, "provisio.dev/v1alpha1", "Volume", &r), 0);
    cr_assert_str_eq(str_at(r, "kind"), "Volume");
    cr_assert_str_eq(str_at(r, "uid"), "u-2");
    json_object_put(r);
    json_object_put(owner);
}

Test(rec_owner, set_owner_ref_replaces_same_uid_and_refuses_a_second_controller)
{
    json_object *pv = parse("{\"metadata\":{\"name\":\"pv\"}}");
    json_object *a = NULL, *b = NULL;
    cr_assert_eq(rec_owner_ref_new("provisio.dev/v1alpha1", "Volume", "x", "u-a", &a), 0);
    cr_assert_eq(rec_owner_ref_new("provisio.dev/v1alpha1", "Volume", "y", "u-b", &b), 0);
    cr_assert_eq(rec_set_owner_ref(pv, a), 0);
    cr_assert_eq(rec_set_owner_ref(pv, a), 0);
    cr_assert_eq(json_object_array_length(rec_obj_at(pv, "metadata.ownerReferences")), 1);
    cr_assert(rec_is_owned_by(pv, "u-a"));
    cr_assert_eq(rec_set_owner_ref(pv, b), KC_ERR_CONFLICT);
    cr_assert_not(rec_is_owned_by(pv, "u-b"));
    json_object_put(a);
    json_object_put(b);
    json_object_put(pv);
}

/* ---- status writes ------------------------------------------------------- */

static const kc_ref CLAIM_A = {.group = "provisio.dev",
                               .version = "v1alpha1",
                               .resource = "ipclaims",
                               .namespace_ = "ns",
                               .name = "a"};

static const char CACHED[] =
    "{\"apiVersion\":\"provisio.dev/v1alpha1\",\"kind\":\"IPClaim\",\"metadata\":{\"name\":\"a\","
    "\"namespace\":\"ns\",\"uid\":\"u-a\",\"resourceVersion\":\"41\",\"generation\":3},"
    "\"spec\":{\"pool\":\"p\"},\"status\":{\"observedGeneration\":3,\"pool\":\"p\","
    "\"address\":\"10.0.0.5/24\"}}";

Test(rec_status, equal_status_in_another_key_order_sends_nothing)
{
    start();
    json_object *cached = parse(CACHED);
    json_object *st = parse("{\"address\":\"10.0.0.5/24\",\"pool\":\"p\"}");
    bool written = true;
    json_object *out = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(rec_update_status(cli, &CLAIM_A, cached, st, &out, &written, &err), 0);
    cr_assert_not(written);
    cr_assert_null(out);
    cr_assert_eq(rs_request_count(srv), 0);
    /* the caller's status is not changed */
    cr_assert_null(rec_obj_at(st, "observedGeneration"));
    json_object_put(st);
    json_object_put(cached);
}

Test(rec_status, changed_status_is_put_to_the_status_subresource_with_resource_version)
{
    start();
    rs_push_simple(srv, 200, "{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"42\"}}");
    json_object *cached = parse(CACHED);
    json_object *st = parse("{\"pool\":\"p\",\"address\":\"10.0.0.6/24\"}");
    bool written = false;
    json_object *out = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(rec_update_status(cli, &CLAIM_A, cached, st, &out, &written, &err), 0, "%s",
                 err.message);
    cr_assert(written);
    cr_assert_str_eq(str_at(out, "metadata.resourceVersion"), "42");
    cr_assert_eq(rs_request_count(srv), 1);
    const rs_request *r = rs_request_at(srv, 0);
    cr_assert_str_eq(r->method, "PUT");
    cr_assert_str_eq(r->target, "/apis/provisio.dev/v1alpha1/namespaces/ns/ipclaims/a/status");
    json_object *b = body_json(r);
    cr_assert_str_eq(str_at(b, "metadata.resourceVersion"), "41");
    cr_assert_str_eq(str_at(b, "status.address"), "10.0.0.6/24");
    cr_assert_eq(int_at(b, "status.observedGeneration"), 3);
    cr_assert_str_eq(str_at(b, "spec.pool"), "p");
    json_object_put(b);
    json_object_put(out);
    json_object_put(st);
    json_object_put(cached);
}

Test(rec_status, new_generation_alone_is_a_change)
{
    start();
    rs_push_simple(srv, 200, "{}");
    json_object *cached = parse(CACHED);
    json_object *meta = rec_obj_at(cached, "metadata");
    json_object_object_add(meta, "generation", json_object_new_int64(4));
    json_object *st = parse("{\"pool\":\"p\",\"address\":\"10.0.0.5/24\"}");
    bool written = false;
    cr_assert_eq(rec_update_status(cli, &CLAIM_A, cached, st, NULL, &written, NULL), 0);
    cr_assert(written);
    json_object *b = body_json(rs_request_at(srv, 0));
    cr_assert_eq(int_at(b, "status.observedGeneration"), 4);
    json_object_put(b);
    json_object_put(st);
    json_object_put(cached);
}

Test(rec_status, stale_cache_conflict_bubbles_up)
{
    start();
    rs_push_simple(srv, 409,
                   "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
                   "\"message\":\"Operation cannot be fulfilled on ipclaims.provisio.dev "
                   "\\\"a\\\": the object has been modified\",\"reason\":\"Conflict\","
                   "\"code\":409}");
    json_object *cached = parse(CACHED);
    json_object *st = parse("{\"pool\":\"q\"}");
    kc_error err = KC_ERROR_INIT;
    bool written = false;
    cr_assert_eq(rec_update_status(cli, &CLAIM_A, cached, st, NULL, &written, &err),
                 KC_ERR_CONFLICT);
    cr_assert(written);
    cr_assert_eq(rs_request_count(srv), 1);
    kc_error_clear(&err);
    json_object_put(st);
    json_object_put(cached);
}

Test(rec_status, ensure_finalizer_sends_nothing_when_already_so)
{
    start();
    json_object *cached = parse("{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\","
                                "\"resourceVersion\":\"7\",\"finalizers\":[\"provisio.dev/"
                                "finalizer\"]}}");
    bool sent = true;
    cr_assert_eq(
        rec_ensure_finalizer(cli, &CLAIM_A, cached, REC_FINALIZER, true, NULL, &sent, NULL), 0);
    cr_assert_not(sent);
    json_object *bare = parse("{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"7\"}}");
    cr_assert_eq(rec_ensure_finalizer(cli, &CLAIM_A, bare, REC_FINALIZER, false, NULL, &sent, NULL),
                 0);
    cr_assert_not(sent);
    cr_assert_eq(rs_request_count(srv), 0);
    json_object_put(bare);
    json_object_put(cached);
}

Test(rec_status, ensure_finalizer_merge_patches_the_list_with_resource_version)
{
    start();
    rs_push_simple(srv, 200, "{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"8\"}}");
    rs_push_simple(srv, 200, "{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"9\"}}");
    json_object *cached =
        parse("{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\",\"resourceVersion\":\"7\","
              "\"finalizers\":[\"other/keep\"]}}");
    bool sent = false;
    json_object *out = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(
        rec_ensure_finalizer(cli, &CLAIM_A, cached, REC_FINALIZER, true, &out, &sent, &err), 0,
        "%s", err.message);
    cr_assert(sent);
    cr_assert_str_eq(str_at(out, "metadata.resourceVersion"), "8");
    json_object_put(out);
    const rs_request *r = rs_request_at(srv, 0);
    cr_assert_str_eq(r->method, "PATCH");
    cr_assert_str_eq(r->target, "/apis/provisio.dev/v1alpha1/namespaces/ns/ipclaims/a");
    cr_assert_str_eq(rs_header(r, "Content-Type"), "application/merge-patch+json");
    json_object *want = parse("{\"metadata\":{\"resourceVersion\":\"7\",\"finalizers\":"
                              "[\"other/keep\",\"provisio.dev/finalizer\"]}}");
    json_object *b = body_json(r);
    cr_assert(json_object_equal(b, want), "patch %s", r->body);
    json_object_put(b);
    json_object_put(want);

    /* Removing the only finalizer sends null, which deletes the list. */
    json_object *mine =
        parse("{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\",\"resourceVersion\":\"8\","
              "\"finalizers\":[\"provisio.dev/finalizer\"]}}");
    cr_assert_eq(rec_ensure_finalizer(cli, &CLAIM_A, mine, REC_FINALIZER, false, NULL, &sent, &err),
                 0, "%s", err.message);
    b = body_json(rs_request_at(srv, 1));
    want = parse("{\"metadata\":{\"resourceVersion\":\"8\",\"finalizers\":null}}");
    cr_assert(json_object_equal(b, want), "patch %s", rs_request_at(srv, 1)->body);
    json_object_put(b);
    json_object_put(want);
    json_object_put(mine);
    json_object_put(cached);
}

/* ---- events -------------------------------------------------------------- */

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
    cr_assert_eq(rec_events_new(cli, &o, &live), 0);
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
    start();
    rs_push_simple(srv, 201, EVENT_OK);
    fake_clock clk = {T0};
    rec_events *e = new_recorder(&clk, NULL, 0);
    json_object *obj = parse(CLAIM_OBJ);
    cr_assert_eq(
        rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Allocated", "address %s", "10.0.0.5/24"),
        0);
    /* Nothing of obj is kept: it may go (or change in the store) before the write. */
    json_object_put(obj);
    flush(e);
    const rs_request *r = rs_request_at(srv, 0);
    cr_assert_str_eq(r->method, "POST");
    cr_assert_str_eq(r->target, "/api/v1/namespaces/ns/events");
    json_object *b = body_json(r);
    const char *name = str_at(b, "metadata.name");
    cr_assert_eq(strlen(name), strlen("a.") + 16, "name %s", name);
    cr_assert_eq(strncmp(name, "a.", 2), 0);
    cr_assert_eq(strspn(name + 2, "0123456789abcdef"), 16);
    cr_assert_str_eq(str_at(b, "metadata.namespace"), "ns");
    cr_assert_str_eq(str_at(b, "involvedObject.kind"), "IPClaim");
    cr_assert_str_eq(str_at(b, "involvedObject.apiVersion"), "provisio.dev/v1alpha1");
    cr_assert_str_eq(str_at(b, "involvedObject.name"), "a");
    cr_assert_str_eq(str_at(b, "involvedObject.namespace"), "ns");
    cr_assert_str_eq(str_at(b, "involvedObject.uid"), "u-a");
    cr_assert_str_eq(str_at(b, "involvedObject.resourceVersion"), "41");
    cr_assert_str_eq(str_at(b, "reason"), "Allocated");
    cr_assert_str_eq(str_at(b, "message"), "address 10.0.0.5/24");
    cr_assert_str_eq(str_at(b, "type"), "Normal");
    cr_assert_str_eq(str_at(b, "source.component"), "provisio");
    cr_assert_str_eq(str_at(b, "reportingComponent"), "provisio.dev/operator");
    cr_assert_str_eq(str_at(b, "reportingInstance"), "pod-1_abc");
    cr_assert_str_eq(str_at(b, "firstTimestamp"), "2025-01-02T15:04:05Z");
    cr_assert_str_eq(str_at(b, "lastTimestamp"), "2025-01-02T15:04:05Z");
    cr_assert_eq(int_at(b, "count"), 1);
    json_object_put(b);
    free_recorder();
}

Test(rec_events, repeat_within_ten_minutes_patches_count_and_last_timestamp)
{
    start();
    rs_push_simple(srv, 201, EVENT_OK);
    rs_push_simple(srv, 200, EVENT_OK);
    rs_push_simple(srv, 200, EVENT_OK);
    fake_clock clk = {T0};
    rec_events *e = new_recorder(&clk, NULL, 0);
    json_object *obj = parse(CLAIM_OBJ);
    /* The time is the emission's, not the write's: no flush between the emissions. */
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_WARNING, "PoolExhausted", "full"), 0);
    clk.now = T0 + 300;
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_WARNING, "PoolExhausted", "full"), 0);
    clk.now = T0 + 600;
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_WARNING, "PoolExhausted", "full"), 0);
    flush(e);
    cr_assert_eq(rs_request_count(srv), 3);

    json_object *created = body_json(rs_request_at(srv, 0));
    const char *name = str_at(created, "metadata.name");
    for (size_t i = 1; i < 3; i++) {
        const rs_request *r = rs_request_at(srv, i);
        cr_assert_str_eq(r->method, "PATCH");
        char *want = NULL;
        cr_assert(asprintf(&want, "/api/v1/namespaces/ns/events/%s", name) > 0);
        cr_assert_str_eq(r->target, want);
        free(want);
        json_object *p = body_json(r);
        cr_assert_eq(int_at(p, "count"), (int64_t)i + 1);
        cr_assert_str_eq(str_at(p, "lastTimestamp"),
                         i == 1 ? "2025-01-02T15:09:05Z" : "2025-01-02T15:14:05Z");
        json_object_put(p);
    }
    json_object_put(created);
    json_object_put(obj);
    free_recorder();
}

Test(rec_events, identical_events_queued_while_the_first_is_written_still_patch)
{
    start();
    /* The POST is slow: the repeat is queued before the first Event exists. */
    rs_response post = {.method = "POST", .status = 201, .body = EVENT_OK, .delay_ms = 500};
    rs_response patch = {.method = "PATCH", .status = 200, .body = EVENT_OK, .times = -1};
    rs_push(srv, &post);
    rs_push(srv, &patch);
    fake_clock clk = {T0};
    rec_events *e = new_recorder(&clk, NULL, 0);
    json_object *obj = parse(CLAIM_OBJ);
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Allocated", "10.0.0.5"), 0);
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Allocated", "10.0.0.5"), 0);
    flush(e);
    cr_assert_eq(rs_request_count(srv), 2);
    cr_assert_str_eq(rs_request_at(srv, 0)->method, "POST");
    cr_assert_str_eq(rs_request_at(srv, 1)->method, "PATCH");
    json_object *created = body_json(rs_request_at(srv, 0));
    char *want = NULL;
    cr_assert(asprintf(&want, "/api/v1/namespaces/ns/events/%s", str_at(created, "metadata.name")) >
              0);
    cr_assert_str_eq(rs_request_at(srv, 1)->target, want);
    json_object *p = body_json(rs_request_at(srv, 1));
    cr_assert_eq(int_at(p, "count"), 2);
    cr_assert_eq(rec_events_cached(e), 1);
    free(want);
    json_object_put(p);
    json_object_put(created);
    json_object_put(obj);
    free_recorder();
}

Test(rec_events, another_message_or_an_expired_window_creates_a_new_event)
{
    start();
    rs_response created = {.method = "POST", .status = 201, .body = EVENT_OK, .times = -1};
    rs_push(srv, &created);
    fake_clock clk = {T0};
    rec_events *e = new_recorder(&clk, NULL, 0);
    json_object *obj = parse(CLAIM_OBJ);
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Allocated", "10.0.0.5"), 0);
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Allocated", "10.0.0.6"), 0);
    clk.now = T0 + 601;
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Allocated", "10.0.0.5"), 0);
    flush(e);
    cr_assert_eq(rs_request_count(srv), 3);
    for (size_t i = 0; i < 3; i++)
        cr_assert_str_eq(rs_request_at(srv, i)->method, "POST");
    json_object *a = body_json(rs_request_at(srv, 0));
    json_object *c = body_json(rs_request_at(srv, 2));
    cr_assert_str_neq(str_at(a, "metadata.name"), str_at(c, "metadata.name"));
    cr_assert_eq(int_at(c, "count"), 1);
    json_object_put(a);
    json_object_put(c);
    json_object_put(obj);
    free_recorder();
}

Test(rec_events, patch_of_an_expired_event_falls_back_to_create)
{
    start();
    rs_push_simple(srv, 201, EVENT_OK);
    rs_push_simple(srv, 404,
                   "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
                   "\"reason\":\"NotFound\",\"code\":404}");
    rs_push_simple(srv, 201, EVENT_OK);
    fake_clock clk = {T0};
    static log_sink sink = LOG_SINK_INIT;
    rec_events *e = new_recorder(&clk, &sink, 0);
    json_object *obj = parse(CLAIM_OBJ);
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Allocated", "x"), 0);
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Allocated", "x"), 0);
    flush(e);
    cr_assert_eq(rs_request_count(srv), 3);
    cr_assert_str_eq(rs_request_at(srv, 1)->method, "PATCH");
    cr_assert_str_eq(rs_request_at(srv, 2)->method, "POST");
    json_object *b = body_json(rs_request_at(srv, 2));
    cr_assert_eq(int_at(b, "count"), 1);
    cr_assert_eq(sink_get(&sink).n, 0, "a PATCH 404 is not a failure");
    json_object_put(b);
    json_object_put(obj);
    free_recorder();
}

Test(rec_events, failure_is_logged_not_fatal_and_forgotten)
{
    start();
    rs_push_simple(srv, 403,
                   "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
                   "\"reason\":\"Forbidden\",\"message\":\"events is forbidden\",\"code\":403}");
    rs_push_simple(srv, 201, EVENT_OK);
    fake_clock clk = {T0};
    static log_sink sink = LOG_SINK_INIT;
    rec_events *e = new_recorder(&clk, &sink, 0);
    json_object *obj = parse(CLAIM_OBJ);
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
    cr_assert_str_eq(rs_request_at(srv, 1)->method, "POST");
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
    start();
    rs_push_simple(srv, 503, UNAVAILABLE);
    rs_push_simple(srv, 503, UNAVAILABLE);
    rs_push_simple(srv, 201, EVENT_OK);
    rs_push_simple(srv, 201, EVENT_OK);
    fake_clock clk = {T0};
    static log_sink sink = LOG_SINK_INIT;
    rec_events *e = new_recorder(&clk, &sink, 0);
    json_object *obj = parse(CLAIM_OBJ);
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Allocated", "first"), 0);
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Released", "second"), 0);
    json_object_put(obj);
    flush(e);
    cr_assert_eq(rs_request_count(srv), 4);
    for (size_t i = 0; i < 3; i++) {
        json_object *b = body_json(rs_request_at(srv, i));
        cr_assert_str_eq(str_at(b, "message"), "first", "try %zu", i + 1);
        json_object_put(b);
    }
    json_object *b = body_json(rs_request_at(srv, 3));
    cr_assert_str_eq(str_at(b, "message"), "second");
    json_object_put(b);
    cr_assert_eq(sink_get(&sink).n, 0, "%s", sink_get(&sink).last_message);
    cr_assert_eq(rec_events_cached(e), 2);
    free_recorder();
}

Test(rec_events, transient_failures_are_tried_max_tries_times_then_reported)
{
    start();
    rs_response down = {.method = "POST", .status = 503, .body = UNAVAILABLE, .times = -1};
    rs_push(srv, &down);
    fake_clock clk = {T0};
    static log_sink sink = LOG_SINK_INIT;
    rec_events *e = recorder_with((rec_events_opts){.max_tries = 3}, &clk, &sink);
    json_object *obj = parse(CLAIM_OBJ);
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Allocated", "x"), 0);
    json_object_put(obj);
    flush(e);
    cr_assert_eq(rs_request_count(srv), 3);
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
    start();
    rs_push_simple(srv, 201, EVENT_OK);
    rs_push_simple(srv, 503, UNAVAILABLE);
    rs_push_simple(srv, 200, EVENT_OK);
    rs_push_simple(srv, 200, EVENT_OK);
    fake_clock clk = {T0};
    static log_sink sink = LOG_SINK_INIT;
    rec_events *e = new_recorder(&clk, &sink, 0);
    json_object *obj = parse(CLAIM_OBJ);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_WARNING, "PoolExhausted", "full"), 0);
        flush(e);
    }
    json_object_put(obj);
    cr_assert_eq(rs_request_count(srv), 4);
    const int64_t want[] = {2, 2, 3};
    for (size_t i = 1; i < 4; i++) {
        cr_assert_str_eq(rs_request_at(srv, i)->method, "PATCH");
        json_object *p = body_json(rs_request_at(srv, i));
        cr_assert_eq(int_at(p, "count"), want[i - 1], "request %zu", i);
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
    start();
    rs_response down = {.method = "POST", .status = 503, .body = UNAVAILABLE, .times = -1};
    rs_push(srv, &down);
    fake_clock clk = {T0};
    static log_sink sink = LOG_SINK_INIT;
    rec_events *e = recorder_with((rec_events_opts){.drain_timeout_ms = 200}, &clk, &sink);
    json_object *obj = parse(CLAIM_OBJ);
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Allocated", "x"), 0);
    json_object_put(obj);
    cr_assert(rs_wait_requests(srv, 4, FLUSH_MS)); /* the fourth try: 4 s to the next */
    double t0 = pv_clock_monotonic();
    free_recorder();
    double took = pv_clock_monotonic() - t0;
    cr_assert_lt(took, 2.5, "rec_events_free took %.3f s", took);
    cr_assert_eq(rs_request_count(srv), 4);
    log_seen got = sink_get(&sink);
    cr_assert_eq(got.n, 1, "%s", got.last_message);
    cr_assert_eq(got.last_code, KC_ERR_SERVICE_UNAVAILABLE);
}

Test(rec_events, namespace_being_deleted_or_gone_is_reported_as_expected)
{
    start();
    rs_push_simple(srv, 403,
                   "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
                   "\"reason\":\"Forbidden\",\"message\":\"events \\\"a.1\\\" is forbidden: "
                   "unable to create new content in namespace ns because it is being "
                   "terminated\",\"code\":403}");
    rs_push_simple(srv, 404,
                   "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
                   "\"reason\":\"NotFound\",\"message\":\"namespaces \\\"ns\\\" not found\","
                   "\"code\":404}");
    fake_clock clk = {T0};
    static log_sink sink = LOG_SINK_INIT;
    rec_events *e = new_recorder(&clk, &sink, 0);
    json_object *obj = parse(CLAIM_OBJ);
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
    start();
    rs_push_simple(srv, 201, EVENT_OK);
    fake_clock clk = {T0};
    rec_events *e = new_recorder(&clk, NULL, 0);
    /* a List item: no apiVersion/kind of its own */
    json_object *pool = parse("{\"metadata\":{\"name\":\"demo-v4\",\"uid\":\"u-p\"}}");
    cr_assert_eq(rec_event(e, pool, "provisio.dev/v1alpha1", "IPPool", REC_EVENT_WARNING,
                           "InvalidSpec", "bad cidr"),
                 0);
    flush(e);
    const rs_request *r = rs_request_at(srv, 0);
    cr_assert_str_eq(r->target, "/api/v1/namespaces/default/events");
    json_object *b = body_json(r);
    cr_assert_str_eq(str_at(b, "involvedObject.kind"), "IPPool");
    cr_assert_null(rec_obj_at(b, "involvedObject.namespace"));
    cr_assert_str_eq(str_at(b, "type"), "Warning");
    json_object_put(b);
    json_object_put(pool);
    free_recorder();
}

Test(rec_events, dedup_cache_is_bounded_and_evicts_the_least_recent)
{
    start();
    rs_response ok = {.status = 201, .body = EVENT_OK, .times = -1};
    rs_push(srv, &ok);
    fake_clock clk = {T0};
    rec_events *e = new_recorder(&clk, NULL, 2);
    json_object *obj = parse(CLAIM_OBJ);
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
    cr_assert_eq(rs_request_count(srv), 6);
    for (size_t i = 0; i < 6; i++)
        cr_assert_str_eq(rs_request_at(srv, i)->method, want[i], "request %zu", i);
    json_object_put(obj);
    free_recorder();
}

Test(rec_events, long_object_names_are_cut_to_a_valid_event_name)
{
    start();
    rs_push_simple(srv, 201, EVENT_OK);
    fake_clock clk = {T0};
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
    json_object *b = body_json(rs_request_at(srv, 0));
    const char *name = str_at(b, "metadata.name");
    cr_assert_leq(strlen(name), 253);
    cr_assert_eq(strlen(name), 235 + 17);
    cr_assert_eq(name[234], 'a');
    cr_assert_eq(name[235], '.');
    json_object_put(b);
    free_recorder();
}

Test(rec_events, unusable_arguments_are_refused_and_queue_nothing)
{
    start();
    fake_clock clk = {T0};
    rec_events *e = new_recorder(&clk, NULL, 0);
    rec_object_ref noname = {.api_version = "v1", .kind = "Pod", .namespace_ = "ns"};
    cr_assert_eq(rec_event_ref(e, &noname, REC_EVENT_NORMAL, "R", "m"), KC_ERR_INVALID_ARG);
    json_object *obj = parse(CLAIM_OBJ);
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "", "m"), KC_ERR_INVALID_ARG);
    cr_assert_eq(rec_event(NULL, obj, NULL, NULL, REC_EVENT_NORMAL, "R", "m"), KC_ERR_INVALID_ARG);
    cr_assert_eq(rec_events_flush(e, 0), 0, "nothing was queued");
    cr_assert_eq(rec_events_flush(NULL, 0), KC_ERR_INVALID_ARG);
    free_recorder();
    cr_assert_eq(rs_request_count(srv), 0);
    json_object_put(obj);
}

Test(rec_events, emitting_returns_at_once_while_the_server_is_slow)
{
    start();
    /* The first write takes 5 s; a synchronous rec_event would wait for it. */
    rs_response slow = {.method = "POST", .status = 201, .body = EVENT_OK, .delay_ms = 5000};
    rs_response fast = {.method = "POST", .status = 201, .body = EVENT_OK, .times = -1};
    rs_push(srv, &slow);
    rs_push(srv, &fast);
    fake_clock clk = {T0};
    rec_events *e = new_recorder(&clk, NULL, 0);
    json_object *obj = parse(CLAIM_OBJ);
    double t0 = pv_clock_monotonic();
    for (int i = 0; i < 3; i++)
        cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Tick", "%d", i), 0);
    double took = pv_clock_monotonic() - t0;
    cr_assert_lt(took, 2.5, "emitting 3 Events took %.3f s", took);
    /* Condition, not timing: the first write cannot have been answered yet. */
    cr_assert_eq(rec_events_flush(e, 0), KC_ERR_TIMEOUT);
    flush(e);
    cr_assert_eq(rs_request_count(srv), 3);
    json_object_put(obj);
    free_recorder();
}

Test(rec_events, several_senders_write_in_parallel)
{
    start();
    /* Every write takes 3 s. One sender would have one request at the server
     * until the first answer; four have four. */
    rs_response slow = {
        .method = "POST", .status = 201, .body = EVENT_OK, .delay_ms = 3000, .times = -1};
    rs_push(srv, &slow);
    fake_clock clk = {T0};
    rec_events *e = recorder_with((rec_events_opts){.senders = 4}, &clk, NULL);
    json_object *obj = parse(CLAIM_OBJ);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Tick", "%d", i), 0);
    /* Condition, not timing: all four arrive before any is answered. */
    cr_assert(rs_wait_requests(srv, 4, 2500), "%zu requests in flight", rs_request_count(srv));
    cr_assert_eq(rec_events_flush(e, 0), KC_ERR_TIMEOUT, "none can be answered yet");
    flush(e);
    cr_assert_eq(rs_request_count(srv), 4);
    json_object_put(obj);
    free_recorder();
}

Test(rec_events, queue_full_drops_the_new_event_and_reports_once)
{
    start();
    rs_response slow = {.method = "POST", .status = 201, .body = EVENT_OK, .delay_ms = 5000};
    rs_response fast = {.method = "POST", .status = 201, .body = EVENT_OK, .times = -1};
    rs_push(srv, &slow);
    rs_push(srv, &fast);
    fake_clock clk = {T0};
    static log_sink sink = LOG_SINK_INIT;
    rec_events *e = recorder_with((rec_events_opts){.queue_size = 2}, &clk, &sink);
    json_object *obj = parse(CLAIM_OBJ);
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Tick", "0"), 0);
    /* Once the server has the first write, the sender is held for 5 s and the queue is empty. */
    cr_assert(rs_wait_requests(srv, 1, FLUSH_MS));
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
    cr_assert_eq(rs_request_count(srv), 3, "the queued Events are written, the dropped not");
    got = sink_get(&sink);
    cr_assert_eq(got.n, 2, "and how many were dropped once the queue is empty again");
    cr_assert(strstr(got.last_message, "3 Events dropped"), "%s", got.last_message);
    /* room again */
    cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Tick", "6"), 0);
    flush(e);
    cr_assert_eq(rs_request_count(srv), 4);
    cr_assert_eq(sink_get(&sink).n, 2);
    json_object *b = body_json(rs_request_at(srv, 3));
    cr_assert_str_eq(str_at(b, "message"), "6");
    json_object_put(b);
    json_object_put(obj);
    free_recorder();
}

Test(rec_events, free_writes_what_is_still_queued)
{
    start();
    rs_response post = {
        .method = "POST", .status = 201, .body = EVENT_OK, .delay_ms = 200, .times = -1};
    rs_push(srv, &post);
    fake_clock clk = {T0};
    static log_sink sink = LOG_SINK_INIT;
    rec_events *e = recorder_with((rec_events_opts){.drain_timeout_ms = 60000}, &clk, &sink);
    json_object *obj = parse(CLAIM_OBJ);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Tick", "%d", i), 0);
    json_object_put(obj);
    /* 5 writes of 200 ms each: still queued when free starts. */
    cr_assert_eq(rec_events_flush(e, 0), KC_ERR_TIMEOUT);
    free_recorder();
    cr_assert_eq(rs_request_count(srv), 5);
    for (size_t i = 0; i < 5; i++) {
        json_object *b = body_json(rs_request_at(srv, i));
        char want[8];
        snprintf(want, sizeof(want), "%zu", i);
        cr_assert_str_eq(str_at(b, "message"), want, "in order");
        json_object_put(b);
    }
    cr_assert_eq(sink_get(&sink).n, 0, "nothing dropped or failed");
}

Test(rec_events, free_with_a_hung_server_returns_within_the_bound)
{
    /* Each write hangs until the client's 1 s request timeout. */
    start_with_timeout(1000);
    rs_response hung = {
        .method = "POST", .status = 201, .body = EVENT_OK, .delay_ms = 60000, .times = -1};
    rs_push(srv, &hung);
    fake_clock clk = {T0};
    static log_sink sink = LOG_SINK_INIT;
    rec_events *e = recorder_with((rec_events_opts){.drain_timeout_ms = 500}, &clk, &sink);
    json_object *obj = parse(CLAIM_OBJ);
    for (int i = 0; i < 20; i++)
        cr_assert_eq(rec_event(e, obj, NULL, NULL, REC_EVENT_NORMAL, "Tick", "%d", i), 0);
    json_object_put(obj);
    cr_assert(rs_wait_requests(srv, 1, FLUSH_MS));
    /* Writing them all would take 20 s; free gives 0.5 s plus the write in flight (<= 1 s). */
    double t0 = pv_clock_monotonic();
    free_recorder();
    double took = pv_clock_monotonic() - t0;
    cr_assert_lt(took, 10.0, "rec_events_free took %.3f s", took);
    cr_assert_lt(rs_request_count(srv), 10);
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
    start();
    rs_response post = {.method = "POST", .status = 201, .body = EVENT_OK, .times = -1};
    rs_response patch = {.method = "PATCH", .status = 200, .body = EVENT_OK, .times = -1};
    rs_push(srv, &post);
    rs_push(srv, &patch);
    fake_clock clk = {T0};
    rec_events *e = new_recorder(&clk, NULL, 0);
    json_object *obj = parse(CLAIM_OBJ);
    pthread_t th[4];
    emitter em[4];
    for (int i = 0; i < 4; i++) {
        em[i] = (emitter){e, obj, i};
        cr_assert_eq(pthread_create(&th[i], NULL, emit_many, &em[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    flush(e);
    cr_assert_eq(rs_request_count(srv), 20);
    size_t posts = 0;
    for (size_t i = 0; i < 20; i++)
        posts += strcmp(rs_request_at(srv, i)->method, "POST") == 0;
    cr_assert_eq(posts, 4, "one Event per worker message, the rest folded");
    cr_assert_eq(rec_events_cached(e), 4);
    json_object_put(obj);
    free_recorder();
}
