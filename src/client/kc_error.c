/*
 * kc_error - typed errors of the REST client.
 *
 * The API server answers a failed request with a metav1.Status:
 *   {"kind":"Status","status":"Failure","message":"...","reason":"NotFound",
 *    "details":{...,"retryAfterSeconds":1},"code":404}
 * We keep its reason and message verbatim and pick the kc_status from the
 * reason first (it is more precise than the HTTP code: 409 is AlreadyExists
 * on create but Conflict on a stale update), then from the HTTP code.
 */
#include "kc_error.h"
#include "pv_strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

const char *kc_strerror(int code)
{
    switch (code) {
    case KC_OK:
        return "success";
    case KC_ERR_NOMEM:
        return "out of memory";
    case KC_ERR_INVALID_ARG:
        return "invalid argument";
    case KC_ERR_CONFIG:
        return "unusable client configuration";
    case KC_ERR_TRANSPORT:
        return "transport failure (no HTTP answer)";
    case KC_ERR_TIMEOUT:
        return "request timed out";
    case KC_ERR_DECODE:
        return "could not decode the server's answer";
    case KC_ERR_TOO_LARGE:
        return "answer larger than the configured maximum";
    case KC_ERR_STOPPED:
        return "stopped";
    case KC_ERR_AUTH_PLUGIN:
        return "exec credential plugin failed";
    case KC_ERR_IO:
        return "local I/O error";
    case KC_ERR_BAD_REQUEST:
        return "bad request";
    case KC_ERR_UNAUTHORIZED:
        return "unauthorized";
    case KC_ERR_FORBIDDEN:
        return "forbidden";
    case KC_ERR_NOT_FOUND:
        return "not found";
    case KC_ERR_METHOD_NOT_ALLOWED:
        return "method not allowed";
    case KC_ERR_NOT_ACCEPTABLE:
        return "not acceptable";
    case KC_ERR_ALREADY_EXISTS:
        return "already exists";
    case KC_ERR_CONFLICT:
        return "conflict";
    case KC_ERR_GONE:
        return "gone (resource version too old)";
    case KC_ERR_UNSUPPORTED_MEDIA:
        return "unsupported media type";
    case KC_ERR_INVALID:
        return "invalid";
    case KC_ERR_TOO_MANY_REQUESTS:
        return "too many requests";
    case KC_ERR_INTERNAL:
        return "internal server error";
    case KC_ERR_SERVICE_UNAVAILABLE:
        return "service unavailable";
    case KC_ERR_SERVER_TIMEOUT:
        return "server timeout";
    case KC_ERR_API:
        return "API error";
    default:
        return "unknown error";
    }
}

void kc_error_clear(kc_error *err)
{
    if (!err)
        return;
    free(err->reason);
    free(err->message);
    memset(err, 0, sizeof(*err));
}

static int set_strings(kc_error *err, int code, long http_status, const char *reason,
                       char *message_owned)
{
    /* Out of memory for the reason: keep the code and message, lose the reason. */
    char *r = (reason && *reason) ? strdup(reason) : NULL;
    free(err->reason);
    free(err->message);
    err->code = code;
    err->http_status = http_status;
    err->reason = r;
    err->message = message_owned;
    return code;
}

int kc_error_set(kc_error *err, int code, const char *fmt, ...)
{
    if (!err)
        return code;
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    int n = pv_vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        msg = NULL; /* keep going: a missing message is better than no code */
    long http = (code <= -400 && code > -600) ? -code : 0;
    if (code == KC_ERR_ALREADY_EXISTS)
        http = 409;
    err->retry_after = 0;
    return set_strings(err, code, http, NULL, msg);
}

int kc_status_from_http(long http_status, const char *reason)
{
    if (reason) {
        if (!strcmp(reason, "NotFound"))
            return KC_ERR_NOT_FOUND;
        if (!strcmp(reason, "AlreadyExists"))
            return KC_ERR_ALREADY_EXISTS;
        if (!strcmp(reason, "Conflict"))
            return KC_ERR_CONFLICT;
        if (!strcmp(reason, "Gone") || !strcmp(reason, "Expired"))
            return KC_ERR_GONE;
        if (!strcmp(reason, "Invalid"))
            return KC_ERR_INVALID;
        if (!strcmp(reason, "Forbidden"))
            return KC_ERR_FORBIDDEN;
        if (!strcmp(reason, "Unauthorized"))
            return KC_ERR_UNAUTHORIZED;
        if (!strcmp(reason, "TooManyRequests"))
            return KC_ERR_TOO_MANY_REQUESTS;
        if (!strcmp(reason, "ServerTimeout") || !strcmp(reason, "Timeout"))
            return KC_ERR_SERVER_TIMEOUT;
        if (!strcmp(reason, "MethodNotAllowed"))
            return KC_ERR_METHOD_NOT_ALLOWED;
        if (!strcmp(reason, "ServiceUnavailable"))
            return KC_ERR_SERVICE_UNAVAILABLE;
        if (!strcmp(reason, "InternalError"))
            return KC_ERR_INTERNAL;
        if (!strcmp(reason, "BadRequest"))
            return KC_ERR_BAD_REQUEST;
        if (!strcmp(reason, "NotAcceptable"))
            return KC_ERR_NOT_ACCEPTABLE;
        if (!strcmp(reason, "UnsupportedMediaType"))
            return KC_ERR_UNSUPPORTED_MEDIA;
    }
    switch (http_status) {
    case 400:
        return KC_ERR_BAD_REQUEST;
    case 401:
        return KC_ERR_UNAUTHORIZED;
    case 403:
        return KC_ERR_FORBIDDEN;
    case 404:
        return KC_ERR_NOT_FOUND;
    case 405:
        return KC_ERR_METHOD_NOT_ALLOWED;
    case 406:
        return KC_ERR_NOT_ACCEPTABLE;
    case 409:
        return KC_ERR_CONFLICT;
    case 410:
        return KC_ERR_GONE;
    case 415:
        return KC_ERR_UNSUPPORTED_MEDIA;
    case 422:
        return KC_ERR_INVALID;
    case 429:
        return KC_ERR_TOO_MANY_REQUESTS;
    case 500:
        return KC_ERR_INTERNAL;
    case 503:
        return KC_ERR_SERVICE_UNAVAILABLE;
    case 504:
        return KC_ERR_SERVER_TIMEOUT;
    default:
        return KC_ERR_API;
    }
}

