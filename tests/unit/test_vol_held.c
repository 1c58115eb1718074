/*
 * Unit tests of the per-pool sums of cached Reservations
 * (src/reconcilers/volume/vol_held.h): adds, updates and deletes; which
 * Reservations count, and how; lookups by (slot, admittedUntil); and a
 * random model check: thousands of adds, updates and deletes of
 * Reservations over a few pools (valid, invalid, incomplete, copies of one
 * slot), after each of which every pool's sums and landed answers must equal
 * what a fresh reading of the whole set gives (what the store reading did
 * before the sums existed).
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "kc_error.h"
#include "rec_util.h"
#include "vol_held.h"

#define T0 1800000000LL

/* A Reservation: bytes < 0 leaves spec.bytes out; created > until makes it
 * invalid (vol_resv_valid). */
static json_object *resv(const char *pool, const char *slot, long long bytes, long long created,
                         long long until)
{
    char c[REC_TIME_STRLEN], u[REC_TIME_STRLEN];
    cr_assert(rec_format_time((time_t)created, c));
    cr_assert(rec_format_time((time_t)until, u));
    json_object *o = json_object_new_object();
    json_object *md = json_object_new_object();
    json_object_object_add(md, "creationTimestamp", json_object_new_string(c));
    json_object_object_add(o, "metadata", md);
    json_object *spec = json_object_new_object();
    if (pool) {
        json_object *p = json_object_new_object();
        json_object_object_add(p, "name", json_object_new_string(pool));
        json_object_object_add(spec, "pool", p);
    }
    if (slot)
        json_object_object_add(spec, "slot", json_object_new_string(slot));
    if (bytes >= 0)
        json_object_object_add(spec, "bytes", json_object_new_int64(bytes));
    json_object_object_add(spec, "admittedUntil", json_object_new_string(u));
    json_object_object_add(o, "spec", spec);
    return o;
}

static vol_held *held_new(void)
{
    vol_held *h = NULL;
    cr_assert_eq(vol_held_new(&h), KC_OK);
    return h;
}

static void expect_sum(vol_held *h, const char *pool, size_t n, int64_t bytes, int64_t count)
{
    vol_held_sum s;
    cr_assert(vol_held_snapshot(h, pool, NULL, 0, &s, NULL));
    cr_expect_eq(s.n, n, "%s: n %zu, want %zu", pool, s.n, n);
    cr_expect_eq(s.valid_bytes, bytes, "%s: bytes %lld, want %lld", pool, (long long)s.valid_bytes,
                 (long long)bytes);
    cr_expect_eq(s.valid_count, count, "%s: count %lld, want %lld", pool, (long long)s.valid_count,
                 (long long)count);
}

/* One admission asked of a snapshot: landed? */
static bool landed(vol_held *h, const char *pool, const char *uid, int64_t until)
{
    vol_admission asked = {.uid = (char *)uid, .bytes = 1, .until = until};
    vol_held_sum s;
    bool got = false;
    cr_assert(vol_held_snapshot(h, pool, &asked, 1, &s, &got));
    return got;
}

Test(vol_held, add_update_delete)
{
    vol_held *h = held_new();
    expect_sum(h, "p", 0, 0, 0);
    json_object *a = resv("p", "u1", 100, T0, T0 + 15);
    json_object *b = resv("p", "u2", 50, T0, T0 + 15);
    json_object *c = resv("q", "u3", 7, T0, T0 + 15);
    vol_held_add(h, a);
    vol_held_add(h, b);
    vol_held_add(h, c);
    expect_sum(h, "p", 2, 150, 2);
    expect_sum(h, "q", 1, 7, 1);
    cr_expect(landed(h, "p", "u1", T0 + 15));
    cr_expect_not(landed(h, "p", "u1", T0 + 16), "another admission of the same slot");
    cr_expect_not(landed(h, "q", "u1", T0 + 15), "another pool's");
    /* b grows: the old state goes, the new one comes. */
    json_object *b2 = resv("p", "u2", 80, T0, T0 + 15);
    vol_held_update(h, b, b2);
    expect_sum(h, "p", 2, 180, 2);
    vol_held_remove(h, a);
    expect_sum(h, "p", 1, 80, 1);
    cr_expect_not(landed(h, "p", "u1", T0 + 15));
    vol_held_remove(h, b2);
    vol_held_remove(h, c);
    expect_sum(h, "p", 0, 0, 0);
    expect_sum(h, "q", 0, 0, 0);
    json_object_put(a);
    json_object_put(b);
    json_object_put(b2);
    json_object_put(c);
    vol_held_free(h);
}

