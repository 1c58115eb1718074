/*
 * Unit tests of kc_discovery: resolving what a person types against recorded
 * discovery documents (tests/fixtures/discovery/, laid out like the URL paths:
 * /api/v1 -> api/v1.json, /apis -> apis.json, /apis/apps/v1 -> apis/apps/v1.json).
 * metrics.k8s.io/v1beta1 is announced in apis.json but has no file: the fake
 * server answers 503 for it, as for an aggregated API that is down.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kc_discovery.h"
#include "testenv.h"

/* ---- a fake API server serving the fixture tree ----------------------------- */

typedef struct fake {
    char paths[64][96]; /* what was asked, in order */
    size_t n;
    const char *fail_path; /* answer this path with fail_code */
    int fail_code;
    const char *swap_path; /* answer this path with the document of swap_with */
    const char *swap_with;
} fake;

static int fake_get(void *user, const char *path, char **body, size_t *len, kc_error *err)
{
    fake *f = user;
    if (f->n < 64)
        snprintf(f->paths[f->n++], sizeof(f->paths[0]), "%s", path);
    if (f->fail_path && !strcmp(path, f->fail_path))
        return kc_error_set(err, f->fail_code, "injected failure for %s", path);
    if (f->swap_path && !strcmp(path, f->swap_path))
        path = f->swap_with;
    char *name = NULL;
    cr_assert_geq(asprintf(&name, "discovery%s.json", path), 0);
    char *file = testenv_fixture_path(name);
    free(name);
    *body = testenv_read_file(file, len);
    free(file);
    static const char unavailable[] =
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\","
        "\"message\":\"the server is currently unable to handle the request\","
        "\"reason\":\"ServiceUnavailable\",\"code\":503}";
    if (!*body)
        return kc_error_from_response(err, 503, unavailable, sizeof(unavailable) - 1, 0);
    return KC_OK;
}

static kc_discovery *loaded(fake *f)
{
    kc_discovery *d = kc_discovery_new();
    cr_assert(d);
    kc_error err = KC_ERROR_INIT;
    int rc = kc_discovery_load(d, fake_get, f, &err);
    cr_assert_eq(rc, KC_OK, "load: %s", err.message ? err.message : "");
    cr_assert_null(err.message, "a successful load leaves no error behind");
    kc_error_clear(&err);
    return d;
}

static void add_file(kc_discovery *d, const char *name, bool group_list)
{
    size_t len;
    char *file = testenv_fixture_path(name);
    char *body = testenv_read_file(file, &len);
    cr_assert(body, "fixture %s", file);
    kc_error err = KC_ERROR_INIT;
    int rc = group_list ? kc_discovery_add_group_list(d, body, len, &err)
                        : kc_discovery_add_resource_list(d, body, len, &err);
    cr_assert_eq(rc, KC_OK, "%s: %s", name, err.message ? err.message : "");
    free(body);
    free(file);
}

/* name must resolve to exactly group/version/resource with that scope. */
static void assert_resolves(const kc_discovery *d, const char *name, const char *group,
                            const char *version, const char *resource, bool namespaced)
{
    const kc_discovery_resource *r = NULL;
    kc_error err = KC_ERROR_INIT;
    int rc = kc_discovery_resolve(d, name, &r, &err);
    cr_assert_eq(rc, KC_OK, "\"%s\": %s", name, err.message ? err.message : "");
    cr_assert(r);
    cr_assert_str_eq(r->group, group, "\"%s\" group", name);
    cr_assert_str_eq(r->version, version, "\"%s\" version", name);
    cr_assert_str_eq(r->resource, resource, "\"%s\" resource", name);
    cr_assert_eq(r->namespaced, namespaced, "\"%s\" scope", name);
    kc_error_clear(&err);
}

static void assert_refused(const kc_discovery *d, const char *name, int code, const char *part)
{
    const kc_discovery_resource *r = (const kc_discovery_resource *)0x1;
    kc_error err = KC_ERROR_INIT;
    int rc = kc_discovery_resolve(d, name, &r, &err);
    cr_assert_eq(rc, code, "\"%s\": rc %d, want %d (%s)", name, rc, code,
                 err.message ? err.message : "");
    cr_assert_null(r);
    cr_assert(err.message && strstr(err.message, part), "\"%s\": message \"%s\" lacks \"%s\"", name,
              err.message ? err.message : "(null)", part);
    kc_error_clear(&err);
}

