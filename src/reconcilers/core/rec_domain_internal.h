/*
 * rec_domain_internal - what the core's files (rec_domain.c, rec_claim*.c,
 * rec_pool.c) share about a domain. Not for domains: they see rec_domain.h.
 *
 * Locking: d->mu guards the per-pool state (used and requested sets, the
 * in-flight list, the last status write). It is never held across a request
 * and may be held while reading a store (lock order: d->mu, then a store's
 * lock).
 */
#ifndef PROVISIO_REC_DOMAIN_INTERNAL_H
#define PROVISIO_REC_DOMAIN_INTERNAL_H

#include <pthread.h>

#include "inf_map.h"
#include "informer.h"
#include "rec_domain.h"
#include "rec_events.h"
#include "rec_stale.h"

#define REC_ATTEMPTS 8              /* slots tried per reconcile when others win them */
#define REC_INFLIGHT_TTL 30.0       /* s: our Reservation the cache has not shown */
#define REC_POOL_WRITE_INTERVAL 0.5 /* s between count-only status writes of a pool */
#define REC_POOL_COALESCE 0.2       /* s a count-only change waits for more of them */
#define REC_POOL_COUNTS_PER_S 5.0   /* count-only status writes a second, all pools of a domain */
#define REC_RESV_RESYNC 60.0        /* s: orphan sweep period */
#define REC_EVENT_SENDERS 4         /* one Event a claim: keep up with a storm */
#define REC_SYNC_RETRY 0.1          /* s: requeue while caches are not synced */
#define REC_POOL_GONE_RETRY 1.0     /* s: cache says no Reservations, server disagrees */
#define REC_POOL_TROUBLE_RECHECK                                                                   \
    10.0                    /* s: a pool_check trouble (its node missing) looked at again */
#define REC_HOLDERS_SHOWN 5 /* holders named in a Terminating message */

#define REC_IDX_BY_POOL "by-pool"
#define REC_IDX_WAITING "waiting-by-pool"
#define REC_IDX_CLAIM_UID "by-claim-uid"
#define REC_IDX_REQUESTED "requested"
#define REC_IDX_GROUP "by-group" /* pools, by def->pool_group_path */
#define REC_IDX_SCOPE "by-scope" /* pools, by their scope (scoped domains) */
/* Scoped domains: Reservations under a name that is not the current one
 * for their scope and slot (an earlier version's), by "s|<scope>|<slot>" and
 * "p|<pool>|<slot>": while one is moved, a slot is held under two names.
 * Reservations under their current name are not indexed (no memory spent in
 * the steady state). */
#define REC_IDX_LEGACY "legacy-by-slot"

/* A Reservation this process created that the cache has not shown yet. */
typedef struct rec_inflight {
    char *slot; /* canonical */
    char *name;
    char *claim_uid;
    double at;
} rec_inflight;

/* A pool object opened by def->pool_open, shared by the reconciles that read
 * the same resourceVersion of it (rec_pool_open / rec_pool_put). */
typedef struct rec_open_pool {
    void *pool;    /* NULL: unusable spec */
    char *problem; /* why, when pool is NULL */
    char *rv;      /* the resourceVersion it was opened from */
    bool deleting; /* metadata.deletionTimestamp was set */
    int refs;      /* d->mu */
} rec_open_pool;

/* Per pool name (whether or not the pool exists). */
typedef struct rec_pool_state {
    void *used;      /* def->set_*: slots of the pool's cached Reservations */
    void *requested; /* def->set_*: slots claims of the pool ask for by name */
    rec_inflight *inflight;
    size_t n_inflight, cap_inflight;
    double last_status_write; /* monotonic s; 0 = never */
    double counts_since;      /* monotonic s: a count-only change waits since; 0 = none */
    double counts_turn;       /* monotonic s: its turn among the domain's; 0 = none yet */
    char *counts_rv;          /* the pool's resourceVersion when the wait began */
    char *group;              /* its group (def->pool_group_path) as last cached, or NULL */
    rec_open_pool *open;      /* the last version opened, or NULL */
    char name[];
} rec_pool_state;

/* Per scope name (scoped domains only): every slot held through any pool of
 * the scope. */
typedef struct rec_scope_state {
    void *used; /* def->set_* */
    char name[];
} rec_scope_state;

