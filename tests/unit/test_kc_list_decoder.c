/*
 * Unit tests of the item-by-item List decoder (src/client/kc_list_decoder.c):
 * what it hands over, what it refuses, and a differential check against a
 * whole json-c parse over a valid page and thousands of corrupted copies of
 * it (cut short, bytes replaced, bytes inserted).
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "kc_client.h"

typedef struct got {
    json_object *items; /* array of what the callback received */
    int stop_after;     /* return KC_ERR_NOMEM after this many (0 = never) */
} got;

static int collect(json_object *item, void *user)
{
    got *g = user;
    json_object_array_add(g->items, item ? item : json_object_new_null());
    if (g->stop_after > 0 && (int)json_object_array_length(g->items) >= g->stop_after)
        return KC_ERR_NOMEM;
    return KC_OK;
}

static int decode(const char *text, got *g, json_object **list, size_t *n, kc_error *err)
{
    g->items = json_object_new_array();
    return kc_list_body_decode(text, strlen(text), collect, g, list, n, err);
}

static const char PAGE[] =
    "{\"kind\":\"IPClaimList\",\"apiVersion\":\"provisio.dev/v1alpha1\","
    "\"metadata\":{\"resourceVersion\":\"42\",\"continue\":\"abc\",\"remainingItemCount\":7},"
    "\"items\":[{\"metadata\":{\"name\":\"a\",\"annotations\":{\"x\":\"]}\\\"[{\"}}},"
    " {\"metadata\":{\"name\":\"b\"},\"spec\":{\"list\":[1,2.5e3,true,null,\"\\\\\"]}}\n,\n"
    "{\"metadata\":{\"name\":\"c\\u00e9\"}}]}\n";

Test(kc_list_decoder, items_one_by_one_and_the_list_without_them)
{
    got g = {0};
    json_object *list = NULL;
    size_t n = 0;
    kc_error err = KC_ERROR_INIT;
    cr_assert_eq(decode(PAGE, &g, &list, &n, &err), KC_OK, "%s", err.message);
    cr_assert_eq(n, 3);
    cr_assert_eq(json_object_array_length(g.items), 3);
    json_object *whole = json_tokener_parse(PAGE), *items = NULL;
    cr_assert(json_object_object_get_ex(whole, "items", &items));
    cr_assert(json_object_equal(g.items, items), "items differ from a whole parse: %s",
              json_object_to_json_string(g.items));
    json_object_object_del(whole, "items");
    cr_assert(json_object_equal(list, whole), "list differs: %s", json_object_to_json_string(list));
    json_object *v = NULL;
    cr_assert(json_object_object_get_ex(list, "metadata", &v));
    cr_assert(json_object_object_get_ex(v, "remainingItemCount", &v));
    cr_assert_eq(json_object_get_int(v), 7, "a number just before '}' is read whole");
    json_object_put(whole);
    json_object_put(list);
    json_object_put(g.items);
}

Test(kc_list_decoder, empty_items_and_no_items)
{
    const char *bodies[] = {"{\"items\":[]}", "{\"items\":[ ]}", "{}", " {\"items\":null} ",
                            "{\"metadata\":{}}"};
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        got g = {0};
        json_object *list = NULL;
        kc_error err = KC_ERROR_INIT;
        size_t n = 99;
        cr_assert_eq(decode(bodies[i], &g, &list, &n, &err), KC_OK, "%s: %s", bodies[i],
                     err.message);
        cr_assert_eq(n, 0, "%s", bodies[i]);
        cr_assert_not_null(list);
        json_object_put(list);
        json_object_put(g.items);
    }
}

Test(kc_list_decoder, malformed_bodies_are_decode_errors)
{
    const char *bodies[] = {"",
                            "   ",
                            "[]",
                            "null",
                            "{",
                            "{\"items\":[",
                            "{\"items\":[{}",
                            "{\"items\":[{},]}",
                            "{\"items\":[{}}",
                            "{\"items\":[{\"a\":1}] ",
                            "{\"items\":[{\"a\":\"unterminated}]}",
                            "{\"items\":[{\"a\":1]}]}",
                            "{\"items\":[12x]}",
                            "{\"items\":[],\"items\":[]}",
                            "{\"a\" 1}",
                            "{a:1}",
                            "{\"a\":}",
                            "{\"a\":1,}",
                            "{\"a\":1} x",
                            "{\"a\":1}{}",
                            "{\"a\":tru}",
                            "{\"a\":1 2}"};
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        got g = {0};
        json_object *list = (json_object *)1;
        kc_error err = KC_ERROR_INIT;
        cr_assert_eq(decode(bodies[i], &g, &list, NULL, &err), KC_ERR_DECODE, "accepted: %s",
                     bodies[i]);
        cr_assert_null(list, "%s", bodies[i]);
        cr_assert_not_null(err.message);
        kc_error_clear(&err);
        json_object_put(g.items);
    }
}

/*
 * Found by fuzz_list_decoder (2026-12-04): "items" given twice, once as a
 * string and once as an array, was accepted with the array's elements handed
 * over and the string kept in the list, where a whole parse keeps only the
 * last member. Any second "items" is now refused, whatever its kind or order.
 */
