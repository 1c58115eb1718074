/*
 * flags - command line parsing (see flags.h for the accepted syntax).
 *
 * One table describes every flag: its name, kind, where it lands in
 * flags_options, its default (as the text a user would type, so the usage
 * output and the parsed default cannot disagree) and its help. Parsing
 * first applies every default through the same code path as a user value,
 * then walks argv. Strings in flags_options are always heap copies; a flag
 * given twice frees the earlier value.
 *
 * Errors never exit or print: flags_parse returns a message and main decides.
 */
#include "flags.h"

#include "kc_error.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef enum flag_kind {
    FK_STRING,   /* char *, never NULL after defaults */
    FK_OPTIONAL, /* char *, NULL when not given */
    FK_BOOL,
    FK_INT,      /* int >= 1 */
    FK_DURATION, /* int64_t ns */
    FK_LEVEL,    /* char * + plog_level */
} flag_kind;

typedef struct flag_def {
    const char *name;
    unsigned modes; /* flags_mode bits */
    flag_kind kind;
    size_t off;
    const char *def; /* default as text; NULL: none */
    const char *help;
} flag_def;

#define OFF(f) offsetof(flags_options, f)
#define OPER FLAGS_OPERATOR
#define AGENT FLAGS_AGENT
#define BOTH (FLAGS_OPERATOR | FLAGS_AGENT)
#define STR_(x) #x
#define STR(x) STR_(x)

static const flag_def g_flags[] = {
    {"kubeconfig", BOTH, FK_OPTIONAL, OFF(kubeconfig), NULL,
     "Paths to a kubeconfig. Only required if out-of-cluster."},
    {"context", BOTH, FK_OPTIONAL, OFF(context), NULL,
     "The kubeconfig context to use (default: its current-context)."},
    {"namespace", OPER, FK_OPTIONAL, OFF(watch_namespace), NULL,
     "Only watch and reconcile objects in this namespace (default: all namespaces)."},
    {"metrics-bind-address", BOTH, FK_STRING, OFF(metrics_bind_address),
     FLAGS_DEFAULT_METRICS_BIND_ADDRESS,
     "The address the metric endpoint binds to. Use \"0\" to disable it."},
    {"health-probe-bind-address", BOTH, FK_STRING, OFF(health_probe_bind_address),
     FLAGS_DEFAULT_HEALTH_PROBE_BIND_ADDRESS,
     "The address the probe endpoint binds to. Use \"0\" to disable it."},
    {"leader-elect", OPER, FK_BOOL, OFF(leader_elect), "false",
     "Enable leader election for controller manager. Enabling this will ensure there is only "
     "one active controller manager."},
    {"leader-election-id", OPER, FK_STRING, OFF(leader_election_id),
     FLAGS_DEFAULT_LEADER_ELECTION_ID, "Name of the Lease object used for leader election."},
    {"leader-election-namespace", OPER, FK_OPTIONAL, OFF(leader_election_namespace), NULL,
     "Namespace of the leader election Lease (default: the pod's namespace, else \"default\")."},
    {"leader-elect-lease-duration", OPER, FK_DURATION, OFF(lease_duration_ns),
     FLAGS_DEFAULT_LEASE_DURATION,
     "How long non-leaders wait after the last observed renewal before trying to take the "
     "lease."},
    {"leader-elect-renew-deadline", OPER, FK_DURATION, OFF(renew_deadline_ns),
     FLAGS_DEFAULT_RENEW_DEADLINE,
     "How long the leader keeps trying to renew before it gives up leadership."},
    {"leader-elect-retry-period", OPER, FK_DURATION, OFF(retry_period_ns),
     FLAGS_DEFAULT_RETRY_PERIOD,
     "How long clients wait between attempts to acquire or renew the lease."},
    {"max-concurrent-reconciles", BOTH, FK_INT, OFF(max_concurrent_reconciles),
     STR(FLAGS_DEFAULT_MAX_CONCURRENT_RECONCILES),
     "Maximum number of concurrent reconciles per controller."},
    {"zap-log-level", BOTH, FK_LEVEL, OFF(zap_log_level), FLAGS_DEFAULT_LOG_LEVEL,
     "Log threshold: 'debug', 'info', 'error', 'panic' or an integer >= 0 (1 and more is "
     "debug)."},
    {"node-name", AGENT, FK_OPTIONAL, OFF(node_name), NULL,
     "The name of the Node this agent runs on (required; in a pod: spec.nodeName)."},
    {"host-root", AGENT, FK_STRING, OFF(host_root), FLAGS_DEFAULT_HOST_ROOT,
     "Where the node's root filesystem is seen: every node path is prefixed with it."},
    {"cni-kubeconfig", AGENT, FK_OPTIONAL, OFF(cni_kubeconfig), NULL,
     "Write a kubeconfig for provisio-cni at this node path (under --host-root), holding a "
     "token of --cni-service-account, kept fresh (default: none)."},
    {"cni-service-account", AGENT, FK_STRING, OFF(cni_service_account),
     FLAGS_DEFAULT_CNI_SERVICE_ACCOUNT,
     "The ServiceAccount, [NAMESPACE/]NAME, whose token --cni-kubeconfig holds (NAMESPACE: "
     "the agent's own)."},
    {"cni-server", AGENT, FK_OPTIONAL, OFF(cni_server), NULL,
     "The API server URL written to --cni-kubeconfig (default: the one the agent uses)."},
    {"version", BOTH, FK_BOOL, OFF(version), "false", "Print the version and exit."},
};

