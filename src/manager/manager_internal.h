/*
 * manager_internal - what manager.c (domains, setup, loop, shutdown),
 * manager_hooks.c (the libraries' callbacks) and manager_workers.c
 * (workers, elector thread, watchdog) share: the bounds, the state and the
 * functions that cross files. Not part of the manager's contract: no other
 * module includes this header.
 */
#ifndef PROVISIO_MANAGER_INTERNAL_H
#define PROVISIO_MANAGER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "controller.h"
#include "flags.h"
#include "httpd.h"
#include "informer.h"
#include "kc_client.h"
#include "kc_config.h"
#include "leader.h"
#include "log.h"
#include "manager.h"
#include "metrics.h"
#include "rec_env.h"
#include "reflector.h"

/* ---- bounds --------------------------------------------------------------------- */

#define MGR_WORKER_STOP_BOUND 5.0 /* s after the signal for reconciles in flight */
#define MGR_SHUTDOWN_BOUND 10.0   /* s after the signal for the whole shutdown */
#define MGR_SYNC_POLL_MS 100      /* main loop wake-up while caches are not synced */
/* controller-runtime's default SyncPeriod: every cached object is re-delivered. */
#define MGR_RESYNC_PERIOD (10.0 * 3600.0)
#define MGR_LOG_MAX_PAIRS 8

#define MGR_LOGGER "manager"
#define MGR_INFO(...) log_write(PLOG_INFO, MGR_LOGGER, __VA_ARGS__)
#define MGR_ERROR(...) log_write(PLOG_ERROR, MGR_LOGGER, __VA_ARGS__)

/* ---- state ---------------------------------------------------------------------- */

/* One registered controller and its metric children (looked up once). */
typedef struct mgr_ctl {
    ctl *c;
    const char *name; /* ctl_name(c) */
    met_counter *result_success, *result_error, *result_requeue, *result_requeue_after;
    met_counter *errors;
    met_histogram *reconcile_time;
    met_histogram *queue_duration, *work_duration;
    met_gauge *active_workers, *max_concurrent;
    met_gauge *depth, *unfinished, *longest;
    met_counter *adds, *retries;
} mgr_ctl;

typedef struct mgr_cleanup {
    void (*fn)(void *arg);
    void *arg;
} mgr_cleanup;

typedef struct mgr {
    flags_mode mode;  /* FLAGS_OPERATOR or FLAGS_AGENT */
    const char *prog; /* for usage and messages: "provisio" or "provisio agent" */
    flags_options fl;
    kc_config *cfg;
    kc_client *client;    /* shared by reflectors and reconcilers */
    kc_client *le_client; /* the elector's own (short timeouts, no retries) */
    char *rest_host;
    met_registry *reg;
    met_cr m;
    met_vec *inf_objects, *inf_pending, *inf_pending_max; /* per informer */
    httpd_server *metrics_srv, *probe_srv;
    inf_factory *factory;
    rec_env env;
    char *identity;
    char *lease_ns;

    mgr_ctl *ctls;
    size_t nctls, capctls;
    mgr_cleanup *cleanups;
    size_t ncleanups, capcleanups;
    bool setup_done;

    le_elector *le;
    pthread_t le_thread;
    bool le_thread_started;
    atomic_int le_result; /* le_run's return, valid once le_done */
    atomic_bool le_done;

    pthread_mutex_t wk_mu;
    bool leading;         /* under wk_mu */
    bool workers_running; /* under wk_mu */
    bool shutting_down;   /* under wk_mu: never start workers again */

    int sigfd; /* SIGTERM / SIGINT */
    int evfd;  /* wakes the main loop (elector events) */
    bool logged_synced;
} mgr;

typedef struct mgr_watchdog {
    pthread_t th;
    int sigfd;
    int evfd;
    double start;
    atomic_int phase; /* 0 stopping workers, 1 workers stopped, 2 done */
} mgr_watchdog;

/* ---- small helpers (manager.c) -------------------------------------------------- */

/* Wake a poll on the eventfd fd. */
void mgr_wake(int fd);
/* Reset the eventfd fd. */
void mgr_drain(int fd);
/* The registered controller called name, or NULL. */
mgr_ctl *mgr_find_ctl(mgr *m, const char *name);

/* ---- hooks (manager_hooks.c) ---------------------------------------------------- */

/* kc_client's per-request hook: rest_client_requests_total. */
void mgr_on_request(const char *verb, long http_status, void *user);
/* Controller hook: controller_runtime_reconcile_total / _time_seconds / errors. */
void mgr_on_reconcile_done(const char *controller, const char *result, double seconds, void *user);
/* Work queue hook: queue and work durations. */
void mgr_on_workqueue_observe(const char *controller, const char *metric, double seconds,
                              void *user);
/* Controller hook: log a reconcile error. */
void mgr_on_reconcile_error(const ctl_ctx *ctx, int code, const char *message, void *user);
/* Reflector hook: its messages into the log. */
void mgr_on_refl_log(refl_log_level level, const char *msg, const kc_error *err, void *user);
/* rec_env: log a message with key/value pairs. */
void mgr_env_log(const rec_env *env, rec_log_level level, const char *logger, const char *msg,
                 const char *const *kv);
/* rec_env: register a controller (setup only). */
int mgr_env_add_controller(const rec_env *env, ctl *c);
/* rec_env: register a cleanup run at teardown in reverse order (setup only). */
int mgr_env_add_cleanup(const rec_env *env, void (*fn)(void *arg), void *arg);
/* Scrape time: mirror the informers', controllers' and queues' gauges and counters. */
void mgr_collect(void *ud);
/* /readyz "informers": every informer of the factory listed once. */
int mgr_check_informers(void *ud, char **why);

/* ---- workers, elector, watchdog (manager_workers.c) ---------------------------- */

/* Every informer of the factory has synced. */
bool mgr_all_informers_synced(mgr *m);
/* Stop every controller's workers; caller holds wk_mu. */
void mgr_stop_workers_locked(mgr *m);
/* Start every controller's workers if this replica leads and caches synced; caller holds wk_mu. */
void mgr_try_start_workers_locked(mgr *m);
/* Elector callbacks. */
void mgr_on_started_leading(void *user);
void mgr_on_stopped_leading(void *user);
/* The "leader" thread: le_run. */
void *mgr_le_main(void *arg);
/* The watchdog thread: enforces the shutdown bounds, answers a second signal. */
void *mgr_watchdog_main(void *arg);
/* Tell the watchdog the shutdown reached phase. */
void mgr_watchdog_phase(mgr_watchdog *w, int phase);

#endif
