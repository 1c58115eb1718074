/*
 * Unit tests of src/manager/cli: the kubectl-style argument parser, the
 * namespace and field-selector choices, and the JSON-lines output (apiVersion
 * and kind filled in from the list, events, kubectl-worded errors).
 */
#include <criterion/criterion.h>

#include "cli.h"
#include "kc_error.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARGV(...) ((char *const[]){__VA_ARGS__, NULL})
#define ARGC(...) ((int)(sizeof((char *const[]){__VA_ARGS__}) / sizeof(char *)))
#define PARSE(a, err, ...) cli_parse_args(ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), (a), (err))

/* Parse a command line that must fail; returns the message (caller frees). */
#define PARSE_FAILS(msg_out, ...)                                                                  \
    do {                                                                                           \
        cli_args a_;                                                                               \
        kc_error e_ = KC_ERROR_INIT;                                                               \
        cr_assert_eq(PARSE(&a_, &e_, __VA_ARGS__), KC_ERR_INVALID_ARG);                            \
        cr_assert_not_null(e_.message);                                                            \
        (msg_out) = strdup(e_.message);                                                            \
        kc_error_clear(&e_);                                                                       \
    } while (0)

/* ---- parsing -------------------------------------------------------------- */

Test(cli_args, resource_alone_leaves_every_option_unset)
{
    cli_args a;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(PARSE(&a, &err, "get", "pods"), KC_OK);
    cr_assert_eq(a.command, CLI_GET);
    cr_assert_str_eq(a.resource, "pods");
    cr_assert_null(a.name);
    cr_assert_null(a.namespace_);
    cr_assert_null(a.kubeconfig);
    cr_assert_null(a.context);
    cr_assert_null(a.label_selector);
    cr_assert_null(a.field_selector);
    cr_assert_not(a.all_namespaces);
    cr_assert_not(a.help);
    cr_assert_eq(a.timeout_seconds, 0);
}

Test(cli_args, flags_may_come_before_between_and_after_positionals)
{
    cli_args a;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(PARSE(&a, &err, "get", "-n", "ns1", "configmaps", "--context", "ctx", "cfg",
                       "--kubeconfig", "/tmp/kc"),
                 KC_OK);
    cr_assert_str_eq(a.resource, "configmaps");
    cr_assert_str_eq(a.name, "cfg");
    cr_assert_str_eq(a.namespace_, "ns1");
    cr_assert_str_eq(a.context, "ctx");
    cr_assert_str_eq(a.kubeconfig, "/tmp/kc");
}

Test(cli_args, namespace_in_every_pflag_spelling)
{
    const char *spellings[][2] = {
        {"-n", "a"}, {"-na", NULL}, {"-n=a", NULL}, {"--namespace", "a"}, {"--namespace=a", NULL},
    };
    for (size_t i = 0; i < sizeof(spellings) / sizeof(spellings[0]); i++) {
        cli_args a;
        kc_error err = KC_ERROR_INIT;
        char *argv[] = {"get", "pods", (char *)spellings[i][0], (char *)spellings[i][1], NULL};
        int argc = spellings[i][1] ? 4 : 3;
        cr_assert_eq(cli_parse_args(argc, argv, &a, &err), KC_OK, "%s", spellings[i][0]);
        cr_assert_str_eq(a.namespace_, "a", "spelled %s", spellings[i][0]);
        cr_assert_null(a.name, "spelled %s", spellings[i][0]);
    }
}

Test(cli_args, selectors_short_and_long)
{
    cli_args a;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(PARSE(&a, &err, "get", "pods", "-l", "app=web,tier!=db", "--field-selector",
                       "status.phase=Running"),
                 KC_OK);
    cr_assert_str_eq(a.label_selector, "app=web,tier!=db");
    cr_assert_str_eq(a.field_selector, "status.phase=Running");
    cr_assert_eq(PARSE(&a, &err, "get", "pods", "--selector=app=db"), KC_OK);
    cr_assert_str_eq(a.label_selector, "app=db", "only the first '=' separates the value");
}

