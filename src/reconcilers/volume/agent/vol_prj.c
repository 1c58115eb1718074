/*
 * vol_prj - the project quota backend (XFS, ext4 with the project
 * feature): each volume's directory carries a project id of its own with
 * FS_XFLAG_PROJINHERIT (every file made below it inherits the id), and the
 * project has a hard block limit. All by ioctl and quotactl_fd(2) on a
 * descriptor of the pool, so no block device path is needed.
 *
 * The id is a function of the volume's uid, probed forward past ids
 * already held on the filesystem; once set, it is read back from the
 * directory, so a rerun after a crash finds the same id and never takes a
 * second one.
 */
#include "vol_agent_internal.h"

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/dqblk_xfs.h>
#include <linux/fs.h>
#include <linux/quota.h>

#ifndef SYS_quotactl_fd
#define SYS_quotactl_fd 443 /* one number on every architecture (Linux 5.14) */
#endif

int vol_prj_quotactl(int fd, int cmd, uint32_t id, void *addr)
{
    if (syscall(SYS_quotactl_fd, fd, QCMD(cmd, PRJQUOTA), id, addr) != 0)
        return -errno;
    return 0;
}

int vol_prj_state(int fd, bool *accounted, bool *enforced)
{
    struct fs_quota_statv sv;
    memset(&sv, 0, sizeof sv);
    sv.qs_version = FS_QSTATV_VERSION1;
    *accounted = *enforced = false;
    int rc = vol_prj_quotactl(fd, Q_XGETQSTATV, 0, &sv);
    if (rc != 0)
        return rc;
    *accounted = (sv.qs_flags & FS_QUOTA_PDQ_ACCT) != 0;
    *enforced = (sv.qs_flags & FS_QUOTA_PDQ_ENFD) != 0;
    return 0;
}

uint32_t vol_prj_id_of(const char *uid)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)uid; *p != '\0'; p++) {
        h ^= *p;
        h *= 16777619u;
    }
    return VOL_PRJ_MIN + h % (VOL_PRJ_MAX - VOL_PRJ_MIN + 1);
}

static int get_xattr(int fd, struct fsxattr *fa)
{
    memset(fa, 0, sizeof *fa);
    return ioctl(fd, FS_IOC_FSGETXATTR, fa) == 0 ? 0 : -errno;
}

int vol_prj_own_id(int poolfd, int dirfd, uint32_t *id, vol_error *err)
{
    *id = 0;
    struct fsxattr d, p;
    int rc = get_xattr(dirfd, &d);
    if (rc == -ENOTTY || rc == -EOPNOTSUPP)
        return 0; /* a filesystem without project ids: none */
    if (rc != 0)
        return vol_fail(err, -rc, "FS_IOC_FSGETXATTR");
    if (d.fsx_projid == 0)
        return 0;
    /* mkdir in a pool that is itself a project with PROJINHERIT gives the
     * pool's id: that one is not the volume's own. */
    if (get_xattr(poolfd, &p) == 0 && (p.fsx_xflags & FS_XFLAG_PROJINHERIT) != 0 &&
        p.fsx_projid == d.fsx_projid)
        return 0;
    *id = d.fsx_projid;
    return 0;
}

int vol_prj_assign(int poolfd, int dirfd, const char *uid, vol_prj_used_fn used, void *ctx,
                   uint32_t *id, vol_error *err)
{
    int rc = vol_prj_own_id(poolfd, dirfd, id, err);
    if (rc != 0 || *id != 0)
        return rc; /* set by an earlier run: id and PROJINHERIT go in one ioctl */
    struct fsxattr d;
    if ((rc = get_xattr(dirfd, &d)) != 0)
        return vol_fail(err, -rc, "FS_IOC_FSGETXATTR");
    uint32_t first = vol_prj_id_of(uid), range = VOL_PRJ_MAX - VOL_PRJ_MIN + 1;
    for (uint32_t k = 0; k < VOL_PRJ_PROBES; k++) {
        uint32_t cand = VOL_PRJ_MIN + (first - VOL_PRJ_MIN + k) % range;
        bool held = false;
        if ((rc = used(ctx, cand, &held)) != 0)
            return vol_fail(err, -rc, "project id %u", cand);
        if (held)
            continue;
        d.fsx_projid = cand;
        d.fsx_xflags |= FS_XFLAG_PROJINHERIT;
        if (ioctl(dirfd, FS_IOC_FSSETXATTR, &d) != 0)
            return vol_fail(err, errno, "set project id %u", cand);
        *id = cand;
        return 0;
    }
    return vol_failx(err, ENOSPC, "project ids %u and the next %u are all held", first,
                     VOL_PRJ_PROBES - 1);
}

