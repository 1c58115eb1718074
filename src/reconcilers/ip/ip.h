/*
 * ip - the network domain: IPPool and IPClaim (API.md "Network: IPPool /
 * IPClaim"), a user of the shared claim flow (core/rec_domain.h). README.md
 * in this folder says what a user sees and how the domain fills the core's
 * table; ip_internal.h is the domain's own pure part (names, address choice,
 * status, messages), exposed to its unit tests.
 */
#ifndef PROVISIO_IP_H
#define PROVISIO_IP_H

#include "rec_env.h"

/*
 * Register the informers, indexes, handlers and the three controllers of the
 * domain ("ipclaim", "ippool", "ipreservation") with the manager. Main
 * thread, once. 0 or a negative kc_status (nothing of the domain runs then;
 * what was registered with the manager is freed by it).
 */
int ip_setup(const rec_env *env);

#endif
