/* Unit tests of pv_clock: monotonic time, deadlines as timespecs, sleeps. */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "pv_clock.h"

static double fake_now(void *user)
{
    return *(double *)user;
}

Test(clock, monotonic_never_goes_back_and_a_fake_clock_is_read)
{
    double a = pv_clock_monotonic();
    double b = pv_clock_monotonic();
    cr_assert_geq(b, a);
    cr_assert_geq(pv_clock_now(NULL), b, "NULL is the real clock");
    pv_clock none = {0};
    cr_assert_geq(pv_clock_now(&none), b, "a clock without now is the real clock");
    double t = 42.5;
    pv_clock fake = {fake_now, &t};
    cr_assert_eq(pv_clock_now(&fake), 42.5);
}

Test(clock, timespec_splits_seconds_and_clamps)
{
    struct timespec ts = pv_clock_timespec(12.25);
    cr_assert_eq(ts.tv_sec, 12);
    cr_assert_eq(ts.tv_nsec, 250000000L);
    ts = pv_clock_timespec(-3);
    cr_assert(ts.tv_sec == 0 && ts.tv_nsec == 0, "a past deadline is 0");
    /* The largest double below 8 rounds to 1e9 ns: it must carry, not overflow. */
    ts = pv_clock_timespec(7.9999999999999991);
    cr_assert(ts.tv_nsec >= 0 && ts.tv_nsec < 1000000000L, "tv_nsec %ld", ts.tv_nsec);
    cr_assert(ts.tv_sec == 7 || ts.tv_sec == 8);
}

Test(clock, timespec_in_is_now_plus_the_clamped_wait)
{
    struct timespec before;
    clock_gettime(CLOCK_MONOTONIC, &before);
    struct timespec ts = pv_clock_timespec_in(1.75);
    double got = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    double base = (double)before.tv_sec + (double)before.tv_nsec / 1e9;
    cr_assert(got >= base + 1.75 && got < base + 1.75 + 1.0, "%f vs %f", got, base);
    cr_assert(ts.tv_nsec >= 0 && ts.tv_nsec < 1000000000L);
    ts = pv_clock_timespec_in(-5);
    got = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    cr_assert(got >= base && got < base + 1.0, "a negative wait is no wait");
    ts = pv_clock_timespec_in(1e300);
    got = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    cr_assert(got >= base + PV_CLOCK_MAX_WAIT_S && got < base + PV_CLOCK_MAX_WAIT_S + 10,
              "a huge wait is clamped, not overflowed");
}

Test(clock, sleep_waits_at_least_the_time)
{
    double t0 = pv_clock_monotonic();
    cr_assert_not(pv_clock_sleep(0.05, NULL));
    cr_assert_geq(pv_clock_monotonic() - t0, 0.05);
    t0 = pv_clock_monotonic();
    pv_clock_sleep(-1, NULL);
    cr_assert_lt(pv_clock_monotonic() - t0, 0.05, "a negative sleep returns at once");
}

static void *cancel_later(void *arg)
{
    pv_clock_sleep(0.1, NULL);
    atomic_store((atomic_bool *)arg, true);
    return NULL;
}

Test(clock, cancellable_sleep_ends_soon_after_cancel)
{
    atomic_bool cancel = false;
    double t0 = pv_clock_monotonic();
    cr_assert_not(pv_clock_sleep(0.05, &cancel), "not cancelled: sleeps it out");
    cr_assert_geq(pv_clock_monotonic() - t0, 0.05);

    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, cancel_later, &cancel), 0);
    t0 = pv_clock_monotonic();
    cr_assert(pv_clock_sleep(30, &cancel), "cancelled");
    double took = pv_clock_monotonic() - t0;
    pthread_join(th, NULL);
    cr_assert(took >= 0.09 && took < 5, "woke %f s after the start, cancel came at 0.1 s", took);

    t0 = pv_clock_monotonic();
    cr_assert(pv_clock_sleep(30, &cancel), "already cancelled");
    cr_assert_lt(pv_clock_monotonic() - t0, 0.05);
}
