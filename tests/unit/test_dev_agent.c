/*
 * Unit tests of the node agent's device scan and report
 * (src/reconcilers/device/agent/dev_agent_internal.h): ids from file names,
 * declared paths and discover globs checked under a temporary host root,
 * declared over discovered ids, present/absent/directory/unopenable files,
 * the cap on matches, the status patch, and when a report is (not) written.
 * The controller itself runs against the real API server in
 * tests/e2e/device_agent_test.sh.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>

#include "dev_agent_internal.h"
#include "kc_error.h"
#include "rec_util.h"

/* ---- helpers ------------------------------------------------------------------ */

static char root[256]; /* the temporary host root of each test */

static void make_root(void)
{
    snprintf(root, sizeof root, "/tmp/test_dev_agent.XXXXXX");
    cr_assert_not_null(mkdtemp(root));
}

static void remove_root(void)
{
    char *cmd = NULL;
    cr_assert_geq(asprintf(&cmd, "rm -rf '%s'", root), 0);
    cr_assert_eq(system(cmd), 0);
    free(cmd);
}

TestSuite(dev_scan, .init = make_root, .fini = remove_root);
TestSuite(dev_report);

/* Create root + path (and its directories) as an empty regular file. */
static void touch(const char *path)
{
    char *full = NULL;
    cr_assert_geq(asprintf(&full, "%s%s", root, path), 0);
    for (char *p = full + strlen(root) + 1; (p = strchr(p, '/')) != NULL; p++) {
        *p = '\0';
        cr_assert(mkdir(full, 0755) == 0 || errno == EEXIST, "mkdir %s", full);
        *p = '/';
    }
    int fd = open(full, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0, "create %s: %s", full, strerror(errno));
    close(fd);
    free(full);
}

static void mkdir_at(const char *path)
{
    char *full = NULL;
    cr_assert_geq(asprintf(&full, "%s%s", root, path), 0);
    cr_assert_eq(mkdir(full, 0755), 0, "mkdir %s", full);
    free(full);
}

static json_object *parse(const char *text)
{
    json_object *o = json_tokener_parse(text);
    cr_assert_not_null(o, "bad test JSON: %s", text);
    return o;
}

static char *id_of(const char *name)
{
    char *id = NULL;
    cr_assert_eq(dev_scan_id(name, &id), KC_OK);
    return id;
}

static void scan(const char *pool_json, dev_report *r)
{
    json_object *pool = parse(pool_json);
    cr_assert_eq(dev_scan(pool, root, r), KC_OK);
    json_object_put(pool);
}

static const dev_entry *find(const dev_report *r, const char *id)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->v[i].id, id) == 0)
            return &r->v[i];
    return NULL;
}

/* ---- ids ---------------------------------------------------------------------- */

Test(dev_scan, id_is_the_lowercased_file_name_with_other_bytes_as_dashes)
{
    struct {
        const char *name, *want;
    } cases[] = {
        {"acc7", "acc7"},
        {"FPGA0", "fpga0"},
        {"fpga.0", "fpga-0"},
        {"dri_card_1", "dri-card-1"},
        {"--x--", "x"},
        {"._x_.", "x"},
        {"a b\tc", "a-b-c"},
        {"caf\xc3\xa9", "caf"}, /* UTF-8 bytes: '-' each, trailing trimmed */
        {"\xff\xfe"
         "dev",
         "dev"},     /* leading odd bytes trimmed */
        {"...", ""}, /* nothing left: the caller skips it */
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *id = id_of(cases[i].name);
        cr_expect_str_eq(id, cases[i].want, "id of \"%s\"", cases[i].name);
        free(id);
    }
}

Test(dev_scan, id_is_cut_to_63_characters_without_a_trailing_dash)
{
    char name[100];
    memset(name, 'a', 62);
    strcpy(name + 62, "_bbbbbbbbbbb"); /* byte 63 is the '_' -> '-' */
    char *id = id_of(name);
    cr_expect_eq(strlen(id), 62, "a '-' left at the cut is trimmed");
    cr_expect_neq(id[61], '-');
    free(id);
    memset(name, 'x', 99);
    name[99] = '\0';
    id = id_of(name);
    cr_expect_eq(strlen(id), DEV_ID_MAX);
    free(id);
}

/* ---- one file ----------------------------------------------------------------- */

