/*
 * kc_error - status codes and the typed error of the REST client.
 *
 * Every kc_ function returns an int: KC_OK (0) or a negative kc_status. When
 * the caller passes a kc_error, it is filled with what went wrong: for API
 * errors the server's own Status (reason, message, HTTP code), so a caller can
 * tell NotFound from Conflict from Gone and a person can read why.
 */
#ifndef PROVISIO_KC_ERROR_H
#define PROVISIO_KC_ERROR_H

#include <stdbool.h>
#include <stddef.h>

struct json_object;

typedef enum kc_status {
    KC_OK = 0,
    /* Local failures. */
    KC_ERR_NOMEM = -1,
    KC_ERR_INVALID_ARG = -2,  /* a caller passed something unusable */
    KC_ERR_CONFIG = -3,       /* kubeconfig / in-cluster config unusable */
    KC_ERR_TRANSPORT = -4,    /* connect, TLS, reset: no HTTP answer */
    KC_ERR_TIMEOUT = -5,      /* the client's own timeout expired */
    KC_ERR_DECODE = -6,       /* the server sent something that is not JSON we expect */
    KC_ERR_TOO_LARGE = -7,    /* a watch event or body past the configured maximum */
    KC_ERR_STOPPED = -8,      /* stopped by another thread (kc_watch_stop) */
    KC_ERR_AUTH_PLUGIN = -9,  /* an exec credential plugin failed */
    KC_ERR_IO = -10,          /* reading a local file failed */
    /* API errors: the server answered with a Status. */
    KC_ERR_BAD_REQUEST = -400,
    KC_ERR_UNAUTHORIZED = -401,
    KC_ERR_FORBIDDEN = -403,
    KC_ERR_NOT_FOUND = -404,
    KC_ERR_METHOD_NOT_ALLOWED = -405,
    KC_ERR_NOT_ACCEPTABLE = -406,
    KC_ERR_ALREADY_EXISTS = -4091, /* 409, reason AlreadyExists */
    KC_ERR_CONFLICT = -409,        /* 409, reason Conflict (stale resourceVersion) */
    KC_ERR_GONE = -410,            /* 410 or a watch ERROR event with code 410 */
    KC_ERR_UNSUPPORTED_MEDIA = -415,
    KC_ERR_INVALID = -422,
    KC_ERR_TOO_MANY_REQUESTS = -429,
    KC_ERR_INTERNAL = -500,
    KC_ERR_SERVICE_UNAVAILABLE = -503,
    KC_ERR_SERVER_TIMEOUT = -504,  /* 504, or reason ServerTimeout / Timeout */
    KC_ERR_API = -999,             /* any other non-2xx answer */
} kc_status;

/*
 * What went wrong. Strings are owned by the kc_error and freed by
 * kc_error_clear. A zeroed kc_error (KC_ERROR_INIT) is empty and valid.
 */
typedef struct kc_error {
    int code;            /* kc_status */
    long http_status;    /* 0 when no HTTP answer was had */
    char *reason;        /* Status.reason ("NotFound", "AlreadyExists", ...) or NULL */
    char *message;       /* Status.message or a local description; never NULL once set */
    double retry_after;  /* seconds, from Retry-After or Status.details.retryAfterSeconds; 0 if none */
} kc_error;

#define KC_ERROR_INIT {0, 0, NULL, NULL, 0.0}

/* A static English description of a kc_status; never NULL. */
const char *kc_strerror(int code);

/* Free the strings of err and zero it. err may be NULL. */
void kc_error_clear(kc_error *err);

/*
 * Set err (if non-NULL) to code with a printf-style message, replacing what it
 * held. Returns code so callers can `return kc_error_set(err, ...)`.
 */
int kc_error_set(kc_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Decode a non-2xx answer into err. body may be NULL or not JSON (then the
 * message is taken from the HTTP status). Returns the kc_status chosen: a
 * Kubernetes Status' reason wins over the bare HTTP code (409 AlreadyExists vs
 * Conflict; 500 with reason Timeout is KC_ERR_SERVER_TIMEOUT).
 */
int kc_error_from_response(kc_error *err, long http_status, const char *body, size_t body_len,
                           double retry_after);

/* Same, from an already-parsed Status object (borrowed). Used for watch ERROR events. */
int kc_error_from_status(kc_error *err, long http_status, struct json_object *status);

/* Map an HTTP status code (and optional Status reason) to a kc_status. */
int kc_status_from_http(long http_status, const char *reason);

/* True for codes worth retrying on an idempotent request (transport, 429, 5xx). */
bool kc_status_is_retryable(int code);

#endif
