/*
 * rec_reserve - the allocation lock (DESIGN.md "Allocation: the API server is
 * the only lock").
 *
 * A slot (an address, a device, a volume's share of a pool) is held by
 * exactly the claim named in the Reservation "<kind>.<pool>.<slot>". The name
 * is a pure function of the slot, and etcd keeps one object per name, so
 * "create" is an atomic test-and-set: of any number of creators (workers,
 * replicas, a retry of ourselves) exactly one gets 201, the others 409
 * AlreadyExists. The CRD checks the name against the spec on the server, so
 * no one can hold a slot under another name, and makes the spec immutable, so
 * a lock is never re-pointed: it only comes and goes.
 *
 * Why `kill -9` at any moment (and any retry, from any replica) is safe:
 *
 *  - acquire makes one write, the POST. Killed before it reaches the
 *    server: nothing happened. Killed after: the Reservation names our
 *    claim's uid, and the retry (by us or by another replica that took over)
 *    gets 409, reads the object, sees the same uid and treats the slot as
 *    acquired. A 409 from a slot someone else holds is REC_TAKEN; nobody is
 *    ever told "acquired" for a slot whose Reservation names another uid.
 *    Identity is the claim's uid, not its name, so a claim deleted and
 *    recreated under the same name is a different holder.
 *  - release makes one write, a DELETE with preconditions on the
 *    Reservation's own uid and resourceVersion, decided from a fresh GET that
 *    showed our claim as the holder. If the slot was freed and re-acquired by
 *    another claim between the GET and the DELETE, the new Reservation has
 *    another uid and the DELETE fails its precondition instead of freeing a
 *    live allocation. Killed before the DELETE: the retry does it. Killed
 *    after: the retry finds NotFound, which is success.
 *  - the orphan sweep frees a Reservation only after reading its claim from
 *    the API server (a quorum read, not the cache): NotFound or another uid
 *    means the holder is gone for good, because uids are never reused and a
 *    claim object does not come back. A claim the cache has not seen yet
 *    (created a moment ago) is found by the GET and kept.
 *  - no function keeps state between calls; everything it needs is re-read
 *    from the server, so a replica that never saw the earlier steps can finish
 *    them.
 *
 * What this module does not do: decide which slot to try (the domain
 * reconcilers do, deterministically from the claim uid so a retry tries the
 * same slot first) and adopt Reservations a claim already holds (reconcilers
 * look them up by spec.claim.uid in the cache before acquiring anything new,
 * and free extras a crash between acquire and status write may have left).
 */
#include "rec_reserve.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rec_util.h"
#include "pv_json.h"

/* How often acquire/release go round when the slot changes hands under them. */
#define REC_RESERVE_ATTEMPTS 3

const kc_ref rec_reservations_ref = {
    .group = "provisio.dev",
    .version = "v1alpha1",
    .resource = "reservations",
};

/* ---- parsing -------------------------------------------------------------- */

void rec_reservation_clear(rec_reservation *r)
{
    if (!r)
        return;
    free(r->name);
    free(r->uid);
    free(r->resource_version);
    free(r->pool_kind);
    free(r->pool_name);
    free(r->slot);
    free(r->claim_kind);
    free(r->claim_namespace);
    free(r->claim_name);
    free(r->claim_uid);
    free(r->created);
    free(r->admitted_until);
    memset(r, 0, sizeof(*r));
}

/* Copy the string at path (NULL stays NULL). false on allocation failure. */
static bool dup_at(json_object *obj, const char *path, char **out)
{
    const char *s = rec_obj_str(obj, path);
    *out = s ? strdup(s) : NULL;
    return !s || *out;
}

