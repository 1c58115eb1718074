/*
 * Unit tests of the reflector (src/informer/reflector.c) and the shared
 * informer and factory (src/informer/informer.c) against the replay server:
 * real TLS on loopback, scripted list pages and watch streams, recorded
 * requests.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "informer.h"
#include "kc_client.h"
#include "reflector.h"
#include "replay_server.h"
#include "store.h"
#include "pv_clock.h"

/* ---- fixture ------------------------------------------------------------- */

static rs_server *srv;
static kc_config *cfg;
static kc_client *cli;

static void start_server(void)
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
    /* No client-side retries: the reflector's own backoff is under test. */
    kc_client_opts co = {.max_retries = -1};
    rc = kc_client_new(cfg, &co, &cli, &err);
    cr_assert_eq(rc, KC_OK, "kc_client_new: %s", err.message);
    kc_error_clear(&err);
}

static void stop_server(void)
{
    kc_client_free(cli);
    kc_config_free(cfg);
    rs_stop(srv);
    cli = NULL;
    cfg = NULL;
    srv = NULL;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- JSON builders ---------------------------------------------------------- */

#define GROUP "test.provisio.dev"
#define LIST_PATH "/apis/" GROUP "/v1/widgets?limit"
#define WATCH_PATH "/apis/" GROUP "/v1/widgets?watch=1"

static const kc_ref WIDGETS = {.group = GROUP, .version = "v1", .resource = "widgets"};

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

/* A Widget "ns/name" at resourceVersion rv. Static storage for a few at once. */
static const char *obj(const char *name, const char *rv)
{
    static char buf[16][512];
    static int next;
    char *b = buf[next++ % 16];
    snprintf(b, sizeof(buf[0]),
             "{\"apiVersion\":\"" GROUP "/v1\",\"kind\":\"Widget\",\"metadata\":{\"name\":\"%s\","
             "\"namespace\":\"ns\",\"resourceVersion\":\"%s\",\"uid\":\"uid-%s\"},"
             "\"spec\":{\"size\":%zu}}",
             name, rv, name, strlen(name));
    return b;
}

/* A list page (items: comma-separated objects; cont may be NULL). */
static void push_page(const char *rv, const char *cont, const char *items)
{
    char *body = fmt("{\"kind\":\"WidgetList\",\"apiVersion\":\"" GROUP "/v1\",\"metadata\":{"
                     "\"resourceVersion\":\"%s\"%s%s%s},\"items\":[%s]}",
                     rv, cont ? ",\"continue\":\"" : "", cont ? cont : "", cont ? "\"" : "", items);
    rs_response r = {.method = "GET", .path_prefix = LIST_PATH, .body = body};
    rs_push(srv, &r);
    free(body);
}

static char *ev(const char *type, const char *o)
{
    return fmt("{\"type\":\"%s\",\"object\":%s}\n", type, o);
}

/* A watch answer with the given events; hold = keep the stream open after. */
static void push_watch(const char *events, bool hold, int chunk_delay_ms)
{
    size_t pieces[64];
    size_t n = 0, len = strlen(events);
    /* One chunk per event line, so delays fall between events. */
    const char *p = events;
    while (*p && n < 64) {
        const char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) + 1 : strlen(p);
        pieces[n++] = l;
        p += l;
    }
    rs_response r = {.method = "GET",
                     .path_prefix = WATCH_PATH,
                     .body = events,
                     .body_len = len,
                     .chunks = pieces,
                     .nchunks = n,
                     .chunk_delay_ms = chunk_delay_ms,
                     .chunked = true,
                     .hold = hold};
    rs_push(srv, &r);
}

/* A watch that stays open with nothing to say, for every later watch. */
static void push_idle_watches(void)
{
    rs_response r = {.method = "GET", .path_prefix = WATCH_PATH, .hold = true, .times = -1};
    rs_push(srv, &r);
}

static size_t count_requests(const char *prefix)
{
    size_t n = 0, total = rs_request_count(srv);
    for (size_t i = 0; i < total; i++) {
        const rs_request *r = rs_request_at(srv, i);
        if (r && strncmp(r->target, prefix, strlen(prefix)) == 0)
            n++;
    }
    return n;
}

/* The i-th request whose target starts with prefix, or NULL. */
static const rs_request *nth_request(const char *prefix, size_t i)
{
    size_t total = rs_request_count(srv);
    for (size_t j = 0; j < total; j++) {
        const rs_request *r = rs_request_at(srv, j);
        if (r && strncmp(r->target, prefix, strlen(prefix)) == 0 && i-- == 0)
            return r;
    }
    return NULL;
}

static bool wait_requests_with(const char *prefix, size_t n, int timeout_ms)
{
    double until = pv_clock_monotonic() + timeout_ms / 1000.0;
    while (count_requests(prefix) < n) {
        if (pv_clock_monotonic() > until)
            return false;
        sleep_ms(5);
    }
    return true;
}

/* The value of query parameter `name` in target (malloc'd) or NULL. */
static char *query_param(const char *target, const char *name)
{
    const char *q = strchr(target, '?');
    size_t nl = strlen(name);
    while (q != NULL) {
        q++;
        if (strncmp(q, name, nl) == 0 && q[nl] == '=') {
            const char *v = q + nl + 1;
            size_t vl = strcspn(v, "&");
            return strndup(v, vl);
        }
        q = strchr(q, '&');
    }
    return NULL;
}

/* ---- event recorder ---------------------------------------------------------- */

typedef struct rec_event {
    refl_event_type type;
    char name[64];
    char old_rv[32];
    char rv[32];
} rec_event;

typedef struct recorder {
    pthread_mutex_t mu;
    rec_event ev[256];
    int n;
    int synced_calls;
    int logs;
    char last_log[512];
} recorder;

static recorder rec;

static void rec_reset(void)
{
    pthread_mutex_destroy(&rec.mu);
    memset(&rec, 0, sizeof(rec));
    pthread_mutex_init(&rec.mu, NULL);
}

static const char *md_str(json_object *o, const char *field)
{
    json_object *md, *v;
    if (!o || !json_object_object_get_ex(o, "metadata", &md) ||
        !json_object_object_get_ex(md, field, &v))
        return "";
    return json_object_get_string(v);
}

static void rec_on_event(refl_event_type type, json_object *old_obj, json_object *o, void *user)
{
    recorder *r = user;
    pthread_mutex_lock(&r->mu);
    if (r->n < 256) {
        rec_event *e = &r->ev[r->n];
        e->type = type;
        snprintf(e->name, sizeof(e->name), "%s", md_str(o, "name"));
        snprintf(e->old_rv, sizeof(e->old_rv), "%s", md_str(old_obj, "resourceVersion"));
        snprintf(e->rv, sizeof(e->rv), "%s", md_str(o, "resourceVersion"));
    }
    r->n++;
    pthread_mutex_unlock(&r->mu);
    store_obj_put(old_obj);
    store_obj_put(o);
}

