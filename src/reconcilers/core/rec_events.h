/*
 * rec_events - Kubernetes Events (core/v1) for what the reconcilers do, so
 * `kubectl describe` and `kubectl get events` show why a claim is waiting or
 * when it got its address.
 *
 * Events are best-effort: emitting never fails a reconcile and never waits for
 * the API server. rec_event* copy what the Event needs into a bounded
 * in-memory queue and return at once; one sender thread per recorder takes
 * the queue in order and writes (as client-go's EventBroadcaster does). When
 * the queue is full the new Event is dropped and that is reported to the log
 * hook, once per overflow. A write that failed for a transient cause (API
 * server unreachable or restarting: transport failure, 429, 503) is
 * tried again, up to max_tries; a failed write is then reported to the log
 * hook (if any) and forgotten.
 *
 * Repeats are folded as client-go's event correlator does, in a simple form:
 * the same (involved object uid, type, reason, message) emitted again within
 * the dedup window (10 minutes) of its last emission PATCHes count and
 * lastTimestamp of the Event already written instead of creating another. A
 * small in-memory LRU (bounded) remembers recent Events; it is per process, so
 * two replicas (or a restart) may each create one Event for the same thing.
 * The time of an Event (and so the window) is taken when it is emitted, not
 * when it is written.
 *
 * Threading: a rec_events is shared by every worker thread; rec_event* may
 * be called from any number of threads at once (they take a mutex for a
 * queue append only). rec_events_free needs every rec_event* call finished
 * and no new one started.
 */
#ifndef PROVISIO_REC_EVENTS_H
#define PROVISIO_REC_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <json-c/json.h>

#include "kc_client.h"

#define REC_EVENT_NORMAL "Normal"
#define REC_EVENT_WARNING "Warning"

/* source.component and reportingComponent of every Event. */
#define REC_EVENT_SOURCE "provisio"
#define REC_EVENT_REPORTING_COMPONENT "provisio.dev/operator"

/*
 * Status of an Event that was not queued because the queue was full, or not
 * written because rec_events_free gave up on the queue. Outside the range of
 * kc_status; rec_events_strerror names it (and any kc_status).
 */
#define REC_EVENTS_ERR_DROPPED (-1100)

/* A static English description of REC_EVENTS_ERR_DROPPED or a kc_status; never NULL. */
const char *rec_events_strerror(int code);

/*
 * Told about Events that could not be written: code (a kc_status, or
 * REC_EVENTS_ERR_DROPPED) and a message naming the object, the reason and the
 * cause. expected is true when the failure is normal and harmless: the
 * Event's namespace is being deleted (403 "... because it is being
 * terminated") or is gone (404 on create), as when a claim is deleted with
 * its namespace; log those at debug level. Called on the sender thread for
 * write failures and for Events dropped at rec_events_free, and on the
 * emitting thread for an allocation failure or a full queue: possibly from
 * several threads at once, never with a lock of the recorder held. Strings
 * borrowed for the call.
 */
typedef void (*rec_events_log_fn)(int code, bool expected, const char *message, void *user);

/* The wall clock, seconds since the epoch (tests pass a fake one). Called on the emitting thread.
 */
typedef time_t (*rec_events_clock_fn)(void *user);

typedef struct rec_events_opts {
    /* reportingInstance: this replica's identity (pod name / hostname); copied.
     * NULL = the host name. At most 128 characters are accepted by the server. */
    const char *reporting_instance;
    size_t cache_size;  /* LRU entries; 0 = 256 */
    int dedup_window_s; /* 0 = 600 (10 minutes) */
    size_t queue_size;  /* Events waiting for the sender; 0 = 1000 (client-go's queue) */
    /* Sender threads writing in parallel; 0 = 1. With one, Events are written
     * in the order they were emitted and a repeat queued while the first is
     * being written always folds into it; with more, a storm of Events keeps
     * up with the API server's latency (a repeat racing its first write may
     * become a second Event instead of a count). */
    int senders;
    /* How long rec_events_free lets the sender write what is still queued before
     * it drops the rest: 0 = 2000 ms, < 0 = drop at once. */
    int drain_timeout_ms;
    /* Tries of one Event whose write failed for a transient cause (the API
     * server unreachable, 429, 503), 0.5 s then doubling up to 10 s
     * apart (the sender waits: later Events queue behind it, as in
     * client-go); 0 = 12 (client-go's), 1 = no second try. At shutdown no
     * try starts after the drain timeout. */
    int max_tries;
    rec_events_log_fn log; /* may be NULL */
    void *log_user;
    rec_events_clock_fn clock; /* NULL = time(NULL) */
    void *clock_user;
} rec_events_opts;

typedef struct rec_events rec_events;

/*
 * A new recorder writing through c (borrowed: must outlive the recorder) and
 * its sender thread. opts may be NULL. 0, KC_ERR_INVALID_ARG or KC_ERR_NOMEM
 * (also when the thread cannot be started).
 *
 * rec_events_free stops the sender: it goes on writing what is queued for up
 * to drain_timeout_ms, then drops (and reports) the rest, and is joined. The
 * write in flight at the deadline cannot be cancelled (kc_client has no
 * cancellation): free returns within drain_timeout_ms plus at most that one
 * write, which the client bounds by its request timeout. The log hook may be
 * called from inside rec_events_free, on the sender thread. NULL is a no-op.
 */
int rec_events_new(kc_client *c, const rec_events_opts *opts, rec_events **out);
void rec_events_free(rec_events *e);

/* The involved object, when the caller has no object at hand. Strings borrowed. */
typedef struct rec_object_ref {
    const char *api_version;
    const char *kind;
    const char *namespace_; /* NULL or "" for cluster-scoped objects */
    const char *name;
    const char *uid;
    const char *resource_version; /* may be NULL */
} rec_object_ref;

/*
 * Emit an Event about obj (borrowed for the call; may be a store object:
 * only read, and nothing of it is kept). type is REC_EVENT_NORMAL or
 * REC_EVENT_WARNING, reason CamelCase, message a printf format. The Event
 * goes to the object's namespace, or "default" for a cluster-scoped object
 * (as client-go does). Objects of a List response carry no apiVersion/kind:
 * pass them in api_version/kind then (used only when obj lacks them; may be
 * NULL).
 *
 * Never blocks on the API server. Returns 0 when the Event was queued (its
 * write's outcome goes to the log hook), REC_EVENTS_ERR_DROPPED when the
 * queue was full, KC_ERR_NOMEM, or KC_ERR_INVALID_ARG; for tests and metrics,
 * callers may ignore it.
 */
int rec_event(rec_events *e, json_object *obj, const char *api_version, const char *kind,
              const char *type, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

/* The same for a rec_object_ref and a plain message (all borrowed for the call). */
int rec_event_ref(rec_events *e, const rec_object_ref *ref, const char *type, const char *reason,
                  const char *message);

/*
 * Wait until every Event queued before the call has been handled by the
 * sender (written, or given up on and reported to the log hook; an Event
 * whose writes keep failing for a transient cause takes up to about 75 s
 * of tries, see max_tries). timeout_ms < 0 waits for as long as it takes. 0 when done,
 * KC_ERR_TIMEOUT when not within timeout_ms, KC_ERR_INVALID_ARG for a NULL e. For tests (and a
 * caller that wants its Events out before it goes on); any thread.
 */
int rec_events_flush(rec_events *e, int timeout_ms);

/* Events remembered for dedup (for tests). Any thread. */
size_t rec_events_cached(rec_events *e);

/* Events dropped so far because the queue was full (for tests and metrics). Any thread. */
size_t rec_events_dropped(rec_events *e);

#endif
