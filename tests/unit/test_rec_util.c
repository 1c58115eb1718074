/*
 * Unit tests of rec_util: conditions, finalizers, owner references, and the
 * change-only status and finalizer writes against the replay server
 * (tests/support/rec_api_fixture.h). rec_events: test_rec_events.c.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "rec_api_fixture.h"
#include "rec_util.h"

/*
 * Every suite has the same timeout: criterion 2.4.1's runner leaks a timer
 * record (LeakSanitizer reports 48 bytes in libcriterion) when suites of one
 * binary run with different timeouts under --jobs=2.
 */
TestSuite(rec_conditions, .timeout = 60);
TestSuite(rec_finalizers, .timeout = 60);
TestSuite(rec_owner, .timeout = 60);
TestSuite(rec_status, .fini = raf_stop, .timeout = 60);

/* ---- conditions ---------------------------------------------------------- */

Test(rec_conditions, format_time_is_rfc3339_utc_seconds_with_z)
{
    char buf[REC_TIME_STRLEN];
    cr_assert_str_eq(rec_format_time(RAF_T0, buf), "2025-01-02T15:04:05Z");
    cr_assert_str_eq(rec_format_time(0, buf), "1970-01-01T00:00:00Z");
}

Test(rec_conditions, new_condition_has_every_field_and_now_as_transition_time)
{
    json_object *st = json_object_new_object();
    bool changed = false;
    cr_assert_eq(rec_set_condition(st, "Ready", "False", "PoolNotFound", "no pool \"x\"", 3, RAF_T0,
                                   &changed),
                 0);
    cr_assert(changed);
    json_object *c = rec_get_condition(st, "Ready");
    cr_assert_not_null(c);
    cr_assert_str_eq(raf_str_at(c, "type"), "Ready");
    cr_assert_str_eq(raf_str_at(c, "status"), "False");
    cr_assert_str_eq(raf_str_at(c, "reason"), "PoolNotFound");
    cr_assert_str_eq(raf_str_at(c, "message"), "no pool \"x\"");
    cr_assert_str_eq(raf_str_at(c, "lastTransitionTime"), "2025-01-02T15:04:05Z");
    cr_assert_eq(raf_int_at(c, "observedGeneration"), 3);
    cr_assert_not(rec_condition_is_true(st, "Ready"));
    json_object_put(st);
}

Test(rec_conditions, same_status_keeps_transition_time_but_updates_reason_message_generation)
{
    json_object *st = json_object_new_object();
    cr_assert_eq(
        rec_set_condition(st, "Ready", "False", "PoolNotFound", "no pool", 1, RAF_T0, NULL), 0);
    bool changed = false;
    cr_assert_eq(rec_set_condition(st, "Ready", "False", "PoolExhausted", "pool is full", 2, RAF_T1,
                                   &changed),
                 0);
    cr_assert(changed);
    json_object *c = rec_get_condition(st, "Ready");
    cr_assert_str_eq(raf_str_at(c, "lastTransitionTime"), "2025-01-02T15:04:05Z");
    cr_assert_str_eq(raf_str_at(c, "reason"), "PoolExhausted");
    cr_assert_str_eq(raf_str_at(c, "message"), "pool is full");
    cr_assert_eq(raf_int_at(c, "observedGeneration"), 2);
    cr_assert_eq(json_object_array_length(rec_obj_at(st, "conditions")), 1);
    json_object_put(st);
}

Test(rec_conditions, flipped_status_moves_transition_time)
{
    json_object *st = json_object_new_object();
    cr_assert_eq(rec_set_condition(st, "Ready", "False", "PoolNotFound", "", 1, RAF_T0, NULL), 0);
    bool changed = false;
    cr_assert_eq(
        rec_set_condition(st, "Ready", "True", "Allocated", "10.0.0.5/24", 1, RAF_T1, &changed), 0);
    cr_assert(changed);
    cr_assert_str_eq(raf_str_at(rec_get_condition(st, "Ready"), "lastTransitionTime"),
                     "2025-01-02T16:04:05Z");
    cr_assert(rec_condition_is_true(st, "Ready"));
    json_object_put(st);
}

Test(rec_conditions, setting_the_same_condition_again_is_no_change)
{
    json_object *st = json_object_new_object();
    cr_assert_eq(rec_set_condition(st, "Ready", "True", "Allocated", "ok", 4, RAF_T0, NULL), 0);
    json_object *before = NULL;
    cr_assert_eq(json_object_deep_copy(st, &before, NULL), 0);
    bool changed = true;
    cr_assert_eq(rec_set_condition(st, "Ready", "True", "Allocated", "ok", 4, RAF_T1, &changed), 0);
    cr_assert_not(changed);
    cr_assert(json_object_equal(st, before), "status changed: %s", json_object_to_json_string(st));
    json_object_put(before);
    json_object_put(st);
}

