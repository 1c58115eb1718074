/*
 * kc_watch - watch streams: one long GET with watch=1 whose chunked body is
 * a sequence of JSON events.
 *
 * A watch owns its own easy handle and drives it with its own multi handle,
 * on the thread that calls kc_watch_run. The loop alternates
 * curl_multi_perform and curl_multi_poll (a 1 s cap); kc_watch_stop, from any
 * thread, sets an atomic flag and calls curl_multi_wakeup, which makes the
 * poll return at once, so a stop is seen within milliseconds even when the
 * server sends nothing. The flag is also checked in the write callback, so a
 * stop requested from an event callback ends the watch before the next
 * chunk is decoded. A stop is sticky: every later kc_watch_run returns
 * KC_ERR_STOPPED at once (a watch is stopped to shut its owner down).
 *
 * Bytes go straight from curl's write callback into kc_watch_decoder_feed,
 * which calls the user's callback once per complete event. A non-zero
 * result (the callback's value, KC_ERR_GONE from an ERROR event with code
 * 410, KC_ERR_TOO_LARGE, KC_ERR_DECODE) aborts the transfer and is what
 * kc_watch_run returns. A non-2xx answer to the request itself is kept
 * (bounded) and decoded as a Status.
 *
 * End of stream: the server closing the response normally (timeoutSeconds
 * reached, API server shutting down) is KC_OK, and the caller watches again
 * from its last resourceVersion. A stream that ends inside an event, cleanly
 * or not, is KC_ERR_TRANSPORT "watch stream cut mid-event".
 *
 * Timeouts: a watch has no whole-request timeout of its own. When the caller
 * asks the server for timeoutSeconds, the client gives up 30 s after that
 * (a server that forgot to end the stream); TCP keep-alive probes (30 s
 * idle, 10 s interval) find a peer that vanished. There is no low-speed
 * limit: an idle watch of a quiet resource sends nothing for minutes.
 *
 * The easy handle stays in the watch between runs, so a re-watch after a
 * normal end reuses the connection (it sits in the multi handle's cache).
 */
#include "kc_client.h"
#include "kc_client_internal.h"

#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define WATCH_TIMEOUT_MARGIN_S 30L
#define WATCH_POLL_MS 1000

struct kc_watch {
    kc_client *c; /* borrowed: outlives the watch */
    CURL *easy;
    CURLM *multi;
    kc_watch_decoder *dec;
    atomic_bool stopped;

    /* State of the run in progress; only the running thread touches it. */
    kc_event_cb cb;
    void *user;
    int stream_rc;       /* non-zero: the write callback ended the transfer with it */
    kc_error stream_err; /* the decoder's description of stream_rc */
    bool status_known;
    long http_status;
    pv_strbuf error_body; /* body of a non-2xx answer (a Status), bounded */
    double retry_after;
};

int kc_watch_new(kc_client *c, size_t max_event_bytes, kc_watch **out, kc_error *err)
{
    if (out)
        *out = NULL;
    if (!c || !out)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "kc_watch_new: client and out required");
    kc_watch *w = calloc(1, sizeof(*w));
    if (!w)
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    w->c = c;
    atomic_init(&w->stopped, false);
    w->error_body.max = KC_ERROR_BODY_MAX;
    w->easy = curl_easy_init();
    w->multi = curl_multi_init();
    w->dec = kc_watch_decoder_new(max_event_bytes);
    if (!w->easy || !w->multi || !w->dec) {
        kc_watch_free(w);
        return kc_error_set(err, KC_ERR_NOMEM, "out of memory");
    }
    *out = w;
    return KC_OK;
}

void kc_watch_give_objects(kc_watch *w)
{
    if (w)
        kc_watch_decoder_give_objects(w->dec);
}

void kc_watch_free(kc_watch *w)
{
    if (!w)
        return;
    /* The easy handle is never left in the multi handle between runs. */
    if (w->multi)
        curl_multi_cleanup(w->multi);
    if (w->easy)
        curl_easy_cleanup(w->easy);
    kc_watch_decoder_free(w->dec);
    free(w->error_body.p);
    kc_error_clear(&w->stream_err);
    free(w);
}

void kc_watch_stop(kc_watch *w)
{
    if (!w)
        return;
    atomic_store(&w->stopped, true);
    curl_multi_wakeup(w->multi);
}

static size_t write_abort(void)
{
#ifdef CURL_WRITEFUNC_ERROR
    return CURL_WRITEFUNC_ERROR;
#else
    return 0;
#endif
}

