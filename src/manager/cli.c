/*
 * cli - `provisio get` / `provisio watch` (see cli.h for the behaviour).
 *
 * The command line is read by a small pflag-like parser driven by one flag
 * table: each flag has a long name, an optional shorthand, whether it takes a
 * value, whether it belongs to watch only, and where it lands in cli_args.
 * Flags and positionals may be interleaved; "--" ends the flags. Nothing is
 * copied: cli_args borrows argv.
 *
 * A request goes config -> client -> discovery (to turn what the person typed
 * into group/version/resource and learn whether it is namespaced) -> one
 * get, a paged list (kc_list_all), or a watch loop. Output is JSON lines on
 * stdout, flushed per line so a pipe sees each object as it comes.
 *
 * The watch loop keeps the last resourceVersion it saw (from events and from
 * bookmarks, which are always requested so that it stays fresh even when
 * nothing changes) and opens the watch again from it when the server ends
 * the stream or fails retryably (1 s doubling to 30 s between failures).
 *
 * SIGINT/SIGTERM are turned into kc_watch_stop through a self-pipe: the
 * handler only write()s one byte (async-signal-safe) and a helper thread,
 * blocked in read(), calls kc_watch_stop. Invariant: the handlers are
 * installed only while the relay thread runs, and the pipe's write end stays
 * open until the handlers are restored.
 */
#include "cli.h"

#include "kc_client.h"
#include "kc_config.h"
#include "kc_discovery.h"
#include "kc_error.h"
#include "pv_clock.h"
#include "pv_json.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* ---- argument parsing ----------------------------------------------------- */

typedef enum cli_flag_kind {
    CF_STRING,  /* const char * in cli_args */
    CF_BOOL,    /* bool in cli_args */
    CF_SECONDS, /* long in cli_args: seconds, with an optional s/m/h unit */
} cli_flag_kind;

typedef struct cli_flag {
    const char *name; /* long name, without "--" */
    char shorthand;   /* 0 = none */
    cli_flag_kind kind;
    bool watch_only;
    size_t off;
} cli_flag;

#define ARG_OFF(f) offsetof(cli_args, f)

static const cli_flag cli_flags[] = {
    {"kubeconfig", 0, CF_STRING, false, ARG_OFF(kubeconfig)},
    {"context", 0, CF_STRING, false, ARG_OFF(context)},
    {"namespace", 'n', CF_STRING, false, ARG_OFF(namespace_)},
    {"all-namespaces", 'A', CF_BOOL, false, ARG_OFF(all_namespaces)},
    {"selector", 'l', CF_STRING, false, ARG_OFF(label_selector)},
    {"field-selector", 0, CF_STRING, false, ARG_OFF(field_selector)},
    {"resource-version", 0, CF_STRING, true, ARG_OFF(resource_version)},
    {"timeout", 0, CF_SECONDS, true, ARG_OFF(timeout_seconds)},
    {"bookmarks", 0, CF_BOOL, true, ARG_OFF(bookmarks)},
    {"help", 'h', CF_BOOL, false, ARG_OFF(help)},
};

#define N_FLAGS (sizeof(cli_flags) / sizeof(cli_flags[0]))

static const char *command_name(cli_command cmd)
{
    return cmd == CLI_WATCH ? "watch" : "get";
}

static const cli_flag *find_long(const char *name, size_t len)
{
    for (size_t i = 0; i < N_FLAGS; i++)
        if (strlen(cli_flags[i].name) == len && !strncmp(cli_flags[i].name, name, len))
            return &cli_flags[i];
    return NULL;
}

static const cli_flag *find_short(char c)
{
    for (size_t i = 0; i < N_FLAGS; i++)
        if (cli_flags[i].shorthand && cli_flags[i].shorthand == c)
            return &cli_flags[i];
    return NULL;
}

