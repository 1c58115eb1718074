/*
 * Unit tests of what a placed Volume becomes (src/reconcilers/volume/vol_pv.c):
 * the PersistentVolume (its name, local path, node affinity, claimRef, label,
 * annotation, reclaim policy, capacity) and the PersistentVolumeClaim of the
 * Volume's name (owned by it, volumeName set, the storage class); the binding
 * it reports (Bound, Binding, ClaimConflict, VolumeConflict); and the way
 * back (the owned PVC and the PV deleted, gone only once the PV is gone).
 *
 * The real volume app (vol_setup, tests/support/vol_fixture.h) writes to a
 * replay server; its PV and PVC caches are filled by the test, and each test
 * asserts on the requests sent, their bodies and the binding returned.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "kc_error.h"
#include "rec_util.h"
#include "vol_fixture.h"

#define NS RCF_NS
#define VOL "data"
#define VOL_UID "uid-v1"
#define PV_NAME "vol-" VOL_UID
#define NODE "node-a"
#define DIR "/srv/pool/ns_data_uid-v1"
#define GIB 1073741824LL

#define PVS "/api/v1/persistentvolumes"
#define PVCS "/api/v1/namespaces/" NS "/persistentvolumeclaims"

static void env_start(void)
{
    vfx_start("volume-pv");
}

TestSuite(vol_pv, .init = env_start, .fini = vfx_stop, .timeout = 60);

/* ---- objects ------------------------------------------------------------------- */

typedef struct vol_args {
    const char *annotations; /* members of metadata.annotations, or NULL */
    const char *spec;        /* members of spec after size, or NULL */
    bool deleting;
} vol_args;

/* The Volume NS/VOL (uid VOL_UID), parsed; freed by rcf_stop. */
static json_object *volume(vol_args a)
{
    const char *text = rcf_fmt(
        "{\"apiVersion\":\"provisio.dev/v1alpha1\",\"kind\":\"Volume\","
        "\"metadata\":{\"name\":\"" VOL "\",\"namespace\":\"" NS "\",\"uid\":\"" VOL_UID "\","
        "\"resourceVersion\":\"7\",\"finalizers\":[\"provisio.dev/finalizer\"]%s%s%s%s},"
        "\"spec\":{\"size\":\"1Gi\"%s%s},\"status\":{\"pool\":\"p1\"}}",
        a.annotations ? ",\"annotations\":{" : "", a.annotations ? a.annotations : "",
        a.annotations ? "}" : "",
        a.deleting ? ",\"deletionTimestamp\":\"2026-01-01T00:00:00Z\"" : "", a.spec ? "," : "",
        a.spec ? a.spec : "");
    json_object *o = rcf_parse(text);
    cr_assert_lt(RCF.n_jgarbage, sizeof RCF.jgarbage / sizeof RCF.jgarbage[0]);
    RCF.jgarbage[RCF.n_jgarbage++] = o;
    return o;
}

/* A PV called name labelled for the Volume owner_uid (NULL: no label). */
static const char *pv_json(const char *name, const char *owner_uid, const char *extra_meta)
{
    return rcf_fmt("{\"apiVersion\":\"v1\",\"kind\":\"PersistentVolume\",\"metadata\":{"
                   "\"name\":\"%s\",\"uid\":\"pv-uid-%s\",\"resourceVersion\":\"20\"%s%s%s%s},"
                   "\"spec\":{\"claimRef\":{\"namespace\":\"" NS "\",\"name\":\"" VOL "\"}}}",
                   name, name, owner_uid ? ",\"labels\":{\"" VOL_LABEL_UID "\":\"" : "",
                   owner_uid ? owner_uid : "", owner_uid ? "\"}" : "",
                   extra_meta ? extra_meta : "");
}

typedef struct pvc_args {
    const char *volume_name; /* spec.volumeName, or NULL */
    const char *phase;       /* status.phase, or NULL */
    const char *owner_uid;   /* the controller owner's uid, or NULL */
    bool deleting;
} pvc_args;

/* The PVC NS/VOL. */
static const char *pvc_json(pvc_args a)
{
    return rcf_fmt("{\"apiVersion\":\"v1\",\"kind\":\"PersistentVolumeClaim\",\"metadata\":{"
                   "\"name\":\"" VOL "\",\"namespace\":\"" NS "\",\"uid\":\"pvc-uid\","
                   "\"resourceVersion\":\"30\"%s%s%s%s},"
                   "\"spec\":{\"storageClassName\":\"\"%s%s%s},\"status\":{%s%s%s}}",
                   a.owner_uid ? ",\"ownerReferences\":[{\"apiVersion\":\"provisio.dev/v1alpha1\","
                                 "\"kind\":\"Volume\",\"name\":\"" VOL
                                 "\",\"controller\":true,\"uid\":\""
                               : "",
                   a.owner_uid ? a.owner_uid : "", a.owner_uid ? "\"}]" : "",
                   a.deleting ? ",\"deletionTimestamp\":\"2026-01-01T00:00:00Z\"" : "",
                   a.volume_name ? ",\"volumeName\":\"" : "", a.volume_name ? a.volume_name : "",
                   a.volume_name ? "\"" : "", a.phase ? "\"phase\":\"" : "", a.phase ? a.phase : "",
                   a.phase ? "\"" : "");
}

static void cache_pv(const char *text)
{
    vfx_cache(VFX.app->pvs_store, text);
}

