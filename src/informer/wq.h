/*
 * wq - the controller work queue: client-go's workqueue semantics (plain +
 * delaying + rate limiting) over string keys ("namespace/name").
 *
 *   - Dedup: adding a key that is already waiting does nothing.
 *   - Exclusive: a key handed out by wq_get is "processing" until wq_done;
 *     it is never handed to a second worker meanwhile. A key added while it
 *     is processing is marked dirty and queued again by wq_done.
 *   - FIFO among waiting keys.
 *   - Delayed adds (wq_add_after, RequeueAfter) wait in a min-heap by deadline;
 *     re-adding a key that is already delayed keeps the earlier deadline. No
 *     thread is used: getters sleep on the queue's condition variable with a
 *     timeout of the earliest deadline, and due keys are moved to the queue by
 *     whichever of wq_get / wq_len / wq_stats runs next.
 *   - Rate limiting (controller-runtime's default controller rate limiter):
 *     the delay of wq_add_rate_limited is the larger of a per-key exponential
 *     backoff (base_delay * 2^failures, capped at max_delay; 5 ms .. 1000 s by
 *     default) and an overall token bucket (10 qps, burst 100 by default).
 *     wq_forget clears a key's failures (call it when a reconcile succeeds).
 *
 * Shutdown (deliberately stricter than client-go, where Get keeps handing out
 * keys that were already queued): after wq_shutdown, adds are no-ops and
 * wq_get returns KC_ERR_STOPPED at once, waking every blocked getter; keys
 * still waiting or delayed are dropped, so no new reconcile starts (losing the
 * lease must stop reconciling at once). Workers still call wq_done for the
 * keys they hold. wq_shutdown_drain does the same and then blocks until every
 * key handed out has been wq_done'd.
 *
 * Metrics (controller-runtime names): wq_stats gives the gauges and counters
 * (workqueue_depth, workqueue_adds_total, workqueue_retries_total,
 * workqueue_unfinished_work_seconds, workqueue_longest_running_processor_seconds);
 * the two histograms are not accumulated here -- every observation is passed
 * raw to the optional `observe` hook, with metric
 * "workqueue_queue_duration_seconds" (add to get) from wq_get and
 * "workqueue_work_duration_seconds" (get to done) from wq_done, so the
 * manager can bucket them as it likes. The hook is called without the queue's
 * lock held, on the calling worker's thread.
 *
 * Threading: every function except wq_new/wq_free may be called from any
 * thread at any time. Keys passed in are borrowed (copied when needed).
 */
#ifndef PROVISIO_WQ_H
#define PROVISIO_WQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct wq wq;

#define WQ_METRIC_QUEUE_DURATION "workqueue_queue_duration_seconds"
#define WQ_METRIC_WORK_DURATION "workqueue_work_duration_seconds"

typedef void (*wq_observe_fn)(const char *metric, double seconds, void *user);

typedef struct wq_opts {
    double base_delay;     /* per-key backoff start, seconds; 0 = 0.005 */
    double max_delay;      /* per-key backoff cap, seconds; 0 = 1000 */
    double bucket_qps;     /* overall token bucket rate; 0 = 10; < 0 = no bucket */
    int bucket_burst;      /* bucket size; 0 = 100 */
    wq_observe_fn observe; /* optional histogram hook (see above) */
    void *observe_user;    /* borrowed; passed to observe */
} wq_opts;

typedef struct wq_stats {
    uint64_t depth;         /* keys waiting to be handed out (incl. dirty while processing) */
    uint64_t adds_total;    /* adds that made a key waiting (deduplicated adds not counted) */
    uint64_t retries_total; /* wq_add_after / wq_add_rate_limited calls */
    uint64_t processing;    /* keys handed out and not yet done */
    uint64_t delayed;       /* keys waiting for a deadline */
    double unfinished_work_seconds;           /* sum over processing keys of time held */
    double longest_running_processor_seconds; /* the longest of those */
} wq_stats;

/* A new queue; opts may be NULL (defaults). 0 or KC_ERR_NOMEM. */
int wq_new(const wq_opts *opts, wq **out);

/* Free q and every key it holds. No thread may use q any more. q may be NULL. */
void wq_free(wq *q);

/*
 * Mark key as needing processing. A key already waiting is left where it is;
 * a key being processed is queued again when it is done. A no-op after
 * shutdown. 0, KC_ERR_INVALID_ARG (NULL key) or KC_ERR_NOMEM.
 */
int wq_add(wq *q, const char *key);

/*
 * Add key after `delay` seconds (<= 0: now, as wq_add). If key is already
 * delayed, the earlier of the two deadlines wins. Counts a retry.
 */
int wq_add_after(wq *q, const char *key, double delay);

/*
 * Add key after its rate-limited delay (see above) and count a failure for
 * it. The delay chosen is stored in *delay_out when delay_out is non-NULL.
 */
int wq_add_rate_limited(wq *q, const char *key, double *delay_out);

/*
 * wq_add_rate_limited with the per-key backoff capped at cap seconds (when
 * cap > 0 and below max_delay), and the failure count not grown past what
 * reaches cap: for failures that say nothing about the key (the API server
 * unreachable or restarting), so that an outage does not leave every key it
 * touched minutes of backoff away once the server is back. The token bucket
 * still applies.
 */
int wq_add_rate_limited_cap(wq *q, const char *key, double cap, double *delay_out);

/* Clear key's failure count (the next rate-limited delay is base_delay again). */
void wq_forget(wq *q, const char *key);

/* How many times key was rate-limited since its last wq_forget. */
int wq_num_requeues(wq *q, const char *key);

/*
 * Block until a key can be handed out, then return it in *key_out, now
 * "processing". *key_out is owned by the queue and stays valid until the
 * caller's wq_done for it. Returns 0, or KC_ERR_STOPPED once the queue is shut
 * down (then *key_out is NULL).
 */
int wq_get(wq *q, const char **key_out);

/*
 * The caller finished processing key (a key it got from wq_get; the string may
 * be that pointer or an equal one). If key was added meanwhile it is queued
 * again. Unknown keys are ignored.
 */
void wq_done(wq *q, const char *key);

/* Keys waiting to be handed out now (delayed keys not counted). */
size_t wq_len(wq *q);

/* Fill *out with the queue's metrics (see wq_stats). */
void wq_stats_get(wq *q, wq_stats *out);

/* Stop the queue (see above). Idempotent. */
void wq_shutdown(wq *q);

/* wq_shutdown, then wait until every key handed out has been wq_done'd. */
void wq_shutdown_drain(wq *q);

/* True once wq_shutdown or wq_shutdown_drain was called. */
bool wq_shutting_down(wq *q);

/*
 * Check the queue's invariants (wq.c's top comment) under its lock: NULL
 * when they all hold, else a static text naming the first that does not.
 * Debug and sanitizer builds run the same check inside every call; this is
 * for tests, in any build. Any thread.
 */
const char *wq_check(wq *q);

#endif
