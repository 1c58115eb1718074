/*
 * vol_node - the node agent's volume controllers (API.md "Volumes", "The
 * node agent"; README.md beside this file):
 *
 *   "storagepool-agent"  the StoragePools of this node (a field selector on
 *                        spec.nodeName): the path checked every
 *                        VOL_NODE_RESCAN_S, the report written to
 *                        status.agent (merge patch of the status) when it
 *                        changed or its heartbeat is due;
 *   "volume-agent"       the storage Reservations of this node (labels
 *                        pool-kind=StoragePool, node=NODE): while one lives,
 *                        its directory <path>/<ns>_<name>_<uid> exists with
 *                        its hard limit (vol_dir_ensure) and its status says
 *                        so (phase, path, quota, usedBytes); once it is
 *                        deleted, the directory is removed (vol_dir_remove)
 *                        and then the finalizer provisio.dev/volume-directory
 *                        goes, so a directory never outlives the record of
 *                        it. Retain: the operator takes the finalizer off
 *                        before deleting, and the directory stays.
 *
 * Crash safety: the directory is made only while the Reservation carries the
 * finalizer (the operator creates it with it; the agent never adds it, as
 * the operator takes it off to keep a directory), and the finalizer goes
 * only after the directory was removed; both directory functions are
 * idempotent and finish a killed predecessor's work.
 */
#include "vol_node.h"

#include "vol_agent.h"

#include "inf_map.h"
#include "kc_error.h"
#include "pv_json.h"
#include "rec_reserve.h"
#include "rec_util.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VOL_NODE_RESCAN_S 5.0     /* s between two checks of a pool's path */
#define VOL_NODE_HEARTBEAT 30     /* s: the report is rewritten at least this often */
#define VOL_NODE_USAGE_S 60.0     /* s between two reads of a volume's usage */
#define VOL_NODE_RETRY_S 10.0     /* s: a directory that could not be made is tried again */
#define VOL_NODE_MAX_BACKOFF 30.0 /* s: cap of the retry backoff after API errors */
#define VOL_DIR_FINALIZER "provisio.dev/volume-directory"
#define VOL_IDX_POOL_PENDING "pending-by-pool" /* Reservations not Ready, by pool */

static const kc_ref pools_ref = {
    .group = "provisio.dev", .version = "v1alpha1", .resource = "storagepools"};
static const kc_ref resv_ref = {
    .group = "provisio.dev", .version = "v1alpha1", .resource = "reservations"};

/* A volume's last usage, for the pool's usedBytes (key: the Reservation). */
typedef struct node_used {
    char *pool;
    int64_t bytes;
    char name[]; /* the map's key */
} node_used;

typedef struct vol_node {
    rec_env env; /* a copy (env->log may be called from any thread) */
    char *node_name;
    char *host_root;
    kc_client *client;
    inf_informer *pools, *resv;
    store *pools_store, *resv_store;
    pthread_mutex_t mu; /* guards used */
    inf_map used;       /* Reservation name -> node_used */
} vol_node;

static void node_log(vol_node *n, rec_log_level level, const char *who, const char *msg,
                     const char *const *kv)
{
    n->env.log(&n->env, level, who, msg, kv);
}

/* ---- usage per volume --------------------------------------------------------------- */

static void used_set(vol_node *n, const char *resv, const char *pool, int64_t bytes)
{
    pthread_mutex_lock(&n->mu);
    node_used *u = inf_map_get(&n->used, resv);
    if (u && strcmp(u->pool, pool) == 0) {
        u->bytes = bytes;
    } else {
        node_used *nu = calloc(1, sizeof *nu + strlen(resv) + 1);
        char *p = strdup(pool);
        if (nu && p) {
            strcpy(nu->name, resv);
            nu->pool = p;
            nu->bytes = bytes;
            if (inf_map_put(&n->used, nu->name, nu) == KC_OK) {
                if (u) {
                    free(u->pool);
                    free(u);
                }
                nu = NULL;
                p = NULL;
            }
        }
        if (nu)
            free(nu);
        free(p);
    }
    pthread_mutex_unlock(&n->mu);
}

