/*
 * End-to-end tests of the REST client (src/client) against a real control
 * plane: kube-apiserver, etcd and kube-controller-manager of hack/kube-local
 * on loopback, with TLS, RBAC and ServiceAccount tokens. Nothing is mocked.
 *
 * Each test gets a namespace of its own (e2e_setup) that is deleted after it;
 * cluster-scoped objects carry the label provisio-e2e=<namespace> and are
 * deleted too. What a test checks independently of the client (that an
 * object really changed, that RBAC is in place) it checks with kubectl.
 *
 * Run by hand (see hack/README.md):
 *   hack/kube-local up /tmp/kl-e2e
 *   export KUBECONFIG=/tmp/kl-e2e/kubeconfig PROVISIO_KUBE_DIR=/tmp/kl-e2e \
 *          PATH=/tmp/kl-e2e/bin:$PATH PROVISIO_SOURCE_DIR=$PWD
 *   build/tests/e2e_test_client --jobs=1
 * --jobs=1 matters: two tests restart the API server.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "e2e.h"
#include "kc_client.h"
#include "kc_config.h"
#include "testenv.h"

static e2e_ctx T;

static void setup(void)
{
    e2e_setup(&T, "kc-e2e");
}

static void teardown(void)
{
    e2e_teardown(&T);
}

TestSuite(client_e2e, .init = setup, .fini = teardown, .timeout = 300);

/* ---- helpers -------------------------------------------------------------- */

static kc_ref core_ref(const char *resource, const char *name)
{
    return (kc_ref){.version = "v1", .resource = resource, .namespace_ = T.ns, .name = name};
}

static kc_ref claim_ref(const char *name)
{
    return (kc_ref){.group = "provisio.dev",
                    .version = "v1alpha1",
                    .resource = "ipclaims",
                    .namespace_ = T.ns,
                    .name = name};
}

static kc_ref pool_ref(const char *name)
{
    return (kc_ref){
        .group = "provisio.dev", .version = "v1alpha1", .resource = "ippools", .name = name};
}

static const char *msg(const kc_error *err)
{
    return err->message ? err->message : "(no message)";
}

/* Assert a call succeeded; print the server's message when it did not. */
#define expect_ok(rc, err, what)                                                                   \
    cr_assert_eq((rc), KC_OK, "%s: %s (%d): %s", (what), kc_strerror(rc), (rc), msg(err))

/*
 * Assert rc is the API error code with HTTP status http, Status reason
 * reason and a message containing every fragment (NULL-terminated list).
 * Logs the server's message, then clears err.
 */
static void expect_api_error(const char *what, int rc, kc_error *err, int code, long http,
                             const char *reason, ...) __attribute__((sentinel));
static void expect_api_error(const char *what, int rc, kc_error *err, int code, long http,
                             const char *reason, ...)
{
    cr_assert_eq(rc, code, "%s: expected %s, got %s (%d): %s", what, kc_strerror(code),
                 kc_strerror(rc), rc, msg(err));
    cr_assert_eq(err->code, code, "%s: err.code %d", what, err->code);
    cr_assert_eq(err->http_status, http, "%s: HTTP %ld, expected %ld", what, err->http_status,
                 http);
    cr_assert_str_eq(err->reason ? err->reason : "", reason, "%s: reason \"%s\"", what,
                     err->reason ? err->reason : "");
    cr_assert_not_null(err->message, "%s: no message", what);
    va_list ap;
    va_start(ap, reason);
    const char *frag;
    while ((frag = va_arg(ap, const char *)) != NULL)
        cr_assert(strstr(err->message, frag) != NULL, "%s: message lacks \"%s\": %s", what, frag,
                  err->message);
    va_end(ap);
    fprintf(stderr, "  %s -> %s, HTTP %ld %s: %s\n", what, kc_strerror(rc), err->http_status,
            err->reason, err->message);
    kc_error_clear(err);
}

/* Set o.<path>.<key> = val (val's reference is taken), creating objects on the way. */
static void jset(json_object *o, const char *path, const char *key, json_object *val)
{
    char *copy = strdup(path);
    cr_assert_not_null(copy);
    char *save = NULL;
    for (char *seg = strtok_r(copy, ".", &save); seg; seg = strtok_r(NULL, ".", &save)) {
        json_object *next = NULL;
        if (!json_object_object_get_ex(o, seg, &next) ||
            !json_object_is_type(next, json_type_object)) {
            next = json_object_new_object();
            cr_assert_not_null(next);
            json_object_object_add(o, seg, next);
        }
        o = next;
    }
    free(copy);
    json_object_object_add(o, key, val);
}

static json_object *jcopy(json_object *o)
{
    json_object *c = NULL;
    cr_assert_eq(json_object_deep_copy(o, &c, NULL), 0);
    return c;
}

static int jint(json_object *o, const char *path)
{
    json_object *v = e2e_get(o, path);
    cr_assert_not_null(v, "no %s in %s", path, json_object_to_json_string(o));
    return json_object_get_int(v);
}

static size_t jlen(json_object *o, const char *path)
{
    json_object *v = e2e_get(o, path);
    cr_assert(v && json_object_is_type(v, json_type_array), "no array %s", path);
    return json_object_array_length(v);
}

static void expect_str(json_object *o, const char *path, const char *want)
{
    const char *got = e2e_str(o, path);
    cr_assert(got && !strcmp(got, want), "%s is \"%s\", expected \"%s\"", path,
              got ? got : "(absent)", want);
}

/* kubectl get ... -o jsonpath=EXPR, trimmed. */
static char *kubectl_jsonpath(const char *kind, const char *name, const char *ns, const char *expr)
{
    char *arg = NULL;
    cr_assert_geq(asprintf(&arg, "-o=jsonpath=%s", expr), 0);
    char *out = ns ? e2e_kubectl_ok(NULL, "get", kind, name, "-n", ns, arg, NULL)
                   : e2e_kubectl_ok(NULL, "get", kind, name, arg, NULL);
    free(arg);
    return out;
}

static void expect_kubectl_jsonpath(const char *kind, const char *name, const char *ns,
                                    const char *expr, const char *want)
{
    char *got = kubectl_jsonpath(kind, name, ns, expr);
    cr_assert_str_eq(got, want, "kubectl get %s %s %s: \"%s\", expected \"%s\"", kind, name, expr,
                     got, want);
    free(got);
}

typedef struct get_probe {
    kc_client *c;
    kc_ref ref;
} get_probe;

static bool is_gone(void *arg)
{
    get_probe *p = arg;
    kc_error err = KC_ERROR_INIT;
    int rc = kc_get(p->c, &p->ref, NULL, &err);
    kc_error_clear(&err);
    return rc == KC_ERR_NOT_FOUND;
}

/* ---- the server ----------------------------------------------------------- */

Test(client_e2e, server_version_is_the_pinned_kubernetes)
{
    char *body = NULL;
    size_t len = 0;
    kc_error err = KC_ERROR_INIT;
    int rc = kc_request_raw(T.client, "GET", "/version", NULL, NULL, 0, &body, &len, &err);
    expect_ok(rc, &err, "GET /version");
    json_object *v = json_tokener_parse(body);
    cr_assert_not_null(v, "/version is not JSON: %s", body);
    const char *git = e2e_str(v, "gitVersion");
    cr_assert_not_null(git);
    fprintf(stderr, "server: Kubernetes %s (%s, %s) at %s\n", git,
            e2e_str(v, "platform") ? e2e_str(v, "platform") : "?",
            e2e_str(v, "goVersion") ? e2e_str(v, "goVersion") : "?", kc_config_server(T.cfg));

    char *gomod_path = NULL;
    cr_assert_geq(asprintf(&gomod_path, "%s/tools/kube-local/go.mod", e2e_source_dir()), 0);
    char *gomod = testenv_read_file(gomod_path, NULL);
    cr_assert_not_null(gomod, "cannot read %s", gomod_path);
    const char *line = strstr(gomod, "\tk8s.io/kubernetes v");
    cr_assert_not_null(line, "no k8s.io/kubernetes in %s", gomod_path);
    line += strlen("\tk8s.io/kubernetes ");
    size_t vl = strcspn(line, " \n");
    cr_assert(strlen(git) == vl && !strncmp(git, line, vl), "server %s, go.mod pins %.*s", git,
              (int)vl, line);
    free(gomod);
    free(gomod_path);
    json_object_put(v);
    free(body);
}

/* ---- a custom resource ---------------------------------------------------- */

/* opts.http2 asks for HTTP/2 through ALPN, which kube-apiserver offers: every
 * exchange uses it, over one kept-alive connection. */
