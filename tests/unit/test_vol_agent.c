/*
 * Unit tests of the node agent's volume library
 * (src/reconcilers/volume/agent): pool checks and volume directories on
 * real filesystems, each made by the test in a temporary directory and
 * loop-mounted there: btrfs (subvolume + qgroup limit: EDQUOT past the
 * size, usage from the qgroup, removal, reruns after a crash), XFS and
 * ext4 (project quota where this kernel can mount it, else the Unsupported
 * reason asserted), tmpfs, a missing, a non-directory and a read-only path.
 *
 * Needs root and loop devices, and fails (never skips) without them. Each
 * test runs in its own mount namespace (criterion forks a worker per test),
 * so even a crashed test leaves no mount behind, and its fini unmounts and
 * removes what it made.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/btrfs.h>
#include <linux/dqblk_xfs.h>
#include <linux/fs.h>
#include <linux/quota.h>

#include "vol_agent.h"
#include "vol_agent_internal.h"

/* ---- fixtures ------------------------------------------------------------------ */

#define POOL "/pool" /* the pool path under the host root (the mount point) */
#define MIB (1024u * 1024u)

static char root[128]; /* the host root: a temporary directory */
static char mnt[192];  /* root + POOL */
static char img[192];  /* the filesystem image */
static bool mounted;

static const vol_key key_a = {"team-a", "data", "0b5c7c1e-1111-4222-8333-444455556666"};
static const vol_key key_b = {"team-b", "logs.v1", "9f1d2e3c-aaaa-4bbb-8ccc-ddddeeeeffff"};

/* Run a shell command with its output in root/log; the exit status. */
__attribute__((format(printf, 1, 2))) static int sh(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *cmd = NULL, *full = NULL;
    cr_assert_geq(vasprintf(&cmd, fmt, ap), 0);
    va_end(ap);
    cr_assert_geq(asprintf(&full, "(%s) >'%s/log' 2>&1", cmd, root), 0);
    int rc = system(full);
    free(cmd);
    free(full);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

static char *last_log(void)
{
    static char buf[2048];
    char path[256];
    snprintf(path, sizeof path, "%s/log", root);
    FILE *f = fopen(path, "r");
    size_t n = f != NULL ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f != NULL)
        fclose(f);
    buf[n] = '\0';
    return buf;
}

static void make_root(void)
{
    snprintf(root, sizeof root, "/tmp/test_vol_agent.XXXXXX");
    cr_assert_not_null(mkdtemp(root));
    snprintf(mnt, sizeof mnt, "%s%s", root, POOL);
    snprintf(img, sizeof img, "%s/fs.img", root);
    cr_assert_eq(mkdir(mnt, 0755), 0);
    mounted = false;
}

/* Root, loop devices, and a private mount namespace for this test. */
static void loop_init(void)
{
    cr_assert_eq(geteuid(), 0,
                 "test_vol_agent must run as root: it makes and loop-mounts filesystems");
    cr_assert_eq(access("/dev/loop-control", R_OK | W_OK), 0,
                 "no usable /dev/loop-control: test_vol_agent needs loop devices");
    cr_assert_eq(unshare(CLONE_NEWNS), 0, "unshare(CLONE_NEWNS): %s", strerror(errno));
    cr_assert_eq(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0, "make / private: %s",
                 strerror(errno));
    make_root();
}

static void loop_fini(void)
{
    if (mounted && umount2(mnt, 0) != 0)
        umount2(mnt, MNT_DETACH);
    mounted = false;
    char *cmd = NULL;
    cr_assert_geq(asprintf(&cmd, "rm -rf --one-file-system '%s'", root), 0);
    cr_assert_eq(system(cmd), 0);
    free(cmd);
}

/* Make a filesystem of mib MiB with mkfs (a command line without the
 * image); a failure fails the test. */
static void make_fs(const char *mkfs, unsigned mib)
{
    cr_assert_eq(sh("truncate -s %uM '%s'", mib, img), 0, "%s", last_log());
    cr_assert_eq(sh("%s '%s'", mkfs, img), 0, "%s: %s", mkfs, last_log());
}

/* Loop-mount the image at mnt with opts (NULL: none); the mount's exit
 * status (0 = mounted). */
static int mount_fs(const char *opts)
{
    int rc = sh("mount -o loop%s%s '%s' '%s'", opts ? "," : "", opts ? opts : "", img, mnt);
    mounted = rc == 0;
    return rc;
}

static void mount_fs_ok(const char *opts)
{
    cr_assert_eq(mount_fs(opts), 0, "mount %s: %s", opts ? opts : "", last_log());
}

static void umount_fs(void)
{
    cr_assert_eq(umount2(mnt, 0), 0, "umount: %s", strerror(errno));
    mounted = false;
}

static void btrfs_init(void)
{
    loop_init();
    cr_assert_eq(sh("grep -qw btrfs /proc/filesystems"), 0, "this kernel has no btrfs");
    make_fs("mkfs.btrfs -q -f", 256);
    mount_fs_ok(NULL);
}

TestSuite(vol_name);
TestSuite(vol_btrfs, .init = btrfs_init, .fini = loop_fini);
TestSuite(vol_fs, .init = loop_init, .fini = loop_fini);

/* ---- helpers ------------------------------------------------------------------- */

