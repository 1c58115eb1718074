/*
 * kc_strbuf - a growable, NUL-terminated string built by appending.
 *
 * The one string builder of the process: the client builds URLs and header
 * lines with it, the manager its /metrics text and probe answers. Callers
 * add their own escaping (URL, Prometheus HELP and label values) on top.
 *
 * Out of memory is sticky: the first append that cannot grow the buffer sets
 * oom and every later append is a no-op, so a caller appends a whole text
 * without checking each step and looks at oom (or at kc_strbuf_take's
 * result) once at the end. The text built before the failure stays allocated
 * until kc_strbuf_take or kc_strbuf_free.
 *
 * Ownership: a kc_strbuf is caller-owned (on the stack or inside another
 * struct); {0} is an empty buffer with nothing allocated. The buffer owns p
 * until kc_strbuf_take hands it over; every buffer ends in kc_strbuf_take or
 * kc_strbuf_free. Pointers into p are borrowed and valid until the next
 * append (which may move it), so what is appended (s, addf's arguments)
 * must never point into the same buffer. Threading: none; one thread at a
 * time per buffer.
 *
 * The fields are public so callers can read the text in place, fail a
 * build from outside (set oom when an allocation of their own failed), and
 * adopt a string they already hold: p malloc'd, len = strlen(p), cap >=
 * len + 1.
 */
#ifndef PROVISIO_KC_STRBUF_H
#define PROVISIO_KC_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct kc_strbuf {
    char *p;    /* NULL until the first append; then p[len] == '\0' */
    size_t len; /* bytes appended, the NUL excluded; addn may add NUL bytes */
    size_t cap; /* bytes allocated at p */
    bool oom;   /* sticky: an append failed; nothing is appended any more */
} kc_strbuf;

/*
 * Make room for extra more bytes (and the NUL) without changing the text,
 * so a caller can write into p + len itself (then add to len and set the
 * NUL). Returns false, with oom set, when oom was already set or the memory
 * cannot be had (a size that overflows counts as that). Allocates even for
 * extra == 0 on an empty buffer, which leaves p == "".
 */
bool kc_strbuf_reserve(kc_strbuf *b, size_t extra);

/* Append n bytes of s (borrowed; may hold NUL bytes). n == 0 still allocates p. */
void kc_strbuf_addn(kc_strbuf *b, const char *s, size_t n);

/* Append the NUL-terminated s (borrowed). */
void kc_strbuf_add(kc_strbuf *b, const char *s);

/*
 * Append printf-style output, however long. A vsnprintf failure (output
 * over INT_MAX bytes, an unconvertible wide character) sets oom too, so a
 * caller never gets a silently truncated text.
 */
void kc_strbuf_addf(kc_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Hand the text over: returns it malloc'd and NUL-terminated (the caller
 * frees it), with its length in *len when len is non-NULL, and leaves b
 * empty ({0}). A buffer nothing was appended to gives a fresh "". Returns
 * NULL (and *len = 0) only when oom is set: what was built is then freed.
 */
char *kc_strbuf_take(kc_strbuf *b, size_t *len);

/* Free the text and zero b (oom included). b may be NULL. */
void kc_strbuf_free(kc_strbuf *b);

#endif