Test(client_e2e, http2_when_asked_for)
{
    kc_client *c = NULL;
    kc_error err = KC_ERROR_INIT;
    kc_client_opts o = {.http2 = true};
    int rc = kc_client_new(T.cfg, &o, &c, &err);
    expect_ok(rc, &err, "kc_client_new");
    for (int i = 0; i < 5; i++) {
        char *body = NULL;
        size_t len = 0;
        rc = kc_request_raw(c, "GET", "/version", NULL, NULL, 0, &body, &len, &err);
        expect_ok(rc, &err, "GET /version");
        free(body);
    }
    kc_client_stats st;
    kc_client_stats_get(c, &st);
    cr_assert_eq(st.responses, 5);
    cr_assert_eq(st.http2_responses, 5, "%" PRIu64 " of 5 over HTTP/2", st.http2_responses);
    cr_assert_eq(st.connections_opened, 1);
    kc_client_free(c);
}

Test(client_e2e, ipclaim_create_get_update_conflict_exists_delete_not_found)
{
    e2e_apply_crds();
    kc_error err = KC_ERROR_INIT;
    kc_ref coll = claim_ref(NULL);
    kc_ref one = claim_ref("claim-a");
    json_object *body = e2e_json("{\"apiVersion\":\"provisio.dev/v1alpha1\",\"kind\":\"IPClaim\","
                                 "\"metadata\":{\"name\":\"claim-a\",\"labels\":{\"app\":\"e2e\"}},"
                                 "\"spec\":{\"pool\":\"pool-a\",\"address\":\"10.20.0.5\"}}");

    json_object *created = NULL;
    int rc = kc_create(T.client, &coll, body, NULL, &created, &err);
    expect_ok(rc, &err, "create IPClaim");
    expect_str(created, "metadata.namespace", T.ns);
    expect_str(created, "spec.pool", "pool-a");
    cr_assert_not_null(e2e_str(created, "metadata.uid"));
    cr_assert_gt(e2e_rv(created), 0);
    expect_kubectl_jsonpath("ipclaims.provisio.dev", "claim-a", T.ns, "{.spec.address}",
                            "10.20.0.5");

    json_object *got = NULL;
    rc = kc_get(T.client, &one, &got, &err);
    expect_ok(rc, &err, "get IPClaim");
    expect_str(got, "metadata.uid", e2e_str(created, "metadata.uid"));
    cr_assert_eq(e2e_rv(got), e2e_rv(created));

    /* PUT with the current resourceVersion. */
    json_object *changed = jcopy(got);
    jset(changed, "metadata.labels", "stage", json_object_new_string("two"));
    json_object *updated = NULL;
    rc = kc_update(T.client, &one, changed, NULL, &updated, &err);
    expect_ok(rc, &err, "update IPClaim");
    cr_assert_gt(e2e_rv(updated), e2e_rv(got));
    expect_str(updated, "metadata.labels.stage", "two");
    expect_kubectl_jsonpath("ipclaims.provisio.dev", "claim-a", T.ns, "{.metadata.labels.stage}",
                            "two");

    /* PUT with the old resourceVersion: someone else won. */
    json_object *stale = jcopy(got);
    jset(stale, "metadata.labels", "stage", json_object_new_string("stale"));
    rc = kc_update(T.client, &one, stale, NULL, NULL, &err);
    expect_api_error("stale update", rc, &err, KC_ERR_CONFLICT, 409, "Conflict",
                     "ipclaims.provisio.dev \"claim-a\"", "the object has been modified", NULL);
    expect_kubectl_jsonpath("ipclaims.provisio.dev", "claim-a", T.ns, "{.metadata.labels.stage}",
                            "two");

    /* The schema's immutability rule answers through the same path. */
    json_object *moved = jcopy(updated);
    jset(moved, "spec", "pool", json_object_new_string("pool-b"));
    rc = kc_update(T.client, &one, moved, NULL, NULL, &err);
    expect_api_error("change spec.pool", rc, &err, KC_ERR_INVALID, 422, "Invalid",
                     "spec.pool is immutable", NULL);

    rc = kc_create(T.client, &coll, body, NULL, NULL, &err);
    expect_api_error("second create", rc, &err, KC_ERR_ALREADY_EXISTS, 409, "AlreadyExists",
                     "ipclaims.provisio.dev \"claim-a\" already exists", NULL);

    json_object *deleted = NULL;
    rc = kc_delete(T.client, &one, NULL, &deleted, &err);
    expect_ok(rc, &err, "delete IPClaim");
    /* Nothing holds it (no finalizer): a Status naming what was deleted. */
    expect_str(deleted, "kind", "Status");
    expect_str(deleted, "status", "Success");
    expect_str(deleted, "details.name", "claim-a");
    expect_str(deleted, "details.uid", e2e_str(created, "metadata.uid"));

    rc = kc_get(T.client, &one, NULL, &err);
    expect_api_error("get after delete", rc, &err, KC_ERR_NOT_FOUND, 404, "NotFound",
                     "ipclaims.provisio.dev \"claim-a\" not found", NULL);
    rc = kc_delete(T.client, &one, NULL, NULL, &err);
    expect_api_error("second delete", rc, &err, KC_ERR_NOT_FOUND, 404, "NotFound", NULL);

    json_object_put(deleted);
    json_object_put(moved);
    json_object_put(stale);
    json_object_put(updated);
    json_object_put(changed);
    json_object_put(got);
    json_object_put(created);
    json_object_put(body);
}

Test(client_e2e, invalid_ippool_is_refused_with_the_schema_message)
{
    e2e_apply_crds();
    e2e_cleanup_cluster_scoped(&T, "ippools.provisio.dev");
    kc_error err = KC_ERROR_INIT;
    char *name = e2e_unique_name("badpool");
    kc_ref coll = pool_ref(NULL);

    json_object *bad = e2e_json("{\"apiVersion\":\"provisio.dev/v1alpha1\",\"kind\":\"IPPool\","
                                "\"metadata\":{\"name\":\"%s\",\"labels\":{\"%s\":\"%s\"}},"
                                "\"spec\":{\"cidr\":\"10.0.0.300/8\"}}",
                                name, E2E_LABEL_KEY, T.ns);
    int rc = kc_create(T.client, &coll, bad, NULL, NULL, &err);
    expect_api_error("IPPool with cidr 10.0.0.300/8", rc, &err, KC_ERR_INVALID, 422, "Invalid",
                     name, "spec.cidr",
                     "spec.cidr 10.0.0.300/8 is not a CIDR such as 10.20.0.0/16 or fd00::/64",
                     NULL);

    json_object *noncanon =
        e2e_json("{\"apiVersion\":\"provisio.dev/v1alpha1\",\"kind\":\"IPPool\","
                 "\"metadata\":{\"name\":\"%s\"},"
                 "\"spec\":{\"cidr\":\"10.20.0.1/16\"}}",
                 name);
    rc = kc_create(T.client, &coll, noncanon, NULL, NULL, &err);
    expect_api_error("IPPool with cidr 10.20.0.1/16", rc, &err, KC_ERR_INVALID, 422, "Invalid",
                     "not in canonical form", "write 10.20.0.0/16", NULL);

    /* Nothing was stored. */
    e2e_proc p;
    int st = e2e_kubectl(&p, NULL, "get", "ippools.provisio.dev", name, NULL);
    cr_assert_neq(st, 0, "kubectl found the refused pool: %s", p.out);
    cr_assert(strstr(p.err, "NotFound") || strstr(p.err, "not found"), "%s", p.err);
    e2e_proc_free(&p);

    json_object_put(noncanon);
    json_object_put(bad);
    free(name);
}