int rec_reservation_parse(json_object *obj, rec_reservation *out)
{
    if (!out)
        return KC_ERR_INVALID_ARG;
    memset(out, 0, sizeof(*out));
    if (!obj)
        return KC_ERR_INVALID_ARG;
    bool ok = dup_at(obj, "metadata.name", &out->name) && dup_at(obj, "metadata.uid", &out->uid) &&
              dup_at(obj, "metadata.resourceVersion", &out->resource_version) &&
              dup_at(obj, "spec.pool.kind", &out->pool_kind) &&
              dup_at(obj, "spec.pool.name", &out->pool_name) &&
              dup_at(obj, "spec.slot", &out->slot) &&
              dup_at(obj, "spec.claim.kind", &out->claim_kind) &&
              dup_at(obj, "spec.claim.namespace", &out->claim_namespace) &&
              dup_at(obj, "spec.claim.name", &out->claim_name) &&
              dup_at(obj, "spec.claim.uid", &out->claim_uid) &&
              dup_at(obj, "metadata.creationTimestamp", &out->created) &&
              dup_at(obj, "spec.admittedUntil", &out->admitted_until);
    if (!ok) {
        rec_reservation_clear(out);
        return KC_ERR_NOMEM;
    }
    json_object *b = rec_obj_at(obj, "spec.bytes");
    if (b && json_object_is_type(b, json_type_int))
        out->bytes = json_object_get_int64(b);
    if (!out->name || !*out->name || !out->slot || !out->claim_uid || !*out->claim_uid) {
        rec_reservation_clear(out);
        return KC_ERR_DECODE;
    }
    return KC_OK;
}

/* ---- names ---------------------------------------------------------------- */

/* ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ with dots allowed inside when `dots`; len <= max. */
static bool valid_label(const char *s, size_t max, bool dots)
{
    size_t len = s ? strlen(s) : 0;
    if (len == 0 || len > max)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
        bool inner = ch == '-' || (dots && ch == '.');
        if (!alnum && !(inner && i > 0 && i + 1 < len))
            return false;
    }
    return true;
}

static bool is_pool_kind(const char *k)
{
    return k && (!strcmp(k, REC_POOL_KIND_IP) || !strcmp(k, REC_POOL_KIND_DEVICE) ||
                 !strcmp(k, REC_POOL_KIND_STORAGE));
}

int rec_reserve_name(const char *pool_kind, const char *pool_name, const char *slot, char **out,
                     char **canonical_slot)
{
    if (!out)
        return KC_ERR_INVALID_ARG;
    *out = NULL;
    if (canonical_slot)
        *canonical_slot = NULL;
    if (!is_pool_kind(pool_kind) || !valid_label(pool_name, 63, false) || !slot)
        return KC_ERR_INVALID_ARG;

    /* An IPPool slot is an address: the network domain names those (ip/). */
    if (!strcmp(pool_kind, REC_POOL_KIND_IP) || !valid_label(slot, 63, true))
        return KC_ERR_INVALID_ARG;
    char *name = NULL;
    char *canon = strdup(slot);
    /* The kinds are ASCII CamelCase: lower-casing is byte-wise. */
    const char *prefix = !strcmp(pool_kind, REC_POOL_KIND_DEVICE) ? "devicepool" : "storagepool";
    if (!canon || asprintf(&name, "%s.%s.%s", prefix, pool_name, slot) < 0)
        name = NULL;
    if (!name) {
        free(canon);
        return KC_ERR_NOMEM;
    }
    *out = name;
    if (canonical_slot)
        *canonical_slot = canon;
    else
        free(canon);
    return KC_OK;
}

int rec_claim_resource(const char *claim_kind, kc_ref *out)
{
    if (!out || !claim_kind)
        return KC_ERR_INVALID_ARG;
    memset(out, 0, sizeof(*out));
    if (!strcmp(claim_kind, "IPClaim"))
        out->resource = "ipclaims";
    else if (!strcmp(claim_kind, "DeviceClaim"))
        out->resource = "deviceclaims";
    else if (!strcmp(claim_kind, "Volume"))
        out->resource = "volumes";
    else if (!strcmp(claim_kind, "PersistentVolumeClaim")) {
        out->group = "";
        out->version = "v1";
        out->resource = "persistentvolumeclaims";
        return KC_OK;
    } else
        return KC_ERR_INVALID_ARG;
    out->group = "provisio.dev";
    out->version = "v1alpha1";
    return KC_OK;
}

