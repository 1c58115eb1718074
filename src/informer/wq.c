/*
 * wq - the controller work queue (see wq.h for the contract).
 *
 * Every key the queue knows about has one wq_entry, found through a hash map
 * (inf_map) by key. An entry's state is a handful of flags rather than
 * membership in several sets:
 *
 *   dirty        the key needs processing (client-go's "dirty set");
 *   processing   a worker holds it (between wq_get and wq_done);
 *   heap_idx     its position in the delay heap, or NOT_DELAYED;
 *   failures     its rate-limiter count (kept until wq_forget).
 *
 * The FIFO ring holds exactly the entries that are dirty and not processing
 * (a dirty key that is processing is pushed by wq_done instead). An entry is
 * freed as soon as none of the four says anything about it. Invariants, all
 * under `mu`:
 *
 *   - an entry is in the ring at most once, and only if dirty && !processing;
 *   - n_dirty / n_processing count the flags; depth == n_dirty;
 *   - ring and heap capacities are >= the number of entries, reserved when an
 *     entry is created, so moving a key between ring and heap never allocates
 *     and never fails halfway.
 *
 * In debug and sanitizer builds every public function checks these before
 * it lets go of `mu` (wq_check_locked; PV_ASSERT); wq_check runs the same
 * check for tests in any build.
 *
 * Delays need no thread: a getter with nothing to take sleeps until the
 * earliest deadline (pthread_cond_timedwait on CLOCK_MONOTONIC), and every
 * path that looks at the queue first moves due keys from heap to ring,
 * signalling one getter per key moved. A new earliest deadline broadcasts so
 * sleeping getters shorten their timeout.
 */
#include "wq.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "inf_map.h"
#include "kc_error.h"
#include "pv_assert.h"
#include "pv_clock.h"

#define NOT_DELAYED SIZE_MAX
#define MAX_DELAY_SECONDS 1e9
/* Debug builds walk every entry after each operation only up to this many. */
#define CHECK_WALK_MAX 2048

typedef struct wq_entry {
    double queued_at;  /* when it last became dirty (queue duration) */
    double started_at; /* when it was handed out (work duration) */
    double deadline;   /* while delayed */
    size_t heap_idx;
    uint32_t failures;
    bool dirty;
    bool processing;
    char key[];
} wq_entry;

struct wq {
    pthread_mutex_t mu;
    pthread_cond_t cond;    /* getters: key ready, earlier deadline, shutdown */
    pthread_cond_t drained; /* wq_shutdown_drain: n_processing reached 0 */
    inf_map entries;        /* key -> wq_entry */

    wq_entry **ring; /* FIFO of waiting keys */
    size_t ring_cap, ring_head, ring_len;

    wq_entry **heap; /* min-heap by deadline */
    size_t heap_cap, heap_len;

    size_t n_dirty, n_processing;
    uint64_t adds_total, retries_total;
    bool shutdown;

    double base_delay, max_delay;
    bool bucket;
    double qps, burst, tokens, tokens_at;

    wq_observe_fn observe;
    void *observe_user;
};

/* ---- ring ---------------------------------------------------------------- */

static int ring_reserve(wq *q, size_t need)
{
    if (need <= q->ring_cap)
        return KC_OK;
    size_t cap = q->ring_cap ? q->ring_cap : 16;
    while (cap < need)
        cap *= 2;
    wq_entry **r = malloc(cap * sizeof(*r));
    if (r == NULL)
        return KC_ERR_NOMEM;
    for (size_t i = 0; i < q->ring_len; i++)
        r[i] = q->ring[(q->ring_head + i) % q->ring_cap];
    free(q->ring);
    q->ring = r;
    q->ring_cap = cap;
    q->ring_head = 0;
    return KC_OK;
}

/* Capacity is reserved at entry creation; this never fails. */
static void ring_push(wq *q, wq_entry *e)
{
    PV_ASSERT(q->ring_len < q->ring_cap);
    PV_ASSERT(e->dirty && !e->processing);
    q->ring[(q->ring_head + q->ring_len) % q->ring_cap] = e;
    q->ring_len++;
}

static wq_entry *ring_pop(wq *q)
{
    wq_entry *e = q->ring[q->ring_head];
    q->ring_head = (q->ring_head + 1) % q->ring_cap;
    q->ring_len--;
    return e;
}

/* ---- heap ---------------------------------------------------------------- */

static void heap_set(wq *q, size_t i, wq_entry *e)
{
    q->heap[i] = e;
    e->heap_idx = i;
}

