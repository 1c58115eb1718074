/*
 * dev_agent_internal - the agent's pure part, exposed to its unit tests:
 * the scan of one pool's device files into a report (dev_scan.c) and the
 * report against status.agent: compare, heartbeat, patch body
 * (dev_report.c). The scan reads the node's file system under the host
 * root; nothing here talks to the API server.
 *
 * Status codes are kc_status values: 0, KC_ERR_NOMEM.
 * Threading: every function is reentrant; a report belongs to one thread.
 */
#ifndef PROVISIO_DEV_AGENT_INTERNAL_H
#define PROVISIO_DEV_AGENT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <json-c/json.h>

#include "dev_agent.h"

/* status.agent.devices holds at most this many entries (the CRD's maxItems). */
#define DEV_REPORT_MAX 2048
/* Longest path the CRD takes (status.agent.devices[].path maxLength). */
#define DEV_PATH_MAX 4096
/* Longest device id: a DNS label. */
#define DEV_ID_MAX 63
/* A report whose content did not change is confirmed this often (seconds);
 * the operator counts one older than 120 s as no agent. */
#define DEV_HEARTBEAT_S 30

#define DEV_SOURCE_DECLARED "Declared"
#define DEV_SOURCE_DISCOVERED "Discovered"

/* One device file as status.agent.devices[] lists it. Strings malloc'd. */
typedef struct dev_entry {
    char *id;
    char *path;      /* on the node, without the host root */
    bool discovered; /* source Discovered (spec.discover), else Declared */
    bool present;    /* the file exists, is not a directory, and opens */
    char *message;   /* why not present (strerror text); NULL when present */
} dev_entry;

/* What the agent found for one pool. Caller-owned; {0} is empty. */
typedef struct dev_report {
    int64_t observed_generation; /* metadata.generation of the spec read */
    dev_entry *v;                /* sorted by id, ids unique */
    size_t n, cap;
    /* Trouble worth one log line (the report itself is still good): */
    size_t dropped; /* glob matches left out past DEV_REPORT_MAX entries */
    size_t skipped; /* matches whose path is not UTF-8 or is too long */
} dev_report;

void dev_report_free(dev_report *r);

/* ---- dev_scan.c ------------------------------------------------------------ */

/*
 * The device id of a file name: lowercased, every byte outside [a-z0-9-]
 * turned into '-', leading and trailing '-' trimmed, cut to DEV_ID_MAX
 * (and trimmed again). *out malloc'd; "" when nothing is left (the caller
 * skips such a file). 0 or KC_ERR_NOMEM.
 */
int dev_scan_id(const char *name, char **out);

/*
 * Check one file: present when open(O_RDONLY|O_NONBLOCK|O_CLOEXEC) of
 * host_root + path succeeds and it is not a directory (closed at once).
 * *message (malloc'd) says why not, else NULL. 0 or KC_ERR_NOMEM.
 */
int dev_scan_check(const char *host_root, const char *path, bool *present, char **message);

/*
 * Scan the files of pool (a DevicePool, borrowed, read-only: a store object
 * is fine) under host_root ("/" or "" = none; trailing '/' ignored): the
 * path of every declared device that has one, then every match of
 * spec.discover.paths (globbed under the host root, at most DEV_REPORT_MAX
 * entries in all); a declared id wins over a discovered one, and of two
 * matches with one id the first in glob order. *out (emptied first) is
 * sorted by id. 0 or KC_ERR_NOMEM (*out freed then).
 */
int dev_scan(json_object *pool, const char *host_root, dev_report *out);

/* ---- dev_report.c ---------------------------------------------------------- */

/*
 * True when agent (the cached status.agent, borrowed, read-only; NULL =
 * none) says the same as r, heartbeatTime aside: observedGeneration and
 * every device's fields, in order.
 */
bool dev_report_matches(const dev_report *r, json_object *agent);

/*
 * True when agent's heartbeatTime (RFC 3339) is missing, unreadable, or
 * DEV_HEARTBEAT_S or more away from now (either way: a clock that went back
 * gets a fresh one).
 */
bool dev_report_heartbeat_due(json_object *agent, time_t now);

/*
 * True when the report must be written: it differs from agent or the
 * heartbeat is due.
 */
bool dev_report_needs_write(const dev_report *r, json_object *agent, time_t now);

/*
 * The JSON merge patch of the status subresource that writes r with
 * heartbeatTime now: {"status":{"agent":{observedGeneration, heartbeatTime,
 * devices:[{id, path, source, present, message?}]}}} (nothing else of the
 * status). *out is the caller's (json_object_put). 0, KC_ERR_NOMEM, or
 * KC_ERR_INVALID_ARG when now cannot be written as RFC 3339.
 */
int dev_report_patch(const dev_report *r, time_t now, json_object **out);

#endif
