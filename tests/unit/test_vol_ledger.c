/*
 * Unit tests of the StoragePool capacity ledger
 * (src/reconcilers/volume/vol_ledger.h): reading and writing the status
 * fields, admissions (room, again, renewal, full, unknown), the recount
 * (landed, expired, invalid Reservations), when a recount is due; and a
 * model check of the whole protocol of src/reconcilers/volume/README.md:
 * replicas with stale reads, skewed clocks, creations that come late or
 * never, deletions and recounts interleaved at random, with the sum of the
 * valid Reservations checked against the ledger and the capacity after
 * every step. The same simulation with the recount's grace removed, or with
 * admissions taken as landed by a Reservation's name alone, must find a
 * violation, which shows the check can fail; the release rule has a
 * directed test.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "kc_error.h"
#include "rec_util.h"
#include "vol_ledger.h"

#define T0 1800000000LL /* 2027-01-15, any time rec_format_time can write */

static json_object *pool_json(const char *capacity, const char *status)
{
    char *buf = NULL;
    cr_assert_gt(asprintf(&buf, "{\"metadata\":{\"name\":\"p\"},\"spec\":{\"capacity\":%s}%s%s}",
                          capacity, status ? ",\"status\":" : "", status ? status : ""),
                 0);
    json_object *o = json_tokener_parse(buf);
    cr_assert_not_null(o, "bad test JSON: %s", buf);
    free(buf);
    return o;
}

static vol_ledger read_ok(json_object *pool)
{
    vol_ledger l;
    char *why = NULL;
    cr_assert_eq(vol_ledger_read(pool, &l, &why), 0, "read: %s", why ? why : "");
    cr_assert_null(why);
    return l;
}

/* ---- reading and writing ------------------------------------------------------ */

Test(vol_ledger, capacity_forms)
{
    const char *good[][2] = {
        {"\"10Gi\"", "10737418240"}, {"1073741824", "1073741824"}, {"\"500M\"", "500000000"}};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        json_object *p = pool_json(good[i][0], "{\"allocatedBytes\":0}");
        vol_ledger l = read_ok(p);
        cr_expect_eq(l.capacity, strtoll(good[i][1], NULL, 10), "%s", good[i][0]);
        vol_ledger_close(&l);
        json_object_put(p);
    }
    const char *bad[] = {"\"0\"", "0", "-5", "\"1.5\"", "\"lots\"", "\"100m\"", "true"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_object *p = pool_json(bad[i], NULL);
        vol_ledger l;
        char *why = NULL;
        cr_expect_eq(vol_ledger_read(p, &l, &why), KC_ERR_INVALID_ARG, "%s", bad[i]);
        cr_expect(why && strstr(why, "spec.capacity of StoragePool p"), "%s: %s", bad[i],
                  why ? why : "(none)");
        free(why);
        json_object_put(p);
    }
}

Test(vol_ledger, unknown_until_recounted)
{
    /* No allocatedBytes (a new pool, or a status wiped by hand): nothing
     * may be admitted until a recount has looked at the Reservations. */
    const char *statuses[] = {
        NULL,
        "{}",
        "{\"allocatedBytes\":-1}",
        "{\"allocatedBytes\":\"5\"}",
        "{\"allocatedBytes\":5,\"inFlight\":{}}",
        "{\"allocatedBytes\":5,\"inFlight\":[{\"uid\":\"a\",\"bytes\":0,"
        "\"admittedUntil\":\"2027-01-15T08:00:00Z\"}]}",
        "{\"allocatedBytes\":5,\"inFlight\":[{\"uid\":\"a\",\"bytes\":5,"
        "\"admittedUntil\":\"soon\"}]}",
        "{\"allocatedBytes\":10,\"inFlight\":["
        "{\"uid\":\"a\",\"bytes\":5,\"admittedUntil\":\"2027-01-15T08:00:00Z\"},"
        "{\"uid\":\"a\",\"bytes\":5,\"admittedUntil\":\"2027-01-15T08:00:00Z\"}]}",
    };
    for (size_t i = 0; i < sizeof statuses / sizeof *statuses; i++) {
        json_object *p = pool_json("100", statuses[i]);
        vol_ledger l = read_ok(p);
        cr_expect_not(l.known, "status %s", statuses[i] ? statuses[i] : "(none)");
        cr_expect_eq(l.n_inflight, 0);
        vol_admit_result r;
        bool changed = true;
        cr_assert_eq(vol_ledger_admit(&l, "v1", 10, T0, &r, &changed), 0);
        cr_expect_eq(r, VOL_LEDGER_UNKNOWN);
        cr_expect_not(changed);
        cr_expect(vol_ledger_recount_due(&l, 0, NULL, NULL));
        json_object *st = json_object_new_object();
        cr_assert_eq(vol_ledger_write(&l, st), 0);
        cr_expect_eq(json_object_object_length(st), 0, "an unknown ledger writes nothing");
        json_object_put(st);
        vol_ledger_close(&l);
        json_object_put(p);
    }
}