static void rec_on_synced(void *user)
{
    recorder *r = user;
    pthread_mutex_lock(&r->mu);
    r->synced_calls++;
    pthread_mutex_unlock(&r->mu);
}

static void rec_log(refl_log_level level, const char *msg, const kc_error *err, void *user)
{
    recorder *r = user;
    if (level < REFL_LOG_INFO)
        return;
    pthread_mutex_lock(&r->mu);
    r->logs++;
    snprintf(r->last_log, sizeof(r->last_log), "%s%s%s", msg, err && err->message ? ": " : "",
             err && err->message ? err->message : "");
    pthread_mutex_unlock(&r->mu);
}

static int rec_count(void)
{
    pthread_mutex_lock(&rec.mu);
    int n = rec.n;
    pthread_mutex_unlock(&rec.mu);
    return n;
}

static bool rec_wait(int n, int timeout_ms)
{
    double until = pv_clock_monotonic() + timeout_ms / 1000.0;
    while (rec_count() < n) {
        if (pv_clock_monotonic() > until)
            return false;
        sleep_ms(5);
    }
    return true;
}

/* Index of the event of type for name at or after `from`, or -1. */
static int rec_find(int from, refl_event_type type, const char *name)
{
    pthread_mutex_lock(&rec.mu);
    int found = -1;
    for (int i = from; i < rec.n && i < 256 && found < 0; i++)
        if (rec.ev[i].type == type && strcmp(rec.ev[i].name, name) == 0)
            found = i;
    pthread_mutex_unlock(&rec.mu);
    return found;
}

/* ---- reflector under test ------------------------------------------------------ */

static store *st;
static refl *rf;

static void refl_setup(void)
{
    rec_reset();
    start_server();
    cr_assert_eq(store_new(NULL, &st), KC_OK);
}

static void refl_teardown(void)
{
    refl_free(rf);
    rf = NULL;
    store_free(st);
    st = NULL;
    stop_server();
}

static refl_opts base_opts(void)
{
    refl_opts o = {.ref = WIDGETS,
                   .backoff = {.initial = 0.02, .max = 0.1},
                   .on_event = rec_on_event,
                   .on_synced = rec_on_synced,
                   .log = rec_log,
                   .user = &rec};
    return o;
}

static void start_refl(const refl_opts *o)
{
    cr_assert_eq(refl_new(cli, st, o, &rf), KC_OK);
    cr_assert_eq(refl_start(rf), KC_OK);
}

static const char *rv_in_store(const char *key)
{
    static char buf[32];
    json_object *o = NULL;
    if (store_get(st, key, &o) != KC_OK)
        return NULL;
    snprintf(buf, sizeof(buf), "%s", md_str(o, "resourceVersion"));
    store_obj_put(o);
    return buf;
}

TestSuite(reflector, .init = refl_setup, .fini = refl_teardown, .timeout = 30);

Test(reflector, paged_list_then_watch_events_update_store_with_right_old_and_new)
{
    char *items1 = fmt("%s,%s", obj("a", "1"), obj("b", "2"));
    char *items2 = fmt("%s,%s", obj("c", "3"), obj("d", "4"));
    char *items3 = fmt("%s", obj("e", "5"));
    push_page("100", "tok-2", items1);
    push_page("100", "tok-3", items2);
    push_page("100", NULL, items3);
    char *e1 = ev("MODIFIED", obj("a", "101"));
    char *e2 = ev("ADDED", obj("f", "102"));
    char *e3 = ev("DELETED", obj("b", "103"));
    char *events = fmt("%s%s%s", e1, e2, e3);
    push_watch(events, true, 5);

    refl_opts o = base_opts();
    start_refl(&o);
    cr_assert(rec_wait(8, 5000), "events: %d", rec_count());

    /* Three list pages: limit=500, then the continue tokens in order. */
    cr_assert_eq(count_requests(LIST_PATH), 3);
    for (int i = 0; i < 3; i++) {
        const rs_request *r = nth_request(LIST_PATH, (size_t)i);
        char *limit = query_param(r->target, "limit");
        char *cont = query_param(r->target, "continue");
        cr_assert_str_eq(limit, "500");
        if (i == 0)
            cr_assert_null(cont);
        else
            cr_assert_str_eq(cont, i == 1 ? "tok-2" : "tok-3");
        free(limit);
        free(cont);
    }
    /* The watch starts at the list's resourceVersion with bookmarks. */
    const rs_request *w = nth_request(WATCH_PATH, 0);
    cr_assert_not_null(w);
    char *rv = query_param(w->target, "resourceVersion");
    char *bm = query_param(w->target, "allowWatchBookmarks");
    char *to = query_param(w->target, "timeoutSeconds");
    cr_assert_str_eq(rv, "100");
    cr_assert_str_eq(bm, "true");
    long t = strtol(to, NULL, 10);
    cr_assert(t >= 300 && t <= 600, "timeoutSeconds %ld", t);
    free(rv);
    free(bm);
    free(to);

    /* Five adds from the list, then the watch's changes with old/new. */
    for (int i = 0; i < 5; i++)
        cr_assert_eq(rec.ev[i].type, REFL_ADD);
    cr_assert_eq(rec.ev[5].type, REFL_UPDATE);
    cr_assert_str_eq(rec.ev[5].name, "a");
    cr_assert_str_eq(rec.ev[5].old_rv, "1");
    cr_assert_str_eq(rec.ev[5].rv, "101");
    cr_assert_eq(rec.ev[6].type, REFL_ADD);
    cr_assert_str_eq(rec.ev[6].name, "f");
    cr_assert_eq(rec.ev[7].type, REFL_DELETE);
    cr_assert_str_eq(rec.ev[7].name, "b");
    cr_assert_str_eq(rec.ev[7].rv, "103", "a delete reports the event's object");

    cr_assert_eq(store_len(st), 5);
    cr_assert_str_eq(rv_in_store("ns/a"), "101");
    cr_assert_null(rv_in_store("ns/b"));
    cr_assert_str_eq(rv_in_store("ns/f"), "102");
    char *last = NULL;
    cr_assert_eq(refl_last_resource_version(rf, &last), KC_OK);
    cr_assert_str_eq(last, "103");
    free(last);
    cr_assert_eq(rec.synced_calls, 1);

    free(items1);
    free(items2);
    free(items3);
    free(e1);
    free(e2);
    free(e3);
    free(events);
}

static int transform_calls;

static void counting_strip(json_object *obj, void *user)
{
    (void)user;
    __atomic_add_fetch(&transform_calls, 1, __ATOMIC_SEQ_CST);
    refl_strip_managed_fields(obj, NULL);
}

static bool has_managed_fields(json_object *o)
{
    json_object *md = NULL, *mf = NULL;
    return json_object_object_get_ex(o, "metadata", &md) &&
           json_object_object_get_ex(md, "managedFields", &mf);
}

