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
 * Events (core/v1, POST /api/v1/namespaces/<ns>/events) are written by the
 * sender thread at its own pace: catch-alls answer them (events.k8s.io too),
 * the assertions on API requests skip them (api_*), and tests that care about
 * an Event flush and look (events_*).
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "ip_internal.h"
#include "kc_client.h"
#include "rec_domain.h"
#include "rec_reserve.h"
#include "rec_util.h"
#include "replay_server.h"

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

#define NS "ns"
#define CLAIM "c1"
#define CLAIM_UID "uid-c1"
#define POOL "p1"
#define POOL_UID "uid-p1"
#define RESV "/apis/provisio.dev/v1alpha1/reservations"
#define EVENTS "/apis/events.k8s.io/"
#define CORE_EVENTS(ns) "/api/v1/namespaces/" ns "/events"

static struct {
    const domain_fx *fx;
    const rec_domain_def *def;
    rs_server *srv;
    kc_config *cfg;
    kc_client *cli;
    rec_domain *d;
    store *claims, *pools, *resv;
    char *garbage[1024]; /* strings a test made, freed by env_stop */
    size_t n_garbage;
    json_object *jgarbage[64]; /* parsed request bodies */
    size_t n_jgarbage;
} T;

static char *keep(char *s)
{
    cr_assert_not_null(s);
    cr_assert_lt(T.n_garbage, sizeof T.garbage / sizeof T.garbage[0]);
    T.garbage[T.n_garbage++] = s;
    return s;
}

static const char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static const char *fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    char *s = NULL;
    int n = vasprintf(&s, f, ap);
    va_end(ap);
    cr_assert_geq(n, 0);
    return keep(s);
}

static void env_start(const domain_fx *fx)
{
    memset(&T, 0, sizeof T);
    T.fx = fx;
    T.def = fx->def;
    T.srv = rs_start(NULL);
    cr_assert_not_null(T.srv);
    /* Events of claims (NS) and of pools (cluster-scoped: "default"). */
    const char *events[] = {CORE_EVENTS(NS), CORE_EVENTS("default"), EVENTS};
    for (size_t i = 0; i < sizeof events / sizeof events[0]; i++)
        rs_push(T.srv,
                &(rs_response){.path_prefix = events[i], .status = 201, .body = "{}", .times = -1});
    rs_kubeconfig_opts ko = {.user_yaml = "    token: abc123\n"};
    char *yaml = rs_kubeconfig(T.srv, &ko);
    cr_assert_not_null(yaml);
    kc_error err = KC_ERROR_INIT;
    int rc = kc_config_from_yaml(yaml, strlen(yaml), NULL, &T.cfg, &err);
    free(yaml);
    cr_assert_eq(rc, KC_OK, "kc_config_from_yaml: %s", err.message);
    kc_client_opts co = {.max_retries = -1};
    rc = kc_client_new(T.cfg, &co, &T.cli, &err);
    cr_assert_eq(rc, KC_OK, "kc_client_new: %s", err.message);
    cr_assert_eq(rec_domain_new_detached(T.def, T.cli, &T.d), KC_OK);
    rec_domain_stores(T.d, &T.claims, &T.pools, &T.resv);
}

static void env_stop(void)
{
    rec_domain_free(T.d);
    kc_client_free(T.cli);
    kc_config_free(T.cfg);
    rs_stop(T.srv);
    for (size_t i = 0; i < T.n_garbage; i++)
        free(T.garbage[i]);
    for (size_t i = 0; i < T.n_jgarbage; i++)
        json_object_put(T.jgarbage[i]);
    memset(&T, 0, sizeof T);
}

/* One timeout for every suite (test_rec_util.c: criterion leaks otherwise). */
TestSuite(claim, .fini = env_stop, .timeout = 60);
TestSuite(claim_delete, .fini = env_stop, .timeout = 60);
TestSuite(sweep, .fini = env_stop, .timeout = 60);
TestSuite(pool, .fini = env_stop, .timeout = 60);

/*
 * A test that runs once per domain, with T ready for it. The parameter is the
 * domain's index in DOMAINS: criterion hands parameters to its workers as
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

static json_object *parse(const char *text)
{
    json_object *o = json_tokener_parse(text);
    cr_assert_not_null(o, "not JSON: %s", text);
    return o;
}

typedef struct obj_args {
    const char *name, *uid, *rv;
    bool finalizer;     /* ours in metadata.finalizers */
    bool deleting;      /* metadata.deletionTimestamp set */
    const char *slot;   /* claims: status names this slot (the fixture's status) */
    const char *wanted; /* claims: the spec asks for this slot by name */
    bool bad;           /* pools: the fixture's unusable spec */
} obj_args;

static const char *meta_json(const obj_args *a, const char *ns)
{
    return fmt("{\"name\":\"%s\",%s\"uid\":\"%s\",\"resourceVersion\":\"%s\",\"generation\":1"
               "%s%s}",
               a->name, ns ? fmt("\"namespace\":\"%s\",", ns) : "", a->uid, a->rv,
               a->finalizer ? ",\"finalizers\":[\"" REC_FINALIZER "\"]" : "",
               a->deleting ? ",\"deletionTimestamp\":\"2026-01-01T00:00:00Z\"" : "");
}

/* The claim NS/a->name (default CLAIM, CLAIM_UID, rv "5") of POOL, as JSON text. */
static const char *claim_json(obj_args a)
{
    a.name = a.name ? a.name : CLAIM;
    a.uid = a.uid ? a.uid : CLAIM_UID;
    a.rv = a.rv ? a.rv : "5";
    const char *status =
        a.slot ? fmt(",\"status\":%s", keep(T.fx->claim_status(POOL, a.slot))) : "";
    const char *spec =
        a.wanted ? keep(T.fx->claim_spec_wanted(POOL, a.wanted)) : keep(T.fx->claim_spec(POOL));
    return fmt("{\"apiVersion\":\"%s\",\"kind\":\"%s\",\"metadata\":%s,\"spec\":%s%s}",
               T.def->api_version, T.def->claim_kind, meta_json(&a, NS), spec, status);
}

