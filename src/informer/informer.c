/*
 * inf - shared informers and their factory (see informer.h).
 *
 * Three threads touch an informer:
 *   - the reflector thread writes the store and, under `deliver_mu` (the
 *     reflector's write_lock), appends a notification per change to the
 *     FIFO (`ring`, under `mu`);
 *   - the dispatch thread pops notifications and calls the handlers with
 *     `mu` released; it also runs the periodic resync;
 *   - any thread registers handlers: under `deliver_mu` (so the reflector
 *     cannot write meanwhile) it lists the store and, under `mu`, queues the
 *     synthetic adds for that handler alone and records the sequence number
 *     from which it receives broadcast notifications.
 *
 * Invariants:
 *   - every broadcast notification has a sequence number, increasing in
 *     FIFO order; a handler receives the broadcasts numbered from its
 *     from_seq on, and the notifications targeted at it. Since registration
 *     holds deliver_mu, the store it lists is exactly the state after the
 *     last broadcast before from_seq: no change is lost or doubled;
 *   - objects in the FIFO are references it owns (released with
 *     store_obj_put after delivery, or when dropped at stop); a resync entry
 *     holds only the object's key (malloc'd): the object is read from the
 *     store when the entry is delivered and used as both old and new, so a
 *     resync of N cached objects never holds N decoded objects at once
 *     (in STORE_COMPACT mode each read is a private parse, ~10x the size of
 *     the cached text); a key deleted meanwhile is skipped;
 *   - handlers are never freed while the informer lives (a removed handler
 *     is only flagged and unlinked), so the dispatch thread's snapshot of
 *     the handler list never dangles;
 *   - lock order: deliver_mu before mu; no lock is held while a handler runs.
 */
#include "informer.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pv_clock.h"

#define RING_MIN 64
#define RING_SHRINK_ABOVE 1024

typedef enum notif_type {
    N_ADD = 0,
    N_UPDATE = 1,
    N_DELETE = 2,
    N_SYNCED = 3, /* the handler has everything of the initial list */
} notif_type;

typedef struct notif {
    json_object *old_obj;
    json_object *obj;
    char *key;           /* resync entries: the key to read at delivery */
    inf_handler *target; /* NULL = broadcast */
    uint64_t seq;        /* broadcasts only */
    uint8_t type;
    bool resync;
} notif;

struct inf_handler {
    inf_informer *inf;
    inf_handler_fns fns;
    uint64_t from_seq;
    atomic_bool synced;
    atomic_bool removed;
    inf_handler *next_all; /* every registration ever made, freed with the informer */
};

struct inf_informer {
    inf_factory *f;
    char *group, *version, *resource, *namespace_, *label_selector, *field_selector;
    kc_ref ref;
    store *store;
    refl *refl;
    double resync_period;

    pthread_mutex_t deliver_mu;
    pthread_mutex_t mu;
    pthread_cond_t cond;      /* dispatch: work, stop */
    pthread_cond_t idle_cond; /* a notification was delivered */
    notif *ring;
    size_t cap, head, len, high;
    uint64_t next_seq;
    inf_handler **hv; /* registered now */
    size_t hn, hcap;
    uint64_t hver; /* bumped on every change of hv */
    inf_handler *all;
    bool started, stopping, joined;
    bool sync_enqueued;
    bool dispatching;
    pthread_t dispatch_thread;
    uint64_t notifications_total, dispatched_total, resyncs_total;
    /* Handlers whose on_update reads old_obj; changed under deliver_mu (or
     * when one is removed), read by the reflector under deliver_mu. */
    atomic_size_t old_wanted;
};

struct inf_factory {
    kc_client *client;
    inf_factory_opts o;
    pthread_mutex_t mu;
    /* The informers' reflectors list one page at a time between them
     * (refl_opts.page_lock): one page of parsed objects alive at once. */
    pthread_mutex_t page_mu;
    inf_informer **v;
    size_t n, cap;
    bool started, stopped;
};

/* ---- the FIFO (under mu) ------------------------------------------------------ */

