/*
 * vol_btrfs - the btrfs backend: each volume's directory is a subvolume,
 * and the subvolume's own qgroup (0/<subvolume id>) has a limit on the
 * bytes it references (max_rfer). Quotas are enabled on the filesystem by
 * the first volume. All by ioctl; the qgroup numbers are read from the
 * quota tree (tree search), which holds them as of the last transaction
 * commit.
 *
 * Crash safety: a subvolume is made or not in one ioctl under a fixed
 * name, so no run leaks one; the limit is set on every run, so a run
 * killed between the two is completed by the next.
 */
#include "vol_agent_internal.h"

#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/btrfs.h>
#include <linux/btrfs_tree.h>

/* One item (objectid 0, type, offset) of the quota tree into item
 * (len bytes at most); *found false when it is not there. */
static int quota_item(int fd, uint32_t type, uint64_t offset, void *item, size_t len, bool *found)
{
    struct btrfs_ioctl_search_args a;
    memset(&a, 0, sizeof a);
    a.key.tree_id = BTRFS_QUOTA_TREE_OBJECTID;
    a.key.min_type = a.key.max_type = type;
    a.key.min_offset = a.key.max_offset = offset;
    a.key.max_transid = UINT64_MAX;
    a.key.nr_items = 1;
    *found = false;
    if (ioctl(fd, BTRFS_IOC_TREE_SEARCH, &a) != 0)
        return -errno; /* ENOENT: no quota tree */
    if (a.key.nr_items == 0)
        return 0;
    struct btrfs_ioctl_search_header h;
    memcpy(&h, a.buf, sizeof h);
    if (h.objectid != 0 || h.type != type || h.offset != offset)
        return 0;
    memset(item, 0, len);
    memcpy(item, a.buf + sizeof h, h.len < len ? h.len : len);
    *found = true;
    return 0;
}

int vol_btrfs_quota_enabled(int fd, bool *enabled, vol_error *err)
{
    struct btrfs_qgroup_status_item st;
    int rc = quota_item(fd, BTRFS_QGROUP_STATUS_KEY, 0, &st, sizeof st, enabled);
    if (rc == -ENOENT) {
        *enabled = false;
        return 0;
    }
    return rc != 0 ? vol_fail(err, -rc, "btrfs quota status") : 0;
}

int vol_btrfs_qgroup_get(int fd, uint64_t subvol_id, vol_btrfs_qgroup *out, vol_error *err)
{
    *out = (vol_btrfs_qgroup){0};
    struct btrfs_qgroup_info_item info;
    bool found = false;
    int rc = quota_item(fd, BTRFS_QGROUP_INFO_KEY, subvol_id, &info, sizeof info, &found);
    if (rc == 0 && !found)
        rc = -ENOENT;
    if (rc != 0)
        return vol_fail(err, -rc, "qgroup 0/%llu", (unsigned long long)subvol_id);
    out->referenced = le64toh(info.rfer);
    out->exclusive = le64toh(info.excl);
    struct btrfs_qgroup_limit_item lim;
    rc = quota_item(fd, BTRFS_QGROUP_LIMIT_KEY, subvol_id, &lim, sizeof lim, &found);
    if (rc != 0)
        return vol_fail(err, -rc, "qgroup 0/%llu limit", (unsigned long long)subvol_id);
    if (found && (le64toh(lim.flags) & BTRFS_QGROUP_LIMIT_MAX_RFER) != 0)
        out->max_rfer = le64toh(lim.max_rfer);
    return 0;
}

int vol_btrfs_subvol_id(int fd, uint64_t *id, vol_error *err)
{
    struct btrfs_ioctl_ino_lookup_args a;
    memset(&a, 0, sizeof a);
    a.objectid = BTRFS_FIRST_FREE_OBJECTID; /* with treeid 0: just the tree of fd */
    if (ioctl(fd, BTRFS_IOC_INO_LOOKUP, &a) != 0)
        return vol_fail(err, errno, "subvolume id");
    *id = a.treeid;
    return 0;
}

static int enable_quota(int poolfd, const char *path, vol_error *err)
{
    bool enabled = false;
    int rc = vol_btrfs_quota_enabled(poolfd, &enabled, err);
    if (rc != 0 || enabled)
        return rc;
    struct btrfs_ioctl_quota_ctl_args q = {.cmd = BTRFS_QUOTA_CTL_ENABLE};
    if (ioctl(poolfd, BTRFS_IOC_QUOTA_CTL, &q) != 0)
        return vol_fail(err, errno, "%s: enable btrfs quota", path);
    return 0;
}

