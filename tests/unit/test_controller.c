/*
 * Unit tests of the controller runtime (src/informer/controller.c): how
 * informer events become keys (For, Owns, custom map), what each reconcile
 * result does, workers stopped and restarted, concurrency, metrics hooks.
 * Informers are fed by the replay server; tests that only need keys use
 * ctl_enqueue.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "controller.h"
#include "informer.h"
#include "kc_client.h"
#include "replay_server.h"
#include "pv_clock.h"

/* ---- fixture ------------------------------------------------------------- */

static rs_server *srv;
static kc_config *cfg;
static kc_client *cli;
static inf_factory *fac;
static ctl *ctrl;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void setup(void)
{
    srv = rs_start(NULL);
    cr_assert_not_null(srv);
    rs_kubeconfig_opts ko = {.user_yaml = "    token: abc123\n"};
    char *yaml = rs_kubeconfig(srv, &ko);
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_config_from_yaml(yaml, strlen(yaml), NULL, &cfg, &err), KC_OK);
    free(yaml);
    kc_client_opts co = {.max_retries = -1};
    cr_assert_eq(kc_client_new(cfg, &co, &cli, &err), KC_OK);
    inf_factory_opts fo = {.backoff = {.initial = 0.02, .max = 0.1}};
    cr_assert_eq(inf_factory_new(cli, &fo, &fac), KC_OK);
    kc_error_clear(&err);
}

static void teardown(void)
{
    ctl_free(ctrl); /* before the factory whose informers it watches */
    ctrl = NULL;
    inf_factory_free(fac);
    fac = NULL;
    kc_client_free(cli);
    kc_config_free(cfg);
    rs_stop(srv);
    cli = NULL;
    cfg = NULL;
    srv = NULL;
}

TestSuite(controller, .init = setup, .fini = teardown, .timeout = 30);

/* ---- scripted API answers ----------------------------------------------------- */

#define GROUP "test.provisio.dev"

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, f);
    int n = vasprintf(&s, f, ap);
    va_end(ap);
    cr_assert_geq(n, 0);
    return s;
}

/* Serve `items` as the list of resource, then keep its watch open. */
static void serve(const char *resource, const char *items)
{
    char *list_prefix = fmt("/apis/" GROUP "/v1/%s?limit", resource);
    char *watch_prefix = fmt("/apis/" GROUP "/v1/%s?watch=1", resource);
    char *body =
        fmt("{\"kind\":\"List\",\"metadata\":{\"resourceVersion\":\"10\"},\"items\":[%s]}", items);
    rs_response l = {.method = "GET", .path_prefix = list_prefix, .body = body};
    rs_push(srv, &l);
    rs_response w = {.method = "GET", .path_prefix = watch_prefix, .hold = true, .times = -1};
    rs_push(srv, &w);
    free(list_prefix);
    free(watch_prefix);
    free(body);
}

/* Serve a list, then a watch with `events` (one chunk each, delay_ms apart). */
static void serve_with_events(const char *resource, const char *items, const char *events,
                              int delay_ms)
{
    char *list_prefix = fmt("/apis/" GROUP "/v1/%s?limit", resource);
    char *watch_prefix = fmt("/apis/" GROUP "/v1/%s?watch=1", resource);
    char *body =
        fmt("{\"kind\":\"List\",\"metadata\":{\"resourceVersion\":\"10\"},\"items\":[%s]}", items);
    rs_response l = {.method = "GET", .path_prefix = list_prefix, .body = body};
    rs_push(srv, &l);
    rs_response w = {.method = "GET",
                     .path_prefix = watch_prefix,
                     .body = events,
                     .delay_ms = delay_ms,
                     .hold = true};
    rs_push(srv, &w);
    free(list_prefix);
    free(watch_prefix);
    free(body);
}

static char *widget(const char *ns, const char *name, const char *rv)
{
    return fmt("{\"apiVersion\":\"" GROUP "/v1\",\"kind\":\"Widget\",\"metadata\":{\"name\":\"%s\","
               "\"namespace\":\"%s\",\"resourceVersion\":\"%s\",\"uid\":\"u-%s\"}}",
               name, ns, rv, name);
}

