/*
 * pv_strbuf - growable string (see pv_strbuf.h).
 *
 * The capacity doubles from PV_STRBUF_MIN, so n appends cost O(n) copies in
 * all; sizes are checked before they are added, so a huge append sets oom
 * instead of wrapping around. addf formats straight into the free space and,
 * when that is too short, grows once to the exact size vsnprintf reported
 * and formats again.
 */
#include "pv_strbuf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PV_STRBUF_MIN 64

bool pv_strbuf_reserve(pv_strbuf *b, size_t extra)
{
    if (b->oom || b->too_large)
        return false;
    if (b->max > 0 && (extra > b->max || b->len > b->max - extra)) {
        b->too_large = true;
        return false;
    }
    if (extra > SIZE_MAX - 1 - b->len) {
        b->oom = true;
        return false;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : PV_STRBUF_MIN;
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

bool pv_strbuf_addn(pv_strbuf *b, const char *s, size_t n)
{
    if (!pv_strbuf_reserve(b, n))
        return false;
    if (n)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return true;
}

void pv_strbuf_add(pv_strbuf *b, const char *s)
{
    pv_strbuf_addn(b, s, strlen(s));
}

void pv_strbuf_addf(pv_strbuf *b, const char *fmt, ...)
{
    if (b->oom || b->too_large)
        return;
    size_t room = b->cap - b->len; /* >= 1 once p exists: the NUL's byte */
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? room : 0, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < room && b->max > 0 && (size_t)n > b->max - b->len) {
        b->too_large = true; /* it fit in the memory but not under the bound */
    } else if (n >= 0 && (size_t)n >= room) {
        /* Too short (or no p yet): what vsnprintf wrote is cut; redo it in full. */
        if (pv_strbuf_reserve(b, (size_t)n)) {
            va_start(ap, fmt);
            int again = vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
            va_end(ap);
            if (again != n)
                n = -1;
        }
    }
    if (b->too_large) {
        if (b->p)
            b->p[b->len] = '\0'; /* drop any partial output */
        return;
    }
    if (n < 0 || b->oom) {
        b->oom = true;
        if (b->p)
            b->p[b->len] = '\0'; /* drop any partial output */
        return;
    }
    b->len += (size_t)n;
}

char *pv_strbuf_take(pv_strbuf *b, size_t *len)
{
    if (len)
        *len = 0;
    if (!b->oom && !b->too_large && !b->p)
        (void)pv_strbuf_reserve(b, 0);
    if (b->oom || b->too_large) {
        pv_strbuf_free(b);
        return NULL;
    }
    char *s = b->p;
    if (len)
        *len = b->len;
    *b = (pv_strbuf){0};
    return s;
}

void pv_strbuf_reset(pv_strbuf *b)
{
    b->len = 0;
    b->oom = false;
    b->too_large = false;
    if (b->p)
        b->p[0] = '\0';
}

void pv_strbuf_free(pv_strbuf *b)
{
    if (!b)
        return;
    free(b->p);
    *b = (pv_strbuf){0};
}

int pv_vasprintf(char **out, const char *fmt, va_list ap)
{
    *out = NULL;
    char small[256];
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return -1;
    char *s = malloc((size_t)n + 1);
    if (!s)
        return -1;
    if ((size_t)n < sizeof small)
        memcpy(s, small, (size_t)n + 1);
    else if (vsnprintf(s, (size_t)n + 1, fmt, ap) != n) {
        free(s);
        return -1;
    }
    *out = s;
    return n;
}
