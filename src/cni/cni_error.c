/* cni_error - see cni_error.h. */
#include "cni_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cni_config.h"
#include "pv_json.h"

static char oom_msg[] = "provisio-cni: out of memory";

static void free_msg(cni_error *e)
{
    if (e->msg != oom_msg)
        free(e->msg);
    free(e->details);
    e->msg = NULL;
    e->details = NULL;
}

int cni_error_set(cni_error *e, int code, const char *details, const char *fmt, ...)
{
    if (!e)
        return -code;
    free_msg(e);
    e->code = code;
    char *m = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&m, fmt, ap);
    va_end(ap);
    e->msg = n >= 0 ? m : oom_msg;
    if (details)
        e->details = strdup(details);
    return -code;
}

void cni_error_clear(cni_error *e)
{
    if (!e)
        return;
    free_msg(e);
    e->code = 0;
}

char *cni_error_encode(const cni_error *e, const char *version)
{
    json_object *o = json_object_new_object();
    bool ok = o != NULL;
    ok = ok && pv_json_add_str(o, "cniVersion", version ? version : CNI_VERSION_LATEST);
    ok = ok && pv_json_add_i64(o, "code", e->code ? e->code : CNI_ERR_INTERNAL);
    ok = ok && pv_json_add_str(o, "msg", e->msg ? e->msg : "provisio-cni: unknown error");
    ok = ok && pv_json_add_str(o, "details", e->details);
    char *out = NULL;
    if (ok) {
        const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                              JSON_C_TO_STRING_NOSLASHESCAPE);
        out = s ? strdup(s) : NULL;
    }
    json_object_put(o);
    return out;
}