/* A Part in ns with one owner reference. */
static char *part(const char *name, const char *owner_api, const char *owner_kind,
                  const char *owner_name, bool controller)
{
    return fmt("{\"apiVersion\":\"" GROUP "/v1\",\"kind\":\"Part\",\"metadata\":{\"name\":\"%s\","
               "\"namespace\":\"ns\",\"resourceVersion\":\"5\",\"ownerReferences\":[{"
               "\"apiVersion\":\"%s\",\"kind\":\"%s\",\"name\":\"%s\",\"uid\":\"u-%s\","
               "\"controller\":%s,\"blockOwnerDeletion\":true}]}}",
               name, owner_api, owner_kind, owner_name, owner_name, controller ? "true" : "false");
}

static inf_informer *informer_for(const char *resource)
{
    kc_ref ref = {.group = GROUP, .version = "v1", .resource = resource};
    inf_informer *inf = NULL;
    cr_assert_eq(inf_factory_get(fac, &ref, NULL, &inf), KC_OK);
    return inf;
}

/* ---- reconcile recorder ---------------------------------------------------------- */

#define MAXREC 512

typedef struct crec {
    pthread_mutex_t mu;
    int n;
    char keys[MAXREC][64];
    char ns[MAXREC][32];
    char ids[MAXREC][24];
    double at[MAXREC];
    int active, max_active;
    bool overlap_same_key; /* two reconciles of one key at once */
    char running[16][64];
    /* behaviour */
    int sleep_ms;
    const ctl_outcome *script; /* outcome of attempt i (all keys together) */
    int script_len;
    ctl_outcome then;      /* after the script */
    const char *fail_name; /* this name always fails */
    double after;
    int errors_seen;
    char last_error[128];
    const char *labels[MAXREC];
    int nlabels;
    int queue_obs, work_obs;
} crec;

static crec R;

static void crec_reset(void)
{
    memset(&R, 0, sizeof(R));
    pthread_mutex_init(&R.mu, NULL);
}

static ctl_result reconcile(const ctl_ctx *ctx, const char *ns, const char *name, void *user)
{
    crec *r = user;
    pthread_mutex_lock(&r->mu);
    int i = r->n++;
    if (i < MAXREC) {
        snprintf(r->keys[i], 64, "%s", ctx->key);
        snprintf(r->ns[i], 32, "%s|%s", ns, name);
        snprintf(r->ids[i], 24, "%s", ctx->reconcile_id);
        r->at[i] = pv_clock_monotonic();
    }
    int slot = -1;
    for (int k = 0; k < 16; k++) {
        if (r->running[k][0] && strcmp(r->running[k], ctx->key) == 0)
            r->overlap_same_key = true;
        if (slot < 0 && !r->running[k][0])
            slot = k;
    }
    if (slot >= 0)
        snprintf(r->running[slot], 64, "%s", ctx->key);
    r->active++;
    if (r->active > r->max_active)
        r->max_active = r->active;
    int sl = r->sleep_ms;
    ctl_outcome out = i < r->script_len ? r->script[i] : r->then;
    if (r->fail_name != NULL && strcmp(name, r->fail_name) == 0)
        out = CTL_ERROR;
    double after = r->after;
    pthread_mutex_unlock(&r->mu);

    /* A long reconcile returns early when its workers are being stopped. */
    for (int waited = 0; waited < sl && !ctl_ctx_stopping(ctx); waited += 10)
        sleep_ms(10);

    pthread_mutex_lock(&r->mu);
    r->active--;
    if (slot >= 0)
        r->running[slot][0] = '\0';
    pthread_mutex_unlock(&r->mu);
    switch (out) {
    case CTL_DONE:
        return ctl_done();
    case CTL_REQUEUE:
        return ctl_requeue();
    case CTL_REQUEUE_AFTER:
        return ctl_requeue_after(after);
    case CTL_ERROR:
        return ctl_error(KC_ERR_CONFLICT, "attempt %d of %s failed", i, name);
    }
    ctl_result odd = {(ctl_outcome)42, 0, 0, NULL};
    return odd;
}

static void on_done(const char *controller, const char *result, double seconds, void *user)
{
    crec *r = user;
    (void)seconds;
    cr_assert_str_eq(controller, "widgets");
    pthread_mutex_lock(&r->mu);
    if (r->nlabels < MAXREC)
        r->labels[r->nlabels++] = result;
    pthread_mutex_unlock(&r->mu);
}

