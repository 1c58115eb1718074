/*
 * vol - the volume domain: StoragePools (and, as they land, Volumes and
 * dynamically provisioned PVCs; API.md "Volumes"). README.md in this folder
 * is the design; vol_ledger.h and vol_pool.h are its pure parts.
 */
#ifndef PROVISIO_VOL_H
#define PROVISIO_VOL_H

#include "rec_env.h"

/*
 * Register the informers, indexes and controllers of the domain with the
 * manager: today the "storagepool" controller (finalizer, the ledger with
 * its recounts, Ready from the node agent's report, the status). Main
 * thread, once. 0 or a negative kc_status.
 */
int vol_setup(const rec_env *env);

#endif
