/*
 * rec_domain - the claim flow shared by every domain (IP addresses, devices,
 * storage), driven by a small per-domain table of functions, the way curl
 * drives its protocols and TLS back ends.
 *
 * A domain has pools (cluster-scoped: IPPool, DevicePool, StoragePool) and
 * claims (namespaced: IPClaim, DeviceClaim, Volume). A claim holds slots of
 * one pool; every held slot is one Reservation (rec_reserve.h), created with
 * POST so the API server decides who holds it. What the core does, the same
 * for every domain (README.md beside this file says why each step is safe):
 *
 *   claims    the finalizer first; release on delete; acquire with the
 *             Reservation lock, read back what a claim holds from the cache
 *             and from this process's in-flight creations, keep exactly one
 *             when a lagging cache let it take two, re-adopt what status
 *             says it holds, status write with a transition Event;
 *   pools     finalizer, counts from the Reservations cache (status writes
 *             of a pool paced while only counts change), Terminating while
 *             claims hold slots of it (PVC protection), Events on trouble;
 *   sweep     Reservations whose claim is gone are freed after the API server
 *             confirms it (never on a cache's word);
 *   caches    informers of claims (compact store), pools (shared store, or
 *             compact with pools_compact) and the domain's Reservations
 *             (label provisio.dev/pool-kind), their indexes, and handlers
 *             that keep per-pool used sets and wake the claims a change can
 *             help;
 *   stale     own-write memory: a reconcile that sees a version its own write
 *             replaced returns at once (the watch event of the write follows).
 *
 * What a domain supplies (rec_domain_def): names, how to build its pool from
 * the pool object, its used-set type, how to name a Reservation of a slot, how
 * to pick a free slot, its status builders and messages. Slots cross this
 * interface as canonical strings (an address "10.20.0.5", a device id, ...);
 * the domain parses them into whatever it keeps.
 *
 * A claim holds want_count slots of one pool (IP addresses: one; a
 * DeviceClaim: spec.count devices). A domain whose claims name their pool
 * sets claim_pool_path; one whose claims describe what they want (a resource
 * name, a node, a selector) sets choose_pool instead, and the core asks it
 * which pool, from a view of every pool of the claim's group with what each
 * could give it now. Slots of a fresh claim are taken all or nothing.
 *
 * Threading: reconciles run on the controllers' worker threads, handlers on
 * the informers' dispatch threads; every table function may be called from
 * any of them at once and must be reentrant. The set_* functions are called
 * with the domain's lock held: they must not block or call back into the core.
 */
#ifndef PROVISIO_REC_DOMAIN_H
#define PROVISIO_REC_DOMAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <json-c/json.h>

#include "controller.h"
#include "kc_client.h"
#include "rec_env.h"
#include "store.h"

/* A pool's counts as status shows them (API.md: total, allocated, available). */
typedef struct rec_pool_counts {
    int64_t total;     /* what the pool can hand out (saturating at INT64_MAX) */
    int64_t allocated; /* what its Reservations hold */
    int64_t available; /* total minus what is held inside it, >= 0 */
    void *detail;      /* the domain's (set_counts), for pool_status; freed with
                        * def->detail_free; NULL when it keeps none */
    /* Scoped domains (pool_scope_path): the other pools of the scope whose
     * slots overlap this one's (names, borrowed for the pool_status call),
     * and the scope. Zero otherwise. */
    const char *const *overlaps;
    size_t n_overlaps;
    const char *scope;
} rec_pool_counts;

/* A pool of the claim's group as choose_pool sees it. */
typedef struct rec_pool_view {
    const char *name;
    json_object *obj; /* the pool object (borrowed); NULL for pools_compact */
    const void *pool; /* def->pool_open's; NULL: unusable spec */
    bool deleting;
    int64_t fit;  /* slots of it the claim could ever use (def->pool_fit) */
    int64_t free; /* of those, free now (not used, requested or in flight) */
} rec_pool_view;

/* pick: no free slot (not an error). */
#define REC_NO_SLOT 1

/* Messages: each builds *out (malloc'd); 0 or KC_ERR_NOMEM. */
typedef struct rec_domain_msgs {
    int (*pool_not_found)(const char *pool_name, char **out);
    int (*pool_terminating)(const char *pool_name, char **out);
    int (*pool_invalid)(const char *pool_name, const char *why, char **out);
    int (*exhausted)(const char *pool_name, const void *pool, char **out);
    /* slot of pool_name is held by the claim holder_ns/holder_name, through
     * holder_pool (another pool of the scope, or pool_name; may be NULL) */
    int (*in_use)(const char *slot, const char *pool_name, const char *holder_ns,
                  const char *holder_name, const char *holder_pool, char **out);
    /* a pool being deleted while n_held slots are held; the first holders
     * ("ns/name slot", n_holders of them) named */
    int (*pool_in_use)(int64_t n_held, const char *const *holders, size_t n_holders, char **out);
    int (*pool_valid)(const void *pool, char **out);
} rec_domain_msgs;