static void on_observe(const char *controller, const char *metric, double seconds, void *user)
{
    crec *r = user;
    (void)controller;
    (void)seconds;
    pthread_mutex_lock(&r->mu);
    if (strcmp(metric, WQ_METRIC_QUEUE_DURATION) == 0)
        r->queue_obs++;
    else if (strcmp(metric, WQ_METRIC_WORK_DURATION) == 0)
        r->work_obs++;
    pthread_mutex_unlock(&r->mu);
}

static void on_error(const ctl_ctx *ctx, int code, const char *message, void *user)
{
    crec *r = user;
    (void)ctx;
    pthread_mutex_lock(&r->mu);
    r->errors_seen++;
    snprintf(r->last_error, sizeof(r->last_error), "%d %s", code, message ? message : "(null)");
    pthread_mutex_unlock(&r->mu);
}

static void new_ctl(int workers, double base_delay, double max_delay)
{
    crec_reset();
    ctl_opts o = {.max_concurrent_reconciles = workers,
                  .queue = {.base_delay = base_delay, .max_delay = max_delay},
                  .hooks = {.reconcile_done = on_done,
                            .workqueue_observe = on_observe,
                            .reconcile_error = on_error,
                            .user = &R}};
    cr_assert_eq(ctl_new("widgets", &o, reconcile, &R, &ctrl), KC_OK);
}

static int rec_n(void)
{
    pthread_mutex_lock(&R.mu);
    int n = R.n;
    pthread_mutex_unlock(&R.mu);
    return n;
}

static bool wait_n(int n, int timeout_ms)
{
    double until = pv_clock_monotonic() + timeout_ms / 1000.0;
    while (rec_n() < n) {
        if (pv_clock_monotonic() > until)
            return false;
        sleep_ms(5);
    }
    return true;
}

static int count_key(const char *key, int from)
{
    int c = 0;
    pthread_mutex_lock(&R.mu);
    for (int i = from; i < R.n && i < MAXREC; i++)
        if (strcmp(R.keys[i], key) == 0)
            c++;
    pthread_mutex_unlock(&R.mu);
    return c;
}

/* ---- events to keys ------------------------------------------------------------------ */

Test(controller, for_events_enqueue_the_objects_own_keys)
{
    char *a = widget("ns", "a", "1"), *b = widget("other", "b", "2");
    char *items = fmt("%s,%s", a, b);
    char *a2 = widget("ns", "a", "11"), *c = widget("ns", "c", "12");
    char *events =
        fmt("{\"type\":\"MODIFIED\",\"object\":%s}\n{\"type\":\"ADDED\",\"object\":%s}\n", a2, c);
    serve_with_events("widgets", items, events, 500);
    inf_informer *inf = informer_for("widgets");
    new_ctl(1, 0, 0);
    cr_assert_eq(ctl_watch_for(ctrl, inf), KC_OK);
    cr_assert_eq(ctl_watch_for(ctrl, inf), KC_ERR_INVALID_ARG, "one For per controller");
    cr_assert_eq(inf_factory_start(fac), KC_OK);
    cr_assert(ctl_wait_for_sync(ctrl, 5));
    cr_assert_eq(ctl_start(ctrl), KC_OK);
    cr_assert(wait_n(4, 5000), "reconciles: %d", rec_n());
    cr_assert_geq(count_key("ns/a", 0), 2, "the list and the MODIFIED");
    cr_assert_geq(count_key("other/b", 0), 1);
    cr_assert_geq(count_key("ns/c", 0), 1);
    /* namespace and name are split for the reconcile. */
    bool found = false;
    for (int i = 0; i < rec_n(); i++)
        found = found || strcmp(R.ns[i], "other|b") == 0;
    cr_assert(found);
    free(a);
    free(b);
    free(items);
    free(a2);
    free(c);
    free(events);
}

/* Events of objects whose resourceVersion is even pass. */
static bool even_rv(json_object *obj, void *user)
{
    int *calls = user;
    __atomic_add_fetch(calls, 1, __ATOMIC_SEQ_CST);
    json_object *md = NULL, *rv = NULL;
    return json_object_object_get_ex(obj, "metadata", &md) &&
           json_object_object_get_ex(md, "resourceVersion", &rv) &&
           atoi(json_object_get_string(rv)) % 2 == 0;
}

