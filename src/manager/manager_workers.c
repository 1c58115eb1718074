/*
 * manager_workers - starting and stopping the controllers' workers, the
 * elector's thread and its callbacks, and the shutdown watchdog (part of
 * manager; see manager.c for the threads and the teardown order).
 *
 * Workers. `leading` (true at once without leader election) says whether
 * this replica may reconcile; `workers_running` whether the controllers'
 * workers run. Both change only under wk_mu, and starting or stopping all
 * controllers happens under it too, so the elector's stop (which must have
 * stopped every worker when it returns) and the main loop's start can never
 * interleave. Workers start once the replica leads and every controller's
 * caches synced (ctl_wait_for_sync with no wait, checked by the main loop
 * every 100 ms until then, and at once by on_started_leading).
 */
#include "manager_internal.h"

#include "controller.h"
#include "leader.h"
#include "log.h"
#include "pv_clock.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/signalfd.h>
#include <unistd.h>

/* ---- workers -------------------------------------------------------------------- */

bool mgr_all_informers_synced(mgr *m)
{
    return mgr_check_informers(m, NULL) == 0;
}

static bool mgr_ctls_synced(mgr *m)
{
    for (size_t i = 0; i < m->nctls; i++)
        if (!ctl_wait_for_sync(m->ctls[i].c, 0))
            return false;
    return true;
}

void mgr_stop_workers_locked(mgr *m)
{
    if (!m->workers_running)
        return;
    for (size_t i = 0; i < m->nctls; i++)
        ctl_stop(m->ctls[i].c);
    m->workers_running = false;
    MGR_INFO("All workers finished", NULL);
}

/* Start every controller's workers if this replica leads and caches synced. */
void mgr_try_start_workers_locked(mgr *m)
{
    if (!m->leading || m->workers_running || m->shutting_down || !mgr_ctls_synced(m))
        return;
    for (size_t i = 0; i < m->nctls; i++) {
        int rc = ctl_start(m->ctls[i].c);
        if (rc != 0) {
            MGR_ERROR("could not start workers; retrying", "controller", m->ctls[i].name, "error",
                      kc_strerror(rc), NULL);
            for (size_t j = 0; j < i; j++)
                ctl_stop(m->ctls[j].c);
            return;
        }
        ctl_stats st;
        ctl_stats_get(m->ctls[i].c, &st);
        MGR_INFO("Starting workers", "controller", m->ctls[i].name,
                 LOG_INT("worker count", st.max_concurrent_reconciles), NULL);
    }
    m->workers_running = true;
}

void mgr_on_started_leading(void *user)
{
    mgr *m = user;
    pthread_mutex_lock(&m->wk_mu);
    m->leading = true;
    mgr_try_start_workers_locked(m);
    pthread_mutex_unlock(&m->wk_mu);
    mgr_wake(m->evfd); /* not synced yet: the main loop starts them later */
}

void mgr_on_stopped_leading(void *user)
{
    mgr *m = user;
    pthread_mutex_lock(&m->wk_mu);
    m->leading = false;
    mgr_stop_workers_locked(m);
    pthread_mutex_unlock(&m->wk_mu);
    mgr_wake(m->evfd);
}

void *mgr_le_main(void *arg)
{
    mgr *m = arg;
    int rc = le_run(m->le);
    atomic_store(&m->le_result, rc);
    atomic_store(&m->le_done, true);
    mgr_wake(m->evfd);
    return NULL;
}

/* ---- shutdown watchdog ------------------------------------------------------- */

void *mgr_watchdog_main(void *arg)
{
    mgr_watchdog *w = arg;
    for (;;) {
        int phase = atomic_load(&w->phase);
        if (phase >= 2)
            return NULL;
        double deadline = w->start + (phase == 0 ? MGR_WORKER_STOP_BOUND : MGR_SHUTDOWN_BOUND);
        double left = deadline - pv_clock_monotonic();
        if (left <= 0) {
            if (phase == 0)
                MGR_ERROR("reconciles still running after the shutdown bound; exiting without "
                          "releasing the lease",
                          LOG_DBL("boundSeconds", MGR_WORKER_STOP_BOUND), NULL);
            else
                MGR_ERROR("shutdown did not finish in time; exiting",
                          LOG_DBL("boundSeconds", MGR_SHUTDOWN_BOUND), NULL);
            _exit(1);
        }
        struct pollfd p[2] = {{w->sigfd, POLLIN, 0}, {w->evfd, POLLIN, 0}};
        int n = poll(p, 2, (int)(left * 1000.0) + 1);
        if (n > 0 && (p[0].revents & POLLIN)) {
            MGR_ERROR("received a second signal; exiting now", NULL);
            _exit(1);
        }
        if (n > 0 && (p[1].revents & POLLIN))
            mgr_drain(w->evfd);
    }
}

void mgr_watchdog_phase(mgr_watchdog *w, int phase)
{
    atomic_store(&w->phase, phase);
    mgr_wake(w->evfd);
}
