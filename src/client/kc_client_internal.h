/*
 * kc_client_internal - what kc_client.c (the client: setup, handle pool,
 * throttle), kc_client_request.c (attempts and retries), kc_client_verbs.c
 * (typed verbs), kc_watch.c (watch streams) and kc_path.c (URLs) share about
 * the transport. Not part of the
 * client's contract: no other module includes this header.
 */
#ifndef PROVISIO_KC_CLIENT_INTERNAL_H
#define PROVISIO_KC_CLIENT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include <curl/curl.h>

#include "kc_client.h"
#include "pv_strbuf.h"

/* Largest error body kept from a non-2xx answer to a watch (a Status is small). */
#define KC_ERROR_BODY_MAX ((size_t)1 << 20)

/*
 * Append s (borrowed, NUL-terminated) to b percent-escaped as kc_path escapes
 * every path segment and query value: all but the RFC 3986 unreserved
 * characters (A-Z a-z 0-9 - . _ ~) become %XX, upper-case hex. On out of
 * memory b->oom is set and nothing of s is appended (pv_strbuf's sticky oom).
 */
void kc_path_add_escaped(pv_strbuf *b, const char *s);

/* CURLOPT_HEADERFUNCTION; userdata is a double * set to Retry-After in seconds. */
size_t kc_retry_after_header_cb(char *buf, size_t size, size_t nitems, void *userdata);

/*
 * Set every option a request shares with every other one on a freshly reset
 * handle h: share object, URL (base + path), TLS material, proxy,
 * tls-server-name mapping, connect timeout, keep-alive, the HTTP version, User-Agent,
 * error buffer (errbuf of CURL_ERROR_SIZE bytes, must outlive the transfer).
 * Appends Accept and Authorization headers to *headers (which the caller
 * frees with kc_headers_free after the transfer) and, for an exec plugin
 * that returned a client certificate, sets it from memory. No total timeout
 * is set. Thread-safe for distinct h.
 */
int kc_client_prepare(kc_client *c, CURL *h, const char *path, char *errbuf,
                      struct curl_slist **headers, kc_error *err);

/* Free a header list after wiping its text (it may carry a bearer token). */
void kc_headers_free(struct curl_slist *headers);

/* Block until the client-side token bucket grants one request (no-op when off). */
void kc_client_throttle(kc_client *c);

/* Call the request hook, if any. */
void kc_client_report(kc_client *c, const char *verb, long http_status);

/* The share object (DNS cache, TLS sessions) every handle of c uses. */
CURLSH *kc_client_share(kc_client *c);

/*
 * Map a failed transfer to a kc_status with a message that names the cause
 * (curl's own description and error buffer). CURLE_OPERATION_TIMEDOUT ->
 * KC_ERR_TIMEOUT, a body over the limit -> KC_ERR_TOO_LARGE, anything else ->
 * KC_ERR_TRANSPORT. what prefixes the message ("GET /api/v1/pods").
 */
int kc_curl_error(CURLcode rc, const char *errbuf, const char *what, kc_error *err);

/* ---- the client's state (kc_client.c: setup, pool, throttle; kc_client_request.c:
 * attempts and retries) ---- */

#include <pthread.h>

#define DEFAULT_CONNECT_TIMEOUT_MS 10000L
#define DEFAULT_REQUEST_TIMEOUT_MS 60000L
#define DEFAULT_MAX_RETRIES 5
#define DEFAULT_MAX_BODY_BYTES (256L * 1024 * 1024)
#define BACKOFF_BASE_S 0.1
#define BACKOFF_MAX_S 5.0
#define RETRY_AFTER_MAX_S 10.0
#define POOL_IDLE_MAX 32

struct kc_client {
    kc_config *cfg; /* borrowed, outlives the client */
    long connect_timeout_ms;
    long request_timeout_ms;
    int max_retries;
    size_t max_body;
    char *user_agent;
    bool http2;                    /* opts.http2 */
    char *base_url;                /* scheme://host[:port][/prefix], no trailing '/' */
    struct curl_slist *connect_to; /* tls-server-name mapping, or NULL */
    kc_tls tls;                    /* borrowed from cfg */
    const char *proxy;             /* borrowed from cfg */

    CURLSH *share;
    pthread_mutex_t share_mu[CURL_LOCK_DATA_LAST];

    pthread_mutex_t pool_mu; /* guards idle/nidle */
    CURL *idle[POOL_IDLE_MAX];
    size_t nidle;

    pthread_mutex_t hook_mu; /* guards hook/hook_user */
    kc_request_hook hook;
    void *hook_user;

    pthread_mutex_t rl_mu; /* guards tokens/last */
    double qps;            /* <= 0: no limit */
    double burst;
    double tokens;
    double last;

    _Atomic uint64_t n_responses, n_http2, n_connects; /* kc_client_stats */
};

double kc_client_backoff_seconds(int retry);
bool kc_client_add_header(struct curl_slist **list, const char *line);
CURL *kc_client_pool_take(kc_client *c);
void kc_client_pool_put(kc_client *c, CURL *h);

/* ---- the request engine (kc_client.c) for the verbs (kc_client_verbs.c) ---- */

#include <stdatomic.h>

/* One request, retried as kc_client.c's opening comment says. */
typedef struct kc_call {
    const char *method;
    const char *path;
    const char *content_type; /* NULL: none */
    const char *body;         /* NULL with body_len 0: no body */
    size_t body_len;
    const atomic_bool *cancel; /* NULL: never cancelled */
} kc_call;

/* Run r with retries. On KC_OK resp holds the 2xx body; otherwise err holds
 * the last attempt's error. */
int kc_client_request(kc_client *c, const kc_call *r, pv_strbuf *resp, kc_error *err);

/* A request whose 2xx answer is a JSON object (decoded only when out is wanted). */
int kc_client_json_call(kc_client *c, const kc_call *r, json_object **out, kc_error *err);

/* Append key=value (escaped) to a path that may already carry a query. */
void kc_client_query_param(pv_strbuf *b, const char *key, const char *value);

/* The client's limit on a response body (kc_client_opts.max_body_bytes). */
size_t kc_client_max_body(const kc_client *c);

#endif