static char *vol_path(const vol_key *k)
{
    char *p = NULL;
    cr_assert_geq(asprintf(&p, "%s/%s_%s_%s", mnt, k->ns, k->name, k->uid), 0);
    return p;
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static void ensure_ok(const vol_key *k, uint64_t bytes, vol_quota_mode mode, vol_dir_result *r)
{
    vol_error e = {0};
    int rc = vol_dir_ensure(root, POOL, k, bytes, mode, r, &e);
    cr_assert_eq(rc, 0, "ensure: %s", e.message ? e.message : strerror(-rc));
    vol_error_clear(&e);
}

static void remove_ok(const vol_key *k)
{
    vol_error e = {0};
    int rc = vol_dir_remove(root, POOL, k, &e);
    cr_assert_eq(rc, 0, "remove: %s", e.message ? e.message : strerror(-rc));
    vol_error_clear(&e);
}

static void usage_ok(const vol_key *k, unsigned flags, vol_usage *u)
{
    vol_error e = {0};
    int rc = vol_dir_usage(root, POOL, k, flags, u, &e);
    cr_assert_eq(rc, 0, "usage: %s", e.message ? e.message : strerror(-rc));
    vol_error_clear(&e);
}

static void check_ok(vol_quota_mode mode, vol_pool_report *r)
{
    vol_error e = {0};
    int rc = vol_pool_check(root, POOL, mode, r, &e);
    cr_assert_eq(rc, 0, "check: %s", e.message ? e.message : strerror(-rc));
    vol_error_clear(&e);
}

/* Write n bytes (not zeros) to dir/name in 64 KiB writes, then fsync.
 * *accepted: what the filesystem took. 0, or the errno that stopped it. */
static int write_file(const char *dir, const char *name, size_t n, size_t *accepted)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    static char chunk[64 * 1024];
    memset(chunk, 0xa5, sizeof chunk);
    *accepted = 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    cr_assert_geq(fd, 0, "create %s: %s", path, strerror(errno));
    int err = 0;
    while (*accepted < n) {
        size_t want = n - *accepted < sizeof chunk ? n - *accepted : sizeof chunk;
        ssize_t w = write(fd, chunk, want);
        if (w < 0) {
            err = errno;
            break;
        }
        *accepted += (size_t)w;
    }
    if (fsync(fd) != 0 && err == 0)
        err = errno;
    close(fd);
    return err;
}

static int open_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    return fd;
}

/* ---- names (no root needed) ---------------------------------------------------- */

Test(vol_name, dir_name_is_ns_name_uid_and_parses_back)
{
    char *name = NULL;
    cr_assert_eq(vol_dir_name(&key_b, &name, NULL), 0);
    cr_assert_str_eq(name, "team-b_logs.v1_9f1d2e3c-aaaa-4bbb-8ccc-ddddeeeeffff");
    char *ns, *nm, *uid;
    cr_assert_eq(vol_dir_name_parse(name, &ns, &nm, &uid), 1);
    cr_assert_str_eq(ns, "team-b");
    cr_assert_str_eq(nm, "logs.v1");
    cr_assert_str_eq(uid, key_b.uid);
    free(ns);
    free(nm);
    free(uid);
    free(name);
    const char *not_volumes[] = {"lost+found", "a_b",    "_a_b",    "a__b",
                                 "a_b_",       "A_b_c",  "a_b_c/d", ".provisio-probe",
                                 ".a_b_c",     "a.b_c_d"};
    for (size_t i = 0; i < sizeof not_volumes / sizeof not_volumes[0]; i++)
        cr_assert_eq(vol_dir_name_parse(not_volumes[i], &ns, &nm, &uid), 0, "%s", not_volumes[i]);
}

