/* Unit tests of pv_strbuf: growth, lengths, formatting, hand-over, sticky oom, the bound. */
#include <criterion/criterion.h>

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "pv_strbuf.h"

/* The buffer's invariant: p holds len bytes and a NUL within cap. */
static void assert_well_formed(const pv_strbuf *b)
{
    cr_assert_not_null(b->p);
    cr_assert(b->cap >= b->len + 1, "cap %zu < len %zu + 1", b->cap, b->len);
    cr_assert_eq(b->p[b->len], '\0', "no NUL at p[len]");
}

Test(strbuf, grows_past_many_reallocations_keeping_every_byte)
{
    pv_strbuf b = {0};
    const size_t total = 200000;
    size_t grows = 0, last_cap = 0;
    for (size_t i = 0; i < total; i++) {
        char c = (char)('a' + i % 26);
        pv_strbuf_addn(&b, &c, 1);
        if (b.cap != last_cap) {
            grows++;
            last_cap = b.cap;
        }
    }
    cr_assert_not(b.oom);
    cr_assert_eq(b.len, total);
    assert_well_formed(&b);
    cr_assert_geq(grows, 10, "only %zu reallocations for %zu bytes", grows, total);
    cr_assert_lt(b.cap, 4 * total, "capacity %zu not proportional to %zu bytes", b.cap, total);
    for (size_t i = 0; i < total; i++)
        cr_assert_eq(b.p[i], (char)('a' + i % 26), "byte %zu changed while growing", i);
    pv_strbuf_free(&b);
}

Test(strbuf, large_single_append_grows_at_once)
{
    pv_strbuf b = {0};
    pv_strbuf_add(&b, "head:");
    size_t n = 1 << 20;
    char *big = malloc(n);
    cr_assert_not_null(big);
    memset(big, 'z', n);
    pv_strbuf_addn(&b, big, n);
    cr_assert_not(b.oom);
    cr_assert_eq(b.len, 5 + n);
    assert_well_formed(&b);
    cr_assert_eq(memcmp(b.p, "head:", 5), 0);
    cr_assert_eq(memcmp(b.p + 5, big, n), 0);
    free(big);
    pv_strbuf_free(&b);
}

Test(strbuf, embedded_nul_bytes_count_in_len)
{
    pv_strbuf b = {0};
    pv_strbuf_addn(&b, "a\0b", 3);
    pv_strbuf_add(&b, "cd");
    pv_strbuf_addn(&b, "\0", 1);
    cr_assert_eq(b.len, 6);
    assert_well_formed(&b);
    cr_assert_eq(memcmp(b.p, "a\0bcd\0", 7), 0);
    size_t len = 0;
    char *s = pv_strbuf_take(&b, &len);
    cr_assert_eq(len, 6, "take reports the length, not strlen");
    cr_assert_eq(memcmp(s, "a\0bcd\0", 7), 0);
    free(s);
}

Test(strbuf, empty_append_allocates_an_empty_string)
{
    pv_strbuf b = {0};
    pv_strbuf_addn(&b, "", 0);
    cr_assert_eq(b.len, 0);
    assert_well_formed(&b);
    cr_assert_str_eq(b.p, "");
    pv_strbuf_free(&b);

    pv_strbuf r = {0};
    cr_assert(pv_strbuf_reserve(&r, 0));
    cr_assert_str_eq(r.p, "");
    cr_assert(pv_strbuf_reserve(&r, 1000));
    cr_assert_geq(r.cap, 1001);
    cr_assert_eq(r.len, 0);
    cr_assert_str_eq(r.p, "", "reserve leaves the text as it was");
    pv_strbuf_free(&r);
}

Test(strbuf, addf_formats_long_output)
{
    pv_strbuf b = {0};
    pv_strbuf_add(&b, "x=");
    size_t n = 100000;
    char *arg = malloc(n + 1);
    cr_assert_not_null(arg);
    memset(arg, 'q', n);
    arg[n] = '\0';
    pv_strbuf_addf(&b, "[%s] %d %s", arg, 42, "end");
    cr_assert_not(b.oom);
    cr_assert_eq(b.len, 2 + 1 + n + 1 + 7);
    assert_well_formed(&b);
    cr_assert_eq(memcmp(b.p, "x=[", 3), 0);
    cr_assert_eq(memcmp(b.p + 3, arg, n), 0);
    cr_assert_str_eq(b.p + 3 + n, "] 42 end");
    free(arg);
    pv_strbuf_free(&b);
}

Test(strbuf, addf_on_empty_buffer_and_empty_output)
{
    pv_strbuf b = {0};
    pv_strbuf_addf(&b, "%s", "");
    cr_assert_eq(b.len, 0);
    assert_well_formed(&b);
    pv_strbuf_addf(&b, "%05.1f|%x|%c", 3.14159, 255u, 'k');
    cr_assert_str_eq(b.p, "003.1|ff|k");
    cr_assert_eq(b.len, strlen("003.1|ff|k"));
    pv_strbuf_free(&b);
}