static void cache_pvc(const char *text)
{
    vfx_cache(VFX.app->pvcs_store, text);
}

static const vol_pv_want WANT = {.size = GIB, .node = NODE, .path = DIR, .storage_class = "fast"};

/* vol_pv_ensure of v with w twice, as the Volume's reconciles go: the first
 * makes the PV and waits to see it; the PV then in the cache (as its watch
 * event brings it), the second makes the claim. b: the second's binding. */
static int ensure_both(json_object *v, const vol_pv_want *w, vol_binding *b)
{
    int rc = vol_pv_ensure(VFX.app, v, w, b);
    if (rc != KC_OK)
        return rc;
    cr_expect_str_eq(b->reason ? b->reason : "(none)", VOL_REASON_BINDING);
    cr_expect(b->message && strstr(b->message, "follows once it is seen"), "first: %s",
              b->message ? b->message : "(none)");
    cr_assert_not_null(b->pv);
    char *name = strdup(b->pv);
    vol_binding_clear(b);
    json_object *old = NULL;
    store_delete(VFX.app->pvs_store, name, &old);
    store_obj_put(old);
    vfx_cache(VFX.app->pvs_store,
              rcf_fmt("{\"apiVersion\":\"v1\",\"kind\":\"PersistentVolume\",\"metadata\":{"
                      "\"name\":\"%s\",\"resourceVersion\":\"20\",\"labels\":{\"" VOL_LABEL_UID
                      "\":\"%s\"}}}",
                      name, rec_obj_str(v, "metadata.uid")));
    free(name);
    return vol_pv_ensure(VFX.app, v, w, b);
}

/* vol_pv_ensure of v with WANT; the binding is the caller's to clear. */
static int ensure(json_object *v, vol_binding *b)
{
    return vol_pv_ensure(VFX.app, v, &WANT, b);
}

/* s, or "(none)": for string comparisons that must fail, not crash, on NULL. */
static const char *s_(const char *s)
{
    return s ? s : "(none)";
}

static void expect_message(const char *msg, const char *fragment)
{
    cr_expect(msg && strstr(msg, fragment), "message '%s' lacks '%s'", msg ? msg : "(none)",
              fragment);
}

/* The one-element array at path of o: its only element. */
static json_object *only_item(json_object *o, const char *path)
{
    json_object *arr = rec_obj_at(o, path);
    cr_assert(json_object_is_type(arr, json_type_array), "%s is not an array in %s", path,
              json_object_to_json_string(o));
    cr_assert_eq(json_object_array_length(arr), 1, "%s: %s", path, json_object_to_json_string(arr));
    return json_object_array_get_idx(arr, 0);
}

static void expect_access_modes(json_object *o, const char *path, const char *want)
{
    json_object *m = only_item(o, path);
    cr_expect_str_eq(s_(json_object_get_string(m)), want, "%s", path);
}

/* ---- the PV's name and the reclaim policy ---------------------------------------- */

Test(vol_pv, name_is_vol_uid_unless_annotated)
{
    char *name = NULL;
    cr_assert_eq(vol_pv_name(volume((vol_args){0}), &name), KC_OK);
    cr_expect_str_eq(name, "vol-" VOL_UID);
    free(name);

    name = NULL;
    cr_assert_eq(
        vol_pv_name(volume((vol_args){.annotations = "\"" VOL_ANN_PV_NAME "\":\"pvc-1234\""}),
                    &name),
        KC_OK);
    cr_expect_str_eq(name, "pvc-1234", "a dynamic Volume's PV is named by its annotation");
    free(name);

    name = NULL;
    cr_assert_eq(
        vol_pv_name(volume((vol_args){.annotations = "\"" VOL_ANN_PV_NAME "\":\"\""}), &name),
        KC_OK);
    cr_expect_str_eq(name, "vol-" VOL_UID, "an empty annotation names nothing");
    free(name);
}

Test(vol_pv, retains_only_with_reclaim_policy_retain)
{
    cr_expect(vol_retains(volume((vol_args){.spec = "\"reclaimPolicy\":\"Retain\""})));
    cr_expect_not(vol_retains(volume((vol_args){.spec = "\"reclaimPolicy\":\"Delete\""})));
    cr_expect_not(vol_retains(volume((vol_args){0})), "no policy is Delete");
    cr_expect_not(vol_retains(volume((vol_args){.spec = "\"reclaimPolicy\":\"retain\""})),
                  "the policy is case-sensitive");
    cr_expect_not(vol_retains(volume((vol_args){.spec = "\"reclaimPolicy\":7"})));
}

/* ---- vol_pv_ensure: what it creates ---------------------------------------------- */

