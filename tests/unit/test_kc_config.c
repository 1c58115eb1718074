/*
 * Unit tests of kc_config: kubeconfig parsing and merging, relative paths,
 * base64, in-cluster config, token files and exec credential plugins.
 *
 * Each test runs in its own process (criterion), so setenv/chdir do not
 * leak between tests. Every test gets a private temp dir, and HOME points
 * into it so a developer's own ~/.kube/config can never be read.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "kc_config.h"
#include "testenv.h"

static char *tmp;

static void setup(void)
{
    tmp = testenv_tempdir();
    cr_assert_not_null(tmp);
    setenv("HOME", tmp, 1);
    unsetenv("KUBECONFIG");
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
}

static void teardown(void)
{
    if (tmp)
        testenv_rmtree(tmp);
    free(tmp);
    tmp = NULL;
}

TestSuite(kc_config, .init = setup, .fini = teardown);

/* ---- helpers --------------------------------------------------------------- */

static char *fixture(const char *name)
{
    char *rel = NULL, *p;
    cr_assert(asprintf(&rel, "kubeconfig/%s", name) > 0);
    p = testenv_fixture_path(rel);
    free(rel);
    cr_assert_not_null(p);
    return p;
}

static char *tmp_path(const char *name)
{
    char *p = NULL;
    cr_assert(asprintf(&p, "%s/%s", tmp, name) > 0);
    return p;
}

static char *write_tmp(const char *name, const char *text)
{
    char *p = tmp_path(name);
    cr_assert_eq(testenv_write_file(p, text, strlen(text)), 0, "cannot write %s", p);
    return p;
}

static char *read_tmp(const char *name)
{
    char *p = tmp_path(name);
    char *s = testenv_read_file(p, NULL);
    free(p);
    return s;
}

static int run_count(void)
{
    char *s = read_tmp("count");
    int n = s ? atoi(s) : 0;
    free(s);
    return n;
}

static kc_config *load_path(const char *path, const char *context)
{
    kc_config_opts opts = {.kubeconfig = path, .context = context, .no_in_cluster = true};
    kc_config *cfg = NULL;
    kc_error err = KC_ERROR_INIT;
    int rc = kc_config_load(&opts, &cfg, &err);
    cr_assert_eq(rc, KC_OK, "load %s: %s", path, err.message ? err.message : "?");
    kc_error_clear(&err);
    return cfg;
}

static kc_config *load_fixture(const char *name, const char *context)
{
    char *p = fixture(name);
    kc_config *cfg = load_path(p, context);
    free(p);
    return cfg;
}

static kc_config *from_yaml(const char *yaml)
{
    kc_config *cfg = NULL;
    kc_error err = KC_ERROR_INIT;
    int rc = kc_config_from_yaml(yaml, strlen(yaml), NULL, &cfg, &err);
    cr_assert_eq(rc, KC_OK, "from_yaml: %s", err.message ? err.message : "?");
    kc_error_clear(&err);
    return cfg;
}

/* The error of loading yaml; the caller clears it. */
static kc_error yaml_error(const char *yaml, size_t len, const char *context)
{
    kc_config *cfg = NULL;
    kc_error err = KC_ERROR_INIT;
    int rc = kc_config_from_yaml(yaml, len, context, &cfg, &err);
    cr_assert_neq(rc, KC_OK, "expected an error for:\n%.*s", (int)len, yaml);
    cr_assert_null(cfg);
    cr_assert_eq(err.code, rc);
    cr_assert_not_null(err.message);
    return err;
}

static char *token_of(kc_config *cfg)
{
    char *tok = NULL;
    kc_error err = KC_ERROR_INIT;
    int rc = kc_config_bearer_token(cfg, &tok, &err);
    cr_assert_eq(rc, KC_OK, "bearer token: %s", err.message ? err.message : "?");
    kc_error_clear(&err);
    return tok;
}

static void assert_token(kc_config *cfg, const char *want)
{
    char *tok = token_of(cfg);
    cr_assert_not_null(tok, "no token, want %s", want);
    cr_assert_str_eq(tok, want);
    free(tok);
}

static void assert_blob(kc_blob b, const char *want)
{
    cr_assert_eq(b.len, strlen(want), "blob length %zu, want %zu", b.len, strlen(want));
    cr_assert(memcmp(b.data, want, b.len) == 0, "blob is %.*s", (int)b.len, b.data);
}

/* Copy the plugin fixture to <tmp>/<rel> with mode 0755. */
static char *install_plugin(const char *rel)
{
    char *src = fixture("exec-plugin.sh");
    char *text = testenv_read_file(src, NULL);
    cr_assert_not_null(text);
    char *bin = tmp_path("bin");
    mkdir(bin, 0755);
    free(bin);
    char *dst = write_tmp(rel, text);
    cr_assert_eq(chmod(dst, 0755), 0);
    free(text);
    free(src);
    return dst;
}

/* RFC 3339 form of t as seen in a zone offset_min minutes east of UTC. */
static void rfc3339(char *buf, size_t n, time_t t, int offset_min)
{
    time_t local = t + (time_t)offset_min * 60;
    struct tm tm;
    gmtime_r(&local, &tm);
    size_t k = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
    if (offset_min == 0)
        snprintf(buf + k, n - k, "Z");
    else
        snprintf(buf + k, n - k, "%c%02d:%02d", offset_min < 0 ? '-' : '+', abs(offset_min) / 60,
                 abs(offset_min) % 60);
}

/*
 * A kubeconfig in tmp whose user runs the plugin. command: as written in
 * the kubeconfig; extra_exec: more YAML lines under exec (indented 6).
 */
static char *exec_kubeconfig(const char *command, const char *api, const char *mode,
                             const char *expiry, const char *extra_exec)
{
    char *yaml = NULL;
    cr_assert(asprintf(&yaml,
                       "current-context: exec\n"
                       "clusters:\n"
                       "- name: c\n"
                       "  cluster:\n"
                       "    server: https://exec.example.test:6443\n"
                       "    certificate-authority-data: Q0EtREFUQQ==\n"
                       "    tls-server-name: exec-name\n"
                       "    extensions:\n"
                       "    - name: client.authentication.k8s.io/exec\n"
                       "      extension: {audience: provisio, retries: 3, nested: {ok: true}}\n"
                       "users:\n"
                       "- name: u\n"
                       "  user:\n"
                       "    exec:\n"
                       "      apiVersion: %s\n"
                       "      command: %s\n"
                       "      args: [\"%s\"]\n"
                       "      interactiveMode: Never\n"
                       "      env:\n"
                       "      - {name: PLUGIN_DIR, value: \"%s\"}\n"
                       "      - {name: PLUGIN_MODE, value: \"%s\"}\n"
                       "      - {name: PLUGIN_EXPIRY, value: \"%s\"}\n"
                       "%s"
                       "contexts:\n"
                       "- name: exec\n"
                       "  context: {cluster: c, user: u}\n",
                       api, command, api, tmp, mode, expiry ? expiry : "",
                       extra_exec ? extra_exec : "") > 0);
    char *path = write_tmp("config", yaml);
    free(yaml);
    return path;
}

static kc_config *exec_config(const char *mode, const char *expiry)
{
    char *plugin = install_plugin("bin/plugin.sh");
    char *path = exec_kubeconfig(plugin, "client.authentication.k8s.io/v1", mode, expiry, NULL);
    kc_config *cfg = load_path(path, NULL);
    free(path);
    free(plugin);
    return cfg;
}

/* ---- one file ---------------------------------------------------------------- */