/* The pool POOL (uid POOL_UID, rv "3"), as JSON text. */
static const char *pool_json(obj_args a)
{
    a.name = POOL;
    a.uid = POOL_UID;
    a.rv = a.rv ? a.rv : "3";
    return fmt("{\"apiVersion\":\"%s\",\"kind\":\"%s\",\"metadata\":%s,\"spec\":%s}",
               T.def->api_version, T.def->pool_kind, meta_json(&a, NULL),
               a.bad ? T.fx->bad_pool_spec : T.fx->pool_spec);
}

/* The Reservation name of slot of POOL, as the domain names it. */
static const char *resv_name(const char *slot)
{
    char *name = NULL;
    cr_assert_eq(T.def->slot_name(POOL, slot, &name, NULL), KC_OK, "slot %s", slot);
    return keep(name);
}

static const char *resv_path(const char *slot)
{
    return fmt(RESV "/%s", resv_name(slot));
}

/* The Reservation of slot held by the claim NS/claim (uid claim_uid), with
 * its own uid and resourceVersion, as JSON text. */
static const char *resv_json(const char *slot, const char *claim, const char *claim_uid,
                             const char *uid, const char *rv)
{
    return fmt("{\"apiVersion\":\"provisio.dev/v1alpha1\",\"kind\":\"Reservation\","
               "\"metadata\":{\"name\":\"%s\",\"uid\":\"%s\",\"resourceVersion\":\"%s\","
               "\"labels\":{\"" REC_LABEL_POOL_KIND "\":\"%s\",\"" REC_LABEL_POOL "\":\"%s\"}},"
               "\"spec\":{\"pool\":{\"kind\":\"%s\",\"name\":\"%s\"},\"slot\":\"%s\","
               "\"claim\":{\"kind\":\"%s\",\"namespace\":\"" NS "\",\"name\":\"%s\","
               "\"uid\":\"%s\"}%s}}",
               resv_name(slot), uid, rv, T.def->pool_kind, POOL, T.def->pool_kind, POOL, slot,
               T.def->claim_kind, claim, claim_uid, T.fx->resv_spec_extra);
}

static const char *ref_path(kc_ref ref, const char *ns, const char *name)
{
    return fmt("/apis/%s/%s/%s%s%s/%s", ref.group, ref.version, ns ? "namespaces/" : "",
               ns ? fmt("%s/", ns) : "", ref.resource, name);
}

static const char *claim_path(void)
{
    return ref_path(T.def->claims_ref, NS, CLAIM);
}

static const char *pool_path(void)
{
    return ref_path(T.def->pools_ref, NULL, POOL);
}

/* ---- filling the caches (as an informer would, then its handlers) ----------- */

static void cache_claim(obj_args a)
{
    const char *text = claim_json(a);
    cr_assert_eq(store_add(T.claims, parse(text), NULL), KC_OK);
    json_object *o = parse(text);
    rec_domain_feed(T.d, REC_FEED_CLAIM_ADD, o);
    json_object_put(o);
}

static void cache_pool(obj_args a)
{
    cr_assert_eq(store_add(T.pools, parse(pool_json(a)), NULL), KC_OK);
}

static void cache_resv(const char *slot, const char *claim, const char *claim_uid, const char *uid,
                       const char *rv)
{
    const char *text = resv_json(slot, claim, claim_uid, uid, rv);
    cr_assert_eq(store_add(T.resv, parse(text), NULL), KC_OK);
    json_object *o = parse(text);
    rec_domain_feed(T.d, REC_FEED_RESV_ADD, o);
    json_object_put(o);
}

/* ---- the script ------------------------------------------------------------- */

static void answer(const char *method, const char *path, int status, const char *body)
{
    rs_push(T.srv,
            &(rs_response){.method = method, .path_prefix = path, .status = status, .body = body});
}

static const char *status_body(int code, const char *reason)
{
    return fmt("{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
               "\"message\":\"scripted %d %s\",\"reason\":\"%s\",\"code\":%d}",
               code, reason, reason, code);
}

static const char SUCCESS[] = "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Success\"}";

/* A 409 AlreadyExists to the POST of slot's Reservation, and the GET that
 * follows shows it held by claim holder/holder_uid. */
static void answer_taken(const char *slot, const char *holder, const char *holder_uid)
{
    answer("POST", RESV, 409, status_body(409, "AlreadyExists"));
    answer("GET", resv_path(slot), 200, resv_json(slot, holder, holder_uid, "r-taken", "40"));
}

/* 201 to the POST of slot's Reservation by our claim. */
static void answer_created(const char *slot)
{
    answer("POST", RESV, 201, resv_json(slot, CLAIM, CLAIM_UID, "r-new", "41"));
}

/* 200 to our claim's status write (the server's copy: resourceVersion 6). */
static void answer_status_written(bool finalizer)
{
    answer("PUT", fmt("%s/status", claim_path()), 200,
           claim_json((obj_args){.rv = "6", .finalizer = finalizer}));
}

/* ---- what was sent ------------------------------------------------------------ */

static bool is_event(const rs_request *r)
{
    static const char core[] = "/api/v1/namespaces/";
    return !strncmp(r->target, EVENTS, strlen(EVENTS)) ||
           (!strncmp(r->target, core, strlen(core)) && strstr(r->target, "/events"));
}

/* The i-th request that is not an Event, or NULL. */
static const rs_request *api_at(size_t i)
{
    size_t n = rs_request_count(T.srv);
    for (size_t k = 0; k < n; k++) {
        const rs_request *r = rs_request_at(T.srv, k);
        if (!is_event(r) && i-- == 0)
            return r;
    }
    return NULL;
}