/* ---- acquire -------------------------------------------------------------- */

static json_object *reservation_body(const char *name, const char *pool_kind, const char *pool_name,
                                     const char *slot, const rec_claim_ref *claim, int64_t bytes,
                                     const rec_reserve_extra *extra)
{
    json_object *r = json_object_new_object();
    if (!r)
        return NULL;
    json_object *meta = NULL, *labels = NULL, *spec = NULL, *pool = NULL, *cl = NULL;
    bool ok = pv_json_add_str(r, "apiVersion", "provisio.dev/v1alpha1") &&
              pv_json_add_str(r, "kind", "Reservation") &&
              (meta = pv_json_add_child(r, "metadata")) && pv_json_add_str(meta, "name", name) &&
              (labels = pv_json_add_child(meta, "labels")) &&
              pv_json_add_str(labels, REC_LABEL_POOL_KIND, pool_kind) &&
              pv_json_add_str(labels, REC_LABEL_POOL, pool_name) &&
              (spec = pv_json_add_child(r, "spec")) && (pool = pv_json_add_child(spec, "pool")) &&
              pv_json_add_str(pool, "kind", pool_kind) &&
              pv_json_add_str(pool, "name", pool_name) && pv_json_add_str(spec, "slot", slot) &&
              (cl = pv_json_add_child(spec, "claim")) && pv_json_add_str(cl, "kind", claim->kind) &&
              pv_json_add_str(cl, "namespace", claim->namespace_) &&
              pv_json_add_str(cl, "name", claim->name) && pv_json_add_str(cl, "uid", claim->uid);
    if (ok && bytes > 0) {
        json_object *b = json_object_new_int64(bytes);
        ok = b && json_object_object_add(spec, "bytes", b) == 0;
        if (!ok)
            json_object_put(b);
    }
    if (ok && extra) {
        ok = pv_json_add_str(spec, "admittedUntil", extra->admitted_until) &&
             pv_json_add_str(labels, REC_LABEL_NODE, extra->node) &&
             (!extra->scope_label || pv_json_add_str(labels, extra->scope_label, extra->scope)) &&
             (!extra->label || pv_json_add_str(labels, extra->label, extra->label_value)) &&
             (!extra->scope_key || pv_json_add_str(spec, extra->scope_key, extra->scope));
        if (ok && extra->finalizer) {
            json_object *f = json_object_new_array_ext(1);
            json_object *one = json_object_new_string(extra->finalizer);
            if (f && one && json_object_array_add(f, one) == 0)
                one = NULL; /* the array has it */
            else
                ok = false;
            json_object_put(one);
            ok = ok ? pv_json_add(meta, "finalizers", f) : (json_object_put(f), false);
        }
    }
    if (!ok) {
        json_object_put(r);
        return NULL;
    }
    return r;
}

static bool nonempty(const char *s)
{
    return s && *s;
}

/* Fill holder (if wanted) from obj. */
static int fill_holder(json_object *obj, rec_reservation *holder, kc_error *err)
{
    if (!holder)
        return KC_OK;
    int rc = rec_reservation_parse(obj, holder);
    if (rc != KC_OK)
        return kc_error_set(err, rc, "the server's Reservation could not be read: %s",
                            kc_strerror(rc));
    return KC_OK;
}

int rec_reserve_acquire(kc_client *c, const char *pool_kind, const char *pool_name,
                        const char *name, const char *slot, const rec_claim_ref *claim,
                        int64_t bytes, rec_reservation *holder, kc_error *err)
{
    return rec_reserve_acquire_extra(c, pool_kind, pool_name, name, slot, claim, bytes, NULL,
                                     holder, err);
}