Test(controller, for_events_the_predicate_refuses_enqueue_nothing)
{
    char *a = widget("ns", "a", "1"), *b = widget("ns", "b", "2");
    char *items = fmt("%s,%s", a, b);
    char *a2 = widget("ns", "a", "12"), *b2 = widget("ns", "b", "13");
    char *events = fmt(
        "{\"type\":\"MODIFIED\",\"object\":%s}\n{\"type\":\"MODIFIED\",\"object\":%s}\n", a2, b2);
    serve_with_events("widgets", items, events, 500);
    inf_informer *inf = informer_for("widgets");
    new_ctl(1, 0, 0);
    int calls = 0;
    cr_assert_eq(ctl_watch_for_if(ctrl, inf, even_rv, &calls), KC_OK);
    cr_assert_eq(inf_factory_start(fac), KC_OK);
    cr_assert(ctl_wait_for_sync(ctrl, 5));
    cr_assert_eq(ctl_start(ctrl), KC_OK);
    /* The start enqueues the whole cache, unfiltered: a and b once each. */
    cr_assert(wait_n(2, 5000), "reconciles: %d", rec_n());
    cr_assert_eq(count_key("ns/a", 0), 1);
    cr_assert_eq(count_key("ns/b", 0), 1);
    /* The two updates: a at 12 passes, b at 13 does not. */
    for (int i = 0; i < 400 && __atomic_load_n(&calls, __ATOMIC_SEQ_CST) < 4; i++)
        sleep_ms(5);
    cr_assert_eq(__atomic_load_n(&calls, __ATOMIC_SEQ_CST), 4, "calls: %d", calls);
    cr_assert(wait_n(3, 5000), "reconciles: %d", rec_n());
    cr_assert(inf_wait_idle(inf, 5));
    sleep_ms(100);
    cr_assert_eq(rec_n(), 3);
    cr_assert_eq(count_key("ns/a", 0), 2);
    cr_assert_eq(count_key("ns/b", 0), 1);
    /* ctl_enqueue is not filtered. */
    cr_assert_eq(ctl_enqueue(ctrl, "ns", "b"), KC_OK);
    cr_assert(wait_n(4, 5000));
    cr_assert_eq(count_key("ns/b", 0), 2);
    free(a);
    free(b);
    free(items);
    free(a2);
    free(b2);
    free(events);
}

Test(controller, cluster_scoped_key_gives_an_empty_namespace)
{
    new_ctl(1, 0, 0);
    cr_assert_eq(ctl_start(ctrl), KC_OK);
    cr_assert_eq(ctl_enqueue(ctrl, NULL, "global-pool"), KC_OK);
    cr_assert(wait_n(1, 5000));
    cr_assert_str_eq(R.keys[0], "global-pool");
    cr_assert_str_eq(R.ns[0], "|global-pool");
}

Test(controller, owns_events_enqueue_the_controller_owner_of_matching_group_and_kind)
{
    char *p1 = part("p1", GROUP "/v1", "Widget", "w1", true);
    char *p2 = part("p2", GROUP "/v1", "Widget", "w2", false);   /* not the controller */
    char *p3 = part("p3", GROUP "/v1", "Gadget", "w3", true);    /* another kind */
    char *p4 = part("p4", "other.dev/v1", "Widget", "w4", true); /* another group */
    char *p5 = part("p5", GROUP "/v2", "Widget", "w5", true);    /* other version: matches */
    char *items = fmt("%s,%s,%s,%s,%s", p1, p2, p3, p4, p5);
    serve("parts", items);
    inf_informer *parts = informer_for("parts");
    new_ctl(1, 0, 0);
    ctl_owner owner = {.group = GROUP, .kind = "Widget"};
    cr_assert_eq(ctl_watch_owns(ctrl, parts, &owner), KC_OK);
    cr_assert_eq(ctl_start(ctrl), KC_OK);
    cr_assert_eq(inf_factory_start(fac), KC_OK);
    cr_assert(wait_n(2, 5000));
    cr_assert(inf_wait_idle(parts, 5));
    sleep_ms(100);
    cr_assert_eq(rec_n(), 2, "reconciled: %s %s %s", R.keys[0], R.keys[1], R.keys[2]);
    cr_assert_eq(count_key("ns/w1", 0), 1);
    cr_assert_eq(count_key("ns/w5", 0), 1);
    free(p1);
    free(p2);
    free(p3);
    free(p4);
    free(p5);
    free(items);
}

