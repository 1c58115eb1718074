/*
 * inf - shared informers and their factory (client-go's SharedIndexInformer
 * and SharedInformerFactory).
 *
 * A factory hands out one informer per resource type and selection
 * (group, version, resource, namespace, label selector, field selector):
 * inf_factory_get returns the existing informer when one matches, so one
 * list+watch feeds every controller that asks. An informer is a store
 * (store.h) kept by a reflector (reflector.h) plus any number of event
 * handlers.
 *
 * Handlers are add(obj), update(old, new) and delete(obj) callbacks,
 * registered at any time:
 *   - a handler registered while objects are already cached first receives a
 *     synthetic add for each of them (client-go does the same), then every
 *     later change; registration and the reflector's writes are serialised
 *     so that nothing is missed or seen twice;
 *   - all handlers of an informer are called on the informer's own dispatch
 *     thread, one notification at a time, in the order of the changes. The
 *     reflector thread only appends notifications to a FIFO, so a slow
 *     handler never stalls the watch; a slow handler does delay the other
 *     handlers of the same informer (keep handlers quick: map to keys, add
 *     to a work queue);
 *   - the FIFO grows as needed (a ring buffer that doubles when full and
 *     shrinks again once drained; an entry is 48 bytes plus references to
 *     the objects, which in STORE_SHARED mode are the cached objects
 *     themselves). It is never capped: blocking would stall the watch and
 *     dropping would lose changes, the two things an informer must not do.
 *     inf_stats_get reports its depth and high-water mark.
 *   - with a resync period, every cached object is re-delivered as
 *     update(obj, obj) that often (handlers may opt out). The FIFO holds
 *     only the keys of a resync; each object is read from the store when
 *     its turn comes (its state then; skipped if deleted meanwhile), so a
 *     resync costs no memory per object beyond its key.
 *   - a delete is delivered for an object the watch reports deleted (the
 *     event's object) or that a relist no longer finds (its last cached
 *     state).
 *
 * Objects passed to handlers are borrowed for the call and read-only under
 * the store's rules (store.h): look things up only; never json_object_get/
 * put them or keep pointers into them; json_object_deep_copy them to
 * serialise, change or keep them (or read the store again later). Handlers
 * may read this or any informer's store, add to work queues, and call
 * inf_add_handler / inf_remove_handler; they must not stop or free the
 * informer or its factory.
 *
 * Readers (reconcilers) use inf_store(): store_get / store_by_index / ...
 * give references the reader owns (store_obj_put).
 *
 * Lifecycle:
 *   inf_factory_new -> inf_factory_get (any number) -> inf_add_index (before
 *   start) / inf_add_handler (any time) -> inf_factory_start ->
 *   inf_factory_wait_for_sync -> ... -> inf_factory_stop -> inf_factory_free.
 * Informers got after inf_factory_start are started at once. An informer
 * runs once: a stopped factory cannot be started again.
 *
 * Threading: every function may be called from any thread, except
 * inf_factory_stop / inf_factory_free (not from a handler or a reflector
 * hook). Informer pointers are borrowed from the factory and valid until
 * inf_factory_free.
 *
 * Errors: 0 or a negative kc_status.
 */
#ifndef PROVISIO_INFORMER_H
#define PROVISIO_INFORMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "kc_client.h"
#include "reflector.h"
#include "store.h"

typedef struct inf_factory inf_factory;
typedef struct inf_informer inf_informer;
typedef struct inf_handler inf_handler;

typedef enum inf_store_mode {
    INF_STORE_DEFAULT = 0, /* the factory's mode */
    INF_STORE_SHARED = 1,  /* json-c trees shared by reference (fast reads) */
    INF_STORE_COMPACT = 2, /* compact JSON text (small; a parse per read) */
} inf_store_mode;

typedef struct inf_factory_opts {
    inf_store_mode store_mode; /* default for informers: 0 = INF_STORE_SHARED */
    double resync_period;      /* seconds; 0 = no periodic resync */
    /* Reflector settings for every informer (see reflector.h); zero = the
     * client-go defaults. Tests shorten them. */
    long page_size;
    long watch_timeout_min;
    long watch_timeout_max;
    bo_opts backoff;
    size_t max_event_bytes;
    /* Log lines of the reflectors and dispatchers (any thread). NULL: errors
     * to stderr. */
    refl_log_fn log;
    void *log_user; /* borrowed */
    /* Applied to every object of every informer before it is cached
     * (reflector.h; e.g. refl_strip_managed_fields). NULL = none. */
    refl_transform_fn transform;
    void *transform_user; /* borrowed */
} inf_factory_opts;

/* Selection and settings of one informer. */
typedef struct inf_opts {
    const char *label_selector; /* NULL = everything */
    const char *field_selector; /* NULL = everything */
    /* Used only when this call creates the informer: */
    inf_store_mode store_mode; /* 0 = the factory's */
    double resync_period;      /* 0 = the factory's; < 0 = none */
} inf_opts;

