/* Unit tests of kc_path: request paths and query strings of a kc_ref. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kc_client.h"
#include "kc_client_internal.h"
#include "pv_strbuf.h"

/* kc_path must succeed and give exactly want. */
static void assert_path(const kc_ref *ref, const kc_list_opts *opts, bool watch, const char *want)
{
    char *got = (char *)0x1;
    kc_error err = KC_ERROR_INIT;
    int rc = kc_path(ref, opts, watch, &got, &err);
    cr_assert_eq(rc, KC_OK, "kc_path failed: %s", err.message ? err.message : "");
    cr_assert_str_eq(got, want);
    free(got);
    kc_error_clear(&err);
}

/* kc_path must refuse ref with KC_ERR_INVALID_ARG and a message naming what. */
static void assert_refused(const kc_ref *ref, const kc_list_opts *opts, const char *what)
{
    char *got = (char *)0x1;
    kc_error err = KC_ERROR_INIT;
    int rc = kc_path(ref, opts, false, &got, &err);
    cr_assert_eq(rc, KC_ERR_INVALID_ARG, "want refusal for %s, rc %d", what, rc);
    cr_assert_null(got, "out is NULL on failure");
    cr_assert_eq(err.code, KC_ERR_INVALID_ARG);
    cr_assert(err.message && strstr(err.message, what), "message \"%s\" names %s",
              err.message ? err.message : "(null)", what);
    kc_error_clear(&err);
}

Test(path, core_group_collection_and_object)
{
    kc_ref ref = {.version = "v1", .resource = "nodes"};
    assert_path(&ref, NULL, false, "/api/v1/nodes");
    ref.group = "";
    ref.name = "worker-1";
    assert_path(&ref, NULL, false, "/api/v1/nodes/worker-1");
}

Test(path, named_group_collection_and_object)
{
    kc_ref ref = {.group = "coordination.k8s.io", .version = "v1", .resource = "leases"};
    assert_path(&ref, NULL, false, "/apis/coordination.k8s.io/v1/leases");
    ref.namespace_ = "provisio-system";
    ref.name = "provisio-leader";
    assert_path(&ref, NULL, false,
                "/apis/coordination.k8s.io/v1/namespaces/provisio-system/leases/provisio-leader");
}

Test(path, namespaced_and_cluster_scoped)
{
    kc_ref claims = {.group = "provisio.dev",
                     .version = "v1alpha1",
                     .resource = "ipclaims",
                     .namespace_ = "team-a"};
    assert_path(&claims, NULL, false, "/apis/provisio.dev/v1alpha1/namespaces/team-a/ipclaims");
    claims.namespace_ = NULL; /* all namespaces */
    assert_path(&claims, NULL, false, "/apis/provisio.dev/v1alpha1/ipclaims");
    claims.namespace_ = ""; /* "" is all namespaces too, as client-go's NamespaceAll */
    assert_path(&claims, NULL, false, "/apis/provisio.dev/v1alpha1/ipclaims");
    kc_ref pods = {.version = "v1",
                   .resource = "pods",
                   .namespace_ = "kube-system",
                   .name = "coredns-5d78c9869d-7hxzl"};
    assert_path(&pods, NULL, false, "/api/v1/namespaces/kube-system/pods/coredns-5d78c9869d-7hxzl");
}

Test(path, subresource_follows_the_name)
{
    kc_ref ref = {.group = "provisio.dev",
                  .version = "v1alpha1",
                  .resource = "ipclaims",
                  .namespace_ = "ns",
                  .name = "x",
                  .subresource = "status"};
    assert_path(&ref, NULL, false, "/apis/provisio.dev/v1alpha1/namespaces/ns/ipclaims/x/status");
    kc_ref scale = {.group = "apps",
                    .version = "v1",
                    .resource = "deployments",
                    .namespace_ = "default",
                    .name = "web",
                    .subresource = "scale"};
    assert_path(&scale, NULL, false, "/apis/apps/v1/namespaces/default/deployments/web/scale");
    kc_ref ns = {.version = "v1", .resource = "namespaces", .name = "gone", .subresource = ""};
    assert_path(&ns, NULL, false, "/api/v1/namespaces/gone");
}

