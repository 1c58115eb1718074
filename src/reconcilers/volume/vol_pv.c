/*
 * vol_pv - what a placed Volume becomes once the node agent made its
 * directory: a local PersistentVolume (node affinity to the pool's node,
 * pre-bound to the claim by claimRef) and a PersistentVolumeClaim of the
 * Volume's name (created if missing, owned by the Volume, spec.volumeName
 * set), which kube-controller-manager binds. And the way back: the claim and
 * the volume deleted, waited for, before the directory may go.
 *
 * The PV is found by name and by the label provisio.dev/volume-uid (a PV of
 * that name made for another Volume is never touched). A PV is cluster-
 * scoped, so it cannot be owned by the namespaced Volume: the Volume's
 * finalizer deletes it.
 */
#include "vol_internal.h"

#include "kc_error.h"
#include "kc_quantity.h"
#include "pv_json.h"
#include "rec_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const kc_ref vol_pvs_ref = {.group = "", .version = "v1", .resource = "persistentvolumes"};
const kc_ref vol_pvcs_ref = {.group = "", .version = "v1", .resource = "persistentvolumeclaims"};

int vol_pv_name(json_object *vol, char **out)
{
    const char *fixed = rec_obj_annotation(vol, VOL_ANN_PV_NAME);
    if (fixed && *fixed)
        return rec_msg(out, "%s", fixed);
    return rec_msg(out, "vol-%s", rec_obj_str(vol, "metadata.uid"));
}

/* spec.accessModes of the Volume, or [ReadWriteOnce]. New array. */
static json_object *access_modes(json_object *vol)
{
    json_object *m = rec_obj_at(vol, "spec.accessModes");
    json_object *out = NULL;
    if (json_object_is_type(m, json_type_array) && json_object_array_length(m) > 0 &&
        json_object_deep_copy(m, &out, NULL) == 0)
        return out;
    out = json_object_new_array();
    if (out && json_object_array_add(out, json_object_new_string("ReadWriteOnce")) != 0) {
        json_object_put(out);
        out = NULL;
    }
    return out;
}

static const char *reclaim_policy(json_object *vol)
{
    const char *p = rec_obj_str(vol, "spec.reclaimPolicy");
    return p && !strcmp(p, "Retain") ? "Retain" : "Delete";
}

bool vol_retains(json_object *vol)
{
    return !strcmp(reclaim_policy(vol), "Retain");
}

static json_object *pv_body(json_object *vol, const vol_pv_want *w, const char *name)
{
    char size[KC_QUANTITY_BUFSIZE];
    if (kc_quantity_format(w->size, KC_QUANTITY_UNITS, KC_QUANTITY_BINARY_SI, size) != KC_OK)
        snprintf(size, sizeof size, "%lld", (long long)w->size);
    json_object *pv = json_object_new_object();
    json_object *meta = pv ? pv_json_add_child(pv, "metadata") : NULL;
    json_object *labels = meta ? pv_json_add_child(meta, "labels") : NULL;
    json_object *ann = meta ? pv_json_add_child(meta, "annotations") : NULL;
    json_object *spec = pv ? pv_json_add_child(pv, "spec") : NULL;
    json_object *cap = spec ? pv_json_add_child(spec, "capacity") : NULL;
    json_object *local = spec ? pv_json_add_child(spec, "local") : NULL;
    json_object *ref = spec ? pv_json_add_child(spec, "claimRef") : NULL;
    json_object *aff = spec ? pv_json_add_child(spec, "nodeAffinity") : NULL;
    json_object *req = aff ? pv_json_add_child(aff, "required") : NULL;
    json_object *terms = json_object_new_array();
    json_object *term = json_object_new_object();
    json_object *exprs = json_object_new_array();
    json_object *expr = json_object_new_object();
    json_object *values = json_object_new_array();
    bool ok = labels && ann && cap && local && ref && req && terms && term && exprs && expr &&
              values && pv_json_add_str(pv, "apiVersion", "v1") &&
              pv_json_add_str(pv, "kind", "PersistentVolume") &&
              pv_json_add_str(meta, "name", name) &&
              pv_json_add_str(labels, VOL_LABEL_UID, rec_obj_str(vol, "metadata.uid")) &&
              pv_json_add_str(ann, "pv.kubernetes.io/provisioned-by", VOL_PROVISIONER) &&
              pv_json_add_str(cap, "storage", size) &&
              pv_json_add(spec, "accessModes", access_modes(vol)) &&
              pv_json_add_str(spec, "persistentVolumeReclaimPolicy", reclaim_policy(vol)) &&
              pv_json_add_str(spec, "storageClassName", w->storage_class ? w->storage_class : "") &&
              pv_json_add_str(spec, "volumeMode", "Filesystem") &&
              pv_json_add_str(local, "path", w->path) && pv_json_add_str(ref, "apiVersion", "v1") &&
              pv_json_add_str(ref, "kind", "PersistentVolumeClaim") &&
              pv_json_add_str(ref, "namespace", rec_obj_str(vol, "metadata.namespace")) &&
              pv_json_add_str(ref, "name", rec_obj_str(vol, "metadata.name")) &&
              json_object_array_add(values, json_object_new_string(w->node)) == 0 &&
              pv_json_add_str(expr, "key", "kubernetes.io/hostname") &&
              pv_json_add_str(expr, "operator", "In");
    /* pv_json_add takes the reference it is given, also when it fails. */
    ok = ok && pv_json_add(expr, "values", values);
    values = NULL;
    ok = ok && json_object_array_add(exprs, expr) == 0;
    if (ok)
        expr = NULL;
    ok = ok && pv_json_add(term, "matchExpressions", exprs);
    exprs = NULL;
    ok = ok && json_object_array_add(terms, term) == 0;
    if (ok)
        term = NULL;
    ok = ok && pv_json_add(req, "nodeSelectorTerms", terms);
    terms = NULL;
    json_object_put(values);
    json_object_put(expr);
    json_object_put(exprs);
    json_object_put(term);
    json_object_put(terms);
    if (!ok) {
        json_object_put(pv);
        return NULL;
    }
    return pv;
}

