/*
 * ip_status - the status of IPClaims and IPPools (API.md), built from what
 * is held: carried-over conditions, Ready with its reason and message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ip_internal.h"
#include "kc_error.h"
#include "pv_json.h"
#include "rec_util.h"

static const char *status_str(json_object *status, const char *key)
{
    json_object *v = NULL;
    if (!status || !json_object_object_get_ex(status, key, &v) ||
        !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

bool ip_status_address(json_object *status, ipam_addr *out)
{
    const char *s = status_str(status, "address");
    ipam_cidr c;
    if (!s || !*s || ipam_cidr_parse(s, &c) != 0)
        return false;
    *out = c.addr;
    return true;
}

int ip_status_claim_ready(json_object *cached_status, const char *pool_name, json_object *pool_obj,
                          const ipam_pool *pool, ipam_addr a, int64_t generation, time_t now,
                          json_object **out)
{
    if (!out || !pool_name)
        return KC_ERR_INVALID_ARG;
    json_object *st = NULL;
    int rc = rec_status_base(cached_status, &st);
    if (rc != KC_OK)
        return rc;

    char buf[IPAM_CIDR_STRLEN];
    const char *address = NULL;
    if (pool) {
        address = ipam_pool_format_address(pool, a, buf);
    } else {
        /* No usable pool: keep the prefix already written for this address. */
        const char *old = status_str(cached_status, "address");
        ipam_cidr c;
        if (old && ipam_cidr_parse(old, &c) == 0 && ipam_addr_cmp(c.addr, a) == 0) {
            address = old;
        } else {
            char abuf[IPAM_ADDR_STRLEN];
            snprintf(buf, sizeof buf, "%s/%d", ipam_addr_format(a, abuf),
                     ipam_addr_family(a) == 4 ? 32 : 128);
            address = buf;
        }
    }
    bool ok = pv_json_add_str(st, "pool", pool_name) && pv_json_add_str(st, "address", address);
    /* Gateway and routes follow the pool; without one, what was written stays. */
    json_object *src = pool_obj ? rec_obj_at(pool_obj, "spec") : cached_status;
    const char *gw = src ? status_str(src, "gateway") : NULL;
    if (ok && gw)
        ok = pv_json_add_str(st, "gateway", gw);
    json_object *routes = NULL;
    if (ok && src && json_object_object_get_ex(src, "routes", &routes) &&
        json_object_is_type(routes, json_type_array))
        ok = rec_put_copy(st, "routes", routes);
    char *message = NULL;
    if (ok)
        ok = ip_msg_allocated(address, pool_name, &message) == KC_OK;
    if (ok)
        rc = rec_set_condition(st, REC_COND_READY, REC_COND_TRUE, IP_REASON_ALLOCATED, message,
                               generation, now, NULL);
    else
        rc = KC_ERR_NOMEM;
    free(message);
    if (rc != KC_OK) {
        json_object_put(st);
        return rc;
    }
    *out = st;
    return KC_OK;
}

int ip_status_pool(json_object *cached_status, const rec_pool_counts *counts,
                   const char *cond_status, const char *reason, const char *message,
                   int64_t generation, time_t now, json_object **out)
{
    if (!out || !counts)
        return KC_ERR_INVALID_ARG;
    json_object *st = NULL;
    int rc = rec_status_base(cached_status, &st);
    if (rc != KC_OK)
        return rc;
    if (!pv_json_add_i64(st, "total", counts->total) ||
        !pv_json_add_i64(st, "allocated", counts->allocated) ||
        !pv_json_add_i64(st, "available", counts->available))
        rc = KC_ERR_NOMEM;
    else
        rc = rec_set_condition(st, REC_COND_READY, cond_status, reason, message, generation, now,
                               NULL);
    if (rc == KC_OK && counts->scope) {
        char *m = NULL;
        rc = ip_msg_overlapping(counts->scope, counts->overlaps, counts->n_overlaps, &m);
        if (rc == KC_OK)
            rc = rec_set_condition(
                st, IP_COND_OVERLAPPING, counts->n_overlaps ? REC_COND_TRUE : REC_COND_FALSE,
                counts->n_overlaps ? IP_REASON_OVERLAPPING : IP_REASON_NO_OVERLAP, m, generation,
                now, NULL);
        free(m);
    }
    if (rc != KC_OK) {
        json_object_put(st);
        return rc;
    }
    *out = st;
    return KC_OK;
}