Test(cli_args, all_namespaces_and_booleans_run_together)
{
    cli_args a;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(PARSE(&a, &err, "get", "-A", "leases.coordination.k8s.io"), KC_OK);
    cr_assert(a.all_namespaces);
    cr_assert_str_eq(a.resource, "leases.coordination.k8s.io");

    cr_assert_eq(PARSE(&a, &err, "get", "pods", "-Alapp=x"), KC_OK);
    cr_assert(a.all_namespaces);
    cr_assert_str_eq(a.label_selector, "app=x");

    cr_assert_eq(PARSE(&a, &err, "get", "pods", "--all-namespaces=false"), KC_OK);
    cr_assert_not(a.all_namespaces);
}

Test(cli_args, double_dash_ends_the_flags)
{
    cli_args a;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(PARSE(&a, &err, "get", "-n", "x", "configmaps", "--", "-odd-name"), KC_OK);
    cr_assert_str_eq(a.name, "-odd-name");
    cr_assert_str_eq(a.namespace_, "x");
}

Test(cli_args, a_flag_value_may_start_with_a_dash)
{
    cli_args a;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(PARSE(&a, &err, "get", "pods", "-l", "-weird"), KC_OK);
    cr_assert_str_eq(a.label_selector, "-weird");
    cr_assert_null(a.name);
}

Test(cli_args, watch_flags)
{
    cli_args a;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(PARSE(&a, &err, "watch", "configmaps", "--resource-version", "1234", "--timeout",
                       "30", "--bookmarks"),
                 KC_OK);
    cr_assert_eq(a.command, CLI_WATCH);
    cr_assert_str_eq(a.resource_version, "1234");
    cr_assert_eq(a.timeout_seconds, 30);
    cr_assert(a.bookmarks);

    cr_assert_eq(PARSE(&a, &err, "watch", "configmaps", "--timeout=5m"), KC_OK);
    cr_assert_eq(a.timeout_seconds, 300);
    cr_assert_eq(PARSE(&a, &err, "watch", "configmaps", "--timeout", "1h"), KC_OK);
    cr_assert_eq(a.timeout_seconds, 3600);
    cr_assert_eq(PARSE(&a, &err, "watch", "configmaps", "--timeout", "45s"), KC_OK);
    cr_assert_eq(a.timeout_seconds, 45);
}

Test(cli_args, the_last_occurrence_of_a_flag_wins)
{
    cli_args a;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(PARSE(&a, &err, "get", "pods", "-n", "first", "--namespace", "second"), KC_OK);
    cr_assert_str_eq(a.namespace_, "second");
}

Test(cli_args, help_needs_no_resource)
{
    cli_args a;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(PARSE(&a, &err, "get", "--help"), KC_OK);
    cr_assert(a.help);
    cr_assert_eq(PARSE(&a, &err, "watch", "pods", "-h"), KC_OK);
    cr_assert(a.help);
    cr_assert_eq(a.command, CLI_WATCH);
}

Test(cli_args, errors_are_named_in_kubectl_words)
{
    struct {
        const char *want;
        int argc;
        char *argv[6];
    } cases[] = {
        {"unknown flag: --output", 4, {"get", "pods", "--output", "json"}},
        {"unknown shorthand flag: 'x' in -x", 3, {"get", "pods", "-x"}},
        {"flag needs an argument: --namespace", 3, {"get", "pods", "--namespace"}},
        {"flag needs an argument: 'n' in -n", 3, {"get", "pods", "-n"}},
        {"you must specify the type of resource to get", 1, {"get"}},
        {"you must specify the type of resource to watch", 3, {"watch", "-n", "x"}},
        {"too many arguments", 4, {"get", "pods", "a", "b"}},
        {"a resource cannot be retrieved by name across all namespaces",
         4,
         {"get", "pods", "a", "-A"}},
        {"name cannot be provided when a selector is specified",
         5,
         {"get", "pods", "a", "-l", "x=y"}},
        {"unknown flag: --timeout (it is a flag of provisio watch)",
         4,
         {"get", "pods", "--timeout", "5"}},
        {"unknown flag: --bookmarks", 3, {"get", "pods", "--bookmarks"}},
        {"invalid argument \"soon\" for \"--timeout\"", 4, {"watch", "pods", "--timeout", "soon"}},
        {"invalid argument \"-1\" for \"--timeout\"", 3, {"watch", "pods", "--timeout=-1"}},
        {"invalid argument \"maybe\" for \"--all-namespaces\"",
         3,
         {"get", "pods", "--all-namespaces=maybe"}},
        {"--namespace must not be empty", 3, {"get", "pods", "--namespace="}},
        {"unknown command \"describe\"", 2, {"describe", "pods"}},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cli_args a;
        kc_error err = KC_ERROR_INIT;
        cr_assert_eq(cli_parse_args(cases[i].argc, cases[i].argv, &a, &err), KC_ERR_INVALID_ARG,
                     "case %zu (%s) was accepted", i, cases[i].want);
        cr_assert_not_null(err.message);
        cr_assert_not_null(strstr(err.message, cases[i].want), "case %zu: got \"%s\", want \"%s\"",
                           i, err.message, cases[i].want);
        kc_error_clear(&err);
    }
}

