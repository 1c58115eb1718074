/*
 * rec_events - core/v1 Events with client-go-like folding of repeats, written
 * in the background.
 *
 * Emitting (any worker thread) copies the involved object's identity, type,
 * reason, message and the emission time into one allocation and appends it to
 * a bounded FIFO under qmu; it never touches the network or the LRU. Sender
 * threads (one by default; rec_events_opts.senders) pop the FIFO in order
 * and, for each Event, make the dedup decision and the write, as client-go's
 * EventBroadcaster does with its watcher goroutine. One sender writes one
 * Event per API round trip: ~50/s on a loaded API server, fewer than a storm
 * of claims emits, hence several for the reconcilers. A full queue drops the new Event (client-go
 * drops too: Events are best effort); the first drop of an overflow is reported at once by the
 * emitting thread, and the sender reports how many were dropped when it has emptied the queue
 * again, so a saturated queue costs two log lines, not one per Event.
 *
 * Each emission is keyed by (involved object uid, type, reason, message). The
 * recorder keeps the last `cache_size` keys in a small LRU (a flat array,
 * scanned linearly: Events are written on transitions, not per reconcile,
 * and a few hundred entries scan in well under a microsecond each). An entry
 * remembers the Event's name, namespace, count and when it was last emitted.
 * A repeat inside the window PATCHes {count, lastTimestamp} of that Event; one
 * after the window, or a key not in the LRU, POSTs a new Event named
 * "<object name>.<16 random hex digits>" with count 1. If the PATCH finds the
 * Event gone (the API server expires Events after an hour by default) a new
 * one is created instead, as client-go does. Only senders read or write the
 * LRU (under mu; rec_events_cached reads it too). With one sender Events are
 * folded in the order they were queued and two workers emitting the same new
 * key never both create an Event; with several, a repeat written while its
 * first is still in flight may create a second Event (harmless: kubectl
 * describe lists both).
 *
 * Failures never reach the reconcile. A transient one (transport, 429, 503:
 * the API server down or restarting) is tried again by the sender after
 * a wait (0.5 s doubling to 10 s, up to max_tries, 12 by default: client-go
 * tries 12 times 10 s apart after a transport failure); the Events behind it
 * wait, in order. What still fails goes to the log hook and, for a failed
 * POST, the LRU entry is dropped so the next emission tries afresh.
 *
 * Shutdown: rec_events_free sets `stopping` and a monotonic deadline; the
 * sender goes on until the queue is empty or the deadline has passed, then
 * drops the rest (reported once) and exits; free joins it. Nothing is freed
 * while the sender runs, and the sender holds no lock across a request or a
 * log hook call, so free cannot deadlock with it.
 */
#include "rec_events.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "backoff.h"
#include "pv_clock.h"
#include "pv_strbuf.h"
#include "rec_util.h"
#include "pv_json.h"

#define EVENT_NAME_MAX 253
#define EVENT_SUFFIX_LEN 17 /* '.' and 16 hex digits */
#define DEFAULT_QUEUE_SIZE 1000
#define DEFAULT_DRAIN_TIMEOUT_MS 2000
#define MAX_SENDERS 16
#define DEFAULT_MAX_TRIES 12 /* client-go's maxTriesPerEvent */
#define EVENT_RETRY_FIRST_S 0.5
#define EVENT_RETRY_MAX_S 10.0 /* client-go's sleep between tries */
/* NamespaceLifecycle's answer to a create in a namespace being deleted. */
#define NS_TERMINATING_TEXT "because it is being terminated"

typedef struct ev_entry {
    char *identity; /* object uid, or kind/namespace/name when it has none */
    char *type;
    char *reason;
    char *message;
    char *name;       /* the Event's metadata.name */
    char *namespace_; /* the Event's namespace */
    char *first_ts;   /* firstTimestamp (RFC 3339) */
    long count;
    time_t last;   /* wall time of the last emission */
    uint64_t used; /* LRU tick */
} ev_entry;

/* One queued Event: every string points into data (one allocation, owned by the queue). */
typedef struct ev_item {
    struct ev_item *next;
    rec_object_ref ref;
    const char *type;
    const char *reason;
    char *message;
    time_t now; /* wall clock at emission */
    char data[];
} ev_item;

struct rec_events {
    kc_client *c;
    char *instance;
    size_t cap;
    int window;
    size_t qmax;
    int drain_ms;
    rec_events_log_fn log;
    void *log_user;
    rec_events_clock_fn clock;
    void *clock_user;