Test(vol_pv, ensure_creates_the_pv_and_the_claim_and_waits_for_binding)
{
    rcf_answer("POST", PVS, 201, "{}");
    rcf_answer("POST", PVCS, 201, "{}");
    vol_binding b;
    cr_assert_eq(ensure_both(volume((vol_args){0}), &WANT, &b), KC_OK, "%s",
                 b.message ? b.message : "");
    cr_expect_not(b.ready);
    cr_expect_str_eq(s_(b.pv), PV_NAME);
    cr_expect_str_eq(s_(b.pvc), VOL);
    cr_expect_str_eq(s_(b.reason), VOL_REASON_BINDING);
    expect_message(b.message,
                   "PersistentVolume " PV_NAME " and PersistentVolumeClaim " NS "/" VOL " made");
    rcf_assert_api_count(2);

    /* The PV. */
    json_object *pv = rcf_assert_api(0, "POST", PVS);
    cr_assert_not_null(pv);
    cr_expect_str_eq(rcf_str_at(pv, "apiVersion"), "v1");
    cr_expect_str_eq(rcf_str_at(pv, "kind"), "PersistentVolume");
    cr_expect_str_eq(rcf_str_at(pv, "metadata.name"), PV_NAME);
    cr_expect_str_eq(s_(rec_obj_label(pv, VOL_LABEL_UID)), VOL_UID);
    cr_expect_str_eq(s_(rec_obj_annotation(pv, "pv.kubernetes.io/provisioned-by")),
                     "local.provisio.dev");
    cr_expect_str_eq(rcf_str_at(pv, "spec.capacity.storage"), "1Gi");
    cr_expect_str_eq(rcf_str_at(pv, "spec.local.path"), DIR);
    cr_expect_str_eq(rcf_str_at(pv, "spec.persistentVolumeReclaimPolicy"), "Delete");
    cr_expect_str_eq(rcf_str_at(pv, "spec.storageClassName"), "fast");
    cr_expect_str_eq(rcf_str_at(pv, "spec.volumeMode"), "Filesystem");
    expect_access_modes(pv, "spec.accessModes", "ReadWriteOnce");
    cr_expect_str_eq(rcf_str_at(pv, "spec.claimRef.apiVersion"), "v1");
    cr_expect_str_eq(rcf_str_at(pv, "spec.claimRef.kind"), "PersistentVolumeClaim");
    cr_expect_str_eq(rcf_str_at(pv, "spec.claimRef.namespace"), NS);
    cr_expect_str_eq(rcf_str_at(pv, "spec.claimRef.name"), VOL);
    json_object *term = only_item(pv, "spec.nodeAffinity.required.nodeSelectorTerms");
    json_object *expr = only_item(term, "matchExpressions");
    cr_expect_str_eq(rcf_str_at(expr, "key"), "kubernetes.io/hostname");
    cr_expect_str_eq(rcf_str_at(expr, "operator"), "In");
    cr_expect_str_eq(s_(json_object_get_string(only_item(expr, "values"))), NODE);

    /* The claim. */
    json_object *pvc = rcf_assert_api(1, "POST", PVCS);
    cr_assert_not_null(pvc);
    cr_expect_str_eq(rcf_str_at(pvc, "apiVersion"), "v1");
    cr_expect_str_eq(rcf_str_at(pvc, "kind"), "PersistentVolumeClaim");
    cr_expect_str_eq(rcf_str_at(pvc, "metadata.name"), VOL);
    cr_expect_str_eq(rcf_str_at(pvc, "metadata.namespace"), NS);
    cr_expect_str_eq(s_(rec_obj_label(pvc, VOL_LABEL_UID)), VOL_UID);
    json_object *owner = only_item(pvc, "metadata.ownerReferences");
    cr_expect_str_eq(rcf_str_at(owner, "apiVersion"), "provisio.dev/v1alpha1");
    cr_expect_str_eq(rcf_str_at(owner, "kind"), "Volume");
    cr_expect_str_eq(rcf_str_at(owner, "name"), VOL);
    cr_expect_str_eq(rcf_str_at(owner, "uid"), VOL_UID);
    cr_expect(rec_is_owned_by(pvc, VOL_UID));
    json_object *ctrl = NULL;
    cr_expect(json_object_object_get_ex(owner, "controller", &ctrl) &&
                  json_object_get_boolean(ctrl),
              "the Volume is the claim's controller: %s", json_object_to_json_string(owner));
    cr_expect_str_eq(rcf_str_at(pvc, "spec.volumeName"), PV_NAME);
    cr_expect_str_eq(rcf_str_at(pvc, "spec.storageClassName"), "fast");
    cr_expect_str_eq(rcf_str_at(pvc, "spec.resources.requests.storage"), "1Gi");
    cr_expect_str_eq(rcf_str_at(pvc, "spec.volumeMode"), "Filesystem");
    expect_access_modes(pvc, "spec.accessModes", "ReadWriteOnce");
    vol_binding_clear(&b);
}

Test(vol_pv, ensure_owns_the_claim_by_a_volume_as_listed)
{
    /* Objects of a LIST (the informer's cache) carry no apiVersion and kind:
     * the owner reference of the claim still names a Volume. */
    json_object *v = volume((vol_args){0});
    json_object_object_del(v, "apiVersion");
    json_object_object_del(v, "kind");
    rcf_answer("POST", PVS, 201, "{}");
    rcf_answer("POST", PVCS, 201, "{}");
    vol_binding b;
    cr_assert_eq(ensure_both(v, &WANT, &b), KC_OK);
    json_object *owner = only_item(rcf_assert_api(1, "POST", PVCS), "metadata.ownerReferences");
    cr_expect_str_eq(rcf_str_at(owner, "apiVersion"), "provisio.dev/v1alpha1");
    cr_expect_str_eq(rcf_str_at(owner, "kind"), "Volume");
    cr_expect_str_eq(rcf_str_at(owner, "uid"), VOL_UID);
    vol_binding_clear(&b);
}

