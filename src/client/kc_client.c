/*
 * kc_client - transport and verbs of the REST client.
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
 * connections instead. HTTP/2 is asked for through ALPN (CURL_HTTP_VERSION_2TLS)
 * and used when the server offers it.
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

#define DEFAULT_CONNECT_TIMEOUT_MS 10000L
#define DEFAULT_REQUEST_TIMEOUT_MS 60000L
#define DEFAULT_MAX_RETRIES 5
#define DEFAULT_MAX_BODY_BYTES (256L * 1024 * 1024)
#define BACKOFF_BASE_S 0.1
#define BACKOFF_MAX_S 5.0
#define RETRY_AFTER_MAX_S 10.0
#define POOL_IDLE_MAX 32
#define LIST_ALL_DEFAULT_LIMIT 500

struct kc_client {
    kc_config *cfg; /* borrowed, outlives the client */
    long connect_timeout_ms;
    long request_timeout_ms;
    int max_retries;
    size_t max_body;
    char *user_agent;
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

static double backoff_seconds(int retry)
{
    double d = BACKOFF_BASE_S;
    for (int i = 0; i < retry && d < BACKOFF_MAX_S; i++)
        d *= 2;
    if (d > BACKOFF_MAX_S)
        d = BACKOFF_MAX_S;
    return d * (0.5 + 0.5 * random_unit());
}

/* Append key=value (escaped) to a path that may already carry a query. */
static void sb_query_param(pv_strbuf *b, const char *key, const char *value)
{
    pv_strbuf_add(b, (b->p && strchr(b->p, '?')) ? "&" : "?");
    pv_strbuf_add(b, key);
    pv_strbuf_add(b, "=");
    kc_path_add_escaped(b, value);
}

static size_t buf_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    size_t n = size * nmemb;
    if (!pv_strbuf_addn(userdata, ptr, n))
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    return n;
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

static bool add_header(struct curl_slist **list, const char *line)
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

static CURL *pool_take(kc_client *c)
{
    CURL *h = NULL;
    pthread_mutex_lock(&c->pool_mu);
    if (c->nidle > 0)
        h = c->idle[--c->nidle];
    pthread_mutex_unlock(&c->pool_mu);
    return h ? h : curl_easy_init();
}

static void pool_put(kc_client *c, CURL *h)
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

/* ---- one attempt --------------------------------------------------------- */

/*
 * Every new TLS connection: let OpenSSL free a connection's read and write
 * buffers (~34 KiB) while nothing is in them. Most pooled connections sit
 * idle between reconciles; with dozens of workers that is a few hundred KiB
 * of heap the operator does not need to hold.
 */
static CURLcode ssl_ctx_cb(CURL *h, void *ssl_ctx, void *user)
{
    (void)h;
    (void)user;
    SSL_CTX_set_mode((SSL_CTX *)ssl_ctx, SSL_MODE_RELEASE_BUFFERS);
    return CURLE_OK;
}