typedef struct rec_domain_def {
    /* ---- names ------------------------------------------------------------ */
    const char *api_version; /* "provisio.dev/v1alpha1" */
    const char *claim_kind;  /* "IPClaim" */
    const char *pool_kind;   /* "IPPool": a REC_POOL_KIND_* */
    kc_ref claims_ref;       /* the claims' collection (no namespace) */
    kc_ref pools_ref;        /* the pools' collection (cluster-scoped) */
    /* Pools cached as compact text (STORE_COMPACT) instead of shared json-c
     * trees: for large pool objects (a DevicePool lists up to 1,024 devices
     * with their holders). The claim path then reads a pool through its
     * opened form, kept per resourceVersion (pool_open runs once a version),
     * and parses the object only when that changed; rec_pool_view.obj and
     * claim_ready's pool_obj are NULL when the pool opened. Not for scoped
     * domains (pool_scope_path). */
    bool pools_compact;
    const char *claim_controller; /* "ipclaim" */
    const char *pool_controller;  /* "ippool" */
    const char *resv_controller;  /* "ipreservation" */
    const char *resv_selector;    /* "provisio.dev/pool-kind=IPPool" */
    const char *slot_noun;        /* "address": logs, events */
    const char *claim_pool_path;  /* "spec.pool"; NULL: the domain chooses (choose_pool) */
    const char *claim_group_path; /* claims a pool change may help, by this value; NULL:
                                   * claim_pool_path ("spec.resourceName") */
    const char *pool_group_path;  /* the same value on a pool; NULL: its name */
    const char *status_pool_path; /* "status.pool": the pool status says it holds from */
    const char *claim_slot_path;  /* "spec.address": one slot asked for by name; NULL: none */

    /* ---- scopes: slots unique across pools (optional) -------------------------
     * By default a slot is held at most once per pool: the Reservation's name
     * is made from the pool's name and the slot. A domain whose pools may
     * share slots (IP: overlapping CIDRs of one network) sets a scope: a slot
     * is held at most once per scope, across every pool of it. The scope of a
     * pool is the value at pool_scope_path (pool_scope_default when absent;
     * the schema should keep it immutable); of a Reservation, its
     * spec.<resv_scope_key> (pool_scope_default when it has none:
     * Reservations made before scopes existed), also written as the label
     * resv_scope_label for selectors. slot_name is then called with the scope instead
     * of the pool's name, so the name is the lock across the scope; free
     * slots are picked from, and available counts reduced by, the scope's
     * used set (scope_counts); pools of a scope whose slots overlap
     * (pool_overlap) are named in each other's counts. A held Reservation
     * whose name is not the one slot_name makes now (a name of an earlier
     * version) is moved to the current name by the claim's next reconcile. */
    const char *pool_scope_path;    /* "spec.network"; NULL: every pool is its own scope */
    const char *pool_scope_default; /* "default" */
    const char *resv_scope_key;     /* "network": spec.network of a Reservation */
    const char *resv_scope_label;   /* "provisio.dev/network" */

    /* ---- reasons (API.md) --------------------------------------------------- */
    const char *reason_ready;       /* claim Ready=True: "Allocated" */
    const char *reason_not_found;   /* "PoolNotFound" */
    const char *reason_pool_gone;   /* "PoolTerminating" */
    const char *reason_invalid;     /* "InvalidSpec" (claim and pool) */
    const char *reason_exhausted;   /* "PoolExhausted" */
    const char *reason_in_use;      /* "AddressInUse": the slot asked for is held */
    const char *reason_lost;        /* event: a slot status named went to another claim */
    const char *reason_valid;       /* pool Ready=True: "Valid" */
    const char *reason_terminating; /* pool being deleted while in use: "Terminating" */
    const char *reason_replaced;    /* event: a held slot swapped (slot_replace) */

    rec_domain_msgs msgs;

    /* ---- the pool --------------------------------------------------------- */
    /* The domain's pool from the pool object (borrowed, read-only). An
     * unusable spec: *pool NULL and *problem (malloc'd) says why; returns 0.
     * KC_ERR_NOMEM. */
    int (*pool_open)(json_object *pool_obj, void **pool, char **problem);
    void (*pool_close)(void *pool);
    /* Whether slot (canonical) is one the pool can hand out. */
    bool (*pool_contains)(const void *pool, const char *slot);

    /* Seconds after which a live pool's reconcile runs again although nothing
     * changed (its status depends on time: a node agent's report going
     * stale); 0: never. NULL: never. */
    double (*pool_recheck)(const void *pool);
    /* Trouble of a usable pool the domain sees outside the pool object (its
     * node does not exist): *reason (static) and *message (malloc'd) make it
     * Ready=False; *reason NULL: fine. user: rec_domain_setup_user's. NULL:
     * none. 0 or KC_ERR_NOMEM. */
    int (*pool_check)(void *user, json_object *pool_obj, const void *pool, const char **reason,
                      char **message);
    /* Last work before a deleted pool's finalizer goes (nothing is held any
     * more): undo what the domain published for it (node capacity). Not
     * CTL_DONE: the finalizer stays and this runs again. NULL: none. */
    ctl_result (*pool_finalize)(void *user, json_object *pool_obj);
    /* A claim being deleted: whether what it holds may be released now (a
     * DeviceClaim's ResourceClaim must be deallocated first). Not CTL_DONE:
     * nothing is released and this is the reconcile's result. NULL: always. */
    ctl_result (*claim_release_gate)(void *user, json_object *claim_obj);
    /* Whether a pool's update (same generation, not newly deleting) still
     * matters to its claims (a device turned unhealthy in status). NULL: no. */
    bool (*pool_changed)(json_object *old_obj, json_object *new_obj);

    /* ---- what a claim wants (optional: NULL for one slot, no conditions) ---- */
    /* Parse the claim's spec (borrowed). An unusable spec: *want NULL and
     * *problem (malloc'd) says why; 0. KC_ERR_NOMEM. */
    int (*want_open)(json_object *claim_obj, void **want, char **problem);
    void (*want_close)(void *want);
    int64_t (*want_count)(const void *want); /* slots wanted, >= 1 */
    /* Whether a held slot should be given up for another (a device turned
     * unhealthy, the claim asks for replacements). NULL: never. */
    bool (*slot_replace)(const void *pool, const void *want, const char *slot);
    /* The pool for a claim that holds nothing (claim_pool_path NULL): views
     * of every pool of its group (n may be 0). 0 and *chosen (index); or
     * REC_NO_SLOT with *reason (static) and *message (malloc'd);
     * KC_ERR_NOMEM. Start from a place derived from claim_uid, so claims
     * spread over pools. */
    int (*choose_pool)(const rec_pool_view *views, size_t n, const void *want,
                       const char *claim_uid, size_t *chosen, const char **reason, char **message);
    /* For choose_pool: of the pool's slots, how many the claim could ever use
     * (*fit) and how many of those are free now (*free): not in used,
     * requested or skip (domain lock held). */
    void (*pool_fit)(const void *pool, const void *want, const void *used, const void *requested,
                     const char *const *skip, size_t n_skip, int64_t *fit, int64_t *free);

    /* ---- the used set (domain lock held) -------------------------------------- */
    int (*set_new)(void **set);
    void (*set_free)(void *set);
    /* Add or remove slot (any form the domain parses; unparsable:
     * KC_ERR_INVALID_ARG and nothing changes), held by the claim holder
     * ("namespace/name"; NULL when removing or unknown). 0 or KC_ERR_NOMEM. */
    int (*set_update)(void *set, const char *slot, const char *holder, bool add);
    /* Counts of pool_obj (its uid and generation: the domain may keep
     * incremental counts per spec) from the set; pool NULL: invalid spec. */
    void (*set_counts)(void *set, json_object *pool_obj, const void *pool, rec_pool_counts *out);
    /* Scoped domains: correct out (set_counts's, from the pool's own set)
     * for what other pools of the scope hold (scope_set: the scope's used
     * set, every slot held through any pool of it). pool not NULL. */
    void (*scope_counts)(const void *set, const void *scope_set, const void *pool,
                         rec_pool_counts *out);
    /* Scoped domains: whether two usable pools share any slot. */
    bool (*pool_overlap)(const void *a, const void *b);
    void (*detail_free)(void *detail); /* rec_pool_counts.detail; NULL when never set */

    /* ---- slots ------------------------------------------------------------ */
    /* The Reservation name of slot (any form) of pool_name (of the scope, for
     * a scoped domain); *canonical (may be NULL) gets the slot as spec.slot
     * holds it. Both malloc'd. KC_ERR_INVALID_ARG, KC_ERR_NOMEM. */
    int (*slot_name)(const char *pool_name, const char *slot, char **name, char **canonical);
    /* A slot asked for by name (claim_slot_path): 0 and *canonical when the
     * pool can hand it out; REC_NO_SLOT with *reason (static) and *message
     * (malloc'd) when it cannot; KC_ERR_NOMEM. */
    int (*check_wanted)(const void *pool, const char *pool_name, const char *wanted,
                        char **canonical, const char **reason, char **message);
    /* A free slot of pool: in neither used nor requested (slots asked for by
     * name, kept for their claims) nor skip[0..n_skip) (canonical slots known
     * taken that used does not show yet). Start from a place derived from
     * claim_uid, so claims spread and a retry tries the same slot first.
     * 0 and *slot (malloc'd, canonical), REC_NO_SLOT, KC_ERR_NOMEM. */
    int (*pick)(const void *pool, const void *used, const void *requested, const char *const *skip,
                size_t n_skip, const char *claim_uid, const void *want, char **slot);
    /* Of n >= 1 held slots, the one to keep: the one status names
     * (status_slot, may be NULL), else the one asked for (wanted, may be
     * NULL), else a fixed order. Every replica picks the same. */
    size_t (*choose_keep)(const char *const *held, size_t n, const char *status_slot,
                          const char *wanted);

    /* ---- status ----------------------------------------------------------- */
    /* The slot a claim's status says it holds (canonical, malloc'd), or NULL. */
    char *(*status_slot)(json_object *status);
    /* Several: every slot status names (malloc'd list of malloc'd strings).
     * NULL: status_slot's one. 0 or KC_ERR_NOMEM. */
    int (*status_slots)(json_object *status, char ***slots, size_t *n);
    /* How status names what the claim holds, for Events ("10.20.0.5/24"):
     * borrowed from status, or NULL. */
    const char *(*status_display)(json_object *status);
    /* The status of a claim holding slot (pool_obj and pool may be NULL: gone
     * or unusable). *event (malloc'd): the Event message of this allocation. */
    int (*claim_ready)(json_object *cached_status, const char *pool_name, json_object *pool_obj,
                       const void *pool, const char *slot, int64_t generation, time_t now,
                       json_object **out, char **event);
    /* Several slots (set when want_count may exceed 1; else claim_ready). */
    int (*claim_ready_n)(json_object *cached_status, const char *pool_name, json_object *pool_obj,
                         const void *pool, const void *want, const char *const *slots, size_t n,
                         int64_t generation, time_t now, json_object **out, char **event);
    int (*claim_pending)(json_object *cached_status, const char *reason, const char *message,
                         int64_t generation, time_t now, json_object **out);
    int (*pool_status)(json_object *cached_status, const rec_pool_counts *counts,
                       const char *cond_status, const char *reason, const char *message,
                       int64_t generation, time_t now, json_object **out);
    /* Whether a pool's new status (pool_status's) differs from the cached one
     * (both borrowed, not NULL) only where allocations move it: counts, which
     * claim holds a slot; not conditions, not the slots themselves. Such a
     * write waits a little (REC_POOL_COALESCE) so that a burst of
     * allocations makes one write. NULL: only "allocated" and "available"
     * may differ. */
    bool (*pool_status_counts_only)(json_object *cached_status, json_object *new_status);
} rec_domain_def;