int rec_reserve_acquire_extra(kc_client *c, const char *pool_kind, const char *pool_name,
                              const char *name, const char *slot, const rec_claim_ref *claim,
                              int64_t bytes, const rec_reserve_extra *extra,
                              rec_reservation *holder, kc_error *err)
{
    if (holder)
        memset(holder, 0, sizeof(*holder));
    kc_ref claim_res;
    if (!c || !claim || !nonempty(claim->namespace_) || !nonempty(claim->name) ||
        !nonempty(claim->uid) || rec_claim_resource(claim->kind, &claim_res) != KC_OK)
        return kc_error_set(err, KC_ERR_INVALID_ARG,
                            "rec_reserve_acquire: a client and a claim with kind, namespace, "
                            "name and uid required");
    if (pool_kind && !strcmp(pool_kind, REC_POOL_KIND_STORAGE) && bytes <= 0)
        return kc_error_set(err, KC_ERR_INVALID_ARG,
                            "rec_reserve_acquire: a StoragePool reservation needs bytes");
    if (!is_pool_kind(pool_kind) || !valid_label(pool_name, 63, false) ||
        !valid_label(name, 253, true) || !nonempty(slot))
        return kc_error_set(err, KC_ERR_INVALID_ARG,
                            "rec_reserve_acquire: bad slot %s/%s/%s (reservation %s)",
                            pool_kind ? pool_kind : "", pool_name ? pool_name : "",
                            slot ? slot : "", name ? name : "");
    json_object *body = reservation_body(name, pool_kind, pool_name, slot, claim, bytes, extra);
    if (!body)
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    int rc;

    kc_ref ref = rec_reservations_ref;
    ref.name = name;
    int attempt;
    for (attempt = 0; attempt < REC_RESERVE_ATTEMPTS; attempt++) {
        json_object *got = NULL;
        rc = kc_create(c, &rec_reservations_ref, body, NULL, holder ? &got : NULL, err);
        if (rc == KC_OK) {
            rc = fill_holder(got, holder, err);
            json_object_put(got);
            break;
        }
        if (rc != KC_ERR_ALREADY_EXISTS)
            break;
        /* Someone holds it: maybe us, from before a crash or a lost answer. */
        rc = kc_get(c, &ref, &got, err);
        if (rc == KC_ERR_NOT_FOUND)
            continue; /* released in between: try again */
        if (rc != KC_OK)
            break;
        const char *uid = rec_obj_str(got, "spec.claim.uid");
        bool ours = uid && !strcmp(uid, claim->uid);
        if (ours && rec_obj_is_deleting(got)) {
            rc = kc_error_set(err, KC_ERR_CONFLICT,
                              "reservation %s of this claim is being deleted; retry", name);
        } else {
            rc = fill_holder(got, holder, err);
            if (rc == KC_OK && !ours)
                rc = REC_TAKEN;
            if (rc >= 0)
                kc_error_clear(err);
        }
        json_object_put(got);
        break;
    }
    if (attempt == REC_RESERVE_ATTEMPTS)
        rc = kc_error_set(err, KC_ERR_CONFLICT, "reservation %s changed hands repeatedly; retry",
                          name);
    json_object_put(body);
    return rc;
}

/* ---- release -------------------------------------------------------------- */

