/*
 * vol_dyn - dynamic provisioning (API.md "Volumes"): a PersistentVolumeClaim
 * of a StorageClass whose provisioner is local.provisio.dev becomes a Volume
 * of the same name, owned by the claim, and takes the Volume's path (ledger,
 * the node agent's directory, PV pvc-<claim uid> pre-bound to the claim);
 * and free space published as CSIStorageCapacity objects, one per Ready
 * StoragePool and StorageClass it serves, so kube-scheduler sends a
 * WaitForFirstConsumer pod only to a node with room.
 *
 * Which pools serve a class: those whose spec.storageClassName is the class,
 * and those with none (README.md "Dynamic provisioning").
 *
 *   "persistentvolumeclaim"  PVC -> its Volume (Immediate: at once;
 *                            WaitForFirstConsumer: once kube-scheduler has
 *                            annotated volume.kubernetes.io/selected-node,
 *                            the Volume's spec.nodeName); a Volume that
 *                            cannot be placed shows on the PVC as a Warning
 *                            Event ProvisioningFailed, and when it cannot be
 *                            placed on the node picked for it, the pick is
 *                            given back to kube-scheduler (give_back_node).
 *   "storagecapacity"        pool -> its CSIStorageCapacity objects in the
 *                            operator's namespace (at most one write per pool
 *                            and second).
 */
#include "vol_internal.h"
#include "vol_ledger.h"

#include "kc_error.h"
#include "kc_quantity.h"
#include "pv_json.h"
#include "rec_events.h"
#include "rec_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define VOL_ANN_SELECTED_NODE "volume.kubernetes.io/selected-node"
#define VOL_LABEL_POOL "provisio.dev/pool"
#define VOL_LABEL_CLASS "provisio.dev/storage-class"
#define VOL_CAPACITY_PACE 1.0 /* s between two capacity writes of one pool */

const kc_ref vol_classes_ref = {
    .group = "storage.k8s.io", .version = "v1", .resource = "storageclasses"};
const kc_ref vol_capacities_ref = {
    .group = "storage.k8s.io", .version = "v1", .resource = "csistoragecapacities"};

/* The StorageClass name if it is ours (a store reference in *sc). */
static bool our_class(vol_app *a, const char *name, json_object **sc)
{
    *sc = NULL;
    if (!name || !*name || store_get(a->classes_store, name, sc) != KC_OK)
        return false;
    const char *p = rec_obj_str(*sc, "provisioner");
    if (p && !strcmp(p, VOL_PROVISIONER))
        return true;
    store_obj_put(*sc);
    *sc = NULL;
    return false;
}

bool vol_pool_serves(json_object *pool, const char *cls)
{
    const char *mine = rec_obj_str(pool, "spec.storageClassName");
    return !mine || !*mine || (cls && !strcmp(mine, cls));
}

/* ---- the PVC -> Volume ------------------------------------------------------------------ */

/* A WaitForFirstConsumer claim's Volume is bound to the node kube-scheduler
 * picked; when no pool there can hold it, the pick is given back, as
 * external-provisioner does: the selected-node annotation comes off the
 * claim (kube-scheduler's volume binding then fails the pod's binding and
 * schedules it again, with the capacity objects as they are now) and the
 * Volume, which never held anything, is deleted, so the claim's next pick
 * makes a new one there. */
static bool cannot_fit_there(const char *reason)
{
    return reason && (!strcmp(reason, "InsufficientCapacity") || !strcmp(reason, "InvalidSpec") ||
                      !strcmp(reason, "PoolNotReady"));
}

/* Take the selected-node annotation off pvc while it still names node (a
 * merge patch under its resourceVersion), then delete vol (its uid as
 * precondition). KC_OK, KC_ERR_CONFLICT (look again) or an error. */