typedef struct rec_domain rec_domain;

/*
 * Register the domain with the manager: informers, indexes, handlers, the
 * three controllers (def's names) and a cleanup that frees it. def must live
 * as long as the manager (a static table). Main thread, once per domain.
 * 0 or a negative kc_status.
 */
int rec_domain_setup(const rec_env *env, const rec_domain_def *def);
/* The same with user data for def's pool_check and pool_finalize (borrowed:
 * it must outlive the manager's controllers). */
int rec_domain_setup_user(const rec_env *env, const rec_domain_def *def, void *user);

/* ---- for tests: a domain without informers or controllers ----------------- */

/*
 * A domain over three empty stores of its own (claims, pools, Reservations,
 * with the indexes setup adds), writing through c (borrowed; a replay
 * server's). Nothing runs by itself: a test fills the stores
 * (rec_domain_stores + store_add), tells the handlers what changed
 * (rec_domain_feed) and calls the reconciles. Events are written with
 * one sender. log may be NULL.
 */
int rec_domain_new_detached(const rec_domain_def *def, kc_client *c, rec_domain **out);
void rec_domain_free(rec_domain *d);
void rec_domain_stores(rec_domain *d, store **claims, store **pools, store **resv);

typedef enum rec_feed {
    REC_FEED_CLAIM_ADD,
    REC_FEED_CLAIM_DELETE,
    REC_FEED_RESV_ADD,
    REC_FEED_RESV_DELETE,
} rec_feed;

/* Run the handler of an event on obj (borrowed), as an informer would after
 * changing its store. */
void rec_domain_feed(rec_domain *d, rec_feed what, json_object *obj);

ctl_result rec_domain_reconcile_claim(rec_domain *d, const char *namespace_, const char *name);
ctl_result rec_domain_reconcile_pool(rec_domain *d, const char *name);
ctl_result rec_domain_reconcile_reservation(rec_domain *d, const char *name);

/* Wait until the Events queued so far were written (or timeout_ms passed). */
void rec_domain_flush_events(rec_domain *d, int timeout_ms);

#endif