Test(dev_scan, present_absent_and_directory)
{
    touch("/dev/fpga0");
    mkdir_at("/dev/dir0");
    bool present = false;
    char *msg = NULL;
    cr_assert_eq(dev_scan_check(root, "/dev/fpga0", &present, &msg), KC_OK);
    cr_expect(present);
    cr_expect_null(msg);

    cr_assert_eq(dev_scan_check(root, "/dev/fpga9", &present, &msg), KC_OK);
    cr_expect_not(present);
    cr_expect_str_eq(msg, "No such file or directory");
    free(msg);

    cr_assert_eq(dev_scan_check(root, "/dev/dir0", &present, &msg), KC_OK);
    cr_expect_not(present, "a directory is not a device");
    cr_expect_str_eq(msg, "Is a directory");
    free(msg);
}

static void expect_present_unopened(const char *msg, bool present)
{
    cr_expect(present, "a file that cannot be opened is still there");
    cr_expect_str_eq(msg, "present; not opened (permission denied): only its presence is checked");
}

Test(dev_scan, a_file_that_exists_but_does_not_open)
{
    /* A UNIX socket exists but open(2) refuses it (ENXIO), even for root. */
    touch("/dev/.keep");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int n = snprintf(sa.sun_path, sizeof sa.sun_path, "%s/dev/sock0", root);
    cr_assert_lt(n, (int)sizeof sa.sun_path);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    cr_assert_geq(s, 0);
    cr_assert_eq(bind(s, (struct sockaddr *)&sa, sizeof sa), 0, "%s", strerror(errno));
    bool present = true;
    char *msg = NULL;
    cr_assert_eq(dev_scan_check(root, "/dev/sock0", &present, &msg), KC_OK);
    cr_expect_not(present);
    cr_expect_str_eq(msg, "No such device or address");
    free(msg);
    close(s);

    /* Without read permission (root reads anything: checked as others only). */
    touch("/dev/locked0");
    char *full = NULL;
    cr_assert_geq(asprintf(&full, "%s/dev/locked0", root), 0);
    cr_assert_eq(chmod(full, 0), 0);
    free(full);
    cr_assert_eq(dev_scan_check(root, "/dev/locked0", &present, &msg), KC_OK);
    if (geteuid() == 0)
        cr_expect(present, "root opens a file of mode 0");
    else
        expect_present_unopened(msg, present);
    free(msg);
    if (geteuid() != 0)
        return;
    /* As a user without the right to open it (the DaemonSet's 65532), in a
     * child: present, and the message says only presence was checked. */
    char *dev = NULL;
    cr_assert_geq(asprintf(&dev, "%s/dev", root), 0);
    cr_assert_eq(chmod(root, 0755), 0); /* mkdtemp's 0700: nobody else could look in */
    cr_assert_eq(chmod(dev, 0755), 0);
    free(dev);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        bool p = false;
        char *m = NULL;
        int ok = setgid(65532) == 0 && setuid(65532) == 0 &&
                 dev_scan_check(root, "/dev/locked0", &p, &m) == KC_OK;
        dprintf(fds[1], "%d %d %s", ok, p, m ? m : "(none)");
        _exit(0);
    }
    close(fds[1]);
    char out[256] = {0};
    ssize_t got = read(fds[0], out, sizeof out - 1);
    close(fds[0]);
    waitpid(pid, NULL, 0);
    cr_assert_gt(got, 0);
    int ok = 0, p = 0;
    int used = 0;
    cr_assert_eq(sscanf(out, "%d %d %n", &ok, &p, &used), 2, "%s", out);
    cr_assert(ok, "the child could not drop to uid 65532 or check: %s", out);
    expect_present_unopened(out + used, p);
}

Test(dev_scan, host_root_slash_and_trailing_slashes_are_the_same_prefix)
{
    touch("/dev/fpga0");
    char *with_slash = NULL;
    cr_assert_geq(asprintf(&with_slash, "%s//", root), 0);
    bool present = false;
    char *msg = NULL;
    cr_assert_eq(dev_scan_check(with_slash, "/dev/fpga0", &present, &msg), KC_OK);
    cr_expect(present);
    free(with_slash);
    /* "/" is no prefix at all: /tmp exists on the real root. */
    cr_assert_eq(dev_scan_check("/", "/tmp", &present, &msg), KC_OK);
    cr_expect_not(present);
    cr_expect_str_eq(msg, "Is a directory");
    free(msg);
}

/* ---- the report --------------------------------------------------------------- */

