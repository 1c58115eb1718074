/* Unit tests of kc_error: Status decoding, HTTP code mapping, kc_error lifecycle. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "kc_error.h"

/* A Status body as the API server sends it. */
static char *status_body(long code, const char *reason, const char *message)
{
    char *s = NULL;
    int n = asprintf(&s,
                     "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},"
                     "\"status\":\"Failure\",\"message\":\"%s\",\"reason\":\"%s\","
                     "\"details\":{\"name\":\"x\",\"kind\":\"ipclaims\"},\"code\":%ld}",
                     message, reason, code);
    cr_assert_geq(n, 0);
    return s;
}

Test(error, http_codes_map_to_statuses)
{
    struct {
        long http;
        int want;
    } cases[] = {
        {400, KC_ERR_BAD_REQUEST},
        {401, KC_ERR_UNAUTHORIZED},
        {403, KC_ERR_FORBIDDEN},
        {404, KC_ERR_NOT_FOUND},
        {405, KC_ERR_METHOD_NOT_ALLOWED},
        {406, KC_ERR_NOT_ACCEPTABLE},
        {409, KC_ERR_CONFLICT},
        {410, KC_ERR_GONE},
        {415, KC_ERR_UNSUPPORTED_MEDIA},
        {422, KC_ERR_INVALID},
        {429, KC_ERR_TOO_MANY_REQUESTS},
        {500, KC_ERR_INTERNAL},
        {503, KC_ERR_SERVICE_UNAVAILABLE},
        {504, KC_ERR_SERVER_TIMEOUT},
        {418, KC_ERR_API},
        {502, KC_ERR_API},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        cr_assert_eq(kc_status_from_http(cases[i].http, NULL), cases[i].want, "HTTP %ld",
                     cases[i].http);
}

Test(error, status_reasons_win_over_http_codes)
{
    struct {
        long http;
        const char *reason;
        int want;
    } cases[] = {
        {404, "NotFound", KC_ERR_NOT_FOUND},
        {409, "AlreadyExists", KC_ERR_ALREADY_EXISTS},
        {409, "Conflict", KC_ERR_CONFLICT},
        {410, "Expired", KC_ERR_GONE},
        {410, "Gone", KC_ERR_GONE},
        {422, "Invalid", KC_ERR_INVALID},
        {403, "Forbidden", KC_ERR_FORBIDDEN},
        {401, "Unauthorized", KC_ERR_UNAUTHORIZED},
        {429, "TooManyRequests", KC_ERR_TOO_MANY_REQUESTS},
        {500, "ServerTimeout", KC_ERR_SERVER_TIMEOUT},
        {504, "Timeout", KC_ERR_SERVER_TIMEOUT},
        {405, "MethodNotAllowed", KC_ERR_METHOD_NOT_ALLOWED},
        {503, "ServiceUnavailable", KC_ERR_SERVICE_UNAVAILABLE},
        {500, "InternalError", KC_ERR_INTERNAL},
        {400, "BadRequest", KC_ERR_BAD_REQUEST},
        {406, "NotAcceptable", KC_ERR_NOT_ACCEPTABLE},
        {415, "UnsupportedMediaType", KC_ERR_UNSUPPORTED_MEDIA},
        {500, "Timeout", KC_ERR_SERVER_TIMEOUT}, /* 500 with reason Timeout */
        {404, "SomethingNew", KC_ERR_NOT_FOUND}, /* unknown reason: the code decides */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        cr_assert_eq(kc_status_from_http(cases[i].http, cases[i].reason), cases[i].want,
                     "HTTP %ld reason %s", cases[i].http, cases[i].reason);
}

Test(error, status_body_409_already_exists_vs_conflict)
{
    kc_error err = KC_ERROR_INIT;
    char *exists = status_body(
        409, "AlreadyExists", "ipreservations.provisio.dev \\\"pool-a.10-0-0-5\\\" already exists");
    cr_assert_eq(kc_error_from_response(&err, 409, exists, strlen(exists), 0),
                 KC_ERR_ALREADY_EXISTS);
    cr_assert_eq(err.code, KC_ERR_ALREADY_EXISTS);
    cr_assert_eq(err.http_status, 409);
    cr_assert_str_eq(err.reason, "AlreadyExists");
    cr_assert_str_eq(err.message, "ipreservations.provisio.dev \"pool-a.10-0-0-5\" already exists");

    char *conflict = status_body(409, "Conflict",
                                 "Operation cannot be fulfilled on ipclaims.provisio.dev "
                                 "\\\"c1\\\": the object has been modified; please apply your "
                                 "changes to the latest version and try again");
    cr_assert_eq(kc_error_from_response(&err, 409, conflict, strlen(conflict), 0), KC_ERR_CONFLICT);
    cr_assert_eq(err.code, KC_ERR_CONFLICT);
    cr_assert_str_eq(err.reason, "Conflict");
    cr_assert(strstr(err.message, "the object has been modified"));
    kc_error_clear(&err);
    free(exists);
    free(conflict);
}

Test(error, status_body_keeps_reason_message_and_code)
{
    kc_error err = KC_ERROR_INIT;
    char *nf = status_body(404, "NotFound", "ipclaims.provisio.dev \\\"x\\\" not found");
    cr_assert_eq(kc_error_from_response(&err, 404, nf, strlen(nf), 0), KC_ERR_NOT_FOUND);
    cr_assert_str_eq(err.reason, "NotFound");
    cr_assert_str_eq(err.message, "ipclaims.provisio.dev \"x\" not found");
    cr_assert_eq(err.http_status, 404);
    cr_assert_eq(err.retry_after, 0.0);
    /* The Status' own code wins over the transport's (a 200 watch carrying a 410). */
    char *gone = status_body(410, "Expired", "too old resource version: 1 (5)");
    cr_assert_eq(kc_error_from_response(&err, 200, gone, strlen(gone), 0), KC_ERR_GONE);
    cr_assert_eq(err.http_status, 410);
    kc_error_clear(&err);
    free(nf);
    free(gone);
}

Test(error, retry_after_from_status_details_and_from_header)
{
    const char *body = "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},"
                       "\"status\":\"Failure\",\"message\":\"storage is (re)initializing\","
                       "\"reason\":\"TooManyRequests\",\"details\":{\"retryAfterSeconds\":3},"
                       "\"code\":429}";
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_error_from_response(&err, 429, body, strlen(body), 0),
                 KC_ERR_TOO_MANY_REQUESTS);
    cr_assert_eq(err.retry_after, 3.0);
    cr_assert_str_eq(err.message, "storage is (re)initializing");
    /* A Retry-After header (passed by the transport) wins. */
    cr_assert_eq(kc_error_from_response(&err, 429, body, strlen(body), 7.5),
                 KC_ERR_TOO_MANY_REQUESTS);
    cr_assert_eq(err.retry_after, 7.5);
    /* Nonsense retryAfterSeconds is ignored. */
    const char *neg = "{\"kind\":\"Status\",\"reason\":\"TooManyRequests\","
                      "\"details\":{\"retryAfterSeconds\":-4},\"code\":429}";
    cr_assert_eq(kc_error_from_response(&err, 429, neg, strlen(neg), 0), KC_ERR_TOO_MANY_REQUESTS);
    cr_assert_eq(err.retry_after, 0.0);
    kc_error_clear(&err);
}

Test(error, non_json_body_becomes_a_printable_message)
{
    kc_error err = KC_ERROR_INIT;
    const char *body = "404 page not found\n";
    cr_assert_eq(kc_error_from_response(&err, 404, body, strlen(body), 0), KC_ERR_NOT_FOUND);
    cr_assert_str_eq(err.message, "HTTP 404 not found: 404 page not found");
    cr_assert_null(err.reason);
    cr_assert_eq(err.http_status, 404);

    static const char html[] = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n\0<body>";
    cr_assert_eq(kc_error_from_response(&err, 502, html, sizeof(html) - 1, 0), KC_ERR_API);
    cr_assert_str_eq(
        err.message,
        "HTTP 502 API error: <html> <head><title>502 Bad Gateway</title></head> <body>");

    /* Long bodies are cut to a prefix, never in the middle of a UTF-8 character. */
    char big[1000];
    for (size_t i = 0; i + 1 < sizeof(big); i += 2) {
        big[i] = '\xc3';
        big[i + 1] = '\xa9';
    }
    cr_assert_eq(kc_error_from_response(&err, 503, big + 1, sizeof(big) - 1, 0),
                 KC_ERR_SERVICE_UNAVAILABLE);
    cr_assert_lt(strlen(err.message), 260);
    size_t ml = strlen(err.message);
    cr_assert_str_eq(err.message + ml - 2, "\xc3\xa9", "ends on a whole character");
    kc_error_clear(&err);
}

Test(error, json_that_is_not_a_status_is_shown_as_text)
{
    kc_error err = KC_ERROR_INIT;
    const char *body = "{\"error\":\"upstream connect error\"}";
    cr_assert_eq(kc_error_from_response(&err, 503, body, strlen(body), 0),
                 KC_ERR_SERVICE_UNAVAILABLE);
    cr_assert(strstr(err.message, "upstream connect error"), "message: %s", err.message);
    const char *arr = "[1,2,3]";
    cr_assert_eq(kc_error_from_response(&err, 400, arr, strlen(arr), 0), KC_ERR_BAD_REQUEST);
    cr_assert_str_eq(err.message, "HTTP 400 bad request: [1,2,3]");
    const char *truncated = "{\"kind\":\"Status\",\"message\":\"cut";
    cr_assert_eq(kc_error_from_response(&err, 500, truncated, strlen(truncated), 0),
                 KC_ERR_INTERNAL);
    cr_assert(strstr(err.message, "HTTP 500"));
    kc_error_clear(&err);
}

Test(error, empty_or_missing_body_uses_the_http_status)
{
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_error_from_response(&err, 503, NULL, 0, 0), KC_ERR_SERVICE_UNAVAILABLE);
    cr_assert_str_eq(err.message, "HTTP 503 service unavailable");
    cr_assert_eq(kc_error_from_response(&err, 401, "", 0, 0), KC_ERR_UNAUTHORIZED);
    cr_assert_str_eq(err.message, "HTTP 401 unauthorized");
    cr_assert_eq(kc_error_from_response(&err, 403, "   \n", 4, 0), KC_ERR_FORBIDDEN);
    cr_assert_str_eq(err.message, "HTTP 403 forbidden");
    /* A NULL kc_error still gives the code. */
    cr_assert_eq(kc_error_from_response(NULL, 404, NULL, 0, 0), KC_ERR_NOT_FOUND);
    kc_error_clear(&err);
}