Test(client_e2e, status_subresource_is_written_apart_from_the_main_resource)
{
    e2e_apply_crds();
    e2e_cleanup_cluster_scoped(&T, "ippools.provisio.dev");
    kc_error err = KC_ERROR_INIT;
    char *name = e2e_unique_name("pool");
    kc_ref one = pool_ref(name);
    kc_ref status = one;
    status.subresource = "status";

    json_object *body = e2e_json("{\"apiVersion\":\"provisio.dev/v1alpha1\",\"kind\":\"IPPool\","
                                 "\"metadata\":{\"name\":\"%s\",\"labels\":{\"%s\":\"%s\"}},"
                                 "\"spec\":{\"cidr\":\"10.77.0.0/16\"}}",
                                 name, E2E_LABEL_KEY, T.ns);
    json_object *created = NULL;
    kc_ref coll = pool_ref(NULL);
    int rc = kc_create(T.client, &coll, body, NULL, &created, &err);
    expect_ok(rc, &err, "create IPPool");
    cr_assert_null(e2e_get(created, "status.total"));
    cr_assert_eq(jint(created, "metadata.generation"), 1);

    /* PUT .../status: the status is stored, a spec change in the same body is not. */
    json_object *st_body = jcopy(created);
    json_object *st = e2e_json(
        "{\"observedGeneration\":1,\"total\":65533,\"allocated\":0,\"available\":65533,"
        "\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\",\"reason\":\"Computed\","
        "\"message\":\"pool is usable\",\"lastTransitionTime\":\"2025-01-02T15:04:05Z\"}]}");
    json_object_object_add(st_body, "status", st);
    jset(st_body, "spec", "gateway", json_object_new_string("10.77.0.1"));
    json_object *after_status = NULL;
    rc = kc_update(T.client, &status, st_body, NULL, &after_status, &err);
    expect_ok(rc, &err, "PUT status");
    cr_assert_eq(jint(after_status, "status.total"), 65533);
    expect_str(after_status, "status.conditions.0.type", "Ready");
    cr_assert_null(e2e_get(after_status, "spec.gateway"), "spec changed through /status");
    cr_assert_eq(jint(after_status, "metadata.generation"), 1);
    cr_assert_gt(e2e_rv(after_status), e2e_rv(created));
    expect_kubectl_jsonpath("ippools.provisio.dev", name, NULL, "{.status.total}", "65533");

    /* PUT on the main resource: spec is stored, a status change in the body is not. */
    json_object *main_body = jcopy(after_status);
    jset(main_body, "spec", "gateway", json_object_new_string("10.77.0.1"));
    jset(main_body, "status", "total", json_object_new_int(1));
    json_object *after_main = NULL;
    rc = kc_update(T.client, &one, main_body, NULL, &after_main, &err);
    expect_ok(rc, &err, "PUT main resource");
    expect_str(after_main, "spec.gateway", "10.77.0.1");
    cr_assert_eq(jint(after_main, "status.total"), 65533,
                 "status changed through the main resource");
    cr_assert_eq(jint(after_main, "metadata.generation"), 2);
    expect_kubectl_jsonpath("ippools.provisio.dev", name, NULL, "{.status.total}/{.spec.gateway}",
                            "65533/10.77.0.1");

    /* A merge patch of /status, then a main-resource patch of status is ignored. */
    json_object *sp = e2e_json("{\"status\":{\"allocated\":3,\"available\":65530}}");
    json_object *patched = NULL;
    rc = kc_patch(T.client, &status, KC_PATCH_MERGE, sp, NULL, &patched, &err);
    expect_ok(rc, &err, "merge-patch status");
    cr_assert_eq(jint(patched, "status.allocated"), 3);
    json_object *mp = e2e_json("{\"status\":{\"allocated\":99}}");
    rc = kc_patch(T.client, &one, KC_PATCH_MERGE, mp, NULL, NULL, &err);
    expect_ok(rc, &err, "merge-patch status through the main resource");
    expect_kubectl_jsonpath("ippools.provisio.dev", name, NULL,
                            "{.status.allocated}/{.status.available}", "3/65530");

    rc = kc_delete(T.client, &one, NULL, NULL, &err);
    expect_ok(rc, &err, "delete IPPool");

    json_object_put(mp);
    json_object_put(patched);
    json_object_put(sp);
    json_object_put(after_main);
    json_object_put(main_body);
    json_object_put(after_status);
    json_object_put(st_body);
    json_object_put(created);
    json_object_put(body);
    free(name);
}

/* ---- core kinds ----------------------------------------------------------- */

Test(client_e2e, configmap_crud_and_merge_json_strategic_patches)
{
    kc_error err = KC_ERROR_INIT;
    kc_ref coll = core_ref("configmaps", NULL);
    kc_ref one = core_ref("configmaps", "patchme");

    json_object *body = e2e_json("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\","
                                 "\"metadata\":{\"name\":\"patchme\"},"
                                 "\"data\":{\"a\":\"1\",\"b\":\"2\"}}");
    json_object *created = NULL;
    int rc = kc_create(T.client, &coll, body, NULL, &created, &err);
    expect_ok(rc, &err, "create ConfigMap");
    expect_str(created, "data.b", "2");

    json_object *upd = jcopy(created);
    jset(upd, "data", "c", json_object_new_string("3"));
    json_object *updated = NULL;
    rc = kc_update(T.client, &one, upd, NULL, &updated, &err);
    expect_ok(rc, &err, "update ConfigMap");
    expect_str(updated, "data.c", "3");

    /* RFC 7386 merge patch: null deletes, other keys stay. */
    json_object *merge = e2e_json("{\"data\":{\"a\":null,\"d\":\"4\"}}");
    json_object *out = NULL;
    rc = kc_patch(T.client, &one, KC_PATCH_MERGE, merge, NULL, &out, &err);
    expect_ok(rc, &err, "merge patch");
    cr_assert_null(e2e_get(out, "data.a"));
    expect_str(out, "data.b", "2");
    expect_str(out, "data.d", "4");
    json_object_put(out);

    /* RFC 6902 JSON patch, with a test op that holds, then one that fails. */
    json_object *jp = e2e_json("[{\"op\":\"test\",\"path\":\"/data/b\",\"value\":\"2\"},"
                               "{\"op\":\"replace\",\"path\":\"/data/b\",\"value\":\"20\"},"
                               "{\"op\":\"add\",\"path\":\"/metadata/labels\","
                               "\"value\":{\"patched\":\"json\"}}]");
    rc = kc_patch(T.client, &one, KC_PATCH_JSON, jp, NULL, &out, &err);
    expect_ok(rc, &err, "JSON patch");
    expect_str(out, "data.b", "20");
    expect_str(out, "metadata.labels.patched", "json");
    json_object_put(out);
    json_object *jp_fail = e2e_json("[{\"op\":\"test\",\"path\":\"/data/b\",\"value\":\"2\"},"
                                    "{\"op\":\"replace\",\"path\":\"/data/b\",\"value\":\"x\"}]");
    rc = kc_patch(T.client, &one, KC_PATCH_JSON, jp_fail, NULL, NULL, &err);
    expect_api_error("JSON patch with a failing test op", rc, &err, KC_ERR_INVALID, 422, "Invalid",
                     NULL);

    /* Strategic merge patch of a ConfigMap's map. */
    json_object *smp = e2e_json("{\"data\":{\"e\":\"5\"}}");
    rc = kc_patch(T.client, &one, KC_PATCH_STRATEGIC, smp, NULL, &out, &err);
    expect_ok(rc, &err, "strategic merge patch of a ConfigMap");
    expect_str(out, "data.e", "5");
    expect_str(out, "data.c", "3");
    json_object_put(out);
    expect_kubectl_jsonpath("configmap", "patchme", T.ns, "{.data.b}{.data.c}{.data.d}{.data.e}",
                            "20345");

    /*
     * Where the patch types differ: a Service's ports list merges by key
     * (port) under a strategic merge patch and is replaced whole by a merge
     * patch. Seeing both proves the Content-Type reached the server.
     */
    kc_ref svc_coll = core_ref("services", NULL);
    kc_ref svc = core_ref("services", "smp");
    json_object *svc_body =
        e2e_json("{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"smp\"},"
                 "\"spec\":{\"selector\":{\"app\":\"smp\"},"
                 "\"ports\":[{\"name\":\"http\",\"port\":80,\"targetPort\":8080}]}}");
    rc = kc_create(T.client, &svc_coll, svc_body, NULL, NULL, &err);
    expect_ok(rc, &err, "create Service");
    json_object *ports =
        e2e_json("{\"spec\":{\"ports\":[{\"name\":\"https\",\"port\":443,\"targetPort\":8443}]}}");
    rc = kc_patch(T.client, &svc, KC_PATCH_STRATEGIC, ports, NULL, &out, &err);
    expect_ok(rc, &err, "strategic merge patch of Service ports");
    cr_assert_eq(jlen(out, "spec.ports"), 2, "ports: %s",
                 json_object_to_json_string(e2e_get(out, "spec.ports")));
    json_object_put(out);
    rc = kc_patch(T.client, &svc, KC_PATCH_MERGE, ports, NULL, &out, &err);
    expect_ok(rc, &err, "merge patch of Service ports");
    cr_assert_eq(jlen(out, "spec.ports"), 1);
    json_object_put(out);
    expect_kubectl_jsonpath("service", "smp", T.ns, "{.spec.ports[*].port}", "443");

    json_object *status = NULL;
    rc = kc_delete(T.client, &one, NULL, &status, &err);
    expect_ok(rc, &err, "delete ConfigMap");
    expect_str(status, "kind", "Status");
    expect_str(status, "status", "Success");
    rc = kc_get(T.client, &one, NULL, &err);
    expect_api_error("get deleted ConfigMap", rc, &err, KC_ERR_NOT_FOUND, 404, "NotFound",
                     "configmaps \"patchme\" not found", NULL);

    json_object_put(status);
    json_object_put(ports);
    json_object_put(svc_body);
    json_object_put(smp);
    json_object_put(jp_fail);
    json_object_put(jp);
    json_object_put(merge);
    json_object_put(updated);
    json_object_put(upd);
    json_object_put(created);
    json_object_put(body);
}

/* The managedFields entry of manager, or NULL. Borrowed. */
static json_object *managed_entry(json_object *obj, const char *manager)
{
    json_object *mf = e2e_get(obj, "metadata.managedFields");
    if (!mf || !json_object_is_type(mf, json_type_array))
        return NULL;
    for (size_t i = 0; i < json_object_array_length(mf); i++) {
        json_object *e = json_object_array_get_idx(mf, i);
        const char *m = e2e_str(e, "manager");
        if (m && !strcmp(m, manager))
            return e;
    }
    return NULL;
}