static void heap_up(wq *q, size_t i)
{
    wq_entry *e = q->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (q->heap[parent]->deadline <= e->deadline)
            break;
        heap_set(q, i, q->heap[parent]);
        i = parent;
    }
    heap_set(q, i, e);
}

static void heap_down(wq *q, size_t i)
{
    wq_entry *e = q->heap[i];
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        double best = e->deadline;
        if (l < q->heap_len && q->heap[l]->deadline < best) {
            m = l;
            best = q->heap[l]->deadline;
        }
        if (l + 1 < q->heap_len && q->heap[l + 1]->deadline < best)
            m = l + 1;
        if (m == i)
            break;
        heap_set(q, i, q->heap[m]);
        i = m;
    }
    heap_set(q, i, e);
}

static void heap_push(wq *q, wq_entry *e)
{
    PV_ASSERT(q->heap_len < q->heap_cap);
    PV_ASSERT(e->heap_idx == NOT_DELAYED);
    q->heap[q->heap_len] = e;
    e->heap_idx = q->heap_len++;
    heap_up(q, e->heap_idx);
}

static wq_entry *heap_pop(wq *q)
{
    wq_entry *top = q->heap[0];
    q->heap_len--;
    if (q->heap_len > 0) {
        q->heap[0] = q->heap[q->heap_len];
        heap_down(q, 0);
    }
    top->heap_idx = NOT_DELAYED;
    return top;
}

/* ---- entries ------------------------------------------------------------- */

static wq_entry *entry_find_or_create(wq *q, const char *key)
{
    wq_entry *e = inf_map_get(&q->entries, key);
    if (e != NULL)
        return e;
    size_t n = q->entries.len + 1;
    if (ring_reserve(q, n) != KC_OK)
        return NULL;
    if (n > q->heap_cap) {
        size_t cap = q->heap_cap ? q->heap_cap * 2 : 16;
        while (cap < n)
            cap *= 2;
        wq_entry **h = realloc(q->heap, cap * sizeof(*h));
        if (h == NULL)
            return NULL;
        q->heap = h;
        q->heap_cap = cap;
    }
    size_t klen = strlen(key);
    e = calloc(1, sizeof(*e) + klen + 1);
    if (e == NULL)
        return NULL;
    memcpy(e->key, key, klen + 1);
    e->heap_idx = NOT_DELAYED;
    if (inf_map_put(&q->entries, e->key, e) != KC_OK) {
        free(e);
        return NULL;
    }
    return e;
}

static void entry_maybe_release(wq *q, wq_entry *e)
{
    if (e->dirty || e->processing || e->heap_idx != NOT_DELAYED || e->failures != 0)
        return;
    inf_map_remove(&q->entries, e->key);
    free(e);
}

/* Mark e dirty (needs processing) as of time t; queue it unless a worker holds it. */
static void entry_add(wq *q, wq_entry *e, double t)
{
    if (e->dirty)
        return;
    e->dirty = true;
    e->queued_at = t;
    q->n_dirty++;
    q->adds_total++;
    if (e->processing)
        return; /* wq_done queues it */
    ring_push(q, e);
    pthread_cond_signal(&q->cond);
}

/* Move every delayed key whose deadline has passed to the queue. */
static void promote_due(wq *q, double now)
{
    while (q->heap_len > 0 && q->heap[0]->deadline <= now) {
        wq_entry *e = heap_pop(q);
        entry_add(q, e, e->deadline);
        entry_maybe_release(q, e);
    }
}

static void delay_locked(wq *q, wq_entry *e, double now, double delay)
{
    if (delay > MAX_DELAY_SECONDS)
        delay = MAX_DELAY_SECONDS; /* keeps deadlines representable as timespec */
    if (!(delay > 0)) {            /* also NaN */
        entry_add(q, e, now);
        return;
    }
    double deadline = now + delay;
    if (e->heap_idx != NOT_DELAYED) {
        if (deadline >= e->deadline)
            return; /* the earlier deadline wins */
        e->deadline = deadline;
        heap_up(q, e->heap_idx);
    } else {
        e->deadline = deadline;
        heap_push(q, e);
    }
    if (e->heap_idx == 0)
        pthread_cond_broadcast(&q->cond); /* sleeping getters wake sooner */
}

/* ---- invariants ---------------------------------------------------------- */

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
    return x < y ? -1 : x > y;
}