    /* The LRU: written by the sender only; mu so rec_events_cached may read it. */
    pthread_mutex_t mu;
    ev_entry *entries; /* cap slots, n used */
    size_t n;
    uint64_t tick;
    uint64_t seq; /* fallback entropy for names */

    /* The queue and the sender's state, under qmu. */
    pthread_mutex_t qmu;
    pthread_cond_t work; /* sender: an item or stopping */
    pthread_cond_t done; /* flush: done_seq moved (CLOCK_MONOTONIC) */
    pthread_cond_t quit; /* a sender waiting to try again: stopping (CLOCK_MONOTONIC) */
    int max_tries;
    ev_item *head, *tail;
    size_t qlen;
    uint64_t enq_seq;  /* items ever queued */
    uint64_t done_seq; /* items the sender finished with (written, failed or dropped) */
    size_t dropped;    /* Events refused because the queue was full, ever */
    bool overflow;     /* dropping since the queue was last empty */
    size_t overflow_dropped;
    bool stopping;
    double deadline; /* pv_clock_monotonic seconds, valid once stopping */
    pthread_t senders[MAX_SENDERS];
    int n_senders; /* started */
};

static void entry_clear(ev_entry *en)
{
    free(en->identity);
    free(en->type);
    free(en->reason);
    free(en->message);
    free(en->name);
    free(en->namespace_);
    free(en->first_ts);
    memset(en, 0, sizeof(*en));
}

const char *rec_events_strerror(int code)
{
    if (code == REC_EVENTS_ERR_DROPPED)
        return "event dropped (queue full or shutting down)";
    return kc_strerror(code);
}

static void *sender_main(void *arg);

int rec_events_new(kc_client *c, const rec_events_opts *opts, rec_events **out)
{
    if (!out)
        return KC_ERR_INVALID_ARG;
    *out = NULL;
    if (!c)
        return KC_ERR_INVALID_ARG;
    rec_events_opts o = {0};
    if (opts)
        o = *opts;
    rec_events *e = calloc(1, sizeof(*e));
    if (!e)
        return KC_ERR_NOMEM;
    e->c = c;
    e->cap = o.cache_size ? o.cache_size : 256;
    e->window = o.dedup_window_s > 0 ? o.dedup_window_s : 600;
    e->qmax = o.queue_size ? o.queue_size : DEFAULT_QUEUE_SIZE;
    e->drain_ms = o.drain_timeout_ms == 0 ? DEFAULT_DRAIN_TIMEOUT_MS : o.drain_timeout_ms;
    e->max_tries = o.max_tries > 0 ? o.max_tries : DEFAULT_MAX_TRIES;
    e->log = o.log;
    e->log_user = o.log_user;
    e->clock = o.clock;
    e->clock_user = o.clock_user;
    if (o.reporting_instance && *o.reporting_instance) {
        e->instance = strdup(o.reporting_instance);
    } else {
        char host[HOST_NAME_MAX + 1];
        if (gethostname(host, sizeof(host)) != 0)
            snprintf(host, sizeof(host), "provisio");
        host[HOST_NAME_MAX] = '\0';
        e->instance = strdup(host);
    }
    e->entries = calloc(e->cap, sizeof(*e->entries));
    /* done is waited on with a CLOCK_MONOTONIC deadline (flush). */
    pthread_condattr_t ca;
    int inited = 0; /* how many of mu, qmu, work, done, quit are initialised */
    bool ok = e->instance && e->entries && pthread_condattr_init(&ca) == 0;
    if (ok) {
        ok = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0;
        if (ok && (ok = pthread_mutex_init(&e->mu, NULL) == 0))
            inited++;
        if (ok && (ok = pthread_mutex_init(&e->qmu, NULL) == 0))
            inited++;
        if (ok && (ok = pthread_cond_init(&e->work, NULL) == 0))
            inited++;
        if (ok && (ok = pthread_cond_init(&e->done, &ca) == 0))
            inited++;
        if (ok && (ok = pthread_cond_init(&e->quit, &ca) == 0))
            inited++;
        pthread_condattr_destroy(&ca);
    }
    int want = o.senders > 0 ? (o.senders < MAX_SENDERS ? o.senders : MAX_SENDERS) : 1;
    while (ok && e->n_senders < want) {
        ok = pthread_create(&e->senders[e->n_senders], NULL, sender_main, e) == 0;
        if (ok)
            e->n_senders++;
    }
    if (!ok && e->n_senders > 0) {
        /* Stop the senders that did start (the queue is empty). */
        pthread_mutex_lock(&e->qmu);
        e->stopping = true;
        e->deadline = pv_clock_monotonic();
        pthread_cond_broadcast(&e->work);
        pthread_mutex_unlock(&e->qmu);
        for (int i = 0; i < e->n_senders; i++)
            pthread_join(e->senders[i], NULL);
    }
    if (!ok) {
        if (inited >= 5)
            pthread_cond_destroy(&e->quit);
        if (inited >= 4)
            pthread_cond_destroy(&e->done);
        if (inited >= 3)
            pthread_cond_destroy(&e->work);
        if (inited >= 2)
            pthread_mutex_destroy(&e->qmu);
        if (inited >= 1)
            pthread_mutex_destroy(&e->mu);
        free(e->instance);
        free(e->entries);
        free(e);
        return KC_ERR_NOMEM;
    }
    *out = e;
    return KC_OK;
}

