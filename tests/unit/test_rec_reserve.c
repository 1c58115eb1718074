/*
 * Unit tests of rec_reserve, the allocation lock, against the replay server:
 * the requests it makes (POST, GET, DELETE with preconditions) and what it
 * concludes from each answer.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "kc_client.h"
#include "rec_reserve.h"
#include "rec_util.h"
#include "replay_server.h"

/* ---- fixture ------------------------------------------------------------- */

static rs_server *srv;
static kc_config *cfg;
static kc_client *cli;

static void start(void)
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
    kc_client_opts co = {.max_retries = -1};
    rc = kc_client_new(cfg, &co, &cli, &err);
    cr_assert_eq(rc, KC_OK, "kc_client_new: %s", err.message);
}

static void teardown(void)
{
    kc_client_free(cli);
    kc_config_free(cfg);
    rs_stop(srv);
    cli = NULL;
    cfg = NULL;
    srv = NULL;
}

/* One timeout for every suite (see test_rec_util.c: criterion leaks otherwise). */
TestSuite(rec_reserve_name, .timeout = 60);
TestSuite(rec_reserve, .fini = teardown, .timeout = 60);

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

static void assert_request(size_t i, const char *method, const char *target)
{
    const rs_request *r = rs_request_at(srv, i);
    cr_assert_not_null(r, "no request %zu", i);
    cr_assert_str_eq(r->method, method, "request %zu", i);
    cr_assert_str_eq(r->target, target, "request %zu", i);
}

#define RESV "/apis/provisio.dev/v1alpha1/reservations"
#define RESV_A RESV "/ippool.demo-v4.10-20-0-5"

static const rec_claim_ref CLAIM = {
    .kind = "IPClaim", .namespace_ = "ns", .name = "a", .uid = "uid-a"};

/* A Reservation as the server returns it. */
static char *reservation(const char *name, const char *uid, const char *rv, const char *claim_kind,
                         const char *claim_name, const char *claim_uid)
{
    char *s = NULL;
    cr_assert(asprintf(&s,
                       "{\"apiVersion\":\"provisio.dev/v1alpha1\",\"kind\":\"Reservation\","
                       "\"metadata\":{\"name\":\"%s\",\"uid\":\"%s\",\"resourceVersion\":\"%s\"},"
                       "\"spec\":{\"pool\":{\"kind\":\"IPPool\",\"name\":\"demo-v4\"},"
                       "\"slot\":\"10.20.0.5\",\"claim\":{\"kind\":\"%s\",\"namespace\":\"ns\","
                       "\"name\":\"%s\",\"uid\":\"%s\"}}}",
                       name, uid, rv, claim_kind, claim_name, claim_uid) > 0);
    return s;
}

static void push(int status, const char *body)
{
    rs_push_simple(srv, status, body);
}

static void push_owned(int status, char *body)
{
    rs_push_simple(srv, status, body);
    free(body);
}

static const char ALREADY_EXISTS[] =
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"message\":"
    "\"reservations.provisio.dev \\\"ippool.demo-v4.10-20-0-5\\\" already exists\","
    "\"reason\":\"AlreadyExists\",\"details\":{\"name\":\"ippool.demo-v4.10-20-0-5\","
    "\"group\":\"provisio.dev\",\"kind\":\"reservations\"},\"code\":409}";
static const char NOT_FOUND[] = "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":"
                                "\"Failure\",\"reason\":\"NotFound\",\"code\":404}";
static const char PRECONDITION_CONFLICT[] =
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"message\":"
    "\"Precondition failed: UID in precondition: r-1, UID in object meta: r-2\","
    "\"reason\":\"Conflict\",\"code\":409}";
static const char DELETED[] = "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":"
                              "\"Success\"}";

/* ---- names --------------------------------------------------------------- */

Test(rec_reserve_name, names_follow_the_crd_rule_for_every_pool_kind)
{
    char *name = NULL, *canon = NULL;
    cr_assert_eq(rec_reserve_name("DevicePool", "demo-fpga", "fpga0", &name, &canon), 0);
    cr_assert_str_eq(name, "devicepool.demo-fpga.fpga0");
    cr_assert_str_eq(canon, "fpga0");
    free(name);
    free(canon);
    cr_assert_eq(rec_reserve_name("StoragePool", "local", "6f1c1b9e-0d7a-4c39-9f7e-2a1b3c4d5e6f",
                                  &name, NULL),
                 0);
    cr_assert_str_eq(name, "storagepool.local.6f1c1b9e-0d7a-4c39-9f7e-2a1b3c4d5e6f");
    free(name);
}

