/*
 * leader_internal - what leader.c (configuration, the elector and its loop)
 * and leader_lease.c (records, MicroTime, Lease JSON) share. Not part of the
 * manager's contract: no other module includes this header.
 */
#ifndef PROVISIO_LEADER_INTERNAL_H
#define PROVISIO_LEADER_INTERNAL_H

#include <json-c/json.h>

#include "leader.h"

/* Replace the observation with r at time now, whatever it was. */
int leader_observed_set(le_observed *o, const le_record *r, double now);
/* Add val under key; val NULL is an allocation failure. Consumes val. */
int leader_add_field(json_object *obj, const char *key, json_object *val);

#endif
