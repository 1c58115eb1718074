/*
 * kc_watch_decoder - turns the body of a watch response into events.
 *
 * The API server streams one JSON object per event,
 *   {"type":"ADDED","object":{...}}
 * usually one per line, but the transport hands us chunks cut anywhere: an
 * event may span many chunks and one chunk may hold several events. Frames are
 * found by JSON object boundaries, never by newlines: json-c's tokener keeps
 * its state across json_tokener_parse_ex calls, returns the object once its
 * closing brace arrives, and json_tokener_get_parse_end says how many bytes of
 * the chunk that object used; the rest of the chunk is fed again.
 *
 * Invariants:
 *  - in_event is true exactly when the tokener holds part of an event: set when
 *    the first byte of an object ('{') is fed, cleared when the object
 *    completes. Whitespace between events is skipped here and never buffered,
 *    so a stream of blank lines costs no memory.
 *  - Each event is fed to json-c only up to its closing brace, found by a
 *    small scan (strings, escapes, a bracket count) that keeps its state
 *    across chunks. Fed more, json-c reads on past the object within the
 *    same call (whitespace, and '/' as the start of a comment): a bad comment
 *    after a complete event then lost that event when the chunk held both, and
 *    the outcome depended on where the transport cut the stream (found by
 *    fuzz_watch_decoder). An event json-c ends elsewhere than the scan (it
 *    takes single quotes and comments, the scan does not) is an error.
 *  - event_bytes counts the bytes of the event in progress. We never feed the
 *    tokener more than max_event_bytes for one event: if the object is not
 *    complete by then the event is too large and we stop before json-c has
 *    buffered more than the limit (json-c's own memory is proportional to what
 *    it was fed; a hostile event of tiny values can still cost a few times its
 *    size in json_objects, which the limit bounds too).
 *  - The tokener's depth limit bounds nesting; json-c's parser keeps its own
 *    stack, but freeing and serializing a tree recurse, so depth is capped.
 *  - After an error (not after a callback's stop) the decoder is "failed": it
 *    refuses input until kc_watch_decoder_reset, because the stream position
 *    is lost.
 *
 * json-c flags: none. JSON_TOKENER_VALIDATE_UTF8 in json-c 0.16 rejects a
 * multi-byte character split across two parse calls (seen in our split tests),
 * and JSON_TOKENER_STRICT in later releases rejects valid non-ASCII strings
 * (json-c issue #892). The API server (Go's encoder) always emits valid UTF-8;
 * the structure of each event is validated here.
 *
 * Threading: a decoder belongs to one thread at a time (the watching thread).
 */
#include "kc_client.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#define DEFAULT_MAX_EVENT_BYTES ((size_t)16 << 20)

/*
 * json-c depth counts every nesting level including scalar leaves. Watch
 * events are event -> object -> spec -> ... ; CRD objects with deep OpenAPI
 * schemas reach a few dozen levels. 128 leaves room and keeps recursive frees
 * shallow.
 */
#define MAX_DEPTH 128

struct kc_watch_decoder {
    json_tokener *tok;
    size_t max_event_bytes;
    size_t event_bytes; /* bytes of the event in progress fed to tok */
    size_t depth;       /* scan: open brackets of the event in progress */
    bool in_string;     /* scan: inside a string */
    bool escaped;       /* scan: the previous byte was a backslash in a string */
    bool in_event;
    bool failed;
    bool give; /* the callback owns the objects */
};

const char *kc_event_type_name(kc_event_type t)
{
    switch (t) {
    case KC_EVENT_ADDED:
        return "ADDED";
    case KC_EVENT_MODIFIED:
        return "MODIFIED";
    case KC_EVENT_DELETED:
        return "DELETED";
    case KC_EVENT_BOOKMARK:
        return "BOOKMARK";
    case KC_EVENT_ERROR:
        return "ERROR";
    }
    return "UNKNOWN";
}