static int ring_resize(inf_informer *inf, size_t cap)
{
    notif *nr = malloc(cap * sizeof(*nr));
    if (nr == NULL)
        return KC_ERR_NOMEM;
    for (size_t i = 0; i < inf->len; i++)
        nr[i] = inf->ring[(inf->head + i) % inf->cap];
    free(inf->ring);
    inf->ring = nr;
    inf->cap = cap;
    inf->head = 0;
    return KC_OK;
}

/* Make room for `extra` more entries. */
static int ring_reserve(inf_informer *inf, size_t extra)
{
    if (inf->cap - inf->len >= extra)
        return KC_OK;
    size_t cap = inf->cap ? inf->cap : RING_MIN;
    while (cap - inf->len < extra) {
        if (cap > SIZE_MAX / 2 / sizeof(notif))
            return KC_ERR_NOMEM;
        cap *= 2;
    }
    return ring_resize(inf, cap);
}

/* Append (room must have been reserved). */
static void ring_push(inf_informer *inf, const notif *n)
{
    inf->ring[(inf->head + inf->len) % inf->cap] = *n;
    inf->len++;
    inf->notifications_total++;
    if (inf->len > inf->high)
        inf->high = inf->len;
}

static notif ring_pop(inf_informer *inf)
{
    notif n = inf->ring[inf->head];
    inf->head = (inf->head + 1) % inf->cap;
    inf->len--;
    /* Give memory back after a burst. */
    if (inf->cap > RING_SHRINK_ABOVE && inf->len <= inf->cap / 8)
        (void)ring_resize(inf, inf->cap / 2); /* on failure the ring stays as it was */
    return n;
}

static void notif_release(notif *n)
{
    store_obj_put(n->old_obj);
    if (n->obj != n->old_obj)
        store_obj_put(n->obj);
    n->old_obj = n->obj = NULL;
    free(n->key);
    n->key = NULL;
}

/* ---- reflector hooks (reflector thread, deliver_mu held) ---------------------- */

static void on_refl_event(refl_event_type type, json_object *old_obj, json_object *obj, void *user)
{
    inf_informer *inf = user;
    notif n = {.old_obj = old_obj, .obj = obj, .type = (uint8_t)type};
    pthread_mutex_lock(&inf->mu);
    if (inf->hn == 0 || ring_reserve(inf, 1) != KC_OK) {
        /* Nobody to tell (a later handler lists the store instead), or out of
         * memory: the change is in the store, only its notification is lost. */
        pthread_mutex_unlock(&inf->mu);
        notif_release(&n);
        return;
    }
    n.seq = inf->next_seq++;
    ring_push(inf, &n);
    pthread_cond_signal(&inf->cond);
    pthread_mutex_unlock(&inf->mu);
}

/* A handler registered before the write reads an update's old object. A
 * later one receives only later notifications (inf_add_handler holds
 * deliver_mu, as the reflector does here). */
static bool on_refl_want_old(void *user)
{
    inf_informer *inf = user;
    return atomic_load(&inf->old_wanted) > 0;
}

static void on_refl_synced(void *user)
{
    inf_informer *inf = user;
    pthread_mutex_lock(&inf->mu);
    inf->sync_enqueued = true;
    if (inf->hn > 0 && ring_reserve(inf, 1) == KC_OK) {
        notif n = {.type = N_SYNCED, .seq = inf->next_seq++};
        ring_push(inf, &n);
        pthread_cond_signal(&inf->cond);
    } else {
        /* No handler yet, or no memory for the marker: mark the current
         * handlers directly (they were given everything already queued). */
        for (size_t i = 0; i < inf->hn; i++)
            atomic_store(&inf->hv[i]->synced, true);
    }
    pthread_mutex_unlock(&inf->mu);
}

/* ---- dispatch ---------------------------------------------------------------- */

static void call_handler(inf_handler *h, const notif *n)
{
    const inf_handler_fns *f = &h->fns;
    switch (n->type) {
    case N_ADD:
        if (f->on_add)
            f->on_add(n->obj, f->user);
        break;
    case N_UPDATE:
        if (f->on_update)
            f->on_update(n->old_obj, n->obj, f->user);
        break;
    case N_DELETE:
        if (f->on_delete)
            f->on_delete(n->obj, f->user);
        break;
    case N_SYNCED:
        atomic_store(&h->synced, true);
        break;
    }
}