/* strconv.ParseBool's spellings, as pflag accepts for --flag=value. */
static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"1", "t", "T", "true", "TRUE", "True"};
    static const char *const no[] = {"0", "f", "F", "false", "FALSE", "False"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (!strcmp(s, yes[i])) {
            *out = true;
            return 0;
        }
        if (!strcmp(s, no[i])) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

/* "30", "30s", "5m", "1h": whole seconds, 0 .. a day's worth of years. */
static int parse_seconds(const char *s, long *out)
{
    if (!*s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (errno || v < 0)
        return -1;
    long unit = 1;
    if (*end == 's')
        end++;
    else if (*end == 'm')
        unit = 60, end++;
    else if (*end == 'h')
        unit = 3600, end++;
    if (*end || v > INT32_MAX / unit)
        return -1;
    *out = v * unit;
    return 0;
}

/*
 * Store value for flag f. spelled is how the person wrote the flag, for the
 * message.
 */
static int set_flag(const cli_flag *f, const char *spelled, const char *value, cli_args *a,
                    kc_error *err)
{
    char *field = (char *)a + f->off;
    switch (f->kind) {
    case CF_STRING:
        if (!*value)
            return kc_error_set(err, KC_ERR_INVALID_ARG, "%s must not be empty", spelled);
        memcpy(field, &value, sizeof(value));
        return KC_OK;
    case CF_BOOL: {
        bool b = true;
        if (value && parse_bool(value, &b) != 0)
            return kc_error_set(err, KC_ERR_INVALID_ARG,
                                "invalid argument \"%s\" for \"%s\": not a boolean", value,
                                spelled);
        memcpy(field, &b, sizeof(b));
        return KC_OK;
    }
    case CF_SECONDS: {
        long v = 0;
        if (parse_seconds(value, &v) != 0)
            return kc_error_set(err, KC_ERR_INVALID_ARG,
                                "invalid argument \"%s\" for \"%s\": want whole seconds "
                                "(30, 30s, 5m, 1h)",
                                value, spelled);
        memcpy(field, &v, sizeof(v));
        return KC_OK;
    }
    }
    return kc_error_set(err, KC_ERR_INVALID_ARG, "internal: bad flag kind");
}

static int check_command(const cli_flag *f, cli_command cmd, const char *spelled, kc_error *err)
{
    if (f->watch_only && cmd != CLI_WATCH)
        return kc_error_set(err, KC_ERR_INVALID_ARG,
                            "unknown flag: %s (it is a flag of provisio watch)", spelled);
    return KC_OK;
}

/* "--name", "--name=value", "--name value": *i advances past a taken value. */
static int parse_long(int argc, char *const argv[], int *i, cli_args *a, kc_error *err)
{
    const char *arg = argv[*i];
    const char *name = arg + 2;
    const char *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const cli_flag *f = find_long(name, len);
    if (!f)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "unknown flag: --%.*s", (int)len, name);
    char spelled[64];
    snprintf(spelled, sizeof(spelled), "--%s", f->name); /* our own names: always fit */
    int rc = check_command(f, a->command, spelled, err);
    if (rc != KC_OK)
        return rc;
    const char *value = eq ? eq + 1 : NULL;
    if (!value && f->kind != CF_BOOL) {
        if (*i + 1 >= argc)
            return kc_error_set(err, KC_ERR_INVALID_ARG, "flag needs an argument: %s", spelled);
        value = argv[++*i];
    }
    return set_flag(f, spelled, value, a, err);
}

/*
 * "-n value", "-nvalue", "-n=value", and booleans run together ("-Ah"), as
 * pflag reads shorthands.
 */
static int parse_short(int argc, char *const argv[], int *i, cli_args *a, kc_error *err)
{
    const char *arg = argv[*i];
    for (const char *p = arg + 1; *p; p++) {
        const cli_flag *f = find_short(*p);
        if (!f)
            return kc_error_set(err, KC_ERR_INVALID_ARG, "unknown shorthand flag: '%c' in %s", *p,
                                arg);
        char spelled[8];
        snprintf(spelled, sizeof(spelled), "-%c", f->shorthand);
        int rc = check_command(f, a->command, spelled, err);
        if (rc != KC_OK)
            return rc;
        const char *value = NULL;
        if (p[1] == '=')
            value = p + 2;
        else if (f->kind != CF_BOOL)
            value = p[1] ? p + 1 : NULL;
        if (!value && f->kind != CF_BOOL) {
            if (*i + 1 >= argc)
                return kc_error_set(err, KC_ERR_INVALID_ARG, "flag needs an argument: '%c' in %s",
                                    *p, arg);
            value = argv[++*i];
        }
        rc = set_flag(f, spelled, value, a, err);
        if (rc != KC_OK || value)
            return rc; /* a value (or "=...") uses up the rest of this argument */
    }
    return KC_OK;
}

int cli_parse_args(int argc, char *const argv[], cli_args *out, kc_error *err)
{
    if (!out)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "cli_parse_args: no output");
    memset(out, 0, sizeof(*out));
    if (argc < 1 || !argv || !argv[0])
        return kc_error_set(err, KC_ERR_INVALID_ARG, "no subcommand (get or watch)");
    if (!strcmp(argv[0], "get"))
        out->command = CLI_GET;
    else if (!strcmp(argv[0], "watch"))
        out->command = CLI_WATCH;
    else
        return kc_error_set(err, KC_ERR_INVALID_ARG, "unknown command \"%s\" (get or watch)",
                            argv[0]);

    const char *positional[3] = {NULL, NULL, NULL};
    int npos = 0;
    bool flags_done = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int rc = KC_OK;
        if (!flags_done && !strcmp(arg, "--")) {
            flags_done = true;
            continue;
        }
        if (!flags_done && arg[0] == '-' && arg[1] == '-')
            rc = parse_long(argc, argv, &i, out, err);
        else if (!flags_done && arg[0] == '-' && arg[1])
            rc = parse_short(argc, argv, &i, out, err);
        else if (npos < 3)
            positional[npos++] = arg; /* counted past 2 only to say "too many" */
        if (rc != KC_OK)
            return rc;
    }
    if (out->help)
        return KC_OK;

    const char *verb = command_name(out->command);
    if (npos == 0)
        return kc_error_set(err, KC_ERR_INVALID_ARG,
                            "you must specify the type of resource to %s (e.g. provisio %s pods)",
                            verb, verb);
    if (npos > 2)
        return kc_error_set(err, KC_ERR_INVALID_ARG,
                            "too many arguments: provisio %s takes RESOURCE [NAME]", verb);
    if (!*positional[0])
        return kc_error_set(err, KC_ERR_INVALID_ARG, "the resource type must not be empty");
    if (npos == 2 && !*positional[1])
        return kc_error_set(err, KC_ERR_INVALID_ARG, "the name must not be empty");
    out->resource = positional[0];
    out->name = npos == 2 ? positional[1] : NULL;
    if (out->name && out->all_namespaces)
        return kc_error_set(err, KC_ERR_INVALID_ARG,
                            "a resource cannot be retrieved by name across all namespaces");
    if (out->name && out->label_selector)
        return kc_error_set(err, KC_ERR_INVALID_ARG,
                            "name cannot be provided when a selector is specified");
    return KC_OK;
}