Test(dev_scan, declared_paths_and_discovered_globs_sorted_by_id)
{
    touch("/dev/fpga0");
    touch("/dev/acc7");
    touch("/dev/acc1");
    touch("/dev/other");
    mkdir_at("/dev/accdir");
    dev_report r = {0};
    scan("{\"metadata\":{\"name\":\"p\",\"generation\":3},\"spec\":{\"nodeName\":\"n\","
         "\"devices\":[{\"id\":\"fpga0\",\"path\":\"/dev/fpga0\"},"
         "{\"id\":\"fpga1\",\"path\":\"/dev/fpga1\"},{\"id\":\"nopath\"}],"
         "\"discover\":{\"paths\":[\"/dev/acc*\"]}}}",
         &r);
    cr_expect_eq(r.observed_generation, 3);
    cr_assert_eq(r.n, 5, "fpga0, fpga1, acc1, acc7, accdir; not nopath, not other");
    const char *order[] = {"acc1", "acc7", "accdir", "fpga0", "fpga1"};
    for (size_t i = 0; i < 5; i++)
        cr_expect_str_eq(r.v[i].id, order[i]);
    const dev_entry *e = find(&r, "acc7");
    cr_expect(e->discovered);
    cr_expect(e->present);
    cr_expect_str_eq(e->path, "/dev/acc7", "reported without the host root");
    e = find(&r, "accdir");
    cr_expect(e->discovered);
    cr_expect_not(e->present, "a directory match is not present");
    e = find(&r, "fpga0");
    cr_expect_not(e->discovered);
    cr_expect(e->present);
    e = find(&r, "fpga1");
    cr_expect_not(e->present);
    cr_expect_str_eq(e->message, "No such file or directory");
    cr_expect_eq(r.dropped + r.skipped, 0);
    dev_report_free(&r);
}

Test(dev_scan, a_declared_id_wins_over_a_discovered_one)
{
    touch("/dev/fpga0");
    touch("/dev/FPGA0");  /* id fpga0 too: the declared one wins */
    touch("/dev/fpga.1"); /* fpga-1 */
    touch("/dev/fpga_1"); /* fpga-1 again: the first in glob order wins */
    dev_report r = {0};
    scan("{\"spec\":{\"devices\":[{\"id\":\"fpga0\",\"path\":\"/dev/fpga-zero\"}],"
         "\"discover\":{\"paths\":[\"/dev/[Ff][Pp]*\"]}}}",
         &r);
    cr_assert_eq(r.n, 2);
    cr_expect_str_eq(r.v[0].id, "fpga-1");
    cr_expect_str_eq(r.v[0].path, "/dev/fpga.1");
    cr_expect_str_eq(r.v[1].id, "fpga0");
    cr_expect_not(r.v[1].discovered);
    cr_expect_str_eq(r.v[1].path, "/dev/fpga-zero");
    cr_expect_not(r.v[1].present, "the declared path, not the discovered file");
    dev_report_free(&r);
}

Test(dev_scan, globs_expand_under_the_host_root_only)
{
    touch("/sys/class/acc/dev0");
    touch("/sys/class/acc/dev1");
    touch("/sys/class/other/dev2");
    touch("/dev/.hidden0");
    dev_report r = {0};
    scan("{\"spec\":{\"discover\":{\"paths\":[\"/sys/class/*/dev[01]\",\"/dev/*\","
         "\"/nowhere/*\",\"/etc/host*\"]}}}",
         &r);
    cr_assert_eq(r.n, 2, "dev0, dev1; /etc/hostname of the real root is not seen");
    cr_expect_str_eq(r.v[0].path, "/sys/class/acc/dev0");
    cr_expect_str_eq(r.v[1].path, "/sys/class/acc/dev1");
    dev_report_free(&r);
}

Test(dev_scan, a_host_root_with_glob_characters_is_taken_literally)
{
    char plain[sizeof root];
    strcpy(plain, root);
    cr_assert_lt(strlen(root) + 4, sizeof root);
    strcat(root, "/[a]");
    cr_assert_eq(mkdir(root, 0755), 0);
    touch("/dev/acc0");
    dev_report r = {0};
    scan("{\"spec\":{\"discover\":{\"paths\":[\"/dev/acc*\"]}}}", &r);
    cr_assert_eq(r.n, 1);
    cr_expect_str_eq(r.v[0].path, "/dev/acc0");
    cr_expect(r.v[0].present);
    dev_report_free(&r);
    strcpy(root, plain);
}