Test(error, status_object_from_a_watch_error_event)
{
    json_object *st = json_tokener_parse(
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\","
        "\"message\":\"The resourceVersion for the provided watch is too old.\","
        "\"reason\":\"Expired\",\"code\":410}");
    cr_assert(st);
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_error_from_status(&err, 0, st), KC_ERR_GONE);
    cr_assert_eq(err.http_status, 410);
    cr_assert_str_eq(err.reason, "Expired");
    cr_assert_str_eq(err.message, "The resourceVersion for the provided watch is too old.");
    json_object_put(st);

    json_object *bare = json_object_new_object();
    cr_assert_eq(kc_error_from_status(&err, 0, bare), KC_ERR_API);
    cr_assert_str_eq(err.message, "API error", "no \"HTTP 0\" in the message");
    cr_assert_eq(kc_error_from_status(&err, 503, bare), KC_ERR_SERVICE_UNAVAILABLE);
    cr_assert_str_eq(err.message, "HTTP 503: service unavailable");
    cr_assert_eq(kc_error_from_status(&err, 500, NULL), KC_ERR_INTERNAL);
    json_object_put(bare);
    kc_error_clear(&err);
}

Test(error, set_clear_and_reuse)
{
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(kc_error_set(&err, KC_ERR_CONFIG, "no cluster %s in kubeconfig %s", "prod",
                              "/root/.kube/config"),
                 KC_ERR_CONFIG);
    cr_assert_eq(err.code, KC_ERR_CONFIG);
    cr_assert_eq(err.http_status, 0, "a local error has no HTTP status");
    cr_assert_str_eq(err.message, "no cluster prod in kubeconfig /root/.kube/config");

    /* Reuse without clearing: the old strings are replaced, not leaked. */
    char *nf = status_body(404, "NotFound", "gone");
    kc_error_from_response(&err, 404, nf, strlen(nf), 2);
    cr_assert_str_eq(err.reason, "NotFound");
    cr_assert_eq(err.retry_after, 2.0);
    kc_error_set(&err, KC_ERR_ALREADY_EXISTS, "exists");
    cr_assert_null(err.reason);
    cr_assert_eq(err.http_status, 409);
    cr_assert_eq(err.retry_after, 0.0, "set forgets an older retry_after");
    kc_error_set(&err, KC_ERR_TIMEOUT, "%s", "a message that refers to itself");
    kc_error_set(&err, KC_ERR_TIMEOUT, "wrapped: %s", err.message);
    cr_assert_str_eq(err.message, "wrapped: a message that refers to itself");

    kc_error_clear(&err);
    cr_assert_eq(err.code, 0);
    cr_assert_null(err.message);
    cr_assert_null(err.reason);
    kc_error_clear(&err); /* twice is fine */
    kc_error_clear(NULL);
    cr_assert_eq(kc_error_set(NULL, KC_ERR_IO, "ignored"), KC_ERR_IO);
    free(nf);
}

