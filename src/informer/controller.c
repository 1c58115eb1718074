/*
 * ctl - the controller runtime (see controller.h).
 *
 * A controller has watches (one informer handler each) that turn events
 * into keys, and, while started, a "generation": one work queue plus the
 * worker threads that drain it. Stopping shuts that queue down (wq_get
 * returns KC_ERR_STOPPED at once, waiting and delayed keys are dropped),
 * joins the workers and frees the queue; starting creates a fresh queue,
 * enqueues every key of the For informer's cache and starts new workers. A
 * queue cannot be restarted after wq_shutdown, hence one per generation.
 *
 * Workers start on demand, up to max_concurrent_reconciles: a generation
 * starts one, and whenever a key is added or taken while keys wait and no
 * worker is idle, one more (gen_grow). A controller that never has two keys
 * at once keeps one thread; a thread a C process keeps costs some 10 KB of
 * touched stack (controller-runtime's goroutines are cheaper, so it starts
 * all its workers at once). Workers do not exit before the generation ends.
 *
 * Invariants:
 *   - handlers reach the current queue only through `q` under `qmu`; it is
 *     NULL while stopped (keys are then dropped: the next start re-enqueues
 *     the whole cache, which covers them);
 *   - a worker uses only its own generation's queue, so a late
 *     wq_add_after / wq_add_rate_limited from a reconcile that was running
 *     during ctl_stop lands in a shut-down queue and is a no-op;
 *   - start and stop are serialised by `life_mu`; nothing else is held
 *     while workers are joined except life_mu, which handlers never take.
 */
#include "controller.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "pv_strbuf.h"
#include "pv_clock.h"

/* A year: longer delays (or an infinity) are clamped. */
#define MAX_REQUEUE_AFTER (365.0 * 86400.0)

typedef enum watch_kind { W_FOR, W_OWNS, W_MAP } watch_kind;

typedef struct ctl_watch {
    ctl *c;
    watch_kind kind;
    inf_informer *inf;
    inf_handler *h;
    char *group; /* W_OWNS: owner group ("" = core) */
    char *kind_name;
    bool cluster_scoped;
    ctl_map_fn fn;    /* W_MAP */
    ctl_pred_fn pred; /* W_FOR: NULL = every event */
    void *user;       /* fn's or pred's */
    struct ctl_watch *next;
} ctl_watch;

typedef struct ctl_gen ctl_gen;

typedef struct ctl_worker {
    ctl_gen *g;
    int idx;
    pthread_t thread;
    bool started;
} ctl_worker;

struct ctl_gen {
    ctl *c;
    wq *q;
    atomic_bool stopping;
    int n;
    ctl_worker *workers;
    pthread_mutex_t grow_mu; /* started, workers[].started while growing */
    int started;             /* workers started: workers[0..started) */
    atomic_int idle;         /* workers waiting in wq_get */
};

static bool gen_grow(ctl_gen *g);

struct ctl_keys {
    char **v;
    size_t n, cap;
};

struct ctl {
    char *name;
    ctl_opts o;
    ctl_reconcile_fn fn;
    void *user;

    pthread_mutex_t mu; /* watches, for_inf, start_keys */
    ctl_watch *watches;
    inf_informer *for_inf;
    ctl_keys start_keys; /* queued at every start (ctl_enqueue_on_start) */

    pthread_mutex_t life_mu; /* serialises start/stop */
    pthread_mutex_t qmu;     /* q and gen, for handlers and stats */
    wq *q;
    ctl_gen *gen;

    _Atomic uint64_t n_success, n_error, n_requeue, n_requeue_after;
    /* Queue counters of the generations that ended (under qmu), so the
     * totals reported never go down across a stop/start. */
    uint64_t adds_before, retries_before;
    atomic_int active, max_active;
};

/* ---- results ------------------------------------------------------------------ */

ctl_result ctl_error(int code, const char *fmt, ...)
{
    ctl_result r = {CTL_ERROR, 0, code, NULL};
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        if (pv_vasprintf(&r.message, fmt, ap) < 0)
            r.message = NULL;
        va_end(ap);
    }
    return r;
}