Test(vol_pv, ensure_names_the_pv_after_the_annotation_and_keeps_policy_modes_and_size)
{
    rcf_answer("POST", PVS, 201, "{}");
    json_object *v = volume(
        (vol_args){.annotations = "\"" VOL_ANN_PV_NAME "\":\"pvc-77\"",
                   .spec = "\"reclaimPolicy\":\"Retain\",\"accessModes\":[\"ReadWriteOncePod\"]"});
    vol_pv_want w = {.size = 1500000000, .node = "node-b", .path = "/d", .storage_class = NULL};
    vol_binding b;
    cr_assert_eq(ensure_both(v, &w, &b), KC_OK);
    cr_expect_str_eq(s_(b.pv), "pvc-77");
    /* A dynamic Volume's PVC is the user's (its owner): never made here. */
    rcf_assert_api_count(1);
    json_object *pv = rcf_assert_api(0, "POST", PVS);
    cr_expect_str_eq(rcf_str_at(pv, "metadata.name"), "pvc-77");
    cr_expect_str_eq(rcf_str_at(pv, "spec.persistentVolumeReclaimPolicy"), "Retain");
    cr_expect_str_eq(rcf_str_at(pv, "spec.capacity.storage"), "1500000000",
                     "not a whole number of Ki: plain bytes");
    cr_expect_str_eq(rcf_str_at(pv, "spec.storageClassName"), "", "no class: \"\"");
    cr_expect_str_eq(rcf_str_at(pv, "spec.local.path"), "/d");
    expect_access_modes(pv, "spec.accessModes", "ReadWriteOncePod");
    cr_expect_str_eq(s_(b.reason), VOL_REASON_BINDING);
    expect_message(b.message, "which this volume was made for, is gone");
    vol_binding_clear(&b);
}

Test(vol_pv, ensure_makes_a_static_volume_s_claim_with_its_modes_and_size)
{
    rcf_answer("POST", PVS, 201, "{}");
    rcf_answer("POST", PVCS, 201, "{}");
    json_object *v = volume((vol_args){.spec = "\"accessModes\":[\"ReadWriteOncePod\"]"});
    vol_pv_want w = {.size = 1500000000, .node = "node-b", .path = "/d", .storage_class = NULL};
    vol_binding b;
    cr_assert_eq(ensure_both(v, &w, &b), KC_OK);
    rcf_assert_api_count(2);
    json_object *pvc = rcf_assert_api(1, "POST", PVCS);
    cr_expect_str_eq(rcf_str_at(pvc, "spec.volumeName"), PV_NAME);
    cr_expect_str_eq(rcf_str_at(pvc, "spec.resources.requests.storage"), "1500000000");
    cr_expect_str_eq(rcf_str_at(pvc, "spec.storageClassName"), "");
    expect_access_modes(pvc, "spec.accessModes", "ReadWriteOncePod");
    vol_binding_clear(&b);
}

Test(vol_pv, ensure_does_not_reopen_a_dynamic_volume_s_released_pv)
{
    cache_pv(rcf_fmt("{\"apiVersion\":\"v1\",\"kind\":\"PersistentVolume\",\"metadata\":{"
                     "\"name\":\"pvc-77\",\"resourceVersion\":\"40\",\"labels\":{\"" VOL_LABEL_UID
                     "\":\"" VOL_UID "\"}},\"spec\":{\"claimRef\":{\"namespace\":\"" NS
                     "\",\"name\":\"" VOL "\",\"uid\":\"gone-uid\"}},"
                     "\"status\":{\"phase\":\"Released\"}}"));
    json_object *v = volume((vol_args){.annotations = "\"" VOL_ANN_PV_NAME "\":\"pvc-77\""});
    vol_binding b;
    cr_assert_eq(ensure(v, &b), KC_OK);
    rcf_assert_api_count(0);
    cr_expect_str_eq(s_(b.reason), VOL_REASON_BINDING);
    vol_binding_clear(&b);
}

