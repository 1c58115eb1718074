/*
 * kc_client - the Kubernetes REST client: requests for any resource and watch
 * streams, over one shared libcurl transport.
 *
 * One kc_client is shared by every thread of the process. Connections are
 * reused (keep-alive; HTTP/1.1, or HTTP/2 with opts.http2 when the server
 * offers it through ALPN);
 * idempotent requests are retried with jittered backoff on transport failures,
 * 5xx and 429 (honouring Retry-After); an optional token-bucket limit (QPS and
 * burst, off by default as in controller-runtime) paces requests. A 401 makes
 * the client refresh its credentials once and retry.
 *
 * Bodies are json-c objects. Objects passed in are borrowed (the client never
 * keeps a reference past the call). Objects returned through `json_object **out`
 * are new references owned by the caller (json_object_put when done).
 */
#ifndef PROVISIO_KC_CLIENT_H
#define PROVISIO_KC_CLIENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "kc_config.h"
#include "kc_error.h"

typedef struct kc_client kc_client;

/* Response JSON nested deeper than this is a decode error (json-c's tokener
 * keeps its own stack, but freeing and serializing a tree recurse; its
 * default of 32 is too shallow for lists of CRDs with deep schemas). */
#define KC_JSON_MAX_DEPTH 256

/* Which object or collection a request is about. All strings borrowed. */
typedef struct kc_ref {
    const char *group;       /* "" or NULL for the core group ("/api/v1") */
    const char *version;     /* "v1", "v1alpha1" */
    const char *resource;    /* plural, lower case: "pods", "ippools" */
    const char *namespace_;  /* NULL: cluster-scoped, or all namespaces for a namespaced list */
    const char *name;        /* NULL for a collection */
    const char *subresource; /* "status", "scale", ... or NULL */
} kc_ref;

/* Options of list and watch. Zeroed means "not sent". Strings borrowed. */
typedef struct kc_list_opts {
    const char *label_selector;
    const char *field_selector;
    long limit;                         /* list: page size; 0 = server default (all) */
    const char *continue_token;         /* list: from the previous page's metadata.continue */
    const char *resource_version;       /* list/watch: resourceVersion */
    const char *resource_version_match; /* "NotOlderThan" / "Exact" */
    long timeout_seconds;               /* watch: timeoutSeconds (server-side) */
    bool allow_watch_bookmarks;         /* watch */
    /*
     * list (kc_list, kc_list_all): when *cancel turns true the request gives
     * up with KC_ERR_STOPPED: no further attempt, a retry backoff cut short,
     * an attempt in flight aborted (libcurl checks about once a second while
     * waiting, more often while data moves). As a cancelled context ends a
     * client-go list. NULL: never. Watches stop through kc_watch_stop.
     */
    const atomic_bool *cancel;
} kc_list_opts;

typedef enum kc_patch_type {
    KC_PATCH_MERGE,     /* application/merge-patch+json */
    KC_PATCH_JSON,      /* application/json-patch+json */
    KC_PATCH_STRATEGIC, /* application/strategic-merge-patch+json (core kinds) */
    KC_PATCH_APPLY,     /* application/apply-patch+yaml: server-side apply (body JSON) */
} kc_patch_type;

typedef struct kc_write_opts {
    const char *field_manager; /* fieldManager; required for KC_PATCH_APPLY */
    bool force;                /* force=true (apply only) */
    bool dry_run;              /* dryRun=All */
} kc_write_opts;

typedef struct kc_delete_opts {
    const char *propagation_policy; /* "Foreground", "Background", "Orphan" or NULL */
    const char *precondition_uid;
    const char *precondition_resource_version;
    long grace_period_seconds; /* sent only when grace_period_set */
    bool grace_period_set;     /* zeroed opts never ask for a 0 s (force) delete */
} kc_delete_opts;

typedef struct kc_client_opts {
    double qps;              /* client-side rate limit; <= 0 = off (default) */
    int burst;               /* token bucket size; <= 0 = max(1, qps) */
    long connect_timeout_ms; /* 0 = 10 s */
    long request_timeout_ms; /* whole request, not watches; 0 = 60 s */
    int max_retries;         /* retries of one request; 0 = 5, <0 = none */
    long max_body_bytes;     /* largest response body; 0 = 256 MiB */
    const char *user_agent;  /* NULL = "provisio/<version>" */
    bool http2;              /* ask for HTTP/2 through ALPN; default HTTP/1.1 (kc_client.c) */
} kc_client_opts;

/*
 * Called after every HTTP attempt (for rest_client_requests_total): verb,
 * host, and the HTTP status ("<error>" as code 0 on transport failure). May
 * be called from any thread concurrently.
 */
typedef void (*kc_request_hook)(const char *verb, long http_status, void *user);

