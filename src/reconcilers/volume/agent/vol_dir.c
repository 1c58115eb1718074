/*
 * vol_dir - a volume's directory in its pool: made with its limit by the
 * pool's backend, removed with its limit, its usage, and the list of the
 * volume directories a pool holds. Each call finds the state on disk and
 * takes it the rest of the way, so it can be killed anywhere and rerun.
 */
#include "vol_agent_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <linux/magic.h>

void vol_dir_result_free(vol_dir_result *r)
{
    if (r == NULL)
        return;
    free(r->path);
    free(r->quota_reason);
    *r = (vol_dir_result){0};
}

void vol_dirs_free(vol_dirs *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].dirname);
        free(l->v[i].ns);
        free(l->v[i].name);
        free(l->v[i].uid);
    }
    free(l->v);
    *l = (vol_dirs){0};
}

/* What every call starts with: the directory name, the pool open, and the
 * directory's path on the node (for results and messages). */
typedef struct target {
    char *dirname;
    char *path;
    int poolfd;
} target;

static void target_close(target *t)
{
    free(t->dirname);
    free(t->path);
    if (t->poolfd >= 0)
        close(t->poolfd);
    *t = (target){.poolfd = -1};
}

static int target_open(const char *host_root, const char *pool_path, const vol_key *key, target *t,
                       vol_error *err)
{
    *t = (target){.poolfd = -1};
    int rc = vol_dir_name(key, &t->dirname, err);
    if (rc != 0)
        return rc;
    size_t n = pool_path != NULL ? strlen(pool_path) : 0;
    while (n > 1 && pool_path[n - 1] == '/')
        n--;
    if (n == 0 || pool_path[0] != '/') {
        rc = vol_failx(err, EINVAL, "pool path %s is not absolute", pool_path ? pool_path : "");
    } else if (asprintf(&t->path, "%.*s%s%s", (int)n, pool_path, n > 1 ? "/" : "", t->dirname) <
               0) {
        t->path = NULL;
        rc = vol_failx(err, ENOMEM, "out of memory");
    } else {
        t->poolfd = vol_open_pool(host_root, pool_path, err);
        rc = t->poolfd < 0 ? t->poolfd : 0;
    }
    if (rc != 0)
        target_close(t);
    return rc;
}

/* mkdir (an existing directory is fine), open without following a
 * symlink, mode 0777 whatever the umask. *fd open on success. */