Test(client_e2e, server_side_apply_conflicts_without_force_and_takes_over_with_it)
{
    kc_error err = KC_ERROR_INIT;
    kc_ref one = core_ref("configmaps", "applied");
    json_object *a = e2e_json("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\","
                              "\"metadata\":{\"name\":\"applied\"},"
                              "\"data\":{\"owned-by-a\":\"1\",\"shared\":\"a\"}}");
    kc_write_opts wa = {.field_manager = "e2e-manager-a"};
    json_object *out = NULL;
    int rc = kc_patch(T.client, &one, KC_PATCH_APPLY, a, &wa, &out, &err);
    expect_ok(rc, &err, "apply as manager a (creates)");
    expect_str(out, "data.shared", "a");
    json_object *ea = managed_entry(out, "e2e-manager-a");
    cr_assert_not_null(ea, "no managedFields entry for e2e-manager-a");
    expect_str(ea, "operation", "Apply");
    json_object_put(out);

    /* Another manager sets the same field without force: 409 naming the owner. */
    json_object *b = e2e_json("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\","
                              "\"metadata\":{\"name\":\"applied\"},"
                              "\"data\":{\"shared\":\"b\"}}");
    kc_write_opts wb = {.field_manager = "e2e-manager-b"};
    rc = kc_patch(T.client, &one, KC_PATCH_APPLY, b, &wb, NULL, &err);
    expect_api_error("apply as manager b without force", rc, &err, KC_ERR_CONFLICT, 409, "Conflict",
                     "conflict", "e2e-manager-a", ".data.shared", NULL);
    expect_kubectl_jsonpath("configmap", "applied", T.ns, "{.data.shared}", "a");

    /* A dry run with force changes nothing. */
    kc_write_opts dry = {.field_manager = "e2e-manager-b", .force = true, .dry_run = true};
    rc = kc_patch(T.client, &one, KC_PATCH_APPLY, b, &dry, &out, &err);
    expect_ok(rc, &err, "dry-run forced apply");
    expect_str(out, "data.shared", "b");
    json_object_put(out);
    expect_kubectl_jsonpath("configmap", "applied", T.ns, "{.data.shared}", "a");

    /* With force, b takes the field over; a keeps the rest. */
    kc_write_opts wbf = {.field_manager = "e2e-manager-b", .force = true};
    rc = kc_patch(T.client, &one, KC_PATCH_APPLY, b, &wbf, &out, &err);
    expect_ok(rc, &err, "forced apply as manager b");
    expect_str(out, "data.shared", "b");
    expect_str(out, "data.owned-by-a", "1");
    json_object *eb = managed_entry(out, "e2e-manager-b");
    cr_assert_not_null(eb);
    cr_assert_not_null(e2e_get(eb, "fieldsV1.f:data.f:shared"), "b does not own data.shared");
    ea = managed_entry(out, "e2e-manager-a");
    cr_assert_not_null(ea);
    cr_assert_null(e2e_get(ea, "fieldsV1.f:data.f:shared"), "a still owns data.shared");
    cr_assert_not_null(e2e_get(ea, "fieldsV1.f:data.f:owned-by-a"));
    json_object_put(out);
    expect_kubectl_jsonpath("configmap", "applied", T.ns, "{.data.shared}", "b");

    json_object_put(b);
    json_object_put(a);
}

/* ---- delete --------------------------------------------------------------- */

typedef struct fg_probe {
    kc_client *c;
    kc_ref owner, dependent;
    bool dependent_gone_first;
} fg_probe;

/* The owner is gone; and was the dependent gone by then (foreground order)? */
static bool owner_gone(void *arg)
{
    fg_probe *p = arg;
    kc_error err = KC_ERROR_INIT;
    int rc = kc_get(p->c, &p->owner, NULL, &err);
    kc_error_clear(&err);
    if (rc != KC_ERR_NOT_FOUND)
        return false;
    rc = kc_get(p->c, &p->dependent, NULL, &err);
    kc_error_clear(&err);
    p->dependent_gone_first = rc == KC_ERR_NOT_FOUND;
    return true;
}

/* Create ConfigMap owner and a dependent of it; returns the owner (new ref). */
static json_object *make_owner_and_dependent(const char *owner, const char *dependent)
{
    kc_error err = KC_ERROR_INIT;
    kc_ref coll = core_ref("configmaps", NULL);
    json_object *o = e2e_json("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\","
                              "\"metadata\":{\"name\":\"%s\"}}",
                              owner);
    json_object *created = NULL;
    int rc = kc_create(T.client, &coll, o, NULL, &created, &err);
    expect_ok(rc, &err, "create owner");
    json_object *d = e2e_json(
        "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"%s\","
        "\"ownerReferences\":[{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"name\":\"%s\","
        "\"uid\":\"%s\",\"blockOwnerDeletion\":true}]}}",
        dependent, owner, e2e_str(created, "metadata.uid"));
    rc = kc_create(T.client, &coll, d, NULL, NULL, &err);
    expect_ok(rc, &err, "create dependent");
    json_object_put(d);
    json_object_put(o);
    return created;
}

Test(client_e2e, delete_with_preconditions_and_propagation_policies)
{
    kc_error err = KC_ERROR_INIT;
    json_object *owner = make_owner_and_dependent("owner-fg", "dep-fg");
    const char *uid = e2e_str(owner, "metadata.uid");
    kc_ref oref = core_ref("configmaps", "owner-fg");

    /* Preconditions that do not hold: 409 and the object stays. */
    kc_delete_opts wrong_uid = {.precondition_uid = "00000000-0000-0000-0000-000000000000",
                                .grace_period_seconds = -1};
    int rc = kc_delete(T.client, &oref, &wrong_uid, NULL, &err);
    expect_api_error("delete with a wrong uid precondition", rc, &err, KC_ERR_CONFLICT, 409,
                     "Conflict", "\"owner-fg\"", "UID in the precondition",
                     "00000000-0000-0000-0000-000000000000", uid, NULL);
    kc_delete_opts wrong_rv = {.precondition_resource_version = "1", .grace_period_seconds = -1};
    rc = kc_delete(T.client, &oref, &wrong_rv, NULL, &err);
    expect_api_error("delete with a stale resourceVersion precondition", rc, &err, KC_ERR_CONFLICT,
                     409, "Conflict", "ResourceVersion in the precondition (1)", NULL);
    expect_kubectl_jsonpath("configmap", "owner-fg", T.ns, "{.metadata.uid}", uid);

    /*
     * Foreground with the right uid: the answer is the owner, still there,
     * marked for deletion and held by the foregroundDeletion finalizer until
     * the garbage collector has deleted the dependent.
     */
    kc_delete_opts fg = {
        .propagation_policy = "Foreground", .precondition_uid = uid, .grace_period_seconds = -1};
    json_object *answer = NULL;
    rc = kc_delete(T.client, &oref, &fg, &answer, &err);
    expect_ok(rc, &err, "foreground delete");
    expect_str(answer, "metadata.name", "owner-fg");
    cr_assert_not_null(e2e_str(answer, "metadata.deletionTimestamp"));
    expect_str(answer, "metadata.finalizers.0", "foregroundDeletion");
    fg_probe fp = {T.client, oref, core_ref("configmaps", "dep-fg"), false};
    cr_assert(e2e_wait_until(60, 0.2, owner_gone, &fp),
              "foreground: owner-fg still there after 60 s");
    cr_assert(fp.dependent_gone_first, "foreground: the owner went before its dependent");
    json_object_put(answer);

    /* Background: the owner goes at once, the dependent after it. */
    json_object *owner2 = make_owner_and_dependent("owner-bg", "dep-bg");
    kc_ref oref2 = core_ref("configmaps", "owner-bg");
    kc_delete_opts bg = {.propagation_policy = "Background", .grace_period_seconds = -1};
    rc = kc_delete(T.client, &oref2, &bg, NULL, &err);
    expect_ok(rc, &err, "background delete");
    rc = kc_get(T.client, &oref2, NULL, &err);
    expect_api_error("owner right after a background delete", rc, &err, KC_ERR_NOT_FOUND, 404,
                     "NotFound", NULL);
    get_probe dep = {T.client, core_ref("configmaps", "dep-bg")};
    cr_assert(e2e_wait_until(60, 0.2, is_gone, &dep),
              "background: the garbage collector left dep-bg for 60 s");

    json_object_put(owner2);
    json_object_put(owner);
}

/* ---- 1,000 objects: concurrency, pagination, selectors -------------------- */

#define BULK_N 1000
#define BULK_THREADS 8

typedef struct bulk {
    kc_client *c;
    const char *ns;
    atomic_int next;
    atomic_int inflight;
    atomic_int max_inflight;
    atomic_int failures;
    pthread_mutex_t mu;
    char *first_error; /* under mu */
} bulk;

static void bulk_fail(bulk *b, const char *what, int i, const kc_error *err)
{
    atomic_fetch_add(&b->failures, 1);
    pthread_mutex_lock(&b->mu);
    if (!b->first_error && asprintf(&b->first_error, "%s %d: %s", what, i,
                                    err && err->message ? err->message : "") < 0)
        b->first_error = NULL;
    pthread_mutex_unlock(&b->mu);
}