Test(kc_config, single_file_gives_server_namespace_token_and_ca)
{
    kc_config *cfg = load_fixture("single.yaml", NULL);
    cr_assert_str_eq(kc_config_server(cfg), "https://dev.example.test:6443");
    cr_assert_str_eq(kc_config_namespace(cfg), "team-a");
    cr_assert_str_eq(kc_config_context(cfg), "dev");
    cr_assert_str_eq(kc_config_proxy_url(cfg), "http://proxy.example.test:3128");
    cr_assert_not(kc_config_is_in_cluster(cfg));
    kc_tls tls;
    kc_config_tls(cfg, &tls);
    assert_blob(tls.ca,
                "-----BEGIN CERTIFICATE-----\nDEV-CA-FOR-TESTS\n-----END CERTIFICATE-----\n");
    cr_assert_eq(tls.client_cert.len, 0);
    cr_assert_not(tls.insecure);
    cr_assert_str_eq(tls.server_name, "kubernetes.default");
    assert_token(cfg, "dev-token-123");
    cr_assert_not(kc_config_invalidate_credentials(cfg), "a static token cannot be refreshed");
    kc_config_free(cfg);
}

Test(kc_config, explicit_context_selects_client_certificate_user)
{
    kc_config *cfg = load_fixture("single.yaml", "prod");
    cr_assert_str_eq(kc_config_server(cfg), "https://prod.example.test");
    cr_assert_str_eq(kc_config_context(cfg), "prod");
    cr_assert_str_eq(kc_config_namespace(cfg), "default");
    cr_assert_null(kc_config_proxy_url(cfg));
    kc_tls tls;
    kc_config_tls(cfg, &tls);
    cr_assert(tls.insecure);
    cr_assert_eq(tls.ca.len, 0);
    cr_assert_null(tls.server_name);
    assert_blob(tls.client_cert,
                "-----BEGIN CERTIFICATE-----\nPROD-CLIENT-CERT\n-----END CERTIFICATE-----\n");
    assert_blob(tls.client_key,
                "-----BEGIN TEST KEY-----\nPROD-CLIENT-KEY\n-----END TEST KEY-----\n");
    cr_assert_null(token_of(cfg));
    kc_config_free(cfg);
}

Test(kc_config, missing_context_is_a_config_error_naming_it)
{
    char *p = fixture("single.yaml");
    kc_config_opts opts = {.kubeconfig = p, .context = "staging", .no_in_cluster = true};
    kc_config *cfg = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_config_load(&opts, &cfg, &err), KC_ERR_CONFIG);
    cr_assert_null(cfg);
    cr_assert(strstr(err.message, "\"staging\" not found"), "%s", err.message);
    cr_assert(strstr(err.message, "single.yaml"), "%s", err.message);
    kc_error_clear(&err);
    free(p);
}

Test(kc_config, unset_current_context_is_an_error)
{
    const char *y = "clusters:\n- name: c\n  cluster: {server: https://x}\n"
                    "contexts:\n- name: a\n  context: {cluster: c}\n";
    kc_error err = yaml_error(y, strlen(y), NULL);
    cr_assert_eq(err.code, KC_ERR_CONFIG);
    cr_assert(strstr(err.message, "current-context is not set"), "%s", err.message);
    kc_error_clear(&err);
    /* The same document is fine with an explicit context. */
    kc_config *cfg = NULL;
    cr_assert_eq(kc_config_from_yaml(y, strlen(y), "a", &cfg, NULL), KC_OK);
    cr_assert_str_eq(kc_config_server(cfg), "https://x");
    kc_config_free(cfg);
}

Test(kc_config, missing_cluster_or_user_of_context_is_an_error)
{
    const char *y1 = "current-context: a\ncontexts:\n- name: a\n  context: {cluster: gone}\n";
    kc_error err = yaml_error(y1, strlen(y1), NULL);
    cr_assert(strstr(err.message, "cluster \"gone\""), "%s", err.message);
    kc_error_clear(&err);
    const char *y2 = "current-context: a\nclusters:\n- name: c\n  cluster: {server: https://x}\n"
                     "contexts:\n- name: a\n  context: {cluster: c, user: nobody}\n";
    err = yaml_error(y2, strlen(y2), NULL);
    cr_assert(strstr(err.message, "user \"nobody\""), "%s", err.message);
    kc_error_clear(&err);
}

Test(kc_config, relative_paths_resolve_against_the_kubeconfig_directory)
{
    char *p = fixture("with-paths/config");
    cr_assert_eq(chdir("/"), 0); /* the cwd must not matter */
    kc_config *cfg = load_path(p, NULL);
    kc_tls tls;
    kc_config_tls(cfg, &tls);
    assert_blob(tls.ca, "-----BEGIN CERTIFICATE-----\nFILE-CA\n-----END CERTIFICATE-----\n");
    assert_blob(tls.client_cert,
                "-----BEGIN CERTIFICATE-----\nFILE-CLIENT-CERT\n-----END CERTIFICATE-----\n");
    assert_blob(tls.client_key,
                "-----BEGIN TEST KEY-----\nFILE-CLIENT-KEY\n-----END TEST KEY-----\n");
    kc_config_free(cfg);
    free(p);
}

Test(kc_config, relative_kubeconfig_path_is_taken_from_the_cwd)
{
    char *dir = fixture("with-paths");
    cr_assert_eq(chdir(dir), 0);
    kc_config *cfg = load_path("config", NULL);
    kc_tls tls;
    kc_config_tls(cfg, &tls);
    assert_blob(tls.ca, "-----BEGIN CERTIFICATE-----\nFILE-CA\n-----END CERTIFICATE-----\n");
    kc_config_free(cfg);
    free(dir);
}

Test(kc_config, missing_certificate_file_is_an_error_naming_the_file)
{
    const char *y = "current-context: a\nclusters:\n- name: c\n  cluster:\n"
                    "    server: https://x\n    certificate-authority: no-such-ca.crt\n"
                    "contexts:\n- name: a\n  context: {cluster: c}\n";
    char *path = write_tmp("config", y);
    kc_config_opts opts = {.kubeconfig = path, .no_in_cluster = true};
    kc_config *cfg = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_config_load(&opts, &cfg, &err), KC_ERR_CONFIG);
    cr_assert(strstr(err.message, tmp) && strstr(err.message, "no-such-ca.crt"), "%s", err.message);
    cr_assert(strstr(err.message, "certificate-authority"), "%s", err.message);
    kc_error_clear(&err);
    free(path);
}

Test(kc_config, client_certificate_without_key_is_an_error)
{
    const char *y = "current-context: a\nclusters:\n- name: c\n  cluster: {server: https://x}\n"
                    "users:\n- name: u\n  user: {client-certificate-data: Q0VSVA==}\n"
                    "contexts:\n- name: a\n  context: {cluster: c, user: u}\n";
    kc_error err = yaml_error(y, strlen(y), NULL);
    cr_assert_eq(err.code, KC_ERR_CONFIG);
    cr_assert(strstr(err.message, "client key"), "%s", err.message);
    kc_error_clear(&err);
}