void rec_events_free(rec_events *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&e->qmu);
    e->stopping = true;
    e->deadline = pv_clock_monotonic() + (e->drain_ms > 0 ? e->drain_ms / 1000.0 : 0);
    pthread_cond_broadcast(&e->work);
    pthread_cond_broadcast(&e->quit);
    pthread_mutex_unlock(&e->qmu);
    /* The senders empty the queue (writing or dropping) before they return. */
    for (int i = 0; i < e->n_senders; i++)
        pthread_join(e->senders[i], NULL);
    for (size_t i = 0; i < e->n; i++)
        entry_clear(&e->entries[i]);
    free(e->entries);
    free(e->instance);
    pthread_cond_destroy(&e->quit);
    pthread_cond_destroy(&e->done);
    pthread_cond_destroy(&e->work);
    pthread_mutex_destroy(&e->qmu);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

size_t rec_events_cached(rec_events *e)
{
    if (!e)
        return 0;
    pthread_mutex_lock(&e->mu);
    size_t n = e->n;
    pthread_mutex_unlock(&e->mu);
    return n;
}

size_t rec_events_dropped(rec_events *e)
{
    if (!e)
        return 0;
    pthread_mutex_lock(&e->qmu);
    size_t n = e->dropped;
    pthread_mutex_unlock(&e->qmu);
    return n;
}

int rec_events_flush(rec_events *e, int timeout_ms)
{
    if (!e)
        return KC_ERR_INVALID_ARG;
    struct timespec dl = pv_clock_timespec_in(timeout_ms > 0 ? timeout_ms / 1000.0 : 0);
    int rc = KC_OK;
    pthread_mutex_lock(&e->qmu);
    uint64_t target = e->enq_seq;
    while (e->done_seq < target) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&e->done, &e->qmu);
        } else if (pthread_cond_timedwait(&e->done, &e->qmu, &dl) == ETIMEDOUT &&
                   e->done_seq < target) {
            rc = KC_ERR_TIMEOUT;
            break;
        }
    }
    pthread_mutex_unlock(&e->qmu);
    return rc;
}

static time_t now_of(rec_events *e)
{
    return e->clock ? e->clock(e->clock_user) : time(NULL);
}

static bool str_eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* "<object name, cut to fit>.<16 hex>" (malloc'd) or NULL. Takes e->mu for the fallback. */
static char *event_name(rec_events *e, const char *obj_name)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
        /* No entropy yet (early boot): time and a counter are unique enough here. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        pthread_mutex_lock(&e->mu);
        uint64_t s = ++e->seq;
        pthread_mutex_unlock(&e->mu);
        r = ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^ (s << 40) ^
            (uint64_t)getpid();
    }
    if (!obj_name || !*obj_name)
        obj_name = "event";
    size_t len = strlen(obj_name);
    if (len > EVENT_NAME_MAX - EVENT_SUFFIX_LEN)
        len = EVENT_NAME_MAX - EVENT_SUFFIX_LEN;
    /* A cut name must still end a DNS label properly. */
    while (len > 0 && (obj_name[len - 1] == '.' || obj_name[len - 1] == '-'))
        len--;
    if (len == 0) {
        obj_name = "event";
        len = 5;
    }
    char *name = malloc(len + EVENT_SUFFIX_LEN + 1);
    if (!name)
        return NULL;
    memcpy(name, obj_name, len);
    snprintf(name + len, EVENT_SUFFIX_LEN + 1, ".%016llx", (unsigned long long)r);
    return name;
}

