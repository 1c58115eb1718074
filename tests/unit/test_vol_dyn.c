/*
 * Unit tests of dynamic provisioning (src/reconcilers/volume/vol_dyn.c):
 * which pools serve a StorageClass; the "persistentvolumeclaim" controller
 * (a PVC of a local.provisio.dev class becomes a Volume of its name, owned
 * by it and annotated; WaitForFirstConsumer waits for kube-scheduler's
 * selected-node; claims of other provisioners, bound or being deleted are
 * left alone; a Volume that cannot be placed or is refused shows on the PVC
 * as a Warning ProvisioningFailed); and the "storagecapacity" controller (one
 * CSIStorageCapacity per Ready pool and class it serves, kept up to date,
 * withdrawn).
 *
 * The real volume app (vol_setup, tests/support/vol_fixture.h) runs one
 * controller against a replay server that serves its informers' lists; each
 * test waits for the reconciles and asserts on the writes sent, their
 * bodies, and the Events.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "kc_error.h"
#include "rec_util.h"
#include "vol_fixture.h"

#define NS RCF_NS
#define PVC "data"
#define PVC_UID "uid-pvc"
#define VOLUMES "/apis/provisio.dev/v1alpha1/namespaces/" NS "/volumes"
#define CAPS "/apis/storage.k8s.io/v1/namespaces/" VFX_OPERATOR_NS "/csistoragecapacities"

static void env_start(void)
{
    vfx_start("volume-dyn");
    RCF.skip_informer_reads = true; /* the writes are what the tests look at */
}

TestSuite(vol_dyn, .init = env_start, .fini = vfx_stop, .timeout = 60);

/* s, or "(none)": for string comparisons that must fail, not crash, on NULL. */
static const char *s_(const char *s)
{
    return s ? s : "(none)";
}

