/*
 * bo - exponential backoff with jitter (see backoff.h).
 *
 * State is the un-jittered delay the next call returns (next_base) and the
 * time of the previous call. The reset rule is evaluated lazily in bo_next:
 * there is no timer, "healthy for reset_after" simply means "no failure was
 * reported for that long". Randomness comes from a private splitmix64
 * generator so tests can fix the seed and results never depend on rand()'s
 * global state.
 */
#include "backoff.h"

#include <stdint.h>
#include <time.h>

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *state)
{
    return (double)(splitmix64(state) >> 11) * 0x1.0p-53;
}

void bo_init(bo *b, const bo_opts *opts)
{
    bo_opts o = {0};
    if (opts != NULL)
        o = *opts;
    b->initial = o.initial > 0 ? o.initial : 0.8;
    b->max = o.max > 0 ? o.max : 30.0;
    b->factor = o.factor > 0 ? o.factor : 2.0;
    b->jitter = o.jitter == 0 ? 1.0 : (o.jitter < 0 ? 0.0 : o.jitter);
    b->reset_after = o.reset_after == 0 ? 120.0 : o.reset_after;
    b->clock = o.clock;
    b->rng = o.seed;
    if (b->rng == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        b->rng =
            ((uint64_t)ts.tv_sec * 1000000007ULL) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)b;
    }
    bo_reset(b);
}

void bo_reset(bo *b)
{
    b->next_base = b->initial < b->max ? b->initial : b->max;
    b->failed = false;
    b->last_failure = 0;
}

double bo_next(bo *b)
{
    double now = pv_clock_now(&b->clock);
    if (b->failed && b->reset_after >= 0 && now - b->last_failure > b->reset_after)
        bo_reset(b);
    b->failed = true;
    b->last_failure = now;

    double d = b->next_base;
    double next = d * b->factor;
    b->next_base = next > b->max ? b->max : next;
    if (b->jitter > 0)
        d += uniform01(&b->rng) * b->jitter * d;
    return d;
}
