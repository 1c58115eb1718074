/* Unit tests of src/manager/flags: defaults, both syntaxes, Go durations, errors. */
#include <criterion/criterion.h>

#include "flags.h"
#include "kc_error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARGV(...) ((char *const[]){"provisio", __VA_ARGS__, NULL})
#define ARGC(...) ((int)(sizeof((char *const[]){"provisio", __VA_ARGS__}) / sizeof(char *)))
#define PARSE(o, err, ...) flags_parse(ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), (o), (err))

static const int64_t S = FLAGS_NS_PER_SECOND;

Test(flags, defaults_match_kubebuilder_and_controller_runtime)
{
    flags_options o;
    char *err = NULL;
    char *const argv[] = {"provisio", NULL};
    cr_assert_eq(flags_parse(1, argv, &o, &err), 0);
    cr_assert_null(err);
    cr_assert_null(o.kubeconfig);
    cr_assert_null(o.context);
    cr_assert_null(o.watch_namespace);
    cr_assert_eq(o.leader_elect, false);
    cr_assert_str_eq(o.leader_election_id, "provisio.provisio.dev");
    cr_assert_null(o.leader_election_namespace);
    cr_assert_str_eq(o.metrics_bind_address, ":8080");
    cr_assert_str_eq(o.health_probe_bind_address, ":8081");
    cr_assert_eq(o.max_concurrent_reconciles, 8);
    cr_assert_eq(o.lease_duration_ns, 15 * S);
    cr_assert_eq(o.renew_deadline_ns, 10 * S);
    cr_assert_eq(o.retry_period_ns, 2 * S);
    cr_assert_str_eq(o.zap_log_level, "info");
    cr_assert_eq(o.log_level, PLOG_INFO);
    cr_assert_eq(o.help, false);
    cr_assert_eq(o.argi, 1);
    flags_free(&o);
    flags_free(&o); /* zeroed: a second free is harmless */
    flags_free(NULL);
}

Test(flags, space_and_equals_syntax_and_single_dash_all_work)
{
    flags_options o;
    cr_assert_eq(PARSE(&o, NULL, "--kubeconfig", "/tmp/kc", "--metrics-bind-address=127.0.0.1:9090",
                       "-health-probe-bind-address", "0", "--leader-election-namespace=kube-system",
                       "--max-concurrent-reconciles", "8", "--context=kind", "--namespace", "ns1",
                       "--zap-log-level=debug"),
                 0);
    cr_assert_str_eq(o.kubeconfig, "/tmp/kc");
    cr_assert_str_eq(o.metrics_bind_address, "127.0.0.1:9090");
    cr_assert_str_eq(o.health_probe_bind_address, "0");
    cr_assert_str_eq(o.leader_election_namespace, "kube-system");
    cr_assert_eq(o.max_concurrent_reconciles, 8);
    cr_assert_str_eq(o.context, "kind");
    cr_assert_str_eq(o.watch_namespace, "ns1");
    cr_assert_eq(o.log_level, PLOG_DEBUG);
    flags_free(&o);
}

Test(flags, booleans_accept_bare_and_go_parsebool_values)
{
    flags_options o;
    cr_assert_eq(PARSE(&o, NULL, "--leader-elect"), 0);
    cr_assert(o.leader_elect);
    flags_free(&o);
    cr_assert_eq(PARSE(&o, NULL, "--leader-elect=true"), 0);
    cr_assert(o.leader_elect);
    flags_free(&o);
    cr_assert_eq(PARSE(&o, NULL, "--leader-elect", "--leader-elect=false"), 0);
    cr_assert_not(o.leader_elect); /* last one wins */
    flags_free(&o);
    cr_assert_eq(PARSE(&o, NULL, "-leader-elect=T"), 0);
    cr_assert(o.leader_elect);
    flags_free(&o);
    char *err = NULL;
    cr_assert_eq(PARSE(&o, &err, "--leader-elect=yes"), KC_ERR_INVALID_ARG);
    cr_assert_not_null(strstr(err, "--leader-elect"));
    free(err);
}