Test(kc_config, base64_with_newlines_and_spaces_decodes)
{
    const char *ca = "-----BEGIN CERTIFICATE-----\nDEV-CA-FOR-TESTS\n-----END CERTIFICATE-----\n";
    char *want = NULL;
    cr_assert(asprintf(&want, "%s%s%s", ca, ca, ca) > 0);
    const char *contexts[] = {"literal", "folded", "spaced"};
    for (size_t i = 0; i < 3; i++) {
        kc_config *cfg = load_fixture("base64-newlines.yaml", contexts[i]);
        kc_tls tls;
        kc_config_tls(cfg, &tls);
        assert_blob(tls.ca, want);
        kc_config_free(cfg);
    }
    kc_config *cfg = load_fixture("base64-newlines.yaml", "unpadded");
    kc_tls tls;
    kc_config_tls(cfg, &tls);
    assert_blob(tls.ca, "ab");
    kc_config_free(cfg);
    free(want);
}

Test(kc_config, invalid_base64_is_an_error_naming_the_field)
{
    char *p = fixture("base64-newlines.yaml");
    kc_config_opts opts = {.kubeconfig = p, .context = "broken", .no_in_cluster = true};
    kc_config *cfg = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_config_load(&opts, &cfg, &err), KC_ERR_CONFIG);
    cr_assert(strstr(err.message, "certificate-authority-data is not valid base64"), "%s",
              err.message);
    cr_assert(strstr(err.message, "\"broken\""), "%s", err.message);
    kc_error_clear(&err);
    free(p);
}

Test(kc_config, insecure_only_when_the_kubeconfig_says_true)
{
    const char *y = "clusters:\n"
                    "- {name: t, cluster: {server: https://t, insecure-skip-tls-verify: true}}\n"
                    "- {name: f, cluster: {server: https://f, insecure-skip-tls-verify: false}}\n"
                    "- {name: n, cluster: {server: https://n}}\n"
                    "contexts:\n"
                    "- {name: t, context: {cluster: t}}\n"
                    "- {name: f, context: {cluster: f}}\n"
                    "- {name: n, context: {cluster: n}}\n";
    const char *names[] = {"t", "f", "n"};
    bool want[] = {true, false, false};
    for (size_t i = 0; i < 3; i++) {
        kc_config *cfg = NULL;
        cr_assert_eq(kc_config_from_yaml(y, strlen(y), names[i], &cfg, NULL), KC_OK);
        kc_tls tls;
        kc_config_tls(cfg, &tls);
        cr_assert_eq(tls.insecure, want[i], "context %s", names[i]);
        kc_config_free(cfg);
    }
    const char *bad = "current-context: a\nclusters:\n"
                      "- {name: c, cluster: {server: https://x, insecure-skip-tls-verify: maybe}}\n"
                      "contexts:\n- {name: a, context: {cluster: c}}\n";
    kc_error err = yaml_error(bad, strlen(bad), NULL);
    cr_assert(strstr(err.message, "insecure-skip-tls-verify"), "%s", err.message);
    kc_error_clear(&err);
}

Test(kc_config, namespace_option_overrides_the_context)
{
    char *p = fixture("single.yaml");
    kc_config_opts opts = {.kubeconfig = p, .namespace_ = "override", .no_in_cluster = true};
    kc_config *cfg = NULL;
    cr_assert_eq(kc_config_load(&opts, &cfg, NULL), KC_OK);
    cr_assert_str_eq(kc_config_namespace(cfg), "override");
    kc_config_free(cfg);
    free(p);
}

Test(kc_config, json_kubeconfig_from_memory)
{
    char *p = fixture("config.json");
    size_t len;
    char *text = testenv_read_file(p, &len);
    cr_assert_not_null(text);
    kc_config *cfg = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_config_from_yaml(text, len, NULL, &cfg, &err), KC_OK, "%s", err.message);
    cr_assert_str_eq(kc_config_server(cfg), "https://json.example.test:8443");
    cr_assert_str_eq(kc_config_namespace(cfg), "from-json");
    kc_tls tls;
    kc_config_tls(cfg, &tls);
    cr_assert(tls.insecure);
    assert_token(cfg, "json-token");
    kc_config_free(cfg);
    free(text);
    free(p);
}

Test(kc_config, server_without_scheme_gets_https)
{
    kc_config *cfg = from_yaml("current-context: a\nclusters:\n"
                               "- {name: c, cluster: {server: 'api.example.test:6443//'}}\n"
                               "contexts:\n- {name: a, context: {cluster: c}}\n");
    cr_assert_str_eq(kc_config_server(cfg), "https://api.example.test:6443");
    kc_config_free(cfg);
}

/*
 * Found by fuzz_kubeconfig (2026-12-04): any text with "://" was taken as the
 * server ("http*s://x", "ftp://x", "://x", "http://"), to fail only at the
 * first request. Only http and https URLs with something after the scheme
 * are taken.
 */
Test(kc_config, server_that_is_not_an_http_url_is_refused)
{
    const char *bad[] = {"http*s://derived.example.test",
                         "ftp://x",
                         "://x",
                         "http://",
                         "https:///",
                         "file:///etc/passwd"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *y = NULL;
        cr_assert(asprintf(&y,
                           "current-context: a\nclusters:\n- {name: c, cluster: {server: '%s'}}\n"
                           "contexts:\n- {name: a, context: {cluster: c}}\n",
                           bad[i]) > 0);
        kc_config *cfg = NULL;
        kc_error err = KC_ERROR_INIT;
        cr_assert_eq(kc_config_from_yaml(y, strlen(y), NULL, &cfg, &err), KC_ERR_CONFIG,
                     "accepted %s", bad[i]);
        cr_assert_null(cfg);
        cr_assert(strstr(err.message, "not an http or https URL"), "%s: %s", bad[i], err.message);
        kc_error_clear(&err);
        free(y);
    }
    kc_config *cfg = from_yaml("current-context: a\nclusters:\n"
                               "- {name: c, cluster: {server: 'HTTP://x.example.test/'}}\n"
                               "contexts:\n- {name: a, context: {cluster: c}}\n");
    cr_assert_str_eq(kc_config_server(cfg), "HTTP://x.example.test");
    kc_config_free(cfg);
}

/* ---- KUBECONFIG merging ------------------------------------------------------ */

static void set_kubeconfig_env(const char *const *names, size_t n)
{
    char *list = strdup("");
    for (size_t i = 0; i < n; i++) {
        char *p = names[i][0] == '/' || !names[i][0] ? strdup(names[i]) : fixture(names[i]);
        char *next = NULL;
        cr_assert(asprintf(&next, "%s%s%s", list, i ? ":" : "", p) > 0);
        free(list);
        free(p);
        list = next;
    }
    setenv("KUBECONFIG", list, 1);
    free(list);
}

static kc_config *load_env(const char *context)
{
    kc_config_opts opts = {.context = context, .no_in_cluster = true};
    kc_config *cfg = NULL;
    kc_error err = KC_ERROR_INIT;
    int rc = kc_config_load(&opts, &cfg, &err);
    cr_assert_eq(rc, KC_OK, "%s", err.message ? err.message : "?");
    return cfg;
}

Test(kc_config, kubeconfig_list_first_file_wins_and_missing_files_are_skipped)
{
    const char *files[] = {"merge-a.yaml", "/nonexistent/provisio/config", "", "merge-b.yaml",
                           "merge-c.yaml"};
    set_kubeconfig_env(files, 5);
    kc_config *cfg = load_env(NULL);
    /* a has an empty current-context: b's is the first non-empty one. */
    cr_assert_str_eq(kc_config_context(cfg), "ctx-b");
    /* ctx-b uses cluster "shared": a defines it first. */
    cr_assert_str_eq(kc_config_server(cfg), "https://a.example.test");
    cr_assert_str_eq(kc_config_namespace(cfg), "ns-b");
    /* user u-a: a's token, not c's. */
    assert_token(cfg, "token-a");
    kc_config_free(cfg);
}

