/*
 * fuzz_watch_decoder - libFuzzer harness for the watch stream decoder.
 *
 * Differential: the input (after its first byte) is fed once whole and once
 * cut into pieces whose sizes come from a generator seeded by the first byte.
 * Both runs must end with the same status and the same events (types and a
 * hash of each serialized object); anything else, or any crash, sanitizer
 * report or leak, is a finding. The decoder is built into this program (not
 * linked from provisio_client) so libFuzzer's coverage reaches it.
 *
 * libFuzzer provides main; the replay build links fuzz/replay_main.c, which
 * runs the same checks over saved inputs with any compiler.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "kc_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct outcome {
    size_t events;
    uint64_t hash; /* FNV-1a over types and serialized objects, in order */
} outcome;

static void fnv(uint64_t *h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        *h ^= b[i];
        *h *= 0x100000001b3ULL;
    }
}

static int record(kc_event_type type, json_object *object, void *user)
{
    outcome *o = user;
    const char *s = json_object_to_json_string_ext(object, JSON_C_TO_STRING_PLAIN);
    fnv(&o->hash, &type, sizeof(type));
    fnv(&o->hash, s, strlen(s));
    o->events++;
    return 0;
}

/* Small limit so the too-large path is reached too. */
#define FUZZ_MAX_EVENT 4096

static int run(const char *buf, size_t len, unsigned seed, bool split, outcome *o)
{
    kc_watch_decoder *d = kc_watch_decoder_new(FUZZ_MAX_EVENT);
    if (!d)
        abort();
    kc_error err = KC_ERROR_INIT;
    o->events = 0;
    o->hash = 0xcbf29ce484222325ULL;
    int rc = 0;
    size_t off = 0;
    uint32_t x = seed * 2654435761u + 1;
    while (off < len && rc == 0) {
        size_t n = len - off;
        if (split) {
            x = x * 1103515245u + 12345u;
            size_t piece = 1 + (x >> 16) % 64;
            if (piece < n)
                n = piece;
        }
        rc = kc_watch_decoder_feed(d, buf + off, n, record, o, &err);
        off += n;
    }
    if (rc != 0 && !err.message)
        abort(); /* every error explains itself */
    (void)kc_watch_decoder_pending(d);
    kc_watch_decoder_reset(d);
    kc_error_clear(&err);
    kc_watch_decoder_free(d);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned seed = data[0];
    const char *buf = (const char *)data + 1;
    size_t len = size - 1;
    outcome whole, pieces;
    int rc_whole = run(buf, len, seed, false, &whole);
    int rc_pieces = run(buf, len, seed, true, &pieces);
    if (rc_whole != rc_pieces || whole.events != pieces.events || whole.hash != pieces.hash) {
        fprintf(stderr, "split changed the outcome: whole rc %d, %zu events; pieces rc %d, %zu\n",
                rc_whole, whole.events, rc_pieces, pieces.events);
        abort();
    }
    return 0;
}