Test(rec_conditions, several_types_are_kept_apart_and_removable)
{
    json_object *st = json_object_new_object();
    cr_assert_eq(rec_set_condition(st, "Ready", "True", "Allocated", "", 1, RAF_T0, NULL), 0);
    cr_assert_eq(rec_set_condition(st, "DevicesHealthy", "False", "DeviceUnhealthy", "fpga0", 1,
                                   RAF_T0, NULL),
                 0);
    cr_assert_str_eq(raf_str_at(rec_get_condition(st, "DevicesHealthy"), "status"), "False");
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
    cr_assert_eq(rec_set_condition(st, "Ready", "Yes", "Allocated", "", 1, RAF_T0, NULL),
                 KC_ERR_INVALID_ARG);
    cr_assert_eq(rec_set_condition(st, "Ready", "True", "not camel case", "", 1, RAF_T0, NULL),
                 KC_ERR_INVALID_ARG);
    cr_assert_eq(rec_set_condition(st, "Ready", "True", "Trailing:", "", 1, RAF_T0, NULL),
                 KC_ERR_INVALID_ARG);
    cr_assert_eq(rec_set_condition(st, "", "True", "Allocated", "", 1, RAF_T0, NULL),
                 KC_ERR_INVALID_ARG);
    cr_assert_eq(rec_set_condition(st, "Bad Type", "True", "Allocated", "", 1, RAF_T0, NULL),
                 KC_ERR_INVALID_ARG);
    cr_assert_eq(json_object_object_length(st), 0);
    /* domain/CamelCase types and reasons with ':' ',' '_' are fine. */
    cr_assert_eq(rec_set_condition(st, "provisio.dev/Synced", "Unknown", "Pending_Sync:a,b", NULL,
                                   0, RAF_T0, NULL),
                 0);
    cr_assert_str_eq(raf_str_at(rec_get_condition(st, "provisio.dev/Synced"), "message"), "");
    json_object_put(st);
}

/* ---- finalizers ---------------------------------------------------------- */

Test(rec_finalizers, add_is_idempotent_and_keeps_other_finalizers)
{
    json_object *o = raf_parse("{\"metadata\":{\"name\":\"a\",\"finalizers\":[\"other/x\"]}}");
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
    json_object *o = raf_parse("{\"metadata\":{\"name\":\"a\"}}");
    cr_assert_eq(rec_add_finalizer(o, REC_FINALIZER, NULL), 0);
    cr_assert(rec_has_finalizer(o, REC_FINALIZER));
    json_object_put(o);
}

Test(rec_finalizers, remove_is_idempotent_and_drops_an_emptied_list)
{
    json_object *o = raf_parse("{\"metadata\":{\"finalizers\":[\"provisio.dev/finalizer\"]}}");
    bool changed = false;
    cr_assert_eq(rec_remove_finalizer(o, REC_FINALIZER, &changed), 0);
    cr_assert(changed);
    cr_assert_null(rec_obj_at(o, "metadata.finalizers"));
    cr_assert_eq(rec_remove_finalizer(o, REC_FINALIZER, &changed), 0);
    cr_assert_not(changed);
    json_object_put(o);

    o = raf_parse("{\"metadata\":{\"finalizers\":[\"a/b\",\"provisio.dev/finalizer\"]}}");
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
        raf_parse("{\"apiVersion\":\"provisio.dev/v1alpha1\",\"kind\":\"Volume\",\"name\":\"data\","
                  "\"uid\":\"u-1\",\"controller\":true,\"blockOwnerDeletion\":true}");
    cr_assert(json_object_equal(r, want), "got %s", json_object_to_json_string(r));
    json_object_put(want);
    json_object_put(r);
    cr_assert_eq(rec_owner_ref_new("v1", "Volume", "data", NULL, &r), KC_ERR_INVALID_ARG);
    cr_assert_null(r);
}

Test(rec_owner, owner_ref_of_list_item_takes_the_given_kind)
{
    json_object *owner = raf_parse("{\"metadata\":{\"name\":\"data\",\"uid\":\"u-2\"}}");
    json_object *r = NULL;
    cr_assert_eq(rec_owner_ref_of(owner, NULL, NULL, &r), KC_ERR_INVALID_ARG);
    cr_assert_eq(rec_owner_ref_of(owner, "provisio.dev/v1alpha1", "Volume", &r), 0);
    cr_assert_str_eq(raf_str_at(r, "kind"), "Volume");
    cr_assert_str_eq(raf_str_at(r, "uid"), "u-2");
    json_object_put(r);
    json_object_put(owner);
}

