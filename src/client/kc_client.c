/*
 * kc_client - transport and verbs of the REST client. This file: the client,
 * its handle pool, share object and throttle; kc_client_request.c runs one
 * request with its retries, kc_client_verbs.c has the typed verbs.
 *
 * One kc_client serves every thread. libcurl's rule is that an easy handle
 * (and the connection it holds) belongs to one thread at a time, so the
 * client keeps a LIFO pool of idle easy handles: a request takes one under
 * the pool mutex, runs curl_easy_perform on it without any lock held, and
 * gives it back. An easy handle keeps its live connections between
 * transfers (curl_easy_reset keeps them), so a thread that issues requests
 * one after another goes over one kept-alive connection, and N threads in
 * parallel use at most N connections. The LIFO order hands out the most
 * recently used handle, whose connection is the one most likely still open.
 *
 * A CURLSH share object carries the DNS cache and TLS session tickets across
 * handles (with a mutex per data kind). The connection cache is NOT put in
 * the share: curl documents that sharing connections between concurrently
 * running threads is unsupported, so each pooled handle owns its
 * connections instead.
 *
 * HTTP/1.1 by default: a connection here carries one transfer at a time (a
 * handle's request, or one watch), so HTTP/2 would multiplex nothing and
 * costs ~100 KB a connection in nghttp2's session and curl's HTTP/2 buffers
 * (the operator's 17 connections: 1.7 MiB of its peak RSS, measured with
 * 1,000 Volumes) and CPU for framing and HPACK. opts.http2 asks for HTTP/2
 * through ALPN (CURL_HTTP_VERSION_2TLS), used when the server offers it.
 * client-go multiplexes every request and watch over one HTTP/2 connection;
 * this client does not (each thread's handle keeps its own connection).
 *
 * TLS material and credentials come from kc_config on every attempt: the CA,
 * client certificate and key are handed to curl from memory (CURLOPT_*_BLOB),
 * the bearer token is fetched per attempt (so a rotated token file or a new
 * exec-plugin credential is picked up without reconnecting), and the
 * Authorization header is wiped from memory after the transfer. Nothing here
 * logs; curl's verbose mode is never turned on.
 *
 * tls-server-name: curl cannot set the TLS server name apart from the URL's
 * host, so the client asks for https://<tls-server-name>:<port>/ and maps
 * that name to the real host with CURLOPT_CONNECT_TO. SNI and certificate
 * verification then use the tls-server-name, as client-go does; the one
 * visible difference is that the Host header carries it too, which the API
 * server ignores.
 *
 * Retries (an attempt = one HTTP exchange, reported to the request hook):
 *   - 401, once per request, when kc_config_invalidate_credentials says it has
 *     something to refresh (token file, exec plugin): retried at once;
 *   - 429 for any verb: the server refused before doing anything;
 *   - 500/502/503/504 and transport failures for idempotent verbs only (GET,
 *     HEAD, PUT, DELETE); POST and PATCH are retried only after a failure
 *     that happened before the request was sent (resolve, connect, TLS
 *     handshake);
 *   - never: TLS verification failures, bodies over the limit, whole-request
 *     timeouts after the request was sent, other 4xx.
 * Between attempts the client sleeps for the Retry-After header, else the
 * Status' details.retryAfterSeconds (either capped at 10 s), else a jittered
 * exponential backoff (base 100 ms, doubling, at most 5 s, each delay drawn
 * in [d/2, d]).
 *
 * Rate limit: a token bucket (qps, burst) that hands out reservations: the
 * caller takes a token (the count may go negative) and sleeps until its
 * token would have been refilled. Waiters queue in arrival order without
 * spinning or holding the lock while they sleep. Every attempt, retries
 * included, takes a token, as client-go's throttle does.
 *
 * Bodies are bounded by max_body_bytes while they arrive (the transfer is
 * aborted as soon as the limit is passed, or before it starts when
 * Content-Length says so), then parsed with json-c.
 */
#include "kc_client.h"
#include "kc_client_internal.h"
#include "pv_clock.h"
#include "pv_json.h"
#include "pv_strbuf.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- small helpers ------------------------------------------------------- */