static int give_back_node(vol_app *a, json_object *pvc, json_object *vol, const char *node,
                          kc_error *err)
{
    const char *sel = rec_obj_annotation(pvc, VOL_ANN_SELECTED_NODE);
    int rc = KC_OK;
    if (sel && node && !strcmp(sel, node)) {
        json_object *patch = json_object_new_object();
        json_object *meta = pv_json_add_child(patch, "metadata");
        json_object *ann = pv_json_add_child(meta, "annotations");
        const char *rv = rec_obj_str(pvc, "metadata.resourceVersion");
        rc = KC_ERR_NOMEM;
        if (ann && rv && pv_json_add_str(meta, "resourceVersion", rv) &&
            !json_object_object_add(ann, VOL_ANN_SELECTED_NODE, NULL)) {
            kc_ref ref = {.version = "v1",
                          .resource = "persistentvolumeclaims",
                          .namespace_ = rec_obj_str(pvc, "metadata.namespace"),
                          .name = rec_obj_str(pvc, "metadata.name")};
            rc = kc_patch(a->client, &ref, KC_PATCH_MERGE, patch, NULL, NULL, err);
        }
        json_object_put(patch);
        if (rc != KC_OK)
            return rc;
    }
    kc_ref vref = vol_volumes_ref;
    vref.namespace_ = rec_obj_str(vol, "metadata.namespace");
    vref.name = rec_obj_str(vol, "metadata.name");
    kc_delete_opts dopts = {.precondition_uid = rec_obj_str(vol, "metadata.uid")};
    kc_error_clear(err);
    rc = kc_delete(a->client, &vref, &dopts, NULL, err);
    return rc == KC_ERR_NOT_FOUND ? KC_OK : rc;
}

static json_object *volume_body(json_object *pvc, json_object *sc, const char *node)
{
    json_object *owner = NULL;
    if (rec_owner_ref_of(pvc, "v1", "PersistentVolumeClaim", &owner) != KC_OK)
        return NULL;
    char *pv = NULL;
    if (rec_msg(&pv, "pvc-%s", rec_obj_str(pvc, "metadata.uid")) != KC_OK) {
        json_object_put(owner);
        return NULL;
    }
    const char *policy = rec_obj_str(sc, "reclaimPolicy");
    json_object *params = rec_obj_at(sc, "parameters");
    const char *pool = NULL;
    json_object *pv_pool = NULL;
    if (json_object_object_get_ex(params, "pool", &pv_pool) &&
        json_object_is_type(pv_pool, json_type_string))
        pool = json_object_get_string(pv_pool);
    json_object *size = rec_obj_at(pvc, "spec.resources.requests.storage");
    json_object *modes = rec_obj_at(pvc, "spec.accessModes");
    json_object *v = json_object_new_object();
    json_object *meta = v ? pv_json_add_child(v, "metadata") : NULL;
    json_object *ann = meta ? pv_json_add_child(meta, "annotations") : NULL;
    json_object *owners = json_object_new_array();
    json_object *spec = v ? pv_json_add_child(v, "spec") : NULL;
    bool ok = ann && owners && spec && json_object_array_add(owners, owner) == 0;
    if (ok)
        owner = NULL;
    ok = ok && pv_json_add_str(v, "apiVersion", "provisio.dev/v1alpha1") &&
         pv_json_add_str(v, "kind", "Volume") &&
         pv_json_add_str(meta, "name", rec_obj_str(pvc, "metadata.name")) &&
         pv_json_add_str(meta, "namespace", rec_obj_str(pvc, "metadata.namespace")) &&
         pv_json_add(meta, "ownerReferences", json_object_get(owners)) &&
         pv_json_add_str(ann, VOL_ANN_PV_NAME, pv) &&
         pv_json_add_str(ann, VOL_ANN_CLASS, rec_obj_str(pvc, "spec.storageClassName")) &&
         rec_put_copy(spec, "size", size) &&
         (!json_object_is_type(modes, json_type_array) ||
          rec_put_copy(spec, "accessModes", modes)) &&
         pv_json_add_str(spec, "reclaimPolicy",
                         policy && !strcmp(policy, "Retain") ? "Retain" : "Delete") &&
         pv_json_add_str(spec, "nodeName", node) && pv_json_add_str(spec, "pool", pool);
    json_object_put(owner);
    json_object_put(owners);
    free(pv);
    if (!ok) {
        json_object_put(v);
        return NULL;
    }
    return v;
}