void cli_usage(FILE *f, cli_command cmd)
{
    if (cmd == CLI_WATCH)
        fputs("Print the changes to Kubernetes objects as JSON lines, one event per line:\n"
              "{\"type\":\"ADDED|MODIFIED|DELETED\",\"object\":{...}}. Without\n"
              "--resource-version the objects that exist come first as ADDED events. The\n"
              "watch is opened again from the last resourceVersion whenever the server ends\n"
              "it, until Ctrl-C (exit 0); a resourceVersion too old to resume from (410 Gone)\n"
              "ends it with exit status 1.\n"
              "\n"
              "Usage:\n"
              "  provisio watch RESOURCE [NAME] [flags]\n"
              "\n"
              "Examples:\n"
              "  provisio watch configmaps -n default\n"
              "  provisio watch leases.coordination.k8s.io -A\n"
              "  provisio watch ipclaims.provisio.dev my-claim --timeout 60\n",
              f);
    else
        fputs("Print Kubernetes objects as JSON lines: the named object, or one line per\n"
              "item of the list (with apiVersion and kind filled in, as kubectl does).\n"
              "\n"
              "Usage:\n"
              "  provisio get RESOURCE [NAME] [flags]\n"
              "\n"
              "Examples:\n"
              "  provisio get pods -n kube-system\n"
              "  provisio get leases.coordination.k8s.io -A\n"
              "  provisio get configmaps -l app=web\n"
              "  provisio get ippools.provisio.dev pool-a\n",
              f);
    fputs(
        "\n"
        "RESOURCE is anything kubectl takes: plural, singular, kind or short name (po),\n"
        "resource.group (leases.coordination.k8s.io), group/version/resource\n"
        "(coordination.k8s.io/v1/leases) or version/resource (v1/pods).\n"
        "\n"
        "Flags (anywhere after the subcommand):\n"
        "  -A, --all-namespaces         every namespace\n"
        "      --context NAME           the kubeconfig context to use\n"
        "      --field-selector SEL     filter on fields (metadata.name=x,status.phase!=Running)\n"
        "  -h, --help                   print this help\n"
        "      --kubeconfig PATH        kubeconfig file (default: $KUBECONFIG, in-cluster,\n"
        "                               ~/.kube/config)\n"
        "  -n, --namespace NS           namespace (default: the context's; ignored for\n"
        "                               cluster-scoped resources)\n"
        "  -l, --selector SEL           filter on labels (app=web,tier!=db)\n",
        f);
    if (cmd == CLI_WATCH)
        fputs(
            "      --bookmarks              print BOOKMARK events too\n"
            "      --resource-version RV    start from RV instead of the current state\n"
            "      --timeout SECONDS        let the server end the watch after SECONDS (30, 5m),\n"
            "                               then exit 0 (default: watch until Ctrl-C)\n",
            f);
}