Test(rec_owner, set_owner_ref_replaces_same_uid_and_refuses_a_second_controller)
{
    json_object *pv = raf_parse("{\"metadata\":{\"name\":\"pv\"}}");
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
    raf_start();
    json_object *cached = raf_parse(CACHED);
    json_object *st = raf_parse("{\"address\":\"10.0.0.5/24\",\"pool\":\"p\"}");
    bool written = true;
    json_object *out = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(rec_update_status(raf_cli, &CLAIM_A, cached, st, &out, &written, &err), 0);
    cr_assert_not(written);
    cr_assert_null(out);
    cr_assert_eq(rs_request_count(raf_srv), 0);
    /* the caller's status is not changed */
    cr_assert_null(rec_obj_at(st, "observedGeneration"));
    json_object_put(st);
    json_object_put(cached);
}

Test(rec_status, changed_status_is_put_to_the_status_subresource_with_resource_version)
{
    raf_start();
    rs_push_simple(raf_srv, 200, "{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"42\"}}");
    json_object *cached = raf_parse(CACHED);
    json_object *st = raf_parse("{\"pool\":\"p\",\"address\":\"10.0.0.6/24\"}");
    bool written = false;
    json_object *out = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(rec_update_status(raf_cli, &CLAIM_A, cached, st, &out, &written, &err), 0, "%s",
                 err.message);
    cr_assert(written);
    cr_assert_str_eq(raf_str_at(out, "metadata.resourceVersion"), "42");
    cr_assert_eq(rs_request_count(raf_srv), 1);
    const rs_request *r = rs_request_at(raf_srv, 0);
    cr_assert_str_eq(r->method, "PUT");
    cr_assert_str_eq(r->target, "/apis/provisio.dev/v1alpha1/namespaces/ns/ipclaims/a/status");
    json_object *b = raf_body_json(r);
    cr_assert_str_eq(raf_str_at(b, "metadata.resourceVersion"), "41");
    cr_assert_str_eq(raf_str_at(b, "status.address"), "10.0.0.6/24");
    cr_assert_eq(raf_int_at(b, "status.observedGeneration"), 3);
    cr_assert_str_eq(raf_str_at(b, "spec.pool"), "p");
    cr_assert_str_eq(raf_str_at(b, "apiVersion"), "provisio.dev/v1alpha1");
    cr_assert_str_eq(raf_str_at(b, "kind"), "IPClaim");
    cr_assert_str_eq(raf_str_at(b, "metadata.uid"), "u-a");
    cr_assert_eq(json_object_object_length(json_object_object_get(b, "status")), 3,
                 "the new status alone: %s", json_object_to_json_string(b));
    /* The cached object is not changed. */
    cr_assert_str_eq(raf_str_at(cached, "status.address"), "10.0.0.5/24");
    json_object_put(b);
    json_object_put(out);
    json_object_put(st);
    json_object_put(cached);
}

Test(rec_status, lent_write_sends_the_same_body_and_leaves_the_cached_object_whole)
{
    /* rec_update_status_lent borrows the cached object's members (and the
     * new status) for the body instead of copying them: the server must get
     * the same body, the cached object must come back unchanged and still
     * usable, and every reference taken must be dropped (ASan's leak check
     * in the sanitizer build). */
    raf_start();
    const char *answer = "{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"42\"}}";
    rs_push_simple(raf_srv, 200, answer);
    rs_push_simple(raf_srv, 200, answer);
    const char *status = "{\"pool\":\"p\",\"address\":\"10.0.0.6/24\"}";
    json_object *bodies[2];
    for (int lent = 0; lent < 2; lent++) {
        json_object *cached = raf_parse(CACHED);
        json_object *st = raf_parse(status);
        bool written = false;
        kc_error err = KC_ERROR_INIT;
        int rc = lent ? rec_update_status_lent(raf_cli, &CLAIM_A, cached, st, NULL, &written, &err)
                      : rec_update_status(raf_cli, &CLAIM_A, cached, st, NULL, &written, &err);
        cr_assert_eq(rc, 0, "%s", err.message);
        cr_assert(written);
        bodies[lent] = raf_body_json(rs_request_at(raf_srv, (size_t)lent));
        json_object *whole = raf_parse(CACHED);
        cr_assert(json_object_equal(cached, whole), "lent=%d: the cached object changed: %s", lent,
                  json_object_to_json_string(cached));
        json_object_put(whole);
        /* The lent status is the caller's still, observedGeneration added. */
        if (lent)
            cr_assert_eq(raf_int_at(st, "observedGeneration"), 3);
        json_object_put(st);
        json_object_put(cached);
    }
    cr_assert(json_object_equal(bodies[0], bodies[1]), "copied %s, lent %s",
              json_object_to_json_string(bodies[0]), json_object_to_json_string(bodies[1]));
    json_object_put(bodies[0]);
    json_object_put(bodies[1]);
}