static ctl_result pvc_reconcile(const ctl_ctx *ctx, const char *namespace_, const char *name,
                                void *user)
{
    (void)ctx;
    vol_app *a = user;
    if (!inf_has_synced(a->pvcs) || !inf_has_synced(a->classes) || !inf_has_synced(a->volumes))
        return ctl_requeue_after(0.2);
    char *key = NULL;
    if (rec_msg(&key, "%s/%s", namespace_, name) != KC_OK)
        return ctl_error(KC_ERR_NOMEM, "out of memory");
    json_object *pvc = NULL, *sc = NULL, *vol = NULL;
    store_get(a->pvcs_store, key, &pvc);
    ctl_result res = ctl_done();
    if (!pvc || rec_obj_is_deleting(pvc) ||
        !our_class(a, rec_obj_str(pvc, "spec.storageClassName"), &sc))
        goto out;
    const char *uid = rec_obj_str(pvc, "metadata.uid");
    store_get(a->volumes_store, key, &vol);
    if (vol) {
        if (!rec_is_owned_by(vol, uid)) {
            if (!rec_is_owned_by(pvc, rec_obj_str(vol, "metadata.uid"))) /* not its own PVC */
                rec_event(a->events, pvc, "v1", "PersistentVolumeClaim", REC_EVENT_WARNING,
                          "ProvisioningFailed",
                          "a Volume named %s exists in this namespace and is not this claim's; "
                          "a claim and the Volume provisioned for it share a name",
                          name);
            goto out;
        }
        json_object *c = rec_get_condition(rec_obj_at(vol, "status"), REC_COND_READY);
        const char *st = c ? rec_obj_str(c, "status") : NULL;
        const char *reason = c ? rec_obj_str(c, "reason") : NULL;
        const char *msg = c ? rec_obj_str(c, "message") : NULL;
        const char *mode = rec_obj_str(sc, "volumeBindingMode");
        const char *vnode = rec_obj_str(vol, "spec.nodeName");
        const char *sel = rec_obj_annotation(pvc, VOL_ANN_SELECTED_NODE);
        const char *placed = rec_obj_str(vol, "status.pool");
        bool wffc = mode && !strcmp(mode, "WaitForFirstConsumer") && vnode && *vnode;
        bool unplaced = !placed || !*placed;
        if (rec_obj_is_deleting(vol)) {
            if (wffc && unplaced) /* given back: the next pick's Volume once it is gone */
                res = ctl_requeue_after(0.5);
            goto out;
        }
        bool failed = st && !strcmp(st, REC_COND_FALSE) && reason &&
                      (!strcmp(reason, "InsufficientCapacity") || !strcmp(reason, "InvalidSpec") ||
                       !strcmp(reason, "PoolNotFound") || !strcmp(reason, "PoolNotReady") ||
                       !strcmp(reason, VOL_REASON_DIR_FAILED));
        bool stale = wffc && unplaced && (!sel || strcmp(sel, vnode));
        bool give_back = wffc && unplaced && (stale || (failed && cannot_fit_there(reason)));
        if (failed && !stale)
            rec_event(a->events, pvc, "v1", "PersistentVolumeClaim", REC_EVENT_WARNING,
                      "ProvisioningFailed", "Volume %s/%s: %s: %s", namespace_, name, reason,
                      msg ? msg : "");
        if (give_back) {
            kc_error err = {0};
            int rc = give_back_node(a, pvc, vol, vnode, &err);
            if (rc == KC_OK) {
                if (!stale)
                    rec_event(a->events, pvc, "v1", "PersistentVolumeClaim", REC_EVENT_NORMAL,
                              "Rescheduling",
                              "node %s cannot hold this claim (%s); its selection is given back "
                              "to kube-scheduler, which picks a node again",
                              vnode, reason);
                a->env.log(&a->env, REC_LOG_INFO, "persistentvolumeclaim",
                           stale ? "Volume of an earlier node pick deleted"
                                 : "selected node given back to kube-scheduler",
                           REC_KV("namespace", namespace_, "name", name, "node", vnode, "reason",
                                  reason ? reason : ""));
                res = ctl_requeue_after(0.5);
            } else {
                res = rc == KC_ERR_CONFLICT
                          ? ctl_requeue()
                          : ctl_error(rc, "giving node %s back for claim %s: %s", vnode, key,
                                      err.message ? err.message : kc_strerror(rc));
            }
            kc_error_clear(&err);
        }
        goto out;
    }
    const char *bound = rec_obj_str(pvc, "spec.volumeName");
    if (bound && *bound) /* bound, or pre-bound by someone, to a volume of its own */
        goto out;
    const char *mode = rec_obj_str(sc, "volumeBindingMode");
    const char *node = rec_obj_annotation(pvc, VOL_ANN_SELECTED_NODE);
    if (mode && !strcmp(mode, "WaitForFirstConsumer") && (!node || !*node))
        goto out; /* kube-scheduler annotates it when a pod using it is scheduled */
    if (!mode || strcmp(mode, "WaitForFirstConsumer"))
        node = NULL; /* Immediate: a pool is picked, wherever it is */
    json_object *body = volume_body(pvc, sc, node);
    if (!body) {
        res = ctl_error(KC_ERR_NOMEM, "building the Volume of claim %s", key);
        goto out;
    }
    kc_ref ref = vol_volumes_ref;
    ref.namespace_ = namespace_;
    kc_error err = {0};
    int rc = kc_create(a->client, &ref, body, NULL, NULL, &err);
    json_object_put(body);
    if (rc == KC_OK)
        rec_event(a->events, pvc, "v1", "PersistentVolumeClaim", REC_EVENT_NORMAL, "Provisioning",
                  "Volume %s/%s made for this claim%s%s; its PersistentVolume will be pvc-%s",
                  namespace_, name, node && *node ? " on node " : "", node && *node ? node : "",
                  uid);
    else if (rc == KC_ERR_INVALID)
        rec_event(a->events, pvc, "v1", "PersistentVolumeClaim", REC_EVENT_WARNING,
                  "ProvisioningFailed", "the Volume for this claim was refused: %s",
                  err.message ? err.message : kc_strerror(rc));
    else if (rc != KC_ERR_ALREADY_EXISTS)
        res = ctl_error(rc, "creating the Volume of claim %s: %s", key,
                        err.message ? err.message : kc_strerror(rc));
    kc_error_clear(&err);
out:
    free(key);
    store_obj_put(vol);
    store_obj_put(sc);
    store_obj_put(pvc);
    return res;
}

