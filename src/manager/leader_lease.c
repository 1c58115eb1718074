/*
 * leader_lease - the pure half of leader election (part of le; see leader.c
 * for the loop and its threads): Lease records and observations, the expiry
 * and deadline decisions, the rules that build the next record, MicroTime
 * text and the Lease spec JSON. No state and no I/O, so tests can feed it
 * any times.
 */
#include "leader_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pv_json.h"

/* ---- records ------------------------------------------------------------ */

static const char *holder_or_empty(const le_record *r)
{
    return (r && r->holder_identity) ? r->holder_identity : "";
}

void le_record_clear(le_record *r)
{
    if (!r)
        return;
    free(r->holder_identity);
    memset(r, 0, sizeof(*r));
}

int le_record_copy(le_record *dst, const le_record *src)
{
    *dst = *src;
    dst->holder_identity = NULL;
    if (src->holder_identity) {
        dst->holder_identity = strdup(src->holder_identity);
        if (!dst->holder_identity)
            return KC_ERR_NOMEM;
    }
    return KC_OK;
}

bool le_record_equal(const le_record *a, const le_record *b)
{
    return strcmp(holder_or_empty(a), holder_or_empty(b)) == 0 &&
           a->lease_duration_seconds == b->lease_duration_seconds &&
           a->acquire_time_us == b->acquire_time_us && a->renew_time_us == b->renew_time_us &&
           a->lease_transitions == b->lease_transitions;
}

bool le_record_held(const le_record *r)
{
    return r && r->holder_identity && r->holder_identity[0] != '\0';
}

void le_observed_clear(le_observed *o)
{
    if (!o)
        return;
    le_record_clear(&o->record);
    o->valid = false;
    o->time = 0;
}

/* Replace the observation with r at time now, whatever it was. */
int leader_observed_set(le_observed *o, const le_record *r, double now)
{
    le_record copy;
    if (le_record_copy(&copy, r) != KC_OK)
        return KC_ERR_NOMEM;
    le_record_clear(&o->record);
    o->record = copy;
    o->valid = true;
    o->time = now;
    return KC_OK;
}

int le_observe(le_observed *o, const le_record *r, double now)
{
    if (o->valid && le_record_equal(&o->record, r))
        return 0;
    int rc = leader_observed_set(o, r, now);
    return rc == KC_OK ? 1 : rc;
}

bool le_lease_expired(const le_record *observed, double observed_time, double now)
{
    return !(observed_time + (double)observed->lease_duration_seconds > now);
}

bool le_can_acquire(const le_observed *o, const char *identity, double now)
{
    if (!o->valid || !le_record_held(&o->record))
        return true;
    if (identity && strcmp(o->record.holder_identity, identity) == 0)
        return true;
    return le_lease_expired(&o->record, o->time, now);
}

bool le_renew_deadline_passed(double last_renew, double now, double renew_deadline)
{
    return now - last_renew >= renew_deadline;
}

int le_next_record(const le_record *current, const char *identity, long lease_duration_seconds,
                   int64_t now_us, le_record *out)
{
    memset(out, 0, sizeof(*out));
    out->holder_identity = strdup(identity ? identity : "");
    if (!out->holder_identity)
        return KC_ERR_NOMEM;
    out->lease_duration_seconds = lease_duration_seconds;
    out->renew_time_us = now_us;
    out->acquire_time_us = now_us;
    if (!current)
        return KC_OK;
    if (le_record_held(current) && strcmp(current->holder_identity, out->holder_identity) == 0) {
        /* Renewal: the same tenure goes on. */
        out->acquire_time_us = current->acquire_time_us ? current->acquire_time_us : now_us;
        out->lease_transitions = current->lease_transitions;
    } else {
        out->lease_transitions = current->lease_transitions + 1;
    }
    return KC_OK;
}

int le_release_record(const le_record *current, int64_t now_us, le_record *out)
{
    memset(out, 0, sizeof(*out));
    out->holder_identity = strdup("");
    if (!out->holder_identity)
        return KC_ERR_NOMEM;
    out->lease_duration_seconds = 1;
    out->acquire_time_us = now_us;
    out->renew_time_us = now_us;
    out->lease_transitions = current ? current->lease_transitions : 0;
    return KC_OK;
}

/* ---- MicroTime ------------------------------------------------------------ */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int days_in_month(int64_t y, int m)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dim[m - 1];
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Write v (0 <= v < 10^n) as n decimal digits; returns the end. */
static char *put_digits(char *p, int64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + n;
}

int le_format_micro_time(int64_t us, char *buf)
{
    int64_t sec = floor_div(us, 1000000);
    int64_t frac = us - sec * 1000000;
    int64_t days = floor_div(sec, 86400);
    int64_t sod = sec - days * 86400;
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    if (y < 1 || y > 9999)
        return KC_ERR_INVALID_ARG;
    /* Fixed layout: "YYYY-MM-DDTHH:MM:SS.ffffffZ". */
    char *p = buf;
    p = put_digits(p, y, 4);
    *p++ = '-';
    p = put_digits(p, m, 2);
    *p++ = '-';
    p = put_digits(p, d, 2);
    *p++ = 'T';
    p = put_digits(p, sod / 3600, 2);
    *p++ = ':';
    p = put_digits(p, sod / 60 % 60, 2);
    *p++ = ':';
    p = put_digits(p, sod % 60, 2);
    *p++ = '.';
    p = put_digits(p, frac, 6);
    *p++ = 'Z';
    *p = '\0';
    return KC_OK;
}

/* Exactly n decimal digits at *p; advances *p. */
static bool take_digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return true;
}

