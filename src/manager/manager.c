/*
 * manager - the operator's run mode (see manager.h for the behaviour).
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
 * Workers. `leading` (true at once without leader election) says whether
 * this replica may reconcile; `workers_running` whether the controllers'
 * workers run. Both change only under wk_mu, and starting or stopping all
 * controllers happens under it too, so the elector's stop (which must have
 * stopped every worker when it returns) and the main loop's start can never
 * interleave. Workers start once the replica leads and every controller's
 * caches synced (ctl_wait_for_sync with no wait, checked by the main loop
 * every 100 ms until then, and at once by on_started_leading).
 *
 * Controllers and cleanups are registered only by the domain setup
 * functions, before any worker, scrape or hook can run; after setup the
 * arrays never change, so hooks and the metrics collector read them without
 * a lock.
 *
 * Teardown order: workers stopped -> Lease released (le_stop, join the
 * elector) -> informers stopped -> HTTP servers stopped -> controllers freed
 * -> domain cleanups (reverse order) -> factory, elector, clients, config,
 * registry freed.
 */
#include "manager.h"

#include "controller.h"
#include "flags.h"
#include "httpd.h"
#include "informer.h"
#include "ip.h"
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
    {NULL, NULL},
};

/*
 * The node agent's domains (`provisio agent`): the node-side halves of
 * devices and volumes will set up here; none exists yet.
 */
static const mgr_domain mgr_agent_domains[] = {
    {NULL, NULL},
};

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

/* ---- small helpers ---------------------------------------------------------- */

static void mgr_wake(int fd)
{
    uint64_t one = 1;
    ssize_t n;
    do
        n = write(fd, &one, sizeof one);
    while (n < 0 && errno == EINTR);
}

static void mgr_drain(int fd)
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

static mgr_ctl *mgr_find_ctl(mgr *m, const char *name)
{
    for (size_t i = 0; i < m->nctls; i++)
        if (strcmp(m->ctls[i].name, name) == 0)
            return &m->ctls[i];
    return NULL;
}

/* ---- hooks: client, controllers, reflectors, env ------------------------------ */

static void mgr_on_request(const char *verb, long http_status, void *user)
{
    mgr *m = user;
    char code[24];
    if (http_status <= 0)
        snprintf(code, sizeof code, "<error>");
    else
        snprintf(code, sizeof code, "%ld", http_status);
    met_counter_inc(
        met_counter_get(m->m.rest_client_requests_total, MET_L(code, verb, m->rest_host)));
}

static void mgr_on_reconcile_done(const char *controller, const char *result, double seconds,
                                  void *user)
{
    mgr_ctl *e = mgr_find_ctl(user, controller);
    if (e == NULL)
        return;
    if (strcmp(result, MET_RESULT_SUCCESS) == 0)
        met_counter_inc(e->result_success);
    else if (strcmp(result, MET_RESULT_REQUEUE) == 0)
        met_counter_inc(e->result_requeue);
    else if (strcmp(result, MET_RESULT_REQUEUE_AFTER) == 0)
        met_counter_inc(e->result_requeue_after);
    else {
        met_counter_inc(e->result_error);
        met_counter_inc(e->errors);
    }
    met_histogram_observe(e->reconcile_time, seconds);
}

static void mgr_on_workqueue_observe(const char *controller, const char *metric, double seconds,
                                     void *user)
{
    mgr_ctl *e = mgr_find_ctl(user, controller);
    if (e == NULL)
        return;
    if (strcmp(metric, WQ_METRIC_QUEUE_DURATION) == 0)
        met_histogram_observe(e->queue_duration, seconds);
    else if (strcmp(metric, WQ_METRIC_WORK_DURATION) == 0)
        met_histogram_observe(e->work_duration, seconds);
}

static void mgr_on_reconcile_error(const ctl_ctx *ctx, int code, const char *message, void *user)
{
    (void)user;
    const char *key = ctx->key != NULL ? ctx->key : "";
    const char *slash = strchr(key, '/');
    char *ns = slash != NULL ? strndup(key, (size_t)(slash - key)) : NULL;
    const char *name = slash != NULL ? slash + 1 : key;
    log_write(PLOG_ERROR, NULL, "Reconciler error", "controller", ctx->controller, "namespace",
              ns != NULL ? ns : "", "name", name, "reconcileID", ctx->reconcile_id, "error",
              message != NULL ? message : kc_strerror(code), LOG_INT("code", code), NULL);
    free(ns);
}