/* The namespace an Event about ref lives in. */
static const char *event_namespace(const rec_object_ref *ref)
{
    return ref->namespace_ && *ref->namespace_ ? ref->namespace_ : "default";
}

static json_object *event_body(rec_events *e, const rec_object_ref *ref, const char *name,
                               const char *type, const char *reason, const char *message,
                               const char *first_ts, const char *last_ts, long count)
{
    json_object *ev = json_object_new_object();
    if (!ev)
        return NULL;
    /* add_obj consumes its value even on failure, so each piece is attached first. */
    bool ok = pv_json_add_str(ev, "apiVersion", "v1") && pv_json_add_str(ev, "kind", "Event");
    json_object *meta = ok ? json_object_new_object() : NULL;
    ok = ok && pv_json_add(ev, "metadata", meta) && pv_json_add_str(meta, "name", name) &&
         pv_json_add_str(meta, "namespace", event_namespace(ref));
    json_object *inv = ok ? json_object_new_object() : NULL;
    ok = ok && pv_json_add(ev, "involvedObject", inv) &&
         pv_json_add_str(inv, "apiVersion", ref->api_version) &&
         pv_json_add_str(inv, "kind", ref->kind) && pv_json_add_str(inv, "name", ref->name) &&
         pv_json_add_str(inv, "namespace",
                         ref->namespace_ && *ref->namespace_ ? ref->namespace_ : NULL) &&
         pv_json_add_str(inv, "uid", ref->uid) &&
         pv_json_add_str(inv, "resourceVersion", ref->resource_version);
    json_object *src = ok ? json_object_new_object() : NULL;
    ok =
        ok && pv_json_add(ev, "source", src) && pv_json_add_str(src, "component", REC_EVENT_SOURCE);
    ok = ok && pv_json_add_str(ev, "reason", reason) && pv_json_add_str(ev, "message", message) &&
         pv_json_add_str(ev, "type", type) && pv_json_add_str(ev, "firstTimestamp", first_ts) &&
         pv_json_add_str(ev, "lastTimestamp", last_ts) &&
         pv_json_add(ev, "count", json_object_new_int64(count)) &&
         pv_json_add_str(ev, "reportingComponent", REC_EVENT_REPORTING_COMPONENT) &&
         pv_json_add_str(ev, "reportingInstance", e->instance);
    if (!ok) {
        json_object_put(ev);
        return NULL;
    }
    return ev;
}

/* Tell the log hook (if any) about an Event not written; detail NULL = the code's text. */
static void report(rec_events *e, int code, bool expected, const rec_object_ref *ref,
                   const char *reason, const char *what, const char *detail)
{
    if (!e->log)
        return;
    char *msg = NULL;
    if (asprintf(&msg, "event %s for %s %s%s%s not written (%s): %s", reason,
                 ref->kind ? ref->kind : "object", ref->namespace_ ? ref->namespace_ : "",
                 ref->namespace_ && *ref->namespace_ ? "/" : "", ref->name ? ref->name : "", what,
                 detail ? detail : rec_events_strerror(code)) < 0)
        msg = NULL;
    e->log(code, expected, msg ? msg : rec_events_strerror(code), e->log_user);
    free(msg);
}

