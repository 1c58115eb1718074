/*
 * ipam_names - Reservation names of addresses and their reverse.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipam_internal.h"

/* ---- reservation names --------------------------------------------------- */

#define V4_NAME_MAX 15 /* 255-255-255-255 */
#define V6_NAME_MAX 39 /* ffff-ffff-ffff-ffff-ffff-ffff-ffff-ffff */

size_t ipam_reservation_pool_name_max(int family)
{
    return IPAM_RESERVATION_NAME_MAX - 1 - (family == 4 ? V4_NAME_MAX : V6_NAME_MAX);
}

static bool is_alnum_lower(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* A DNS-1123 subdomain of len characters (len > 0 checked here). */
static bool is_subdomain(const char *s, size_t len)
{
    if (len == 0 || len > IPAM_RESERVATION_NAME_MAX)
        return false;
    size_t label_start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (i == label_start || !is_alnum_lower(s[label_start]) || !is_alnum_lower(s[i - 1]))
                return false;
            label_start = i + 1;
        } else if (!is_alnum_lower(s[i]) && s[i] != '-') {
            return false;
        }
    }
    return true;
}

/* Address part of a reservation name into buf (>= V6_NAME_MAX + 1). */
static void encode_addr(ipam_addr a, char *buf)
{
    if (ipam_is_v4(a.v)) {
        uint32_t x = ipam_addr_v4(a);
        sprintf(buf, "%u-%u-%u-%u", x >> 24, (x >> 16) & 0xffu, (x >> 8) & 0xffu, x & 0xffu);
        return;
    }
    char *p = buf;
    for (int i = 0; i < 8; i++)
        p += sprintf(p, i ? "-%x" : "%x", (unsigned)((a.v >> (16 * (7 - i))) & 0xffffu));
}

int ipam_reservation_name(const char *pool_name, ipam_addr a, char **out)
{
    if (!pool_name || !out)
        return KC_ERR_INVALID_ARG;
    size_t len = strlen(pool_name);
    if (len > ipam_reservation_pool_name_max(ipam_addr_family(a)) || !is_subdomain(pool_name, len))
        return KC_ERR_INVALID_ARG;
    char enc[V6_NAME_MAX + 1];
    encode_addr(a, enc);
    if (asprintf(out, "%s.%s", pool_name, enc) < 0) {
        *out = NULL;
        return KC_ERR_NOMEM;
    }
    return 0;
}

/*
 * One group of the address part: 1..maxd digits of the base (lower-case hex
 * for 16), no leading zero unless it is "0". Returns the value or -1.
 */
static long parse_group(const char *s, size_t n, int base, size_t maxd)
{
    if (n == 0 || n > maxd || (n > 1 && s[0] == '0'))
        return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        int d;
        if (s[i] >= '0' && s[i] <= '9')
            d = s[i] - '0';
        else if (base == 16 && s[i] >= 'a' && s[i] <= 'f')
            d = s[i] - 'a' + 10;
        else
            return -1;
        v = v * base + d;
    }
    return v;
}

static bool decode_addr(const char *s, ipam_addr *out)
{
    size_t groups = 1;
    for (const char *p = s; *p; p++)
        groups += *p == '-';
    if (groups != 4 && groups != 8)
        return false;
    int base = groups == 4 ? 10 : 16;
    ipam_u128 v = 0;
    const char *p = s;
    for (size_t g = 0; g < groups; g++) {
        const char *dash = strchr(p, '-');
        size_t n = dash ? (size_t)(dash - p) : strlen(p);
        long x = parse_group(p, n, base, base == 10 ? 3 : 4);
        if (x < 0 || (base == 10 && x > 255))
            return false;
        v = (v << (base == 10 ? 8 : 16)) | (ipam_u128)(unsigned long)x;
        p += n + 1;
    }
    if (base == 10)
        v |= V4_BASE;
    else if (ipam_is_v4(v))
        return false; /* an IPv4 address is always named in the 4-group form */
    out->v = v;
    return true;
}

int ipam_reservation_name_parse(const char *name, char **pool_out, ipam_addr *addr_out)
{
    if (!name)
        return KC_ERR_INVALID_ARG;
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name)
        return KC_ERR_INVALID_ARG;
    ipam_addr a;
    if (!decode_addr(dot + 1, &a))
        return KC_ERR_INVALID_ARG;
    size_t len = (size_t)(dot - name);
    if (len > ipam_reservation_pool_name_max(ipam_addr_family(a)) || !is_subdomain(name, len))
        return KC_ERR_INVALID_ARG;
    if (pool_out) {
        char *pool = strndup(name, len);
        if (!pool)
            return KC_ERR_NOMEM;
        *pool_out = pool;
    }
    if (addr_out)
        *addr_out = a;
    return 0;
}
