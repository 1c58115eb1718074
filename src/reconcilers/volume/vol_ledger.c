/*
 * vol_ledger - the capacity ledger of one StoragePool (vol_ledger.h).
 *
 * The entries are few (at most VOL_INFLIGHT_MAX, usually none), so lookups
 * are linear. Every function keeps allocated >= 0 and never lets an
 * admission push it past capacity; the recount is the only place allocated
 * goes down.
 */
#include "vol_ledger.h"

#include "kc_error.h"
#include "kc_quantity.h"
#include "pv_json.h"
#include "rec_util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int capacity_of(json_object *pool, int64_t *out)
{
    json_object *cap = rec_obj_at(pool, "spec.capacity");
    kc_error err = {0};
    int rc = -1;
    if (json_object_is_type(cap, json_type_int)) {
        *out = json_object_get_int64(cap);
        rc = 0;
    } else if (json_object_is_type(cap, json_type_string) &&
               kc_quantity_bytes(json_object_get_string(cap), out, &err) == 0) {
        rc = 0;
    }
    kc_error_clear(&err);
    return rc == 0 && *out > 0 ? 0 : -1;
}

/* An int64 field >= min, or false. */
static bool get_i64(json_object *o, const char *key, int64_t min, int64_t *out)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
        return false;
    errno = 0;
    int64_t x = json_object_get_int64(v);
    if (errno != 0 || x < min)
        return false;
    *out = x;
    return true;
}

/* 0, 1 when e is not an entry the schema allows, or KC_ERR_NOMEM. */
static int read_admission(json_object *e, vol_admission *a)
{
    const char *uid = rec_obj_str(e, "uid");
    time_t until;
    if (!uid || !*uid || strlen(uid) > 63 || !get_i64(e, "bytes", 1, &a->bytes) ||
        !rec_parse_time(rec_obj_str(e, "admittedUntil"), &until))
        return 1;
    a->until = (int64_t)until;
    a->uid = strdup(uid);
    return a->uid ? 0 : KC_ERR_NOMEM;
}

/* Reads status.allocatedBytes and status.inFlight: 0 (known says whether
 * they were usable) or KC_ERR_NOMEM. */
static int read_status(json_object *status, vol_ledger *l)
{
    if (!get_i64(status, "allocatedBytes", 0, &l->allocated))
        return 0;
    json_object *arr;
    if (json_object_object_get_ex(status, "inFlight", &arr)) {
        if (!json_object_is_type(arr, json_type_array))
            return 0;
        size_t n = json_object_array_length(arr);
        if (n > VOL_INFLIGHT_MAX)
            return 0;
        l->inflight = n ? calloc(n, sizeof *l->inflight) : NULL;
        if (n && !l->inflight)
            return KC_ERR_NOMEM;
        for (size_t i = 0; i < n; i++) {
            vol_admission a = {0};
            int rc = read_admission(json_object_array_get_idx(arr, i), &a);
            if (rc != 0)
                return rc < 0 ? rc : 0;
            if (vol_ledger_find(l, a.uid)) { /* a uid twice: not ours */
                free(a.uid);
                return 0;
            }
            l->inflight[l->n_inflight++] = a;
        }
    }
    l->known = true;
    return 0;
}

static void clear_inflight(vol_ledger *l)
{
    for (size_t i = 0; i < l->n_inflight; i++)
        free(l->inflight[i].uid);
    free(l->inflight);
    l->inflight = NULL;
    l->n_inflight = 0;
}

int vol_ledger_read(json_object *pool, vol_ledger *l, char **why)
{
    memset(l, 0, sizeof *l);
    *why = NULL;
    if (capacity_of(pool, &l->capacity) != 0) {
        if (rec_msg(why,
                    "spec.capacity of StoragePool %s is not a positive whole number of "
                    "bytes (such as 100Gi or 1073741824)",
                    rec_obj_str(pool, "metadata.name") ? rec_obj_str(pool, "metadata.name")
                                                       : "?") != 0)
            return KC_ERR_NOMEM;
        return KC_ERR_INVALID_ARG;
    }
    int rc = read_status(rec_obj_at(pool, "status"), l);
    if (rc == KC_ERR_NOMEM) {
        vol_ledger_close(l);
        return rc;
    }
    if (!l->known) { /* a half-read ledger is no ledger */
        clear_inflight(l);
        l->allocated = 0;
    }
    return 0;
}

void vol_ledger_close(vol_ledger *l)
{
    if (l == NULL)
        return;
    clear_inflight(l);
    memset(l, 0, sizeof *l);
}

int64_t vol_ledger_available(const vol_ledger *l)
{
    return l->allocated >= l->capacity ? 0 : l->capacity - l->allocated;
}

const vol_admission *vol_ledger_find(const vol_ledger *l, const char *uid)
{
    for (size_t i = 0; i < l->n_inflight; i++)
        if (strcmp(l->inflight[i].uid, uid) == 0)
            return &l->inflight[i];
    return NULL;
}