int kc_client_prepare(kc_client *c, CURL *h, const char *path, char *errbuf,
                      struct curl_slist **headers, kc_error *err)
{
    CURLcode bad = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        CURLcode r_ = curl_easy_setopt(h, opt, val);                                               \
        if (r_ != CURLE_OK && bad == CURLE_OK)                                                     \
            bad = r_;                                                                              \
    } while (0)

    errbuf[0] = '\0';
    pv_strbuf url = {0};
    pv_strbuf_add(&url, c->base_url);
    pv_strbuf_add(&url, path);
    char *full_url = pv_strbuf_take(&url, NULL);
    if (!full_url)
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    SET(CURLOPT_URL, full_url); /* curl copies it */
    free(full_url);

    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_SHARE, c->share);
    SET(CURLOPT_ERRORBUFFER, errbuf);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    SET(CURLOPT_TCP_NODELAY, 1L);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_TCP_KEEPIDLE, 30L);
    SET(CURLOPT_TCP_KEEPINTVL, 10L);
    SET(CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
    SET(CURLOPT_USERAGENT, c->user_agent);
    if (c->connect_to)
        SET(CURLOPT_CONNECT_TO, c->connect_to);
    if (c->proxy && *c->proxy)
        SET(CURLOPT_PROXY, c->proxy);

    if (c->tls.ca.len > 0) {
        /* Only the kubeconfig's CA is trusted then, as in client-go: no system store. */
        struct curl_blob ca = {(void *)c->tls.ca.data, c->tls.ca.len, CURL_BLOB_COPY};
        SET(CURLOPT_CAINFO_BLOB, &ca);
        SET(CURLOPT_CAPATH, (char *)NULL);
    }
    SET(CURLOPT_SSL_CTX_FUNCTION, ssl_ctx_cb);
    /* Bodies are small JSON; over HTTP/2 curl sends them through an upload
     * buffer of 64 KiB a handle by default. 16 KiB is curl's minimum (and
     * setting it lets curl drop the buffer of the previous transfer). */
    SET(CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
    if (c->tls.insecure) {
        SET(CURLOPT_SSL_VERIFYPEER, 0L);
        SET(CURLOPT_SSL_VERIFYHOST, 0L);
    } else {
        SET(CURLOPT_SSL_VERIFYPEER, 1L);
        SET(CURLOPT_SSL_VERIFYHOST, 2L);
    }
    if (c->tls.client_cert.len > 0 && c->tls.client_key.len > 0) {
        struct curl_blob cert = {(void *)c->tls.client_cert.data, c->tls.client_cert.len,
                                 CURL_BLOB_COPY};
        struct curl_blob key = {(void *)c->tls.client_key.data, c->tls.client_key.len,
                                CURL_BLOB_COPY};
        SET(CURLOPT_SSLCERT_BLOB, &cert);
        SET(CURLOPT_SSLCERTTYPE, "PEM");
        SET(CURLOPT_SSLKEY_BLOB, &key);
        SET(CURLOPT_SSLKEYTYPE, "PEM");
    }
    if (bad != CURLE_OK)
        return kc_error_set(err, bad == CURLE_OUT_OF_MEMORY ? KC_ERR_NOMEM : KC_ERR_CONFIG,
                            "cannot set up the transfer: %s", curl_easy_strerror(bad));

    /* Credentials that may change while the process runs: asked for every attempt. */
    char *cert_pem = NULL, *key_pem = NULL;
    int rc = kc_config_exec_cert(c->cfg, &cert_pem, &key_pem, err);
    if (rc != KC_OK)
        return rc;
    if (cert_pem && key_pem) {
        struct curl_blob cert = {cert_pem, strlen(cert_pem), CURL_BLOB_COPY};
        struct curl_blob key = {key_pem, strlen(key_pem), CURL_BLOB_COPY};
        SET(CURLOPT_SSLCERT_BLOB, &cert);
        SET(CURLOPT_SSLCERTTYPE, "PEM");
        SET(CURLOPT_SSLKEY_BLOB, &key);
        SET(CURLOPT_SSLKEYTYPE, "PEM");
    }
    if (key_pem)
        explicit_bzero(key_pem, strlen(key_pem));
    free(cert_pem);
    free(key_pem);
    if (bad != CURLE_OK)
        return kc_error_set(err, KC_ERR_NOMEM, "cannot set the exec client certificate: %s",
                            curl_easy_strerror(bad));

    char *token = NULL;
    if ((rc = kc_config_bearer_token(c->cfg, &token, err)) != KC_OK)
        return rc;
    bool ok = add_header(headers, "Accept: application/json");
    if (ok && token && *token) {
        /* Sized once, so no realloc leaves a stray copy of the token behind. */
        static const char prefix[] = "Authorization: Bearer ";
        size_t tl = strlen(token), n = sizeof(prefix) + tl;
        char *auth = malloc(n);
        ok = auth != NULL;
        if (ok) {
            memcpy(auth, prefix, sizeof(prefix) - 1);
            memcpy(auth + sizeof(prefix) - 1, token, tl + 1);
            ok = add_header(headers, auth);
            explicit_bzero(auth, n);
            free(auth);
        }
    }
    if (token) {
        explicit_bzero(token, strlen(token));
        free(token);
    }
    if (!ok)
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    return KC_OK;
#undef SET
}

typedef struct kc_call {
    const char *method;
    const char *path;
    const char *content_type; /* NULL: none */
    const char *body;         /* NULL with body_len 0: no body */
    size_t body_len;
    const atomic_bool *cancel; /* NULL: never cancelled */
} kc_call;

static bool cancelled(const kc_call *r)
{
    return r->cancel != NULL && atomic_load(r->cancel);
}

/* libcurl's progress callback: a non-zero return aborts the transfer. */
static int cancel_xferinfo_cb(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                              curl_off_t ulnow)
{
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    return atomic_load((const atomic_bool *)user) ? 1 : 0;
}

static bool method_is_idempotent(const char *m)
{
    return !strcmp(m, "GET") || !strcmp(m, "HEAD") || !strcmp(m, "PUT") || !strcmp(m, "DELETE") ||
           !strcmp(m, "OPTIONS");
}

/* Failures that another attempt cannot fix. */
static bool curl_error_is_permanent(CURLcode rc)
{
    switch (rc) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_FILESIZE_EXCEEDED:
    case CURLE_OUT_OF_MEMORY:
    case CURLE_BAD_FUNCTION_ARGUMENT:
        return true;
    default:
        return false;
    }
}