/* The ring holds each entry at most once (a sorted copy has no neighbours alike). */
static bool ring_unique(wq *q)
{
    if (q->ring_len < 2)
        return true;
    void **v = malloc(q->ring_len * sizeof(*v));
    if (v == NULL)
        return true; /* cannot tell; the rest of the check still runs */
    for (size_t i = 0; i < q->ring_len; i++)
        v[i] = q->ring[(q->ring_head + i) % q->ring_cap];
    qsort(v, q->ring_len, sizeof(*v), cmp_ptr);
    bool ok = true;
    for (size_t i = 1; i < q->ring_len && ok; i++)
        ok = v[i] != v[i - 1];
    free(v);
    return ok;
}

/*
 * NULL when every invariant of the file's top comment holds, else the first
 * that does not. The checks that walk the entries run only up to walk_max.
 */
static const char *wq_check_locked(wq *q, size_t walk_max)
{
    size_t n = q->entries.len;
    if (n > 0 && (q->ring_cap < n || q->heap_cap < n))
        return "ring and heap capacities are >= the number of entries";
    if (q->ring_len > q->ring_cap || q->heap_len > q->heap_cap)
        return "ring and heap lengths are within their capacities";
    if (q->n_dirty > n || q->n_processing > n || q->ring_len > n || q->heap_len > n)
        return "counts are bounded by the number of entries";
    if (q->shutdown && (q->ring_len > 0 || q->heap_len > 0))
        return "after shutdown nothing waits or is delayed";
    if (n > walk_max)
        return NULL;
    for (size_t i = 0; i < q->ring_len; i++) {
        const wq_entry *e = q->ring[(q->ring_head + i) % q->ring_cap];
        if (!e->dirty || e->processing)
            return "an entry is in the ring only if dirty && !processing";
    }
    for (size_t i = 0; i < q->heap_len; i++) {
        const wq_entry *e = q->heap[i];
        if (e->heap_idx != i)
            return "heap_idx is the entry's position in the delay heap";
        if (i > 0 && q->heap[(i - 1) / 2]->deadline > e->deadline)
            return "the delay heap is ordered by deadline";
    }
    size_t dirty = 0, processing = 0, waiting = 0, pos = 0;
    void *v;
    while (inf_map_next(&q->entries, &pos, NULL, &v)) {
        const wq_entry *e = v;
        if (!e->dirty && !e->processing && e->heap_idx == NOT_DELAYED && e->failures == 0)
            return "an entry is freed as soon as none of its flags says anything";
        if (e->heap_idx != NOT_DELAYED && (e->heap_idx >= q->heap_len || q->heap[e->heap_idx] != e))
            return "a delayed entry is where its heap_idx says";
        dirty += e->dirty;
        processing += e->processing;
        waiting += e->dirty && !e->processing;
    }
    if (dirty != q->n_dirty)
        return "n_dirty counts the dirty flags";
    if (processing != q->n_processing)
        return "n_processing counts the processing flags";
    if (waiting != q->ring_len || !ring_unique(q))
        return "the ring holds exactly the dirty entries no worker holds, each once";
    return NULL;
}

const char *wq_check(wq *q)
{
    pthread_mutex_lock(&q->mu);
    const char *bad = wq_check_locked(q, SIZE_MAX);
    pthread_mutex_unlock(&q->mu);
    return bad;
}

/* Every public function lets go of the queue here: debug builds check it first. */
static void wq_unlock(wq *q)
{
    PV_CHECK(wq_check_locked(q, CHECK_WALK_MAX));
    pthread_mutex_unlock(&q->mu);
}

/* ---- public -------------------------------------------------------------- */

int wq_new(const wq_opts *opts, wq **out)
{
    wq_opts o = {0};
    if (opts != NULL)
        o = *opts;
    *out = NULL;
    wq *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return KC_ERR_NOMEM;
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0) {
        free(q);
        return KC_ERR_NOMEM;
    }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int err = pthread_mutex_init(&q->mu, NULL);
    if (err == 0 && (err = pthread_cond_init(&q->cond, &ca)) != 0)
        pthread_mutex_destroy(&q->mu);
    if (err == 0 && (err = pthread_cond_init(&q->drained, &ca)) != 0) {
        pthread_cond_destroy(&q->cond);
        pthread_mutex_destroy(&q->mu);
    }
    pthread_condattr_destroy(&ca);
    if (err != 0) {
        free(q);
        return KC_ERR_NOMEM;
    }
    inf_map_init(&q->entries);
    q->base_delay = o.base_delay > 0 ? o.base_delay : 0.005;
    q->max_delay = o.max_delay > 0 ? o.max_delay : 1000.0;
    q->bucket = o.bucket_qps >= 0;
    q->qps = o.bucket_qps > 0 ? o.bucket_qps : 10.0;
    q->burst = o.bucket_burst > 0 ? o.bucket_burst : 100;
    q->tokens = q->burst;
    q->tokens_at = pv_clock_monotonic();
    q->observe = o.observe;
    q->observe_user = o.observe_user;
    *out = q;
    return KC_OK;
}