/*
 * cfg is borrowed and must outlive the client. opts may be NULL (defaults).
 *
 * Threads: every function below that takes a kc_client may be called from
 * any number of threads at once on one client, except kc_client_free, which
 * needs every request finished and every kc_watch of the client freed.
 * A request blocks its calling thread (retries and rate-limit waits
 * included); nothing runs in the background. The first kc_client_new of the
 * process calls curl_global_init, the last kc_client_free curl_global_cleanup.
 */
int kc_client_new(kc_config *cfg, const kc_client_opts *opts, kc_client **out, kc_error *err);
void kc_client_free(kc_client *c);
/* Any time, any thread; a request already running may still call the previous hook. */
void kc_client_set_request_hook(kc_client *c, kc_request_hook hook, void *user);
kc_config *kc_client_config(kc_client *c);

/*
 * What the client's requests (not watches) went over since kc_client_new:
 * HTTP exchanges that got a response, how many of them were HTTP/2 (with
 * opts.http2, asked for through ALPN; used when the server offers it, as
 * kube-apiserver does),
 * and how many new connections they opened (the rest reused a kept-alive
 * one). Counted per attempt, retries included. Any thread, any time.
 */
typedef struct kc_client_stats {
    uint64_t responses;
    uint64_t http2_responses;
    uint64_t connections_opened;
} kc_client_stats;
void kc_client_stats_get(kc_client *c, kc_client_stats *out);

/*
 * Build the request path (and query) for ref, escaping every segment.
 * "/apis/provisio.dev/v1alpha1/namespaces/ns/ipclaims/x/status?labelSelector=a%3Db"
 * *out is malloc'd, caller frees. opts may be NULL. watch adds watch=1.
 */
int kc_path(const kc_ref *ref, const kc_list_opts *opts, bool watch, char **out, kc_error *err);

/*
 * The typed verbs. `out` may be NULL when the caller does not want the body
 * (it is then not parsed at all); when wanted, a 2xx body that is not a JSON
 * object is KC_ERR_DECODE. Request bodies are serialized with json-c, which
 * caches the text inside the object: never pass an object that another thread
 * may serialize or change at the same time (copy shared cache objects first).
 * On success *err is cleared; on failure it holds the last attempt's error.
 */
int kc_get(kc_client *c, const kc_ref *ref, json_object **out, kc_error *err);
/* One page; the caller follows metadata.continue (or use kc_list_all). */
int kc_list(kc_client *c, const kc_ref *ref, const kc_list_opts *opts, json_object **out,
            kc_error *err);
/*
 * Called with each item of a list page, in order, as soon as it is parsed.
 * item is a new reference owned by the callback (any JSON type, as sent).
 * Return KC_OK to go on, or a KC_ERR_* code to stop: the decoding then fails
 * with that code.
 */
typedef int (*kc_item_fn)(json_object *item, void *user);
/*
 * One page like kc_list, but the items are parsed one at a time and handed
 * to fn (kc_list_decoder.c): besides the response text only one item's tree
 * is alive at once, plus what fn keeps. *list (optional) receives the page
 * without its items array (apiVersion, kind, metadata with resourceVersion
 * and continue); *items (optional) how many items were handed over. On an
 * error after items were handed over (a body malformed further on), the
 * caller should drop them as it would a failed list. Retries happen before
 * any item is handed over.
 */
int kc_list_each(kc_client *c, const kc_ref *ref, const kc_list_opts *opts, kc_item_fn fn,
                 void *user, json_object **list, size_t *items, kc_error *err);
/* The decoding of kc_list_each over a body in memory (tests, fuzzing). */
int kc_list_body_decode(const char *data, size_t len, kc_item_fn fn, void *user, json_object **list,
                        size_t *items, kc_error *err);
/*
 * Every page, limit per page (opts->limit, 0 = 500), items concatenated into
 * one List; metadata.resourceVersion is the first page's. On 410 for an expired
 * continue token the whole list is restarted once.
 */
int kc_list_all(kc_client *c, const kc_ref *ref, const kc_list_opts *opts, json_object **out,
                kc_error *err);
/*
 * POST to ref's collection (or to name/subresource when ref has a
 * subresource). The namespace comes from ref, else from the body's
 * metadata.namespace; a ref->name must match metadata.name, or fills it in on
 * a copy when the body has none (the caller's body is never changed).
 * Retried only when nothing reached the server (connect failure) or on 429.
 */
int kc_create(kc_client *c, const kc_ref *ref, json_object *body, const kc_write_opts *wo,
              json_object **out, kc_error *err);
/*
 * PUT. The body carries metadata.resourceVersion; a stale one gives
 * KC_ERR_CONFLICT. Name and namespace from ref, else from the body.
 */