static json_object *pvc_body(json_object *vol, const vol_pv_want *w, const char *pv_name)
{
    char size[KC_QUANTITY_BUFSIZE];
    if (kc_quantity_format(w->size, KC_QUANTITY_UNITS, KC_QUANTITY_BINARY_SI, size) != KC_OK)
        snprintf(size, sizeof size, "%lld", (long long)w->size);
    json_object *owner = NULL;
    if (rec_owner_ref_of(vol, "provisio.dev/v1alpha1", "Volume", &owner) != KC_OK)
        return NULL;
    json_object *pvc = json_object_new_object();
    json_object *meta = pvc ? pv_json_add_child(pvc, "metadata") : NULL;
    json_object *labels = meta ? pv_json_add_child(meta, "labels") : NULL;
    json_object *owners = json_object_new_array();
    json_object *spec = pvc ? pv_json_add_child(pvc, "spec") : NULL;
    json_object *res = spec ? pv_json_add_child(spec, "resources") : NULL;
    json_object *reqs = res ? pv_json_add_child(res, "requests") : NULL;
    bool ok = labels && owners && reqs && json_object_array_add(owners, owner) == 0;
    if (ok)
        owner = NULL;
    ok = ok && pv_json_add_str(pvc, "apiVersion", "v1") &&
         pv_json_add_str(pvc, "kind", "PersistentVolumeClaim") &&
         pv_json_add_str(meta, "name", rec_obj_str(vol, "metadata.name")) &&
         pv_json_add_str(meta, "namespace", rec_obj_str(vol, "metadata.namespace")) &&
         pv_json_add_str(labels, VOL_LABEL_UID, rec_obj_str(vol, "metadata.uid")) &&
         pv_json_add(meta, "ownerReferences", json_object_get(owners)) &&
         pv_json_add(spec, "accessModes", access_modes(vol)) &&
         pv_json_add_str(reqs, "storage", size) &&
         pv_json_add_str(spec, "storageClassName", w->storage_class ? w->storage_class : "") &&
         pv_json_add_str(spec, "volumeMode", "Filesystem") &&
         pv_json_add_str(spec, "volumeName", pv_name);
    json_object_put(owner);
    json_object_put(owners);
    if (!ok) {
        json_object_put(pvc);
        return NULL;
    }
    return pvc;
}

static int create(vol_app *a, const kc_ref *ref, json_object *body, kc_error *err)
{
    int rc = kc_create(a->client, ref, body, NULL, NULL, err);
    return rc == KC_ERR_ALREADY_EXISTS ? KC_OK : rc; /* the cache shows it soon */
}

