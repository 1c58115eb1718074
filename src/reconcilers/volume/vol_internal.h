/*
 * vol_internal - what the files of the volume domain share: the app (its
 * informers, stores and controllers) and the resources it uses. Not for
 * other domains.
 */
#ifndef PROVISIO_VOL_INTERNAL_H
#define PROVISIO_VOL_INTERNAL_H

#include <pthread.h>

#include "controller.h"
#include "inf_map.h"
#include "informer.h"
#include "kc_client.h"
#include "rec_env.h"
#include "rec_reserve.h"
#include "store.h"
#include "vol_ledger.h"

#define VOL_POOL_CONTROLLER "storagepool"
#define VOL_CLAIM_CONTROLLER "volume"
#define VOL_RECOUNT_INTERVAL 2.0     /* s between recounts of one pool */
#define VOL_RECHECK_MAX 60.0         /* s: a pool is looked at again at least this often */
#define VOL_IDX_POOL "by-pool"       /* Reservations by spec.pool.name */
#define VOL_IDX_CLAIM "by-claim-uid" /* Reservations by spec.claim.uid */
#define VOL_IDX_NODE "by-node"       /* StoragePools by spec.nodeName */
#define VOL_IDX_WAITING "waiting"    /* Volumes placed nowhere yet: one value, "" */

/* The finalizer of a storage Reservation, removed by the node agent once the
 * directory is gone (or kept, Retain). */
#define VOL_DIR_FINALIZER "provisio.dev/volume-directory"

#define VOL_RESV_SELECTOR REC_LABEL_POOL_KIND "=" REC_POOL_KIND_STORAGE

extern const kc_ref vol_pools_ref;
extern const kc_ref vol_resv_ref;
extern const kc_ref vol_nodes_ref;
extern const kc_ref vol_volumes_ref;

typedef struct vol_app {
    rec_env env;
    kc_client *client;
    inf_informer *pools, *resv, *nodes, *volumes;
    store *pools_store, *resv_store, *nodes_store, *volumes_store;
    ctl *pool_ctl, *claim_ctl;
    pthread_mutex_t mu;
    inf_map last_recount; /* pool name -> recount_mark (vol_domain.c) */
    inf_map waiting;      /* pool name -> its waiting Volumes (vol_admit.c) */
    inf_map admitted;     /* Volume uid -> what this process admitted (vol_admit.c) */
} vol_app;

/* The Volume half (vol_claim.c): its informer, indexes and controller. */
int vol_claim_setup(vol_app *a, const rec_env *env);

/* ---- admissions batched per pool (vol_admit.c) ------------------------------- */

/* Put the Volume uid (ns/name, size bytes) in pool's waiting list (and in no
 * other's). Strings copied. 0 or KC_ERR_NOMEM. */
int vol_wait_add(vol_app *a, const char *pool, const char *uid, const char *ns, const char *name,
                 int64_t size);
/* Take uid out of every waiting list. */
void vol_wait_remove(vol_app *a, const char *uid);
/* What this process admitted for uid into pool: *until; false when nothing. */
bool vol_admitted_get(vol_app *a, const char *uid, const char *pool, int64_t *until);
void vol_admitted_forget(vol_app *a, const char *uid);
/* The pool this process admitted uid into (malloc'd), or NULL. */
char *vol_admitted_pool(vol_app *a, const char *uid);
/* Whether this process's pool reconcile found no room for uid in pool (the
 * verdict is taken: true once). A Volume whose cache still shows room then
 * waits instead of asking again at once. */
bool vol_rejected_take(vol_app *a, const char *uid, const char *pool);
#define VOL_REJECTED (-1) /* admitted.until of a verdict of no room */

typedef struct vol_batch_item {
    char *uid, *ns, *name;
    int64_t until; /* admitted: the entry's deadline */
} vol_batch_item;

typedef struct vol_batch {
    vol_batch_item *v;
    size_t n, cap;
} vol_batch;

void vol_batch_clear(vol_batch *b);

/*
 * The pool's reconcile: admit its waiters into l (in memory, in the order
 * they came) until one does not fit the ledger's room for entries. *in gets
 * the admitted (or already admitted) ones, *out those with no room. Both are
 * the caller's (vol_batch_clear). 0 or KC_ERR_NOMEM.
 */
int vol_admit_batch(vol_app *a, const char *pool, vol_ledger *l, int64_t now, vol_batch *in,
                    vol_batch *out);
/* After the ledger was written: remember in, take in and out off the list,
 * wake their Volumes. */
void vol_admit_commit(vol_app *a, const char *pool, const vol_batch *in, const vol_batch *out);
/* Free the maps (cleanup). */
void vol_admit_close(vol_app *a);

#endif