Test(kc_list_decoder, items_given_twice_in_any_kinds_is_refused)
{
    const char *bodies[] = {"{\"items\":\"v1\",\"items\":[{\"a\":1}]}",
                            "{\"items\":[{\"a\":1}],\"items\":\"v1\"}",
                            "{\"items\":null,\"kind\":\"L\",\"items\":[]}",
                            "{\"items\":[],\"items\":null}", "{\"items\":1,\"items\":{}}"};
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        got g = {0};
        json_object *list = (json_object *)1;
        kc_error err = KC_ERROR_INIT;
        cr_assert_eq(decode(bodies[i], &g, &list, NULL, &err), KC_ERR_DECODE, "accepted: %s",
                     bodies[i]);
        cr_assert_null(list, "%s", bodies[i]);
        cr_assert(strstr(err.message, "second items member"), "%s: %s", bodies[i], err.message);
        kc_error_clear(&err);
        json_object_put(g.items);
    }
}

Test(kc_list_decoder, nesting_is_limited_as_in_a_whole_parse)
{
    /* items[0] holds arrays nested `levels` deep. */
    for (int levels = 250; levels <= 256; levels++) {
        size_t cap = 64 + 2 * (size_t)levels;
        char *body = malloc(cap);
        size_t o = (size_t)sprintf(body, "{\"items\":[");
        for (int i = 0; i < levels; i++)
            body[o++] = '[';
        for (int i = 0; i < levels; i++)
            body[o++] = ']';
        o += (size_t)sprintf(body + o, "]}");
        got g = {0};
        kc_error err = KC_ERROR_INIT;
        int rc = decode(body, &g, NULL, NULL, &err);
        json_tokener *tok = json_tokener_new_ex(KC_JSON_MAX_DEPTH);
        json_object *whole = json_tokener_parse_ex(tok, body, (int)o);
        bool whole_ok = whole != NULL && json_tokener_get_error(tok) == json_tokener_success;
        cr_assert_eq(rc == KC_OK, whole_ok, "%d levels: item by item %d, whole parse %d", levels,
                     rc, whole_ok);
        json_object_put(whole);
        json_tokener_free(tok);
        json_object_put(g.items);
        kc_error_clear(&err);
        free(body);
    }
}

Test(kc_list_decoder, a_callback_error_stops_the_decoding)
{
    got g = {.stop_after = 2};
    kc_error err = KC_ERROR_INIT;
    size_t n = 0;
    cr_assert_eq(decode(PAGE, &g, NULL, &n, &err), KC_ERR_NOMEM);
    cr_assert_eq(n, 2);
    cr_assert_eq(json_object_array_length(g.items), 2);
    json_object_put(g.items);
    kc_error_clear(&err);
}

/* ---- differential ------------------------------------------------------------- */

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/*
 * Whatever the decoder accepts, a whole parse accepts too and agrees with:
 * same items, same other members. (The reverse need not hold: json-c alone
 * also takes comments and a second items member.)
 */
static void check_against_whole_parse(const char *text, size_t len, size_t *accepted)
{
    got g = {.items = json_object_new_array()};
    json_object *list = NULL;
    kc_error err = KC_ERROR_INIT;
    int rc = kc_list_body_decode(text, len, collect, &g, &list, NULL, &err);
    if (rc == KC_OK) {
        (*accepted)++;
        json_tokener *tok = json_tokener_new_ex(KC_JSON_MAX_DEPTH);
        json_object *whole = json_tokener_parse_ex(tok, text, (int)len);
        bool ok = whole != NULL && json_tokener_get_error(tok) == json_tokener_success &&
                  json_object_is_type(whole, json_type_object);
        for (size_t i = ok ? json_tokener_get_parse_end(tok) : len; i < len; i++)
            ok = ok && (text[i] == ' ' || text[i] == '\n' || text[i] == '\t' || text[i] == '\r');
        cr_assert(ok, "accepted what a whole parse rejects: %.*s", (int)len, text);
        json_object *items = NULL;
        if (json_object_object_get_ex(whole, "items", &items) &&
            json_object_is_type(items, json_type_array)) {
            cr_assert(json_object_equal(items, g.items), "items differ for: %.*s", (int)len, text);
            json_object_object_del(whole, "items");
        } else {
            cr_assert_eq(json_object_array_length(g.items), 0, "%.*s", (int)len, text);
        }
        cr_assert(json_object_equal(whole, list), "members differ for: %.*s", (int)len, text);
        json_object_put(whole);
        json_tokener_free(tok);
    } else {
        cr_assert_null(list);
        cr_assert_not_null(err.message);
    }
    json_object_put(list);
    json_object_put(g.items);
    kc_error_clear(&err);
}

Test(kc_list_decoder, agrees_with_a_whole_parse_on_corrupted_pages)
{
    const char alphabet[] = "{}[]\",:\\ 0e-.tnu\n";
    size_t len = strlen(PAGE), accepted = 0;
    char *buf = malloc(len + 2);
    for (size_t cut = 0; cut <= len; cut++) /* every prefix */
        check_against_whole_parse(PAGE, cut, &accepted);
    cr_assert_eq(accepted, 2, "the page, and the page without its trailing newline");
    for (int round = 0; round < 20000; round++) {
        memcpy(buf, PAGE, len + 1);
        size_t at = next_rand() % len;
        size_t n = len;
        char c = alphabet[next_rand() % (sizeof(alphabet) - 1)];
        if (next_rand() % 2) {
            buf[at] = c;
        } else {
            memmove(buf + at + 1, buf + at, len - at + 1);
            buf[at] = c;
            n++;
        }
        check_against_whole_parse(buf, n, &accepted);
    }
    cr_assert_gt(accepted, 100, "the corruptions should leave some pages valid (%zu)", accepted);
    free(buf);
}
