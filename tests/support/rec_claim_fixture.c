/*
 * rec_claim_fixture - the environment of the claim-flow unit tests
 * (rec_claim_fixture.h): a detached domain writing to a replay server, and
 * the helpers that fill its caches and check what it sent.
 */
#include <criterion/criterion.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rec_claim_fixture.h"
#include "rec_reserve.h"
#include "rec_util.h"

#define EVENTS "/apis/events.k8s.io/"
#define CORE_EVENTS(ns) "/api/v1/namespaces/" ns "/events"

rcf_env RCF;

const char RCF_SUCCESS[] = "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Success\"}";

char *rcf_keep(char *s)
{
    cr_assert_not_null(s);
    cr_assert_lt(RCF.n_garbage, sizeof RCF.garbage / sizeof RCF.garbage[0]);
    RCF.garbage[RCF.n_garbage++] = s;
    return s;
}

const char *rcf_fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    char *s = NULL;
    int n = vasprintf(&s, f, ap);
    va_end(ap);
    cr_assert_geq(n, 0);
    return rcf_keep(s);
}

json_object *rcf_parse(const char *text)
{
    json_object *o = json_tokener_parse(text);
    cr_assert_not_null(o, "not JSON: %s", text);
    return o;
}

void rcf_start(const rec_domain_def *def, const char *label)
{
    rcf_start_client(label);
    RCF.def = def;
    cr_assert_eq(rec_domain_new_detached(def, RCF.cli, &RCF.d), KC_OK);
    rec_domain_stores(RCF.d, &RCF.claims, &RCF.pools, &RCF.resv);
}

void rcf_start_client(const char *label)
{
    memset(&RCF, 0, sizeof RCF);
    RCF.label = label;
    RCF.srv = rs_start(NULL);
    cr_assert_not_null(RCF.srv);
    /* Events of claims (RCF_NS) and of pools (cluster-scoped: "default"). */
    const char *events[] = {CORE_EVENTS(RCF_NS), CORE_EVENTS("default"), EVENTS};
    for (size_t i = 0; i < sizeof events / sizeof events[0]; i++)
        rs_push(RCF.srv,
                &(rs_response){.path_prefix = events[i], .status = 201, .body = "{}", .times = -1});
    rs_kubeconfig_opts ko = {.user_yaml = "    token: abc123\n"};
    char *yaml = rs_kubeconfig(RCF.srv, &ko);
    cr_assert_not_null(yaml);
    kc_error err = KC_ERROR_INIT;
    int rc = kc_config_from_yaml(yaml, strlen(yaml), NULL, &RCF.cfg, &err);
    free(yaml);
    cr_assert_eq(rc, KC_OK, "kc_config_from_yaml: %s", err.message);
    kc_client_opts co = {.max_retries = -1};
    rc = kc_client_new(RCF.cfg, &co, &RCF.cli, &err);
    cr_assert_eq(rc, KC_OK, "kc_client_new: %s", err.message);
    kc_error_clear(&err);
}

void rcf_stop(void)
{
    rec_domain_free(RCF.d);
    kc_client_free(RCF.cli);
    kc_config_free(RCF.cfg);
    rs_stop(RCF.srv);
    for (size_t i = 0; i < RCF.n_garbage; i++)
        free(RCF.garbage[i]);
    for (size_t i = 0; i < RCF.n_jgarbage; i++)
        json_object_put(RCF.jgarbage[i]);
    memset(&RCF, 0, sizeof RCF);
}

/* ---- objects ------------------------------------------------------------------ */

const char *rcf_meta_json(const char *name, const char *ns, const char *uid, const char *rv,
                          bool finalizer, bool deleting)
{
    return rcf_fmt("{\"name\":\"%s\",%s\"uid\":\"%s\",\"resourceVersion\":\"%s\","
                   "\"generation\":1%s%s}",
                   name, ns ? rcf_fmt("\"namespace\":\"%s\",", ns) : "", uid, rv,
                   finalizer ? ",\"finalizers\":[\"" REC_FINALIZER "\"]" : "",
                   deleting ? ",\"deletionTimestamp\":\"2026-01-01T00:00:00Z\"" : "");
}