/* The same for a message about no one Event ("... Events dropped ..."). */
static void report_msg(rec_events *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report_msg(rec_events *e, const char *fmt, ...)
{
    if (!e->log)
        return;
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (pv_vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    e->log(REC_EVENTS_ERR_DROPPED, false, msg ? msg : rec_events_strerror(REC_EVENTS_ERR_DROPPED),
           e->log_user);
    free(msg);
}

/*
 * A create that failed because the Event's namespace is being deleted (403
 * from NamespaceLifecycle) or is gone (404: the events collection of a
 * namespace that does not exist) is expected when objects go away with their
 * namespace.
 */
static bool namespace_gone(int rc, const kc_error *err)
{
    if (rc == KC_ERR_NOT_FOUND)
        return true;
    return rc == KC_ERR_FORBIDDEN && err->message && strstr(err->message, NS_TERMINATING_TEXT);
}

/* Index of the entry for the key, or -1. Caller holds mu. */
static long find_entry(rec_events *e, const char *identity, const char *type, const char *reason,
                       const char *message)
{
    for (size_t i = 0; i < e->n; i++) {
        ev_entry *en = &e->entries[i];
        if (str_eq(en->identity, identity) && str_eq(en->reason, reason) &&
            str_eq(en->type, type) && str_eq(en->message, message))
            return (long)i;
    }
    return -1;
}

/* A slot for a new entry (evicting the least recently used). Caller holds mu. */
static ev_entry *take_slot(rec_events *e)
{
    if (e->n < e->cap)
        return &e->entries[e->n++];
    size_t lru = 0;
    for (size_t i = 1; i < e->n; i++) {
        if (e->entries[i].used < e->entries[lru].used)
            lru = i;
    }
    entry_clear(&e->entries[lru]);
    return &e->entries[lru];
}

/* Drop the entry of key if it still names event `name`. */
static void forget(rec_events *e, const char *identity, const char *type, const char *reason,
                   const char *message, const char *name)
{
    pthread_mutex_lock(&e->mu);
    long i = find_entry(e, identity, type, reason, message);
    if (i >= 0 && str_eq(e->entries[i].name, name)) {
        entry_clear(&e->entries[i]);
        e->entries[i] = e->entries[e->n - 1];
        memset(&e->entries[e->n - 1], 0, sizeof(ev_entry));
        e->n--;
    }
    pthread_mutex_unlock(&e->mu);
}

/*
 * Record a new Event for the key in the LRU (replacing an expired entry).
 * Returns false on allocation failure (then nothing is remembered).
 */
static bool remember(rec_events *e, const char *identity, const char *type, const char *reason,
                     const char *message, const char *name, const char *ns, const char *ts,
                     time_t now)
{
    ev_entry fresh = {
        .identity = strdup(identity),
        .type = strdup(type),
        .reason = strdup(reason),
        .message = strdup(message),
        .name = strdup(name),
        .namespace_ = strdup(ns),
        .first_ts = strdup(ts),
        .count = 1,
        .last = now,
    };
    if (!fresh.identity || !fresh.type || !fresh.reason || !fresh.message || !fresh.name ||
        !fresh.namespace_ || !fresh.first_ts) {
        entry_clear(&fresh);
        return false;
    }
    pthread_mutex_lock(&e->mu);
    long i = find_entry(e, identity, type, reason, message);
    ev_entry *slot;
    if (i >= 0) {
        slot = &e->entries[i];
        entry_clear(slot);
    } else {
        slot = take_slot(e);
    }
    fresh.used = ++e->tick;
    *slot = fresh;
    pthread_mutex_unlock(&e->mu);
    return true;
}

/* POST a new Event. An API failure is not reported here: *err and *what
 * say what failed, for the caller (which may try again). */
static int create_event(rec_events *e, const rec_object_ref *ref, const char *identity,
                        const char *type, const char *reason, const char *message, time_t now,
                        kc_error *err)
{
    char ts[REC_TIME_STRLEN];
    if (!rec_format_time(now, ts))
        return kc_error_set(err, KC_ERR_INVALID_ARG, "the Event's time cannot be written");
    char *name = event_name(e, ref->name);
    json_object *body = name ? event_body(e, ref, name, type, reason, message, ts, ts, 1) : NULL;
    if (!body) {
        free(name);
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    }
    const char *ns = event_namespace(ref);
    /* Remember before the POST (as when emitters wrote themselves; harmless now). */
    bool remembered = remember(e, identity, type, reason, message, name, ns, ts, now);
    kc_ref er = {.version = "v1", .resource = "events", .namespace_ = ns};
    int rc = kc_create(e->c, &er, body, NULL, NULL, err);
    if (rc != KC_OK && remembered)
        forget(e, identity, type, reason, message, name);
    json_object_put(body);
    free(name);
    return rc;
}

/* Shutting down and past the drain deadline: start no more writes. Caller holds qmu. */
static bool give_up_locked(rec_events *e)
{
    if (!e->stopping)
        return false;
    return pv_clock_monotonic() >= e->deadline;
}

static bool give_up(rec_events *e)
{
    pthread_mutex_lock(&e->qmu);
    bool r = give_up_locked(e);
    pthread_mutex_unlock(&e->qmu);
    return r;
}

/*
 * A failure worth another try: the API server could not be reached (a
 * transport failure after the client's own retries) or answered that it
 * cannot serve now (429, 503: a restarting API server answers those, before
 * doing anything). client-go's recorder tries an Event up to 12 times, 10 s
 * apart, after a transport failure; the same here, with 429 and 503 too and
 * a shorter first wait, so an Event emitted across a restart is written. A
 * timeout or a 504 is not tried again: the server may have written the
 * Event, and a second POST would make a second one.
 */
static bool transient(int rc)
{
    return rc == KC_ERR_TRANSPORT || rc == KC_ERR_TOO_MANY_REQUESTS ||
           rc == KC_ERR_SERVICE_UNAVAILABLE;
}

/* The waits between tries of one Event: the informer's backoff, without
 * jitter (the Events behind it wait in order anyway) and never reset. */
static const bo_opts EVENT_BACKOFF = {
    .initial = EVENT_RETRY_FIRST_S, .max = EVENT_RETRY_MAX_S, .jitter = -1, .reset_after = -1};

/* Sleep delay seconds (or the server's Retry-After if longer, capped at
 * EVENT_RETRY_MAX_S) before the next try; false when rec_events_free's
 * deadline has come (give up). */
static bool retry_wait(rec_events *e, double delay, double retry_after)
{
    if (retry_after > delay)
        delay = retry_after < EVENT_RETRY_MAX_S ? retry_after : EVENT_RETRY_MAX_S;
    double until = pv_clock_monotonic() + delay;
    pthread_mutex_lock(&e->qmu);
    for (;;) {
        if (give_up_locked(e))
            break;
        double at = e->stopping && e->deadline < until ? e->deadline : until;
        if (pv_clock_monotonic() >= at)
            break;
        struct timespec ts = pv_clock_timespec(at);
        pthread_cond_timedwait(&e->quit, &e->qmu, &ts);
    }
    bool go = !give_up_locked(e);
    pthread_mutex_unlock(&e->qmu);
    return go;
}

/* The dedup decision for one queued Event, made once however many tries
 * its write takes: a repeat inside the window is a PATCH of the Event
 * `name` in `ns` to `count` (> 0); else (count 0) a new Event. */
typedef struct ev_decision {
    char *name, *ns;
    long count;
} ev_decision;

static void decide(rec_events *e, const ev_item *it, const char *identity, ev_decision *d)
{
    memset(d, 0, sizeof *d);
    pthread_mutex_lock(&e->mu);
    long i = find_entry(e, identity, it->type, it->reason, it->message);
    if (i >= 0) {
        ev_entry *en = &e->entries[i];
        if (it->now - en->last <= (time_t)e->window && it->now >= en->last) {
            d->name = strdup(en->name);
            d->ns = strdup(en->namespace_);
            if (d->name && d->ns) {
                en->count++;
                en->last = it->now;
                en->used = ++e->tick;
                d->count = en->count;
            }
        }
    }
    pthread_mutex_unlock(&e->mu);
    if (!d->count) { /* a new Event (also when a copy ran out of memory) */
        free(d->name);
        free(d->ns);
        d->name = d->ns = NULL;
    }
}

/*
 * One try at the write the decision d says. A failure is not reported:
 * *err holds it and *what says which write ("create", "patch");
 * REC_EVENTS_ERR_DROPPED when shutdown forbids a second write. A PATCH
 * finding the Event expired turns d into a create (for this try and the
 * next).
 */
static int send_once(rec_events *e, const ev_item *it, const char *identity, ev_decision *d,
                     kc_error *err, const char **what)
{
    const rec_object_ref *ref = &it->ref;
    const char *type = it->type, *reason = it->reason, *message = it->message;
    time_t now = it->now;
    if (d->count == 0) {
        *what = "create";
        return create_event(e, ref, identity, type, reason, message, now, err);
    }
    *what = "patch";
    char ts[REC_TIME_STRLEN];
    json_object *patch = rec_format_time(now, ts) ? json_object_new_object() : NULL;
    bool ok = patch && pv_json_add(patch, "count", json_object_new_int64(d->count)) &&
              pv_json_add_str(patch, "lastTimestamp", ts);
    int rc;
    if (!ok) {
        rc = kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    } else {
        kc_ref er = {.version = "v1", .resource = "events", .namespace_ = d->ns, .name = d->name};
        rc = kc_patch(e->c, &er, KC_PATCH_MERGE, patch, NULL, NULL, err);
        if (rc == KC_ERR_NOT_FOUND && give_up(e)) {
            /* free bounds the sender to the write in flight: no second one. */
            *what = "create";
            rc = kc_error_set(err, REC_EVENTS_ERR_DROPPED, "shutting down");
        } else if (rc == KC_ERR_NOT_FOUND) {
            /* Expired on the server: start a new Event. */
            d->count = 0;
            *what = "create";
            rc = create_event(e, ref, identity, type, reason, message, now, err);
        }
    }
    json_object_put(patch);
    return rc;
}

/* The write of one queued Event (sender thread), tried again after a
 * transient failure; what still failed is reported. */
static int send_item(rec_events *e, const ev_item *it)
{
    const rec_object_ref *ref = &it->ref;
    char *identity = NULL;
    if (ref->uid && *ref->uid)
        identity = strdup(ref->uid);
    else if (asprintf(&identity, "%s/%s/%s", ref->kind ? ref->kind : "",
                      ref->namespace_ ? ref->namespace_ : "", ref->name) < 0)
        identity = NULL;
    if (!identity) {
        report(e, KC_ERR_NOMEM, false, ref, it->reason, "create", NULL);
        return KC_ERR_NOMEM;
    }
    ev_decision d;
    decide(e, it, identity, &d);
    kc_error err = KC_ERROR_INIT;
    const char *what = "create";
    bo wait;
    bo_init(&wait, &EVENT_BACKOFF);
    int rc;
    for (int tries = 1;; tries++) {
        kc_error_clear(&err);
        rc = send_once(e, it, identity, &d, &err, &what);
        if (!transient(rc) || tries >= e->max_tries ||
            !retry_wait(e, bo_next(&wait), err.retry_after))
            break;
    }
    if (rc != KC_OK)
        report(e, rc, !strcmp(what, "create") && namespace_gone(rc, &err), ref, it->reason, what,
               err.message);
    kc_error_clear(&err);
    free(d.name);
    free(d.ns);
    free(identity);
    return rc;
}

/* Free every queued item; returns how many. Caller holds qmu. */
static size_t drop_queued(rec_events *e)
{
    size_t n = 0;
    while (e->head) {
        ev_item *it = e->head;
        e->head = it->next;
        free(it);
        n++;
    }
    e->tail = NULL;
    e->qlen = 0;
    return n;
}

/*
 * The end of an overflow: the queue is empty again. How many were dropped
 * since it filled (0 if it did not). Caller holds qmu.
 */
static size_t overflow_end_locked(rec_events *e)
{
    if (!e->overflow || e->qlen > 0)
        return 0;
    size_t n = e->overflow_dropped;
    e->overflow = false;
    e->overflow_dropped = 0;
    return n;
}

/*
 * Reports go out before done_seq moves, so a flush that returns has seen
 * every report about the Events it waited for.
 */
static void *sender_main(void *arg)
{
    rec_events *e = arg;
    pthread_mutex_lock(&e->qmu);
    for (;;) {
        while (!e->head && !e->stopping)
            pthread_cond_wait(&e->work, &e->qmu);
        if (!e->head)
            break; /* stopping, and everything written */
        size_t n = 0, full = 0;
        if (give_up_locked(e)) {
            n = drop_queued(e);
            full = overflow_end_locked(e);
            pthread_mutex_unlock(&e->qmu);
            report_msg(e,
                       "%zu queued Events dropped: not written within the %d ms drain timeout "
                       "at shutdown",
                       n, e->drain_ms > 0 ? e->drain_ms : 0);
        } else {
            ev_item *it = e->head;
            e->head = it->next;
            if (!e->head)
                e->tail = NULL;
            e->qlen--;
            pthread_mutex_unlock(&e->qmu);
            (void)send_item(e, it);
            free(it);
            n = 1;
            pthread_mutex_lock(&e->qmu);
            full = overflow_end_locked(e);
            pthread_mutex_unlock(&e->qmu);
        }
        if (full > 0)
            report_msg(e, "%zu Events dropped while the event queue (%zu) was full", full, e->qmax);
        pthread_mutex_lock(&e->qmu);
        e->done_seq += n;
        pthread_cond_broadcast(&e->done);
    }
    pthread_mutex_unlock(&e->qmu);
    return NULL;
}

/*
 * A queue item with copies of ref's strings, type and reason, and room for a
 * message of msg_len bytes (plus NUL) at it->message. NULL when out of memory.
 */
static ev_item *item_new(const rec_object_ref *ref, const char *type, const char *reason,
                         size_t msg_len)
{
    const char *src[8] = {ref->api_version,      ref->kind, ref->namespace_, ref->name, ref->uid,
                          ref->resource_version, type,      reason};
    size_t len[8], total = msg_len + 1;
    for (size_t i = 0; i < 8; i++) {
        len[i] = src[i] ? strlen(src[i]) + 1 : 0;
        if (len[i] > SIZE_MAX - sizeof(ev_item) - total)
            return NULL;
        total += len[i];
    }
    ev_item *it = malloc(sizeof(*it) + total);
    if (!it)
        return NULL;
    const char *dst[8];
    char *p = it->data;
    for (size_t i = 0; i < 8; i++) {
        dst[i] = src[i] ? memcpy(p, src[i], len[i]) : NULL;
        p += len[i];
    }
    it->next = NULL;
    it->ref = (rec_object_ref){.api_version = dst[0],
                               .kind = dst[1],
                               .namespace_ = dst[2],
                               .name = dst[3],
                               .uid = dst[4],
                               .resource_version = dst[5]};
    it->type = dst[6];
    it->reason = dst[7];
    it->message = p;
    it->message[0] = '\0';
    it->now = 0;
    return it;
}

/* Append it (consumed) or drop it when the queue is full. Emitting thread. */
static int enqueue(rec_events *e, ev_item *it)
{
    it->now = now_of(e);
    pthread_mutex_lock(&e->qmu);
    if (e->qlen >= e->qmax) {
        e->dropped++;
        e->overflow_dropped++;
        bool first = !e->overflow;
        e->overflow = true;
        pthread_mutex_unlock(&e->qmu);
        if (first) {
            char detail[96];
            snprintf(detail, sizeof(detail),
                     "event queue full (%zu waiting); dropping Events until it drains", e->qmax);
            report(e, REC_EVENTS_ERR_DROPPED, false, &it->ref, it->reason, "dropped", detail);
        }
        free(it);
        return REC_EVENTS_ERR_DROPPED;
    }
    if (e->tail)
        e->tail->next = it;
    else
        e->head = it;
    e->tail = it;
    e->qlen++;
    e->enq_seq++;
    pthread_cond_signal(&e->work);
    pthread_mutex_unlock(&e->qmu);
    return KC_OK;
}

/* Arguments every emission needs; false when unusable. */
static bool valid_args(rec_events *e, const rec_object_ref *ref, const char *reason)
{
    return e && ref && ref->name && *ref->name && reason && *reason;
}

int rec_event_ref(rec_events *e, const rec_object_ref *ref, const char *type, const char *reason,
                  const char *message)
{
    if (!valid_args(e, ref, reason))
        return KC_ERR_INVALID_ARG;
    if (!type || !*type)
        type = REC_EVENT_NORMAL;
    if (!message)
        message = "";
    size_t mlen = strlen(message);
    ev_item *it = item_new(ref, type, reason, mlen);
    if (!it) {
        report(e, KC_ERR_NOMEM, false, ref, reason, "queue", NULL);
        return KC_ERR_NOMEM;
    }
    memcpy(it->message, message, mlen + 1);
    return enqueue(e, it);
}

int rec_event(rec_events *e, json_object *obj, const char *api_version, const char *kind,
              const char *type, const char *reason, const char *fmt, ...)
{
    if (!e || !obj || !fmt)
        return KC_ERR_INVALID_ARG;
    const char *av = rec_obj_str(obj, "apiVersion");
    const char *k = rec_obj_str(obj, "kind");
    rec_object_ref ref = {
        .api_version = av && *av ? av : api_version,
        .kind = k && *k ? k : kind,
        .namespace_ = rec_obj_str(obj, "metadata.namespace"),
        .name = rec_obj_str(obj, "metadata.name"),
        .uid = rec_obj_str(obj, "metadata.uid"),
        .resource_version = rec_obj_str(obj, "metadata.resourceVersion"),
    };
    if (!valid_args(e, &ref, reason))
        return KC_ERR_INVALID_ARG;
    if (!type || !*type)
        type = REC_EVENT_NORMAL;
    /* Format straight into the queue item: one allocation per Event. */
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    ev_item *it = n >= 0 ? item_new(&ref, type, reason, (size_t)n) : NULL;
    if (it && vsnprintf(it->message, (size_t)n + 1, fmt, ap2) != n) {
        free(it);
        it = NULL;
    }
    va_end(ap2);
    if (!it) {
        report(e, KC_ERR_NOMEM, false, &ref, reason, n < 0 ? "format" : "queue", NULL);
        return KC_ERR_NOMEM;
    }
    return enqueue(e, it);
}
