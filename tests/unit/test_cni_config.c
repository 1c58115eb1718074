/*
 * Unit tests of cni_config: the CNI_* environment and CNI_ARGS, and the
 * network configuration on stdin, each refusal with the specification's code
 * and a message naming what is wrong.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cni_config.h"

static int parse_env(char **envp, cni_env *e, cni_error *err)
{
    return cni_env_parse(envp, e, err);
}

static int parse_conf(const char *text, cni_command cmd, cni_conf *c, cni_error *err)
{
    return cni_conf_parse(text, strlen(text), cmd, c, err);
}

#define BASE "\"cniVersion\":\"1.1.0\",\"name\":\"net1\",\"type\":\"bridge\""

Test(cni_env, add_reads_container_ifname_and_kubernetes_args)
{
    char *envp[] = {"PATH=/bin",
                    "CNI_COMMAND=ADD",
                    "CNI_CONTAINERID=0123abcd_x.y-z",
                    "CNI_NETNS=/var/run/netns/n1",
                    "CNI_IFNAME=eth0",
                    "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=web;K8S_POD_NAME=web-0.a;"
                    "K8S_POD_INFRA_CONTAINER_ID=0123abcd;K8S_POD_UID=7d3c1c8e-0000-4000-8000-0a",
                    "CNI_PATH=/opt/cni/bin",
                    NULL};
    cni_env e;
    cni_error err = CNI_ERROR_INIT;
    cr_assert_eq(parse_env(envp, &e, &err), 0, "%s", err.msg);
    cr_assert_eq(e.command, CNI_CMD_ADD);
    cr_assert_str_eq(e.container_id, "0123abcd_x.y-z");
    cr_assert_str_eq(e.ifname, "eth0");
    cr_assert_str_eq(e.netns, "/var/run/netns/n1");
    cr_assert_str_eq(e.pod_namespace, "web");
    cr_assert_str_eq(e.pod_name, "web-0.a");
    cr_assert_str_eq(e.pod_uid, "7d3c1c8e-0000-4000-8000-0a");
    cni_env_free(&e);
}

Test(cni_env, every_command_name_parses_and_status_gc_version_need_no_container)
{
    const char *cmds[] = {"STATUS", "GC", "VERSION"};
    for (size_t i = 0; i < 3; i++) {
        char buf[32];
        snprintf(buf, sizeof(buf), "CNI_COMMAND=%s", cmds[i]);
        char *envp[] = {buf, NULL};
        cni_env e;
        cni_error err = CNI_ERROR_INIT;
        cr_assert_eq(parse_env(envp, &e, &err), 0, "%s: %s", cmds[i], err.msg);
        cr_assert_str_eq(cni_command_name(e.command), cmds[i]);
        cr_assert_null(e.container_id);
        cni_env_free(&e);
    }
}

Test(cni_env, missing_or_unknown_command_is_code_4)
{
    char *none[] = {"CNI_CONTAINERID=x", NULL};
    char *bad[] = {"CNI_COMMAND=add", NULL};
    cni_env e;
    cni_error err = CNI_ERROR_INIT;
    cr_assert_eq(parse_env(none, &e, &err), -CNI_ERR_INVALID_ENV);
    cr_assert(strstr(err.msg, "CNI_COMMAND is not set"), "%s", err.msg);
    cr_assert_eq(parse_env(bad, &e, &err), -CNI_ERR_INVALID_ENV);
    cr_assert(strstr(err.msg, "\"add\" is not one of ADD"), "%s", err.msg);
    cni_error_clear(&err);
}

Test(cni_env, add_del_check_need_a_valid_container_id_and_ifname)
{
    struct {
        const char *cid, *ifname, *want;
    } rows[] = {
        {NULL, "eth0", "CNI_CONTAINERID is not set"},
        {"", "eth0", "CNI_CONTAINERID is not set"},
        {"-abc", "eth0", "CNI_CONTAINERID \"-abc\""},
        {"a/b", "eth0", "CNI_CONTAINERID \"a/b\""},
        {"abc", NULL, "CNI_IFNAME is not set"},
        {"abc", "eth0:1", "is not an interface name"},
        {"abc", "a-name-longer-than-15", "is not an interface name"},
        {"abc", "..", "is not an interface name"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char cid[64], ifn[64];
        char *envp[4] = {"CNI_COMMAND=DEL", NULL, NULL, NULL};
        size_t k = 1;
        if (rows[i].cid) {
            snprintf(cid, sizeof(cid), "CNI_CONTAINERID=%s", rows[i].cid);
            envp[k++] = cid;
        }
        if (rows[i].ifname) {
            snprintf(ifn, sizeof(ifn), "CNI_IFNAME=%s", rows[i].ifname);
            envp[k++] = ifn;
        }
        cni_env e;
        cni_error err = CNI_ERROR_INIT;
        cr_assert_eq(parse_env(envp, &e, &err), -CNI_ERR_INVALID_ENV, "row %zu", i);
        cr_assert(strstr(err.msg, rows[i].want), "row %zu: %s", i, err.msg);
        cr_assert_null(e.container_id, "row %zu: *out is zeroed on error", i);
        cni_error_clear(&err);
    }
}

Test(cni_env, cni_args_malformed_or_not_kubernetes_names_are_refused)
{
    struct {
        const char *args, *want;
    } rows[] = {
        {"K8S_POD_NAMESPACE", "no key or no '='"},
        {"=x", "no key or no '='"},
        {"K8S_POD_NAMESPACE=Web", "is not a namespace name"},
        {"K8S_POD_NAME=web_0", "is not a pod name"},
        {"K8S_POD_UID=not a uid", "is not a uid"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char a[128];
        snprintf(a, sizeof(a), "CNI_ARGS=%s", rows[i].args);
        char *envp[] = {"CNI_COMMAND=ADD", "CNI_CONTAINERID=c1", "CNI_IFNAME=eth0", a, NULL};
        cni_env e;
        cni_error err = CNI_ERROR_INIT;
        cr_assert_eq(parse_env(envp, &e, &err), -CNI_ERR_INVALID_ENV, "row %zu", i);
        cr_assert(strstr(err.msg, rows[i].want), "row %zu: %s", i, err.msg);
        cni_error_clear(&err);
    }
}

Test(cni_env, empty_pairs_and_unknown_keys_in_cni_args_are_ignored)
{
    char *envp[] = {"CNI_COMMAND=ADD", "CNI_CONTAINERID=c1", "CNI_IFNAME=eth0",
                    "CNI_ARGS=;IgnoreUnknown=true;;FOO=a=b;K8S_POD_NAMESPACE=ns1;", NULL};
    cni_env e;
    cni_error err = CNI_ERROR_INIT;
    cr_assert_eq(parse_env(envp, &e, &err), 0, "%s", err.msg);
    cr_assert_str_eq(e.pod_namespace, "ns1");
    cr_assert_null(e.pod_uid);
    cni_env_free(&e);
}

Test(cni_conf, single_pool_with_every_option)
{
    const char *text = "{" BASE ",\"ipam\":{\"type\":\"provisio-cni\",\"pool\":\"demo-v4\","
                       "\"kubeconfig\":\"/etc/cni/net.d/provisio.d/kubeconfig\","
                       "\"network\":\"blue\",\"namespace\":\"infra\",\"nodeName\":\"node-a\","
                       "\"timeout\":2.5,\"requestTimeout\":1,\"futureField\":[1]}}";
    cni_conf c;
    cni_error err = CNI_ERROR_INIT;
    cr_assert_eq(parse_conf(text, CNI_CMD_ADD, &c, &err), 0, "%s", err.msg);
    cr_assert_str_eq(c.cni_version, "1.1.0");
    cr_assert_str_eq(c.name, "net1");
    cr_assert_eq(c.n_pools, 1);
    cr_assert_str_eq(c.pools[0], "demo-v4");
    cr_assert_str_eq(c.kubeconfig, "/etc/cni/net.d/provisio.d/kubeconfig");
    cr_assert_str_eq(c.network, "blue");
    cr_assert_str_eq(c.namespace_, "infra");
    cr_assert_str_eq(c.node_name, "node-a");
    cr_assert_float_eq(c.timeout_s, 2.5, 1e-9);
    cr_assert_float_eq(c.request_timeout_s, 1.0, 1e-9);
    cni_conf_free(&c);
}

Test(cni_conf, pools_one_per_family_and_defaults)
{
    const char *text = "{" BASE ",\"ipam\":{\"pools\":[\"demo-v4\",\"demo-v6\"]}}";
    cni_conf c;
    cni_error err = CNI_ERROR_INIT;
    cr_assert_eq(parse_conf(text, CNI_CMD_ADD, &c, &err), 0, "%s", err.msg);
    cr_assert_eq(c.n_pools, 2);
    cr_assert_str_eq(c.pools[1], "demo-v6");
    cr_assert_null(c.kubeconfig);
    cr_assert_null(c.network);
    cr_assert_float_eq(c.timeout_s, CNI_DEFAULT_TIMEOUT_S, 1e-9);
    cr_assert_float_eq(c.request_timeout_s, CNI_DEFAULT_REQUEST_TIMEOUT_S, 1e-9);
    cni_conf_free(&c);
}

Test(cni_conf, invalid_configurations_are_code_7_with_the_field_named)
{
    struct {
        const char *ipam, *want;
    } rows[] = {
        {"{}", "ipam.pool is missing"},
        {"{\"pool\":\"a\",\"pools\":[\"b\"]}", "both pool and pools"},
        {"{\"pool\":7}", "ipam.pool must be the name of an IPPool"},
        {"{\"pool\":\"Demo\"}", "\"Demo\" is not an IPPool name"},
        {"{\"pool\":\"a\\u0000b\"}", "is not an IPPool name"},
        {"{\"pools\":[]}", "non-empty array"},
        {"{\"pools\":\"a\"}", "non-empty array"},
        {"{\"pools\":[\"a\",\"a\"]}", "names IPPool a twice"},
        {"{\"pools\":[\"a\",\"b\",\"c\"]}", "more than 2 pools"},
        {"{\"pool\":\"a\",\"kubeconfig\":5}", "ipam.kubeconfig must be a string"},
        {"{\"pool\":\"a\",\"kubeconfig\":\"\"}", "ipam.kubeconfig must be a non-empty"},
        {"{\"pool\":\"a\",\"timeout\":0}", "ipam.timeout must be more than 0"},
        {"{\"pool\":\"a\",\"timeout\":1e309}", "ipam.timeout"},
        {"{\"pool\":\"a\",\"timeout\":\"10s\"}", "ipam.timeout must be a number"},
        {"{\"pool\":\"a\",\"requestTimeout\":-1}", "ipam.requestTimeout must be more than 0"},
        {"{\"pool\":\"a\",\"network\":\"Blue\"}", "ipam.network \"Blue\""},
        {"{\"pool\":\"a\",\"namespace\":\"a.b\"}", "ipam.namespace \"a.b\""},
        {"{\"pool\":\"a\",\"nodeName\":\"-x\"}", "ipam.nodeName \"-x\""},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char text[512];
        snprintf(text, sizeof(text), "{" BASE ",\"ipam\":%s}", rows[i].ipam);
        cni_conf c;
        cni_error err = CNI_ERROR_INIT;
        int rc = parse_conf(text, CNI_CMD_ADD, &c, &err);
        cr_assert_eq(rc, -CNI_ERR_INVALID_CONFIG, "row %zu: rc %d %s", i, rc, err.msg);
        cr_assert(strstr(err.msg, rows[i].want), "row %zu: %s", i, err.msg);
        cr_assert_null(c.pools[0], "row %zu: *out is zeroed on error", i);
        cni_error_clear(&err);
    }
}

Test(cni_conf, name_and_ipam_are_required)
{
    cni_conf c;
    cni_error err = CNI_ERROR_INIT;
    cr_assert_eq(
        parse_conf("{\"cniVersion\":\"1.0.0\",\"ipam\":{\"pool\":\"a\"}}", CNI_CMD_ADD, &c, &err),
        -CNI_ERR_INVALID_CONFIG);
    cr_assert(strstr(err.msg, "has no name"), "%s", err.msg);
    cr_assert_eq(parse_conf("{\"cniVersion\":\"1.0.0\",\"name\":\"_x\"}", CNI_CMD_ADD, &c, &err),
                 -CNI_ERR_INVALID_CONFIG);
    cr_assert(strstr(err.msg, "network name \"_x\""), "%s", err.msg);
    cr_assert_eq(parse_conf("{\"cniVersion\":\"1.0.0\",\"name\":\"n\"}", CNI_CMD_ADD, &c, &err),
                 -CNI_ERR_INVALID_CONFIG);
    cr_assert(strstr(err.msg, "no ipam object"), "%s", err.msg);
    cni_error_clear(&err);
}

Test(cni_conf, not_json_is_code_6)
{
    const char *rows[] = {"",          "not json", "{\"cniVersion\":", "[1]", "{} trailing",
                          "{\"a\":1,}" /* json-c accepts this unless strict */};
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        cni_conf c;
        cni_error err = CNI_ERROR_INIT;
        cr_assert_eq(parse_conf(rows[i], CNI_CMD_ADD, &c, &err), -CNI_ERR_DECODE, "row %zu", i);
        cr_assert_not_null(err.msg);
        cni_error_clear(&err);
    }
}

