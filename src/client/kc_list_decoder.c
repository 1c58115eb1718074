/*
 * kc_list_decoder - a List response body, item by item.
 *
 * Parsing a whole page with json-c builds every item's tree at once: for a
 * page of 500 IPClaims that is ~11 MiB, held until the caller has taken the
 * items apart. Here the body text is walked once to find where each top-level
 * member and each element of "items" begins and ends, and json-c parses one
 * such piece at a time; an item's tree goes to the callback as soon as it is
 * complete, so besides the text only one item's tree (plus what the callback
 * keeps) is alive.
 *
 * The walk only finds extents: it skips strings (with their escapes) and
 * counts brackets. json-c then parses each piece and must use all of it, so
 * anything malformed inside a piece is json-c's error, and the walk itself
 * checks the structure around the pieces ('{', '"key"', ':', ',', '[', ']',
 * '}' and nothing but whitespace after). Every index is checked against the
 * length before it is read: a body cut anywhere is an error, never a read
 * past its end. The walk keeps no stack (a counter), so nesting cannot
 * exhaust it; depth is limited as a whole parse would be: pieces are parsed
 * with KC_JSON_MAX_DEPTH less the levels above them.
 *
 * json-c is not strict (it takes comments and single-quoted strings); the
 * walk does not know those, so such a body is at worst rejected here where a
 * whole parse might have taken it. The API server only sends JSON.
 */
#include "kc_client.h"

#include <limits.h>
#include <stdbool.h>
#include <string.h>

#include <json-c/json.h>

typedef struct walk {
    const char *p;
    size_t len;
    size_t i;
    kc_error *err;
} walk;

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void skip_ws(walk *w)
{
    while (w->i < w->len && is_ws(w->p[w->i]))
        w->i++;
}

static int bad(walk *w, const char *what)
{
    return kc_error_set(w->err, KC_ERR_DECODE, "list response is not valid JSON: %s at byte %zu",
                        what, w->i);
}

/* w->i is on an opening quote: move past the closing one. */
static bool skip_string(walk *w)
{
    w->i++;
    while (w->i < w->len) {
        const char *q = memchr(w->p + w->i, '"', w->len - w->i);
        if (q == NULL)
            break;
        size_t at = (size_t)(q - w->p);
        size_t slashes = 0;
        while (at - slashes > w->i && w->p[at - slashes - 1] == '\\')
            slashes++;
        w->i = at + 1;
        if (slashes % 2 == 0)
            return true;
    }
    w->i = w->len;
    return false;
}

/* w->i is on the first byte of a value: move past its last byte. */
static bool skip_value(walk *w)
{
    char c = w->p[w->i];
    if (c == '"')
        return skip_string(w);
    if (c != '{' && c != '[') {
        while (w->i < w->len && !is_ws(w->p[w->i]) && w->p[w->i] != ',' && w->p[w->i] != '}' &&
               w->p[w->i] != ']')
            w->i++;
        return true; /* a scalar: json-c judges its text */
    }
    size_t depth = 0;
    while (w->i < w->len) {
        c = w->p[w->i];
        if (c == '"') {
            if (!skip_string(w))
                return false;
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (--depth == 0) {
                w->i++;
                return true;
            }
        }
        w->i++;
    }
    return false;
}

/*
 * Parse p[start, end) as one JSON value that must use all of it. json-c is
 * given the byte after it too, when there is one: it cannot know that a
 * number has ended at the end of its input.
 */
static int parse_piece(walk *w, json_tokener *tok, size_t start, size_t end, json_object **out)
{
    *out = NULL;
    size_t n = end - start;
    size_t feed = end < w->len ? n + 1 : n;
    if (feed > INT_MAX)
        return kc_error_set(w->err, KC_ERR_TOO_LARGE, "list response value of %zu bytes", n);
    json_tokener_reset(tok);
    json_object *o = json_tokener_parse_ex(tok, w->p + start, (int)feed);
    enum json_tokener_error je = json_tokener_get_error(tok);
    size_t used = json_tokener_get_parse_end(tok);
    /* json-c may also take the whitespace byte after a complete value. */
    if (je == json_tokener_success && (used == n || (used == feed && is_ws(w->p[end])))) {
        *out = o;
        return KC_OK;
    }
    json_object_put(o);
    return kc_error_set(
        w->err, KC_ERR_DECODE, "list response is not valid JSON at byte %zu: %s", start,
        je == json_tokener_success ? "unexpected data after a value" : json_tokener_error_desc(je));
}