Test(controller, owns_without_group_takes_the_for_group_and_needs_a_for)
{
    serve("widgets", "");
    serve("parts", "");
    inf_informer *widgets = informer_for("widgets"), *parts = informer_for("parts");
    new_ctl(1, 0, 0);
    ctl_owner owner = {.kind = "Widget"};
    cr_assert_eq(ctl_watch_owns(ctrl, parts, &owner), KC_ERR_INVALID_ARG);
    cr_assert_eq(ctl_watch_for(ctrl, widgets), KC_OK);
    cr_assert_eq(ctl_watch_owns(ctrl, parts, &owner), KC_OK);
}

static int map_pool_to_claims(json_object *obj, ctl_keys *out, void *user)
{
    (void)user;
    json_object *md, *name;
    cr_assert(json_object_object_get_ex(obj, "metadata", &md));
    cr_assert(json_object_object_get_ex(md, "name", &name));
    if (strcmp(json_object_get_string(name), "pool-1") != 0)
        return 0;
    ctl_keys_add(out, "ns", "claim-1");
    ctl_keys_add(out, "ns", "claim-2");
    ctl_keys_add(out, "other", "claim-3");
    return 0;
}

Test(controller, map_function_enqueues_every_key_it_returns)
{
    char *pool = widget("ns", "pool-1", "3"), *pool2 = widget("ns", "pool-2", "4");
    char *items = fmt("%s,%s", pool, pool2);
    serve("pools", items);
    inf_informer *pools = informer_for("pools");
    new_ctl(2, 0, 0);
    cr_assert_eq(ctl_watch_map(ctrl, pools, map_pool_to_claims, NULL), KC_OK);
    cr_assert_eq(ctl_start(ctrl), KC_OK);
    cr_assert_eq(inf_factory_start(fac), KC_OK);
    cr_assert(wait_n(3, 5000));
    cr_assert(inf_wait_idle(pools, 5));
    sleep_ms(100);
    cr_assert_eq(rec_n(), 3);
    cr_assert_eq(count_key("ns/claim-1", 0), 1);
    cr_assert_eq(count_key("ns/claim-2", 0), 1);
    cr_assert_eq(count_key("other/claim-3", 0), 1);
    free(pool);
    free(pool2);
    free(items);
}

/* ---- results ---------------------------------------------------------------------------- */

Test(controller, requeue_after_runs_again_after_the_delay)
{
    static const ctl_outcome script[] = {CTL_REQUEUE_AFTER};
    new_ctl(1, 0, 0);
    R.script = script;
    R.script_len = 1;
    R.then = CTL_DONE;
    R.after = 0.3;
    cr_assert_eq(ctl_start(ctrl), KC_OK);
    cr_assert_eq(ctl_enqueue(ctrl, "ns", "x"), KC_OK);
    cr_assert(wait_n(2, 5000));
    double gap = R.at[1] - R.at[0];
    cr_assert(gap >= 0.28 && gap < 1.5, "gap %.3f", gap);
    sleep_ms(200);
    cr_assert_eq(rec_n(), 2, "done: not run again");
    ctl_stats s;
    ctl_stats_get(ctrl, &s);
    cr_assert_eq(s.reconcile_requeue_after, 1);
    cr_assert_eq(s.reconcile_success, 1);
    cr_assert_eq(s.queue.adds_total, 2);
}

Test(controller, error_retries_with_growing_backoff_and_never_stops)
{
    new_ctl(1, 0.01, 0.1);
    R.then = CTL_ERROR;
    cr_assert_eq(ctl_start(ctrl), KC_OK);
    cr_assert_eq(ctl_enqueue(ctrl, "ns", "bad"), KC_OK);
    sleep_ms(1000);
    int n = rec_n();
    /* 0.01, 0.02, 0.04, 0.08, then 0.1 each: about 12 attempts in a second. */
    cr_assert(n >= 6 && n <= 25, "attempts %d", n);
    pthread_mutex_lock(&R.mu);
    double g1 = R.at[1] - R.at[0], g4 = R.at[4] - R.at[3];
    int errors = R.errors_seen;
    char last[128];
    snprintf(last, sizeof(last), "%s", R.last_error);
    pthread_mutex_unlock(&R.mu);
    cr_assert_gt(g4, g1 * 2, "backoff grows: %.3f then %.3f", g1, g4);
    cr_assert_geq(errors, n - 1);
    cr_assert_not_null(strstr(last, "failed"), "%s", last);
    ctl_stats s;
    ctl_stats_get(ctrl, &s);
    cr_assert_geq(s.reconcile_errors_total, (uint64_t)n - 1);
    cr_assert_geq(s.queue.retries_total, (uint64_t)n - 1);
    cr_assert(s.running);
}