Test(rec_reserve_name, bad_kinds_pools_and_slots_are_refused)
{
    char *name = NULL;
    cr_assert_eq(rec_reserve_name("Pool", "p", "x", &name, NULL), KC_ERR_INVALID_ARG);
    cr_assert_eq(rec_reserve_name("DevicePool", "a.b", "fpga0", &name, NULL), KC_ERR_INVALID_ARG);
    /* Addresses are the network domain's to name (ip_names_slot). */
    cr_assert_eq(rec_reserve_name("IPPool", "p", "10.0.0.1", &name, NULL), KC_ERR_INVALID_ARG);
    cr_assert_eq(rec_reserve_name("DevicePool", "p", "FPGA0", &name, NULL), KC_ERR_INVALID_ARG);
    cr_assert_eq(rec_reserve_name("DevicePool", "p", "-x", &name, NULL), KC_ERR_INVALID_ARG);
    cr_assert_null(name);
}

Test(rec_reserve, acquire_refuses_names_and_slots_the_crd_would_refuse)
{
    start();
    cr_assert_eq(rec_reserve_acquire(cli, "IPPool", "demo-v4", "Not_A_Name", "10.20.0.5", &CLAIM, 0,
                                     NULL, NULL),
                 KC_ERR_INVALID_ARG);
    cr_assert_eq(rec_reserve_acquire(cli, "IPPool", "demo-v4", "ippool.demo-v4.10-20-0-5", "",
                                     &CLAIM, 0, NULL, NULL),
                 KC_ERR_INVALID_ARG);
    cr_assert_eq(rs_request_count(srv), 0);
}

Test(rec_reserve_name, parse_reads_a_reservation_and_requires_its_key_fields)
{
    char *text = reservation("ippool.demo-v4.10-20-0-5", "r-1", "5", "IPClaim", "a", "uid-a");
    json_object *o = parse(text);
    free(text);
    rec_reservation r;
    cr_assert_eq(rec_reservation_parse(o, &r), 0);
    cr_assert_str_eq(r.name, "ippool.demo-v4.10-20-0-5");
    cr_assert_str_eq(r.uid, "r-1");
    cr_assert_str_eq(r.pool_kind, "IPPool");
    cr_assert_str_eq(r.slot, "10.20.0.5");
    cr_assert_str_eq(r.claim_namespace, "ns");
    cr_assert_str_eq(r.claim_uid, "uid-a");
    cr_assert_eq(r.bytes, 0);
    rec_reservation_clear(&r);
    json_object_put(o);
    o = parse("{\"metadata\":{\"name\":\"x\"},\"spec\":{\"slot\":\"s\"}}");
    cr_assert_eq(rec_reservation_parse(o, &r), KC_ERR_DECODE);
    cr_assert_null(r.name);
    json_object_put(o);
}

/* ---- acquire ------------------------------------------------------------- */

Test(rec_reserve, acquire_posts_the_reservation_and_201_is_acquired)
{
    start();
    push_owned(201, reservation("ippool.demo-v4.10-20-0-5", "r-1", "5", "IPClaim", "a", "uid-a"));
    rec_reservation holder;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(rec_reserve_acquire(cli, "IPPool", "demo-v4", "ippool.demo-v4.10-20-0-5",
                                     "10.20.0.5", &CLAIM, 0, &holder, &err),
                 0, "%s", err.message);
    cr_assert_str_eq(holder.uid, "r-1");
    rec_reservation_clear(&holder);
    cr_assert_eq(rs_request_count(srv), 1);
    assert_request(0, "POST", RESV);
    json_object *b = body_json(rs_request_at(srv, 0));
    json_object *want = parse(
        "{\"apiVersion\":\"provisio.dev/v1alpha1\",\"kind\":\"Reservation\",\"metadata\":{"
        "\"name\":\"ippool.demo-v4.10-20-0-5\",\"labels\":{\"provisio.dev/pool-kind\":"
        "\"IPPool\",\"provisio.dev/pool\":\"demo-v4\"}},\"spec\":{\"pool\":{\"kind\":\"IPPool\","
        "\"name\":\"demo-v4\"},\"slot\":\"10.20.0.5\",\"claim\":{\"kind\":\"IPClaim\","
        "\"namespace\":\"ns\",\"name\":\"a\",\"uid\":\"uid-a\"}}}");
    cr_assert(json_object_equal(b, want), "body %s", rs_request_at(srv, 0)->body);
    json_object_put(want);
    json_object_put(b);
}