Test(cli_args, unknown_flag_is_refused_but_after_double_dash_it_is_a_name)
{
    char *msg = NULL;
    PARSE_FAILS(msg, "get", "pods", "--nope");
    cr_assert_str_eq(msg, "unknown flag: --nope");
    free(msg);
    cli_args a;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(PARSE(&a, &err, "get", "pods", "--", "--nope"), KC_OK);
    cr_assert_str_eq(a.name, "--nope");
}

/* ---- namespaces and selectors --------------------------------------------- */

Test(cli_namespace, context_namespace_is_the_default_for_namespaced_resources)
{
    cli_args a = {.resource = "configmaps"};
    cr_assert_str_eq(cli_request_namespace(&a, true, "team-a"), "team-a");
    a.namespace_ = "team-b";
    cr_assert_str_eq(cli_request_namespace(&a, true, "team-a"), "team-b");
}

Test(cli_namespace, all_namespaces_and_cluster_scoped_mean_no_namespace)
{
    cli_args a = {.resource = "configmaps", .namespace_ = "x", .all_namespaces = true};
    cr_assert_null(cli_request_namespace(&a, true, "team-a"));
    a.all_namespaces = false;
    cr_assert_null(cli_request_namespace(&a, false, "team-a"), "nodes ignore -n");
}

Test(cli_namespace, watch_by_name_is_a_field_selector)
{
    kc_error err = KC_ERROR_INIT;
    char *sel = NULL;
    cli_args a = {.resource = "configmaps", .name = "web"};
    cr_assert_eq(cli_watch_field_selector(&a, &sel, &err), KC_OK);
    cr_assert_str_eq(sel, "metadata.name=web");
    free(sel);

    a.field_selector = "metadata.namespace!=kube-system";
    cr_assert_eq(cli_watch_field_selector(&a, &sel, &err), KC_OK);
    cr_assert_str_eq(sel, "metadata.namespace!=kube-system,metadata.name=web");
    free(sel);

    a.name = NULL;
    cr_assert_eq(cli_watch_field_selector(&a, &sel, &err), KC_OK);
    cr_assert_str_eq(sel, "metadata.namespace!=kube-system");
    free(sel);

    a.field_selector = NULL;
    cr_assert_eq(cli_watch_field_selector(&a, &sel, &err), KC_OK);
    cr_assert_null(sel);
}

/* ---- output --------------------------------------------------------------- */

Test(cli_output, item_kind_is_the_list_kind_minus_list)
{
    char *k = cli_item_kind("ConfigMapList");
    cr_assert_str_eq(k, "ConfigMap");
    free(k);
    k = cli_item_kind("IPPoolList");
    cr_assert_str_eq(k, "IPPool");
    free(k);
    cr_assert_null(cli_item_kind("List"));
    cr_assert_null(cli_item_kind("ConfigMap"));
    cr_assert_null(cli_item_kind(""));
    cr_assert_null(cli_item_kind(NULL));
}

/* Write with f into a memory buffer and return it (caller frees). */
typedef struct membuf {
    char *data;
    size_t len;
    FILE *f;
} membuf;

static void mem_open(membuf *m)
{
    m->data = NULL;
    m->len = 0;
    m->f = open_memstream(&m->data, &m->len);
    cr_assert_not_null(m->f);
}

static char *mem_close(membuf *m)
{
    fclose(m->f);
    return m->data;
}