int kc_update(kc_client *c, const kc_ref *ref, json_object *body, const kc_write_opts *wo,
              json_object **out, kc_error *err);
/* Like kc_create, a PATCH is retried only on 429 or when nothing reached the server. */
int kc_patch(kc_client *c, const kc_ref *ref, kc_patch_type type, json_object *patch,
             const kc_write_opts *wo, json_object **out, kc_error *err);
int kc_delete(kc_client *c, const kc_ref *ref, const kc_delete_opts *opts, json_object **out,
              kc_error *err);

/*
 * Lower level: one request with a raw body. Used by the typed verbs and by
 * `provisio get` for discovery. method "GET"/"POST"/..., path as from kc_path
 * (or "/api", "/apis/..."), content_type NULL for none. On success *out_body
 * is the malloc'd NUL-terminated response body (may be NULL when out_body is
 * NULL) and *out_len its length.
 */
int kc_request_raw(kc_client *c, const char *method, const char *path, const char *content_type,
                   const char *body, size_t body_len, char **out_body, size_t *out_len,
                   kc_error *err);

/* ---- watch ---------------------------------------------------------------- */

typedef enum kc_event_type {
    KC_EVENT_ADDED,
    KC_EVENT_MODIFIED,
    KC_EVENT_DELETED,
    KC_EVENT_BOOKMARK,
    KC_EVENT_ERROR,
} kc_event_type;

const char *kc_event_type_name(kc_event_type t);

/*
 * Called once per event, on the watching thread. object is borrowed for the
 * call: take json_object_get to keep it. Return 0 to go on, non-zero to end
 * the watch (kc_watch_run then returns that value).
 * ERROR events are not passed to the callback: they end the watch with the
 * decoded Status (code 410 -> KC_ERR_GONE).
 */
typedef int (*kc_event_cb)(kc_event_type type, json_object *object, void *user);

typedef struct kc_watch kc_watch;

/*
 * A watch handle: created on one thread, run on one thread, stopped from any.
 * max_event_bytes bounds the size of one event (0 = 16 MiB).
 */
int kc_watch_new(kc_client *c, size_t max_event_bytes, kc_watch **out, kc_error *err);
void kc_watch_free(kc_watch *w);

/*
 * Open the watch (watch=1 with opts) and deliver events until the server ends
 * the stream (returns KC_OK: the caller re-watches from the last
 * resourceVersion), an error (KC_ERR_GONE for 410, KC_ERR_TOO_LARGE, ...), the
 * callback returns non-zero, or kc_watch_stop is called (KC_ERR_STOPPED).
 * The watch may be run again after it returns.
 */
int kc_watch_run(kc_watch *w, const kc_ref *ref, const kc_list_opts *opts, kc_event_cb cb,
                 void *user, kc_error *err);

/*
 * Make a running (or the next) kc_watch_run return KC_ERR_STOPPED promptly
 * (milliseconds: it wakes the watch's poll). Any thread, including the event
 * callback. Sticky: every later kc_watch_run of w returns KC_ERR_STOPPED.
 */
void kc_watch_stop(kc_watch *w);

/*
 * From now on the callback of w's runs owns each object it is given: it
 * keeps it or json_object_put()s it, and the watch never touches it again.
 * For a caller that hands the objects to other threads: json-c counts
 * references without atomics, so a put by the watch after the callback
 * could race with those threads' gets and puts. Before the first run.
 */
void kc_watch_give_objects(kc_watch *w);

/* ---- the incremental decoder under kc_watch (public for tests and fuzzing) -- */

typedef struct kc_watch_decoder kc_watch_decoder;

/* max_event_bytes 0 = 16 MiB. */
kc_watch_decoder *kc_watch_decoder_new(size_t max_event_bytes);
void kc_watch_decoder_free(kc_watch_decoder *d);
/* The callback owns each object from now on (kc_watch_give_objects). */
void kc_watch_decoder_give_objects(kc_watch_decoder *d);

/*
 * Feed bytes as they arrive, split anywhere. Each complete event
 * ({"type":..., "object":{...}}) is handed to cb before feed returns. Frames
 * are found by JSON object boundaries, never by newlines. Returns KC_OK, the
 * callback's non-zero value, KC_ERR_DECODE (not JSON, or not an event),
 * KC_ERR_TOO_LARGE (one event past max_event_bytes), or the ERROR event's
 * status (KC_ERR_GONE, ...). After an error the decoder must be reset.
 */
int kc_watch_decoder_feed(kc_watch_decoder *d, const char *buf, size_t len, kc_event_cb cb,
                          void *user, kc_error *err);

/* True if bytes of an unfinished event are buffered (a stream cut mid-event). */
bool kc_watch_decoder_pending(const kc_watch_decoder *d);
void kc_watch_decoder_reset(kc_watch_decoder *d);

#endif