Test(rec_status, new_generation_alone_is_a_change)
{
    raf_start();
    rs_push_simple(raf_srv, 200, "{}");
    json_object *cached = raf_parse(CACHED);
    json_object *meta = rec_obj_at(cached, "metadata");
    json_object_object_add(meta, "generation", json_object_new_int64(4));
    json_object *st = raf_parse("{\"pool\":\"p\",\"address\":\"10.0.0.5/24\"}");
    bool written = false;
    cr_assert_eq(rec_update_status(raf_cli, &CLAIM_A, cached, st, NULL, &written, NULL), 0);
    cr_assert(written);
    json_object *b = raf_body_json(rs_request_at(raf_srv, 0));
    cr_assert_eq(raf_int_at(b, "status.observedGeneration"), 4);
    json_object_put(b);
    json_object_put(st);
    json_object_put(cached);
}

Test(rec_status, stale_cache_conflict_bubbles_up)
{
    raf_start();
    rs_push_simple(raf_srv, 409,
                   "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
                   "\"message\":\"Operation cannot be fulfilled on ipclaims.provisio.dev "
                   "\\\"a\\\": the object has been modified\",\"reason\":\"Conflict\","
                   "\"code\":409}");
    json_object *cached = raf_parse(CACHED);
    json_object *st = raf_parse("{\"pool\":\"q\"}");
    kc_error err = KC_ERROR_INIT;
    bool written = false;
    cr_assert_eq(rec_update_status(raf_cli, &CLAIM_A, cached, st, NULL, &written, &err),
                 KC_ERR_CONFLICT);
    cr_assert(written);
    cr_assert_eq(rs_request_count(raf_srv), 1);
    kc_error_clear(&err);
    json_object_put(st);
    json_object_put(cached);
}

Test(rec_status, ensure_finalizer_sends_nothing_when_already_so)
{
    raf_start();
    json_object *cached = raf_parse("{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\","
                                    "\"resourceVersion\":\"7\",\"finalizers\":[\"provisio.dev/"
                                    "finalizer\"]}}");
    bool sent = true;
    cr_assert_eq(
        rec_ensure_finalizer(raf_cli, &CLAIM_A, cached, REC_FINALIZER, true, NULL, &sent, NULL), 0);
    cr_assert_not(sent);
    json_object *bare = raf_parse("{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"7\"}}");
    cr_assert_eq(
        rec_ensure_finalizer(raf_cli, &CLAIM_A, bare, REC_FINALIZER, false, NULL, &sent, NULL), 0);
    cr_assert_not(sent);
    cr_assert_eq(rs_request_count(raf_srv), 0);
    json_object_put(bare);
    json_object_put(cached);
}

Test(rec_status, ensure_finalizer_merge_patches_the_list_with_resource_version)
{
    raf_start();
    rs_push_simple(raf_srv, 200, "{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"8\"}}");
    rs_push_simple(raf_srv, 200, "{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"9\"}}");
    json_object *cached =
        raf_parse("{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\",\"resourceVersion\":\"7\","
                  "\"finalizers\":[\"other/keep\"]}}");
    bool sent = false;
    json_object *out = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(
        rec_ensure_finalizer(raf_cli, &CLAIM_A, cached, REC_FINALIZER, true, &out, &sent, &err), 0,
        "%s", err.message);
    cr_assert(sent);
    cr_assert_str_eq(raf_str_at(out, "metadata.resourceVersion"), "8");
    json_object_put(out);
    const rs_request *r = rs_request_at(raf_srv, 0);
    cr_assert_str_eq(r->method, "PATCH");
    cr_assert_str_eq(r->target, "/apis/provisio.dev/v1alpha1/namespaces/ns/ipclaims/a");
    cr_assert_str_eq(rs_header(r, "Content-Type"), "application/merge-patch+json");
    json_object *want = raf_parse("{\"metadata\":{\"resourceVersion\":\"7\",\"finalizers\":"
                                  "[\"other/keep\",\"provisio.dev/finalizer\"]}}");
    json_object *b = raf_body_json(r);
    cr_assert(json_object_equal(b, want), "patch %s", r->body);
    json_object_put(b);
    json_object_put(want);

    /* Removing the only finalizer sends null, which deletes the list. */
    json_object *mine =
        raf_parse("{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\",\"resourceVersion\":\"8\","
                  "\"finalizers\":[\"provisio.dev/finalizer\"]}}");
    cr_assert_eq(
        rec_ensure_finalizer(raf_cli, &CLAIM_A, mine, REC_FINALIZER, false, NULL, &sent, &err), 0,
        "%s", err.message);
    b = raf_body_json(rs_request_at(raf_srv, 1));
    want = raf_parse("{\"metadata\":{\"resourceVersion\":\"8\",\"finalizers\":null}}");
    cr_assert(json_object_equal(b, want), "patch %s", rs_request_at(raf_srv, 1)->body);
    json_object_put(b);
    json_object_put(want);
    json_object_put(mine);
    json_object_put(cached);
}