Test(vol_pv, ensure_writes_sizes_as_binary_quantities)
{
    const struct {
        int64_t size;
        const char *text;
    } cases[] = {{5 * GIB, "5Gi"}, {3 * 1024 * 1024, "3Mi"}, {1536 * 1024, "1536Ki"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rcf_answer("POST", PVS, 201, "{}");
        rcf_answer("POST", PVCS, 201, "{}");
        vol_pv_want w = WANT;
        w.size = cases[i].size;
        vol_binding b;
        json_object *old = NULL;
        store_delete(VFX.app->pvs_store, PV_NAME, &old); /* the last round's */
        store_obj_put(old);
        cr_assert_eq(ensure_both(volume((vol_args){0}), &w, &b), KC_OK);
        json_object *pv = rcf_assert_api(2 * i, "POST", PVS);
        json_object *pvc = rcf_assert_api(2 * i + 1, "POST", PVCS);
        cr_expect_str_eq(rcf_str_at(pv, "spec.capacity.storage"), cases[i].text);
        cr_expect_str_eq(rcf_str_at(pvc, "spec.resources.requests.storage"), cases[i].text);
        vol_binding_clear(&b);
    }
}

Test(vol_pv, ensure_takes_an_existing_pv_of_that_name_as_made)
{
    /* 409 AlreadyExists: another replica (or an earlier reconcile) made it
     * and the cache has not caught up: read, it carries this Volume's uid,
     * and the claim is still made. */
    rcf_answer("POST", PVS, 409, rcf_status_body(409, "AlreadyExists"));
    rcf_answer("GET", PVS "/" PV_NAME, 200, pv_json(PV_NAME, VOL_UID, NULL));
    rcf_answer("POST", PVCS, 409, rcf_status_body(409, "AlreadyExists"));
    vol_binding b;
    cr_assert_eq(ensure(volume((vol_args){0}), &b), KC_OK, "%s", b.message ? b.message : "");
    cr_expect_str_eq(s_(b.reason), VOL_REASON_BINDING);
    rcf_assert_api_count(3);
    rcf_assert_api(0, "POST", PVS);
    rcf_assert_api(1, "GET", PVS "/" PV_NAME);
    rcf_assert_api(2, "POST", PVCS);
    vol_binding_clear(&b);
}

Test(vol_pv, ensure_reports_an_uncached_pv_of_another_volume_as_a_conflict)
{
    /* The informer sees only labelled PVs: one of that name without our
     * label is found by the create, read, and not taken. */
    rcf_answer("POST", PVS, 409, rcf_status_body(409, "AlreadyExists"));
    rcf_answer("GET", PVS "/" PV_NAME, 200, pv_json(PV_NAME, NULL, NULL));
    vol_binding b;
    cr_assert_eq(ensure(volume((vol_args){0}), &b), KC_OK);
    cr_expect_not(b.ready);
    cr_expect_str_eq(s_(b.reason), VOL_REASON_VOLUME_CONFLICT);
    expect_message(b.message, "belongs to another volume");
    rcf_assert_api_count(2);
    vol_binding_clear(&b);
}

Test(vol_pv, ensure_reports_a_refused_pv_and_makes_no_claim)
{
    rcf_answer("POST", PVS, 403, rcf_status_body(403, "Forbidden"));
    vol_binding b;
    int rc = ensure(volume((vol_args){0}), &b);
    cr_expect_eq(rc, KC_ERR_FORBIDDEN, "%s", kc_strerror(rc));
    cr_expect_not(b.ready);
    expect_message(b.message, "scripted 403 Forbidden");
    rcf_assert_api_count(1);
    vol_binding_clear(&b);
}

Test(vol_pv, ensure_reports_a_refused_claim)
{
    cache_pv(pv_json(PV_NAME, VOL_UID, NULL));
    rcf_answer("POST", PVCS, 422, rcf_status_body(422, "Invalid"));
    vol_binding b;
    int rc = ensure(volume((vol_args){0}), &b);
    cr_expect_eq(rc, KC_ERR_INVALID, "%s", kc_strerror(rc));
    cr_expect_not(b.ready);
    expect_message(b.message, "scripted 422 Invalid");
    rcf_assert_api_count(1);
    rcf_assert_api(0, "POST", PVCS);
    vol_binding_clear(&b);
}

Test(vol_pv, ensure_makes_only_the_claim_when_the_pv_is_cached)
{
    cache_pv(pv_json(PV_NAME, VOL_UID, NULL));
    rcf_answer("POST", PVCS, 201, "{}");
    vol_binding b;
    cr_assert_eq(ensure(volume((vol_args){0}), &b), KC_OK);
    cr_expect_str_eq(s_(b.reason), VOL_REASON_BINDING);
    rcf_assert_api_count(1);
    json_object *pvc = rcf_assert_api(0, "POST", PVCS);
    cr_expect_str_eq(rcf_str_at(pvc, "spec.volumeName"), PV_NAME);
    vol_binding_clear(&b);
}

/* ---- vol_pv_ensure: the binding states ------------------------------------------- */

Test(vol_pv, ensure_is_ready_once_the_claim_is_bound_to_its_pv)
{
    cache_pv(pv_json(PV_NAME, VOL_UID, NULL));
    cache_pvc(pvc_json((pvc_args){.volume_name = PV_NAME, .phase = "Bound", .owner_uid = VOL_UID}));
    vol_binding b;
    cr_assert_eq(ensure(volume((vol_args){0}), &b), KC_OK);
    cr_expect(b.ready, "reason %s: %s", b.reason ? b.reason : "", b.message ? b.message : "");
    cr_expect_null(b.reason);
    cr_expect_str_eq(s_(b.pv), PV_NAME);
    cr_expect_str_eq(s_(b.pvc), VOL);
    rcf_assert_api_count(0);
    vol_binding_clear(&b);
}

Test(vol_pv, ensure_waits_while_the_claim_is_not_bound)
{
    const pvc_args states[] = {
        {.volume_name = PV_NAME, .phase = "Pending", .owner_uid = VOL_UID},
        {.phase = "Pending", .owner_uid = VOL_UID},
        {.owner_uid = VOL_UID},
    };
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) {
        vfx_stop();
        vfx_start("volume-pv");
        cache_pv(pv_json(PV_NAME, VOL_UID, NULL));
        cache_pvc(pvc_json(states[i]));
        vol_binding b;
        cr_assert_eq(ensure(volume((vol_args){0}), &b), KC_OK);
        cr_expect_not(b.ready, "case %zu", i);
        cr_expect_str_eq(s_(b.reason), VOL_REASON_BINDING, "case %zu", i);
        expect_message(b.message, "waiting for kube-controller-manager to bind it to "
                                  "PersistentVolumeClaim " NS "/" VOL);
        rcf_assert_api_count(0);
        vol_binding_clear(&b);
    }
}

