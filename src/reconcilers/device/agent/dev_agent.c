/*
 * dev_agent - the "devicepool-agent" controller of the node agent: the
 * DevicePools of its node (a field selector on spec.nodeName), each scanned
 * on every reconcile and rescanned every DEV_RESCAN_S for hot-plug; the
 * report is written to status.agent only when it changed or its heartbeat
 * is due. README.md in this folder says why it polls.
 */
#include "dev_agent_internal.h"
#include "kc_error.h"
#include "rec_stale.h"
#include "rec_util.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Seconds between two scans of a pool: a device file that appears or
 * vanishes shows in status.agent within about this plus one write. */
#define DEV_RESCAN_S 1.0
/* Cap of the per-pool retry backoff after API errors (the queue's default,
 * 1000 s, would leave a pool unscanned for long after an outage; the
 * operator gives up on a report after 120 s). */
#define DEV_MAX_BACKOFF_S 30.0

static const kc_ref dev_pools_ref = {
    .group = "provisio.dev", .version = "v1alpha1", .resource = "devicepools"};

/* What was logged about one pool, so a problem that lasts is logged once. */
typedef struct dev_warned {
    char *name;
    bool dropped; /* matches left out past DEV_REPORT_MAX */
    bool skipped; /* matches with odd paths */
} dev_warned;

typedef struct dev_agent {
    rec_env env; /* a copy (env->log may be called from any thread) */
    char *node_name;
    char *host_root;
    kc_client *client;   /* borrowed from the manager */
    inf_informer *pools; /* borrowed from the factory */
    rec_stale *stale;    /* the resourceVersions our status writes replaced */
    pthread_mutex_t mu;  /* guards warned */
    dev_warned *warned;  /* only pools with something logged */
    size_t nwarned, capwarned;
} dev_agent;

static void dev_agent_log(dev_agent *a, rec_log_level level, const char *msg, const char *const *kv)
{
    a->env.log(&a->env, level, "devicepool-agent", msg, kv);
}

/* ---- what was logged -------------------------------------------------------- */

/* The entry of name, created when create is set; NULL if none (or no memory). */
static dev_warned *warned_find(dev_agent *a, const char *name, bool create)
{
    for (size_t i = 0; i < a->nwarned; i++)
        if (strcmp(a->warned[i].name, name) == 0)
            return &a->warned[i];
    if (!create)
        return NULL;
    if (a->nwarned == a->capwarned) {
        size_t cap = a->capwarned ? a->capwarned * 2 : 4;
        dev_warned *v = realloc(a->warned, cap * sizeof *v);
        if (v == NULL)
            return NULL;
        a->warned = v;
        a->capwarned = cap;
    }
    char *copy = strdup(name);
    if (copy == NULL)
        return NULL;
    a->warned[a->nwarned] = (dev_warned){.name = copy};
    return &a->warned[a->nwarned++];
}

static void warned_forget(dev_agent *a, const char *name)
{
    pthread_mutex_lock(&a->mu);
    dev_warned *w = warned_find(a, name, false);
    if (w != NULL) {
        free(w->name);
        *w = a->warned[--a->nwarned];
    }
    pthread_mutex_unlock(&a->mu);
}

/* Log, once while it lasts, that a scan left matches out. */
static void warn_once(dev_agent *a, const char *name, const dev_report *r)
{
    pthread_mutex_lock(&a->mu);
    dev_warned *w = warned_find(a, name, r->dropped > 0 || r->skipped > 0);
    bool log_dropped = false, log_skipped = false;
    if (w != NULL) {
        log_dropped = r->dropped > 0 && !w->dropped;
        log_skipped = r->skipped > 0 && !w->skipped;
        w->dropped = r->dropped > 0;
        w->skipped = r->skipped > 0;
    }
    pthread_mutex_unlock(&a->mu);
    char n[32], max[32];
    if (log_dropped) {
        snprintf(n, sizeof n, "%zu", r->dropped);
        snprintf(max, sizeof max, "%d", DEV_REPORT_MAX);
        dev_agent_log(a, REC_LOG_ERROR,
                      "spec.discover.paths match more files than a report holds; the rest "
                      "are left out",
                      REC_KV("devicepool", name, "leftOut", n, "maxDevices", max));
    }
    if (log_skipped) {
        snprintf(n, sizeof n, "%zu", r->skipped);
        dev_agent_log(a, REC_LOG_ERROR,
                      "spec.discover.paths match files whose path is not UTF-8 or is longer "
                      "than 4096 bytes; they are left out",
                      REC_KV("devicepool", name, "leftOut", n));
    }
}

/* ---- the reconcile ---------------------------------------------------------- */

static size_t count_present(const dev_report *r)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++)
        n += r->v[i].present;
    return n;
}

/* Write r to status.agent of pool name (a merge patch of the status). */
static int write_report(dev_agent *a, const char *name, const dev_report *r, time_t now,
                        kc_error *err)
{
    json_object *patch = NULL;
    int rc = dev_report_patch(r, now, &patch);
    if (rc != KC_OK)
        return kc_error_set(err, rc, "building the status patch: %s", kc_strerror(rc));
    kc_ref ref = dev_pools_ref;
    ref.name = name;
    ref.subresource = "status";
    rc = kc_patch(a->client, &ref, KC_PATCH_MERGE, patch, NULL, NULL, err);
    json_object_put(patch);
    return rc;
}

