/*
 * log - structured JSON lines (see log.h for the format and the API).
 *
 * How it works: log_write formats the whole line (fields, escaping, the
 * trailing newline) into a pv_strbuf owned by the call, then takes one
 * process-wide mutex only to hand the finished bytes to the output: write(2)
 * on fd 2 by default, or fwrite+fflush on the FILE* a test installed. Holding
 * the mutex across the whole write (including partial-write retries) is what
 * keeps lines of different threads from interleaving.
 *
 * Invariants: every emitted line is one valid JSON object followed by '\n'.
 * Caller strings are escaped per RFC 8259 and invalid UTF-8 is replaced by
 * U+FFFD, so nothing a caller passes (object names from the API server,
 * error text) can break the framing. If memory runs out mid-line the line is
 * replaced by a fixed notice rather than written half-formatted.
 *
 * The threshold is a relaxed atomic: a line racing a level change may go
 * either way, which is fine for logging.
 */
#include "log.h"

#include "kc_error.h"
#include "pv_strbuf.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int g_level = PLOG_INFO;
static pthread_mutex_t g_out_mu = PTHREAD_MUTEX_INITIALIZER;
static FILE *g_out; /* NULL: fd 2. Guarded by g_out_mu. */

/* ---- line formatting ----------------------------------------------------- */

/*
 * A line's buffer starts at this size, so most lines take one malloc and a
 * longer one a realloc or two (the capacity doubles).
 */
#define LOG_LINE_START 256

static void lb_putc(pv_strbuf *b, char c)
{
    pv_strbuf_addn(b, &c, 1);
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the 2nd byte */
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0; /* no overlong forms */
        else if (c == 0xED)
            hi = 0x9F; /* no UTF-16 surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F; /* nothing past U+10FFFF */
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

/* Append s as a quoted JSON string. */
static void lb_json_str(pv_strbuf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    lb_putc(b, '"');
    size_t i = 0;
    while (i < n) {
        /* Copy the longest run that needs no escaping in one go. */
        size_t run = i;
        while (run < n && p[run] >= 0x20 && p[run] < 0x7F && p[run] != '"' && p[run] != '\\')
            run++;
        if (run > i) {
            pv_strbuf_addn(b, s + i, run - i);
            i = run;
            continue;
        }
        unsigned char c = p[i];
        switch (c) {
        case '"':
            pv_strbuf_add(b, "\\\"");
            i++;
            continue;
        case '\\':
            pv_strbuf_add(b, "\\\\");
            i++;
            continue;
        case '\n':
            pv_strbuf_add(b, "\\n");
            i++;
            continue;
        case '\r':
            pv_strbuf_add(b, "\\r");
            i++;
            continue;
        case '\t':
            pv_strbuf_add(b, "\\t");
            i++;
            continue;
        case '\b':
            pv_strbuf_add(b, "\\b");
            i++;
            continue;
        case '\f':
            pv_strbuf_add(b, "\\f");
            i++;
            continue;
        default:
            break;
        }
        if (c < 0x20 || c == 0x7F) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xF]};
            pv_strbuf_addn(b, esc, sizeof esc);
            i++;
            continue;
        }
        size_t len = utf8_seq_len(p + i, n - i);
        if (len == 0) {
            pv_strbuf_add(b, "\\ufffd");
            i++;
        } else {
            pv_strbuf_addn(b, s + i, len);
            i += len;
        }
    }
    lb_putc(b, '"');
}

/* Shortest %g form that reads back as the same double. */
static void lb_json_double(pv_strbuf *b, double v)
{
    if (v != v) {
        pv_strbuf_add(b, "\"NaN\"");
        return;
    }
    if (v > 1.7976931348623157e308) {
        pv_strbuf_add(b, "\"+Inf\"");
        return;
    }
    if (v < -1.7976931348623157e308) {
        pv_strbuf_add(b, "\"-Inf\"");
        return;
    }
    char tmp[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    pv_strbuf_add(b, tmp);
}

static void lb_timestamp(pv_strbuf *b)
{
    struct timespec ts;
    struct tm tm;
    char tmp[64];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(tmp, sizeof tmp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(tmp + n, sizeof tmp - n, ".%06ldZ", ts.tv_nsec / 1000);
    lb_putc(b, '"');
    pv_strbuf_add(b, tmp);
    lb_putc(b, '"');
}

/* ---- output ------------------------------------------------------------ */

static void write_all_fd(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report it */
        }
        p += w;
        n -= (size_t)w;
    }
}

