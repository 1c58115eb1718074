/*
 * refl - list+watch into a store (see reflector.h for the behaviour).
 *
 * The reflector thread owns the loop state: whether a list is needed, the
 * backoff sequence, the watch handle's runs, the random source for watch
 * timeouts. Other threads only read `synced`, the counters (atomics) and
 * the last resourceVersion (a string swapped under `mu`), and set
 * `stopping` (atomic; `cond` wakes a backoff sleep, kc_watch_stop a watch,
 * the list request and the wait for the page lock look at it themselves).
 *
 * Invariants:
 *   - every store write and the on_event calls reporting it happen under
 *     write_lock (when given), so the store and the stream of reported
 *     events agree for anyone holding that lock;
 *   - objects handed to the store are private to the reflector when handed
 *     (list items once their page is released, deep copies of watch
 *     objects), as store.h requires; the extra reference kept for on_event
 *     is taken while the object is still private;
 *   - last_rv only moves forward along the server's stream: it is set from a
 *     successful list, and then from each applied event or bookmark. It is
 *     never compared (resourceVersions are opaque).
 */
#include "reflector.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "pv_strbuf.h"
#include "pv_clock.h"
#include "inf_map.h"

#define DEFAULT_PAGE_SIZE 500
#define DEFAULT_WATCH_MIN 300
#define DEFAULT_WATCH_MAX 600
#define SHORT_WATCH_SECONDS 1.0
/* How often a reflector waiting for the page lock looks at stop. */
#define PAGE_LOCK_POLL_S 0.05

struct refl {
    kc_client *client; /* borrowed */
    store *store;      /* borrowed */
    char *group, *version, *resource, *namespace_, *label_selector, *field_selector;
    kc_ref ref; /* points at the strings above */
    char *desc; /* "ipclaims.provisio.dev in ns" for logs */
    long page_size, watch_min, watch_max;
    bo_opts bo_opts;
    size_t max_event_bytes;
    pthread_mutex_t *write_lock;
    pthread_mutex_t *page_lock;
    refl_event_fn on_event;
    refl_want_old_fn want_old;
    refl_synced_fn on_synced;
    refl_log_fn log;
    void *user;
    refl_transform_fn transform;
    void *transform_user;

    pthread_mutex_t mu; /* guards last_rv, started/joined, and the cond */
    pthread_cond_t cond;
    bool started, joining, joined;
    pthread_t thread;
    kc_watch *watch; /* created by refl_start; stopped from any thread */
    atomic_bool stopping;
    atomic_bool synced;
    char *last_rv; /* written by the reflector thread under mu */

    /* Reflector thread only. */
    bo bo;
    uint64_t rng;
    uint64_t watch_events; /* events (bookmarks included) of the current watch */

    _Atomic uint64_t lists_total, list_errors_total, watches_total, watch_errors_total, gone_total,
        events_total, bookmarks_total, skipped_total, objects_listed;
};

/* ---- small helpers --------------------------------------------------------- */

static char *dup_or_null(const char *s)
{
    return s != NULL && s[0] != '\0' ? strdup(s) : NULL;
}

static const char *str_at(json_object *obj, const char *a, const char *b)
{
    json_object *x, *y;
    if (!json_object_object_get_ex(obj, a, &x) || !json_object_object_get_ex(x, b, &y) ||
        !json_object_is_type(y, json_type_string))
        return NULL;
    return json_object_get_string(y);
}

