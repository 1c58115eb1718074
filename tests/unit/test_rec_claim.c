/*
 * Unit tests of the claim flow every domain shares (src/reconcilers/core):
 * the claim, pool and orphan-sweep reconciles of a detached domain
 * (rec_domain_new_detached) over stores the test fills, writing to the
 * replay server, which answers from a script (201, 409, 404, 410, 500...).
 * Each test asserts on the requests the flow sent (method, path, the body
 * fields that matter: the Reservation's name, the preconditions of a DELETE,
 * the status written) and on the reconcile's result.
 *
 * Every test runs once per domain table (DOMAINS below): a domain is added
 * by a fixture of a few lines (domain_fx) and one entry in that list. What a
 * fixture gives is only what is domain-specific: a pool spec of exactly two
 * slots, a claim spec, the status an older write left on a claim holding a
 * slot, and extra Reservation spec fields; everything else (metadata, paths,
 * Reservation names, which slot is picked first) comes from the table.
 *
 * The environment (replay server, detached domain, caches, script, checks
 * of what was sent) is tests/support/rec_claim_fixture.h's, shared with the
 * tests of each domain's own claim flow (test_dev_claim.c). Events are
 * answered by its catch-alls; the assertions on API requests skip them, and
 * tests that care about an Event flush and look (rcf_events_*).
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "ip_internal.h"
#include "pv_clock.h"
#include "rec_domain_internal.h"
#include "rec_claim_fixture.h"
#include "rec_domain.h"
#include "rec_reserve.h"
#include "rec_util.h"

/* ---- the domains ------------------------------------------------------------ */

typedef struct domain_fx {
    const char *name;
    const rec_domain_def *def;
    /* spec of a pool (JSON object text) that hands out exactly slots[0..2) */
    const char *pool_spec;
    const char *slots[2]; /* canonical, as a Reservation's spec.slot holds them */
    /* spec of a claim of pool (malloc'd JSON object text) */
    char *(*claim_spec)(const char *pool);
    /* status an older write left on a claim holding slot of pool, without
     * conditions (malloc'd JSON object text) */
    char *(*claim_status)(const char *pool, const char *slot);
    /* more members of a Reservation's spec (",\"bytes\":1024"), or "" */
    const char *resv_spec_extra;
    /* spec of a claim of pool asking for slot by name (malloc'd JSON object
     * text); NULL when the domain has no such field (def->claim_slot_path) */
    char *(*claim_spec_wanted)(const char *pool, const char *slot);
    /* spec of a pool the domain cannot use (JSON object text) */
    const char *bad_pool_spec;
} domain_fx;

static char *ip_claim_spec(const char *pool)
{
    char *s = NULL;
    cr_assert(asprintf(&s, "{\"pool\":\"%s\"}", pool) > 0);
    return s;
}

static char *ip_claim_status(const char *pool, const char *slot)
{
    char *s = NULL;
    cr_assert(asprintf(&s, "{\"pool\":\"%s\",\"address\":\"%s/24\"}", pool, slot) > 0);
    return s;
}

static char *ip_claim_spec_wanted(const char *pool, const char *slot)
{
    char *s = NULL;
    cr_assert(asprintf(&s, "{\"pool\":\"%s\",\"address\":\"%s\"}", pool, slot) > 0);
    return s;
}

static const domain_fx IP_FX = {
    .name = "ip",
    .def = &ip_domain_def,
    .pool_spec = "{\"cidr\":\"10.20.0.0/24\",\"rangeStart\":\"10.20.0.5\","
                 "\"rangeEnd\":\"10.20.0.6\"}",
    .slots = {"10.20.0.5", "10.20.0.6"},
    .claim_spec = ip_claim_spec,
    .claim_status = ip_claim_status,
    .resv_spec_extra = "",
    .claim_spec_wanted = ip_claim_spec_wanted,
    .bad_pool_spec = "{\"cidr\":\"10.20.0.0/33\"}",
};

/* One line per domain. */
static const domain_fx *const DOMAINS[] = {
    &IP_FX,
};

/* ---- the environment of one test ------------------------------------------ */

#define NS RCF_NS
#define CLAIM "c1"
#define CLAIM_UID "uid-c1"
#define POOL "p1"
#define POOL_UID "uid-p1"

static const domain_fx *FX; /* the domain of the running test */

static void env_start(const domain_fx *fx)
{
    FX = fx;
    rcf_start(fx->def, fx->name);
}

static void env_stop(void)
{
    rcf_stop();
    FX = NULL;
}

/* One timeout for every suite (test_rec_util.c: criterion leaks otherwise). */
TestSuite(claim, .fini = env_stop, .timeout = 60);
TestSuite(claim_delete, .fini = env_stop, .timeout = 60);
TestSuite(sweep, .fini = env_stop, .timeout = 60);
TestSuite(pool, .fini = env_stop, .timeout = 60);

/*
 * A test that runs once per domain, with RCF ready for it. The parameter is
 * the domain's index in DOMAINS: criterion hands parameters to its workers as
 * bytes, and a worker is another process (its pointers would not hold).
 */
#define N_DOMAINS (sizeof DOMAINS / sizeof DOMAINS[0])
static const int DOMAIN_INDEX[] = {0, 1, 2, 3};
_Static_assert(N_DOMAINS <= sizeof DOMAIN_INDEX / sizeof DOMAIN_INDEX[0], "DOMAIN_INDEX too short");

#define DOMAIN_TEST(suite, name)                                                                   \
    static void suite##_##name##_body(void);                                                       \
    ParameterizedTestParameters(suite, name)                                                       \
    {                                                                                              \
        return cr_make_param_array(int, (void *)DOMAIN_INDEX, N_DOMAINS);                          \
    }                                                                                              \
    ParameterizedTest(const int *domain, suite, name)                                              \
    {                                                                                              \
        env_start(DOMAINS[*domain]);                                                               \
        suite##_##name##_body();                                                                   \
    }                                                                                              \
    static void suite##_##name##_body(void)

/* ---- objects ------------------------------------------------------------------ */

typedef struct obj_args {
    const char *name, *uid, *rv;
    bool finalizer;     /* ours in metadata.finalizers */
    bool deleting;      /* metadata.deletionTimestamp set */
    const char *slot;   /* claims: status names this slot (the fixture's status) */
    const char *wanted; /* claims: the spec asks for this slot by name */
    bool bad;           /* pools: the fixture's unusable spec */
} obj_args;

/* The claim NS/a->name (default CLAIM, CLAIM_UID, rv "5") of POOL, as JSON text. */
static const char *claim_json(obj_args a)
{
    a.name = a.name ? a.name : CLAIM;
    a.uid = a.uid ? a.uid : CLAIM_UID;
    a.rv = a.rv ? a.rv : "5";
    const char *status =
        a.slot ? rcf_fmt(",\"status\":%s", rcf_keep(FX->claim_status(POOL, a.slot))) : "";
    const char *spec =
        a.wanted ? rcf_keep(FX->claim_spec_wanted(POOL, a.wanted)) : rcf_keep(FX->claim_spec(POOL));
    return rcf_fmt("{\"apiVersion\":\"%s\",\"kind\":\"%s\",\"metadata\":%s,\"spec\":%s%s}",
                   RCF.def->api_version, RCF.def->claim_kind,
                   rcf_meta_json(a.name, NS, a.uid, a.rv, a.finalizer, a.deleting), spec, status);
}