bool ctl_ctx_stopping(const ctl_ctx *ctx)
{
    const ctl_gen *g = ctx != NULL ? ctx->priv_ : NULL;
    return g == NULL || atomic_load(&g->stopping);
}

/* ---- keys ---------------------------------------------------------------------- */

static char *make_key(const char *ns, const char *name)
{
    if (name == NULL || name[0] == '\0')
        return NULL;
    size_t nl = ns != NULL ? strlen(ns) : 0, ml = strlen(name);
    char *k = malloc(nl + (nl ? 1 : 0) + ml + 1);
    if (k == NULL)
        return NULL;
    char *p = k;
    if (nl) {
        memcpy(p, ns, nl);
        p += nl;
        *p++ = '/';
    }
    memcpy(p, name, ml + 1);
    return k;
}

int ctl_keys_add(ctl_keys *k, const char *namespace_, const char *name)
{
    if (k == NULL || name == NULL || name[0] == '\0')
        return KC_ERR_INVALID_ARG;
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 4;
        char **nv = realloc(k->v, cap * sizeof(*nv));
        if (nv == NULL)
            return KC_ERR_NOMEM;
        k->v = nv;
        k->cap = cap;
    }
    char *key = make_key(namespace_, name);
    if (key == NULL)
        return KC_ERR_NOMEM;
    k->v[k->n++] = key;
    return KC_OK;
}

static void keys_free(ctl_keys *k)
{
    for (size_t i = 0; i < k->n; i++)
        free(k->v[i]);
    free(k->v);
    memset(k, 0, sizeof(*k));
}

/* Add key to the current queue (dropped while stopped). */
static int add_key(ctl *c, const char *key)
{
    int rc = KC_OK;
    pthread_mutex_lock(&c->qmu);
    if (c->q != NULL)
        rc = wq_add(c->q, key);
    if (rc == KC_OK && c->gen != NULL)
        (void)gen_grow(c->gen); /* a key waits and every worker is busy */
    pthread_mutex_unlock(&c->qmu);
    return rc;
}