static size_t api_count(void)
{
    size_t n = rs_request_count(T.srv), c = 0;
    for (size_t k = 0; k < n; k++)
        c += !is_event(rs_request_at(T.srv, k));
    return c;
}

static const char *describe_requests(void)
{
    const char *s = "";
    size_t n = rs_request_count(T.srv);
    for (size_t k = 0; k < n; k++) {
        const rs_request *r = rs_request_at(T.srv, k);
        s = fmt("%s\n  %s %s", s, r->method, r->target);
    }
    return s;
}

static void assert_api_count(size_t want)
{
    cr_assert_eq(api_count(), want, "[%s] %zu API requests, want %zu:%s", T.fx->name, api_count(),
                 want, describe_requests());
}

/* The i-th API request is method target; its body parsed (NULL if empty). */
static json_object *assert_api(size_t i, const char *method, const char *target)
{
    const rs_request *r = api_at(i);
    cr_assert_not_null(r, "[%s] no API request %zu:%s", T.fx->name, i, describe_requests());
    cr_assert_str_eq(r->method, method, "[%s] request %zu:%s", T.fx->name, i, describe_requests());
    cr_assert_str_eq(r->target, target, "[%s] request %zu:%s", T.fx->name, i, describe_requests());
    if (!r->body_len)
        return NULL;
    json_object *b = parse(r->body);
    cr_assert_lt(T.n_jgarbage, sizeof T.jgarbage / sizeof T.jgarbage[0]);
    T.jgarbage[T.n_jgarbage++] = b;
    return b;
}

static const char *str_at(json_object *o, const char *path)
{
    const char *s = rec_obj_str(o, path);
    return s ? s : "(none)";
}

/* A POST creating slot's Reservation for our claim. */
static void assert_post(size_t i, const char *slot)
{
    json_object *b = assert_api(i, "POST", RESV);
    cr_assert_not_null(b);
    cr_assert_str_eq(str_at(b, "metadata.name"), resv_name(slot), "[%s]", T.fx->name);
    cr_assert_str_eq(str_at(b, "spec.slot"), slot);
    cr_assert_str_eq(str_at(b, "spec.pool.kind"), T.def->pool_kind);
    cr_assert_str_eq(str_at(b, "spec.pool.name"), POOL);
    cr_assert_str_eq(str_at(b, "spec.claim.kind"), T.def->claim_kind);
    cr_assert_str_eq(str_at(b, "spec.claim.namespace"), NS);
    cr_assert_str_eq(str_at(b, "spec.claim.name"), CLAIM);
    cr_assert_str_eq(str_at(b, "spec.claim.uid"), CLAIM_UID);
    json_object *labels = rec_obj_at(b, "metadata.labels");
    cr_assert_not_null(labels);
    json_object *v = NULL;
    cr_assert(json_object_object_get_ex(labels, REC_LABEL_POOL_KIND, &v));
    cr_assert_str_eq(json_object_get_string(v), T.def->pool_kind);
}

/* A DELETE of slot's Reservation with preconditions on its uid and resourceVersion. */
static void assert_delete(size_t i, const char *slot, const char *uid, const char *rv)
{
    json_object *b = assert_api(i, "DELETE", resv_path(slot));
    cr_assert_not_null(b, "[%s] a DELETE without preconditions", T.fx->name);
    cr_assert_str_eq(str_at(b, "preconditions.uid"), uid, "[%s] %s", T.fx->name,
                     json_object_to_json_string(b));
    cr_assert_str_eq(str_at(b, "preconditions.resourceVersion"), rv);
}

/* The status of a status write (request i, PUT target), with Ready status and reason. */
static json_object *assert_status(size_t i, const char *target, const char *rv,
                                  const char *ready_status, const char *reason)
{
    json_object *b = assert_api(i, "PUT", target);
    cr_assert_not_null(b);
    cr_assert_str_eq(str_at(b, "metadata.resourceVersion"), rv,
                     "[%s] the status write carries the resourceVersion it was decided on",
                     T.fx->name);
    json_object *st = rec_obj_at(b, "status");
    cr_assert_not_null(st);
    json_object *ready = rec_get_condition(st, REC_COND_READY);
    cr_assert_not_null(ready, "[%s] no Ready in %s", T.fx->name, json_object_to_json_string(st));
    cr_assert_str_eq(str_at(ready, "status"), ready_status, "[%s] %s", T.fx->name,
                     json_object_to_json_string(st));
    cr_assert_str_eq(str_at(ready, "reason"), reason, "[%s] %s", T.fx->name,
                     json_object_to_json_string(st));
    return st;
}

/* Request i writes our claim's status: Ready=True, holding slot. */
static void assert_claim_ready(size_t i, const char *rv, const char *slot)
{
    json_object *st =
        assert_status(i, fmt("%s/status", claim_path()), rv, REC_COND_TRUE, T.def->reason_ready);
    char *got = T.def->status_slot(st);
    cr_assert_not_null(got, "[%s] status names no slot: %s", T.fx->name,
                       json_object_to_json_string(st));
    keep(got);
    cr_assert_str_eq(got, slot, "[%s]", T.fx->name);
}

/* Request i writes our claim's status: Ready=False with reason, naming no slot. */
static void assert_claim_pending(size_t i, const char *rv, const char *reason)
{
    json_object *st = assert_status(i, fmt("%s/status", claim_path()), rv, REC_COND_FALSE, reason);
    char *got = T.def->status_slot(st);
    cr_assert_null(got, "[%s] a pending claim names a slot: %s", T.fx->name, got);
}

/* A merge patch of our finalizer (present or not) on target, decided on rv. */
static void assert_finalizer_patch(size_t i, const char *target, const char *rv, bool present)
{
    json_object *b = assert_api(i, "PATCH", target);
    cr_assert_not_null(b);
    cr_assert_str_eq(str_at(b, "metadata.resourceVersion"), rv);
    json_object *list = rec_obj_at(b, "metadata.finalizers");
    bool has = false;
    size_t n =
        list && json_object_is_type(list, json_type_array) ? json_object_array_length(list) : 0;
    for (size_t k = 0; k < n; k++)
        has = has ||
              !strcmp(json_object_get_string(json_object_array_get_idx(list, k)), REC_FINALIZER);
    cr_assert_eq(has, present, "[%s] finalizers in the patch: %s", T.fx->name,
                 json_object_to_json_string(b));
}