/* The pool POOL (uid POOL_UID, rv "3"), as JSON text. */
static const char *pool_json(obj_args a)
{
    return rcf_fmt("{\"apiVersion\":\"%s\",\"kind\":\"%s\",\"metadata\":%s,\"spec\":%s}",
                   RCF.def->api_version, RCF.def->pool_kind,
                   rcf_meta_json(POOL, NULL, POOL_UID, a.rv ? a.rv : "3", a.finalizer, a.deleting),
                   a.bad ? FX->bad_pool_spec : FX->pool_spec);
}

/* The Reservation name of slot of POOL, as the domain names it. */
static const char *resv_name(const char *slot)
{
    return rcf_resv_name(POOL, slot);
}

static const char *resv_path(const char *slot)
{
    return rcf_resv_path(POOL, slot);
}

/* The Reservation of slot held by the claim NS/claim (uid claim_uid), with
 * its own uid and resourceVersion, as JSON text. */
static const char *resv_json(const char *slot, const char *claim, const char *claim_uid,
                             const char *uid, const char *rv)
{
    return rcf_resv_json(&(rcf_resv){.pool = POOL,
                                     .slot = slot,
                                     .claim = claim,
                                     .claim_uid = claim_uid,
                                     .uid = uid,
                                     .rv = rv,
                                     .spec_extra = FX->resv_spec_extra});
}

static const char *claim_path(void)
{
    return rcf_ref_path(RCF.def->claims_ref, NS, CLAIM);
}

static const char *pool_path(void)
{
    return rcf_ref_path(RCF.def->pools_ref, NULL, POOL);
}

/* ---- filling the caches (as an informer would, then its handlers) ----------- */

static void cache_claim(obj_args a)
{
    rcf_cache_claim(claim_json(a));
}

static void cache_pool(obj_args a)
{
    rcf_cache_pool(pool_json(a));
}

static void cache_resv(const char *slot, const char *claim, const char *claim_uid, const char *uid,
                       const char *rv)
{
    rcf_cache_resv(resv_json(slot, claim, claim_uid, uid, rv));
}

/* ---- the script ------------------------------------------------------------- */

/* A 409 AlreadyExists to the POST of slot's Reservation, and the GET that
 * follows shows it held by claim holder/holder_uid. */
static void answer_taken(const char *slot, const char *holder, const char *holder_uid)
{
    rcf_answer("POST", RCF_RESV, 409, rcf_status_body(409, "AlreadyExists"));
    rcf_answer("GET", resv_path(slot), 200, resv_json(slot, holder, holder_uid, "r-taken", "40"));
}

/* 201 to the POST of slot's Reservation by our claim. */
static void answer_created(const char *slot)
{
    rcf_answer("POST", RCF_RESV, 201, resv_json(slot, CLAIM, CLAIM_UID, "r-new", "41"));
}

/* 200 to a GET of our claim: the server has a (the version a reconcile reads
 * before it gives back a slot). */
static void answer_claim_read(obj_args a)
{
    rcf_answer("GET", claim_path(), 200, claim_json(a));
}

/* 200 to the GET confirming the claim holds slot (uid, rv): a slot only the
 * cache says it holds, before a status shows it. */
static void answer_held(const char *slot, const char *uid, const char *rv)
{
    rcf_answer("GET", resv_path(slot), 200, resv_json(slot, CLAIM, CLAIM_UID, uid, rv));
}

/* 200 to our claim's status write (the server's copy: resourceVersion 6). */
static void answer_status_written(bool finalizer)
{
    rcf_answer("PUT", rcf_fmt("%s/status", claim_path()), 200,
               claim_json((obj_args){.rv = "6", .finalizer = finalizer}));
}

/* ---- what was sent ------------------------------------------------------------ */

/* A POST creating slot's Reservation for our claim. */
static void assert_post(size_t i, const char *slot)
{
    rcf_assert_post(i, POOL, slot, CLAIM, CLAIM_UID);
}

/* A DELETE of slot's Reservation with preconditions on its uid and resourceVersion. */
static void assert_delete(size_t i, const char *slot, const char *uid, const char *rv)
{
    rcf_assert_delete(i, POOL, slot, uid, rv);
}

/* Request i writes our claim's status: Ready=True, holding slot. */
static void assert_claim_ready(size_t i, const char *rv, const char *slot)
{
    json_object *st = rcf_assert_status(i, rcf_fmt("%s/status", claim_path()), rv, REC_COND_TRUE,
                                        RCF.def->reason_ready);
    char *got = RCF.def->status_slot(st);
    cr_assert_not_null(got, "[%s] status names no slot: %s", FX->name,
                       json_object_to_json_string(st));
    rcf_keep(got);
    cr_assert_str_eq(got, slot, "[%s]", FX->name);
}

/* Request i writes our claim's status: Ready=False with reason, naming no slot. */
static void assert_claim_pending(size_t i, const char *rv, const char *reason)
{
    json_object *st =
        rcf_assert_status(i, rcf_fmt("%s/status", claim_path()), rv, REC_COND_FALSE, reason);
    char *got = RCF.def->status_slot(st);
    cr_assert_null(got, "[%s] a pending claim names a slot: %s", FX->name, got);
}

static ctl_result reconcile_claim(void)
{
    return rcf_keep_result(rec_domain_reconcile_claim(RCF.d, NS, CLAIM));
}
/* ---- which slot a claim tries first ---------------------------------------------- */

/* The slot the domain picks for claim_uid from an empty pool, skipping skip (may be NULL). */
static const char *pick_for(const char *claim_uid, const char *skip)
{
    json_object *po = rcf_parse(pool_json((obj_args){0}));
    void *pool = NULL, *used = NULL, *requested = NULL;
    char *problem = NULL, *slot = NULL;
    cr_assert_eq(RCF.def->pool_open(po, &pool, &problem), KC_OK);
    cr_assert_not_null(pool, "[%s] the fixture's pool is invalid: %s", FX->name,
                       problem ? problem : "?");
    cr_assert_eq(RCF.def->set_new(&used), KC_OK);
    cr_assert_eq(RCF.def->set_new(&requested), KC_OK);
    const char *skips[1] = {skip};
    cr_assert_eq(RCF.def->pick(pool, used, requested, skips, skip ? 1 : 0, claim_uid, NULL, &slot),
                 KC_OK);
    RCF.def->set_free(used);
    RCF.def->set_free(requested);
    RCF.def->pool_close(pool);
    json_object_put(po);
    return rcf_keep(slot);
}

/* The first slot our claim tries, and the other one. */
static const char *first_slot(void)
{
    return pick_for(CLAIM_UID, NULL);
}

static const char *second_slot(void)
{
    const char *first = first_slot();
    const char *second = pick_for(CLAIM_UID, first);
    cr_assert_str_neq(first, second);
    cr_assert(!strcmp(second, FX->slots[0]) || !strcmp(second, FX->slots[1]), "[%s] %s", FX->name,
              second);
    return second;
}

/* ---- claims: acquiring ------------------------------------------------------------- */