Test(kc_config, kubeconfig_list_context_defined_twice_first_file_wins)
{
    const char *files[] = {"merge-a.yaml", "merge-b.yaml", "merge-c.yaml"};
    set_kubeconfig_env(files, 3);
    kc_config *cfg = load_env("ctx-a");
    cr_assert_str_eq(kc_config_server(cfg), "https://a.example.test");
    cr_assert_str_eq(kc_config_namespace(cfg), "default");
    kc_config_free(cfg);
}

Test(kc_config, kubeconfig_list_entries_only_in_a_later_file_are_found)
{
    const char *files[] = {"merge-a.yaml", "merge-b.yaml", "merge-c.yaml"};
    set_kubeconfig_env(files, 3);
    kc_config *cfg = load_env("ctx-c");
    cr_assert_str_eq(kc_config_server(cfg), "https://c-only.example.test");
    assert_token(cfg, "token-c");
    kc_config_free(cfg);
}

Test(kc_config, kubeconfig_list_order_decides)
{
    const char *files[] = {"merge-c.yaml", "merge-b.yaml", "merge-a.yaml"};
    set_kubeconfig_env(files, 3);
    kc_config *cfg = load_env("ctx-b");
    cr_assert_str_eq(kc_config_server(cfg), "https://c.example.test");
    assert_token(cfg, "token-c-loses");
    kc_config_free(cfg);
}

Test(kc_config, kubeconfig_list_of_missing_files_is_no_configuration)
{
    setenv("KUBECONFIG", "/nonexistent/one:/nonexistent/two", 1);
    kc_config_opts opts = {.no_in_cluster = true};
    kc_config *cfg = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_config_load(&opts, &cfg, &err), KC_ERR_CONFIG);
    cr_assert(strstr(err.message, "no configuration"), "%s", err.message);
    cr_assert(strstr(err.message, "/nonexistent/two"), "%s", err.message);
    kc_error_clear(&err);
}

Test(kc_config, explicit_path_overrides_kubeconfig_env)
{
    const char *files[] = {"merge-a.yaml", "merge-b.yaml"};
    set_kubeconfig_env(files, 2);
    kc_config *cfg = load_fixture("single.yaml", NULL);
    cr_assert_str_eq(kc_config_context(cfg), "dev");
    kc_config_free(cfg);
}

Test(kc_config, explicit_path_must_exist)
{
    kc_config_opts opts = {.kubeconfig = "/nonexistent/provisio.yaml", .no_in_cluster = true};
    kc_config *cfg = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_config_load(&opts, &cfg, &err), KC_ERR_CONFIG);
    cr_assert(strstr(err.message, "/nonexistent/provisio.yaml"), "%s", err.message);
    kc_error_clear(&err);
}

Test(kc_config, home_kube_config_is_the_last_resort)
{
    char *src = fixture("single.yaml");
    char *text = testenv_read_file(src, NULL);
    char *dir = tmp_path(".kube");
    cr_assert_eq(mkdir(dir, 0700), 0);
    free(write_tmp(".kube/config", text));
    kc_config *cfg = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_config_load(NULL, &cfg, &err), KC_OK, "%s", err.message);
    cr_assert_str_eq(kc_config_context(cfg), "dev");
    kc_config_free(cfg);
    free(dir);
    free(text);
    free(src);
}

Test(kc_config, nothing_configured_is_no_configuration)
{
    kc_config *cfg = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_config_load(NULL, &cfg, &err), KC_ERR_CONFIG);
    cr_assert_null(cfg);
    cr_assert(strncmp(err.message, "no configuration", 16) == 0, "%s", err.message);
    cr_assert(strstr(err.message, ".kube/config"), "%s", err.message);
    kc_error_clear(&err);
}

/* ---- malformed input ----------------------------------------------------------- */

Test(kc_config, malformed_yaml_is_a_config_error_with_a_line)
{
    char *p = fixture("malformed.yaml");
    kc_config_opts opts = {.kubeconfig = p, .no_in_cluster = true};
    kc_config *cfg = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_config_load(&opts, &cfg, &err), KC_ERR_CONFIG);
    cr_assert_null(cfg);
    cr_assert(strstr(err.message, "malformed.yaml") && strstr(err.message, "line"), "%s",
              err.message);
    kc_error_clear(&err);
    free(p);
}

