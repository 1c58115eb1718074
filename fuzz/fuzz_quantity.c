/*
 * fuzz_quantity - libFuzzer harness for Kubernetes quantity parsing
 * (src/client/kc_quantity.c).
 *
 * The input is the quantity text. Properties checked, each a finding when it
 * fails: every refusal carries a message and leaves the result alone; units
 * and milli-units agree (a value of v units is 1000 v milli-units, or out of
 * range there; m milli-units are m / 1000 units when whole, else a fraction);
 * a sign in front negates (or changes nothing: "+"); and the canonical text
 * of any value, in both styles and at both scales, parses back to it.
 *
 * libFuzzer provides main; the replay build links fuzz/replay_main.c.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kc_quantity.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int parse(const char *text, size_t len, int scale, int64_t *v, bool *fraction)
{
    kc_error err = KC_ERROR_INIT;
    int64_t out = 424242;
    int rc = kc_quantity_parse(text, len, scale, &out, &err);
    if (rc == KC_OK) {
        if (err.message)
            abort();
        *v = out;
    } else {
        if (rc != KC_ERR_INVALID_ARG || !err.message || out != 424242)
            abort();
        /* why follows the quoted text, which may hold anything */
        const char *why = strrchr(err.message, '"');
        *fraction = strstr(why ? why : err.message, "is not a whole number") != NULL;
    }
    kc_error_clear(&err);
    return rc;
}

static void round_trip(int64_t v, int scale)
{
    for (int style = 0; style < 2; style++) {
        char buf[KC_QUANTITY_BUFSIZE];
        if (kc_quantity_format(v, scale, (kc_quantity_style)style, buf) != KC_OK)
            abort();
        int64_t back = 0;
        bool frac = false;
        if (parse(buf, strlen(buf), scale, &back, &frac) != KC_OK || back != v) {
            fprintf(stderr, "%lld at scale %d formats as \"%s\", which does not parse back\n",
                    (long long)v, scale, buf);
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    const char *text = (const char *)data;
    int64_t u = 0, m = 0;
    bool u_frac = false, m_frac = false;
    int ru = parse(text, size, KC_QUANTITY_UNITS, &u, &u_frac);
    int rm = parse(text, size, KC_QUANTITY_MILLI, &m, &m_frac);
    if (ru == KC_OK) {
        if (rm == KC_OK ? m / 1000 != u || m % 1000 != 0
                        : m_frac || (u > -9223372036854776LL && u < 9223372036854776LL)) {
            fprintf(stderr, "%lld units but milli rc %d (%lld)\n", (long long)u, rm, (long long)m);
            abort();
        }
        round_trip(u, KC_QUANTITY_UNITS);
    }
    if (rm == KC_OK) {
        if ((m % 1000 == 0) != (ru == KC_OK) || (ru != KC_OK && !u_frac)) {
            fprintf(stderr, "%lld milli-units but units rc %d\n", (long long)m, ru);
            abort();
        }
        round_trip(m, KC_QUANTITY_MILLI);
    }
    /* A sign in front: "-" negates, "+" changes nothing (when none is there). */
    if (size > 0 && text[0] != '-' && text[0] != '+') {
        char *signed_text = malloc(size + 1);
        if (!signed_text)
            return 0;
        memcpy(signed_text + 1, text, size);
        for (int s = 0; s < 2; s++) {
            signed_text[0] = s ? '-' : '+';
            int64_t v = 0;
            bool frac = false;
            int rs = parse(signed_text, size + 1, KC_QUANTITY_UNITS, &v, &frac);
            if (rs != ru || (rs == KC_OK && v != (s ? -u : u)) || (rs != KC_OK && frac != u_frac)) {
                fprintf(stderr, "a '%c' in front changed the outcome\n", signed_text[0]);
                abort();
            }
        }
        free(signed_text);
    }
    return 0;
}