static void expect_message(const char *msg, const char *fragment)
{
    cr_expect(msg && strstr(msg, fragment), "message '%s' lacks '%s'", s_(msg), fragment);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- which pools serve a class ---------------------------------------------------- */

Test(vol_dyn, pool_serves_its_class_and_a_classless_pool_serves_all)
{
    json_object *fast = rcf_parse("{\"spec\":{\"storageClassName\":\"fast\"}}");
    json_object *none = rcf_parse("{\"spec\":{}}");
    json_object *empty = rcf_parse("{\"spec\":{\"storageClassName\":\"\"}}");
    cr_expect(vol_pool_serves(fast, "fast"));
    cr_expect_not(vol_pool_serves(fast, "slow"));
    cr_expect_not(vol_pool_serves(fast, "fas"), "a prefix is another class");
    cr_expect_not(vol_pool_serves(fast, "faster"), "so is a longer name");
    cr_expect_not(vol_pool_serves(fast, NULL), "a pool of a class serves no classless volume");
    cr_expect(vol_pool_serves(none, "fast"));
    cr_expect(vol_pool_serves(none, NULL));
    cr_expect(vol_pool_serves(empty, "slow"));
    cr_expect(vol_pool_serves(empty, NULL));
    json_object_put(fast);
    json_object_put(none);
    json_object_put(empty);
}

/* ---- objects ---------------------------------------------------------------------- */

/* A StorageClass (as a LIST item). */
static const char *class_json(const char *name, const char *provisioner, const char *extra)
{
    return rcf_fmt("{\"metadata\":{\"name\":\"%s\",\"uid\":\"uid-sc-%s\","
                   "\"resourceVersion\":\"3\"},\"provisioner\":\"%s\"%s%s}",
                   name, name, provisioner, extra ? "," : "", extra ? extra : "");
}

typedef struct pvc_args {
    const char *cls;         /* spec.storageClassName, or NULL */
    const char *annotations; /* members of metadata.annotations, or NULL */
    const char *spec;        /* more members of spec, or NULL */
    const char *owner;       /* an ownerReferences entry, or NULL */
    bool deleting;
} pvc_args;

/* The PVC NS/PVC (as a LIST item: no apiVersion and kind). */
static const char *pvc_json(pvc_args a)
{
    return rcf_fmt("{\"metadata\":{\"name\":\"" PVC "\",\"namespace\":\"" NS "\",\"uid\":\"" PVC_UID
                   "\","
                   "\"resourceVersion\":\"40\"%s%s%s%s%s%s%s},"
                   "\"spec\":{\"accessModes\":[\"ReadWriteOnce\"],"
                   "\"resources\":{\"requests\":{\"storage\":\"2Gi\"}}%s%s%s%s%s},"
                   "\"status\":{\"phase\":\"Pending\"}}",
                   a.annotations ? ",\"annotations\":{" : "", a.annotations ? a.annotations : "",
                   a.annotations ? "}" : "",
                   a.deleting ? ",\"deletionTimestamp\":\"2026-01-01T00:00:00Z\"" : "",
                   a.owner ? ",\"ownerReferences\":[" : "", a.owner ? a.owner : "",
                   a.owner ? "]" : "", a.cls ? ",\"storageClassName\":\"" : "", a.cls ? a.cls : "",
                   a.cls ? "\"" : "", a.spec ? "," : "", a.spec ? a.spec : "");
}

#define PVC_OWNER                                                                                  \
    "{\"apiVersion\":\"v1\",\"kind\":\"PersistentVolumeClaim\",\"name\":\"" PVC "\","              \
    "\"uid\":\"" PVC_UID "\",\"controller\":true}"

/* A Volume NS/PVC with uid, owners (NULL: none) and a Ready condition
 * (status NULL: none). */
static const char *volume_json(const char *uid, const char *owner, const char *ready,
                               const char *reason, const char *message)
{
    return rcf_fmt("{\"metadata\":{\"name\":\"" PVC "\",\"namespace\":\"" NS "\","
                   "\"uid\":\"%s\",\"resourceVersion\":\"50\","
                   "\"annotations\":{\"" VOL_ANN_PV_NAME "\":\"pvc-" PVC_UID "\"}%s%s%s},"
                   "\"spec\":{\"size\":\"2Gi\"},\"status\":{%s%s%s%s%s%s%s}}",
                   uid, owner ? ",\"ownerReferences\":[" : "", owner ? owner : "", owner ? "]" : "",
                   ready ? "\"conditions\":[{\"type\":\"Ready\",\"status\":\"" : "",
                   ready ? ready : "", ready ? "\",\"reason\":\"" : "", ready ? reason : "",
                   ready ? "\",\"message\":\"" : "", ready ? message : "", ready ? "\"}]" : "");
}

#define LOCAL_CLASS(extra) class_json("local", VOL_PROVISIONER, extra)

/* Run the PVC controller over the cached PVC and wait for its reconcile. */
static void run_pvc_controller(void)
{
    vfx_run(VOL_PVC_CONTROLLER);
    vfx_wait_reconciles(VOL_PVC_CONTROLLER, 1);
}

/* Nothing more is written for a moment: the reconcile's writes were all. */
static void expect_no_more_writes(size_t n)
{
    sleep_ms(100);
    rcf_assert_api_count(n);
}

/* ---- the PVC -> Volume -------------------------------------------------------------- */

Test(vol_dyn, claim_of_our_class_becomes_a_volume_it_owns)
{
    vfx_serve("storageclasses",
              rcf_fmt("%s,%s",
                      LOCAL_CLASS("\"reclaimPolicy\":\"Retain\",\"volumeBindingMode\":"
                                  "\"Immediate\",\"parameters\":{\"pool\":\"p1\"}"),
                      class_json("ebs", "ebs.csi.aws.com", NULL)));
    vfx_serve("persistentvolumeclaims", pvc_json((pvc_args){.cls = "local"}));
    rcf_answer("POST", VOLUMES, 201, "{}");
    run_pvc_controller();
    expect_no_more_writes(1);

    json_object *v = rcf_assert_api(0, "POST", VOLUMES);
    cr_assert_not_null(v);
    cr_expect_str_eq(rcf_str_at(v, "apiVersion"), "provisio.dev/v1alpha1");
    cr_expect_str_eq(rcf_str_at(v, "kind"), "Volume");
    cr_expect_str_eq(rcf_str_at(v, "metadata.name"), PVC, "the Volume has the claim's name");
    cr_expect_str_eq(rcf_str_at(v, "metadata.namespace"), NS);
    json_object *owners = rec_obj_at(v, "metadata.ownerReferences");
    cr_assert(json_object_is_type(owners, json_type_array) && json_object_array_length(owners) == 1,
              "%s", json_object_to_json_string(v));
    json_object *owner = json_object_array_get_idx(owners, 0);
    cr_expect_str_eq(rcf_str_at(owner, "apiVersion"), "v1");
    cr_expect_str_eq(rcf_str_at(owner, "kind"), "PersistentVolumeClaim");
    cr_expect_str_eq(rcf_str_at(owner, "name"), PVC);
    cr_expect_str_eq(rcf_str_at(owner, "uid"), PVC_UID);
    json_object *flag = NULL;
    cr_expect(json_object_object_get_ex(owner, "controller", &flag) &&
                  json_object_get_boolean(flag),
              "%s", json_object_to_json_string(owner));
    cr_expect(json_object_object_get_ex(owner, "blockOwnerDeletion", &flag) &&
                  json_object_get_boolean(flag),
              "%s", json_object_to_json_string(owner));
    cr_expect_str_eq(s_(rec_obj_annotation(v, VOL_ANN_PV_NAME)), "pvc-" PVC_UID);
    cr_expect_str_eq(s_(rec_obj_annotation(v, VOL_ANN_CLASS)), "local");
    cr_expect_str_eq(rcf_str_at(v, "spec.size"), "2Gi");
    cr_expect_str_eq(rcf_str_at(v, "spec.reclaimPolicy"), "Retain", "the class's policy");
    cr_expect_str_eq(rcf_str_at(v, "spec.pool"), "p1", "the class's parameters.pool");
    cr_expect_null(rec_obj_at(v, "spec.nodeName"), "Immediate: no node chosen: %s",
                   json_object_to_json_string(v));
    json_object *modes = rec_obj_at(v, "spec.accessModes");
    cr_expect(json_object_is_type(modes, json_type_array) && json_object_array_length(modes) == 1 &&
                  !strcmp(s_(json_object_get_string(json_object_array_get_idx(modes, 0))),
                          "ReadWriteOnce"),
              "%s", json_object_to_json_string(v));

    cr_expect_eq(rcf_events_with_reason("Provisioning"), 1);
    expect_message(rcf_event_message("Provisioning"),
                   "Volume " NS "/" PVC " made for this claim; its PersistentVolume will be "
                   "pvc-" PVC_UID);
    cr_expect_eq(rcf_events_with_reason("ProvisioningFailed"), 0);
}

Test(vol_dyn, class_without_policy_or_pool_gives_delete_and_no_pool)
{
    vfx_serve("storageclasses", LOCAL_CLASS(NULL));
    vfx_serve("persistentvolumeclaims", pvc_json((pvc_args){.cls = "local"}));
    rcf_answer("POST", VOLUMES, 201, "{}");
    run_pvc_controller();
    expect_no_more_writes(1);
    json_object *v = rcf_assert_api(0, "POST", VOLUMES);
    cr_expect_str_eq(rcf_str_at(v, "spec.reclaimPolicy"), "Delete");
    cr_expect_null(rec_obj_at(v, "spec.pool"), "%s", json_object_to_json_string(v));
    cr_expect_null(rec_obj_at(v, "spec.nodeName"), "%s", json_object_to_json_string(v));
}

Test(vol_dyn, wait_for_first_consumer_waits_for_the_selected_node)
{
    vfx_serve("storageclasses", LOCAL_CLASS("\"volumeBindingMode\":\"WaitForFirstConsumer\""));
    vfx_serve("persistentvolumeclaims", pvc_json((pvc_args){.cls = "local"}));
    run_pvc_controller();
    expect_no_more_writes(0);
    cr_expect_eq(rcf_events_written(), 0, "no Event before the scheduler chose a node");
}

Test(vol_dyn, wait_for_first_consumer_places_the_volume_on_the_selected_node)
{
    vfx_serve("storageclasses", LOCAL_CLASS("\"volumeBindingMode\":\"WaitForFirstConsumer\""));
    vfx_serve(
        "persistentvolumeclaims",
        pvc_json((pvc_args){.cls = "local",
                            .annotations = "\"volume.kubernetes.io/selected-node\":\"node-b\""}));
    rcf_answer("POST", VOLUMES, 201, "{}");
    run_pvc_controller();
    expect_no_more_writes(1);
    json_object *v = rcf_assert_api(0, "POST", VOLUMES);
    cr_expect_str_eq(rcf_str_at(v, "spec.nodeName"), "node-b");
    cr_expect_str_eq(s_(rec_obj_annotation(v, VOL_ANN_PV_NAME)), "pvc-" PVC_UID);
    expect_message(rcf_event_message("Provisioning"), "made for this claim on node node-b");
}

Test(vol_dyn, immediate_binding_does_not_pin_the_volume_to_an_annotated_node)
{
    vfx_serve("storageclasses", LOCAL_CLASS("\"volumeBindingMode\":\"Immediate\""));
    vfx_serve(
        "persistentvolumeclaims",
        pvc_json((pvc_args){.cls = "local",
                            .annotations = "\"volume.kubernetes.io/selected-node\":\"node-b\""}));
    rcf_answer("POST", VOLUMES, 201, "{}");
    run_pvc_controller();
    expect_no_more_writes(1);
    json_object *v = rcf_assert_api(0, "POST", VOLUMES);
    cr_expect_null(rec_obj_at(v, "spec.nodeName"), "%s", json_object_to_json_string(v));
}

Test(vol_dyn, a_volume_that_cannot_be_placed_later_shows_on_the_claim)
{
    /* The Volume made for the claim turns up in the cache afterwards, not
     * placed: its change wakes the claim (the Volume -> PVC watch). */
    vfx_serve("storageclasses", LOCAL_CLASS(NULL));
    vfx_serve("persistentvolumeclaims", pvc_json((pvc_args){.cls = "local"}));
    vfx_serve_events("volumes", "",
                     rcf_fmt("{\"type\":\"ADDED\",\"object\":%s}\n",
                             volume_json("uid-vol", PVC_OWNER, "False", "InsufficientCapacity",
                                         "no StoragePool has 2Gi available")),
                     1000);
    rcf_answer("POST", VOLUMES, 201, "{}");
    vfx_run(VOL_PVC_CONTROLLER);
    vfx_wait_reconciles(VOL_PVC_CONTROLLER, 2);
    expect_no_more_writes(1);
    rcf_assert_api(0, "POST", VOLUMES);
    cr_expect_eq(rcf_events_with_reason("Provisioning"), 1);
    cr_expect_eq(rcf_events_with_reason("ProvisioningFailed"), 1);
    expect_message(rcf_event_message("ProvisioningFailed"),
                   "Volume " NS "/" PVC ": InsufficientCapacity: no StoragePool has 2Gi available");
}

Test(vol_dyn, claims_of_other_provisioners_or_no_class_are_left_alone)
{
    const char *classes[] = {"ebs", "missing", NULL};
    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++) {
        if (i) {
            vfx_stop();
            env_start();
        }
        vfx_serve("storageclasses",
                  rcf_fmt("%s,%s", LOCAL_CLASS(NULL), class_json("ebs", "ebs.csi.aws.com", NULL)));
        vfx_serve("persistentvolumeclaims", pvc_json((pvc_args){.cls = classes[i]}));
        run_pvc_controller();
        expect_no_more_writes(0);
        cr_expect_eq(rcf_events_written(), 0, "class %s", s_(classes[i]));
    }
}