/* Failures that happened before a byte of the request left this process. */
static bool curl_error_before_send(CURL *h, CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_OPERATION_TIMEDOUT: {
        curl_off_t pretransfer = 0;
        if (curl_easy_getinfo(h, CURLINFO_PRETRANSFER_TIME_T, &pretransfer) != CURLE_OK)
            return false;
        return pretransfer == 0;
    }
    default:
        return false;
    }
}

typedef struct attempt_result {
    long http_status;   /* 0: no HTTP answer */
    double retry_after; /* from the Retry-After header */
    bool before_send;   /* the failure happened before the request was sent */
    bool permanent;     /* retrying cannot help */
    bool performed;     /* the transfer was tried (else setup failed) */
} attempt_result;

static int attempt(kc_client *c, CURL *h, const kc_call *r, pv_strbuf *resp, attempt_result *ar,
                   kc_error *err)
{
    char errbuf[CURL_ERROR_SIZE];
    struct curl_slist *hdrs = NULL;
    memset(ar, 0, sizeof(*ar));
    curl_easy_reset(h);
    int rc = kc_client_prepare(c, h, r->path, errbuf, &hdrs, err);
    if (rc != KC_OK) {
        ar->permanent = true;
        goto out;
    }
    CURLcode bad = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        CURLcode r_ = curl_easy_setopt(h, opt, val);                                               \
        if (r_ != CURLE_OK && bad == CURLE_OK)                                                     \
            bad = r_;                                                                              \
    } while (0)
    bool has_body = r->body || !strcmp(r->method, "POST") || !strcmp(r->method, "PUT") ||
                    !strcmp(r->method, "PATCH");
    if (!strcmp(r->method, "GET")) {
        SET(CURLOPT_HTTPGET, 1L);
    } else if (!strcmp(r->method, "HEAD")) {
        SET(CURLOPT_NOBODY, 1L);
    } else {
        if (strcmp(r->method, "POST") != 0)
            SET(CURLOPT_CUSTOMREQUEST, r->method);
        if (has_body) {
            SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
            SET(CURLOPT_POSTFIELDS, r->body ? r->body : "");
        }
    }
    bool ok = true;
    if (has_body) {
        /* Expect: 100-continue costs a round trip (or a 1 s wait) for nothing. */
        ok = add_header(&hdrs, "Expect:");
        if (ok && r->content_type) {
            pv_strbuf ct = {0};
            pv_strbuf_add(&ct, "Content-Type: ");
            pv_strbuf_add(&ct, r->content_type);
            ok = !ct.oom && add_header(&hdrs, ct.p);
            pv_strbuf_free(&ct);
        } else if (ok) {
            ok = add_header(&hdrs, "Content-Type:"); /* not form-urlencoded */
        }
    }
    if (!ok) {
        rc = kc_error_set(err, KC_ERR_NOMEM, "out of memory");
        ar->permanent = true;
        goto out;
    }
    SET(CURLOPT_HTTPHEADER, hdrs);
    SET(CURLOPT_TIMEOUT_MS, c->request_timeout_ms);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_body);
    SET(CURLOPT_WRITEFUNCTION, buf_write_cb);
    SET(CURLOPT_WRITEDATA, resp);
    SET(CURLOPT_HEADERFUNCTION, kc_retry_after_header_cb);
    SET(CURLOPT_HEADERDATA, &ar->retry_after);
    if (r->cancel != NULL) {
        SET(CURLOPT_XFERINFOFUNCTION, cancel_xferinfo_cb);
        SET(CURLOPT_XFERINFODATA, (void *)r->cancel);
        SET(CURLOPT_NOPROGRESS, 0L);
    }
