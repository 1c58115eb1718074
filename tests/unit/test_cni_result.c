/*
 * Unit tests of cni_result (the ADD result, VERSION, prevResult lookup),
 * cni_names (claim names, label values) and cni_error (the error object).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cni_config.h"
#include "cni_error.h"
#include "cni_names.h"
#include "cni_result.h"

static json_object *parse(const char *s)
{
    json_object *o = json_tokener_parse(s);
    cr_assert_not_null(o, "test JSON: %s", s);
    return o;
}

Test(cni_result, v4_and_v6_claims_give_ips_gateway_and_routes_without_duplicates)
{
    json_object *st[2] = {
        parse("{\"address\":\"10.20.0.5/24\",\"gateway\":\"10.20.0.1\",\"pool\":\"demo-v4\","
              "\"routes\":[{\"dst\":\"0.0.0.0/0\",\"gw\":\"10.20.0.1\"},"
              "{\"dst\":\"10.30.0.0/16\"},{\"dst\":\"0.0.0.0/0\",\"gw\":\"10.20.0.1\"}]}"),
        parse("{\"address\":\"fd00:10::1fa/64\",\"routes\":[{\"dst\":\"10.30.0.0/16\"},"
              "{\"dst\":\"::/0\",\"gw\":\"fd00:10::1\"}]}"),
    };
    const char *names[] = {"cni-a", "cni-a-1"};
    char *out = NULL;
    cni_error err = CNI_ERROR_INIT;
    cr_assert_eq(cni_result_encode("1.1.0", st, names, 2, &out, &err), 0, "%s", err.msg);
    json_object *r = parse(out);
    cr_assert_str_eq(
        json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE),
        "{\"cniVersion\":\"1.1.0\",\"ips\":[{\"address\":\"10.20.0.5/24\","
        "\"gateway\":\"10.20.0.1\"},{\"address\":\"fd00:10::1fa/64\"}],"
        "\"routes\":[{\"dst\":\"0.0.0.0/0\",\"gw\":\"10.20.0.1\"},"
        "{\"dst\":\"10.30.0.0/16\"},{\"dst\":\"::/0\",\"gw\":\"fd00:10::1\"}],"
        "\"dns\":{}}");
    json_object_put(r);
    free(out);
    json_object_put(st[0]);
    json_object_put(st[1]);
}

Test(cni_result, versions_before_1_0_0_carry_the_ip_version)
{
    json_object *st[2] = {parse("{\"address\":\"10.0.0.2/8\"}"),
                          parse("{\"address\":\"fd00::2/64\"}")};
    const char *names[] = {"a", "b"};
    char *out = NULL;
    cni_error err = CNI_ERROR_INIT;
    cr_assert_eq(cni_result_encode("0.3.1", st, names, 2, &out, &err), 0);
    json_object *r = parse(out);
    json_object *ips = json_object_object_get(r, "ips");
    cr_assert_str_eq(json_object_get_string(
                         json_object_object_get(json_object_array_get_idx(ips, 0), "version")),
                     "4");
    cr_assert_str_eq(json_object_get_string(
                         json_object_object_get(json_object_array_get_idx(ips, 1), "version")),
                     "6");
    cr_assert_str_eq(json_object_get_string(json_object_object_get(r, "cniVersion")), "0.3.1");
    json_object_put(r);
    free(out);
    json_object_put(st[0]);
    json_object_put(st[1]);
}

Test(cni_result, a_status_without_a_valid_address_is_an_error_naming_the_claim)
{
    const char *bad[] = {"{}", "{\"address\":\"10.0.0.2\"}", "{\"address\":\"10.0.0.2/33\"}",
                         "{\"address\":\"x/24\"}",
                         "{\"address\":\"10.0.0.2/24\",\"gateway\":\"g\"}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_object *st = parse(bad[i]);
        const char *names[] = {"cni-x"};
        char *out = NULL;
        cni_error err = CNI_ERROR_INIT;
        cr_assert_eq(cni_result_encode("1.1.0", &st, names, 1, &out, &err), -CNI_ERR_INTERNAL,
                     "row %zu", i);
        cr_assert_null(out);
        cr_assert(strstr(err.msg, "cni-x"), "row %zu: %s", i, err.msg);
        cni_error_clear(&err);
        json_object_put(st);
    }
}

Test(cni_result, version_lists_every_supported_version)
{
    char *v = cni_result_version();
    json_object *r = parse(v);
    json_object *list = json_object_object_get(r, "supportedVersions");
    cr_assert_eq(json_object_array_length(list), cni_supported_versions_n);
    cr_assert_str_eq(json_object_get_string(json_object_array_get_idx(list, 4)), "1.1.0");
    cr_assert_str_eq(json_object_get_string(json_object_object_get(r, "cniVersion")), "1.1.0");
    json_object_put(r);
    free(v);
}

Test(cni_result, prev_result_addresses_compare_by_value)
{
    json_object *prev = parse("{\"ips\":[{\"address\":\"10.1.0.7/16\",\"interface\":1},"
                              "{\"address\":\"fd00:0::05/64\"}]}");
    cr_assert(cni_result_has_address(prev, "10.1.0.7/16"));
    cr_assert(cni_result_has_address(prev, "fd00::5/64"));
    cr_assert_not(cni_result_has_address(prev, "10.1.0.7/24"), "the prefix counts");
    cr_assert_not(cni_result_has_address(prev, "10.1.0.8/16"));
    cr_assert_not(cni_result_has_address(prev, "garbage"));
    json_object *empty = parse("{\"ips\":\"x\"}");
    cr_assert_not(cni_result_has_address(empty, "10.1.0.7/16"));
    json_object_put(prev);
    json_object_put(empty);
}

Test(cni_names, claim_names_are_stable_distinct_and_dns_labels)
{
    char a[CNI_NAMES_CLAIM_MAX], b[CNI_NAMES_CLAIM_MAX], c[CNI_NAMES_CLAIM_MAX],
        d[CNI_NAMES_CLAIM_MAX], a2[CNI_NAMES_CLAIM_MAX];
    cr_assert(cni_names_claim("net1", "c1", "eth0", 0, a));
    cr_assert(cni_names_claim("net1", "c1", "eth0", 0, a2));
    cr_assert(cni_names_claim("net1", "c1", "eth1", 0, b));
    cr_assert(cni_names_claim("net2", "c1", "eth0", 0, c));
    cr_assert(cni_names_claim("net1", "c1", "eth0", 1, d));
    cr_assert_str_eq(a, a2, "a retried ADD finds the same claim");
    cr_assert_str_neq(a, b);
    cr_assert_str_neq(a, c);
    cr_assert_eq(strlen(a), CNI_NAMES_BASE_LEN);
    cr_assert_eq(strncmp(a, d, CNI_NAMES_BASE_LEN), 0, "the second pool's shares the base");
    cr_assert_str_eq(d + CNI_NAMES_BASE_LEN, "-1");
    cr_assert(cni_is_dns_label(a) && cni_is_dns_label(d));
    /* The parts are separated: ("ab","c") is not ("a","bc"). */
    char e[CNI_NAMES_CLAIM_MAX], f[CNI_NAMES_CLAIM_MAX];
    cr_assert(cni_names_claim("n", "ab", "c", 0, e));
    cr_assert(cni_names_claim("n", "a", "bc", 0, f));
    cr_assert_str_neq(e, f);
}