/* ---- loading ---------------------------------------------------------------- */

Test(discovery, load_fetches_core_group_list_and_every_group_version)
{
    fake f = {0};
    kc_discovery *d = loaded(&f);
    const char *want[] = {"/api/v1",
                          "/apis",
                          "/apis/apiregistration.k8s.io/v1",
                          "/apis/apps/v1",
                          "/apis/events.k8s.io/v1",
                          "/apis/autoscaling/v2",
                          "/apis/autoscaling/v1",
                          "/apis/coordination.k8s.io/v1",
                          "/apis/metrics.k8s.io/v1beta1",
                          "/apis/provisio.dev/v1alpha1"};
    cr_assert_eq(f.n, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < f.n; i++)
        cr_assert_str_eq(f.paths[i], want[i]);
    kc_discovery_free(d);
}

Test(discovery, plural_singular_kind_and_short_names_resolve)
{
    fake f = {0};
    kc_discovery *d = loaded(&f);
    const char *pods[] = {"pods", "pod", "Pod", "PODS", "po"};
    for (size_t i = 0; i < 5; i++)
        assert_resolves(d, pods[i], "", "v1", "pods", true);
    assert_resolves(d, "ns", "", "v1", "namespaces", false);
    assert_resolves(d, "namespace", "", "v1", "namespaces", false);
    assert_resolves(d, "no", "", "v1", "nodes", false);
    assert_resolves(d, "cm", "", "v1", "configmaps", true);
    assert_resolves(d, "ConfigMap", "", "v1", "configmaps", true);
    assert_resolves(d, "sa", "", "v1", "serviceaccounts", true);
    assert_resolves(d, "serviceaccount", "", "v1", "serviceaccounts", true);
    assert_resolves(d, "deploy", "apps", "v1", "deployments", true);
    assert_resolves(d, "lease", "coordination.k8s.io", "v1", "leases", true);
    kc_discovery_free(d);
}

Test(discovery, provisio_short_names_and_scopes)
{
    fake f = {0};
    kc_discovery *d = loaded(&f);
    assert_resolves(d, "ipp", "provisio.dev", "v1alpha1", "ippools", false);
    assert_resolves(d, "ippools", "provisio.dev", "v1alpha1", "ippools", false);
    assert_resolves(d, "IPPool", "provisio.dev", "v1alpha1", "ippools", false);
    assert_resolves(d, "ipc", "provisio.dev", "v1alpha1", "ipclaims", true);
    assert_resolves(d, "ipclaim", "provisio.dev", "v1alpha1", "ipclaims", true);
    kc_discovery_free(d);
}

Test(discovery, resource_dot_group_form)
{
    fake f = {0};
    kc_discovery *d = loaded(&f);
    assert_resolves(d, "leases.coordination.k8s.io", "coordination.k8s.io", "v1", "leases", true);
    assert_resolves(d, "ippools.provisio.dev", "provisio.dev", "v1alpha1", "ippools", false);
    assert_resolves(d, "ipc.provisio.dev", "provisio.dev", "v1alpha1", "ipclaims", true);
    assert_resolves(d, "deploy.apps", "apps", "v1", "deployments", true);
    assert_resolves(d, "Deployment.apps", "apps", "v1", "deployments", true);
    assert_resolves(d, "events.events.k8s.io", "events.k8s.io", "v1", "events", true);
    assert_refused(d, "pods.apps", KC_ERR_NOT_FOUND, "\"pods.apps\"");
    kc_discovery_free(d);
}

Test(discovery, resource_dot_version_dot_group_form)
{
    fake f = {0};
    kc_discovery *d = loaded(&f);
    assert_resolves(d, "deployments.v1.apps", "apps", "v1", "deployments", true);
    assert_resolves(d, "horizontalpodautoscalers.v1.autoscaling", "autoscaling", "v1",
                    "horizontalpodautoscalers", true);
    assert_resolves(d, "hpa.v2.autoscaling", "autoscaling", "v2", "horizontalpodautoscalers", true);
    assert_refused(d, "deployments.v9.apps", KC_ERR_NOT_FOUND, "deployments.v9.apps");
    kc_discovery_free(d);
}