/* The Events written (after a flush) with this reason. */
static size_t events_with_reason(const char *reason)
{
    rec_domain_flush_events(T.d, 5000);
    size_t n = rs_request_count(T.srv), c = 0;
    for (size_t k = 0; k < n; k++) {
        const rs_request *r = rs_request_at(T.srv, k);
        if (!is_event(r) || strcmp(r->method, "POST") != 0 || !r->body_len)
            continue;
        json_object *b = parse(r->body);
        c += !strcmp(str_at(b, "reason"), reason);
        json_object_put(b);
    }
    return c;
}

static size_t events_written(void)
{
    rec_domain_flush_events(T.d, 5000);
    return rs_request_count(T.srv) - api_count();
}

/* ---- results ------------------------------------------------------------------ */

static ctl_result keep_result(ctl_result r)
{
    if (r.message)
        keep(r.message);
    return r;
}

static ctl_result reconcile_claim(void)
{
    return keep_result(rec_domain_reconcile_claim(T.d, NS, CLAIM));
}

static const char *outcome_name(ctl_outcome o)
{
    switch (o) {
    case CTL_DONE:
        return "done";
    case CTL_REQUEUE:
        return "requeue";
    case CTL_REQUEUE_AFTER:
        return "requeue_after";
    case CTL_ERROR:
        return "error";
    }
    return "?";
}

static void assert_outcome(ctl_result r, ctl_outcome want)
{
    cr_assert_eq(r.outcome, want, "[%s] outcome %s (%s), want %s:%s", T.fx->name,
                 outcome_name(r.outcome), r.message ? r.message : "", outcome_name(want),
                 describe_requests());
}

/* ---- which slot a claim tries first ---------------------------------------------- */

/* The slot the domain picks for claim_uid from an empty pool, skipping skip (may be NULL). */
static const char *pick_for(const char *claim_uid, const char *skip)
{
    json_object *po = parse(pool_json((obj_args){0}));
    void *pool = NULL, *used = NULL, *requested = NULL;
    char *problem = NULL, *slot = NULL;
    cr_assert_eq(T.def->pool_open(po, &pool, &problem), KC_OK);
    cr_assert_not_null(pool, "[%s] the fixture's pool is invalid: %s", T.fx->name,
                       problem ? problem : "?");
    cr_assert_eq(T.def->set_new(&used), KC_OK);
    cr_assert_eq(T.def->set_new(&requested), KC_OK);
    const char *skips[1] = {skip};
    cr_assert_eq(T.def->pick(pool, used, requested, skips, skip ? 1 : 0, claim_uid, NULL, &slot),
                 KC_OK);
    T.def->set_free(used);
    T.def->set_free(requested);
    T.def->pool_close(pool);
    json_object_put(po);
    return keep(slot);
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
    cr_assert(!strcmp(second, T.fx->slots[0]) || !strcmp(second, T.fx->slots[1]), "[%s] %s",
              T.fx->name, second);
    return second;
}

/* ---- claims: acquiring ------------------------------------------------------------- */

DOMAIN_TEST(claim, finalizer_goes_on_before_anything_is_acquired)
{
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = false});
    answer("PATCH", claim_path(), 200, claim_json((obj_args){.rv = "5a", .finalizer = true}));
    answer_created(first_slot());
    answer("PUT", fmt("%s/status", claim_path()), 200, claim_json((obj_args){.rv = "6"}));

    assert_outcome(reconcile_claim(), CTL_DONE);
    assert_api_count(3);
    assert_finalizer_patch(0, claim_path(), "5", true);
    assert_post(1, first_slot());
    /* The status is written over the server's copy the finalizer patch returned. */
    assert_claim_ready(2, "5a", first_slot());
}

DOMAIN_TEST(claim, finalizer_conflict_requeues_and_acquires_nothing)
{
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = false});
    answer("PATCH", claim_path(), 409, status_body(409, "Conflict"));

    assert_outcome(reconcile_claim(), CTL_REQUEUE);
    assert_api_count(1);
    assert_finalizer_patch(0, claim_path(), "5", true);
}

DOMAIN_TEST(claim, allocation_posts_the_reservation_then_writes_ready_status)
{
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = true});
    answer_created(first_slot());
    answer_status_written(true);

    assert_outcome(reconcile_claim(), CTL_DONE);
    assert_api_count(2);
    assert_post(0, first_slot());
    assert_claim_ready(1, "5", first_slot());
    cr_assert_eq(events_with_reason(T.def->reason_ready), 1, "[%s] one %s Event", T.fx->name,
                 T.def->reason_ready);
}

DOMAIN_TEST(claim, slot_of_another_claim_409_moves_to_the_next_slot)
{
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = true});
    answer_taken(first_slot(), "other", "uid-other");
    answer_created(second_slot());
    answer_status_written(true);

    assert_outcome(reconcile_claim(), CTL_DONE);
    assert_api_count(4);
    assert_post(0, first_slot());
    assert_api(1, "GET", resv_path(first_slot()));
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

    assert_outcome(reconcile_claim(), CTL_DONE);
    assert_api_count(3);
    assert_post(0, first_slot());
    assert_api(1, "GET", resv_path(first_slot()));
    assert_claim_ready(2, "5", first_slot());
}

DOMAIN_TEST(claim, cached_reservation_after_a_crash_only_writes_the_status)
{
    /* The cache shows the claim's Reservation of the slot it would not pick
     * first: it is adopted as it is, nothing is posted. */
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = true});
    cache_resv(second_slot(), CLAIM, CLAIM_UID, "r-1", "7");
    answer_status_written(true);

    assert_outcome(reconcile_claim(), CTL_DONE);
    assert_api_count(1);
    assert_claim_ready(0, "5", second_slot());
}