/*
 * A factory over client c (borrowed; must outlive the factory). opts may be
 * NULL (defaults); it is copied.
 */
int inf_factory_new(kc_client *c, const inf_factory_opts *opts, inf_factory **out);

/* Stop every informer (inf_factory_stop) and free them. f may be NULL. */
void inf_factory_free(inf_factory *f);

/*
 * The informer for ref (group, version, resource, namespace_: "" or NULL =
 * all namespaces / cluster-scoped; name and subresource must be NULL) and
 * opts' selectors (opts may be NULL), created on first use. Strings are
 * copied. *out is borrowed from the factory.
 */
int inf_factory_get(inf_factory *f, const kc_ref *ref, const inf_opts *opts, inf_informer **out);

/* Start every informer not yet started (and, from now on, new ones at once). */
int inf_factory_start(inf_factory *f);

/*
 * Wait up to timeout seconds (< 0: forever) until every informer of the
 * factory has synced (see inf_has_synced). True when all did.
 */
bool inf_factory_wait_for_sync(inf_factory *f, double timeout);

/*
 * Stop every informer: reflectors first (no more changes), then the
 * dispatch threads (notifications not yet delivered are dropped). Returns
 * when all threads have ended. Idempotent.
 */
void inf_factory_stop(inf_factory *f);

/* ---- one informer ---------------------------------------------------------- */

typedef struct inf_handler_fns {
    void (*on_add)(json_object *obj, void *user);                              /* may be NULL */
    void (*on_update)(json_object *old_obj, json_object *new_obj, void *user); /* may be NULL */
    void (*on_delete)(json_object *obj, void *user);                           /* may be NULL */
    void *user;     /* borrowed; must outlive the registration */
    bool no_resync; /* do not receive the periodic resync's updates */
    /* on_update never reads old_obj, which may then be NULL: while every
     * handler of an informer says so, a watch update does not decode the
     * object it replaced (a STORE_COMPACT store would parse it for nothing). */
    bool old_unused;
} inf_handler_fns;

/*
 * Register a handler (fns copied). Objects already cached are delivered as
 * adds first. *out (may be NULL) is the registration, valid until
 * inf_remove_handler or inf_factory_free.
 */
int inf_add_handler(inf_informer *inf, const inf_handler_fns *fns, inf_handler **out);

/*
 * Unregister h. When called from another thread than the dispatch thread it
 * waits for a call in progress, so no callback of h runs after it returns;
 * from a handler itself, the removal takes effect after that call.
 */
void inf_remove_handler(inf_informer *inf, inf_handler *h);

/*
 * True once h was given everything cached when it became synced: for a
 * handler registered before the first list, the first list's adds; for a
 * later one, its synthetic adds. (controller-runtime waits for this before
 * starting workers.)
 */
bool inf_handler_has_synced(inf_handler *h);

/* Add an index to the informer's store (store_add_index). Before start only:
 * KC_ERR_INVALID_ARG once the informer runs. user must outlive the factory. */
int inf_add_index(inf_informer *inf, const char *name, store_index_fn fn, void *user);

/* The informer's store, for reads (borrowed; valid until inf_factory_free). */
store *inf_store(inf_informer *inf);

/* group/version/resource/namespace_ of the informer (borrowed, same life). */
const kc_ref *inf_ref(inf_informer *inf);

/* True once the first list was applied to the store. */
bool inf_has_synced(inf_informer *inf);

/* Wait up to timeout seconds (< 0: forever) for inf_has_synced. */
bool inf_wait_for_sync(inf_informer *inf, double timeout);

/*
 * Wait up to timeout seconds until the notification FIFO is empty and no
 * handler is running (every change made so far was delivered). For tests and
 * orderly shutdowns. True when idle.
 */
bool inf_wait_idle(inf_informer *inf, double timeout);

typedef struct inf_stats {
    refl_stats reflector;
    size_t objects;               /* store_len */
    size_t handlers;              /* registered now */
    uint64_t notifications_total; /* queued for delivery (synthetic adds and resyncs too) */
    uint64_t dispatched_total;    /* taken off the FIFO and delivered */
    uint64_t resyncs_total;       /* periodic resyncs done */
    size_t pending;               /* in the FIFO now */
    size_t pending_high_water;    /* largest FIFO depth seen */
} inf_stats;

void inf_stats_get(inf_informer *inf, inf_stats *out);

/* ---- factory iteration (for a manager's metrics collector) ---------------- */

/* Number of informers and the i-th one (borrowed), in creation order. */
size_t inf_factory_len(inf_factory *f);
inf_informer *inf_factory_at(inf_factory *f, size_t i);

#endif
