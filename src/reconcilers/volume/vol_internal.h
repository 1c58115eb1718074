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
} vol_app;

/* The Volume half (vol_claim.c): its informer, indexes and controller. */
int vol_claim_setup(vol_app *a, const rec_env *env);

#endif