/* xorshift64* per thread: jitter needs no quality, only no shared state. */
static double random_unit(void)
{
    static _Thread_local uint64_t state;
    if (state == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        state = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&ts;
        if (state == 0)
            state = 0x9E3779B97F4A7C15ull;
    }
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    uint64_t r = state * 0x2545F4914F6CDD1Dull;
    return (double)(r >> 11) / 9007199254740992.0; /* [0, 1) */
}

double kc_client_backoff_seconds(int retry)
{
    double d = BACKOFF_BASE_S;
    for (int i = 0; i < retry && d < BACKOFF_MAX_S; i++)
        d *= 2;
    if (d > BACKOFF_MAX_S)
        d = BACKOFF_MAX_S;
    return d * (0.5 + 0.5 * random_unit());
}

/* Append key=value (escaped) to a path that may already carry a query. */
void kc_client_query_param(pv_strbuf *b, const char *key, const char *value)
{
    pv_strbuf_add(b, (b->p && strchr(b->p, '?')) ? "&" : "?");
    pv_strbuf_add(b, key);
    pv_strbuf_add(b, "=");
    kc_path_add_escaped(b, value);
}

size_t kc_retry_after_header_cb(char *buf, size_t size, size_t nitems, void *userdata)
{
    size_t n = size * nitems;
    double *retry_after = userdata;
    if (n >= 5 && !strncmp(buf, "HTTP/", 5)) {
        *retry_after = 0; /* a new response (after 100 Continue, a retry...) */
        return n;
    }
    static const char name[] = "Retry-After:";
    size_t nl = sizeof(name) - 1;
    if (n <= nl || strncasecmp(buf, name, nl) != 0)
        return n;
    char *v = strndup(buf + nl, n - nl);
    if (!v)
        return n; /* the header is advisory: drop it rather than the answer */
    char *s = v;
    while (*s == ' ' || *s == '\t')
        s++;
    size_t l = strlen(s);
    while (l > 0 && isspace((unsigned char)s[l - 1]))
        s[--l] = '\0';
    char *end = NULL;
    errno = 0;
    long secs = strtol(s, &end, 10);
    if (l > 0 && end && *end == '\0' && errno == 0 && secs >= 0) {
        *retry_after = (double)secs;
    } else {
        time_t when = curl_getdate(s, NULL); /* the HTTP-date form */
        if (when > 0) {
            double d = difftime(when, time(NULL));
            *retry_after = d > 0 ? d : 0;
        }
    }
    free(v);
    return n;
}

void kc_headers_free(struct curl_slist *headers)
{
    for (struct curl_slist *h = headers; h; h = h->next) {
        if (h->data)
            explicit_bzero(h->data, strlen(h->data));
    }
    curl_slist_free_all(headers);
}

bool kc_client_add_header(struct curl_slist **list, const char *line)
{
    struct curl_slist *n = curl_slist_append(*list, line);
    if (!n)
        return false;
    *list = n;
    return true;
}

int kc_curl_error(CURLcode rc, const char *errbuf, const char *what, kc_error *err)
{
    int code = KC_ERR_TRANSPORT;
    if (rc == CURLE_OPERATION_TIMEDOUT)
        code = KC_ERR_TIMEOUT;
    else if (rc == CURLE_FILESIZE_EXCEEDED)
        code = KC_ERR_TOO_LARGE;
    else if (rc == CURLE_OUT_OF_MEMORY)
        code = KC_ERR_NOMEM;
    bool detail = errbuf && errbuf[0];
    return kc_error_set(err, code, "%s: %s%s%s", what, curl_easy_strerror(rc), detail ? ": " : "",
                        detail ? errbuf : "");
}

/* ---- client -------------------------------------------------------------- */

/*
 * curl_global_init when the first client is made, curl_global_cleanup when
 * the last one is freed. libcurl 7.84+ built "threadsafe" makes both safe to
 * call concurrently; the count keeps them paired.
 */
static pthread_mutex_t curl_global_mu = PTHREAD_MUTEX_INITIALIZER;
static int curl_global_users;

static CURLcode curl_global_ref(void)
{
    CURLcode rc = CURLE_OK;
    pthread_mutex_lock(&curl_global_mu);
    if (curl_global_users == 0)
        rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (rc == CURLE_OK)
        curl_global_users++;
    pthread_mutex_unlock(&curl_global_mu);
    return rc;
}