DOMAIN_TEST(claim, finalizer_goes_on_before_anything_is_acquired)
{
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = false});
    rcf_answer("PATCH", claim_path(), 200, claim_json((obj_args){.rv = "5a", .finalizer = true}));
    answer_created(first_slot());
    rcf_answer("PUT", rcf_fmt("%s/status", claim_path()), 200, claim_json((obj_args){.rv = "6"}));

    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(3);
    rcf_assert_finalizer_patch(0, claim_path(), "5", true);
    assert_post(1, first_slot());
    /* The status is written over the server's copy the finalizer patch returned. */
    assert_claim_ready(2, "5a", first_slot());
}

DOMAIN_TEST(claim, finalizer_conflict_requeues_and_acquires_nothing)
{
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = false});
    rcf_answer("PATCH", claim_path(), 409, rcf_status_body(409, "Conflict"));

    rcf_assert_outcome(reconcile_claim(), CTL_REQUEUE);
    rcf_assert_api_count(1);
    rcf_assert_finalizer_patch(0, claim_path(), "5", true);
}

/* The claim, with its finalizer, allocated the first slot of the pool: its
 * Reservation POSTed (201) and its Ready status written, two requests. */
static void allocate_first_slot(void)
{
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = true});
    answer_created(first_slot());
    answer_status_written(true);
    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(2);
}

DOMAIN_TEST(claim, allocation_posts_the_reservation_then_writes_ready_status)
{
    allocate_first_slot();
    assert_post(0, first_slot());
    assert_claim_ready(1, "5", first_slot());
    cr_assert_eq(rcf_events_with_reason(RCF.def->reason_ready), 1, "[%s] one %s Event", FX->name,
                 RCF.def->reason_ready);
}

DOMAIN_TEST(claim, slot_of_another_claim_409_moves_to_the_next_slot)
{
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = true});
    answer_taken(first_slot(), "other", "uid-other");
    answer_created(second_slot());
    answer_status_written(true);

    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(4);
    assert_post(0, first_slot());
    rcf_assert_api(1, "GET", resv_path(first_slot()));
    assert_post(2, second_slot());
    assert_claim_ready(3, "5", second_slot());
}

DOMAIN_TEST(claim, slot_of_our_own_409_is_adopted_without_a_second_post)
{
    /* Killed between the POST and the status write, with nothing cached: the
     * same slot is tried first and the 409 names our uid. */
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = true});
    answer_taken(first_slot(), CLAIM, CLAIM_UID);
    answer_status_written(true);

    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(3);
    assert_post(0, first_slot());
    rcf_assert_api(1, "GET", resv_path(first_slot()));
    assert_claim_ready(2, "5", first_slot());
}

DOMAIN_TEST(claim, cached_reservation_after_a_crash_is_confirmed_then_written)
{
    /* The cache shows the claim's Reservation of the slot it would not pick
     * first: it is adopted as it is, nothing is posted; the status did not
     * show it, so the server confirms it is still the claim's first. */
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = true});
    cache_resv(second_slot(), CLAIM, CLAIM_UID, "r-1", "7");
    answer_held(second_slot(), "r-1", "7");
    answer_status_written(true);

    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(2);
    rcf_assert_api(0, "GET", resv_path(second_slot()));
    assert_claim_ready(1, "5", second_slot());
}

DOMAIN_TEST(claim, a_cached_reservation_gone_on_the_server_is_never_shown)
{
    /* Another replica gave the slot back; our cache has not seen the delete.
     * Writing it to status could show it beside the claim that takes it
     * next: nothing is written, the run waits for the cache. */
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = true});
    cache_resv(second_slot(), CLAIM, CLAIM_UID, "r-1", "7");
    rcf_answer("GET", resv_path(second_slot()), 404, rcf_status_body(404, "NotFound"));

    rcf_assert_outcome(reconcile_claim(), CTL_REQUEUE);
    rcf_assert_api_count(1);
    rcf_assert_api(0, "GET", resv_path(second_slot()));
}

DOMAIN_TEST(claim, claim_holding_two_keeps_the_one_status_names_and_frees_the_other)
{
    /* status names the slot the fixed order would not keep: status wins. */
    const char *held[2] = {FX->slots[0], FX->slots[1]};
    size_t by_order = RCF.def->choose_keep(held, 2, NULL, NULL);
    const char *kept = held[1 - by_order], *freed = held[by_order];
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = true, .slot = kept});
    cache_resv(held[0], CLAIM, CLAIM_UID, "r-0", "70");
    cache_resv(held[1], CLAIM, CLAIM_UID, "r-1", "71");
    const char *freed_uid = freed == held[0] ? "r-0" : "r-1";
    const char *freed_rv = freed == held[0] ? "70" : "71";
    answer_claim_read((obj_args){.finalizer = true, .slot = kept});
    rcf_answer("GET", resv_path(freed), 200,
               resv_json(freed, CLAIM, CLAIM_UID, freed_uid, freed_rv));
    rcf_answer("DELETE", resv_path(freed), 200, RCF_SUCCESS);
    answer_status_written(true);

    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(4);
    /* The claim as the server has it first: its status is the one cached. */
    rcf_assert_api(0, "GET", claim_path());
    rcf_assert_api(1, "GET", resv_path(freed));
    assert_delete(2, freed, freed_uid, freed_rv);
    assert_claim_ready(3, "5", kept);
}

DOMAIN_TEST(claim, a_claim_newer_on_the_server_gives_nothing_back)
{
    /* The cache shows the claim's status naming one slot; another replica
     * has since written a status naming the other (resourceVersion 9). The
     * slot the cached status does not name may be the one the claim shows
     * now: nothing is released, the run waits for the newer claim. */
    const char *held[2] = {FX->slots[0], FX->slots[1]};
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = true, .slot = held[0]});
    cache_resv(held[0], CLAIM, CLAIM_UID, "r-0", "70");
    cache_resv(held[1], CLAIM, CLAIM_UID, "r-1", "71");
    answer_claim_read((obj_args){.finalizer = true, .slot = held[1], .rv = "9"});

    rcf_assert_outcome(reconcile_claim(), CTL_REQUEUE);
    rcf_assert_api_count(1);
    rcf_assert_api(0, "GET", claim_path());
}

DOMAIN_TEST(claim, lagging_cache_reacquires_the_slot_status_names_first)
{
    /* status names the slot the claim would not pick first; no Reservation is
     * cached. That slot is posted first; 409 with our uid keeps it. */
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = true, .slot = second_slot()});
    answer_taken(second_slot(), CLAIM, CLAIM_UID);
    answer_status_written(true);

    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(3);
    assert_post(0, second_slot());
    rcf_assert_api(1, "GET", resv_path(second_slot()));
    assert_claim_ready(2, "5", second_slot());
}

DOMAIN_TEST(claim, lagging_cache_slot_lost_to_another_claim_takes_a_new_one)
{
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = true, .slot = second_slot()});
    answer_taken(second_slot(), "other", "uid-other");
    answer_created(first_slot());
    answer_status_written(true);

    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(4);
    assert_post(0, second_slot());
    rcf_assert_api(1, "GET", resv_path(second_slot()));
    assert_post(2, first_slot());
    assert_claim_ready(3, "5", first_slot());
    cr_assert_eq(rcf_events_with_reason(RCF.def->reason_lost), 1, "[%s] one %s Event", FX->name,
                 RCF.def->reason_lost);
}

/* The informer, late: the claim's Reservation of slot shows up in the cache
 * while the reconcile waits for its POST. */
