/*
 * Unit tests of the claim flow (core/rec_claim.c) driven by the device
 * domain's table (dev_domain_def): claims of several devices from one pool
 * chosen by resource name and node, taken all or nothing, kept the same way
 * on every replica, replaced when unhealthy, released on delete. A detached
 * domain over stores the test fills writes to a replay server
 * (tests/support/rec_claim_fixture.h); each test asserts on the requests
 * sent and the status written. The shared flow's own cases, run for every
 * domain, are test_rec_claim.c's.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "dev_internal.h"
#include "inf_map.h"
#include "rec_claim_fixture.h"
#include "rec_util.h"

#define NS RCF_NS
#define CLAIM "c1"
#define CLAIM_UID "uid-c1"
#define RES "vendor.example/fpga"

static void env_start(void)
{
    rcf_start(&dev_domain_def, "device");
}

TestSuite(dev_claim, .init = env_start, .fini = rcf_stop, .timeout = 60);

/* ---- objects ------------------------------------------------------------------- */

/* The devices of a pool spec from "a b !c" (! : healthy: false). */
static const char *devices_json(const char *ids)
{
    const char *out = "";
    char *copy = rcf_keep(strdup(ids)), *save = NULL;
    for (char *id = strtok_r(copy, " ", &save); id; id = strtok_r(NULL, " ", &save)) {
        bool sick = *id == '!';
        out = rcf_fmt("%s%s{\"id\":\"%s\"%s}", out, *out ? "," : "", id + sick,
                      sick ? ",\"healthy\":false" : "");
    }
    return out;
}

/* The DevicePool name of resource on node with devices ("a b !c"), our
 * finalizer on, as JSON text. */
static const char *pool_json(const char *name, const char *node, const char *resource,
                             const char *devices)
{
    return rcf_fmt("{\"apiVersion\":\"provisio.dev/v1alpha1\",\"kind\":\"DevicePool\","
                   "\"metadata\":%s,\"spec\":{\"nodeName\":\"%s\",\"resourceName\":\"%s\","
                   "\"devices\":[%s]}}",
                   rcf_meta_json(name, NULL, rcf_fmt("uid-%s", name), "3", true, false), node,
                   resource, devices_json(devices));
}

static void cache_pool(const char *name, const char *node, const char *devices)
{
    rcf_cache_pool(pool_json(name, node, RES, devices));
}

typedef struct claim_args {
    const char *spec;  /* members after resourceName ("\"count\":2"), or NULL */
    const char *held;  /* status: the devices of p1 it names ("a,b"), or NULL */
    const char *rv;    /* default "5" */
    bool no_finalizer; /* ours not yet in metadata.finalizers */
    bool deleting;     /* metadata.deletionTimestamp set */
} claim_args;

/* The claim NS/CLAIM, as JSON text. */
static const char *claim_json(claim_args a)
{
    const char *status = "";
    if (a.held) {
        const char *list = "";
        char *copy = rcf_keep(strdup(a.held)), *save = NULL;
        for (char *id = strtok_r(copy, ",", &save); id; id = strtok_r(NULL, ",", &save))
            list = rcf_fmt("%s%s\"%s\"", list, *list ? "," : "", id);
        status = rcf_fmt(",\"status\":{\"pool\":\"p1\",\"nodeName\":\"node-a\","
                         "\"devices\":[%s]}",
                         list);
    }
    return rcf_fmt(
        "{\"apiVersion\":\"provisio.dev/v1alpha1\",\"kind\":\"DeviceClaim\","
        "\"metadata\":%s,\"spec\":{\"resourceName\":\"" RES "\"%s%s}%s}",
        rcf_meta_json(CLAIM, NS, CLAIM_UID, a.rv ? a.rv : "5", !a.no_finalizer, a.deleting),
        a.spec ? "," : "", a.spec ? a.spec : "", status);
}

static void cache_claim(claim_args a)
{
    rcf_cache_claim(claim_json(a));
}

/* The Reservation of device id of pool held by the claim holder/holder_uid. */
static const char *resv_json(const char *pool, const char *id, const char *holder,
                             const char *holder_uid, const char *uid, const char *rv)
{
    return rcf_resv_json(&(rcf_resv){
        .pool = pool, .slot = id, .claim = holder, .claim_uid = holder_uid, .uid = uid, .rv = rv});
}

