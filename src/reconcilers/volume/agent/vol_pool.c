/*
 * vol_pool - the check of one StoragePool's path on the node: present,
 * writable, what filesystem, how big, and whether a hard limit per volume
 * can be enforced there (and by which backend).
 */
#include "vol_agent_internal.h"
#include "pv_strbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/capability.h>
#include <linux/fs.h>
#include <linux/magic.h>

void vol_pool_report_free(vol_pool_report *r)
{
    if (r == NULL)
        return;
    free(r->message);
    free(r->quota_reason);
    *r = (vol_pool_report){0};
}

/* btrfs quota and subvolume ioctls need CAP_SYS_ADMIN (in the initial user
 * namespace, which is where the agent's DaemonSet runs privileged). */
static bool has_sys_admin(void)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];
    memset(d, 0, sizeof d);
    if (syscall(SYS_capget, &h, d) != 0)
        return false;
    return (d[CAP_TO_INDEX(CAP_SYS_ADMIN)].effective & CAP_TO_MASK(CAP_SYS_ADMIN)) != 0;
}

__attribute__((format(printf, 2, 3))) static int reason_of(char **reason, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = pv_vasprintf(reason, fmt, ap);
    va_end(ap);
    if (n < 0) {
        *reason = NULL;
        return -ENOMEM;
    }
    return 0;
}

/* ext4 refuses a non-zero project id on a file unless the filesystem has
 * the project feature (EOPNOTSUPP). The probe file is removed afterwards. */
static bool ext4_has_project(int probe_fd)
{
    struct fsxattr fa;
    if (ioctl(probe_fd, FS_IOC_FSGETXATTR, &fa) != 0)
        return false;
    fa.fsx_projid = VOL_PRJ_MAX;
    return ioctl(probe_fd, FS_IOC_FSSETXATTR, &fa) == 0;
}

static int probe_project(int dirfd, int probe_fd, uint64_t magic, vol_backend *backend,
                         vol_quota_state *quota, char **reason)
{
    bool xfs = magic == XFS_SUPER_MAGIC;
    if (!xfs && probe_fd >= 0 && !ext4_has_project(probe_fd))
        return reason_of(reason, "%s without the project feature", "ext4");
    bool accounted = false, enforced = false;
    int rc = vol_prj_state(dirfd, &accounted, &enforced);
    if (rc == -ENOSYS && xfs)
        return reason_of(reason, "kernel without %s quota support (CONFIG_XFS_QUOTA)", "XFS");
    if (rc != 0 || !accounted) {
        if (xfs)
            return reason_of(reason, "%s mounted without prjquota", "XFS");
        return reason_of(reason,
                         probe_fd >= 0 ? "%s project quota not enabled (mount with prjquota)"
                                       : "%s without the project feature or prjquota",
                         "ext4");
    }
    if (!enforced)
        return reason_of(reason, "%s project quota accounted but not enforced",
                         xfs ? "XFS" : "ext4");
    *backend = VOL_BACKEND_PROJECT;
    *quota = VOL_QUOTA_STATE_ENFORCED;
    return 0;
}

int vol_fs_probe(int dirfd, int probe_fd, vol_quota_mode mode, vol_backend *backend,
                 vol_quota_state *quota, char **reason)
{
    *backend = VOL_BACKEND_PLAIN;
    *reason = NULL;
    if (mode == VOL_QUOTA_OFF) {
        *quota = VOL_QUOTA_STATE_OFF;
        return 0;
    }
    *quota = VOL_QUOTA_STATE_UNSUPPORTED;
    struct statfs sf;
    if (fstatfs(dirfd, &sf) != 0)
        return reason_of(reason, "statfs: %s", strerror(errno));
    uint64_t magic = (uint64_t)sf.f_type;
    switch (magic) {
    case BTRFS_SUPER_MAGIC:
        if (!has_sys_admin())
            return reason_of(reason, "%s qgroups need CAP_SYS_ADMIN", "btrfs");
        *backend = VOL_BACKEND_BTRFS;
        *quota = VOL_QUOTA_STATE_ENFORCED;
        return 0;
    case XFS_SUPER_MAGIC:
    case EXT4_SUPER_MAGIC:
        return probe_project(dirfd, probe_fd, magic, backend, quota, reason);
    default:
        return reason_of(reason, "%s has no project quota or qgroups", vol_fs_type_name(magic));
    }
}

/* The probe: create (or truncate) and remove one fixed-name file, so a
 * check killed between the two leaves nothing that the next does not
 * reuse. *probe_fd stays open (the file unlinked) for vol_fs_probe. */
static int probe_writable(int fd, const char *path, vol_pool_report *out, int *probe_fd)
{
    *probe_fd = openat(fd, VOL_PROBE_NAME,
                       O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
    int e = errno;
    if (*probe_fd < 0) {
        if (asprintf(&out->message, "%s is not writable: %s", path, strerror(e)) < 0)
            return -ENOMEM;
        return 0;
    }
    if (unlinkat(fd, VOL_PROBE_NAME, 0) != 0 && errno != ENOENT) {
        e = errno;
        if (asprintf(&out->message, "%s: cannot remove %s: %s", path, VOL_PROBE_NAME, strerror(e)) <
            0)
            return -ENOMEM;
        return 0;
    }
    out->writable = true;
    return 0;
}

int vol_pool_check(const char *host_root, const char *path, vol_quota_mode mode,
                   vol_pool_report *out, vol_error *err)
{
    vol_pool_report_free(out);
    out->fs_type = "unknown";
    out->quota = mode == VOL_QUOTA_OFF ? VOL_QUOTA_STATE_OFF : VOL_QUOTA_STATE_UNSUPPORTED;
    char *full = NULL;
    int rc = vol_join(host_root, path, &full, err);
    if (rc != 0)
        return rc;
    int fd = open(full, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int e = errno;
    free(full);
    if (fd < 0) {
        if (asprintf(&out->message, "%s: %s", path, strerror(e)) < 0 ||
            (mode != VOL_QUOTA_OFF &&
             reason_of(&out->quota_reason, "%s", "pool path not present") != 0))
            goto nomem;
        return 0;
    }
    out->present = true;
    struct statfs sf;
    if (fstatfs(fd, &sf) == 0) {
        out->fs_magic = (uint64_t)sf.f_type;
        out->fs_type = vol_fs_type_name(out->fs_magic);
        out->capacity_bytes = (uint64_t)sf.f_blocks * (uint64_t)sf.f_frsize;
        out->free_bytes = (uint64_t)sf.f_bavail * (uint64_t)sf.f_frsize;
    }
    int probe_fd = -1;
    rc = probe_writable(fd, path, out, &probe_fd);
    if (rc == 0)
        rc = vol_fs_probe(fd, probe_fd, mode, &out->backend, &out->quota, &out->quota_reason);
    if (probe_fd >= 0)
        close(probe_fd);
    close(fd);
    if (rc != 0)
        goto nomem;
    return 0;
nomem:
    vol_pool_report_free(out);
    return vol_failx(err, ENOMEM, "out of memory");
}
