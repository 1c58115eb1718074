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
 *   caches    informers of claims (compact store), pools (shared store) and
 *             the domain's Reservations (label provisio.dev/pool-kind), their
 *             indexes, and handlers that keep per-pool used sets and wake the
 *             claims a change can help;
 *   stale     own-write memory: a reconcile that sees a version its own write
 *             replaced returns at once (the watch event of the write follows).
 *
 * What a domain supplies (rec_domain_def): names, how to build its pool from
 * the pool object, its used-set type, how to name a Reservation of a slot, how
 * to pick a free slot, its status builders and messages. Slots cross this
 * interface as canonical strings (an address "10.20.0.5", a device id, ...);
 * the domain parses them into whatever it keeps.
 *
 * Today a claim holds one slot (IP addresses; a Volume's extent). A claim of
 * several slots (DeviceClaim.spec.count) extends rec_claim.c: the held list
 * already carries any number.
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
} rec_pool_counts;

/* pick: no free slot (not an error). */
#define REC_NO_SLOT 1

/* Messages: each builds *out (malloc'd); 0 or KC_ERR_NOMEM. */
typedef struct rec_domain_msgs {
    int (*pool_not_found)(const char *pool_name, char **out);
    int (*pool_terminating)(const char *pool_name, char **out);
    int (*pool_invalid)(const char *pool_name, const char *why, char **out);
    int (*exhausted)(const char *pool_name, const void *pool, char **out);
    /* slot of pool_name is held by the claim holder_ns/holder_name */
    int (*in_use)(const char *slot, const char *pool_name, const char *holder_ns,
                  const char *holder_name, char **out);
    /* a pool being deleted while n_held slots are held; the first holders
     * ("ns/name slot", n_holders of them) named */
    int (*pool_in_use)(int64_t n_held, const char *const *holders, size_t n_holders, char **out);
    int (*pool_valid)(const void *pool, char **out);
} rec_domain_msgs;

typedef struct rec_domain_def {
    /* ---- names ------------------------------------------------------------ */
    const char *api_version;      /* "provisio.dev/v1alpha1" */
    const char *claim_kind;       /* "IPClaim" */
    const char *pool_kind;        /* "IPPool": a REC_POOL_KIND_* */
    kc_ref claims_ref;            /* the claims' collection (no namespace) */
    kc_ref pools_ref;             /* the pools' collection (cluster-scoped) */
    const char *claim_controller; /* "ipclaim" */
    const char *pool_controller;  /* "ippool" */
    const char *resv_controller;  /* "ipreservation" */
    const char *resv_selector;    /* "provisio.dev/pool-kind=IPPool" */
    const char *slot_noun;        /* "address": logs, events */
    const char *claim_pool_path;  /* "spec.pool" */
    const char *claim_slot_path;  /* "spec.address": one slot asked for by name; NULL: none */

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

    rec_domain_msgs msgs;

    /* ---- the pool --------------------------------------------------------- */
    /* The domain's pool from the pool object (borrowed, read-only). An
     * unusable spec: *pool NULL and *problem (malloc'd) says why; returns 0.
     * KC_ERR_NOMEM. */
    int (*pool_open)(json_object *pool_obj, void **pool, char **problem);
    void (*pool_close)(void *pool);
    /* Whether slot (canonical) is one the pool can hand out. */
    bool (*pool_contains)(const void *pool, const char *slot);

    /* ---- the used set (domain lock held) -------------------------------------- */
    int (*set_new)(void **set);
    void (*set_free)(void *set);
    /* Add or remove slot (any form the domain parses; unparsable:
     * KC_ERR_INVALID_ARG and nothing changes). 0 or KC_ERR_NOMEM. */
    int (*set_update)(void *set, const char *slot, bool add);
    /* Counts of pool_obj (its uid and generation: the domain may keep
     * incremental counts per spec) from the set; pool NULL: invalid spec. */
    void (*set_counts)(void *set, json_object *pool_obj, const void *pool, rec_pool_counts *out);

    /* ---- slots ------------------------------------------------------------ */
    /* The Reservation name of slot (any form) of pool_name; *canonical (may be
     * NULL) gets the slot as spec.slot holds it. Both malloc'd.
     * KC_ERR_INVALID_ARG, KC_ERR_NOMEM. */
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
                size_t n_skip, const char *claim_uid, char **slot);
    /* Of n >= 1 held slots, the one to keep: the one status names
     * (status_slot, may be NULL), else the one asked for (wanted, may be
     * NULL), else a fixed order. Every replica picks the same. */
    size_t (*choose_keep)(const char *const *held, size_t n, const char *status_slot,
                          const char *wanted);

    /* ---- status ----------------------------------------------------------- */
    /* The slot a claim's status says it holds (canonical, malloc'd), or NULL. */
    char *(*status_slot)(json_object *status);
    /* How status names what the claim holds, for Events ("10.20.0.5/24"):
     * borrowed from status, or NULL. */
    const char *(*status_display)(json_object *status);
    /* The status of a claim holding slot (pool_obj and pool may be NULL: gone
     * or unusable). *event (malloc'd): the Event message of this allocation. */
    int (*claim_ready)(json_object *cached_status, const char *pool_name, json_object *pool_obj,
                       const void *pool, const char *slot, int64_t generation, time_t now,
                       json_object **out, char **event);
    int (*claim_pending)(json_object *cached_status, const char *reason, const char *message,
                         int64_t generation, time_t now, json_object **out);
    int (*pool_status)(json_object *cached_status, const rec_pool_counts *counts,
                       const char *cond_status, const char *reason, const char *message,
                       int64_t generation, time_t now, json_object **out);
} rec_domain_def;

typedef struct rec_domain rec_domain;

/*
 * Register the domain with the manager: informers, indexes, handlers, the
 * three controllers (def's names) and a cleanup that frees it. def must live
 * as long as the manager (a static table). Main thread, once per domain.
 * 0 or a negative kc_status.
 */
int rec_domain_setup(const rec_env *env, const rec_domain_def *def);

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