Test(vol_pv, ensure_says_the_claim_is_being_deleted)
{
    cache_pv(pv_json(PV_NAME, VOL_UID, NULL));
    cache_pvc(pvc_json((pvc_args){.owner_uid = VOL_UID, .deleting = true}));
    vol_binding b;
    cr_assert_eq(ensure(volume((vol_args){0}), &b), KC_OK);
    cr_expect_not(b.ready);
    cr_expect_str_eq(s_(b.reason), VOL_REASON_BINDING);
    expect_message(b.message, "PersistentVolumeClaim " NS "/" VOL " is being deleted");
    rcf_assert_api_count(0);
    vol_binding_clear(&b);
}

Test(vol_pv, ensure_reports_a_claim_bound_to_another_pv)
{
    cache_pv(pv_json(PV_NAME, VOL_UID, NULL));
    cache_pvc(pvc_json((pvc_args){.volume_name = "someone-elses", .phase = "Bound"}));
    vol_binding b;
    cr_assert_eq(ensure(volume((vol_args){0}), &b), KC_OK);
    cr_expect_not(b.ready, "a claim bound elsewhere is not this Volume's");
    cr_expect_str_eq(s_(b.reason), VOL_REASON_CLAIM_CONFLICT);
    expect_message(b.message, "PersistentVolumeClaim " NS "/" VOL
                              " is bound to PersistentVolume someone-elses, not to this "
                              "volume's " PV_NAME);
    rcf_assert_api_count(0);
    vol_binding_clear(&b);
}

Test(vol_pv, ensure_reports_a_pv_of_that_name_for_another_volume)
{
    cache_pv(pv_json(PV_NAME, "uid-other", NULL));
    vol_binding b;
    cr_assert_eq(ensure(volume((vol_args){0}), &b), KC_OK);
    cr_expect_not(b.ready);
    cr_expect_str_eq(s_(b.reason), VOL_REASON_VOLUME_CONFLICT);
    expect_message(b.message, "PersistentVolume " PV_NAME " exists and belongs to another volume");
    rcf_assert_api_count(0); /* neither the PV touched nor a claim made */
    vol_binding_clear(&b);
}

Test(vol_pv, ensure_reports_a_cached_pv_without_our_label)
{
    cache_pv(pv_json(PV_NAME, NULL, NULL));
    vol_binding b;
    cr_assert_eq(ensure(volume((vol_args){0}), &b), KC_OK);
    cr_expect_str_eq(s_(b.reason), VOL_REASON_VOLUME_CONFLICT);
    rcf_assert_api_count(0);
    vol_binding_clear(&b);
}

/* ---- vol_pv_ensure: a PV Released by a deleted claim ------------------------------- */

/* Our PV, Released by the claim of uid old_uid. */
static const char *released_pv_json(const char *old_uid)
{
    return rcf_fmt("{\"apiVersion\":\"v1\",\"kind\":\"PersistentVolume\",\"metadata\":{"
                   "\"name\":\"" PV_NAME "\",\"uid\":\"pv-uid\",\"resourceVersion\":\"20\","
                   "\"labels\":{\"" VOL_LABEL_UID "\":\"" VOL_UID "\"}},"
                   "\"spec\":{\"claimRef\":{\"kind\":\"PersistentVolumeClaim\","
                   "\"namespace\":\"" NS "\",\"name\":\"" VOL "\",\"uid\":\"%s\","
                   "\"resourceVersion\":\"31\"}},\"status\":{\"phase\":\"Released\"}}",
                   old_uid);
}

/* Request i is the merge patch that opens the PV for the next claim. */
static void assert_reopen_patch(size_t i)
{
    json_object *p = rcf_assert_api(i, "PATCH", PVS "/" PV_NAME);
    cr_assert_not_null(p);
    cr_expect_str_eq(s_(rs_header(rcf_api_at(i), "Content-Type")), "application/merge-patch+json");
    cr_expect_str_eq(rcf_str_at(p, "metadata.resourceVersion"), "20",
                     "decided on the PV as cached: %s", json_object_to_json_string(p));
    json_object *ref = rec_obj_at(p, "spec.claimRef"), *v = NULL;
    cr_assert_not_null(ref, "%s", json_object_to_json_string(p));
    cr_expect(json_object_object_get_ex(ref, "uid", &v) && v == NULL,
              "claimRef.uid is removed (null): %s", json_object_to_json_string(p));
    cr_expect(json_object_object_get_ex(ref, "resourceVersion", &v) && v == NULL,
              "claimRef.resourceVersion is removed (null): %s", json_object_to_json_string(p));
    cr_expect_eq(json_object_object_length(ref), 2, "nothing else of claimRef changes: %s",
                 json_object_to_json_string(p));
}

Test(vol_pv, ensure_reopens_a_pv_released_by_a_deleted_claim_and_makes_a_new_one)
{
    cache_pv(released_pv_json("uid-old-pvc"));
    rcf_answer("PATCH", PVS "/" PV_NAME, 200, "{}");
    rcf_answer("POST", PVCS, 201, "{}");
    vol_binding b;
    cr_assert_eq(ensure(volume((vol_args){0}), &b), KC_OK, "%s", s_(b.message));
    cr_expect_not(b.ready);
    cr_expect_str_eq(s_(b.reason), VOL_REASON_BINDING);
    rcf_assert_api_count(2);
    assert_reopen_patch(0);
    json_object *pvc = rcf_assert_api(1, "POST", PVCS);
    cr_expect_str_eq(rcf_str_at(pvc, "spec.volumeName"), PV_NAME);
    vol_binding_clear(&b);
}