DOMAIN_TEST(claim, claim_holding_two_keeps_the_one_status_names_and_frees_the_other)
{
    /* status names the slot the fixed order would not keep: status wins. */
    const char *held[2] = {T.fx->slots[0], T.fx->slots[1]};
    size_t by_order = T.def->choose_keep(held, 2, NULL, NULL);
    const char *kept = held[1 - by_order], *freed = held[by_order];
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = true, .slot = kept});
    cache_resv(held[0], CLAIM, CLAIM_UID, "r-0", "70");
    cache_resv(held[1], CLAIM, CLAIM_UID, "r-1", "71");
    const char *freed_uid = freed == held[0] ? "r-0" : "r-1";
    const char *freed_rv = freed == held[0] ? "70" : "71";
    answer("GET", resv_path(freed), 200, resv_json(freed, CLAIM, CLAIM_UID, freed_uid, freed_rv));
    answer("DELETE", resv_path(freed), 200, SUCCESS);
    answer_status_written(true);

    assert_outcome(reconcile_claim(), CTL_DONE);
    assert_api_count(3);
    assert_api(0, "GET", resv_path(freed));
    assert_delete(1, freed, freed_uid, freed_rv);
    assert_claim_ready(2, "5", kept);
}

DOMAIN_TEST(claim, lagging_cache_reacquires_the_slot_status_names_first)
{
    /* status names the slot the claim would not pick first; no Reservation is
     * cached. That slot is posted first; 409 with our uid keeps it. */
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = true, .slot = second_slot()});
    answer_taken(second_slot(), CLAIM, CLAIM_UID);
    answer_status_written(true);

    assert_outcome(reconcile_claim(), CTL_DONE);
    assert_api_count(3);
    assert_post(0, second_slot());
    assert_api(1, "GET", resv_path(second_slot()));
    assert_claim_ready(2, "5", second_slot());
}

DOMAIN_TEST(claim, lagging_cache_slot_lost_to_another_claim_takes_a_new_one)
{
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = true, .slot = second_slot()});
    answer_taken(second_slot(), "other", "uid-other");
    answer_created(first_slot());
    answer_status_written(true);

    assert_outcome(reconcile_claim(), CTL_DONE);
    assert_api_count(4);
    assert_post(0, second_slot());
    assert_api(1, "GET", resv_path(second_slot()));
    assert_post(2, first_slot());
    assert_claim_ready(3, "5", first_slot());
    cr_assert_eq(events_with_reason(T.def->reason_lost), 1, "[%s] one %s Event", T.fx->name,
                 T.def->reason_lost);
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
    if (o && store_add(T.resv, o, NULL) == KC_OK) {
        o = json_tokener_parse(l->text);
        rec_domain_feed(T.d, REC_FEED_RESV_ADD, o);
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
    rs_push(T.srv, &(rs_response){.method = "POST",
                                  .path_prefix = RESV,
                                  .status = 201,
                                  .delay_ms = 600,
                                  .body = resv_json(mine, CLAIM, CLAIM_UID, "r-new", "41")});
    answer("GET", resv_path(mine), 200, resv_json(mine, CLAIM, CLAIM_UID, "r-new", "41"));
    answer("DELETE", resv_path(mine), 200, SUCCESS);
    late_resv late = {.text = resv_json(theirs, CLAIM, CLAIM_UID, "r-old", "30")};
    cr_assert_eq(pthread_create(&late.thread, NULL, late_resv_run, &late), 0);
    ctl_result r = reconcile_claim();
    pthread_join(late.thread, NULL);

    assert_outcome(r, CTL_REQUEUE);
    assert_api_count(3);
    assert_post(0, mine);
    assert_api(1, "GET", resv_path(mine));
    assert_delete(2, mine, "r-new", "41");

    answer_status_written(true);
    assert_outcome(reconcile_claim(), CTL_DONE);
    assert_api_count(4);
    assert_claim_ready(3, "5", theirs);
}

/* ---- claims: errors ------------------------------------------------------------ */

DOMAIN_TEST(claim, status_write_conflict_requeues_without_error)
{
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = true});
    answer_created(first_slot());
    answer("PUT", fmt("%s/status", claim_path()), 409, status_body(409, "Conflict"));

    assert_outcome(reconcile_claim(), CTL_REQUEUE);
    assert_api_count(2);
    assert_post(0, first_slot());
    assert_claim_ready(1, "5", first_slot());
    cr_assert_eq(events_written(), 0, "[%s] no Event for a status that was not written",
                 T.fx->name);
}

static void post_error_writes_nothing(int code, const char *reason)
{
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = true});
    answer("POST", RESV, code, status_body(code, reason));

    ctl_result r = reconcile_claim();
    assert_outcome(r, CTL_ERROR);
    cr_assert_lt(r.error, 0);
    assert_api_count(1);
    assert_post(0, first_slot());
    cr_assert_eq(events_written(), 0, "[%s] no Event", T.fx->name);
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

    assert_outcome(reconcile_claim(), CTL_DONE);
    assert_api_count(1);
    assert_claim_pending(0, "5", T.def->reason_not_found);
    cr_assert_eq(events_with_reason(T.def->reason_not_found), 1);
}

DOMAIN_TEST(claim, pool_being_deleted_is_pool_terminating)
{
    cache_pool((obj_args){.finalizer = true, .deleting = true});
    cache_claim((obj_args){.finalizer = true});
    answer_status_written(true);

    assert_outcome(reconcile_claim(), CTL_DONE);
    assert_api_count(1);
    assert_claim_pending(0, "5", T.def->reason_pool_gone);
}