static void deliver(const notif *n, inf_handler **hs, size_t nh)
{
    if (n->target != NULL) {
        if (!atomic_load(&n->target->removed))
            call_handler(n->target, n);
        return;
    }
    for (size_t i = 0; i < nh; i++) {
        inf_handler *h = hs[i];
        if (atomic_load(&h->removed) || n->seq < h->from_seq || (n->resync && h->fns.no_resync))
            continue;
        call_handler(h, n);
    }
}

/* Queue update(obj, obj) of everything cached for the handlers that want
 * it: by key, read again at delivery (see the invariants above). */
static void do_resync(inf_informer *inf)
{
    pthread_mutex_lock(&inf->deliver_mu);
    pthread_mutex_lock(&inf->mu);
    bool wanted = false;
    for (size_t i = 0; i < inf->hn; i++)
        wanted = wanted || !inf->hv[i]->fns.no_resync;
    pthread_mutex_unlock(&inf->mu);
    char **keys = NULL;
    size_t n = 0;
    if (wanted && store_list_keys(inf->store, &keys, &n) == KC_OK) {
        pthread_mutex_lock(&inf->mu);
        if (ring_reserve(inf, n) == KC_OK) {
            for (size_t i = 0; i < n; i++) {
                notif e = {
                    .key = keys[i], .type = N_UPDATE, .resync = true, .seq = inf->next_seq++};
                ring_push(inf, &e);
                keys[i] = NULL;
            }
            inf->resyncs_total++;
        }
        pthread_mutex_unlock(&inf->mu);
        store_keys_free(keys, n); /* what was not queued */
    }
    pthread_mutex_unlock(&inf->deliver_mu);
}

static void *dispatch_main(void *arg)
{
    inf_informer *inf = arg;
    inf_handler **snap = NULL;
    size_t snap_n = 0, snap_cap = 0;
    uint64_t snap_ver = UINT64_MAX;
    double next_resync = inf->resync_period > 0 ? pv_clock_monotonic() + inf->resync_period : 0;

    pthread_mutex_lock(&inf->mu);
    for (;;) {
        while (inf->len == 0 && !inf->stopping) {
            if (next_resync > 0) {
                struct timespec ts = pv_clock_timespec(next_resync);
                if (pthread_cond_timedwait(&inf->cond, &inf->mu, &ts) == ETIMEDOUT)
                    break;
            } else {
                pthread_cond_wait(&inf->cond, &inf->mu);
            }
        }
        if (inf->stopping)
            break;
        if (next_resync > 0 && pv_clock_monotonic() >= next_resync) {
            next_resync = pv_clock_monotonic() + inf->resync_period;
            if (refl_has_synced(inf->refl)) {
                pthread_mutex_unlock(&inf->mu);
                do_resync(inf);
                pthread_mutex_lock(&inf->mu);
            }
            continue;
        }
        if (inf->len == 0)
            continue;
        notif n = ring_pop(inf);
        if (snap_ver != inf->hver) {
            if (snap_cap < inf->hn) {
                inf_handler **ns = realloc(snap, inf->hn * sizeof(*ns));
                if (ns != NULL) {
                    snap = ns;
                    snap_cap = inf->hn;
                }
            }
            if (snap_cap >= inf->hn) {
                if (inf->hn > 0)
                    memcpy(snap, inf->hv, inf->hn * sizeof(*snap));
                snap_n = inf->hn;
                snap_ver = inf->hver;
            }
            /* else: out of memory, keep the old snapshot and retry next time */
        }
        inf->dispatching = true;
        pthread_mutex_unlock(&inf->mu);

        if (n.key != NULL && store_get(inf->store, n.key, &n.obj) == KC_OK)
            n.old_obj = n.obj;
        if (n.key == NULL || n.obj != NULL)
            deliver(&n, snap, snap_n);
        notif_release(&n);

        pthread_mutex_lock(&inf->mu);
        inf->dispatching = false;
        inf->dispatched_total++;
        pthread_cond_broadcast(&inf->idle_cond);
    }
    pthread_mutex_unlock(&inf->mu);
    free(snap);
    return NULL;
}

/* ---- informer lifecycle -------------------------------------------------------- */