static void *bulk_worker(void *arg)
{
    bulk *b = arg;
    kc_ref coll = {.version = "v1", .resource = "configmaps", .namespace_ = b->ns};
    for (;;) {
        int i = atomic_fetch_add(&b->next, 1);
        if (i >= BULK_N)
            break;
        char *text = NULL;
        if (asprintf(&text,
                     "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{"
                     "\"name\":\"bulk-%04d\",\"labels\":{\"e2e-bulk\":\"yes\",\"group\":\"%d\"}},"
                     "\"data\":{\"i\":\"%d\"}}",
                     i, i % 10, i) < 0) {
            bulk_fail(b, "asprintf", i, NULL);
            continue;
        }
        json_object *body = json_tokener_parse(text);
        free(text);
        if (!body) {
            bulk_fail(b, "parse", i, NULL);
            continue;
        }
        int now = atomic_fetch_add(&b->inflight, 1) + 1;
        int seen = atomic_load(&b->max_inflight);
        while (now > seen && !atomic_compare_exchange_weak(&b->max_inflight, &seen, now))
            ;
        kc_error err = KC_ERROR_INIT;
        int rc = kc_create(b->c, &coll, body, NULL, NULL, &err);
        atomic_fetch_sub(&b->inflight, 1);
        if (rc != KC_OK)
            bulk_fail(b, "create", i, &err);
        kc_error_clear(&err);
        json_object_put(body);
    }
    return NULL;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Append the names of list's items to names[*n] (capacity cap). */
static void collect_names(json_object *list, char **names, size_t *n, size_t cap)
{
    json_object *items = e2e_get(list, "items");
    cr_assert(items && json_object_is_type(items, json_type_array));
    for (size_t i = 0; i < json_object_array_length(items); i++) {
        const char *name = e2e_str(json_object_array_get_idx(items, i), "metadata.name");
        cr_assert_not_null(name);
        cr_assert_lt(*n, cap, "more items than expected");
        names[(*n)++] = strdup(name);
    }
}

/* Sort names and assert they are exactly bulk-0000 .. bulk-0999. */
static void expect_bulk_names(char **names, size_t n, const char *what)
{
    cr_assert_eq(n, BULK_N, "%s: %zu items", what, n);
    qsort(names, n, sizeof(*names), cmp_str);
    for (size_t i = 0; i < n; i++) {
        char want[32];
        snprintf(want, sizeof(want), "bulk-%04zu", i);
        cr_assert_str_eq(names[i], want, "%s: item %zu", what, i);
    }
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
}

static size_t list_count(const char *selector, const char *field_selector, int group_mod)
{
    kc_error err = KC_ERROR_INIT;
    kc_ref coll = core_ref("configmaps", NULL);
    kc_list_opts lo = {.label_selector = selector, .field_selector = field_selector};
    json_object *list = NULL;
    int rc = kc_list(T.client, &coll, &lo, &list, &err);
    expect_ok(rc, &err, selector ? selector : "list");
    json_object *items = e2e_get(list, "items");
    size_t n = items ? json_object_array_length(items) : 0;
    for (size_t i = 0; i < n && group_mod >= 0; i++) {
        json_object *it = json_object_array_get_idx(items, i);
        const char *g = e2e_str(it, "metadata.labels.group");
        cr_assert(g && atoi(g) == group_mod, "%s picked %s", selector,
                  e2e_str(it, "metadata.name"));
    }
    json_object_put(list);
    return n;
}

Test(client_e2e, thousand_configmaps_from_threads_list_in_pages_and_by_selector)
{
    bulk b = {.c = T.client, .ns = T.ns, .mu = PTHREAD_MUTEX_INITIALIZER};
    kc_client_stats st0, st1;
    kc_client_stats_get(T.client, &st0);
    double t0 = e2e_now();
    pthread_t th[BULK_THREADS];
    for (int i = 0; i < BULK_THREADS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, bulk_worker, &b), 0);
    for (int i = 0; i < BULK_THREADS; i++)
        pthread_join(th[i], NULL);
    double dt = e2e_now() - t0;
    fprintf(stderr,
            "  created %d ConfigMaps from %d threads in %.1f s (%.0f/s), "
            "at most %d requests in flight\n",
            BULK_N, BULK_THREADS, dt, BULK_N / dt, atomic_load(&b.max_inflight));
    cr_assert_eq(atomic_load(&b.failures), 0, "%d creates failed; first: %s",
                 atomic_load(&b.failures), b.first_error ? b.first_error : "");
    cr_assert_geq(atomic_load(&b.max_inflight), 2, "the threads never overlapped");
    free(b.first_error);

    /* HTTP/1.1 by default (kc_client.c), and the threads reused their
     * kept-alive connections (about one each; a server may close an idle one
     * now and then, hence the slack). */
    kc_client_stats_get(T.client, &st1);
    uint64_t nresp = st1.responses - st0.responses, nh2 = st1.http2_responses - st0.http2_responses,
             conns = st1.connections_opened - st0.connections_opened;
    fprintf(stderr,
            "  %" PRIu64 " responses, %" PRIu64 " over HTTP/2, %" PRIu64 " new connections\n",
            nresp, nh2, conns);
    cr_assert_geq(nresp, BULK_N);
    cr_assert_eq(nh2, 0, "%" PRIu64 " of %" PRIu64 " responses over HTTP/2", nh2, nresp);
    cr_assert_leq(conns, 2 * BULK_THREADS, "%" PRIu64 " connections for %d threads", conns,
                  BULK_THREADS);

    /* Independent count. */
    char *count = e2e_kubectl_ok(NULL, "get", "configmaps", "-n", T.ns, "-l", "e2e-bulk=yes", "-o",
                                 "name", NULL);
    size_t lines = 0;
    for (const char *p = count; *p; p++)
        lines += *p == '\n';
    cr_assert_eq(lines, BULK_N, "kubectl sees %zu", lines);
    free(count);

    /* Pages of 100, following metadata.continue by hand. */
    kc_error err = KC_ERROR_INIT;
    kc_ref coll = core_ref("configmaps", NULL);
    char **names = calloc(BULK_N, sizeof(*names));
    cr_assert_not_null(names);
    size_t n = 0;
    int pages = 0;
    char *cont = NULL;
    do {
        kc_list_opts lo = {.label_selector = "e2e-bulk=yes", .limit = 100, .continue_token = cont};
        json_object *page = NULL;
        int rc = kc_list(T.client, &coll, &lo, &page, &err);
        expect_ok(rc, &err, "list page");
        pages++;
        fprintf(stderr, "  page %d: %zu items%s\n", pages, jlen(page, "items"),
                e2e_str(page, "metadata.continue") ? ", continue" : "");
        cr_assert_leq(jlen(page, "items"), 100);
        cr_assert_gt(e2e_rv(page), 0);
        collect_names(page, names, &n, BULK_N);
        free(cont);
        const char *next = e2e_str(page, "metadata.continue");
        cont = (next && *next) ? strdup(next) : NULL;
        json_object_put(page);
        cr_assert_leq(pages, 20, "continue never ends");
    } while (cont);
    /*
     * Ten full pages; the server may add an empty eleventh: with a label
     * selector it cannot tell that the rest of the namespace (here
     * kube-root-ca.crt, after "bulk-" in key order) holds no match.
     */
    cr_assert(pages == 10 || pages == 11, "%d pages of at most 100 for %d objects", pages, BULK_N);
    expect_bulk_names(names, n, "paged list");
    free_names(names, n);

    /* kc_list_all, with pages of 100 and with its default page size. */
    long limits[] = {100, 0};
    for (size_t l = 0; l < 2; l++) {
        kc_list_opts lo = {.label_selector = "e2e-bulk=yes", .limit = limits[l]};
        json_object *all = NULL;
        int rc = kc_list_all(T.client, &coll, &lo, &all, &err);
        expect_ok(rc, &err, "kc_list_all");
        cr_assert_null(e2e_get(all, "metadata.continue"));
        cr_assert_gt(e2e_rv(all), 0);
        n = 0;
        collect_names(all, names, &n, BULK_N);
        expect_bulk_names(names, n, limits[l] ? "kc_list_all limit=100" : "kc_list_all");
        free_names(names, n);
        json_object_put(all);
    }
    free(names);

    /* Selectors pick the right subsets. */
    cr_assert_eq(list_count("e2e-bulk=yes,group=3", NULL, 3), 100);
    cr_assert_eq(list_count("e2e-bulk=yes,group in (1,2)", NULL, -1), 200);
    cr_assert_eq(list_count("e2e-bulk=yes,group notin (0,1,2,3,4,5,6,7,8)", NULL, 9), 100);
    cr_assert_eq(list_count("e2e-bulk", "metadata.name=bulk-0007", 7), 1);
    cr_assert_eq(list_count("e2e-bulk=no", NULL, -1), 0);
    /* Without the label: the bulk plus the namespace's kube-root-ca.crt, if published yet. */
    size_t everything = list_count(NULL, NULL, -1);
    cr_assert(everything == BULK_N || everything == BULK_N + 1, "%zu ConfigMaps", everything);
}