#undef SET
    if (bad != CURLE_OK) {
        rc = kc_error_set(err, KC_ERR_CONFIG, "cannot set up the transfer: %s",
                          curl_easy_strerror(bad));
        ar->permanent = true;
        goto out;
    }

    ar->performed = true;
    CURLcode cc = curl_easy_perform(h);
    if (cc != CURLE_OK) {
        if (resp->too_large || cc == CURLE_FILESIZE_EXCEEDED) {
            rc = kc_error_set(err, KC_ERR_TOO_LARGE,
                              "%s %s: response body larger than the limit of %zu bytes", r->method,
                              r->path, resp->max);
            ar->permanent = true;
        } else if (cc == CURLE_ABORTED_BY_CALLBACK) {
            rc = kc_error_set(err, KC_ERR_STOPPED, "%s %s: cancelled", r->method, r->path);
            ar->permanent = true;
        } else if (cc == CURLE_WRITE_ERROR) {
            rc = kc_error_set(err, KC_ERR_NOMEM, "%s %s: out of memory for the response body",
                              r->method, r->path);
            ar->permanent = true;
        } else {
            pv_strbuf what = {0};
            pv_strbuf_add(&what, r->method);
            pv_strbuf_add(&what, " ");
            pv_strbuf_add(&what, r->path);
            rc = kc_curl_error(cc, errbuf, what.oom ? r->method : what.p, err);
            pv_strbuf_free(&what);
            ar->permanent = curl_error_is_permanent(cc);
            ar->before_send = curl_error_before_send(h, cc);
        }
        goto out;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &ar->http_status);
    long version = 0, connects = 0;
    curl_easy_getinfo(h, CURLINFO_HTTP_VERSION, &version);
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &connects);
    atomic_fetch_add_explicit(&c->n_responses, 1, memory_order_relaxed);
    if (version == CURL_HTTP_VERSION_2_0)
        atomic_fetch_add_explicit(&c->n_http2, 1, memory_order_relaxed);
    if (connects > 0)
        atomic_fetch_add_explicit(&c->n_connects, (uint64_t)connects, memory_order_relaxed);
    if (ar->http_status >= 200 && ar->http_status < 300) {
        rc = KC_OK;
    } else {
        rc = kc_error_from_response(err, ar->http_status, resp->p, resp->len, ar->retry_after);
    }
out:
    /* The handle outlives this frame in the pool: drop pointers into it. */
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, (char *)NULL);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
    kc_headers_free(hdrs);
    return rc;
}

static bool should_retry(const kc_call *r, int rc, const attempt_result *ar)
{
    if (ar->permanent)
        return false;
    if (ar->http_status == 429)
        return true; /* refused before any work (API Priority and Fairness) */
    bool idem = method_is_idempotent(r->method);
    if (ar->http_status == 0) {
        if (rc == KC_ERR_TIMEOUT)
            return ar->before_send; /* a slow server stays slow: do not pile on */
        return rc == KC_ERR_TRANSPORT && (idem || ar->before_send);
    }
    switch (ar->http_status) {
    case 500:
    case 502:
    case 503:
    case 504:
        return idem;
    default:
        return false;
    }
}

/*
 * Run r with retries. On KC_OK resp holds the 2xx body; otherwise err holds
 * the last attempt's error.
 */
static int request(kc_client *c, const kc_call *r, pv_strbuf *resp, kc_error *err)
{
    CURL *h = pool_take(c);
    if (!h)
        return kc_error_set(err, KC_ERR_NOMEM, "curl_easy_init failed");
    int retries = 0;
    bool auth_refreshed = false;
    int rc;
    /* Our own error per attempt: the retry decision needs it even when err is NULL. */
    kc_error e = KC_ERROR_INIT;
    for (;;) {
        if (cancelled(r)) {
            rc = kc_error_set(&e, KC_ERR_STOPPED, "%s %s: cancelled", r->method, r->path);
            break;
        }
        kc_client_throttle(c);
        pv_strbuf_reset(resp);
        attempt_result ar;
        rc = attempt(c, h, r, resp, &ar, &e);
        if (ar.performed)
            kc_client_report(c, r->method, ar.http_status);
        if (rc == KC_OK)
            break;
        if (ar.http_status == 401 && !auth_refreshed) {
            auth_refreshed = true;
            if (kc_config_invalidate_credentials(c->cfg))
                continue;
        }
        if (retries >= c->max_retries || !should_retry(r, rc, &ar))
            break;
        /* Retry-After header, else the Status' details.retryAfterSeconds, else backoff. */
        double wait = ar.retry_after > 0 ? ar.retry_after : e.retry_after;
        double delay = backoff_seconds(retries);
        if (wait > 0)
            delay = wait < RETRY_AFTER_MAX_S ? wait : RETRY_AFTER_MAX_S;
        retries++;
        pv_clock_sleep(delay, r->cancel);
    }
    pool_put(c, h);
    if (err) {
        kc_error_clear(err);
        if (rc != KC_OK) {
            *err = e;
            return rc;
        }
    }
    kc_error_clear(&e);
    return rc;
}