Test(kc_config, wrong_shapes_are_config_errors)
{
    static const struct {
        const char *yaml;
        const char *says;
    } bad[] = {
        {"- just\n- a list\n", "top level is not a mapping"},
        {"clusters: 5\n", "clusters (line 1) is not a list"},
        {"clusters: [5]\n", "clusters[0] (line 1) is not a mapping"},
        {"clusters:\n- name: [x]\n  cluster: {server: https://x}\n", "clusters[0].name"},
        {"clusters:\n- name: x\n  cluster: [https://x]\n", "clusters[0].cluster"},
        {"current-context: [a]\n", "current-context (line 1) is not a string"},
        {"current-context: a\nclusters: {a: b}\n", "clusters (line 2) is not a list"},
        {"key: *undefined\n", "undefined alias"},
        {"a: b\n\tc: d\n", "line 2"},
        {"{\"clusters\": [\n", "invalid YAML"},
        {"current-context: a\ncontexts:\n- {name: a, context: {cluster: c}}\n"
         "clusters:\n- {name: c, cluster: {server: {host: x}}}\n",
         "cluster \"c\": server (line 5) is not a string"},
        {"current-context: a\ncontexts:\n- {name: a, context: {cluster: c}}\n"
         "clusters:\n- {name: c, cluster: {}}\n",
         "cluster \"c\" has no server"},
        {"current-context: a\ncontexts:\n- {name: a, context: {cluster: c, user: u}}\n"
         "clusters:\n- {name: c, cluster: {server: https://x}}\n"
         "users:\n- {name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1}}}\n",
         "exec has no command"},
        {"current-context: a\ncontexts:\n- {name: a, context: {cluster: c, user: u}}\n"
         "clusters:\n- {name: c, cluster: {server: https://x}}\n"
         "users:\n- {name: u, user: {as: admin, token: t}}\n",
         "impersonation (as) is not supported"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        kc_error err = yaml_error(bad[i].yaml, strlen(bad[i].yaml), NULL);
        cr_assert_eq(err.code, KC_ERR_CONFIG, "case %zu: %s", i, err.message);
        cr_assert(strstr(err.message, bad[i].says), "case %zu: %s", i, err.message);
        cr_assert(strstr(err.message, "(in memory)"), "case %zu: %s", i, err.message);
        kc_error_clear(&err);
    }
    static const char binary[] = "\xff\xfe\x00\x01\x80garbage\x00\x9f";
    kc_error err = yaml_error(binary, sizeof(binary) - 1, NULL);
    cr_assert_eq(err.code, KC_ERR_CONFIG);
    kc_error_clear(&err);
}

Test(kc_config, every_prefix_of_a_valid_file_is_handled)
{
    char *p = fixture("single.yaml");
    size_t len;
    char *text = testenv_read_file(p, &len);
    cr_assert_not_null(text);
    size_t ok = 0;
    for (size_t n = 0; n <= len; n++) {
        kc_config *cfg = NULL;
        kc_error err = KC_ERROR_INIT;
        int rc = kc_config_from_yaml(text, n, NULL, &cfg, &err);
        if (rc == KC_OK) {
            cr_assert_not_null(cfg);
            ok++;
        } else {
            cr_assert_eq(rc, KC_ERR_CONFIG, "prefix %zu: %d", n, rc);
            cr_assert_not_null(err.message);
            cr_assert_null(cfg);
        }
        kc_config_free(cfg);
        kc_error_clear(&err);
    }
    cr_assert_geq(ok, 1, "the whole file must load");
    free(text);
    free(p);
}

Test(kc_config, anchors_aliases_and_merge_keys_are_honoured)
{
    kc_config *cfg = load_fixture("anchors.yaml", NULL);
    cr_assert_str_eq(kc_config_server(cfg), "https://derived.example.test");
    kc_tls tls;
    kc_config_tls(cfg, &tls);
    cr_assert_str_eq(tls.server_name, "anchored-name", "merged from <<: *base");
    cr_assert_str_eq(kc_config_namespace(cfg), "anchored");
    assert_token(cfg, "anchor-token");
    kc_config_free(cfg);
    cfg = load_fixture("anchors.yaml", "base");
    cr_assert_str_eq(kc_config_server(cfg), "https://anchor.example.test");
    cr_assert_str_eq(kc_config_namespace(cfg), "anchored", "merged from <<: *ctx");
    kc_config_free(cfg);
}

Test(kc_config, alias_cycles_and_alias_bombs_terminate)
{
    /* A mapping that merges itself: lookups of absent keys must stop. */
    kc_config *cfg = from_yaml("current-context: a\n"
                               "clusters:\n- {name: c, cluster: {server: https://x}}\n"
                               "contexts:\n- name: a\n  context: &m {cluster: c, <<: *m}\n");
    cr_assert_str_eq(kc_config_server(cfg), "https://x");
    cr_assert_str_eq(kc_config_namespace(cfg), "default");
    kc_config_free(cfg);
    /* The exec cluster config is converted in full: a bomb must be refused. */
    const char *bomb =
        "current-context: a\n"
        "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n"
        "l1: &l1 [*l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0]\n"
        "l2: &l2 [*l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1]\n"
        "l3: &l3 [*l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2]\n"
        "l4: &l4 [*l3, *l3, *l3, *l3, *l3, *l3, *l3, *l3, *l3, *l3]\n"
        "l5: &l5 [*l4, *l4, *l4, *l4, *l4, *l4, *l4, *l4, *l4, *l4]\n"
        "l6: &l6 [*l5, *l5, *l5, *l5, *l5, *l5, *l5, *l5, *l5, *l5]\n"
        "l7: &l7 [*l6, *l6, *l6, *l6, *l6, *l6, *l6, *l6, *l6, *l6]\n"
        "clusters:\n- name: c\n  cluster:\n    server: https://x\n    extensions:\n"
        "    - {name: client.authentication.k8s.io/exec, extension: *l7}\n"
        "users:\n- name: u\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n"
        "      command: /bin/true\n      provideClusterInfo: true\n"
        "contexts:\n- {name: a, context: {cluster: c, user: u}}\n";
    kc_error err = yaml_error(bomb, strlen(bomb), NULL);
    cr_assert_eq(err.code, KC_ERR_CONFIG);
    cr_assert(strstr(err.message, "too many nodes"), "%s", err.message);
    kc_error_clear(&err);
}

Test(kc_config, auth_provider_is_rejected_clearly)
{
    char *p = fixture("auth-provider.yaml");
    kc_config_opts opts = {.kubeconfig = p, .no_in_cluster = true};
    kc_config *cfg = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_config_load(&opts, &cfg, &err), KC_ERR_CONFIG);
    cr_assert(strstr(err.message, "auth-provider \"gcp\" is not supported"), "%s", err.message);
    cr_assert(strstr(err.message, "gcp-user"), "%s", err.message);
    kc_error_clear(&err);
    free(p);
}

/* ---- tokenFile ------------------------------------------------------------------- */

static kc_config *token_file_config(void)
{
    char *cfgpath = write_tmp("config", "current-context: a\n"
                                        "clusters:\n- {name: c, cluster: {server: https://x}}\n"
                                        "users:\n- {name: u, user: {tokenFile: token, token: "
                                        "static-loses}}\n"
                                        "contexts:\n- {name: a, context: {cluster: c, user: u}}\n");
    cr_assert_eq(chdir("/"), 0);
    kc_config *cfg = load_path(cfgpath, NULL);
    free(cfgpath);
    return cfg;
}

Test(kc_config, token_file_is_trimmed_and_reread_when_it_changes)
{
    free(write_tmp("token", "  first-token \n\n"));
    kc_config *cfg = token_file_config();
    assert_token(cfg, "first-token");
    assert_token(cfg, "first-token");
    /* Rewritten in place with another size. */
    free(write_tmp("token", "second-token-longer\n"));
    assert_token(cfg, "second-token-longer");
    /* Replaced by rename (new inode), same size: how kubelet rotates projected tokens. */
    free(write_tmp("token.new", "third--token-longer\n"));
    char *from = tmp_path("token.new"), *to = tmp_path("token");
    cr_assert_eq(rename(from, to), 0);
    assert_token(cfg, "third--token-longer");
    free(from);
    free(to);
    kc_config_free(cfg);
}

Test(kc_config, token_file_is_reread_after_invalidate)
{
    free(write_tmp("token", "before\n"));
    kc_config *cfg = token_file_config();
    assert_token(cfg, "before");
    cr_assert(kc_config_invalidate_credentials(cfg));
    assert_token(cfg, "before");
    kc_config_free(cfg);
}

Test(kc_config, token_file_keeps_last_token_when_the_file_vanishes)
{
    free(write_tmp("token", "kept\n"));
    kc_config *cfg = token_file_config();
    assert_token(cfg, "kept");
    char *p = tmp_path("token");
    cr_assert_eq(unlink(p), 0);
    assert_token(cfg, "kept");
    free(p);
    kc_config_free(cfg);
}

Test(kc_config, token_file_missing_at_load_is_an_error)
{
    char *cfgpath = write_tmp("config", "current-context: a\n"
                                        "clusters:\n- {name: c, cluster: {server: https://x}}\n"
                                        "users:\n- {name: u, user: {tokenFile: absent-token}}\n"
                                        "contexts:\n- {name: a, context: {cluster: c, user: u}}\n");
    kc_config_opts opts = {.kubeconfig = cfgpath, .no_in_cluster = true};
    kc_config *cfg = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_config_load(&opts, &cfg, &err), KC_ERR_CONFIG);
    cr_assert(strstr(err.message, "absent-token") && strstr(err.message, "tokenFile"), "%s",
              err.message);
    kc_error_clear(&err);
    free(cfgpath);
}

/* ---- exec plugins ---------------------------------------------------------------- */

Test(kc_config, exec_plugin_token_is_cached_until_expiry)
{
    char exp[64];
    rfc3339(exp, sizeof(exp), time(NULL) + 3600, 0);
    kc_config *cfg = exec_config("token", exp);
    cr_assert_eq(run_count(), 0, "the plugin must not run at load");
    assert_token(cfg, "tok-1");
    assert_token(cfg, "tok-1");
    assert_token(cfg, "tok-1");
    cr_assert_eq(run_count(), 1);
    kc_config_free(cfg);
}

Test(kc_config, exec_plugin_without_expiry_is_cached)
{
    kc_config *cfg = exec_config("token", NULL);
    assert_token(cfg, "tok-1");
    assert_token(cfg, "tok-1");
    cr_assert_eq(run_count(), 1);
    kc_config_free(cfg);
}