int vol_ledger_admit(vol_ledger *l, const char *uid, int64_t bytes, int64_t now,
                     vol_admit_result *result, bool *changed)
{
    bool dummy;
    if (changed == NULL)
        changed = &dummy;
    *changed = false;
    if (!l->known) {
        *result = VOL_LEDGER_UNKNOWN;
        return 0;
    }
    if (vol_ledger_find(l, uid)) {
        *result = VOL_ADMITTED_AGAIN;
        return 0;
    }
    if (bytes <= 0 || bytes > l->capacity || l->allocated > l->capacity - bytes) {
        *result = VOL_NO_ROOM;
        return 0;
    }
    if (l->n_inflight >= VOL_INFLIGHT_MAX) {
        *result = VOL_LEDGER_FULL;
        return 0;
    }
    char *copy = strdup(uid);
    vol_admission *grown = realloc(l->inflight, (l->n_inflight + 1) * sizeof *grown);
    if (!copy || !grown) {
        free(copy);
        if (grown)
            l->inflight = grown;
        return KC_ERR_NOMEM;
    }
    l->inflight = grown;
    l->inflight[l->n_inflight++] = (vol_admission){copy, bytes, now + VOL_ADMIT_TTL};
    l->allocated += bytes;
    *result = VOL_ADMITTED;
    *changed = true;
    return 0;
}

/* Removes entry i, keeping the order of the others (status stays stable). */
static void drop_at(vol_ledger *l, size_t i)
{
    free(l->inflight[i].uid);
    memmove(&l->inflight[i], &l->inflight[i + 1], (l->n_inflight - i - 1) * sizeof *l->inflight);
    l->n_inflight--;
}

size_t vol_ledger_forget_landed(vol_ledger *l, vol_landed_fn landed, void *ctx)
{
    size_t dropped = 0;
    for (size_t i = 0; i < l->n_inflight;) {
        if (landed(ctx, l->inflight[i].uid, l->inflight[i].until)) {
            drop_at(l, i);
            dropped++;
        } else {
            i++;
        }
    }
    return dropped;
}

bool vol_resv_valid(int64_t created, int64_t until)
{
    return created <= until;
}

bool vol_release_due(int64_t until, int64_t now)
{
    return until + VOL_ADMIT_GRACE < now;
}

/* The Reservation made from admission a, if listed. */
static const vol_listed *listed_find(const vol_listed *listed, size_t n, const vol_admission *a)
{
    for (size_t i = 0; i < n; i++)
        if (listed[i].uid && listed[i].until == a->until && strcmp(listed[i].uid, a->uid) == 0)
            return &listed[i];
    return NULL;
}

void vol_ledger_recount(vol_ledger *l, const vol_listed *listed, size_t n, int64_t t0)
{
    int64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        if (listed[i].bytes > 0 && vol_resv_valid(listed[i].created, listed[i].until))
            sum += listed[i].bytes;
    for (size_t i = 0; i < l->n_inflight;) {
        const vol_admission *a = &l->inflight[i];
        /* Landed: counted above (or invalid, and then never to count). */
        bool landed = listed_find(listed, n, a) != NULL;
        /* Expired: a Reservation made by its deadline was in the LIST. */
        bool expired = a->until + VOL_ADMIT_GRACE <= t0;
        if (landed || expired) {
            drop_at(l, i);
        } else {
            sum += a->bytes;
            i++;
        }
    }
    l->allocated = sum;
    l->known = true;
}

bool vol_ledger_recount_due(const vol_ledger *l, int64_t held_bytes, vol_landed_fn landed,
                            void *ctx)
{
    if (!l->known)
        return true;
    int64_t expected = held_bytes;
    for (size_t i = 0; i < l->n_inflight; i++)
        if (!landed(ctx, l->inflight[i].uid, l->inflight[i].until))
            expected += l->inflight[i].bytes;
    return l->allocated != expected;
}

int vol_ledger_write(const vol_ledger *l, json_object *status)
{
    if (!l->known)
        return 0;
    if (!pv_json_add_i64(status, "capacityBytes", l->capacity) ||
        !pv_json_add_i64(status, "allocatedBytes", l->allocated) ||
        !pv_json_add_i64(status, "availableBytes", vol_ledger_available(l)))
        return KC_ERR_NOMEM;
    if (l->n_inflight == 0) {
        json_object_object_del(status, "inFlight");
        return 0;
    }
    json_object *arr = json_object_new_array_ext((int)l->n_inflight);
    if (!pv_json_add(status, "inFlight", arr))
        return KC_ERR_NOMEM;
    for (size_t i = 0; i < l->n_inflight; i++) {
        char buf[REC_TIME_STRLEN];
        json_object *e = json_object_new_object();
        if (!e || json_object_array_add(arr, e) != 0) {
            json_object_put(e);
            return KC_ERR_NOMEM;
        }
        if (!pv_json_add_str(e, "uid", l->inflight[i].uid) ||
            !pv_json_add_i64(e, "bytes", l->inflight[i].bytes) ||
            !rec_format_time((time_t)l->inflight[i].until, buf) ||
            !pv_json_add_str(e, "admittedUntil", buf))
            return KC_ERR_NOMEM;
    }
    return 0;
}