Test(discovery, explicit_group_version_resource_form)
{
    fake f = {0};
    kc_discovery *d = loaded(&f);
    assert_resolves(d, "apps/v1/deployments", "apps", "v1", "deployments", true);
    assert_resolves(d, "v1/pods", "", "v1", "pods", true);
    assert_resolves(d, "/v1/pods", "", "v1", "pods", true);
    assert_resolves(d, "/v1/nodes", "", "v1", "nodes", false);
    assert_resolves(d, "provisio.dev/v1alpha1/ipclaims", "provisio.dev", "v1alpha1", "ipclaims",
                    true);
    assert_resolves(d, "autoscaling/v1/horizontalpodautoscalers", "autoscaling", "v1",
                    "horizontalpodautoscalers", true);
    assert_refused(d, "apps/v2/deployments", KC_ERR_NOT_FOUND, "apps/v2/deployments");
    assert_refused(d, "v2/pods", KC_ERR_NOT_FOUND, "v2/pods");
    kc_discovery_free(d);
}

Test(discovery, preferred_version_of_a_group_wins)
{
    fake f = {0};
    kc_discovery *d = loaded(&f);
    /* autoscaling serves v2 (preferred) and v1, both with horizontalpodautoscalers. */
    assert_resolves(d, "hpa", "autoscaling", "v2", "horizontalpodautoscalers", true);
    assert_resolves(d, "horizontalpodautoscalers.autoscaling", "autoscaling", "v2",
                    "horizontalpodautoscalers", true);
    kc_discovery_free(d);
}

Test(discovery, core_group_wins_over_other_groups)
{
    fake f = {0};
    kc_discovery *d = loaded(&f);
    /* events and "ev" exist in core v1 and events.k8s.io/v1, as in a real cluster. */
    assert_resolves(d, "events", "", "v1", "events", true);
    assert_resolves(d, "ev", "", "v1", "events", true);
    kc_discovery_free(d);
}

Test(discovery, subresources_are_not_resource_types)
{
    fake f = {0};
    kc_discovery *d = loaded(&f);
    assert_refused(d, "pods/status", KC_ERR_NOT_FOUND, "pods/status");
    assert_refused(d, "status", KC_ERR_NOT_FOUND, "\"status\"");
    assert_refused(d, "scale", KC_ERR_NOT_FOUND, "\"scale\"");       /* kind of deployments/scale */
    assert_refused(d, "eviction", KC_ERR_NOT_FOUND, "\"eviction\""); /* pods/eviction */
    assert_refused(d, "PodExecOptions", KC_ERR_NOT_FOUND, "PodExecOptions"); /* pods/exec */
    /* bindings itself is a real (create-only) resource of core v1, unlike pods/binding */
    assert_resolves(d, "binding", "", "v1", "bindings", true);
    kc_discovery_free(d);
}

Test(discovery, unknown_name_is_not_found_naming_failed_group_versions)
{
    fake f = {0};
    kc_discovery *d = loaded(&f);
    assert_refused(d, "foos", KC_ERR_NOT_FOUND, "the server doesn't have a resource type \"foos\"");
    assert_refused(d, "nodes.metrics.k8s.io", KC_ERR_NOT_FOUND,
                   "(discovery failed for metrics.k8s.io/v1beta1)");
    kc_discovery_free(d);

    /* Without failures there is no note. */
    kc_discovery *plain = kc_discovery_new();
    cr_assert(plain);
    add_file(plain, "discovery/api/v1.json", false);
    const kc_discovery_resource *r;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_discovery_resolve(plain, "foos", &r, &err), KC_ERR_NOT_FOUND);
    cr_assert_str_eq(err.message, "the server doesn't have a resource type \"foos\"");
    kc_error_clear(&err);
    kc_discovery_free(plain);
}