Test(kc_config, exec_plugin_runs_again_after_expiry)
{
    kc_config *cfg = exec_config("token", "2001-02-03T04:05:06Z");
    assert_token(cfg, "tok-1");
    assert_token(cfg, "tok-2");
    cr_assert_eq(run_count(), 2);
    kc_config_free(cfg);
}

Test(kc_config, exec_plugin_runs_again_within_the_expiry_skew)
{
    char exp[64];
    rfc3339(exp, sizeof(exp), time(NULL) + 4, 0);
    kc_config *cfg = exec_config("token", exp);
    assert_token(cfg, "tok-1");
    assert_token(cfg, "tok-2");
    kc_config_free(cfg);
}

Test(kc_config, exec_plugin_expiry_offset_is_honoured)
{
    /* now+2min written at -01:00: read as UTC it would look an hour old. */
    char exp[64];
    rfc3339(exp, sizeof(exp), time(NULL) + 120, -60);
    cr_assert(strstr(exp, "-01:00"));
    kc_config *cfg = exec_config("token", exp);
    assert_token(cfg, "tok-1");
    assert_token(cfg, "tok-1");
    cr_assert_eq(run_count(), 1);
    kc_config_free(cfg);
}

Test(kc_config, exec_plugin_past_expiry_with_positive_offset_is_expired)
{
    /* now-2min written at +05:30 (fractional seconds too): UTC reading would be the future. */
    char exp[64], withfrac[80];
    rfc3339(exp, sizeof(exp), time(NULL) - 120, 330);
    char *plus = strchr(exp + 10, '+');
    cr_assert_not_null(plus);
    snprintf(withfrac, sizeof(withfrac), "%.*s.123456789%s", (int)(plus - exp), exp, plus);
    kc_config *cfg = exec_config("token", withfrac);
    assert_token(cfg, "tok-1");
    assert_token(cfg, "tok-2");
    kc_config_free(cfg);
}

Test(kc_config, exec_plugin_runs_again_after_invalidate)
{
    kc_config *cfg = exec_config("token", NULL);
    assert_token(cfg, "tok-1");
    cr_assert(kc_config_invalidate_credentials(cfg));
    assert_token(cfg, "tok-2");
    assert_token(cfg, "tok-2");
    cr_assert_eq(run_count(), 2);
    kc_config_free(cfg);
}

Test(kc_config, exec_plugin_failure_reports_status_and_stderr_but_no_token)
{
    kc_config *cfg = exec_config("fail", NULL);
    char *tok = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_config_bearer_token(cfg, &tok, &err), KC_ERR_AUTH_PLUGIN);
    cr_assert_null(tok);
    cr_assert_eq(err.code, KC_ERR_AUTH_PLUGIN);
    cr_assert(strstr(err.message, "status 3"), "%s", err.message);
    cr_assert(strstr(err.message, "refusing on purpose"), "%s", err.message);
    cr_assert_null(strstr(err.message, "SECRET"), "%s", err.message);
    kc_error_clear(&err);
    /* A failure is not cached: the next call runs the plugin again. */
    cr_assert_eq(kc_config_bearer_token(cfg, &tok, &err), KC_ERR_AUTH_PLUGIN);
    cr_assert_eq(run_count(), 2);
    kc_error_clear(&err);
    kc_config_free(cfg);
}

Test(kc_config, exec_plugin_gets_exec_info_with_cluster_when_asked)
{
    char *plugin = install_plugin("bin/plugin.sh");
    char *path = exec_kubeconfig(plugin, "client.authentication.k8s.io/v1", "token", NULL,
                                 "      provideClusterInfo: true\n");
    kc_config *cfg = load_path(path, NULL);
    assert_token(cfg, "tok-1");
    char *info = read_tmp("exec-info.json");
    cr_assert_not_null(info);
    json_object *o = json_tokener_parse(info);
    cr_assert_not_null(o, "not JSON: %s", info);
    json_object *spec, *cluster, *v, *conf;
    cr_assert_str_eq(json_object_get_string(json_object_object_get(o, "kind")), "ExecCredential");
    cr_assert_str_eq(json_object_get_string(json_object_object_get(o, "apiVersion")),
                     "client.authentication.k8s.io/v1");
    cr_assert(json_object_object_get_ex(o, "spec", &spec));
    cr_assert(json_object_object_get_ex(spec, "interactive", &v));
    cr_assert(json_object_is_type(v, json_type_boolean) && !json_object_get_boolean(v));
    cr_assert(json_object_object_get_ex(spec, "cluster", &cluster), "%s", info);
    cr_assert_str_eq(json_object_get_string(json_object_object_get(cluster, "server")),
                     "https://exec.example.test:6443");
    cr_assert_str_eq(
        json_object_get_string(json_object_object_get(cluster, "certificate-authority-data")),
        "Q0EtREFUQQ==");
    cr_assert_str_eq(json_object_get_string(json_object_object_get(cluster, "tls-server-name")),
                     "exec-name");
    cr_assert(json_object_object_get_ex(cluster, "config", &conf), "%s", info);
    cr_assert_str_eq(json_object_get_string(json_object_object_get(conf, "audience")), "provisio");
    cr_assert_eq(json_object_get_int(json_object_object_get(conf, "retries")), 3);
    json_object_put(o);
    free(info);
    kc_config_free(cfg);
    free(path);
    free(plugin);
}

Test(kc_config, exec_plugin_exec_info_without_cluster_and_stdin_is_dev_null)
{
    kc_config *cfg = exec_config("token", NULL);
    assert_token(cfg, "tok-1");
    char *info = read_tmp("exec-info.json");
    cr_assert_not_null(info);
    json_object *o = json_tokener_parse(info);
    cr_assert_not_null(o, "not JSON: %s", info);
    json_object *spec;
    cr_assert(json_object_object_get_ex(o, "spec", &spec));
    cr_assert_not(json_object_object_get_ex(spec, "cluster", NULL), "%s", info);
    json_object_put(o);
    free(info);
    char *in = read_tmp("stdin.txt");
    cr_assert_not_null(in);
    cr_assert_str_eq(in, "/dev/null\n");
    free(in);
    kc_config_free(cfg);
}

Test(kc_config, exec_plugin_env_entries_override_the_parent_environment)
{
    setenv("PLUGIN_EXTRA", "-from-parent", 1);
    setenv("PLUGIN_MODE", "fail", 1); /* overridden by the kubeconfig's "token" */
    kc_config *cfg = exec_config("token", NULL);
    assert_token(cfg, "tok-1-from-parent");
    kc_config_free(cfg);
    char *count = read_tmp("mode-count");
    cr_assert_not_null(count);
    cr_assert_str_eq(count, "1\n", "PLUGIN_MODE must be in the environment once");
    free(count);

    char *plugin = install_plugin("bin/plugin.sh");
    char *path = exec_kubeconfig(plugin, "client.authentication.k8s.io/v1", "token", NULL,
                                 "      - {name: PLUGIN_EXTRA, value: -from-kubeconfig}\n");
    cfg = load_path(path, NULL);
    assert_token(cfg, "tok-2-from-kubeconfig");
    kc_config_free(cfg);
    free(path);
    free(plugin);
}