static int decode_object(const char *data, size_t len, json_object **out, kc_error *err)
{
    *out = NULL;
    if (!data || len == 0)
        return kc_error_set(err, KC_ERR_DECODE, "empty response body where JSON was expected");
    if (len > INT_MAX)
        return kc_error_set(err, KC_ERR_TOO_LARGE,
                            "response body of %zu bytes is too large "
                            "to parse",
                            len);
    json_tokener *tok = json_tokener_new_ex(KC_JSON_MAX_DEPTH);
    if (!tok)
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    json_object *o = json_tokener_parse_ex(tok, data, (int)len);
    enum json_tokener_error je = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!o || je != json_tokener_success) {
        json_object_put(o);
        return kc_error_set(
            err, KC_ERR_DECODE, "response body is not JSON: %s",
            json_tokener_error_desc(je == json_tokener_success ? json_tokener_continue : je));
    }
    for (size_t i = end; i < len; i++) {
        if (!isspace((unsigned char)data[i])) {
            json_object_put(o);
            return kc_error_set(err, KC_ERR_DECODE, "response body has data after the JSON value");
        }
    }
    if (!json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        return kc_error_set(err, KC_ERR_DECODE, "response body is JSON but not an object");
    }
    *out = o;
    return KC_OK;
}

/* A request whose 2xx answer is a JSON object (decoded only when out is wanted). */
static int json_call(kc_client *c, const kc_call *r, json_object **out, kc_error *err)
{
    if (out)
        *out = NULL;
    pv_strbuf resp = {.max = c->max_body};
    int rc = request(c, r, &resp, err);
    if (rc == KC_OK && out)
        rc = decode_object(resp.p, resp.len, out, err);
    free(resp.p);
    return rc;
}

int kc_request_raw(kc_client *c, const char *method, const char *path, const char *content_type,
                   const char *body, size_t body_len, char **out_body, size_t *out_len,
                   kc_error *err)
{
    if (out_body)
        *out_body = NULL;
    if (out_len)
        *out_len = 0;
    if (!c || !method || !path || path[0] != '/' || (body_len > 0 && !body))
        return kc_error_set(err, KC_ERR_INVALID_ARG,
                            "kc_request_raw: client, method and an absolute path are required");
    kc_call r = {method, path, content_type, body, body_len, NULL};
    pv_strbuf resp = {.max = c->max_body};
    int rc = request(c, &r, &resp, err);
    if (rc == KC_OK && out_body) {
        if (!resp.p && !(resp.p = calloc(1, 1))) {
            rc = kc_error_set(err, KC_ERR_NOMEM, "out of memory");
        } else {
            *out_body = resp.p;
            resp.p = NULL;
            if (out_len)
                *out_len = resp.len;
        }
    } else if (rc == KC_OK && out_len) {
        *out_len = resp.len;
    }
    free(resp.p);
    return rc;
}

/* ---- typed verbs --------------------------------------------------------- */

