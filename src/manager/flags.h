/*
 * flags - the command line of the provisio binary, kubebuilder-compatible.
 *
 * Parsing follows Go's `flag` package, which kubebuilder's scaffolded main.go
 * uses, so the Deployment args people copy from a kubebuilder project work:
 *
 *   - one or two leading dashes: -leader-elect and --leader-elect are the same
 *   - "--flag value" and "--flag=value" for non-boolean flags
 *   - booleans: "--flag" (true) or "--flag=<bool>" with strconv.ParseBool's
 *     spellings (1 t T true TRUE True, 0 f F false FALSE False); a separate
 *     "--flag false" is NOT a value, as in Go
 *   - parsing stops at the first non-flag argument or after "--"; the index
 *     of the first positional argument is returned in argi
 *   - the last occurrence of a flag wins
 *   - -h, -help, --help set `help` (print flags_usage and exit 0)
 *
 * Durations use Go's time.ParseDuration syntax ("15s", "1m30s", "500ms",
 * "1.5h"); see flags_parse_duration.
 *
 * Defaults (see FLAGS_DEFAULT_*): metrics on :8080, probes on :8081, no
 * leader election, lease 15s / renew 10s / retry 2s (client-go's and
 * controller-runtime's), one worker per controller (controller-runtime's
 * MaxConcurrentReconciles default), log level info, and the leader election
 * ID "provisio.provisio.dev" (kubebuilder scaffolds "<something>.<domain>";
 * ours is the project name under the API group provisio.dev).
 *
 * Two modes share the table: the operator (`provisio [flags]`) and the node
 * agent (`provisio agent --node-name NODE [--host-root DIR] [flags]`, API.md
 * "The node agent"). The agent takes the operator's client, metrics, probe
 * and log flags, none of leader election or workers (it runs no election),
 * and two of its own: --node-name (required, a DNS-1123 subdomain as node
 * names are) and --host-root (an absolute path, default "/"), which prefixes
 * every node path. A flag of the other mode is an unknown flag.
 *
 * Threading: plain functions on caller-owned data; call from main.
 */
#ifndef PROVISIO_FLAGS_H
#define PROVISIO_FLAGS_H

#include "log.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define FLAGS_DEFAULT_METRICS_BIND_ADDRESS ":8080"
#define FLAGS_DEFAULT_HEALTH_PROBE_BIND_ADDRESS ":8081"
#define FLAGS_DEFAULT_LEADER_ELECTION_ID "provisio.provisio.dev"
#define FLAGS_DEFAULT_LEASE_DURATION "15s"
#define FLAGS_DEFAULT_RENEW_DEADLINE "10s"
#define FLAGS_DEFAULT_RETRY_PERIOD "2s"
/* controller-runtime's default is 1. A claim costs a worker three sequential
 * API round trips (finalizer, Reservation, status), so one worker caps a
 * storm of claims at 1/(3 RTT); 8 keep a small API server busy (bench/). A
 * key is still never reconciled by two workers at once. */
#define FLAGS_DEFAULT_MAX_CONCURRENT_RECONCILES 8
#define FLAGS_DEFAULT_LOG_LEVEL "info"
#define FLAGS_DEFAULT_HOST_ROOT "/"
#define FLAGS_DEFAULT_CNI_SERVICE_ACCOUNT "provisio-cni"

/* Which command line: a bit each, so a flag can belong to both. */
typedef enum flags_mode {
    FLAGS_OPERATOR = 1, /* provisio [flags] */
    FLAGS_AGENT = 2,    /* provisio agent [flags] */
} flags_mode;

#define FLAGS_NS_PER_SECOND INT64_C(1000000000)

/*
 * The parsed command line. Strings are owned by the struct (flags_free);
 * NULL means "not given" where the field says so.
 */
typedef struct flags_options {
    char *kubeconfig;      /* --kubeconfig; NULL: $KUBECONFIG, ~/.kube/config or in-cluster */
    char *context;         /* --context: kubeconfig context; NULL: current-context */
    char *watch_namespace; /* --namespace: only watch this namespace; NULL: all namespaces */

    bool leader_elect;               /* --leader-elect */
    char *leader_election_id;        /* --leader-election-id: the Lease name */
    char *leader_election_namespace; /* NULL: unset (the caller picks the pod's namespace,
                                        else "default") */
    int64_t lease_duration_ns;       /* --leader-elect-lease-duration */
    int64_t renew_deadline_ns;       /* --leader-elect-renew-deadline */
    int64_t retry_period_ns;         /* --leader-elect-retry-period */

    char *metrics_bind_address;      /* "0" disables the metrics server */
    char *health_probe_bind_address; /* "0" disables the probe server */

    int max_concurrent_reconciles; /* >= 1 */

    char *node_name;           /* agent: --node-name (required); NULL in the operator */
    char *host_root;           /* agent: --host-root (default "/"); NULL in the operator */
    char *cni_kubeconfig;      /* agent: --cni-kubeconfig (a node path), NULL when not given */
    char *cni_service_account; /* agent: --cni-service-account ([NAMESPACE/]NAME) */
    char *cni_server;          /* agent: --cni-server, NULL when not given */

    char *zap_log_level;  /* as given (default "info") */
    plog_level log_level; /* parsed from zap_log_level */

    bool help;    /* -h / --help was given */
    bool version; /* --version was given */
    int argi;     /* index in argv of the first positional argument; argc if none */
} flags_options;

/*
 * Parse argv[1..argc) into *out (defaults first). On success returns 0 and
 * *out owns its strings. On a bad command line returns KC_ERR_INVALID_ARG,
 * *out is left empty (safe to flags_free) and, when errmsg is non-NULL,
 * *errmsg is a malloc'd one-line message naming the flag ("unknown flag:
 * --foo"), for the caller to print and free. KC_ERR_NOMEM when out of memory.
 *
 * When leader election is on, the durations must satisfy client-go's rules:
 * lease > renew deadline > 1.2 x retry period > 0.
 */
int flags_parse(int argc, char *const argv[], flags_options *out, char **errmsg);

/*
 * flags_parse for either mode: only the flags of `mode` are known, and only
 * their defaults are applied. argv[0] is skipped as always (for the agent,
 * the caller passes argv from "agent" on). The agent's checks (--node-name
 * given and a DNS-1123 subdomain, --host-root absolute) fail like a bad value.
 */
int flags_parse_mode(flags_mode mode, int argc, char *const argv[], flags_options *out,
                     char **errmsg);

/* Free the strings of o and zero it. NULL is a no-op. */
void flags_free(flags_options *o);

/* Print the usage text with every flag, its default and help to f. */
void flags_usage(FILE *f, const char *prog);

/* flags_usage for either mode: the flags of `mode` only. */
void flags_usage_mode(FILE *f, const char *prog, flags_mode mode);

/*
 * Go's time.ParseDuration: an optional sign, then one or more decimal
 * numbers with optional fraction and a unit (ns, us, µs, μs, ms, s, m, h),
 * e.g. "300ms", "-1.5h", "2h45m"; "0" needs no unit. Stores nanoseconds.
 * Returns 0, or KC_ERR_INVALID_ARG for bad syntax or overflow of int64.
 */
int flags_parse_duration(const char *s, int64_t *out_ns);

#endif
