/*
 * fuzz_status - libFuzzer harness for the Status/error decoder
 * (src/client/kc_error.c: kc_error_from_response, kc_error_from_status).
 *
 * Input: two bytes of HTTP status (a signed 16-bit number, so 0, negative
 * and unusual codes come too), one byte of Retry-After seconds, then the
 * body. Properties, each a finding when it fails: the code returned is the
 * code set, negative and known to kc_strerror, and the same without a
 * kc_error; a message is always set, and one made from a body that is not a
 * Status is one printable line; a reason is never empty; retry_after is
 * never negative; and a body that parses whole to a Status decodes as that
 * object does through kc_error_from_status.
 *
 * libFuzzer provides main; the replay build links fuzz/replay_main.c.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "kc_error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3 || size > (1u << 16))
        return 0;
    long http = (int16_t)(data[0] << 8 | data[1]);
    double retry = data[2] % 4 == 0 ? 0 : data[2];
    const char *body = (const char *)data + 3;
    size_t len = size - 3;

    kc_error err = KC_ERROR_INIT;
    int code = kc_error_from_response(&err, http, len ? body : NULL, len, retry);
    if (code != err.code || code >= 0 || !strcmp(kc_strerror(code), "unknown error") ||
        !err.message || (err.reason && !*err.reason) || err.retry_after < 0 ||
        (retry > 0 && err.retry_after != retry))
        abort();
    if (kc_error_from_response(NULL, http, len ? body : NULL, len, retry) != code)
        abort();

    /* The body as kc_error_from_response reads it: a Status when it is an
     * object with kind "Status" or a string message or reason. */
    json_tokener *tok = json_tokener_new();
    json_object *o = tok && len ? json_tokener_parse_ex(tok, body, (int)len) : NULL, *v = NULL;
    bool is_status =
        o && json_object_is_type(o, json_type_object) &&
        ((json_object_object_get_ex(o, "kind", &v) && json_object_is_type(v, json_type_string) &&
          !strcmp(json_object_get_string(v), "Status")) ||
         (json_object_object_get_ex(o, "message", &v) &&
          json_object_is_type(v, json_type_string)) ||
         (json_object_object_get_ex(o, "reason", &v) && json_object_is_type(v, json_type_string)));
    if (is_status) {
        /* decodes as the object does */
        kc_error e2 = KC_ERROR_INIT;
        int c2 = kc_error_from_status(&e2, http, o);
        if (c2 != code || strcmp(e2.reason ? e2.reason : "", err.reason ? err.reason : "") ||
            strcmp(e2.message, err.message) || (retry == 0 && e2.retry_after != err.retry_after)) {
            fprintf(stderr, "from_response %d \"%s\", from_status %d \"%s\"\n", code, err.message,
                    c2, e2.message);
            abort();
        }
        kc_error_clear(&e2);
    } else {
        /* not a Status: no reason, and the message is one short printable line */
        if (err.reason || strlen(err.message) > 300)
            abort();
        for (const char *p = err.message; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                abort();
    }
    json_object_put(o);
    if (tok)
        json_tokener_free(tok);
    kc_error_clear(&err);
    if (err.message || err.reason || err.code)
        abort();
    return 0;
}
