/*
 * vol_agent - the node side of the volume domain: StoragePool path checks
 * and volume directories with a hard byte limit (API.md "Volumes", "The node
 * agent"; README.md beside this file says what each backend does and why it
 * is crash-safe). Pure node-side functions: nothing here talks to the API
 * server.
 *
 * Every function takes host_root, the agent's --host-root ("" or NULL in
 * production; a trailing '/' is ignored), and a pool path (spec.path of the
 * StoragePool, absolute). Paths are joined textually: host_root + pool_path.
 *
 * A volume's directory is <pool_path>/<namespace>_<name>_<uid>. Its limit
 * comes from one of three backends, chosen by the pool's filesystem:
 *   btrfs        - the directory is a subvolume with a qgroup limit (max_rfer)
 *   project      - XFS / ext4 project quota: a project id on the directory
 *                  (FS_XFLAG_PROJINHERIT) and a hard block limit for it
 *   plain        - a plain directory, no limit (quota Unsupported or Off)
 *
 * Errors: every int function returns 0 or a negative errno (-ENOMEM,
 * -EINVAL, -ENOTSUP, ...). When err is not NULL it is filled with the same
 * errno and a message a person can read (malloc'd; may be NULL after
 * -ENOMEM); vol_error_clear frees it. Results are caller-owned structs,
 * emptied first and freed by their _free (which takes NULL and {0}).
 *
 * Threading: every function is reentrant. Two calls for the same volume at
 * once are not supported (the agent reconciles one volume in one worker);
 * calls for different volumes may run in parallel.
 */
#ifndef PROVISIO_VOL_AGENT_H
#define PROVISIO_VOL_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What went wrong: an errno and a message (malloc'd, or NULL). */
typedef struct vol_error {
    int err;       /* positive errno; 0 = none */
    char *message; /* "mkdir /pool/ns_a_1: Permission denied" */
} vol_error;

void vol_error_clear(vol_error *e);

/* spec.quota of the StoragePool. */
typedef enum vol_quota_mode {
    VOL_QUOTA_AUTO = 0, /* a limit where the filesystem supports one */
    VOL_QUOTA_REQUIRED, /* a limit, or no directory at all (-ENOTSUP) */
    VOL_QUOTA_OFF,      /* never a limit: plain directories */
} vol_quota_mode;

/* "Auto" (and NULL), "Required", "Off" -> *out; else -EINVAL. */
int vol_quota_mode_parse(const char *s, vol_quota_mode *out);

/* status.quota of the StoragePool. */
typedef enum vol_quota_state {
    VOL_QUOTA_STATE_OFF = 0,     /* the pool asked for none */
    VOL_QUOTA_STATE_ENFORCED,    /* hard limits are (or will be) set */
    VOL_QUOTA_STATE_UNSUPPORTED, /* the filesystem or kernel cannot */
} vol_quota_state;

/* "Off", "Enforced", "Unsupported" (static). */
const char *vol_quota_state_name(vol_quota_state s);

typedef enum vol_backend {
    VOL_BACKEND_PLAIN = 0,
    VOL_BACKEND_PROJECT, /* XFS / ext4 project quota */
    VOL_BACKEND_BTRFS,   /* btrfs subvolume + qgroup */
} vol_backend;

/* "plain", "project", "btrfs" (static). */
const char *vol_backend_name(vol_backend b);

/* ---- the pool ------------------------------------------------------------- */

/* What vol_pool_check found. Strings malloc'd unless said otherwise. */
typedef struct vol_pool_report {
    bool present;            /* the path is a directory */
    bool writable;           /* a probe file could be made and removed in it */
    char *message;           /* why not present / not writable; NULL when both */
    uint64_t fs_magic;       /* statfs f_type (0 when not present) */
    const char *fs_type;     /* static: "btrfs", "xfs", "ext4", "tmpfs", ...; "unknown" */
    uint64_t capacity_bytes; /* of the whole filesystem: f_blocks * f_frsize */
    uint64_t free_bytes;     /* available to unprivileged writers: f_bavail * f_frsize */
    vol_backend backend;     /* what vol_dir_ensure would use */
    vol_quota_state quota;   /* Off when mode is Off, else Enforced or Unsupported */
    char *quota_reason;      /* why Unsupported ("XFS mounted without prjquota") */
} vol_pool_report;

void vol_pool_report_free(vol_pool_report *r);

/*
 * Check the pool at host_root + path: present (a directory), writable (the
 * probe file <path>/.provisio-probe created and removed), the filesystem's
 * type, capacity and free bytes, and whether a hard limit can be enforced
 * with mode. Changes nothing on the filesystem but the probe file (btrfs
 * qgroups are enabled by the first vol_dir_ensure, not here).
 * A missing or read-only path is a finding (present/writable false,
 * message), not an error: 0 then too. Errors: -EINVAL (path not absolute),
 * -ENOMEM.
 */
int vol_pool_check(const char *host_root, const char *path, vol_quota_mode mode,
                   vol_pool_report *out, vol_error *err);