/* A project id is held when its quota entry has usage or a limit (XFS
 * answers ENOENT for an id it has no entry for; ext4 answers zeros). */
static int quota_used(void *ctx, uint32_t id, bool *used)
{
    int fd = *(const int *)ctx;
    struct fs_disk_quota q;
    memset(&q, 0, sizeof q);
    int rc = vol_prj_quotactl(fd, Q_XGETQUOTA, id, &q);
    *used = false;
    if (rc == -ENOENT)
        return 0;
    if (rc != 0)
        return rc;
    *used = q.d_bcount != 0 || q.d_icount != 0 || q.d_blk_hardlimit != 0 ||
            q.d_blk_softlimit != 0 || q.d_ino_hardlimit != 0 || q.d_ino_softlimit != 0;
    return 0;
}

static int set_limit(int fd, uint32_t id, uint64_t blocks)
{
    struct fs_disk_quota q;
    memset(&q, 0, sizeof q);
    q.d_version = FS_DQUOT_VERSION;
    q.d_flags = FS_PROJ_QUOTA;
    q.d_fieldmask = FS_DQ_BHARD | FS_DQ_BSOFT;
    q.d_id = id;
    q.d_blk_hardlimit = blocks; /* in 512-byte basic blocks */
    q.d_blk_softlimit = 0;
    return vol_prj_quotactl(fd, Q_XSETQLIM, id, &q);
}

int vol_prj_ensure(int poolfd, int dirfd, const char *uid, const char *path, uint64_t bytes,
                   vol_dir_result *out, vol_error *err)
{
    uint32_t id = 0;
    int rc = vol_prj_assign(poolfd, dirfd, uid, quota_used, &poolfd, &id, err);
    if (rc != 0)
        return rc;
    uint64_t blocks = (bytes + 511) / 512;
    if ((rc = set_limit(poolfd, id, blocks)) != 0)
        return vol_fail(err, -rc, "%s: limit of project %u", path, id);
    out->backend = VOL_BACKEND_PROJECT;
    out->quota = VOL_QUOTA_STATE_ENFORCED;
    out->project_id = id;
    out->limit_bytes = blocks * 512;
    return 0;
}

int vol_prj_release(int poolfd, int dirfd, const char *path, vol_error *err)
{
    uint32_t id = 0;
    int rc = vol_prj_own_id(poolfd, dirfd, &id, err);
    if (rc != 0 || id == 0)
        return rc;
    rc = set_limit(poolfd, id, 0);
    if (rc == -ENOSYS || rc == -ESRCH || rc == -ENOENT)
        return 0; /* no quota on this filesystem (any more): no limit to clear */
    if (rc != 0)
        return vol_fail(err, -rc, "%s: clear the limit of project %u", path, id);
    return 0;
}

int vol_prj_usage(int poolfd, int dirfd, const char *path, vol_usage *out, vol_error *err)
{
    uint32_t id = 0;
    int rc = vol_prj_own_id(poolfd, dirfd, &id, err);
    if (rc != 0)
        return rc;
    if (id == 0)
        return vol_failx(err, ENOTSUP, "%s has no project id of its own", path);
    struct fs_disk_quota q;
    memset(&q, 0, sizeof q);
    rc = vol_prj_quotactl(poolfd, Q_XGETQUOTA, id, &q);
    if (rc == -ENOSYS || rc == -ESRCH)
        return vol_failx(err, ENOTSUP, "%s: project quota of %u: %s", path, id, strerror(-rc));
    if (rc != 0)
        return vol_fail(err, -rc, "%s: project quota of %u", path, id);
    out->used_bytes = q.d_bcount * 512;
    out->limit_bytes = q.d_blk_hardlimit * 512;
    out->backend = VOL_BACKEND_PROJECT;
    return 0;
}