Test(vol_name, dir_name_refuses_bad_parts_and_names_past_255_bytes)
{
    char *name = NULL;
    vol_error e = {0};
    const vol_key bad[] = {
        {"", "a", "u"},   {"a_b", "c", "u"}, {"a", "b/c", "u"}, {"a", "..", "u_v"},
        {"Ns", "a", "u"}, {"a", "b", ""},    {"a", "b", "u.v"}, {NULL, "b", "u"},
        {".a", "b", "u"}, {"a.b", "c", "u"}, {"a", ".b", "u"},  {"a", "b", "-u"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(vol_dir_name(&bad[i], &name, &e), -EINVAL, "case %zu", i);
        cr_assert_null(name);
        cr_assert_eq(e.err, EINVAL);
        cr_assert_not_null(e.message);
    }
    char longname[254];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    vol_key k = {"ns", longname, "u"};
    cr_assert_eq(vol_dir_name(&k, &name, &e), -ENAMETOOLONG);
    cr_assert_null(name);
    vol_error_clear(&e);
}

Test(vol_name, quota_modes_are_the_api_values)
{
    vol_quota_mode m;
    cr_assert_eq(vol_quota_mode_parse(NULL, &m), 0);
    cr_assert_eq(m, VOL_QUOTA_AUTO);
    cr_assert_eq(vol_quota_mode_parse("Required", &m), 0);
    cr_assert_eq(m, VOL_QUOTA_REQUIRED);
    cr_assert_eq(vol_quota_mode_parse("Off", &m), 0);
    cr_assert_eq(m, VOL_QUOTA_OFF);
    cr_assert_eq(vol_quota_mode_parse("off", &m), -EINVAL);
    cr_assert_str_eq(vol_quota_state_name(VOL_QUOTA_STATE_ENFORCED), "Enforced");
    cr_assert_str_eq(vol_quota_state_name(VOL_QUOTA_STATE_UNSUPPORTED), "Unsupported");
    cr_assert_str_eq(vol_quota_state_name(VOL_QUOTA_STATE_OFF), "Off");
}

Test(vol_name, project_id_is_a_function_of_the_uid_in_range)
{
    cr_assert_eq(vol_prj_id_of(key_a.uid), vol_prj_id_of(key_a.uid));
    cr_assert_neq(vol_prj_id_of(key_a.uid), vol_prj_id_of(key_b.uid));
    char uid[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(uid, sizeof uid, "uid-%d", i);
        uint32_t id = vol_prj_id_of(uid);
        cr_assert(id >= VOL_PRJ_MIN && id <= VOL_PRJ_MAX && id != 0, "%s -> %u", uid, id);
    }
}

/* ---- btrfs ----------------------------------------------------------------------- */

Test(vol_btrfs, pool_check_reports_btrfs_enforced_and_leaves_no_probe)
{
    vol_pool_report r = {0};
    check_ok(VOL_QUOTA_AUTO, &r);
    cr_assert(r.present);
    cr_assert(r.writable, "%s", r.message);
    cr_assert_null(r.message);
    cr_assert_str_eq(r.fs_type, "btrfs");
    cr_assert(r.capacity_bytes > 200 * (uint64_t)MIB && r.capacity_bytes <= 256 * (uint64_t)MIB,
              "capacity %llu", (unsigned long long)r.capacity_bytes);
    cr_assert(r.free_bytes > 0 && r.free_bytes <= r.capacity_bytes);
    cr_assert_eq(r.quota, VOL_QUOTA_STATE_ENFORCED, "%s", r.quota_reason);
    cr_assert_eq(r.backend, VOL_BACKEND_BTRFS);
    cr_assert_null(r.quota_reason);
    char probe[256];
    snprintf(probe, sizeof probe, "%s/%s", mnt, VOL_PROBE_NAME);
    cr_assert_not(exists(probe));
    /* The check changes nothing else: quotas are not enabled by it. */
    int fd = open_dir(mnt);
    bool enabled = true;
    cr_assert_eq(vol_btrfs_quota_enabled(fd, &enabled, NULL), 0);
    cr_assert_not(enabled);
    close(fd);
    check_ok(VOL_QUOTA_OFF, &r);
    cr_assert_eq(r.quota, VOL_QUOTA_STATE_OFF);
    cr_assert_eq(r.backend, VOL_BACKEND_PLAIN);
    vol_pool_report_free(&r);
}

Test(vol_btrfs, ensure_makes_a_subvolume_with_a_qgroup_limit)
{
    vol_dir_result r = {0};
    ensure_ok(&key_a, 4 * MIB, VOL_QUOTA_AUTO, &r);
    cr_assert_eq(r.backend, VOL_BACKEND_BTRFS);
    cr_assert_eq(r.quota, VOL_QUOTA_STATE_ENFORCED);
    cr_assert_null(r.quota_reason);
    cr_assert_eq(r.limit_bytes, 4 * MIB);
    cr_assert_geq(r.subvolume_id, 256);
    cr_assert_str_eq(r.path, "/pool/team-a_data_0b5c7c1e-1111-4222-8333-444455556666");
    char *p = vol_path(&key_a);
    struct stat st;
    cr_assert_eq(stat(p, &st), 0);
    cr_assert_eq(st.st_ino, VOL_BTRFS_SUBVOL_INO, "not a subvolume");
    cr_assert_eq(st.st_mode & 07777, 0777);
    int fd = open_dir(p);
    bool enabled = false;
    cr_assert_eq(vol_btrfs_quota_enabled(fd, &enabled, NULL), 0);
    cr_assert(enabled);
    vol_btrfs_qgroup q;
    cr_assert_eq(vol_btrfs_qgroup_get(fd, r.subvolume_id, &q, NULL), 0, "no qgroup");
    cr_assert_eq(q.max_rfer, 4 * MIB);
    close(fd);
    free(p);
    vol_dir_result_free(&r);
}

Test(vol_btrfs, writing_past_the_size_fails_with_edquot)
{
    vol_dir_result r = {0};
    ensure_ok(&key_a, 1 * MIB, VOL_QUOTA_AUTO, &r);
    char *p = vol_path(&key_a);
    size_t accepted = 0;
    int e = write_file(p, "big", 4 * MIB, &accepted);
    cr_assert_eq(e, EDQUOT, "writing 4 MiB into 1 MiB: %s after %zu bytes", strerror(e), accepted);
    /* The limit counts the subvolume's own metadata too: a little less than
     * the size is data, never more. */
    cr_assert(accepted <= 1 * MIB && accepted >= 1 * MIB - 128 * 1024, "accepted %zu", accepted);
    free(p);
    vol_dir_result_free(&r);
}

Test(vol_btrfs, usage_comes_from_the_qgroup_and_matches_what_was_written)
{
    vol_dir_result r = {0};
    ensure_ok(&key_a, 16 * MIB, VOL_QUOTA_AUTO, &r);
    char *p = vol_path(&key_a);
    size_t accepted = 0;
    cr_assert_eq(write_file(p, "f", 3 * MIB + 4096, &accepted), 0);
    vol_usage u;
    usage_ok(&key_a, VOL_USAGE_SYNC, &u);
    cr_assert_eq(u.backend, VOL_BACKEND_BTRFS);
    cr_assert_eq(u.limit_bytes, 16 * MIB);
    cr_assert_not(u.truncated);
    /* Data to the block, plus the subvolume's tree (a node or two). */
    cr_assert(u.used_bytes >= accepted && u.used_bytes <= accepted + 2 * 16384,
              "used %llu for %zu written", (unsigned long long)u.used_bytes, accepted);
    char f[512];
    snprintf(f, sizeof f, "%s/f", p);
    cr_assert_eq(unlink(f), 0);
    usage_ok(&key_a, VOL_USAGE_SYNC, &u);
    cr_assert_leq(u.used_bytes, 2 * 16384, "after unlink: %llu", (unsigned long long)u.used_bytes);
    free(p);
    vol_dir_result_free(&r);
}

static bool kernel_at_least(int major, int minor)
{
    struct utsname u;
    cr_assert_eq(uname(&u), 0);
    int ma = 0, mi = 0;
    sscanf(u.release, "%d.%d", &ma, &mi);
    return ma > major || (ma == major && mi >= minor);
}

Test(vol_btrfs, remove_destroys_the_subvolume_and_frees_its_qgroup)
{
    vol_dir_result r = {0};
    ensure_ok(&key_a, 8 * MIB, VOL_QUOTA_AUTO, &r);
    char *p = vol_path(&key_a);
    size_t accepted = 0;
    cr_assert_eq(write_file(p, "f", 2 * MIB, &accepted), 0);
    remove_ok(&key_a);
    cr_assert_not(exists(p));
    int fd = open_dir(mnt);
    /* The cleaner drops the subvolume after a commit; Linux 6.10 on then
     * removes its qgroup. */
    int rc = 0;
    vol_btrfs_qgroup q;
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(ioctl(fd, BTRFS_IOC_SYNC), 0);
        if ((rc = vol_btrfs_qgroup_get(fd, r.subvolume_id, &q, NULL)) == -ENOENT)
            break;
        cr_assert_eq(rc, 0);
        usleep(100 * 1000);
    }
    if (kernel_at_least(6, 10))
        cr_assert_eq(rc, -ENOENT, "qgroup 0/%llu still there 10 s after removal",
                     (unsigned long long)r.subvolume_id);
    close(fd);
    vol_dirs l = {0};
    cr_assert_eq(vol_dir_list(root, POOL, &l, NULL), 0);
    cr_assert_eq(l.n, 0);
    free(p);
    vol_dir_result_free(&r);
}

