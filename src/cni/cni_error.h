/*
 * cni_error - the error of provisio-cni, as the CNI specification 1.1 shapes it.
 *
 * A plugin that fails prints one error object on stdout and exits non-zero:
 *   {"cniVersion": "1.1.0", "code": 7, "msg": "...", "details": "..."}
 * `code` is one of the specification's (1-99, below) or one of this plugin's
 * own (100 and up); `msg` says what is wrong and what to do about it, for a
 * person reading `kubectl describe pod` (the runtime shows it in the sandbox
 * failure Event); `details` carries what the layer below said (the API
 * server's Status message, a parser's position).
 *
 * Functions that can fail return 0 or the negated code (-CNI_ERR_...), and
 * fill a cni_error when the caller passes one.
 *
 * Threading: none of its own; a cni_error belongs to one thread.
 */
#ifndef PROVISIO_CNI_ERROR_H
#define PROVISIO_CNI_ERROR_H

#include <stdbool.h>

/* Codes of the CNI specification ("Error" section). */
enum {
    CNI_ERR_INCOMPATIBLE_VERSION = 1, /* cniVersion not supported, or too old for the command */
    CNI_ERR_UNSUPPORTED_FIELD = 2,    /* a configuration field this plugin cannot honour */
    CNI_ERR_UNKNOWN_CONTAINER = 3,    /* CHECK: nothing is held for this attachment */
    CNI_ERR_INVALID_ENV = 4,          /* CNI_* or CNI_ARGS missing or malformed */
    CNI_ERR_IO = 5,                   /* reading stdin, the kubeconfig, writing stdout */
    CNI_ERR_DECODE = 6,               /* stdin is not a JSON object */
    CNI_ERR_INVALID_CONFIG = 7,       /* the network configuration is wrong (missing pool, ...) */
    CNI_ERR_TRY_AGAIN = 11,           /* transient: API server unreachable, pool full, timeout */
    CNI_ERR_NOT_AVAILABLE = 50,       /* STATUS: the plugin cannot serve ADDs now */
    /* This plugin's own codes (the specification leaves 100 and up to plugins). */
    CNI_ERR_API_REFUSED = 100,    /* the API server refused: credentials or RBAC */
    CNI_ERR_CHECK_MISMATCH = 101, /* CHECK: the claim holds another address than prevResult */
    CNI_ERR_INTERNAL = 102,       /* out of memory, or an answer that makes no sense */
};

typedef struct cni_error {
    int code;      /* one of the codes above; 0 while empty */
    char *msg;     /* owned; never NULL once code is set */
    char *details; /* owned; may be NULL */
} cni_error;

#define CNI_ERROR_INIT                                                                             \
    {                                                                                              \
        0, NULL, NULL                                                                              \
    }

/*
 * Set e (if non-NULL) to code with a printf-style msg, replacing what it held;
 * details (borrowed, copied) may be NULL. Returns -code. When memory runs out
 * e keeps the code and a static message, so the plugin still says why.
 */
int cni_error_set(cni_error *e, int code, const char *details, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Free e's strings and zero it. e may be NULL. */
void cni_error_clear(cni_error *e);

/*
 * The error object for stdout, as a malloc'd NUL-terminated JSON text
 * (caller frees), or NULL when memory runs out. version (borrowed) is the
 * configuration's cniVersion, or NULL before it is known (then the newest
 * version this plugin speaks is written).
 */
char *cni_error_encode(const cni_error *e, const char *version);

#endif