static int create_subvol(int poolfd, const char *dirname, const char *path, vol_error *err)
{
    struct btrfs_ioctl_vol_args_v2 a;
    memset(&a, 0, sizeof a);
    size_t n = strlen(dirname);
    if (n >= sizeof a.name)
        return vol_failx(err, ENAMETOOLONG, "%s: name too long", path);
    memcpy(a.name, dirname, n + 1);
    if (ioctl(poolfd, BTRFS_IOC_SUBVOL_CREATE_V2, &a) != 0 && errno != EEXIST)
        return vol_fail(err, errno, "%s: create subvolume", path);
    return 0;
}

/* True when directory dirname in poolfd holds nothing. */
static int dir_is_empty(int poolfd, const char *dirname, bool *empty)
{
    int fd = openat(poolfd, dirname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        int e = errno;
        close(fd);
        return -e;
    }
    *empty = true;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            *empty = false;
            break;
        }
    closedir(d);
    return 0;
}

/* A plain directory stands where the subvolume goes (made while the pool's
 * quota was Off, or by someone else): empty, it is replaced; with content,
 * the volume stays without a limit (Auto) or fails (Required). *plain is
 * set when it stays. */
static int replace_plain_dir(int poolfd, const char *dirname, const char *path, vol_quota_mode mode,
                             vol_dir_result *out, bool *plain, vol_error *err)
{
    bool empty = false;
    int rc = dir_is_empty(poolfd, dirname, &empty);
    if (rc != 0)
        return vol_fail(err, -rc, "%s", path);
    if (empty) {
        if (unlinkat(poolfd, dirname, AT_REMOVEDIR) != 0 && errno != ENOENT)
            return vol_fail(err, errno, "%s: remove empty plain directory", path);
        return create_subvol(poolfd, dirname, path, err);
    }
    static const char why[] = "a plain directory with content, not a subvolume: no limit";
    if (mode == VOL_QUOTA_REQUIRED)
        return vol_failx(err, ENOTSUP, "%s is %s", path, why);
    *plain = true;
    out->backend = VOL_BACKEND_PLAIN;
    out->quota = VOL_QUOTA_STATE_UNSUPPORTED;
    free(out->quota_reason);
    if ((out->quota_reason = strdup(why)) == NULL)
        return vol_failx(err, ENOMEM, "out of memory");
    return 0;
}

static int set_limit(int fd, uint64_t id, uint64_t bytes, const char *path, vol_error *err)
{
    struct btrfs_ioctl_qgroup_limit_args l;
    memset(&l, 0, sizeof l);
    l.qgroupid = id;
    l.lim.flags = BTRFS_QGROUP_LIMIT_MAX_RFER;
    l.lim.max_rfer = bytes;
    if (ioctl(fd, BTRFS_IOC_QGROUP_LIMIT, &l) == 0)
        return 0;
    if (errno != ENOENT)
        return vol_fail(err, errno, "%s: limit qgroup 0/%llu", path, (unsigned long long)id);
    /* The qgroup is gone (someone destroyed it): make it again. Its
     * numbers start from zero until a rescan; the limit holds from now. */
    struct btrfs_ioctl_qgroup_create_args c = {.create = 1, .qgroupid = id};
    if (ioctl(fd, BTRFS_IOC_QGROUP_CREATE, &c) != 0 && errno != EEXIST)
        return vol_fail(err, errno, "%s: create qgroup 0/%llu", path, (unsigned long long)id);
    if (ioctl(fd, BTRFS_IOC_QGROUP_LIMIT, &l) != 0)
        return vol_fail(err, errno, "%s: limit qgroup 0/%llu", path, (unsigned long long)id);
    return 0;
}