Test(vol_ledger, round_trip)
{
    json_object *p = pool_json("\"1Ki\"", "{\"allocatedBytes\":300,\"inFlight\":["
                                          "{\"uid\":\"u-1\",\"bytes\":100,\"admittedUntil\":"
                                          "\"2027-01-15T08:00:30Z\"},"
                                          "{\"uid\":\"u-2\",\"bytes\":200,\"admittedUntil\":"
                                          "\"2027-01-15T10:00:30+02:00\"}]}");
    vol_ledger l = read_ok(p);
    cr_assert(l.known);
    cr_expect_eq(l.capacity, 1024);
    cr_expect_eq(l.allocated, 300);
    cr_assert_eq(l.n_inflight, 2);
    cr_expect_str_eq(l.inflight[0].uid, "u-1");
    cr_expect_eq(l.inflight[0].until, T0 + 30, "%lld", (long long)l.inflight[0].until);
    cr_expect_eq(l.inflight[1].until, T0 + 30, "offsets are applied");
    cr_expect_eq(vol_ledger_available(&l), 724);

    json_object *st = json_object_new_object();
    cr_assert_eq(vol_ledger_write(&l, st), 0);
    cr_expect_str_eq(json_object_to_json_string_ext(st, JSON_C_TO_STRING_PLAIN),
                     "{\"capacityBytes\":1024,\"allocatedBytes\":300,\"availableBytes\":724,"
                     "\"inFlight\":[{\"uid\":\"u-1\",\"bytes\":100,\"admittedUntil\":"
                     "\"2027-01-15T08:00:30Z\"},{\"uid\":\"u-2\",\"bytes\":200,"
                     "\"admittedUntil\":\"2027-01-15T08:00:30Z\"}]}");

    /* Once nothing is in flight the list goes away. */
    vol_ledger_recount(&l, NULL, 0, T0 + 1000);
    cr_assert_eq(vol_ledger_write(&l, st), 0);
    cr_expect_str_eq(json_object_to_json_string_ext(st, JSON_C_TO_STRING_PLAIN),
                     "{\"capacityBytes\":1024,\"allocatedBytes\":0,\"availableBytes\":1024}");
    json_object_put(st);
    vol_ledger_close(&l);
    vol_ledger_close(NULL);
    json_object_put(p);
}

/* ---- admissions ------------------------------------------------------------------ */

