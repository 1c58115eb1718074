/*
 * vol_tree - walks over what a pod left in its volume: removing it all,
 * and (only when asked, for a directory without quota) counting its bytes.
 *
 * The tree is written by whoever used the volume, so both walks work from
 * directory descriptors with O_NOFOLLOW (a symlink is removed or counted
 * as itself, never followed) and stop at mount points. The removal holds
 * one directory open at a time and keeps (device, inode, name) per level,
 * so a tree of any depth costs no more descriptors, and each step back up
 * through ".." is checked to land where it came from.
 */
#include "vol_agent_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <linux/btrfs.h>
#include <linux/magic.h>

/* Whether fd (a directory reached from its parent) is the root of a mount. */
static bool is_mount_root(int fd)
{
    struct statx sx;
    if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &sx) != 0)
        return false;
    return (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) != 0 &&
           (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
}

/* A btrfs subvolume at name in parent, fd open on it: destroy it whole in
 * one ioctl (0), or say it holds subvolumes of its own (-ENOTEMPTY). */
static int try_destroy_subvol(int parent, const char *name, int fd)
{
    struct statfs sf;
    struct stat st;
    if (fstatfs(fd, &sf) != 0 || (uint64_t)sf.f_type != BTRFS_SUPER_MAGIC || fstat(fd, &st) != 0 ||
        st.st_ino != VOL_BTRFS_SUBVOL_INO)
        return -ENOTEMPTY; /* not a subvolume: descend */
    struct btrfs_ioctl_vol_args_v2 a;
    memset(&a, 0, sizeof a);
    size_t n = strlen(name);
    if (n >= sizeof a.name)
        return -ENOTEMPTY;
    memcpy(a.name, name, n + 1);
    if (ioctl(parent, BTRFS_IOC_SNAP_DESTROY_V2, &a) == 0 || errno == ENOENT)
        return 0;
    return -errno;
}

typedef struct level {
    dev_t dev;
    ino_t ino;
    char *name; /* in the level above; NULL for the top */
} level;

typedef struct tree_stack {
    level *v;
    size_t n, cap;
} tree_stack;

static int push(tree_stack *s, int fd, const char *name)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        level *v = realloc(s->v, cap * sizeof *v);
        if (v == NULL)
            return -ENOMEM;
        s->v = v;
        s->cap = cap;
    }
    char *copy = NULL;
    if (name != NULL && (copy = strdup(name)) == NULL)
        return -ENOMEM;
    s->v[s->n++] = (level){.dev = st.st_dev, .ino = st.st_ino, .name = copy};
    return 0;
}

/*
 * Remove every entry of cur. Returns 0 when cur is empty, or 1 with *child
 * open on a directory that is not (a subvolume that holds subvolumes
 * counts) and *child_name its name (malloc'd) to descend into, or a
 * negative errno.
 */