static const char *meta_string(json_object *obj, const char *key)
{
    json_object *meta, *v;
    if (!obj || !json_object_object_get_ex(obj, "metadata", &meta) ||
        !json_object_object_get_ex(meta, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    const char *s = json_object_get_string(v);
    return (s && *s) ? s : NULL;
}

/* Serialize a borrowed body (json-c caches the text inside the object). */
static int body_text(json_object *body, const char **text, size_t *len, kc_error *err)
{
    size_t n = 0;
    const char *s = json_object_to_json_string_length(
        body, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    if (!s)
        return kc_error_set(err, KC_ERR_NOMEM, "cannot serialize the request body");
    *text = s;
    *len = n;
    return KC_OK;
}

static int object_path(const kc_ref *ref, char **path, kc_error *err)
{
    return kc_path(ref, NULL, false, path, err);
}

/* Append the write options to *path (fieldManager, dryRun, force). */
static int add_write_params(char **path, const kc_write_opts *wo, bool apply, kc_error *err)
{
    if (!wo)
        return KC_OK;
    /* Adopt *path and hand it back even on oom (partial then): the caller frees it. */
    pv_strbuf b = {.p = *path, .len = strlen(*path), .cap = strlen(*path) + 1};
    if (wo->dry_run)
        sb_query_param(&b, "dryRun", "All");
    if (wo->field_manager && *wo->field_manager)
        sb_query_param(&b, "fieldManager", wo->field_manager);
    if (apply && wo->force)
        sb_query_param(&b, "force", "true");
    *path = b.p;
    if (b.oom)
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    return KC_OK;
}

int kc_get(kc_client *c, const kc_ref *ref, json_object **out, kc_error *err)
{
    if (out)
        *out = NULL;
    if (!c || !ref || !ref->name)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "kc_get: client and a named ref required");
    char *path = NULL;
    int rc = object_path(ref, &path, err);
    if (rc != KC_OK)
        return rc;
    kc_call r = {"GET", path, NULL, NULL, 0, NULL};
    rc = json_call(c, &r, out, err);
    free(path);
    return rc;
}

int kc_list(kc_client *c, const kc_ref *ref, const kc_list_opts *opts, json_object **out,
            kc_error *err)
{
    if (out)
        *out = NULL;
    if (!c || !ref)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "kc_list: client and ref required");
    char *path = NULL;
    int rc = kc_path(ref, opts, false, &path, err);
    if (rc != KC_OK)
        return rc;
    kc_call r = {"GET", path, NULL, NULL, 0, opts ? opts->cancel : NULL};
    rc = json_call(c, &r, out, err);
    free(path);
    return rc;
}

int kc_list_each(kc_client *c, const kc_ref *ref, const kc_list_opts *opts, kc_item_fn fn,
                 void *user, json_object **list, size_t *items, kc_error *err)
{
    if (list)
        *list = NULL;
    if (items)
        *items = 0;
    if (!c || !ref || !fn)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "kc_list_each: client, ref and fn required");
    char *path = NULL;
    int rc = kc_path(ref, opts, false, &path, err);
    if (rc != KC_OK)
        return rc;
    kc_call r = {"GET", path, NULL, NULL, 0, opts ? opts->cancel : NULL};
    pv_strbuf resp = {.max = c->max_body};
    rc = request(c, &r, &resp, err);
    if (rc == KC_OK)
        rc = kc_list_body_decode(resp.p, resp.len, fn, user, list, items, err);
    free(resp.p);
    free(path);
    return rc;
}

/* The items array of a List, created empty when the server sent none or null. */
static json_object *list_items(json_object *list)
{
    json_object *items;
    if (json_object_object_get_ex(list, "items", &items) &&
        json_object_is_type(items, json_type_array))
        return items;
    items = json_object_new_array();
    if (!items || json_object_object_add(list, "items", items) != 0) {
        json_object_put(items);
        return NULL;
    }
    return items;
}

/*
 * One pass over every page. *gone_mid_list tells a 410 on a continue page
 * (the token expired) from one on the first page.
 */
static int list_pages(kc_client *c, const kc_ref *ref, const kc_list_opts *opts, json_object **out,
                      bool *gone_mid_list, kc_error *err)
{
    kc_list_opts o = {0};
    if (opts)
        o = *opts;
    if (o.limit <= 0)
        o.limit = LIST_ALL_DEFAULT_LIMIT;
    json_object *result = NULL, *items = NULL;
    char *cont = NULL;
    int rc = KC_OK;
    *gone_mid_list = false;
    for (;;) {
        json_object *page = NULL;
        if (result) {
            /* resourceVersion may not be sent with continue: the token pins it. */
            o.continue_token = cont;
            o.resource_version = NULL;
            o.resource_version_match = NULL;
        }
        rc = kc_list(c, ref, &o, &page, err);
        if (rc != KC_OK) {
            *gone_mid_list = result && rc == KC_ERR_GONE;
            break;
        }
        json_object *page_items = list_items(page);
        if (!page_items) {
            json_object_put(page);
            rc = kc_error_set(err, KC_ERR_NOMEM, "out of memory");
            break;
        }
        if (!result) {
            result = page;
            items = page_items;
        } else {
            size_t n = json_object_array_length(page_items);
            for (size_t i = 0; i < n; i++) {
                json_object *it = json_object_array_get_idx(page_items, i);
                if (json_object_array_add(items, json_object_get(it)) != 0) {
                    json_object_put(it);
                    rc = kc_error_set(err, KC_ERR_NOMEM, "out of memory");
                    break;
                }
            }
        }
        const char *next = meta_string(page, "continue");
        bool has_next = next != NULL;
        char *next_copy = has_next ? strdup(next) : NULL;
        if (page != result)
            json_object_put(page);
        free(cont);
        cont = next_copy;
        if (rc != KC_OK)
            break;
        if (has_next && !next_copy) {
            rc = kc_error_set(err, KC_ERR_NOMEM, "out of memory");
            break;
        }
        if (!cont)
            break;
    }
    free(cont);
    if (rc != KC_OK) {
        json_object_put(result);
        return rc;
    }
    json_object *meta;
    if (json_object_object_get_ex(result, "metadata", &meta) &&
        json_object_is_type(meta, json_type_object)) {
        json_object_object_del(meta, "continue");
        json_object_object_del(meta, "remainingItemCount");
    }
    if (out)
        *out = result;
    else
        json_object_put(result);
    return KC_OK;
}

