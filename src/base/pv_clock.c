/*
 * pv_clock - see pv_clock.h. Sleeps are absolute (TIMER_ABSTIME) so that a
 * signal that interrupts one restarts it without drifting; a cancellable
 * sleep is a chain of short ones that look at the flag in between.
 */
#include "pv_clock.h"

#include <errno.h>

#define NS_PER_S 1000000000L

double pv_clock_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double pv_clock_now(const pv_clock *c)
{
    if (c == NULL || c->now == NULL)
        return pv_clock_monotonic();
    return c->now(c->user);
}

struct timespec pv_clock_timespec(double at)
{
    struct timespec ts;
    if (!(at > 0)) /* NaN too */
        at = 0;
    ts.tv_sec = (time_t)at;
    ts.tv_nsec = (long)((at - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= NS_PER_S) {
        ts.tv_sec++;
        ts.tv_nsec -= NS_PER_S;
    }
    if (ts.tv_nsec < 0)
        ts.tv_nsec = 0;
    return ts;
}

struct timespec pv_clock_timespec_in(double seconds)
{
    if (!(seconds > 0))
        seconds = 0;
    if (seconds > PV_CLOCK_MAX_WAIT_S)
        seconds = PV_CLOCK_MAX_WAIT_S;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double whole = (double)(long)seconds;
    ts.tv_sec += (time_t)whole;
    ts.tv_nsec += (long)((seconds - whole) * 1e9);
    if (ts.tv_nsec >= NS_PER_S) {
        ts.tv_sec++;
        ts.tv_nsec -= NS_PER_S;
    }
    return ts;
}

static void sleep_until(const struct timespec *until)
{
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, until, NULL) == EINTR)
        ;
}

bool pv_clock_sleep(double seconds, const atomic_bool *cancel)
{
    if (cancel == NULL) {
        if (seconds > 0) {
            struct timespec until = pv_clock_timespec_in(seconds);
            sleep_until(&until);
        }
        return false;
    }
    double end = pv_clock_monotonic() + seconds;
    for (double left = seconds; left > 0 && !atomic_load(cancel);
         left = end - pv_clock_monotonic()) {
        struct timespec until =
            pv_clock_timespec_in(left < PV_CLOCK_CANCEL_POLL_S ? left : PV_CLOCK_CANCEL_POLL_S);
        sleep_until(&until);
    }
    return atomic_load(cancel);
}
