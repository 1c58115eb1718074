/*
 * manager - the operator's run mode (see manager.h for the behaviour).
 *
 * This file holds the domains, the small helpers, setup, the main loop and
 * the shutdown. The hooks the libraries call (client, controllers,
 * reflectors, rec_env, metrics collector, readiness) are in
 * manager_hooks.c; starting and stopping workers, the elector thread and the
 * shutdown watchdog in manager_workers.c; the state they share in
 * manager_internal.h.
 *
 * Threads:
 *   - main: setup, then the event loop (poll on a signalfd for SIGTERM /
 *     SIGINT and an eventfd the elector thread writes), then the shutdown;
 *   - "leader": le_run and its callbacks (only with --leader-elect);
 *   - the watchdog: only during shutdown, enforces the time bounds and
 *     answers a second signal;
 *   - everything the libraries start: reflectors and informer dispatchers,
 *     reconcile workers, the httpd service threads, the elector's helper.
 * SIGTERM and SIGINT are blocked before any thread exists, so every thread
 * inherits the mask and the signals are only ever read from the signalfd.
 *
 * Teardown order: workers stopped -> Lease released (le_stop, join the
 * elector) -> informers stopped -> HTTP servers stopped -> controllers freed
 * -> domain cleanups (reverse order) -> factory, elector, clients, config,
 * registry freed.
 */
#include "manager_internal.h"

#include "controller.h"
#include "dev_agent.h"
#include "ip_agent.h"
#include "vol_node.h"
#include "flags.h"
#include "httpd.h"
#include "informer.h"
#include "dev.h"
#include "ip.h"
#include "vol.h"
#include "kc_client.h"
#include "kc_config.h"
#include "kc_error.h"
#include "leader.h"
#include "log.h"
#include "metrics.h"
#include "rec_env.h"
#include "pv_clock.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- the domains ------------------------------------------------------------ */

typedef struct mgr_domain {
    const char *name;
    int (*setup)(const rec_env *env);
} mgr_domain;

/*
 * Every domain's setup function: add one line per domain (and include its
 * header above). The table ends with a NULL entry.
 */
static const mgr_domain mgr_domains[] = {
    {"ip", ip_setup},
    {"device", dev_setup},
    {"volume", vol_setup},
    {NULL, NULL},
};

/*
 * The node agent's domains (`provisio agent`): the node-side halves of
 * devices, volumes and networks (the last only with --cni-kubeconfig: the
 * kubeconfig of provisio-cni).
 */
static const mgr_domain mgr_agent_domains[] = {
    {"device-agent", dev_agent_setup},
    {"volume-agent", vol_node_setup},
    {"network-agent", ip_agent_setup},
    {NULL, NULL},
};

/* ---- small helpers ---------------------------------------------------------- */

void mgr_wake(int fd)
{
    uint64_t one = 1;
    ssize_t n;
    do
        n = write(fd, &one, sizeof one);
    while (n < 0 && errno == EINTR);
}

void mgr_drain(int fd)
{
    uint64_t v;
    ssize_t n;
    do
        n = read(fd, &v, sizeof v);
    while (n < 0 && errno == EINTR);
}

/* Read a whole small file into a malloc'd NUL-terminated string; NULL on error. */
static char *mgr_read_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    size_t cap = 256, len = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        if (len + 1 == cap) {
            if (cap >= (size_t)1 << 20) { /* a namespace file is never this big */
                free(buf);
                buf = NULL;
                break;
            }
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            free(buf);
            buf = NULL;
            break;
        }
        if (n == 0) {
            buf[len] = '\0';
            break;
        }
        len += (size_t)n;
    }
    close(fd);
    return buf;
}