struct rec_domain {
    const rec_domain_def *def;
    rec_env env; /* a copy, for env.log; zero when detached */
    kc_client *client;
    char *watch_namespace;               /* NULL = all */
    inf_informer *claims, *pools, *resv; /* NULL when detached */
    store *claims_store, *pools_store, *resv_store;
    bool own_stores; /* detached: the stores are ours to free */
    inf_handler *h_claims, *h_pools, *h_resv;
    ctl *c_claim, *c_pool, *c_resv; /* NULL when detached: nothing is enqueued */
    rec_events *events;
    rec_stale *stale;

    void *user; /* rec_domain_setup_user's, for def's hooks */

    pthread_mutex_t mu;
    inf_map pool_states;  /* name -> rec_pool_state */
    inf_map scope_states; /* scope -> rec_scope_state (scoped domains) */
    double counts_next;   /* monotonic s: the next free turn of a count-only pool write */
};

/* ---- rec_domain.c ---------------------------------------------------------- */

void rec_log(rec_domain *d, rec_log_level level, const char *logger, const char *message,
             const char *const *kv);
const char *rec_nz(const char *s);
ctl_result rec_api_error(const char *what, int rc, const kc_error *err);
bool rec_caches_ready(rec_domain *d);

/* d->mu held. NULL when absent (create false) or out of memory. */
rec_pool_state *rec_pool_state_get(rec_domain *d, const char *name, bool create);
/* d->mu held. The same for a scope. */
rec_scope_state *rec_scope_state_get(rec_domain *d, const char *scope, bool create);

/* Whether the domain has scopes (def->pool_scope_path). */
bool rec_scoped(const rec_domain_def *def);
/* The scope of a pool object (borrowed from it or def): its value at
 * pool_scope_path, else pool_scope_default; for a domain without scopes, the
 * pool's name. NULL only for an object without a name. */
const char *rec_pool_scope(const rec_domain_def *def, json_object *pool_obj);
/* The scope of a Reservation object (borrowed): its spec.<resv_scope_key>,
 * else pool_scope_default. NULL for a domain without scopes. */
const char *rec_resv_scope(const rec_domain_def *def, json_object *resv);
/* The name slot_name is given for a pool: its scope, or its name. pool_obj
 * may be NULL (not cached): the pool's name for a domain without scopes,
 * NULL (unknown) for a scoped one. */
const char *rec_lock_space(const rec_domain_def *def, const char *pool_name, json_object *pool_obj);
/* d->mu held: drop in-flight entries older than REC_INFLIGHT_TTL. */
void rec_inflight_prune(rec_pool_state *ps, double now);
/* d->mu held: drop the entries of slot; true if one was claim_uid's. */
bool rec_inflight_remove_slot(rec_pool_state *ps, const char *slot, const char *claim_uid);
/* d->mu held: drop the entries of claim_uid. */
void rec_inflight_remove_uid(rec_pool_state *ps, const char *claim_uid);
/* d->mu held: fn for every in-flight entry of claim_uid, in any pool; stops
 * at (and returns) the first non-zero answer. */
int rec_inflight_each_of_claim(rec_domain *d, const char *claim_uid,
                               int (*fn)(const char *pool, const rec_inflight *e, void *arg),
                               void *arg);
/* d->mu held: add an entry. false when out of memory. */
bool rec_inflight_add(rec_pool_state *ps, const char *slot, const char *name,
                      const char *claim_uid);

/* The opened pool of pool_obj (borrowed): shared while its resourceVersion
 * is the one last opened. *out for rec_pool_put. 0 or KC_ERR_NOMEM. Takes
 * d->mu: do not hold it. */
int rec_pool_open(rec_domain *d, json_object *pool_obj, rec_open_pool **out);
/* The same for the cached pool name, reading the object only when the
 * resourceVersion cached is not the one last opened. KC_ERR_NOT_FOUND when
 * the pool is not cached. */
int rec_pool_open_cached(rec_domain *d, const char *name, rec_open_pool **out);
void rec_pool_put(rec_domain *d, rec_open_pool *op);

/* ---- rec_claim.c, rec_pool.c: the reconcile functions --------------------- */

ctl_result rec_claim_reconcile(const ctl_ctx *ctx, const char *namespace_, const char *name,
                               void *user);
ctl_result rec_pool_reconcile(const ctl_ctx *ctx, const char *namespace_, const char *name,
                              void *user);
ctl_result rec_sweep_reconcile(const ctl_ctx *ctx, const char *namespace_, const char *name,
                               void *user);

#endif