typedef struct late_resv {
    const char *text;
    pthread_t thread;
} late_resv;

static void *late_resv_run(void *arg)
{
    late_resv *l = arg;
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 150 * 1000 * 1000};
    nanosleep(&ts, NULL);
    json_object *o = json_tokener_parse(l->text);
    if (o && store_add(RCF.resv, o, NULL) == KC_OK) {
        o = json_tokener_parse(l->text);
        rec_domain_feed(RCF.d, REC_FEED_RESV_ADD, o);
        json_object_put(o);
    }
    return NULL;
}

DOMAIN_TEST(claim, second_slot_taken_behind_a_lagging_cache_is_given_back)
{
    /* Another replica gave the claim a slot the cache did not show yet; this
     * reconcile took another. Reading its holdings again after the POST, it
     * finds both and frees the one it just made; the next reconcile keeps the
     * other and writes it to status. */
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = true});
    const char *mine = first_slot(), *theirs = second_slot();
    rs_push(RCF.srv, &(rs_response){.method = "POST",
                                    .path_prefix = RCF_RESV,
                                    .status = 201,
                                    .delay_ms = 600,
                                    .body = resv_json(mine, CLAIM, CLAIM_UID, "r-new", "41")});
    answer_claim_read((obj_args){.finalizer = true});
    rcf_answer("GET", resv_path(mine), 200, resv_json(mine, CLAIM, CLAIM_UID, "r-new", "41"));
    rcf_answer("DELETE", resv_path(mine), 200, RCF_SUCCESS);
    late_resv late = {.text = resv_json(theirs, CLAIM, CLAIM_UID, "r-old", "30")};
    cr_assert_eq(pthread_create(&late.thread, NULL, late_resv_run, &late), 0);
    ctl_result r = reconcile_claim();
    pthread_join(late.thread, NULL);

    rcf_assert_outcome(r, CTL_REQUEUE);
    rcf_assert_api_count(4);
    assert_post(0, mine);
    rcf_assert_api(1, "GET", claim_path()); /* no status shows it */
    rcf_assert_api(2, "GET", resv_path(mine));
    assert_delete(3, mine, "r-new", "41");

    /* The other is only in the cache and not in status: confirmed first. */
    answer_held(theirs, "r-old", "30");
    answer_status_written(true);
    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(6);
    rcf_assert_api(4, "GET", resv_path(theirs));
    assert_claim_ready(5, "5", theirs);
}

/* ---- claims: errors ------------------------------------------------------------ */

DOMAIN_TEST(claim, status_write_conflict_requeues_without_error)
{
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = true});
    answer_created(first_slot());
    rcf_answer("PUT", rcf_fmt("%s/status", claim_path()), 409, rcf_status_body(409, "Conflict"));

    rcf_assert_outcome(reconcile_claim(), CTL_REQUEUE);
    rcf_assert_api_count(2);
    assert_post(0, first_slot());
    assert_claim_ready(1, "5", first_slot());
    cr_assert_eq(rcf_events_written(), 0, "[%s] no Event for a status that was not written",
                 FX->name);
}

static void post_error_writes_nothing(int code, const char *reason)
{
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = true});
    rcf_answer("POST", RCF_RESV, code, rcf_status_body(code, reason));

    ctl_result r = reconcile_claim();
    rcf_assert_outcome(r, CTL_ERROR);
    cr_assert_lt(r.error, 0);
    rcf_assert_api_count(1);
    assert_post(0, first_slot());
    cr_assert_eq(rcf_events_written(), 0, "[%s] no Event", FX->name);
}

DOMAIN_TEST(claim, post_answered_410_is_an_error_and_writes_nothing_else)
{
    post_error_writes_nothing(410, "Gone");
}

DOMAIN_TEST(claim, post_answered_500_is_an_error_and_writes_nothing_else)
{
    post_error_writes_nothing(500, "InternalError");
}

/* ---- claims: the pool ------------------------------------------------------------ */

DOMAIN_TEST(claim, missing_pool_is_pool_not_found)
{
    cache_claim((obj_args){.finalizer = true});
    answer_status_written(true);

    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(1);
    assert_claim_pending(0, "5", RCF.def->reason_not_found);
    cr_assert_eq(rcf_events_with_reason(RCF.def->reason_not_found), 1);
}

DOMAIN_TEST(claim, pool_being_deleted_is_pool_terminating)
{
    cache_pool((obj_args){.finalizer = true, .deleting = true});
    cache_claim((obj_args){.finalizer = true});
    answer_status_written(true);

    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(1);
    assert_claim_pending(0, "5", RCF.def->reason_pool_gone);
}

DOMAIN_TEST(claim, pool_with_every_slot_held_is_pool_exhausted)
{
    cache_pool((obj_args){.finalizer = true});
    cache_resv(FX->slots[0], "other0", "uid-other0", "r-0", "70");
    cache_resv(FX->slots[1], "other1", "uid-other1", "r-1", "71");
    cache_claim((obj_args){.finalizer = true});
    answer_status_written(true);

    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(1);
    assert_claim_pending(0, "5", RCF.def->reason_exhausted);
}

/* ---- claims: deletion ------------------------------------------------------------ */

static void cache_deleting_claim_holding(const char *slot)
{
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = true, .deleting = true, .slot = slot});
    cache_resv(slot, CLAIM, CLAIM_UID, "r-1", "9");
}

static void answer_finalizer_removed(void)
{
    rcf_answer("PATCH", claim_path(), 200, claim_json((obj_args){.rv = "6", .deleting = true}));
}

DOMAIN_TEST(claim_delete, release_deletes_with_preconditions_then_removes_the_finalizer)
{
    const char *slot = first_slot();
    cache_deleting_claim_holding(slot);
    rcf_answer("GET", resv_path(slot), 200, resv_json(slot, CLAIM, CLAIM_UID, "r-1", "9"));
    rcf_answer("DELETE", resv_path(slot), 200, RCF_SUCCESS);
    answer_finalizer_removed();

    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(3);
    rcf_assert_api(0, "GET", resv_path(slot));
    assert_delete(1, slot, "r-1", "9");
    rcf_assert_finalizer_patch(2, claim_path(), "5", false);
    cr_assert_eq(rcf_events_with_reason("Released"), 1);
}

DOMAIN_TEST(claim_delete, reservation_already_gone_on_get_is_success)
{
    const char *slot = first_slot();
    cache_deleting_claim_holding(slot);
    rcf_answer("GET", resv_path(slot), 404, rcf_status_body(404, "NotFound"));
    answer_finalizer_removed();

    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(2);
    rcf_assert_api(0, "GET", resv_path(slot));
    rcf_assert_finalizer_patch(1, claim_path(), "5", false);
}

DOMAIN_TEST(claim_delete, reservation_gone_on_delete_is_success)
{
    const char *slot = first_slot();
    cache_deleting_claim_holding(slot);
    rcf_answer("GET", resv_path(slot), 200, resv_json(slot, CLAIM, CLAIM_UID, "r-1", "9"));
    rcf_answer("DELETE", resv_path(slot), 404, rcf_status_body(404, "NotFound"));
    answer_finalizer_removed();

    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(3);
    assert_delete(1, slot, "r-1", "9");
    rcf_assert_finalizer_patch(2, claim_path(), "5", false);
}