int mgr_lease_namespace(const char *flag, const char *sa_dir, char **out)
{
    *out = NULL;
    if (flag != NULL && flag[0] != '\0') {
        *out = strdup(flag);
        return *out != NULL ? KC_OK : KC_ERR_NOMEM;
    }
    const char *env = getenv(KC_SA_DIR_ENV);
    const char *dir = sa_dir != NULL                  ? sa_dir
                      : env != NULL && env[0] != '\0' ? env
                                                      : KC_DEFAULT_SA_DIR;
    size_t plen = strlen(dir) + sizeof("/namespace");
    char *path = malloc(plen);
    if (path == NULL)
        return KC_ERR_NOMEM;
    snprintf(path, plen, "%s/namespace", dir);
    char *text = mgr_read_file(path);
    free(path);
    if (text != NULL) {
        char *s = text;
        while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
            s++;
        size_t n = strlen(s);
        while (n > 0 &&
               (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
            n--;
        if (n > 0) {
            *out = strndup(s, n);
            free(text);
            return *out != NULL ? KC_OK : KC_ERR_NOMEM;
        }
        free(text);
    }
    *out = strdup("default");
    return *out != NULL ? KC_OK : KC_ERR_NOMEM;
}

int mgr_rest_host(const char *server, char **out)
{
    *out = NULL;
    if (server == NULL)
        return KC_ERR_INVALID_ARG;
    const char *h = strstr(server, "://");
    h = h != NULL ? h + 3 : server;
    size_t n = strcspn(h, "/?#");
    *out = strndup(h, n);
    return *out != NULL ? KC_OK : KC_ERR_NOMEM;
}

mgr_ctl *mgr_find_ctl(mgr *m, const char *name)
{
    for (size_t i = 0; i < m->nctls; i++)
        if (strcmp(m->ctls[i].name, name) == 0)
            return &m->ctls[i];
    return NULL;
}

/* ---- setup and run --------------------------------------------------------------- */

static int mgr_load_client(mgr *m)
{
    kc_error err = KC_ERROR_INIT;
    kc_config_opts copts = {.kubeconfig = m->fl.kubeconfig, .context = m->fl.context};
    int rc = kc_config_load(&copts, &m->cfg, &err);
    if (rc != 0) {
        MGR_ERROR("unable to load the client configuration", "error",
                  err.message != NULL ? err.message : kc_strerror(rc), NULL);
        kc_error_clear(&err);
        return rc;
    }
    rc = mgr_rest_host(kc_config_server(m->cfg), &m->rest_host);
    if (rc == 0)
        rc = kc_client_new(m->cfg, NULL, &m->client, &err);
    if (rc != 0) {
        MGR_ERROR("unable to create the API client", "error",
                  err.message != NULL ? err.message : kc_strerror(rc), NULL);
        kc_error_clear(&err);
        return rc;
    }
    kc_client_set_request_hook(m->client, mgr_on_request, m);
    return KC_OK;
}

static int mgr_setup_elector(mgr *m)
{
    le_config lc;
    le_config_init(&lc);
    lc.namespace_ = m->lease_ns;
    lc.name = m->fl.leader_election_id;
    lc.identity = m->identity;
    lc.lease_duration = (double)m->fl.lease_duration_ns / (double)FLAGS_NS_PER_SECOND;
    lc.renew_deadline = (double)m->fl.renew_deadline_ns / (double)FLAGS_NS_PER_SECOND;
    lc.retry_period = (double)m->fl.retry_period_ns / (double)FLAGS_NS_PER_SECOND;
    lc.release_on_cancel = true;
    lc.rejoin_on_loss = false;
    lc.master_status = m->m.leader_election_master_status;
    lc.on_started_leading = mgr_on_started_leading;
    lc.on_stopped_leading = mgr_on_stopped_leading;
    lc.user = m;

    kc_client_opts co = {0};
    le_client_opts(&lc, &co);
    kc_error err = KC_ERROR_INIT;
    int rc = kc_client_new(m->cfg, &co, &m->le_client, &err);
    if (rc == 0) {
        kc_client_set_request_hook(m->le_client, mgr_on_request, m);
        lc.client = m->le_client;
        rc = le_new(&lc, &m->le, &err);
    }
    if (rc != 0)
        MGR_ERROR("unable to set up leader election", "error",
                  err.message != NULL ? err.message : kc_strerror(rc), NULL);
    kc_error_clear(&err);
    return rc;
}

static int mgr_run_setups(mgr *m)
{
    m->env.client = m->client;
    m->env.factory = m->factory;
    m->env.identity = m->identity;
    m->env.operator_namespace = m->lease_ns;
    m->env.watch_namespace = m->fl.watch_namespace;
    m->env.max_concurrent_reconciles = m->fl.max_concurrent_reconciles;
    m->env.ctl_defaults.max_concurrent_reconciles = m->fl.max_concurrent_reconciles;
    m->env.ctl_defaults.hooks.reconcile_done = mgr_on_reconcile_done;
    m->env.ctl_defaults.hooks.workqueue_observe = mgr_on_workqueue_observe;
    m->env.ctl_defaults.hooks.reconcile_error = mgr_on_reconcile_error;
    m->env.ctl_defaults.hooks.user = m;
    m->env.add_controller = mgr_env_add_controller;
    m->env.add_cleanup = mgr_env_add_cleanup;
    m->env.log = mgr_env_log;
    m->env.node_name = m->fl.node_name;
    m->env.host_root = m->fl.host_root;
    m->env.config = m->cfg;
    m->env.cni_kubeconfig = m->fl.cni_kubeconfig;
    m->env.cni_account = m->fl.cni_service_account;
    m->env.cni_server = m->fl.cni_server;
    m->env.mgr_ = m;
    const mgr_domain *domains = m->mode == FLAGS_AGENT ? mgr_agent_domains : mgr_domains;
    for (const mgr_domain *d = domains; d->setup != NULL; d++) {
        int rc = d->setup(&m->env);
        if (rc != 0) {
            MGR_ERROR("domain setup failed", "domain", d->name, "error", kc_strerror(rc), NULL);
            return rc;
        }
        MGR_INFO("domain set up", "domain", d->name, NULL);
    }
    m->setup_done = true;
    return KC_OK;
}

static int mgr_start_httpd(mgr *m)
{
    m->metrics_srv = httpd_new(&(httpd_options){.metrics = m->reg});
    m->probe_srv = httpd_new(&(httpd_options){.probes = true});
    if (m->metrics_srv == NULL || m->probe_srv == NULL)
        return KC_ERR_NOMEM;
    int rc = httpd_add_readyz_check(m->probe_srv, "informers", mgr_check_informers, m);
    if (rc != 0)
        return rc;
    int port = 0;
    rc = httpd_start(m->metrics_srv, m->fl.metrics_bind_address, &port);
    if (rc != 0) {
        MGR_ERROR("unable to serve metrics", "bindAddress", m->fl.metrics_bind_address, "error",
                  kc_strerror(rc), NULL);
        return rc;
    }
    if (port > 0)
        MGR_INFO("Serving metrics server", "bindAddress", m->fl.metrics_bind_address,
                 LOG_INT("port", port), NULL);
    rc = httpd_start(m->probe_srv, m->fl.health_probe_bind_address, &port);
    if (rc != 0) {
        MGR_ERROR("unable to serve health probes", "bindAddress", m->fl.health_probe_bind_address,
                  "error", kc_strerror(rc), NULL);
        return rc;
    }
    if (port > 0)
        MGR_INFO("Starting health probe server", "bindAddress", m->fl.health_probe_bind_address,
                 LOG_INT("port", port), NULL);
    return KC_OK;
}

/*
 * The event loop. Returns the signal number that asked for shutdown, or 0
 * when le_run ended by itself (lease lost, or an error).
 */
static int mgr_loop(mgr *m)
{
    for (;;) {
        bool synced = mgr_all_informers_synced(m);
        if (synced && !m->logged_synced) {
            m->logged_synced = true;
            MGR_INFO("all informers synced", LOG_INT("informers", inf_factory_len(m->factory)),
                     NULL);
        }
        pthread_mutex_lock(&m->wk_mu);
        mgr_try_start_workers_locked(m);
        bool waiting = !synced || (m->leading && !m->workers_running);
        pthread_mutex_unlock(&m->wk_mu);

        struct pollfd p[2] = {{m->sigfd, POLLIN, 0}, {m->evfd, POLLIN, 0}};
        int n = poll(p, 2, waiting ? MGR_SYNC_POLL_MS : -1);
        if (n < 0 && errno != EINTR) {
            MGR_ERROR("poll failed", "error", strerror(errno), NULL);
            return SIGTERM;
        }
        if (n > 0 && (p[0].revents & POLLIN)) {
            struct signalfd_siginfo si;
            ssize_t r = read(m->sigfd, &si, sizeof si);
            if (r == (ssize_t)sizeof si)
                return (int)si.ssi_signo;
        }
        if (n > 0 && (p[1].revents & POLLIN))
            mgr_drain(m->evfd);
        if (atomic_load(&m->le_done))
            return 0;
    }
}

/* A duration from the flags as text, "15s" / "0.5s" (Go prints 500ms; close enough). */
static void mgr_fmt_duration(int64_t ns, char *buf, size_t len)
{
    snprintf(buf, len, "%.9gs", (double)ns / (double)FLAGS_NS_PER_SECOND);
}

static void mgr_log_startup_agent(mgr *m)
{
    MGR_INFO("starting agent", "version", PROVISIO_VERSION, "nodeName", m->fl.node_name, "hostRoot",
             m->fl.host_root, "server", kc_config_server(m->cfg), "context",
             kc_config_context(m->cfg), LOG_BOOL("inCluster", kc_config_is_in_cluster(m->cfg)),
             "kubeconfig", m->fl.kubeconfig, "identity", m->identity, "metricsBindAddress",
             m->fl.metrics_bind_address, "healthProbeBindAddress", m->fl.health_probe_bind_address,
             "logLevel", log_level_name(m->fl.log_level), NULL);
}

/* Whether a failure to read the node may pass by itself (the API server
 * restarting, overloaded), not a wrong flag or missing rights. */
static bool mgr_transient(int rc)
{
    return rc == KC_ERR_TRANSPORT || rc == KC_ERR_TIMEOUT || rc == KC_ERR_TOO_MANY_REQUESTS ||
           rc == KC_ERR_INTERNAL || rc == KC_ERR_SERVICE_UNAVAILABLE ||
           rc == KC_ERR_SERVER_TIMEOUT || rc == KC_ERR_API;
}

/* Wait up to seconds for SIGTERM/SIGINT on the signalfd: true when one came. */
static bool mgr_wait_signal(mgr *m, double seconds)
{
    struct pollfd p = {.fd = m->sigfd, .events = POLLIN};
    if (poll(&p, 1, (int)(seconds * 1000)) <= 0)
        return false;
    struct signalfd_siginfo si;
    if (read(m->sigfd, &si, sizeof si) == (ssize_t)sizeof si)
        MGR_INFO("received signal, shutting down", "signal", strsignal((int)si.ssi_signo), NULL);
    return true;
}

/*
 * The agent's start-up checks: --host-root is a directory it can see, and
 * --node-name names an existing Node (a DaemonSet pod always runs on one, so
 * NotFound is a wrong flag, and failing is the loud answer). An API server
 * that cannot answer yet (restarting, 5xx, 429) is waited for, as the
 * informers would, 1 s doubling to 10 s apart, until SIGTERM (then
 * KC_ERR_STOPPED): a DaemonSet pod started during an API server restart
 * should not crash-loop.
 */
static int mgr_agent_check(mgr *m)
{
    struct stat st;
    if (stat(m->fl.host_root, &st) != 0 || !S_ISDIR(st.st_mode)) {
        MGR_ERROR("--host-root is not a directory", "hostRoot", m->fl.host_root, "error",
                  strerror(errno), NULL);
        return KC_ERR_INVALID_ARG;
    }
    kc_ref ref = {.version = "v1", .resource = "nodes", .name = m->fl.node_name};
    json_object *node = NULL;
    kc_error err = KC_ERROR_INIT;
    int rc;
    for (double delay = 1.0;
         (rc = kc_get(m->client, &ref, &node, &err)) != KC_OK && mgr_transient(rc);
         delay = delay * 2 > 10 ? 10 : delay * 2) {
        MGR_INFO("the API server cannot answer yet; reading the node again", "nodeName",
                 m->fl.node_name, "error", err.message != NULL ? err.message : kc_strerror(rc),
                 NULL);
        kc_error_clear(&err);
        if (mgr_wait_signal(m, delay))
            return KC_ERR_STOPPED;
    }
    if (rc != KC_OK) {
        MGR_ERROR(rc == KC_ERR_NOT_FOUND ? "node not found" : "unable to read the node", "nodeName",
                  m->fl.node_name, "error", err.message != NULL ? err.message : kc_strerror(rc),
                  NULL);
        kc_error_clear(&err);
        return rc;
    }
    json_object *md = NULL, *uid = NULL;
    json_object_object_get_ex(node, "metadata", &md);
    json_object_object_get_ex(md, "uid", &uid);
    MGR_INFO("node found", "nodeName", m->fl.node_name, "uid", json_object_get_string(uid), NULL);
    json_object_put(node);
    return KC_OK;
}

static void mgr_log_startup(mgr *m)
{
    char lease[32], renew[32], retry[32];
    mgr_fmt_duration(m->fl.lease_duration_ns, lease, sizeof lease);
    mgr_fmt_duration(m->fl.renew_deadline_ns, renew, sizeof renew);
    mgr_fmt_duration(m->fl.retry_period_ns, retry, sizeof retry);
    MGR_INFO("starting manager", "version", PROVISIO_VERSION, "server", kc_config_server(m->cfg),
             "context", kc_config_context(m->cfg),
             LOG_BOOL("inCluster", kc_config_is_in_cluster(m->cfg)), "kubeconfig", m->fl.kubeconfig,
             "namespace", m->fl.watch_namespace, "identity", m->identity,
             LOG_BOOL("leaderElect", m->fl.leader_elect), "leaderElectionID",
             m->fl.leader_election_id, "leaderElectionNamespace", m->lease_ns, "leaseDuration",
             lease, "renewDeadline", renew, "retryPeriod", retry, "metricsBindAddress",
             m->fl.metrics_bind_address, "healthProbeBindAddress", m->fl.health_probe_bind_address,
             LOG_INT("maxConcurrentReconciles", m->fl.max_concurrent_reconciles), "logLevel",
             log_level_name(m->fl.log_level), NULL);
}

/* Free everything; the threads are all gone (or never started). */
static void mgr_free_all(mgr *m)
{
    for (size_t i = 0; i < m->nctls; i++)
        ctl_free(m->ctls[i].c);
    free(m->ctls);
    for (size_t i = m->ncleanups; i > 0; i--)
        m->cleanups[i - 1].fn(m->cleanups[i - 1].arg);
    free(m->cleanups);
    inf_factory_free(m->factory);
    httpd_free(m->metrics_srv);
    httpd_free(m->probe_srv);
    le_free(m->le);
    kc_client_free(m->le_client);
    kc_client_free(m->client);
    kc_config_free(m->cfg);
    free(m->rest_host);
    free(m->identity);
    free(m->lease_ns);
    if (m->reg != NULL)
        met_default_free();
    if (m->sigfd >= 0)
        close(m->sigfd);
    if (m->evfd >= 0)
        close(m->evfd);
    pthread_mutex_destroy(&m->wk_mu);
    flags_free(&m->fl);
}

/* Setup through the start of the informers and the elector. */
static int mgr_start(mgr *m)
{
    int rc = mgr_load_client(m);
    if (rc != 0)
        return rc;
    if ((rc = le_default_identity(&m->identity)) != 0 ||
        (rc = mgr_lease_namespace(m->fl.leader_election_namespace, NULL, &m->lease_ns)) != 0) {
        MGR_ERROR("startup failed", "error", kc_strerror(rc), NULL);
        return rc;
    }
    if (m->mode == FLAGS_AGENT)
        mgr_log_startup_agent(m);
    else
        mgr_log_startup(m);

    m->reg = met_default();
    if (m->reg == NULL)
        return KC_ERR_NOMEM;
    static const char *const inf_labels[] = {"resource", NULL};
    if ((rc = met_cr_register(m->reg, &m->m)) != 0 ||
        (rc = met_gauge_vec(m->reg, "provisio_informer_objects", "Objects in an informer's cache.",
                            inf_labels, &m->inf_objects)) != 0 ||
        (rc = met_gauge_vec(m->reg, "provisio_informer_pending_notifications",
                            "Changes an informer has queued for its handlers and not yet "
                            "delivered (each holds the old and new objects).",
                            inf_labels, &m->inf_pending)) != 0 ||
        (rc = met_gauge_vec(m->reg, "provisio_informer_pending_notifications_max",
                            "The most changes an informer has had queued at once since it "
                            "started.",
                            inf_labels, &m->inf_pending_max)) != 0 ||
        (rc = met_add_collector(m->reg, mgr_collect, m)) != 0) {
        MGR_ERROR("unable to register metrics", "error", kc_strerror(rc), NULL);
        return rc;
    }

    inf_factory_opts fo = {
        .store_mode = INF_STORE_COMPACT,
        .resync_period = MGR_RESYNC_PERIOD,
        .log = mgr_on_refl_log,
        .log_user = m,
        /* Nothing reads managedFields; a status PUT without them keeps the
         * server's (controller-runtime's TransformStripManagedFields). */
        .transform = refl_strip_managed_fields,
    };
    if ((rc = inf_factory_new(m->client, &fo, &m->factory)) != 0) {
        MGR_ERROR("unable to create the informer factory", "error", kc_strerror(rc), NULL);
        return rc;
    }
    if (m->fl.leader_elect && (rc = mgr_setup_elector(m)) != 0)
        return rc;
    if (m->mode == FLAGS_AGENT && (rc = mgr_agent_check(m)) != 0)
        return rc;
    if ((rc = mgr_run_setups(m)) != 0)
        return rc;
    if ((rc = mgr_start_httpd(m)) != 0)
        return rc;

    MGR_INFO("Starting informers", LOG_INT("informers", inf_factory_len(m->factory)),
             LOG_INT("controllers", m->nctls), NULL);
    if ((rc = inf_factory_start(m->factory)) != 0) {
        MGR_ERROR("unable to start the informers", "error", kc_strerror(rc), NULL);
        return rc;
    }
    if (m->fl.leader_elect) {
        if (pthread_create(&m->le_thread, NULL, mgr_le_main, m) != 0) {
            MGR_ERROR("unable to start the leader election thread", NULL);
            return KC_ERR_NOMEM;
        }
        m->le_thread_started = true;
    } else {
        pthread_mutex_lock(&m->wk_mu);
        m->leading = true;
        pthread_mutex_unlock(&m->wk_mu);
    }
    return KC_OK;
}

/*
 * Stop everything that runs, in the documented order, under the watchdog.
 * lost: le_run already ended (the lease was lost).
 */
static void mgr_shutdown(mgr *m, mgr_watchdog *wd)
{
    pthread_mutex_lock(&m->wk_mu);
    m->shutting_down = true;
    mgr_stop_workers_locked(m);
    pthread_mutex_unlock(&m->wk_mu);
    if (wd != NULL)
        mgr_watchdog_phase(wd, 1);

    if (m->le_thread_started) {
        le_stop(m->le);
        pthread_join(m->le_thread, NULL);
        m->le_thread_started = false;
    }
    if (m->factory != NULL)
        inf_factory_stop(m->factory);
    if (m->metrics_srv != NULL)
        httpd_stop(m->metrics_srv);
    if (m->probe_srv != NULL)
        httpd_stop(m->probe_srv);
}

/* The run of either mode: the operator or the node agent (manager.h). */
static int mgr_main(flags_mode mode, const char *prog, int argc, char **argv)
{
    mgr *m = calloc(1, sizeof *m);
    if (m == NULL) {
        fputs("provisio: out of memory\n", stderr);
        return 1;
    }
    m->mode = mode;
    m->prog = prog;
    m->sigfd = -1;
    m->evfd = -1;
    pthread_mutex_init(&m->wk_mu, NULL);

    char *errmsg = NULL;
    int rc = flags_parse_mode(mode, argc, argv, &m->fl, &errmsg);
    if (rc != 0) {
        fprintf(stderr, "%s\n", errmsg != NULL ? errmsg : kc_strerror(rc));
        free(errmsg);
        flags_usage_mode(stderr, prog, mode);
        mgr_free_all(m);
        free(m);
        return 2;
    }
    if (m->fl.help) {
        flags_usage_mode(stdout, prog, mode);
        mgr_free_all(m);
        free(m);
        return 0;
    }
    if (m->fl.version) {
        fputs("provisio " PROVISIO_VERSION "\n", stdout);
        mgr_free_all(m);
        free(m);
        return 0;
    }
    if (m->fl.argi < argc) {
        fprintf(stderr, "%s: unexpected argument %s\n", prog, argv[m->fl.argi]);
        flags_usage_mode(stderr, prog, mode);
        mgr_free_all(m);
        free(m);
        return 2;
    }
    log_set_level(m->fl.log_level);

    /* Before any thread exists: every thread inherits this mask. */
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    m->sigfd = signalfd(-1, &set, SFD_CLOEXEC);
    m->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (m->sigfd < 0 || m->evfd < 0) {
        MGR_ERROR("unable to set up signal handling", "error", strerror(errno), NULL);
        mgr_free_all(m);
        free(m);
        return 1;
    }

    int status = 0;
    rc = mgr_start(m);
    if (rc == KC_ERR_STOPPED) { /* SIGTERM while waiting for the API server */
        mgr_shutdown(m, NULL);
        mgr_free_all(m);
        free(m);
        return 0;
    }
    if (rc != 0) {
        mgr_shutdown(m, NULL);
        mgr_free_all(m);
        free(m);
        return 1;
    }

    int sig = mgr_loop(m);
    mgr_watchdog wd = {.sigfd = m->sigfd, .start = pv_clock_monotonic()};
    atomic_init(&wd.phase, 0);
    wd.evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    bool wd_started = wd.evfd >= 0 && pthread_create(&wd.th, NULL, mgr_watchdog_main, &wd) == 0;
    if (sig != 0) {
        MGR_INFO("received signal, shutting down", "signal", strsignal(sig), NULL);
    } else {
        int lr = atomic_load(&m->le_result);
        MGR_ERROR("leader election lost", "error", lr == LE_LOST ? "lease lost" : kc_strerror(lr),
                  NULL);
        status = 1;
    }
    mgr_shutdown(m, wd_started ? &wd : NULL);
    /* Freeing runs under the watchdog too: the Event recorder drains its
     * queue there, and a write in flight to a hung API server ends only at
     * the client's request timeout. The watchdog keeps polling the signal
     * fd, so it stays open until the watchdog is done. */
    int sigfd = m->sigfd;
    m->sigfd = -1;
    mgr_free_all(m);
    free(m);
    if (wd_started) {
        mgr_watchdog_phase(&wd, 2);
        pthread_join(wd.th, NULL);
    }
    if (wd.evfd >= 0)
        close(wd.evfd);
    if (sigfd >= 0)
        close(sigfd);
    if (status == 0)
        MGR_INFO("shutdown complete", NULL);
    return status;
}

int manager_main(int argc, char **argv)
{
    return mgr_main(FLAGS_OPERATOR, "provisio", argc, argv);
}

int agent_main(int argc, char **argv)
{
    return mgr_main(FLAGS_AGENT, "provisio agent", argc, argv);
}