Test(rec_reserve, storage_reservation_carries_bytes_and_requires_them)
{
    start();
    push(201, "{\"metadata\":{\"name\":\"storagepool.local.v-1\"}}");
    rec_claim_ref vol = {.kind = "Volume", .namespace_ = "ns", .name = "data", .uid = "v-1"};
    cr_assert_eq(rec_reserve_acquire(cli, "StoragePool", "local", "storagepool.local.v-1", "v-1",
                                     &vol, 0, NULL, NULL),
                 KC_ERR_INVALID_ARG);
    cr_assert_eq(rs_request_count(srv), 0);
    cr_assert_eq(rec_reserve_acquire(cli, "StoragePool", "local", "storagepool.local.v-1", "v-1",
                                     &vol, 1073741824, NULL, NULL),
                 0);
    json_object *b = body_json(rs_request_at(srv, 0));
    cr_assert_str_eq(str_at(b, "metadata.name"), "storagepool.local.v-1");
    cr_assert_eq(json_object_get_int64(rec_obj_at(b, "spec.bytes")), 1073741824);
    cr_assert_str_eq(str_at(b, "spec.claim.kind"), "Volume");
    json_object_put(b);
}

Test(rec_reserve, acquire_after_a_crash_finds_its_own_reservation)
{
    start();
    push(409, ALREADY_EXISTS);
    push_owned(200, reservation("ippool.demo-v4.10-20-0-5", "r-1", "5", "IPClaim", "a", "uid-a"));
    rec_reservation holder;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(rec_reserve_acquire(cli, "IPPool", "demo-v4", "ippool.demo-v4.10-20-0-5",
                                     "10.20.0.5", &CLAIM, 0, &holder, &err),
                 0, "%s", err.message);
    cr_assert_str_eq(holder.claim_uid, "uid-a");
    cr_assert_null(err.message);
    rec_reservation_clear(&holder);
    cr_assert_eq(rs_request_count(srv), 2);
    assert_request(1, "GET", RESV_A);
}

Test(rec_reserve, acquire_of_a_slot_held_by_another_claim_is_taken)
{
    start();
    push(409, ALREADY_EXISTS);
    push_owned(200, reservation("ippool.demo-v4.10-20-0-5", "r-9", "5", "IPClaim", "b", "uid-b"));
    rec_reservation holder;
    cr_assert_eq(rec_reserve_acquire(cli, "IPPool", "demo-v4", "ippool.demo-v4.10-20-0-5",
                                     "10.20.0.5", &CLAIM, 0, &holder, NULL),
                 REC_TAKEN);
    cr_assert_str_eq(holder.claim_name, "b");
    cr_assert_str_eq(holder.claim_uid, "uid-b");
    rec_reservation_clear(&holder);
    cr_assert_eq(rs_request_count(srv), 2);
}

Test(rec_reserve, same_name_recreated_claim_is_another_holder)
{
    start();
    push(409, ALREADY_EXISTS);
    /* the claim "a" of a previous life (another uid) still holds the slot */
    push_owned(200, reservation("ippool.demo-v4.10-20-0-5", "r-1", "5", "IPClaim", "a", "uid-old"));
    cr_assert_eq(rec_reserve_acquire(cli, "IPPool", "demo-v4", "ippool.demo-v4.10-20-0-5",
                                     "10.20.0.5", &CLAIM, 0, NULL, NULL),
                 REC_TAKEN);
}

Test(rec_reserve, acquire_retries_when_the_holder_let_go_in_between)
{
    start();
    push(409, ALREADY_EXISTS);
    push(404, NOT_FOUND);
    push_owned(201, reservation("ippool.demo-v4.10-20-0-5", "r-2", "6", "IPClaim", "a", "uid-a"));
    cr_assert_eq(rec_reserve_acquire(cli, "IPPool", "demo-v4", "ippool.demo-v4.10-20-0-5",
                                     "10.20.0.5", &CLAIM, 0, NULL, NULL),
                 0);
    cr_assert_eq(rs_request_count(srv), 3);
    assert_request(2, "POST", RESV);
}