DOMAIN_TEST(claim_delete, reservation_retaken_by_another_claim_is_not_deleted)
{
    const char *slot = first_slot();
    cache_deleting_claim_holding(slot);
    rcf_answer("GET", resv_path(slot), 200, resv_json(slot, "other", "uid-other", "r-2", "12"));
    answer_finalizer_removed();

    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(2);
    rcf_assert_api(0, "GET", resv_path(slot));
    rcf_assert_finalizer_patch(1, claim_path(), "5", false);
}

DOMAIN_TEST(claim_delete, slot_status_names_is_released_when_the_cache_shows_none)
{
    /* A lagging cache: only status says what the claim holds. */
    const char *slot = second_slot();
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = true, .deleting = true, .slot = slot});
    rcf_answer("GET", resv_path(slot), 200, resv_json(slot, CLAIM, CLAIM_UID, "r-1", "9"));
    rcf_answer("DELETE", resv_path(slot), 200, RCF_SUCCESS);
    answer_finalizer_removed();

    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(3);
    assert_delete(1, slot, "r-1", "9");
    rcf_assert_finalizer_patch(2, claim_path(), "5", false);
}

DOMAIN_TEST(claim_delete, failed_release_keeps_the_finalizer)
{
    const char *slot = first_slot();
    cache_deleting_claim_holding(slot);
    rcf_answer("GET", resv_path(slot), 200, resv_json(slot, CLAIM, CLAIM_UID, "r-1", "9"));
    rcf_answer("DELETE", resv_path(slot), 500, rcf_status_body(500, "InternalError"));

    rcf_assert_outcome(reconcile_claim(), CTL_ERROR);
    rcf_assert_api_count(2);
    assert_delete(1, slot, "r-1", "9");
}

/* ---- the orphan sweep ---------------------------------------------------------------- */

static ctl_result reconcile_resv(const char *slot)
{
    return rcf_keep_result(rec_domain_reconcile_reservation(RCF.d, resv_name(slot)));
}

DOMAIN_TEST(sweep, reservation_of_a_claim_the_server_does_not_have_is_freed)
{
    const char *slot = first_slot();
    cache_resv(slot, CLAIM, CLAIM_UID, "r-1", "9");
    rcf_answer("GET", claim_path(), 404, rcf_status_body(404, "NotFound"));
    rcf_answer("GET", resv_path(slot), 200, resv_json(slot, CLAIM, CLAIM_UID, "r-1", "9"));
    rcf_answer("DELETE", resv_path(slot), 200, RCF_SUCCESS);

    rcf_assert_outcome(reconcile_resv(slot), CTL_DONE);
    rcf_assert_api_count(3);
    rcf_assert_api(0, "GET", claim_path());
    rcf_assert_api(1, "GET", resv_path(slot));
    assert_delete(2, slot, "r-1", "9");
}

DOMAIN_TEST(sweep, reservation_of_a_claim_the_cache_lags_on_is_kept)
{
    const char *slot = first_slot();
    cache_resv(slot, CLAIM, CLAIM_UID, "r-1", "9");
    rcf_answer("GET", claim_path(), 200, claim_json((obj_args){.finalizer = true}));

    rcf_assert_outcome(reconcile_resv(slot), CTL_DONE);
    rcf_assert_api_count(1);
    rcf_assert_api(0, "GET", claim_path());
}

DOMAIN_TEST(sweep, reservation_of_a_recreated_claim_is_freed)
{
    const char *slot = first_slot();
    cache_resv(slot, CLAIM, CLAIM_UID, "r-1", "9");
    rcf_answer("GET", claim_path(), 200, claim_json((obj_args){.uid = "uid-c1-again"}));
    rcf_answer("GET", resv_path(slot), 200, resv_json(slot, CLAIM, CLAIM_UID, "r-1", "9"));
    rcf_answer("DELETE", resv_path(slot), 200, RCF_SUCCESS);

    rcf_assert_outcome(reconcile_resv(slot), CTL_DONE);
    rcf_assert_api_count(3);
    rcf_assert_api(0, "GET", claim_path());
    assert_delete(2, slot, "r-1", "9");
}

DOMAIN_TEST(sweep, reservation_of_a_cached_claim_asks_nothing)
{
    const char *slot = first_slot();
    cache_claim((obj_args){.finalizer = true});
    cache_resv(slot, CLAIM, CLAIM_UID, "r-1", "9");

    rcf_assert_outcome(reconcile_resv(slot), CTL_DONE);
    rcf_assert_api_count(0);
}

DOMAIN_TEST(sweep, server_error_on_the_claim_frees_nothing)
{
    const char *slot = first_slot();
    cache_resv(slot, CLAIM, CLAIM_UID, "r-1", "9");
    rcf_answer("GET", claim_path(), 500, rcf_status_body(500, "InternalError"));

    rcf_assert_outcome(reconcile_resv(slot), CTL_ERROR);
    rcf_assert_api_count(1);
}

/* ---- pools ------------------------------------------------------------------------- */

static ctl_result reconcile_pool(void)
{
    return rcf_keep_result(rec_domain_reconcile_pool(RCF.d, POOL));
}

DOMAIN_TEST(pool, finalizer_first_then_counts_of_the_cached_reservations)
{
    cache_pool((obj_args){.finalizer = false});
    cache_resv(FX->slots[0], CLAIM, CLAIM_UID, "r-0", "70");
    rcf_answer("PATCH", pool_path(), 200, pool_json((obj_args){.rv = "3a", .finalizer = true}));
    rcf_answer("PUT", rcf_fmt("%s/status", pool_path()), 200, pool_json((obj_args){.rv = "4"}));

    rcf_assert_outcome(reconcile_pool(), CTL_DONE);
    rcf_assert_api_count(2);
    rcf_assert_finalizer_patch(0, pool_path(), "3", true);
    json_object *st = rcf_assert_status(1, rcf_fmt("%s/status", pool_path()), "3a", REC_COND_TRUE,
                                        RCF.def->reason_valid);
    cr_assert_eq(rcf_int_at(st, "total"), 2);
    cr_assert_eq(rcf_int_at(st, "allocated"), 1);
    cr_assert_eq(rcf_int_at(st, "available"), 1);
}

DOMAIN_TEST(pool, counts_follow_reservations_coming_and_going)
{
    cache_pool((obj_args){.finalizer = true});
    cache_resv(FX->slots[0], CLAIM, CLAIM_UID, "r-0", "70");
    cache_resv(FX->slots[1], "other", "uid-other", "r-1", "71");
    /* One goes again: the cache deletes it, then its handler runs. */
    rcf_uncache_resv(resv_name(FX->slots[1]),
                     resv_json(FX->slots[1], "other", "uid-other", "r-1", "71"));
    rcf_answer("PUT", rcf_fmt("%s/status", pool_path()), 200, pool_json((obj_args){.rv = "4"}));

    rcf_assert_outcome(reconcile_pool(), CTL_DONE);
    rcf_assert_api_count(1);
    json_object *st = rcf_assert_status(0, rcf_fmt("%s/status", pool_path()), "3", REC_COND_TRUE,
                                        RCF.def->reason_valid);
    cr_assert_eq(rcf_int_at(st, "allocated"), 1);
    cr_assert_eq(rcf_int_at(st, "available"), 1);
}

