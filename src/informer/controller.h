/*
 * ctl - the controller runtime: informer events -> work queue keys ->
 * reconcile workers (controller-runtime's Controller, Builder watches and
 * reconcileHandler semantics).
 *
 * Watches (any number, registered before or after start):
 *   - ctl_watch_for(informer): the primary type. Every add/update/delete
 *     enqueues the object's own key, "namespace/name" (or "name").
 *   - ctl_watch_owns(informer, owner): objects this controller owns. Events
 *     enqueue the key of the object's *controller* owner: the entry of
 *     metadata.ownerReferences with controller=true whose apiVersion group
 *     and kind match the owner (the version is ignored), in the object's
 *     namespace (or none for a cluster-scoped owner). An update enqueues the
 *     owners of both the old and the new object.
 *   - ctl_watch_map(informer, fn): any mapping from an object to keys (a
 *     pool change enqueues the claims waiting on it). An update maps both
 *     the old and the new object.
 * Event handlers run on the informers' dispatch threads; keys go to the
 * work queue (wq.h: deduplicated, one worker per key at a time).
 *
 * Workers: ctl_start starts max_concurrent_reconciles threads and enqueues
 * every key cached by the For informer (controller-runtime lists again when
 * it becomes leader, so nothing that changed while this replica was standby
 * is missed). ctl_stop stops them at once (the lease was lost): the queue is
 * shut down, no new reconcile begins, and ctl_stop waits only for
 * reconciles already running (they can check ctl_ctx_stopping() to return
 * early). Keys queued or delayed at that moment are dropped; the next
 * ctl_start re-enqueues everything from the cache, so they are reprocessed.
 * While stopped, events are not queued (the restart covers them). Start and
 * stop may alternate any number of times.
 *
 * Reconcile results (what the worker does with the key afterwards):
 *   CTL_DONE               wq_forget (backoff reset)         result "success"
 *   CTL_REQUEUE            wq_add_rate_limited               result "requeue"
 *   CTL_REQUEUE_AFTER(s)   wq_forget, wq_add_after(s)        result "requeue_after"
 *                          (s <= 0 is treated as CTL_REQUEUE)
 *   CTL_ERROR(code, msg)   wq_add_rate_limited, logged,      result "error"
 *                          reconcile_errors_total++
 * An unknown outcome counts as an error. A reconcile that fails forever is
 * retried with per-key exponential backoff (5 ms doubling to 1000 s by
 * default) and never stops the controller. One departure from
 * controller-runtime: an error that only says the API server could not
 * answer (KC_ERR_TRANSPORT, KC_ERR_TIMEOUT, 429, 503, 504) backs off to at
 * most CTL_TRANSIENT_MAX_DELAY (wq_add_rate_limited_cap), so keys that failed
 * all through an API server restart are retried within seconds of its return
 * instead of minutes later (the token bucket still bounds the retries); C cannot recover from a
 * crash inside the reconcile function itself, so that function must not crash.
 *
 * Each reconcile gets a ctl_ctx with a reconcileID (16 random hex
 * characters) for its log lines.
 *
 * Metrics: hooks (called on worker threads) feed the manager's registry
 * with controller-runtime's families -- reconcile_done for
 * controller_runtime_reconcile_total{controller,result},
 * controller_runtime_reconcile_errors_total and
 * controller_runtime_reconcile_time_seconds; workqueue_observe for the
 * workqueue_*_duration_seconds histograms; ctl_stats_get (read it in a
 * collector at scrape time) for active_workers, max_concurrent_reconciles and
 * the workqueue gauges/counters. This layer does not include manager
 * headers.
 *
 * Wiring (what the manager does; error checks left out):
 *
 *   inf_factory *f;
 *   inf_factory_new(client, &(inf_factory_opts){.store_mode = INF_STORE_COMPACT}, &f);
 *   kc_ref claims = {.group = "provisio.dev", .version = "v1alpha1", .resource = "ipclaims"};
 *   kc_ref pools = {.group = "provisio.dev", .version = "v1alpha1", .resource = "ippools"};
 *   inf_informer *ci, *pi;
 *   inf_factory_get(f, &claims, NULL, &ci);
 *   inf_factory_get(f, &pools, NULL, &pi);
 *   inf_add_index(ci, "by-pool", store_index_field, "spec.pool");   // before start
 *   ctl *c;
 *   ctl_new("ipclaim", &(ctl_opts){.max_concurrent_reconciles = 4}, reconcile_claim, app, &c);
 *   ctl_watch_for(c, ci);
 *   ctl_watch_map(c, pi, claims_of_pool, app);   // a pool change wakes its claims
 *   inf_factory_start(f);
 *   ctl_wait_for_sync(c, 60);
 *   ctl_start(c);        // on becoming leader
 *   ...
 *   ctl_stop(c);         // on losing the lease
 *   ctl_free(c);
 *   inf_factory_free(f);
 *
 * and in reconcile_claim, reading the cache (never the API server):
 *
 *   char *key = ...namespace_/name...;
 *   json_object *claim;
 *   if (store_get(inf_store(app->claims), key, &claim) == KC_ERR_NOT_FOUND)
 *       return ctl_done();            // deleted: nothing to do
 *   ... read claim (read-only), write through kc_* ...
 *   store_obj_put(claim);
 *   return ctl_done();
 *
 * Threading: every function may be called from any thread, except that
 * ctl_stop and ctl_free must not be called from a reconcile (they wait for
 * the workers) nor from an informer handler. Controllers must be freed
 * before the informer factory they watch.
 *
 * Errors: 0 or a negative kc_status.
 */