Test(vol_btrfs, ensure_and_remove_twice_are_idempotent_and_ensure_resizes)
{
    vol_dir_result r1 = {0}, r2 = {0};
    ensure_ok(&key_a, 2 * MIB, VOL_QUOTA_AUTO, &r1);
    ensure_ok(&key_a, 2 * MIB, VOL_QUOTA_AUTO, &r2);
    cr_assert_eq(r1.subvolume_id, r2.subvolume_id);
    ensure_ok(&key_a, 3 * MIB, VOL_QUOTA_AUTO, &r2);
    cr_assert_eq(r1.subvolume_id, r2.subvolume_id);
    int fd = open_dir(mnt);
    vol_btrfs_qgroup q;
    cr_assert_eq(vol_btrfs_qgroup_get(fd, r2.subvolume_id, &q, NULL), 0);
    cr_assert_eq(q.max_rfer, 3 * MIB);
    close(fd);
    remove_ok(&key_a);
    remove_ok(&key_a);
    char *p = vol_path(&key_a);
    cr_assert_not(exists(p));
    free(p);
    vol_dir_result_free(&r1);
    vol_dir_result_free(&r2);
}

Test(vol_btrfs, rerun_completes_a_subvolume_left_without_its_limit)
{
    /* As if killed after the subvolume was made, before the limit: quotas
     * on, the subvolume there, its qgroup without a limit. */
    int fd = open_dir(mnt);
    struct btrfs_ioctl_quota_ctl_args qc = {.cmd = BTRFS_QUOTA_CTL_ENABLE};
    cr_assert_eq(ioctl(fd, BTRFS_IOC_QUOTA_CTL, &qc), 0, "%s", strerror(errno));
    char *name = NULL;
    cr_assert_eq(vol_dir_name(&key_a, &name, NULL), 0);
    struct btrfs_ioctl_vol_args_v2 a;
    memset(&a, 0, sizeof a);
    strcpy(a.name, name);
    cr_assert_eq(ioctl(fd, BTRFS_IOC_SUBVOL_CREATE_V2, &a), 0, "%s", strerror(errno));
    char *p = vol_path(&key_a);
    int vfd = open_dir(p);
    uint64_t id = 0;
    cr_assert_eq(vol_btrfs_subvol_id(vfd, &id, NULL), 0);
    vol_btrfs_qgroup q;
    cr_assert_eq(vol_btrfs_qgroup_get(fd, id, &q, NULL), 0);
    cr_assert_eq(q.max_rfer, 0);
    close(vfd);

    vol_dir_result r = {0};
    ensure_ok(&key_a, 1 * MIB, VOL_QUOTA_AUTO, &r);
    cr_assert_eq(r.subvolume_id, id, "a second subvolume was made");
    cr_assert_eq(vol_btrfs_qgroup_get(fd, id, &q, NULL), 0);
    cr_assert_eq(q.max_rfer, 1 * MIB);
    size_t accepted = 0;
    cr_assert_eq(write_file(p, "big", 2 * MIB, &accepted), EDQUOT);
    close(fd);
    free(name);
    free(p);
    vol_dir_result_free(&r);
}

Test(vol_btrfs, a_plain_directory_in_the_way_is_replaced_when_empty_else_reported)
{
    char *pa = vol_path(&key_a), *pb = vol_path(&key_b);
    cr_assert_eq(mkdir(pa, 0755), 0); /* as made while the pool's quota was Off */
    cr_assert_eq(mkdir(pb, 0755), 0);
    size_t accepted;
    cr_assert_eq(write_file(pb, "keep", 4096, &accepted), 0);

    vol_dir_result r = {0};
    ensure_ok(&key_a, 1 * MIB, VOL_QUOTA_AUTO, &r);
    cr_assert_eq(r.quota, VOL_QUOTA_STATE_ENFORCED);
    struct stat st;
    cr_assert_eq(stat(pa, &st), 0);
    cr_assert_eq(st.st_ino, VOL_BTRFS_SUBVOL_INO);

    vol_error e = {0};
    cr_assert_eq(vol_dir_ensure(root, POOL, &key_b, MIB, VOL_QUOTA_REQUIRED, &r, &e), -ENOTSUP);
    cr_assert_not_null(strstr(e.message, "not a subvolume"), "%s", e.message);
    ensure_ok(&key_b, 1 * MIB, VOL_QUOTA_AUTO, &r);
    cr_assert_eq(r.quota, VOL_QUOTA_STATE_UNSUPPORTED);
    cr_assert_eq(r.backend, VOL_BACKEND_PLAIN);
    cr_assert_not_null(strstr(r.quota_reason, "not a subvolume"), "%s", r.quota_reason);
    char keep[512];
    snprintf(keep, sizeof keep, "%s/keep", pb);
    cr_assert(exists(keep), "the content was touched");
    vol_error_clear(&e);
    vol_dir_result_free(&r);
    free(pa);
    free(pb);
}

/* Items of one type in a btrfs tree with objectid in [min_obj, max_obj]
 * (all offsets), counting only those whose offset passes keep. */
static size_t count_items(int fd, uint64_t tree, uint64_t min_obj, uint64_t max_obj, uint32_t type,
                          bool (*keep)(uint64_t offset))
{
    struct btrfs_ioctl_search_args a;
    memset(&a, 0, sizeof a);
    a.key.tree_id = tree;
    a.key.min_objectid = min_obj;
    a.key.max_objectid = max_obj;
    a.key.min_type = a.key.max_type = type;
    a.key.max_offset = UINT64_MAX;
    a.key.max_transid = UINT64_MAX;
    size_t n = 0;
    for (;;) {
        a.key.nr_items = 4096;
        int rc = ioctl(fd, BTRFS_IOC_TREE_SEARCH, &a);
        if (rc != 0 && errno == ENOENT)
            return 0; /* no such tree */
        cr_assert_eq(rc, 0, "tree search: %s", strerror(errno));
        if (a.key.nr_items == 0)
            return n;
        size_t off = 0;
        struct btrfs_ioctl_search_header h = {0};
        for (uint32_t i = 0; i < a.key.nr_items; i++) {
            memcpy(&h, a.buf + off, sizeof h);
            off += sizeof h + h.len;
            if (h.type == type && (keep == NULL || keep(h.offset)))
                n++;
        }
        /* Go on after the last key returned. */
        a.key.min_objectid = h.objectid;
        a.key.min_type = h.type;
        a.key.min_offset = h.offset + 1;
        if (h.offset == UINT64_MAX)
            return n;
    }
}