#define NFLAGS (sizeof g_flags / sizeof g_flags[0])

/* A malloc'd printf result, or NULL when out of memory. */
__attribute__((format(printf, 1, 2))) static char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

/* ---- Go durations -------------------------------------------------------- */

typedef struct unit {
    const char *name;
    uint64_t ns;
} unit;

static const unit g_units[] = {
    {"ns", 1},
    {"us", 1000},
    {"\xc2\xb5s", 1000}, /* U+00B5 micro sign */
    {"\xce\xbcs", 1000}, /* U+03BC Greek small mu */
    {"ms", 1000000},
    {"s", UINT64_C(1000000000)},
    {"m", UINT64_C(60000000000)},
    {"h", UINT64_C(3600000000000)},
};

int flags_parse_duration(const char *s, int64_t *out_ns)
{
    if (!s || !out_ns)
        return KC_ERR_INVALID_ARG;
    const uint64_t max = UINT64_C(1) << 63; /* |INT64_MIN| */
    bool neg = false;
    if (*s == '-' || *s == '+') {
        neg = *s == '-';
        s++;
    }
    if (strcmp(s, "0") == 0) {
        *out_ns = 0;
        return 0;
    }
    if (*s == '\0')
        return KC_ERR_INVALID_ARG;
    uint64_t total = 0;
    while (*s) {
        if (!(*s == '.' || (*s >= '0' && *s <= '9')))
            return KC_ERR_INVALID_ARG;
        /* Integer part. */
        uint64_t v = 0;
        const char *start = s;
        while (*s >= '0' && *s <= '9') {
            if (v > max / 10)
                return KC_ERR_INVALID_ARG;
            v = v * 10 + (uint64_t)(*s - '0');
            if (v > max)
                return KC_ERR_INVALID_ARG;
            s++;
        }
        bool pre = s != start;
        /* Fraction: digits past what fits are ignored, as Go does. */
        uint64_t frac = 0;
        double scale = 1;
        bool post = false;
        if (*s == '.') {
            s++;
            const char *fs = s;
            bool overflow = false;
            while (*s >= '0' && *s <= '9') {
                if (!overflow) {
                    if (frac > (UINT64_MAX - 9) / 10) {
                        overflow = true;
                    } else {
                        frac = frac * 10 + (uint64_t)(*s - '0');
                        scale *= 10;
                    }
                }
                s++;
            }
            post = s != fs;
        }
        if (!pre && !post)
            return KC_ERR_INVALID_ARG; /* "." or ".s" */
        /* Unit: everything up to the next number. */
        const char *us = s;
        while (*s && *s != '.' && !(*s >= '0' && *s <= '9'))
            s++;
        size_t ulen = (size_t)(s - us);
        if (ulen == 0)
            return KC_ERR_INVALID_ARG; /* missing unit */
        uint64_t mult = 0;
        for (size_t i = 0; i < sizeof g_units / sizeof g_units[0]; i++) {
            if (strlen(g_units[i].name) == ulen && memcmp(g_units[i].name, us, ulen) == 0) {
                mult = g_units[i].ns;
                break;
            }
        }
        if (mult == 0)
            return KC_ERR_INVALID_ARG; /* unknown unit */
        if (v > max / mult)
            return KC_ERR_INVALID_ARG;
        v *= mult;
        if (frac > 0) {
            /* Like Go, the fraction's nanoseconds are truncated. */
            double f = (double)frac * ((double)mult / scale);
            if (f >= (double)max)
                return KC_ERR_INVALID_ARG;
            v += (uint64_t)f;
            if (v > max)
                return KC_ERR_INVALID_ARG;
        }
        total += v;
        if (total > max)
            return KC_ERR_INVALID_ARG;
    }
    if (!neg && total > max - 1)
        return KC_ERR_INVALID_ARG;
    *out_ns = neg ? (int64_t)(0 - total) : (int64_t)total;
    return 0;
}