static void mgr_on_refl_log(refl_log_level level, const char *msg, const kc_error *err, void *user)
{
    (void)user;
    plog_level pl = level == REFL_LOG_ERROR  ? PLOG_ERROR
                    : level == REFL_LOG_INFO ? PLOG_INFO
                                             : PLOG_DEBUG;
    if (!log_enabled(pl))
        return;
    if (err != NULL && err->code != 0)
        log_write(pl, "reflector", msg, "error",
                  err->message != NULL ? err->message : kc_strerror(err->code),
                  LOG_INT("code", err->code), NULL);
    else
        log_write(pl, "reflector", msg, NULL);
}

static void mgr_env_log(const rec_env *env, rec_log_level level, const char *logger,
                        const char *msg, const char *const *kv)
{
    (void)env;
    plog_level pl = level == REC_LOG_ERROR  ? PLOG_ERROR
                    : level == REC_LOG_INFO ? PLOG_INFO
                                            : PLOG_DEBUG;
    if (!log_enabled(pl))
        return;
    /* log_write is variadic: pass a fixed number of pairs, the unused keys
     * NULL (the first NULL key ends the list). Keys starting with a type tag
     * byte would be read as numbers: they are dropped. */
    const char *a[2 * MGR_LOG_MAX_PAIRS] = {0};
    size_t n = 0;
    for (size_t i = 0; kv != NULL && kv[i] != NULL && n < 2 * MGR_LOG_MAX_PAIRS; i += 2) {
        const char *k = kv[i], *v = kv[i + 1];
        if ((unsigned char)k[0] >= 1 && (unsigned char)k[0] <= 3)
            continue;
        a[n++] = k;
        a[n++] = v;
        if (v == NULL)
            break; /* an odd list: the value is missing */
    }
    log_write(pl, logger, msg, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10],
              a[11], a[12], a[13], a[14], a[15], NULL);
}

static int mgr_env_add_controller(const rec_env *env, ctl *c)
{
    mgr *m = env->mgr_;
    if (c == NULL || m->setup_done)
        return KC_ERR_INVALID_ARG;
    const char *name = ctl_name(c);
    if (mgr_find_ctl(m, name) != NULL) {
        MGR_ERROR("duplicate controller name", "controller", name, NULL);
        return KC_ERR_INVALID_ARG;
    }
    if (m->nctls == m->capctls) {
        size_t cap = m->capctls ? m->capctls * 2 : 8;
        mgr_ctl *nv = realloc(m->ctls, cap * sizeof *nv);
        if (nv == NULL)
            return KC_ERR_NOMEM;
        m->ctls = nv;
        m->capctls = cap;
    }
    ctl_stats st;
    ctl_stats_get(c, &st);
    int rc = met_cr_init_controller(&m->m, name, st.max_concurrent_reconciles);
    if (rc != 0)
        return rc;
    mgr_ctl *e = &m->ctls[m->nctls];
    memset(e, 0, sizeof *e);
    e->c = c;
    e->name = name;
    e->result_success = met_counter_get(m->m.reconcile_total, MET_L(name, MET_RESULT_SUCCESS));
    e->result_error = met_counter_get(m->m.reconcile_total, MET_L(name, MET_RESULT_ERROR));
    e->result_requeue = met_counter_get(m->m.reconcile_total, MET_L(name, MET_RESULT_REQUEUE));
    e->result_requeue_after =
        met_counter_get(m->m.reconcile_total, MET_L(name, MET_RESULT_REQUEUE_AFTER));
    e->errors = met_counter_get(m->m.reconcile_errors_total, MET_L(name));
    e->reconcile_time = met_histogram_get(m->m.reconcile_time_seconds, MET_L(name));
    e->queue_duration = met_histogram_get(m->m.workqueue_queue_duration_seconds, MET_L(name, name));
    e->work_duration = met_histogram_get(m->m.workqueue_work_duration_seconds, MET_L(name, name));
    e->active_workers = met_gauge_get(m->m.active_workers, MET_L(name));
    e->max_concurrent = met_gauge_get(m->m.max_concurrent_reconciles, MET_L(name));
    e->depth = met_gauge_get(m->m.workqueue_depth, MET_L(name, name));
    e->unfinished = met_gauge_get(m->m.workqueue_unfinished_work_seconds, MET_L(name, name));
    e->longest = met_gauge_get(m->m.workqueue_longest_running_processor_seconds, MET_L(name, name));
    e->adds = met_counter_get(m->m.workqueue_adds_total, MET_L(name, name));
    e->retries = met_counter_get(m->m.workqueue_retries_total, MET_L(name, name));
    if (!e->result_success || !e->result_error || !e->result_requeue || !e->result_requeue_after ||
        !e->errors || !e->reconcile_time || !e->queue_duration || !e->work_duration ||
        !e->active_workers || !e->max_concurrent || !e->depth || !e->unfinished || !e->longest ||
        !e->adds || !e->retries)
        return KC_ERR_NOMEM;
    m->nctls++;
    return KC_OK;
}