static bool volume_qgroup(uint64_t qgroupid)
{
    return (qgroupid >> 48) == 0 && qgroupid >= 256; /* level 0, not the top (0/5) */
}

/* Subvolumes (root items, those being dropped included) and level-0
 * qgroups of volumes on the filesystem of fd. */
static size_t count_subvols(int fd)
{
    return count_items(fd, 1, 256, (uint64_t)-256, 132 /* ROOT_ITEM */, NULL);
}

static size_t count_qgroups(int fd)
{
    return count_items(fd, 8, 0, 0, 242 /* QGROUP_INFO */, volume_qgroup);
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Wait (10 s at most, committing) until the filesystem of fd holds n
 * subvolumes besides the top one, dropped ones included, and n volume
 * qgroups (on Linux 6.10 on, which removes the qgroup of a dropped
 * subvolume itself). */
static void wait_for_counts(int fd, size_t n)
{
    size_t subvols = 0, qgroups = 0;
    bool qgroups_go = kernel_at_least(6, 10);
    for (int t = 0; t < 100; t++) {
        cr_assert_eq(ioctl(fd, BTRFS_IOC_SYNC), 0);
        subvols = count_subvols(fd);
        qgroups = count_qgroups(fd);
        if (subvols == n && (qgroups == n || !qgroups_go))
            return;
        usleep(100 * 1000);
    }
    cr_assert_fail("want %zu subvolumes and qgroups, have %zu and %zu", n, subvols, qgroups);
}

/* Run fn(key) in a child and SIGKILL it after delay_us (or let it finish).
 * delay_us == UINT_MAX: no kill; returns how long the child took (us). */
static uint64_t killed_run(int (*fn)(const vol_key *), const vol_key *k, unsigned delay_us)
{
    uint64_t t0 = now_us();
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        _exit(fn(k) == 0 ? 0 : 1);
    if (delay_us != UINT_MAX) {
        usleep(delay_us);
        kill(pid, SIGKILL);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    if (delay_us == UINT_MAX)
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "unkilled run failed");
    return now_us() - t0;
}

static int ensure_4m(const vol_key *k)
{
    vol_dir_result r = {0};
    int rc = vol_dir_ensure(root, POOL, k, 4 * MIB, VOL_QUOTA_AUTO, &r, NULL);
    vol_dir_result_free(&r);
    return rc;
}

static int remove_it(const vol_key *k)
{
    return vol_dir_remove(root, POOL, k, NULL);
}

Test(vol_btrfs, runs_killed_at_any_moment_then_rerun_leak_nothing)
{
    enum { N = 16 };
    char uids[N][40];
    vol_key keys[N];
    for (int i = 0; i < N; i++) {
        snprintf(uids[i], sizeof uids[i], "00000000-0000-4000-8000-%012d", i);
        keys[i] = (vol_key){"team-a", "v", uids[i]};
    }
    /* How long a whole ensure and a whole removal take here (a throwaway
     * volume, after a first one has enabled quotas), so the kills below land
     * all along the way. */
    const vol_key probe = {"team-z", "probe", "ffffffff-0000-4000-8000-000000000000"};
    killed_run(ensure_4m, &probe, UINT_MAX);
    killed_run(remove_it, &probe, UINT_MAX);
    unsigned t_ensure = (unsigned)killed_run(ensure_4m, &probe, UINT_MAX);
    unsigned t_remove = (unsigned)killed_run(remove_it, &probe, UINT_MAX);
    int fd = open_dir(mnt);
    wait_for_counts(fd, 0);
    /* Kill each first ensure somewhere between its start and its end, then
     * rerun it to completion. */
    srand(12);
    for (int i = 0; i < N; i++) {
        killed_run(ensure_4m, &keys[i], (unsigned)rand() % (t_ensure + 1));
        cr_assert_eq(ensure_4m(&keys[i]), 0, "rerun of %s", uids[i]);
    }
    wait_for_counts(fd, N);
    for (int i = 0; i < N; i++) {
        char *p = vol_path(&keys[i]);
        int vfd = open_dir(p);
        uint64_t id = 0;
        vol_btrfs_qgroup q;
        cr_assert_eq(vol_btrfs_subvol_id(vfd, &id, NULL), 0);
        cr_assert_eq(vol_btrfs_qgroup_get(fd, id, &q, NULL), 0);
        cr_assert_eq(q.max_rfer, 4 * MIB, "%s without its limit", uids[i]);
        close(vfd);
        free(p);
    }
    /* The same for removals. */
    for (int i = 0; i < N; i++) {
        killed_run(remove_it, &keys[i], (unsigned)rand() % (t_remove + 1));
        cr_assert_eq(remove_it(&keys[i]), 0, "rerun of the removal of %s", uids[i]);
    }
    vol_dirs l = {0};
    cr_assert_eq(vol_dir_list(root, POOL, &l, NULL), 0);
    cr_assert_eq(l.n, 0);
    wait_for_counts(fd, 0);
    close(fd);
}

/* mkdir a chain of depth directories under dir, with a file at the bottom. */
static void deep_tree(const char *dir, int depth)
{
    int fd = open_dir(dir);
    for (int i = 0; i < depth; i++) {
        cr_assert_eq(mkdirat(fd, "d", 0755), 0);
        int next = openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        cr_assert_geq(next, 0);
        close(fd);
        fd = next;
    }
    int f = openat(fd, "bottom", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    cr_assert_geq(f, 0);
    close(f);
    close(fd);
}

Test(vol_btrfs, remove_clears_nested_subvolumes_deep_trees_and_never_follows_symlinks)
{
    vol_dir_result r = {0};
    ensure_ok(&key_a, 8 * MIB, VOL_QUOTA_AUTO, &r);
    char *p = vol_path(&key_a);
    /* Outside the volume: a file and a directory that must survive. */
    char victim[256], outside[256], outside_file[300], link[512], dlink[512];
    snprintf(victim, sizeof victim, "%s/victim", mnt);
    snprintf(outside, sizeof outside, "%s/outside", mnt);
    snprintf(outside_file, sizeof outside_file, "%s/file", outside);
    cr_assert_eq(mkdir(outside, 0755), 0);
    size_t accepted;
    cr_assert_eq(write_file(mnt, "victim", 10, &accepted), 0);
    cr_assert_eq(write_file(outside, "file", 10, &accepted), 0);
    snprintf(link, sizeof link, "%s/link", p);
    snprintf(dlink, sizeof dlink, "%s/dlink", p);
    cr_assert_eq(symlink(victim, link), 0);
    cr_assert_eq(symlink(outside, dlink), 0);
    /* A subvolume inside the volume (anyone who can write there can make
     * one), holding a file and a subvolume of its own. */
    int vfd = open_dir(p);
    struct btrfs_ioctl_vol_args_v2 a;
    memset(&a, 0, sizeof a);
    strcpy(a.name, "nested");
    cr_assert_eq(ioctl(vfd, BTRFS_IOC_SUBVOL_CREATE_V2, &a), 0, "%s", strerror(errno));
    char nested[512];
    snprintf(nested, sizeof nested, "%s/nested", p);
    cr_assert_eq(write_file(nested, "f", 8192, &accepted), 0);
    int nfd = open_dir(nested);
    strcpy(a.name, "inner");
    cr_assert_eq(ioctl(nfd, BTRFS_IOC_SUBVOL_CREATE_V2, &a), 0, "%s", strerror(errno));
    close(nfd);
    close(vfd);
    deep_tree(p, 300); /* deeper than any descriptor budget per level would allow */

    remove_ok(&key_a);
    cr_assert_not(exists(p));
    cr_assert(exists(victim), "followed a symlink to a file");
    cr_assert(exists(outside_file), "followed a symlink to a directory");
    free(p);
    vol_dir_result_free(&r);
}

Test(vol_btrfs, quota_off_makes_plain_directories_whose_usage_needs_a_walk)
{
    vol_dir_result r = {0};
    ensure_ok(&key_a, 1 * MIB, VOL_QUOTA_OFF, &r);
    cr_assert_eq(r.backend, VOL_BACKEND_PLAIN);
    cr_assert_eq(r.quota, VOL_QUOTA_STATE_OFF);
    cr_assert_eq(r.limit_bytes, 0);
    char *p = vol_path(&key_a);
    struct stat st;
    cr_assert_eq(stat(p, &st), 0);
    cr_assert_neq(st.st_ino, VOL_BTRFS_SUBVOL_INO);
    size_t accepted;
    cr_assert_eq(write_file(p, "f", 2 * MIB, &accepted), 0, "no limit, yet refused");
    vol_usage u;
    vol_error e = {0};
    cr_assert_eq(vol_dir_usage(root, POOL, &key_a, 0, &u, &e), -ENOTSUP);
    cr_assert_not_null(strstr(e.message, "walk"), "%s", e.message);
    usage_ok(&key_a, VOL_USAGE_WALK, &u);
    cr_assert_eq(u.backend, VOL_BACKEND_PLAIN);
    cr_assert(u.used_bytes >= 2 * MIB && u.used_bytes <= 2 * MIB + 64 * 1024, "walk: %llu",
              (unsigned long long)u.used_bytes);
    remove_ok(&key_a);
    cr_assert_not(exists(p));
    vol_error_clear(&e);
    free(p);
    vol_dir_result_free(&r);
}

Test(vol_btrfs, list_finds_the_volume_directories_only)
{
    vol_dir_result r = {0};
    ensure_ok(&key_b, 1 * MIB, VOL_QUOTA_AUTO, &r);
    ensure_ok(&key_a, 1 * MIB, VOL_QUOTA_AUTO, &r);
    char path[512];
    snprintf(path, sizeof path, "%s/lost+found", mnt);
    cr_assert_eq(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/.hidden_a_b", mnt);
    cr_assert_eq(mkdir(path, 0755), 0);
    size_t accepted;
    cr_assert_eq(write_file(mnt, "ns_file_u1", 10, &accepted), 0); /* a file, not a directory */
    snprintf(path, sizeof path, "%s/ns_link_u2", mnt);
    cr_assert_eq(symlink(mnt, path), 0);
    vol_dirs l = {0};
    cr_assert_eq(vol_dir_list(root, POOL, &l, NULL), 0);
    cr_assert_eq(l.n, 2);
    cr_assert_str_eq(l.v[0].ns, "team-a");
    cr_assert_str_eq(l.v[0].name, "data");
    cr_assert_str_eq(l.v[0].uid, key_a.uid);
    cr_assert_str_eq(l.v[1].dirname, "team-b_logs.v1_9f1d2e3c-aaaa-4bbb-8ccc-ddddeeeeffff");
    vol_dirs_free(&l);
    vol_dir_result_free(&r);
}

/* ---- project quota filesystems: XFS, ext4 ---------------------------------------- */

/* On a filesystem that enforces project quota: the whole flow. */
static void project_quota_flow(void)
{
    vol_pool_report pr = {0};
    check_ok(VOL_QUOTA_AUTO, &pr);
    cr_assert_eq(pr.quota, VOL_QUOTA_STATE_ENFORCED, "%s", pr.quota_reason);
    cr_assert_eq(pr.backend, VOL_BACKEND_PROJECT);
    vol_pool_report_free(&pr);
    vol_dir_result r = {0}, r2 = {0};
    ensure_ok(&key_a, 1 * MIB, VOL_QUOTA_REQUIRED, &r);
    cr_assert_eq(r.quota, VOL_QUOTA_STATE_ENFORCED);
    cr_assert_geq(r.project_id, VOL_PRJ_MIN);
    ensure_ok(&key_a, 1 * MIB, VOL_QUOTA_REQUIRED, &r2);
    cr_assert_eq(r.project_id, r2.project_id);
    char *p = vol_path(&key_a);
    size_t accepted = 0;
    cr_assert_eq(write_file(p, "big", 4 * MIB, &accepted), EDQUOT);
    cr_assert_leq(accepted, 1 * MIB);
    vol_usage u;
    usage_ok(&key_a, VOL_USAGE_SYNC, &u);
    cr_assert_eq(u.backend, VOL_BACKEND_PROJECT);
    cr_assert_eq(u.limit_bytes, 1 * MIB);
    cr_assert(u.used_bytes >= accepted && u.used_bytes <= accepted + 64 * 1024);
    remove_ok(&key_a);
    cr_assert_not(exists(p));
    int fd = open_dir(mnt);
    struct fs_disk_quota q;
    memset(&q, 0, sizeof q);
    int rc = vol_prj_quotactl(fd, Q_XGETQUOTA, r.project_id, &q);
    cr_assert(rc == -ENOENT || (rc == 0 && q.d_blk_hardlimit == 0), "limit left behind");
    close(fd);
    free(p);
    vol_dir_result_free(&r);
    vol_dir_result_free(&r2);
}

/* On a filesystem without quota: reported Unsupported with reason (a
 * substring), plain directories made and removed, Required refused. */
static void unsupported_flow(const char *fs_type, const char *reason)
{
    vol_pool_report pr = {0};
    check_ok(VOL_QUOTA_AUTO, &pr);
    cr_assert(pr.present && pr.writable, "%s", pr.message);
    cr_assert_str_eq(pr.fs_type, fs_type);
    cr_assert_eq(pr.quota, VOL_QUOTA_STATE_UNSUPPORTED);
    cr_assert_eq(pr.backend, VOL_BACKEND_PLAIN);
    cr_assert_not_null(strstr(pr.quota_reason, reason), "reason \"%s\", want \"%s\"",
                       pr.quota_reason, reason);
    vol_pool_report_free(&pr);

    char *p = vol_path(&key_a);
    vol_dir_result r = {0};
    vol_error e = {0};
    cr_assert_eq(vol_dir_ensure(root, POOL, &key_a, MIB, VOL_QUOTA_REQUIRED, &r, &e), -ENOTSUP);
    cr_assert_not_null(strstr(e.message, reason), "%s", e.message);
    cr_assert_not(exists(p), "Required made a directory without a limit");
    ensure_ok(&key_a, 1 * MIB, VOL_QUOTA_AUTO, &r);
    cr_assert_eq(r.quota, VOL_QUOTA_STATE_UNSUPPORTED);
    cr_assert_not_null(strstr(r.quota_reason, reason));
    cr_assert_eq(r.limit_bytes, 0);
    ensure_ok(&key_a, 1 * MIB, VOL_QUOTA_AUTO, &r);
    size_t accepted;
    cr_assert_eq(write_file(p, "f", 256 * 1024, &accepted), 0);
    vol_usage u;
    cr_assert_eq(vol_dir_usage(root, POOL, &key_a, 0, &u, &e), -ENOTSUP);
    usage_ok(&key_a, VOL_USAGE_WALK, &u);
    cr_assert_geq(u.used_bytes, 256 * 1024);
    deep_tree(p, 50);
    remove_ok(&key_a);
    remove_ok(&key_a);
    cr_assert_not(exists(p));
    vol_error_clear(&e);
    vol_dir_result_free(&r);
    free(p);
}

Test(vol_fs, xfs_enforces_project_quota_or_says_the_kernel_cannot)
{
    cr_assert_eq(sh("grep -qw xfs /proc/filesystems"), 0, "this kernel has no XFS");
    make_fs("mkfs.xfs -q -f", 300);
    if (mount_fs("prjquota") == 0) {
        project_quota_flow();
        return;
    }
    /* Refused: this kernel has no XFS quota (CONFIG_XFS_QUOTA unset). */
    mount_fs_ok(NULL);
    unsupported_flow("xfs", "kernel without XFS quota support");
}

Test(vol_fs, xfs_mounted_without_prjquota_is_unsupported)
{
    make_fs("mkfs.xfs -q -f", 300);
    bool kernel_has_quota = mount_fs("prjquota") == 0;
    if (kernel_has_quota)
        umount_fs();
    mount_fs_ok(NULL);
    unsupported_flow("xfs", kernel_has_quota ? "XFS mounted without prjquota"
                                             : "kernel without XFS quota support");
}

Test(vol_fs, ext4_without_the_project_feature_is_unsupported)
{
    make_fs("mkfs.ext4 -q -F", 64);
    mount_fs_ok(NULL);
    unsupported_flow("ext4", "ext4 without the project feature");
}

Test(vol_fs, ext4_with_project_quota_enforces_or_the_kernel_refuses_to_mount_it)
{
    make_fs("mkfs.ext4 -q -F -O quota,project", 64);
    if (mount_fs("prjquota") == 0) {
        project_quota_flow();
        return;
    }
    /* The quota feature needs the kernel's quota format (CONFIG_QFMT_V2);
     * say so rather than pass without having checked anything. */
    cr_assert_eq(sh("zcat /proc/config.gz | grep -q '^CONFIG_QFMT_V2=y'"), 1,
                 "ext4 with project quota did not mount, though the kernel has QFMT_V2");
}

Test(vol_fs, tmpfs_is_unsupported_and_directories_still_work)
{
    cr_assert_eq(mount("tmpfs", mnt, "tmpfs", 0, "size=16m"), 0, "%s", strerror(errno));
    mounted = true;
    unsupported_flow("tmpfs", "tmpfs has no project quota or qgroups");
}

Test(vol_fs, missing_path_and_a_file_are_not_present)
{
    vol_pool_report r = {0};
    cr_assert_eq(vol_pool_check(root, "/nope", VOL_QUOTA_AUTO, &r, NULL), 0);
    cr_assert_not(r.present);
    cr_assert_not(r.writable);
    cr_assert_not_null(strstr(r.message, "/nope: No such file or directory"), "%s", r.message);
    cr_assert_eq(r.quota, VOL_QUOTA_STATE_UNSUPPORTED);
    size_t accepted;
    cr_assert_eq(write_file(root, "file", 1, &accepted), 0);
    cr_assert_eq(vol_pool_check(root, "/file", VOL_QUOTA_OFF, &r, NULL), 0);
    cr_assert_not(r.present);
    cr_assert_not_null(strstr(r.message, "Not a directory"), "%s", r.message);
    cr_assert_eq(r.quota, VOL_QUOTA_STATE_OFF);
    cr_assert_eq(vol_pool_check(root, "relative", VOL_QUOTA_OFF, &r, NULL), -EINVAL);
    vol_error e = {0};
    vol_dir_result d = {0};
    cr_assert_eq(vol_dir_ensure(root, "/nope", &key_a, MIB, VOL_QUOTA_AUTO, &d, &e), -ENOENT);
    cr_assert_eq(vol_dir_remove(root, "/nope", &key_a, &e), -ENOENT,
                 "a missing pool (unmounted?) must not count as removed");
    vol_error_clear(&e);
    vol_pool_report_free(&r);
}

Test(vol_fs, read_only_mount_is_present_but_not_writable)
{
    make_fs("mkfs.ext4 -q -F", 64);
    mount_fs_ok("ro");
    vol_pool_report r = {0};
    check_ok(VOL_QUOTA_AUTO, &r);
    cr_assert(r.present);
    cr_assert_not(r.writable);
    cr_assert_not_null(strstr(r.message, "not writable: Read-only file system"), "%s", r.message);
    cr_assert_str_eq(r.fs_type, "ext4");
    cr_assert_gt(r.capacity_bytes, 0);
    vol_pool_report_free(&r);
    vol_dir_result d = {0};
    vol_error e = {0};
    cr_assert_eq(vol_dir_ensure(root, POOL, &key_a, MIB, VOL_QUOTA_AUTO, &d, &e), -EROFS);
    vol_error_clear(&e);
}

/* The fake quota of vol_prj_assign: ids in held[] are taken. */
typedef struct held_ids {
    uint32_t v[VOL_PRJ_PROBES + 1];
    size_t n;
} held_ids;

static int fake_used(void *ctx, uint32_t id, bool *used)
{
    const held_ids *h = ctx;
    *used = false;
    for (size_t i = 0; i < h->n; i++)
        *used = *used || h->v[i] == id;
    return 0;
}

Test(vol_fs, project_ids_probe_past_held_ones_and_are_read_back_after_a_crash)
{
    /* XFS takes project ids without quota too: the id logic is testable on
     * any kernel (the limit itself is project_quota_flow's). */
    make_fs("mkfs.xfs -q -f", 300);
    mount_fs_ok(NULL);
    int pool = open_dir(mnt);
    char *pa = vol_path(&key_a), *pb = vol_path(&key_b);
    cr_assert_eq(mkdir(pa, 0777), 0);
    int a = open_dir(pa);
    uint32_t first = vol_prj_id_of(key_a.uid), id = 0;
    held_ids h = {.v = {first, first + 1}, .n = 2};
    cr_assert_eq(vol_prj_assign(pool, a, key_a.uid, fake_used, &h, &id, NULL), 0);
    cr_assert_eq(id, first + 2);
    struct fsxattr fa;
    cr_assert_eq(ioctl(a, FS_IOC_FSGETXATTR, &fa), 0);
    cr_assert_eq(fa.fsx_projid, first + 2);
    cr_assert(fa.fsx_xflags & FS_XFLAG_PROJINHERIT);
    /* A rerun (after a crash before the limit) reads the id back, even
     * though its quota entry now shows it held. */
    h.v[h.n++] = first + 2;
    uint32_t again = 0;
    cr_assert_eq(vol_prj_assign(pool, a, key_a.uid, fake_used, &h, &again, NULL), 0);
    cr_assert_eq(again, id);
    /* A file made inside inherits the volume's id. */
    size_t accepted;
    cr_assert_eq(write_file(pa, "f", 10, &accepted), 0);
    char f[512];
    snprintf(f, sizeof f, "%s/f", pa);
    int ffd = open(f, O_RDONLY | O_CLOEXEC);
    cr_assert_eq(ioctl(ffd, FS_IOC_FSGETXATTR, &fa), 0);
    cr_assert_eq(fa.fsx_projid, id);
    close(ffd);
    close(a);

    /* A pool that is itself a project: its id, inherited by mkdir, is not
     * the volume's own. */
    cr_assert_eq(ioctl(pool, FS_IOC_FSGETXATTR, &fa), 0);
    fa.fsx_projid = 4242;
    fa.fsx_xflags |= FS_XFLAG_PROJINHERIT;
    cr_assert_eq(ioctl(pool, FS_IOC_FSSETXATTR, &fa), 0);
    cr_assert_eq(mkdir(pb, 0777), 0);
    int b = open_dir(pb);
    cr_assert_eq(vol_prj_own_id(pool, b, &id, NULL), 0);
    cr_assert_eq(id, 0);
    h.n = 0;
    cr_assert_eq(vol_prj_assign(pool, b, key_b.uid, fake_used, &h, &id, NULL), 0);
    cr_assert_eq(id, vol_prj_id_of(key_b.uid));
    close(b);

    /* Every choice held: ENOSPC, and nothing set. */
    char *pc = NULL;
    cr_assert_geq(asprintf(&pc, "%s/c", mnt), 0);
    cr_assert_eq(mkdir(pc, 0777), 0);
    int c = open_dir(pc);
    first = vol_prj_id_of("uid-c");
    for (h.n = 0; h.n < VOL_PRJ_PROBES; h.n++)
        h.v[h.n] = first + (uint32_t)h.n;
    vol_error e = {0};
    cr_assert_eq(vol_prj_assign(pool, c, "uid-c", fake_used, &h, &id, &e), -ENOSPC);
    cr_assert_eq(vol_prj_own_id(pool, c, &id, NULL), 0);
    cr_assert_eq(id, 0);
    close(c);
    close(pool);
    vol_error_clear(&e);
    free(pa);
    free(pb);
    free(pc);
}