Test(vol_ledger, admit)
{
    json_object *p = pool_json("100", "{\"allocatedBytes\":50}");
    vol_ledger l = read_ok(p);
    vol_admit_result r;
    bool changed;

    cr_assert_eq(vol_ledger_admit(&l, "a", 30, T0, &r, &changed), 0);
    cr_expect_eq(r, VOL_ADMITTED);
    cr_expect(changed);
    cr_expect_eq(l.allocated, 80);
    cr_expect_eq(vol_ledger_find(&l, "a")->until, T0 + VOL_ADMIT_TTL);

    /* Does not fit: 80 + 21 > 100. Exactly full fits. */
    cr_assert_eq(vol_ledger_admit(&l, "b", 21, T0, &r, &changed), 0);
    cr_expect_eq(r, VOL_NO_ROOM);
    cr_expect_not(changed);
    cr_expect_eq(l.allocated, 80);
    cr_assert_eq(vol_ledger_admit(&l, "c", 20, T0, &r, &changed), 0);
    cr_expect_eq(r, VOL_ADMITTED);
    cr_expect_eq(l.allocated, 100);
    cr_expect_eq(vol_ledger_available(&l), 0);

    /* Again: counted once, never renewed (even past its deadline). */
    cr_assert_eq(vol_ledger_admit(&l, "a", 30, T0 + 5, &r, &changed), 0);
    cr_expect_eq(r, VOL_ADMITTED_AGAIN);
    cr_expect_not(changed);
    cr_assert_eq(vol_ledger_admit(&l, "a", 30, T0 + VOL_ADMIT_TTL + 1, &r, &changed), 0);
    cr_expect_eq(r, VOL_ADMITTED_AGAIN);
    cr_expect_not(changed);
    cr_expect_eq(vol_ledger_find(&l, "a")->until, T0 + VOL_ADMIT_TTL);
    cr_expect_eq(l.allocated, 100);

    /* Sizes that cannot fit whatever happens, and overflow. */
    cr_assert_eq(vol_ledger_admit(&l, "d", 0, T0, &r, NULL), 0);
    cr_expect_eq(r, VOL_NO_ROOM);
    cr_assert_eq(vol_ledger_admit(&l, "e", INT64_MAX, T0, &r, NULL), 0);
    cr_expect_eq(r, VOL_NO_ROOM);
    vol_ledger_close(&l);
    json_object_put(p);
}

Test(vol_ledger, admit_until_full)
{
    json_object *p = pool_json("1000000", "{\"allocatedBytes\":0}");
    vol_ledger l = read_ok(p);
    vol_admit_result r;
    char uid[32];
    for (int i = 0; i < VOL_INFLIGHT_MAX; i++) {
        snprintf(uid, sizeof uid, "v%d", i);
        cr_assert_eq(vol_ledger_admit(&l, uid, 1, T0, &r, NULL), 0);
        cr_assert_eq(r, VOL_ADMITTED);
    }
    cr_assert_eq(vol_ledger_admit(&l, "one-more", 1, T0, &r, NULL), 0);
    cr_expect_eq(r, VOL_LEDGER_FULL);
    cr_expect_eq(l.allocated, VOL_INFLIGHT_MAX);

    /* The written status stays within the CRD's maxItems and reads back. */
    json_object *st = json_object_new_object();
    cr_assert_eq(vol_ledger_write(&l, st), 0);
    json_object *p2 = pool_json("1000000", json_object_to_json_string(st));
    vol_ledger l2 = read_ok(p2);
    cr_expect(l2.known);
    cr_expect_eq(l2.n_inflight, VOL_INFLIGHT_MAX);
    vol_ledger_close(&l2);
    json_object_put(p2);
    json_object_put(st);
    vol_ledger_close(&l);
    json_object_put(p);
}

/* ---- recount ---------------------------------------------------------------------- */

static bool held_none(void *ctx, const char *uid, int64_t until)
{
    (void)ctx;
    (void)uid;
    (void)until;
    return false;
}

/* ctx: uids whose Reservation with deadline T0 + 30 is cached. */
static bool held_in(void *ctx, const char *uid, int64_t until)
{
    for (const char *const *u = ctx; *u; u++)
        if (!strcmp(*u, uid) && until == T0 + 30)
            return true;
    return false;
}

