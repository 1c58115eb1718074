/*
 * dev - the device domain: DevicePool and DeviceClaim (API.md "Devices"), a
 * user of the shared claim flow (core/rec_domain.h). README.md in this
 * folder says what a user sees; dev_internal.h is the domain's pure part
 * (pools with their health, what a claim wants, choice, status), exposed to
 * its unit tests.
 */
#ifndef PROVISIO_DEV_H
#define PROVISIO_DEV_H

#include "rec_env.h"

/*
 * Register the informers, indexes, handlers and controllers of the domain
 * ("deviceclaim", "devicepool", "devicereservation", "devicenode") with the
 * manager. Main thread, once. 0 or a negative kc_status.
 */
int dev_setup(const rec_env *env);

#endif