static int clear_level(int cur, int *child, char **child_name, const char *path, vol_error *err)
{
    *child = -1;
    int dfd = openat(cur, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (d == NULL) {
        int e = errno;
        if (dfd >= 0)
            close(dfd);
        return vol_fail(err, e, "%s: read directory", path);
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (errno = 0, de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            continue;
        if (unlinkat(cur, name, 0) == 0 || errno == ENOENT)
            continue;
        if (errno != EISDIR && errno != EPERM) {
            rc = vol_fail(err, errno, "%s: remove %s", path, name);
            break;
        }
        if (unlinkat(cur, name, AT_REMOVEDIR) == 0 || errno == ENOENT)
            continue;
        if (errno != ENOTEMPTY && errno != EEXIST) {
            rc = vol_fail(err, errno, "%s: remove directory %s", path, name);
            break;
        }
        int fd = openat(cur, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            rc = vol_fail(err, errno, "%s: open %s", path, name);
            break;
        }
        if (is_mount_root(fd)) {
            close(fd);
            rc = vol_failx(err, EBUSY, "%s: %s is a mount point", path, name);
            break;
        }
        int drc = try_destroy_subvol(cur, name, fd);
        if (drc == 0) {
            close(fd);
            continue;
        }
        if (drc != -ENOTEMPTY) {
            close(fd);
            rc = vol_fail(err, -drc, "%s: destroy subvolume %s", path, name);
            break;
        }
        if ((*child_name = strdup(name)) == NULL) {
            close(fd);
            rc = vol_failx(err, ENOMEM, "out of memory");
            break;
        }
        *child = fd;
        rc = 1;
    }
    if (rc == 0 && errno != 0)
        rc = vol_fail(err, errno, "%s: read directory", path);
    closedir(d);
    return rc;
}

int vol_tree_clear(int dirfd, const char *path, vol_error *err)
{
    tree_stack s = {0};
    int cur = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    if (cur < 0)
        return vol_fail(err, errno, "%s", path);
    int rc = push(&s, cur, NULL);
    if (rc != 0)
        rc = vol_fail(err, -rc, "%s", path);
    while (rc == 0) {
        int child = -1;
        char *child_name = NULL;
        rc = clear_level(cur, &child, &child_name, path, err);
        if (rc == 1) {
            rc = push(&s, child, child_name);
            free(child_name);
            close(cur);
            cur = child;
            if (rc != 0)
                rc = vol_fail(err, -rc, "%s", path);
            continue;
        }
        if (rc != 0 || s.n == 1)
            break; /* an error, or the top is empty: done */
        /* cur is empty: go up and remove it. */
        int parent = openat(cur, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct stat st;
        if (parent < 0 || fstat(parent, &st) != 0) {
            rc = vol_fail(err, errno, "%s: open ..", path);
            if (parent >= 0)
                close(parent);
            break;
        }
        const level *up = &s.v[s.n - 2];
        if (st.st_dev != up->dev || st.st_ino != up->ino) {
            close(parent);
            rc = vol_failx(err, ESTALE, "%s: the tree moved during removal", path);
            break;
        }
        level *top = &s.v[--s.n];
        close(cur);
        cur = parent;
        /* ENOTEMPTY: something was added meanwhile; the next pass sees it. */
        if (unlinkat(cur, top->name, AT_REMOVEDIR) != 0 && errno != ENOENT && errno != ENOTEMPTY)
            rc = vol_fail(err, errno, "%s: remove directory %s", path, top->name);
        free(top->name);
    }
    close(cur);
    for (size_t i = 0; i < s.n; i++)
        free(s.v[i].name);
    free(s.v);
    return rc < 0 ? rc : 0;
}

/* ---- the bounded usage walk ---------------------------------------------- */

typedef struct walk {
    uint64_t bytes;
    size_t entries;
    bool truncated;
} walk;

static int walk_dir(int fd, unsigned depth, walk *w)
{
    int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (d == NULL) {
        int e = errno;
        if (dfd >= 0)
            close(dfd);
        return -e;
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (w->entries >= VOL_WALK_MAX_ENTRIES) {
            w->truncated = true;
            break;
        }
        w->entries++;
        struct stat st;
        if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue; /* removed meanwhile */
        w->bytes += (uint64_t)st.st_blocks * 512;
        if (!S_ISDIR(st.st_mode))
            continue;
        if (depth + 1 >= VOL_WALK_MAX_DEPTH) {
            w->truncated = true;
            continue;
        }
        int child = openat(fd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (child < 0)
            continue;
        if (!is_mount_root(child))
            rc = walk_dir(child, depth + 1, w);
        close(child);
    }
    closedir(d);
    return rc;
}

int vol_tree_usage(int dirfd, uint64_t *bytes, bool *truncated, vol_error *err)
{
    walk w = {0};
    struct stat st;
    if (fstat(dirfd, &st) != 0)
        return vol_fail(err, errno, "stat");
    w.bytes = (uint64_t)st.st_blocks * 512;
    int rc = walk_dir(dirfd, 0, &w);
    if (rc != 0)
        return vol_fail(err, -rc, "usage walk");
    *bytes = w.bytes;
    *truncated = w.truncated;
    return 0;
}