/*
 * The PVC was deleted while the Volume lives (a static Volume's claim, by a
 * person): kube-controller-manager marks the PV Released and will never bind
 * it to a PVC of the same name again, since its claimRef keeps the old uid.
 * The directory and its data are the Volume's, so the PV is opened for the
 * next PVC of that name: claimRef's uid and resourceVersion go (a pre-bound
 * PV, as an administrator would do by hand), under the PV's resourceVersion.
 * pvc: the cached PVC of the Volume's name, or NULL.
 */
static int reopen_released(vol_app *a, json_object *pv, json_object *pvc, kc_error *err)
{
    const char *phase = rec_obj_str(pv, "status.phase");
    const char *old_uid = rec_obj_str(pv, "spec.claimRef.uid");
    if (!phase || strcmp(phase, "Released") || !old_uid || !*old_uid)
        return KC_OK;
    const char *pvc_uid = pvc ? rec_obj_str(pvc, "metadata.uid") : NULL;
    if (pvc_uid && !strcmp(pvc_uid, old_uid))
        return KC_OK; /* the claim it was bound to is still there (being deleted) */
    const char *rv = rec_obj_str(pv, "metadata.resourceVersion");
    json_object *patch = json_object_new_object();
    json_object *meta = pv_json_add_child(patch, "metadata");
    json_object *claim_ref = pv_json_add_child(pv_json_add_child(patch, "spec"), "claimRef");
    int rc = KC_ERR_NOMEM;
    if (meta && claim_ref && rv && pv_json_add_str(meta, "resourceVersion", rv) &&
        !json_object_object_add(claim_ref, "uid", NULL) &&
        !json_object_object_add(claim_ref, "resourceVersion", NULL)) {
        kc_ref ref = vol_pvs_ref;
        ref.name = rec_obj_str(pv, "metadata.name");
        rc = kc_patch(a->client, &ref, KC_PATCH_MERGE, patch, NULL, NULL, err);
        if (rc == KC_OK)
            a->env.log(&a->env, REC_LOG_INFO, VOL_CLAIM_CONTROLLER,
                       "PersistentVolume released by a deleted claim; opened for the next one",
                       REC_KV("persistentVolume", ref.name, "namespace",
                              rec_obj_str(pv, "spec.claimRef.namespace"), "name",
                              rec_obj_str(pv, "spec.claimRef.name")));
        else if (rc == KC_ERR_CONFLICT || rc == KC_ERR_NOT_FOUND)
            rc = KC_OK; /* the cache is behind; the next look sees the PV as it is */
    }
    json_object_put(patch);
    return rc;
}

/*
 * The PV's create found one of that name that the cache does not show
 * (made a moment ago, or not labelled: the informer sees only labelled
 * PVs): ours when it carries this Volume's uid, else VolumeConflict.
 */
static int check_existing_pv(vol_app *a, json_object *vol, vol_binding *b, kc_error *err)
{
    kc_ref ref = vol_pvs_ref;
    ref.name = b->pv;
    json_object *pv = NULL;
    kc_error_clear(err);
    int rc = kc_get(a->client, &ref, &pv, err);
    if (rc == KC_ERR_NOT_FOUND)
        return KC_OK; /* gone again: the next look makes it */
    if (rc != KC_OK)
        return rc;
    const char *owner = rec_obj_label(pv, VOL_LABEL_UID);
    const char *uid = rec_obj_str(vol, "metadata.uid");
    if (!owner || !uid || strcmp(owner, uid)) {
        b->reason = VOL_REASON_VOLUME_CONFLICT;
        rc =
            rec_msg(&b->message, "PersistentVolume %s exists and belongs to another volume", b->pv);
    }
    json_object_put(pv);
    return rc;
}