static size_t watch_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    kc_watch *w = userdata;
    size_t n = size * nmemb;
    if (atomic_load(&w->stopped)) {
        w->stream_rc = KC_ERR_STOPPED;
        return write_abort();
    }
    if (!w->status_known) {
        curl_easy_getinfo(w->easy, CURLINFO_RESPONSE_CODE, &w->http_status);
        w->status_known = true;
    }
    if (w->http_status < 200 || w->http_status >= 300) {
        /* A Status is small: keep what fits, the rest only adds detail. */
        (void)pv_strbuf_addn(&w->error_body, ptr, n);
        return n;
    }
    int rc = kc_watch_decoder_feed(w->dec, ptr, n, w->cb, w->user, &w->stream_err);
    if (rc != 0) {
        w->stream_rc = rc;
        return write_abort();
    }
    return n;
}

/* Hand the decoder's error (or a description of the callback's value) to err. */
static int stream_result(kc_watch *w, kc_error *err)
{
    int rc = w->stream_rc;
    if (rc == KC_ERR_STOPPED)
        return kc_error_set(err, KC_ERR_STOPPED, "watch stopped");
    if (w->stream_err.message || w->stream_err.code) {
        if (err) {
            kc_error_clear(err);
            *err = w->stream_err;
            memset(&w->stream_err, 0, sizeof(w->stream_err));
        }
        return rc;
    }
    if (rc < 0)
        return kc_error_set(err, rc, "watch ended by the event callback (%s)", kc_strerror(rc));
    kc_error_clear(err); /* a positive value of the caller's own */
    return rc;
}

/*
 * A watch's TLS connection: keep OpenSSL's read and write buffers. libcurl
 * (and kc_client_prepare, for pooled request connections) set
 * SSL_MODE_RELEASE_BUFFERS, which frees the 16 KiB read buffer whenever it is
 * empty and allocates it again for the next record; a watch stream reads
 * records all its life, so that was a malloc and a free per record (2.5 % of
 * the IP operator's samples, 0.2 % after, in
 * bench/results/watch-buffers-2026-12-07.md). The watches keep ~34 KiB each.
 */
static CURLcode watch_ssl_ctx_cb(CURL *h, void *ssl_ctx, void *user)
{
    (void)h;
    (void)user;
    SSL_CTX_clear_mode((SSL_CTX *)ssl_ctx, SSL_MODE_RELEASE_BUFFERS);
    return CURLE_OK;
}

/*
 * One watch request, start to end. *http_status is 0 without an HTTP answer;
 * *performed is false when the request could not even be set up.
 */
static int run_once(kc_watch *w, const char *path, long timeout_seconds, long *http_status,
                    bool *performed, kc_error *err)
{
    char errbuf[CURL_ERROR_SIZE];
    struct curl_slist *hdrs = NULL;
    *http_status = 0;
    *performed = false;
    w->stream_rc = 0;
    kc_error_clear(&w->stream_err);
    w->status_known = false;
    w->http_status = 0;
    pv_strbuf_reset(&w->error_body);
    w->retry_after = 0;
    kc_watch_decoder_reset(w->dec);

    curl_easy_reset(w->easy);
    int rc = kc_client_prepare(w->c, w->easy, path, errbuf, &hdrs, err);
    if (rc != KC_OK)
        goto out;
    CURLcode bad = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        CURLcode r_ = curl_easy_setopt(w->easy, opt, val);                                         \
        if (r_ != CURLE_OK && bad == CURLE_OK)                                                     \
            bad = r_;                                                                              \
    } while (0)
    SET(CURLOPT_HTTPGET, 1L);
    SET(CURLOPT_SSL_CTX_FUNCTION, watch_ssl_ctx_cb);
    SET(CURLOPT_HTTPHEADER, hdrs);
    SET(CURLOPT_WRITEFUNCTION, watch_write_cb);
    SET(CURLOPT_WRITEDATA, w);
    SET(CURLOPT_HEADERFUNCTION, kc_retry_after_header_cb);
    SET(CURLOPT_HEADERDATA, &w->retry_after);
    SET(CURLOPT_TIMEOUT_MS,
        timeout_seconds > 0 ? (timeout_seconds + WATCH_TIMEOUT_MARGIN_S) * 1000L : 0L);