Test(rec_reserve, acquire_of_own_reservation_being_deleted_asks_for_a_requeue)
{
    start();
    push(409, ALREADY_EXISTS);
    push(200, "{\"metadata\":{\"name\":\"ippool.demo-v4.10-20-0-5\",\"uid\":\"r-1\","
              "\"resourceVersion\":\"5\",\"deletionTimestamp\":\"2025-01-02T15:04:05Z\"},"
              "\"spec\":{\"slot\":\"10.20.0.5\",\"claim\":{\"uid\":\"uid-a\"}}}");
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(rec_reserve_acquire(cli, "IPPool", "demo-v4", "ippool.demo-v4.10-20-0-5",
                                     "10.20.0.5", &CLAIM, 0, NULL, &err),
                 KC_ERR_CONFLICT);
    cr_assert_not_null(err.message);
    kc_error_clear(&err);
}

Test(rec_reserve, acquire_passes_other_errors_through)
{
    start();
    push(422, "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"reason\":"
              "\"Invalid\",\"message\":\"metadata.name of a Reservation must be ...\","
              "\"code\":422}");
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(rec_reserve_acquire(cli, "IPPool", "demo-v4", "ippool.demo-v4.10-20-0-5",
                                     "10.20.0.5", &CLAIM, 0, NULL, &err),
                 KC_ERR_INVALID);
    cr_assert_eq(err.http_status, 422);
    cr_assert_eq(rs_request_count(srv), 1);
    kc_error_clear(&err);
}

Test(rec_reserve, acquire_needs_a_complete_claim)
{
    start();
    rec_claim_ref no_uid = {.kind = "IPClaim", .namespace_ = "ns", .name = "a"};
    rec_claim_ref no_kind = {.namespace_ = "ns", .name = "a", .uid = "u"};
    cr_assert_eq(rec_reserve_acquire(cli, "IPPool", "demo-v4", "ippool.demo-v4.10-20-0-5",
                                     "10.20.0.5", &no_uid, 0, NULL, NULL),
                 KC_ERR_INVALID_ARG);
    cr_assert_eq(rec_reserve_acquire(cli, "IPPool", "demo-v4", "ippool.demo-v4.10-20-0-5",
                                     "10.20.0.5", &no_kind, 0, NULL, NULL),
                 KC_ERR_INVALID_ARG);
    cr_assert_eq(rs_request_count(srv), 0);
}

/* ---- release ------------------------------------------------------------- */

Test(rec_reserve, release_deletes_with_uid_and_resource_version_preconditions)
{
    start();
    push_owned(200, reservation("ippool.demo-v4.10-20-0-5", "r-1", "57", "IPClaim", "a", "uid-a"));
    push(200, DELETED);
    bool released = false;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(rec_reserve_release(cli, "ippool.demo-v4.10-20-0-5", "uid-a", &released, &err), 0,
                 "%s", err.message);
    cr_assert(released);
    cr_assert_eq(rs_request_count(srv), 2);
    assert_request(0, "GET", RESV_A);
    assert_request(1, "DELETE", RESV_A);
    json_object *b = body_json(rs_request_at(srv, 1));
    cr_assert_str_eq(str_at(b, "kind"), "DeleteOptions");
    cr_assert_str_eq(str_at(b, "preconditions.uid"), "r-1");
    cr_assert_str_eq(str_at(b, "preconditions.resourceVersion"), "57");
    cr_assert_null(rec_obj_at(b, "gracePeriodSeconds"));
    json_object_put(b);
}

Test(rec_reserve, release_of_a_missing_reservation_is_done)
{
    start();
    push(404, NOT_FOUND);
    bool released = true;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(rec_reserve_release(cli, "ippool.demo-v4.10-20-0-5", "uid-a", &released, &err), 0);
    cr_assert_not(released);
    cr_assert_null(err.message);
    cr_assert_eq(rs_request_count(srv), 1);
}

Test(rec_reserve, release_never_frees_a_slot_another_claim_holds)
{
    start();
    push_owned(200, reservation("ippool.demo-v4.10-20-0-5", "r-2", "60", "IPClaim", "b", "uid-b"));
    bool released = true;
    cr_assert_eq(rec_reserve_release(cli, "ippool.demo-v4.10-20-0-5", "uid-a", &released, NULL), 0);
    cr_assert_not(released);
    cr_assert_eq(rs_request_count(srv), 1, "no DELETE may follow");
}

Test(rec_reserve, release_rereads_after_a_failed_precondition)
{
    start();
    push_owned(200, reservation("ippool.demo-v4.10-20-0-5", "r-1", "57", "IPClaim", "a", "uid-a"));
    push(409, PRECONDITION_CONFLICT);
    /* meanwhile freed and re-acquired by claim b */
    push_owned(200, reservation("ippool.demo-v4.10-20-0-5", "r-2", "61", "IPClaim", "b", "uid-b"));
    bool released = true;
    cr_assert_eq(rec_reserve_release(cli, "ippool.demo-v4.10-20-0-5", "uid-a", &released, NULL), 0);
    cr_assert_not(released);
    cr_assert_eq(rs_request_count(srv), 3);
    assert_request(2, "GET", RESV_A);
}