/* Fill b; a request failed: its status. */
int vol_pv_ensure(vol_app *a, json_object *vol, const vol_pv_want *w, vol_binding *b)
{
    memset(b, 0, sizeof *b);
    const char *uid = rec_obj_str(vol, "metadata.uid");
    const char *ns = rec_obj_str(vol, "metadata.namespace");
    const char *vname = rec_obj_str(vol, "metadata.name");
    int rc = vol_pv_name(vol, &b->pv);
    if (rc != KC_OK)
        return rc;
    b->pvc = vname;
    kc_error err = {0};
    json_object *pv = NULL, *pvc = NULL;
    store_get(a->pvs_store, b->pv, &pv);
    if (pv) {
        const char *owner = rec_obj_label(pv, VOL_LABEL_UID);
        if (!owner || strcmp(owner, uid)) {
            b->reason = VOL_REASON_VOLUME_CONFLICT;
            rc = rec_msg(&b->message, "PersistentVolume %s exists and belongs to another volume",
                         b->pv);
            goto out;
        }
    } else {
        json_object *body = pv_body(vol, w, b->pv);
        kc_ref ref = vol_pvs_ref;
        rc = body ? kc_create(a->client, &ref, body, NULL, NULL, &err) : KC_ERR_NOMEM;
        json_object_put(body);
        if (rc == KC_OK) {
            /* The claim follows once this cache shows the PV (its watch
             * event wakes the Volume): a PVC naming a PV that
             * kube-controller-manager has not seen yet waits for its next
             * resync, 15 s. */
            b->reason = VOL_REASON_BINDING;
            rc = rec_msg(&b->message,
                         "PersistentVolume %s made; its PersistentVolumeClaim %s/%s follows once "
                         "it is seen",
                         b->pv, ns, vname);
            goto out;
        }
        if (rc == KC_ERR_ALREADY_EXISTS)
            rc = check_existing_pv(a, vol, b, &err);
        if (rc != KC_OK || b->reason)
            goto out;
    }
    store_get_in(a->pvcs_store, ns, vname, &pvc);
    /* A dynamic Volume's PVC is its owner, made by the user: never made
     * again here (deleted, it takes the Volume with it), nor its PV reopened. */
    bool dynamic = rec_obj_annotation(vol, VOL_ANN_PV_NAME) != NULL;
    if (pv && !dynamic && (rc = reopen_released(a, pv, pvc, &err)) != KC_OK)
        goto out;
    if (!pvc && dynamic) {
        b->reason = VOL_REASON_BINDING;
        rc = rec_msg(&b->message,
                     "PersistentVolume %s made; PersistentVolumeClaim %s/%s, which this volume "
                     "was made for, is gone",
                     b->pv, ns, vname);
    } else if (pvc) {
        const char *bound = rec_obj_str(pvc, "spec.volumeName");
        const char *phase = rec_obj_str(pvc, "status.phase");
        if (bound && *bound && strcmp(bound, b->pv)) {
            b->reason = VOL_REASON_CLAIM_CONFLICT;
            rc = rec_msg(&b->message,
                         "PersistentVolumeClaim %s/%s is bound to PersistentVolume %s, not to "
                         "this volume's %s",
                         ns, vname, bound, b->pv);
        } else if (phase && !strcmp(phase, "Bound") && bound) {
            b->ready = true;
        } else if (rec_obj_is_deleting(pvc)) {
            b->reason = VOL_REASON_BINDING;
            rc = rec_msg(&b->message, "PersistentVolumeClaim %s/%s is being deleted", ns, vname);
        } else {
            b->reason = VOL_REASON_BINDING;
            rc = rec_msg(&b->message,
                         "PersistentVolume %s made; waiting for kube-controller-manager to bind "
                         "it to PersistentVolumeClaim %s/%s",
                         b->pv, ns, vname);
        }
    } else {
        json_object *body = pvc_body(vol, w, b->pv);
        kc_ref ref = vol_pvcs_ref;
        ref.namespace_ = ns;
        rc = body ? create(a, &ref, body, &err) : KC_ERR_NOMEM;
        json_object_put(body);
        if (rc == KC_OK) {
            b->reason = VOL_REASON_BINDING;
            rc = rec_msg(&b->message,
                         "PersistentVolume %s and PersistentVolumeClaim %s/%s made; waiting for "
                         "kube-controller-manager to bind them",
                         b->pv, ns, vname);
        }
    }
out:
    if (rc != KC_OK && err.message && !b->message)
        b->message = strdup(err.message);
    kc_error_clear(&err);
    store_obj_put(pv);
    store_obj_put(pvc);
    return rc;
}

void vol_binding_clear(vol_binding *b)
{
    free(b->pv);
    free(b->message);
    memset(b, 0, sizeof *b);
}

/* Delete obj (a cached or fetched object) unless it is being deleted. */
static int delete_obj(vol_app *a, const kc_ref *base, json_object *obj, kc_error *err)
{
    if (rec_obj_is_deleting(obj))
        return KC_OK;
    kc_ref ref = *base;
    ref.name = rec_obj_str(obj, "metadata.name");
    ref.namespace_ = rec_obj_str(obj, "metadata.namespace");
    kc_delete_opts o = {.precondition_uid = rec_obj_str(obj, "metadata.uid")};
    int rc = kc_delete(a->client, &ref, &o, NULL, err);
    return rc == KC_ERR_NOT_FOUND || rc == KC_ERR_CONFLICT ? KC_OK : rc;
}