static void emit(const char *p, size_t n)
{
    pthread_mutex_lock(&g_out_mu);
    if (g_out) {
        fwrite(p, 1, n, g_out);
        fflush(g_out);
    } else {
        write_all_fd(STDERR_FILENO, p, n);
    }
    pthread_mutex_unlock(&g_out_mu);
}

/* ---- public ------------------------------------------------------------ */

const char *log_level_name(plog_level level)
{
    switch (level) {
    case PLOG_DEBUG:
        return "debug";
    case PLOG_INFO:
        return "info";
    case PLOG_ERROR:
        return "error";
    default:
        return "off";
    }
}

bool log_enabled(plog_level level)
{
    return (int)level >= atomic_load_explicit(&g_level, memory_order_relaxed) && level < PLOG_OFF;
}

void log_set_level(plog_level level)
{
    atomic_store_explicit(&g_level, (int)level, memory_order_relaxed);
}

plog_level log_get_level(void)
{
    return (plog_level)atomic_load_explicit(&g_level, memory_order_relaxed);
}

int log_parse_level(const char *s, plog_level *out)
{
    if (!s || !*s || !out)
        return KC_ERR_INVALID_ARG;
    if (strcmp(s, "debug") == 0) {
        *out = PLOG_DEBUG;
        return 0;
    }
    if (strcmp(s, "info") == 0) {
        *out = PLOG_INFO;
        return 0;
    }
    if (strcmp(s, "error") == 0) {
        *out = PLOG_ERROR;
        return 0;
    }
    if (strcmp(s, "panic") == 0) {
        *out = PLOG_OFF;
        return 0;
    }
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0)
        return KC_ERR_INVALID_ARG;
    *out = v == 0 ? PLOG_INFO : PLOG_DEBUG;
    return 0;
}

void log_set_output(FILE *f)
{
    pthread_mutex_lock(&g_out_mu);
    g_out = f;
    pthread_mutex_unlock(&g_out_mu);
}

void log_write(plog_level level, const char *logger, const char *msg, ...)
{
    if (!log_enabled(level))
        return;

    pv_strbuf b = {0};
    (void)pv_strbuf_reserve(&b, LOG_LINE_START - 1); /* failure: b.oom, the notice below */
    pv_strbuf_add(&b, "{\"level\":");
    lb_json_str(&b, log_level_name(level));
    pv_strbuf_add(&b, ",\"ts\":");
    lb_timestamp(&b);
    if (logger) {
        pv_strbuf_add(&b, ",\"logger\":");
        lb_json_str(&b, logger);
    }
    pv_strbuf_add(&b, ",\"msg\":");
    lb_json_str(&b, msg ? msg : "");

    va_list ap;
    va_start(ap, msg);
    const char *key;
    while ((key = va_arg(ap, const char *)) != NULL) {
        char tag = key[0];
        if (tag == PLOG_TAG_INT[0] || tag == PLOG_TAG_DBL[0] || tag == PLOG_TAG_BOOL[0])
            key++;
        lb_putc(&b, ',');
        lb_json_str(&b, key);
        lb_putc(&b, ':');
        if (tag == PLOG_TAG_INT[0]) {
            char tmp[32];
            snprintf(tmp, sizeof tmp, "%lld", va_arg(ap, long long));
            pv_strbuf_add(&b, tmp);
        } else if (tag == PLOG_TAG_DBL[0]) {
            lb_json_double(&b, va_arg(ap, double));
        } else if (tag == PLOG_TAG_BOOL[0]) {
            pv_strbuf_add(&b, va_arg(ap, int) ? "true" : "false");
        } else {
            const char *v = va_arg(ap, const char *);
            if (v)
                lb_json_str(&b, v);
            else
                pv_strbuf_add(&b, "null");
        }
    }
    va_end(ap);
    pv_strbuf_add(&b, "}\n");

    if (b.oom) {
        static const char notice[] =
            "{\"level\":\"error\",\"msg\":\"log: out of memory formatting a line\"}\n";
        emit(notice, sizeof notice - 1);
    } else {
        emit(b.p, b.len);
    }
    pv_strbuf_free(&b);
}