static char *dup_or_null(const char *s)
{
    return s != NULL && s[0] != '\0' ? strdup(s) : NULL;
}

static const char *norm(const char *s)
{
    return s != NULL ? s : "";
}

static void informer_free(inf_informer *inf)
{
    if (inf == NULL)
        return;
    refl_free(inf->refl);
    while (inf->len > 0) {
        notif n = ring_pop(inf);
        notif_release(&n);
    }
    free(inf->ring);
    free(inf->hv);
    for (inf_handler *h = inf->all; h != NULL;) {
        inf_handler *next = h->next_all;
        free(h);
        h = next;
    }
    store_free(inf->store);
    free(inf->group);
    free(inf->version);
    free(inf->resource);
    free(inf->namespace_);
    free(inf->label_selector);
    free(inf->field_selector);
    pthread_cond_destroy(&inf->cond);
    pthread_cond_destroy(&inf->idle_cond);
    pthread_mutex_destroy(&inf->mu);
    pthread_mutex_destroy(&inf->deliver_mu);
    free(inf);
}

/* ---- the reflector's log goes to the factory's hook ----------------------------- */

/* (refl_opts.user is the informer; the hook is the factory's own, whose user
 * is log_user: a trampoline keeps the two apart.) */
static void log_trampoline(refl_log_level level, const char *msg, const kc_error *err, void *user)
{
    inf_informer *inf = user;
    inf->f->o.log(level, msg, err, inf->f->o.log_user);
}

static int informer_new(inf_factory *f, const kc_ref *ref, const inf_opts *o, inf_informer **out)
{
    *out = NULL;
    inf_informer *inf = calloc(1, sizeof(*inf));
    if (inf == NULL)
        return KC_ERR_NOMEM;
    atomic_init(&inf->old_wanted, 0);
    inf->f = f;
    pthread_mutex_init(&inf->deliver_mu, NULL);
    pthread_mutex_init(&inf->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&inf->cond, &ca);
    pthread_cond_init(&inf->idle_cond, &ca);
    pthread_condattr_destroy(&ca);

    inf->group = dup_or_null(ref->group);
    inf->version = strdup(ref->version);
    inf->resource = strdup(ref->resource);
    inf->namespace_ = dup_or_null(ref->namespace_);
    inf->label_selector = dup_or_null(o ? o->label_selector : NULL);
    inf->field_selector = dup_or_null(o ? o->field_selector : NULL);
    if ((ref->group && ref->group[0] && !inf->group) || !inf->version || !inf->resource ||
        (ref->namespace_ && ref->namespace_[0] && !inf->namespace_) ||
        (o && o->label_selector && o->label_selector[0] && !inf->label_selector) ||
        (o && o->field_selector && o->field_selector[0] && !inf->field_selector)) {
        informer_free(inf);
        return KC_ERR_NOMEM;
    }
    inf->ref.group = inf->group;
    inf->ref.version = inf->version;
    inf->ref.resource = inf->resource;
    inf->ref.namespace_ = inf->namespace_;

    inf_store_mode mode = o && o->store_mode ? o->store_mode : f->o.store_mode;
    store_opts so = {.mode = mode == INF_STORE_COMPACT ? STORE_COMPACT : STORE_SHARED};
    double resync = o && o->resync_period != 0 ? o->resync_period : f->o.resync_period;
    inf->resync_period = resync > 0 ? resync : 0;
    int rc = store_new(&so, &inf->store);
    if (rc != KC_OK) {
        informer_free(inf);
        return rc;
    }
    refl_opts ro = {
        .ref = inf->ref,
        .label_selector = inf->label_selector,
        .field_selector = inf->field_selector,
        .page_size = f->o.page_size,
        .watch_timeout_min = f->o.watch_timeout_min,
        .watch_timeout_max = f->o.watch_timeout_max,
        .backoff = f->o.backoff,
        .max_event_bytes = f->o.max_event_bytes,
        .write_lock = &inf->deliver_mu,
        .page_lock = &f->page_mu,
        .on_event = on_refl_event,
        .on_synced = on_refl_synced,
        .want_old = on_refl_want_old,
        .log = f->o.log != NULL ? log_trampoline : NULL,
        .user = inf,
        .transform = f->o.transform,
        .transform_user = f->o.transform_user,
    };
    rc = refl_new(f->client, inf->store, &ro, &inf->refl);
    if (rc != KC_OK) {
        informer_free(inf);
        return rc;
    }
    *out = inf;
    return KC_OK;
}