/* Our claim's Reservation of device id of p1 in the cache (uid "r-<id>", rv 9). */
static void cache_held(const char *id)
{
    rcf_cache_resv(resv_json("p1", id, CLAIM, CLAIM_UID, rcf_fmt("r-%s", id), "9"));
}

static const char *claim_path(void)
{
    return rcf_ref_path(dev_domain_def.claims_ref, NS, CLAIM);
}

static const char *status_path(void)
{
    return rcf_fmt("%s/status", claim_path());
}

/* ---- the script --------------------------------------------------------------- */

static void answer_created(const char *pool, const char *id)
{
    rcf_answer("POST", RCF_RESV, 201, resv_json(pool, id, CLAIM, CLAIM_UID, "r-new", "41"));
}

/* The Reservation of device id of pool held by "other" (uid "r-taken", rv 40). */
static const char *taken_json(const char *pool, const char *id)
{
    return resv_json(pool, id, "other", "uid-other", "r-taken", "40");
}

/* 409 to a POST, and the GET after it shows device id of pool held by "other". */
static void answer_taken_in(const char *pool, const char *id)
{
    rcf_answer("POST", RCF_RESV, 409, rcf_status_body(409, "AlreadyExists"));
    rcf_answer("GET", rcf_resv_path(pool, id), 200, taken_json(pool, id));
}

static void answer_taken(const char *id)
{
    answer_taken_in("p1", id);
}

/* Our Reservation of id of p1 (uid, rv) is read and deleted. */
static void answer_released(const char *id, const char *uid, const char *rv)
{
    rcf_answer("GET", rcf_resv_path("p1", id), 200, resv_json("p1", id, CLAIM, CLAIM_UID, uid, rv));
    rcf_answer("DELETE", rcf_resv_path("p1", id), 200, RCF_SUCCESS);
}

/* 200 to a GET of our claim: the server has the version cached as a (read
 * before a slot is given back). */
static void answer_claim_read(claim_args a)
{
    rcf_answer("GET", claim_path(), 200, claim_json(a));
}

/* 200 to the GET confirming our claim holds id of p1 (cached uid "r-<id>", rv 9). */
static void answer_held(const char *id)
{
    rcf_answer("GET", rcf_resv_path("p1", id), 200,
               resv_json("p1", id, CLAIM, CLAIM_UID, rcf_fmt("r-%s", id), "9"));
}

static void answer_status_written(void)
{
    rcf_answer("PUT", status_path(), 200, claim_json((claim_args){.rv = "6"}));
}

/* ---- which devices a claim tries, in order ------------------------------------ */

/* The devices dev_pick hands our claim (spec) from the pool of pool_text when
 * nothing is used, in the order it tries them. */
static const char **pick_order(const char *pool_text, const char *spec)
{
    static const char *order[16];
    memset(order, 0, sizeof order);
    json_object *po = rcf_parse(pool_text);
    json_object *co = rcf_parse(claim_json((claim_args){.spec = spec}));
    void *pool = NULL, *want = NULL, *used = NULL;
    char *problem = NULL;
    cr_assert_eq(dev_domain_def.pool_open(po, &pool, &problem), KC_OK);
    cr_assert_not_null(pool, "%s", problem ? problem : "?");
    cr_assert_eq(dev_domain_def.want_open(co, &want, &problem), KC_OK);
    cr_assert_not_null(want, "%s", problem ? problem : "?");
    cr_assert_eq(dev_domain_def.set_new(&used), KC_OK);
    size_t n = 0;
    char *slot = NULL;
    while (n < 15 &&
           dev_domain_def.pick(pool, used, NULL, order, n, CLAIM_UID, want, &slot) == KC_OK)
        order[n++] = rcf_keep(slot);
    dev_domain_def.set_free(used);
    dev_domain_def.want_close(want);
    dev_domain_def.pool_close(pool);
    json_object_put(po);
    json_object_put(co);
    return order;
}

/* ---- what was sent --------------------------------------------------------------- */

static ctl_result reconcile_claim(void)
{
    return rcf_keep_result(rec_domain_reconcile_claim(RCF.d, NS, CLAIM));
}

