/*
 * pv_clock - monotonic time, deadlines and sleeps for every layer.
 *
 * Time is a double of seconds on CLOCK_MONOTONIC (arbitrary origin, never
 * jumps with the wall clock), so durations computed from it are safe for
 * timeouts, backoff and pacing. Modules that decide from elapsed time read it
 * through a pv_clock so that tests can drive a fake clock instead of
 * sleeping; a NULL clock, or one whose `now` is NULL, is the real one.
 *
 * Condition variables that wait with a deadline from here must be set to
 * CLOCK_MONOTONIC (pthread_condattr_setclock).
 *
 * Threading: every function may be called from any thread; a custom `now`
 * must itself be safe for the threads that use the clock.
 */
#ifndef PROVISIO_PV_CLOCK_H
#define PROVISIO_PV_CLOCK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

typedef struct pv_clock {
    double (*now)(void *user); /* seconds on a monotonic scale; NULL = real clock */
    void *user;                /* borrowed; passed to now */
} pv_clock;

/* Seconds of CLOCK_MONOTONIC (arbitrary origin). */
double pv_clock_monotonic(void);

/* The time of clock c; c may be NULL (real clock). */
double pv_clock_now(const pv_clock *c);

/*
 * The absolute monotonic time `at` (seconds, pv_clock_monotonic's scale) as
 * a timespec for pthread_cond_timedwait, pthread_mutex_clocklock or
 * clock_nanosleep(TIMER_ABSTIME) on CLOCK_MONOTONIC. A negative `at` is 0;
 * tv_nsec is always within [0, 1e9).
 */
struct timespec pv_clock_timespec(double at);

/*
 * The deadline `seconds` from now, as pv_clock_timespec gives it. seconds is
 * clamped to [0, PV_CLOCK_MAX_WAIT_S], so no caller can overflow time_t.
 */
#define PV_CLOCK_MAX_WAIT_S 1e8
struct timespec pv_clock_timespec_in(double seconds);

/*
 * Sleep `seconds` of monotonic time (nothing when <= 0); signals do not cut
 * it short. With cancel non-NULL the sleep also ends within
 * PV_CLOCK_CANCEL_POLL_S of *cancel turning true (and at once when it is
 * true already). Returns true when it ended because of cancel.
 */
#define PV_CLOCK_CANCEL_POLL_S 0.02
bool pv_clock_sleep(double seconds, const atomic_bool *cancel);

#endif