static int mgr_env_add_cleanup(const rec_env *env, void (*fn)(void *arg), void *arg)
{
    mgr *m = env->mgr_;
    if (fn == NULL || m->setup_done)
        return KC_ERR_INVALID_ARG;
    if (m->ncleanups == m->capcleanups) {
        size_t cap = m->capcleanups ? m->capcleanups * 2 : 8;
        mgr_cleanup *nv = realloc(m->cleanups, cap * sizeof *nv);
        if (nv == NULL)
            return KC_ERR_NOMEM;
        m->cleanups = nv;
        m->capcleanups = cap;
    }
    m->cleanups[m->ncleanups++] = (mgr_cleanup){fn, arg};
    return KC_OK;
}

/* An informer's resource as kubectl names it: resource[.group]. */
static void informer_name(inf_informer *inf, char *buf, size_t size)
{
    const kc_ref *r = inf_ref(inf);
    const char *g = r->group != NULL ? r->group : "";
    snprintf(buf, size, "%s%s%s", r->resource, g[0] ? "." : "", g);
}

/* The informers' gauges, labelled with informer_name. */
static void mgr_collect_informers(mgr *m)
{
    size_t n = inf_factory_len(m->factory);
    for (size_t i = 0; i < n; i++) {
        inf_informer *inf = inf_factory_at(m->factory, i);
        if (inf == NULL)
            continue;
        char label[256];
        informer_name(inf, label, sizeof(label));
        const char *values[] = {label, NULL};
        inf_stats st;
        inf_stats_get(inf, &st);
        met_gauge_set(met_gauge_get(m->inf_objects, values), (double)st.objects);
        met_gauge_set(met_gauge_get(m->inf_pending, values), (double)st.pending);
        met_gauge_set(met_gauge_get(m->inf_pending_max, values), (double)st.pending_high_water);
    }
}

/* Scrape time: mirror the informers', controllers' and queues' gauges and counters. */
static void mgr_collect(void *ud)
{
    mgr *m = ud;
    mgr_collect_informers(m);
    for (size_t i = 0; i < m->nctls; i++) {
        mgr_ctl *e = &m->ctls[i];
        ctl_stats st;
        ctl_stats_get(e->c, &st);
        met_gauge_set(e->active_workers, st.active_workers);
        met_gauge_set(e->max_concurrent, st.max_concurrent_reconciles);
        met_gauge_set(e->depth, (double)st.queue.depth);
        met_gauge_set(e->unfinished, st.queue.unfinished_work_seconds);
        met_gauge_set(e->longest, st.queue.longest_running_processor_seconds);
        met_counter_set(e->adds, (double)st.queue.adds_total);
        met_counter_set(e->retries, (double)st.queue.retries_total);
    }
}

/* /readyz "informers": every informer of the factory listed once. */
static int mgr_check_informers(void *ud, char **why)
{
    mgr *m = ud;
    size_t n = inf_factory_len(m->factory);
    for (size_t i = 0; i < n; i++) {
        inf_informer *inf = inf_factory_at(m->factory, i);
        if (inf != NULL && !inf_has_synced(inf)) {
            if (why != NULL) {
                char name[256];
                informer_name(inf, name, sizeof(name));
                if (asprintf(why, "informer %s not synced", name) < 0)
                    *why = NULL;
            }
            return 1;
        }
    }
    return 0;
}

/* ---- workers -------------------------------------------------------------------- */

static bool mgr_all_informers_synced(mgr *m)
{
    return mgr_check_informers(m, NULL) == 0;
}