Test(path, odd_names_are_percent_escaped_per_segment)
{
    kc_ref ref = {.version = "v1",
                  .resource = "configmaps",
                  .namespace_ = "a/b",
                  .name = "x y?z#%&=+\xc3\xbc"};
    assert_path(&ref, NULL, false,
                "/api/v1/namespaces/a%2Fb/configmaps/x%20y%3Fz%23%25%26%3D%2B%C3%BC");
    kc_ref ok = {
        .version = "v1", .resource = "secrets", .namespace_ = "ns", .name = "A-Za-z0-9._~"};
    assert_path(&ok, NULL, false, "/api/v1/namespaces/ns/secrets/A-Za-z0-9._~");
    kc_ref slash = {.group = "provisio.dev",
                    .version = "v1alpha1",
                    .resource = "ippools",
                    .name = "../../api/v1/secrets"};
    assert_path(&slash, NULL, false,
                "/apis/provisio.dev/v1alpha1/ippools/..%2F..%2Fapi%2Fv1%2Fsecrets");
}

Test(path, selectors_are_query_escaped)
{
    kc_ref ref = {.version = "v1", .resource = "pods", .namespace_ = "default"};
    kc_list_opts o = {.label_selector = "app=web,tier!=db,env in (a, b)",
                      .field_selector = "spec.nodeName=worker 1,status.phase!=Failed"};
    assert_path(&ref, &o, false,
                "/api/v1/namespaces/default/pods?labelSelector=app%3Dweb%2Ctier%21%3Ddb%2Cenv%20in%"
                "20%28a%2C%20b%29&fieldSelector=spec.nodeName%3Dworker%201%2Cstatus.phase%21%"
                "3DFailed");
    kc_list_opts amp = {.label_selector = "a&b=c#d+e"};
    assert_path(&ref, &amp, false,
                "/api/v1/namespaces/default/pods?labelSelector=a%26b%3Dc%23d%2Be");
}

Test(path, every_query_option_in_order)
{
    kc_ref ref = {.group = "provisio.dev", .version = "v1alpha1", .resource = "ipclaims"};
    kc_list_opts o = {.label_selector = "a=b",
                      .field_selector = "metadata.name=x",
                      .limit = 500,
                      .continue_token = "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MTIzfQ==",
                      .resource_version = "12345",
                      .resource_version_match = "NotOlderThan",
                      .timeout_seconds = 290,
                      .allow_watch_bookmarks = true};
    assert_path(&ref, &o, true,
                "/apis/provisio.dev/v1alpha1/ipclaims?watch=1&labelSelector=a%3Db"
                "&fieldSelector=metadata.name%3Dx&limit=500"
                "&continue=eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MTIzfQ%3D%3D"
                "&resourceVersion=12345&resourceVersionMatch=NotOlderThan&timeoutSeconds=290"
                "&allowWatchBookmarks=true");
}

Test(path, watch_alone_and_unset_options_are_not_sent)
{
    kc_ref ref = {.version = "v1", .resource = "pods"};
    assert_path(&ref, NULL, true, "/api/v1/pods?watch=1");
    kc_list_opts empty = {.label_selector = "", .resource_version = "", .limit = 0};
    assert_path(&ref, &empty, false, "/api/v1/pods");
    kc_list_opts rv = {.resource_version = "0", .limit = 1};
    assert_path(&ref, &rv, false, "/api/v1/pods?limit=1&resourceVersion=0");
}