/* The devices status lists, as "a,b". */
static const char *status_devices(json_object *st)
{
    json_object *devs = rec_obj_at(st, "devices");
    cr_assert_not_null(devs, "no devices in %s", json_object_to_json_string(st));
    const char *s = "";
    for (size_t i = 0; i < json_object_array_length(devs); i++)
        s = rcf_fmt("%s%s%s", s, i ? "," : "",
                    json_object_get_string(json_object_array_get_idx(devs, i)));
    return s;
}

/* "x,y" of two ids, sorted. */
static const char *sorted2(const char *x, const char *y)
{
    return strcmp(x, y) < 0 ? rcf_fmt("%s,%s", x, y) : rcf_fmt("%s,%s", y, x);
}

/* Request i writes our claim's status: Ready=True holding devices ("a,b",
 * sorted) of pool on node; returns the status. */
static json_object *assert_ready(size_t i, const char *rv, const char *pool, const char *node,
                                 const char *devices)
{
    json_object *st = rcf_assert_status(i, status_path(), rv, REC_COND_TRUE, DEV_REASON_ALLOCATED);
    cr_assert_str_eq(status_devices(st), devices);
    cr_assert_str_eq(rcf_str_at(st, "pool"), pool);
    cr_assert_str_eq(rcf_str_at(st, "nodeName"), node);
    return st;
}

/* Request i writes our claim's status: Ready=False reason, holding nothing;
 * returns the Ready message. */
static const char *assert_pending(size_t i, const char *reason)
{
    json_object *st = rcf_assert_status(i, status_path(), "5", REC_COND_FALSE, reason);
    cr_assert_null(rec_obj_at(st, "devices"), "%s", json_object_to_json_string(st));
    return rcf_str_at(rec_get_condition(st, REC_COND_READY), "message");
}

/* ---- acquiring ------------------------------------------------------------------- */

Test(dev_claim, count_two_finalizer_first_then_two_reservations_then_both_in_status)
{
    const char **o = pick_order(pool_json("p1", "node-a", RES, "a b c"), "\"count\":2");
    cache_pool("p1", "node-a", "a b c");
    cache_claim((claim_args){.spec = "\"count\":2", .no_finalizer = true});
    rcf_answer("PATCH", claim_path(), 200, claim_json((claim_args){.rv = "5a"}));
    answer_created("p1", o[0]);
    answer_created("p1", o[1]);
    answer_status_written();

    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(4);
    rcf_assert_finalizer_patch(0, claim_path(), "5", true);
    rcf_assert_post(1, "p1", o[0], CLAIM, CLAIM_UID);
    rcf_assert_post(2, "p1", o[1], CLAIM, CLAIM_UID);
    cr_assert_str_eq(rcf_resv_name("p1", o[0]), rcf_fmt("devicepool.p1.%s", o[0]));
    json_object *st = assert_ready(3, "5a", "p1", "node-a", sorted2(o[0], o[1]));
    json_object *h = rec_get_condition(st, DEV_COND_HEALTHY);
    cr_assert_str_eq(rcf_str_at(h, "status"), REC_COND_TRUE);
    cr_assert_eq(rcf_events_with_reason(DEV_REASON_ALLOCATED), 1);
}

Test(dev_claim, too_few_free_devices_posts_nothing_and_is_insufficient_devices)
{
    /* One of two devices is held by another claim: nothing is tried. */
    cache_pool("p1", "node-a", "a b");
    rcf_cache_resv(resv_json("p1", "a", "other", "uid-other", "r-a", "9"));
    cache_claim((claim_args){.spec = "\"count\":2"});
    answer_status_written();

    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(1);
    const char *m = assert_pending(0, DEV_REASON_INSUFFICIENT);
    cr_assert(strstr(m, "p1 has 1 free"), "%s", m);
}