/* ---- watch ---------------------------------------------------------------- */

typedef struct seen {
    kc_event_type type;
    char *name; /* NULL for bookmarks */
    unsigned long long rv;
} seen;

typedef struct watch_log {
    pthread_mutex_t mu;
    seen *ev;
    size_t n, cap;
    bool initial_end_annotation; /* a bookmark carried k8s.io/initial-events-end */
} watch_log;

static int log_event(kc_event_type type, json_object *obj, void *user)
{
    watch_log *l = user;
    pthread_mutex_lock(&l->mu);
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        seen *ev = realloc(l->ev, cap * sizeof(*ev));
        if (!ev) {
            pthread_mutex_unlock(&l->mu);
            return KC_ERR_NOMEM;
        }
        l->ev = ev;
        l->cap = cap;
    }
    const char *name = e2e_str(obj, "metadata.name");
    l->ev[l->n].type = type;
    l->ev[l->n].name = (type == KC_EVENT_BOOKMARK || !name) ? NULL : strdup(name);
    l->ev[l->n].rv = e2e_rv(obj);
    l->n++;
    if (type == KC_EVENT_BOOKMARK && e2e_get(obj, "metadata.annotations"))
        l->initial_end_annotation = true;
    pthread_mutex_unlock(&l->mu);
    return 0;
}

static void watch_log_free(watch_log *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->ev[i].name);
    free(l->ev);
}

/* Wait until the log holds at least n events; false after timeout_s. */
static bool watch_log_wait(watch_log *l, size_t n, double timeout_s)
{
    double deadline = e2e_now() + timeout_s;
    pthread_mutex_lock(&l->mu);
    while (l->n < n && e2e_now() < deadline) {
        pthread_mutex_unlock(&l->mu);
        e2e_sleep(0.02);
        pthread_mutex_lock(&l->mu);
    }
    bool ok = l->n >= n;
    pthread_mutex_unlock(&l->mu);
    return ok;
}

typedef struct watch_run {
    kc_watch *w;
    kc_ref ref;
    kc_list_opts opts;
    watch_log *log;
    int rc;
    kc_error err;
    double started, ended;
} watch_run;

static void *watch_thread(void *arg)
{
    watch_run *r = arg;
    r->started = e2e_now();
    r->rc = kc_watch_run(r->w, &r->ref, &r->opts, log_event, r->log, &r->err);
    r->ended = e2e_now();
    return NULL;
}

static json_object *cm_body(const char *name, const char *labels, const char *value)
{
    return e2e_json("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"%s\","
                    "\"labels\":{%s}},\"data\":{\"v\":\"%s\"}}",
                    name, labels, value);
}

Test(client_e2e, watch_from_list_version_sees_changes_in_order_and_bookmarks)
{
    kc_error err = KC_ERROR_INIT;
    kc_ref coll = core_ref("configmaps", NULL);
    const char *selector = "e2e-watch=yes";
    kc_list_opts lo = {.label_selector = selector};
    json_object *list = NULL;
    int rc = kc_list(T.client, &coll, &lo, &list, &err);
    expect_ok(rc, &err, "list before watch");
    char *list_rv = strdup(e2e_str(list, "metadata.resourceVersion"));
    json_object_put(list);

    /* Made between the list and the watch: replayed from the list's version. */
    json_object *a = cm_body("w-a", "\"e2e-watch\":\"yes\"", "1");
    json_object *created = NULL;
    rc = kc_create(T.client, &coll, a, NULL, &created, &err);
    expect_ok(rc, &err, "create w-a");

    /*
     * The API server sends a bookmark 2 s before the watch's deadline (and
     * every minute), but only when its resource version moved past the last
     * event this watcher got: the change to w-other below, which the label
     * selector hides from us, is that move.
     */
    watch_log log = {.mu = PTHREAD_MUTEX_INITIALIZER};
    watch_run run = {.ref = coll, .log = &log};
    run.opts = (kc_list_opts){.label_selector = selector,
                              .resource_version = list_rv,
                              .allow_watch_bookmarks = true,
                              .timeout_seconds = 10};
    char *path = NULL;
    rc = kc_path(&coll, &run.opts, true, &path, &err);
    expect_ok(rc, &err, "kc_path");
    cr_assert(strstr(path, "watch=1") && strstr(path, "allowWatchBookmarks=true") &&
                  strstr(path, "timeoutSeconds=10") && strstr(path, "resourceVersion="),
              "watch path %s", path);
    fprintf(stderr, "  watch GET %s\n", path);
    free(path);
    rc = kc_watch_new(T.client, 0, &run.w, &err);
    expect_ok(rc, &err, "kc_watch_new");
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, watch_thread, &run), 0);
    cr_assert(watch_log_wait(&log, 1, 20), "no event within 20 s");

    /* Made while the watch runs. */
    json_object *upd = jcopy(created);
    jset(upd, "data", "v", json_object_new_string("2"));
    json_object *updated = NULL;
    rc = kc_update(
        T.client,
        &(kc_ref){.version = "v1", .resource = "configmaps", .namespace_ = T.ns, .name = "w-a"},
        upd, NULL, &updated, &err);
    expect_ok(rc, &err, "update w-a");
    kc_ref ra = core_ref("configmaps", "w-a");
    rc = kc_delete(T.client, &ra, NULL, NULL, &err);
    expect_ok(rc, &err, "delete w-a");
    json_object *other = cm_body("w-other", "\"e2e-watch\":\"no\"", "x");
    json_object *other_created = NULL;
    rc = kc_create(T.client, &coll, other, NULL, &other_created, &err);
    expect_ok(rc, &err, "create w-other");
    unsigned long long other_rv = e2e_rv(other_created);

    pthread_join(th, NULL);
    double took = run.ended - run.started;
    fprintf(stderr, "  watch ended after %.1f s: %s\n", took, kc_strerror(run.rc));
    cr_assert_eq(run.rc, KC_OK, "watch: %s: %s", kc_strerror(run.rc), msg(&run.err));
    cr_assert(took > 8.5 && took < 40, "a 10 s watch lasted %.1f s", took);

    /* Exactly ADDED, MODIFIED, DELETED of w-a, in order, versions rising. */
    kc_event_type want[] = {KC_EVENT_ADDED, KC_EVENT_MODIFIED, KC_EVENT_DELETED};
    size_t k = 0, bookmarks = 0;
    unsigned long long last_rv = strtoull(list_rv, NULL, 10), max_bookmark = 0;
    for (size_t i = 0; i < log.n; i++) {
        seen *e = &log.ev[i];
        fprintf(stderr, "  event %-8s %-8s rv %llu\n", kc_event_type_name(e->type),
                e->name ? e->name : "", e->rv);
        cr_assert_geq(e->rv, last_rv, "event %zu goes back from %llu to %llu", i, last_rv, e->rv);
        if (e->type == KC_EVENT_BOOKMARK) {
            bookmarks++;
            if (e->rv > max_bookmark)
                max_bookmark = e->rv;
            last_rv = e->rv;
            continue;
        }
        cr_assert_lt(k, 3, "unexpected event %s %s", kc_event_type_name(e->type), e->name);
        cr_assert_eq(e->type, want[k], "event %zu is %s, expected %s", k,
                     kc_event_type_name(e->type), kc_event_type_name(want[k]));
        cr_assert_str_eq(e->name, "w-a");
        cr_assert_gt(e->rv, last_rv);
        last_rv = e->rv;
        k++;
    }
    cr_assert_eq(k, 3, "saw %zu of ADDED, MODIFIED, DELETED", k);
    cr_assert_eq(log.ev[0].rv, e2e_rv(created));
    cr_assert_geq(bookmarks, 1, "no BOOKMARK in a 10 s watch");
    cr_assert_geq(max_bookmark, other_rv,
                  "the bookmark (%llu) did not move past the hidden change (%llu)", max_bookmark,
                  other_rv);
    cr_assert(!log.initial_end_annotation, "an initial-events-end bookmark without asking");

    kc_watch_free(run.w);
    kc_error_clear(&run.err);
    watch_log_free(&log);
    json_object_put(other_created);
    json_object_put(other);
    json_object_put(updated);
    json_object_put(upd);
    json_object_put(created);
    json_object_put(a);
    free(list_rv);
}