Test(vol_pv, ensure_reopens_a_released_pv_for_a_new_claim_already_there)
{
    cache_pv(released_pv_json("uid-old-pvc"));
    cache_pvc(pvc_json((pvc_args){.volume_name = PV_NAME, .phase = "Pending"})); /* uid pvc-uid */
    rcf_answer("PATCH", PVS "/" PV_NAME, 200, "{}");
    vol_binding b;
    cr_assert_eq(ensure(volume((vol_args){0}), &b), KC_OK, "%s", s_(b.message));
    cr_expect_str_eq(s_(b.reason), VOL_REASON_BINDING);
    rcf_assert_api_count(1);
    assert_reopen_patch(0);
    vol_binding_clear(&b);
}

Test(vol_pv, ensure_leaves_a_released_pv_while_its_claim_is_still_cached)
{
    cache_pv(released_pv_json("pvc-uid"));
    cache_pvc(pvc_json((pvc_args){
        .volume_name = PV_NAME, .phase = "Bound", .owner_uid = VOL_UID, .deleting = true}));
    vol_binding b;
    cr_assert_eq(ensure(volume((vol_args){0}), &b), KC_OK, "%s", s_(b.message));
    rcf_assert_api_count(0);
    vol_binding_clear(&b);
}

Test(vol_pv, ensure_takes_a_failed_reopen_precondition_as_a_stale_cache)
{
    const int codes[] = {409, 404};
    const char *reasons[] = {"Conflict", "NotFound"};
    for (size_t i = 0; i < 2; i++) {
        if (i) {
            vfx_stop();
            vfx_start("volume-pv");
        }
        cache_pv(released_pv_json("uid-old-pvc"));
        rcf_answer("PATCH", PVS "/" PV_NAME, codes[i], rcf_status_body(codes[i], reasons[i]));
        rcf_answer("POST", PVCS, 201, "{}");
        vol_binding b;
        cr_expect_eq(ensure(volume((vol_args){0}), &b), KC_OK, "%d: %s", codes[i], s_(b.message));
        rcf_assert_api_count(2);
        assert_reopen_patch(0);
        rcf_assert_api(1, "POST", PVCS);
        vol_binding_clear(&b);
    }
}

Test(vol_pv, ensure_reports_a_refused_reopen_and_makes_no_claim)
{
    cache_pv(released_pv_json("uid-old-pvc"));
    rcf_answer("PATCH", PVS "/" PV_NAME, 403, rcf_status_body(403, "Forbidden"));
    vol_binding b;
    int rc = ensure(volume((vol_args){0}), &b);
    cr_expect_eq(rc, KC_ERR_FORBIDDEN, "%s", kc_strerror(rc));
    expect_message(b.message, "scripted 403 Forbidden");
    rcf_assert_api_count(1);
    vol_binding_clear(&b);
}

/* ---- vol_pv_teardown --------------------------------------------------------------- */

/* Request i DELETEs target with the precondition uid. */
static void assert_delete(size_t i, const char *target, const char *uid)
{
    json_object *b = rcf_assert_api(i, "DELETE", target);
    cr_assert_not_null(b, "a DELETE without preconditions");
    cr_expect_str_eq(rcf_str_at(b, "preconditions.uid"), uid, "%s", json_object_to_json_string(b));
}

static int teardown(json_object *v, bool *gone, char **why)
{
    *gone = true; /* vol_pv_teardown must say */
    *why = NULL;
    int rc = vol_pv_teardown(VFX.app, v, gone, why);
    if (*why)
        rcf_keep(*why);
    return rc;
}

Test(vol_pv, teardown_deletes_the_owned_claim_and_the_pv_and_waits)
{
    cache_pvc(pvc_json((pvc_args){.volume_name = PV_NAME, .phase = "Bound", .owner_uid = VOL_UID}));
    cache_pv(pv_json(PV_NAME, VOL_UID, NULL));
    rcf_answer("DELETE", PVCS "/" VOL, 200, RCF_SUCCESS);
    rcf_answer("DELETE", PVS "/" PV_NAME, 200, RCF_SUCCESS);
    bool gone;
    char *why;
    cr_assert_eq(teardown(volume((vol_args){.deleting = true}), &gone, &why), KC_OK, "%s",
                 why ? why : "");
    cr_expect_not(gone, "the PV is not gone until the cache or the server says so");
    expect_message(why, "waiting for PersistentVolume " PV_NAME " to be deleted");
    cr_expect_null(strstr(why, "pvc-protection"), "%s", why);
    rcf_assert_api_count(2);
    assert_delete(0, PVCS "/" VOL, "pvc-uid");
    assert_delete(1, PVS "/" PV_NAME, "pv-uid-" PV_NAME);
}

Test(vol_pv, teardown_leaves_a_claim_it_does_not_own)
{
    cache_pvc(pvc_json((pvc_args){.phase = "Pending"}));
    cache_pv(pv_json(PV_NAME, VOL_UID, NULL));
    rcf_answer("DELETE", PVS "/" PV_NAME, 200, RCF_SUCCESS);
    bool gone;
    char *why;
    cr_assert_eq(teardown(volume((vol_args){.deleting = true}), &gone, &why), KC_OK);
    cr_expect_not(gone);
    rcf_assert_api_count(1);
    assert_delete(0, PVS "/" PV_NAME, "pv-uid-" PV_NAME);
}