Test(dev_claim, a_round_cut_short_gives_back_what_it_took)
{
    /* The cache shows both devices free, but the server has the second held
     * by another claim: the first one taken is given back, all or nothing. */
    const char **o = pick_order(pool_json("p1", "node-a", RES, "a b"), "\"count\":2");
    cache_pool("p1", "node-a", "a b");
    cache_claim((claim_args){.spec = "\"count\":2"});
    answer_created("p1", o[0]);
    answer_taken(o[1]);
    answer_claim_read((claim_args){.spec = "\"count\":2"});
    answer_released(o[0], "r-new", "41");
    answer_status_written();

    /* The pool was chosen by this run: it chooses again, from a newer view,
     * rather than wait on this one. */
    rcf_assert_outcome(reconcile_claim(), CTL_REQUEUE);
    rcf_assert_api_count(6);
    rcf_assert_post(0, "p1", o[0], CLAIM, CLAIM_UID);
    rcf_assert_post(1, "p1", o[1], CLAIM, CLAIM_UID);
    rcf_assert_api(2, "GET", rcf_resv_path("p1", o[1]));
    rcf_assert_api(3, "GET", claim_path()); /* no status shows what it gives back */
    rcf_assert_api(4, "GET", rcf_resv_path("p1", o[0]));
    rcf_assert_delete(5, "p1", o[0], "r-new", "41");

    /* The cache has caught up: one free of the two wanted, and it waits. */
    rcf_cache_resv(taken_json("p1", o[1]));
    answer_status_written();
    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(7);
    const char *m = assert_pending(6, DEV_REASON_INSUFFICIENT);
    cr_assert(strstr(m, "p1 has 1 free"), "%s", m);
}

Test(dev_claim, a_chosen_pool_another_claim_filled_is_chosen_again_not_waited_on)
{
    /* p1 and p2 have a device each, both free in the cache. The pool the
     * claim chooses has its device taken by another claim already (the cache
     * lags): the claim does not wait on that pool (nothing would wake it:
     * the other pool's device stays free, no Reservation is deleted) but
     * chooses again, and once the cache shows the taken device it gets the
     * other pool's. */
    cache_pool("p1", "node-a", "a");
    cache_pool("p2", "node-a", "b");
    cache_claim((claim_args){});
    /* dev_choose_pool: the fitting pools by name, the claim's uid's hash. */
    bool first = inf_map_hash(CLAIM_UID) % 2 == 0;
    const char *taken_pool = first ? "p1" : "p2", *taken = first ? "a" : "b";
    const char *other_pool = first ? "p2" : "p1", *other = first ? "b" : "a";
    answer_taken_in(taken_pool, taken);

    rcf_assert_outcome(reconcile_claim(), CTL_REQUEUE);
    rcf_assert_api_count(2);
    rcf_assert_post(0, taken_pool, taken, CLAIM, CLAIM_UID);
    rcf_assert_api(1, "GET", rcf_resv_path(taken_pool, taken));

    rcf_cache_resv(taken_json(taken_pool, taken));
    answer_created(other_pool, other);
    answer_status_written();
    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(4);
    rcf_assert_post(2, other_pool, other, CLAIM, CLAIM_UID);
    assert_ready(3, "5", other_pool, "node-a", other);
}

Test(dev_claim, a_device_another_claim_won_409_is_skipped_for_another)
{
    const char **o = pick_order(pool_json("p1", "node-a", RES, "a b c"), "\"count\":2");
    cache_pool("p1", "node-a", "a b c");
    cache_claim((claim_args){.spec = "\"count\":2"});
    answer_taken(o[0]);
    answer_created("p1", o[1]);
    answer_created("p1", o[2]);
    answer_status_written();

    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(5);
    rcf_assert_post(0, "p1", o[0], CLAIM, CLAIM_UID);
    rcf_assert_api(1, "GET", rcf_resv_path("p1", o[0]));
    rcf_assert_post(2, "p1", o[1], CLAIM, CLAIM_UID);
    rcf_assert_post(3, "p1", o[2], CLAIM, CLAIM_UID);
    assert_ready(4, "5", "p1", "node-a", sorted2(o[1], o[2]));
}

/* ---- holding too many: every replica keeps the same ------------------------------- */

/* Our claim (count 2, status naming named or nothing) holds a, b and c of p1,
 * cached in that order or the reverse; expect freed to go and kept to stay. */