Test(vol_dyn, bound_or_deleting_claims_are_left_alone)
{
    const pvc_args cases[] = {
        {.cls = "local", .spec = "\"volumeName\":\"pv-by-hand\""},
        {.cls = "local", .deleting = true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (i) {
            vfx_stop();
            env_start();
        }
        vfx_serve("storageclasses", LOCAL_CLASS(NULL));
        vfx_serve("persistentvolumeclaims", pvc_json(cases[i]));
        run_pvc_controller();
        expect_no_more_writes(0);
        cr_expect_eq(rcf_events_written(), 0, "case %zu", i);
    }
}

Test(vol_dyn, a_refused_volume_shows_on_the_claim)
{
    vfx_serve("storageclasses", LOCAL_CLASS(NULL));
    vfx_serve("persistentvolumeclaims", pvc_json((pvc_args){.cls = "local"}));
    rcf_answer("POST", VOLUMES, 422, rcf_status_body(422, "Invalid"));
    run_pvc_controller();
    expect_no_more_writes(1);
    rcf_assert_api(0, "POST", VOLUMES);
    cr_expect_eq(rcf_events_with_reason("ProvisioningFailed"), 1);
    expect_message(rcf_event_message("ProvisioningFailed"),
                   "the Volume for this claim was refused: scripted 422 Invalid");
    cr_expect_eq(rcf_events_with_reason("Provisioning"), 0);
}

Test(vol_dyn, a_volume_already_made_is_not_an_error)
{
    vfx_serve("storageclasses", LOCAL_CLASS(NULL));
    vfx_serve("persistentvolumeclaims", pvc_json((pvc_args){.cls = "local"}));
    rcf_answer("POST", VOLUMES, 409, rcf_status_body(409, "AlreadyExists"));
    run_pvc_controller();
    expect_no_more_writes(1);
    ctl_stats st;
    ctl_stats_get(vfx_controller(VOL_PVC_CONTROLLER), &st);
    cr_expect_eq(st.reconcile_error, 0);
    cr_expect_eq(rcf_events_written(), 0);
}

Test(vol_dyn, a_failed_create_is_retried)
{
    vfx_serve("storageclasses", LOCAL_CLASS(NULL));
    vfx_serve("persistentvolumeclaims", pvc_json((pvc_args){.cls = "local"}));
    rcf_answer("POST", VOLUMES, 500, rcf_status_body(500, "InternalError"));
    rcf_answer("POST", VOLUMES, 201, "{}");
    vfx_run(VOL_PVC_CONTROLLER);
    vfx_wait_reconciles(VOL_PVC_CONTROLLER, 2);
    ctl_stats st;
    ctl_stats_get(vfx_controller(VOL_PVC_CONTROLLER), &st);
    cr_expect_eq(st.reconcile_error, 1);
    expect_no_more_writes(2);
    rcf_assert_api(0, "POST", VOLUMES);
    rcf_assert_api(1, "POST", VOLUMES);
    cr_expect_eq(rcf_events_with_reason("Provisioning"), 1, "once made");
    cr_expect_eq(rcf_events_with_reason("ProvisioningFailed"), 0,
                 "a server error is retried, not shown as a refusal");
}

/* The claim's Volume exists with Ready False reason: the Warning it gives. */
static void expect_volume_state_event(const char *reason, const char *message, bool warned)
{
    vfx_serve("storageclasses", LOCAL_CLASS(NULL));
    vfx_serve("persistentvolumeclaims", pvc_json((pvc_args){.cls = "local"}));
    vfx_serve("volumes", volume_json("uid-vol", PVC_OWNER, "False", reason, message));
    run_pvc_controller();
    expect_no_more_writes(0);
    cr_expect_eq(rcf_events_with_reason("ProvisioningFailed"), warned ? 1 : 0, "%s", reason);
    if (warned)
        expect_message(rcf_event_message("ProvisioningFailed"),
                       rcf_fmt("Volume " NS "/" PVC ": %s: %s", reason, message));
    cr_expect_eq(rcf_events_with_reason("Provisioning"), 0, "the Volume was made before");
}

Test(vol_dyn, an_over_large_claim_gets_provisioning_failed)
{
    expect_volume_state_event("InvalidSpec", "size 2Ti is larger than every StoragePool", true);
}

Test(vol_dyn, a_claim_without_room_gets_provisioning_failed)
{
    expect_volume_state_event("InsufficientCapacity", "no StoragePool has 2Gi available", true);
}

Test(vol_dyn, a_failed_directory_gets_provisioning_failed)
{
    expect_volume_state_event(VOL_REASON_DIR_FAILED, "mkdir: permission denied", true);
}

Test(vol_dyn, a_volume_on_its_way_gives_no_warning)
{
    expect_volume_state_event(VOL_REASON_PROVISIONING, "waiting for the directory", false);
}

/* ---- a node picked that cannot hold the claim is given back -------------------------- */

#define PVC_PATH "/api/v1/namespaces/" NS "/persistentvolumeclaims/" PVC
#define SELECTED(node) "\"volume.kubernetes.io/selected-node\":\"" node "\""

/* The claim's Volume on node, Ready False reason (placed in pool, or not). */
static const char *wffc_volume_json(const char *node, const char *reason, const char *pool)
{
    return rcf_fmt("{\"metadata\":{\"name\":\"" PVC "\",\"namespace\":\"" NS "\","
                   "\"uid\":\"uid-vol\",\"resourceVersion\":\"50\","
                   "\"annotations\":{\"" VOL_ANN_PV_NAME "\":\"pvc-" PVC_UID "\"},"
                   "\"ownerReferences\":[" PVC_OWNER "]},"
                   "\"spec\":{\"size\":\"2Gi\",\"nodeName\":\"%s\"},"
                   "\"status\":{%s%s%s\"conditions\":[{\"type\":\"Ready\",\"status\":\"False\","
                   "\"reason\":\"%s\",\"message\":\"no room on %s\"}]}}",
                   node, pool ? "\"pool\":\"" : "", pool ? pool : "", pool ? "\"," : "", reason,
                   node);
}

static void serve_wffc(const char *selected, const char *vol_node, const char *reason,
                       const char *pool)
{
    vfx_serve("storageclasses", LOCAL_CLASS("\"volumeBindingMode\":\"WaitForFirstConsumer\""));
    vfx_serve("persistentvolumeclaims",
              pvc_json((pvc_args){.cls = "local", .annotations = selected}));
    vfx_serve("volumes", wffc_volume_json(vol_node, reason, pool));
}

/* Request i DELETEs the claim's Volume with its uid as precondition. */
static void expect_volume_deleted(size_t i)
{
    json_object *d = rcf_assert_api(i, "DELETE", VOLUMES "/" PVC);
    cr_expect_str_eq(rcf_str_at(d, "preconditions.uid"), "uid-vol");
}

/* The claim picked for node-b whose Volume there failed with reason: its
 * pick is given back (a PATCH of the claim, then the Volume's DELETE); the
 * PATCH sent. */
static json_object *give_back_for(const char *reason)
{
    serve_wffc(SELECTED("node-b"), "node-b", reason, NULL);
    rcf_answer("PATCH", PVC_PATH, 200, "{}");
    rcf_answer("DELETE", VOLUMES "/" PVC, 200, RCF_SUCCESS);
    run_pvc_controller();
    expect_no_more_writes(2);
    json_object *p = rcf_assert_api(0, "PATCH", PVC_PATH);
    expect_volume_deleted(1);
    return p;
}

Test(vol_dyn, a_selected_node_without_room_is_given_back_to_the_scheduler)
{
    json_object *p = give_back_for("InsufficientCapacity");
    json_object *ann = rec_obj_at(p, "metadata.annotations");
    json_object *v = NULL;
    cr_expect(json_object_object_get_ex(ann, "volume.kubernetes.io/selected-node", &v) && v == NULL,
              "the annotation is removed (null): %s", json_object_to_json_string(p));
    cr_expect_str_eq(rcf_str_at(p, "metadata.resourceVersion"), "40",
                     "only while the claim is as read");
    cr_expect_eq(rcf_events_with_reason("ProvisioningFailed"), 1);
    cr_expect_eq(rcf_events_with_reason("Rescheduling"), 1);
    expect_message(rcf_event_message("Rescheduling"),
                   "node node-b cannot hold this claim (InsufficientCapacity)");
}

Test(vol_dyn, a_selected_node_whose_pools_are_too_small_is_given_back_too)
{
    give_back_for("InvalidSpec");
}

Test(vol_dyn, a_volume_of_an_earlier_pick_is_deleted_without_touching_the_claim)
{
    /* kube-scheduler picked node-c since: the Volume for node-b goes, quietly. */
    serve_wffc(SELECTED("node-c"), "node-b", "InsufficientCapacity", NULL);
    rcf_answer("DELETE", VOLUMES "/" PVC, 200, RCF_SUCCESS);
    run_pvc_controller();
    expect_no_more_writes(1);
    expect_volume_deleted(0);
    cr_expect_eq(rcf_events_with_reason("Rescheduling"), 0);
    cr_expect_eq(rcf_events_with_reason("ProvisioningFailed"), 0);
}

Test(vol_dyn, a_changed_claim_is_looked_at_again_before_giving_back)
{
    serve_wffc(SELECTED("node-b"), "node-b", "InsufficientCapacity", NULL);
    rcf_answer("PATCH", PVC_PATH, 409, rcf_status_body(409, "Conflict"));
    run_pvc_controller();
    sleep_ms(100);
    cr_expect_geq(rcf_api_count(), 1);
    rcf_assert_api(0, "PATCH", PVC_PATH);
    for (size_t i = 1; i < rcf_api_count(); i++)
        cr_expect_str_neq(rcf_api_at(i)->method, "DELETE",
                          "the Volume stays until the annotation is off: %s",
                          rcf_describe_requests());
}

Test(vol_dyn, a_placed_or_waiting_volume_keeps_its_node)
{
    /* Placed: it holds bytes there. */
    serve_wffc(SELECTED("node-b"), "node-b", "Provisioning", "pool-b");
    run_pvc_controller();
    expect_no_more_writes(0);
    cr_expect_eq(rcf_events_with_reason("Rescheduling"), 0);
}

Test(vol_dyn, immediate_claims_are_never_rescheduled)
{
    vfx_serve("storageclasses", LOCAL_CLASS("\"volumeBindingMode\":\"Immediate\""));
    vfx_serve("persistentvolumeclaims",
              pvc_json((pvc_args){.cls = "local", .annotations = SELECTED("node-b")}));
    vfx_serve("volumes", wffc_volume_json("node-b", "InsufficientCapacity", NULL));
    run_pvc_controller();
    expect_no_more_writes(0);
    cr_expect_eq(rcf_events_with_reason("ProvisioningFailed"), 1);
    cr_expect_eq(rcf_events_with_reason("Rescheduling"), 0);
}

Test(vol_dyn, a_volume_of_that_name_not_the_claims_is_reported)
{
    vfx_serve("storageclasses", LOCAL_CLASS(NULL));
    vfx_serve("persistentvolumeclaims", pvc_json((pvc_args){.cls = "local"}));
    vfx_serve("volumes", volume_json("uid-other", NULL, NULL, NULL, NULL));
    run_pvc_controller();
    expect_no_more_writes(0);
    cr_expect_eq(rcf_events_with_reason("ProvisioningFailed"), 1);
    expect_message(rcf_event_message("ProvisioningFailed"),
                   "a Volume named " PVC " exists in this namespace and is not this claim's");
}

Test(vol_dyn, the_claim_of_a_static_volume_is_not_provisioned)
{
    /* vol_pv made this PVC for the Volume of its name: owned by it, of the
     * pool's class (which may be ours), volumeName set. */
    vfx_serve("storageclasses", LOCAL_CLASS(NULL));
    vfx_serve("persistentvolumeclaims",
              pvc_json((pvc_args){.cls = "local",
                                  .owner = "{\"apiVersion\":\"provisio.dev/v1alpha1\","
                                           "\"kind\":\"Volume\",\"name\":\"" PVC "\","
                                           "\"uid\":\"uid-static\",\"controller\":true}",
                                  .spec = "\"volumeName\":\"vol-uid-static\""}));
    vfx_serve("volumes", volume_json("uid-static", NULL, "True", "Bound", "bound"));
    run_pvc_controller();
    expect_no_more_writes(0);
    cr_expect_eq(rcf_events_written(), 0);
}

/* ---- CSIStorageCapacity ------------------------------------------------------------- */

/* A StoragePool on node-a of 10Gi with allocated bytes, Ready or not, of
 * class cls (NULL: none). */
static const char *pool_json(const char *name, const char *cls, long long allocated, bool ready)
{
    return rcf_fmt("{\"metadata\":{\"name\":\"%s\",\"uid\":\"uid-%s\",\"resourceVersion\":\"9\","
                   "\"generation\":1},\"spec\":{\"nodeName\":\"node-a\",\"path\":\"/srv/pool\","
                   "\"capacity\":\"10Gi\"%s%s%s},\"status\":{\"allocatedBytes\":%lld,"
                   "\"conditions\":[{\"type\":\"Ready\",\"status\":\"%s\",\"reason\":\"%s\"}]}}",
                   name, name, cls ? ",\"storageClassName\":\"" : "", cls ? cls : "",
                   cls ? "\"" : "", allocated, ready ? "True" : "False",
                   ready ? "Ready" : "AgentNotReporting");
}

/* A CSIStorageCapacity pool.cls as the operator writes it, with capacity q. */
static const char *capacity_json(const char *pool, const char *cls, const char *q)
{
    return rcf_fmt("{\"metadata\":{\"name\":\"%s.%s\",\"namespace\":\"" VFX_OPERATOR_NS "\","
                   "\"uid\":\"uid-cap-%s-%s\",\"resourceVersion\":\"61\","
                   "\"labels\":{\"provisio.dev/pool\":\"%s\",\"provisio.dev/storage-class\":"
                   "\"%s\"}},\"storageClassName\":\"%s\",\"capacity\":\"%s\","
                   "\"maximumVolumeSize\":\"%s\",\"nodeTopology\":{\"matchLabels\":{"
                   "\"kubernetes.io/hostname\":\"node-a\"}}}",
                   pool, cls, pool, cls, pool, cls, cls, q, q);
}

#define GIB 1073741824LL

/* The write of request i is a CSIStorageCapacity pool.cls of q for node-a. */
static void assert_capacity_body(json_object *b, const char *pool, const char *cls, const char *q)
{
    cr_assert_not_null(b);
    cr_expect_str_eq(rcf_str_at(b, "apiVersion"), "storage.k8s.io/v1");
    cr_expect_str_eq(rcf_str_at(b, "kind"), "CSIStorageCapacity");
    cr_expect_str_eq(rcf_str_at(b, "metadata.name"), rcf_fmt("%s.%s", pool, cls));
    cr_expect_str_eq(rcf_str_at(b, "metadata.namespace"), VFX_OPERATOR_NS);
    cr_expect_str_eq(s_(rec_obj_label(b, "provisio.dev/pool")), pool);
    cr_expect_str_eq(s_(rec_obj_label(b, "provisio.dev/storage-class")), cls);
    cr_expect_str_eq(rcf_str_at(b, "storageClassName"), cls);
    cr_expect_str_eq(rcf_str_at(b, "capacity"), q);
    cr_expect_str_eq(rcf_str_at(b, "maximumVolumeSize"), q);
    json_object *ml = rec_obj_at(b, "nodeTopology.matchLabels");
    json_object *host = NULL;
    cr_expect(json_object_object_get_ex(ml, "kubernetes.io/hostname", &host) &&
                  !strcmp(s_(json_object_get_string(host)), "node-a"),
              "%s", json_object_to_json_string(b));
}

static void run_capacity_controller(void)
{
    vfx_run(VOL_CAPACITY_CONTROLLER);
    vfx_wait_reconciles(VOL_CAPACITY_CONTROLLER, 1);
}

Test(vol_dyn, capacity_is_published_per_class_a_ready_pool_serves)
{
    vfx_serve("storageclasses", rcf_fmt("%s,%s,%s", class_json("local", VOL_PROVISIONER, NULL),
                                        class_json("fast", VOL_PROVISIONER, NULL),
                                        class_json("ebs", "ebs.csi.aws.com", NULL)));
    vfx_serve("storagepools", pool_json("p1", NULL, 4 * GIB, true));
    rcf_answer("POST", CAPS, 201, "{}");
    rcf_answer("POST", CAPS, 201, "{}");
    run_capacity_controller();
    expect_no_more_writes(2);
    /* In the order the class cache lists them: find each. */
    json_object *a = rcf_assert_api(0, "POST", CAPS);
    json_object *b = rcf_assert_api(1, "POST", CAPS);
    if (!strcmp(rcf_str_at(a, "storageClassName"), "fast")) {
        json_object *t = a;
        a = b;
        b = t;
    }
    assert_capacity_body(a, "p1", "local", "6Gi");
    assert_capacity_body(b, "p1", "fast", "6Gi");
}

Test(vol_dyn, capacity_only_for_the_pools_own_class)
{
    vfx_serve("storageclasses", rcf_fmt("%s,%s", class_json("local", VOL_PROVISIONER, NULL),
                                        class_json("fast", VOL_PROVISIONER, NULL)));
    vfx_serve("storagepools", pool_json("p1", "fast", 0, true));
    /* One left from when the pool served every class. */
    vfx_serve("csistoragecapacities", capacity_json("p1", "local", "10Gi"));
    rcf_answer("POST", CAPS, 201, "{}");
    rcf_answer("DELETE", CAPS "/p1.local", 200, RCF_SUCCESS);
    run_capacity_controller();
    expect_no_more_writes(2);
    assert_capacity_body(rcf_assert_api(0, "POST", CAPS), "p1", "fast", "10Gi");
    rcf_assert_api(1, "DELETE", CAPS "/p1.local");
}

Test(vol_dyn, capacity_is_updated_when_the_pool_changed_and_left_when_not)
{
    vfx_serve("storageclasses", class_json("local", VOL_PROVISIONER, NULL));
    vfx_serve("storagepools", rcf_fmt("%s,%s", pool_json("p1", NULL, 3 * GIB, true),
                                      pool_json("p2", NULL, 2 * GIB, true)));
    vfx_serve("csistoragecapacities", rcf_fmt("%s,%s", capacity_json("p1", "local", "10Gi"),
                                              capacity_json("p2", "local", "8Gi")));
    rcf_answer("PUT", CAPS "/p1.local", 200, "{}");
    vfx_run(VOL_CAPACITY_CONTROLLER);
    vfx_wait_reconciles(VOL_CAPACITY_CONTROLLER, 2);
    expect_no_more_writes(1);
    json_object *b = rcf_assert_api(0, "PUT", CAPS "/p1.local");
    assert_capacity_body(b, "p1", "local", "7Gi");
    cr_expect_str_eq(rcf_str_at(b, "metadata.resourceVersion"), "61",
                     "the update is decided on the cached object");
}

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

Test(vol_dyn, capacity_of_a_pool_is_written_at_most_once_a_second)
{
    vfx_serve("storageclasses", class_json("local", VOL_PROVISIONER, NULL));
    vfx_serve("storagepools", pool_json("p1", NULL, 0, true));
    rcf_answer("POST", CAPS, 201, "{}");
    double t0 = mono_now();
    run_capacity_controller();
    rcf_assert_api_count(1);
    /* Again at once: the cache does not show the new object yet, yet
     * nothing is written; the pool is looked at again later. */
    cr_assert_eq(ctl_enqueue(vfx_controller(VOL_CAPACITY_CONTROLLER), "", "p1"), KC_OK);
    vfx_wait_reconciles(VOL_CAPACITY_CONTROLLER, 2);
    if (mono_now() - t0 > 0.9)
        cr_skip_test("the machine took %.2f s for two reconciles: the pace cannot be seen",
                     mono_now() - t0);
    ctl_stats st;
    ctl_stats_get(vfx_controller(VOL_CAPACITY_CONTROLLER), &st);
    cr_expect_eq(st.reconcile_requeue_after, 1, "the second look waits for the pace");
    rcf_assert_api_count(1);
}

Test(vol_dyn, capacity_is_withdrawn_from_a_pool_not_ready)
{
    vfx_serve("storageclasses", class_json("local", VOL_PROVISIONER, NULL));
    vfx_serve("storagepools", pool_json("p1", NULL, 0, false));
    vfx_serve("csistoragecapacities", capacity_json("p1", "local", "10Gi"));
    rcf_answer("DELETE", CAPS "/p1.local", 200, RCF_SUCCESS);
    run_capacity_controller();
    expect_no_more_writes(1);
    rcf_assert_api(0, "DELETE", CAPS "/p1.local");
}

Test(vol_dyn, capacity_of_a_class_no_longer_ours_is_withdrawn)
{
    vfx_serve("storageclasses", class_json("local", "ebs.csi.aws.com", NULL));
    vfx_serve("storagepools", pool_json("p1", NULL, 0, true));
    vfx_serve("csistoragecapacities", capacity_json("p1", "local", "10Gi"));
    rcf_answer("DELETE", CAPS "/p1.local", 200, RCF_SUCCESS);
    run_capacity_controller();
    expect_no_more_writes(1);
    rcf_assert_api(0, "DELETE", CAPS "/p1.local");
}
