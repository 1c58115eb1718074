/*
 * fuzz_list_decoder - libFuzzer harness for the item-by-item List decoder
 * (src/client/kc_list_decoder.c).
 *
 * Differential: whatever the decoder accepts, a whole json-c parse of the
 * same bytes must accept too (an object with nothing but whitespace after
 * it), with the same items in the same order and the same other members.
 * The reverse need not hold (json-c alone takes comments, single quotes and
 * a second items member). Every rejection must carry a message. Anything
 * else, or any crash, sanitizer report or leak, is a finding.
 *
 * libFuzzer provides main; the replay build links fuzz/replay_main.c.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "kc_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int collect(json_object *item, void *user)
{
    json_object_array_add(user, item ? item : json_object_new_null());
    return KC_OK;
}

static bool only_ws(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\n' && p[i] != '\r')
            return false;
    return true;
}

/* Equal as text: json_object_equal says NaN (which json-c takes) differs from itself. */
static bool same(json_object *a, json_object *b)
{
    const char *sa = json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN);
    const char *sb = json_object_to_json_string_ext(b, JSON_C_TO_STRING_PLAIN);
    return sa && sb && strcmp(sa, sb) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20))
        return 0;
    const char *text = (const char *)data;
    json_object *items = json_object_new_array(), *list = NULL;
    kc_error err = KC_ERROR_INIT;
    int rc = kc_list_body_decode(text, size, collect, items, &list, NULL, &err);
    if (rc != KC_OK) {
        if (!err.message || list)
            abort();
    } else {
        json_tokener *tok = json_tokener_new_ex(KC_JSON_MAX_DEPTH);
        json_object *whole = json_tokener_parse_ex(tok, text, (int)size);
        if (!whole || json_tokener_get_error(tok) != json_tokener_success ||
            !json_object_is_type(whole, json_type_object) ||
            !only_ws(text + json_tokener_get_parse_end(tok),
                     size - json_tokener_get_parse_end(tok))) {
            fprintf(stderr, "accepted what a whole parse rejects\n");
            abort();
        }
        json_object *wi = NULL;
        if (json_object_object_get_ex(whole, "items", &wi) &&
            json_object_is_type(wi, json_type_array)) {
            if (!same(wi, items))
                abort();
            json_object_object_del(whole, "items");
        } else if (json_object_array_length(items) != 0) {
            abort();
        }
        if (!same(whole, list))
            abort();
        json_object_put(whole);
        json_tokener_free(tok);
    }
    json_object_put(list);
    json_object_put(items);
    kc_error_clear(&err);
    return 0;
}