Test(cli_output, type_meta_comes_first_and_is_filled_in)
{
    kc_error err = KC_ERROR_INIT;
    json_object *item =
        json_tokener_parse("{\"metadata\":{\"name\":\"a\"},\"data\":{\"k\":\"v\"}}");
    json_object *out = NULL;
    cr_assert_eq(cli_with_type_meta(item, "v1", "ConfigMap", &out, &err), KC_OK);
    cr_assert_str_eq(json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN),
                     "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"a\"},"
                     "\"data\":{\"k\":\"v\"}}");
    /* The item itself is unchanged: the new object only shares its members. */
    cr_assert_str_eq(json_object_to_json_string_ext(item, JSON_C_TO_STRING_PLAIN),
                     "{\"metadata\":{\"name\":\"a\"},\"data\":{\"k\":\"v\"}}");
    json_object_put(out);
    json_object_put(item);
}

Test(cli_output, type_meta_already_on_the_item_is_kept)
{
    kc_error err = KC_ERROR_INIT;
    json_object *item = json_tokener_parse("{\"metadata\":{\"name\":\"p\"},\"kind\":\"IPPool\","
                                           "\"apiVersion\":\"provisio.dev/v1alpha1\"}");
    json_object *out = NULL;
    cr_assert_eq(cli_with_type_meta(item, "v1", "Other", &out, &err), KC_OK);
    cr_assert_str_eq(json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN |
                                                             JSON_C_TO_STRING_NOSLASHESCAPE),
                     "{\"apiVersion\":\"provisio.dev/v1alpha1\",\"kind\":\"IPPool\","
                     "\"metadata\":{\"name\":\"p\"}}");
    json_object_put(out);
    json_object_put(item);

    json_object *not_object = json_object_new_array();
    cr_assert_eq(cli_with_type_meta(not_object, "v1", "X", &out, &err), KC_ERR_INVALID_ARG);
    cr_assert_null(out);
    json_object_put(not_object);
    kc_error_clear(&err);
}

Test(cli_output, list_prints_one_line_per_item_with_the_lists_type)
{
    kc_error err = KC_ERROR_INIT;
    json_object *list =
        json_tokener_parse("{\"kind\":\"LeaseList\",\"apiVersion\":\"coordination.k8s.io/v1\","
                           "\"metadata\":{\"resourceVersion\":\"42\"},\"items\":["
                           "{\"metadata\":{\"name\":\"a\",\"namespace\":\"x\"}},"
                           "{\"metadata\":{\"name\":\"b\",\"namespace\":\"y\"},\"spec\":{"
                           "\"holderIdentity\":\"h/1\"}}]}");
    cr_assert_not_null(list);
    membuf m;
    mem_open(&m);
    cr_assert_eq(cli_print_list(m.f, list, "wrong/v9", "Wrong", &err), KC_OK);
    char *text = mem_close(&m);
    cr_assert_str_eq(text, "{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\","
                           "\"metadata\":{\"name\":\"a\",\"namespace\":\"x\"}}\n"
                           "{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\","
                           "\"metadata\":{\"name\":\"b\",\"namespace\":\"y\"},"
                           "\"spec\":{\"holderIdentity\":\"h/1\"}}\n");
    free(text);
    json_object_put(list);
}

Test(cli_output, list_without_its_own_kind_uses_the_fallback)
{
    kc_error err = KC_ERROR_INIT;
    json_object *list = json_tokener_parse("{\"items\":[{\"metadata\":{\"name\":\"n\"}}]}");
    membuf m;
    mem_open(&m);
    cr_assert_eq(cli_print_list(m.f, list, "v1", "Node", &err), KC_OK);
    char *text = mem_close(&m);
    cr_assert_str_eq(text,
                     "{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"n\"}}\n");
    free(text);
    json_object_put(list);
}

Test(cli_output, empty_and_null_items_print_nothing_missing_items_is_an_error)
{
    kc_error err = KC_ERROR_INIT;
    const char *empty[] = {"{\"kind\":\"PodList\",\"apiVersion\":\"v1\",\"items\":[]}",
                           "{\"kind\":\"PodList\",\"apiVersion\":\"v1\",\"items\":null}"};
    for (size_t i = 0; i < 2; i++) {
        json_object *list = json_tokener_parse(empty[i]);
        membuf m;
        mem_open(&m);
        cr_assert_eq(cli_print_list(m.f, list, NULL, NULL, &err), KC_OK, "%s", empty[i]);
        char *text = mem_close(&m);
        cr_assert_eq(m.len, 0, "printed \"%s\" for %s", text, empty[i]);
        free(text);
        json_object_put(list);
    }
    json_object *bad = json_tokener_parse("{\"kind\":\"Status\",\"apiVersion\":\"v1\"}");
    membuf m;
    mem_open(&m);
    cr_assert_eq(cli_print_list(m.f, bad, NULL, NULL, &err), KC_ERR_DECODE);
    free(mem_close(&m));
    json_object_put(bad);
    kc_error_clear(&err);
}