#ifndef PROVISIO_CONTROLLER_H
#define PROVISIO_CONTROLLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "informer.h"
#include "wq.h"

typedef struct ctl ctl;

/* What a reconcile is about; borrowed for the call. */
typedef struct ctl_ctx {
    const char *controller;   /* the controller's name */
    const char *reconcile_id; /* 16 lower-case hex characters */
    const char *key;          /* "namespace/name" or "name" */
    int worker;               /* 0 .. max_concurrent_reconciles-1 */
    ctl *c;                   /* the controller */
    void *priv_;              /* internal: the worker generation */
} ctl_ctx;

/* True once ctl_stop was called for the workers running this reconcile. */
bool ctl_ctx_stopping(const ctl_ctx *ctx);

typedef enum ctl_outcome {
    CTL_DONE = 0,
    CTL_REQUEUE = 1,
    CTL_REQUEUE_AFTER = 2,
    CTL_ERROR = 3,
} ctl_outcome;

/* The backoff cap of a key whose reconcile failed for a transient API error. */
#define CTL_TRANSIENT_MAX_DELAY 2.0

typedef struct ctl_result {
    ctl_outcome outcome;
    double after;  /* CTL_REQUEUE_AFTER: seconds */
    int error;     /* CTL_ERROR: a negative kc_status or any code of the caller's */
    char *message; /* CTL_ERROR: malloc'd description or NULL; the controller frees it */
} ctl_result;

static inline ctl_result ctl_done(void)
{
    ctl_result r = {CTL_DONE, 0, 0, NULL};
    return r;
}

static inline ctl_result ctl_requeue(void)
{
    ctl_result r = {CTL_REQUEUE, 0, 0, NULL};
    return r;
}

static inline ctl_result ctl_requeue_after(double seconds)
{
    ctl_result r = {CTL_REQUEUE_AFTER, seconds, 0, NULL};
    return r;
}

/* An error result with a printf-style message (allocation failure: no message). */
ctl_result ctl_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Reconcile one object. namespace_ is "" for a cluster-scoped key (usable as
 * kc_ref.namespace_ directly); both strings are borrowed for the call.
 * Runs on a worker thread; several run at once for different keys, never
 * two for the same key.
 */
typedef ctl_result (*ctl_reconcile_fn)(const ctl_ctx *ctx, const char *namespace_, const char *name,
                                       void *user);

/* Hooks for metrics and logs; each may be NULL. Any worker thread. */
typedef struct ctl_hooks {
    /* After every reconcile: result is "success", "error", "requeue" or
     * "requeue_after" (the metrics.h MET_RESULT_* values). */
    void (*reconcile_done)(const char *controller, const char *result, double seconds, void *user);
    /* Raw workqueue histogram observations (WQ_METRIC_QUEUE_DURATION,
     * WQ_METRIC_WORK_DURATION). */
    void (*workqueue_observe)(const char *controller, const char *metric, double seconds,
                              void *user);
    /* A failed reconcile (CTL_ERROR or an unknown outcome). message may be
     * NULL. With no hook, a line goes to stderr. */
    void (*reconcile_error)(const ctl_ctx *ctx, int code, const char *message, void *user);
    void *user; /* borrowed */
} ctl_hooks;