int rec_reserve_release(kc_client *c, const char *name, const char *claim_uid, bool *released,
                        kc_error *err)
{
    if (released)
        *released = false;
    if (!c || !nonempty(name) || !nonempty(claim_uid))
        return kc_error_set(err, KC_ERR_INVALID_ARG,
                            "rec_reserve_release: client, name and claim uid required");
    kc_ref ref = rec_reservations_ref;
    ref.name = name;
    for (int attempt = 0; attempt < REC_RESERVE_ATTEMPTS; attempt++) {
        json_object *got = NULL;
        int rc = kc_get(c, &ref, &got, err);
        if (rc == KC_ERR_NOT_FOUND) {
            kc_error_clear(err);
            return KC_OK; /* already free */
        }
        if (rc != KC_OK)
            return rc;
        const char *holder = rec_obj_str(got, "spec.claim.uid");
        const char *uid = rec_obj_str(got, "metadata.uid");
        const char *rv = rec_obj_str(got, "metadata.resourceVersion");
        if (!holder || strcmp(holder, claim_uid) != 0) {
            /* Not ours (any more): ours is gone, and this one must stay. */
            json_object_put(got);
            kc_error_clear(err);
            return KC_OK;
        }
        if (!nonempty(uid) || !nonempty(rv)) {
            json_object_put(got);
            return kc_error_set(err, KC_ERR_DECODE, "reservation %s has no uid or resourceVersion",
                                name);
        }
        kc_delete_opts dopts = {
            .precondition_uid = uid,
            .precondition_resource_version = rv,
            .grace_period_seconds = -1,
        };
        rc = kc_delete(c, &ref, &dopts, NULL, err);
        json_object_put(got);
        if (rc == KC_OK) {
            if (released)
                *released = true;
            return KC_OK;
        }
        if (rc == KC_ERR_NOT_FOUND) {
            kc_error_clear(err);
            return KC_OK;
        }
        if (rc != KC_ERR_CONFLICT)
            return rc;
        /* A precondition failed: it changed since the GET. Look again. */
    }
    return kc_error_set(err, KC_ERR_CONFLICT,
                        "reservation %s kept changing while being released; retry", name);
}

int rec_reserve_held(kc_client *c, const char *name, const char *claim_uid, bool *held,
                     kc_error *err)
{
    *held = false;
    if (!c || !nonempty(name) || !nonempty(claim_uid))
        return kc_error_set(err, KC_ERR_INVALID_ARG,
                            "rec_reserve_held: client, name and claim uid required");
    kc_ref ref = rec_reservations_ref;
    ref.name = name;
    json_object *got = NULL;
    int rc = kc_get(c, &ref, &got, err);
    if (rc == KC_ERR_NOT_FOUND) {
        kc_error_clear(err);
        return KC_OK;
    }
    if (rc != KC_OK)
        return rc;
    const char *holder = rec_obj_str(got, "spec.claim.uid");
    *held = holder && !strcmp(holder, claim_uid) && !rec_obj_is_deleting(got);
    json_object_put(got);
    return KC_OK;
}

/* ---- orphan sweep --------------------------------------------------------- */

int rec_reserve_sweep_orphan(kc_client *c, json_object *reservation, bool *released, kc_error *err)
{
    if (released)
        *released = false;
    if (!c || !reservation)
        return kc_error_set(err, KC_ERR_INVALID_ARG,
                            "rec_reserve_sweep_orphan: a client and a Reservation required");
    rec_reservation r;
    int rc = rec_reservation_parse(reservation, &r);
    if (rc != KC_OK)
        return kc_error_set(err, rc, "rec_reserve_sweep_orphan: unusable Reservation: %s",
                            kc_strerror(rc));
    kc_ref claim_ref;
    if (rec_claim_resource(r.claim_kind, &claim_ref) != KC_OK || !nonempty(r.claim_namespace) ||
        !nonempty(r.claim_name)) {
        rc = kc_error_set(err, KC_ERR_DECODE, "reservation %s names no usable claim", r.name);
        rec_reservation_clear(&r);
        return rc;
    }
    claim_ref.namespace_ = r.claim_namespace;
    claim_ref.name = r.claim_name;

    /* The cache may lag: only the API server can say the claim is gone. */
    json_object *claim = NULL;
    rc = kc_get(c, &claim_ref, &claim, err);
    bool orphan;
    if (rc == KC_ERR_NOT_FOUND) {
        orphan = true;
    } else if (rc == KC_OK) {
        const char *uid = rec_obj_str(claim, "metadata.uid");
        orphan = !uid || strcmp(uid, r.claim_uid) != 0;
    } else {
        rec_reservation_clear(&r);
        return rc;
    }
    json_object_put(claim);
    kc_error_clear(err);
    rc = orphan ? rec_reserve_release(c, r.name, r.claim_uid, released, err) : KC_OK;
    rec_reservation_clear(&r);
    return rc;
}