DOMAIN_TEST(claim, pool_with_every_slot_held_is_pool_exhausted)
{
    cache_pool((obj_args){.finalizer = true});
    cache_resv(T.fx->slots[0], "other0", "uid-other0", "r-0", "70");
    cache_resv(T.fx->slots[1], "other1", "uid-other1", "r-1", "71");
    cache_claim((obj_args){.finalizer = true});
    answer_status_written(true);

    assert_outcome(reconcile_claim(), CTL_DONE);
    assert_api_count(1);
    assert_claim_pending(0, "5", T.def->reason_exhausted);
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
    answer("PATCH", claim_path(), 200, claim_json((obj_args){.rv = "6", .deleting = true}));
}

DOMAIN_TEST(claim_delete, release_deletes_with_preconditions_then_removes_the_finalizer)
{
    const char *slot = first_slot();
    cache_deleting_claim_holding(slot);
    answer("GET", resv_path(slot), 200, resv_json(slot, CLAIM, CLAIM_UID, "r-1", "9"));
    answer("DELETE", resv_path(slot), 200, SUCCESS);
    answer_finalizer_removed();

    assert_outcome(reconcile_claim(), CTL_DONE);
    assert_api_count(3);
    assert_api(0, "GET", resv_path(slot));
    assert_delete(1, slot, "r-1", "9");
    assert_finalizer_patch(2, claim_path(), "5", false);
    cr_assert_eq(events_with_reason("Released"), 1);
}

DOMAIN_TEST(claim_delete, reservation_already_gone_on_get_is_success)
{
    const char *slot = first_slot();
    cache_deleting_claim_holding(slot);
    answer("GET", resv_path(slot), 404, status_body(404, "NotFound"));
    answer_finalizer_removed();

    assert_outcome(reconcile_claim(), CTL_DONE);
    assert_api_count(2);
    assert_api(0, "GET", resv_path(slot));
    assert_finalizer_patch(1, claim_path(), "5", false);
}

DOMAIN_TEST(claim_delete, reservation_gone_on_delete_is_success)
{
    const char *slot = first_slot();
    cache_deleting_claim_holding(slot);
    answer("GET", resv_path(slot), 200, resv_json(slot, CLAIM, CLAIM_UID, "r-1", "9"));
    answer("DELETE", resv_path(slot), 404, status_body(404, "NotFound"));
    answer_finalizer_removed();

    assert_outcome(reconcile_claim(), CTL_DONE);
    assert_api_count(3);
    assert_delete(1, slot, "r-1", "9");
    assert_finalizer_patch(2, claim_path(), "5", false);
}

DOMAIN_TEST(claim_delete, reservation_retaken_by_another_claim_is_not_deleted)
{
    const char *slot = first_slot();
    cache_deleting_claim_holding(slot);
    answer("GET", resv_path(slot), 200, resv_json(slot, "other", "uid-other", "r-2", "12"));
    answer_finalizer_removed();

    assert_outcome(reconcile_claim(), CTL_DONE);
    assert_api_count(2);
    assert_api(0, "GET", resv_path(slot));
    assert_finalizer_patch(1, claim_path(), "5", false);
}

DOMAIN_TEST(claim_delete, slot_status_names_is_released_when_the_cache_shows_none)
{
    /* A lagging cache: only status says what the claim holds. */
    const char *slot = second_slot();
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = true, .deleting = true, .slot = slot});
    answer("GET", resv_path(slot), 200, resv_json(slot, CLAIM, CLAIM_UID, "r-1", "9"));
    answer("DELETE", resv_path(slot), 200, SUCCESS);
    answer_finalizer_removed();

    assert_outcome(reconcile_claim(), CTL_DONE);
    assert_api_count(3);
    assert_delete(1, slot, "r-1", "9");
    assert_finalizer_patch(2, claim_path(), "5", false);
}

DOMAIN_TEST(claim_delete, failed_release_keeps_the_finalizer)
{
    const char *slot = first_slot();
    cache_deleting_claim_holding(slot);
    answer("GET", resv_path(slot), 200, resv_json(slot, CLAIM, CLAIM_UID, "r-1", "9"));
    answer("DELETE", resv_path(slot), 500, status_body(500, "InternalError"));

    assert_outcome(reconcile_claim(), CTL_ERROR);
    assert_api_count(2);
    assert_delete(1, slot, "r-1", "9");
}

/* ---- the orphan sweep ---------------------------------------------------------------- */

static ctl_result reconcile_resv(const char *slot)
{
    return keep_result(rec_domain_reconcile_reservation(T.d, resv_name(slot)));
}

DOMAIN_TEST(sweep, reservation_of_a_claim_the_server_does_not_have_is_freed)
{
    const char *slot = first_slot();
    cache_resv(slot, CLAIM, CLAIM_UID, "r-1", "9");
    answer("GET", claim_path(), 404, status_body(404, "NotFound"));
    answer("GET", resv_path(slot), 200, resv_json(slot, CLAIM, CLAIM_UID, "r-1", "9"));
    answer("DELETE", resv_path(slot), 200, SUCCESS);

    assert_outcome(reconcile_resv(slot), CTL_DONE);
    assert_api_count(3);
    assert_api(0, "GET", claim_path());
    assert_api(1, "GET", resv_path(slot));
    assert_delete(2, slot, "r-1", "9");
}

DOMAIN_TEST(sweep, reservation_of_a_claim_the_cache_lags_on_is_kept)
{
    const char *slot = first_slot();
    cache_resv(slot, CLAIM, CLAIM_UID, "r-1", "9");
    answer("GET", claim_path(), 200, claim_json((obj_args){.finalizer = true}));

    assert_outcome(reconcile_resv(slot), CTL_DONE);
    assert_api_count(1);
    assert_api(0, "GET", claim_path());
}