Test(client_e2e, watch_stop_ends_an_idle_watch_promptly)
{
    kc_error err = KC_ERROR_INIT;
    watch_log log = {.mu = PTHREAD_MUTEX_INITIALIZER};
    watch_run run = {.ref = core_ref("configmaps", NULL), .log = &log};
    run.opts = (kc_list_opts){.label_selector = "e2e-nothing=here", .timeout_seconds = 120};
    int rc = kc_watch_new(T.client, 0, &run.w, &err);
    expect_ok(rc, &err, "kc_watch_new");
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, watch_thread, &run), 0);
    e2e_sleep(1.0); /* connected and idle: nothing matches the selector */
    double t0 = e2e_now();
    kc_watch_stop(run.w);
    pthread_join(th, NULL);
    double took = e2e_now() - t0;
    fprintf(stderr, "  stop took %.3f s\n", took);
    cr_assert_eq(run.rc, KC_ERR_STOPPED, "watch: %s: %s", kc_strerror(run.rc), msg(&run.err));
    cr_assert_lt(took, 2.0, "stop took %.1f s", took);
    cr_assert_eq(log.n, 0);
    kc_watch_free(run.w);
    kc_error_clear(&run.err);
    watch_log_free(&log);
}

static int count_event(kc_event_type type, json_object *obj, void *user)
{
    (void)type;
    (void)obj;
    (*(int *)user)++;
    return 0;
}

Test(client_e2e, watch_and_exact_list_older_than_compaction_are_gone)
{
    kc_error err = KC_ERROR_INIT;
    kc_ref coll = core_ref("configmaps", NULL);
    json_object *list = NULL;
    int rc = kc_list(T.client, &coll, NULL, &list, &err);
    expect_ok(rc, &err, "list");
    char *old_rv = strdup(e2e_str(list, "metadata.resourceVersion"));
    json_object_put(list);
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof(name), "churn-%d", i);
        json_object *b = cm_body(name, "", "x");
        rc = kc_create(T.client, &coll, b, NULL, NULL, &err);
        expect_ok(rc, &err, "create churn");
        json_object_put(b);
    }

    /*
     * Compact etcd past old_rv, then restart the API server: its new watch
     * cache starts at the current revision, so neither a watch nor an exact
     * list at old_rv can be served from memory (hack/README.md).
     */
    free(e2e_kube_local("compact"));
    free(e2e_kube_local("restart-apiserver"));

    /* The first request after the restart goes over a connection the old server closed. */
    json_object *cm = NULL;
    rc = kc_get(
        T.client,
        &(kc_ref){.version = "v1", .resource = "configmaps", .namespace_ = T.ns, .name = "churn-0"},
        &cm, &err);
    expect_ok(rc, &err, "get after the restart");
    json_object_put(cm);

    kc_list_opts exact = {.resource_version = old_rv, .resource_version_match = "Exact"};
    rc = kc_list(T.client, &coll, &exact, NULL, &err);
    expect_api_error("list at a compacted resourceVersion", rc, &err, KC_ERR_GONE, 410, "Expired",
                     "too old", NULL);

    kc_watch *w = NULL;
    rc = kc_watch_new(T.client, 0, &w, &err);
    expect_ok(rc, &err, "kc_watch_new");
    int events = 0;
    kc_list_opts wo = {.resource_version = old_rv, .timeout_seconds = 10};
    rc = kc_watch_run(w, &coll, &wo, count_event, &events, &err);
    cr_assert_eq(rc, KC_ERR_GONE, "watch from %s: %s: %s", old_rv, kc_strerror(rc), msg(&err));
    cr_assert_eq(err.code, KC_ERR_GONE);
    cr_assert_str_eq(err.reason ? err.reason : "", "Expired");
    cr_assert(err.message && strstr(err.message, "too old resource version"), "%s", msg(&err));
    fprintf(stderr, "  watch from %s -> %s (%s): %s\n", old_rv, kc_strerror(rc), err.reason,
            err.message);
    kc_error_clear(&err);

    /* What a reflector does next: list again and watch from there. */
    rc = kc_list(T.client, &coll, NULL, &list, &err);
    expect_ok(rc, &err, "relist");
    cr_assert_gt(e2e_rv(list), strtoull(old_rv, NULL, 10));
    kc_list_opts fresh = {.resource_version = e2e_str(list, "metadata.resourceVersion"),
                          .timeout_seconds = 1};
    events = 0;
    rc = kc_watch_run(w, &coll, &fresh, count_event, &events, &err);
    expect_ok(rc, &err, "watch from the relist");
    cr_assert_eq(events, 0);

    json_object_put(list);
    kc_watch_free(w);
    free(old_rv);
}

/*
 * Request hook of the next test: after the first page of a list, create one
 * more ConfigMap, compact etcd and restart the API server, so the continue
 * token of that page has expired when kc_list_all asks for the second.
 */
typedef struct expire_hook {
    const char *ns;
    bool fired;
    int action_status; /* of the first subprocess that failed, else 0 */
    int gets, gone;
} expire_hook;

static void expire_after_first_page(const char *verb, long http_status, void *user)
{
    expire_hook *h = user;
    if (strcmp(verb, "GET") != 0)
        return;
    h->gets++;
    if (http_status == 410)
        h->gone++;
    if (h->fired || http_status != 200)
        return;
    h->fired = true;
    /* No criterion assertions here: the test checks what was recorded. */
    e2e_proc p;
    int st = e2e_kubectl(&p, NULL, "create", "configmap", "page-late", "-n", h->ns, NULL);
    e2e_proc_free(&p);
    if (st == 0) {
        st = e2e_kubectl(&p, NULL, "label", "configmap", "page-late", "-n", h->ns, "e2e-pages=yes",
                         NULL);
        e2e_proc_free(&p);
    }
    char *script = NULL;
    if (asprintf(&script, "%s/hack/kube-local", e2e_source_dir()) < 0 || !e2e_kube_dir()) {
        h->action_status = -1;
        free(script);
        return;
    }
    const char *commands[] = {"compact", "restart-apiserver"};
    for (size_t i = 0; i < 2 && st == 0; i++) {
        const char *argv[] = {script, commands[i], e2e_kube_dir(), NULL};
        st = e2e_run(&p, NULL, 300, argv);
        fprintf(stderr, "%s", p.err);
        e2e_proc_free(&p);
    }
    free(script);
    h->action_status = st;
}

Test(client_e2e, list_all_starts_over_when_its_continue_token_expires)
{
    kc_error err = KC_ERROR_INIT;
    kc_ref coll = core_ref("configmaps", NULL);
    for (int i = 0; i < 5; i++) {
        char name[32];
        snprintf(name, sizeof(name), "page-%d", i);
        json_object *b = cm_body(name, "\"e2e-pages\":\"yes\"", "x");
        int rc = kc_create(T.client, &coll, b, NULL, NULL, &err);
        expect_ok(rc, &err, "create page-N");
        json_object_put(b);
    }
    expire_hook h = {.ns = T.ns};
    kc_client_set_request_hook(T.client, expire_after_first_page, &h);
    kc_list_opts lo = {.label_selector = "e2e-pages=yes", .limit = 2};
    json_object *all = NULL;
    int rc = kc_list_all(T.client, &coll, &lo, &all, &err);
    kc_client_set_request_hook(T.client, NULL, NULL);
    cr_assert(h.fired);
    cr_assert_eq(h.action_status, 0, "kubectl or hack/kube-local failed inside the hook");
    expect_ok(rc, &err, "kc_list_all across an expired continue token");
    fprintf(stderr, "  %d GETs, %d answered 410 Expired\n", h.gets, h.gone);
    cr_assert_eq(h.gone, 1, "the continue request did not expire (%d x 410)", h.gone);

    /* A fresh, consistent list: every object once, the late one included. */
    char *names[8];
    size_t n = 0;
    collect_names(all, names, &n, 8);
    qsort(names, n, sizeof(*names), cmp_str);
    const char *want[] = {"page-0", "page-1", "page-2", "page-3", "page-4", "page-late"};
    cr_assert_eq(n, 6, "%zu items", n);
    for (size_t i = 0; i < n; i++)
        cr_assert_str_eq(names[i], want[i]);
    free_names(names, n);
    char *late_rv = kubectl_jsonpath("configmap", "page-late", T.ns, "{.metadata.resourceVersion}");
    cr_assert_geq(e2e_rv(all), strtoull(late_rv, NULL, 10),
                  "the list's resourceVersion is the first pass's");
    free(late_rv);
    json_object_put(all);
}

/* ---- identity and RBAC ---------------------------------------------------- */

/* Who the server thinks c is (SelfSubjectReview, allowed to everyone authenticated). */
static char *whoami(kc_client *c, int *rc_out, kc_error *err)
{
    kc_ref ref = {
        .group = "authentication.k8s.io", .version = "v1", .resource = "selfsubjectreviews"};
    json_object *body =
        e2e_json("{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"SelfSubjectReview\"}");
    json_object *out = NULL;
    *rc_out = kc_create(c, &ref, body, NULL, &out, err);
    json_object_put(body);
    const char *u = out ? e2e_str(out, "status.userInfo.username") : NULL;
    char *user = u ? strdup(u) : NULL;
    json_object_put(out);
    return user;
}