const char *cli_request_namespace(const cli_args *a, bool namespaced, const char *context_namespace)
{
    if (!a || !namespaced || a->all_namespaces)
        return NULL;
    return a->namespace_ ? a->namespace_ : context_namespace;
}

int cli_watch_field_selector(const cli_args *a, char **out, kc_error *err)
{
    if (!out)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "cli_watch_field_selector: no output");
    *out = NULL;
    if (!a)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "cli_watch_field_selector: no arguments");
    int n;
    if (a->name && a->field_selector)
        n = asprintf(out, "%s,metadata.name=%s", a->field_selector, a->name);
    else if (a->name)
        n = asprintf(out, "metadata.name=%s", a->name);
    else if (a->field_selector)
        n = (*out = strdup(a->field_selector)) ? 0 : -1;
    else
        return KC_OK;
    if (n < 0) {
        *out = NULL;
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    }
    return KC_OK;
}

/* ---- output --------------------------------------------------------------- */

char *cli_item_kind(const char *list_kind)
{
    static const char suffix[] = "List";
    size_t len = list_kind ? strlen(list_kind) : 0;
    if (len <= sizeof(suffix) - 1 || strcmp(list_kind + len - (sizeof(suffix) - 1), suffix) != 0)
        return NULL;
    return strndup(list_kind, len - (sizeof(suffix) - 1));
}

/* The string member key of obj when it is a non-empty string, else NULL. */
static const char *string_member(json_object *obj, const char *key)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    const char *s = json_object_get_string(v);
    return (s && *s) ? s : NULL;
}

int cli_with_type_meta(json_object *item, const char *api_version, const char *kind,
                       json_object **out, kc_error *err)
{
    if (!out)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "cli_with_type_meta: no output");
    *out = NULL;
    if (!json_object_is_type(item, json_type_object))
        return kc_error_set(err, KC_ERR_INVALID_ARG, "a list item is not a JSON object");
    const char *have_api_version = string_member(item, "apiVersion");
    const char *have_kind = string_member(item, "kind");
    if (have_api_version)
        api_version = have_api_version;
    if (have_kind)
        kind = have_kind;

    json_object *obj = json_object_new_object();
    if (!obj)
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    if ((api_version && !pv_json_add_str(obj, "apiVersion", api_version)) ||
        (kind && !pv_json_add_str(obj, "kind", kind)))
        goto nomem;
    json_object_object_foreach(item, key, val)
    {
        if (!strcmp(key, "apiVersion") || !strcmp(key, "kind"))
            continue;
        /* Shared with item: one more reference, dropped when obj is put. */
        if (json_object_object_add(obj, key, json_object_get(val)) != 0) {
            json_object_put(val);
            goto nomem;
        }
    }
    *out = obj;
    return KC_OK;
nomem:
    json_object_put(obj);
    return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
}

int cli_print_object(FILE *f, json_object *obj, kc_error *err)
{
    const char *text = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN |
                                                               JSON_C_TO_STRING_NOSLASHESCAPE);
    if (!text)
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    if (fputs(text, f) == EOF || putc('\n', f) == EOF || fflush(f) != 0)
        return kc_error_set(err, KC_ERR_IO, "writing the output: %s", strerror(errno));
    return KC_OK;
}