Test(kc_config, exec_plugin_args_are_passed)
{
    char *plugin = install_plugin("bin/plugin.sh");
    char *yaml = NULL;
    cr_assert(asprintf(&yaml,
                       "current-context: a\nclusters:\n- {name: c, cluster: {server: https://x}}\n"
                       "users:\n- name: u\n  user:\n    exec:\n"
                       "      apiVersion: client.authentication.k8s.io/v1\n"
                       "      command: %s\n"
                       "      args: [client.authentication.k8s.io/v1, \"-with arg\"]\n"
                       "      env: [{name: PLUGIN_DIR, value: '%s'}]\n"
                       "contexts:\n- {name: a, context: {cluster: c, user: u}}\n",
                       plugin, tmp) > 0);
    kc_config *cfg = from_yaml(yaml);
    assert_token(cfg, "tok-1-with arg");
    kc_config_free(cfg);
    free(yaml);
    free(plugin);
}

Test(kc_config, exec_relative_command_resolves_against_kubeconfig_dir)
{
    free(install_plugin("bin/plugin.sh"));
    char *path =
        exec_kubeconfig("./bin/plugin.sh", "client.authentication.k8s.io/v1", "token", NULL, NULL);
    cr_assert_eq(chdir("/"), 0);
    kc_config *cfg = load_path(path, NULL);
    assert_token(cfg, "tok-1");
    kc_config_free(cfg);
    free(path);
}

Test(kc_config, exec_bare_command_is_searched_in_path)
{
    free(install_plugin("bin/provisio-test-plugin"));
    char *bin = tmp_path("bin");
    char *newpath = NULL;
    cr_assert(asprintf(&newpath, "/nonexistent:%s:%s", bin, getenv("PATH")) > 0);
    setenv("PATH", newpath, 1);
    char *path = exec_kubeconfig("provisio-test-plugin", "client.authentication.k8s.io/v1", "token",
                                 NULL, NULL);
    kc_config *cfg = load_path(path, NULL);
    assert_token(cfg, "tok-1");
    kc_config_free(cfg);
    free(path);
    free(newpath);
    free(bin);
}

Test(kc_config, exec_missing_executable_is_a_plugin_error_with_install_hint)
{
    char *path = exec_kubeconfig("provisio-no-such-plugin", "client.authentication.k8s.io/v1",
                                 "token", NULL, "      installHint: apt-get install the-plugin\n");
    kc_config *cfg = load_path(path, NULL);
    char *tok = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_config_bearer_token(cfg, &tok, &err), KC_ERR_AUTH_PLUGIN);
    cr_assert(strstr(err.message, "provisio-no-such-plugin") && strstr(err.message, "not found"),
              "%s", err.message);
    cr_assert(strstr(err.message, "apt-get install the-plugin"), "%s", err.message);
    kc_error_clear(&err);
    kc_config_free(cfg);
    free(path);
}

Test(kc_config, exec_plugin_client_certificate_v1beta1)
{
    char *plugin = install_plugin("bin/plugin.sh");
    char *path =
        exec_kubeconfig(plugin, "client.authentication.k8s.io/v1beta1", "cert", NULL, NULL);
    kc_config *cfg = load_path(path, NULL);
    cr_assert_null(token_of(cfg), "the plugin returned no token");
    char *cert = NULL, *key = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_config_exec_cert(cfg, &cert, &key, &err), KC_OK, "%s", err.message);
    cr_assert_str_eq(cert, "CERT-1");
    cr_assert_str_eq(key, "KEY-1");
    cr_assert_eq(run_count(), 1, "bearer_token and exec_cert share one run");
    free(cert);
    free(key);
    kc_config_free(cfg);
    free(path);
    free(plugin);
}

Test(kc_config, exec_plugin_answering_another_api_version_is_rejected)
{
    kc_config *cfg = exec_config("wrongversion", NULL);
    char *tok = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_config_bearer_token(cfg, &tok, &err), KC_ERR_AUTH_PLUGIN);
    cr_assert(strstr(err.message, "v1alpha1"), "%s", err.message);
    cr_assert_null(strstr(err.message, "tok-1"), "%s", err.message);
    kc_error_clear(&err);
    kc_config_free(cfg);
}

Test(kc_config, exec_plugin_flooding_stdout_is_stopped)
{
    kc_config *cfg = exec_config("flood", NULL);
    char *tok = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_config_bearer_token(cfg, &tok, &err), KC_ERR_AUTH_PLUGIN);
    cr_assert(strstr(err.message, "more than"), "%s", err.message);
    kc_error_clear(&err);
    kc_config_free(cfg);
}

Test(kc_config, exec_unsupported_api_version_is_a_load_error)
{
    char *path =
        exec_kubeconfig("/bin/true", "client.authentication.k8s.io/v1alpha1", "token", NULL, NULL);
    kc_config_opts opts = {.kubeconfig = path, .no_in_cluster = true};
    kc_config *cfg = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_config_load(&opts, &cfg, &err), KC_ERR_CONFIG);
    cr_assert(strstr(err.message, "v1alpha1\" is not supported"), "%s", err.message);
    kc_error_clear(&err);
    free(path);
}

static void *token_thread(void *arg)
{
    char *tok = NULL;
    if (kc_config_bearer_token(arg, &tok, NULL) != KC_OK)
        return NULL;
    return tok;
}

Test(kc_config, exec_plugin_runs_once_for_concurrent_callers)
{
    kc_config *cfg = exec_config("slow", NULL);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, token_thread, cfg), 0);
    for (int i = 0; i < 4; i++) {
        void *tok;
        cr_assert_eq(pthread_join(th[i], &tok), 0);
        cr_assert_not_null(tok);
        cr_assert_str_eq(tok, "tok-1");
        free(tok);
    }
    cr_assert_eq(run_count(), 1);
    kc_config_free(cfg);
}

/* ---- in-cluster ------------------------------------------------------------------ */

static char *make_sa_dir(const char *token, const char *ca, const char *ns)
{
    char *dir = tmp_path("sa");
    cr_assert_eq(mkdir(dir, 0700), 0);
    if (token)
        free(write_tmp("sa/token", token));
    if (ca)
        free(write_tmp("sa/ca.crt", ca));
    if (ns)
        free(write_tmp("sa/namespace", ns));
    return dir;
}

static kc_config *in_cluster(const char *dir)
{
    kc_config *cfg = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_config_in_cluster(dir, &cfg, &err), KC_OK, "%s",
                 err.message ? err.message : "?");
    return cfg;
}

Test(kc_config, in_cluster_reads_token_ca_and_namespace)
{
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    char *dir = make_sa_dir("sa-token-1\n", "IN-CLUSTER-CA", "operators\n");
    kc_config *cfg = in_cluster(dir);
    cr_assert(kc_config_is_in_cluster(cfg));
    cr_assert_str_eq(kc_config_server(cfg), "https://10.96.0.1:443");
    cr_assert_str_eq(kc_config_namespace(cfg), "operators");
    cr_assert_str_eq(kc_config_context(cfg), "");
    kc_tls tls;
    kc_config_tls(cfg, &tls);
    assert_blob(tls.ca, "IN-CLUSTER-CA");
    cr_assert_not(tls.insecure);
    assert_token(cfg, "sa-token-1");
    kc_config_free(cfg);
    free(dir);
}

Test(kc_config, in_cluster_token_rotation_is_picked_up)
{
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    char *dir = make_sa_dir("projected-1\n", NULL, NULL);
    kc_config *cfg = in_cluster(dir);
    assert_token(cfg, "projected-1");
    free(write_tmp("sa/token.tmp", "projected-2\n"));
    char *from = tmp_path("sa/token.tmp"), *to = tmp_path("sa/token");
    cr_assert_eq(rename(from, to), 0);
    assert_token(cfg, "projected-2");
    cr_assert(kc_config_invalidate_credentials(cfg));
    assert_token(cfg, "projected-2");
    kc_config_free(cfg);
    free(from);
    free(to);
    free(dir);
}