Test(reflector, transform_runs_on_listed_and_watched_objects_before_the_store)
{
    const char *mf = "\"managedFields\":[{\"manager\":\"kubectl\",\"operation\":\"Update\","
                     "\"fieldsV1\":{\"f:spec\":{}}}],";
    char *item = fmt("{\"kind\":\"Widget\",\"metadata\":{%s\"name\":\"a\",\"namespace\":"
                     "\"ns\",\"resourceVersion\":\"1\"},\"spec\":{\"size\":1}}",
                     mf);
    char *wobj = fmt("{\"kind\":\"Widget\",\"metadata\":{%s\"name\":\"b\",\"namespace\":"
                     "\"ns\",\"resourceVersion\":\"101\"},\"spec\":{\"size\":1}}",
                     mf);
    char *e1 = ev("ADDED", wobj);
    push_page("100", NULL, item);
    push_watch(e1, true, 0);
    transform_calls = 0;
    refl_opts o = base_opts();
    o.transform = counting_strip;
    start_refl(&o);
    cr_assert(rec_wait(2, 5000), "events: %d", rec_count());
    cr_assert_eq(__atomic_load_n(&transform_calls, __ATOMIC_SEQ_CST), 2);
    const char *keys[] = {"ns/a", "ns/b"};
    for (int i = 0; i < 2; i++) {
        json_object *got = NULL;
        cr_assert_eq(store_get(st, keys[i], &got), KC_OK);
        cr_assert_not(has_managed_fields(got), "%s kept managedFields", keys[i]);
        json_object *spec = NULL;
        cr_assert(json_object_object_get_ex(got, "spec", &spec), "the rest stays");
        store_obj_put(got);
    }
    /* Without a transform the field stays (the reflector changes nothing
     * on its own). */
    json_object *raw = json_tokener_parse(item);
    cr_assert(has_managed_fields(raw));
    refl_strip_managed_fields(raw, NULL);
    cr_assert_not(has_managed_fields(raw));
    refl_strip_managed_fields(raw, NULL); /* absent: nothing to do */
    json_object_put(raw);
    json_object *arr = json_object_new_array();
    refl_strip_managed_fields(arr, NULL); /* not an object: ignored */
    refl_strip_managed_fields(NULL, NULL);
    json_object_put(arr);
    free(item);
    free(wobj);
    free(e1);
}

Test(reflector, bookmark_advances_resource_version_of_the_next_watch)
{
    push_page("100", NULL, obj("a", "1"));
    char *events = fmt("{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Widget\",\"apiVersion\":"
                       "\"" GROUP "/v1\",\"metadata\":{\"resourceVersion\":\"150\"}}}\n");
    push_watch(events, false, 0); /* then the server ends the watch */
    push_idle_watches();
    refl_opts o = base_opts();
    start_refl(&o);
    cr_assert(wait_requests_with(WATCH_PATH, 2, 5000));
    char *rv1 = query_param(nth_request(WATCH_PATH, 0)->target, "resourceVersion");
    char *rv2 = query_param(nth_request(WATCH_PATH, 1)->target, "resourceVersion");
    cr_assert_str_eq(rv1, "100");
    cr_assert_str_eq(rv2, "150");
    cr_assert_eq(rec_count(), 1, "a bookmark is not an event (only the list's add)");
    cr_assert_eq(count_requests(LIST_PATH), 1, "no relist");
    refl_stats s;
    refl_stats_get(rf, &s);
    cr_assert_eq(s.bookmarks_total, 1);
    free(rv1);
    free(rv2);
    free(events);
}

Test(reflector, watch_ended_normally_rewatches_from_last_event_without_relisting)
{
    push_page("100", NULL, obj("a", "1"));
    char *e1 = ev("MODIFIED", obj("a", "120"));
    push_watch(e1, false, 0);
    push_idle_watches();
    refl_opts o = base_opts();
    start_refl(&o);
    cr_assert(wait_requests_with(WATCH_PATH, 2, 5000));
    char *rv2 = query_param(nth_request(WATCH_PATH, 1)->target, "resourceVersion");
    cr_assert_str_eq(rv2, "120");
    sleep_ms(100);
    cr_assert_eq(count_requests(LIST_PATH), 1);
    cr_assert_str_eq(rv_in_store("ns/a"), "120");
    free(rv2);
    free(e1);
}

/* The relist after a 410 reports exactly the difference. */
static void check_relist_difference(void)
{
    cr_assert(rec_wait(6, 5000), "events: %d", rec_count());
    sleep_ms(50);
    cr_assert_eq(rec_count(), 6, "nothing for the unchanged object");
    /* After the three adds of the first list: */
    int upd = rec_find(3, REFL_UPDATE, "b");
    int add = rec_find(3, REFL_ADD, "d");
    int del = rec_find(3, REFL_DELETE, "c");
    cr_assert(upd >= 3 && add >= 3 && del >= 3);
    cr_assert_str_eq(rec.ev[upd].old_rv, "2");
    cr_assert_str_eq(rec.ev[upd].rv, "7");
    cr_assert_str_eq(rec.ev[del].rv, "3", "a vanished object is reported in its last state");
    cr_assert_eq(rec_find(3, REFL_UPDATE, "a"), -1);
    cr_assert_eq(rec_find(3, REFL_ADD, "a"), -1);
    cr_assert_eq(store_len(st), 3);
    cr_assert_str_eq(rv_in_store("ns/b"), "7");
    cr_assert_null(rv_in_store("ns/c"));
    cr_assert_eq(count_requests(LIST_PATH), 2);
    refl_stats s;
    refl_stats_get(rf, &s);
    cr_assert_eq(s.gone_total, 1);
    cr_assert_eq(s.lists_total, 2);
    /* The next watch starts from the relist's resourceVersion. */
    cr_assert(wait_requests_with(WATCH_PATH, 2, 5000));
    char *rv = query_param(nth_request(WATCH_PATH, 1)->target, "resourceVersion");
    cr_assert_str_eq(rv, "200");
    free(rv);
}

static void push_relist_scenario_lists(void)
{
    char *first = fmt("%s,%s,%s", obj("a", "1"), obj("b", "2"), obj("c", "3"));
    push_page("100", NULL, first);
    free(first);
}

static void push_relist_second_list(void)
{
    char *second = fmt("%s,%s,%s", obj("a", "1"), obj("b", "7"), obj("d", "8"));
    push_page("200", NULL, second);
    free(second);
}

Test(reflector, gone_error_event_relists_and_reports_only_the_difference)
{
    push_relist_scenario_lists();
    push_relist_second_list();
    char *body = fmt("{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\","
                     "\"status\":\"Failure\",\"message\":\"too old resource version: 100 (150)\","
                     "\"reason\":\"Expired\",\"code\":410}}\n");
    push_watch(body, true, 0);
    push_idle_watches();
    refl_opts o = base_opts();
    start_refl(&o);
    check_relist_difference();
    free(body);
}

