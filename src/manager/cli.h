/*
 * cli - `provisio get` and `provisio watch`: the REST client tried by hand
 * against any cluster, printing JSON lines.
 *
 *   provisio get   RESOURCE [NAME] [flags]   one object, or one line per item
 *   provisio watch RESOURCE [NAME] [flags]   one {"type":...,"object":...} line per event
 *
 * RESOURCE is resolved through the API server's discovery documents
 * ("po", "configmaps", "leases.coordination.k8s.io", "v1/pods", ...; see
 * kc_discovery.h). Flags follow kubectl (pflag) and may come anywhere after
 * the subcommand: "--flag value", "--flag=value", "-n value", "-nvalue",
 * "-n=value"; "--" ends the flags. Namespaced resources default to the
 * kubeconfig context's namespace, -A means all namespaces, and cluster-scoped
 * resources ignore -n, as kubectl does.
 *
 * A list's items get apiVersion and kind from the list (its kind minus
 * "List"), as kubectl does; every line is flushed as soon as it is written.
 * Errors are one line on stderr in kubectl's words
 * ("Error from server (NotFound): configmaps \"x\" not found") and exit 1.
 *
 * A watch without --timeout runs until SIGINT/SIGTERM (then exit 0): when the
 * server ends the stream, or it fails in a way worth retrying (transport,
 * 429, 5xx: an API server restarting), it is opened again from the last
 * resourceVersion seen (events and bookmarks), with backoff after failures
 * and a note on stderr; a 410 Gone or any other error prints the error and
 * exits 1. With --timeout the one watch the server ends is all: exit 0.
 *
 * Threading: everything here runs on the calling thread (main), except that
 * cli_main's watch starts one helper thread that turns SIGINT/SIGTERM into
 * kc_watch_stop; it is joined before cli_main returns.
 */
#ifndef PROVISIO_CLI_H
#define PROVISIO_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include <json-c/json.h>

#include "kc_client.h"
#include "kc_error.h"

typedef enum cli_command {
    CLI_GET,
    CLI_WATCH,
} cli_command;

/*
 * A parsed command line. Every string is borrowed from the argv given to
 * cli_parse_args and stays valid as long as that argv does.
 */
typedef struct cli_args {
    cli_command command;
    const char *resource;         /* first positional; NULL only when help */
    const char *name;             /* second positional, or NULL */
    const char *kubeconfig;       /* --kubeconfig, or NULL to search */
    const char *context;          /* --context, or NULL for current-context */
    const char *namespace_;       /* -n/--namespace, or NULL for the context's */
    bool all_namespaces;          /* -A/--all-namespaces */
    const char *label_selector;   /* -l/--selector, or NULL */
    const char *field_selector;   /* --field-selector, or NULL */
    const char *resource_version; /* watch: --resource-version, or NULL */
    long timeout_seconds;         /* watch: --timeout; 0 = until interrupted */
    bool bookmarks;               /* watch: --bookmarks prints BOOKMARK events */
    bool help;                    /* -h/--help: print cli_usage, exit 0 */
} cli_args;

/*
 * Parse argv[0] ("get" or "watch") and the arguments after it into *out.
 * KC_ERR_INVALID_ARG with a one-line message in err (kubectl's wording where
 * kubectl has one) for an unknown subcommand or flag, a missing value, a bad
 * --timeout, a missing RESOURCE, too many arguments, a NAME with -A or with
 * -l, or a watch-only flag given to get. With -h/--help the rest is not
 * checked. argv is borrowed (see cli_args).
 */
int cli_parse_args(int argc, char *const argv[], cli_args *out, kc_error *err);

/* The usage text of cmd, written to f (borrowed). */
void cli_usage(FILE *f, cli_command cmd);

/*
 * The namespace a request for a, on a resource that is (or is not)
 * namespaced, goes to: NULL for a cluster-scoped resource or -A, else -n,
 * else context_namespace. Returns a borrowed pointer (from a or
 * context_namespace).
 */
const char *cli_request_namespace(const cli_args *a, bool namespaced,
                                  const char *context_namespace);

/*
 * The field selector of a watch: a's --field-selector, with
 * "metadata.name=NAME" added (comma-joined) when a names an object. *out is
 * malloc'd (caller frees) or NULL when there is no selector at all.
 */
int cli_watch_field_selector(const cli_args *a, char **out, kc_error *err);

/*
 * The kind of a list's items: "ConfigMapList" -> "ConfigMap". NULL when
 * list_kind is NULL or is not "<Kind>List"; otherwise malloc'd, caller frees
 * (NULL too when out of memory).
 */
char *cli_item_kind(const char *list_kind);

/*
 * A new object (owned by the caller: json_object_put) that starts with
 * apiVersion and kind and then has item's other members, shared with item
 * (their reference counts are taken). apiVersion/kind already set to
 * non-empty strings in item are kept; otherwise api_version/kind (borrowed,
 * may be NULL: then left out) fill them in. KC_ERR_INVALID_ARG when item is
 * not an object.
 */
int cli_with_type_meta(json_object *item, const char *api_version, const char *kind,
                       json_object **out, kc_error *err);

/*
 * Write obj (borrowed) as one line of compact JSON (slashes not escaped) and
 * flush. KC_ERR_IO when the write or flush fails.
 */
int cli_print_object(FILE *f, json_object *obj, kc_error *err);

/*
 * Write each item of list (borrowed; a List as kc_list_all returns) as one
 * line, with apiVersion/kind from the list's own (kind minus "List"), else
 * from fallback_api_version/fallback_kind (borrowed, may be NULL).
 * KC_ERR_DECODE when list has no items array.
 */
int cli_print_list(FILE *f, json_object *list, const char *fallback_api_version,
                   const char *fallback_kind, kc_error *err);

/* Write {"type":"<TYPE>","object":<object>} as one line (object borrowed). */
int cli_print_event(FILE *f, kc_event_type type, json_object *object, kc_error *err);

/*
 * Write err as kubectl words it, one line ending in '\n':
 *   "Error from server (Reason): message"   the server's Status, with its reason
 *   "error: message"                        anything else (local, transport,
 *                                           an answer that was not a Status)
 */
void cli_print_error(FILE *f, const kc_error *err);

/*
 * The whole subcommand: argv[0] is "get" or "watch". Parses, loads the
 * kubeconfig, resolves the resource through discovery, runs the request and
 * prints to stdout/stderr. Returns the process exit status: 0 ok (and after
 * SIGINT/SIGTERM ends a watch), 1 on any error. Call from main only: a watch
 * installs SIGINT/SIGTERM handlers for its duration.
 */
int cli_main(int argc, char **argv);

#endif
