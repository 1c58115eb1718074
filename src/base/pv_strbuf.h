/*
 * pv_strbuf - a growable, NUL-terminated string built by appending.
 *
 * The one string buffer of the process: the client builds URLs and header
 * lines with it and receives response bodies into it (bounded by max), the
 * manager builds its /metrics text and probe answers. Callers add their own
 * escaping (URL, Prometheus HELP and label values) on top.
 *
 * Out of memory is sticky: the first append that cannot grow the buffer sets
 * oom and every later append is a no-op, so a caller appends a whole text
 * without checking each step and looks at oom (or at pv_strbuf_take's
 * result) once at the end. The text built before the failure stays allocated
 * until pv_strbuf_take or pv_strbuf_free.
 *
 * A bound: with max > 0, an append that would make len exceed max appends
 * nothing and sets too_large, which is sticky like oom (a response body
 * over its limit is refused whole, never cut). max == 0 is no bound.
 *
 * Ownership: a pv_strbuf is caller-owned (on the stack or inside another
 * struct); {0} is an empty buffer with nothing allocated. The buffer owns p
 * until pv_strbuf_take hands it over; every buffer ends in pv_strbuf_take or
 * pv_strbuf_free. Pointers into p are borrowed and valid until the next
 * append (which may move it), so what is appended (s, addf's arguments)
 * must never point into the same buffer. Threading: none; one thread at a
 * time per buffer.
 *
 * The fields are public so callers can read the text in place, fail a
 * build from outside (set oom when an allocation of their own failed), and
 * adopt a string they already hold: p malloc'd, len = strlen(p), cap >=
 * len + 1.
 */
#ifndef PROVISIO_PV_STRBUF_H
#define PROVISIO_PV_STRBUF_H

#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>

typedef struct pv_strbuf {
    char *p;        /* NULL until the first append; then p[len] == '\0' */
    size_t len;     /* bytes appended, the NUL excluded; addn may add NUL bytes */
    size_t cap;     /* bytes allocated at p */
    size_t max;     /* > 0: len never exceeds it (see too_large); 0: no bound */
    bool oom;       /* sticky: an append failed; nothing is appended any more */
    bool too_large; /* sticky: an append would have passed max; nothing appended */
} pv_strbuf;

/*
 * Make room for extra more bytes (and the NUL) without changing the text,
 * so a caller can write into p + len itself (then add to len and set the
 * NUL). Returns false, with oom set, when oom was already set or the memory
 * cannot be had (a size that overflows counts as that). Allocates even for
 * extra == 0 on an empty buffer, which leaves p == "".
 */
bool pv_strbuf_reserve(pv_strbuf *b, size_t extra);

/*
 * Append n bytes of s (borrowed; may hold NUL bytes). n == 0 still allocates
 * p. Returns false when nothing was appended: oom or too_large is set (now
 * or from before).
 */
bool pv_strbuf_addn(pv_strbuf *b, const char *s, size_t n);

/* Append the NUL-terminated s (borrowed). */
void pv_strbuf_add(pv_strbuf *b, const char *s);

/*
 * Append printf-style output, however long. A vsnprintf failure (output
 * over INT_MAX bytes, an unconvertible wide character) sets oom too, so a
 * caller never gets a silently truncated text.
 */
void pv_strbuf_addf(pv_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Hand the text over: returns it malloc'd and NUL-terminated (the caller
 * frees it), with its length in *len when len is non-NULL, and leaves b
 * empty ({0}). A buffer nothing was appended to gives a fresh "". Returns
 * NULL (and *len = 0) only when oom or too_large is set: what was built is
 * then freed.
 */
char *pv_strbuf_take(pv_strbuf *b, size_t *len);

/*
 * Empty b for reuse, keeping its memory and max: len 0, p "" (when p
 * exists), oom and too_large cleared.
 */
void pv_strbuf_reset(pv_strbuf *b);

/* Free the text and zero b (oom, too_large and max included). b may be NULL. */
void pv_strbuf_free(pv_strbuf *b);

/*
 * vasprintf, with the allocation made here: malloc is called from code built
 * with frame pointers, so a sanitizer's leak report names the caller (glibc's
 * vasprintf, built without them, cuts the stack at itself). Returns the
 * length, or -1 with *out NULL.
 */
int pv_vasprintf(char **out, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

#endif