Test(error, strerror_and_retryable)
{
    cr_assert_str_eq(kc_strerror(KC_OK), "success");
    cr_assert_str_eq(kc_strerror(KC_ERR_GONE), "gone (resource version too old)");
    cr_assert_str_eq(kc_strerror(12345), "unknown error");
    int all[] = {KC_ERR_NOMEM,
                 KC_ERR_INVALID_ARG,
                 KC_ERR_CONFIG,
                 KC_ERR_TRANSPORT,
                 KC_ERR_TIMEOUT,
                 KC_ERR_DECODE,
                 KC_ERR_TOO_LARGE,
                 KC_ERR_STOPPED,
                 KC_ERR_AUTH_PLUGIN,
                 KC_ERR_IO,
                 KC_ERR_BAD_REQUEST,
                 KC_ERR_UNAUTHORIZED,
                 KC_ERR_FORBIDDEN,
                 KC_ERR_NOT_FOUND,
                 KC_ERR_METHOD_NOT_ALLOWED,
                 KC_ERR_NOT_ACCEPTABLE,
                 KC_ERR_ALREADY_EXISTS,
                 KC_ERR_CONFLICT,
                 KC_ERR_GONE,
                 KC_ERR_UNSUPPORTED_MEDIA,
                 KC_ERR_INVALID,
                 KC_ERR_TOO_MANY_REQUESTS,
                 KC_ERR_INTERNAL,
                 KC_ERR_SERVICE_UNAVAILABLE,
                 KC_ERR_SERVER_TIMEOUT,
                 KC_ERR_API};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        cr_assert_str_neq(kc_strerror(all[i]), "unknown error", "code %d has a description",
                          all[i]);
    cr_assert(kc_status_is_retryable(KC_ERR_TRANSPORT));
    cr_assert(kc_status_is_retryable(KC_ERR_TOO_MANY_REQUESTS));
    cr_assert(kc_status_is_retryable(KC_ERR_SERVICE_UNAVAILABLE));
    cr_assert(kc_status_is_retryable(KC_ERR_SERVER_TIMEOUT));
    cr_assert_not(kc_status_is_retryable(KC_ERR_CONFLICT));
    cr_assert_not(kc_status_is_retryable(KC_ERR_NOT_FOUND));
    cr_assert_not(kc_status_is_retryable(KC_ERR_GONE));
    cr_assert_not(kc_status_is_retryable(KC_ERR_INVALID_ARG));
}