static int informer_start(inf_informer *inf)
{
    pthread_mutex_lock(&inf->mu);
    if (inf->started || inf->stopping) {
        pthread_mutex_unlock(&inf->mu);
        return KC_OK;
    }
    if (pthread_create(&inf->dispatch_thread, NULL, dispatch_main, inf) != 0) {
        pthread_mutex_unlock(&inf->mu);
        return KC_ERR_NOMEM;
    }
    inf->started = true;
    pthread_mutex_unlock(&inf->mu);
    return refl_start(inf->refl);
}

static void informer_stop(inf_informer *inf)
{
    refl_stop(inf->refl);
    pthread_mutex_lock(&inf->mu);
    inf->stopping = true;
    pthread_cond_broadcast(&inf->cond);
    bool join =
        inf->started && !inf->joined && !pthread_equal(pthread_self(), inf->dispatch_thread);
    if (join)
        inf->joined = true;
    pthread_mutex_unlock(&inf->mu);
    if (join)
        pthread_join(inf->dispatch_thread, NULL);
    /* Drop what was not delivered. */
    pthread_mutex_lock(&inf->mu);
    notif *left = NULL;
    size_t nleft = 0;
    if (inf->len > 0 && (left = malloc(inf->len * sizeof(*left))) != NULL) {
        while (inf->len > 0)
            left[nleft++] = ring_pop(inf);
    }
    pthread_cond_broadcast(&inf->idle_cond);
    pthread_mutex_unlock(&inf->mu);
    for (size_t i = 0; i < nleft; i++)
        notif_release(&left[i]);
    free(left);
}

/* ---- public: handlers ----------------------------------------------------------- */

int inf_add_handler(inf_informer *inf, const inf_handler_fns *fns, inf_handler **out)
{
    if (out != NULL)
        *out = NULL;
    if (inf == NULL || fns == NULL)
        return KC_ERR_INVALID_ARG;
    inf_handler *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return KC_ERR_NOMEM;
    h->inf = inf;
    h->fns = *fns;
    atomic_init(&h->synced, false);
    atomic_init(&h->removed, false);

    pthread_mutex_lock(&inf->deliver_mu);
    json_object **objs = NULL;
    size_t n = 0;
    int rc = store_list(inf->store, &objs, &n);
    if (rc != KC_OK) {
        pthread_mutex_unlock(&inf->deliver_mu);
        free(h);
        return rc;
    }
    pthread_mutex_lock(&inf->mu);
    if (inf->hn == inf->hcap) {
        size_t cap = inf->hcap ? inf->hcap * 2 : 4;
        inf_handler **nv = realloc(inf->hv, cap * sizeof(*nv));
        if (nv == NULL) {
            rc = KC_ERR_NOMEM;
        } else {
            inf->hv = nv;
            inf->hcap = cap;
        }
    }
    if (rc == KC_OK)
        rc = ring_reserve(inf, n + 1);
    if (rc == KC_OK) {
        h->from_seq = inf->next_seq;
        for (size_t i = 0; i < n; i++) {
            notif e = {.obj = objs[i], .target = h, .type = N_ADD};
            ring_push(inf, &e);
            objs[i] = NULL;
        }
        if (inf->sync_enqueued) {
            notif e = {.target = h, .type = N_SYNCED};
            ring_push(inf, &e);
        }
        inf->hv[inf->hn++] = h;
        inf->hver++;
        if (fns->on_update != NULL && !fns->old_unused)
            atomic_fetch_add(&inf->old_wanted, 1);
        h->next_all = inf->all;
        inf->all = h;
        pthread_cond_signal(&inf->cond);
    }
    pthread_mutex_unlock(&inf->mu);
    pthread_mutex_unlock(&inf->deliver_mu);
    store_objs_free(objs, n); /* NULLs when queued */
    if (rc != KC_OK) {
        free(h);
        return rc;
    }
    if (out != NULL)
        *out = h;
    return KC_OK;
}