Test(cni_names, label_values_are_kept_when_they_fit_and_hashed_otherwise)
{
    char out[64];
    cr_assert(cni_names_label_value("node-a.example", out));
    cr_assert_str_eq(out, "node-a.example");
    cr_assert(cni_names_label_value("net_", out));
    cr_assert_eq(out[0], 'h');
    cr_assert_eq(strlen(out), 25);
    cr_assert(cni_names_is_label_value(out));
    char id[65];
    memset(id, 'a', 64);
    id[64] = '\0';
    id[63] = 'b';
    cr_assert(cni_names_container_label(id, out));
    cr_assert_eq(strlen(out), 63, "a 64-digit container id keeps its first 63");
    cr_assert_eq(strncmp(out, id, 63), 0);
    cr_assert(cni_names_container_label("short-id", out));
    cr_assert_str_eq(out, "short-id");
}

Test(cni_error, the_error_object_has_version_code_msg_and_details)
{
    cni_error e = CNI_ERROR_INIT;
    cr_assert_eq(cni_error_set(&e, CNI_ERR_TRY_AGAIN, "connect: refused", "cannot %s", "create"),
                 -CNI_ERR_TRY_AGAIN);
    char *s = cni_error_encode(&e, "1.0.0");
    cr_assert_str_eq(s, "{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"cannot create\","
                        "\"details\":\"connect: refused\"}");
    free(s);
    cni_error_set(&e, CNI_ERR_DECODE, NULL, "again");
    s = cni_error_encode(&e, NULL);
    cr_assert_str_eq(s, "{\"cniVersion\":\"1.1.0\",\"code\":6,\"msg\":\"again\"}");
    free(s);
    cni_error_clear(&e);
    cr_assert_eq(e.code, 0);
    cr_assert_null(e.msg);
}
