/*
 * dev_dra - Dynamic Resource Allocation for DevicePools with spec.publish:
 * ResourceSlice (API.md "Devices").
 *
 * Slices ("deviceslice" controller, keyed by pool): the pool's devices go
 * into ResourceSlices named provisio-<pool>-<i> (128 devices each, the API's
 * limit), driver provisio.dev, pool name = the DevicePool's, nodeName, the
 * device attributes that are valid DRA attribute names, owned by the
 * DevicePool (the garbage collector removes them with it). Every device
 * carries the taint provisio.dev/managed:NoSchedule, so kube-scheduler never
 * allocates one to a ResourceClaim on its own: only the operator allocates
 * them, to the ResourceClaims of DeviceClaims, and the Reservation lock
 * (one device, one DeviceClaim) is the only allocator. An unhealthy device
 * also carries provisio.dev/unhealthy:NoExecute, so kube-controller-manager
 * evicts the pods whose claims hold it.
 *
 * ResourceClaims ("deviceresourceclaim" controller, keyed by DeviceClaim):
 * a Ready DeviceClaim of such a pool gets a ResourceClaim of its name in its
 * namespace (owned by it, with the delete-protection finalizer that
 * kube-controller-manager removes once no pod uses it), whose
 * status.allocation the operator writes: exactly the claim's devices, with a
 * node selector for the claim's node. A pod that references it is placed by
 * kube-scheduler on that node and reserved in status.reservedFor. The
 * DeviceClaim's status.resourceClaimName names it.
 *
 * Deleting a DeviceClaim deletes its ResourceClaim first and releases the
 * devices only when the ResourceClaim is gone (dev_dra_release_gate): while
 * a pod still uses it the devices stay held, so no other claim gets a device
 * a running pod has.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dev_dra.h"
#include "dev_internal.h"
#include "inf_map.h"
#include "kc_error.h"
#include "pv_json.h"
#include "rec_util.h"

#define DRA_LABEL_POOL "provisio.dev/devicepool"
#define DRA_LABEL_CLAIM "provisio.dev/deviceclaim"
#define DRA_LABEL_MANAGED "app.kubernetes.io/managed-by=provisio"
#define DRA_ANNOT_DIGEST "provisio.dev/devices-digest"
#define DRA_FINALIZER "resource.kubernetes.io/delete-protection"
#define DRA_REQUEST "devices"

static const kc_ref slices_ref = {
    .group = "resource.k8s.io", .version = "v1", .resource = "resourceslices"};
static const kc_ref rclaims_ref = {
    .group = "resource.k8s.io", .version = "v1", .resource = "resourceclaims"};

struct dev_dra {
    kc_client *client;
    inf_informer *pools, *slices, *claims, *rclaims;
    store *pools_store, *slices_store, *claims_store, *rclaims_store;
    ctl *c_slice, *c_claim;
    /* Whether a pool publishes ResourceSlices, per pool name as of a
     * resourceVersion (publish_of): a claim reconcile asks it of the claim's
     * pool, and a compact store's read would parse the whole pool for it. */
    pthread_mutex_t publish_mu;
    inf_map publish;
};

/* publish's values. */
typedef struct publish_entry {
    char *rv;
    bool slices;
    char name[];
} publish_entry;

static void publish_entry_free(publish_entry *e)
{
    if (e)
        free(e->rv);
    free(e);
}

static const char *nz(const char *s)
{
    return s ? s : "";
}

char *dev_dra_slice_name(const char *pool, size_t i)
{
    char *s = NULL;
    return rec_msg(&s, "provisio-%s-%zu", pool, i) == KC_OK ? s : NULL;
}

