/*
 * ip_names - Reservation names of addresses: "ipnet.<network>.<address>", the
 * address encoded by ipam_reservation_name (dots and colons as dashes, IPv6
 * fully expanded without leading zeros) so that every form of one address
 * makes one name in one network, whichever pool of the network it is taken
 * through: the name is the lock. Versions before networks named them
 * "ippool.<pool>.<address>" (one lock per pool, so overlapping pools could
 * hand out one address twice); those are still read, and moved.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ip_internal.h"
#include "kc_error.h"

#define IP_NAME_PREFIX "ipnet."
#define IP_LEGACY_PREFIX "ippool."

static int names_make(const char *prefix, const char *label, ipam_addr a, char **out)
{
    if (!out)
        return KC_ERR_INVALID_ARG;
    *out = NULL;
    /* Network and IPPool names are DNS labels (ipam takes subdomains): no dots. */
    if (!label || strchr(label, '.') || strlen(label) > 63)
        return KC_ERR_INVALID_ARG;
    char *tail = NULL;
    int rc = ipam_reservation_name(label, a, &tail);
    if (rc != 0)
        return rc;
    if (asprintf(out, "%s%s", prefix, tail) < 0) {
        *out = NULL;
        rc = KC_ERR_NOMEM;
    }
    free(tail);
    return rc;
}

static int names_parse(const char *prefix, const char *name, char **label_out, ipam_addr *addr_out)
{
    size_t n = strlen(prefix);
    if (!name || strncmp(name, prefix, n) != 0)
        return KC_ERR_INVALID_ARG;
    /* The label is a DNS label: its dot-free part only (ipam takes subdomains). */
    const char *dot = strchr(name + n, '.');
    if (!dot || strchr(dot + 1, '.'))
        return KC_ERR_INVALID_ARG;
    return ipam_reservation_name_parse(name + n, label_out, addr_out);
}

int ip_names_reservation(const char *network, ipam_addr a, char **out)
{
    return names_make(IP_NAME_PREFIX, network, a, out);
}

int ip_names_parse(const char *name, char **network_out, ipam_addr *addr_out)
{
    return names_parse(IP_NAME_PREFIX, name, network_out, addr_out);
}

int ip_names_legacy(const char *pool_name, ipam_addr a, char **out)
{
    return names_make(IP_LEGACY_PREFIX, pool_name, a, out);
}

int ip_names_legacy_parse(const char *name, char **pool_out, ipam_addr *addr_out)
{
    return names_parse(IP_LEGACY_PREFIX, name, pool_out, addr_out);
}

int ip_names_slot(const char *network, const char *slot, char **name, char **canonical)
{
    *name = NULL;
    if (canonical)
        *canonical = NULL;
    ipam_addr a;
    if (!slot || ipam_addr_parse(slot, &a) != 0)
        return KC_ERR_INVALID_ARG;
    int rc = ip_names_reservation(network, a, name);
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