Test(path, long_inputs_are_not_truncated)
{
    size_t n = 100000;
    char *sel = malloc(n + 1);
    cr_assert(sel);
    memset(sel, 'k', n);
    sel[n] = '\0';
    sel[n / 2] = '=';
    kc_ref ref = {.version = "v1", .resource = "pods"};
    kc_list_opts o = {.label_selector = sel};
    char *out = NULL;
    cr_assert_eq(kc_path(&ref, &o, false, &out, NULL), KC_OK);
    cr_assert_eq(strlen(out), strlen("/api/v1/pods?labelSelector=") + n + 2);
    cr_assert(strstr(out, "k%3Dk"));
    free(out);
    free(sel);
}

/* The one escaper kc_path and kc_client.c's write options share. */
Test(path, add_escaped_passes_exactly_the_unreserved_bytes)
{
    char all[256];
    for (int c = 1; c < 256; c++)
        all[c - 1] = (char)c;
    all[255] = '\0';
    /* Expected: unreserved bytes as they are, every other byte %XX upper-case. */
    char want[3 + 3 * 255 + 1] = "a?=";
    size_t w = 3;
    for (int c = 1; c < 256; c++) {
        bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                          (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
        if (unreserved)
            want[w++] = (char)c;
        else
            w += (size_t)snprintf(want + w, sizeof want - w, "%%%02X", c);
    }
    want[w] = '\0';
    cr_assert_eq(w, 3 + 66 + 3 * (255 - 66), "66 unreserved bytes");

    pv_strbuf b = {0};
    pv_strbuf_add(&b, "a?=");
    kc_path_add_escaped(&b, all);
    cr_assert_not(b.oom);
    cr_assert_eq(b.len, w);
    cr_assert_str_eq(b.p, want);
    kc_path_add_escaped(&b, "");
    cr_assert_eq(b.len, w, "an empty string adds nothing");
    cr_assert_str_eq(b.p, want);
    pv_strbuf_free(&b);

    /* Sticky oom: nothing is appended, the buffer is left as it was. */
    pv_strbuf o = {0};
    pv_strbuf_add(&o, "/x");
    o.oom = true;
    kc_path_add_escaped(&o, "a b");
    cr_assert(o.oom);
    cr_assert_eq(o.len, 2);
    cr_assert_str_eq(o.p, "/x");
    cr_assert_null(pv_strbuf_take(&o, NULL));
}

Test(path, missing_version_or_resource_is_refused)
{
    kc_ref no_version = {.group = "apps", .resource = "deployments"};
    assert_refused(&no_version, NULL, "version");
    kc_ref empty_version = {.version = "", .resource = "pods"};
    assert_refused(&empty_version, NULL, "version");
    kc_ref no_resource = {.version = "v1"};
    assert_refused(&no_resource, NULL, "resource");
    kc_ref name_without_resource = {.version = "v1", .name = "x"};
    assert_refused(&name_without_resource, NULL, "resource");
}

Test(path, bad_names_and_options_are_refused)
{
    kc_ref empty_name = {.version = "v1", .resource = "pods", .namespace_ = "ns", .name = ""};
    assert_refused(&empty_name, NULL, "name");
    kc_ref sub_without_name = {.version = "v1", .resource = "pods", .subresource = "status"};
    assert_refused(&sub_without_name, NULL, "subresource");
    kc_ref dot = {.version = "v1", .resource = "pods", .namespace_ = "ns", .name = ".."};
    assert_refused(&dot, NULL, "name");
    kc_ref dotns = {.version = "v1", .resource = "pods", .namespace_ = "."};
    assert_refused(&dotns, NULL, "namespace");
    kc_ref ok = {.version = "v1", .resource = "pods"};
    kc_list_opts neg_limit = {.limit = -1};
    assert_refused(&ok, &neg_limit, "limit");
    kc_list_opts neg_timeout = {.timeout_seconds = -5};
    assert_refused(&ok, &neg_timeout, "timeoutSeconds");

    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_path(NULL, NULL, false, NULL, &err), KC_ERR_INVALID_ARG);
    cr_assert_eq(kc_path(&ok, NULL, false, NULL, NULL), KC_ERR_INVALID_ARG);
    kc_error_clear(&err);
}