static void used_forget(vol_node *n, const char *resv)
{
    pthread_mutex_lock(&n->mu);
    node_used *u = inf_map_remove(&n->used, resv);
    pthread_mutex_unlock(&n->mu);
    if (u) {
        free(u->pool);
        free(u);
    }
}

static int64_t used_sum(vol_node *n, const char *pool)
{
    int64_t sum = 0;
    pthread_mutex_lock(&n->mu);
    size_t pos = 0;
    const char *key;
    void *val;
    while (inf_map_next(&n->used, &pos, &key, &val)) {
        const node_used *u = val;
        if (strcmp(u->pool, pool) == 0)
            sum += u->bytes;
    }
    pthread_mutex_unlock(&n->mu);
    return sum;
}

/* ---- the pool's report ------------------------------------------------------------------ */

static vol_quota_mode quota_mode_of(json_object *pool)
{
    vol_quota_mode m = VOL_QUOTA_AUTO;
    if (vol_quota_mode_parse(rec_obj_str(pool, "spec.quota"), &m) != 0)
        m = VOL_QUOTA_AUTO; /* the schema allows no other value */
    return m;
}

/* The report as status.agent, without heartbeatTime (added when written);
 * absent optional fields are null so a merge patch removes old ones. */
static json_object *report_json(json_object *pool, const vol_pool_report *r, int64_t used)
{
    json_object *o = json_object_new_object();
    if (!o)
        return NULL;
    bool ok = pv_json_add_i64(o, "observedGeneration", rec_obj_generation(pool)) &&
              pv_json_add(o, "present", json_object_new_boolean(r->present)) &&
              pv_json_add(o, "writable", json_object_new_boolean(r->writable)) &&
              pv_json_add(o, "quotaSupported",
                          json_object_new_boolean(r->quota == VOL_QUOTA_STATE_ENFORCED)) &&
              pv_json_add_i64(o, "usedBytes", used);
    if (ok && r->present) {
        ok = pv_json_add_str(o, "filesystem", r->fs_type) &&
             pv_json_add_i64(o, "filesystemBytes", (int64_t)r->capacity_bytes) &&
             pv_json_add_i64(o, "filesystemFreeBytes", (int64_t)r->free_bytes);
    } else if (ok) {
        json_object_object_add(o, "filesystem", NULL);
        json_object_object_add(o, "filesystemBytes", NULL);
        json_object_object_add(o, "filesystemFreeBytes", NULL);
    }
    if (ok && r->quota == VOL_QUOTA_STATE_UNSUPPORTED && r->quota_reason)
        ok = pv_json_add_str(o, "quotaMessage", r->quota_reason);
    else if (ok)
        json_object_object_add(o, "quotaMessage", NULL);
    if (ok && r->message)
        ok = pv_json_add_str(o, "message", r->message);
    else if (ok)
        json_object_object_add(o, "message", NULL);
    if (!ok) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

/* Whether merging patch (one level: a null value removes its key) into
 * cached would change nothing, the key skip (may be NULL) left out. */
static bool merge_is_noop(json_object *cached, json_object *patch, const char *skip)
{
    if (!json_object_is_type(cached, json_type_object))
        return false;
    json_object_object_foreach(patch, key, val)
    {
        if (skip && !strcmp(key, skip))
            continue;
        json_object *had = NULL;
        bool has = json_object_object_get_ex(cached, key, &had) && had != NULL;
        if (val == NULL ? has : (!has || !json_object_equal(val, had)))
            return false;
    }
    return true;
}

/* Whether the cached report says what want says (heartbeatTime and the free
 * bytes, which change all the time, left out) and its heartbeat is recent. */
static bool report_current(json_object *cached, json_object *want, time_t now)
{
    if (!json_object_is_type(cached, json_type_object))
        return false;
    time_t hb;
    if (!rec_parse_time(rec_obj_str(cached, "heartbeatTime"), &hb) ||
        now - hb >= VOL_NODE_HEARTBEAT || hb - now > VOL_NODE_HEARTBEAT)
        return false;
    return merge_is_noop(cached, want, "filesystemFreeBytes");
}

static ctl_result pool_reconcile(const ctl_ctx *ctx, const char *namespace_, const char *name,
                                 void *user)
{
    (void)ctx;
    (void)namespace_;
    vol_node *n = user;
    json_object *pool = NULL;
    if (store_get(n->pools_store, name, &pool) != KC_OK)
        return ctl_done();
    const char *node = rec_obj_str(pool, "spec.nodeName");
    const char *path = rec_obj_str(pool, "spec.path");
    if (!node || strcmp(node, n->node_name) != 0 || !path) {
        store_obj_put(pool);
        return ctl_done();
    }
    vol_pool_report r = {0};
    vol_error verr = {0};
    int rc = vol_pool_check(n->host_root, path, quota_mode_of(pool), &r, &verr);
    if (rc == -EINVAL) { /* not absolute: a finding, not an error */
        vol_pool_report_free(&r);
        r = (vol_pool_report){
            .message = strdup(verr.message ? verr.message : "spec.path is not absolute")};
        rc = 0;
    }
    vol_error_clear(&verr);
    if (rc != 0) {
        vol_pool_report_free(&r);
        store_obj_put(pool);
        return ctl_error(KC_ERR_NOMEM, "checking storagepool %s: %s", name, strerror(-rc));
    }
    time_t now = time(NULL);
    json_object *want = report_json(pool, &r, used_sum(n, name));
    vol_pool_report_free(&r);
    if (!want) {
        store_obj_put(pool);
        return ctl_error(KC_ERR_NOMEM, "out of memory");
    }
    ctl_result res = ctl_requeue_after(VOL_NODE_RESCAN_S);
    if (!report_current(rec_obj_at(pool, "status.agent"), want, now)) {
        char hb[REC_TIME_STRLEN];
        rec_format_time(now, hb);
        json_object *patch = json_object_new_object();
        json_object *st = patch ? pv_json_add_child(patch, "status") : NULL;
        bool present = json_object_get_boolean(json_object_object_get(want, "present"));
        bool writable = json_object_get_boolean(json_object_object_get(want, "writable"));
        if (!st || !pv_json_add_str(want, "heartbeatTime", hb) ||
            !pv_json_add(st, "agent", json_object_get(want))) {
            res = ctl_error(KC_ERR_NOMEM, "out of memory");
        } else {
            kc_ref ref = pools_ref;
            ref.name = name;
            ref.subresource = "status";
            kc_error err = KC_ERROR_INIT;
            rc = kc_patch(n->client, &ref, KC_PATCH_MERGE, patch, NULL, NULL, &err);
            if (rc != KC_OK && rc != KC_ERR_NOT_FOUND)
                res = ctl_error(rc, "writing status.agent of storagepool %s: %s", name,
                                err.message ? err.message : kc_strerror(rc));
            else if (rc == KC_OK)
                node_log(n, REC_LOG_DEBUG, "storagepool-agent", "pool report written",
                         REC_KV("storagepool", name, "present", present ? "true" : "false",
                                "writable", writable ? "true" : "false"));
            kc_error_clear(&err);
        }
        json_object_put(patch);
    }
    json_object_put(want);
    store_obj_put(pool);
    return res;
}

/* ---- a volume's directory ------------------------------------------------------------------ */

typedef struct resv_view {
    const char *name, *pool, *ns, *claim, *uid;
    int64_t bytes;
} resv_view;

static bool resv_view_of(json_object *o, resv_view *v)
{
    v->name = rec_obj_str(o, "metadata.name");
    v->pool = rec_obj_str(o, "spec.pool.name");
    v->ns = rec_obj_str(o, "spec.claim.namespace");
    v->claim = rec_obj_str(o, "spec.claim.name");
    v->uid = rec_obj_str(o, "spec.claim.uid");
    json_object *b = rec_obj_at(o, "spec.bytes");
    v->bytes = json_object_is_type(b, json_type_int) ? json_object_get_int64(b) : 0;
    return v->name && v->pool && v->ns && v->claim && v->uid && v->bytes > 0;
}

/* Merge-patch the Reservation's status with st (borrowed) unless the cached
 * status already says the same. */
static int write_resv_status(vol_node *n, json_object *resv, const char *name, json_object *st,
                             bool *sent, kc_error *err)
{
    *sent = false;
    if (merge_is_noop(rec_obj_at(resv, "status"), st, NULL))
        return KC_OK;
    json_object *patch = json_object_new_object();
    if (!patch || !pv_json_add(patch, "status", json_object_get(st))) {
        json_object_put(patch);
        return KC_ERR_NOMEM;
    }
    kc_ref ref = resv_ref;
    ref.name = name;
    ref.subresource = "status";
    int rc = kc_patch(n->client, &ref, KC_PATCH_MERGE, patch, NULL, NULL, err);
    json_object_put(patch);
    *sent = rc == KC_OK;
    return rc == KC_ERR_NOT_FOUND ? KC_OK : rc;
}

/* The Reservation is being deleted: the directory goes, then the finalizer. */
static ctl_result resv_deleting(vol_node *n, json_object *resv, const resv_view *v,
                                json_object *pool)
{
    if (!rec_has_finalizer(resv, VOL_DIR_FINALIZER))
        return ctl_done();
    const char *path = pool ? rec_obj_str(pool, "spec.path") : NULL;
    if (!path) /* the pool waits for its Reservations: it is only not cached yet */
        return ctl_requeue_after(1.0);
    vol_key key = {.ns = v->ns, .name = v->claim, .uid = v->uid};
    vol_error verr = {0};
    int rc = vol_dir_remove(n->host_root, path, &key, &verr);
    if (rc != 0) {
        ctl_result res = ctl_error(KC_ERR_IO, "removing the directory of %s: %s", v->name,
                                   verr.message ? verr.message : strerror(-rc));
        vol_error_clear(&verr);
        return res;
    }
    kc_ref ref = resv_ref;
    ref.name = v->name;
    kc_error err = KC_ERROR_INIT;
    rc = rec_ensure_finalizer(n->client, &ref, resv, VOL_DIR_FINALIZER, false, NULL, NULL, &err);
    ctl_result res = ctl_done();
    if (rc == KC_ERR_CONFLICT)
        res = ctl_requeue();
    else if (rc != KC_OK && rc != KC_ERR_NOT_FOUND)
        res = ctl_error(rc, "removing the finalizer of %s: %s", v->name,
                        err.message ? err.message : kc_strerror(rc));
    else
        node_log(n, REC_LOG_INFO, "volume-agent", "volume directory removed",
                 REC_KV("reservation", v->name, "namespace", v->ns, "volume", v->claim));
    kc_error_clear(&err);
    used_forget(n, v->name);
    return res;
}

static ctl_result resv_reconcile(const ctl_ctx *ctx, const char *namespace_, const char *name,
                                 void *user)
{
    (void)ctx;
    (void)namespace_;
    vol_node *n = user;
    if (!inf_has_synced(n->pools))
        return ctl_requeue_after(0.2);
    json_object *resv = NULL;
    if (store_get(n->resv_store, name, &resv) != KC_OK) {
        used_forget(n, name);
        return ctl_done();
    }
    resv_view v;
    const char *kind = rec_obj_str(resv, "spec.pool.kind");
    const char *node = rec_obj_label(resv, REC_LABEL_NODE);
    if (!resv_view_of(resv, &v) || !kind || strcmp(kind, REC_POOL_KIND_STORAGE) || !node ||
        strcmp(node, n->node_name)) {
        store_obj_put(resv);
        return ctl_done();
    }
    json_object *pool = NULL;
    store_get(n->pools_store, v.pool, &pool);
    ctl_result res;
    if (rec_obj_is_deleting(resv)) {
        res = resv_deleting(n, resv, &v, pool);
        goto out;
    }
    if (!rec_has_finalizer(resv, VOL_DIR_FINALIZER)) {
        /* Never a directory without the finalizer that removes it; and
         * never put back: the operator takes it off to keep the directory
         * (Retain, or the node is gone). */
        res = ctl_done();
        goto out;
    }
    const char *ppath = pool ? rec_obj_str(pool, "spec.path") : NULL;
    if (!ppath) {
        res = ctl_requeue_after(VOL_NODE_RETRY_S); /* the pool's event wakes it */
        goto out;
    }
    vol_key key = {.ns = v.ns, .name = v.claim, .uid = v.uid};
    vol_quota_mode mode = quota_mode_of(pool);
    json_object *st = json_object_new_object();
    if (!st) {
        res = ctl_error(KC_ERR_NOMEM, "out of memory");
        goto out;
    }
    vol_error verr = {0};
    bool ready = false;
    const char *made_backend = NULL; /* a directory was ensured: its backend */
    char *nolimit = NULL;            /* ... without a limit: why */
    const char *phase = rec_obj_str(resv, "status.phase");
    const char *spath = rec_obj_str(resv, "status.path");
    vol_usage u = {0};
    int rc = -ENOENT;
    /* Ready before: the usage alone, unless the directory went missing. */
    if (phase && !strcmp(phase, "Ready") && spath)
        rc = vol_dir_usage(n->host_root, ppath, &key, 0, &u, NULL);
    bool ok = true;
    if (rc == 0 || rc == -ENOTSUP) {
        ready = true;
        json_object *q = rec_obj_at(resv, "status.quota");
        ok = pv_json_add_str(st, "phase", "Ready") && pv_json_add_str(st, "path", spath) &&
             pv_json_add(st, "quota", json_object_get(q));
    } else {
        vol_dir_result d = {0};
        rc = vol_dir_ensure(n->host_root, ppath, &key, (uint64_t)v.bytes, mode, &d, &verr);
        if (rc == 0) {
            ready = true;
            ok = pv_json_add_str(st, "phase", "Ready") && pv_json_add_str(st, "path", d.path) &&
                 pv_json_add_str(st, "quota", vol_quota_state_name(d.quota));
            rc = vol_dir_usage(n->host_root, ppath, &key, 0, &u, NULL);
            made_backend = vol_backend_name(d.backend);
            if (d.quota == VOL_QUOTA_STATE_UNSUPPORTED && d.quota_reason)
                nolimit = strdup(d.quota_reason);
        } else {
            ok = pv_json_add_str(st, "phase", "Failed") &&
                 pv_json_add_str(st, "message", verr.message ? verr.message : strerror(-rc));
        }
        vol_dir_result_free(&d);
    }
    if (ok && ready && rc == 0) {
        ok = pv_json_add_i64(st, "usedBytes", (int64_t)u.used_bytes);
        used_set(n, name, v.pool, (int64_t)u.used_bytes);
    }
    if (ok && ready)
        json_object_object_add(st, "message", NULL);
    if (!ok) {
        res = ctl_error(KC_ERR_NOMEM, "out of memory");
    } else {
        kc_error err = KC_ERROR_INIT;
        bool sent = false;
        int wrc = write_resv_status(n, resv, name, st, &sent, &err);
        if (wrc != KC_OK)
            res = ctl_error(wrc, "writing the status of %s: %s", name,
                            err.message ? err.message : kc_strerror(wrc));
        else
            res = ctl_requeue_after(ready ? VOL_NODE_USAGE_S : VOL_NODE_RETRY_S);
        kc_error_clear(&err);
        /* Logged once: when the status it reports is written. */
        const char *dpath = rec_obj_str(st, "path");
        if (!ready && sent)
            node_log(
                n, REC_LOG_ERROR, "volume-agent", "volume directory not made",
                REC_KV("reservation", name, "error", verr.message ? verr.message : strerror(-rc)));
        else if (sent && made_backend && !nolimit)
            node_log(
                n, REC_LOG_INFO, "volume-agent", "volume directory made",
                REC_KV("reservation", name, "path", dpath ? dpath : "?", "backend", made_backend));
        else if (sent && made_backend)
            node_log(n, REC_LOG_INFO, "volume-agent", "volume directory made without a size limit",
                     REC_KV("reservation", name, "path", dpath ? dpath : "?", "why", nolimit));
    }
    vol_error_clear(&verr);
    free(nolimit);
    json_object_put(st);
out:
    store_obj_put(pool);
    store_obj_put(resv);
    return res;
}

/* ---- triggers and setup ----------------------------------------------------------------- */

static int index_pending(json_object *obj, store_values *out, void *user)
{
    (void)user;
    const char *phase = rec_obj_str(obj, "status.phase");
    const char *pool = rec_obj_str(obj, "spec.pool.name");
    if (!pool || (phase && !strcmp(phase, "Ready") && !rec_obj_is_deleting(obj)))
        return KC_OK;
    return store_values_add(out, pool);
}

/* A pool changed (its path appeared, its quota mode changed): the volumes
 * waiting on it try again. Ready ones are not touched (a pool's status
 * changes with every allocation). */
static int pool_to_pending(json_object *obj, ctl_keys *out, void *user)
{
    vol_node *n = user;
    const char *pool = rec_obj_str(obj, "metadata.name");
    if (!pool)
        return KC_OK;
    char **keys = NULL;
    size_t nk = 0;
    int rc = store_index_keys(n->resv_store, VOL_IDX_POOL_PENDING, pool, &keys, &nk);
    for (size_t i = 0; rc == KC_OK && i < nk; i++)
        rc = ctl_keys_add(out, NULL, keys[i]);
    store_keys_free(keys, nk);
    return rc;
}

static void vol_node_free(void *arg)
{
    vol_node *n = arg;
    if (!n)
        return;
    size_t pos = 0;
    const char *key;
    void *val;
    while (inf_map_next(&n->used, &pos, &key, &val)) {
        node_used *u = val;
        free(u->pool);
        free(u);
    }
    inf_map_close(&n->used);
    pthread_mutex_destroy(&n->mu);
    free(n->node_name);
    free(n->host_root);
    free(n);
}

int vol_node_setup(const rec_env *env)
{
    if (!env->node_name || !*env->node_name)
        return KC_ERR_INVALID_ARG;
    vol_node *n = calloc(1, sizeof *n);
    if (!n)
        return KC_ERR_NOMEM;
    pthread_mutex_init(&n->mu, NULL);
    inf_map_init(&n->used);
    n->env = *env;
    n->client = env->client;
    n->node_name = strdup(env->node_name);
    n->host_root = strdup(env->host_root ? env->host_root : "/");
    char *fsel = NULL, *lsel = NULL;
    int rc = KC_ERR_NOMEM;
    if (!n->node_name || !n->host_root ||
        rec_msg(&fsel, "spec.nodeName=%s", env->node_name) != KC_OK ||
        rec_msg(&lsel, "%s=%s,%s=%s", REC_LABEL_POOL_KIND, REC_POOL_KIND_STORAGE, REC_LABEL_NODE,
                env->node_name) != KC_OK)
        goto err;
    inf_opts po = {.field_selector = fsel};
    inf_opts ro = {.label_selector = lsel, .store_mode = INF_STORE_COMPACT};
    if ((rc = inf_factory_get(env->factory, &pools_ref, &po, &n->pools)) != KC_OK ||
        (rc = inf_factory_get(env->factory, &resv_ref, &ro, &n->resv)) != KC_OK)
        goto err;
    free(fsel);
    free(lsel);
    fsel = lsel = NULL;
    n->pools_store = inf_store(n->pools);
    n->resv_store = inf_store(n->resv);
    if ((rc = store_add_index(n->resv_store, VOL_IDX_POOL_PENDING, index_pending, NULL)) != KC_OK)
        goto err;
    if ((rc = env->add_cleanup(env, vol_node_free, n)) != KC_OK)
        goto err;
    /* From here the manager owns n. */
    ctl_opts co = env->ctl_defaults;
    co.queue.max_delay = VOL_NODE_MAX_BACKOFF;
    ctl *pc = NULL, *rcl = NULL;
    if ((rc = ctl_new("storagepool-agent", &co, pool_reconcile, n, &pc)) != KC_OK)
        return rc;
    if ((rc = ctl_watch_for(pc, n->pools)) != KC_OK ||
        (rc = env->add_controller(env, pc)) != KC_OK) {
        ctl_free(pc);
        return rc;
    }
    if ((rc = ctl_new("volume-agent", &co, resv_reconcile, n, &rcl)) != KC_OK)
        return rc;
    if ((rc = ctl_watch_for(rcl, n->resv)) != KC_OK ||
        (rc = ctl_watch_map(rcl, n->pools, pool_to_pending, n)) != KC_OK ||
        (rc = env->add_controller(env, rcl)) != KC_OK)
        ctl_free(rcl);
    return rc;

err:
    free(fsel);
    free(lsel);
    vol_node_free(n);
    return rc;
}