Test(reflector, gone_answer_to_the_watch_relists)
{
    push_relist_scenario_lists();
    push_relist_second_list();
    rs_response gone = {.method = "GET",
                        .path_prefix = WATCH_PATH,
                        .status = 410,
                        .body = "{\"kind\":\"Status\",\"status\":\"Failure\",\"message\":\"too old "
                                "resource version\",\"reason\":\"Expired\",\"code\":410}"};
    rs_push(srv, &gone);
    push_idle_watches();
    refl_opts o = base_opts();
    start_refl(&o);
    check_relist_difference();
}

Test(reflector, has_synced_is_false_before_the_list_and_true_after)
{
    char *body = fmt("{\"kind\":\"WidgetList\",\"metadata\":{\"resourceVersion\":\"5\"},"
                     "\"items\":[%s]}",
                     obj("a", "1"));
    rs_response slow = {.method = "GET", .path_prefix = LIST_PATH, .body = body, .delay_ms = 400};
    rs_push(srv, &slow);
    push_idle_watches();
    refl_opts o = base_opts();
    start_refl(&o);
    cr_assert(rs_wait_requests(srv, 1, 5000));
    cr_assert_not(refl_has_synced(rf));
    cr_assert_not(refl_wait_synced(rf, 0.1));
    cr_assert(refl_wait_synced(rf, 5));
    cr_assert(refl_has_synced(rf));
    cr_assert_eq(store_len(st), 1);
    free(body);
}

Test(reflector, errors_back_off_so_requests_stay_bounded)
{
    rs_response fail = {.status = 500,
                        .body = "{\"kind\":\"Status\",\"status\":\"Failure\",\"message\":\"boom\","
                                "\"code\":500}",
                        .times = -1};
    rs_push(srv, &fail);
    refl_opts o = base_opts();
    o.backoff = (bo_opts){.initial = 0.1, .max = 0.4};
    start_refl(&o);
    sleep_ms(1500);
    size_t n = rs_request_count(srv);
    /* Delays lie in [d, 2d): 0.1, 0.2, 0.4, 0.4 ... -> about 4-5 attempts in 1.5 s. */
    cr_assert(n >= 3 && n <= 7, "requests in 1.5 s: %zu", n);
    refl_stats s;
    refl_stats_get(rf, &s);
    cr_assert_geq(s.list_errors_total, 3);
    cr_assert_not(s.synced);
    cr_assert_gt(rec.logs, 0);
    cr_assert_not_null(strstr(rec.last_log, "boom"), "log: %s", rec.last_log);
}

Test(reflector, stop_is_prompt_while_watching)
{
    push_page("100", NULL, obj("a", "1"));
    push_idle_watches();
    refl_opts o = base_opts();
    start_refl(&o);
    cr_assert(wait_requests_with(WATCH_PATH, 1, 5000));
    sleep_ms(100);
    double t0 = pv_clock_monotonic();
    refl_stop(rf);
    double took = pv_clock_monotonic() - t0;
    cr_assert_lt(took, 0.5, "stop took %.3f s", took);
}

Test(reflector, stop_is_prompt_while_backing_off)
{
    rs_push_simple(srv, 500, "{\"kind\":\"Status\",\"code\":500,\"message\":\"down\"}");
    refl_opts o = base_opts();
    o.backoff = (bo_opts){.initial = 30, .max = 30};
    start_refl(&o);
    cr_assert(rs_wait_requests(srv, 1, 5000));
    sleep_ms(100);
    double t0 = pv_clock_monotonic();
    refl_stop(rf);
    cr_assert_lt(pv_clock_monotonic() - t0, 0.5);
    cr_assert_eq(rs_request_count(srv), 1);
}

/* A list answer that never ends (headers, then nothing): stop cancels the
 * request in flight instead of waiting out its 60 s timeout (past this
 * suite's 30 s). */
Test(reflector, stop_cancels_a_list_in_flight)
{
    rs_response r = {.status = 200, .body = "{\"items\":[", .hold = true};
    rs_push(srv, &r);
    refl_opts o = base_opts();
    start_refl(&o);
    cr_assert(rs_wait_requests(srv, 1, 5000));
    sleep_ms(100);
    refl_stop(rf);
    cr_assert_not(refl_has_synced(rf));
    cr_assert_eq(rs_request_count(srv), 1);
}

/* Another reflector holds the shared page lock (through a slow page): stop
 * ends the wait for it; the stopped reflector never lists. */
Test(reflector, stop_ends_the_wait_for_the_page_lock)
{
    pthread_mutex_t page_lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&page_lock);
    push_page("100", NULL, obj("a", "1"));
    refl_opts o = base_opts();
    o.page_lock = &page_lock;
    start_refl(&o);
    sleep_ms(200);
    refl_stop(rf);
    cr_assert_eq(rs_request_count(srv), 0, "the list waited for the page lock");
    pthread_mutex_unlock(&page_lock);
    cr_assert_eq(pthread_mutex_trylock(&page_lock), 0, "the stopped reflector left the lock free");
    pthread_mutex_unlock(&page_lock);
}

Test(reflector, deleted_event_for_an_uncached_object_is_still_reported)
{
    push_page("100", NULL, obj("a", "1"));
    char *e1 = ev("DELETED", obj("ghost", "101"));
    push_watch(e1, true, 0);
    refl_opts o = base_opts();
    start_refl(&o);
    cr_assert(rec_wait(2, 5000));
    cr_assert_eq(rec.ev[1].type, REFL_DELETE);
    cr_assert_str_eq(rec.ev[1].name, "ghost");
    cr_assert_str_eq(rec.ev[1].rv, "101");
    cr_assert_eq(store_len(st), 1);
    free(e1);
}

Test(reflector, event_without_metadata_is_skipped_and_logged)
{
    char *items = fmt("%s,{\"kind\":\"Widget\"},42,{\"metadata\":\"odd\"}", obj("a", "1"));
    push_page("100", NULL, items);
    free(items);
    char *e1 = ev("ADDED", "{\"kind\":\"Widget\"}");
    char *e2 = ev("MODIFIED", "{\"kind\":\"Widget\",\"metadata\":{\"namespace\":\"ns\"}}");
    char *e3 = ev("ADDED", obj("b", "102"));
    char *events = fmt("%s%s%s", e1, e2, e3);
    push_watch(events, true, 0);
    refl_opts o = base_opts();
    start_refl(&o);
    cr_assert(rec_wait(2, 5000));
    cr_assert_eq(rec.ev[1].type, REFL_ADD);
    cr_assert_str_eq(rec.ev[1].name, "b");
    refl_stats s;
    refl_stats_get(rf, &s);
    cr_assert_eq(s.skipped_total, 5, "three list items and two events");
    cr_assert_geq(rec.logs, 3);
    cr_assert_eq(store_len(st), 2);
    cr_assert_eq(count_requests(WATCH_PATH), 1, "the watch went on");
    free(e1);
    free(e2);
    free(e3);
    free(events);
}