/* A Volume changed: the claim that owns it (its name and namespace). */
static int volume_to_pvc(json_object *obj, ctl_keys *out, void *user)
{
    (void)user;
    if (!rec_obj_annotation(obj, VOL_ANN_PV_NAME))
        return KC_OK;
    return ctl_keys_add(out, rec_obj_str(obj, "metadata.namespace"),
                        rec_obj_str(obj, "metadata.name"));
}

/* A StorageClass changed: nothing to map for claims here (a claim of a
 * class made after it is retried by the PVC's own resync). */

/* ---- CSIStorageCapacity ----------------------------------------------------------------- */

typedef struct cap_mark {
    double at;
    char name[];
} cap_mark;

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Seconds to wait before the pool's next write (0: now), and note a write. */
static double cap_pace(vol_app *a, const char *pool, bool note)
{
    double now = mono_now(), wait = 0;
    pthread_mutex_lock(&a->mu);
    cap_mark *m = inf_map_get(&a->cap_marks, pool);
    if (m && now - m->at < VOL_CAPACITY_PACE)
        wait = VOL_CAPACITY_PACE - (now - m->at);
    if (note && !m) {
        m = calloc(1, sizeof *m + strlen(pool) + 1);
        if (m) {
            strcpy(m->name, pool);
            if (inf_map_put(&a->cap_marks, m->name, m) != KC_OK) {
                free(m);
                m = NULL;
            }
        }
    }
    if (note && m)
        m->at = now;
    pthread_mutex_unlock(&a->mu);
    return wait;
}