/* The elements of "items"; w->i is on '['. */
static int walk_items(walk *w, json_tokener *tok, kc_item_fn fn, void *user, size_t *count)
{
    w->i++;
    skip_ws(w);
    if (w->i < w->len && w->p[w->i] == ']') {
        w->i++;
        return KC_OK;
    }
    for (;;) {
        if (w->i >= w->len)
            return bad(w, "the items array is cut short");
        size_t start = w->i;
        if (!skip_value(w))
            return bad(w, "an item is cut short");
        json_object *item = NULL;
        int rc = parse_piece(w, tok, start, w->i, &item);
        if (rc != KC_OK)
            return rc;
        (*count)++;
        rc = fn(item, user);
        if (rc != 0)
            return kc_error_set(w->err, rc, "stopped by the item callback");
        skip_ws(w);
        if (w->i >= w->len)
            return bad(w, "the items array is cut short");
        if (w->p[w->i] == ']') {
            w->i++;
            return KC_OK;
        }
        if (w->p[w->i] != ',')
            return bad(w, "expected ',' or ']' in the items array");
        w->i++;
        skip_ws(w);
    }
}

int kc_list_body_decode(const char *data, size_t len, kc_item_fn fn, void *user, json_object **list,
                        size_t *items, kc_error *err)
{
    if (list)
        *list = NULL;
    if (items)
        *items = 0;
    if (!fn)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "kc_list_body_decode: no item callback");
    walk w = {.p = data, .len = data ? len : 0, .err = err};
    size_t count = 0;
    bool seen_items = false;
    skip_ws(&w);
    if (w.i >= w.len)
        return kc_error_set(err, KC_ERR_DECODE, "empty response body where JSON was expected");
    if (w.p[w.i] != '{')
        return bad(&w, "a list response must be a JSON object");
    json_tokener *tok = json_tokener_new_ex(KC_JSON_MAX_DEPTH - 1);
    json_tokener *item_tok = json_tokener_new_ex(KC_JSON_MAX_DEPTH - 2);
    json_object *head = json_object_new_object();
    int rc = KC_OK;
    if (!tok || !item_tok || !head) {
        rc = kc_error_set(err, KC_ERR_NOMEM, "out of memory");
        goto out;
    }
    w.i++;
    skip_ws(&w);
    if (w.i < w.len && w.p[w.i] == '}') {
        w.i++;
        goto end;
    }
    for (;;) {
        if (w.i >= w.len || w.p[w.i] != '"') {
            rc = bad(&w, "expected a member name");
            goto out;
        }
        size_t kstart = w.i;
        if (!skip_string(&w)) {
            rc = bad(&w, "a member name is cut short");
            goto out;
        }
        json_object *key = NULL;
        if ((rc = parse_piece(&w, tok, kstart, w.i, &key)) != KC_OK)
            goto out;
        skip_ws(&w);
        if (w.i >= w.len || w.p[w.i] != ':') {
            json_object_put(key);
            rc = bad(&w, "expected ':' after a member name");
            goto out;
        }
        w.i++;
        skip_ws(&w);
        if (w.i >= w.len) {
            json_object_put(key);
            rc = bad(&w, "a member has no value");
            goto out;
        }
        const char *name = json_object_get_string(key);
        bool is_items = json_object_get_string_len(key) == 5 && memcmp(name, "items", 5) == 0;
        /* A second "items" of any kind: a whole parse keeps the last one, but
         * items already handed over cannot be taken back. Refused. */
        if (is_items && seen_items) {
            json_object_put(key);
            rc = bad(&w, "a second items member");
            goto out;
        }
        seen_items = seen_items || is_items;
        if (is_items && w.p[w.i] == '[') {
            json_object_put(key);
            if ((rc = walk_items(&w, item_tok, fn, user, &count)) != KC_OK)
                goto out;
        } else {
            size_t vstart = w.i;
            json_object *value = NULL;
            if (!skip_value(&w)) {
                json_object_put(key);
                rc = bad(&w, "a value is cut short");
                goto out;
            }
            if ((rc = parse_piece(&w, tok, vstart, w.i, &value)) != KC_OK) {
                json_object_put(key);
                goto out;
            }
            if (json_object_object_add(head, name, value) != 0) {
                json_object_put(key);
                json_object_put(value);
                rc = kc_error_set(err, KC_ERR_NOMEM, "out of memory");
                goto out;
            }
            json_object_put(key);
        }
        skip_ws(&w);
        if (w.i < w.len && w.p[w.i] == '}') {
            w.i++;
            break;
        }
        if (w.i >= w.len || w.p[w.i] != ',') {
            rc = bad(&w, "expected ',' or '}' after a member");
            goto out;
        }
        w.i++;
        skip_ws(&w);
    }
end:
    skip_ws(&w);
    if (w.i < w.len) {
        rc = kc_error_set(err, KC_ERR_DECODE, "response body has data after the JSON value");
        goto out;
    }
    if (list) {
        *list = head;
        head = NULL;
    }
out:
    if (items)
        *items = count;
    json_object_put(head);
    if (tok)
        json_tokener_free(tok);
    if (item_tok)
        json_tokener_free(item_tok);
    return rc;
}