Test(controller, done_forgets_the_backoff)
{
    static const ctl_outcome script[] = {CTL_ERROR, CTL_ERROR, CTL_ERROR, CTL_ERROR,
                                         CTL_ERROR, CTL_DONE,  CTL_ERROR, CTL_DONE};
    new_ctl(1, 0.02, 10);
    R.script = script;
    R.script_len = 8;
    R.then = CTL_DONE;
    cr_assert_eq(ctl_start(ctrl), KC_OK);
    cr_assert_eq(ctl_enqueue(ctrl, "ns", "x"), KC_OK);
    cr_assert(wait_n(6, 5000));
    sleep_ms(50);
    cr_assert_eq(ctl_enqueue(ctrl, "ns", "x"), KC_OK);
    cr_assert(wait_n(8, 5000));
    /* Without the forget the 6th failure would wait 0.64 s; after it, 0.02 s. */
    double gap = R.at[7] - R.at[6];
    cr_assert_lt(gap, 0.3, "gap %.3f", gap);
    cr_assert_gt(R.at[4] - R.at[3], 0.15, "the 4th failure did back off");
    ctl_stats s;
    ctl_stats_get(ctrl, &s);
    cr_assert_eq(s.reconcile_error, 6);
    cr_assert_eq(s.reconcile_success, 2);
}

Test(controller, unknown_outcome_counts_as_an_error)
{
    static const ctl_outcome script[] = {(ctl_outcome)99};
    new_ctl(1, 0.01, 0.01);
    R.script = script;
    R.script_len = 1;
    R.then = CTL_DONE;
    cr_assert_eq(ctl_start(ctrl), KC_OK);
    cr_assert_eq(ctl_enqueue(ctrl, "ns", "odd"), KC_OK);
    cr_assert(wait_n(2, 5000));
    ctl_stats s;
    ctl_stats_get(ctrl, &s);
    cr_assert_eq(s.reconcile_error, 1);
    cr_assert_eq(R.errors_seen, 1);
}

Test(controller, metrics_hooks_get_result_labels_and_queue_observations)
{
    static const ctl_outcome script[] = {CTL_REQUEUE, CTL_ERROR, CTL_REQUEUE_AFTER};
    new_ctl(1, 0.01, 0.01);
    R.script = script;
    R.script_len = 3;
    R.then = CTL_DONE;
    R.after = 0.05;
    cr_assert_eq(ctl_start(ctrl), KC_OK);
    cr_assert_eq(ctl_enqueue(ctrl, "ns", "m"), KC_OK);
    cr_assert(wait_n(4, 5000));
    sleep_ms(50);
    pthread_mutex_lock(&R.mu);
    cr_assert_eq(R.nlabels, 4);
    cr_assert_str_eq(R.labels[0], "requeue");
    cr_assert_str_eq(R.labels[1], "error");
    cr_assert_str_eq(R.labels[2], "requeue_after");
    cr_assert_str_eq(R.labels[3], "success");
    cr_assert_geq(R.queue_obs, 4);
    cr_assert_geq(R.work_obs, 4);
    /* reconcileIDs: 16 lower-case hex characters, all different. */
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(strlen(R.ids[i]), 16);
        cr_assert_eq(strspn(R.ids[i], "0123456789abcdef"), 16);
        for (int j = 0; j < i; j++)
            cr_assert_str_neq(R.ids[i], R.ids[j]);
    }
    pthread_mutex_unlock(&R.mu);
}

/* ---- workers ----------------------------------------------------------------------------- */

Test(controller, concurrency_reaches_max_concurrent_reconciles_and_never_shares_a_key)
{
    new_ctl(4, 0, 0);
    R.sleep_ms = 300;
    cr_assert_eq(ctl_start(ctrl), KC_OK);
    char name[16];
    for (int i = 0; i < 8; i++) {
        snprintf(name, sizeof(name), "k%d", i);
        cr_assert_eq(ctl_enqueue(ctrl, "ns", name), KC_OK);
    }
    /* The same key again while it runs: queued once more, never in parallel. */
    sleep_ms(20);
    cr_assert_eq(ctl_enqueue(ctrl, "ns", "k0"), KC_OK);
    cr_assert(wait_n(9, 5000));
    sleep_ms(450); /* the last one finishes */
    ctl_stats s;
    ctl_stats_get(ctrl, &s);
    cr_assert_eq(R.max_active, 4);
    cr_assert_eq(s.max_active_workers, 4);
    cr_assert_eq(s.max_concurrent_reconciles, 4);
    cr_assert_eq(s.active_workers, 0);
    cr_assert_not(R.overlap_same_key);
    cr_assert_eq(count_key("ns/k0", 0), 2);
    cr_assert_eq(s.worker_threads, 4);
}

