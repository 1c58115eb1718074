/*
 * bo - exponential backoff with jitter and a reset after a healthy period,
 * with client-go's reflector semantics (wait.NewExponentialBackoffManager(
 * 800ms, 30s, 2min, 2.0, 1.0)):
 *
 *   - the un-jittered delay starts at `initial` and is multiplied by `factor`
 *     after every bo_next, up to `max`;
 *   - the delay returned is jittered upwards: d + U[0,1) * jitter * d, so with
 *     the default jitter 1.0 a delay lies in [d, 2d) -- at the cap, [30 s, 60 s),
 *     exactly as client-go's wait.Jitter does;
 *   - if the previous bo_next was more than `reset_after` seconds ago (the
 *     watch ran healthy that long), the sequence starts over from `initial`.
 *
 * A bo is a caller-owned struct (bo_init; no free needed). It is not
 * thread-safe: one owner thread (the reflector's) calls it.
 */
#ifndef PROVISIO_BO_H
#define PROVISIO_BO_H

#include <stdbool.h>
#include <stdint.h>

#include "pv_clock.h"

typedef struct bo_opts {
    double initial;     /* seconds; 0 = 0.8 */
    double max;         /* cap of the un-jittered delay; 0 = 30 */
    double factor;      /* 0 = 2.0 */
    double jitter;      /* 0 = 1.0; < 0 = no jitter */
    double reset_after; /* seconds of quiet that reset the sequence; 0 = 120; < 0 = never */
    uint64_t seed;      /* RNG seed; 0 = seeded from the clock and address */
    pv_clock clock;     /* zeroed = real monotonic clock */
} bo_opts;

typedef struct bo {
    double initial, max, factor, jitter, reset_after;
    pv_clock clock;
    double next_base;    /* un-jittered delay the next bo_next starts from */
    double last_failure; /* time of the last bo_next */
    bool failed;         /* bo_next called since init/reset */
    uint64_t rng;
} bo;

/* Initialise b from opts (NULL = the reflector defaults above). */
void bo_init(bo *b, const bo_opts *opts);

/*
 * The delay to wait before the next attempt, in seconds, and advance the
 * sequence. Applies the healthy-period reset first.
 */
double bo_next(bo *b);

/* Start the sequence over (a success the caller wants to count at once). */
void bo_reset(bo *b);

#endif