Test(cni_conf, versions_outside_the_supported_list_are_code_1)
{
    const char *rows[] = {"{\"name\":\"n\"}", "{\"cniVersion\":\"0.2.0\",\"name\":\"n\"}",
                          "{\"cniVersion\":2,\"name\":\"n\"}"};
    for (size_t i = 0; i < 3; i++) {
        cni_conf c;
        cni_error err = CNI_ERROR_INIT;
        cr_assert_eq(parse_conf(rows[i], CNI_CMD_DEL, &c, &err), -CNI_ERR_INCOMPATIBLE_VERSION,
                     "row %zu", i);
        cr_assert(strstr(err.msg, "1.1.0"), "the message lists what is supported: %s", err.msg);
        cni_error_clear(&err);
    }
}

Test(cni_conf, check_needs_0_4_0_and_prev_result_status_gc_need_1_1_0)
{
    cni_conf c;
    cni_error err = CNI_ERROR_INIT;
    const char *old = "{\"cniVersion\":\"0.3.1\",\"name\":\"n\",\"ipam\":{\"pool\":\"a\"},"
                      "\"prevResult\":{}}";
    cr_assert_eq(parse_conf(old, CNI_CMD_CHECK, &c, &err), -CNI_ERR_INCOMPATIBLE_VERSION);
    cr_assert(strstr(err.msg, "CHECK needs cniVersion 0.4.0"), "%s", err.msg);
    const char *v1 = "{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"ipam\":{\"pool\":\"a\"}}";
    cr_assert_eq(parse_conf(v1, CNI_CMD_STATUS, &c, &err), -CNI_ERR_INCOMPATIBLE_VERSION);
    cr_assert_eq(parse_conf(v1, CNI_CMD_GC, &c, &err), -CNI_ERR_INCOMPATIBLE_VERSION);
    cr_assert_eq(parse_conf(v1, CNI_CMD_CHECK, &c, &err), -CNI_ERR_INVALID_CONFIG);
    cr_assert(strstr(err.msg, "CHECK needs prevResult"), "%s", err.msg);
    const char *ok = "{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"ipam\":{\"pool\":\"a\"},"
                     "\"prevResult\":{\"ips\":[{\"address\":\"10.0.0.2/24\"}]}}";
    cr_assert_eq(parse_conf(ok, CNI_CMD_CHECK, &c, &err), 0, "%s", err.msg);
    cr_assert_not_null(c.prev_result);
    cni_conf_free(&c);
    cni_error_clear(&err);
}

