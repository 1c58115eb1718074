/*
 * Unit tests of the manager's pure helpers (src/manager/manager.c): where
 * the leader-election Lease lives and the host label of
 * rest_client_requests_total. The run mode itself is tested end to end
 * (tests/e2e/manager_test.sh).
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kc_config.h"
#include "kc_error.h"
#include "manager.h"
#include "testenv.h"

static char *write_ns_file(const char *content)
{
    char *dir = testenv_tempdir();
    cr_assert_not_null(dir);
    char *path = NULL;
    cr_assert_geq(asprintf(&path, "%s/namespace", dir), 0);
    cr_assert_eq(testenv_write_file(path, content, strlen(content)), 0);
    free(path);
    return dir;
}

Test(mgr_lease_namespace, flag_wins_over_the_service_account_file)
{
    char *dir = write_ns_file("from-file\n");
    char *ns = NULL;
    cr_assert_eq(mgr_lease_namespace("from-flag", dir, &ns), 0);
    cr_expect_str_eq(ns, "from-flag");
    free(ns);
    testenv_rmtree(dir);
    free(dir);
}

Test(mgr_lease_namespace, service_account_file_is_trimmed)
{
    char *dir = write_ns_file("  operators\n\n");
    char *ns = NULL;
    cr_assert_eq(mgr_lease_namespace(NULL, dir, &ns), 0);
    cr_expect_str_eq(ns, "operators");
    free(ns);
    /* An empty flag counts as not given. */
    cr_assert_eq(mgr_lease_namespace("", dir, &ns), 0);
    cr_expect_str_eq(ns, "operators");
    free(ns);
    testenv_rmtree(dir);
    free(dir);
}

Test(mgr_lease_namespace, default_without_flag_or_file)
{
    char *dir = testenv_tempdir();
    cr_assert_not_null(dir);
    char *ns = NULL;
    cr_assert_eq(mgr_lease_namespace(NULL, dir, &ns), 0);
    cr_expect_str_eq(ns, "default");
    free(ns);
    testenv_rmtree(dir);
    free(dir);
}

Test(mgr_lease_namespace, service_account_dir_from_the_environment)
{
    char *dir = write_ns_file("from-env");
    cr_assert_eq(setenv(KC_SA_DIR_ENV, dir, 1), 0);
    char *ns = NULL;
    cr_assert_eq(mgr_lease_namespace(NULL, NULL, &ns), 0);
    cr_expect_str_eq(ns, "from-env");
    free(ns);
    unsetenv(KC_SA_DIR_ENV);
    testenv_rmtree(dir);
    free(dir);
}

Test(mgr_lease_namespace, blank_file_falls_back_to_default)
{
    char *dir = write_ns_file(" \n");
    char *ns = NULL;
    cr_assert_eq(mgr_lease_namespace(NULL, dir, &ns), 0);
    cr_expect_str_eq(ns, "default");
    free(ns);
    testenv_rmtree(dir);
    free(dir);
}

Test(mgr_rest_host, host_and_port_of_the_server_url)
{
    static const struct {
        const char *server, *host;
    } cases[] = {
        {"https://127.0.0.1:6443", "127.0.0.1:6443"},
        {"https://127.0.0.1:6443/", "127.0.0.1:6443"},
        {"https://kubernetes.default.svc/prefix/path", "kubernetes.default.svc"},
        {"https://[::1]:6443", "[::1]:6443"},
        {"http://localhost:8080?x=1", "localhost:8080"},
        {"example.com:443", "example.com:443"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *h = NULL;
        cr_assert_eq(mgr_rest_host(cases[i].server, &h), 0);
        cr_expect_str_eq(h, cases[i].host, "server %s", cases[i].server);
        free(h);
    }
    char *h = (char *)"unchanged";
    cr_expect_eq(mgr_rest_host(NULL, &h), KC_ERR_INVALID_ARG);
    cr_expect_null(h);
}