static void curl_global_unref(void)
{
    pthread_mutex_lock(&curl_global_mu);
    if (curl_global_users > 0 && --curl_global_users == 0)
        curl_global_cleanup();
    pthread_mutex_unlock(&curl_global_mu);
}

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *user)
{
    (void)h;
    (void)access;
    kc_client *c = user;
    if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_lock(&c->share_mu[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *user)
{
    (void)h;
    kc_client *c = user;
    if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_unlock(&c->share_mu[data]);
}

/*
 * tls-server-name: rewrite base_url's host to the server name and map
 * "<name>:<port>" to the real "<host>:<port>" with CONNECT_TO.
 */
static int setup_server_name(kc_client *c, const char *server_name, kc_error *err)
{
    int rc = KC_OK;
    char *host = NULL, *port = NULL, *url = NULL, *map = NULL;
    CURLU *u = curl_url();
    if (!u)
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    if (curl_url_set(u, CURLUPART_URL, c->base_url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) {
        rc = kc_error_set(err, KC_ERR_CONFIG, "cannot parse server URL \"%s\"", c->base_url);
        goto out;
    }
    if (!strcasecmp(host, server_name))
        goto out; /* already the name the certificate is checked against */
    if (curl_url_set(u, CURLUPART_HOST, server_name, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_URL, &url, 0) != CURLUE_OK) {
        rc = kc_error_set(err, KC_ERR_CONFIG, "unusable tls-server-name \"%s\"", server_name);
        goto out;
    }
    if (asprintf(&map, "%s:%s:%s:%s", server_name, port, host, port) < 0) {
        map = NULL;
        rc = kc_error_set(err, KC_ERR_NOMEM, "out of memory");
        goto out;
    }
    struct curl_slist *l = curl_slist_append(NULL, map);
    char *base = strdup(url);
    if (!l || !base) {
        curl_slist_free_all(l);
        free(base);
        rc = kc_error_set(err, KC_ERR_NOMEM, "out of memory");
        goto out;
    }
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        base[--bl] = '\0';
    free(c->base_url);
    c->base_url = base;
    c->connect_to = l;
out:
    curl_free(host);
    curl_free(port);
    curl_free(url);
    free(map);
    curl_url_cleanup(u);
    return rc;
}

int kc_client_new(kc_config *cfg, const kc_client_opts *opts, kc_client **out, kc_error *err)
{
    if (out)
        *out = NULL;
    if (!cfg || !out)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "kc_client_new: cfg and out are required");
    const char *server = kc_config_server(cfg);
    if (!server || !*server)
        return kc_error_set(err, KC_ERR_CONFIG, "the configuration names no API server");
    CURLcode grc = curl_global_ref();
    if (grc != CURLE_OK)
        return kc_error_set(err, KC_ERR_TRANSPORT, "curl_global_init: %s", curl_easy_strerror(grc));

    kc_client_opts o = {0};
    if (opts)
        o = *opts;
    kc_client *c = calloc(1, sizeof(*c));
    if (!c) {
        curl_global_unref();
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    }
    c->cfg = cfg;
    c->connect_timeout_ms =
        o.connect_timeout_ms > 0 ? o.connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
    c->request_timeout_ms =
        o.request_timeout_ms > 0 ? o.request_timeout_ms : DEFAULT_REQUEST_TIMEOUT_MS;
    c->max_retries =
        o.max_retries == 0 ? DEFAULT_MAX_RETRIES : (o.max_retries < 0 ? 0 : o.max_retries);
    c->max_body = (size_t)(o.max_body_bytes > 0 ? o.max_body_bytes : DEFAULT_MAX_BODY_BYTES);
    c->qps = o.qps > 0 ? o.qps : 0;
    c->burst = o.burst > 0 ? (double)o.burst : (c->qps > 1 ? c->qps : 1);
    c->tokens = c->burst;
    c->last = pv_clock_monotonic();
    kc_config_tls(cfg, &c->tls);
    c->proxy = kc_config_proxy_url(cfg);

    pthread_mutex_init(&c->pool_mu, NULL);
    pthread_mutex_init(&c->hook_mu, NULL);
    pthread_mutex_init(&c->rl_mu, NULL);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&c->share_mu[i], NULL);

    int rc;
    c->http2 = o.http2;
    c->user_agent = strdup(o.user_agent ? o.user_agent : "provisio/" PROVISIO_VERSION);
    c->base_url = strdup(server);
    if (!c->user_agent || !c->base_url) {
        rc = kc_error_set(err, KC_ERR_NOMEM, "out of memory");
        goto fail;
    }
    size_t bl = strlen(c->base_url);
    while (bl > 0 && c->base_url[bl - 1] == '/')
        c->base_url[--bl] = '\0';
    if (c->tls.server_name && *c->tls.server_name &&
        (rc = setup_server_name(c, c->tls.server_name, err)) != KC_OK)
        goto fail;

    c->share = curl_share_init();
    if (!c->share) {
        rc = kc_error_set(err, KC_ERR_NOMEM, "curl_share_init failed");
        goto fail;
    }
    if (curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock) != CURLSHE_OK ||
        curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock) != CURLSHE_OK ||
        curl_share_setopt(c->share, CURLSHOPT_USERDATA, c) != CURLSHE_OK ||
        curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK ||
        curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK) {
        rc = kc_error_set(err, KC_ERR_TRANSPORT, "cannot set up the curl share object");
        goto fail;
    }
    *out = c;
    return KC_OK;