int kc_list_all(kc_client *c, const kc_ref *ref, const kc_list_opts *opts, json_object **out,
                kc_error *err)
{
    if (out)
        *out = NULL;
    if (!c || !ref)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "kc_list_all: client and ref required");
    bool gone_mid_list = false;
    int rc = list_pages(c, ref, opts, out, &gone_mid_list, err);
    if (rc == KC_ERR_GONE && gone_mid_list) {
        /* The continue token expired (compaction): one fresh pass, as client-go's pager. */
        kc_list_opts o = {0};
        if (opts)
            o = *opts;
        o.continue_token = NULL;
        rc = list_pages(c, ref, &o, out, &gone_mid_list, err);
    }
    return rc;
}

/*
 * The ref a write goes to: namespace and name from the body when the ref has
 * none. *copy is set when the body had to be completed with ref's name.
 */
static int write_target(const kc_ref *ref, json_object *body, bool name_in_path, kc_ref *target,
                        json_object **copy, kc_error *err)
{
    *target = *ref;
    *copy = NULL;
    if (!target->namespace_)
        target->namespace_ = meta_string(body, "namespace");
    const char *body_name = meta_string(body, "name");
    if (ref->name && body_name && strcmp(ref->name, body_name) != 0)
        return kc_error_set(err, KC_ERR_INVALID_ARG,
                            "the ref names \"%s\" but the body's metadata.name is \"%s\"",
                            ref->name, body_name);
    if (ref->name && !body_name && !ref->subresource &&
        json_object_is_type(body, json_type_object)) {
        /* Complete a copy: the caller's object is borrowed and stays as it was. */
        json_object *dup = NULL, *meta = NULL;
        if (json_object_deep_copy(body, &dup, NULL) != 0)
            return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
        if (!json_object_object_get_ex(dup, "metadata", &meta) ||
            !json_object_is_type(meta, json_type_object)) {
            meta = json_object_new_object();
            if (!meta || json_object_object_add(dup, "metadata", meta) != 0) {
                json_object_put(meta);
                json_object_put(dup);
                return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
            }
        }
        json_object *name = json_object_new_string(ref->name);
        if (!name || json_object_object_add(meta, "name", name) != 0) {
            json_object_put(name);
            json_object_put(dup);
            return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
        }
        *copy = dup;
    }
    if (!target->name)
        target->name = body_name;
    if (!name_in_path)
        target->name = (ref->subresource && *ref->subresource) ? target->name : NULL;
    return KC_OK;
}

static int write_call(kc_client *c, const char *verb, const char *method, const kc_ref *ref,
                      json_object *body, const kc_write_opts *wo, json_object **out, kc_error *err)
{
    if (out)
        *out = NULL;
    if (!c || !ref || !body)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "%s: client, ref and body required", verb);
    bool is_create = !strcmp(method, "POST");
    kc_ref target;
    json_object *copy = NULL;
    int rc = write_target(ref, body, !is_create, &target, &copy, err);
    if (rc != KC_OK)
        return rc;
    if (!is_create && !target.name) {
        json_object_put(copy);
        return kc_error_set(err, KC_ERR_INVALID_ARG, "%s: no name in the ref or the body", verb);
    }
    char *path = NULL;
    const char *text = NULL;
    size_t len = 0;
    if ((rc = object_path(&target, &path, err)) == KC_OK &&
        (rc = add_write_params(&path, wo, false, err)) == KC_OK &&
        (rc = body_text(copy ? copy : body, &text, &len, err)) == KC_OK) {
        kc_call r = {method, path, "application/json", text, len, NULL};
        rc = json_call(c, &r, out, err);
    }
    free(path);
    json_object_put(copy);
    return rc;
}

int kc_create(kc_client *c, const kc_ref *ref, json_object *body, const kc_write_opts *wo,
              json_object **out, kc_error *err)
{
    return write_call(c, "kc_create", "POST", ref, body, wo, out, err);
}

