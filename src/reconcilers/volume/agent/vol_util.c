/*
 * vol_util - what the volume agent's files share: errors with a message,
 * host-root paths, the names of volume directories and of filesystems.
 */
#include "vol_agent_internal.h"
#include "pv_strbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/magic.h>

void vol_error_clear(vol_error *e)
{
    if (e == NULL)
        return;
    free(e->message);
    *e = (vol_error){0};
}

static int vfail(vol_error *e, int errnum, bool suffix, const char *fmt, va_list ap)
{
    if (e == NULL)
        return -errnum;
    vol_error_clear(e);
    e->err = errnum;
    char *text = NULL;
    if (pv_vasprintf(&text, fmt, ap) < 0)
        return -errnum; /* no message: the errno still says what */
    if (!suffix) {
        e->message = text;
        return -errnum;
    }
    char buf[128];
    /* GNU strerror_r (_GNU_SOURCE): returns the text, maybe not in buf. */
    const char *why = strerror_r(errnum, buf, sizeof buf);
    if (asprintf(&e->message, "%s: %s", text, why) < 0)
        e->message = NULL;
    free(text);
    return -errnum;
}

int vol_fail(vol_error *e, int errnum, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail(e, errnum, true, fmt, ap);
    va_end(ap);
    return rc;
}

int vol_failx(vol_error *e, int errnum, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail(e, errnum, false, fmt, ap);
    va_end(ap);
    return rc;
}

int vol_quota_mode_parse(const char *s, vol_quota_mode *out)
{
    if (s == NULL || strcmp(s, "Auto") == 0)
        *out = VOL_QUOTA_AUTO;
    else if (strcmp(s, "Required") == 0)
        *out = VOL_QUOTA_REQUIRED;
    else if (strcmp(s, "Off") == 0)
        *out = VOL_QUOTA_OFF;
    else
        return -EINVAL;
    return 0;
}

const char *vol_quota_state_name(vol_quota_state s)
{
    switch (s) {
    case VOL_QUOTA_STATE_ENFORCED:
        return "Enforced";
    case VOL_QUOTA_STATE_UNSUPPORTED:
        return "Unsupported";
    case VOL_QUOTA_STATE_OFF:
        break;
    }
    return "Off";
}

const char *vol_backend_name(vol_backend b)
{
    switch (b) {
    case VOL_BACKEND_PROJECT:
        return "project";
    case VOL_BACKEND_BTRFS:
        return "btrfs";
    case VOL_BACKEND_PLAIN:
        break;
    }
    return "plain";
}

/* ---- paths ----------------------------------------------------------------- */

int vol_join(const char *host_root, const char *path, char **out, vol_error *err)
{
    *out = NULL;
    if (path == NULL || path[0] != '/')
        return vol_failx(err, EINVAL, "pool path %s is not absolute", path ? path : "(null)");
    size_t n = host_root != NULL ? strlen(host_root) : 0;
    while (n > 0 && host_root[n - 1] == '/')
        n--;
    if (asprintf(out, "%.*s%s", (int)n, n > 0 ? host_root : "", path) < 0) {
        *out = NULL;
        return vol_failx(err, ENOMEM, "out of memory");
    }
    return 0;
}

int vol_open_pool(const char *host_root, const char *path, vol_error *err)
{
    char *full = NULL;
    int rc = vol_join(host_root, path, &full, err);
    if (rc != 0)
        return rc;
    int fd = open(full, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        rc = vol_fail(err, errno, "pool path %s", full);
    free(full);
    return fd >= 0 ? fd : rc;
}

const char *vol_fs_type_name(uint64_t magic)
{
    static const struct {
        uint64_t magic;
        const char *name;
    } names[] = {
        {BTRFS_SUPER_MAGIC, "btrfs"},
        {XFS_SUPER_MAGIC, "xfs"},
        {EXT4_SUPER_MAGIC, "ext4"},
        {TMPFS_MAGIC, "tmpfs"},
        {OVERLAYFS_SUPER_MAGIC, "overlay"},
        {NFS_SUPER_MAGIC, "nfs"},
        {F2FS_SUPER_MAGIC, "f2fs"},
        {SQUASHFS_MAGIC, "squashfs"},
        {RAMFS_MAGIC, "ramfs"},
        {FUSE_SUPER_MAGIC, "fuse"},
        {0x2fc12fc1, "zfs"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].magic == magic)
            return names[i].name;
    return "unknown";
}

/* ---- directory names ------------------------------------------------------- */

/* The parts of a directory name: namespace a DNS label ([a-z0-9-]), name
 * a DNS subdomain ([a-z0-9.-]), uid a UUID ([A-Za-z0-9-]); each starts
 * with a letter or digit. None holds '_', so the name splits back
 * unambiguously, and none starts with '.', so no volume directory is
 * hidden from vol_dir_list. */
typedef enum part_kind { PART_NS, PART_NAME, PART_UID } part_kind;

static bool part_ok(const char *s, size_t n, part_kind kind)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                     (kind == PART_UID && c >= 'A' && c <= 'Z');
        bool ok = alnum || (i > 0 && (c == '-' || (kind == PART_NAME && c == '.')));
        if (!ok)
            return false;
    }
    return true;
}

int vol_dir_name(const vol_key *key, char **out, vol_error *err)
{
    *out = NULL;
    if (key == NULL || key->ns == NULL || key->name == NULL || key->uid == NULL)
        return vol_failx(err, EINVAL, "volume key incomplete");
    if (!part_ok(key->ns, strlen(key->ns), PART_NS))
        return vol_failx(err, EINVAL, "namespace \"%s\" is not a DNS label", key->ns);
    if (!part_ok(key->name, strlen(key->name), PART_NAME))
        return vol_failx(err, EINVAL, "name \"%s\" is not a DNS name", key->name);
    if (!part_ok(key->uid, strlen(key->uid), PART_UID))
        return vol_failx(err, EINVAL, "uid \"%s\" is not a UID", key->uid);
    if (asprintf(out, "%s_%s_%s", key->ns, key->name, key->uid) < 0) {
        *out = NULL;
        return vol_failx(err, ENOMEM, "out of memory");
    }
    if (strlen(*out) > 255) {
        int rc = vol_failx(err, ENAMETOOLONG, "directory name %s_%s_%s is longer than 255 bytes",
                           key->ns, key->name, key->uid);
        free(*out);
        *out = NULL;
        return rc;
    }
    return 0;
}

int vol_dir_name_parse(const char *dirname, char **ns, char **name, char **uid)
{
    *ns = *name = *uid = NULL;
    const char *a = strchr(dirname, '_');
    const char *b = strrchr(dirname, '_');
    if (a == NULL || a == b || strlen(dirname) > 255)
        return 0;
    size_t nn = (size_t)(a - dirname), mn = (size_t)(b - a - 1);
    if (!part_ok(dirname, nn, PART_NS) || !part_ok(a + 1, mn, PART_NAME) ||
        !part_ok(b + 1, strlen(b + 1), PART_UID))
        return 0;
    *ns = strndup(dirname, nn);
    *name = strndup(a + 1, mn);
    *uid = strdup(b + 1);
    if (*ns == NULL || *name == NULL || *uid == NULL) {
        free(*ns);
        free(*name);
        free(*uid);
        *ns = *name = *uid = NULL;
        return -ENOMEM;
    }
    return 1;
}