bool dev_dra_attr_name_ok(const char *key)
{
    const char *name = strrchr(key, '/');
    name = name ? name + 1 : key;
    size_t n = strlen(name);
    if (n == 0 || n > 32 || (name - key) > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

static ctl_result api_error(const char *what, int rc, kc_error *err)
{
    ctl_result res = ctl_error(rc, "%s: %s", what, err->message ? err->message : kc_strerror(rc));
    kc_error_clear(err);
    return res;
}

/* ---- json helpers -------------------------------------------------------------------- */

/* A new array under key of o (attached), or NULL. */
static json_object *add_array(json_object *o, const char *key)
{
    json_object *a = o ? json_object_new_array() : NULL;
    return a && pv_json_add(o, key, a) ? a : NULL;
}

/* A new object appended to arr, or NULL. */
static json_object *push_obj(json_object *arr)
{
    json_object *o = arr ? json_object_new_object() : NULL;
    if (o && json_object_array_add(arr, o) != 0) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

static bool push_str(json_object *arr, const char *s)
{
    json_object *v = arr && s ? json_object_new_string(s) : NULL;
    if (v && json_object_array_add(arr, v) != 0) {
        json_object_put(v);
        return false;
    }
    return v != NULL;
}

static bool add_taint(json_object *taints, const char *key, const char *effect)
{
    json_object *t = push_obj(taints);
    return t && pv_json_add_str(t, "key", key) && pv_json_add_str(t, "effect", effect);
}

/* ---- slices ---------------------------------------------------------------------- */

/* The devices of part [from, to) of p as ResourceSlice devices. */
static json_object *slice_devices(const dev_pool *p, size_t from, size_t to)
{
    json_object *arr = json_object_new_array_ext((int)(to - from));
    bool ok = arr != NULL;
    for (size_t i = from; ok && i < to; i++) {
        const dev_device *d = &p->devs[i];
        json_object *o = push_obj(arr);
        ok = o && pv_json_add_str(o, "name", d->id);
        json_object *attrs = ok && d->n_attrs ? pv_json_add_child(o, "attributes") : NULL;
        for (size_t k = 0; ok && attrs && k < d->n_attrs; k++) {
            if (!dev_dra_attr_name_ok(d->attrs[k].key))
                continue;
            json_object *v = pv_json_add_child(attrs, d->attrs[k].key);
            ok = v && pv_json_add_str(v, "string", d->attrs[k].value);
        }
        json_object *taints = ok ? add_array(o, "taints") : NULL;
        ok = taints && add_taint(taints, DEV_DRA_TAINT_MANAGED, "NoSchedule") &&
             (d->healthy || add_taint(taints, DEV_DRA_TAINT_UNHEALTHY, "NoExecute"));
    }
    if (!ok) {
        json_object_put(arr);
        return NULL;
    }
    return arr;
}

/* A short digest of devices (what the slice should hold), for comparing with
 * what a slice holds without the fields the server adds (taints' timeAdded). */
static char *digest_of(json_object *devices)
{
    const char *s = json_object_to_json_string_ext(devices, JSON_C_TO_STRING_PLAIN);
    char *out = NULL;
    return rec_msg(&out, "%016llx", (unsigned long long)inf_map_hash(s)) == KC_OK ? out : NULL;
}

static int64_t obj_i64(json_object *o, const char *path)
{
    json_object *v = rec_obj_at(o, path);
    return v && json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : 0;
}

/* Create or update slice i of count for pool. */
static ctl_result put_slice(dev_dra *dra, json_object *pool_obj, const dev_pool *p, size_t i,
                            size_t count, int64_t generation)
{
    size_t from = i * DEV_DRA_SLICE_MAX;
    size_t to = from + DEV_DRA_SLICE_MAX < p->n ? from + DEV_DRA_SLICE_MAX : p->n;
    char *name = dev_dra_slice_name(p->name, i);
    json_object *devs = name ? slice_devices(p, from, to) : NULL;
    char *digest = devs ? digest_of(devs) : NULL;
    json_object *cached = NULL;
    if (name)
        (void)store_get(dra->slices_store, name, &cached);
    ctl_result res = ctl_done();
    if (!digest) {
        res = ctl_error(KC_ERR_NOMEM, "out of memory");
        goto out;
    }
    json_object *body = json_object_new_object();
    json_object *md = body ? pv_json_add_child(body, "metadata") : NULL;
    json_object *labels = md ? pv_json_add_child(md, "labels") : NULL;
    json_object *annots = md ? pv_json_add_child(md, "annotations") : NULL;
    json_object *spec = body ? pv_json_add_child(body, "spec") : NULL;
    json_object *pool = spec ? pv_json_add_child(spec, "pool") : NULL;
    json_object *owner = NULL;
    bool ok = pool && pv_json_add_str(body, "apiVersion", "resource.k8s.io/v1") &&
              pv_json_add_str(body, "kind", "ResourceSlice") && pv_json_add_str(md, "name", name) &&
              pv_json_add_str(labels, "app.kubernetes.io/managed-by", "provisio") &&
              pv_json_add_str(labels, DRA_LABEL_POOL, p->name) &&
              pv_json_add_str(annots, DRA_ANNOT_DIGEST, digest) &&
              pv_json_add_str(spec, "driver", DEV_DRA_DRIVER) &&
              pv_json_add_str(spec, "nodeName", p->node) &&
              pv_json_add_str(pool, "name", p->name) &&
              pv_json_add_i64(pool, "generation", generation) &&
              pv_json_add_i64(pool, "resourceSliceCount", (int64_t)count) &&
              pv_json_add(spec, "devices", json_object_get(devs)) &&
              rec_owner_ref_of(pool_obj, "provisio.dev/v1alpha1", "DevicePool", &owner) == KC_OK &&
              rec_set_owner_ref(body, owner) == KC_OK;
    json_object_put(owner);
    if (ok && cached)
        ok =
            pv_json_add_str(md, "resourceVersion", rec_obj_str(cached, "metadata.resourceVersion"));
    if (!ok) {
        json_object_put(body);
        res = ctl_error(KC_ERR_NOMEM, "out of memory");
        goto out;
    }
    kc_ref ref = slices_ref;
    kc_error err = KC_ERROR_INIT;
    int rc;
    if (cached) {
        ref.name = name;
        rc = kc_update(dra->client, &ref, body, NULL, NULL, &err);
    } else {
        rc = kc_create(dra->client, &ref, body, NULL, NULL, &err);
    }
    json_object_put(body);
    if (rc == KC_ERR_CONFLICT || rc == KC_ERR_ALREADY_EXISTS)
        res = ctl_requeue();
    else if (rc != KC_OK)
        res = api_error("writing a ResourceSlice", rc, &err);
    kc_error_clear(&err);
out:
    store_obj_put(cached);
    json_object_put(devs);
    free(digest);
    free(name);
    return res;
}

static ctl_result delete_slice(dev_dra *dra, const char *name)
{
    kc_ref ref = slices_ref;
    ref.name = name;
    kc_error err = KC_ERROR_INIT;
    int rc = kc_delete(dra->client, &ref, NULL, NULL, &err);
    if (rc == KC_OK || rc == KC_ERR_NOT_FOUND) {
        kc_error_clear(&err);
        return ctl_done();
    }
    return api_error("deleting a ResourceSlice", rc, &err);
}

/* Delete the pool's slices of index `from` and above (those in the cache). */
static ctl_result delete_slices_from(dev_dra *dra, const char *pool, size_t from)
{
    json_object **objs = NULL;
    size_t n = 0;
    if (store_by_index(dra->slices_store, DRA_LABEL_POOL, pool, &objs, &n) != KC_OK)
        return ctl_error(KC_ERR_NOMEM, "out of memory");
    char *prefix = dev_dra_slice_name(pool, 0);
    size_t plen = prefix ? strlen(prefix) - 1 : 0; /* "provisio-<pool>-" */
    ctl_result res = prefix ? ctl_done() : ctl_error(KC_ERR_NOMEM, "out of memory");
    for (size_t k = 0; k < n && res.outcome == CTL_DONE; k++) {
        const char *name = rec_obj_str(objs[k], "metadata.name");
        char *end = NULL;
        unsigned long i = name && !strncmp(name, prefix, plen) ? strtoul(name + plen, &end, 10) : 0;
        if (name && (from == 0 || (end && *end == '\0' && i >= from)))
            res = delete_slice(dra, name);
    }
    free(prefix);
    store_objs_free(objs, n);
    return res;
}

/* Whether slice part i of p is in the cache as it should be at generation
 * gen of count parts. */
static bool slice_current(dev_dra *dra, const dev_pool *p, size_t i, size_t count, int64_t gen)
{
    char *nm = dev_dra_slice_name(p->name, i);
    json_object *c = NULL;
    bool same = nm && store_get(dra->slices_store, nm, &c) == KC_OK &&
                obj_i64(c, "spec.pool.generation") == gen &&
                obj_i64(c, "spec.pool.resourceSliceCount") == (int64_t)count &&
                !strcmp(nz(rec_obj_str(c, "spec.nodeName")), p->node);
    if (same) {
        size_t from = i * DEV_DRA_SLICE_MAX;
        size_t to = from + DEV_DRA_SLICE_MAX < p->n ? from + DEV_DRA_SLICE_MAX : p->n;
        json_object *devs = slice_devices(p, from, to);
        char *dg = devs ? digest_of(devs) : NULL;
        json_object *ann = rec_obj_at(c, "metadata.annotations");
        json_object *dv = NULL;
        same = dg && ann && json_object_object_get_ex(ann, DRA_ANNOT_DIGEST, &dv) &&
               !strcmp(nz(json_object_get_string(dv)), dg);
        free(dg);
        json_object_put(devs);
    }
    store_obj_put(c);
    free(nm);
    return same;
}

static ctl_result slice_reconcile(const ctl_ctx *ctx, const char *namespace_, const char *name,
                                  void *user)
{
    (void)ctx;
    (void)namespace_;
    dev_dra *dra = user;
    if (!inf_has_synced(dra->pools) || !inf_has_synced(dra->slices))
        return ctl_requeue_after(0.1);
    json_object *pool_obj = NULL;
    if (store_get(dra->pools_store, name, &pool_obj) != KC_OK)
        return delete_slices_from(dra, name, 0);
    dev_pool *p = NULL;
    char *problem = NULL;
    int rc = dev_pool_from_obj(pool_obj, time(NULL), &p, &problem);
    free(problem);
    ctl_result res = ctl_done();
    if (rc != KC_OK) {
        res = ctl_error(rc, "out of memory");
    } else if (!p || p->publish != DEV_PUBLISH_RESOURCE_SLICE) {
        res = delete_slices_from(dra, name, 0);
    } else {
        size_t count = p->n ? (p->n + DEV_DRA_SLICE_MAX - 1) / DEV_DRA_SLICE_MAX : 1;
        /* The slices' pool generation goes up by one whenever what they hold
         * changes, so kube-scheduler uses only the newest. */
        char *first = dev_dra_slice_name(name, 0);
        json_object *cached = NULL;
        if (first)
            (void)store_get(dra->slices_store, first, &cached);
        int64_t gen = cached ? obj_i64(cached, "spec.pool.generation") : 0;
        store_obj_put(cached);
        free(first);
        bool same = gen > 0;
        for (size_t i = 0; same && i < count; i++)
            same = slice_current(dra, p, i, count, gen);
        for (size_t i = 0; !same && i < count && res.outcome == CTL_DONE; i++)
            res = put_slice(dra, pool_obj, p, i, count, gen + 1);
        if (res.outcome == CTL_DONE)
            res = delete_slices_from(dra, name, count);
    }
    dev_pool_free(p);
    store_obj_put(pool_obj);
    return res;
}

/* ---- ResourceClaims ----------------------------------------------------------------- */

/* The allocation of devices (an array of ids) of pool on node. */
static json_object *allocation_new(json_object *devices, const char *pool, const char *node)
{
    json_object *a = json_object_new_object();
    char ts[REC_TIME_STRLEN];
    bool ok = a && pv_json_add_str(a, "allocationTimestamp", rec_format_time(time(NULL), ts));
    json_object *results = ok ? add_array(pv_json_add_child(a, "devices"), "results") : NULL;
    ok = results != NULL;
    size_t n = json_object_array_length(devices);
    for (size_t i = 0; ok && i < n; i++) {
        json_object *r = push_obj(results);
        ok = r && pv_json_add_str(r, "request", DRA_REQUEST) &&
             pv_json_add_str(r, "driver", DEV_DRA_DRIVER) && pv_json_add_str(r, "pool", pool) &&
             pv_json_add_str(r, "device",
                             json_object_get_string(json_object_array_get_idx(devices, i)));
    }
    json_object *terms =
        ok ? add_array(pv_json_add_child(a, "nodeSelector"), "nodeSelectorTerms") : NULL;
    json_object *fields = add_array(push_obj(terms), "matchFields");
    json_object *req = push_obj(fields);
    ok = req && pv_json_add_str(req, "key", "metadata.name") &&
         pv_json_add_str(req, "operator", "In") && push_str(add_array(req, "values"), node);
    if (!ok) {
        json_object_put(a);
        return NULL;
    }
    return a;
}

/* The devices an allocation lists, sorted, comma-joined (malloc'd). */
static bool allocation_is(json_object *allocation, json_object *devices)
{
    json_object *res = rec_obj_at(allocation, "devices.results");
    size_t n = json_object_array_length(devices);
    if (!res || !json_object_is_type(res, json_type_array) || json_object_array_length(res) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(nz(rec_obj_str(json_object_array_get_idx(res, i), "device")),
                   nz(json_object_get_string(json_object_array_get_idx(devices, i)))))
            return false;
    return true;
}

/* A new ResourceClaim for the DeviceClaim claim (count devices). */
static json_object *rclaim_new(json_object *claim, int64_t count)
{
    json_object *body = json_object_new_object();
    json_object *md = body ? pv_json_add_child(body, "metadata") : NULL;
    json_object *labels = md ? pv_json_add_child(md, "labels") : NULL;
    json_object *req = push_obj(
        add_array(pv_json_add_child(pv_json_add_child(body, "spec"), "devices"), "requests"));
    json_object *exactly = req ? pv_json_add_child(req, "exactly") : NULL;
    json_object *owner = NULL;
    bool ok = exactly && labels && pv_json_add_str(body, "apiVersion", "resource.k8s.io/v1") &&
              pv_json_add_str(body, "kind", "ResourceClaim") &&
              pv_json_add_str(md, "name", rec_obj_str(claim, "metadata.name")) &&
              pv_json_add_str(md, "namespace", rec_obj_str(claim, "metadata.namespace")) &&
              pv_json_add_str(labels, "app.kubernetes.io/managed-by", "provisio") &&
              pv_json_add_str(labels, DRA_LABEL_CLAIM, rec_obj_str(claim, "metadata.name")) &&
              push_str(add_array(md, "finalizers"), DRA_FINALIZER) &&
              pv_json_add_str(req, "name", DRA_REQUEST) &&
              pv_json_add_str(exactly, "deviceClassName", DEV_DRA_CLASS) &&
              pv_json_add_str(exactly, "allocationMode", "ExactCount") &&
              pv_json_add_i64(exactly, "count", count) &&
              rec_owner_ref_of(claim, "provisio.dev/v1alpha1", "DeviceClaim", &owner) == KC_OK &&
              rec_set_owner_ref(body, owner) == KC_OK;
    json_object_put(owner);
    if (!ok) {
        json_object_put(body);
        return NULL;
    }
    return body;
}

/* Write allocation (consumed; NULL clears it) into rclaim (the server's copy). */
static int write_allocation(dev_dra *dra, json_object *rclaim, json_object *allocation,
                            kc_error *err)
{
    json_object *body = NULL;
    if (json_object_deep_copy(rclaim, &body, NULL) != 0)
        return KC_ERR_NOMEM;
    json_object *st = json_object_new_object();
    if (!st || !pv_json_add(body, "status", st) ||
        (allocation && !pv_json_add(st, "allocation", allocation))) {
        json_object_put(body);
        return KC_ERR_NOMEM;
    }
    json_object *reserved = rec_obj_at(rclaim, "status.reservedFor");
    if (reserved && !rec_put_copy(st, "reservedFor", reserved)) {
        json_object_put(body);
        return KC_ERR_NOMEM;
    }
    kc_ref ref = rclaims_ref;
    ref.namespace_ = rec_obj_str(rclaim, "metadata.namespace");
    ref.name = rec_obj_str(rclaim, "metadata.name");
    ref.subresource = "status";
    int rc = kc_update(dra->client, &ref, body, NULL, NULL, err);
    json_object_put(body);
    return rc;
}

static ctl_result delete_rclaim(dev_dra *dra, json_object *rclaim)
{
    kc_ref ref = rclaims_ref;
    ref.namespace_ = rec_obj_str(rclaim, "metadata.namespace");
    ref.name = rec_obj_str(rclaim, "metadata.name");
    kc_delete_opts o = {.precondition_uid = rec_obj_str(rclaim, "metadata.uid")};
    kc_error err = KC_ERROR_INIT;
    int rc = kc_delete(dra->client, &ref, &o, NULL, &err);
    if (rc == KC_OK || rc == KC_ERR_NOT_FOUND || rc == KC_ERR_CONFLICT) {
        kc_error_clear(&err);
        return ctl_done();
    }
    return api_error("deleting a ResourceClaim", rc, &err);
}

/* The DeviceClaim's status.resourceClaimName = name (merge patch). */
static ctl_result name_in_status(dev_dra *dra, json_object *claim, const char *name)
{
    if (!strcmp(nz(rec_obj_str(claim, "status.resourceClaimName")), name))
        return ctl_done();
    json_object *patch = json_object_new_object();
    json_object *st = patch ? pv_json_add_child(patch, "status") : NULL;
    if (!st || !pv_json_add_str(st, "resourceClaimName", name)) {
        json_object_put(patch);
        return ctl_error(KC_ERR_NOMEM, "out of memory");
    }
    kc_ref ref = dev_domain_def.claims_ref;
    ref.namespace_ = rec_obj_str(claim, "metadata.namespace");
    ref.name = rec_obj_str(claim, "metadata.name");
    ref.subresource = "status";
    kc_error err = KC_ERROR_INIT;
    int rc = kc_patch(dra->client, &ref, KC_PATCH_MERGE, patch, NULL, NULL, &err);
    json_object_put(patch);
    if (rc == KC_OK || rc == KC_ERR_NOT_FOUND) {
        kc_error_clear(&err);
        return ctl_done();
    }
    return api_error("writing the DeviceClaim's resourceClaimName", rc, &err);
}

/* The cached pool's spec.publish is ResourceSlice; the pool is read (parsed)
 * only when its resourceVersion is not the one last read. false when the
 * pool is not cached (or out of memory: the same answer as no pool). */
static bool publish_of(dev_dra *dra, const char *pool)
{
    char *rv = NULL;
    if (store_rv(dra->pools_store, pool, &rv) != KC_OK) {
        pthread_mutex_lock(&dra->publish_mu);
        publish_entry *gone = inf_map_remove(&dra->publish, pool); /* a deleted pool's */
        pthread_mutex_unlock(&dra->publish_mu);
        publish_entry_free(gone);
        return false;
    }
    pthread_mutex_lock(&dra->publish_mu);
    publish_entry *e = inf_map_get(&dra->publish, pool);
    bool known = e && !strcmp(e->rv, rv), slices = known && e->slices;
    pthread_mutex_unlock(&dra->publish_mu);
    if (known) {
        free(rv);
        return slices;
    }
    json_object *pool_obj = NULL;
    if (store_get(dra->pools_store, pool, &pool_obj) != KC_OK) {
        free(rv);
        return false;
    }
    /* The object read may be newer than rv: remember its own version. */
    const char *pub = rec_obj_str(pool_obj, "spec.publish");
    const char *read_rv = rec_obj_str(pool_obj, "metadata.resourceVersion");
    slices = pub && !strcmp(pub, "ResourceSlice");
    size_t len = strlen(pool) + 1;
    publish_entry *n = malloc(sizeof *n + len);
    char *n_rv = read_rv ? strdup(read_rv) : NULL;
    if (n && n_rv) {
        n->rv = n_rv;
        n->slices = slices;
        memcpy(n->name, pool, len);
        pthread_mutex_lock(&dra->publish_mu);
        publish_entry *had = inf_map_remove(&dra->publish, pool);
        if (inf_map_put(&dra->publish, n->name, n) == KC_OK)
            n = NULL;
        pthread_mutex_unlock(&dra->publish_mu);
        publish_entry_free(had);
    }
    if (n)
        free(n_rv);
    free(n);
    store_obj_put(pool_obj);
    free(rv);
    return slices;
}

/* Whether the claim is Ready with devices of a ResourceSlice pool. */
static bool claim_published(dev_dra *dra, json_object *claim)
{
    if (!rec_condition_is_true(rec_obj_at(claim, "status"), REC_COND_READY))
        return false;
    const char *pool = rec_obj_str(claim, "status.pool");
    return pool && publish_of(dra, pool);
}

/*
 * The filter of the DeviceClaim events that reach rclaim_reconcile: a claim
 * published through a ResourceSlice pool, or one whose ResourceClaim is
 * cached (it may have to go). Any other event would reconcile to nothing
 * (most DeviceClaims, those of NodeCapacity pools, and the events before a
 * claim is Ready), after reading the claim from the compact cache. A
 * ResourceClaim the cache has not shown yet enqueues its DeviceClaim when it
 * does (enqueue_claim_of_rclaim), and a pool's change of spec.publish
 * enqueues the pool's claims (pool_on_update).
 */
static bool claim_relevant(json_object *claim, void *user)
{
    dev_dra *dra = user;
    if (claim_published(dra, claim))
        return true;
    char *key = NULL, *rv = NULL;
    if (store_key_of(claim, &key) != KC_OK)
        return true; /* out of memory: let the reconcile decide */
    int rc = store_rv(dra->rclaims_store, key, &rv);
    free(key);
    free(rv);
    return rc != KC_ERR_NOT_FOUND;
}

static ctl_result rclaim_reconcile(const ctl_ctx *ctx, const char *namespace_, const char *name,
                                   void *user)
{
    (void)ctx;
    dev_dra *dra = user;
    if (!inf_has_synced(dra->claims) || !inf_has_synced(dra->rclaims) ||
        !inf_has_synced(dra->pools))
        return ctl_requeue_after(0.1);
    char *key = NULL;
    if (rec_msg(&key, "%s/%s", namespace_, name) != KC_OK)
        return ctl_error(KC_ERR_NOMEM, "out of memory");
    json_object *claim = NULL, *rclaim = NULL;
    (void)store_get(dra->claims_store, key, &claim);
    (void)store_get(dra->rclaims_store, key, &rclaim);
    free(key);
    ctl_result res = ctl_done();
    const char *uid = rec_obj_str(claim, "metadata.uid");
    bool ours = rclaim && uid && rec_is_owned_by(rclaim, uid);
    if (!claim || rec_obj_is_deleting(claim)) {
        /* gone: the garbage collector; deleting: dev_dra_release_gate */
    } else if (!claim_published(dra, claim)) {
        if (ours && !rec_obj_is_deleting(rclaim))
            res = delete_rclaim(dra, rclaim);
    } else if (rclaim && !ours) {
        res = ctl_error(KC_ERR_CONFLICT,
                        "ResourceClaim %s/%s exists and is not this DeviceClaim's: leaving it",
                        namespace_, name);
    } else if (rclaim && rec_obj_is_deleting(rclaim)) {
        res = ctl_requeue_after(1.0); /* a new one once the old is gone */
    } else {
        json_object *devices = rec_obj_at(claim, "status.devices");
        const char *pool = rec_obj_str(claim, "status.pool");
        const char *node = rec_obj_str(claim, "status.nodeName");
        json_object *created = NULL;
        kc_error err = KC_ERROR_INIT;
        int rc = KC_OK;
        if (!devices || !json_object_is_type(devices, json_type_array) || !pool || !node) {
            res = ctl_done();
            goto out;
        }
        if (!rclaim) {
            json_object *body = rclaim_new(claim, (int64_t)json_object_array_length(devices));
            kc_ref ref = rclaims_ref;
            ref.namespace_ = namespace_;
            rc = body ? kc_create(dra->client, &ref, body, NULL, &created, &err) : KC_ERR_NOMEM;
            json_object_put(body);
            if (rc == KC_ERR_ALREADY_EXISTS) {
                kc_error_clear(&err);
                res = ctl_requeue();
                goto out;
            }
            if (rc != KC_OK) {
                res = api_error("creating the ResourceClaim", rc, &err);
                goto out;
            }
        }
        json_object *cur = created ? created : rclaim;
        json_object *alloc = rec_obj_at(cur, "status.allocation");
        json_object *reserved = rec_obj_at(cur, "status.reservedFor");
        bool in_use = reserved && json_object_is_type(reserved, json_type_array) &&
                      json_object_array_length(reserved) > 0;
        if (!alloc) {
            rc = write_allocation(dra, cur, allocation_new(devices, pool, node), &err);
        } else if (!allocation_is(alloc, devices) && !in_use) {
            /* devices replaced: an allocation cannot change, only go and come back */
            rc = write_allocation(dra, cur, NULL, &err);
            if (rc == KC_OK)
                res = ctl_requeue();
        }
        json_object_put(created);
        if (rc == KC_ERR_CONFLICT) {
            kc_error_clear(&err);
            res = ctl_requeue();
        } else if (rc != KC_OK) {
            res = api_error("allocating the ResourceClaim", rc, &err);
        } else if (res.outcome == CTL_DONE) {
            res = name_in_status(dra, claim, name);
        }
    }
out:
    store_obj_put(claim);
    store_obj_put(rclaim);
    return res;
}

ctl_result dev_dra_release_gate(dev_dra *dra, json_object *claim_obj)
{
    if (!dra)
        return ctl_done();
    const char *ns = rec_obj_str(claim_obj, "metadata.namespace");
    const char *name = rec_obj_str(claim_obj, "metadata.name");
    const char *uid = rec_obj_str(claim_obj, "metadata.uid");
    if (!ns || !name || !uid)
        return ctl_done();
    char *key = NULL;
    if (rec_msg(&key, "%s/%s", ns, name) != KC_OK)
        return ctl_error(KC_ERR_NOMEM, "out of memory");
    json_object *rclaim = NULL;
    bool cached = store_get(dra->rclaims_store, key, &rclaim) == KC_OK;
    free(key);
    ctl_result res = ctl_done();
    if (cached && rec_is_owned_by(rclaim, uid)) {
        if (!rec_obj_is_deleting(rclaim))
            res = delete_rclaim(dra, rclaim);
        if (res.outcome == CTL_DONE)
            res = ctl_requeue_after(0.5); /* until kube-controller-manager lets it go */
    } else if (!cached && rec_obj_str(claim_obj, "status.resourceClaimName")) {
        /* The cache may lag: only the API server can say it is gone. */
        kc_ref ref = rclaims_ref;
        ref.namespace_ = ns;
        ref.name = name;
        json_object *got = NULL;
        kc_error err = KC_ERROR_INIT;
        int rc = kc_get(dra->client, &ref, &got, &err);
        if (rc == KC_OK && rec_is_owned_by(got, uid))
            res = ctl_requeue_after(0.5);
        else if (rc != KC_OK && rc != KC_ERR_NOT_FOUND)
            res = api_error("reading the ResourceClaim", rc, &err);
        kc_error_clear(&err);
        json_object_put(got);
    }
    store_obj_put(rclaim);
    return res;
}

/* ---- handlers and setup ------------------------------------------------------------------ */

static void enqueue_pool_of_slice(json_object *obj, void *user)
{
    dev_dra *dra = user;
    json_object *labels = rec_obj_at(obj, "metadata.labels");
    json_object *v = NULL;
    if (labels && json_object_object_get_ex(labels, DRA_LABEL_POOL, &v))
        (void)ctl_enqueue(dra->c_slice, NULL, json_object_get_string(v));
}

static void slice_on_update(json_object *o, json_object *n, void *user)
{
    (void)o;
    enqueue_pool_of_slice(n, user);
}

static void enqueue_claim_of_rclaim(json_object *obj, void *user)
{
    dev_dra *dra = user;
    (void)ctl_enqueue(dra->c_claim, rec_obj_str(obj, "metadata.namespace"),
                      rec_obj_str(obj, "metadata.name"));
}

static void rclaim_on_update(json_object *o, json_object *n, void *user)
{
    (void)o;
    enqueue_claim_of_rclaim(n, user);
}

/* A pool's publish mode or devices changed: its claims may need their
 * ResourceClaims made or removed. */
static void pool_on_update(json_object *o, json_object *n, void *user)
{
    dev_dra *dra = user;
    if (strcmp(nz(rec_obj_str(o, "spec.publish")), nz(rec_obj_str(n, "spec.publish"))) == 0)
        return;
    json_object **objs = NULL;
    size_t cnt = 0;
    if (store_list(dra->claims_store, &objs, &cnt) != KC_OK)
        return;
    const char *pool = rec_obj_str(n, "metadata.name");
    for (size_t i = 0; i < cnt; i++)
        if (pool && !strcmp(nz(rec_obj_str(objs[i], "status.pool")), pool))
            enqueue_claim_of_rclaim(objs[i], dra);
    store_objs_free(objs, cnt);
}

static int index_slice_pool(json_object *obj, store_values *out, void *user)
{
    (void)user;
    json_object *labels = rec_obj_at(obj, "metadata.labels");
    json_object *v = NULL;
    if (!labels || !json_object_object_get_ex(labels, DRA_LABEL_POOL, &v))
        return KC_OK;
    return store_values_add(out, json_object_get_string(v));
}

static void dra_free(void *arg)
{
    dev_dra *dra = arg;
    size_t pos = 0;
    void *v = NULL;
    while (inf_map_next(&dra->publish, &pos, NULL, &v))
        publish_entry_free(v);
    inf_map_close(&dra->publish);
    pthread_mutex_destroy(&dra->publish_mu);
    free(dra);
}

int dev_dra_setup(const rec_env *env, const kc_ref *pools_ref, const kc_ref *claims_ref,
                  dev_dra **out)
{
    *out = NULL;
    dev_dra *dra = calloc(1, sizeof *dra);
    if (!dra)
        return KC_ERR_NOMEM;
    pthread_mutex_init(&dra->publish_mu, NULL);
    inf_map_init(&dra->publish);
    int rc = env->add_cleanup(env, dra_free, dra);
    if (rc != KC_OK) {
        dra_free(dra);
        return rc;
    }
    dra->client = env->client;
    kc_ref cref = *claims_ref;
    cref.namespace_ = env->watch_namespace;
    /* as the device domain caches them (dev_domain.c: pools_compact) */
    inf_opts popts = {.store_mode = INF_STORE_COMPACT};
    inf_opts copts = {.store_mode = INF_STORE_COMPACT};
    inf_opts sopts = {.label_selector = DRA_LABEL_MANAGED, .store_mode = INF_STORE_SHARED};
    inf_opts ropts = {.label_selector = DRA_LABEL_CLAIM, .store_mode = INF_STORE_COMPACT};
    kc_ref rref = rclaims_ref;
    rref.namespace_ = env->watch_namespace;
    if ((rc = inf_factory_get(env->factory, pools_ref, &popts, &dra->pools)) != KC_OK ||
        (rc = inf_factory_get(env->factory, &cref, &copts, &dra->claims)) != KC_OK ||
        (rc = inf_factory_get(env->factory, &slices_ref, &sopts, &dra->slices)) != KC_OK ||
        (rc = inf_factory_get(env->factory, &rref, &ropts, &dra->rclaims)) != KC_OK)
        return rc;
    dra->pools_store = inf_store(dra->pools);
    dra->claims_store = inf_store(dra->claims);
    dra->slices_store = inf_store(dra->slices);
    dra->rclaims_store = inf_store(dra->rclaims);
    if ((rc = store_add_index(dra->slices_store, DRA_LABEL_POOL, index_slice_pool, NULL)) != KC_OK)
        return rc;
    if ((rc = rec_env_new_controller(env, "deviceslice", slice_reconcile, dra, &dra->c_slice)) !=
            KC_OK ||
        (rc = ctl_watch_for(dra->c_slice, dra->pools)) != KC_OK ||
        (rc = rec_env_new_controller(env, "deviceresourceclaim", rclaim_reconcile, dra,
                                     &dra->c_claim)) != KC_OK ||
        (rc = ctl_watch_for_if(dra->c_claim, dra->claims, claim_relevant, dra)) != KC_OK)
        return rc;
    inf_handler_fns hs = {.on_add = enqueue_pool_of_slice,
                          .on_update = slice_on_update,
                          .on_delete = enqueue_pool_of_slice,
                          .user = dra,
                          .no_resync = true};
    inf_handler_fns hr = {.on_add = enqueue_claim_of_rclaim,
                          .on_update = rclaim_on_update,
                          .on_delete = enqueue_claim_of_rclaim,
                          .user = dra,
                          .no_resync = true};
    inf_handler_fns hp = {.on_update = pool_on_update, .user = dra, .no_resync = true};
    if ((rc = inf_add_handler(dra->slices, &hs, NULL)) != KC_OK ||
        (rc = inf_add_handler(dra->rclaims, &hr, NULL)) != KC_OK ||
        (rc = inf_add_handler(dra->pools, &hp, NULL)) != KC_OK)
        return rc;
    *out = dra;
    return KC_OK;
}