Test(cni_conf, gc_reads_valid_attachments)
{
    const char *text = "{" BASE ",\"ipam\":{\"pool\":\"a\"},\"cni.dev/valid-attachments\":["
                       "{\"containerID\":\"c1\",\"ifname\":\"eth0\"},"
                       "{\"containerID\":\"c2\",\"ifname\":\"net1\"}]}";
    cni_conf c;
    cni_error err = CNI_ERROR_INIT;
    cr_assert_eq(parse_conf(text, CNI_CMD_GC, &c, &err), 0, "%s", err.msg);
    cr_assert_eq(c.n_valid, 2);
    cr_assert_str_eq(c.valid[1].container_id, "c2");
    cr_assert_str_eq(c.valid[1].ifname, "net1");
    cni_conf_free(&c);

    const char *none = "{" BASE ",\"ipam\":{\"pool\":\"a\"}}";
    cr_assert_eq(parse_conf(none, CNI_CMD_GC, &c, &err), -CNI_ERR_INVALID_CONFIG);
    cr_assert(strstr(err.msg, "cni.dev/valid-attachments"), "%s", err.msg);
    const char *bad = "{" BASE ",\"ipam\":{\"pool\":\"a\"},\"cni.dev/valid-attachments\":["
                      "{\"containerID\":\"c1\"}]}";
    cr_assert_eq(parse_conf(bad, CNI_CMD_GC, &c, &err), -CNI_ERR_INVALID_CONFIG);
    cr_assert(strstr(err.msg, "valid-attachments[0]"), "%s", err.msg);
    cni_error_clear(&err);
}

