/*
 * manager_hooks - what the libraries call back into the manager (part of
 * manager; see manager.c for the threads and the teardown): the client's
 * request counter, the controllers' and work queues' metrics and errors, the
 * reflectors' logs, rec_env (logging, adding controllers and cleanups), the
 * metrics collector and the "informers" readiness check.
 *
 * Controllers and cleanups are registered only by the domain setup
 * functions, before any worker, scrape or hook can run; after setup the
 * arrays never change, so hooks and the metrics collector read them without
 * a lock.
 */
#include "manager_internal.h"

#include "controller.h"
#include "informer.h"
#include "kc_error.h"
#include "log.h"
#include "metrics.h"
#include "rec_env.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- hooks: client, controllers, reflectors, env ------------------------------ */

void mgr_on_request(const char *verb, long http_status, void *user)
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

void mgr_on_reconcile_done(const char *controller, const char *result, double seconds, void *user)
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

void mgr_on_workqueue_observe(const char *controller, const char *metric, double seconds,
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

void mgr_on_reconcile_error(const ctl_ctx *ctx, int code, const char *message, void *user)
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

void mgr_on_refl_log(refl_log_level level, const char *msg, const kc_error *err, void *user)
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

void mgr_env_log(const rec_env *env, rec_log_level level, const char *logger, const char *msg,
                 const char *const *kv)
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

int mgr_env_add_controller(const rec_env *env, ctl *c)
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

int mgr_env_add_cleanup(const rec_env *env, void (*fn)(void *arg), void *arg)
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
void mgr_collect(void *ud)
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
int mgr_check_informers(void *ud, char **why)
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
