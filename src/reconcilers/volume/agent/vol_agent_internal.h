/*
 * vol_agent_internal - what the files of volume/agent share, and what the
 * unit tests (tests/unit/test_vol_agent.c) reach below the public API: the
 * filesystem probe, the two quota backends' steps, and the tree walks.
 * Functions here take file descriptors (opened by the caller, borrowed)
 * and the same errors as vol_agent.h.
 */
#ifndef PROVISIO_VOL_AGENT_INTERNAL_H
#define PROVISIO_VOL_AGENT_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "vol_agent.h"

/* The probe file of vol_pool_check, in the pool directory. */
#define VOL_PROBE_NAME ".provisio-probe"

/* ---- vol_util.c ------------------------------------------------------------- */

/* Set e (when not NULL) to errnum and the formatted message followed by
 * ": strerror(errnum)"; returns -errnum. */
int vol_fail(vol_error *e, int errnum, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The same without the strerror suffix. */
int vol_failx(vol_error *e, int errnum, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* host_root (trailing '/' dropped) + path (must start with '/'): malloc'd
 * into *out. -EINVAL when path is not absolute, -ENOMEM. */
int vol_join(const char *host_root, const char *path, char **out, vol_error *err);

/* Open host_root + path as a directory (O_RDONLY|O_DIRECTORY|O_CLOEXEC).
 * Returns the fd or a negative errno (err says which path). */
int vol_open_pool(const char *host_root, const char *path, vol_error *err);

/* "btrfs", "xfs", ... for a statfs f_type; "unknown" otherwise (static). */
const char *vol_fs_type_name(uint64_t magic);

/* Split a directory name <ns>_<name>_<uid> into its parts, each malloc'd
 * (the caller frees them): 1, or 0 (nothing allocated) when it does not
 * parse or a part is invalid, or -ENOMEM. */
int vol_dir_name_parse(const char *dirname, char **ns, char **name, char **uid);

/* ---- vol_pool.c ------------------------------------------------------------- */

/* What backend and quota state a directory's filesystem gives with mode.
 * probe_fd: a regular file on that filesystem that may be changed (the
 * pool check's probe file), or -1: ext4 then cannot tell "no project
 * feature" from "project quota not enforced" and says both. *reason
 * malloc'd when Unsupported. 0 or -ENOMEM. */
int vol_fs_probe(int dirfd, int probe_fd, vol_quota_mode mode, vol_backend *backend,
                 vol_quota_state *quota, char **reason);

/* ---- vol_dir.c -------------------------------------------------------------- */

/* Remove everything inside the directory dirfd (not the directory itself):
 * never follows a symlink, never descends into a mount point (-EBUSY),
 * destroys nested btrfs subvolumes. Holds one directory fd at a time
 * (deep trees cost no fds) and checks each step back up ("..") lands on
 * the directory it came from (-ESTALE when the tree moved under it).
 * path names dirfd in messages. */
int vol_tree_clear(int dirfd, const char *path, vol_error *err);

/* Sum st_blocks * 512 of dirfd's tree (dirfd's own included), at most
 * VOL_WALK_MAX_ENTRIES entries and VOL_WALK_MAX_DEPTH levels (*truncated
 * then), never following symlinks or crossing mount points. */
int vol_tree_usage(int dirfd, uint64_t *bytes, bool *truncated, vol_error *err);

/* ---- vol_btrfs.c ------------------------------------------------------------ */

/* The inode number of every btrfs subvolume's root directory. */
#define VOL_BTRFS_SUBVOL_INO 256

/* A qgroup as the quota tree holds it (as of the last commit). */
typedef struct vol_btrfs_qgroup {
    uint64_t referenced; /* rfer: bytes referenced by the subvolume */
    uint64_t exclusive;  /* excl */
    uint64_t max_rfer;   /* the limit; 0 when none */
} vol_btrfs_qgroup;

/* Whether quotas are enabled on fd's filesystem (the quota tree exists). */
int vol_btrfs_quota_enabled(int fd, bool *enabled, vol_error *err);

/* Read qgroup 0/<subvol_id> of fd's filesystem: -ENOENT when there is no
 * such qgroup (or no quota tree). Needs CAP_SYS_ADMIN (tree search). */
int vol_btrfs_qgroup_get(int fd, uint64_t subvol_id, vol_btrfs_qgroup *out, vol_error *err);

/* The subvolume id of the subvolume fd is in. */
int vol_btrfs_subvol_id(int fd, uint64_t *id, vol_error *err);

/* The backend's steps for vol_dir_ensure / _remove / _usage: poolfd is the
 * pool directory, dirname the volume's directory name in it, path its path
 * on the node for messages. */
int vol_btrfs_ensure(int poolfd, const char *dirname, const char *path, uint64_t bytes,
                     vol_quota_mode mode, vol_dir_result *out, vol_error *err);
/* dirfd: the volume's directory, a subvolume root. */
int vol_btrfs_remove(int poolfd, int dirfd, const char *dirname, const char *path, vol_error *err);
/* -ENOTSUP when dirfd is not a subvolume with a qgroup. */
int vol_btrfs_usage(int dirfd, const char *path, unsigned flags, vol_usage *out, vol_error *err);

/* ---- vol_prj.c -------------------------------------------------------------- */

/* Project ids the backend hands out: [VOL_PRJ_MIN, VOL_PRJ_MAX]. Low ids
 * are left to people (/etc/projid), and 0 means "no project". */
#define VOL_PRJ_MIN 0x00100000u
#define VOL_PRJ_MAX 0xfffffffeu
/* A volume's id is its uid's first choice or one of the next this many. */
#define VOL_PRJ_PROBES 64

/* The first-choice project id of a uid (FNV-1a into the range). */
uint32_t vol_prj_id_of(const char *uid);

/* quotactl_fd(2) of type PRJQUOTA on fd's filesystem: 0 or -errno. */
int vol_prj_quotactl(int fd, int cmd, uint32_t id, void *addr);

/* Project quota accounting / enforcement on fd's filesystem: 0, or -errno
 * (-ENOSYS: the kernel has no quota support for that filesystem). */
int vol_prj_state(int fd, bool *accounted, bool *enforced);

/* Whether project id is held on the filesystem (a quota entry with usage or
 * a limit). 0 or a negative errno. */
typedef int (*vol_prj_used_fn)(void *ctx, uint32_t id, bool *used);

/* The project id of directory dirfd (in pool directory poolfd): the one it
 * carries when it carries its own (read back after a crash), else the uid's
 * first free choice, set with FS_XFLAG_PROJINHERIT. A project id the
 * directory only inherited from the pool is not its own. -ENOSPC when all
 * VOL_PRJ_PROBES choices are held. */
int vol_prj_assign(int poolfd, int dirfd, const char *uid, vol_prj_used_fn used, void *ctx,
                   uint32_t *id, vol_error *err);

/* The project id dirfd carries as its own (0: none, or the pool's). */
int vol_prj_own_id(int poolfd, int dirfd, uint32_t *id, vol_error *err);

/* The quota backend's steps, as for btrfs. */
int vol_prj_ensure(int poolfd, int dirfd, const char *uid, const char *path, uint64_t bytes,
                   vol_dir_result *out, vol_error *err);
/* Clear the limit of dirfd's project (the directory itself stays). */
int vol_prj_release(int poolfd, int dirfd, const char *path, vol_error *err);
int vol_prj_usage(int poolfd, int dirfd, const char *path, vol_usage *out, vol_error *err);

#endif