Test(client_e2e, service_account_without_permissions_is_forbidden)
{
    kc_error err = KC_ERROR_INIT;
    e2e_sa_create(T.ns, "nobody");
    char *token = e2e_sa_token(T.ns, "nobody");
    char *yaml = e2e_kubeconfig_for_token(T.cfg, token, T.ns);
    kc_config *cfg = NULL;
    int rc = kc_config_from_yaml(yaml, strlen(yaml), NULL, &cfg, &err);
    expect_ok(rc, &err, "kc_config_from_yaml");
    cr_assert_str_eq(kc_config_server(cfg), kc_config_server(T.cfg));
    cr_assert_str_eq(kc_config_namespace(cfg), T.ns);
    kc_client *c = e2e_client_new(cfg);
    char *user = e2e_sa_user(T.ns, "nobody");

    /* Authenticated (the server knows who we are)... */
    char *me = whoami(c, &rc, &err);
    expect_ok(rc, &err, "SelfSubjectReview");
    cr_assert_str_eq(me, user);

    /* ...but not authorized. */
    char *quoted = NULL;
    cr_assert_geq(asprintf(&quoted, "User \"%s\"", user), 0);
    kc_ref coll = core_ref("configmaps", NULL);
    rc = kc_list(c, &coll, NULL, NULL, &err);
    expect_api_error("list configmaps as nobody", rc, &err, KC_ERR_FORBIDDEN, 403, "Forbidden",
                     quoted, "cannot list resource \"configmaps\"", T.ns, NULL);
    kc_ref one = core_ref("configmaps", "kube-root-ca.crt");
    rc = kc_get(c, &one, NULL, &err);
    expect_api_error("get a configmap as nobody", rc, &err, KC_ERR_FORBIDDEN, 403, "Forbidden",
                     quoted, "cannot get resource \"configmaps\"", NULL);
    json_object *b = cm_body("nope", "", "x");
    rc = kc_create(c, &coll, b, NULL, NULL, &err);
    expect_api_error("create a configmap as nobody", rc, &err, KC_ERR_FORBIDDEN, 403, "Forbidden",
                     quoted, "cannot create resource \"configmaps\"", NULL);
    json_object_put(b);

    /* A token the server does not know: 401, not 403. */
    char *bad_yaml = e2e_kubeconfig_for_token(T.cfg, "not-a-valid-token", T.ns);
    kc_config *bad_cfg = NULL;
    rc = kc_config_from_yaml(bad_yaml, strlen(bad_yaml), NULL, &bad_cfg, &err);
    expect_ok(rc, &err, "kc_config_from_yaml (bad token)");
    kc_client *bad = e2e_client_new(bad_cfg);
    rc = kc_list(bad, &coll, NULL, NULL, &err);
    expect_api_error("list with an unknown token", rc, &err, KC_ERR_UNAUTHORIZED, 401,
                     "Unauthorized", NULL);

    kc_client_free(bad);
    kc_config_free(bad_cfg);
    free(bad_yaml);
    free(quoted);
    free(me);
    free(user);
    kc_client_free(c);
    kc_config_free(cfg);
    free(yaml);
    free(token);
}

/* Write path with data (0644), failing the test on error. */
static void write_file(const char *dir, const char *name, const char *data, size_t len)
{
    char *path = NULL;
    cr_assert_geq(asprintf(&path, "%s/%s", dir, name), 0);
    cr_assert_eq(testenv_write_file(path, data, len), 0, "write %s: %s", path, strerror(errno));
    free(path);
}

/*
 * One generation of a projected service-account volume, laid out as the
 * kubelet's atomic writer does: DIR/..<gen>/{token,ca.crt,namespace}, the
 * symlink DIR/..data pointing at the current generation (swapped with one
 * rename), and DIR/token etc. pointing through ..data.
 */
static void sa_volume_write(const char *dir, int gen, const char *token, const kc_blob *ca,
                            const char *ns)
{
    char *gdir = NULL, *gname = NULL, *tmp = NULL, *data = NULL;
    cr_assert_geq(asprintf(&gname, "..gen_%d", gen), 0);
    cr_assert_geq(asprintf(&gdir, "%s/%s", dir, gname), 0);
    cr_assert_eq(mkdir(gdir, 0755), 0, "mkdir %s: %s", gdir, strerror(errno));
    write_file(gdir, "token", token, strlen(token));
    write_file(gdir, "ca.crt", (const char *)ca->data, ca->len);
    write_file(gdir, "namespace", ns, strlen(ns));
    cr_assert_geq(asprintf(&tmp, "%s/..data_tmp", dir), 0);
    cr_assert_geq(asprintf(&data, "%s/..data", dir), 0);
    cr_assert_eq(symlink(gname, tmp), 0, "symlink: %s", strerror(errno));
    cr_assert_eq(rename(tmp, data), 0, "rename: %s", strerror(errno));
    if (gen == 1) {
        const char *files[] = {"token", "ca.crt", "namespace"};
        for (size_t i = 0; i < 3; i++) {
            char *link = NULL, *target = NULL;
            cr_assert_geq(asprintf(&link, "%s/%s", dir, files[i]), 0);
            cr_assert_geq(asprintf(&target, "..data/%s", files[i]), 0);
            cr_assert_eq(symlink(target, link), 0, "symlink %s: %s", link, strerror(errno));
            free(link);
            free(target);
        }
    }
    free(gdir);
    free(gname);
    free(tmp);
    free(data);
}

Test(client_e2e, in_cluster_config_picks_up_a_rotated_token)
{
    kc_error err = KC_ERROR_INIT;
    e2e_sa_create(T.ns, "reader-before");
    e2e_sa_create(T.ns, "reader-after");
    char *user_before = e2e_sa_user(T.ns, "reader-before");
    char *user_after = e2e_sa_user(T.ns, "reader-after");
    char *tok_before = e2e_sa_token(T.ns, "reader-before");
    char *tok_after = e2e_sa_token(T.ns, "reader-after");

    /* The API server's loopback address stands in for the kubernetes Service. */
    const char *server = kc_config_server(T.cfg);
    const char *colon = strrchr(server, ':');
    cr_assert(!strncmp(server, "https://", 8) && colon, "server %s", server);
    char *host = strndup(server + 8, (size_t)(colon - server - 8));
    cr_assert_eq(setenv("KUBERNETES_SERVICE_HOST", host, 1), 0);
    cr_assert_eq(setenv("KUBERNETES_SERVICE_PORT", colon + 1, 1), 0);

    kc_tls tls;
    kc_config_tls(T.cfg, &tls);
    char *dir = testenv_tempdir();
    cr_assert_not_null(dir);
    sa_volume_write(dir, 1, tok_before, &tls.ca, T.ns);

    kc_config *cfg = NULL;
    int rc = kc_config_in_cluster(dir, &cfg, &err);
    expect_ok(rc, &err, "kc_config_in_cluster");
    cr_assert(kc_config_is_in_cluster(cfg));
    cr_assert_str_eq(kc_config_server(cfg), server);
    cr_assert_str_eq(kc_config_namespace(cfg), T.ns);
    kc_client *c = e2e_client_new(cfg);

    char *me = whoami(c, &rc, &err);
    expect_ok(rc, &err, "SelfSubjectReview before rotation");
    cr_assert_str_eq(me, user_before);
    free(me);
    kc_ref coll = core_ref("configmaps", NULL);
    rc = kc_list(c, &coll, NULL, NULL, &err);
    expect_api_error("list before rotation", rc, &err, KC_ERR_FORBIDDEN, 403, "Forbidden",
                     user_before, NULL);

    /* Grant the second ServiceAccount read access, and wait until RBAC says so. */
    char *subject = NULL;
    cr_assert_geq(asprintf(&subject, "--serviceaccount=%s:reader-after", T.ns), 0);
    free(e2e_kubectl_ok(NULL, "create", "rolebinding", "reader-after-view", "--clusterrole=view",
                        subject, "-n", T.ns, NULL));
    free(subject);
    cr_assert(e2e_wait_can_i(user_after, "list", "configmaps", T.ns, 30),
              "RBAC never let %s list configmaps", user_after);

    /* Rotate: the same file path now holds the second account's token. */
    sa_volume_write(dir, 2, tok_after, &tls.ca, T.ns);
    json_object *list = NULL;
    rc = kc_list(c, &coll, NULL, &list, &err);
    expect_ok(rc, &err, "list after rotation, same client");
    cr_assert_not_null(e2e_get(list, "items"));
    json_object_put(list);
    me = whoami(c, &rc, &err);
    expect_ok(rc, &err, "SelfSubjectReview after rotation");
    cr_assert_str_eq(me, user_after);
    free(me);

    /* Rewritten in place (same inode) rather than swapped: also picked up. */
    write_file(dir, "token", tok_before, strlen(tok_before));
    rc = kc_list(c, &coll, NULL, NULL, &err);
    expect_api_error("list after rewriting the file in place", rc, &err, KC_ERR_FORBIDDEN, 403,
                     "Forbidden", user_before, NULL);

    kc_client_free(c);
    kc_config_free(cfg);
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
    testenv_rmtree(dir);
    free(dir);
    free(host);
    free(tok_after);
    free(tok_before);
    free(user_after);
    free(user_before);
}