static json_object *capacity_body(const char *ns, const char *name, const char *pool,
                                  const char *cls, const char *node, int64_t bytes)
{
    char q[KC_QUANTITY_BUFSIZE];
    if (kc_quantity_format(bytes, KC_QUANTITY_UNITS, KC_QUANTITY_BINARY_SI, q) != KC_OK)
        snprintf(q, sizeof q, "%lld", (long long)bytes);
    json_object *o = json_object_new_object();
    json_object *meta = o ? pv_json_add_child(o, "metadata") : NULL;
    json_object *labels = meta ? pv_json_add_child(meta, "labels") : NULL;
    json_object *topo = o ? pv_json_add_child(o, "nodeTopology") : NULL;
    json_object *ml = topo ? pv_json_add_child(topo, "matchLabels") : NULL;
    bool ok = labels && ml && pv_json_add_str(o, "apiVersion", "storage.k8s.io/v1") &&
              pv_json_add_str(o, "kind", "CSIStorageCapacity") &&
              pv_json_add_str(meta, "name", name) && pv_json_add_str(meta, "namespace", ns) &&
              pv_json_add_str(labels, VOL_LABEL_POOL, pool) &&
              pv_json_add_str(labels, VOL_LABEL_CLASS, cls) &&
              pv_json_add_str(ml, "kubernetes.io/hostname", node) &&
              pv_json_add_str(o, "storageClassName", cls) && pv_json_add_str(o, "capacity", q) &&
              pv_json_add_str(o, "maximumVolumeSize", q);
    if (!ok) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

/* Whether the cached object says what want says (the fields we own). */
static bool capacity_same(json_object *have, json_object *want)
{
    static const char *const keys[] = {"storageClassName", "capacity", "maximumVolumeSize",
                                       "nodeTopology"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        json_object *h = rec_obj_at(have, keys[i]), *w = rec_obj_at(want, keys[i]);
        if (!h || !json_object_equal(h, w))
            return false;
    }
    return true;
}

static ctl_result capacity_reconcile(const ctl_ctx *ctx, const char *namespace_, const char *name,
                                     void *user)
{
    (void)ctx;
    (void)namespace_;
    vol_app *a = user;
    if (!inf_has_synced(a->pools) || !inf_has_synced(a->classes) || !inf_has_synced(a->capacities))
        return ctl_requeue_after(0.2);
    double wait = cap_pace(a, name, false);
    if (wait > 0)
        return ctl_requeue_after(wait);
    json_object *pool = NULL;
    store_get(a->pools_store, name, &pool);
    const char *node = pool ? rec_obj_str(pool, "spec.nodeName") : NULL;
    bool publish = pool && node && !rec_obj_is_deleting(pool) &&
                   rec_condition_is_true(rec_obj_at(pool, "status"), REC_COND_READY);
    int64_t avail = 0;
    if (publish) {
        vol_ledger l;
        char *why = NULL;
        publish = vol_ledger_read(pool, &l, &why) == KC_OK && l.known;
        if (publish)
            avail = vol_ledger_available(&l);
        free(why);
        vol_ledger_close(&l);
    }
    json_object **classes = NULL, **have = NULL;
    size_t nc = 0, nh = 0;
    ctl_result res = ctl_done();
    int rc = store_list(a->classes_store, &classes, &nc);
    if (rc == KC_OK)
        rc = store_by_index(a->capacities_store, VOL_IDX_POOL, name, &have, &nh);
    bool wrote = false;
    kc_error err = {0};
    /* Wanted: one per class the pool serves. */
    for (size_t i = 0; rc == KC_OK && publish && i < nc; i++) {
        const char *p = rec_obj_str(classes[i], "provisioner");
        const char *cls = rec_obj_str(classes[i], "metadata.name");
        if (!p || strcmp(p, VOL_PROVISIONER) || !cls || !vol_pool_serves(pool, cls))
            continue;
        char *cname = NULL;
        if ((rc = rec_msg(&cname, "%s.%s", name, cls)) != KC_OK)
            break;
        if (strlen(cname) > 253) {
            free(cname);
            continue;
        }
        json_object *want = capacity_body(a->env.operator_namespace, cname, name, cls, node, avail);
        json_object *cur = NULL;
        for (size_t j = 0; j < nh && !cur; j++)
            if (!strcmp(rec_obj_str(have[j], "metadata.name"), cname))
                cur = have[j];
        kc_ref ref = vol_capacities_ref;
        ref.namespace_ = a->env.operator_namespace;
        if (!want) {
            rc = KC_ERR_NOMEM;
        } else if (!cur) {
            rc = kc_create(a->client, &ref, want, NULL, NULL, &err);
            rc = rc == KC_ERR_ALREADY_EXISTS ? KC_OK : rc;
            wrote = true;
        } else if (!capacity_same(cur, want)) {
            ref.name = cname;
            pv_json_add_str(rec_obj_at(want, "metadata"), "resourceVersion",
                            rec_obj_str(cur, "metadata.resourceVersion"));
            rc = kc_update(a->client, &ref, want, NULL, NULL, &err);
            if (rc == KC_ERR_CONFLICT || rc == KC_ERR_NOT_FOUND) {
                res = ctl_requeue();
                rc = KC_OK;
            }
            wrote = true;
        }
        json_object_put(want);
        free(cname);
    }
    /* Not wanted: a pool gone, not Ready, a class gone or not served. */
    for (size_t j = 0; rc == KC_OK && j < nh; j++) {
        const char *cls = rec_obj_label(have[j], VOL_LABEL_CLASS);
        json_object *sc = NULL;
        bool keep = publish && cls && our_class(a, cls, &sc) && vol_pool_serves(pool, cls);
        store_obj_put(sc);
        if (keep)
            continue;
        kc_ref ref = vol_capacities_ref;
        ref.namespace_ = a->env.operator_namespace;
        ref.name = rec_obj_str(have[j], "metadata.name");
        rc = kc_delete(a->client, &ref, NULL, NULL, &err);
        rc = rc == KC_ERR_NOT_FOUND ? KC_OK : rc;
        wrote = true;
    }
    if (rc != KC_OK)
        res = ctl_error(rc, "publishing the CSIStorageCapacity of storagepool %s: %s", name,
                        err.message ? err.message : kc_strerror(rc));
    if (wrote)
        cap_pace(a, name, true);
    kc_error_clear(&err);
    store_objs_free(classes, nc);
    store_objs_free(have, nh);
    store_obj_put(pool);
    return res;
}

static int capacity_to_pool(json_object *obj, ctl_keys *out, void *user)
{
    (void)user;
    const char *pool = rec_obj_label(obj, VOL_LABEL_POOL);
    return pool ? ctl_keys_add(out, NULL, pool) : KC_OK;
}

static int class_to_pools(json_object *obj, ctl_keys *out, void *user)
{
    (void)obj;
    vol_app *a = user;
    json_object **pools = NULL;
    size_t n = 0;
    int rc = store_list(a->pools_store, &pools, &n);
    for (size_t i = 0; rc == KC_OK && i < n; i++)
        rc = ctl_keys_add(out, NULL, rec_obj_str(pools[i], "metadata.name"));
    store_objs_free(pools, n);
    return rc;
}

static int index_cap_pool(json_object *obj, store_values *out, void *user)
{
    (void)user;
    const char *pool = rec_obj_label(obj, VOL_LABEL_POOL);
    return pool ? store_values_add(out, pool) : KC_OK;
}

static void events_log(int code, bool expected, const char *message, void *user)
{
    vol_app *a = user;
    a->env.log(&a->env, expected ? REC_LOG_DEBUG : REC_LOG_ERROR, VOL_PVC_CONTROLLER,
               "unable to write an Event",
               REC_KV("error", rec_events_strerror(code), "detail", message ? message : ""));
}

void vol_dyn_close(vol_app *a)
{
    rec_events_free(a->events);
    a->events = NULL;
    size_t pos = 0;
    const char *key;
    void *val;
    while (inf_map_next(&a->cap_marks, &pos, &key, &val))
        free(val);
    inf_map_close(&a->cap_marks);
}

int vol_dyn_setup(vol_app *a, const rec_env *env)
{
    rec_events_opts eo = {
        .reporting_instance = env->identity, .senders = 1, .log = events_log, .log_user = a};
    int rc = rec_events_new(env->client, &eo, &a->events);
    if (rc != KC_OK)
        return rc;
    kc_ref capref = vol_capacities_ref;
    capref.namespace_ = env->operator_namespace;
    inf_opts co = {.label_selector = VOL_LABEL_POOL};
    if ((rc = inf_factory_get(env->factory, &vol_classes_ref, NULL, &a->classes)) != KC_OK ||
        (rc = inf_factory_get(env->factory, &capref, &co, &a->capacities)) != KC_OK)
        return rc;
    a->classes_store = inf_store(a->classes);
    a->capacities_store = inf_store(a->capacities);
    if ((rc = store_add_index(a->capacities_store, VOL_IDX_POOL, index_cap_pool, NULL)) != KC_OK)
        return rc;
    ctl *pc = NULL, *cc = NULL;
    if ((rc = rec_env_new_controller(env, VOL_PVC_CONTROLLER, pvc_reconcile, a, &pc)) != KC_OK ||
        (rc = ctl_watch_for(pc, a->pvcs)) != KC_OK ||
        (rc = ctl_watch_map(pc, a->volumes, volume_to_pvc, a)) != KC_OK)
        return rc;
    if ((rc = rec_env_new_controller(env, VOL_CAPACITY_CONTROLLER, capacity_reconcile, a, &cc)) !=
            KC_OK ||
        (rc = ctl_watch_for(cc, a->pools)) != KC_OK ||
        (rc = ctl_watch_map(cc, a->capacities, capacity_to_pool, a)) != KC_OK ||
        (rc = ctl_watch_map(cc, a->classes, class_to_pools, a)) != KC_OK)
        return rc;
    return KC_OK;
}