int cli_print_list(FILE *f, json_object *list, const char *fallback_api_version,
                   const char *fallback_kind, kc_error *err)
{
    json_object *items = NULL;
    if (!json_object_is_type(list, json_type_object) ||
        !json_object_object_get_ex(list, "items", &items))
        return kc_error_set(err, KC_ERR_DECODE, "the list has no items");
    if (!items) /* "items": null is an empty list */
        return KC_OK;
    if (!json_object_is_type(items, json_type_array))
        return kc_error_set(err, KC_ERR_DECODE, "the list's items are not an array");

    const char *api_version = string_member(list, "apiVersion");
    char *kind = cli_item_kind(string_member(list, "kind"));
    if (!api_version || !kind) {
        free(kind);
        kind = NULL;
        api_version = fallback_api_version;
    }
    int rc = KC_OK;
    size_t n = json_object_array_length(items);
    for (size_t i = 0; i < n && rc == KC_OK; i++) {
        json_object *line = NULL;
        rc = cli_with_type_meta(json_object_array_get_idx(items, i), api_version,
                                kind ? kind : fallback_kind, &line, err);
        if (rc == KC_OK)
            rc = cli_print_object(f, line, err);
        json_object_put(line);
    }
    free(kind);
    return rc;
}

int cli_print_event(FILE *f, kc_event_type type, json_object *object, kc_error *err)
{
    json_object *ev = json_object_new_object();
    if (!ev || !pv_json_add_str(ev, "type", kc_event_type_name(type)))
        goto nomem;
    /* A shared reference: the caller keeps its own. */
    if (json_object_object_add(ev, "object", object ? json_object_get(object) : NULL) != 0) {
        json_object_put(object);
        goto nomem;
    }
    int rc = cli_print_object(f, ev, err);
    json_object_put(ev);
    return rc;
nomem:
    json_object_put(ev);
    return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
}

void cli_print_error(FILE *f, const kc_error *err)
{
    const char *message = (err && err->message && *err->message)
                              ? err->message
                              : kc_strerror(err ? err->code : KC_ERR_API);
    /*
     * Only a reason tells a server's Status apart: kc_error_set derives an
     * HTTP code from local codes too (a resource type discovery does not
     * know is KC_ERR_NOT_FOUND with 404).
     */
    if (err && err->reason && *err->reason)
        fprintf(f, "Error from server (%s): %s\n", err->reason, message);
    else
        fprintf(f, "error: %s\n", message);
    fflush(f);
}

/* ---- SIGINT/SIGTERM -> kc_watch_stop -------------------------------------- */

/* The relay's pipe write end, for the handler; -1 while no relay runs. */
static volatile sig_atomic_t relay_fd = -1;

static void on_stop_signal(int sig)
{
    (void)sig;
    int saved = errno;
    int fd = relay_fd;
    if (fd >= 0) {
        char b = 's';
        ssize_t n = write(fd, &b, 1); /* non-blocking: a full pipe already says "stop" */
        (void)n;
    }
    errno = saved;
}

typedef struct signal_relay {
    int fds[2];
    pthread_t thread;
    kc_watch *watch;
    atomic_bool signalled;
    struct sigaction old_int, old_term;
} signal_relay;

static void *relay_main(void *arg)
{
    signal_relay *r = arg;
    for (;;) {
        char b;
        ssize_t n = read(r->fds[0], &b, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || b == 'q')
            return NULL;
        atomic_store(&r->signalled, true);
        kc_watch_stop(r->watch);
    }
}

static int relay_start(signal_relay *r, kc_watch *w, kc_error *err)
{
    memset(r, 0, sizeof(*r));
    r->watch = w;
    atomic_init(&r->signalled, false);
    if (pipe2(r->fds, O_CLOEXEC) != 0)
        return kc_error_set(err, KC_ERR_IO, "pipe: %s", strerror(errno));
    int fl = fcntl(r->fds[1], F_GETFL);
    if (fl < 0 || fcntl(r->fds[1], F_SETFL, fl | O_NONBLOCK) != 0)
        goto fail;
    int prc = pthread_create(&r->thread, NULL, relay_main, r);
    if (prc != 0) {
        errno = prc;
        goto fail;
    }
    relay_fd = r->fds[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &r->old_int);
    sigaction(SIGTERM, &sa, &r->old_term);
    return KC_OK;
fail:;
    int e = errno;
    close(r->fds[0]);
    close(r->fds[1]);
    return kc_error_set(err, KC_ERR_IO, "starting the signal relay: %s", strerror(e));
}