/*
 * Output one byte short of the free space, filling it exactly with its NUL,
 * and one byte too long (vsnprintf cuts it: the buffer must grow and redo).
 */
Test(strbuf, addf_at_the_capacity_boundary)
{
    for (int extra = -1; extra <= 1; extra++) {
        pv_strbuf b = {0};
        pv_strbuf_add(&b, "abc");
        size_t room = b.cap - b.len; /* bytes for text and NUL */
        size_t want = extra < 0 ? room - 2 : extra == 0 ? room - 1 : room;
        char *arg = malloc(want + 1);
        cr_assert_not_null(arg);
        memset(arg, 'w', want);
        arg[want] = '\0';
        char *before = b.p;
        pv_strbuf_addf(&b, "%s", arg);
        cr_assert_not(b.oom);
        cr_assert_eq(b.len, 3 + want);
        assert_well_formed(&b);
        cr_assert_eq(memcmp(b.p, "abc", 3), 0);
        cr_assert_str_eq(b.p + 3, arg, "extra %d", extra);
        if (extra <= 0)
            cr_assert_eq(b.p, before, "output that fits must not move the buffer");
        free(arg);
        pv_strbuf_free(&b);
    }
}

Test(strbuf, take_hands_over_the_text_and_empties_the_buffer)
{
    pv_strbuf b = {0};
    pv_strbuf_add(&b, "hello");
    pv_strbuf_addf(&b, ", %s", "world");
    size_t len = 99;
    char *s = pv_strbuf_take(&b, &len);
    cr_assert_str_eq(s, "hello, world");
    cr_assert_eq(len, 12);
    cr_assert_null(b.p);
    cr_assert_eq(b.len, 0);
    cr_assert_eq(b.cap, 0);
    cr_assert_not(b.oom);

    /* The emptied buffer is usable again and owns a new string. */
    pv_strbuf_add(&b, "again");
    char *t = pv_strbuf_take(&b, NULL);
    cr_assert_str_eq(t, "again");
    cr_assert_neq(s, t);
    free(s);
    free(t);

    /* Nothing appended: a fresh "", never NULL. */
    pv_strbuf e = {0};
    char *empty = pv_strbuf_take(&e, &len);
    cr_assert_not_null(empty);
    cr_assert_str_eq(empty, "");
    cr_assert_eq(len, 0);
    free(empty);
}

Test(strbuf, free_zeroes_and_accepts_null)
{
    pv_strbuf_free(NULL);
    pv_strbuf b = {0};
    pv_strbuf_free(&b); /* never used */
    pv_strbuf_add(&b, "something");
    b.oom = true;
    pv_strbuf_free(&b);
    cr_assert_null(b.p);
    cr_assert_eq(b.len, 0);
    cr_assert_eq(b.cap, 0);
    cr_assert_not(b.oom, "free clears oom so the buffer can be reused");
    pv_strbuf_add(&b, "ok");
    cr_assert_str_eq(b.p, "ok");
    pv_strbuf_free(&b);
}

Test(strbuf, adopts_a_malloced_string)
{
    char *path = strdup("/api/v1/pods");
    cr_assert_not_null(path);
    size_t n = strlen(path);
    pv_strbuf b = {.p = path, .len = n, .cap = n + 1};
    pv_strbuf_add(&b, "?limit=");
    pv_strbuf_addf(&b, "%d", 500);
    char *s = pv_strbuf_take(&b, NULL);
    cr_assert_str_eq(s, "/api/v1/pods?limit=500");
    free(s);
}

/*
 * A size that cannot be had sets oom before any allocation is tried, so the
 * sticky path runs for real. (realloc itself returning NULL is not provoked:
 * under ASan a huge request aborts unless allocator_may_return_null is set.)
 */
Test(strbuf, oom_is_sticky_and_take_frees_the_partial_text)
{
    pv_strbuf b = {0};
    pv_strbuf_add(&b, "partial");
    char *before = b.p;
    pv_strbuf_addn(&b, "x", SIZE_MAX); /* never read: the size check fails first */
    cr_assert(b.oom);
    cr_assert_eq(b.p, before, "the text built so far is kept");
    cr_assert_eq(b.len, 7);
    cr_assert_str_eq(b.p, "partial");

    pv_strbuf_add(&b, " more");
    pv_strbuf_addn(&b, "y", 1);
    pv_strbuf_addf(&b, "%d", 7);
    cr_assert_not(pv_strbuf_reserve(&b, 1));
    cr_assert(b.oom);
    cr_assert_eq(b.len, 7, "appends after oom are no-ops");
    cr_assert_str_eq(b.p, "partial");

    size_t len = 99;
    cr_assert_null(pv_strbuf_take(&b, &len));
    cr_assert_eq(len, 0);
    cr_assert_null(b.p, "take freed the partial text (LeakSanitizer checks it)");
    cr_assert_not(b.oom);
}

Test(strbuf, reserve_that_overflows_sets_oom)
{
    pv_strbuf b = {0};
    pv_strbuf_add(&b, "ab");
    cr_assert_not(pv_strbuf_reserve(&b, SIZE_MAX - 2)); /* len + extra + 1 wraps */
    cr_assert(b.oom);
    cr_assert_str_eq(b.p, "ab");
    pv_strbuf_free(&b);
}

