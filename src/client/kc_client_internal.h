/*
 * kc_client_internal - what kc_client.c (requests), kc_watch.c (watch
 * streams) and kc_path.c (URLs) share about the transport. Not part of the
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
 * tls-server-name mapping, connect timeout, keep-alive, HTTP/2, User-Agent,
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

#endif