DOMAIN_TEST(pool, deleted_pool_with_holders_is_terminating_and_names_them)
{
    cache_pool((obj_args){.finalizer = true, .deleting = true});
    cache_resv(FX->slots[0], CLAIM, CLAIM_UID, "r-0", "70");
    rcf_answer("PUT", rcf_fmt("%s/status", pool_path()), 200, pool_json((obj_args){.rv = "4"}));

    rcf_assert_outcome(reconcile_pool(), CTL_DONE);
    rcf_assert_api_count(1);
    json_object *st = rcf_assert_status(0, rcf_fmt("%s/status", pool_path()), "3", REC_COND_FALSE,
                                        RCF.def->reason_terminating);
    const char *msg = rcf_str_at(rec_get_condition(st, REC_COND_READY), "message");
    cr_assert(strstr(msg, NS "/" CLAIM), "[%s] the message names the holder: %s", FX->name, msg);
    cr_assert_eq(rcf_int_at(st, "allocated"), 1);
}

/* The query of request target, percent-decoded. */
static const char *decoded_query(const char *target)
{
    const char *q = strchr(target, '?');
    cr_assert_not_null(q, "no query in %s", target);
    char *out = rcf_keep(calloc(1, strlen(q) + 1));
    size_t n = 0;
    for (const char *p = q + 1; *p; p++) {
        unsigned v;
        if (*p == '%' && sscanf(p + 1, "%2x", &v) == 1) {
            out[n++] = (char)v;
            p += 2;
        } else {
            out[n++] = *p == '+' ? ' ' : *p;
        }
    }
    return out;
}

static void assert_reservations_listed(size_t i)
{
    const rs_request *r = rcf_api_at(i);
    cr_assert_not_null(r);
    cr_assert_str_eq(r->method, "GET");
    cr_assert(!strncmp(r->target, RCF_RESV "?", strlen(RCF_RESV "?")), "[%s] %s", FX->name,
              r->target);
    const char *q = decoded_query(r->target);
    const char *sel = rcf_fmt("labelSelector=" REC_LABEL_POOL_KIND "=%s," REC_LABEL_POOL "=" POOL,
                              RCF.def->pool_kind);
    cr_assert(strstr(q, sel), "[%s] query %s, want %s", FX->name, q, sel);
    cr_assert(strstr(q, "limit=1"), "[%s] query %s", FX->name, q);
}

DOMAIN_TEST(pool, deleted_pool_without_holders_asks_the_server_then_drops_the_finalizer)
{
    cache_pool((obj_args){.finalizer = true, .deleting = true});
    rcf_answer("GET", RCF_RESV "?", 200,
               "{\"apiVersion\":\"provisio.dev/v1alpha1\",\"kind\":\"ReservationList\","
               "\"metadata\":{\"resourceVersion\":\"80\"},\"items\":[]}");
    rcf_answer("PATCH", pool_path(), 200, pool_json((obj_args){.rv = "4", .deleting = true}));

    rcf_assert_outcome(reconcile_pool(), CTL_DONE);
    rcf_assert_api_count(2);
    assert_reservations_listed(0);
    rcf_assert_finalizer_patch(1, pool_path(), "3", false);
}

DOMAIN_TEST(pool, deleted_pool_the_server_still_has_reservations_of_keeps_the_finalizer)
{
    cache_pool((obj_args){.finalizer = true, .deleting = true});
    const char *list =
        rcf_fmt("{\"apiVersion\":\"provisio.dev/v1alpha1\",\"kind\":\"ReservationList\","
                "\"metadata\":{\"resourceVersion\":\"80\",\"continue\":\"x\"},\"items\":[%s]}",
                resv_json(FX->slots[0], CLAIM, CLAIM_UID, "r-0", "70"));
    rcf_answer("GET", RCF_RESV "?", 200, list);

    ctl_result r = reconcile_pool();
    rcf_assert_outcome(r, CTL_REQUEUE_AFTER);
    cr_assert_gt(r.after, 0);
    rcf_assert_api_count(1);
    assert_reservations_listed(0);
}

/* ---- a slot asked for by name ------------------------------------------------ */

/* The domain has no way to ask for a slot by name: nothing to test. */
static bool no_wanted_slots(void)
{
    return !RCF.def->claim_slot_path || !FX->claim_spec_wanted;
}

DOMAIN_TEST(claim_wanted, the_slot_asked_for_is_the_one_posted)
{
    if (no_wanted_slots())
        return;
    /* Not the slot the claim's uid would pick first: the one it asks for. */
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = true, .wanted = second_slot()});
    answer_created(second_slot());
    rcf_answer("PUT", rcf_fmt("%s/status", claim_path()), 200,
               claim_json((obj_args){.rv = "6", .finalizer = true, .wanted = second_slot()}));

    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(2);
    assert_post(0, second_slot());
    assert_claim_ready(1, "5", second_slot());
}

DOMAIN_TEST(claim_wanted, a_slot_held_by_another_claim_is_in_use_naming_the_holder)
{
    if (no_wanted_slots())
        return;
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = true, .wanted = first_slot()});
    answer_taken(first_slot(), "holder", "uid-holder");
    rcf_answer("PUT", rcf_fmt("%s/status", claim_path()), 200,
               claim_json((obj_args){.rv = "6", .finalizer = true, .wanted = first_slot()}));

    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(3); /* POST, the GET after 409, the status: no other slot is tried */
    assert_post(0, first_slot());
    rcf_assert_api(1, "GET", resv_path(first_slot()));
    assert_claim_pending(2, "5", RCF.def->reason_in_use);
    json_object *b = rcf_assert_api(2, "PUT", rcf_fmt("%s/status", claim_path()));
    const char *m =
        rcf_str_at(rec_get_condition(rec_obj_at(b, "status"), REC_COND_READY), "message");
    cr_assert(m && strstr(m, NS "/holder"), "[%s] the message names the holder: %s", FX->name,
              m ? m : "(none)");
}

DOMAIN_TEST(claim_wanted, dynamic_allocation_leaves_a_slot_another_claim_asks_for)
{
    if (no_wanted_slots())
        return;
    /* c2 asks for the slot c1 would pick first; c1 (any slot) takes the other. */
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.name = "c2", .uid = "uid-c2", .wanted = first_slot()});
    cache_claim((obj_args){.finalizer = true});
    answer_created(second_slot());
    answer_status_written(true);

    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(2);
    assert_post(0, second_slot());
    assert_claim_ready(1, "5", second_slot());
}

/* ---- an unusable pool, and our own writes seen again --------------------------- */

DOMAIN_TEST(claim, pool_with_an_unusable_spec_is_invalid_spec_and_nothing_is_posted)
{
    cache_pool((obj_args){.finalizer = true, .bad = true});
    cache_claim((obj_args){.finalizer = true});
    answer_status_written(true);

    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(1);
    assert_claim_pending(0, "5", RCF.def->reason_invalid);
}

DOMAIN_TEST(pool, an_unusable_spec_is_ready_false_invalid_spec_with_zero_counts)
{
    cache_pool((obj_args){.finalizer = true, .bad = true});
    rcf_answer("PUT", rcf_fmt("%s/status", pool_path()), 200, pool_json((obj_args){.rv = "4"}));

    rcf_assert_outcome(reconcile_pool(), CTL_DONE);
    rcf_assert_api_count(1);
    json_object *st = rcf_assert_status(0, rcf_fmt("%s/status", pool_path()), "3", REC_COND_FALSE,
                                        RCF.def->reason_invalid);
    cr_assert_eq(rcf_int_at(st, "total"), 0);
    cr_assert_eq(rcf_int_at(st, "available"), 0);
}