Test(vol_ledger, recount)
{
    json_object *p = pool_json("1000", "{\"allocatedBytes\":700,\"inFlight\":["
                                       "{\"uid\":\"landed\",\"bytes\":100,\"admittedUntil\":"
                                       "\"2027-01-15T08:00:30Z\"},"
                                       "{\"uid\":\"waiting\",\"bytes\":200,\"admittedUntil\":"
                                       "\"2027-01-15T08:00:30Z\"},"
                                       "{\"uid\":\"stale\",\"bytes\":300,\"admittedUntil\":"
                                       "\"2027-01-15T07:58:00Z\"}]}");
    vol_ledger l = read_ok(p);
    vol_listed listed[] = {
        {"landed", 100, T0 + 10, T0 + 30},   /* counted once, entry dropped */
        {"waiting", 200, T0 - 100, T0 - 90}, /* an older one of that name: not its admission's */
        {"old", 50, T0 - 3600, T0 - 3570},   /* held for an hour */
        {"late", 400, T0 + 31, T0 + 30},     /* created after its deadline: never counts */
        {"zero", 0, T0, T0 + 30},            /* not a size */
    };
    /* t0 = T0 + 20: "stale" expired at T0 - 120 + 30 < t0. */
    vol_ledger_recount(&l, listed, 5, T0 + 20);
    cr_expect_eq(l.allocated, 100 + 200 + 50 + 200, "%lld", (long long)l.allocated);
    cr_assert_eq(l.n_inflight, 1);
    cr_expect_str_eq(l.inflight[0].uid, "waiting");
    cr_expect(l.known);

    /* "waiting" is kept until its deadline + grace, then dropped. */
    vol_ledger_recount(&l, listed, 3, T0 + 30 + VOL_ADMIT_GRACE - 1);
    cr_expect_eq(l.allocated, 550);
    vol_ledger_recount(&l, listed, 3, T0 + 30 + VOL_ADMIT_GRACE);
    cr_expect_eq(l.allocated, 350);
    cr_expect_eq(l.n_inflight, 0);
    vol_ledger_close(&l);
    json_object_put(p);

    cr_expect(vol_resv_valid(T0, T0));
    cr_expect_not(vol_resv_valid(T0 + 1, T0));
}

Test(vol_ledger, recount_due)
{
    json_object *p = pool_json("1000", "{\"allocatedBytes\":300,\"inFlight\":["
                                       "{\"uid\":\"a\",\"bytes\":100,\"admittedUntil\":"
                                       "\"2027-01-15T08:00:30Z\"}]}");
    vol_ledger l = read_ok(p);
    const char *a_landed[] = {"a", NULL};
    /* 200 held in the cache + "a" not landed = 300: balanced. */
    cr_expect_not(vol_ledger_recount_due(&l, 200, held_none, NULL));
    /* "a" landed and the cache counts it: 300. */
    cr_expect_not(vol_ledger_recount_due(&l, 300, held_in, a_landed));
    /* Something was freed: the cache holds less. */
    cr_expect(vol_ledger_recount_due(&l, 100, held_none, NULL));
    /* allocatedBytes lowered by hand: the cache holds more. */
    cr_expect(vol_ledger_recount_due(&l, 250, held_none, NULL));

    size_t dropped = vol_ledger_forget_landed(&l, held_in, a_landed);
    cr_expect_eq(dropped, 1);
    cr_expect_eq(l.n_inflight, 0);
    cr_expect_eq(l.allocated, 300, "forgetting a landed admission frees nothing");
    vol_ledger_close(&l);
    json_object_put(p);
}

/* ---- a model check of the protocol ---------------------------------------------- */

/*
 * The API server: the pool (its status as JSON, a resourceVersion) and the
 * pool's Reservations. Replicas read the pool, maybe long before they write
 * it (PUT at the version read, refused when it moved), keep a cache of the
 * Reservations that lags, admit, create Reservations late or never (killed),
 * recount with a LIST taken some steps after t0, and see Reservations
 * deleted under them. Each replica's clock is off by up to 20 s.
 */
#define SIM_VOLUMES 12
#define SIM_REPLICAS 3
#define SIM_CAPACITY 1000

typedef struct sim_resv {
    bool exists;
    int64_t bytes, created, until;
} sim_resv;

typedef struct sim_replica {
    int64_t skew;
    /* a read of the pool, to write later */
    json_object *pool;
    long rv;
    /* a creation to do: the admission it carries */
    int create_vol;
    int64_t create_until, create_bytes;
    /* a recount in progress: t0 taken and the pool read, LIST taken or not */
    bool recounting, listed;
    int64_t rc_t0;
    json_object *rc_pool;
    long rc_rv;
    vol_listed rc_list[SIM_VOLUMES];
    size_t rc_n;
    /* the cache of Reservations: a copy that lags */
    sim_resv cache[SIM_VOLUMES];
} sim_replica;