const char *rcf_resv_name(const char *pool, const char *slot)
{
    char *name = NULL;
    /* A scoped domain's pools here are all of its default scope. */
    const char *space = RCF.def->pool_scope_path ? RCF.def->pool_scope_default : pool;
    cr_assert_eq(RCF.def->slot_name(space, slot, &name, NULL), KC_OK, "[%s] slot %s", RCF.label,
                 slot);
    return rcf_keep(name);
}

const char *rcf_resv_path(const char *pool, const char *slot)
{
    return rcf_fmt(RCF_RESV "/%s", rcf_resv_name(pool, slot));
}

const char *rcf_resv_json(const rcf_resv *r)
{
    const rec_domain_def *def = RCF.def;
    return rcf_fmt("{\"apiVersion\":\"provisio.dev/v1alpha1\",\"kind\":\"Reservation\","
                   "\"metadata\":{\"name\":\"%s\",\"uid\":\"%s\",\"resourceVersion\":\"%s\","
                   "\"labels\":{\"" REC_LABEL_POOL_KIND "\":\"%s\",\"" REC_LABEL_POOL "\":\"%s\"}},"
                   "\"spec\":{\"pool\":{\"kind\":\"%s\",\"name\":\"%s\"},\"slot\":\"%s\","
                   "\"claim\":{\"kind\":\"%s\",\"namespace\":\"" RCF_NS "\",\"name\":\"%s\","
                   "\"uid\":\"%s\"}%s%s}}",
                   rcf_resv_name(r->pool, r->slot), r->uid, r->rv, def->pool_kind, r->pool,
                   def->pool_kind, r->pool, r->slot, def->claim_kind, r->claim, r->claim_uid,
                   def->resv_scope_key
                       ? rcf_fmt(",\"%s\":\"%s\"", def->resv_scope_key, def->pool_scope_default)
                       : "",
                   r->spec_extra ? r->spec_extra : "");
}

const char *rcf_ref_path(kc_ref ref, const char *ns, const char *name)
{
    return rcf_fmt("/apis/%s/%s/%s%s%s/%s", ref.group, ref.version, ns ? "namespaces/" : "",
                   ns ? rcf_fmt("%s/", ns) : "", ref.resource, name);
}

/* ---- filling the caches (as an informer would, then its handlers) ----------- */

void rcf_cache_claim(const char *text)
{
    cr_assert_eq(store_add(RCF.claims, rcf_parse(text), NULL), KC_OK);
    json_object *o = rcf_parse(text);
    rec_domain_feed(RCF.d, REC_FEED_CLAIM_ADD, o);
    json_object_put(o);
}

void rcf_cache_pool(const char *text)
{
    cr_assert_eq(store_add(RCF.pools, rcf_parse(text), NULL), KC_OK);
}

void rcf_cache_resv(const char *text)
{
    cr_assert_eq(store_add(RCF.resv, rcf_parse(text), NULL), KC_OK);
    json_object *o = rcf_parse(text);
    rec_domain_feed(RCF.d, REC_FEED_RESV_ADD, o);
    json_object_put(o);
}

void rcf_uncache_resv(const char *name, const char *text)
{
    json_object *old = NULL;
    cr_assert_eq(store_delete(RCF.resv, name, &old), KC_OK);
    json_object *o = rcf_parse(text);
    rec_domain_feed(RCF.d, REC_FEED_RESV_DELETE, o);
    json_object_put(o);
    store_obj_put(old);
}

/* ---- the script ------------------------------------------------------------- */

void rcf_answer(const char *method, const char *path, int status, const char *body)
{
    rs_push(RCF.srv,
            &(rs_response){.method = method, .path_prefix = path, .status = status, .body = body});
}

const char *rcf_status_body(int code, const char *reason)
{
    return rcf_fmt("{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
                   "\"message\":\"scripted %d %s\",\"reason\":\"%s\",\"code\":%d}",
                   code, reason, reason, code);
}

/* ---- what was sent ------------------------------------------------------------ */

bool rcf_is_event(const rs_request *r)
{
    static const char core[] = "/api/v1/namespaces/";
    return !strncmp(r->target, EVENTS, strlen(EVENTS)) ||
           (!strncmp(r->target, core, strlen(core)) && strstr(r->target, "/events"));
}

/* An API request the rcf_api_* helpers count. */
static bool is_api(const rs_request *r)
{
    if (rcf_is_event(r))
        return false;
    return !(RCF.skip_informer_reads && !strcmp(r->method, "GET") && strchr(r->target, '?'));
}