DOMAIN_TEST(claim, a_cache_still_showing_what_our_write_replaced_sends_nothing)
{
    /* The first reconcile allocates and writes the status (rv 5 -> 6); the
     * cache has not caught up when the claim is reconciled again: nothing
     * is sent (the watch event of our write enqueues it once more). */
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = true});
    answer_created(first_slot());
    answer_status_written(true);
    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(2);

    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    rcf_assert_api_count(2);
}

/* Write the pool's status once and let the cache catch up with that write
 * (rv 4, the status as written). */
static void pool_written_and_seen(void)
{
    cache_pool((obj_args){.finalizer = true});
    rcf_answer("PUT", rcf_fmt("%s/status", pool_path()), 200, pool_json((obj_args){.rv = "4"}));
    rcf_assert_outcome(reconcile_pool(), CTL_DONE);
    rcf_assert_api_count(1);
    const rs_request *w = rcf_api_at(0);
    cr_assert_not_null(w);
    json_object *seen = rcf_parse(w->body);
    json_object_object_add(rec_obj_at(seen, "metadata"), "resourceVersion",
                           json_object_new_string("4"));
    cr_assert_eq(store_add(RCF.pools, seen, NULL), KC_OK);
}

DOMAIN_TEST(pool, count_only_changes_are_written_at_most_every_half_second)
{
    pool_written_and_seen();
    /* A Reservation comes: only a count changes, so the next write waits for
     * the rest of the interval instead of going out at once. */
    cache_resv(FX->slots[0], CLAIM, CLAIM_UID, "r-0", "70");

    ctl_result r = reconcile_pool();
    cr_assert_eq(r.outcome, CTL_REQUEUE_AFTER, "[%s] got %s", FX->name,
                 rcf_outcome_name(r.outcome));
    cr_assert(r.after > 0 && r.after <= 0.5, "[%s] after %.3f s", FX->name, r.after);
    rcf_assert_api_count(1);
}

DOMAIN_TEST(pool, a_count_only_change_waits_for_more_and_is_then_written_with_them)
{
    pool_written_and_seen();
    cache_resv(FX->slots[0], CLAIM, CLAIM_UID, "r-0", "70");
    ctl_result r = reconcile_pool();
    cr_assert_eq(r.outcome, CTL_REQUEUE_AFTER, "[%s] got %s", FX->name,
                 rcf_outcome_name(r.outcome));
    cr_assert_gt(r.after, 0);
    /* A second allocation meanwhile: still waiting, no sooner than before. */
    cache_resv(FX->slots[1], "other", "uid-other", "r-1", "71");
    ctl_result r2 = reconcile_pool();
    cr_assert_eq(r2.outcome, CTL_REQUEUE_AFTER, "[%s] got %s", FX->name,
                 rcf_outcome_name(r2.outcome));
    cr_assert_leq(r2.after, r.after);
    rcf_assert_api_count(1);

    /* The wait over, one write carries both. */
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(r2.after * 1e9) + 20000000L};
    nanosleep(&ts, NULL);
    rcf_answer("PUT", rcf_fmt("%s/status", pool_path()), 200, pool_json((obj_args){.rv = "5"}));
    rcf_assert_outcome(reconcile_pool(), CTL_DONE);
    rcf_assert_api_count(2);
    json_object *st = rcf_assert_status(1, rcf_fmt("%s/status", pool_path()), "4", REC_COND_TRUE,
                                        RCF.def->reason_valid);
    cr_assert_eq(rcf_int_at(st, "allocated"), 2);
}

DOMAIN_TEST(pool, count_only_writes_of_the_domain_s_pools_take_turns)
{
    pool_written_and_seen();
    cache_resv(FX->slots[0], CLAIM, CLAIM_UID, "r-0", "70");
    ctl_result r0 = reconcile_pool();
    cr_assert_eq(r0.outcome, CTL_REQUEUE_AFTER);
    /* The pool's own wait over, other pools of the domain have taken the
     * turns of the next 0.7 s: this one goes after them. */
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(r0.after * 1e9) + 20000000L};
    nanosleep(&ts, NULL);
    pthread_mutex_lock(&RCF.d->mu);
    RCF.d->counts_next = pv_clock_monotonic() + 0.7;
    pthread_mutex_unlock(&RCF.d->mu);
    ctl_result r = reconcile_pool();
    cr_assert_eq(r.outcome, CTL_REQUEUE_AFTER, "[%s] got %s", FX->name,
                 rcf_outcome_name(r.outcome));
    /* (0 without the turns: the pool's own wait is over; a loaded machine
     * may take a while between setting the turns and the reconcile) */
    cr_assert(r.after > 0.3 && r.after <= 0.7, "[%s] after %.3f s", FX->name, r.after);
    rcf_assert_api_count(1);
    /* Its turn is kept: asked again, the same time, and the next pool's is
     * one REC_POOL_COUNTS_PER_S step later. */
    ctl_result r2 = reconcile_pool();
    cr_assert_eq(r2.outcome, CTL_REQUEUE_AFTER);
    cr_assert_leq(r2.after, r.after);
    pthread_mutex_lock(&RCF.d->mu);
    double gap = RCF.d->counts_next - (pv_clock_monotonic() + r2.after);
    pthread_mutex_unlock(&RCF.d->mu);
    cr_assert(gap > 0.25 / REC_POOL_COUNTS_PER_S && gap < 1.05 / REC_POOL_COUNTS_PER_S,
              "[%s] next turn %.3f s after this one", FX->name, gap);

    ts.tv_nsec = (long)(r2.after * 1e9) + 20000000L;
    nanosleep(&ts, NULL);
    rcf_answer("PUT", rcf_fmt("%s/status", pool_path()), 200, pool_json((obj_args){.rv = "5"}));
    rcf_assert_outcome(reconcile_pool(), CTL_DONE);
    rcf_assert_api_count(2);
}

DOMAIN_TEST(pool, a_change_of_conditions_is_written_at_once_with_the_counts)
{
    pool_written_and_seen();
    cache_resv(FX->slots[0], CLAIM, CLAIM_UID, "r-0", "70");
    rcf_assert_outcome(reconcile_pool(), CTL_REQUEUE_AFTER);
    /* The pool starts deleting: Ready=False Terminating goes out now. */
    json_object *cur = NULL;
    cr_assert_eq(store_get(RCF.pools, POOL, &cur), KC_OK);
    json_object *del = NULL;
    cr_assert_eq(json_object_deep_copy(cur, &del, NULL), 0);
    store_obj_put(cur);
    json_object_object_add(rec_obj_at(del, "metadata"), "deletionTimestamp",
                           json_object_new_string("2026-12-06T00:00:00Z"));
    json_object_object_add(rec_obj_at(del, "metadata"), "resourceVersion",
                           json_object_new_string("5"));
    cr_assert_eq(store_add(RCF.pools, del, NULL), KC_OK);
    rcf_answer("PUT", rcf_fmt("%s/status", pool_path()), 200, pool_json((obj_args){.rv = "6"}));

    rcf_assert_outcome(reconcile_pool(), CTL_DONE);
    rcf_assert_api_count(2);
    json_object *st = rcf_assert_status(1, rcf_fmt("%s/status", pool_path()), "5", REC_COND_FALSE,
                                        RCF.def->reason_terminating);
    cr_assert_eq(rcf_int_at(st, "allocated"), 1);
}