Test(reflector, expired_continue_token_restarts_the_list)
{
    push_page("100", "tok-2", obj("a", "1"));
    rs_response gone = {.method = "GET",
                        .path_prefix = LIST_PATH,
                        .status = 410,
                        .body = "{\"kind\":\"Status\",\"status\":\"Failure\",\"message\":\"The "
                                "provided continue parameter is too old\",\"reason\":\"Expired\","
                                "\"code\":410}"};
    rs_push(srv, &gone);
    push_page("300", "tok-b", obj("a", "1"));
    push_page("300", NULL, obj("z", "9"));
    push_idle_watches();
    refl_opts o = base_opts();
    start_refl(&o);
    cr_assert(refl_wait_synced(rf, 5));
    cr_assert_eq(count_requests(LIST_PATH), 4);
    char *cont = query_param(nth_request(LIST_PATH, 2)->target, "continue");
    cr_assert_null(cont, "the list started over");
    cr_assert_eq(store_len(st), 2);
    cr_assert_eq(rec_count(), 2, "the restarted list reports only differences");
    cr_assert(wait_requests_with(WATCH_PATH, 1, 5000));
    char *rv = query_param(nth_request(WATCH_PATH, 0)->target, "resourceVersion");
    cr_assert_str_eq(rv, "300");
    free(rv);
}

Test(reflector, selectors_and_namespace_are_sent_on_list_and_watch)
{
    rs_response page = {.method = "GET",
                        .path_prefix = "/apis/" GROUP "/v1/namespaces/team-a/widgets?",
                        .body = "{\"kind\":\"WidgetList\",\"metadata\":{\"resourceVersion\":\"9\"},"
                                "\"items\":[]}"};
    rs_push(srv, &page);
    rs_response hold = {.method = "GET",
                        .path_prefix = "/apis/" GROUP "/v1/namespaces/team-a/widgets?watch=1",
                        .hold = true,
                        .times = -1};
    rs_push(srv, &hold);
    refl_opts o = base_opts();
    o.ref.namespace_ = "team-a";
    o.label_selector = "app=x,tier!=db";
    o.field_selector = "metadata.name=w";
    start_refl(&o);
    cr_assert(rs_wait_requests(srv, 2, 5000));
    for (int i = 0; i < 2; i++) {
        const rs_request *r = rs_request_at(srv, (size_t)i);
        char *ls = query_param(r->target, "labelSelector");
        char *fs = query_param(r->target, "fieldSelector");
        cr_assert_str_eq(ls, "app%3Dx%2Ctier%21%3Ddb", "target %s", r->target);
        cr_assert_str_eq(fs, "metadata.name%3Dw");
        free(ls);
        free(fs);
    }
    cr_assert(refl_has_synced(rf), "an empty list is a sync");
}

Test(reflector, stream_cut_after_events_rewatches_without_relisting)
{
    push_page("100", NULL, obj("a", "1"));
    char *e1 = ev("MODIFIED", obj("a", "110"));
    char *e2 = ev("MODIFIED", obj("a", "111"));
    char *events = fmt("%s%s", e1, e2);
    rs_response cut = {.method = "GET",
                       .path_prefix = WATCH_PATH,
                       .body = events,
                       .chunked = true,
                       .cut = true,
                       .cut_after = strlen(e1) + 10};
    rs_push(srv, &cut);
    push_idle_watches();
    refl_opts o = base_opts();
    start_refl(&o);
    cr_assert(wait_requests_with(WATCH_PATH, 2, 5000));
    char *rv = query_param(nth_request(WATCH_PATH, 1)->target, "resourceVersion");
    cr_assert_str_eq(rv, "110");
    cr_assert_eq(count_requests(LIST_PATH), 1);
    free(rv);
    free(e1);
    free(e2);
    free(events);
}

Test(reflector, other_error_event_backs_off_and_relists)
{
    push_page("100", NULL, obj("a", "1"));
    push_page("200", NULL, obj("a", "1"));
    char *body =
        fmt("{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"status\":\"Failure\","
            "\"message\":\"internal error\",\"reason\":\"InternalError\",\"code\":500}}\n");
    push_watch(body, true, 0);
    push_idle_watches();
    refl_opts o = base_opts();
    start_refl(&o);
    cr_assert(wait_requests_with(LIST_PATH, 2, 5000));
    cr_assert(wait_requests_with(WATCH_PATH, 2, 5000));
    char *rv = query_param(nth_request(WATCH_PATH, 1)->target, "resourceVersion");
    cr_assert_str_eq(rv, "200");
    sleep_ms(50);
    cr_assert_eq(rec_count(), 1, "the unchanged object is not reported again");
    free(rv);
    free(body);
}

/* ---- shared informers --------------------------------------------------------------- */

static inf_factory *fac;

typedef struct hrec {
    pthread_mutex_t mu;
    int adds, updates, deletes, same_obj_updates, null_old_updates;
    char old_rv[32]; /* the last update's old object's resourceVersion */
    char names[64][32];
    int n;
    int delay_ms;
    pthread_t thread;
} hrec;

static void h_add(json_object *o, void *user)
{
    hrec *h = user;
    if (h->delay_ms)
        sleep_ms(h->delay_ms);
    pthread_mutex_lock(&h->mu);
    h->adds++;
    h->thread = pthread_self();
    if (h->n < 64)
        snprintf(h->names[h->n++], 32, "+%s", md_str(o, "name"));
    pthread_mutex_unlock(&h->mu);
}

static void h_update(json_object *old_obj, json_object *new_obj, void *user)
{
    hrec *h = user;
    if (h->delay_ms)
        sleep_ms(h->delay_ms);
    pthread_mutex_lock(&h->mu);
    h->updates++;
    if (old_obj == new_obj)
        h->same_obj_updates++;
    if (old_obj == NULL)
        h->null_old_updates++;
    snprintf(h->old_rv, sizeof h->old_rv, "%s", old_obj ? md_str(old_obj, "resourceVersion") : "");
    if (h->n < 64)
        snprintf(h->names[h->n++], 32, "~%s", md_str(new_obj, "name"));
    pthread_mutex_unlock(&h->mu);
}

static void h_delete(json_object *o, void *user)
{
    hrec *h = user;
    pthread_mutex_lock(&h->mu);
    h->deletes++;
    if (h->n < 64)
        snprintf(h->names[h->n++], 32, "-%s", md_str(o, "name"));
    pthread_mutex_unlock(&h->mu);
}

static int hrec_get(hrec *h, int *field)
{
    pthread_mutex_lock(&h->mu);
    int v = *field;
    pthread_mutex_unlock(&h->mu);
    return v;
}

static bool hrec_wait(hrec *h, int *field, int n, int timeout_ms)
{
    double until = pv_clock_monotonic() + timeout_ms / 1000.0;
    while (hrec_get(h, field) < n) {
        if (pv_clock_monotonic() > until)
            return false;
        sleep_ms(5);
    }
    return true;
}

static inf_handler_fns fns_of(hrec *h)
{
    inf_handler_fns f = {.on_add = h_add, .on_update = h_update, .on_delete = h_delete, .user = h};
    return f;
}

static void inf_setup(void)
{
    rec_reset();
    start_server();
}

