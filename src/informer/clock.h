/*
 * inf_clock - monotonic time in seconds, injectable for tests.
 *
 * Modules that make decisions from elapsed time (backoff reset after a healthy
 * period, rate limiting) read the time through an inf_clock so that tests can
 * drive a fake clock instead of sleeping. A NULL clock, or one whose `now` is
 * NULL, means the real CLOCK_MONOTONIC.
 *
 * Threading: inf_clock_now may be called from any thread; a custom `now` must
 * itself be safe for the threads that use the clock.
 */
#ifndef PROVISIO_INF_CLOCK_H
#define PROVISIO_INF_CLOCK_H

typedef struct inf_clock {
    double (*now)(void *user); /* seconds on a monotonic scale; NULL = real clock */
    void *user;                /* borrowed; passed to now */
} inf_clock;

/* Seconds of CLOCK_MONOTONIC (arbitrary origin). */
double inf_clock_monotonic(void);

/* The time of clock c; c may be NULL (real clock). */
double inf_clock_now(const inf_clock *c);

#endif