static bool mgr_ctls_synced(mgr *m)
{
    for (size_t i = 0; i < m->nctls; i++)
        if (!ctl_wait_for_sync(m->ctls[i].c, 0))
            return false;
    return true;
}

static void mgr_stop_workers_locked(mgr *m)
{
    if (!m->workers_running)
        return;
    for (size_t i = 0; i < m->nctls; i++)
        ctl_stop(m->ctls[i].c);
    m->workers_running = false;
    MGR_INFO("All workers finished", NULL);
}

/* Start every controller's workers if this replica leads and caches synced. */
static void mgr_try_start_workers_locked(mgr *m)
{
    if (!m->leading || m->workers_running || m->shutting_down || !mgr_ctls_synced(m))
        return;
    for (size_t i = 0; i < m->nctls; i++) {
        int rc = ctl_start(m->ctls[i].c);
        if (rc != 0) {
            MGR_ERROR("could not start workers; retrying", "controller", m->ctls[i].name, "error",
                      kc_strerror(rc), NULL);
            for (size_t j = 0; j < i; j++)
                ctl_stop(m->ctls[j].c);
            return;
        }
        ctl_stats st;
        ctl_stats_get(m->ctls[i].c, &st);
        MGR_INFO("Starting workers", "controller", m->ctls[i].name,
                 LOG_INT("worker count", st.max_concurrent_reconciles), NULL);
    }
    m->workers_running = true;
}

static void mgr_on_started_leading(void *user)
{
    mgr *m = user;
    pthread_mutex_lock(&m->wk_mu);
    m->leading = true;
    mgr_try_start_workers_locked(m);
    pthread_mutex_unlock(&m->wk_mu);
    mgr_wake(m->evfd); /* not synced yet: the main loop starts them later */
}

static void mgr_on_stopped_leading(void *user)
{
    mgr *m = user;
    pthread_mutex_lock(&m->wk_mu);
    m->leading = false;
    mgr_stop_workers_locked(m);
    pthread_mutex_unlock(&m->wk_mu);
    mgr_wake(m->evfd);
}

static void *mgr_le_main(void *arg)
{
    mgr *m = arg;
    int rc = le_run(m->le);
    atomic_store(&m->le_result, rc);
    atomic_store(&m->le_done, true);
    mgr_wake(m->evfd);
    return NULL;
}

/* ---- shutdown watchdog ------------------------------------------------------- */

typedef struct mgr_watchdog {
    pthread_t th;
    int sigfd;
    int evfd;
    double start;
    atomic_int phase; /* 0 stopping workers, 1 workers stopped, 2 done */
} mgr_watchdog;

static void *mgr_watchdog_main(void *arg)
{
    mgr_watchdog *w = arg;
    for (;;) {
        int phase = atomic_load(&w->phase);
        if (phase >= 2)
            return NULL;
        double deadline = w->start + (phase == 0 ? MGR_WORKER_STOP_BOUND : MGR_SHUTDOWN_BOUND);
        double left = deadline - pv_clock_monotonic();
        if (left <= 0) {
            if (phase == 0)
                MGR_ERROR("reconciles still running after the shutdown bound; exiting without "
                          "releasing the lease",
                          LOG_DBL("boundSeconds", MGR_WORKER_STOP_BOUND), NULL);
            else
                MGR_ERROR("shutdown did not finish in time; exiting",
                          LOG_DBL("boundSeconds", MGR_SHUTDOWN_BOUND), NULL);
            _exit(1);
        }
        struct pollfd p[2] = {{w->sigfd, POLLIN, 0}, {w->evfd, POLLIN, 0}};
        int n = poll(p, 2, (int)(left * 1000.0) + 1);
        if (n > 0 && (p[0].revents & POLLIN)) {
            MGR_ERROR("received a second signal; exiting now", NULL);
            _exit(1);
        }
        if (n > 0 && (p[1].revents & POLLIN))
            mgr_drain(w->evfd);
    }
}

static void mgr_watchdog_phase(mgr_watchdog *w, int phase)
{
    atomic_store(&w->phase, phase);
    mgr_wake(w->evfd);
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

/*
 * The agent's start-up checks: --host-root is a directory it can see, and
 * --node-name names an existing Node (one GET; a DaemonSet pod always runs
 * on one, so a miss is a wrong flag, and failing is the loud answer).
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
    int rc = kc_get(m->client, &ref, &node, &err);
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