Test(dev_scan, matches_past_the_cap_are_dropped_and_counted)
{
    mkdir_at("/dev");
    char path[64];
    for (int i = 0; i < DEV_REPORT_MAX + 50; i++) {
        snprintf(path, sizeof path, "/dev/acc%05d", i);
        touch(path);
    }
    dev_report r = {0};
    scan("{\"spec\":{\"devices\":[{\"id\":\"zz\",\"path\":\"/dev/zz\"}],"
         "\"discover\":{\"paths\":[\"/dev/acc*\"]}}}",
         &r);
    cr_expect_eq(r.n, DEV_REPORT_MAX, "never more than the CRD's maxItems");
    cr_expect_eq(r.dropped, 51, "50 over the cap, and one more for the declared device");
    cr_expect_str_eq(r.v[r.n - 1].id, "zz", "the declared device is always reported");
    dev_report_free(&r);
}

Test(dev_scan, odd_bytes_in_names_are_skipped_or_mapped)
{
    touch("/dev/acc\xff");     /* not UTF-8: skipped (the server would rewrite it) */
    touch("/dev/acc\xc3\xa9"); /* UTF-8: id acc, path as is */
    touch("/dev/acc\n1");      /* a newline: id acc-1 */
    touch("/dev/acc-");        /* id acc: the earlier in glob order wins */
    dev_report r = {0};
    scan("{\"spec\":{\"discover\":{\"paths\":[\"/dev/acc*\"]}}}", &r);
    cr_expect_eq(r.skipped, 1);
    cr_assert_eq(r.n, 2);
    cr_expect_str_eq(r.v[0].id, "acc");
    cr_expect_str_eq(r.v[0].path, "/dev/acc-");
    cr_expect_str_eq(r.v[1].id, "acc-1");
    cr_expect_str_eq(r.v[1].path, "/dev/acc\n1");
    dev_report_free(&r);
}

Test(dev_scan, a_spec_without_devices_or_with_wrong_types_scans_to_nothing)
{
    const char *pools[] = {
        "{}",
        "{\"spec\":{}}",
        "{\"spec\":{\"devices\":{},\"discover\":{\"paths\":\"/dev/*\"}}}",
        "{\"spec\":{\"devices\":[1,{\"id\":2,\"path\":\"/x\"},{\"id\":\"a\",\"path\":3}],"
        "\"discover\":{\"paths\":[1,\"relative*\"]}}}",
    };
    for (size_t i = 0; i < sizeof pools / sizeof pools[0]; i++) {
        dev_report r = {0};
        scan(pools[i], &r);
        cr_expect_eq(r.n, 0, "%s", pools[i]);
        dev_report_free(&r);
    }
}

/* ---- against status.agent ------------------------------------------------------ */

static dev_report two_devices(void)
{
    dev_report r = {.observed_generation = 2};
    r.cap = r.n = 2;
    r.v = calloc(2, sizeof *r.v);
    cr_assert_not_null(r.v);
    r.v[0] = (dev_entry){
        .id = strdup("acc7"), .path = strdup("/dev/acc7"), .discovered = true, .present = true};
    r.v[1] = (dev_entry){.id = strdup("fpga1"),
                         .path = strdup("/dev/fpga1"),
                         .present = false,
                         .message = strdup("No such file or directory")};
    return r;
}

static const char *now_text(time_t t)
{
    static char buf[REC_TIME_STRLEN];
    cr_assert_not_null(rec_format_time(t, buf));
    return buf;
}

Test(dev_report, the_patch_writes_status_agent_only)
{
    dev_report r = two_devices();
    time_t now = 1760000000;
    json_object *patch = NULL;
    cr_assert_eq(dev_report_patch(&r, now, &patch), KC_OK);
    json_object *want =
        parse("{\"status\":{\"agent\":{\"observedGeneration\":2,\"heartbeatTime\":"
              "\"2025-10-09T08:53:20Z\",\"devices\":["
              "{\"id\":\"acc7\",\"path\":\"/dev/acc7\",\"source\":\"Discovered\",\"present\":true},"
              "{\"id\":\"fpga1\",\"path\":\"/dev/fpga1\",\"source\":\"Declared\",\"present\":false,"
              "\"message\":\"No such file or directory\"}]}}}");
    cr_expect(json_object_equal(patch, want), "got %s",
              json_object_to_json_string_ext(patch, JSON_C_TO_STRING_PLAIN));
    json_object_put(want);
    json_object_put(patch);

    dev_report empty = {.observed_generation = 1};
    cr_assert_eq(dev_report_patch(&empty, now, &patch), KC_OK);
    json_object *devices = rec_obj_at(patch, "status.agent.devices");
    cr_assert_not_null(devices, "an empty report still replaces the list");
    cr_expect_eq(json_object_array_length(devices), 0);
    json_object_put(patch);
    dev_report_free(&r);
}