static const char *str_of(json_object *o, const char *field)
{
    json_object *v;
    if (!json_object_object_get_ex(o, field, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

/* The group part of an apiVersion ("g/v" -> "g", "v1" -> ""): length only. */
static size_t group_len(const char *api_version)
{
    const char *slash = strchr(api_version, '/');
    return slash != NULL ? (size_t)(slash - api_version) : 0;
}

/* Enqueue the controller owner of obj matching w's owner. */
static void enqueue_owner(ctl_watch *w, json_object *obj)
{
    json_object *md, *refs;
    if (!json_object_object_get_ex(obj, "metadata", &md) ||
        !json_object_object_get_ex(md, "ownerReferences", &refs) ||
        !json_object_is_type(refs, json_type_array))
        return;
    size_t n = json_object_array_length(refs);
    for (size_t i = 0; i < n; i++) {
        json_object *ref = json_object_array_get_idx(refs, i), *ctrl;
        if (ref == NULL || !json_object_object_get_ex(ref, "controller", &ctrl) ||
            !json_object_is_type(ctrl, json_type_boolean) || !json_object_get_boolean(ctrl))
            continue;
        const char *api = str_of(ref, "apiVersion"), *kind = str_of(ref, "kind");
        const char *name = str_of(ref, "name");
        if (api == NULL || kind == NULL || name == NULL || strcmp(kind, w->kind_name) != 0)
            continue;
        size_t gl = group_len(api);
        if (gl != strlen(w->group) || strncmp(api, w->group, gl) != 0)
            continue;
        const char *ns = w->cluster_scoped ? NULL : str_of(md, "namespace");
        char *key = make_key(ns, name);
        if (key != NULL)
            (void)add_key(w->c, key);
        free(key);
        return; /* at most one controller reference */
    }
}

static void enqueue_for(ctl_watch *w, json_object *obj)
{
    switch (w->kind) {
    case W_FOR: {
        if (w->pred != NULL && !w->pred(obj, w->user))
            break;
        char *key = NULL;
        if (store_key_of(obj, &key) == KC_OK)
            (void)add_key(w->c, key);
        free(key);
        break;
    }
    case W_OWNS:
        enqueue_owner(w, obj);
        break;
    case W_MAP: {
        ctl_keys k = {0};
        if (w->fn(obj, &k, w->user) == 0)
            for (size_t i = 0; i < k.n; i++)
                (void)add_key(w->c, k.v[i]);
        keys_free(&k);
        break;
    }
    }
}

static void h_add(json_object *obj, void *user)
{
    enqueue_for(user, obj);
}

static void h_update(json_object *old_obj, json_object *new_obj, void *user)
{
    ctl_watch *w = user;
    /* A primary keeps its key; owners and mappings may differ between the two. */
    if (w->kind != W_FOR && old_obj != new_obj)
        enqueue_for(w, old_obj);
    enqueue_for(w, new_obj);
}

static void h_delete(json_object *obj, void *user)
{
    enqueue_for(user, obj);
}

/* ---- watches --------------------------------------------------------------------- */

static void watch_free(ctl_watch *w)
{
    if (w == NULL)
        return;
    free(w->group);
    free(w->kind_name);
    free(w);
}

static int add_watch(ctl *c, ctl_watch *w)
{
    pthread_mutex_lock(&c->mu);
    w->next = c->watches;
    c->watches = w;
    pthread_mutex_unlock(&c->mu);
    /* A primary's update enqueues its own key: the old object is not read. */
    inf_handler_fns fns = {.on_add = h_add,
                           .on_update = h_update,
                           .on_delete = h_delete,
                           .user = w,
                           .old_unused = w->kind == W_FOR};
    int rc = inf_add_handler(w->inf, &fns, &w->h);
    if (rc != KC_OK) {
        pthread_mutex_lock(&c->mu);
        for (ctl_watch **pp = &c->watches; *pp != NULL; pp = &(*pp)->next) {
            if (*pp == w) {
                *pp = w->next;
                break;
            }
        }
        if (c->for_inf == w->inf && w->kind == W_FOR)
            c->for_inf = NULL;
        pthread_mutex_unlock(&c->mu);
        watch_free(w);
    }
    return rc;
}

int ctl_watch_for(ctl *c, inf_informer *inf)
{
    return ctl_watch_for_if(c, inf, NULL, NULL);
}

int ctl_watch_for_if(ctl *c, inf_informer *inf, ctl_pred_fn pred, void *user)
{
    if (c == NULL || inf == NULL)
        return KC_ERR_INVALID_ARG;
    pthread_mutex_lock(&c->mu);
    if (c->for_inf != NULL) {
        pthread_mutex_unlock(&c->mu);
        return KC_ERR_INVALID_ARG;
    }
    c->for_inf = inf;
    pthread_mutex_unlock(&c->mu);
    ctl_watch *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        pthread_mutex_lock(&c->mu);
        c->for_inf = NULL;
        pthread_mutex_unlock(&c->mu);
        return KC_ERR_NOMEM;
    }
    w->c = c;
    w->kind = W_FOR;
    w->inf = inf;
    w->pred = pred;
    w->user = user;
    return add_watch(c, w);
}

int ctl_watch_owns(ctl *c, inf_informer *inf, const ctl_owner *owner)
{
    if (c == NULL || inf == NULL || owner == NULL || owner->kind == NULL || owner->kind[0] == '\0')
        return KC_ERR_INVALID_ARG;
    const char *group = owner->group;
    if (group == NULL) {
        pthread_mutex_lock(&c->mu);
        const kc_ref *r = c->for_inf != NULL ? inf_ref(c->for_inf) : NULL;
        group = r != NULL ? (r->group != NULL ? r->group : "") : NULL;
        pthread_mutex_unlock(&c->mu);
        if (group == NULL)
            return KC_ERR_INVALID_ARG; /* no For informer to take the group from */
    }
    ctl_watch *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return KC_ERR_NOMEM;
    w->c = c;
    w->kind = W_OWNS;
    w->inf = inf;
    w->group = strdup(group);
    w->kind_name = strdup(owner->kind);
    w->cluster_scoped = owner->cluster_scoped;
    if (w->group == NULL || w->kind_name == NULL) {
        watch_free(w);
        return KC_ERR_NOMEM;
    }
    return add_watch(c, w);
}

int ctl_watch_map(ctl *c, inf_informer *inf, ctl_map_fn fn, void *user)
{
    if (c == NULL || inf == NULL || fn == NULL)
        return KC_ERR_INVALID_ARG;
    ctl_watch *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return KC_ERR_NOMEM;
    w->c = c;
    w->kind = W_MAP;
    w->inf = inf;
    w->fn = fn;
    w->user = user;
    return add_watch(c, w);
}

bool ctl_wait_for_sync(ctl *c, double timeout)
{
    if (c == NULL)
        return false;
    double deadline = pv_clock_monotonic() + timeout;
    for (;;) {
        bool all = true;
        pthread_mutex_lock(&c->mu);
        for (ctl_watch *w = c->watches; w != NULL && all; w = w->next)
            all = inf_has_synced(w->inf) && inf_handler_has_synced(w->h);
        pthread_mutex_unlock(&c->mu);
        if (all)
            return true;
        if (timeout >= 0 && pv_clock_monotonic() >= deadline)
            return false;
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* ---- workers ----------------------------------------------------------------------- */

static void reconcile_id(uint64_t *rng, char out[17])
{
    /* splitmix64 over a seed from getrandom */
    uint64_t z = (*rng += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    static const char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--) {
        out[i] = hex[z & 0xF];
        z >>= 4;
    }
    out[16] = '\0';
}

/* An error that says the API server could not answer now (unreachable,
 * restarting, throttling), nothing about the key. */
static bool error_is_transient(ctl_result res)
{
    return res.outcome == CTL_ERROR &&
           (res.error == KC_ERR_TRANSPORT || res.error == KC_ERR_TIMEOUT ||
            res.error == KC_ERR_TOO_MANY_REQUESTS || res.error == KC_ERR_SERVICE_UNAVAILABLE ||
            res.error == KC_ERR_SERVER_TIMEOUT);
}

static void report_error(ctl *c, const ctl_ctx *ctx, int code, const char *message)
{
    if (c->o.hooks.reconcile_error != NULL) {
        c->o.hooks.reconcile_error(ctx, code, message, c->o.hooks.user);
        return;
    }
    fprintf(stderr, "provisio: controller %s: reconcile %s (reconcileID %s) failed: %s (%d)\n",
            c->name, ctx->key, ctx->reconcile_id, message != NULL ? message : kc_strerror(code),
            code);
}

static void process(ctl_gen *g, int idx, const char *key, uint64_t *rng)
{
    ctl *c = g->c;
    char *copy = strdup(key);
    if (copy == NULL) {
        (void)wq_add_rate_limited(g->q, key, NULL); /* try again later */
        return;
    }
    const char *ns = "", *name = copy;
    char *slash = strchr(copy, '/');
    if (slash != NULL) {
        *slash = '\0';
        ns = copy;
        name = slash + 1;
    }
    char id[17];
    reconcile_id(rng, id);
    ctl_ctx ctx = {
        .controller = c->name, .reconcile_id = id, .key = key, .worker = idx, .c = c, .priv_ = g};

    int now_active = atomic_fetch_add(&c->active, 1) + 1;
    int seen = atomic_load(&c->max_active);
    while (now_active > seen && !atomic_compare_exchange_weak(&c->max_active, &seen, now_active))
        ;
    double t0 = pv_clock_monotonic();
    ctl_result res = c->fn(&ctx, ns, name, c->user);
    double took = pv_clock_monotonic() - t0;
    atomic_fetch_sub(&c->active, 1);

    if (res.outcome == CTL_REQUEUE_AFTER && !(res.after > 0))
        res.outcome = CTL_REQUEUE; /* no delay: a rate-limited requeue */
    if (res.outcome == CTL_REQUEUE_AFTER && res.after > MAX_REQUEUE_AFTER)
        res.after = MAX_REQUEUE_AFTER;
    const char *label;
    switch (res.outcome) {
    case CTL_DONE:
        wq_forget(g->q, key);
        atomic_fetch_add(&c->n_success, 1);
        label = "success";
        break;
    case CTL_REQUEUE_AFTER:
        wq_forget(g->q, key);
        (void)wq_add_after(g->q, key, res.after);
        atomic_fetch_add(&c->n_requeue_after, 1);
        label = "requeue_after";
        break;
    case CTL_REQUEUE:
        (void)wq_add_rate_limited(g->q, key, NULL);
        atomic_fetch_add(&c->n_requeue, 1);
        label = "requeue";
        break;
    case CTL_ERROR:
    default:
        if (res.outcome != CTL_ERROR)
            report_error(c, &ctx, KC_ERR_INVALID_ARG, "reconcile returned an unknown outcome");
        else
            report_error(c, &ctx, res.error, res.message);
        (void)wq_add_rate_limited_cap(g->q, key,
                                      error_is_transient(res) ? CTL_TRANSIENT_MAX_DELAY : 0, NULL);
        atomic_fetch_add(&c->n_error, 1);
        label = "error";
        break;
    }
    free(res.message);
    if (c->o.hooks.reconcile_done != NULL)
        c->o.hooks.reconcile_done(c->name, label, took, c->o.hooks.user);
    free(copy);
}

static void *worker_main(void *arg);

/* Start worker g->started (grow_mu held); it counts as idle from now, so
 * a key added before the thread runs does not start another. */
static bool start_worker(ctl_gen *g)
{
    if (g->started >= g->n)
        return true; /* all started (a handler's gen_grow may have come first) */
    ctl_worker *wk = &g->workers[g->started];
    wk->g = g;
    wk->idx = g->started;
    atomic_fetch_add(&g->idle, 1);
    if (pthread_create(&wk->thread, NULL, worker_main, wk) != 0) {
        atomic_fetch_sub(&g->idle, 1);
        return false;
    }
    wk->started = true;
    g->started++;
    return true;
}

/* Start one more worker if keys wait, none is idle and g has room; false
 * only when a thread could not be created. */
static bool gen_grow(ctl_gen *g)
{
    if (atomic_load(&g->idle) > 0 || atomic_load(&g->stopping))
        return true;
    bool ok = true;
    pthread_mutex_lock(&g->grow_mu);
    if (!atomic_load(&g->stopping) && g->started < g->n && atomic_load(&g->idle) == 0 &&
        wq_len(g->q) > 0)
        ok = start_worker(g);
    pthread_mutex_unlock(&g->grow_mu);
    return ok;
}

static void *worker_main(void *arg)
{
    ctl_worker *wk = arg;
    ctl_gen *g = wk->g;
    uint64_t rng;
    if (getrandom(&rng, sizeof(rng), GRND_NONBLOCK) != (ssize_t)sizeof(rng))
        rng = (uint64_t)(uintptr_t)wk ^ (uint64_t)(pv_clock_monotonic() * 1e9);
    const char *key;
    for (;;) { /* idle from its creation (start_worker) until it has a key */
        int rc = wq_get(g->q, &key);
        atomic_fetch_sub(&g->idle, 1);
        if (rc != KC_OK)
            break;
        (void)gen_grow(g); /* more keys wait: another worker (none may be possible) */
        process(g, wk->idx, key, &rng);
        wq_done(g->q, key);
        atomic_fetch_add(&g->idle, 1);
    }
    return NULL;
}

static void wq_observe_tramp(const char *metric, double seconds, void *user)
{
    ctl *c = user;
    if (c->o.hooks.workqueue_observe != NULL)
        c->o.hooks.workqueue_observe(c->name, metric, seconds, c->o.hooks.user);
}

/* Shut g down and free it (life_mu held; g no longer reachable by handlers). */
static void gen_end(ctl_gen *g)
{
    atomic_store(&g->stopping, true);
    wq_shutdown(g->q);
    /* A gen_grow that saw stopping false finishes before this reads started. */
    pthread_mutex_lock(&g->grow_mu);
    int started = g->started;
    pthread_mutex_unlock(&g->grow_mu);
    for (int i = 0; i < started; i++)
        if (g->workers[i].started)
            pthread_join(g->workers[i].thread, NULL);
    wq_stats qs;
    wq_stats_get(g->q, &qs);
    pthread_mutex_lock(&g->c->qmu);
    g->c->adds_before += qs.adds_total;
    g->c->retries_before += qs.retries_total;
    pthread_mutex_unlock(&g->c->qmu);
    wq_free(g->q);
    pthread_mutex_destroy(&g->grow_mu);
    free(g->workers);
    free(g);
}

int ctl_start(ctl *c)
{
    if (c == NULL)
        return KC_ERR_INVALID_ARG;
    pthread_mutex_lock(&c->life_mu);
    if (c->gen != NULL) {
        pthread_mutex_unlock(&c->life_mu);
        return KC_OK;
    }
    int n = c->o.max_concurrent_reconciles;
    ctl_gen *g = calloc(1, sizeof(*g));
    ctl_worker *ws = calloc((size_t)n, sizeof(*ws));
    wq_opts qo = c->o.queue;
    qo.observe = wq_observe_tramp;
    qo.observe_user = c;
    int rc = g != NULL && ws != NULL ? wq_new(&qo, &g->q) : KC_ERR_NOMEM;
    if (rc != KC_OK) {
        free(ws);
        free(g);
        pthread_mutex_unlock(&c->life_mu);
        return rc;
    }
    g->c = c;
    g->n = n;
    g->workers = ws;
    atomic_init(&g->stopping, false);
    atomic_init(&g->idle, 0);
    pthread_mutex_init(&g->grow_mu, NULL);

    pthread_mutex_lock(&c->qmu);
    c->q = g->q;
    c->gen = g;
    pthread_mutex_unlock(&c->qmu);

    /* Everything cached is reconciled again (events from now on are queued
     * too, so nothing falls between the list and the handlers). */
    pthread_mutex_lock(&c->mu);
    inf_informer *primary = c->for_inf;
    for (size_t i = 0; rc == KC_OK && i < c->start_keys.n; i++)
        rc = wq_add(g->q, c->start_keys.v[i]);
    pthread_mutex_unlock(&c->mu);
    if (primary != NULL && rc == KC_OK) {
        char **keys = NULL;
        size_t nk = 0;
        rc = store_list_keys(inf_store(primary), &keys, &nk);
        for (size_t i = 0; rc == KC_OK && i < nk; i++)
            rc = wq_add(g->q, keys[i]);
        store_keys_free(keys, nk);
    }
    /* The first worker, unless a handler's key started it already (the gen
     * is reachable since it was published above); it starts the next while
     * keys wait (gen_grow). */
    if (rc == KC_OK && n > 0) {
        pthread_mutex_lock(&g->grow_mu);
        if (g->started == 0 && !start_worker(g))
            rc = KC_ERR_NOMEM;
        pthread_mutex_unlock(&g->grow_mu);
    }
    if (rc != KC_OK) {
        pthread_mutex_lock(&c->qmu);
        c->q = NULL;
        c->gen = NULL;
        pthread_mutex_unlock(&c->qmu);
        gen_end(g);
    }
    pthread_mutex_unlock(&c->life_mu);
    return rc;
}

void ctl_stop(ctl *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->life_mu);
    pthread_mutex_lock(&c->qmu);
    ctl_gen *g = c->gen;
    c->q = NULL;
    c->gen = NULL;
    pthread_mutex_unlock(&c->qmu);
    if (g != NULL)
        gen_end(g);
    pthread_mutex_unlock(&c->life_mu);
}

bool ctl_running(ctl *c)
{
    if (c == NULL)
        return false;
    pthread_mutex_lock(&c->qmu);
    bool running = c->gen != NULL;
    pthread_mutex_unlock(&c->qmu);
    return running;
}

int ctl_enqueue(ctl *c, const char *namespace_, const char *name)
{
    if (c == NULL || name == NULL || name[0] == '\0')
        return KC_ERR_INVALID_ARG;
    char *key = make_key(namespace_, name);
    if (key == NULL)
        return KC_ERR_NOMEM;
    int rc = add_key(c, key);
    free(key);
    return rc;
}

int ctl_enqueue_on_start(ctl *c, const char *namespace_, const char *name)
{
    if (c == NULL || name == NULL || name[0] == '\0')
        return KC_ERR_INVALID_ARG;
    pthread_mutex_lock(&c->mu);
    int rc = ctl_keys_add(&c->start_keys, namespace_, name);
    pthread_mutex_unlock(&c->mu);
    if (rc == KC_OK)
        rc = ctl_enqueue(c, namespace_, name); /* already running: now too */
    return rc;
}

const char *ctl_name(ctl *c)
{
    return c != NULL ? c->name : NULL;
}

void ctl_stats_get(ctl *c, ctl_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (c == NULL)
        return;
    out->reconcile_success = atomic_load(&c->n_success);
    out->reconcile_error = atomic_load(&c->n_error);
    out->reconcile_requeue = atomic_load(&c->n_requeue);
    out->reconcile_requeue_after = atomic_load(&c->n_requeue_after);
    out->reconcile_errors_total = out->reconcile_error;
    out->active_workers = atomic_load(&c->active);
    out->max_active_workers = atomic_load(&c->max_active);
    out->max_concurrent_reconciles = c->o.max_concurrent_reconciles;
    pthread_mutex_lock(&c->qmu);
    out->running = c->gen != NULL;
    if (c->q != NULL)
        wq_stats_get(c->q, &out->queue);
    if (c->gen != NULL) {
        pthread_mutex_lock(&c->gen->grow_mu);
        out->worker_threads = c->gen->started;
        out->idle_workers = atomic_load(&c->gen->idle);
        pthread_mutex_unlock(&c->gen->grow_mu);
    }
    out->queue.adds_total += c->adds_before;
    out->queue.retries_total += c->retries_before;
    pthread_mutex_unlock(&c->qmu);
}

/* ---- lifecycle ------------------------------------------------------------------------ */

int ctl_new(const char *name, const ctl_opts *opts, ctl_reconcile_fn fn, void *user, ctl **out)
{
    if (out != NULL)
        *out = NULL;
    if (name == NULL || name[0] == '\0' || fn == NULL || out == NULL ||
        (opts != NULL && opts->max_concurrent_reconciles < 0))
        return KC_ERR_INVALID_ARG;
    ctl *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return KC_ERR_NOMEM;
    c->name = strdup(name);
    if (c->name == NULL) {
        free(c);
        return KC_ERR_NOMEM;
    }
    if (opts != NULL)
        c->o = *opts;
    if (c->o.max_concurrent_reconciles == 0)
        c->o.max_concurrent_reconciles = 1;
    c->fn = fn;
    c->user = user;
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->life_mu, NULL);
    pthread_mutex_init(&c->qmu, NULL);
    atomic_init(&c->active, 0);
    atomic_init(&c->max_active, 0);
    *out = c;
    return KC_OK;
}

void ctl_free(ctl *c)
{
    if (c == NULL)
        return;
    ctl_stop(c);
    /* Unregister first: once inf_remove_handler returns, no handler of ours runs. */
    for (ctl_watch *w = c->watches; w != NULL; w = w->next)
        inf_remove_handler(w->inf, w->h);
    for (ctl_watch *w = c->watches; w != NULL;) {
        ctl_watch *next = w->next;
        watch_free(w);
        w = next;
    }
    keys_free(&c->start_keys);
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->life_mu);
    pthread_mutex_destroy(&c->qmu);
    free(c->name);
    free(c);
}