Test(rec_reserve, release_whose_delete_finds_it_gone_is_done)
{
    start();
    push_owned(200, reservation("ippool.demo-v4.10-20-0-5", "r-1", "57", "IPClaim", "a", "uid-a"));
    push(404, NOT_FOUND);
    bool released = true;
    cr_assert_eq(rec_reserve_release(cli, "ippool.demo-v4.10-20-0-5", "uid-a", &released, NULL), 0);
    cr_assert_not(released);
    cr_assert_eq(rs_request_count(srv), 2);
}

/* ---- orphan sweep -------------------------------------------------------- */

static json_object *cached_reservation(const char *claim_kind, const char *claim_uid)
{
    char *text = reservation("ippool.demo-v4.10-20-0-5", "r-1", "57", claim_kind, "a", claim_uid);
    json_object *o = parse(text);
    free(text);
    return o;
}

Test(rec_reserve, sweep_releases_when_the_claim_is_gone)
{
    start();
    push(404, NOT_FOUND);
    push_owned(200, reservation("ippool.demo-v4.10-20-0-5", "r-1", "57", "IPClaim", "a", "uid-a"));
    push(200, DELETED);
    json_object *resv = cached_reservation("IPClaim", "uid-a");
    bool released = false;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(rec_reserve_sweep_orphan(cli, resv, &released, &err), 0, "%s", err.message);
    cr_assert(released);
    cr_assert_eq(rs_request_count(srv), 3);
    assert_request(0, "GET", "/apis/provisio.dev/v1alpha1/namespaces/ns/ipclaims/a");
    assert_request(1, "GET", RESV_A);
    assert_request(2, "DELETE", RESV_A);
    json_object *b = body_json(rs_request_at(srv, 2));
    cr_assert_str_eq(str_at(b, "preconditions.uid"), "r-1");
    json_object_put(b);
    json_object_put(resv);
}

Test(rec_reserve, sweep_releases_when_the_claim_was_recreated_with_another_uid)
{
    start();
    push(200, "{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\",\"uid\":\"uid-new\"}}");
    push_owned(200, reservation("ippool.demo-v4.10-20-0-5", "r-1", "57", "IPClaim", "a", "uid-a"));
    push(200, DELETED);
    json_object *resv = cached_reservation("IPClaim", "uid-a");
    bool released = false;
    cr_assert_eq(rec_reserve_sweep_orphan(cli, resv, &released, NULL), 0);
    cr_assert(released);
    assert_request(2, "DELETE", RESV_A);
    json_object_put(resv);
}

Test(rec_reserve, sweep_keeps_a_reservation_whose_claim_the_cache_has_not_seen_yet)
{
    start();
    push(200, "{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\",\"uid\":\"uid-a\"}}");
    json_object *resv = cached_reservation("IPClaim", "uid-a");
    bool released = true;
    cr_assert_eq(rec_reserve_sweep_orphan(cli, resv, &released, NULL), 0);
    cr_assert_not(released);
    cr_assert_eq(rs_request_count(srv), 1, "only the claim is read");
    json_object_put(resv);
}

Test(rec_reserve, sweep_frees_nothing_when_the_claim_cannot_be_read)
{
    start();
    push(403, "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"reason\":"
              "\"Forbidden\",\"code\":403}");
    json_object *resv = cached_reservation("IPClaim", "uid-a");
    bool released = true;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(rec_reserve_sweep_orphan(cli, resv, &released, &err), KC_ERR_FORBIDDEN);
    cr_assert_not(released);
    cr_assert_eq(rs_request_count(srv), 1);
    kc_error_clear(&err);
    json_object_put(resv);
}

Test(rec_reserve, sweep_reads_a_pvc_claim_from_the_core_group)
{
    start();
    push(200, "{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\",\"uid\":\"uid-a\"}}");
    json_object *resv = cached_reservation("PersistentVolumeClaim", "uid-a");
    cr_assert_eq(rec_reserve_sweep_orphan(cli, resv, NULL, NULL), 0);
    assert_request(0, "GET", "/api/v1/namespaces/ns/persistentvolumeclaims/a");
    json_object_put(resv);
}