int vol_btrfs_ensure(int poolfd, const char *dirname, const char *path, uint64_t bytes,
                     vol_quota_mode mode, vol_dir_result *out, vol_error *err)
{
    int rc = enable_quota(poolfd, path, err);
    if (rc != 0)
        return rc;
    struct stat st;
    if (fstatat(poolfd, dirname, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno != ENOENT)
            return vol_fail(err, errno, "%s", path);
        rc = create_subvol(poolfd, dirname, path, err);
    } else if (!S_ISDIR(st.st_mode)) {
        return vol_failx(err, EEXIST, "%s exists and is not a directory", path);
    } else if (st.st_ino != VOL_BTRFS_SUBVOL_INO) {
        bool plain = false;
        rc = replace_plain_dir(poolfd, dirname, path, mode, out, &plain, err);
        if (rc == 0 && plain) {
            int fd = openat(poolfd, dirname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0)
                return vol_fail(err, errno, "%s", path);
            rc = fchmod(fd, 0777) == 0 ? 0 : vol_fail(err, errno, "chmod %s", path);
            close(fd);
            return rc;
        }
    }
    if (rc != 0)
        return rc;
    int fd = openat(poolfd, dirname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return vol_fail(err, errno, "%s", path);
    uint64_t id = 0;
    if (fstat(fd, &st) != 0)
        rc = vol_fail(err, errno, "%s", path);
    else if (st.st_ino != VOL_BTRFS_SUBVOL_INO)
        rc = vol_failx(err, EAGAIN, "%s changed under us: not a subvolume", path);
    if (rc == 0)
        rc = vol_btrfs_subvol_id(fd, &id, err);
    if (rc == 0)
        rc = set_limit(fd, id, bytes, path, err);
    if (rc == 0 && fchmod(fd, 0777) != 0)
        rc = vol_fail(err, errno, "chmod %s", path);
    close(fd);
    if (rc != 0)
        return rc;
    out->backend = VOL_BACKEND_BTRFS;
    out->quota = VOL_QUOTA_STATE_ENFORCED;
    out->subvolume_id = id;
    out->limit_bytes = bytes;
    return 0;
}

static int destroy_subvol(int poolfd, const char *dirname)
{
    struct btrfs_ioctl_vol_args_v2 a;
    memset(&a, 0, sizeof a);
    size_t n = strlen(dirname);
    if (n >= sizeof a.name)
        return -ENAMETOOLONG;
    memcpy(a.name, dirname, n + 1);
    if (ioctl(poolfd, BTRFS_IOC_SNAP_DESTROY_V2, &a) != 0)
        return errno == ENOENT ? 0 : -errno;
    return 0;
}

int vol_btrfs_remove(int poolfd, int dirfd, const char *dirname, const char *path, vol_error *err)
{
    uint64_t id = 0;
    int rc = vol_btrfs_subvol_id(dirfd, &id, err);
    if (rc != 0)
        return rc;
    rc = destroy_subvol(poolfd, dirname);
    if (rc == -ENOTEMPTY) {
        /* Subvolumes made inside it (anyone who can write there can):
         * clear the tree, destroying them, then try again. */
        if ((rc = vol_tree_clear(dirfd, path, err)) != 0)
            return rc;
        rc = destroy_subvol(poolfd, dirname);
    }
    if (rc != 0)
        return vol_fail(err, -rc, "%s: destroy subvolume", path);
    /* The qgroup: the kernel refuses (EBUSY) while the cleaner has not
     * dropped the subvolume yet, and (Linux 6.10 on) removes it itself when
     * it has. Older kernels keep it as a stale qgroup with a limit that
     * nothing references (README.md). */
    struct btrfs_ioctl_qgroup_create_args c = {.create = 0, .qgroupid = id};
    (void)ioctl(poolfd, BTRFS_IOC_QGROUP_CREATE, &c);
    return 0;
}

int vol_btrfs_usage(int dirfd, const char *path, unsigned flags, vol_usage *out, vol_error *err)
{
    struct stat st;
    if (fstat(dirfd, &st) != 0)
        return vol_fail(err, errno, "%s", path);
    if (st.st_ino != VOL_BTRFS_SUBVOL_INO)
        return vol_failx(err, ENOTSUP, "%s is not a subvolume: no qgroup", path);
    uint64_t id = 0;
    int rc = vol_btrfs_subvol_id(dirfd, &id, err);
    if (rc != 0)
        return rc;
    /* The qgroup numbers are brought up to date by a transaction commit. */
    if ((flags & VOL_USAGE_SYNC) != 0 && syncfs(dirfd) != 0)
        return vol_fail(err, errno, "%s: syncfs", path);
    vol_btrfs_qgroup q;
    rc = vol_btrfs_qgroup_get(dirfd, id, &q, err);
    if (rc == -ENOENT)
        return vol_failx(err, ENOTSUP, "%s: no qgroup 0/%llu (quota disabled?)", path,
                         (unsigned long long)id);
    if (rc != 0)
        return rc;
    out->used_bytes = q.referenced;
    out->limit_bytes = q.max_rfer;
    out->backend = VOL_BACKEND_BTRFS;
    return 0;
}