Test(dev_report, nothing_is_written_when_the_cache_shows_the_same_report)
{
    dev_report r = two_devices();
    time_t now = 1760000000;
    json_object *patch = NULL;
    cr_assert_eq(dev_report_patch(&r, now, &patch), KC_OK);
    /* What the server sends back: the same fields, in its own key order. */
    json_object *agent = parse(json_object_to_json_string(rec_obj_at(patch, "status.agent")));
    cr_expect(dev_report_matches(&r, agent));
    cr_expect_not(dev_report_needs_write(&r, agent, now + 5), "unchanged, heartbeat fresh");
    cr_expect(dev_report_needs_write(&r, NULL, now), "no report yet");

    /* Any change of a field is a write. */
    r.v[1].present = true;
    cr_expect(dev_report_needs_write(&r, agent, now + 5), "present flipped");
    r.v[1].present = false;
    r.observed_generation = 3;
    cr_expect(dev_report_needs_write(&r, agent, now + 5), "a new generation");
    r.observed_generation = 2;
    free(r.v[1].message);
    r.v[1].message = strdup("Permission denied");
    cr_expect(dev_report_needs_write(&r, agent, now + 5), "another message");
    free(r.v[1].message);
    r.v[1].message = strdup("No such file or directory");
    r.n = 1;
    cr_expect(dev_report_needs_write(&r, agent, now + 5), "a device gone");
    r.n = 2;
    r.v[0].discovered = false;
    cr_expect(dev_report_needs_write(&r, agent, now + 5), "another source");
    r.v[0].discovered = true;
    cr_expect_not(dev_report_needs_write(&r, agent, now + 5), "back to what is cached");

    json_object_put(agent);
    json_object_put(patch);
    dev_report_free(&r);

    dev_report empty = {0};
    json_object *no_devices = parse("{\"observedGeneration\":0,\"heartbeatTime\":\"x\"}");
    cr_expect(dev_report_matches(&empty, no_devices), "absent devices = none");
    json_object_put(no_devices);
}

Test(dev_report, the_heartbeat_is_due_after_30_s_or_when_unreadable)
{
    time_t t = 1760000000;
    char text[128];
    snprintf(text, sizeof text, "{\"heartbeatTime\":\"%s\"}", now_text(t));
    json_object *agent = parse(text);
    cr_expect_not(dev_report_heartbeat_due(agent, t));
    cr_expect_not(dev_report_heartbeat_due(agent, t + DEV_HEARTBEAT_S - 1));
    cr_expect(dev_report_heartbeat_due(agent, t + DEV_HEARTBEAT_S));
    cr_expect(dev_report_heartbeat_due(agent, t - DEV_HEARTBEAT_S), "the clock went back");
    json_object_put(agent);

    agent = parse("{\"heartbeatTime\":\"2025-10-09T10:53:20.5+02:00\"}");
    cr_expect_not(dev_report_heartbeat_due(agent, t + 1), "fractions and offsets read");
    json_object_put(agent);

    const char *bad[] = {"{}", "{\"heartbeatTime\":7}", "{\"heartbeatTime\":\"yesterday\"}",
                         "{\"heartbeatTime\":\"2025-10-09T08:53:20\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        agent = parse(bad[i]);
        cr_expect(dev_report_heartbeat_due(agent, t), "%s", bad[i]);
        json_object_put(agent);
    }
    cr_expect(dev_report_heartbeat_due(NULL, t));

    /* Unchanged but stale: written. */
    dev_report r = two_devices();
    json_object *patch = NULL;
    cr_assert_eq(dev_report_patch(&r, t, &patch), KC_OK);
    agent = rec_obj_at(patch, "status.agent");
    cr_expect_not(dev_report_needs_write(&r, agent, t + 29));
    cr_expect(dev_report_needs_write(&r, agent, t + 30));
    json_object_put(patch);
    dev_report_free(&r);
}
