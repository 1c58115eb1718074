/*
 * Unit tests of ip_agent (src/reconcilers/ip/agent): the kubeconfig written
 * for provisio-cni reads back, through the client's own kubeconfig loader,
 * as the server, CA, TLS settings and token it was made from; the file is
 * written atomically, 0600, its directory made, nothing left on failure.
 * The controller itself (TokenRequest, rewrite when removed) runs against
 * the real API server in tests/e2e/agent_test.sh and cni_test.sh.
 */
#include <criterion/criterion.h>

#include "ip_agent.h"
#include "kc_config.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char ca_pem[] = "-----BEGIN CERTIFICATE-----\n"
                             "MIIBdzCCAR2gAwIBAgIBADAKBggqhkjOPQQDAjAjMSEwHwYDVQQDDBhrM3Mt\n"
                             "-----END CERTIFICATE-----\n";

/* A token with every character a JWT may hold, and a quote and a backslash
 * a careless writer would not escape. */
static const char token[] = "eyJhbGciOi.JSUzI1NiJ9-_x=\"q\\z";

static kc_config *load(const char *doc)
{
    kc_config *cfg = NULL;
    kc_error err = KC_ERROR_INIT;
    int rc = kc_config_from_yaml(doc, strlen(doc), NULL, &cfg, &err);
    cr_assert_eq(rc, KC_OK, "the written kubeconfig does not load: %s\n%s",
                 err.message ? err.message : "", doc);
    kc_error_clear(&err);
    return cfg;
}

Test(ip_cni_kubeconfig, reads_back_as_server_ca_and_token)
{
    kc_tls tls = {.ca = {(const unsigned char *)ca_pem, sizeof ca_pem - 1}};
    char *doc = ip_cni_kubeconfig_doc("https://127.0.0.1:6443/prefix", &tls, token);
    cr_assert_not_null(doc);
    cr_assert_null(strstr(doc, "insecure"), "TLS is verified: %s", doc);
    kc_config *cfg = load(doc);
    cr_assert_str_eq(kc_config_server(cfg), "https://127.0.0.1:6443/prefix");
    kc_tls got;
    kc_config_tls(cfg, &got);
    cr_assert_eq(got.ca.len, sizeof ca_pem - 1);
    cr_assert_eq(memcmp(got.ca.data, ca_pem, got.ca.len), 0, "the CA is the agent's");
    cr_assert_eq(got.client_cert.len, 0, "no client certificate: the token is the identity");
    cr_assert_not(got.insecure);
    cr_assert_null(got.server_name);
    char *tok = NULL;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_config_bearer_token(cfg, &tok, &err), KC_OK);
    cr_assert_str_eq(tok, token);
    cr_assert_str_eq(kc_config_context(cfg), "provisio-cni");
    free(tok);
    kc_config_free(cfg);
    free(doc);
}

Test(ip_cni_kubeconfig, keeps_insecure_and_tls_server_name_and_no_ca)
{
    kc_tls tls = {.insecure = true, .server_name = "kubernetes.default.svc"};
    char *doc = ip_cni_kubeconfig_doc("https://[::1]:6443", &tls, "t");
    cr_assert_not_null(doc);
    cr_assert_null(strstr(doc, "certificate-authority"), "no CA given, none written: %s", doc);
    kc_config *cfg = load(doc);
    kc_tls got;
    kc_config_tls(cfg, &got);
    cr_assert(got.insecure);
    cr_assert_str_eq(got.server_name, "kubernetes.default.svc");
    cr_assert_eq(got.ca.len, 0);
    kc_config_free(cfg);
    free(doc);
}

Test(ip_cni_kubeconfig, refuses_missing_arguments)
{
    kc_tls tls = {0};
    cr_assert_null(ip_cni_kubeconfig_doc(NULL, &tls, "t"));
    cr_assert_null(ip_cni_kubeconfig_doc("https://h", NULL, "t"));
    cr_assert_null(ip_cni_kubeconfig_doc("https://h", &tls, NULL));
}

/* Entries of dir, . and .. left out. */
static int entries(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s", dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    static char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

Test(ip_cni_write_file, makes_directories_writes_0600_and_replaces_atomically)
{
    char root[] = "/tmp/test_ip_agent.XXXXXX";
    cr_assert_not_null(mkdtemp(root));
    char path[300], dir[256];
    snprintf(dir, sizeof dir, "%s/etc/cni/net.d/provisio.d", root);
    snprintf(path, sizeof path, "%s/kubeconfig", dir);
    cr_assert_eq(ip_cni_write_file(path, "first\n"), 0);
    struct stat st1, st2;
    cr_assert_eq(stat(path, &st1), 0);
    cr_assert_eq(st1.st_mode & 07777, 0600, "mode %o", st1.st_mode & 07777);
    cr_assert_str_eq(slurp(path), "first\n");
    struct stat dst;
    cr_assert_eq(stat(dir, &dst), 0);
    cr_assert_eq(dst.st_mode & 0777, 0755);

    cr_assert_eq(ip_cni_write_file(path, "second\n"), 0);
    cr_assert_eq(stat(path, &st2), 0);
    cr_assert_str_eq(slurp(path), "second\n");
    cr_assert_neq(st1.st_ino, st2.st_ino, "replaced by rename, not rewritten in place");
    cr_assert_eq(entries(dir), 1, "no temporary file left beside it");

    /* A directory in the way of the file: refused, nothing left, nothing changed. */
    char blocked[320];
    snprintf(blocked, sizeof blocked, "%s/kubeconfig/x", dir);
    cr_assert_neq(ip_cni_write_file(blocked, "x"), 0);
    cr_assert_str_eq(slurp(path), "second\n");
    cr_assert_eq(entries(dir), 1);
    /* A relative path is refused. */
    cr_assert_eq(ip_cni_write_file("relative/kubeconfig", "x"), EINVAL);

    unlink(path);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    cr_assert_eq(system(cmd), 0);
}

Test(ip_cni_write_file, fails_where_it_may_not_write_and_leaves_nothing)
{
    /* As another user (uid 65532, as the agent image's nonroot) in a child: a
     * root-owned 0755 directory is not writable by it. */
    char root[] = "/tmp/test_ip_agent.XXXXXX";
    cr_assert_not_null(mkdtemp(root));
    cr_assert_eq(chmod(root, 0755), 0);
    char path[256];
    snprintf(path, sizeof path, "%s/sub/kubeconfig", root);
    char path2[256];
    snprintf(path2, sizeof path2, "%s/kubeconfig", root);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65532) != 0 || setuid(65532) != 0))
            _exit(90);
        if (geteuid() == 0)
            _exit(91);
        int a = ip_cni_write_file(path, "x");  /* the directory cannot be made */
        int b = ip_cni_write_file(path2, "x"); /* the temporary file cannot be made */
        _exit(a == EACCES && b == EACCES ? 0 : 1);
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status));
    cr_assert_eq(WEXITSTATUS(status), 0, "child status %d", WEXITSTATUS(status));
    cr_assert_eq(entries(root), 0, "nothing left behind");
    rmdir(root);
}
