/* Unit tests of kc_strbuf: growth, lengths, formatting, hand-over, sticky oom. */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "kc_strbuf.h"

/* The buffer's invariant: p holds len bytes and a NUL within cap. */
static void assert_well_formed(const kc_strbuf *b)
{
    cr_assert_not_null(b->p);
    cr_assert(b->cap >= b->len + 1, "cap %zu < len %zu + 1", b->cap, b->len);
    cr_assert_eq(b->p[b->len], '\0', "no NUL at p[len]");
}

Test(strbuf, grows_past_many_reallocations_keeping_every_byte)
{
    kc_strbuf b = {0};
    const size_t total = 200000;
    size_t grows = 0, last_cap = 0;
    for (size_t i = 0; i < total; i++) {
        char c = (char)('a' + i % 26);
        kc_strbuf_addn(&b, &c, 1);
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
    kc_strbuf_free(&b);
}

Test(strbuf, large_single_append_grows_at_once)
{
    kc_strbuf b = {0};
    kc_strbuf_add(&b, "head:");
    size_t n = 1 << 20;
    char *big = malloc(n);
    cr_assert_not_null(big);
    memset(big, 'z', n);
    kc_strbuf_addn(&b, big, n);
    cr_assert_not(b.oom);
    cr_assert_eq(b.len, 5 + n);
    assert_well_formed(&b);
    cr_assert_eq(memcmp(b.p, "head:", 5), 0);
    cr_assert_eq(memcmp(b.p + 5, big, n), 0);
    free(big);
    kc_strbuf_free(&b);
}

Test(strbuf, embedded_nul_bytes_count_in_len)
{
    kc_strbuf b = {0};
    kc_strbuf_addn(&b, "a\0b", 3);
    kc_strbuf_add(&b, "cd");
    kc_strbuf_addn(&b, "\0", 1);
    cr_assert_eq(b.len, 6);
    assert_well_formed(&b);
    cr_assert_eq(memcmp(b.p, "a\0bcd\0", 7), 0);
    size_t len = 0;
    char *s = kc_strbuf_take(&b, &len);
    cr_assert_eq(len, 6, "take reports the length, not strlen");
    cr_assert_eq(memcmp(s, "a\0bcd\0", 7), 0);
    free(s);
}

Test(strbuf, empty_append_allocates_an_empty_string)
{
    kc_strbuf b = {0};
    kc_strbuf_addn(&b, "", 0);
    cr_assert_eq(b.len, 0);
    assert_well_formed(&b);
    cr_assert_str_eq(b.p, "");
    kc_strbuf_free(&b);

    kc_strbuf r = {0};
    cr_assert(kc_strbuf_reserve(&r, 0));
    cr_assert_str_eq(r.p, "");
    cr_assert(kc_strbuf_reserve(&r, 1000));
    cr_assert_geq(r.cap, 1001);
    cr_assert_eq(r.len, 0);
    cr_assert_str_eq(r.p, "", "reserve leaves the text as it was");
    kc_strbuf_free(&r);
}

Test(strbuf, addf_formats_long_output)
{
    kc_strbuf b = {0};
    kc_strbuf_add(&b, "x=");
    size_t n = 100000;
    char *arg = malloc(n + 1);
    cr_assert_not_null(arg);
    memset(arg, 'q', n);
    arg[n] = '\0';
    kc_strbuf_addf(&b, "[%s] %d %s", arg, 42, "end");
    cr_assert_not(b.oom);
    cr_assert_eq(b.len, 2 + 1 + n + 1 + 7);
    assert_well_formed(&b);
    cr_assert_eq(memcmp(b.p, "x=[", 3), 0);
    cr_assert_eq(memcmp(b.p + 3, arg, n), 0);
    cr_assert_str_eq(b.p + 3 + n, "] 42 end");
    free(arg);
    kc_strbuf_free(&b);
}

Test(strbuf, addf_on_empty_buffer_and_empty_output)
{
    kc_strbuf b = {0};
    kc_strbuf_addf(&b, "%s", "");
    cr_assert_eq(b.len, 0);
    assert_well_formed(&b);
    kc_strbuf_addf(&b, "%05.1f|%x|%c", 3.14159, 255u, 'k');
    cr_assert_str_eq(b.p, "003.1|ff|k");
    cr_assert_eq(b.len, strlen("003.1|ff|k"));
    kc_strbuf_free(&b);
}

/*
 * Output one byte short of the free space, filling it exactly with its NUL,
 * and one byte too long (vsnprintf cuts it: the buffer must grow and redo).
 */
Test(strbuf, addf_at_the_capacity_boundary)
{
    for (int extra = -1; extra <= 1; extra++) {
        kc_strbuf b = {0};
        kc_strbuf_add(&b, "abc");
        size_t room = b.cap - b.len; /* bytes for text and NUL */
        size_t want = extra < 0 ? room - 2 : extra == 0 ? room - 1 : room;
        char *arg = malloc(want + 1);
        cr_assert_not_null(arg);
        memset(arg, 'w', want);
        arg[want] = '\0';
        char *before = b.p;
        kc_strbuf_addf(&b, "%s", arg);
        cr_assert_not(b.oom);
        cr_assert_eq(b.len, 3 + want);
        assert_well_formed(&b);
        cr_assert_eq(memcmp(b.p, "abc", 3), 0);
        cr_assert_str_eq(b.p + 3, arg, "extra %d", extra);
        if (extra <= 0)
            cr_assert_eq(b.p, before, "output that fits must not move the buffer");
        free(arg);
        kc_strbuf_free(&b);
    }
}

Test(strbuf, take_hands_over_the_text_and_empties_the_buffer)
{
    kc_strbuf b = {0};
    kc_strbuf_add(&b, "hello");
    kc_strbuf_addf(&b, ", %s", "world");
    size_t len = 99;
    char *s = kc_strbuf_take(&b, &len);
    cr_assert_str_eq(s, "hello, world");
    cr_assert_eq(len, 12);
    cr_assert_null(b.p);
    cr_assert_eq(b.len, 0);
    cr_assert_eq(b.cap, 0);
    cr_assert_not(b.oom);

    /* The emptied buffer is usable again and owns a new string. */
    kc_strbuf_add(&b, "again");
    char *t = kc_strbuf_take(&b, NULL);
    cr_assert_str_eq(t, "again");
    cr_assert_neq(s, t);
    free(s);
    free(t);

    /* Nothing appended: a fresh "", never NULL. */
    kc_strbuf e = {0};
    char *empty = kc_strbuf_take(&e, &len);
    cr_assert_not_null(empty);
    cr_assert_str_eq(empty, "");
    cr_assert_eq(len, 0);
    free(empty);
}

Test(strbuf, free_zeroes_and_accepts_null)
{
    kc_strbuf_free(NULL);
    kc_strbuf b = {0};
    kc_strbuf_free(&b); /* never used */
    kc_strbuf_add(&b, "something");
    b.oom = true;
    kc_strbuf_free(&b);
    cr_assert_null(b.p);
    cr_assert_eq(b.len, 0);
    cr_assert_eq(b.cap, 0);
    cr_assert_not(b.oom, "free clears oom so the buffer can be reused");
    kc_strbuf_add(&b, "ok");
    cr_assert_str_eq(b.p, "ok");
    kc_strbuf_free(&b);
}

Test(strbuf, adopts_a_malloced_string)
{
    char *path = strdup("/api/v1/pods");
    cr_assert_not_null(path);
    size_t n = strlen(path);
    kc_strbuf b = {.p = path, .len = n, .cap = n + 1};
    kc_strbuf_add(&b, "?limit=");
    kc_strbuf_addf(&b, "%d", 500);
    char *s = kc_strbuf_take(&b, NULL);
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
    kc_strbuf b = {0};
    kc_strbuf_add(&b, "partial");
    char *before = b.p;
    kc_strbuf_addn(&b, "x", SIZE_MAX); /* never read: the size check fails first */
    cr_assert(b.oom);
    cr_assert_eq(b.p, before, "the text built so far is kept");
    cr_assert_eq(b.len, 7);
    cr_assert_str_eq(b.p, "partial");

    kc_strbuf_add(&b, " more");
    kc_strbuf_addn(&b, "y", 1);
    kc_strbuf_addf(&b, "%d", 7);
    cr_assert_not(kc_strbuf_reserve(&b, 1));
    cr_assert(b.oom);
    cr_assert_eq(b.len, 7, "appends after oom are no-ops");
    cr_assert_str_eq(b.p, "partial");

    size_t len = 99;
    cr_assert_null(kc_strbuf_take(&b, &len));
    cr_assert_eq(len, 0);
    cr_assert_null(b.p, "take freed the partial text (LeakSanitizer checks it)");
    cr_assert_not(b.oom);
}

Test(strbuf, reserve_that_overflows_sets_oom)
{
    kc_strbuf b = {0};
    kc_strbuf_add(&b, "ab");
    cr_assert_not(kc_strbuf_reserve(&b, SIZE_MAX - 2)); /* len + extra + 1 wraps */
    cr_assert(b.oom);
    cr_assert_str_eq(b.p, "ab");
    kc_strbuf_free(&b);
}

Test(strbuf, oom_set_by_the_caller_fails_take)
{
    kc_strbuf b = {0};
    kc_strbuf_add(&b, "half a render");
    b.oom = true; /* a caller's own allocation failed (met_render does this) */
    cr_assert_null(kc_strbuf_take(&b, NULL));
    cr_assert_null(b.p);
}

/*
 * vsnprintf failing (a wide character the C locale cannot convert) must not
 * leave a cut text behind: oom is set and the text is what it was.
 */
Test(strbuf, addf_that_vsnprintf_refuses_sets_oom)
{
    const wchar_t wide[] = {(wchar_t)0x263A, 0};
    kc_strbuf b = {0};
    kc_strbuf_add(&b, "abc");
    kc_strbuf_addf(&b, "%s%ls", "def", wide);
    cr_assert(b.oom, "vsnprintf should fail on U+263A in the C locale");
    cr_assert_eq(b.len, 3);
    cr_assert_str_eq(b.p, "abc", "partial output dropped");
    cr_assert_null(kc_strbuf_take(&b, NULL));
}