typedef struct sim {
    unsigned seed;
    int64_t now; /* the API server's clock */
    json_object *pool;
    long rv;
    sim_resv resv[SIM_VOLUMES];
    int64_t size[SIM_VOLUMES];
    char uid[SIM_VOLUMES][8];
    sim_replica rep[SIM_REPLICAS];
    bool broken_recount; /* drop every entry not landed: must be caught */
    bool sloppy_landing; /* an admission landed by name alone: must be caught */
    long violations, writes, admitted, creations;
} sim;

static unsigned sim_rand(sim *s, unsigned n)
{
    return (unsigned)rand_r(&s->seed) % n;
}

static int64_t held_valid(const sim *s)
{
    int64_t sum = 0;
    for (int v = 0; v < SIM_VOLUMES; v++)
        if (s->resv[v].exists && vol_resv_valid(s->resv[v].created, s->resv[v].until))
            sum += s->resv[v].bytes;
    return sum;
}

static int uid_index(const sim *s, const char *uid)
{
    for (int v = 0; v < SIM_VOLUMES; v++)
        if (!strcmp(s->uid[v], uid))
            return v;
    return -1;
}

static bool cache_holds(void *ctx, const char *uid, int64_t until)
{
    sim_replica *r = ((void **)ctx)[0];
    int v = uid_index(((void **)ctx)[1], uid);
    const sim *s = ((void **)ctx)[1];
    return v >= 0 && r->cache[v].exists && (s->sloppy_landing || r->cache[v].until == until);
}

/* PUT a ledger at the version it was read at. */
static void sim_put(sim *s, long rv, vol_ledger *l)
{
    s->writes++;
    if (rv != s->rv)
        return; /* 409 Conflict */
    json_object *st = json_object_new_object();
    cr_assert_eq(vol_ledger_write(l, st), 0);
    json_object_object_add(s->pool, "status", st);
    s->rv++;
}

static void sim_read(sim *s, json_object **pool, long *rv)
{
    json_object_put(*pool);
    *pool = NULL;
    cr_assert_eq(json_object_deep_copy(s->pool, pool, NULL), 0);
    *rv = s->rv;
}