/* ---- volume directories --------------------------------------------------- */

/* Who a directory belongs to: the Volume's namespace, name and uid
 * (borrowed). namespace: [a-z0-9-], name: [a-z0-9.-], uid: [A-Za-z0-9-],
 * each starting with a letter or digit; the directory name
 * <ns>_<name>_<uid> at most 255 bytes. */
typedef struct vol_key {
    const char *ns;
    const char *name;
    const char *uid;
} vol_key;

/* The directory name of key: malloc'd into *out. -EINVAL (a part empty or
 * with a byte outside its set), -ENAMETOOLONG, -ENOMEM. */
int vol_dir_name(const vol_key *key, char **out, vol_error *err);

typedef struct vol_dir_result {
    char *path;            /* on the node, without host_root (malloc'd) */
    vol_backend backend;   /* what holds the limit */
    vol_quota_state quota; /* Enforced (limit set), Unsupported, or Off */
    char *quota_reason;    /* why Unsupported (malloc'd), else NULL */
    uint64_t limit_bytes;  /* the hard limit set; 0 when none */
    uint32_t project_id;   /* project backend: the directory's project id */
    uint64_t subvolume_id; /* btrfs backend: the subvolume (qgroup 0/<id>) */
} vol_dir_result;

void vol_dir_result_free(vol_dir_result *r);

/*
 * Make the volume's directory in the pool with a hard limit of bytes (> 0),
 * or bring it to that state: idempotent, and a call killed at any point
 * followed by another ends in the same state, with no project id or
 * subvolume leaked. A limit changes to bytes when it differs (a resize).
 * The directory is mode 0777 (pods run as any user, as with
 * local-path-provisioner).
 * mode Off: a plain directory. Auto: the pool's backend, or a plain
 * directory with quota Unsupported and the reason. Required: -ENOTSUP (and
 * nothing made) when no limit can be enforced.
 * Errors: -EINVAL, -ENAMETOOLONG, -ENOENT (the pool path is missing),
 * -ENOTSUP, -EEXIST (the name is taken by something not a directory), and
 * the errno of a failed syscall.
 */
int vol_dir_ensure(const char *host_root, const char *pool_path, const vol_key *key, uint64_t bytes,
                   vol_quota_mode mode, vol_dir_result *out, vol_error *err);

/*
 * Remove the volume's directory with all it holds and its limit:
 * idempotent (0 when it is already gone), and a call killed at any point is
 * finished by the next. Never follows a symlink and never descends into a
 * mount point (-EBUSY then). btrfs: the subvolume is destroyed; its qgroup
 * goes when the filesystem has dropped the subvolume (README.md).
 */
int vol_dir_remove(const char *host_root, const char *pool_path, const vol_key *key,
                   vol_error *err);

/* vol_dir_usage flags */
#define VOL_USAGE_SYNC                                                                             \
    0x1u                    /* commit the filesystem first: btrfs qgroup numbers                   \
                               lag until a transaction commit */
#define VOL_USAGE_WALK 0x2u /* no quota: walk the tree (bounded) instead of -ENOTSUP */

typedef struct vol_usage {
    uint64_t used_bytes;  /* bytes on disk charged to the volume */
    uint64_t limit_bytes; /* its hard limit; 0 when none */
    vol_backend backend;  /* where used_bytes came from: btrfs / project quota,
                             plain = a walk */
    bool truncated;       /* a walk stopped at its bound: used_bytes is a floor */
} vol_usage;

/* A walk counts at most this many entries and this many levels. */
#define VOL_WALK_MAX_ENTRIES 100000
#define VOL_WALK_MAX_DEPTH 64

/*
 * The bytes a volume's directory uses, from its quota (the btrfs qgroup's
 * referenced bytes, which count the subvolume's own metadata, or the
 * project's block count): never by walking the tree, unless flags holds
 * VOL_USAGE_WALK and the directory has no quota. Errors: -ENOENT (no such
 * directory), -ENOTSUP (no quota on it and no VOL_USAGE_WALK), others.
 */
int vol_dir_usage(const char *host_root, const char *pool_path, const vol_key *key, unsigned flags,
                  vol_usage *out, vol_error *err);

typedef struct vol_dir_entry {
    char *dirname; /* <ns>_<name>_<uid> */
    char *ns, *name, *uid;
} vol_dir_entry;

typedef struct vol_dirs {
    vol_dir_entry *v; /* sorted by dirname */
    size_t n;
} vol_dirs;

void vol_dirs_free(vol_dirs *l);

/*
 * The volume directories in the pool: every directory (not a symlink) whose
 * name parses as <ns>_<name>_<uid> with valid parts; anything else in the
 * pool (lost+found, the probe file, an admin's files) is left out. The
 * agent removes those whose Volume is gone. Errors: -ENOENT (no pool path),
 * -ENOTDIR, -ENOMEM, others of opendir/readdir.
 */
int vol_dir_list(const char *host_root, const char *pool_path, vol_dirs *out, vol_error *err);

#endif