static void holding_three_frees(const char *named, bool reverse, const char *freed,
                                const char *kept)
{
    cache_pool("p1", "node-a", "a b c");
    cache_claim((claim_args){.spec = "\"count\":2", .held = named});
    const char *ids[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++)
        cache_held(ids[reverse ? 2 - i : i]);
    answer_claim_read((claim_args){.spec = "\"count\":2", .held = named});
    answer_released(freed, rcf_fmt("r-%s", freed), "9");
    /* Kept devices the status does not show yet are confirmed first. */
    size_t n_confirmed = 0;
    const char *confirmed[2];
    if (!named) {
        char *copy = rcf_keep(strdup(kept)), *save = NULL;
        for (char *id = strtok_r(copy, ",", &save); id && n_confirmed < 2;
             id = strtok_r(NULL, ",", &save)) {
            answer_held(id);
            confirmed[n_confirmed++] = id;
        }
    }
    answer_status_written();

    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(4 + n_confirmed);
    rcf_assert_api(0, "GET", claim_path());
    rcf_assert_api(1, "GET", rcf_resv_path("p1", freed));
    rcf_assert_delete(2, "p1", freed, rcf_fmt("r-%s", freed), "9");
    /* (in the order the cache lists them) */
    for (size_t i = 0; i < n_confirmed; i++) {
        const rs_request *q = rcf_api_at(3 + i);
        bool found = false;
        for (size_t j = 0; j < n_confirmed; j++)
            found = found || (!strcmp(q->method, "GET") &&
                              !strcmp(q->target, rcf_resv_path("p1", confirmed[j])));
        cr_assert(found, "request %zu: %s %s, want a GET of a kept device", 3 + i, q->method,
                  q->target);
    }
    assert_ready(3 + n_confirmed, "5", "p1", "node-a", kept);
}

Test(dev_claim, holding_three_of_two_keeps_the_two_status_names_on_every_run)
{
    for (int run = 0; run < 2; run++) {
        if (run) {
            rcf_stop();
            env_start();
        }
        holding_three_frees("c,b", run == 1, "a", "b,c");
    }
}

Test(dev_claim, holding_three_of_two_without_status_keeps_the_lowest_ids_on_every_run)
{
    for (int run = 0; run < 2; run++) {
        if (run) {
            rcf_stop();
            env_start();
        }
        holding_three_frees(NULL, run == 1, "c", "a,b");
    }
}

/* ---- unhealthy devices --------------------------------------------------------------- */

/* Our claim (spec) holds a and b of p1 (devices), b unhealthy; status names both. */
static void holding_a_and_sick_b(const char *devices, const char *spec)
{
    cache_pool("p1", "node-a", devices);
    cache_claim((claim_args){.spec = spec, .held = "a,b"});
    cache_held("a");
    cache_held("b");
}

Test(dev_claim, replace_unhealthy_takes_another_device_then_releases_the_sick_one)
{
    /* The status shows the replacement before the sick device is let go:
     * never a moment where b is free while the claim still shows it. */
    holding_a_and_sick_b("a !b c", "\"count\":2,\"replaceUnhealthy\":true");
    answer_created("p1", "c");
    rcf_answer("PUT", status_path(), 200, claim_json((claim_args){.rv = "6", .held = "a,c"}));
    answer_released("b", "r-b", "9");

    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(4);
    rcf_assert_post(0, "p1", "c", CLAIM, CLAIM_UID);
    assert_ready(1, "5", "p1", "node-a", "a,c");
    rcf_assert_api(2, "GET", rcf_resv_path("p1", "b"));
    rcf_assert_delete(3, "p1", "b", "r-b", "9");
    cr_assert_eq(rcf_events_with_reason(DEV_REASON_REPLACED), 1);
    const char *m = rcf_event_message(DEV_REASON_REPLACED);
    cr_assert(m && strstr(m, "device b") && strstr(m, "with c"), "%s", m ? m : "(none)");
}

Test(dev_claim, unhealthy_device_is_kept_without_replace_unhealthy_and_status_says_so)
{
    holding_a_and_sick_b("a !b c", "\"count\":2");
    answer_status_written();

    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(1);
    json_object *st = assert_ready(0, "5", "p1", "node-a", "a,b");
    json_object *h = rec_get_condition(st, DEV_COND_HEALTHY);
    cr_assert_not_null(h, "%s", json_object_to_json_string(st));
    cr_assert_str_eq(rcf_str_at(h, "status"), REC_COND_FALSE);
    cr_assert_str_eq(rcf_str_at(h, "reason"), DEV_REASON_UNHEALTHY);
    cr_assert(strstr(rcf_str_at(h, "message"), "b is unhealthy"), "%s", rcf_str_at(h, "message"));
    cr_assert_eq(rcf_events_with_reason(DEV_REASON_REPLACED), 0);
}