static int plain_dir(const target *t, int *fd, vol_error *err)
{
    *fd = -1;
    if (mkdirat(t->poolfd, t->dirname, 0777) != 0 && errno != EEXIST)
        return vol_fail(err, errno, "mkdir %s", t->path);
    *fd = openat(t->poolfd, t->dirname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (*fd < 0) {
        int e = errno;
        if (e == ENOTDIR || e == ELOOP)
            return vol_failx(err, EEXIST, "%s exists and is not a directory", t->path);
        return vol_fail(err, e, "%s", t->path);
    }
    if (fchmod(*fd, 0777) != 0) {
        int rc = vol_fail(err, errno, "chmod %s", t->path);
        close(*fd);
        *fd = -1;
        return rc;
    }
    return 0;
}

int vol_dir_ensure(const char *host_root, const char *pool_path, const vol_key *key, uint64_t bytes,
                   vol_quota_mode mode, vol_dir_result *out, vol_error *err)
{
    vol_dir_result_free(out);
    if (bytes == 0)
        return vol_failx(err, EINVAL, "volume size 0");
    target t;
    int rc = target_open(host_root, pool_path, key, &t, err);
    if (rc != 0)
        return rc;
    rc = vol_fs_probe(t.poolfd, -1, mode, &out->backend, &out->quota, &out->quota_reason);
    if (rc != 0) {
        rc = vol_failx(err, ENOMEM, "out of memory");
    } else if (mode == VOL_QUOTA_REQUIRED && out->quota != VOL_QUOTA_STATE_ENFORCED) {
        rc = vol_failx(err, ENOTSUP, "%s: quota Required but %s", t.path, out->quota_reason);
    } else if (out->backend == VOL_BACKEND_BTRFS) {
        rc = vol_btrfs_ensure(t.poolfd, t.dirname, t.path, bytes, mode, out, err);
    } else {
        int fd = -1;
        rc = plain_dir(&t, &fd, err);
        if (rc == 0 && out->backend == VOL_BACKEND_PROJECT)
            rc = vol_prj_ensure(t.poolfd, fd, key->uid, t.path, bytes, out, err);
        if (fd >= 0)
            close(fd);
    }
    if (rc == 0) {
        out->path = t.path;
        t.path = NULL;
    } else {
        vol_dir_result_free(out);
    }
    target_close(&t);
    return rc;
}

int vol_dir_remove(const char *host_root, const char *pool_path, const vol_key *key, vol_error *err)
{
    target t;
    int rc = target_open(host_root, pool_path, key, &t, err);
    if (rc != 0)
        return rc;
    int fd = openat(t.poolfd, t.dirname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            rc = 0; /* gone already (or never made) */
        else if (e == ENOTDIR || e == ELOOP)
            rc = vol_failx(err, ENOTDIR, "%s is not a directory: left alone", t.path);
        else
            rc = vol_fail(err, e, "%s", t.path);
        target_close(&t);
        return rc;
    }
    struct statx sx;
    struct statfs sf;
    if (statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &sx) != 0 || fstatfs(fd, &sf) != 0) {
        rc = vol_fail(err, errno, "%s", t.path);
    } else if ((sx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0) {
        rc = vol_failx(err, EBUSY, "%s is a mount point", t.path);
    } else if ((uint64_t)sf.f_type == BTRFS_SUPER_MAGIC && sx.stx_ino == VOL_BTRFS_SUBVOL_INO) {
        rc = vol_btrfs_remove(t.poolfd, fd, t.dirname, t.path, err);
    } else {
        /* Contents, then the project limit, then the directory: a run killed
         * before the rmdir finds the project id on the directory again. */
        rc = vol_tree_clear(fd, t.path, err);
        if (rc == 0)
            rc = vol_prj_release(t.poolfd, fd, t.path, err);
        if (rc == 0 && unlinkat(t.poolfd, t.dirname, AT_REMOVEDIR) != 0 && errno != ENOENT)
            rc = vol_fail(err, errno, "rmdir %s", t.path);
    }
    close(fd);
    target_close(&t);
    return rc;
}

int vol_dir_usage(const char *host_root, const char *pool_path, const vol_key *key, unsigned flags,
                  vol_usage *out, vol_error *err)
{
    *out = (vol_usage){0};
    target t;
    int rc = target_open(host_root, pool_path, key, &t, err);
    if (rc != 0)
        return rc;
    int fd = openat(t.poolfd, t.dirname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct statfs sf;
    if (fd < 0 || fstatfs(fd, &sf) != 0) {
        rc = vol_fail(err, errno, "%s", t.path);
        goto out;
    }
    rc = -ENOTSUP;
    if ((uint64_t)sf.f_type == BTRFS_SUPER_MAGIC)
        rc = vol_btrfs_usage(fd, t.path, flags, out, err);
    else if ((uint64_t)sf.f_type == XFS_SUPER_MAGIC || (uint64_t)sf.f_type == EXT4_SUPER_MAGIC)
        rc = vol_prj_usage(t.poolfd, fd, t.path, out, err);
    if (rc != -ENOTSUP)
        goto out;
    if ((flags & VOL_USAGE_WALK) == 0) {
        rc = vol_failx(err, ENOTSUP, "%s has no quota: its usage is not known without a walk",
                       t.path);
        goto out;
    }
    vol_error_clear(err);
    *out = (vol_usage){.backend = VOL_BACKEND_PLAIN};
    rc = vol_tree_usage(fd, &out->used_bytes, &out->truncated, err);
out:
    if (fd >= 0)
        close(fd);
    target_close(&t);
    return rc;
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const vol_dir_entry *)a)->dirname, ((const vol_dir_entry *)b)->dirname);
}

/* Add dirname to l when it names a volume directory. */
static int list_add(vol_dirs *l, size_t *cap, const char *dirname)
{
    vol_dir_entry e = {0};
    int rc = vol_dir_name_parse(dirname, &e.ns, &e.name, &e.uid);
    if (rc <= 0)
        return rc;
    if (l->n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        vol_dir_entry *v = realloc(l->v, ncap * sizeof *v);
        if (v == NULL)
            goto nomem;
        l->v = v;
        *cap = ncap;
    }
    if ((e.dirname = strdup(dirname)) == NULL)
        goto nomem;
    l->v[l->n++] = e;
    return 0;
nomem:
    free(e.ns);
    free(e.name);
    free(e.uid);
    return -ENOMEM;
}

int vol_dir_list(const char *host_root, const char *pool_path, vol_dirs *out, vol_error *err)
{
    vol_dirs_free(out);
    int poolfd = vol_open_pool(host_root, pool_path, err);
    if (poolfd < 0)
        return poolfd;
    DIR *d = fdopendir(poolfd);
    if (d == NULL) {
        int rc = vol_fail(err, errno, "%s", pool_path);
        close(poolfd);
        return rc;
    }
    size_t cap = 0;
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (errno = 0, de = readdir(d)) != NULL) {
        bool dir = de->d_type == DT_DIR;
        struct stat st;
        if (de->d_type == DT_UNKNOWN)
            dir = fstatat(poolfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
        if (dir && de->d_name[0] != '.')
            rc = list_add(out, &cap, de->d_name);
    }
    if (rc == 0 && errno != 0)
        rc = vol_fail(err, errno, "read %s", pool_path);
    else if (rc != 0)
        rc = vol_failx(err, -rc, "out of memory");
    closedir(d);
    if (rc != 0) {
        vol_dirs_free(out);
        return rc;
    }
    if (out->n > 1)
        qsort(out->v, out->n, sizeof *out->v, entry_cmp);
    return 0;
}
