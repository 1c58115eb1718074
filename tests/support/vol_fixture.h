/*
 * vol_fixture - the volume app (src/reconcilers/volume, vol_setup) set up
 * for unit tests over the claim-flow fixture's replay server and client
 * (rec_claim_fixture.h, rcf_start_client): the real vol_setup with a
 * rec_env of the test's, whose add_controller keeps the controllers (none
 * runs until the test starts one) and whose add_cleanup keeps the cleanups
 * (the first is the app's own, and its argument is the vol_app, which is
 * how the test reaches it).
 *
 * Two ways to use it:
 *   - call the app's functions (vol_pv_ensure, ...) directly, with the
 *     caches filled by vfx_cache (the informers are never started);
 *   - serve the informers' lists (vfx_serve; every informer not served gets
 *     an empty list), then vfx_run a controller and wait for its reconciles.
 *
 * One environment at a time (VFX), set up by vfx_start and torn down by
 * vfx_stop (a suite's .fini), as the manager would: workers stopped,
 * informers stopped, controllers freed, cleanups in reverse order, then the
 * factory and RCF. Events of the app are flushed by the rcf_events_*
 * helpers (RCF.events is the app's recorder).
 */
#ifndef PROVISIO_VOL_FIXTURE_H
#define PROVISIO_VOL_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rec_claim_fixture.h"
#include "rec_env.h"
#include "vol_internal.h"

#define VFX_OPERATOR_NS "provisio-system"
#define VFX_MAX_CONTROLLERS 8
#define VFX_MAX_CLEANUPS 8

typedef struct vfx_env {
    rec_env env;
    inf_factory *factory;
    vol_app *app;
    ctl *ctls[VFX_MAX_CONTROLLERS];
    size_t n_ctls;
    void (*cleanup_fn[VFX_MAX_CLEANUPS])(void *);
    void *cleanup_arg[VFX_MAX_CLEANUPS];
    size_t n_cleanups;
    bool served[16]; /* which informer paths vfx_serve answered */
    bool started;    /* the factory */
} vfx_env;

extern vfx_env VFX;

/* rcf_start_client(label), then vol_setup; nothing started. */
void vfx_start(const char *label);
void vfx_stop(void);

/* The controller called name (VOL_PVC_CONTROLLER, ...); fails the test if none. */
ctl *vfx_controller(const char *name);

/* The informer list path of one of the app's resources ("persistentvolumeclaims",
 * "storageclasses", "volumes", ...: the plural resource name). */
const char *vfx_list_path(const char *resource);

/* Answer the first LIST of resource with items (JSON objects joined by
 * commas, "" for none) and keep its watch open. Before vfx_run. */
void vfx_serve(const char *resource, const char *items);

/* The same, and the watch sends events (watch event lines, {"type":...,
 * "object":...} each followed by a newline) delay_ms after it was opened,
 * then stays open. */
void vfx_serve_events(const char *resource, const char *items, const char *events, int delay_ms);

/* Put the object of text into store (a cache of the app; informers never
 * started). */
void vfx_cache(store *s, const char *text);

/* Serve an empty list to every informer not served yet, start them, wait
 * for the caches, then start the controller called name. */
void vfx_run(const char *name);

/* Reconciles of the controller so far (all outcomes). */
uint64_t vfx_reconciles(const char *name);

/* Wait until the controller finished at least n reconciles (fails the test
 * after 10 s). */
void vfx_wait_reconciles(const char *name, uint64_t n);

#endif
