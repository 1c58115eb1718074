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
#include "rec_stale.h"
#include "store.h"
#include "vol_ledger.h"

#define VOL_POOL_CONTROLLER "storagepool"
#define VOL_CLAIM_CONTROLLER "volume"
#define VOL_PVC_CONTROLLER "persistentvolumeclaim"
#define VOL_CAPACITY_CONTROLLER "storagecapacity"
#define VOL_RESV_CONTROLLER "volumereservation" /* the orphan sweep (vol_claim.c) */
#define VOL_RESV_RESYNC 60.0                    /* s: every Reservation swept this often */
#define VOL_SWEEP_ALL "~all"                    /* the sweep's own key (not a Reservation name) */
/* On a Volume's Reservation, Retain or Delete (its reclaimPolicy when placed):
 * what the orphan sweep knows of the policy once the Volume is gone. */
#define VOL_LABEL_RECLAIM "provisio.dev/reclaim-policy"
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
extern const kc_ref vol_pvs_ref;
extern const kc_ref vol_pvcs_ref;
extern const kc_ref vol_classes_ref;
extern const kc_ref vol_capacities_ref;

#define VOL_PROVISIONER "local.provisio.dev"
/* On the PV and the PVC made for a Volume: the Volume's uid. */
#define VOL_LABEL_UID "provisio.dev/volume-uid"
/* On a Volume made for a dynamically provisioned PVC: its PV's name. */
#define VOL_ANN_PV_NAME "provisio.dev/persistent-volume-name"
/* On a Volume made for a dynamically provisioned PVC: its StorageClass. */
#define VOL_ANN_CLASS "provisio.dev/storage-class"

#define VOL_REASON_BOUND "Bound"
#define VOL_REASON_BINDING "Binding"
#define VOL_REASON_PROVISIONING "Provisioning"
#define VOL_REASON_DIR_FAILED "DirectoryFailed"
#define VOL_REASON_VOLUME_CONFLICT "VolumeConflict"
#define VOL_REASON_CLAIM_CONFLICT "ClaimConflict"

typedef struct vol_app {
    rec_env env;
    kc_client *client;
    inf_informer *pools, *resv, *nodes, *volumes, *pvs, *pvcs, *classes, *capacities;
    store *pools_store, *resv_store, *nodes_store, *volumes_store, *pvs_store, *pvcs_store;
    store *classes_store, *capacities_store;
    struct rec_events *events; /* Events on PVCs (vol_dyn.c) */
    ctl *pool_ctl, *claim_ctl, *sweep_ctl;
    pthread_mutex_t mu;
    inf_map last_recount;      /* pool name -> recount_mark (vol_domain.c) */
    inf_map waiting;           /* pool name -> its waiting Volumes (vol_admit.c) */
    inf_map admitted;          /* Volume uid -> what this process admitted (vol_admit.c) */
    inf_map cap_marks;         /* pool name -> its last capacity write (vol_dyn.c) */
    rec_stale *stale;          /* the resourceVersions our writes of Volumes and pools replaced */
    struct vol_held *held;     /* each pool's cached Reservations, summed (vol_held.h) */
    inf_handler *held_handler; /* the Reservation informer's handler keeping it */
} vol_app;

/* The Volume half (vol_claim.c): its informer, indexes and controller. */
int vol_claim_setup(vol_app *a, const rec_env *env);

/* ---- the PersistentVolume and its claim (vol_pv.c) ---------------------------- */

/* The PV and PVC informers, their triggers of the volume controller (after
 * vol_claim_setup). */
int vol_pv_setup(vol_app *a, const rec_env *env);

/* The PV's name of a Volume (malloc'd): the annotation VOL_ANN_PV_NAME, or
 * vol-<uid>. */
int vol_pv_name(json_object *vol, char **out);

/* spec.reclaimPolicy is Retain. */
bool vol_retains(json_object *vol);

typedef struct vol_pv_want {
    int64_t size;
    const char *node;          /* the pool's node */
    const char *path;          /* the directory on it */
    const char *storage_class; /* the pool's (or the PVC's) class; NULL: none */
} vol_pv_want;

typedef struct vol_binding {
    bool ready;         /* the PVC is Bound to the PV */
    char *pv;           /* its name (owned) */
    const char *pvc;    /* borrowed from the Volume */
    const char *reason; /* when not ready */
    char *message;      /* when not ready, or a failed request's message */
} vol_binding;

/* Make the PV and the PVC where missing and say whether they are bound.
 * 0 (b filled), or a failed request's status (b->message may say more). */
int vol_pv_ensure(vol_app *a, json_object *vol, const vol_pv_want *w, vol_binding *b);
void vol_binding_clear(vol_binding *b);

/* Delete the Volume's PVC (if it owns it) and its PV; *gone once the PV is
 * gone (checked on the server when the cache has none). *why (malloc'd)
 * says what is awaited. 0 or a failed request's status. */
int vol_pv_teardown(vol_app *a, json_object *vol, bool *gone, char **why);

/* ---- dynamic provisioning (vol_dyn.c) ---------------------------------------------- */

/* StorageClasses, CSIStorageCapacities, Events; the "persistentvolumeclaim"
 * and "storagecapacity" controllers (after vol_pv_setup). */
int vol_dyn_setup(vol_app *a, const rec_env *env);
void vol_dyn_close(vol_app *a);

/* The pool serves StorageClass cls: its spec.storageClassName is cls or
 * empty (cls NULL: a Volume of no class, served by every pool). */
bool vol_pool_serves(json_object *pool, const char *cls);

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