Test(vol_pv, teardown_asks_the_server_when_the_pv_is_not_cached)
{
    rcf_answer("GET", PVS "/" PV_NAME, 404, rcf_status_body(404, "NotFound"));
    bool gone;
    char *why;
    cr_assert_eq(teardown(volume((vol_args){.deleting = true}), &gone, &why), KC_OK, "%s",
                 why ? why : "");
    cr_expect(gone, "the server says the PV is gone: %s", why ? why : "");
    rcf_assert_api_count(1);
    rcf_assert_api(0, "GET", PVS "/" PV_NAME);
}

Test(vol_pv, teardown_deletes_a_pv_only_the_server_shows)
{
    /* Made a moment ago: not cached yet. */
    rcf_answer("GET", PVS "/" PV_NAME, 200, pv_json(PV_NAME, VOL_UID, NULL));
    rcf_answer("DELETE", PVS "/" PV_NAME, 200, RCF_SUCCESS);
    bool gone;
    char *why;
    cr_assert_eq(teardown(volume((vol_args){.deleting = true}), &gone, &why), KC_OK);
    cr_expect_not(gone, "a PV the server still has is not gone");
    expect_message(why, "waiting for PersistentVolume " PV_NAME " to be deleted");
    rcf_assert_api_count(2);
    rcf_assert_api(0, "GET", PVS "/" PV_NAME);
    assert_delete(1, PVS "/" PV_NAME, "pv-uid-" PV_NAME);
}

Test(vol_pv, teardown_never_deletes_another_volumes_pv)
{
    rcf_answer("GET", PVS "/" PV_NAME, 200, pv_json(PV_NAME, "uid-other", NULL));
    bool gone;
    char *why;
    cr_assert_eq(teardown(volume((vol_args){.deleting = true}), &gone, &why), KC_OK);
    cr_expect(gone, "a PV of that name that is not ours is not waited for");
    rcf_assert_api_count(1);
    rcf_assert_api(0, "GET", PVS "/" PV_NAME);

    /* Cached: not even asked. */
    vfx_stop();
    vfx_start("volume-pv");
    cache_pv(pv_json(PV_NAME, "uid-other", NULL));
    cr_assert_eq(teardown(volume((vol_args){.deleting = true}), &gone, &why), KC_OK);
    cr_expect(gone);
    rcf_assert_api_count(0);
}

Test(vol_pv, teardown_waits_for_a_pv_being_deleted_without_deleting_again)
{
    cache_pvc(pvc_json((pvc_args){
        .volume_name = PV_NAME, .phase = "Bound", .owner_uid = VOL_UID, .deleting = true}));
    cache_pv(pv_json(PV_NAME, VOL_UID, ",\"deletionTimestamp\":\"2026-01-01T00:00:00Z\""));
    bool gone;
    char *why;
    cr_assert_eq(teardown(volume((vol_args){.deleting = true}), &gone, &why), KC_OK);
    cr_expect_not(gone);
    expect_message(why, "waiting for PersistentVolume " PV_NAME " to be deleted");
    expect_message(why, "kubernetes.io/pvc-protection");
    rcf_assert_api_count(0);
}

Test(vol_pv, teardown_takes_a_pv_already_gone_or_replaced_on_delete_as_deleted)
{
    /* 404: gone between the cache and the DELETE; 409: the uid precondition
     * failed (a new PV of that name). Neither is an error. */
    const int codes[] = {404, 409};
    const char *reasons[] = {"NotFound", "Conflict"};
    for (size_t i = 0; i < 2; i++) {
        vfx_stop();
        vfx_start("volume-pv");
        cache_pv(pv_json(PV_NAME, VOL_UID, NULL));
        rcf_answer("DELETE", PVS "/" PV_NAME, codes[i], rcf_status_body(codes[i], reasons[i]));
        bool gone;
        char *why;
        cr_expect_eq(teardown(volume((vol_args){.deleting = true}), &gone, &why), KC_OK, "%d: %s",
                     codes[i], why ? why : "");
        cr_expect_not(gone, "%d: gone is for the next look (cache or server) to say", codes[i]);
        rcf_assert_api_count(1);
    }
}

Test(vol_pv, teardown_stops_at_a_failed_claim_delete)
{
    cache_pvc(pvc_json((pvc_args){.owner_uid = VOL_UID}));
    cache_pv(pv_json(PV_NAME, VOL_UID, NULL));
    rcf_answer("DELETE", PVCS "/" VOL, 500, rcf_status_body(500, "InternalError"));
    bool gone;
    char *why;
    int rc = teardown(volume((vol_args){.deleting = true}), &gone, &why);
    cr_expect_eq(rc, KC_ERR_INTERNAL, "%s", kc_strerror(rc));
    cr_expect_not(gone);
    expect_message(why, "scripted 500 InternalError");
    rcf_assert_api_count(1); /* the PV waits for its claim */
    assert_delete(0, PVCS "/" VOL, "pvc-uid");
}

Test(vol_pv, teardown_reports_a_failed_pv_lookup)
{
    rcf_answer("GET", PVS "/" PV_NAME, 403, rcf_status_body(403, "Forbidden"));
    bool gone;
    char *why;
    int rc = teardown(volume((vol_args){.deleting = true}), &gone, &why);
    cr_expect_eq(rc, KC_ERR_FORBIDDEN, "%s", kc_strerror(rc));
    cr_expect_not(gone, "a PV nobody could look at is not gone");
    expect_message(why, "scripted 403 Forbidden");
}
