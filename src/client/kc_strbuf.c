/*
 * kc_strbuf - growable string (see kc_strbuf.h).
 *
 * The capacity doubles from KC_STRBUF_MIN, so n appends cost O(n) copies in
 * all; sizes are checked before they are added, so a huge append sets oom
 * instead of wrapping around. addf formats straight into the free space and,
 * when that is too short, grows once to the exact size vsnprintf reported
 * and formats again.
 */
#include "kc_strbuf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KC_STRBUF_MIN 64

bool kc_strbuf_reserve(kc_strbuf *b, size_t extra)
{
    if (b->oom)
        return false;
    if (extra > SIZE_MAX - 1 - b->len) {
        b->oom = true;
        return false;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : KC_STRBUF_MIN;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *np = realloc(b->p, cap);
    if (!np) {
        b->oom = true;
        return false;
    }
    np[b->len] = '\0'; /* a buffer that had no p gets its terminator here */
    b->p = np;
    b->cap = cap;
    return true;
}

void kc_strbuf_addn(kc_strbuf *b, const char *s, size_t n)
{
    if (!kc_strbuf_reserve(b, n))
        return;
    if (n)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void kc_strbuf_add(kc_strbuf *b, const char *s)
{
    kc_strbuf_addn(b, s, strlen(s));
}

void kc_strbuf_addf(kc_strbuf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    size_t room = b->cap - b->len; /* >= 1 once p exists: the NUL's byte */
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? room : 0, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n >= room) {
        /* Too short (or no p yet): what vsnprintf wrote is cut; redo it in full. */
        if (kc_strbuf_reserve(b, (size_t)n)) {
            va_start(ap, fmt);
            int again = vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
            va_end(ap);
            if (again != n)
                n = -1;
        }
    }
    if (n < 0 || b->oom) {
        b->oom = true;
        if (b->p)
            b->p[b->len] = '\0'; /* drop any partial output */
        return;
    }
    b->len += (size_t)n;
}

char *kc_strbuf_take(kc_strbuf *b, size_t *len)
{
    if (len)
        *len = 0;
    if (!b->oom && !b->p)
        (void)kc_strbuf_reserve(b, 0);
    if (b->oom) {
        kc_strbuf_free(b);
        return NULL;
    }
    char *s = b->p;
    if (len)
        *len = b->len;
    *b = (kc_strbuf){0};
    return s;
}

void kc_strbuf_free(kc_strbuf *b)
{
    if (!b)
        return;
    free(b->p);
    *b = (kc_strbuf){0};
}