static void sim_step(sim *s)
{
    sim_replica *r = &s->rep[sim_rand(s, SIM_REPLICAS)];
    int64_t local = s->now + r->skew;
    void *ctx[2] = {r, s};
    unsigned op = sim_rand(s, 9);
    if (getenv("SIM_TRACE"))
        fprintf(stderr, "op %u\n", op);
    switch (op) {
    case 0: /* the clock moves */
        s->now += sim_rand(s, 5);
        break;
    case 1: /* read the pool now, write it some steps later */
        sim_read(s, &r->pool, &r->rv);
        break;
    case 2: { /* admit a volume that holds nothing, from the (maybe old) read */
        if (!r->pool)
            break;
        vol_ledger l;
        char *why = NULL;
        cr_assert_eq(vol_ledger_read(r->pool, &l, &why), 0);
        int v = (int)sim_rand(s, SIM_VOLUMES);
        vol_admit_result res;
        bool changed = false;
        if (!r->cache[v].exists) {
            cr_assert_eq(vol_ledger_admit(&l, s->uid[v], s->size[v], local, &res, &changed), 0);
            vol_ledger_forget_landed(&l, cache_holds, ctx);
            long before = s->rv;
            sim_put(s, r->rv, &l);
            if (s->rv != before && (res == VOL_ADMITTED || res == VOL_ADMITTED_AGAIN)) {
                const vol_admission *a = vol_ledger_find(&l, s->uid[v]);
                s->admitted++;
                r->create_vol = v;
                r->create_until = a->until;
                r->create_bytes = a->bytes;
            }
        }
        vol_ledger_close(&l);
        json_object_put(r->pool);
        r->pool = NULL;
        break;
    }
    case 3: /* create the Reservation of what was admitted (or be killed) */
        if (r->create_vol < 0)
            break;
        if (sim_rand(s, 8) == 0) { /* killed: never created */
            r->create_vol = -1;
            break;
        }
        /* A POST may be slow: while the name is taken it may still be on
         * its way, and arrive after a delete. */
        if (s->resv[r->create_vol].exists && sim_rand(s, 2))
            break;
        if (local <= r->create_until && !s->resv[r->create_vol].exists) {
            sim_resv *x = &s->resv[r->create_vol];
            *x = (sim_resv){true, r->create_bytes, s->now, r->create_until};
            s->creations++;
            /* The creator checks its 201; an invalid one is deleted (or the
             * creator dies and it stays, counting for nothing). */
            if (!vol_resv_valid(x->created, x->until) && sim_rand(s, 2))
                x->exists = false;
        }
        r->create_vol = -1;
        break;
    case 4: { /* a volume deleted: its Reservation is released, never before
               * its deadline + grace (vol_release_due) */
        sim_resv *x = &s->resv[sim_rand(s, SIM_VOLUMES)];
        for (int tries = 0; tries < 8 && !x->exists; tries++)
            x = &s->resv[sim_rand(s, SIM_VOLUMES)];
        if (vol_release_due(x->until, local))
            x->exists = false;
        break;
    }
    case 5: /* the cache catches up */
        memcpy(r->cache, s->resv, sizeof r->cache);
        break;
    case 6: /* a recount starts: t0 from the local clock, the pool read */
        r->recounting = true;
        r->listed = false;
        r->rc_t0 = local;
        sim_read(s, &r->rc_pool, &r->rc_rv);
        break;
    case 7: /* its LIST */
        if (!r->recounting || r->listed)
            break;
        r->rc_n = 0;
        for (int v = 0; v < SIM_VOLUMES; v++)
            if (s->resv[v].exists)
                r->rc_list[r->rc_n++] =
                    (vol_listed){s->uid[v], s->resv[v].bytes, s->resv[v].created, s->resv[v].until};
        r->listed = true;
        break;
    case 8: { /* its write */
        if (!r->recounting || !r->listed)
            break;
        vol_ledger l;
        char *why = NULL;
        cr_assert_eq(vol_ledger_read(r->rc_pool, &l, &why), 0);
        if (s->broken_recount)
            vol_ledger_recount(&l, r->rc_list, r->rc_n, INT64_MAX / 2);
        else
            vol_ledger_recount(&l, r->rc_list, r->rc_n, r->rc_t0);
        sim_put(s, r->rc_rv, &l);
        vol_ledger_close(&l);
        r->recounting = false;
        json_object_put(r->rc_pool);
        r->rc_pool = NULL;
        break;
    }
    }
    if (getenv("SIM_TRACE")) {
        fprintf(stderr, "now=%lld rep=%d rv=%ld held=%lld status=%s\n", (long long)s->now,
                (int)(r - s->rep), s->rv, (long long)held_valid(s),
                json_object_to_json_string(rec_obj_at(s->pool, "status")));
        for (int v = 0; v < SIM_VOLUMES; v++)
            if (s->resv[v].exists)
                fprintf(stderr, "   %s b=%lld c=%lld u=%lld%s\n", s->uid[v],
                        (long long)s->resv[v].bytes, (long long)(s->resv[v].created - T0),
                        (long long)(s->resv[v].until - T0),
                        vol_resv_valid(s->resv[v].created, s->resv[v].until) ? "" : " INVALID");
    }
    /* The proof's invariant (README.md): the ledger counts at least every
     * valid Reservation there is; and so they never exceed the capacity. */
    json_object *alloc = rec_obj_at(s->pool, "status.allocatedBytes");
    if (held_valid(s) > SIM_CAPACITY || (alloc && json_object_get_int64(alloc) < held_valid(s)))
        s->violations++;
}