/* ---- values -------------------------------------------------------------- */

/* strconv.ParseBool. */
static int parse_bool(const char *s, bool *out)
{
    static const char *const t[] = {"1", "t", "T", "true", "TRUE", "True"};
    static const char *const f[] = {"0", "f", "F", "false", "FALSE", "False"};
    for (size_t i = 0; i < 6; i++) {
        if (strcmp(s, t[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(s, f[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return KC_ERR_INVALID_ARG;
}

/* Store value for flag d in o. Returns 0, KC_ERR_INVALID_ARG or KC_ERR_NOMEM. */
static int set_value(flags_options *o, const flag_def *d, const char *value)
{
    char *base = (char *)o;
    switch (d->kind) {
    case FK_STRING:
    case FK_OPTIONAL:
    case FK_LEVEL: {
        if (d->kind == FK_LEVEL) {
            plog_level lvl;
            if (log_parse_level(value, &lvl) != 0)
                return KC_ERR_INVALID_ARG;
            o->log_level = lvl;
        }
        char *copy = strdup(value);
        if (!copy)
            return KC_ERR_NOMEM;
        char **slot = (char **)(base + d->off);
        free(*slot);
        *slot = copy;
        return 0;
    }
    case FK_BOOL:
        return parse_bool(value, (bool *)(base + d->off));
    case FK_INT: {
        char *end;
        errno = 0;
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end || v < 1 || v > 1000000)
            return KC_ERR_INVALID_ARG;
        *(int *)(base + d->off) = (int)v;
        return 0;
    }
    case FK_DURATION:
        return flags_parse_duration(value, (int64_t *)(base + d->off));
    }
    return KC_ERR_INVALID_ARG;
}

static const flag_def *find_flag(flags_mode mode, const char *name, size_t len)
{
    for (size_t i = 0; i < NFLAGS; i++)
        if ((g_flags[i].modes & mode) && strlen(g_flags[i].name) == len &&
            memcmp(g_flags[i].name, name, len) == 0)
            return &g_flags[i];
    return NULL;
}

void flags_free(flags_options *o)
{
    if (!o)
        return;
    free(o->kubeconfig);
    free(o->context);
    free(o->watch_namespace);
    free(o->leader_election_id);
    free(o->leader_election_namespace);
    free(o->metrics_bind_address);
    free(o->health_probe_bind_address);
    free(o->node_name);
    free(o->host_root);
    free(o->cni_kubeconfig);
    free(o->cni_service_account);
    free(o->cni_server);
    free(o->zap_log_level);
    memset(o, 0, sizeof *o);
}

/* Fail: free *o, hand the message to the caller (or drop it). */
static int fail(flags_options *o, char **errmsg, int rc, char *msg)
{
    flags_free(o);
    if (rc == KC_ERR_INVALID_ARG && !msg)
        rc = KC_ERR_NOMEM; /* the message itself could not be allocated */
    if (errmsg)
        *errmsg = msg;
    else
        free(msg);
    return rc;
}

/* A DNS-1123 subdomain (what a Node's name is): [a-z0-9]([-a-z0-9]*[a-z0-9])? labels, dots. */
static bool dns_subdomain(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
        bool edge = i == 0 || i == n - 1 || s[i - 1] == '.' || s[i + 1] == '.';
        if (!alnum && !((ch == '-' || ch == '.') && !edge))
            return false;
    }
    return true;
}

/* [NAMESPACE/]NAME: a namespace is a DNS label, a ServiceAccount a subdomain. */
static bool service_account_ok(const char *s)
{
    const char *slash = strchr(s, '/');
    if (slash == NULL)
        return dns_subdomain(s);
    char *ns = strndup(s, (size_t)(slash - s));
    bool ok = ns != NULL && dns_subdomain(ns) && strchr(ns, '.') == NULL && strlen(ns) <= 63 &&
              dns_subdomain(slash + 1);
    free(ns);
    return ok;
}

/* The agent's own rules; a message (malloc'd) or NULL when they hold. */
static const char *agent_check(const flags_options *o)
{
    if (o->node_name == NULL || o->node_name[0] == '\0')
        return "flag --node-name is required: the name of the Node the agent runs on";
    if (!dns_subdomain(o->node_name))
        return "invalid value for flag --node-name: want a node name (lower case letters, "
               "digits, '-' and '.')";
    if (o->host_root[0] != '/')
        return "invalid value for flag --host-root: want an absolute path";
    if (o->cni_kubeconfig != NULL && (o->cni_kubeconfig[0] != '/' || o->cni_kubeconfig[1] == '\0'))
        return "invalid value for flag --cni-kubeconfig: want an absolute path of a file on the "
               "node";
    if (!service_account_ok(o->cni_service_account))
        return "invalid value for flag --cni-service-account: want NAME or NAMESPACE/NAME "
               "(lower case letters, digits, '-'; '.' in NAME)";
    if (o->cni_server != NULL && strncmp(o->cni_server, "https://", 8) != 0 &&
        strncmp(o->cni_server, "http://", 7) != 0)
        return "invalid value for flag --cni-server: want an http:// or https:// URL";
    return NULL;
}

int flags_parse(int argc, char *const argv[], flags_options *out, char **errmsg)
{
    return flags_parse_mode(FLAGS_OPERATOR, argc, argv, out, errmsg);
}

int flags_parse_mode(flags_mode mode, int argc, char *const argv[], flags_options *out,
                     char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    if (!out || argc < 0 || (argc > 0 && !argv))
        return KC_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < NFLAGS; i++) {
        if (!g_flags[i].def || !(g_flags[i].modes & mode))
            continue;
        int rc = set_value(out, &g_flags[i], g_flags[i].def);
        if (rc)
            return fail(out, errmsg, KC_ERR_NOMEM, NULL);
    }

    int i = argc > 0 ? 1 : 0;
    for (; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-' || arg[1] == '\0')
            break; /* first positional argument */
        const char *name = arg + 1;
        if (*name == '-') {
            name++;
            if (*name == '\0') { /* "--" ends the flags */
                i++;
                break;
            }
        }
        if (*name == '-' || *name == '=')
            return fail(out, errmsg, KC_ERR_INVALID_ARG, xasprintf("bad flag syntax: %s", arg));
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        if ((nlen == 1 && name[0] == 'h') || (nlen == 4 && memcmp(name, "help", 4) == 0)) {
            out->help = true;
            continue;
        }
        const flag_def *d = find_flag(mode, name, nlen);
        if (!d)
            return fail(out, errmsg, KC_ERR_INVALID_ARG,
                        xasprintf("unknown flag: --%.*s", (int)nlen, name));
        const char *value;
        if (eq) {
            value = eq + 1;
        } else if (d->kind == FK_BOOL) {
            value = "true";
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            return fail(out, errmsg, KC_ERR_INVALID_ARG,
                        xasprintf("flag needs an argument: --%s", d->name));
        }
        int rc = set_value(out, d, value);
        if (rc == KC_ERR_NOMEM)
            return fail(out, errmsg, rc, NULL);
        if (rc) {
            const char *why = "";
            switch (d->kind) {
            case FK_BOOL:
                why = ": want true or false";
                break;
            case FK_INT:
                why = ": want an integer >= 1";
                break;
            case FK_DURATION:
                why = ": want a duration like 15s, 1m30s or 500ms";
                break;
            case FK_LEVEL:
                why = ": want debug, info, error, panic or an integer >= 0";
                break;
            default:
                break;
            }
            return fail(out, errmsg, KC_ERR_INVALID_ARG,
                        xasprintf("invalid value \"%s\" for flag --%s%s", value, d->name, why));
        }
    }
    out->argi = i;

    if (out->leader_elect) {
        const char *bad = NULL;
        if (out->lease_duration_ns <= 0 || out->renew_deadline_ns <= 0 || out->retry_period_ns <= 0)
            bad = "leader election durations must be greater than zero";
        else if (out->lease_duration_ns <= out->renew_deadline_ns)
            bad = "--leader-elect-lease-duration must be greater than "
                  "--leader-elect-renew-deadline";
        else if ((double)out->renew_deadline_ns <= 1.2 * (double)out->retry_period_ns)
            bad = "--leader-elect-renew-deadline must be greater than "
                  "1.2 x --leader-elect-retry-period";
        if (bad)
            return fail(out, errmsg, KC_ERR_INVALID_ARG, strdup(bad));
    }
    if (mode == FLAGS_AGENT && !out->help && !out->version) {
        const char *bad = agent_check(out);
        if (bad)
            return fail(out, errmsg, KC_ERR_INVALID_ARG, strdup(bad));
    }
    return 0;
}

void flags_usage(FILE *f, const char *prog)
{
    flags_usage_mode(f, prog, FLAGS_OPERATOR);
}

void flags_usage_mode(FILE *f, const char *prog, flags_mode mode)
{
    fprintf(f, "Usage of %s:\n", prog ? prog : "provisio");
    for (size_t i = 0; i < NFLAGS; i++) {
        const flag_def *d = &g_flags[i];
        if (!(d->modes & mode))
            continue;
        const char *type = "";
        switch (d->kind) {
        case FK_STRING:
        case FK_OPTIONAL:
        case FK_LEVEL:
            type = " string";
            break;
        case FK_INT:
            type = " int";
            break;
        case FK_DURATION:
            type = " duration";
            break;
        case FK_BOOL:
            break;
        }
        fprintf(f, "  --%s%s\n    \t%s", d->name, type, d->help);
        if (d->def && !(d->kind == FK_BOOL && strcmp(d->def, "false") == 0)) {
            if (d->kind == FK_STRING || d->kind == FK_LEVEL)
                fprintf(f, " (default \"%s\")", d->def);
            else
                fprintf(f, " (default %s)", d->def);
        }
        fputc('\n', f);
    }
    fprintf(f, "  -h, --help\n    \tPrint this help and exit.\n");
}