static void rlog(refl *r, refl_log_level level, const kc_error *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void rlog(refl *r, refl_log_level level, const kc_error *err, const char *fmt, ...)
{
    if (r->log == NULL && level < REFL_LOG_ERROR)
        return;
    char *body = NULL, *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = pv_vasprintf(&body, fmt, ap);
    va_end(ap);
    if (n < 0)
        return; /* out of memory: a lost log line */
    if (asprintf(&msg, "reflector %s: %s", r->desc, body) < 0) {
        free(body);
        return;
    }
    free(body);
    if (r->log != NULL)
        r->log(level, msg, err, r->user);
    else
        fprintf(stderr, "provisio: %s%s%s\n", msg, err && err->message ? ": " : "",
                err && err->message ? err->message : "");
    free(msg);
}

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64* */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static bool stopping(refl *r)
{
    return atomic_load(&r->stopping);
}

static void lock_w(refl *r)
{
    if (r->write_lock != NULL)
        pthread_mutex_lock(r->write_lock);
}

static void unlock_w(refl *r)
{
    if (r->write_lock != NULL)
        pthread_mutex_unlock(r->write_lock);
}

/* Hand a change to on_event (which takes the references) or drop it. */
static void emit(refl *r, refl_event_type type, json_object *old_obj, json_object *obj)
{
    if (r->on_event != NULL) {
        r->on_event(type, old_obj, obj, r->user);
    } else {
        store_obj_put(old_obj);
        store_obj_put(obj);
    }
}

/* Replace last_rv with rv (consumed; NULL keeps the old one). */
static void set_last_rv(refl *r, char *rv)
{
    if (rv == NULL)
        return;
    pthread_mutex_lock(&r->mu);
    char *old = r->last_rv;
    r->last_rv = rv;
    pthread_mutex_unlock(&r->mu);
    free(old);
}

/* Sleep for `seconds` or until stopped. True when stopping. */
static bool sleep_or_stop(refl *r, double seconds)
{
    struct timespec until = pv_clock_timespec_in(seconds);
    pthread_mutex_lock(&r->mu);
    while (!stopping(r)) {
        int e = pthread_cond_timedwait(&r->cond, &r->mu, &until);
        if (e == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&r->mu);
    return stopping(r);
}

/* Back off after a failure; retry_after (server's hint) is a floor. */
static bool backoff(refl *r, double retry_after)
{
    double d = bo_next(&r->bo);
    if (retry_after > d)
        d = retry_after;
    rlog(r, REFL_LOG_DEBUG, NULL, "backing off %.3f s", d);
    return sleep_or_stop(r, d);
}

/* ---- list ------------------------------------------------------------------ */

/*
 * A list is applied page by page as it arrives, so that at most one page of
 * parsed objects exists at a time (in STORE_COMPACT mode a whole 10,000-object
 * list of json-c trees would cost ~75 MiB at its peak; one page of 500 costs
 * ~4 MiB). Each item is store_add'ed and reported as an add (new key), an
 * update (resourceVersion changed) or nothing (same resourceVersion); the
 * keys of the list are remembered, and once the last page is in, every
 * stored key the list did not have is deleted and reported. For readers a
 * relist is therefore not atomic: while it runs, some objects may be newer
 * than others and deleted ones still present -- the same as any lagging
 * cache; each object is whole and the indexes always match it.
 */

typedef struct objv {
    json_object **p;
    size_t n, cap;
} objv;

static int objv_reserve(objv *v, size_t extra)
{
    if (v->cap - v->n >= extra)
        return KC_OK;
    size_t cap = v->cap ? v->cap : 64;
    while (cap - v->n < extra)
        cap *= 2;
    json_object **np = realloc(v->p, cap * sizeof(*np));
    if (np == NULL)
        return KC_ERR_NOMEM;
    v->p = np;
    v->cap = cap;
    return KC_OK;
}

static void objv_clear(objv *v)
{
    for (size_t i = 0; i < v->n; i++)
        json_object_put(v->p[i]); /* still private */
    v->n = 0;
}

/* What one list did, for the log. */
typedef struct list_counts {
    size_t objects, added, updated, unchanged, deleted, skipped;
} list_counts;

/* The keys of the list in progress: key -> the same malloc'd string. */
static void seen_clear(inf_map *seen)
{
    size_t pos = 0;
    void *v;
    while (inf_map_next(seen, &pos, NULL, &v))
        free(v);
    inf_map_close(seen);
    inf_map_init(seen);
}

static bool same_rv(json_object *a, json_object *b)
{
    const char *ra = str_at(a, "metadata", "resourceVersion");
    const char *rb = str_at(b, "metadata", "resourceVersion");
    return ra != NULL && rb != NULL && ra[0] != '\0' && strcmp(ra, rb) == 0;
}

/* Apply one page's items (v's references consumed). */
static int apply_page(refl *r, objv *v, inf_map *seen, list_counts *cnt)
{
    int rc = KC_OK;
    size_t i = 0;
    lock_w(r);
    for (; i < v->n && rc == KC_OK; i++) {
        json_object *item = v->p[i];
        v->p[i] = NULL;
        char *key = NULL;
        int krc = store_key_of(item, &key);
        if (krc != KC_OK) {
            json_object_put(item);
            if (krc == KC_ERR_NOMEM)
                rc = krc;
            else
                cnt->skipped++;
            continue;
        }
        if (inf_map_get(seen, key) == NULL) {
            if (inf_map_put(seen, key, key) != KC_OK) {
                free(key);
                json_object_put(item);
                rc = KC_ERR_NOMEM;
                continue;
            }
        } else {
            free(key); /* a duplicate within the list: the later one wins */
        }
        json_object *old = NULL;
        json_object_get(item); /* on_event's reference, taken while private */
        rc = store_add(r->store, item, &old);
        if (rc != KC_OK) {
            json_object_put(item); /* the store did not keep it: still private */
            continue;
        }
        cnt->objects++;
        if (old == NULL) {
            cnt->added++;
            emit(r, REFL_ADD, NULL, item);
        } else if (same_rv(old, item)) {
            cnt->unchanged++;
            store_obj_put(old);
            store_obj_put(item);
        } else {
            cnt->updated++;
            emit(r, REFL_UPDATE, old, item);
        }
    }
    unlock_w(r);
    for (; i < v->n; i++)
        json_object_put(v->p[i]); /* not applied after an error */
    v->n = 0;
    return rc;
}

/* The list is complete: delete what it did not have; the first one syncs. */
static int finish_list(refl *r, inf_map *seen, list_counts *cnt)
{
    char **keys = NULL;
    size_t nk = 0;
    int rc = store_list_keys(r->store, &keys, &nk);
    if (rc != KC_OK)
        return rc;
    bool first = false;
    lock_w(r);
    for (size_t i = 0; i < nk; i++) {
        if (inf_map_get(seen, keys[i]) != NULL)
            continue;
        json_object *old = NULL;
        if (store_delete(r->store, keys[i], &old) == KC_OK) {
            cnt->deleted++;
            emit(r, REFL_DELETE, NULL, old);
        }
    }
    if (!atomic_load(&r->synced)) {
        atomic_store(&r->synced, true);
        first = true;
        if (r->on_synced != NULL)
            r->on_synced(r->user);
    }
    unlock_w(r);
    store_keys_free(keys, nk);
    if (first) {
        pthread_mutex_lock(&r->mu);
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->mu);
    }
    return KC_OK;
}

/* kc_list_each's callback: each item is transformed as soon as it is
 * parsed (managedFields gone before the next item's tree is built) and its
 * tables shrunk to fit, since the page's items wait for the page's end. */
typedef struct page_sink {
    refl *r;
    objv *v;
} page_sink;

static int take_item(json_object *item, void *user)
{
    page_sink *ps = user;
    if (item == NULL)
        return KC_OK; /* a null element: nothing to cache */
    if (objv_reserve(ps->v, 1) != KC_OK) {
        json_object_put(item);
        return KC_ERR_NOMEM;
    }
    if (ps->r->transform != NULL)
        ps->r->transform(item, ps->r->transform_user);
    store_shrink(item);
    ps->v->p[ps->v->n++] = item;
    return KC_OK;
}

/*
 * One page: request it (with lo), take its items one by one as they are
 * parsed, note the list's resourceVersion (first page) and the continue
 * token (*token replaced), and apply the items. The page lock, when there
 * is one, is held by the caller.
 */
static int list_page(refl *r, const kc_list_opts *lo, objv *v, inf_map *seen, list_counts *cnt,
                     char **list_rv, char **token, kc_error *err)
{
    json_object *page = NULL;
    page_sink ps = {.r = r, .v = v};
    size_t n = 0;
    int rc = kc_list_each(r->client, &r->ref, lo, take_item, &ps, &page, &n, err);
    if (rc != KC_OK)
        return rc;
    if (inf_map_reserve(seen, n) != KC_OK) {
        json_object_put(page);
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    }
    if (*list_rv == NULL)
        *list_rv = dup_or_null(str_at(page, "metadata", "resourceVersion"));
    free(*token);
    *token = dup_or_null(str_at(page, "metadata", "continue"));
    json_object_put(page); /* only the list's own members: the items are in v */
    rc = apply_page(r, v, seen, cnt);
    if (rc != KC_OK)
        kc_error_set(err, rc, "applying a list page: %s", kc_strerror(rc));
    return rc;
}

/*
 * The page lock (when there is one), waited for so that stopping still ends
 * the wait: another reflector may hold it through a slow page. False when
 * stopped first (the lock is then not held).
 */
static bool take_page_lock(refl *r)
{
    if (r->page_lock == NULL)
        return true;
    while (!stopping(r)) {
        struct timespec until = pv_clock_timespec_in(PAGE_LOCK_POLL_S);
        int e = pthread_mutex_clocklock(r->page_lock, CLOCK_MONOTONIC, &until);
        if (e == 0)
            return true;
        if (e != ETIMEDOUT && e != EINTR) {
            pthread_mutex_lock(r->page_lock); /* not expected: fall back to waiting */
            return true;
        }
    }
    return false;
}

static int do_list(refl *r, kc_error *err)
{
    objv v = {0};
    inf_map seen;
    inf_map_init(&seen);
    list_counts cnt = {0};
    char *token = NULL, *list_rv = NULL;
    bool restarted = false;
    int rc;
    atomic_fetch_add(&r->lists_total, 1);
    for (;;) {
        if (stopping(r)) {
            rc = kc_error_set(err, KC_ERR_STOPPED, "stopped");
            goto out;
        }
        kc_list_opts lo = {.label_selector = r->label_selector,
                           .field_selector = r->field_selector,
                           .limit = r->page_size,
                           .continue_token = token,
                           .cancel = &r->stopping};
        if (!take_page_lock(r)) {
            rc = kc_error_set(err, KC_ERR_STOPPED, "stopped");
            goto out;
        }
        rc = list_page(r, &lo, &v, &seen, &cnt, &list_rv, &token, err);
        if (r->page_lock != NULL)
            pthread_mutex_unlock(r->page_lock);
        if (rc == KC_ERR_GONE && token != NULL && !restarted) {
            /* The continue token expired mid-list: start over, once. What
             * was applied stays; the new list reports only differences. */
            rlog(r, REFL_LOG_INFO, err, "list continue token expired; listing again");
            restarted = true;
            seen_clear(&seen);
            free(token);
            free(list_rv);
            token = list_rv = NULL;
            continue;
        }
        if (rc != KC_OK)
            goto out;
        if (token == NULL)
            break;
    }
    rc = finish_list(r, &seen, &cnt);
    if (rc != KC_OK) {
        kc_error_set(err, rc, "finishing the list: %s", kc_strerror(rc));
        goto out;
    }
    rlog(r, REFL_LOG_DEBUG, NULL,
         "list applied: %zu objects, %zu added, %zu updated, %zu deleted, %zu unchanged",
         cnt.objects, cnt.added, cnt.updated, cnt.deleted, cnt.unchanged);
    atomic_store(&r->objects_listed, cnt.objects);
    if (list_rv == NULL)
        rlog(r, REFL_LOG_ERROR, NULL, "list had no metadata.resourceVersion; watching from now");
    set_last_rv(r, list_rv);
    list_rv = NULL;
out:
    if (cnt.skipped > 0) {
        atomic_fetch_add(&r->skipped_total, cnt.skipped);
        rlog(r, REFL_LOG_ERROR, NULL, "list: skipped %zu items without metadata.name", cnt.skipped);
    }
    objv_clear(&v);
    free(v.p);
    seen_clear(&seen);
    inf_map_close(&seen);
    free(token);
    free(list_rv);
    return rc;
}

void refl_strip_managed_fields(json_object *obj, void *user)
{
    (void)user;
    json_object *md = NULL;
    if (json_object_is_type(obj, json_type_object) &&
        json_object_object_get_ex(obj, "metadata", &md) &&
        json_object_is_type(md, json_type_object))
        json_object_object_del(md, "managedFields");
}

/* ---- watch ----------------------------------------------------------------- */

/* One event; *kept: obj was published (the store's, the dispatcher's). */
static int watch_event(refl *r, kc_event_type type, json_object *obj, bool *kept)
{
    r->watch_events++;
    if (stopping(r))
        return KC_ERR_STOPPED;
    if (type == KC_EVENT_BOOKMARK) {
        atomic_fetch_add(&r->bookmarks_total, 1);
        const char *rv = str_at(obj, "metadata", "resourceVersion");
        if (rv != NULL && rv[0] != '\0') {
            char *copy = strdup(rv);
            if (copy == NULL)
                return KC_ERR_NOMEM;
            set_last_rv(r, copy);
        }
        return 0;
    }
    if (type != KC_EVENT_ADDED && type != KC_EVENT_MODIFIED && type != KC_EVENT_DELETED)
        return 0;

    char *key = NULL;
    int rc = store_key_of(obj, &key);
    if (rc == KC_ERR_NOMEM)
        return rc;
    if (rc != KC_OK) {
        atomic_fetch_add(&r->skipped_total, 1);
        rlog(r, REFL_LOG_ERROR, NULL, "skipped a %s event whose object has no metadata.name",
             kc_event_type_name(type));
        return 0;
    }
    const char *rv_s = str_at(obj, "metadata", "resourceVersion");
    char *rv = dup_or_null(rv_s);
    if (rv_s != NULL && rv_s[0] != '\0' && rv == NULL) {
        free(key);
        return KC_ERR_NOMEM;
    }
    /* obj is ours alone (kc_watch_give_objects): it becomes the store's,
     * private as store_add wants, without a copy (a DevicePool is ~10 KB). */
    json_object *copy = obj;
    *kept = true;
    if (r->transform != NULL)
        r->transform(copy, r->transform_user);

    lock_w(r);
    if (type == KC_EVENT_DELETED) {
        (void)store_delete(r->store, key, NULL); /* NOT_FOUND: still reported */
        emit(r, REFL_DELETE, NULL, copy);
        rc = KC_OK;
    } else {
        json_object *old = NULL;
        bool existed = false;
        json_object_get(copy); /* on_event's reference, taken while private */
        if (r->want_old == NULL || r->want_old(r->user)) {
            rc = store_add(r->store, copy, &old);
            existed = old != NULL;
        } else {
            rc = store_add_existed(r->store, copy, &existed);
        }
        if (rc == KC_OK)
            emit(r, existed ? REFL_UPDATE : REFL_ADD, old, copy);
        else
            json_object_put(copy); /* the store did not keep it: still private */
    }
    unlock_w(r);
    free(key);
    if (rc != KC_OK) {
        free(rv);
        return rc;
    }
    atomic_fetch_add(&r->events_total, 1);
    set_last_rv(r, rv);
    return 0;
}

/* The watch's callback: obj is given to us (kc_watch_give_objects). What is
 * not published is put here, while no other thread can see it. */
static int on_watch_event(kc_event_type type, json_object *obj, void *user)
{
    bool kept = false;
    int rc = watch_event(user, type, obj, &kept);
    if (!kept)
        json_object_put(obj);
    return rc;
}

static long watch_timeout(refl *r)
{
    long span = r->watch_max - r->watch_min + 1;
    return r->watch_min + (long)(rng_next(&r->rng) % (uint64_t)span);
}

static int do_watch(refl *r, kc_error *err, double *lasted)
{
    char *rv = NULL;
    pthread_mutex_lock(&r->mu);
    if (r->last_rv != NULL && (rv = strdup(r->last_rv)) == NULL) {
        pthread_mutex_unlock(&r->mu);
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    }
    pthread_mutex_unlock(&r->mu);
    kc_list_opts lo = {.label_selector = r->label_selector,
                       .field_selector = r->field_selector,
                       .resource_version = rv,
                       .timeout_seconds = watch_timeout(r),
                       .allow_watch_bookmarks = true};
    r->watch_events = 0;
    atomic_fetch_add(&r->watches_total, 1);
    double t0 = pv_clock_monotonic();
    int rc = kc_watch_run(r->watch, &r->ref, &lo, on_watch_event, r, err);
    *lasted = pv_clock_monotonic() - t0;
    free(rv);
    return rc;
}

/* ---- the loop -------------------------------------------------------------- */

static void *refl_main(void *arg)
{
    refl *r = arg;
    kc_error err = KC_ERROR_INIT;
    bool need_list = true;
    while (!stopping(r)) {
        if (need_list) {
            int rc = do_list(r, &err);
            if (rc == KC_ERR_STOPPED || stopping(r))
                break;
            if (rc != KC_OK) {
                atomic_fetch_add(&r->list_errors_total, 1);
                rlog(r, REFL_LOG_ERROR, &err, "list failed");
                if (backoff(r, err.retry_after))
                    break;
                continue;
            }
            need_list = false;
        }
        double lasted = 0;
        int rc = do_watch(r, &err, &lasted);
        if (rc == KC_ERR_STOPPED || stopping(r))
            break;
        bool progressed = r->watch_events > 0;
        if (rc == KC_OK) {
            if (!progressed && lasted < SHORT_WATCH_SECONDS) {
                atomic_fetch_add(&r->watch_errors_total, 1);
                rlog(r, REFL_LOG_ERROR, NULL,
                     "very short watch: ended after %.3f s without any event", lasted);
                need_list = true;
                if (backoff(r, 0))
                    break;
            } else {
                rlog(r, REFL_LOG_DEBUG, NULL, "watch ended after %.1f s; watching again", lasted);
            }
            continue;
        }
        atomic_fetch_add(&r->watch_errors_total, 1);
        if (rc == KC_ERR_GONE) {
            atomic_fetch_add(&r->gone_total, 1);
            rlog(r, REFL_LOG_INFO, &err, "watch expired (410); relisting");
            need_list = true;
            if (!progressed && backoff(r, 0)) /* 410 straight after a list: no hot loop */
                break;
        } else if (rc == KC_ERR_TRANSPORT || rc == KC_ERR_TIMEOUT) {
            rlog(r, REFL_LOG_ERROR, &err, "watch failed; watching again");
            if (!progressed && backoff(r, err.retry_after))
                break;
        } else if (rc == KC_ERR_TOO_MANY_REQUESTS) {
            rlog(r, REFL_LOG_ERROR, &err, "watch throttled; watching again");
            if (backoff(r, err.retry_after))
                break;
        } else {
            rlog(r, REFL_LOG_ERROR, &err, "watch failed; relisting");
            need_list = true;
            if (backoff(r, err.retry_after))
                break;
        }
    }
    kc_error_clear(&err);
    return NULL;
}

/* ---- public ---------------------------------------------------------------- */

int refl_new(kc_client *c, store *s, const refl_opts *o, refl **out)
{
    if (out != NULL)
        *out = NULL;
    if (c == NULL || s == NULL || o == NULL || out == NULL || o->ref.version == NULL ||
        o->ref.resource == NULL || o->ref.name != NULL ||
        (o->ref.subresource != NULL && o->ref.subresource[0] != '\0') || o->page_size < 0 ||
        o->watch_timeout_min < 0 || o->watch_timeout_max < 0)
        return KC_ERR_INVALID_ARG;
    refl *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return KC_ERR_NOMEM;
    r->client = c;
    r->store = s;
    r->group = dup_or_null(o->ref.group);
    r->version = strdup(o->ref.version);
    r->resource = strdup(o->ref.resource);
    r->namespace_ = dup_or_null(o->ref.namespace_);
    r->label_selector = dup_or_null(o->label_selector);
    r->field_selector = dup_or_null(o->field_selector);
    int n = asprintf(&r->desc, "%s%s%s%s%s", o->ref.resource, r->group ? "." : "",
                     r->group ? r->group : "", r->namespace_ ? " in " : "",
                     r->namespace_ ? r->namespace_ : "");
    if (n < 0)
        r->desc = NULL;
    if ((o->ref.group && o->ref.group[0] && !r->group) || !r->version || !r->resource ||
        (o->ref.namespace_ && o->ref.namespace_[0] && !r->namespace_) ||
        (o->label_selector && o->label_selector[0] && !r->label_selector) ||
        (o->field_selector && o->field_selector[0] && !r->field_selector) || !r->desc) {
        free(r->group);
        free(r->version);
        free(r->resource);
        free(r->namespace_);
        free(r->label_selector);
        free(r->field_selector);
        free(r->desc);
        free(r);
        return KC_ERR_NOMEM;
    }
    r->ref.group = r->group;
    r->ref.version = r->version;
    r->ref.resource = r->resource;
    r->ref.namespace_ = r->namespace_;
    r->page_size = o->page_size ? o->page_size : DEFAULT_PAGE_SIZE;
    r->watch_min = o->watch_timeout_min ? o->watch_timeout_min : DEFAULT_WATCH_MIN;
    r->watch_max = o->watch_timeout_max ? o->watch_timeout_max : DEFAULT_WATCH_MAX;
    if (r->watch_max < r->watch_min)
        r->watch_max = r->watch_min;
    r->bo_opts = o->backoff;
    r->max_event_bytes = o->max_event_bytes;
    r->write_lock = o->write_lock;
    r->page_lock = o->page_lock;
    r->on_event = o->on_event;
    r->want_old = o->want_old;
    r->on_synced = o->on_synced;
    r->log = o->log;
    r->user = o->user;
    r->transform = o->transform;
    r->transform_user = o->transform_user;

    pthread_mutex_init(&r->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cond, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&r->stopping, false);
    atomic_init(&r->synced, false);
    if (getrandom(&r->rng, sizeof(r->rng), GRND_NONBLOCK) != (ssize_t)sizeof(r->rng))
        r->rng = (uint64_t)(uintptr_t)r ^ (uint64_t)(pv_clock_monotonic() * 1e9);
    if (r->rng == 0)
        r->rng = 0x9E3779B97F4A7C15ULL;
    *out = r;
    return KC_OK;
}

int refl_start(refl *r)
{
    if (r == NULL)
        return KC_ERR_INVALID_ARG;
    pthread_mutex_lock(&r->mu);
    if (r->started) {
        pthread_mutex_unlock(&r->mu);
        return KC_ERR_INVALID_ARG;
    }
    kc_error err = KC_ERROR_INIT;
    int rc = kc_watch_new(r->client, r->max_event_bytes, &r->watch, &err);
    kc_error_clear(&err);
    if (rc == KC_OK) {
        kc_watch_give_objects(r->watch); /* on_watch_event publishes them */
        bo_init(&r->bo, &r->bo_opts);
        if (pthread_create(&r->thread, NULL, refl_main, r) != 0) {
            kc_watch_free(r->watch);
            r->watch = NULL;
            rc = KC_ERR_NOMEM;
        } else {
            r->started = true;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

void refl_stop(refl *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->mu);
    atomic_store(&r->stopping, true);
    pthread_cond_broadcast(&r->cond);
    if (!r->started || r->joined) {
        pthread_mutex_unlock(&r->mu);
        return;
    }
    kc_watch_stop(r->watch);
    if (pthread_equal(pthread_self(), r->thread)) {
        pthread_mutex_unlock(&r->mu); /* cannot join ourselves; refl_free will */
        return;
    }
    if (r->joining) {
        while (!r->joined)
            pthread_cond_wait(&r->cond, &r->mu);
        pthread_mutex_unlock(&r->mu);
        return;
    }
    r->joining = true;
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
    pthread_mutex_lock(&r->mu);
    r->joined = true;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->mu);
}

void refl_free(refl *r)
{
    if (r == NULL)
        return;
    refl_stop(r);
    kc_watch_free(r->watch);
    free(r->group);
    free(r->version);
    free(r->resource);
    free(r->namespace_);
    free(r->label_selector);
    free(r->field_selector);
    free(r->desc);
    free(r->last_rv);
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

bool refl_has_synced(refl *r)
{
    return r != NULL && atomic_load(&r->synced);
}

bool refl_wait_synced(refl *r, double timeout)
{
    if (r == NULL)
        return false;
    struct timespec until = pv_clock_timespec_in(timeout);
    pthread_mutex_lock(&r->mu);
    while (!atomic_load(&r->synced)) {
        int e = timeout < 0 ? pthread_cond_wait(&r->cond, &r->mu)
                            : pthread_cond_timedwait(&r->cond, &r->mu, &until);
        if (e == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&r->mu);
    return atomic_load(&r->synced);
}

int refl_last_resource_version(refl *r, char **out)
{
    *out = NULL;
    if (r == NULL)
        return KC_ERR_INVALID_ARG;
    int rc = KC_OK;
    pthread_mutex_lock(&r->mu);
    if (r->last_rv != NULL && (*out = strdup(r->last_rv)) == NULL)
        rc = KC_ERR_NOMEM;
    pthread_mutex_unlock(&r->mu);
    return rc;
}

void refl_stats_get(refl *r, refl_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (r == NULL)
        return;
    out->lists_total = atomic_load(&r->lists_total);
    out->list_errors_total = atomic_load(&r->list_errors_total);
    out->watches_total = atomic_load(&r->watches_total);
    out->watch_errors_total = atomic_load(&r->watch_errors_total);
    out->gone_total = atomic_load(&r->gone_total);
    out->events_total = atomic_load(&r->events_total);
    out->bookmarks_total = atomic_load(&r->bookmarks_total);
    out->skipped_total = atomic_load(&r->skipped_total);
    out->objects_listed = atomic_load(&r->objects_listed);
    out->synced = atomic_load(&r->synced);
}