Test(flags, bool_flag_does_not_consume_the_next_argument)
{
    flags_options o;
    /* As in Go: "--leader-elect false" is the flag, then a positional "false". */
    cr_assert_eq(PARSE(&o, NULL, "--leader-elect", "false", "--kubeconfig", "x"), 0);
    cr_assert(o.leader_elect);
    cr_assert_eq(o.argi, 2);
    cr_assert_null(o.kubeconfig); /* parsing stopped at the positional */
    flags_free(&o);
    cr_assert_eq(PARSE(&o, NULL, "--kubeconfig", "x", "--", "--leader-elect"), 0);
    cr_assert_eq(o.argi, 4);
    cr_assert_not(o.leader_elect);
    flags_free(&o);
}

Test(flags, durations_are_parsed_with_go_syntax)
{
    flags_options o;
    cr_assert_eq(PARSE(&o, NULL, "--leader-elect", "--leader-elect-lease-duration=1m30s",
                       "--leader-elect-renew-deadline", "45s", "--leader-elect-retry-period=500ms"),
                 0);
    cr_assert_eq(o.lease_duration_ns, 90 * S);
    cr_assert_eq(o.renew_deadline_ns, 45 * S);
    cr_assert_eq(o.retry_period_ns, S / 2);
    flags_free(&o);
}

Test(flags, leader_election_durations_are_validated_like_client_go)
{
    flags_options o;
    char *err = NULL;
    cr_assert_eq(PARSE(&o, &err, "--leader-elect", "--leader-elect-lease-duration=10s"),
                 KC_ERR_INVALID_ARG);
    cr_assert_not_null(strstr(err, "lease-duration must be greater"), "%s", err);
    free(err);
    cr_assert_eq(PARSE(&o, &err, "--leader-elect", "--leader-elect-retry-period=9s"),
                 KC_ERR_INVALID_ARG);
    cr_assert_not_null(strstr(err, "renew-deadline must be greater"), "%s", err);
    free(err);
    /* Without --leader-elect the durations are unused and not checked. */
    cr_assert_eq(PARSE(&o, NULL, "--leader-elect-lease-duration=1s"), 0);
    flags_free(&o);
}

Test(flags, unknown_flag_and_missing_value_give_clear_errors)
{
    flags_options o;
    char *err = NULL;
    cr_assert_eq(PARSE(&o, &err, "--metrics-addr=:1"), KC_ERR_INVALID_ARG);
    cr_assert_str_eq(err, "unknown flag: --metrics-addr");
    free(err);
    cr_assert_eq(PARSE(&o, &err, "--kubeconfig"), KC_ERR_INVALID_ARG);
    cr_assert_str_eq(err, "flag needs an argument: --kubeconfig");
    free(err);
    cr_assert_eq(PARSE(&o, &err, "--max-concurrent-reconciles=0"), KC_ERR_INVALID_ARG);
    cr_assert_not_null(strstr(err, "invalid value \"0\" for flag --max-concurrent-reconciles"));
    free(err);
    cr_assert_eq(PARSE(&o, &err, "--leader-elect-retry-period=2"), KC_ERR_INVALID_ARG);
    cr_assert_not_null(strstr(err, "--leader-elect-retry-period"));
    free(err);
    cr_assert_eq(PARSE(&o, &err, "--zap-log-level=verbose"), KC_ERR_INVALID_ARG);
    cr_assert_not_null(strstr(err, "--zap-log-level"));
    free(err);
    cr_assert_eq(PARSE(&o, &err, "---kubeconfig=x"), KC_ERR_INVALID_ARG);
    cr_assert_not_null(err);
    free(err);
    /* The struct is left empty on error. */
    cr_assert_null(o.metrics_bind_address);
}