/* Restore the handlers, end and join the thread. Returns whether a signal came. */
static bool relay_stop(signal_relay *r)
{
    sigaction(SIGINT, &r->old_int, NULL);
    sigaction(SIGTERM, &r->old_term, NULL);
    relay_fd = -1;
    char q = 'q';
    /* The pipe holds at most a few 's' bytes: a blocking retry cannot wait long. */
    int fl = fcntl(r->fds[1], F_GETFL);
    if (fl >= 0)
        fcntl(r->fds[1], F_SETFL, fl & ~O_NONBLOCK);
    while (write(r->fds[1], &q, 1) < 0 && errno == EINTR)
        ;
    pthread_join(r->thread, NULL);
    close(r->fds[0]);
    close(r->fds[1]);
    return atomic_load(&r->signalled);
}

/* Sleep for seconds, or less when a signal has come (the next watch run then stops). */
static void relay_pause(signal_relay *r, double seconds)
{
    double until = pv_clock_monotonic() + seconds;
    while (!atomic_load(&r->signalled) && pv_clock_monotonic() < until) {
        struct timespec slice = {0, 50 * 1000 * 1000};
        nanosleep(&slice, NULL);
    }
}

/* ---- the subcommands ------------------------------------------------------ */

typedef struct watch_state {
    bool bookmarks;
    char *last_rv; /* owned */
    unsigned long events;
    kc_error cb_err; /* why the callback ended the watch */
} watch_state;

static int on_event(kc_event_type type, json_object *object, void *user)
{
    watch_state *st = user;
    json_object *meta = NULL;
    const char *rv = NULL;
    if (json_object_object_get_ex(object, "metadata", &meta))
        rv = string_member(meta, "resourceVersion");
    if (rv && (!st->last_rv || strcmp(rv, st->last_rv) != 0)) {
        char *copy = strdup(rv);
        if (!copy) {
            kc_error_set(&st->cb_err, KC_ERR_NOMEM, "out of memory");
            return 1;
        }
        free(st->last_rv);
        st->last_rv = copy;
    }
    st->events++;
    if (type == KC_EVENT_BOOKMARK && !st->bookmarks)
        return 0;
    return cli_print_event(stdout, type, object, &st->cb_err) == KC_OK ? 0 : 1;
}

static int run_watch(kc_client *client, const cli_args *a, const kc_discovery_resource *res,
                     const char *ns, kc_error *err)
{
    kc_ref ref;
    kc_discovery_ref(res, ns, NULL, &ref); /* a name becomes a field selector */
    char *field_selector = NULL;
    int rc = cli_watch_field_selector(a, &field_selector, err);
    if (rc != KC_OK)
        return rc;
    kc_watch *w = NULL;
    rc = kc_watch_new(client, 0, &w, err);
    if (rc != KC_OK) {
        free(field_selector);
        return rc;
    }
    signal_relay relay;
    rc = relay_start(&relay, w, err);
    if (rc != KC_OK) {
        kc_watch_free(w);
        free(field_selector);
        return rc;
    }

    watch_state st = {.bookmarks = a->bookmarks, .cb_err = KC_ERROR_INIT};
    kc_list_opts opts = {
        .label_selector = a->label_selector,
        .field_selector = field_selector,
        .timeout_seconds = a->timeout_seconds,
        .allow_watch_bookmarks = true, /* keeps last_rv fresh; printed only with --bookmarks */
    };
    /* Owned copy: st.last_rv changes (and is freed) while a watch runs. */
    char *resume_rv = NULL;
    if (a->resource_version && !(resume_rv = strdup(a->resource_version)))
        rc = kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    double delay = 0;
    while (rc == KC_OK) {
        unsigned long before = st.events;
        double started = pv_clock_monotonic();
        opts.resource_version = resume_rv;
        rc = kc_watch_run(w, &ref, &opts, on_event, &st, err);
        if (a->timeout_seconds > 0 || (rc != KC_OK && !kc_status_is_retryable(rc)))
            break; /* done, stopped, 410 Gone, or an error worth reporting */
        if (st.last_rv && (!resume_rv || strcmp(resume_rv, st.last_rv) != 0)) {
            free(resume_rv);
            if (!(resume_rv = strdup(st.last_rv))) {
                rc = kc_error_set(err, KC_ERR_NOMEM, "out of memory");
                break;
            }
        }
        /*
         * The server ended the stream (KC_OK), or it failed in a way that
         * passes (an API server restarting): go on from the last
         * resourceVersion. Never spin on a server that ends at once; back
         * off on repeated failures.
         */
        bool progressed = st.events != before || pv_clock_monotonic() - started >= 10.0;
        if (rc == KC_OK) {
            delay = progressed ? 0 : 1;
        } else {
            delay = progressed ? 1 : (delay < 1 ? 1 : (delay * 2 > 30 ? 30 : delay * 2));
            fprintf(stderr, "provisio: the watch failed (%s); retrying in %.0f s\n",
                    err->message ? err->message : kc_strerror(rc), delay);
            fflush(stderr);
            kc_error_clear(err);
            rc = KC_OK;
        }
        relay_pause(&relay, delay);
    }
    bool signalled = relay_stop(&relay);
    if (rc == KC_ERR_STOPPED && signalled) {
        rc = KC_OK;
        kc_error_clear(err);
    } else if (rc > 0) { /* the callback's own error */
        rc = st.cb_err.code ? st.cb_err.code : KC_ERR_IO;
        kc_error_set(err, rc, "%s", st.cb_err.message ? st.cb_err.message : kc_strerror(rc));
    }
    kc_error_clear(&st.cb_err);
    free(resume_rv);
    free(st.last_rv);
    kc_watch_free(w);
    free(field_selector);
    return rc;
}