fail:
    kc_client_free(c);
    return rc;
}

void kc_client_free(kc_client *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nidle; i++)
        curl_easy_cleanup(c->idle[i]);
    if (c->share)
        curl_share_cleanup(c->share);
    curl_slist_free_all(c->connect_to);
    free(c->base_url);
    free(c->user_agent);
    pthread_mutex_destroy(&c->pool_mu);
    pthread_mutex_destroy(&c->hook_mu);
    pthread_mutex_destroy(&c->rl_mu);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&c->share_mu[i]);
    free(c);
    curl_global_unref();
}

void kc_client_set_request_hook(kc_client *c, kc_request_hook hook, void *user)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->hook_mu);
    c->hook = hook;
    c->hook_user = user;
    pthread_mutex_unlock(&c->hook_mu);
}

kc_config *kc_client_config(kc_client *c)
{
    return c ? c->cfg : NULL;
}

CURLSH *kc_client_share(kc_client *c)
{
    return c->share;
}

void kc_client_stats_get(kc_client *c, kc_client_stats *out)
{
    out->responses = atomic_load_explicit(&c->n_responses, memory_order_relaxed);
    out->http2_responses = atomic_load_explicit(&c->n_http2, memory_order_relaxed);
    out->connections_opened = atomic_load_explicit(&c->n_connects, memory_order_relaxed);
}

void kc_client_report(kc_client *c, const char *verb, long http_status)
{
    pthread_mutex_lock(&c->hook_mu);
    kc_request_hook hook = c->hook;
    void *user = c->hook_user;
    pthread_mutex_unlock(&c->hook_mu);
    if (hook)
        hook(verb, http_status, user);
}

void kc_client_throttle(kc_client *c)
{
    if (c->qps <= 0)
        return;
    pthread_mutex_lock(&c->rl_mu);
    double now = pv_clock_monotonic();
    c->tokens += (now - c->last) * c->qps;
    if (c->tokens > c->burst)
        c->tokens = c->burst;
    c->last = now;
    c->tokens -= 1; /* reserve ours; a negative count is the queue of waiters */
    double wait = c->tokens < 0 ? -c->tokens / c->qps : 0;
    pthread_mutex_unlock(&c->rl_mu);
    pv_clock_sleep(wait, NULL);
}

CURL *kc_client_pool_take(kc_client *c)
{
    CURL *h = NULL;
    pthread_mutex_lock(&c->pool_mu);
    if (c->nidle > 0)
        h = c->idle[--c->nidle];
    pthread_mutex_unlock(&c->pool_mu);
    return h ? h : curl_easy_init();
}

void kc_client_pool_put(kc_client *c, CURL *h)
{
    pthread_mutex_lock(&c->pool_mu);
    if (c->nidle < POOL_IDLE_MAX) {
        c->idle[c->nidle++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&c->pool_mu);
    if (h)
        curl_easy_cleanup(h); /* past the idle cap: close its connection */
}
