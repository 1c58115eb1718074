/* cni_names - see cni_names.h. */
#include "cni_names.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

/* The first 12 bytes (24 hex digits) of SHA-256 over parts joined by NUL. */
static bool hash_hex(const char *const *parts, size_t n, char hex[25])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;
    for (size_t i = 0; ok && i < n; i++)
        ok = EVP_DigestUpdate(ctx, parts[i], strlen(parts[i]) + (i + 1 < n)) == 1;
    ok = ok && EVP_DigestFinal_ex(ctx, md, &md_len) == 1 && md_len >= 12;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return false;
    for (size_t i = 0; i < 12; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return true;
}

bool cni_names_claim(const char *network, const char *container_id, const char *ifname, size_t pool,
                     char out[CNI_NAMES_CLAIM_MAX])
{
    const char *parts[] = {network, container_id, ifname};
    char hex[25];
    if (!hash_hex(parts, 3, hex))
        return false;
    if (pool == 0)
        snprintf(out, CNI_NAMES_CLAIM_MAX, "cni-%s", hex);
    else
        snprintf(out, CNI_NAMES_CLAIM_MAX, "cni-%s-%u", hex, (unsigned)(pool & 0xff));
    return true;
}

bool cni_names_is_label_value(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
            return false;
    return true;
}

bool cni_names_label_value(const char *s, char out[64])
{
    if (cni_names_is_label_value(s)) {
        snprintf(out, 64, "%s", s);
        return true;
    }
    const char *parts[] = {s};
    char hex[25];
    if (!hash_hex(parts, 1, hex))
        return false;
    snprintf(out, 64, "h%s", hex);
    return true;
}

bool cni_names_container_label(const char *container_id, char out[64])
{
    size_t n = strlen(container_id);
    if (n > 63) {
        snprintf(out, 64, "%.63s", container_id);
        while (n > 0 && (n = strlen(out)) > 0 && !isalnum((unsigned char)out[n - 1]))
            out[n - 1] = '\0';
        if (cni_names_is_label_value(out))
            return true;
    }
    return cni_names_label_value(container_id, out);
}
