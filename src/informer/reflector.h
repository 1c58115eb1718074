/*
 * refl - the reflector: keeps a store (store.h) equal to what the API server
 * holds for one resource type, client-go's cache.Reflector semantics.
 *
 * One background thread per reflector runs the list+watch loop:
 *
 *   1. List in pages (limit 500, following metadata.continue), applying
 *      each page to the store as it arrives (so only one page of parsed
 *      objects is in memory at a time; each item is parsed and transformed
 *      on its own, kc_list_each, before the next is parsed): an add for every new key, an update
 *      (old, new) for every key whose resourceVersion changed, nothing for
 *      an unchanged object; once the last page is in, every cached key the
 *      list did not have is deleted and reported. A relist thus neither
 *      loses nor invents a change. For readers it is not atomic: while it
 *      runs some objects may already be newer than others and deleted ones
 *      still cached, as in any lagging cache (each object is whole, indexes
 *      always match). The list is a consistent read (no resourceVersion
 *      sent); a continue token that expired (410) restarts the list once.
 *   2. Watch from the list's resourceVersion with allowWatchBookmarks=true
 *      and timeoutSeconds drawn at random in [300, 600] s (so that many
 *      reflectors do not all re-watch at once). ADDED/MODIFIED are applied
 *      with store_add (reported as an add, or as an update when the key was
 *      cached), DELETED with store_delete (reported with the event's object,
 *      even when the key was not cached). Every event's
 *      metadata.resourceVersion becomes the last resourceVersion; a BOOKMARK
 *      only advances it.
 *   3. When the server ends the watch normally (its timeout), watch again
 *      from the last resourceVersion. A watch that ends within a second
 *      without any event is treated as an error (client-go's "very short
 *      watch"), so a misbehaving server cannot spin the loop.
 *   4. 410 Gone / "too old resource version" (as the answer or as an ERROR
 *      event) means the resourceVersion was compacted away: relist. The
 *      relist is immediate when the watch had made progress, after a backoff
 *      when the 410 came straight after a list (no hot loop).
 *   5. Other failures back off (0.8 s doubling to 30 s, jittered upwards, the
 *      sequence reset after two minutes without failures; backoff.h) and
 *      then, as client-go does:
 *        - transport failures (no answer, stream cut) and 429: watch again
 *          from the last resourceVersion (a 429's Retry-After is honoured);
 *          a stream that delivered events before it broke is re-watched at
 *          once;
 *        - anything else (5xx, 403, an undecodable stream, an ERROR event
 *          other than 410): relist.
 *      A failed list is retried after the backoff.
 *
 * An event whose object has no metadata.name is skipped (logged through the
 * log hook, counted in refl_stats.skipped_total); the watch goes on.
 *
 * Events are reported through on_event on the reflector thread, after the
 * store was changed, in the order the changes were made. When write_lock is
 * given, it is held around every store write together with the on_event
 * calls that report it (and on_synced): a holder of write_lock sees the store
 * and the reported events agree. The shared informer (informer.h) uses this
 * to register late handlers consistently.
 *
 * Object ownership in on_event: old_obj and obj are references that pass to
 * the callee, which must release each non-NULL one with store_obj_put (never
 * json_object_put). They may be shared with the store (STORE_SHARED): treat
 * them as read-only under the store's rules (store.h). Objects of watch
 * events are deep copies made by the reflector (the decoder's objects are
 * freed on the watch thread after the event callback, so they are never
 * shared).
 *
 * Stopping: refl_stop from any other thread returns within milliseconds when
 * the reflector is watching, backing off or waiting for the page lock
 * (kc_watch_stop wakes the watch, a condition variable the sleep, the lock
 * wait looks every 50 ms); a list request is cancelled (kc_list_opts.cancel:
 * its retry backoff cut short at once, an attempt in flight within about a
 * second) and nothing more is requested.
 * A reflector runs once: after refl_stop it cannot be started again.
 *
 * Threading: refl_new/refl_start/refl_stop/refl_free from an owner thread
 * (never from on_event, on_synced or log: they run on the reflector thread);
 * refl_has_synced, refl_wait_synced, refl_last_resource_version and
 * refl_stats_get from any thread at any time between refl_new and refl_free.
 *
 * Errors: 0 or a negative kc_status.
 */
#ifndef PROVISIO_REFLECTOR_H
#define PROVISIO_REFLECTOR_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "backoff.h"
#include "kc_client.h"
#include "store.h"

typedef struct refl refl;

typedef enum refl_event_type {
    REFL_ADD = 0,    /* obj is new in the store */
    REFL_UPDATE = 1, /* old_obj was replaced by obj */
    REFL_DELETE = 2, /* obj was deleted (the watch event's object, or the last
                      * cached state when a relist found the key gone) */
} refl_event_type;

/* Levels of the log hook; the same order as the manager's plog levels. */
typedef enum refl_log_level {
    REFL_LOG_DEBUG = 0,
    REFL_LOG_INFO = 1,
    REFL_LOG_ERROR = 2,
} refl_log_level;