static void sim_run(sim *s, unsigned seed, int steps, bool broken, bool sloppy_landing)
{
    memset(s, 0, sizeof *s);
    s->seed = seed;
    s->now = T0;
    s->broken_recount = broken;
    s->sloppy_landing = sloppy_landing;
    s->pool = pool_json("1000", "{\"allocatedBytes\":0}");
    for (int v = 0; v < SIM_VOLUMES; v++) {
        snprintf(s->uid[v], sizeof s->uid[v], "v%d", v);
        s->size[v] = 50 + sim_rand(s, 200);
    }
    for (int i = 0; i < SIM_REPLICAS; i++) {
        s->rep[i].skew = (int64_t)sim_rand(s, 41) - 20;
        s->rep[i].create_vol = -1;
    }
    for (int i = 0; i < steps; i++)
        sim_step(s);
    for (int i = 0; i < SIM_REPLICAS; i++) {
        json_object_put(s->rep[i].pool);
        json_object_put(s->rep[i].rc_pool);
    }
    json_object_put(s->pool);
}

Test(vol_ledger, protocol_never_overcommits)
{
    long admitted = 0, creations = 0, writes = 0;
    unsigned from = getenv("SIM_SEED") ? (unsigned)atoi(getenv("SIM_SEED")) : 1;
    for (unsigned seed = from; seed <= 1000; seed++) {
        sim s;
        sim_run(&s, seed, 600, false, false);
        cr_assert_eq(s.violations, 0,
                     "seed %u: the valid Reservations exceeded the capacity or the ledger", seed);
        admitted += s.admitted;
        creations += s.creations;
        writes += s.writes;
    }
    /* The runs did the work they check: many admissions became Reservations. */
    cr_expect_gt(creations, 3000, "only %ld creations (%ld admissions, %ld writes)", creations,
                 admitted, writes);
}

Test(vol_ledger, protocol_check_catches_a_broken_recount)
{
    long caught = 0;
    for (unsigned seed = 1; seed <= 100; seed++) {
        sim s;
        sim_run(&s, seed, 600, true, false);
        caught += s.violations > 0;
    }
    cr_expect_gt(caught, 0, "dropping admissions before their deadline went unnoticed");
}

Test(vol_ledger, release_waits_for_the_deadline)
{
    /* Rule 4 of README.md, played out: two replicas hold one admission of u;
     * one creates X0, a recount lists it and drops the admission; if X0 were
     * released now, the recount after that frees its bytes, w takes them,
     * and the slower replica's POST of the same admission makes X again,
     * valid and counted nowhere. */
    json_object *p = pool_json("100", "{\"allocatedBytes\":0}");
    vol_ledger l = read_ok(p);
    vol_admit_result r;
    cr_assert_eq(vol_ledger_admit(&l, "u", 60, T0, &r, NULL), 0);
    cr_assert_eq(r, VOL_ADMITTED);
    int64_t until = vol_ledger_find(&l, "u")->until;
    vol_listed x0 = {"u", 60, T0 + 1, until};
    vol_ledger_recount(&l, &x0, 1, T0 + 2);
    cr_expect_eq(l.n_inflight, 0, "the admission landed");
    cr_expect_eq(l.allocated, 60);

    cr_expect_not(vol_release_due(until, T0 + 3), "released while the admission could be reused");
    vol_ledger_recount(&l, NULL, 0, T0 + 4); /* what an early release leads to */
    cr_assert_eq(vol_ledger_admit(&l, "w", 100, T0 + 5, &r, NULL), 0);
    cr_expect_eq(r, VOL_ADMITTED);
    vol_listed x = {"u", 60, T0 + 10, until}; /* the slow replica's POST */
    cr_expect(vol_resv_valid(x.created, x.until), "and X would count: 160 bytes held of 100");

    /* Released when due, the same POST comes after the deadline: not valid. */
    int64_t due = until + VOL_ADMIT_GRACE + 1;
    cr_expect(vol_release_due(until, due));
    cr_expect_not(vol_resv_valid(due, until));
    vol_ledger_close(&l);
    json_object_put(p);
}

Test(vol_ledger, protocol_check_catches_landing_by_name)
{
    /* A cache still showing the last Reservation of a volume's name, made
     * from an older admission, taken for the new admission's. */
    long caught = 0;
    for (unsigned seed = 1; seed <= 200; seed++) {
        sim s;
        sim_run(&s, seed, 600, false, true);
        caught += s.violations > 0;
    }
    cr_expect_gt(caught, 0, "an admission landed by name alone went unnoticed");
}