Test(strbuf, oom_set_by_the_caller_fails_take)
{
    pv_strbuf b = {0};
    pv_strbuf_add(&b, "half a render");
    b.oom = true; /* a caller's own allocation failed (met_render does this) */
    cr_assert_null(pv_strbuf_take(&b, NULL));
    cr_assert_null(b.p);
}

/*
 * vsnprintf failing (a wide character the C locale cannot convert) must not
 * leave a cut text behind: oom is set and the text is what it was.
 */
Test(strbuf, addf_that_vsnprintf_refuses_sets_oom)
{
    const wchar_t wide[] = {(wchar_t)0x263A, 0};
    pv_strbuf b = {0};
    pv_strbuf_add(&b, "abc");
    pv_strbuf_addf(&b, "%s%ls", "def", wide);
    cr_assert(b.oom, "vsnprintf should fail on U+263A in the C locale");
    cr_assert_eq(b.len, 3);
    cr_assert_str_eq(b.p, "abc", "partial output dropped");
    cr_assert_null(pv_strbuf_take(&b, NULL));
}

Test(strbuf, bound_refuses_an_append_whole_and_is_sticky)
{
    pv_strbuf b = {.max = 10};
    cr_assert(pv_strbuf_addn(&b, "0123456789", 10), "exactly max bytes fit");
    cr_assert_not(b.too_large);
    cr_assert_not(pv_strbuf_addn(&b, "x", 1), "one byte past max is refused");
    cr_assert(b.too_large);
    cr_assert_not(b.oom, "a bound is not an allocation failure");
    cr_assert_eq(b.len, 10, "nothing of the refused append is kept");
    cr_assert_str_eq(b.p, "0123456789");
    pv_strbuf_reset(&b);
    cr_assert_eq(b.max, 10, "reset keeps the bound");
    cr_assert(pv_strbuf_addn(&b, "abc", 3));
    b.max = 4;
    cr_assert_not(pv_strbuf_addn(&b, "de", 2), "a refused append...");
    cr_assert_not(pv_strbuf_addn(&b, "", 0),
                  "...leaves every later one refused, even an empty one");
    cr_assert_null(pv_strbuf_take(&b, NULL), "a buffer over its bound hands nothing over");
    cr_assert_null(b.p);
}

Test(strbuf, bound_applies_to_addf_even_when_the_memory_has_room)
{
    pv_strbuf b = {0};
    pv_strbuf_add(&b, "abcd");
    cr_assert_geq(b.cap, 64, "the first allocation leaves room for the formatted text");
    b.max = 8;
    pv_strbuf_addf(&b, "%d", 12345); /* 4 + 5 > 8 though it fits in cap */
    cr_assert(b.too_large);
    cr_assert_eq(b.len, 4);
    cr_assert_str_eq(b.p, "abcd", "the partial formatted output is dropped");
    pv_strbuf_free(&b);
    cr_assert_eq(b.max, 0);
    cr_assert_not(b.too_large);
}

Test(strbuf, reset_empties_for_reuse_without_freeing)
{
    pv_strbuf b = {0};
    pv_strbuf_add(&b, "first answer, retried");
    char *mem = b.p;
    size_t cap = b.cap;
    b.oom = true;
    pv_strbuf_reset(&b);
    cr_assert_not(b.oom);
    cr_assert_eq(b.len, 0);
    cr_assert_eq(b.p, mem, "reset keeps the allocation");
    cr_assert_eq(b.cap, cap);
    cr_assert_str_eq(b.p, "");
    pv_strbuf_add(&b, "second");
    cr_assert_str_eq(b.p, "second");
    pv_strbuf_free(&b);
    pv_strbuf empty = {0};
    pv_strbuf_reset(&empty); /* nothing allocated: stays so */
    cr_assert_null(empty.p);
}

static int fmt(char **out, const char *f, ...) __attribute__((format(printf, 2, 3)));
static int fmt(char **out, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int n = pv_vasprintf(out, f, ap);
    va_end(ap);
    return n;
}

Test(strbuf, vasprintf_formats_short_and_long_text_exactly)
{
    char *s = NULL;
    cr_assert_eq(fmt(&s, "%s %d", "PUT", 404), 7);
    cr_assert_str_eq(s, "PUT 404");
    free(s);
    /* Past the first try's 256 bytes: formatted a second time, in full. */
    char big[1001];
    memset(big, 'x', 1000);
    big[1000] = '\0';
    cr_assert_eq(fmt(&s, "<%s>%d", big, 7), 1003);
    cr_assert_eq(strlen(s), 1003);
    cr_assert_eq(s[0], '<');
    cr_assert_eq(s[1000], 'x');
    cr_assert_str_eq(s + 1001, ">7");
    free(s);
    cr_assert_eq(fmt(&s, "%s", ""), 0);
    cr_assert_str_eq(s, "");
    free(s);
}