void wq_free(wq *q)
{
    if (q == NULL)
        return;
    size_t pos = 0;
    void *v;
    while (inf_map_next(&q->entries, &pos, NULL, &v))
        free(v);
    inf_map_close(&q->entries);
    free(q->ring);
    free(q->heap);
    pthread_cond_destroy(&q->drained);
    pthread_cond_destroy(&q->cond);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

/* add_after without the retry count, shared by the public entry points. */
static int add_after_locked(wq *q, const char *key, double delay)
{
    wq_entry *e = entry_find_or_create(q, key);
    if (e == NULL)
        return KC_ERR_NOMEM;
    delay_locked(q, e, pv_clock_monotonic(), delay);
    return KC_OK;
}

static int add_common(wq *q, const char *key, double delay, bool retry)
{
    if (q == NULL || key == NULL)
        return KC_ERR_INVALID_ARG;
    pthread_mutex_lock(&q->mu);
    int rc = KC_OK;
    if (!q->shutdown) {
        if (retry)
            q->retries_total++;
        rc = add_after_locked(q, key, delay);
    }
    wq_unlock(q);
    return rc;
}

int wq_add(wq *q, const char *key)
{
    return add_common(q, key, 0, false);
}

int wq_add_after(wq *q, const char *key, double delay)
{
    /* client-go counts every AddAfter as a retry; a plain add is not one. */
    return add_common(q, key, delay, true);
}

int wq_add_rate_limited_cap(wq *q, const char *key, double cap, double *delay_out)
{
    if (delay_out)
        *delay_out = 0;
    if (q == NULL || key == NULL)
        return KC_ERR_INVALID_ARG;
    pthread_mutex_lock(&q->mu);
    if (q->shutdown) {
        wq_unlock(q);
        return KC_OK;
    }
    wq_entry *e = entry_find_or_create(q, key);
    if (e == NULL) {
        wq_unlock(q);
        return KC_ERR_NOMEM;
    }
    double now = pv_clock_monotonic();
    double max = cap > 0 && cap < q->max_delay ? cap : q->max_delay;
    double d = ldexp(q->base_delay, e->failures > 4096 ? 4096 : (int)e->failures);
    bool at_cap = !(d < max);
    if (at_cap)
        d = max; /* also catches inf */
    if (e->failures < UINT32_MAX && !(at_cap && max < q->max_delay))
        e->failures++;
    if (q->bucket) {
        /* A reservation on a token bucket that may go negative, as
         * golang.org/x/time/rate's Reserve: the debt is paid in time. */
        q->tokens += (now - q->tokens_at) * q->qps;
        if (q->tokens > q->burst)
            q->tokens = q->burst;
        q->tokens_at = now;
        q->tokens -= 1;
        if (q->tokens < 0 && -q->tokens / q->qps > d)
            d = -q->tokens / q->qps;
    }
    q->retries_total++;
    delay_locked(q, e, now, d);
    wq_unlock(q);
    if (delay_out)
        *delay_out = d;
    return KC_OK;
}

int wq_add_rate_limited(wq *q, const char *key, double *delay_out)
{
    return wq_add_rate_limited_cap(q, key, 0, delay_out);
}

void wq_forget(wq *q, const char *key)
{
    if (q == NULL || key == NULL)
        return;
    pthread_mutex_lock(&q->mu);
    wq_entry *e = inf_map_get(&q->entries, key);
    if (e != NULL) {
        e->failures = 0;
        entry_maybe_release(q, e);
    }
    wq_unlock(q);
}

int wq_num_requeues(wq *q, const char *key)
{
    if (q == NULL || key == NULL)
        return 0;
    pthread_mutex_lock(&q->mu);
    wq_entry *e = inf_map_get(&q->entries, key);
    int n = e != NULL ? (e->failures > INT32_MAX ? INT32_MAX : (int)e->failures) : 0;
    wq_unlock(q);
    return n;
}

int wq_get(wq *q, const char **key_out)
{
    *key_out = NULL;
    pthread_mutex_lock(&q->mu);
    double now;
    for (;;) {
        if (q->shutdown) {
            wq_unlock(q);
            return KC_ERR_STOPPED;
        }
        now = pv_clock_monotonic();
        promote_due(q, now);
        if (q->ring_len > 0)
            break;
        if (q->heap_len > 0) {
            struct timespec ts = pv_clock_timespec(q->heap[0]->deadline);
            pthread_cond_timedwait(&q->cond, &q->mu, &ts);
        } else {
            pthread_cond_wait(&q->cond, &q->mu);
        }
    }
    wq_entry *e = ring_pop(q);
    e->dirty = false;
    q->n_dirty--;
    e->processing = true;
    q->n_processing++;
    e->started_at = now;
    double waited = now - e->queued_at;
    *key_out = e->key;
    wq_observe_fn observe = q->observe;
    void *user = q->observe_user;
    wq_unlock(q);
    if (observe)
        observe(WQ_METRIC_QUEUE_DURATION, waited > 0 ? waited : 0, user);
    return KC_OK;
}

void wq_done(wq *q, const char *key)
{
    if (q == NULL || key == NULL)
        return;
    pthread_mutex_lock(&q->mu);
    wq_entry *e = inf_map_get(&q->entries, key);
    if (e == NULL || !e->processing) {
        wq_unlock(q);
        return;
    }
    PV_ASSERT(q->n_processing > 0);
    double worked = pv_clock_monotonic() - e->started_at;
    e->processing = false;
    q->n_processing--;
    if (e->dirty) {
        if (!q->shutdown) {
            ring_push(q, e);
            pthread_cond_signal(&q->cond);
        } else {
            e->dirty = false; /* dropped: nothing is handed out any more */
            q->n_dirty--;
        }
    }
    entry_maybe_release(q, e); /* e (and key, if it was e->key) may be gone now */
    if (q->shutdown && q->n_processing == 0)
        pthread_cond_broadcast(&q->drained);
    wq_observe_fn observe = q->observe;
    void *user = q->observe_user;
    wq_unlock(q);
    if (observe)
        observe(WQ_METRIC_WORK_DURATION, worked > 0 ? worked : 0, user);
}

size_t wq_len(wq *q)
{
    pthread_mutex_lock(&q->mu);
    if (!q->shutdown)
        promote_due(q, pv_clock_monotonic());
    size_t n = q->ring_len;
    wq_unlock(q);
    return n;
}

void wq_stats_get(wq *q, wq_stats *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&q->mu);
    double now = pv_clock_monotonic();
    if (!q->shutdown)
        promote_due(q, now);
    out->depth = q->n_dirty;
    out->adds_total = q->adds_total;
    out->retries_total = q->retries_total;
    out->processing = q->n_processing;
    out->delayed = q->heap_len;
    if (q->n_processing > 0) {
        size_t pos = 0;
        void *v;
        while (inf_map_next(&q->entries, &pos, NULL, &v)) {
            wq_entry *e = v;
            if (!e->processing)
                continue;
            double held = now - e->started_at;
            out->unfinished_work_seconds += held;
            if (held > out->longest_running_processor_seconds)
                out->longest_running_processor_seconds = held;
        }
    }
    wq_unlock(q);
}

void wq_shutdown(wq *q)
{
    if (q == NULL)
        return;
    pthread_mutex_lock(&q->mu);
    if (!q->shutdown) {
        q->shutdown = true;
        /* Drop what waits; keys held by workers stay until their wq_done. */
        while (q->ring_len > 0) {
            wq_entry *e = ring_pop(q);
            e->dirty = false;
            q->n_dirty--;
            entry_maybe_release(q, e);
        }
        while (q->heap_len > 0)
            entry_maybe_release(q, heap_pop(q));
        pthread_cond_broadcast(&q->cond);
        if (q->n_processing == 0)
            pthread_cond_broadcast(&q->drained);
    }
    wq_unlock(q);
}

void wq_shutdown_drain(wq *q)
{
    if (q == NULL)
        return;
    wq_shutdown(q);
    pthread_mutex_lock(&q->mu);
    while (q->n_processing > 0)
        pthread_cond_wait(&q->drained, &q->mu);
    wq_unlock(q);
}

bool wq_shutting_down(wq *q)
{
    pthread_mutex_lock(&q->mu);
    bool s = q->shutdown;
    wq_unlock(q);
    return s;
}
