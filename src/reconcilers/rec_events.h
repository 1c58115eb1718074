/*
 * rec_events - Kubernetes Events (core/v1) for what the reconcilers do, so
 * `kubectl describe` and `kubectl get events` show why a claim is waiting or
 * when it got its address.
 *
 * Events are best-effort: emitting never fails a reconcile. A failed write is
 * reported to the log hook (if any) and forgotten.
 *
 * Repeats are folded as client-go's event correlator does, in a simple form:
 * the same (involved object uid, type, reason, message) emitted again within
 * the dedup window (10 minutes) of its last emission PATCHes count and
 * lastTimestamp of the Event already written instead of creating another. A
 * small in-memory LRU (bounded) remembers recent Events; it is per process, so
 * two replicas (or a restart) may each create one Event for the same thing.
 *
 * Threading: a rec_events is shared by every worker thread; rec_event* may
 * be called from any number of threads at once (the LRU is behind a mutex
 * that is never held across a request). rec_events_free needs every call
 * finished.
 */
#ifndef PROVISIO_REC_EVENTS_H
#define PROVISIO_REC_EVENTS_H

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
 * Told about an Event that could not be written: code (kc_status) and a
 * message naming the object and the reason. Called on the emitting thread,
 * possibly from several threads at once. Strings borrowed for the call.
 */
typedef void (*rec_events_log_fn)(int code, const char *message, void *user);

/* The wall clock, seconds since the epoch (tests pass a fake one). */
typedef time_t (*rec_events_clock_fn)(void *user);

typedef struct rec_events_opts {
    /* reportingInstance: this replica's identity (pod name / hostname); copied.
     * NULL = the host name. At most 128 characters are accepted by the server. */
    const char *reporting_instance;
    size_t cache_size;     /* LRU entries; 0 = 256 */
    int dedup_window_s;    /* 0 = 600 (10 minutes) */
    rec_events_log_fn log; /* may be NULL */
    void *log_user;
    rec_events_clock_fn clock; /* NULL = time(NULL) */
    void *clock_user;
} rec_events_opts;

typedef struct rec_events rec_events;

/*
 * A new recorder writing through c (borrowed: must outlive the recorder).
 * opts may be NULL. 0, KC_ERR_INVALID_ARG or KC_ERR_NOMEM.
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
 * Emit an Event about obj (borrowed; may be a store object: only read).
 * type is REC_EVENT_NORMAL or REC_EVENT_WARNING, reason CamelCase, message a
 * printf format. The Event goes to the object's namespace, or "default" for
 * a cluster-scoped object (as client-go does). Objects of a List response
 * carry no apiVersion/kind: pass them in api_version/kind then (used only
 * when obj lacks them; may be NULL). Returns what the write returned (0 or a
 * kc_status) for tests and metrics; callers may ignore it.
 */
int rec_event(rec_events *e, json_object *obj, const char *api_version, const char *kind,
              const char *type, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

/* The same for a rec_object_ref and a plain message (borrowed). */
int rec_event_ref(rec_events *e, const rec_object_ref *ref, const char *type, const char *reason,
                  const char *message);

/* Events remembered for dedup (for tests). */
size_t rec_events_cached(rec_events *e);

#endif