static atomic_bool hammer_stop;

static void *hammer(void *arg)
{
    (void)arg;
    char name[16];
    for (int i = 0; !atomic_load(&hammer_stop); i++) {
        snprintf(name, sizeof(name), "h%d", i % 50);
        (void)ctl_enqueue(ctrl, "ns", name);
    }
    return NULL;
}

/* Keys added while ctl_start publishes a new generation may start its first
 * worker before ctl_start does: never more workers than the maximum (ASan
 * catches a worker written past the array). */
Test(controller, keys_added_during_start_never_start_more_workers_than_the_maximum)
{
    new_ctl(1, 0, 0);
    char name[16];
    for (int i = 0; i < 500; i++) { /* queued by every start: a wider window */
        snprintf(name, sizeof(name), "s%d", i);
        cr_assert_eq(ctl_enqueue_on_start(ctrl, "ns", name), KC_OK);
    }
    atomic_store(&hammer_stop, false);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, hammer, NULL), 0);
    for (int i = 0; i < 40; i++) {
        cr_assert_eq(ctl_start(ctrl), KC_OK);
        ctl_stats s;
        ctl_stats_get(ctrl, &s);
        cr_assert_leq(s.worker_threads, 1, "%d workers, at most 1", s.worker_threads);
        ctl_stop(ctrl);
    }
    atomic_store(&hammer_stop, true);
    pthread_join(th, NULL);
    cr_assert_leq(R.max_active, 1);
}

Test(controller, workers_start_on_demand_one_while_keys_come_one_at_a_time)
{
    new_ctl(4, 0, 0);
    cr_assert_eq(ctl_start(ctrl), KC_OK);
    ctl_stats s;
    ctl_stats_get(ctrl, &s);
    cr_assert_eq(s.worker_threads, 1, "a started controller with nothing to do has one worker");
    char name[16];
    for (int i = 0; i < 5; i++) { /* each reconciled before the next comes */
        snprintf(name, sizeof(name), "k%d", i);
        cr_assert_eq(ctl_enqueue(ctrl, "ns", name), KC_OK);
        cr_assert(wait_n(i + 1, 5000));
        for (int t = 0; t < 1000; t++) { /* its worker back to waiting */
            ctl_stats_get(ctrl, &s);
            if (s.idle_workers == s.worker_threads)
                break;
            sleep_ms(5);
        }
    }
    ctl_stats_get(ctrl, &s);
    cr_assert_eq(s.worker_threads, 1, "one key at a time needs one worker, not %d",
                 s.worker_threads);
    /* A burst of slow keys: more workers, never more than the maximum. */
    R.sleep_ms = 200;
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof(name), "b%d", i);
        cr_assert_eq(ctl_enqueue(ctrl, "ns", name), KC_OK);
    }
    cr_assert(wait_n(15, 5000));
    ctl_stats_get(ctrl, &s);
    cr_assert_eq(s.worker_threads, 4);
    cr_assert_eq(R.max_active, 4);
    ctl_stop(ctrl);
    ctl_stats_get(ctrl, &s);
    cr_assert_eq(s.worker_threads, 0);
}