static bool parse_event_type(const char *s, kc_event_type *out)
{
    static const struct {
        const char *name;
        kc_event_type type;
    } types[] = {
        {"ADDED", KC_EVENT_ADDED},     {"MODIFIED", KC_EVENT_MODIFIED},
        {"DELETED", KC_EVENT_DELETED}, {"BOOKMARK", KC_EVENT_BOOKMARK},
        {"ERROR", KC_EVENT_ERROR},
    };
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (!strcmp(s, types[i].name)) {
            *out = types[i].type;
            return true;
        }
    }
    return false;
}

kc_watch_decoder *kc_watch_decoder_new(size_t max_event_bytes)
{
    kc_watch_decoder *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->tok = json_tokener_new_ex(MAX_DEPTH);
    if (!d->tok) {
        free(d);
        return NULL;
    }
    d->max_event_bytes = max_event_bytes ? max_event_bytes : DEFAULT_MAX_EVENT_BYTES;
    return d;
}

void kc_watch_decoder_give_objects(kc_watch_decoder *d)
{
    if (d)
        d->give = true;
}

void kc_watch_decoder_free(kc_watch_decoder *d)
{
    if (!d)
        return;
    json_tokener_free(d->tok);
    free(d);
}

void kc_watch_decoder_reset(kc_watch_decoder *d)
{
    if (!d)
        return;
    json_tokener_reset(d->tok);
    d->event_bytes = 0;
    d->in_event = false;
    d->failed = false;
}

/*
 * Scan at most n bytes of the event in progress; returns how many belong to
 * it, setting *ends when the last of them is its closing brace.
 */
static size_t scan_event(kc_watch_decoder *d, const char *buf, size_t n, bool *ends)
{
    *ends = false;
    for (size_t i = 0; i < n; i++) {
        char c = buf[i];
        if (d->in_string) {
            if (d->escaped)
                d->escaped = false;
            else if (c == '\\')
                d->escaped = true;
            else if (c == '"')
                d->in_string = false;
        } else if (c == '"') {
            d->in_string = true;
        } else if (c == '{' || c == '[') {
            d->depth++;
        } else if ((c == '}' || c == ']') && --d->depth == 0) {
            *ends = true;
            return i + 1;
        }
    }
    return n;
}

bool kc_watch_decoder_pending(const kc_watch_decoder *d)
{
    return d && d->in_event;
}

/* The stream position is lost: refuse input until reset. */
static void mark_failed(kc_watch_decoder *d)
{
    d->failed = true;
    d->in_event = false;
}

/*
 * Check one complete event and deliver it. Takes ownership of ev. Returns 0,
 * the callback's value, or an error (the decoder is then failed).
 */
static int deliver(kc_watch_decoder *d, json_object *ev, kc_event_cb cb, void *user, kc_error *err)
{
    json_object *type_v = NULL, *obj = NULL;
    kc_event_type type = KC_EVENT_ADDED;
    int rc = 0;

    if (!json_object_is_type(ev, json_type_object)) {
        rc = kc_error_set(err, KC_ERR_DECODE, "watch event is not a JSON object");
    } else if (!json_object_object_get_ex(ev, "type", &type_v) ||
               !json_object_is_type(type_v, json_type_string)) {
        rc = kc_error_set(err, KC_ERR_DECODE, "watch event has no string \"type\"");
    } else if (!parse_event_type(json_object_get_string(type_v), &type)) {
        /* Bounded so a hostile value cannot flood the logs. */
        rc = kc_error_set(err, KC_ERR_DECODE, "watch event has an unknown type \"%.64s\"",
                          json_object_get_string(type_v));
    } else if (!json_object_object_get_ex(ev, "object", &obj) ||
               !json_object_is_type(obj, json_type_object)) {
        rc = kc_error_set(err, KC_ERR_DECODE, "watch %s event has no \"object\" object",
                          kc_event_type_name(type));
    } else if (type == KC_EVENT_ERROR) {
        /* The server ends the watch with a Status: 410 Expired/Gone, 500, ... */
        rc = kc_error_from_status(err, 0, obj);
        if (rc == KC_OK) /* no mapping gives 0, but never report an ERROR as success */
            rc = kc_error_set(err, KC_ERR_API, "watch ERROR event without a status");
    } else if (d->give) {
        /* obj the caller's alone before it sees it: the event goes first. */
        json_object_get(obj);
        json_object_put(ev);
        if (cb)
            return cb(type, obj, user);
        json_object_put(obj);
        return rc;
    } else {
        if (cb)
            rc = cb(type, obj, user);
        json_object_put(ev);
        return rc;
    }
    mark_failed(d);
    json_object_put(ev);
    return rc;
}