Test(cni_conf, version_takes_empty_input_or_any_object)
{
    cni_conf c;
    cni_error err = CNI_ERROR_INIT;
    cr_assert_eq(parse_conf("  \n", CNI_CMD_VERSION, &c, &err), 0);
    cr_assert_str_eq(c.cni_version, CNI_VERSION_LATEST);
    cni_conf_free(&c);
    cr_assert_eq(parse_conf("{\"cniVersion\":\"0.1.0\"}", CNI_CMD_VERSION, &c, &err), 0);
    cni_conf_free(&c);
    cr_assert_eq(parse_conf("nope", CNI_CMD_VERSION, &c, &err), -CNI_ERR_DECODE);
    cni_error_clear(&err);
}

Test(cni_conf, input_larger_than_the_bound_is_refused_without_parsing)
{
    size_t n = CNI_MAX_CONFIG_BYTES + 1;
    char *big = malloc(n);
    memset(big, ' ', n);
    cni_conf c;
    cni_error err = CNI_ERROR_INIT;
    cr_assert_eq(cni_conf_parse(big, n, CNI_CMD_ADD, &c, &err), -CNI_ERR_DECODE);
    cr_assert(strstr(err.msg, "more than"), "%s", err.msg);
    free(big);
    cni_error_clear(&err);
}

Test(cni_conf, deep_nesting_is_a_decode_error_not_a_crash)
{
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 1);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    deep[2 * depth] = '\0';
    cni_conf c;
    cni_error err = CNI_ERROR_INIT;
    cr_assert_eq(cni_conf_parse(deep, 2 * depth, CNI_CMD_ADD, &c, &err), -CNI_ERR_DECODE);
    free(deep);
    cni_error_clear(&err);
}