void inf_remove_handler(inf_informer *inf, inf_handler *h)
{
    if (inf == NULL || h == NULL || h->inf != inf)
        return;
    pthread_mutex_lock(&inf->mu);
    if (!atomic_load(&h->removed)) {
        atomic_store(&h->removed, true);
        if (h->fns.on_update != NULL && !h->fns.old_unused)
            atomic_fetch_sub(&inf->old_wanted, 1);
        for (size_t i = 0; i < inf->hn; i++) {
            if (inf->hv[i] == h) {
                memmove(&inf->hv[i], &inf->hv[i + 1], (inf->hn - i - 1) * sizeof(*inf->hv));
                inf->hn--;
                inf->hver++;
                break;
            }
        }
    }
    /* Wait out a call in progress, unless we are that call. */
    if (!(inf->started && pthread_equal(pthread_self(), inf->dispatch_thread))) {
        while (inf->dispatching)
            pthread_cond_wait(&inf->idle_cond, &inf->mu);
    }
    pthread_mutex_unlock(&inf->mu);
}

bool inf_handler_has_synced(inf_handler *h)
{
    return h != NULL && atomic_load(&h->synced);
}

/* ---- public: informer ------------------------------------------------------------- */

int inf_add_index(inf_informer *inf, const char *name, store_index_fn fn, void *user)
{
    if (inf == NULL)
        return KC_ERR_INVALID_ARG;
    pthread_mutex_lock(&inf->mu);
    int rc = inf->started ? KC_ERR_INVALID_ARG : store_add_index(inf->store, name, fn, user);
    pthread_mutex_unlock(&inf->mu);
    return rc;
}

store *inf_store(inf_informer *inf)
{
    return inf != NULL ? inf->store : NULL;
}

const kc_ref *inf_ref(inf_informer *inf)
{
    return inf != NULL ? &inf->ref : NULL;
}

bool inf_has_synced(inf_informer *inf)
{
    return inf != NULL && refl_has_synced(inf->refl);
}

bool inf_wait_for_sync(inf_informer *inf, double timeout)
{
    return inf != NULL && refl_wait_synced(inf->refl, timeout);
}

bool inf_wait_idle(inf_informer *inf, double timeout)
{
    if (inf == NULL)
        return false;
    double deadline = pv_clock_monotonic() + (timeout < 0 ? 1e9 : timeout);
    struct timespec ts = pv_clock_timespec(deadline);
    pthread_mutex_lock(&inf->mu);
    while (inf->len > 0 || inf->dispatching) {
        if (pthread_cond_timedwait(&inf->idle_cond, &inf->mu, &ts) == ETIMEDOUT)
            break;
    }
    bool idle = inf->len == 0 && !inf->dispatching;
    pthread_mutex_unlock(&inf->mu);
    return idle;
}

void inf_stats_get(inf_informer *inf, inf_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (inf == NULL)
        return;
    refl_stats_get(inf->refl, &out->reflector);
    out->objects = store_len(inf->store);
    pthread_mutex_lock(&inf->mu);
    out->handlers = inf->hn;
    out->notifications_total = inf->notifications_total;
    out->dispatched_total = inf->dispatched_total;
    out->resyncs_total = inf->resyncs_total;
    out->pending = inf->len;
    out->pending_high_water = inf->high;
    pthread_mutex_unlock(&inf->mu);
}

/* ---- public: factory ---------------------------------------------------------------- */

int inf_factory_new(kc_client *c, const inf_factory_opts *opts, inf_factory **out)
{
    if (out != NULL)
        *out = NULL;
    if (c == NULL || out == NULL)
        return KC_ERR_INVALID_ARG;
    inf_factory *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return KC_ERR_NOMEM;
    f->client = c;
    if (opts != NULL)
        f->o = *opts;
    pthread_mutex_init(&f->mu, NULL);
    pthread_mutex_init(&f->page_mu, NULL);
    *out = f;
    return KC_OK;
}

void inf_factory_free(inf_factory *f)
{
    if (f == NULL)
        return;
    inf_factory_stop(f);
    for (size_t i = 0; i < f->n; i++)
        informer_free(f->v[i]);
    free(f->v);
    pthread_mutex_destroy(&f->mu);
    pthread_mutex_destroy(&f->page_mu);
    free(f);
}