Test(discovery, ambiguous_name_lists_candidates)
{
    fake f = {0};
    kc_discovery *d = loaded(&f);
    add_file(d, "discovery/extra/calico-apis.json", true);
    add_file(d, "discovery/extra/calico-v1.json", false);
    assert_refused(d, "ippools", KC_ERR_INVALID_ARG,
                   "matches ippools.provisio.dev, ippools.crd.projectcalico.org");
    assert_refused(d, "IPPool", KC_ERR_INVALID_ARG, "ambiguous");
    assert_resolves(d, "ippools.provisio.dev", "provisio.dev", "v1alpha1", "ippools", false);
    assert_resolves(d, "ippools.crd.projectcalico.org", "crd.projectcalico.org", "v1", "ippools",
                    false);
    assert_resolves(d, "ipp", "provisio.dev", "v1alpha1", "ippools", false);
    assert_resolves(d, "ipamblocks", "crd.projectcalico.org", "v1", "ipamblocks", false);
    kc_discovery_free(d);
}

Test(discovery, malformed_names_are_refused)
{
    fake f = {0};
    kc_discovery *d = loaded(&f);
    assert_refused(d, "", KC_ERR_INVALID_ARG, "empty");
    assert_refused(d, "a/b/c/d", KC_ERR_INVALID_ARG, "malformed");
    assert_refused(d, "/pods", KC_ERR_INVALID_ARG, "malformed");
    assert_refused(d, "v1/", KC_ERR_INVALID_ARG, "malformed");
    assert_refused(d, "pods.", KC_ERR_INVALID_ARG, "malformed");
    assert_refused(d, ".apps", KC_ERR_INVALID_ARG, "malformed");
    const kc_discovery_resource *r;
    cr_assert_eq(kc_discovery_resolve(d, NULL, &r, NULL), KC_ERR_INVALID_ARG);
    cr_assert_eq(kc_discovery_resolve(NULL, "pods", &r, NULL), KC_ERR_INVALID_ARG);
    kc_discovery_free(d);
    kc_discovery_free(NULL);
}

Test(discovery, resolved_resource_makes_a_ref_for_kc_path)
{
    fake f = {0};
    kc_discovery *d = loaded(&f);
    const kc_discovery_resource *r;
    kc_ref ref;
    char *path = NULL;
    cr_assert_eq(kc_discovery_resolve(d, "ipc", &r, NULL), KC_OK);
    kc_discovery_ref(r, "team-a", "c1", &ref);
    cr_assert_eq(kc_path(&ref, NULL, false, &path, NULL), KC_OK);
    cr_assert_str_eq(path, "/apis/provisio.dev/v1alpha1/namespaces/team-a/ipclaims/c1");
    free(path);
    /* A cluster-scoped resource drops the namespace. */
    cr_assert_eq(kc_discovery_resolve(d, "ipp", &r, NULL), KC_OK);
    kc_discovery_ref(r, "team-a", "pool-a", &ref);
    cr_assert_null(ref.namespace_);
    cr_assert_eq(kc_path(&ref, NULL, false, &path, NULL), KC_OK);
    cr_assert_str_eq(path, "/apis/provisio.dev/v1alpha1/ippools/pool-a");
    free(path);
    cr_assert_eq(kc_discovery_resolve(d, "po", &r, NULL), KC_OK);
    kc_discovery_ref(r, "default", NULL, &ref);
    cr_assert_eq(kc_path(&ref, NULL, false, &path, NULL), KC_OK);
    cr_assert_str_eq(path, "/api/v1/namespaces/default/pods");
    free(path);
    kc_discovery_free(d);
}

Test(discovery, fatal_errors_end_the_load_and_group_version_errors_do_not)
{
    /* A transport failure part way through ends the load with that status. */
    fake f = {.fail_path = "/apis/apps/v1", .fail_code = KC_ERR_TRANSPORT};
    kc_discovery *d = kc_discovery_new();
    cr_assert(d);
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_discovery_load(d, fake_get, &f, &err), KC_ERR_TRANSPORT);
    cr_assert(strstr(err.message, "/apis/apps/v1"));
    kc_discovery_free(d);

    /* /api/v1 failing is fatal whatever the error. */
    fake f2 = {.fail_path = "/api/v1", .fail_code = KC_ERR_FORBIDDEN};
    d = kc_discovery_new();
    cr_assert_eq(kc_discovery_load(d, fake_get, &f2, &err), KC_ERR_FORBIDDEN);
    cr_assert_eq(f2.n, 1);
    kc_discovery_free(d);

    /* A group version answering with another group's list is skipped, not trusted. */
    fake f3 = {.swap_path = "/apis/coordination.k8s.io/v1", .swap_with = "/apis/apps/v1"};
    d = kc_discovery_new();
    cr_assert_eq(kc_discovery_load(d, fake_get, &f3, &err), KC_OK);
    assert_refused(d, "leases", KC_ERR_NOT_FOUND, "coordination.k8s.io/v1");
    assert_resolves(d, "deployments", "apps", "v1", "deployments", true);
    kc_error_clear(&err);
    kc_discovery_free(d);
}

