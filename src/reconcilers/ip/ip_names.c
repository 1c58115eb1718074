/*
 * ip_names - Reservation names of addresses: "ippool.<pool>.<address>", the
 * address encoded by ipam_reservation_name (dots and colons as dashes, IPv6
 * fully expanded without leading zeros) so that every form of one address
 * makes one name: the name is the lock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ip_internal.h"
#include "kc_error.h"

#define IP_NAME_PREFIX "ippool."

int ip_names_reservation(const char *pool_name, ipam_addr a, char **out)
{
    if (!out)
        return KC_ERR_INVALID_ARG;
    *out = NULL;
    /* IPPool names are DNS labels (ipam takes subdomains): no dots. */
    if (!pool_name || strchr(pool_name, '.') || strlen(pool_name) > 63)
        return KC_ERR_INVALID_ARG;
    char *tail = NULL;
    int rc = ipam_reservation_name(pool_name, a, &tail);
    if (rc != 0)
        return rc;
    if (asprintf(out, IP_NAME_PREFIX "%s", tail) < 0) {
        *out = NULL;
        rc = KC_ERR_NOMEM;
    }
    free(tail);
    return rc;
}

int ip_names_parse(const char *name, char **pool_out, ipam_addr *addr_out)
{
    static const char prefix[] = IP_NAME_PREFIX;
    if (!name || strncmp(name, prefix, sizeof prefix - 1) != 0)
        return KC_ERR_INVALID_ARG;
    return ipam_reservation_name_parse(name + sizeof prefix - 1, pool_out, addr_out);
}

int ip_names_slot(const char *pool_name, const char *slot, char **name, char **canonical)
{
    *name = NULL;
    if (canonical)
        *canonical = NULL;
    ipam_addr a;
    if (!slot || ipam_addr_parse(slot, &a) != 0)
        return KC_ERR_INVALID_ARG;
    int rc = ip_names_reservation(pool_name, a, name);
    if (rc != KC_OK || !canonical)
        return rc;
    char buf[IPAM_ADDR_STRLEN];
    *canonical = strdup(ipam_addr_format(a, buf));
    if (!*canonical) {
        free(*name);
        *name = NULL;
        return KC_ERR_NOMEM;
    }
    return KC_OK;
}
