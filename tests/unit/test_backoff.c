/*
 * Unit tests of bo (src/informer/backoff.c): the reflector's backoff, driven
 * by a fake clock and a fixed seed so nothing depends on real time.
 */
#include <criterion/criterion.h>

#include <math.h>

#include "backoff.h"

typedef struct fake_clock {
    double t;
} fake_clock;

static double fake_now(void *user)
{
    return ((fake_clock *)user)->t;
}

/* bo_next once, then compare (criterion's float macros evaluate twice). */
#define assert_next(b, want)                                                                       \
    do {                                                                                           \
        double got_ = bo_next(b);                                                                  \
        cr_assert(fabs(got_ - (want)) < 1e-9, "got %f want %f", got_, (double)(want));             \
    } while (0)

static bo_opts opts_with(fake_clock *fc, uint64_t seed)
{
    bo_opts o = {0};
    o.seed = seed;
    o.clock.now = fake_now;
    o.clock.user = fc;
    return o;
}

Test(backoff, defaults_double_from_800ms_with_jitter_inside_client_go_bounds)
{
    fake_clock fc = {1000};
    bo_opts o = opts_with(&fc, 42);
    bo b;
    bo_init(&b, &o);
    double base = 0.8;
    for (int i = 0; i < 12; i++) {
        double d = bo_next(&b);
        /* wait.Jitter(d, 1.0) lies in [d, 2d). */
        cr_assert(d >= base && d < 2 * base, "step %d: %f not in [%f, %f)", i, d, base, 2 * base);
        base = fmin(base * 2, 30.0);
        fc.t += 1; /* failures close together: no reset */
    }
}

Test(backoff, without_jitter_doubles_exactly_and_caps_at_30s)
{
    fake_clock fc = {0};
    bo_opts o = opts_with(&fc, 7);
    o.jitter = -1;
    bo b;
    bo_init(&b, &o);
    const double want[] = {0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30, 30, 30};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        double d = bo_next(&b);
        cr_assert(fabs(d - want[i]) < 1e-9, "step %zu: got %f want %f", i, d, want[i]);
    }
}

Test(backoff, starts_over_after_healthy_period_of_two_minutes)
{
    fake_clock fc = {0};
    bo_opts o = opts_with(&fc, 1);
    o.jitter = -1;
    bo b;
    bo_init(&b, &o);
    for (int i = 0; i < 6; i++)
        bo_next(&b);
    fc.t += 121; /* the watch ran healthy for more than reset_after */
    assert_next(&b, 0.8);
    assert_next(&b, 1.6);
}

Test(backoff, failures_closer_than_reset_period_keep_growing)
{
    fake_clock fc = {0};
    bo_opts o = opts_with(&fc, 1);
    o.jitter = -1;
    bo b;
    bo_init(&b, &o);
    double last = 0;
    for (int i = 0; i < 5; i++) {
        last = bo_next(&b);
        fc.t += 119; /* each gap is under 2 minutes, the total is far above */
    }
    cr_assert_float_eq(last, 12.8, 1e-9);
    assert_next(&b, 25.6);
}

Test(backoff, reset_starts_the_sequence_over)
{
    fake_clock fc = {0};
    bo_opts o = opts_with(&fc, 3);
    o.jitter = -1;
    bo b;
    bo_init(&b, &o);
    bo_next(&b);
    bo_next(&b);
    bo_next(&b);
    bo_reset(&b);
    assert_next(&b, 0.8);
}

Test(backoff, same_seed_gives_same_sequence_and_other_seeds_differ)
{
    fake_clock fc = {0};
    bo_opts o1 = opts_with(&fc, 99), o2 = opts_with(&fc, 99), o3 = opts_with(&fc, 100);
    bo a, b, c;
    bo_init(&a, &o1);
    bo_init(&b, &o2);
    bo_init(&c, &o3);
    int differ = 0;
    for (int i = 0; i < 8; i++) {
        double x = bo_next(&a), y = bo_next(&b), z = bo_next(&c);
        cr_assert_eq(x, y);
        differ += x != z;
    }
    cr_assert_gt(differ, 0);
}

Test(backoff, jitter_spreads_over_the_whole_range)
{
    fake_clock fc = {0};
    bo_opts o = opts_with(&fc, 12345);
    bo b;
    bo_init(&b, &o);
    double lo = 1e9, hi = 0, sum = 0;
    const int n = 20000;
    for (int i = 0; i < n; i++) {
        double d = bo_next(&b);
        bo_reset(&b);
        lo = fmin(lo, d);
        hi = fmax(hi, d);
        sum += d;
    }
    /* Uniform on [0.8, 1.6): mean 1.2; with a fixed seed this is exact, the
     * bounds only guard against a biased or constant jitter. */
    cr_assert(lo >= 0.8 && lo < 0.82, "min %f", lo);
    cr_assert(hi < 1.6 && hi > 1.58, "max %f", hi);
    cr_assert(fabs(sum / n - 1.2) < 0.01, "mean %f", sum / n);
}

Test(backoff, custom_parameters_are_honoured)
{
    fake_clock fc = {0};
    bo_opts o = opts_with(&fc, 5);
    o.initial = 1;
    o.factor = 3;
    o.max = 20;
    o.jitter = 0.5;
    o.reset_after = 10;
    bo b;
    bo_init(&b, &o);
    const double base[] = {1, 3, 9, 20, 20};
    for (size_t i = 0; i < 5; i++) {
        double d = bo_next(&b);
        cr_assert(d >= base[i] && d < base[i] * 1.5, "step %zu: %f", i, d);
        fc.t += 5;
    }
    fc.t += 11;
    double d = bo_next(&b);
    cr_assert(d >= 1 && d < 1.5, "after reset: %f", d);
}

Test(backoff, negative_reset_after_never_resets)
{
    fake_clock fc = {0};
    bo_opts o = opts_with(&fc, 5);
    o.jitter = -1;
    o.reset_after = -1;
    bo b;
    bo_init(&b, &o);
    bo_next(&b);
    fc.t += 1e6;
    assert_next(&b, 1.6);
}