Test(vol_held, what_counts)
{
    vol_held *h = held_new();
    json_object *v[] = {
        resv("p", "ok", 10, T0, T0 + 15),        /* valid */
        resv("p", "late", 10, T0 + 20, T0 + 15), /* created after its deadline: not valid */
        resv("p", "zero", 0, T0, T0 + 15),       /* no bytes: not valid */
        resv("p", NULL, 10, T0, T0 + 15),        /* no slot: counted in n only */
        resv("p", "nobytes", -1, T0, T0 + 15),   /* no spec.bytes: n only */
        resv(NULL, "nopool", 10, T0, T0 + 15),   /* no pool: nobody's */
    };
    size_t nv = sizeof v / sizeof v[0];
    for (size_t i = 0; i < nv; i++)
        vol_held_add(h, v[i]);
    expect_sum(h, "p", 5, 10, 1);
    cr_expect(landed(h, "p", "ok", T0 + 15));
    cr_expect(landed(h, "p", "late", T0 + 15), "an invalid one has still landed");
    cr_expect(landed(h, "p", "zero", T0 + 15));
    cr_expect_not(landed(h, "p", "nobytes", T0 + 15));
    for (size_t i = 0; i < nv; i++)
        vol_held_remove(h, v[i]);
    expect_sum(h, "p", 0, 0, 0);
    for (size_t i = 0; i < nv; i++)
        json_object_put(v[i]);
    vol_held_free(h);
}

Test(vol_held, copies_of_one_slot)
{
    vol_held *h = held_new();
    json_object *a = resv("p", "u", 10, T0, T0 + 15);
    json_object *b = resv("p", "u", 10, T0, T0 + 15);
    vol_held_add(h, a);
    vol_held_add(h, b);
    vol_held_remove(h, a);
    cr_expect(landed(h, "p", "u", T0 + 15), "one copy is still there");
    expect_sum(h, "p", 1, 10, 1);
    vol_held_remove(h, b);
    cr_expect_not(landed(h, "p", "u", T0 + 15));
    json_object_put(a);
    json_object_put(b);
    vol_held_free(h);
}

/* ---- the model check ----------------------------------------------------------------------- */

#define M_POOLS 3
#define M_SLOTS 12
#define M_STEPS 20000

static const char *pools[M_POOLS] = {"p0", "p1", "p2"};
static const char *slots[M_SLOTS] = {"s0", "s1", "s2", "s3", "s4",  "s5",
                                     "s6", "s7", "s8", "s9", "s10", "s11"};

static json_object *random_resv(unsigned *seed)
{
    int kind = rand_r(seed) % 10;
    const char *pool = kind == 0 ? NULL : pools[rand_r(seed) % M_POOLS];
    const char *slot = kind == 1 ? NULL : slots[rand_r(seed) % M_SLOTS];
    long long bytes = kind == 2 ? -1 : kind == 3 ? 0 : 1 + rand_r(seed) % 1000;
    long long until = T0 + rand_r(seed) % 3;
    long long created = kind == 4 ? until + 1 : until - 15;
    return resv(pool, slot, bytes, created, until);
}

/* What a reading of every live Reservation gives for pool. */
static void recompute(json_object **live, size_t n, const char *pool, vol_held_sum *out)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < n; i++) {
        const char *p = rec_obj_str(live[i], "spec.pool.name");
        if (!p || strcmp(p, pool))
            continue;
        out->n++;
        const char *uid;
        int64_t bytes, until;
        bool valid;
        if (vol_held_read(live[i], &uid, &bytes, &until, &valid) && valid) {
            out->valid_bytes += bytes;
            out->valid_count++;
        }
    }
}

static bool landed_in(json_object **live, size_t n, const char *pool, const char *slot,
                      int64_t until)
{
    for (size_t i = 0; i < n; i++) {
        const char *p = rec_obj_str(live[i], "spec.pool.name");
        const char *uid;
        int64_t bytes, u;
        bool valid;
        if (p && !strcmp(p, pool) && vol_held_read(live[i], &uid, &bytes, &u, &valid) &&
            u == until && !strcmp(uid, slot))
            return true;
    }
    return false;
}