DOMAIN_TEST(sweep, reservation_of_a_recreated_claim_is_freed)
{
    const char *slot = first_slot();
    cache_resv(slot, CLAIM, CLAIM_UID, "r-1", "9");
    answer("GET", claim_path(), 200, claim_json((obj_args){.uid = "uid-c1-again"}));
    answer("GET", resv_path(slot), 200, resv_json(slot, CLAIM, CLAIM_UID, "r-1", "9"));
    answer("DELETE", resv_path(slot), 200, SUCCESS);

    assert_outcome(reconcile_resv(slot), CTL_DONE);
    assert_api_count(3);
    assert_api(0, "GET", claim_path());
    assert_delete(2, slot, "r-1", "9");
}

DOMAIN_TEST(sweep, reservation_of_a_cached_claim_asks_nothing)
{
    const char *slot = first_slot();
    cache_claim((obj_args){.finalizer = true});
    cache_resv(slot, CLAIM, CLAIM_UID, "r-1", "9");

    assert_outcome(reconcile_resv(slot), CTL_DONE);
    assert_api_count(0);
}

DOMAIN_TEST(sweep, server_error_on_the_claim_frees_nothing)
{
    const char *slot = first_slot();
    cache_resv(slot, CLAIM, CLAIM_UID, "r-1", "9");
    answer("GET", claim_path(), 500, status_body(500, "InternalError"));

    assert_outcome(reconcile_resv(slot), CTL_ERROR);
    assert_api_count(1);
}

/* ---- pools ------------------------------------------------------------------------- */

static ctl_result reconcile_pool(void)
{
    return keep_result(rec_domain_reconcile_pool(T.d, POOL));
}

static int64_t int_at(json_object *o, const char *key)
{
    json_object *v = NULL;
    cr_assert(json_object_object_get_ex(o, key, &v), "[%s] no %s in %s", T.fx->name, key,
              json_object_to_json_string(o));
    return json_object_get_int64(v);
}

DOMAIN_TEST(pool, finalizer_first_then_counts_of_the_cached_reservations)
{
    cache_pool((obj_args){.finalizer = false});
    cache_resv(T.fx->slots[0], CLAIM, CLAIM_UID, "r-0", "70");
    answer("PATCH", pool_path(), 200, pool_json((obj_args){.rv = "3a", .finalizer = true}));
    answer("PUT", fmt("%s/status", pool_path()), 200, pool_json((obj_args){.rv = "4"}));

    assert_outcome(reconcile_pool(), CTL_DONE);
    assert_api_count(2);
    assert_finalizer_patch(0, pool_path(), "3", true);
    json_object *st =
        assert_status(1, fmt("%s/status", pool_path()), "3a", REC_COND_TRUE, T.def->reason_valid);
    cr_assert_eq(int_at(st, "total"), 2);
    cr_assert_eq(int_at(st, "allocated"), 1);
    cr_assert_eq(int_at(st, "available"), 1);
}

DOMAIN_TEST(pool, counts_follow_reservations_coming_and_going)
{
    cache_pool((obj_args){.finalizer = true});
    cache_resv(T.fx->slots[0], CLAIM, CLAIM_UID, "r-0", "70");
    cache_resv(T.fx->slots[1], "other", "uid-other", "r-1", "71");
    /* One goes again: the cache deletes it, then its handler runs. */
    const char *gone = resv_json(T.fx->slots[1], "other", "uid-other", "r-1", "71");
    json_object *old = NULL;
    cr_assert_eq(store_delete(T.resv, resv_name(T.fx->slots[1]), &old), KC_OK);
    json_object *o = parse(gone);
    rec_domain_feed(T.d, REC_FEED_RESV_DELETE, o);
    json_object_put(o);
    store_obj_put(old);
    answer("PUT", fmt("%s/status", pool_path()), 200, pool_json((obj_args){.rv = "4"}));

    assert_outcome(reconcile_pool(), CTL_DONE);
    assert_api_count(1);
    json_object *st =
        assert_status(0, fmt("%s/status", pool_path()), "3", REC_COND_TRUE, T.def->reason_valid);
    cr_assert_eq(int_at(st, "allocated"), 1);
    cr_assert_eq(int_at(st, "available"), 1);
}

DOMAIN_TEST(pool, deleted_pool_with_holders_is_terminating_and_names_them)
{
    cache_pool((obj_args){.finalizer = true, .deleting = true});
    cache_resv(T.fx->slots[0], CLAIM, CLAIM_UID, "r-0", "70");
    answer("PUT", fmt("%s/status", pool_path()), 200, pool_json((obj_args){.rv = "4"}));

    assert_outcome(reconcile_pool(), CTL_DONE);
    assert_api_count(1);
    json_object *st = assert_status(0, fmt("%s/status", pool_path()), "3", REC_COND_FALSE,
                                    T.def->reason_terminating);
    const char *msg = str_at(rec_get_condition(st, REC_COND_READY), "message");
    cr_assert(strstr(msg, NS "/" CLAIM), "[%s] the message names the holder: %s", T.fx->name, msg);
    cr_assert_eq(int_at(st, "allocated"), 1);
}

/* The query of request target, percent-decoded. */
static const char *decoded_query(const char *target)
{
    const char *q = strchr(target, '?');
    cr_assert_not_null(q, "no query in %s", target);
    char *out = keep(calloc(1, strlen(q) + 1));
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
    const rs_request *r = api_at(i);
    cr_assert_not_null(r);
    cr_assert_str_eq(r->method, "GET");
    cr_assert(!strncmp(r->target, RESV "?", strlen(RESV "?")), "[%s] %s", T.fx->name, r->target);
    const char *q = decoded_query(r->target);
    const char *sel =
        fmt("labelSelector=" REC_LABEL_POOL_KIND "=%s," REC_LABEL_POOL "=" POOL, T.def->pool_kind);
    cr_assert(strstr(q, sel), "[%s] query %s, want %s", T.fx->name, q, sel);
    cr_assert(strstr(q, "limit=1"), "[%s] query %s", T.fx->name, q);
}

