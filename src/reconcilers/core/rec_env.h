/*
 * rec_env - what the manager hands to each domain's setup function.
 *
 * Every domain (IP, devices, volumes) exposes one entry point
 *
 *   int <domain>_setup(const rec_env *env);
 *
 * which the manager calls once, on the main thread, after the client and the
 * informer factory exist and before anything is started. A setup function:
 *
 *   1. gets the informers it needs from env->factory (inf_factory_get) and
 *      adds its indexes (inf_add_index: only now, before start);
 *   2. makes its controllers with rec_env_new_controller() (or ctl_new with
 *      env->ctl_defaults followed by env->add_controller), and adds their
 *      watches (ctl_watch_for / ctl_watch_owns / ctl_watch_map);
 *   3. registers a cleanup for its own state with env->add_cleanup;
 *   4. returns 0, or a negative kc_status: the manager then logs it and
 *      exits 1 (a domain that cannot be set up is a configuration error).
 *
 * A setup function must not start controllers or informers, block on the
 * API server, or keep the env pointer: env and its strings live as long as
 * the manager (until after every cleanup ran), but copy what you need.
 *
 * What the manager does with what was registered:
 *   - informers are started on every replica (standbys keep warm caches);
 *     /readyz turns ok once all of them synced;
 *   - controllers' workers are started (ctl_start) while this replica leads
 *     (at once without --leader-elect) and stopped at once when it stops
 *     leading; controller-runtime's metrics and the reconcile-error log line
 *     (controller, namespace, name, reconcileID) come from the hooks in
 *     env->ctl_defaults;
 *   - on shutdown: workers stopped (in-flight reconciles finish, bounded),
 *     the Lease released, informers stopped, then every controller freed
 *     (ctl_free), then the cleanups run in the reverse order of
 *     registration, then the factory and the client are freed. When a
 *     cleanup runs no handler, map function or reconcile of the domain runs
 *     or will run again.
 *
 * Example (ip_setup):
 *
 *   int ip_setup(const rec_env *env)
 *   {
 *       ip_app *app = calloc(1, sizeof *app);  // checked
 *       app->client = env->client;
 *       inf_factory_get(env->factory, &claims_ref, NULL, &app->claims);
 *       inf_add_index(app->claims, "by-pool", store_index_field, "spec.pool");
 *       ctl *c;
 *       int rc = rec_env_new_controller(env, "ipclaim", reconcile_claim, app, &c);
 *       if (rc) { free(app); return rc; }
 *       ctl_watch_for(c, app->claims);
 *       return env->add_cleanup(env, ip_app_free, app);
 *   }
 *
 * Threading: the function pointers of env may be called only from the setup
 * function (the main thread), except env->log, which any thread may call at
 * any time while the manager runs (reconcile workers, handlers).
 *
 * This header includes only the client and informer layers (the reconcilers
 * library does not see the manager's headers).
 */
#ifndef PROVISIO_REC_ENV_H
#define PROVISIO_REC_ENV_H

#include <stddef.h>

#include "controller.h"
#include "informer.h"
#include "kc_client.h"

/* Levels of env->log; the same order as the manager's log levels. */
typedef enum rec_log_level {
    REC_LOG_DEBUG = 0,
    REC_LOG_INFO = 1,
    REC_LOG_ERROR = 2,
} rec_log_level;

/* A NULL-terminated list of key, value strings for env->log:
 * REC_KV("namespace", ns, "name", name). */
#define REC_KV(...) ((const char *const[]){__VA_ARGS__, NULL})

typedef struct rec_env rec_env;

struct rec_env {
    kc_client *client;              /* shared by every thread; borrowed */
    inf_factory *factory;           /* the manager's shared informers; borrowed */
    const char *identity;           /* this replica: "<hostname>_<uuid>" (also the
                                     * leader-election holder identity) */
    const char *operator_namespace; /* where the operator runs: --leader-election-
                                     * namespace, else the pod's namespace, else
                                     * "default" */
    const char *watch_namespace;    /* --namespace: restrict namespaced watches
                                     * to it; NULL = all namespaces */
    int max_concurrent_reconciles;  /* --max-concurrent-reconciles (>= 1) */
    const char *node_name;          /* the node agent: --node-name; NULL in the operator */
    const char *host_root;          /* the node agent: --host-root, the prefix of every
                                     * node path; NULL in the operator */
    const kc_config *config;        /* the API server and the TLS to reach it; borrowed */
    const char *cni_kubeconfig;     /* the node agent: --cni-kubeconfig, a node path;
                                     * NULL when not given (and in the operator) */
    const char *cni_account;        /* the node agent: --cni-service-account,
                                     * [NAMESPACE/]NAME */
    const char *cni_server;         /* the node agent: --cni-server; NULL = the agent's */

    /*
     * Options to pass to ctl_new: max_concurrent_reconciles and the
     * manager's metric/log hooks are filled in. Copy it and change what you
     * need (e.g. queue rate limits), but keep the hooks.
     */
    ctl_opts ctl_defaults;

    /*
     * Hand a controller to the manager, which from then on owns it (starts,
     * stops and frees it; never ctl_free it yourself). 0, KC_ERR_NOMEM, or
     * KC_ERR_INVALID_ARG when called after the setup functions returned
     * (the caller still owns c on failure). Setup function only.
     */
    int (*add_controller)(const rec_env *env, ctl *c);

    /*
     * Run fn(arg) at shutdown, after every controller was freed and the
     * informers stopped (see above). 0 or KC_ERR_NOMEM (fn is not called
     * then: free arg yourself). Setup function only.
     */
    int (*add_cleanup)(const rec_env *env, void (*fn)(void *arg), void *arg);

    /*
     * One JSON log line: level, logger (e.g. the controller name; may be
     * NULL), msg, then kv (NULL-terminated key, value strings, see REC_KV;
     * kv may be NULL; the first 8 pairs are written; a NULL value ends the
     * list). Any thread. Never pass secrets. Always set.
     */
    void (*log)(const rec_env *env, rec_log_level level, const char *logger, const char *msg,
                const char *const *kv);

    void *mgr_; /* the manager's; do not touch */
};

/*
 * ctl_new(name, &env->ctl_defaults, fn, user) + env->add_controller. *out is
 * borrowed from the manager (valid until the cleanups have run). 0 or a
 * negative kc_status (nothing registered then).
 */
static inline int rec_env_new_controller(const rec_env *env, const char *name, ctl_reconcile_fn fn,
                                         void *user, ctl **out)
{
    ctl *c = NULL;
    int rc = ctl_new(name, &env->ctl_defaults, fn, user, &c);
    if (rc != 0)
        return rc;
    rc = env->add_controller(env, c);
    if (rc != 0) {
        ctl_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

#endif