DOMAIN_TEST(pool, a_deleted_pool_held_only_by_a_creation_never_seen_looks_again_when_it_expires)
{
    /* A claim's Reservation POST answered 201, and the Reservation never
     * shows in the cache (made and deleted while the watch was down): the
     * claim's in-flight creation is all that holds the pool. Deleting the
     * pool says so and looks again when that creation expires
     * (REC_INFLIGHT_TTL); nothing else would wake it. */
    allocate_first_slot();
    cache_pool((obj_args){.finalizer = true, .deleting = true, .rv = "5"});

    rcf_answer("PUT", rcf_fmt("%s/status", pool_path()), 200, pool_json((obj_args){.rv = "4"}));
    ctl_result r = reconcile_pool();
    cr_assert_eq(r.outcome, CTL_REQUEUE_AFTER, "[%s] got %s", FX->name,
                 rcf_outcome_name(r.outcome));
    cr_assert(r.after > REC_INFLIGHT_TTL - 5 && r.after <= REC_INFLIGHT_TTL + 1,
              "[%s] after %.3f s", FX->name, r.after);
    json_object *st = rcf_assert_status(2, rcf_fmt("%s/status", pool_path()), "5", REC_COND_FALSE,
                                        RCF.def->reason_terminating);
    json_object *ready = rec_get_condition(st, REC_COND_READY);
    const char *m = rcf_str_at(ready, "message");
    cr_assert(strstr(m, "being reserved") && !strstr(m, "(,"), "[%s] %s", FX->name, m);
}

/* ---- a scoped domain (IP networks): Reservations under an earlier name ----------- */

TestSuite(claim_rename, .fini = env_stop, .timeout = 60);

/* The name versions before networks gave slot's Reservation:
 * ippool.<pool>.<address>. */
static const char *legacy_name(const char *slot)
{
    ipam_addr a;
    char *name = NULL;
    cr_assert_eq(ipam_addr_parse(slot, &a), 0);
    cr_assert_eq(ip_names_legacy(POOL, a, &name), KC_OK);
    return rcf_keep(name);
}

/* The Reservation of slot for claim/claim_uid under that name (no
 * spec.network), as JSON text. */
static const char *legacy_resv_json(const char *slot, const char *claim, const char *claim_uid,
                                    const char *uid, const char *rv)
{
    const char *name = legacy_name(slot);
    return rcf_fmt("{\"apiVersion\":\"provisio.dev/v1alpha1\",\"kind\":\"Reservation\","
                   "\"metadata\":{\"name\":\"%s\",\"uid\":\"%s\",\"resourceVersion\":\"%s\","
                   "\"labels\":{\"" REC_LABEL_POOL_KIND "\":\"IPPool\",\"" REC_LABEL_POOL
                   "\":\"%s\"}},"
                   "\"spec\":{\"pool\":{\"kind\":\"IPPool\",\"name\":\"%s\"},\"slot\":\"%s\","
                   "\"claim\":{\"kind\":\"IPClaim\",\"namespace\":\"" RCF_NS "\",\"name\":\"%s\","
                   "\"uid\":\"%s\"}}}",
                   name, uid, rv, POOL, POOL, slot, claim, claim_uid);
}

static const char *legacy_resv_path(const char *slot)
{
    return rcf_fmt(RCF_RESV "/%s", legacy_name(slot));
}

Test(claim_rename, a_held_legacy_reservation_moves_to_the_network_name_before_it_is_let_go)
{
    env_start(&IP_FX);
    const char *slot = second_slot();
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = true, .slot = slot});
    rcf_cache_resv(legacy_resv_json(slot, CLAIM, CLAIM_UID, "r-old", "7"));
    answer_created(slot);
    rcf_answer("GET", legacy_resv_path(slot), 200,
               legacy_resv_json(slot, CLAIM, CLAIM_UID, "r-old", "7"));
    rcf_answer("DELETE", legacy_resv_path(slot), 200, RCF_SUCCESS);
    answer_status_written(true);

    rcf_assert_outcome(reconcile_claim(), CTL_DONE);
    /* The address is locked under its network name first (the same slot,
     * not the one a fresh pick would take), then the old lock goes with its
     * preconditions: never a moment without a lock. */
    cr_assert_geq(rcf_api_count(), 3, "%s", rcf_describe_requests());
    assert_post(0, slot);
    rcf_assert_api(1, "GET", legacy_resv_path(slot));
    json_object *del = rcf_assert_api(2, "DELETE", legacy_resv_path(slot));
    cr_assert_str_eq(rcf_str_at(del, "preconditions.uid"), "r-old");
    cr_assert_str_eq(rcf_str_at(del, "preconditions.resourceVersion"), "7");
    for (size_t i = 3; i < rcf_api_count(); i++)
        cr_assert_str_neq(rcf_api_at(i)->method, "POST", "a second slot was taken: %s",
                          rcf_describe_requests());
    cr_assert_eq(rcf_events_with_reason(RCF.def->reason_lost), 0);
}

Test(claim_rename, a_legacy_slot_another_claim_holds_under_the_network_name_is_given_up)
{
    /* The old per-pool names let two overlapping pools hand out one address
     * twice; the other claim took the network name first: this claim lets
     * its old lock go, says so, and takes another address. */
    env_start(&IP_FX);
    const char *slot = second_slot(), *other = first_slot();
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = true, .slot = slot});
    rcf_cache_resv(legacy_resv_json(slot, CLAIM, CLAIM_UID, "r-old", "7"));
    answer_taken(slot, "c2", "uid-c2");
    rcf_answer("GET", legacy_resv_path(slot), 200,
               legacy_resv_json(slot, CLAIM, CLAIM_UID, "r-old", "7"));
    rcf_answer("DELETE", legacy_resv_path(slot), 200, RCF_SUCCESS);
    answer_created(other);
    answer_status_written(true);

    rec_domain_reconcile_claim(RCF.d, NS, CLAIM);
    size_t n = rcf_api_count();
    cr_assert_geq(n, 5, "%s", rcf_describe_requests());
    assert_post(0, slot);
    rcf_assert_api(1, "GET", resv_path(slot));
    rcf_assert_api(2, "GET", legacy_resv_path(slot));
    rcf_assert_api(3, "DELETE", legacy_resv_path(slot));
    cr_assert_eq(rcf_events_with_reason(RCF.def->reason_lost), 1, "%s", rcf_describe_requests());
    const char *m = rcf_event_message(RCF.def->reason_lost);
    cr_assert(strstr(m, "c2") && strstr(m, slot), "%s", m);
    /* Another address, never the one c2 holds. */
    bool posted_other = false;
    for (size_t i = 4; i < n; i++)
        if (!strcmp(rcf_api_at(i)->method, "POST")) {
            assert_post(i, other);
            posted_other = true;
        }
    cr_assert(posted_other, "no other address taken: %s", rcf_describe_requests());
}