#undef SET
    if (bad != CURLE_OK) {
        rc = kc_error_set(err, KC_ERR_CONFIG, "cannot set up the watch: %s",
                          curl_easy_strerror(bad));
        goto out;
    }
    CURLMcode mc = curl_multi_add_handle(w->multi, w->easy);
    if (mc != CURLM_OK) {
        rc = kc_error_set(err, KC_ERR_TRANSPORT, "cannot start the watch: %s",
                          curl_multi_strerror(mc));
        goto out;
    }

    CURLcode result = CURLE_OK;
    bool done = false, stopped = false;
    while (!done) {
        if (atomic_load(&w->stopped)) {
            stopped = true;
            break;
        }
        int running = 0;
        mc = curl_multi_perform(w->multi, &running);
        if (mc != CURLM_OK)
            break;
        CURLMsg *m;
        int queued;
        while ((m = curl_multi_info_read(w->multi, &queued)) != NULL) {
            if (m->msg == CURLMSG_DONE && m->easy_handle == w->easy) {
                result = m->data.result;
                done = true;
            }
        }
        if (done)
            break;
        if (running == 0) {
            result = CURLE_RECV_ERROR; /* cannot happen: no DONE message for our transfer */
            done = true;
            break;
        }
        mc = curl_multi_poll(w->multi, NULL, 0, WATCH_POLL_MS, NULL);
        if (mc != CURLM_OK)
            break;
    }
    curl_multi_remove_handle(w->multi, w->easy); /* aborts a transfer still running */
    *performed = true;
    curl_easy_getinfo(w->easy, CURLINFO_RESPONSE_CODE, http_status);
    if (!done && !stopped) {
        rc = kc_error_set(err, KC_ERR_TRANSPORT, "watch %s: %s", path, curl_multi_strerror(mc));
        goto out;
    }
    if (stopped || w->stream_rc == KC_ERR_STOPPED) {
        rc = kc_error_set(err, KC_ERR_STOPPED, "watch stopped");
        goto out;
    }
    if (w->stream_rc != 0) {
        rc = stream_result(w, err);
        goto out;
    }
    bool ok_status = *http_status >= 200 && *http_status < 300;
    if (result == CURLE_OK && !ok_status) {
        rc = kc_error_from_response(err, *http_status, w->error_body.p, w->error_body.len,
                                    w->retry_after);
    } else if (ok_status && kc_watch_decoder_pending(w->dec)) {
        if (result == CURLE_OK)
            rc = kc_error_set(err, KC_ERR_TRANSPORT, "watch stream cut mid-event");
        else
            rc = kc_error_set(err, KC_ERR_TRANSPORT, "watch stream cut mid-event (%s%s%s)",
                              curl_easy_strerror(result), errbuf[0] ? ": " : "", errbuf);
    } else if (result != CURLE_OK) {
        rc = kc_curl_error(result, errbuf, "watch", err);
    } else {
        rc = KC_OK; /* the server ended the stream between events */
        kc_error_clear(err);
    }
out:
    curl_easy_setopt(w->easy, CURLOPT_ERRORBUFFER, (char *)NULL);
    curl_easy_setopt(w->easy, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
    kc_headers_free(hdrs);
    return rc;
}

int kc_watch_run(kc_watch *w, const kc_ref *ref, const kc_list_opts *opts, kc_event_cb cb,
                 void *user, kc_error *err)
{
    if (!w || !ref || !cb)
        return kc_error_set(err, KC_ERR_INVALID_ARG,
                            "kc_watch_run: watch, ref and callback "
                            "required");
    if (atomic_load(&w->stopped))
        return kc_error_set(err, KC_ERR_STOPPED, "watch stopped");
    char *path = NULL;
    int rc = kc_path(ref, opts, true, &path, err);
    if (rc != KC_OK)
        return rc;
    w->cb = cb;
    w->user = user;
    long timeout_seconds = opts ? opts->timeout_seconds : 0;
    for (int attempt = 0;; attempt++) {
        kc_client_throttle(w->c);
        long status = 0;
        bool performed = false;
        rc = run_once(w, path, timeout_seconds, &status, &performed, err);
        if (performed)
            kc_client_report(w->c, "WATCH", status);
        /* A rotated token: refresh once and open the watch again. */
        if (status == 401 && attempt == 0 && !atomic_load(&w->stopped) &&
            kc_config_invalidate_credentials(kc_client_config(w->c)))
            continue;
        break;
    }
    w->cb = NULL;
    w->user = NULL;
    free(path);
    return rc;
}