bool kc_status_is_retryable(int code)
{
    switch (code) {
    case KC_ERR_TRANSPORT:
    case KC_ERR_TIMEOUT:
    case KC_ERR_TOO_MANY_REQUESTS:
    case KC_ERR_INTERNAL:
    case KC_ERR_SERVICE_UNAVAILABLE:
    case KC_ERR_SERVER_TIMEOUT:
        return true;
    default:
        return false;
    }
}

static const char *obj_string(json_object *o, const char *key)
{
    json_object *v;
    if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

int kc_error_from_status(kc_error *err, long http_status, json_object *status)
{
    const char *reason = obj_string(status, "reason");
    const char *message = obj_string(status, "message");
    json_object *v;
    if (status && json_object_object_get_ex(status, "code", &v) &&
        json_object_is_type(v, json_type_int) && json_object_get_int64(v) > 0)
        http_status = (long)json_object_get_int64(v);
    double retry_after = 0;
    json_object *details;
    if (status && json_object_object_get_ex(status, "details", &details) &&
        json_object_object_get_ex(details, "retryAfterSeconds", &v) &&
        json_object_is_type(v, json_type_int) && json_object_get_int64(v) > 0)
        retry_after = (double)json_object_get_int64(v);

    int code = kc_status_from_http(http_status, reason);
    if (!err)
        return code;
    char *msg = NULL;
    if (message && *message)
        msg = strdup(message);
    else if (http_status > 0 ? asprintf(&msg, "HTTP %ld: %s", http_status, kc_strerror(code)) < 0
                             : asprintf(&msg, "%s", kc_strerror(code)) < 0)
        msg = NULL;
    set_strings(err, code, http_status, reason, msg);
    err->retry_after = retry_after;
    return code;
}

/*
 * At most max bytes of body as one line: control characters become spaces,
 * runs of spaces collapse, the ends are trimmed, and a UTF-8 sequence is
 * never cut in half. malloc'd; NULL when out of memory.
 */
static char *printable_prefix(const char *body, size_t len, size_t max)
{
    if (len > max) {
        len = max;
        /* Back off over continuation bytes to the start of the cut character. */
        size_t k = len;
        while (k > 0 && ((unsigned char)body[k] & 0xC0) == 0x80)
            k--;
        len = k;
    }
    char *out = malloc(len + 1);
    if (!out)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)body[i];
        if (c < 0x20 || c == 0x7f)
            c = ' ';
        if (c == ' ' && (n == 0 || out[n - 1] == ' '))
            continue;
        out[n++] = (char)c;
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
    return out;
}

int kc_error_from_response(kc_error *err, long http_status, const char *body, size_t body_len,
                           double retry_after)
{
    json_object *status = NULL;
    if (body && body_len > 0) {
        json_tokener *tok = json_tokener_new();
        if (tok) {
            /* json-c takes an int length; a Status is small, ignore giant bodies. */
            if (body_len < (size_t)1 << 30)
                status = json_tokener_parse_ex(tok, body, (int)body_len);
            json_tokener_free(tok);
        }
        /*
         * Only a Status (or something shaped like one) speaks for itself; any
         * other JSON, from a proxy say, is shown as text like a non-JSON body.
         */
        const char *kind = status ? obj_string(status, "kind") : NULL;
        if (status && (!json_object_is_type(status, json_type_object) ||
                       !((kind && !strcmp(kind, "Status")) || obj_string(status, "message") ||
                         obj_string(status, "reason")))) {
            json_object_put(status);
            status = NULL;
        }
    }
    int code;
    if (status) {
        code = kc_error_from_status(err, http_status, status);
        json_object_put(status);
    } else {
        code = kc_status_from_http(http_status, NULL);
        if (err) {
            /* Not a Status: keep a short, printable prefix of the body. */
            char *text = printable_prefix(body, body ? body_len : 0, 200);
            char *msg = NULL;
            if (asprintf(&msg, "HTTP %ld %s%s%s", http_status, kc_strerror(code),
                         text && *text ? ": " : "", text ? text : "") < 0)
                msg = NULL;
            free(text);
            set_strings(err, code, http_status, NULL, msg);
        }
    }
    if (err && retry_after > 0)
        err->retry_after = retry_after;
    return code;
}