static bool take_char(const char **p, char c)
{
    if (**p != c)
        return false;
    (*p)++;
    return true;
}

int le_parse_micro_time(const char *s, int64_t *out_us)
{
    if (!s || !out_us)
        return KC_ERR_INVALID_ARG;
    const char *p = s;
    int y, mo, d, h, mi, se;
    if (!take_digits(&p, 4, &y) || !take_char(&p, '-') || !take_digits(&p, 2, &mo) ||
        !take_char(&p, '-') || !take_digits(&p, 2, &d) || !take_char(&p, 'T') ||
        !take_digits(&p, 2, &h) || !take_char(&p, ':') || !take_digits(&p, 2, &mi) ||
        !take_char(&p, ':') || !take_digits(&p, 2, &se))
        return KC_ERR_INVALID_ARG;
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 59)
        return KC_ERR_INVALID_ARG;
    int64_t frac = 0;
    if (take_char(&p, '.')) {
        int ndigits = 0;
        while (*p >= '0' && *p <= '9') {
            if (ndigits < 6)
                frac = frac * 10 + (*p - '0');
            ndigits++;
            p++;
        }
        if (ndigits == 0)
            return KC_ERR_INVALID_ARG;
        for (int i = ndigits; i < 6; i++)
            frac *= 10;
    }
    int64_t offset = 0;
    if (!take_char(&p, 'Z')) {
        int sign;
        if (take_char(&p, '+'))
            sign = 1;
        else if (take_char(&p, '-'))
            sign = -1;
        else
            return KC_ERR_INVALID_ARG;
        int oh, om;
        if (!take_digits(&p, 2, &oh) || !take_char(&p, ':') || !take_digits(&p, 2, &om) ||
            oh > 23 || om > 59)
            return KC_ERR_INVALID_ARG;
        offset = sign * (int64_t)(oh * 3600 + om * 60);
    }
    if (*p != '\0')
        return KC_ERR_INVALID_ARG;
    int64_t sec = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - offset;
    *out_us = sec * 1000000 + frac;
    return KC_OK;
}

/* ---- Lease JSON ------------------------------------------------------------- */

static int spec_long(json_object *spec, const char *key, long *out)
{
    json_object *v = NULL;
    *out = 0;
    if (!json_object_object_get_ex(spec, key, &v) || v == NULL)
        return KC_OK;
    if (!json_object_is_type(v, json_type_int))
        return KC_ERR_DECODE;
    *out = (long)json_object_get_int64(v);
    return KC_OK;
}

static int spec_time(json_object *spec, const char *key, int64_t *out)
{
    json_object *v = NULL;
    *out = 0;
    if (!json_object_object_get_ex(spec, key, &v) || v == NULL)
        return KC_OK;
    if (!json_object_is_type(v, json_type_string))
        return KC_ERR_DECODE;
    return le_parse_micro_time(json_object_get_string(v), out) == KC_OK ? KC_OK : KC_ERR_DECODE;
}

int le_record_from_lease(json_object *lease, le_record *out)
{
    memset(out, 0, sizeof(*out));
    if (!json_object_is_type(lease, json_type_object))
        return KC_ERR_DECODE;
    json_object *spec = NULL;
    if (!json_object_object_get_ex(lease, "spec", &spec) || spec == NULL)
        return KC_OK;
    if (!json_object_is_type(spec, json_type_object))
        return KC_ERR_DECODE;
    int rc;
    if ((rc = spec_long(spec, "leaseDurationSeconds", &out->lease_duration_seconds)) != KC_OK ||
        (rc = spec_long(spec, "leaseTransitions", &out->lease_transitions)) != KC_OK ||
        (rc = spec_time(spec, "acquireTime", &out->acquire_time_us)) != KC_OK ||
        (rc = spec_time(spec, "renewTime", &out->renew_time_us)) != KC_OK)
        return rc;
    json_object *h = NULL;
    if (json_object_object_get_ex(spec, "holderIdentity", &h) && h != NULL) {
        if (!json_object_is_type(h, json_type_string))
            return KC_ERR_DECODE;
        out->holder_identity = strdup(json_object_get_string(h));
        if (!out->holder_identity)
            return KC_ERR_NOMEM;
    }
    return KC_OK;
}

/* Add val under key; val NULL is an allocation failure. Consumes val. */
int leader_add_field(json_object *obj, const char *key, json_object *val)
{
    return pv_json_add(obj, key, val) ? KC_OK : KC_ERR_NOMEM;
}

static int add_time(json_object *obj, const char *key, int64_t us)
{
    char buf[LE_MICROTIME_BUFSZ];
    if (us == 0 || le_format_micro_time(us, buf) != KC_OK)
        return json_object_object_add(obj, key, NULL) == 0 ? KC_OK : KC_ERR_NOMEM;
    return leader_add_field(obj, key, json_object_new_string(buf));
}

json_object *le_record_to_spec(const le_record *r)
{
    json_object *spec = json_object_new_object();
    if (!spec)
        return NULL;
    if (leader_add_field(spec, "holderIdentity", json_object_new_string(holder_or_empty(r))) !=
            KC_OK ||
        leader_add_field(spec, "leaseDurationSeconds",
                         json_object_new_int64((int64_t)r->lease_duration_seconds)) != KC_OK ||
        add_time(spec, "acquireTime", r->acquire_time_us) != KC_OK ||
        add_time(spec, "renewTime", r->renew_time_us) != KC_OK ||
        leader_add_field(spec, "leaseTransitions",
                         json_object_new_int64((int64_t)r->lease_transitions)) != KC_OK) {
        json_object_put(spec);
        return NULL;
    }
    return spec;
}