int vol_pv_teardown(vol_app *a, json_object *vol, bool *gone, char **why)
{
    *gone = false;
    *why = NULL;
    const char *uid = rec_obj_str(vol, "metadata.uid");
    const char *ns = rec_obj_str(vol, "metadata.namespace");
    const char *vname = rec_obj_str(vol, "metadata.name");
    char *name = NULL;
    int rc = vol_pv_name(vol, &name);
    if (rc != KC_OK)
        return rc;
    kc_error err = {0};
    json_object *pvc = NULL, *pv = NULL;
    store_get_in(a->pvcs_store, ns, vname, &pvc);
    if (pvc && rec_is_owned_by(pvc, uid))
        rc = delete_obj(a, &vol_pvcs_ref, pvc, &err);
    bool fetched = false;
    if (rc == KC_OK && store_get(a->pvs_store, name, &pv) != KC_OK) {
        /* Not cached: perhaps made a moment ago. Only the server can say it
         * is gone, and the directory must not go before it. */
        kc_ref ref = vol_pvs_ref;
        ref.name = name;
        rc = kc_get(a->client, &ref, &pv, &err);
        fetched = true;
        if (rc == KC_ERR_NOT_FOUND) {
            rc = KC_OK;
            pv = NULL;
        }
    }
    if (rc == KC_OK && pv) {
        const char *owner = rec_obj_label(pv, VOL_LABEL_UID);
        if (owner && !strcmp(owner, uid)) {
            rc = delete_obj(a, &vol_pvs_ref, pv, &err);
            if (rc == KC_OK)
                rc = rec_msg(why, "waiting for PersistentVolume %s to be deleted%s", name,
                             pvc && rec_obj_is_deleting(pvc)
                                 ? " (its claim is in use by a pod: kubernetes.io/pvc-protection)"
                                 : "");
        } else {
            *gone = true; /* not ours */
        }
    } else if (rc == KC_OK) {
        *gone = true;
    }
    if (rc != KC_OK && err.message && !*why)
        *why = strdup(err.message);
    if (fetched)
        json_object_put(pv);
    else
        store_obj_put(pv);
    store_obj_put(pvc);
    kc_error_clear(&err);
    free(name);
    return rc;
}

/* ---- triggers ---------------------------------------------------------------------- */

/* A PV of ours or a PVC changed: the Volume of the same namespace/name. */
static int pv_to_volume(json_object *obj, ctl_keys *out, void *user)
{
    (void)user;
    const char *ns = rec_obj_str(obj, "spec.claimRef.namespace");
    const char *name = rec_obj_str(obj, "spec.claimRef.name");
    return ns && name ? ctl_keys_add(out, ns, name) : KC_OK;
}

static int pvc_to_volume(json_object *obj, ctl_keys *out, void *user)
{
    (void)user;
    const char *ns = rec_obj_str(obj, "metadata.namespace");
    const char *name = rec_obj_str(obj, "metadata.name");
    return ns && name ? ctl_keys_add(out, ns, name) : KC_OK;
}

int vol_pv_setup(vol_app *a, const rec_env *env)
{
    inf_opts pvo = {.label_selector = VOL_LABEL_UID, .store_mode = INF_STORE_COMPACT};
    inf_opts pvco = {.store_mode = INF_STORE_COMPACT};
    kc_ref cref = vol_pvcs_ref;
    cref.namespace_ = env->watch_namespace && *env->watch_namespace ? env->watch_namespace : NULL;
    int rc;
    if ((rc = inf_factory_get(env->factory, &vol_pvs_ref, &pvo, &a->pvs)) != KC_OK ||
        (rc = inf_factory_get(env->factory, &cref, &pvco, &a->pvcs)) != KC_OK)
        return rc;
    a->pvs_store = inf_store(a->pvs);
    a->pvcs_store = inf_store(a->pvcs);
    if ((rc = ctl_watch_map(a->claim_ctl, a->pvs, pv_to_volume, a)) != KC_OK ||
        (rc = ctl_watch_map(a->claim_ctl, a->pvcs, pvc_to_volume, a)) != KC_OK)
        return rc;
    return KC_OK;
}