int kc_watch_decoder_feed(kc_watch_decoder *d, const char *buf, size_t len, kc_event_cb cb,
                          void *user, kc_error *err)
{
    if (!d || (!buf && len > 0))
        return kc_error_set(err, KC_ERR_INVALID_ARG, "kc_watch_decoder_feed: no decoder or buffer");
    if (d->failed)
        return kc_error_set(err, KC_ERR_INVALID_ARG,
                            "watch decoder used after an error without a reset");

    while (len > 0) {
        if (!d->in_event) {
            while (len > 0 && (*buf == ' ' || *buf == '\n' || *buf == '\r' || *buf == '\t')) {
                buf++;
                len--;
            }
            if (len == 0)
                break;
            if (*buf != '{') {
                mark_failed(d);
                return kc_error_set(err, KC_ERR_DECODE,
                                    "watch stream: expected '{' to start an event, got byte 0x%02x",
                                    (unsigned)(unsigned char)*buf);
            }
            d->in_event = true;
            d->event_bytes = 0;
            d->depth = 0;
            d->in_string = d->escaped = false;
        }

        size_t room = d->max_event_bytes - d->event_bytes;
        if (room == 0) {
            mark_failed(d);
            return kc_error_set(err, KC_ERR_TOO_LARGE,
                                "watch event too large: more than %zu bytes without its end "
                                "(limit %zu bytes)",
                                d->event_bytes, d->max_event_bytes);
        }
        size_t n = len < room ? len : room;
        if (n > INT_MAX)
            n = INT_MAX;
        bool ends = false;
        n = scan_event(d, buf, n, &ends);

        json_object *ev = json_tokener_parse_ex(d->tok, buf, (int)n);
        enum json_tokener_error jerr = json_tokener_get_error(d->tok);
        if (ev || (ends && jerr == json_tokener_continue)) {
            size_t used = json_tokener_get_parse_end(d->tok);
            if (!ev || !ends || used != n) {
                json_object_put(ev);
                mark_failed(d);
                return kc_error_set(err, KC_ERR_DECODE,
                                    "watch event is not valid JSON: its object does not end at "
                                    "its closing brace (byte %zu of the event)",
                                    d->event_bytes + n);
            }
            d->event_bytes += used;
            d->in_event = false;
            buf += used;
            len -= used;
            /* json-c resets its levels after a complete value; be explicit. */
            json_tokener_reset(d->tok);
            int rc = deliver(d, ev, cb, user, err);
            if (rc != 0)
                return rc;
            continue;
        }
        if (jerr == json_tokener_continue) {
            d->event_bytes += n;
            buf += n;
            len -= n;
            continue;
        }
        size_t at = d->event_bytes + json_tokener_get_parse_end(d->tok);
        mark_failed(d);
        if (jerr == json_tokener_error_depth)
            return kc_error_set(err, KC_ERR_DECODE,
                                "watch event nested too deeply (limit %d levels) at byte %zu",
                                MAX_DEPTH, at);
        return kc_error_set(err, KC_ERR_DECODE,
                            "watch event is not valid JSON: %s at byte %zu of the event",
                            json_tokener_error_desc(jerr), at);
    }
    return KC_OK;
}