Test(dev_claim, replace_unhealthy_without_a_healthy_spare_keeps_the_device)
{
    holding_a_and_sick_b("a !b", "\"count\":2,\"replaceUnhealthy\":true");
    answer_status_written();

    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(1);
    assert_ready(0, "5", "p1", "node-a", "a,b");
}

/* ---- the pool ----------------------------------------------------------------------- */

Test(dev_claim, the_pool_is_chosen_by_resource_name_and_node)
{
    /* p1 on node-a; p3 on node-b but of another resource; p2 it is. */
    cache_pool("p1", "node-a", "a b");
    rcf_cache_pool(pool_json("p3", "node-b", "vendor.example/gpu", "a b"));
    cache_pool("p2", "node-b", "x y");
    const char *spec = "\"nodeName\":\"node-b\"";
    const char **o = pick_order(pool_json("p2", "node-b", RES, "x y"), spec);
    cache_claim((claim_args){.spec = spec});
    answer_created("p2", o[0]);
    answer_status_written();

    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(2);
    rcf_assert_post(0, "p2", o[0], CLAIM, CLAIM_UID);
    cr_assert_str_eq(rcf_resv_name("p2", o[0]), rcf_fmt("devicepool.p2.%s", o[0]));
    assert_ready(1, "5", "p2", "node-b", o[0]);
}

Test(dev_claim, no_pool_of_the_resource_is_no_matching_devices)
{
    rcf_cache_pool(pool_json("p3", "node-a", "vendor.example/gpu", "a b"));
    cache_claim((claim_args){0});
    answer_status_written();

    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(1);
    const char *m = assert_pending(0, DEV_REASON_NO_MATCH);
    cr_assert(strstr(m, "there is no DevicePool of " RES), "%s", m);
}

Test(dev_claim, a_count_out_of_range_is_invalid_spec)
{
    cache_pool("p1", "node-a", "a b");
    cache_claim((claim_args){.spec = "\"count\":65"});
    answer_status_written();

    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(1);
    assert_pending(0, DEV_REASON_INVALID_SPEC);
}

/* ---- deletion ---------------------------------------------------------------------- */

/* Whether requests [from, from + 2n) are a GET then a DELETE of each of the
 * n devices of p1, in any order. */
static void assert_released_each(size_t from, const char *const *ids, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        const rs_request *get = rcf_api_at(from + 2 * k);
        cr_assert_not_null(get, "%s", rcf_describe_requests());
        size_t which = n;
        for (size_t j = 0; j < n && which == n; j++)
            if (!strcmp(get->target, rcf_resv_path("p1", ids[j])))
                which = j;
        cr_assert_lt(which, n, "request %zu:%s", from + 2 * k, rcf_describe_requests());
        rcf_assert_api(from + 2 * k, "GET", get->target);
        rcf_assert_delete(from + 2 * k + 1, "p1", ids[which], rcf_fmt("r-%s", ids[which]), "9");
    }
}

/* Our claim, being deleted, holds a and c (status names them; cached:
 * the cache shows their Reservations too): both are released, then the
 * finalizer goes. */
static void deletion_releases_both(bool cached)
{
    cache_pool("p1", "node-a", "a b c");
    cache_claim((claim_args){.spec = "\"count\":2", .held = "a,c", .deleting = true});
    if (cached) {
        cache_held("a");
        cache_held("c");
    }
    answer_released("a", "r-a", "9");
    answer_released("c", "r-c", "9");
    rcf_answer("PATCH", claim_path(), 200, claim_json((claim_args){.rv = "6", .deleting = true}));

    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(5);
    const char *ids[] = {"a", "c"};
    assert_released_each(0, ids, 2);
    rcf_assert_finalizer_patch(4, claim_path(), "5", false);
    cr_assert_eq(rcf_events_with_reason("Released"), 1);
}

Test(dev_claim, deletion_releases_every_held_device_then_the_finalizer)
{
    deletion_releases_both(true);
}

Test(dev_claim, deletion_releases_what_status_names_when_the_cache_shows_none)
{
    deletion_releases_both(false);
}