static int run_get(kc_client *client, const cli_args *a, const kc_discovery_resource *res,
                   const char *ns, kc_error *err)
{
    char *api_version = NULL;
    int n = *res->group ? asprintf(&api_version, "%s/%s", res->group, res->version)
                        : asprintf(&api_version, "%s", res->version);
    if (n < 0)
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    kc_ref ref;
    kc_discovery_ref(res, ns, a->name, &ref);
    json_object *body = NULL;
    int rc;
    if (a->name) {
        rc = kc_get(client, &ref, &body, err);
        json_object *line = NULL;
        if (rc == KC_OK)
            rc = cli_with_type_meta(body, api_version, res->kind, &line, err);
        if (rc == KC_OK)
            rc = cli_print_object(stdout, line, err);
        json_object_put(line);
    } else {
        kc_list_opts opts = {
            .label_selector = a->label_selector,
            .field_selector = a->field_selector,
        };
        rc = kc_list_all(client, &ref, &opts, &body, err);
        if (rc == KC_OK)
            rc = cli_print_list(stdout, body, api_version, res->kind, err);
    }
    json_object_put(body);
    free(api_version);
    return rc;
}

int cli_main(int argc, char **argv)
{
    kc_error err = KC_ERROR_INIT;
    cli_args a;
    int rc = cli_parse_args(argc, argv, &a, &err);
    if (rc != KC_OK) {
        cli_print_error(stderr, &err);
        if (argc >= 1 && argv && argv[0] && (!strcmp(argv[0], "get") || !strcmp(argv[0], "watch")))
            fprintf(stderr, "See 'provisio %s --help' for usage.\n", argv[0]);
        kc_error_clear(&err);
        return 1;
    }
    if (a.help) {
        cli_usage(stdout, a.command);
        return 0;
    }

    kc_config *cfg = NULL;
    kc_client *client = NULL;
    kc_discovery *disc = NULL;
    const kc_discovery_resource *res = NULL;
    kc_config_opts copts = {.kubeconfig = a.kubeconfig, .context = a.context};
    rc = kc_config_load(&copts, &cfg, &err);
    if (rc == KC_OK)
        rc = kc_client_new(cfg, NULL, &client, &err);
    if (rc == KC_OK && !(disc = kc_discovery_new()))
        rc = kc_error_set(&err, KC_ERR_NOMEM, "out of memory");
    if (rc == KC_OK)
        rc = kc_discovery_fetch(disc, client, &err);
    if (rc == KC_OK)
        rc = kc_discovery_resolve(disc, a.resource, &res, &err);
    if (rc == KC_OK) {
        const char *ns = cli_request_namespace(&a, res->namespaced, kc_config_namespace(cfg));
        rc = a.command == CLI_WATCH ? run_watch(client, &a, res, ns, &err)
                                    : run_get(client, &a, res, ns, &err);
    }
    if (rc != KC_OK)
        cli_print_error(stderr, &err);
    kc_error_clear(&err);
    kc_discovery_free(disc);
    kc_client_free(client);
    kc_config_free(cfg);
    return rc == KC_OK ? 0 : 1;
}