static bool informer_matches(const inf_informer *inf, const kc_ref *ref, const inf_opts *o)
{
    return strcmp(norm(inf->group), norm(ref->group)) == 0 &&
           strcmp(inf->version, ref->version) == 0 && strcmp(inf->resource, ref->resource) == 0 &&
           strcmp(norm(inf->namespace_), norm(ref->namespace_)) == 0 &&
           strcmp(norm(inf->label_selector), norm(o ? o->label_selector : NULL)) == 0 &&
           strcmp(norm(inf->field_selector), norm(o ? o->field_selector : NULL)) == 0;
}

int inf_factory_get(inf_factory *f, const kc_ref *ref, const inf_opts *opts, inf_informer **out)
{
    if (out != NULL)
        *out = NULL;
    if (f == NULL || ref == NULL || out == NULL || ref->version == NULL || ref->resource == NULL ||
        ref->name != NULL || (ref->subresource != NULL && ref->subresource[0] != '\0'))
        return KC_ERR_INVALID_ARG;
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->n; i++) {
        if (informer_matches(f->v[i], ref, opts)) {
            *out = f->v[i];
            pthread_mutex_unlock(&f->mu);
            return KC_OK;
        }
    }
    int rc = KC_OK;
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        inf_informer **nv = realloc(f->v, cap * sizeof(*nv));
        if (nv == NULL)
            rc = KC_ERR_NOMEM;
        else {
            f->v = nv;
            f->cap = cap;
        }
    }
    inf_informer *inf = NULL;
    if (rc == KC_OK)
        rc = informer_new(f, ref, opts, &inf);
    if (rc == KC_OK) {
        f->v[f->n++] = inf;
        if (f->started && !f->stopped)
            rc = informer_start(inf);
        *out = inf;
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}

int inf_factory_start(inf_factory *f)
{
    if (f == NULL)
        return KC_ERR_INVALID_ARG;
    pthread_mutex_lock(&f->mu);
    int rc = f->stopped ? KC_ERR_STOPPED : KC_OK;
    if (rc == KC_OK) {
        f->started = true;
        for (size_t i = 0; i < f->n && rc == KC_OK; i++)
            rc = informer_start(f->v[i]);
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}

bool inf_factory_wait_for_sync(inf_factory *f, double timeout)
{
    if (f == NULL)
        return false;
    double deadline = pv_clock_monotonic() + timeout;
    for (size_t i = 0;; i++) {
        pthread_mutex_lock(&f->mu);
        inf_informer *inf = i < f->n ? f->v[i] : NULL;
        pthread_mutex_unlock(&f->mu);
        if (inf == NULL)
            return true;
        double left = timeout < 0 ? -1 : deadline - pv_clock_monotonic();
        if (timeout >= 0 && left < 0)
            left = 0;
        if (!inf_wait_for_sync(inf, left))
            return false;
    }
}

void inf_factory_stop(inf_factory *f)
{
    if (f == NULL)
        return;
    pthread_mutex_lock(&f->mu);
    f->stopped = true;
    size_t n = f->n;
    pthread_mutex_unlock(&f->mu);
    /* Informers are only appended and never freed before the factory. */
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&f->mu);
        inf_informer *inf = f->v[i];
        pthread_mutex_unlock(&f->mu);
        refl_stop(inf->refl);
    }
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&f->mu);
        inf_informer *inf = f->v[i];
        pthread_mutex_unlock(&f->mu);
        informer_stop(inf);
    }
}

size_t inf_factory_len(inf_factory *f)
{
    if (f == NULL)
        return 0;
    pthread_mutex_lock(&f->mu);
    size_t n = f->n;
    pthread_mutex_unlock(&f->mu);
    return n;
}

inf_informer *inf_factory_at(inf_factory *f, size_t i)
{
    if (f == NULL)
        return NULL;
    pthread_mutex_lock(&f->mu);
    inf_informer *inf = i < f->n ? f->v[i] : NULL;
    pthread_mutex_unlock(&f->mu);
    return inf;
}