/*
 * A store change. old_obj is NULL except for REFL_UPDATE. The references are
 * the callee's (see above). Runs on the reflector thread, with write_lock
 * held when one was given: keep it short (queue the change, do not call the
 * API server) and never call refl_stop/refl_free from it.
 */
typedef void (*refl_event_fn)(refl_event_type type, json_object *old_obj, json_object *obj,
                              void *user);

/* The first list was applied (called once, after its events, under write_lock). */
typedef void (*refl_synced_fn)(void *user);

/* Whether on_event wants the object a watch MODIFIED event replaced (called
 * under write_lock before the store write). false: on_event gets NULL as
 * old_obj of that update, and a STORE_COMPACT store does not decode it. */
typedef bool (*refl_want_old_fn)(void *user);

/*
 * A line for the log: msg (borrowed for the call) already names the
 * resource; err is the failure behind it, or NULL. Reflector thread. With no
 * hook, REFL_LOG_ERROR lines go to stderr and the rest nowhere.
 */
typedef void (*refl_log_fn)(refl_log_level level, const char *msg, const kc_error *err, void *user);

/*
 * Called on every listed item and watched object before it enters the store
 * (and before any handler sees it), on the reflector thread. obj is private
 * to the call: the function may remove or change members in place (not
 * metadata.name, namespace or resourceVersion) but must not keep it or take
 * references to it. controller-runtime's cache transforms, e.g.
 * refl_strip_managed_fields.
 */
typedef void (*refl_transform_fn)(json_object *obj, void *user);

/* A transform: drop metadata.managedFields (server-side apply bookkeeping
 * the operator never reads; often more than half of a small object). */
void refl_strip_managed_fields(json_object *obj, void *user);

typedef struct refl_opts {
    /* What to list and watch: group, version, resource, and namespace_
     * (NULL or "" = all namespaces or cluster-scoped). name and subresource
     * must be NULL. Strings are copied. */
    kc_ref ref;
    const char *label_selector; /* copied; NULL = none */
    const char *field_selector; /* copied; NULL = none */

    long page_size;         /* list limit; 0 = 500 */
    long watch_timeout_min; /* timeoutSeconds is drawn in [min, max]; 0 = 300 */
    long watch_timeout_max; /* 0 = 600 (raised to min when smaller) */
    bo_opts backoff;        /* zeroed = 0.8 s doubling to 30 s, jitter 1.0, reset after 120 s */
    size_t max_event_bytes; /* largest watch event; 0 = the client's default (16 MiB) */

    pthread_mutex_t *write_lock; /* optional; borrowed, must outlive the reflector */
    /* Optional; borrowed, must outlive the reflector. Held from each list
     * page's request until its items are in the store, so reflectors that
     * share it have one page of parsed objects alive at a time (a page of
     * 500 IPClaims is ~3 MiB of json-c trees once managedFields are
     * stripped, with the response text besides). Watches are not affected. */
    pthread_mutex_t *page_lock;
    refl_event_fn on_event;      /* optional: NULL releases the objects */
    refl_synced_fn on_synced;    /* optional */
    refl_want_old_fn want_old;   /* optional: NULL = always */
    refl_log_fn log;             /* optional */
    void *user;                  /* borrowed; passed to the three hooks */
    refl_transform_fn transform; /* optional */
    void *transform_user;        /* borrowed; passed to transform */
} refl_opts;

/* Counters for metrics; all since refl_new. */
typedef struct refl_stats {
    uint64_t lists_total;        /* list attempts (a list is all its pages) */
    uint64_t list_errors_total;  /* failed lists */
    uint64_t watches_total;      /* watch requests */
    uint64_t watch_errors_total; /* watches that ended with an error */
    uint64_t gone_total;         /* 410s that forced a relist */
    uint64_t events_total;       /* ADDED/MODIFIED/DELETED applied */
    uint64_t bookmarks_total;
    uint64_t skipped_total;  /* events and list items without metadata.name */
    uint64_t objects_listed; /* items of the last successful list */
    bool synced;
} refl_stats;

/*
 * A reflector writing into s (borrowed: must outlive the reflector; nobody
 * else should write to it) through client c (borrowed, likewise). opts is
 * copied (its strings too). Nothing runs until refl_start.
 * KC_ERR_INVALID_ARG for a missing version/resource or a ref with a name.
 */
int refl_new(kc_client *c, store *s, const refl_opts *opts, refl **out);

/* Start the list+watch thread. KC_ERR_INVALID_ARG if already started. */
int refl_start(refl *r);

/*
 * Stop the thread and wait for it (see "Stopping"). Idempotent; a no-op on
 * a reflector that was never started.
 */
void refl_stop(refl *r);

/* refl_stop, then free. r may be NULL. */
void refl_free(refl *r);

/* True once the first list has been applied to the store (and reported). */
bool refl_has_synced(refl *r);

/* Wait up to timeout seconds (< 0: forever) for refl_has_synced. */
bool refl_wait_synced(refl *r, double timeout);

/*
 * The last resourceVersion seen (list, event or bookmark): *out is a
 * malloc'd copy (caller frees), or NULL before the first list.
 */
int refl_last_resource_version(refl *r, char **out);

void refl_stats_get(refl *r, refl_stats *out);

#endif