const rs_request *rcf_api_at(size_t i)
{
    size_t n = rs_request_count(RCF.srv);
    for (size_t k = 0; k < n; k++) {
        const rs_request *r = rs_request_at(RCF.srv, k);
        if (is_api(r) && i-- == 0)
            return r;
    }
    return NULL;
}

size_t rcf_api_count(void)
{
    size_t n = rs_request_count(RCF.srv), c = 0;
    for (size_t k = 0; k < n; k++)
        c += is_api(rs_request_at(RCF.srv, k));
    return c;
}

const char *rcf_describe_requests(void)
{
    const char *s = "";
    size_t n = rs_request_count(RCF.srv);
    for (size_t k = 0; k < n; k++) {
        const rs_request *r = rs_request_at(RCF.srv, k);
        s = rcf_fmt("%s\n  %s %s", s, r->method, r->target);
    }
    return s;
}

void rcf_assert_api_count(size_t want)
{
    cr_assert_eq(rcf_api_count(), want, "[%s] %zu API requests, want %zu:%s", RCF.label,
                 rcf_api_count(), want, rcf_describe_requests());
}

json_object *rcf_assert_api(size_t i, const char *method, const char *target)
{
    const rs_request *r = rcf_api_at(i);
    cr_assert_not_null(r, "[%s] no API request %zu:%s", RCF.label, i, rcf_describe_requests());
    cr_assert_str_eq(r->method, method, "[%s] request %zu:%s", RCF.label, i,
                     rcf_describe_requests());
    cr_assert_str_eq(r->target, target, "[%s] request %zu:%s", RCF.label, i,
                     rcf_describe_requests());
    if (!r->body_len)
        return NULL;
    json_object *b = rcf_parse(r->body);
    cr_assert_lt(RCF.n_jgarbage, sizeof RCF.jgarbage / sizeof RCF.jgarbage[0]);
    RCF.jgarbage[RCF.n_jgarbage++] = b;
    return b;
}

const char *rcf_str_at(json_object *o, const char *path)
{
    const char *s = rec_obj_str(o, path);
    return s ? s : "(none)";
}

int64_t rcf_int_at(json_object *o, const char *key)
{
    json_object *v = NULL;
    cr_assert(json_object_object_get_ex(o, key, &v), "[%s] no %s in %s", RCF.label, key,
              json_object_to_json_string(o));
    return json_object_get_int64(v);
}

void rcf_assert_post(size_t i, const char *pool, const char *slot, const char *claim,
                     const char *claim_uid)
{
    const rec_domain_def *def = RCF.def;
    json_object *b = rcf_assert_api(i, "POST", RCF_RESV);
    cr_assert_not_null(b);
    cr_assert_str_eq(rcf_str_at(b, "metadata.name"), rcf_resv_name(pool, slot), "[%s]", RCF.label);
    cr_assert_str_eq(rcf_str_at(b, "spec.slot"), slot);
    cr_assert_str_eq(rcf_str_at(b, "spec.pool.kind"), def->pool_kind);
    cr_assert_str_eq(rcf_str_at(b, "spec.pool.name"), pool);
    cr_assert_str_eq(rcf_str_at(b, "spec.claim.kind"), def->claim_kind);
    cr_assert_str_eq(rcf_str_at(b, "spec.claim.namespace"), RCF_NS);
    cr_assert_str_eq(rcf_str_at(b, "spec.claim.name"), claim);
    cr_assert_str_eq(rcf_str_at(b, "spec.claim.uid"), claim_uid);
    json_object *labels = rec_obj_at(b, "metadata.labels");
    cr_assert_not_null(labels);
    json_object *v = NULL;
    cr_assert(json_object_object_get_ex(labels, REC_LABEL_POOL_KIND, &v));
    cr_assert_str_eq(json_object_get_string(v), def->pool_kind);
}

void rcf_assert_delete(size_t i, const char *pool, const char *slot, const char *uid,
                       const char *rv)
{
    json_object *b = rcf_assert_api(i, "DELETE", rcf_resv_path(pool, slot));
    cr_assert_not_null(b, "[%s] a DELETE without preconditions", RCF.label);
    cr_assert_str_eq(rcf_str_at(b, "preconditions.uid"), uid, "[%s] %s", RCF.label,
                     json_object_to_json_string(b));
    cr_assert_str_eq(rcf_str_at(b, "preconditions.resourceVersion"), rv);
}