static void inf_teardown(void)
{
    inf_factory_free(fac);
    fac = NULL;
    stop_server();
}

static void new_factory(double resync)
{
    inf_factory_opts fo = {.resync_period = resync,
                           .backoff = {.initial = 0.02, .max = 0.1},
                           .log = rec_log,
                           .log_user = &rec};
    cr_assert_eq(inf_factory_new(cli, &fo, &fac), KC_OK);
}

TestSuite(informer, .init = inf_setup, .fini = inf_teardown, .timeout = 30);

Test(informer, two_handlers_share_one_list_and_one_watch)
{
    char *items = fmt("%s,%s", obj("a", "1"), obj("b", "2"));
    push_page("100", NULL, items);
    char *e1 = ev("ADDED", obj("c", "101"));
    push_watch(e1, true, 0);
    push_idle_watches();
    new_factory(0);
    inf_informer *i1 = NULL, *i2 = NULL;
    cr_assert_eq(inf_factory_get(fac, &WIDGETS, NULL, &i1), KC_OK);
    cr_assert_eq(inf_factory_get(fac, &WIDGETS, NULL, &i2), KC_OK);
    cr_assert_eq(i1, i2, "one informer per resource");
    hrec h1 = {.mu = PTHREAD_MUTEX_INITIALIZER}, h2 = {.mu = PTHREAD_MUTEX_INITIALIZER};
    inf_handler_fns f1 = fns_of(&h1), f2 = fns_of(&h2);
    inf_handler *r1 = NULL, *r2 = NULL;
    cr_assert_eq(inf_add_handler(i1, &f1, &r1), KC_OK);
    cr_assert_eq(inf_add_handler(i2, &f2, &r2), KC_OK);
    cr_assert_eq(inf_factory_start(fac), KC_OK);
    cr_assert(inf_factory_wait_for_sync(fac, 5));
    cr_assert(hrec_wait(&h1, &h1.adds, 3, 5000));
    cr_assert(hrec_wait(&h2, &h2.adds, 3, 5000));
    cr_assert(inf_wait_idle(i1, 5));
    cr_assert(inf_handler_has_synced(r1));
    cr_assert(inf_handler_has_synced(r2));
    cr_assert_eq(count_requests(LIST_PATH), 1);
    cr_assert_eq(count_requests(WATCH_PATH), 1);
    cr_assert_eq(h1.adds, 3);
    cr_assert_eq(h2.adds, 3);
    /* Handlers run on the dispatch thread, not on the caller's. */
    cr_assert_not(pthread_equal(h1.thread, pthread_self()));
    /* A different selection is a different informer. */
    inf_informer *i3 = NULL;
    inf_opts sel = {.label_selector = "app=x"};
    cr_assert_eq(inf_factory_get(fac, &WIDGETS, &sel, &i3), KC_OK);
    cr_assert_neq(i3, i1);
    cr_assert_eq(inf_factory_len(fac), 2);
    free(items);
    free(e1);
}

Test(informer, late_handler_gets_synthetic_adds_then_changes)
{
    char *items = fmt("%s,%s,%s", obj("a", "1"), obj("b", "2"), obj("c", "3"));
    push_page("100", NULL, items);
    char *e1 = ev("MODIFIED", obj("a", "101"));
    char *e2 = ev("DELETED", obj("b", "102"));
    /* A bookmark first: the changes come 400 ms later, after the registration. */
    char *events = fmt("{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":"
                       "\"100\"}}}\n%s%s",
                       e1, e2);
    push_watch(events, true, 400);
    new_factory(0);
    inf_informer *inf = NULL;
    cr_assert_eq(inf_factory_get(fac, &WIDGETS, NULL, &inf), KC_OK);
    cr_assert_eq(inf_factory_start(fac), KC_OK);
    cr_assert(inf_wait_for_sync(inf, 5));
    hrec h = {.mu = PTHREAD_MUTEX_INITIALIZER};
    inf_handler_fns f = fns_of(&h);
    inf_handler *reg = NULL;
    cr_assert_eq(inf_add_handler(inf, &f, &reg), KC_OK);
    cr_assert(hrec_wait(&h, &h.adds, 3, 5000));
    cr_assert(inf_wait_idle(inf, 5));
    cr_assert(inf_handler_has_synced(reg));
    cr_assert(hrec_wait(&h, &h.deletes, 1, 5000));
    cr_assert(inf_wait_idle(inf, 5));
    cr_assert_eq(h.adds, 3);
    cr_assert_eq(h.updates, 1);
    cr_assert_eq(h.deletes, 1);
    cr_assert_str_eq(h.names[3], "~a");
    cr_assert_str_eq(h.names[4], "-b");
    free(items);
    free(e1);
    free(e2);
    free(events);
}

Test(informer, resync_redelivers_cached_objects_as_updates)
{
    char *items = fmt("%s,%s", obj("a", "1"), obj("b", "2"));
    push_page("100", NULL, items);
    push_idle_watches();
    new_factory(0.2);
    inf_informer *inf = NULL;
    cr_assert_eq(inf_factory_get(fac, &WIDGETS, NULL, &inf), KC_OK);
    hrec h = {.mu = PTHREAD_MUTEX_INITIALIZER}, quiet = {.mu = PTHREAD_MUTEX_INITIALIZER};
    inf_handler_fns f = fns_of(&h), fq = fns_of(&quiet);
    fq.no_resync = true;
    cr_assert_eq(inf_add_handler(inf, &f, NULL), KC_OK);
    cr_assert_eq(inf_add_handler(inf, &fq, NULL), KC_OK);
    cr_assert_eq(inf_factory_start(fac), KC_OK);
    cr_assert(hrec_wait(&h, &h.updates, 4, 5000), "two resyncs of two objects");
    cr_assert_eq(hrec_get(&h, &h.same_obj_updates), hrec_get(&h, &h.updates));
    cr_assert_eq(hrec_get(&quiet, &quiet.updates), 0);
    cr_assert_eq(hrec_get(&quiet, &quiet.adds), 2);
    inf_stats s;
    inf_stats_get(inf, &s);
    cr_assert_geq(s.resyncs_total, 2);
    cr_assert_eq(count_requests(LIST_PATH), 1, "a resync is not a relist");
    free(items);
}

/* A handler that holds the first resync update until the test lets it go. */
typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    char first[32];
    bool open;
    int updates, distinct;
    char names[64][32];
} gate;

static void gate_update(json_object *old_obj, json_object *new_obj, void *user)
{
    gate *g = user;
    pthread_mutex_lock(&g->mu);
    if (old_obj != new_obj)
        g->distinct++;
    if (g->first[0] == '\0') {
        snprintf(g->first, sizeof g->first, "%s", md_str(new_obj, "name"));
        pthread_cond_broadcast(&g->cond);
        while (!g->open)
            pthread_cond_wait(&g->cond, &g->mu);
    }
    if (g->updates < 64)
        snprintf(g->names[g->updates], 32, "%s", md_str(new_obj, "name"));
    g->updates++;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->mu);
}