Test(cli_output, event_line_is_type_then_object)
{
    kc_error err = KC_ERROR_INIT;
    json_object *obj = json_tokener_parse(
        "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"a\"}}");
    membuf m;
    mem_open(&m);
    cr_assert_eq(cli_print_event(m.f, KC_EVENT_MODIFIED, obj, &err), KC_OK);
    cr_assert_eq(cli_print_event(m.f, KC_EVENT_DELETED, obj, &err), KC_OK);
    char *text = mem_close(&m);
    cr_assert_str_eq(text, "{\"type\":\"MODIFIED\",\"object\":{\"apiVersion\":\"v1\",\"kind\":"
                           "\"ConfigMap\",\"metadata\":{\"name\":\"a\"}}}\n"
                           "{\"type\":\"DELETED\",\"object\":{\"apiVersion\":\"v1\",\"kind\":"
                           "\"ConfigMap\",\"metadata\":{\"name\":\"a\"}}}\n");
    free(text);
    /* The caller's reference is intact: the event only borrowed it. */
    cr_assert_eq(json_object_put(obj), 1, "the object was freed by its last put");
}

Test(cli_output, slashes_are_not_escaped)
{
    kc_error err = KC_ERROR_INIT;
    json_object *obj = json_tokener_parse("{\"apiVersion\":\"provisio.dev/v1alpha1\"}");
    membuf m;
    mem_open(&m);
    cr_assert_eq(cli_print_object(m.f, obj, &err), KC_OK);
    char *text = mem_close(&m);
    cr_assert_str_eq(text, "{\"apiVersion\":\"provisio.dev/v1alpha1\"}\n");
    free(text);
    json_object_put(obj);
}

Test(cli_output, errors_read_like_kubectl)
{
    kc_error err = KC_ERROR_INIT;
    membuf m;

    /* A Status from the server. */
    json_object *status = json_tokener_parse(
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
        "\"message\":\"ippools.provisio.dev \\\"x\\\" not found\",\"reason\":\"NotFound\","
        "\"code\":404}");
    cr_assert_eq(kc_error_from_status(&err, 404, status), KC_ERR_NOT_FOUND);
    json_object_put(status);
    mem_open(&m);
    cli_print_error(m.f, &err);
    char *text = mem_close(&m);
    cr_assert_str_eq(text, "Error from server (NotFound): ippools.provisio.dev \"x\" not found\n");
    free(text);

    /* A local not-found (discovery) carries no reason: kubectl's "error:". */
    kc_error_set(&err, KC_ERR_NOT_FOUND, "the server doesn't have a resource type \"foos\"");
    mem_open(&m);
    cli_print_error(m.f, &err);
    text = mem_close(&m);
    cr_assert_str_eq(text, "error: the server doesn't have a resource type \"foos\"\n");
    free(text);

    /* No message at all: the code's description. */
    kc_error_clear(&err);
    err.code = KC_ERR_TRANSPORT;
    mem_open(&m);
    cli_print_error(m.f, &err);
    text = mem_close(&m);
    char *want = NULL;
    cr_assert_gt(asprintf(&want, "error: %s\n", kc_strerror(KC_ERR_TRANSPORT)), 0);
    cr_assert_str_eq(text, want);
    free(want);
    free(text);
}

Test(cli_output, usage_lists_watch_flags_only_for_watch)
{
    membuf m;
    mem_open(&m);
    cli_usage(m.f, CLI_GET);
    char *get = mem_close(&m);
    mem_open(&m);
    cli_usage(m.f, CLI_WATCH);
    char *watch = mem_close(&m);
    cr_assert_not_null(strstr(get, "provisio get RESOURCE [NAME]"));
    cr_assert_not_null(strstr(get, "--all-namespaces"));
    cr_assert_null(strstr(get, "--timeout"));
    cr_assert_not_null(strstr(watch, "provisio watch RESOURCE [NAME]"));
    cr_assert_not_null(strstr(watch, "--timeout"));
    cr_assert_not_null(strstr(watch, "--resource-version"));
    free(get);
    free(watch);
}