typedef struct ctl_opts {
    int max_concurrent_reconciles; /* 0 = 1 */
    wq_opts queue;                 /* rate limiting of the queue (observe is set by ctl) */
    ctl_hooks hooks;
} ctl_opts;

/*
 * A controller called name (copied; also the metrics label). opts may be
 * NULL (defaults; copied). fn is called with user (borrowed). Nothing runs
 * until ctl_start.
 */
int ctl_new(const char *name, const ctl_opts *opts, ctl_reconcile_fn fn, void *user, ctl **out);

/* ctl_stop, unregister every handler, free. c may be NULL. */
void ctl_free(ctl *c);

/* The primary informer (one per controller: KC_ERR_INVALID_ARG for a second). */
int ctl_watch_for(ctl *c, inf_informer *inf);

/*
 * Whether an event of the primary enqueues its key: obj is the object the
 * event carries (the new one of an update; borrowed, read-only under the
 * store's rules). Runs on inf's dispatch thread; it may read informer stores.
 */
typedef bool (*ctl_pred_fn)(json_object *obj, void *user);

/*
 * ctl_watch_for whose events enqueue the object's key only when pred(obj,
 * user) is true (controller-runtime's predicates on a For watch): a cheap
 * test on the event's object spares a reconcile that would read the object
 * from the cache and do nothing. Keys given to ctl_enqueue, and the whole
 * cache a start enqueues, are not filtered.
 */
int ctl_watch_for_if(ctl *c, inf_informer *inf, ctl_pred_fn pred, void *user);

typedef struct ctl_owner {
    const char *group;   /* owner apiVersion group; NULL = the For informer's group */
    const char *kind;    /* owner kind, e.g. "IPClaim" */
    bool cluster_scoped; /* the owner has no namespace: its key is just the name */
} ctl_owner;

/* Objects of inf owned (controller=true) by owner (copied). */
int ctl_watch_owns(ctl *c, inf_informer *inf, const ctl_owner *owner);

/* The keys a map function emits: "namespace/name" ("" namespace: "name"). */
typedef struct ctl_keys ctl_keys;
int ctl_keys_add(ctl_keys *k, const char *namespace_, const char *name);

/*
 * Map obj (borrowed, read-only under the store's rules) to keys with
 * ctl_keys_add; return 0 (a negative value drops what was added). Runs on
 * inf's dispatch thread; it may read informer stores.
 */
typedef int (*ctl_map_fn)(json_object *obj, ctl_keys *out, void *user);

int ctl_watch_map(ctl *c, inf_informer *inf, ctl_map_fn fn, void *user);

/*
 * Wait up to timeout seconds (< 0: forever) until every informer watched
 * has synced and delivered its initial objects to this controller's
 * handlers (controller-runtime's WaitForCacheSync). True when all did.
 */
bool ctl_wait_for_sync(ctl *c, double timeout);

/*
 * Start the workers and enqueue every key of the For informer's cache.
 * KC_OK if they already run.
 */
int ctl_start(ctl *c);

/* Stop the workers (see above). Idempotent. */
void ctl_stop(ctl *c);

bool ctl_running(ctl *c);

/* Enqueue a key by hand (a no-op while stopped). */
int ctl_enqueue(ctl *c, const char *namespace_, const char *name);

/*
 * A key queued at every ctl_start (and at once when running): for a
 * controller with no primary informer, whose work is one or a few fixed
 * keys that requeue themselves (a file kept in place, a token refreshed).
 * 0, KC_ERR_INVALID_ARG or KC_ERR_NOMEM. Any thread.
 */
int ctl_enqueue_on_start(ctl *c, const char *namespace_, const char *name);

const char *ctl_name(ctl *c);

typedef struct ctl_stats {
    uint64_t reconcile_success, reconcile_error, reconcile_requeue, reconcile_requeue_after;
    uint64_t reconcile_errors_total; /* = reconcile_error (controller-runtime keeps both) */
    int active_workers;              /* reconciles running now */
    int max_active_workers;          /* most that ran at once since ctl_new */
    int max_concurrent_reconciles;
    int worker_threads; /* started by the current generation (on demand, up to
                           max_concurrent_reconciles; 0 while stopped) */
    int idle_workers;   /* of those, waiting for a key (or just started) */
    bool running;
    /* The current queue's gauges (zero while stopped); adds_total and
     * retries_total count over every start since ctl_new. */
    wq_stats queue;
} ctl_stats;

void ctl_stats_get(ctl *c, ctl_stats *out);

#endif