Test(informer, resync_reads_each_object_at_delivery_and_skips_deleted_keys)
{
    char *items = fmt("%s,%s", obj("a", "1"), obj("b", "2"));
    push_page("100", NULL, items);
    push_idle_watches();
    new_factory(0.2);
    inf_informer *inf = NULL;
    cr_assert_eq(inf_factory_get(fac, &WIDGETS, NULL, &inf), KC_OK);
    gate g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    inf_handler_fns f = {.on_update = gate_update, .user = &g};
    cr_assert_eq(inf_add_handler(inf, &f, NULL), KC_OK);
    cr_assert_eq(inf_factory_start(fac), KC_OK);

    pthread_mutex_lock(&g.mu);
    while (g.first[0] == '\0')
        pthread_cond_wait(&g.cond, &g.mu);
    const char *other = strcmp(g.first, "a") == 0 ? "ns/b" : "ns/a";
    pthread_mutex_unlock(&g.mu);
    /* The other key of this resync is queued, not its object: deleting it
     * from the store now means it must never be delivered again. */
    json_object *old = NULL;
    int rc = store_delete(inf_store(inf), other, &old);
    store_obj_put(old);
    pthread_mutex_lock(&g.mu);
    g.open = true; /* before any assertion: the teardown joins the handler */
    pthread_cond_broadcast(&g.cond);
    if (rc != KC_OK)
        pthread_mutex_unlock(&g.mu);
    cr_assert_eq(rc, KC_OK, "store_delete(%s)", other);
    /* Two more resync rounds of the one object left. */
    while (g.updates < 3)
        pthread_cond_wait(&g.cond, &g.mu);
    for (int i = 0; i < g.updates && i < 64; i++)
        cr_assert_str_eq(g.names[i], g.first, "update %d was for %s", i, g.names[i]);
    cr_assert_eq(g.distinct, 0, "a resync passes one object as old and new");
    pthread_mutex_unlock(&g.mu);
    cr_assert(inf_wait_idle(inf, 5));
    inf_factory_stop(fac);
    free(items);
}

Test(informer, slow_handler_does_not_stall_the_watch)
{
    push_page("100", NULL, obj("a", "1"));
    char events[4096] = "";
    char name[8];
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof(name), "n%d", i);
        char *e = ev("ADDED", obj(name, "200"));
        strcat(events, e);
        free(e);
    }
    push_watch(events, true, 0);
    new_factory(0);
    inf_informer *inf = NULL;
    cr_assert_eq(inf_factory_get(fac, &WIDGETS, NULL, &inf), KC_OK);
    hrec h = {.mu = PTHREAD_MUTEX_INITIALIZER, .delay_ms = 100};
    inf_handler_fns f = fns_of(&h);
    cr_assert_eq(inf_add_handler(inf, &f, NULL), KC_OK);
    cr_assert_eq(inf_factory_start(fac), KC_OK);
    /* The store has all 11 objects long before the handler (1.1 s of work) is done. */
    double until = pv_clock_monotonic() + 5;
    while (store_len(inf_store(inf)) < 11 && pv_clock_monotonic() < until)
        sleep_ms(5);
    cr_assert_eq(store_len(inf_store(inf)), 11);
    cr_assert_lt(hrec_get(&h, &h.adds), 8, "adds so far: %d", hrec_get(&h, &h.adds));
    inf_stats s;
    inf_stats_get(inf, &s);
    cr_assert_geq(s.pending_high_water, 3);
    cr_assert(inf_wait_idle(inf, 5));
    cr_assert_eq(h.adds, 11);
    /* In order: the list's object first, then the watch's in stream order. */
    cr_assert_str_eq(h.names[0], "+a");
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof(name), "+n%d", i);
        cr_assert_str_eq(h.names[i + 1], name);
    }
}

static int index_by_size(json_object *o, store_values *out, void *user)
{
    (void)user;
    json_object *spec, *size;
    if (json_object_object_get_ex(o, "spec", &spec) &&
        json_object_object_get_ex(spec, "size", &size))
        return store_values_add(out, json_object_get_string(size));
    return 0;
}

Test(informer, custom_index_before_start_and_compact_store)
{
    char *items = fmt("%s,%s,%s", obj("a", "1"), obj("bb", "2"), obj("cc", "3"));
    push_page("100", NULL, items);
    push_idle_watches();
    new_factory(0);
    inf_informer *inf = NULL;
    inf_opts io = {.store_mode = INF_STORE_COMPACT};
    cr_assert_eq(inf_factory_get(fac, &WIDGETS, &io, &inf), KC_OK);
    cr_assert_eq(inf_add_index(inf, "size", index_by_size, NULL), KC_OK);
    cr_assert_eq(inf_factory_start(fac), KC_OK);
    cr_assert_eq(inf_add_index(inf, "late", index_by_size, NULL), KC_ERR_INVALID_ARG);
    cr_assert(inf_wait_for_sync(inf, 5));
    char **keys = NULL;
    size_t n = 0;
    cr_assert_eq(store_index_keys(inf_store(inf), "size", "2", &keys, &n), KC_OK);
    cr_assert_eq(n, 2);
    store_keys_free(keys, n);
    free(items);
}

Test(informer, an_update_decodes_the_old_object_only_while_a_handler_reads_it)
{
    push_page("100", NULL, obj("a", "1"));
    char *e1 = ev("MODIFIED", obj("a", "101")), *e2 = ev("MODIFIED", obj("a", "102"));
    char *evs = fmt("%s%s", e1, e2);
    push_watch(evs, true, 400); /* the second event after the second handler */
    push_idle_watches();
    new_factory(0);
    inf_informer *inf = NULL;
    inf_opts io = {.store_mode = INF_STORE_COMPACT};
    cr_assert_eq(inf_factory_get(fac, &WIDGETS, &io, &inf), KC_OK);
    hrec blind = {.mu = PTHREAD_MUTEX_INITIALIZER}, reads = {.mu = PTHREAD_MUTEX_INITIALIZER};
    inf_handler_fns fb = fns_of(&blind), fr = fns_of(&reads);
    fb.old_unused = true;
    cr_assert_eq(inf_add_handler(inf, &fb, NULL), KC_OK);
    cr_assert_eq(inf_factory_start(fac), KC_OK);
    cr_assert(hrec_wait(&blind, &blind.updates, 1, 5000));
    /* Only a handler that never reads old: the old object was not decoded. */
    cr_assert_eq(hrec_get(&blind, &blind.null_old_updates), 1);
    cr_assert_eq(inf_add_handler(inf, &fr, NULL), KC_OK);
    cr_assert(hrec_wait(&reads, &reads.updates, 1, 5000));
    cr_assert(hrec_wait(&blind, &blind.updates, 2, 5000));
    /* With one that does, both get it: the version the update replaced. */
    cr_assert_eq(hrec_get(&reads, &reads.null_old_updates), 0);
    cr_assert_str_eq(reads.old_rv, "101");
    cr_assert_eq(hrec_get(&blind, &blind.null_old_updates), 1);
    cr_assert_str_eq(blind.old_rv, "101");
    json_object *cur = NULL;
    cr_assert_eq(store_get(inf_store(inf), "ns/a", &cur), KC_OK);
    cr_assert_str_eq(md_str(cur, "resourceVersion"), "102");
    store_obj_put(cur);
    free(e1);
    free(e2);
    free(evs);
}