json_object *rcf_assert_status(size_t i, const char *target, const char *rv,
                               const char *ready_status, const char *reason)
{
    json_object *b = rcf_assert_api(i, "PUT", target);
    cr_assert_not_null(b);
    cr_assert_str_eq(rcf_str_at(b, "metadata.resourceVersion"), rv,
                     "[%s] the status write carries the resourceVersion it was decided on",
                     RCF.label);
    json_object *st = rec_obj_at(b, "status");
    cr_assert_not_null(st);
    json_object *ready = rec_get_condition(st, REC_COND_READY);
    cr_assert_not_null(ready, "[%s] no Ready in %s", RCF.label, json_object_to_json_string(st));
    cr_assert_str_eq(rcf_str_at(ready, "status"), ready_status, "[%s] %s", RCF.label,
                     json_object_to_json_string(st));
    cr_assert_str_eq(rcf_str_at(ready, "reason"), reason, "[%s] %s", RCF.label,
                     json_object_to_json_string(st));
    return st;
}

void rcf_assert_finalizer_patch(size_t i, const char *target, const char *rv, bool present)
{
    json_object *b = rcf_assert_api(i, "PATCH", target);
    cr_assert_not_null(b);
    cr_assert_str_eq(rcf_str_at(b, "metadata.resourceVersion"), rv);
    json_object *list = rec_obj_at(b, "metadata.finalizers");
    bool has = false;
    size_t n =
        list && json_object_is_type(list, json_type_array) ? json_object_array_length(list) : 0;
    for (size_t k = 0; k < n; k++)
        has = has ||
              !strcmp(json_object_get_string(json_object_array_get_idx(list, k)), REC_FINALIZER);
    cr_assert_eq(has, present, "[%s] finalizers in the patch: %s", RCF.label,
                 json_object_to_json_string(b));
}

/* ---- Events ------------------------------------------------------------------- */

/* Wait for the Events emitted so far to be written: the domain's, or RCF.events. */
static void flush_events(void)
{
    if (RCF.d)
        rec_domain_flush_events(RCF.d, 5000);
    else if (RCF.events)
        cr_assert_eq(rec_events_flush(RCF.events, 5000), KC_OK, "[%s] Events not written",
                     RCF.label);
}

/* How many Events with reason were written; *last the message of the last. */
static size_t events_scan(const char *reason, const char **last)
{
    flush_events();
    size_t n = rs_request_count(RCF.srv), c = 0;
    for (size_t k = 0; k < n; k++) {
        const rs_request *r = rs_request_at(RCF.srv, k);
        if (!rcf_is_event(r) || strcmp(r->method, "POST") != 0 || !r->body_len)
            continue;
        json_object *b = rcf_parse(r->body);
        if (!strcmp(rcf_str_at(b, "reason"), reason)) {
            c++;
            const char *m = rec_obj_str(b, "message");
            if (!m)
                m = rec_obj_str(b, "note"); /* events.k8s.io/v1 */
            if (last && m)
                *last = rcf_fmt("%s", m);
        }
        json_object_put(b);
    }
    return c;
}

size_t rcf_events_with_reason(const char *reason)
{
    return events_scan(reason, NULL);
}

const char *rcf_event_message(const char *reason)
{
    const char *m = NULL;
    events_scan(reason, &m);
    return m;
}

size_t rcf_events_written(void)
{
    flush_events();
    size_t n = rs_request_count(RCF.srv), c = 0;
    for (size_t k = 0; k < n; k++)
        c += rcf_is_event(rs_request_at(RCF.srv, k));
    return c;
}

/* ---- results ------------------------------------------------------------------ */

ctl_result rcf_keep_result(ctl_result r)
{
    if (r.message)
        rcf_keep(r.message);
    return r;
}

const char *rcf_outcome_name(ctl_outcome o)
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

void rcf_assert_outcome(ctl_result r, ctl_outcome want)
{
    cr_assert_eq(r.outcome, want, "[%s] outcome %s (%s), want %s:%s", RCF.label,
                 rcf_outcome_name(r.outcome), r.message ? r.message : "", rcf_outcome_name(want),
                 rcf_describe_requests());
}