static ctl_result dev_agent_reconcile(const ctl_ctx *ctx, const char *namespace_, const char *name,
                                      void *user)
{
    (void)ctx;
    (void)namespace_;
    dev_agent *a = user;
    json_object *pool = NULL;
    int rc = store_get(inf_store(a->pools), name, &pool);
    if (rc == KC_ERR_NOT_FOUND) {
        warned_forget(a, name);
        return ctl_done(); /* deleted: its uid's stale entry expires by itself */
    }
    if (rc != KC_OK)
        return ctl_error(rc, "reading devicepool %s from the cache: %s", name, kc_strerror(rc));
    const char *node = rec_obj_str(pool, "spec.nodeName");
    if (node == NULL || strcmp(node, a->node_name) != 0) {
        store_obj_put(pool); /* not ours (the field selector keeps them out) */
        return ctl_done();
    }
    const char *uid = rec_obj_str(pool, "metadata.uid");
    const char *rv = rec_obj_str(pool, "metadata.resourceVersion");
    if (rec_stale_check(a->stale, uid, rv)) {
        /* Our last write is not in the cache yet; its watch event requeues. */
        store_obj_put(pool);
        return ctl_requeue_after(DEV_RESCAN_S);
    }

    dev_report r = {0};
    if ((rc = dev_scan(pool, a->host_root, &r)) != KC_OK) {
        store_obj_put(pool);
        return ctl_error(rc, "scanning the devices of devicepool %s: %s", name, kc_strerror(rc));
    }
    warn_once(a, name, &r);
    time_t now = time(NULL);
    json_object *agent = rec_obj_at(pool, "status.agent");
    bool changed = !dev_report_matches(&r, agent);
    if (!changed && !dev_report_heartbeat_due(agent, now)) {
        dev_report_free(&r);
        store_obj_put(pool);
        return ctl_requeue_after(DEV_RESCAN_S);
    }

    kc_error err = KC_ERROR_INIT;
    rc = write_report(a, name, &r, now, &err);
    ctl_result res;
    if (rc == KC_ERR_NOT_FOUND) {
        warned_forget(a, name); /* deleted meanwhile: nothing to report to */
        res = ctl_done();
    } else if (rc != KC_OK) {
        res = ctl_error(rc, "writing status.agent of devicepool %s: %s", name,
                        err.message != NULL ? err.message : kc_strerror(rc));
    } else {
        rec_stale_note(a->stale, uid, rv);
        char devices[32], present[32], gen[32];
        snprintf(devices, sizeof devices, "%zu", r.n);
        snprintf(present, sizeof present, "%zu", count_present(&r));
        snprintf(gen, sizeof gen, "%" PRId64, r.observed_generation);
        dev_agent_log(a, changed ? REC_LOG_INFO : REC_LOG_DEBUG,
                      changed ? "device report written" : "device report confirmed",
                      REC_KV("devicepool", name, "devices", devices, "present", present,
                             "observedGeneration", gen));
        res = ctl_requeue_after(DEV_RESCAN_S);
    }
    kc_error_clear(&err);
    dev_report_free(&r);
    store_obj_put(pool);
    return res;
}

/* ---- setup ------------------------------------------------------------------ */

static void dev_agent_free(void *arg)
{
    dev_agent *a = arg;
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->nwarned; i++)
        free(a->warned[i].name);
    free(a->warned);
    rec_stale_free(a->stale);
    pthread_mutex_destroy(&a->mu);
    free(a->node_name);
    free(a->host_root);
    free(a);
}

int dev_agent_setup(const rec_env *env)
{
    if (env->node_name == NULL || env->node_name[0] == '\0')
        return KC_ERR_INVALID_ARG;
    dev_agent *a = calloc(1, sizeof *a);
    if (a == NULL)
        return KC_ERR_NOMEM;
    pthread_mutex_init(&a->mu, NULL);
    a->env = *env;
    a->client = env->client;
    a->node_name = strdup(env->node_name);
    a->host_root = strdup(env->host_root != NULL ? env->host_root : "/");
    char *selector = NULL;
    int rc = KC_ERR_NOMEM;
    if (a->node_name == NULL || a->host_root == NULL ||
        asprintf(&selector, "spec.nodeName=%s", env->node_name) < 0) {
        selector = NULL;
        goto err;
    }
    if ((rc = rec_stale_new(&a->stale)) != KC_OK)
        goto err;
    inf_opts io = {.field_selector = selector};
    rc = inf_factory_get(env->factory, &dev_pools_ref, &io, &a->pools);
    free(selector);
    selector = NULL;
    if (rc != KC_OK)
        goto err;
    /* From here the manager owns a: the cleanup runs after every controller
     * was freed, so the controller below may use a until then. */
    if ((rc = env->add_cleanup(env, dev_agent_free, a)) != KC_OK)
        goto err;
    ctl_opts co = env->ctl_defaults;
    co.queue.max_delay = DEV_MAX_BACKOFF_S;
    ctl *c = NULL;
    if ((rc = ctl_new("devicepool-agent", &co, dev_agent_reconcile, a, &c)) != KC_OK)
        return rc;
    if ((rc = ctl_watch_for(c, a->pools)) != KC_OK || (rc = env->add_controller(env, c)) != KC_OK)
        ctl_free(c);
    return rc;

err:
    free(selector);
    dev_agent_free(a);
    return rc;
}