Test(informer, removed_handler_gets_nothing_more)
{
    push_page("100", NULL, obj("a", "1"));
    char *e1 = ev("ADDED", obj("b", "101"));
    rs_response late = {.method = "GET",
                        .path_prefix = WATCH_PATH,
                        .body = e1,
                        .hold = true,
                        .delay_ms = 300}; /* after the removal */
    rs_push(srv, &late);
    new_factory(0);
    inf_informer *inf = NULL;
    cr_assert_eq(inf_factory_get(fac, &WIDGETS, NULL, &inf), KC_OK);
    hrec h = {.mu = PTHREAD_MUTEX_INITIALIZER}, keep = {.mu = PTHREAD_MUTEX_INITIALIZER};
    inf_handler_fns f = fns_of(&h), fk = fns_of(&keep);
    inf_handler *reg = NULL;
    cr_assert_eq(inf_add_handler(inf, &f, &reg), KC_OK);
    cr_assert_eq(inf_add_handler(inf, &fk, NULL), KC_OK);
    cr_assert_eq(inf_factory_start(fac), KC_OK);
    cr_assert(hrec_wait(&h, &h.adds, 1, 5000));
    inf_remove_handler(inf, reg);
    cr_assert(hrec_wait(&keep, &keep.adds, 2, 5000));
    cr_assert(inf_wait_idle(inf, 5));
    cr_assert_eq(hrec_get(&h, &h.adds), 1);
    inf_stats s;
    inf_stats_get(inf, &s);
    cr_assert_eq(s.handlers, 1);
    free(e1);
}

Test(informer, stop_is_prompt_and_final)
{
    push_page("100", NULL, obj("a", "1"));
    push_idle_watches();
    new_factory(0);
    inf_informer *inf = NULL;
    cr_assert_eq(inf_factory_get(fac, &WIDGETS, NULL, &inf), KC_OK);
    cr_assert_eq(inf_factory_start(fac), KC_OK);
    cr_assert(inf_factory_wait_for_sync(fac, 5));
    cr_assert(wait_requests_with(WATCH_PATH, 1, 5000));
    double t0 = pv_clock_monotonic();
    inf_factory_stop(fac);
    cr_assert_lt(pv_clock_monotonic() - t0, 0.5);
    cr_assert_eq(inf_factory_start(fac), KC_ERR_STOPPED);
    /* The cache stays readable after stop. */
    cr_assert_eq(store_len(inf_store(inf)), 1);
}

/* ---- page lock ------------------------------------------------------------------ */

/*
 * The transform runs while a list page is applied. On its first call it
 * waits (up to wait_ms) for a second list request to reach the server and
 * records whether one came; it also tracks how many pages are applied at
 * once.
 */
static int pl_wait_ms;
static int pl_calls, pl_in_page, pl_max_in_page;
static bool pl_second_list_seen;

static void pl_transform(json_object *o, void *user)
{
    (void)o;
    (void)user;
    int n = __atomic_add_fetch(&pl_in_page, 1, __ATOMIC_SEQ_CST);
    int m = __atomic_load_n(&pl_max_in_page, __ATOMIC_SEQ_CST);
    while (n > m && !__atomic_compare_exchange_n(&pl_max_in_page, &m, n, false, __ATOMIC_SEQ_CST,
                                                 __ATOMIC_SEQ_CST))
        ;
    if (__atomic_add_fetch(&pl_calls, 1, __ATOMIC_SEQ_CST) == 1) {
        double t0 = pv_clock_monotonic();
        while (count_requests(LIST_PATH) < 2 && pv_clock_monotonic() - t0 < pl_wait_ms / 1000.0)
            sleep_ms(5);
        __atomic_store_n(&pl_second_list_seen, count_requests(LIST_PATH) >= 2, __ATOMIC_SEQ_CST);
    }
    sleep_ms(1);
    __atomic_sub_fetch(&pl_in_page, 1, __ATOMIC_SEQ_CST);
}

/* Two reflectors of the same list (one page of 20 each), with or without a
 * shared page lock; both must end with the 20 objects. */
static void run_two_reflectors(pthread_mutex_t *page_lock, int wait_ms)
{
    pl_wait_ms = wait_ms;
    pl_calls = pl_in_page = pl_max_in_page = 0;
    pl_second_list_seen = false;
    char items[20 * 300] = "";
    for (int i = 0; i < 20; i++) {
        char name[16];
        snprintf(name, sizeof(name), "w%d", i);
        if (i > 0)
            strcat(items, ",");
        strcat(items, obj(name, "5"));
    }
    push_page("100", NULL, items);
    push_page("100", NULL, items);
    push_idle_watches();
    store *st2 = NULL;
    refl *rf2 = NULL;
    cr_assert_eq(store_new(NULL, &st2), KC_OK);
    refl_opts o = base_opts();
    o.on_event = NULL; /* two reflectors: the recorder is for one */
    o.on_synced = NULL;
    o.transform = pl_transform;
    o.page_lock = page_lock;
    cr_assert_eq(refl_new(cli, st, &o, &rf), KC_OK);
    cr_assert_eq(refl_new(cli, st2, &o, &rf2), KC_OK);
    cr_assert_eq(refl_start(rf), KC_OK);
    cr_assert_eq(refl_start(rf2), KC_OK);
    double t0 = pv_clock_monotonic();
    while (!(refl_has_synced(rf) && refl_has_synced(rf2)) && pv_clock_monotonic() - t0 < 10)
        sleep_ms(5);
    cr_assert(refl_has_synced(rf) && refl_has_synced(rf2), "both lists done");
    cr_assert_eq(store_len(st), 20);
    cr_assert_eq(store_len(st2), 20);
    refl_free(rf2);
    store_free(st2);
}

Test(reflector, shared_page_lock_lets_one_list_page_at_a_time)
{
    pthread_mutex_t page_lock = PTHREAD_MUTEX_INITIALIZER;
    run_two_reflectors(&page_lock, 300);
    cr_assert_not(pl_second_list_seen,
                  "the second reflector requested its page while the first was applied");
    cr_assert_eq(pl_max_in_page, 1);
    cr_assert_eq(pl_calls, 40);
}

/* The control: without the lock the same probe sees the second list
 * request arrive while the first page is applied. */
Test(reflector, without_page_lock_lists_run_side_by_side)
{
    run_two_reflectors(NULL, 5000);
    cr_assert(pl_second_list_seen, "no second list request while the first page was applied");
    cr_assert_eq(pl_calls, 40);
}
