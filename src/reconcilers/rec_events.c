/*
 * rec_events - core/v1 Events with client-go-like folding of repeats.
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
 * one is created instead, as client-go does.
 *
 * The mutex guards only the LRU and is never held across a request, so a slow
 * API server delays only the workers that emit. Two threads emitting the same
 * new key at once may both see the entry the first one inserted: the second
 * then PATCHes an Event whose POST may not have landed yet, gets 404 and
 * creates its own. That is the price of not serialising workers on the lock,
 * and an extra Event is harmless.
 *
 * Failures never reach the reconcile: they go to the log hook and, for a
 * failed POST, the LRU entry is dropped so the next emission tries afresh.
 */
#include "rec_events.h"

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

#include "rec_util.h"

#define EVENT_NAME_MAX 253
#define EVENT_SUFFIX_LEN 17 /* '.' and 16 hex digits */

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

struct rec_events {
    kc_client *c;
    char *instance;
    size_t cap;
    int window;
    rec_events_log_fn log;
    void *log_user;
    rec_events_clock_fn clock;
    void *clock_user;

    pthread_mutex_t mu;
    ev_entry *entries; /* cap slots, n used */
    size_t n;
    uint64_t tick;
    uint64_t seq; /* fallback entropy for names */
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
    if (!e->instance || !e->entries || pthread_mutex_init(&e->mu, NULL) != 0) {
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
    for (size_t i = 0; i < e->n; i++)
        entry_clear(&e->entries[i]);
    free(e->entries);
    free(e->instance);
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

static bool add_str(json_object *o, const char *key, const char *value)
{
    if (!value)
        return true;
    json_object *v = json_object_new_string(value);
    if (!v || json_object_object_add(o, key, v) != 0) {
        json_object_put(v);
        return false;
    }
    return true;
}

static bool add_obj(json_object *o, const char *key, json_object *v)
{
    if (!v || json_object_object_add(o, key, v) != 0) {
        json_object_put(v);
        return false;
    }
    return true;
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
    bool ok = add_str(ev, "apiVersion", "v1") && add_str(ev, "kind", "Event");
    json_object *meta = ok ? json_object_new_object() : NULL;
    ok = ok && add_obj(ev, "metadata", meta) && add_str(meta, "name", name) &&
         add_str(meta, "namespace", event_namespace(ref));
    json_object *inv = ok ? json_object_new_object() : NULL;
    ok = ok && add_obj(ev, "involvedObject", inv) && add_str(inv, "apiVersion", ref->api_version) &&
         add_str(inv, "kind", ref->kind) && add_str(inv, "name", ref->name) &&
         add_str(inv, "namespace", ref->namespace_ && *ref->namespace_ ? ref->namespace_ : NULL) &&
         add_str(inv, "uid", ref->uid) && add_str(inv, "resourceVersion", ref->resource_version);
    json_object *src = ok ? json_object_new_object() : NULL;
    ok = ok && add_obj(ev, "source", src) && add_str(src, "component", REC_EVENT_SOURCE);
    ok = ok && add_str(ev, "reason", reason) && add_str(ev, "message", message) &&
         add_str(ev, "type", type) && add_str(ev, "firstTimestamp", first_ts) &&
         add_str(ev, "lastTimestamp", last_ts) &&
         add_obj(ev, "count", json_object_new_int64(count)) &&
         add_str(ev, "reportingComponent", REC_EVENT_REPORTING_COMPONENT) &&
         add_str(ev, "reportingInstance", e->instance);
    if (!ok) {
        json_object_put(ev);
        return NULL;
    }
    return ev;
}

static void report(rec_events *e, int code, const rec_object_ref *ref, const char *reason,
                   const char *what, const kc_error *err)
{
    if (!e->log)
        return;
    char *msg = NULL;
    if (asprintf(&msg, "event %s for %s %s%s%s not written (%s): %s", reason,
                 ref->kind ? ref->kind : "object", ref->namespace_ ? ref->namespace_ : "",
                 ref->namespace_ && *ref->namespace_ ? "/" : "", ref->name ? ref->name : "", what,
                 err && err->message ? err->message : kc_strerror(code)) < 0)
        msg = NULL;
    e->log(code, msg ? msg : kc_strerror(code), e->log_user);
    free(msg);
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

static int create_event(rec_events *e, const rec_object_ref *ref, const char *identity,
                        const char *type, const char *reason, const char *message, time_t now)
{
    char ts[REC_TIME_STRLEN];
    if (!rec_format_time(now, ts))
        return KC_ERR_INVALID_ARG;
    char *name = event_name(e, ref->name);
    json_object *body = name ? event_body(e, ref, name, type, reason, message, ts, ts, 1) : NULL;
    if (!body) {
        free(name);
        report(e, KC_ERR_NOMEM, ref, reason, "create", NULL);
        return KC_ERR_NOMEM;
    }
    const char *ns = event_namespace(ref);
    /* Remember before the POST so a concurrent repeat folds into this Event. */
    bool remembered = remember(e, identity, type, reason, message, name, ns, ts, now);
    kc_ref er = {.version = "v1", .resource = "events", .namespace_ = ns};
    kc_error err = KC_ERROR_INIT;
    int rc = kc_create(e->c, &er, body, NULL, NULL, &err);
    if (rc != KC_OK) {
        report(e, rc, ref, reason, "create", &err);
        if (remembered)
            forget(e, identity, type, reason, message, name);
    }
    kc_error_clear(&err);
    json_object_put(body);
    free(name);
    return rc;
}

int rec_event_ref(rec_events *e, const rec_object_ref *ref, const char *type, const char *reason,
                  const char *message)
{
    if (!e || !ref || !ref->name || !*ref->name || !reason || !*reason)
        return KC_ERR_INVALID_ARG;
    if (!type || !*type)
        type = REC_EVENT_NORMAL;
    if (!message)
        message = "";

    char *identity = NULL;
    if (ref->uid && *ref->uid)
        identity = strdup(ref->uid);
    else if (asprintf(&identity, "%s/%s/%s", ref->kind ? ref->kind : "",
                      ref->namespace_ ? ref->namespace_ : "", ref->name) < 0)
        identity = NULL;
    if (!identity) {
        report(e, KC_ERR_NOMEM, ref, reason, "create", NULL);
        return KC_ERR_NOMEM;
    }

    time_t now = now_of(e);
    char *name = NULL, *ns = NULL;
    long count = 0;
    pthread_mutex_lock(&e->mu);
    long i = find_entry(e, identity, type, reason, message);
    if (i >= 0) {
        ev_entry *en = &e->entries[i];
        if (now - en->last <= (time_t)e->window && now >= en->last) {
            name = strdup(en->name);
            ns = strdup(en->namespace_);
            if (name && ns) {
                en->count++;
                en->last = now;
                en->used = ++e->tick;
                count = en->count;
            }
        }
    }
    pthread_mutex_unlock(&e->mu);

    int rc;
    if (count > 0) {
        char ts[REC_TIME_STRLEN];
        json_object *patch = rec_format_time(now, ts) ? json_object_new_object() : NULL;
        bool ok = patch && add_obj(patch, "count", json_object_new_int64(count)) &&
                  add_str(patch, "lastTimestamp", ts);
        if (!ok) {
            rc = KC_ERR_NOMEM;
            report(e, rc, ref, reason, "patch", NULL);
        } else {
            kc_ref er = {.version = "v1", .resource = "events", .namespace_ = ns, .name = name};
            kc_error err = KC_ERROR_INIT;
            rc = kc_patch(e->c, &er, KC_PATCH_MERGE, patch, NULL, NULL, &err);
            if (rc == KC_ERR_NOT_FOUND) {
                /* Expired on the server: start a new Event. */
                rc = create_event(e, ref, identity, type, reason, message, now);
            } else if (rc != KC_OK) {
                report(e, rc, ref, reason, "patch", &err);
            }
            kc_error_clear(&err);
        }
        json_object_put(patch);
    } else {
        rc = create_event(e, ref, identity, type, reason, message, now);
    }
    free(name);
    free(ns);
    free(identity);
    return rc;
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
    char *message = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&message, fmt, ap);
    va_end(ap);
    if (n < 0) {
        report(e, KC_ERR_NOMEM, &ref, reason ? reason : "", "format", NULL);
        return KC_ERR_NOMEM;
    }
    int rc = rec_event_ref(e, &ref, type, reason, message);
    free(message);
    return rc;
}