int kc_update(kc_client *c, const kc_ref *ref, json_object *body, const kc_write_opts *wo,
              json_object **out, kc_error *err)
{
    return write_call(c, "kc_update", "PUT", ref, body, wo, out, err);
}

static const char *patch_content_type(kc_patch_type t)
{
    switch (t) {
    case KC_PATCH_MERGE:
        return "application/merge-patch+json";
    case KC_PATCH_JSON:
        return "application/json-patch+json";
    case KC_PATCH_STRATEGIC:
        return "application/strategic-merge-patch+json";
    case KC_PATCH_APPLY:
        return "application/apply-patch+yaml";
    default:
        return NULL;
    }
}

int kc_patch(kc_client *c, const kc_ref *ref, kc_patch_type type, json_object *patch,
             const kc_write_opts *wo, json_object **out, kc_error *err)
{
    if (out)
        *out = NULL;
    const char *ctype = patch_content_type(type);
    if (!c || !ref || !ref->name || !patch || !ctype)
        return kc_error_set(err, KC_ERR_INVALID_ARG,
                            "kc_patch: client, a named ref, a known patch type and a patch "
                            "required");
    if (type == KC_PATCH_APPLY && (!wo || !wo->field_manager || !*wo->field_manager))
        return kc_error_set(err, KC_ERR_INVALID_ARG,
                            "kc_patch: server-side apply needs a field manager");
    char *path = NULL;
    const char *text = NULL;
    size_t len = 0;
    int rc;
    /* JSON is YAML: an apply body is sent as the JSON text under the YAML type. */
    if ((rc = object_path(ref, &path, err)) == KC_OK &&
        (rc = add_write_params(&path, wo, type == KC_PATCH_APPLY, err)) == KC_OK &&
        (rc = body_text(patch, &text, &len, err)) == KC_OK) {
        kc_call r = {"PATCH", path, ctype, text, len, NULL};
        rc = json_call(c, &r, out, err);
    }
    free(path);
    return rc;
}

/* metav1.DeleteOptions for opts, or NULL in *out when nothing is asked. */
static int delete_options(const kc_delete_opts *opts, json_object **out, kc_error *err)
{
    *out = NULL;
    if (!opts)
        return KC_OK;
    bool pre = (opts->precondition_uid && *opts->precondition_uid) ||
               (opts->precondition_resource_version && *opts->precondition_resource_version);
    bool policy = opts->propagation_policy && *opts->propagation_policy;
    bool grace = opts->grace_period_set && opts->grace_period_seconds >= 0;
    if (!pre && !policy && !grace)
        return KC_OK;
    json_object *o = json_object_new_object();
    bool ok =
        o && pv_json_add_str(o, "kind", "DeleteOptions") && pv_json_add_str(o, "apiVersion", "v1");
    if (ok && policy)
        ok = pv_json_add_str(o, "propagationPolicy", opts->propagation_policy);
    if (ok && grace) {
        ok = pv_json_add_i64(o, "gracePeriodSeconds", opts->grace_period_seconds);
    }
    if (ok && pre) {
        json_object *p = pv_json_add_child(o, "preconditions");
        ok = p != NULL;
        if (ok && opts->precondition_uid && *opts->precondition_uid)
            ok = pv_json_add_str(p, "uid", opts->precondition_uid);
        if (ok && opts->precondition_resource_version && *opts->precondition_resource_version)
            ok = pv_json_add_str(p, "resourceVersion", opts->precondition_resource_version);
    }
    if (!ok) {
        json_object_put(o);
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    }
    *out = o;
    return KC_OK;
}

int kc_delete(kc_client *c, const kc_ref *ref, const kc_delete_opts *opts, json_object **out,
              kc_error *err)
{
    if (out)
        *out = NULL;
    if (!c || !ref)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "kc_delete: client and ref required");
    json_object *dopts = NULL;
    char *path = NULL;
    int rc;
    if ((rc = delete_options(opts, &dopts, err)) == KC_OK &&
        (rc = object_path(ref, &path, err)) == KC_OK) {
        const char *text = NULL;
        size_t len = 0;
        if (dopts)
            rc = body_text(dopts, &text, &len, err);
        if (rc == KC_OK) {
            kc_call r = {"DELETE", path, dopts ? "application/json" : NULL, text, len, NULL};
            rc = json_call(c, &r, out, err);
        }
    }
    free(path);
    json_object_put(dopts);
    return rc;
}