DOMAIN_TEST(pool, deleted_pool_without_holders_asks_the_server_then_drops_the_finalizer)
{
    cache_pool((obj_args){.finalizer = true, .deleting = true});
    answer("GET", RESV "?", 200,
           "{\"apiVersion\":\"provisio.dev/v1alpha1\",\"kind\":\"ReservationList\","
           "\"metadata\":{\"resourceVersion\":\"80\"},\"items\":[]}");
    answer("PATCH", pool_path(), 200, pool_json((obj_args){.rv = "4", .deleting = true}));

    assert_outcome(reconcile_pool(), CTL_DONE);
    assert_api_count(2);
    assert_reservations_listed(0);
    assert_finalizer_patch(1, pool_path(), "3", false);
}

DOMAIN_TEST(pool, deleted_pool_the_server_still_has_reservations_of_keeps_the_finalizer)
{
    cache_pool((obj_args){.finalizer = true, .deleting = true});
    const char *list =
        fmt("{\"apiVersion\":\"provisio.dev/v1alpha1\",\"kind\":\"ReservationList\","
            "\"metadata\":{\"resourceVersion\":\"80\",\"continue\":\"x\"},\"items\":[%s]}",
            resv_json(T.fx->slots[0], CLAIM, CLAIM_UID, "r-0", "70"));
    answer("GET", RESV "?", 200, list);

    ctl_result r = reconcile_pool();
    assert_outcome(r, CTL_REQUEUE_AFTER);
    cr_assert_gt(r.after, 0);
    assert_api_count(1);
    assert_reservations_listed(0);
}

/* ---- a slot asked for by name ------------------------------------------------ */

/* The domain has no way to ask for a slot by name: nothing to test. */
static bool no_wanted_slots(void)
{
    return !T.def->claim_slot_path || !T.fx->claim_spec_wanted;
}

DOMAIN_TEST(claim_wanted, the_slot_asked_for_is_the_one_posted)
{
    if (no_wanted_slots())
        return;
    /* Not the slot the claim's uid would pick first: the one it asks for. */
    cache_pool((obj_args){.finalizer = true});
    cache_claim((obj_args){.finalizer = true, .wanted = second_slot()});
    answer_created(second_slot());
    answer("PUT", fmt("%s/status", claim_path()), 200,
           claim_json((obj_args){.rv = "6", .finalizer = true, .wanted = second_slot()}));

    assert_outcome(reconcile_claim(), CTL_DONE);
    assert_api_count(2);
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
    answer("PUT", fmt("%s/status", claim_path()), 200,
           claim_json((obj_args){.rv = "6", .finalizer = true, .wanted = first_slot()}));

    assert_outcome(reconcile_claim(), CTL_DONE);
    assert_api_count(3); /* POST, the GET after 409, the status: no other slot is tried */
    assert_post(0, first_slot());
    assert_api(1, "GET", resv_path(first_slot()));
    assert_claim_pending(2, "5", T.def->reason_in_use);
    json_object *b = assert_api(2, "PUT", fmt("%s/status", claim_path()));
    const char *m = str_at(rec_get_condition(rec_obj_at(b, "status"), REC_COND_READY), "message");
    cr_assert(m && strstr(m, NS "/holder"), "[%s] the message names the holder: %s", T.fx->name,
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

    assert_outcome(reconcile_claim(), CTL_DONE);
    assert_api_count(2);
    assert_post(0, second_slot());
    assert_claim_ready(1, "5", second_slot());
}

/* ---- an unusable pool, and our own writes seen again --------------------------- */

DOMAIN_TEST(claim, pool_with_an_unusable_spec_is_invalid_spec_and_nothing_is_posted)
{
    cache_pool((obj_args){.finalizer = true, .bad = true});
    cache_claim((obj_args){.finalizer = true});
    answer_status_written(true);

    assert_outcome(reconcile_claim(), CTL_DONE);
    assert_api_count(1);
    assert_claim_pending(0, "5", T.def->reason_invalid);
}

DOMAIN_TEST(pool, an_unusable_spec_is_ready_false_invalid_spec_with_zero_counts)
{
    cache_pool((obj_args){.finalizer = true, .bad = true});
    answer("PUT", fmt("%s/status", pool_path()), 200, pool_json((obj_args){.rv = "4"}));

    assert_outcome(reconcile_pool(), CTL_DONE);
    assert_api_count(1);
    json_object *st =
        assert_status(0, fmt("%s/status", pool_path()), "3", REC_COND_FALSE, T.def->reason_invalid);
    cr_assert_eq(int_at(st, "total"), 0);
    cr_assert_eq(int_at(st, "available"), 0);
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
    assert_outcome(reconcile_claim(), CTL_DONE);
    assert_api_count(2);

    assert_outcome(reconcile_claim(), CTL_DONE);
    assert_api_count(2);
}

DOMAIN_TEST(pool, count_only_changes_are_written_at_most_every_half_second)
{
    cache_pool((obj_args){.finalizer = true});
    answer("PUT", fmt("%s/status", pool_path()), 200, pool_json((obj_args){.rv = "4"}));
    assert_outcome(reconcile_pool(), CTL_DONE);
    assert_api_count(1);

    /* The cache catches up with that write (rv 4, the status as written),
     * then a Reservation comes: only a count changes, so the next write
     * waits for the rest of the interval instead of going out at once. */
    const rs_request *w = api_at(0);
    cr_assert_not_null(w);
    json_object *seen = parse(w->body);
    json_object_object_add(rec_obj_at(seen, "metadata"), "resourceVersion",
                           json_object_new_string("4"));
    cr_assert_eq(store_add(T.pools, seen, NULL), KC_OK);
    cache_resv(T.fx->slots[0], CLAIM, CLAIM_UID, "r-0", "70");

    ctl_result r = reconcile_pool();
    cr_assert_eq(r.outcome, CTL_REQUEUE_AFTER, "[%s] got %s", T.fx->name, outcome_name(r.outcome));
    cr_assert(r.after > 0 && r.after <= 0.5, "[%s] after %.3f s", T.fx->name, r.after);
    assert_api_count(1);
}