Test(flags, help_is_reported_and_usage_lists_defaults)
{
    flags_options o;
    cr_assert_eq(PARSE(&o, NULL, "--help"), 0);
    cr_assert(o.help);
    flags_free(&o);
    cr_assert_eq(PARSE(&o, NULL, "-h"), 0);
    cr_assert(o.help);
    flags_free(&o);

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    flags_usage(f, "provisio");
    fclose(f);
    const char *want[] = {"--metrics-bind-address string",
                          "(default \":8080\")",
                          "(default \":8081\")",
                          "--leader-elect\n",
                          "--leader-elect-lease-duration duration",
                          "(default 15s)",
                          "(default 10s)",
                          "(default 2s)",
                          "--max-concurrent-reconciles int",
                          "(default 8)",
                          "--kubeconfig string",
                          "(default \"provisio.provisio.dev\")",
                          "--zap-log-level string"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_expect_not_null(strstr(text, want[i]), "usage lacks %s", want[i]);
    free(text);
}

static int64_t dur(const char *s)
{
    int64_t v = -12345;
    cr_assert_eq(flags_parse_duration(s, &v), 0, "parse %s", s);
    return v;
}

Test(flags, go_duration_parser_accepts_go_forms)
{
    cr_assert_eq(dur("0"), 0);
    cr_assert_eq(dur("15s"), 15 * S);
    cr_assert_eq(dur("1m30s"), 90 * S);
    cr_assert_eq(dur("500ms"), S / 2);
    cr_assert_eq(dur("1.5h"), 5400 * S);
    cr_assert_eq(dur("2h45m"), (2 * 3600 + 45 * 60) * S);
    cr_assert_eq(dur("-1.5s"), -3 * S / 2);
    cr_assert_eq(dur("+3s"), 3 * S);
    cr_assert_eq(dur(".5s"), S / 2);
    cr_assert_eq(dur("1.s"), S);
    cr_assert_eq(dur("10ns"), 10);
    cr_assert_eq(dur("7us"), 7000);
    cr_assert_eq(dur("7\xc2\xb5s"), 7000);
    cr_assert_eq(dur("7\xce\xbcs"), 7000);
    cr_assert_eq(dur("1h1m1s1ms1us1ns"), 3661 * S + 1001001);
    cr_assert_eq(dur("0.000000001s"), 1);
    cr_assert_eq(dur("9223372036854775807ns"), INT64_MAX);
    cr_assert_eq(dur("-9223372036854775808ns"), INT64_MIN);
}

Test(flags, go_duration_parser_rejects_bad_input)
{
    const char *bad[] = {"",         "s",
                         "1",        "10",
                         ".",        ".s",
                         "-",        "1x",
                         "1.5",      "s1",
                         "1h 30m",   "9223372036854775808ns",
                         "2562048h", "99999999999999999999s",
                         "1e3s"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t v = 42;
        cr_expect_eq(flags_parse_duration(bad[i], &v), KC_ERR_INVALID_ARG, "accepted \"%s\"",
                     bad[i]);
        cr_expect_eq(v, 42, "\"%s\" changed the output", bad[i]);
    }
}

/* ---- the node agent's command line (provisio agent ...) ------------------- */

#define AGENT_ARGV(...) ((char *const[]){"agent", __VA_ARGS__, NULL})
#define AGENT_ARGC(...) ((int)(sizeof((char *const[]){"agent", __VA_ARGS__}) / sizeof(char *)))
#define PARSE_AGENT(o, err, ...)                                                                   \
    flags_parse_mode(FLAGS_AGENT, AGENT_ARGC(__VA_ARGS__), AGENT_ARGV(__VA_ARGS__), (o), (err))

Test(flags_agent, takes_the_operator_client_metrics_probe_and_log_flags)
{
    flags_options o;
    char *err = NULL;
    cr_assert_eq(PARSE_AGENT(&o, &err, "--node-name", "node-a", "--kubeconfig=/tmp/kc", "--context",
                             "kind", "--metrics-bind-address=127.0.0.1:9090",
                             "-health-probe-bind-address", "0", "--zap-log-level=debug",
                             "--host-root=/tmp/node-a"),
                 0, "%s", err ? err : "");
    cr_assert_str_eq(o.node_name, "node-a");
    cr_assert_str_eq(o.host_root, "/tmp/node-a");
    cr_assert_str_eq(o.kubeconfig, "/tmp/kc");
    cr_assert_str_eq(o.context, "kind");
    cr_assert_str_eq(o.metrics_bind_address, "127.0.0.1:9090");
    cr_assert_str_eq(o.health_probe_bind_address, "0");
    cr_assert_eq(o.log_level, PLOG_DEBUG);
    cr_assert_eq(o.leader_elect, false, "the agent never elects");
    cr_assert_null(o.leader_election_id, "no leader-election defaults in the agent");
    cr_assert_eq(o.argi,
                 AGENT_ARGC("--node-name", "node-a", "--kubeconfig=/tmp/kc", "--context", "kind",
                            "--metrics-bind-address=127.0.0.1:9090", "-health-probe-bind-address",
                            "0", "--zap-log-level=debug", "--host-root=/tmp/node-a"));
    flags_free(&o);
}

Test(flags_agent, defaults_are_the_operators_ports_and_the_real_root)
{
    flags_options o;
    cr_assert_eq(PARSE_AGENT(&o, NULL, "--node-name=node-b"), 0);
    cr_assert_str_eq(o.host_root, "/");
    cr_assert_str_eq(o.metrics_bind_address, ":8080");
    cr_assert_str_eq(o.health_probe_bind_address, ":8081");
    cr_assert_str_eq(o.zap_log_level, "info");
    cr_assert_null(o.kubeconfig);
    flags_free(&o);
}

Test(flags_agent, node_name_is_required_and_must_be_a_node_name)
{
    flags_options o;
    char *err = NULL;
    char *const bare[] = {"agent", NULL};
    cr_assert_eq(flags_parse_mode(FLAGS_AGENT, 1, bare, &o, &err), KC_ERR_INVALID_ARG);
    cr_assert_not_null(strstr(err, "--node-name is required"), "%s", err);
    free(err);
    const char *bad[] = {"", "Node-A", "-node", "node-", "a..b", "node_a", "a b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err = NULL;
        char *const argv[] = {"agent", "--node-name", (char *)bad[i], NULL};
        cr_assert_eq(flags_parse_mode(FLAGS_AGENT, 3, argv, &o, &err), KC_ERR_INVALID_ARG,
                     "node name \"%s\" accepted", bad[i]);
        cr_assert_not_null(strstr(err, "--node-name"), "%s", err);
        free(err);
    }
    const char *good[] = {"node-a", "n", "ip-10-0-0-1.ec2.internal", "0node9"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char *const argv[] = {"agent", "--node-name", (char *)good[i], NULL};
        cr_assert_eq(flags_parse_mode(FLAGS_AGENT, 3, argv, &o, NULL), 0, "%s refused", good[i]);
        flags_free(&o);
    }
    cr_assert_eq(o.node_name, NULL, "freed and zeroed");
}

Test(flags_agent, host_root_must_be_absolute)
{
    flags_options o;
    char *err = NULL;
    cr_assert_eq(PARSE_AGENT(&o, &err, "--node-name=node-a", "--host-root", "relative/dir"),
                 KC_ERR_INVALID_ARG);
    cr_assert_not_null(strstr(err, "--host-root"), "%s", err);
    free(err);
}

Test(flags_agent, cni_kubeconfig_flags_default_and_are_checked)
{
    flags_options o;
    char *err = NULL;
    cr_assert_eq(PARSE_AGENT(&o, &err, "--node-name=node-a"), 0);
    cr_assert_null(o.cni_kubeconfig, "no CNI kubeconfig unless asked for");
    cr_assert_str_eq(o.cni_service_account, "provisio-cni");
    cr_assert_null(o.cni_server);
    flags_free(&o);
    cr_assert_eq(PARSE_AGENT(&o, &err, "--node-name=node-a",
                             "--cni-kubeconfig=/etc/cni/net.d/provisio.d/kubeconfig",
                             "--cni-service-account", "kube-system/cni.sa",
                             "--cni-server=https://10.0.0.1:6443"),
                 0, "%s", err ? err : "");
    cr_assert_str_eq(o.cni_kubeconfig, "/etc/cni/net.d/provisio.d/kubeconfig");
    cr_assert_str_eq(o.cni_service_account, "kube-system/cni.sa");
    cr_assert_str_eq(o.cni_server, "https://10.0.0.1:6443");
    flags_free(&o);
    const char *bad[][2] = {
        {"--cni-kubeconfig=relative/kubeconfig", "--cni-kubeconfig"},
        {"--cni-kubeconfig=/", "--cni-kubeconfig"},
        {"--cni-service-account=", "--cni-service-account"},
        {"--cni-service-account=Provisio", "--cni-service-account"},
        {"--cni-service-account=/name", "--cni-service-account"},
        {"--cni-service-account=ns/", "--cni-service-account"},
        {"--cni-service-account=a/b/c", "--cni-service-account"},
        {"--cni-service-account=kube.system/name", "--cni-service-account"},
        {"--cni-server=10.0.0.1:6443", "--cni-server"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err = NULL;
        char *const argv[] = {"agent", "--node-name=node-a", (char *)bad[i][0], NULL};
        cr_assert_eq(flags_parse_mode(FLAGS_AGENT, 3, argv, &o, &err), KC_ERR_INVALID_ARG,
                     "%s accepted", bad[i][0]);
        cr_assert_not_null(strstr(err, bad[i][1]), "%s: %s", bad[i][0], err);
        free(err);
    }
    err = NULL;
    cr_assert_eq(PARSE(&o, &err, "--cni-kubeconfig=/x"), KC_ERR_INVALID_ARG, "an agent flag only");
    free(err);
}

Test(flags_agent, operator_only_flags_are_unknown_and_agent_flags_unknown_to_the_operator)
{
    const char *operator_only[] = {"--leader-elect", "--leader-election-id=x",
                                   "--leader-elect-lease-duration=15s", "--namespace=ns"};
    for (size_t i = 0; i < sizeof operator_only / sizeof operator_only[0]; i++) {
        flags_options o;
        char *err = NULL;
        char *const argv[] = {"agent", "--node-name=node-a", (char *)operator_only[i], NULL};
        cr_assert_eq(flags_parse_mode(FLAGS_AGENT, 3, argv, &o, &err), KC_ERR_INVALID_ARG,
                     "%s accepted by the agent", operator_only[i]);
        cr_assert_not_null(strstr(err, "unknown flag"), "%s", err);
        free(err);
    }
    flags_options o;
    char *err = NULL;
    cr_assert_eq(PARSE(&o, &err, "--node-name=node-a"), KC_ERR_INVALID_ARG);
    cr_assert_str_eq(err, "unknown flag: --node-name");
    free(err);
}

Test(flags_agent, help_skips_the_required_check_and_usage_lists_only_agent_flags)
{
    flags_options o;
    cr_assert_eq(PARSE_AGENT(&o, NULL, "--help"), 0, "--help without --node-name is fine");
    cr_assert(o.help);
    flags_free(&o);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    flags_usage_mode(f, "provisio agent", FLAGS_AGENT);
    fclose(f);
    cr_assert_not_null(strstr(text, "Usage of provisio agent:"));
    cr_assert_not_null(strstr(text, "--node-name string"));
    cr_assert_not_null(strstr(text, "--host-root string"));
    cr_assert_not_null(strstr(text, "(default \"/\")"));
    cr_assert_not_null(strstr(text, "--kubeconfig string"));
    cr_assert_not_null(strstr(text, "--health-probe-bind-address string"));
    cr_assert_null(strstr(text, "leader-elect"), "no election flags in the agent's usage");
    free(text);
    text = NULL;
    f = open_memstream(&text, &len);
    flags_usage(f, "provisio");
    fclose(f);
    cr_assert_null(strstr(text, "--node-name"), "the operator's usage has no agent flags");
    free(text);
}