Test(kc_config, in_cluster_namespace_defaults_and_ca_is_optional)
{
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    char *dir = make_sa_dir("t\n", NULL, NULL);
    kc_config *cfg = in_cluster(dir);
    cr_assert_str_eq(kc_config_namespace(cfg), "default");
    kc_tls tls;
    kc_config_tls(cfg, &tls);
    cr_assert_eq(tls.ca.len, 0, "no ca.crt: the system trust store");
    kc_config_free(cfg);
    free(dir);
}

Test(kc_config, in_cluster_missing_token_is_a_config_error)
{
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    char *dir = make_sa_dir(NULL, "CA", "ns");
    kc_config *cfg = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_config_in_cluster(dir, &cfg, &err), KC_ERR_CONFIG);
    cr_assert_null(cfg);
    cr_assert(strstr(err.message, "in-cluster") && strstr(err.message, "sa/token"), "%s",
              err.message);
    kc_error_clear(&err);
    free(dir);
}

Test(kc_config, in_cluster_needs_host_and_port)
{
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    char *dir = make_sa_dir("t", NULL, NULL);
    kc_config *cfg = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_config_in_cluster(dir, &cfg, &err), KC_ERR_CONFIG);
    cr_assert(strstr(err.message, "KUBERNETES_SERVICE_PORT"), "%s", err.message);
    kc_error_clear(&err);
    free(dir);
}

Test(kc_config, in_cluster_ipv6_host_is_bracketed)
{
    setenv("KUBERNETES_SERVICE_HOST", "fd00:10:96::1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "6443", 1);
    char *dir = make_sa_dir("t", NULL, NULL);
    kc_config *cfg = in_cluster(dir);
    cr_assert_str_eq(kc_config_server(cfg), "https://[fd00:10:96::1]:6443");
    kc_config_free(cfg);
    free(dir);
}

Test(kc_config, load_prefers_in_cluster_over_home_unless_disabled)
{
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    char *dir = make_sa_dir("sa-token\n", NULL, "from-sa");
    char *src = fixture("single.yaml");
    char *text = testenv_read_file(src, NULL);
    char *kube = tmp_path(".kube");
    cr_assert_eq(mkdir(kube, 0700), 0);
    free(write_tmp(".kube/config", text));

    kc_config_opts opts = {.sa_dir = dir};
    kc_config *cfg = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_config_load(&opts, &cfg, &err), KC_OK, "%s", err.message);
    cr_assert(kc_config_is_in_cluster(cfg));
    cr_assert_str_eq(kc_config_namespace(cfg), "from-sa");
    kc_config_free(cfg);

    opts.no_in_cluster = true;
    cr_assert_eq(kc_config_load(&opts, &cfg, &err), KC_OK, "%s", err.message);
    cr_assert_not(kc_config_is_in_cluster(cfg));
    cr_assert_str_eq(kc_config_context(cfg), "dev");
    kc_config_free(cfg);

    /* KUBECONFIG naming only missing files falls back to in-cluster, as client-go does. */
    setenv("KUBECONFIG", "/nonexistent/config", 1);
    opts.no_in_cluster = false;
    opts.namespace_ = "ns-opt";
    cr_assert_eq(kc_config_load(&opts, &cfg, &err), KC_OK, "%s", err.message);
    cr_assert(kc_config_is_in_cluster(cfg));
    cr_assert_str_eq(kc_config_namespace(cfg), "ns-opt");
    kc_config_free(cfg);
    free(kube);
    free(text);
    free(src);
    free(dir);
}

/* A second service-account dir under tmp (make_sa_dir always makes "sa"). */
static char *make_named_sa_dir(const char *name, const char *token, const char *ns)
{
    char *dir = tmp_path(name), *p = NULL;
    cr_assert_eq(mkdir(dir, 0700), 0);
    cr_assert(asprintf(&p, "%s/token", name) > 0);
    free(write_tmp(p, token));
    free(p);
    cr_assert(asprintf(&p, "%s/namespace", name) > 0);
    free(write_tmp(p, ns));
    free(p);
    return dir;
}

Test(kc_config, load_in_cluster_takes_the_sa_dir_from_the_environment)
{
    setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "6443", 1);
    char *dir = make_sa_dir("env-token\n", "ENV-CA", "from-env\n");
    setenv("PROVISIO_SERVICEACCOUNT_DIR", dir, 1);

    kc_config_opts opts = {0};
    kc_config *cfg = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_config_load(&opts, &cfg, &err), KC_OK, "%s", err.message);
    cr_assert(kc_config_is_in_cluster(cfg));
    cr_assert_str_eq(kc_config_server(cfg), "https://127.0.0.1:6443");
    cr_assert_str_eq(kc_config_namespace(cfg), "from-env");
    kc_tls tls;
    kc_config_tls(cfg, &tls);
    assert_blob(tls.ca, "ENV-CA");
    assert_token(cfg, "env-token");
    kc_config_free(cfg);

    /* kc_config_in_cluster(NULL) reads the same variable. */
    cfg = in_cluster(NULL);
    cr_assert_str_eq(kc_config_namespace(cfg), "from-env");
    kc_config_free(cfg);
    free(dir);
}

Test(kc_config, explicit_sa_dir_wins_over_the_environment)
{
    setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "6443", 1);
    char *env_dir = make_named_sa_dir("sa-env", "env-token", "from-env");
    char *opt_dir = make_named_sa_dir("sa-opt", "opt-token", "from-opt");
    setenv("PROVISIO_SERVICEACCOUNT_DIR", env_dir, 1);

    kc_config_opts opts = {.sa_dir = opt_dir};
    kc_config *cfg = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_config_load(&opts, &cfg, &err), KC_OK, "%s", err.message);
    cr_assert_str_eq(kc_config_namespace(cfg), "from-opt");
    assert_token(cfg, "opt-token");
    kc_config_free(cfg);
    free(env_dir);
    free(opt_dir);
}

Test(kc_config, empty_sa_dir_environment_means_the_default_path)
{
    setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "6443", 1);
    setenv("PROVISIO_SERVICEACCOUNT_DIR", "", 1);
    kc_config *cfg = NULL;
    kc_error err = KC_ERROR_INIT;
    int rc = kc_config_in_cluster(NULL, &cfg, &err);
    if (access(KC_DEFAULT_SA_DIR "/token", R_OK) == 0) {
        /* Running inside a pod: the default mount is there and is used. */
        cr_assert_eq(rc, KC_OK, "%s", err.message);
        kc_config_free(cfg);
        return;
    }
    cr_assert_eq(rc, KC_ERR_CONFIG);
    cr_assert_null(cfg);
    cr_assert(strstr(err.message, KC_DEFAULT_SA_DIR "/token"), "%s", err.message);
    kc_error_clear(&err);
}

Test(kc_config, missing_token_in_the_environment_sa_dir_names_that_dir)
{
    setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "6443", 1);
    char *dir = make_sa_dir(NULL, "CA", "ns");
    setenv("PROVISIO_SERVICEACCOUNT_DIR", dir, 1);
    kc_config_opts opts = {0};
    kc_config *cfg = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_config_load(&opts, &cfg, &err), KC_ERR_CONFIG);
    cr_assert_null(cfg);
    cr_assert(strstr(err.message, dir), "%s", err.message);
    kc_error_clear(&err);
    free(dir);
}