Test(discovery, bad_documents_are_decode_errors)
{
    kc_discovery *d = kc_discovery_new();
    cr_assert(d);
    kc_error err = KC_ERROR_INIT;
    struct {
        const char *doc;
        bool group_list;
    } bad[] = {
        {"not json", true},
        {"[1,2]", false},
        {"{\"kind\":\"APIGroupList\"}", true},
        {"{\"groups\":[{\"name\":\"../../secrets\",\"versions\":[]}]}", true},
        {"{\"groups\":[{\"name\":\"ok.io\",\"versions\":[{\"version\":\"v1/x\"}]}]}", true},
        {"{\"kind\":\"APIResourceList\",\"resources\":[]}", false},
        {"{\"groupVersion\":\"apps/v1\"}", false},
        {"{\"groupVersion\":\"/v1\",\"resources\":[]}", false},
        {"{\"groupVersion\":\"a/b/c\",\"resources\":[]}", false},
        {"{\"groupVersion\":\"a b/v1\",\"resources\":[]}", false},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = bad[i].group_list
                     ? kc_discovery_add_group_list(d, bad[i].doc, strlen(bad[i].doc), &err)
                     : kc_discovery_add_resource_list(d, bad[i].doc, strlen(bad[i].doc), &err);
        cr_assert_eq(rc, KC_ERR_DECODE, "document %zu: rc %d", i, rc);
        cr_assert(err.message);
    }
    cr_assert_eq(kc_discovery_add_group_list(d, NULL, 0, &err), KC_ERR_DECODE);
    /* Nothing half-added: core still has no resources. */
    const kc_discovery_resource *r;
    cr_assert_eq(kc_discovery_resolve(d, "pods", &r, &err), KC_ERR_NOT_FOUND);
    kc_error_clear(&err);
    kc_discovery_free(d);
}

Test(discovery, lists_without_singular_names_match_the_kind_and_skip_junk_entries)
{
    /* Older servers send singularName ""; entries without a name or kind are skipped. */
    const char *doc = "{\"kind\":\"APIResourceList\",\"groupVersion\":\"example.com/v1\","
                      "\"resources\":[{\"name\":\"widgets\",\"singularName\":\"\","
                      "\"namespaced\":true,\"kind\":\"Widget\",\"verbs\":[\"get\"]},"
                      "{\"name\":\"\",\"kind\":\"Nameless\"},{\"name\":\"gadgets\"},7]}";
    kc_discovery *d = kc_discovery_new();
    cr_assert(d);
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_discovery_add_resource_list(d, doc, strlen(doc), &err), KC_OK, "%s",
                 err.message ? err.message : "");
    assert_resolves(d, "widget", "example.com", "v1", "widgets", true);
    assert_resolves(d, "widgets.example.com", "example.com", "v1", "widgets", true);
    assert_refused(d, "gadgets", KC_ERR_NOT_FOUND, "gadgets");
    assert_refused(d, "nameless", KC_ERR_NOT_FOUND, "nameless");
    /* Adding the same group version again replaces its list. */
    const char *doc2 = "{\"groupVersion\":\"example.com/v1\",\"resources\":[{\"name\":\"gizmos\","
                       "\"kind\":\"Gizmo\",\"namespaced\":false}]}";
    cr_assert_eq(kc_discovery_add_resource_list(d, doc2, strlen(doc2), &err), KC_OK);
    assert_resolves(d, "gizmo", "example.com", "v1", "gizmos", false);
    assert_refused(d, "widgets", KC_ERR_NOT_FOUND, "widgets");
    kc_error_clear(&err);
    kc_discovery_free(d);
}
