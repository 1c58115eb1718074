/*
 * kc_client_request - one attempt of a request (an easy handle from the pool,
 * options, cancellation, the body bounded while it arrives) and the retry
 * loop around it, as kc_client.c's opening comment describes.
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

static size_t buf_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    size_t n = size * nmemb;
    if (!pv_strbuf_addn(userdata, ptr, n))
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    return n;
}

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

/* Set an option on the handle h in scope; the first failure is kept in the
 * CURLcode bad in scope. */
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        CURLcode r_ = curl_easy_setopt(h, opt, val);                                               \
        if (r_ != CURLE_OK && bad == CURLE_OK)                                                     \
            bad = r_;                                                                              \
    } while (0)

int kc_client_prepare(kc_client *c, CURL *h, const char *path, char *errbuf,
                      struct curl_slist **headers, kc_error *err)
{
    CURLcode bad = CURLE_OK;

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
    SET(CURLOPT_HTTP_VERSION, (long)(c->http2 ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_1_1));
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
    /* Bodies are small JSON; over HTTP/2 (opts.http2) curl sends them through
     * an upload buffer of 64 KiB a handle by default. 16 KiB is curl's minimum (and
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
    bool ok = kc_client_add_header(headers, "Accept: application/json");
    if (ok && token && *token) {
        /* Sized once, so no realloc leaves a stray copy of the token behind. */
        static const char prefix[] = "Authorization: Bearer ";
        size_t tl = strlen(token), n = sizeof(prefix) + tl;
        char *auth = malloc(n);
        ok = auth != NULL;
        if (ok) {
            memcpy(auth, prefix, sizeof(prefix) - 1);
            memcpy(auth + sizeof(prefix) - 1, token, tl + 1);
            ok = kc_client_add_header(headers, auth);
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
}

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
        ok = kc_client_add_header(&hdrs, "Expect:");
        if (ok && r->content_type) {
            pv_strbuf ct = {0};
            pv_strbuf_add(&ct, "Content-Type: ");
            pv_strbuf_add(&ct, r->content_type);
            ok = !ct.oom && kc_client_add_header(&hdrs, ct.p);
            pv_strbuf_free(&ct);
        } else if (ok) {
            ok = kc_client_add_header(&hdrs, "Content-Type:"); /* not form-urlencoded */
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
int kc_client_request(kc_client *c, const kc_call *r, pv_strbuf *resp, kc_error *err)
{
    CURL *h = kc_client_pool_take(c);
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
        double delay = kc_client_backoff_seconds(retries);
        if (wait > 0)
            delay = wait < RETRY_AFTER_MAX_S ? wait : RETRY_AFTER_MAX_S;
        retries++;
        pv_clock_sleep(delay, r->cancel);
    }
    kc_client_pool_put(c, h);
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
int kc_client_json_call(kc_client *c, const kc_call *r, json_object **out, kc_error *err)
{
    if (out)
        *out = NULL;
    pv_strbuf resp = {.max = c->max_body};
    int rc = kc_client_request(c, r, &resp, err);
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
    int rc = kc_client_request(c, &r, &resp, err);
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

size_t kc_client_max_body(const kc_client *c)
{
    return c->max_body;
}
