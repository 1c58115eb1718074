/*
 * log - structured logging, one JSON object per line.
 *
 * Every line looks like zap's production encoder as controller-runtime
 * configures it:
 *
 *   {"level":"info","ts":"2024-05-01T10:00:00.123456Z","logger":"pool",
 *    "msg":"reconciled","namespace":"ns","name":"a","reconcileID":"..."}
 *
 * Fields: level (debug|info|error), ts (RFC 3339, UTC, microseconds), logger
 * (omitted when NULL), msg, then the caller's key-value pairs in order. Every
 * string is JSON-escaped; bytes that are not valid UTF-8 become U+FFFD, so a
 * line is always valid JSON whatever the caller passes.
 *
 * Call sites pass key-value pairs and end the list with NULL:
 *
 *   log_info("starting workers", "controller", "ippool",
 *            LOG_INT("worker count", 4), NULL);
 *   log_error("reconcile failed", "namespace", ns, "name", name,
 *             "error", kc_strerror(rc), NULL);
 *
 * A plain key takes a `const char *` value (NULL prints as null). The
 * LOG_INT / LOG_DBL / LOG_BOOL macros mark a key whose value is a number or
 * a boolean: they expand to a tagged key and a value of the right type, so
 * always use them rather than writing the tag by hand.
 *
 * Secrets: the logger prints what it is given. Never pass tokens, client
 * keys, kubeconfig contents or Authorization headers; that is the caller's
 * job (DESIGN.md: no secret reaches a log).
 *
 * Threading: every function may be called from any thread. A line is
 * formatted into a private buffer and written with one write under a
 * process-wide mutex, so lines of different threads never interleave.
 */
#ifndef PROVISIO_LOG_H
#define PROVISIO_LOG_H

#include <stdbool.h>
#include <stdio.h>

/* Severity, lowest first. The names avoid <syslog.h>'s LOG_DEBUG & co. */
typedef enum plog_level {
    PLOG_DEBUG = 0,
    PLOG_INFO = 1,
    PLOG_ERROR = 2,
    PLOG_OFF = 3, /* threshold only: nothing is written */
} plog_level;

/* Key tags used by LOG_INT/LOG_DBL/LOG_BOOL (first byte of the key). */
#define PLOG_TAG_INT "\001"
#define PLOG_TAG_DBL "\002"
#define PLOG_TAG_BOOL "\003"

/* Typed values; `key` must be a string literal. */
#define LOG_INT(key, v) PLOG_TAG_INT key, (long long)(v)
#define LOG_DBL(key, v) PLOG_TAG_DBL key, (double)(v)
#define LOG_BOOL(key, v) PLOG_TAG_BOOL key, (int)((v) ? 1 : 0)

/*
 * Write one line at `level` when level >= the threshold. logger may be NULL
 * (no "logger" field); msg may be NULL (empty). The variadic part is
 * key, value pairs ended by a NULL key. Borrowed arguments are only read
 * during the call.
 */
void log_write(plog_level level, const char *logger, const char *msg, ...)
    __attribute__((sentinel));

#define log_debug(...) log_write(PLOG_DEBUG, NULL, __VA_ARGS__)
#define log_info(...) log_write(PLOG_INFO, NULL, __VA_ARGS__)
#define log_error(...) log_write(PLOG_ERROR, NULL, __VA_ARGS__)

/* True when a line at level would be written (skip costly formatting). */
bool log_enabled(plog_level level);

/* Set the threshold (default PLOG_INFO). Any thread; takes effect at once. */
void log_set_level(plog_level level);
plog_level log_get_level(void);

/*
 * Parse a --zap-log-level value: "debug", "info", "error", "panic" (nothing
 * of ours is written), or an integer: 0 is info, 1 and more is debug (zap's
 * custom verbosity levels; provisio has only one debug level).
 * Returns 0 and sets *out, or KC_ERR_INVALID_ARG.
 */
int log_parse_level(const char *s, plog_level *out);

/* The lower-case name of a level ("debug", "info", "error", "off"). */
const char *log_level_name(plog_level level);

/*
 * Send lines to f (borrowed: it must stay open until replaced) instead of
 * stderr; NULL goes back to stderr (fd 2, written with write(2)). For tests.
 */
void log_set_output(FILE *f);

#endif