Test(vol_held, model_check)
{
    unsigned seed = 20261207;
    vol_held *h = held_new();
    json_object *live[64];
    size_t n = 0;
    vol_admission asked[M_SLOTS * 3];
    for (size_t s = 0; s < M_SLOTS; s++)
        for (int64_t u = 0; u < 3; u++)
            asked[s * 3 + u] =
                (vol_admission){.uid = (char *)slots[s], .bytes = 1, .until = T0 + u};
    for (int step = 0; step < M_STEPS; step++) {
        int op = rand_r(&seed) % 3;
        if (op == 0 || n == 0) { /* a Reservation comes */
            if (n == sizeof live / sizeof live[0])
                continue;
            live[n] = random_resv(&seed);
            vol_held_add(h, live[n]);
            n++;
        } else if (op == 1) { /* one changes */
            size_t i = (size_t)rand_r(&seed) % n;
            json_object *next = random_resv(&seed);
            vol_held_update(h, live[i], next);
            json_object_put(live[i]);
            live[i] = next;
        } else { /* one goes */
            size_t i = (size_t)rand_r(&seed) % n;
            vol_held_remove(h, live[i]);
            json_object_put(live[i]);
            live[i] = live[--n];
        }
        for (size_t p = 0; p < M_POOLS; p++) {
            vol_held_sum want, got;
            recompute(live, n, pools[p], &want);
            bool flags[M_SLOTS * 3];
            cr_assert(vol_held_snapshot(h, pools[p], asked, M_SLOTS * 3, &got, flags));
            cr_assert(want.n == got.n && want.valid_bytes == got.valid_bytes &&
                          want.valid_count == got.valid_count,
                      "step %d, pool %s: n %zu/%zu bytes %lld/%lld count %lld/%lld", step, pools[p],
                      got.n, want.n, (long long)got.valid_bytes, (long long)want.valid_bytes,
                      (long long)got.valid_count, (long long)want.valid_count);
            for (size_t i = 0; i < M_SLOTS * 3; i++)
                cr_assert_eq(flags[i], landed_in(live, n, pools[p], asked[i].uid, asked[i].until),
                             "step %d: landed %s %s %lld", step, pools[p], asked[i].uid,
                             (long long)asked[i].until);
        }
    }
    for (size_t i = 0; i < n; i++) {
        vol_held_remove(h, live[i]);
        json_object_put(live[i]);
    }
    for (size_t p = 0; p < M_POOLS; p++)
        expect_sum(h, pools[p], 0, 0, 0);
    vol_held_free(h);
}

/* ---- one moment ---------------------------------------------------------------------------- */

typedef struct churn {
    vol_held *h;
    json_object *r[M_SLOTS];
    volatile int stop;
} churn;

static void *churn_main(void *arg)
{
    churn *c = arg;
    unsigned seed = 7;
    bool in[M_SLOTS] = {0};
    while (!c->stop) {
        size_t i = (size_t)rand_r(&seed) % M_SLOTS;
        if (in[i])
            vol_held_remove(c->h, c->r[i]);
        else
            vol_held_add(c->h, c->r[i]);
        in[i] = !in[i];
    }
    for (size_t i = 0; i < M_SLOTS; i++)
        if (in[i])
            vol_held_remove(c->h, c->r[i]);
    return NULL;
}

/* While another thread adds and removes Reservations, every snapshot's sums
 * agree with its landed answers (each Reservation is valid, 1 byte, its own
 * slot): the two come from one moment. */
Test(vol_held, snapshot_is_one_moment)
{
    churn c = {.h = held_new()};
    vol_admission asked[M_SLOTS];
    for (size_t i = 0; i < M_SLOTS; i++) {
        c.r[i] = resv("p", slots[i], 1, T0, T0 + 15);
        asked[i] = (vol_admission){.uid = (char *)slots[i], .bytes = 1, .until = T0 + 15};
    }
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, churn_main, &c), 0);
    for (int k = 0; k < 20000; k++) {
        vol_held_sum s;
        bool flags[M_SLOTS];
        cr_assert(vol_held_snapshot(c.h, "p", asked, M_SLOTS, &s, flags));
        int64_t n = 0;
        for (size_t i = 0; i < M_SLOTS; i++)
            n += flags[i];
        if (n != s.valid_count || (int64_t)s.n != n || s.valid_bytes != n) {
            c.stop = 1;
            pthread_join(t, NULL);
            cr_assert_fail("snapshot %d: %lld landed, sums n %zu bytes %lld count %lld", k,
                           (long long)n, s.n, (long long)s.valid_bytes, (long long)s.valid_count);
        }
    }
    c.stop = 1;
    pthread_join(t, NULL);
    expect_sum(c.h, "p", 0, 0, 0);
    for (size_t i = 0; i < M_SLOTS; i++)
        json_object_put(c.r[i]);
    vol_held_free(c.h);
}