Test(controller, stop_is_immediate_and_restart_reenqueues_the_whole_cache)
{
    char *items = NULL;
    for (int i = 0; i < 5; i++) {
        char name[8];
        snprintf(name, sizeof(name), "w%d", i);
        char *w = widget("ns", name, "1");
        char *next = items ? fmt("%s,%s", items, w) : fmt("%s", w);
        free(items);
        free(w);
        items = next;
    }
    serve("widgets", items);
    inf_informer *inf = informer_for("widgets");
    new_ctl(1, 0, 0);
    R.sleep_ms = 2000; /* long reconciles: they return early when stopped */
    cr_assert_eq(ctl_watch_for(ctrl, inf), KC_OK);
    cr_assert_eq(inf_factory_start(fac), KC_OK);
    cr_assert(ctl_wait_for_sync(ctrl, 5));
    cr_assert_eq(ctl_start(ctrl), KC_OK);
    cr_assert(ctl_running(ctrl));
    cr_assert(wait_n(1, 5000));
    double t0 = pv_clock_monotonic();
    ctl_stop(ctrl);
    cr_assert_lt(pv_clock_monotonic() - t0, 0.5,
                 "stop waits only for the running reconcile to notice");
    cr_assert_not(ctl_running(ctrl));
    int before = rec_n();
    cr_assert_eq(before, 1);
    /* Keys added while stopped go nowhere... */
    cr_assert_eq(ctl_enqueue(ctrl, "ns", "while-stopped"), KC_OK);
    sleep_ms(100);
    cr_assert_eq(rec_n(), before, "no reconcile while stopped");
    ctl_stats s;
    ctl_stats_get(ctrl, &s);
    cr_assert_not(s.running);
    /* ...and a restart reconciles everything cached. */
    pthread_mutex_lock(&R.mu);
    R.sleep_ms = 0;
    pthread_mutex_unlock(&R.mu);
    cr_assert_eq(ctl_start(ctrl), KC_OK);
    cr_assert(wait_n(before + 5, 5000));
    for (int i = 0; i < 5; i++) {
        char key[16];
        snprintf(key, sizeof(key), "ns/w%d", i);
        cr_assert_eq(count_key(key, before), 1, "%s after restart", key);
    }
    /* Stop and start again: still works, and counters never go down. */
    ctl_stats_get(ctrl, &s);
    uint64_t adds = s.queue.adds_total;
    cr_assert_geq(adds, 10);
    ctl_stop(ctrl);
    ctl_stats_get(ctrl, &s);
    cr_assert_eq(s.queue.adds_total, adds);
    cr_assert_eq(s.queue.depth, 0);
    cr_assert_eq(ctl_start(ctrl), KC_OK);
    cr_assert(wait_n(before + 10, 5000));
    ctl_stats_get(ctrl, &s);
    cr_assert_geq(s.queue.adds_total, adds + 5);
    free(items);
}

Test(controller, keys_enqueued_on_start_run_at_every_start_without_an_informer)
{
    new_ctl(1, 0, 0);
    /* Registered while stopped: nothing runs yet... */
    cr_assert_eq(ctl_enqueue_on_start(ctrl, "", "fixed"), KC_OK);
    sleep_ms(100);
    cr_assert_eq(rec_n(), 0);
    /* ...then once at each start. */
    cr_assert_eq(ctl_start(ctrl), KC_OK);
    cr_assert(wait_n(1, 5000));
    cr_assert_eq(count_key("fixed", 0), 1);
    ctl_stop(ctrl);
    cr_assert_eq(ctl_start(ctrl), KC_OK);
    cr_assert(wait_n(2, 5000));
    cr_assert_eq(count_key("fixed", 1), 1, "again after a restart");
    /* Registered while running: queued at once too. */
    cr_assert_eq(ctl_enqueue_on_start(ctrl, "ns", "late"), KC_OK);
    cr_assert(wait_n(3, 5000));
    cr_assert_eq(count_key("ns/late", 2), 1);
    cr_assert_eq(ctl_enqueue_on_start(ctrl, "", ""), KC_ERR_INVALID_ARG);
    sleep_ms(100);
    cr_assert_eq(rec_n(), 3);
}

Test(controller, reconcile_that_always_fails_keeps_other_keys_going)
{
    new_ctl(2, 0.01, 0.05);
    R.fail_name = "bad";
    R.then = CTL_DONE;
    cr_assert_eq(ctl_start(ctrl), KC_OK);
    cr_assert_eq(ctl_enqueue(ctrl, "ns", "bad"), KC_OK);
    sleep_ms(200);
    cr_assert_eq(ctl_enqueue(ctrl, "ns", "good"), KC_OK);
    double until = pv_clock_monotonic() + 5;
    while (count_key("ns/good", 0) < 1 && pv_clock_monotonic() < until)
        sleep_ms(5);
    sleep_ms(200);
    cr_assert_eq(count_key("ns/good", 0), 1);
    cr_assert_geq(count_key("ns/bad", 0), 5);
    ctl_stats s;
    ctl_stats_get(ctrl, &s);
    cr_assert_geq(s.reconcile_error, 5);
    cr_assert_eq(s.reconcile_success, 1);
    cr_assert(s.running);
}
