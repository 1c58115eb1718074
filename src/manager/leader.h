/*
 * le - leader election with a coordination.k8s.io/v1 Lease, with the
 * semantics of client-go's tools/leaderelection (as controller-runtime uses it).
 *
 * Every candidate runs le_run on a thread of its own. Until it leads, it
 * tries to acquire the Lease about every retry_period (jittered within
 * (0.8, 1] x retry_period, and woken at the holder's local expiry, so a kill -9
 * failover takes at most lease_duration + retry_period plus request time;
 * client-go's JitterUntil waits up to 2.2 x retry_period instead): it creates the Lease when there
 * is none, and takes it over with an update at the observed resourceVersion when it is free (no
 * holder) or expired. A Lease held by another is judged expired only by this process' monotonic
 * clock: the elector remembers when it last saw the record (holder, duration, times, transitions)
 * change and counts the lease as expired once leaseDurationSeconds passed since then. The record's
 * renewTime is never compared with our wall clock, so clock skew between
 * machines does not matter.
 *
 * While leading it renews every retry_period. If no renewal succeeded for
 * renew_deadline since the last successful one (or a renewal finds another
 * holder), leadership is lost: le_is_leader() turns false and
 * on_stopped_leading is called at once, even when a renew request is still
 * hanging in the client (requests run on a helper thread, the le_run thread
 * only keeps the time). Then le_run returns LE_LOST (controller-runtime's
 * behaviour: the manager exits), or with rejoin_on_loss it goes back to being
 * a candidate.
 *
 * le_stop (SIGTERM) makes le_run stop; when it leads it calls
 * on_stopped_leading, then, with release_on_cancel, releases the Lease as
 * client-go does (holder cleared, leaseDurationSeconds 1, times now) so a
 * standby takes over within about one retry period, and returns LE_STOPPED.
 *
 * Using it from the manager:
 *
 *   le_config c;
 *   le_config_init(&c);                    // client-go's defaults
 *   c.namespace_ = ns;                     // --leader-election-namespace
 *   c.name = flags.leader_election_id;     // --leader-election-id
 *   c.client = le_client;                  // see le_client_opts
 *   c.master_status = metrics.leader_election_master_status;
 *   c.on_started_leading = start_workers;  // quick: start threads and return
 *   c.on_stopped_leading = stop_workers;   // stop reconciling now
 *   c.user = mgr;
 *   le_elector *le;
 *   le_new(&c, &le, &err);
 *   // leader thread:        rc = le_run(le);   // LE_LOST: exit(1) as controller-runtime
 *   // SIGTERM handler path: le_stop(le); join the leader thread; le_free(le);
 *
 * Errors: negative kc_status (KC_ERR_INVALID_ARG, KC_ERR_NOMEM, ...).
 */
#ifndef PROVISIO_LEADER_H
#define PROVISIO_LEADER_H

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "kc_client.h"
#include "metrics.h"

/* client-go's defaults (controller-runtime uses the same). */
#define LE_DEFAULT_LEASE_DURATION 15.0
#define LE_DEFAULT_RENEW_DEADLINE 10.0
#define LE_DEFAULT_RETRY_PERIOD 2.0
/* client-go's jitter factor; kept for the renew_deadline > 1.2 x retry_period check. */
#define LE_JITTER_FACTOR 1.2

/* ---- the Lease record and the pure rules ----------------------------------- */

/*
 * The leader-election record: the spec of the Lease. Times are wall-clock
 * microseconds since the Unix epoch (MicroTime); 0 means unset (null).
 * holder_identity NULL or "" means nobody holds the lease.
 * A record filled by a le_ function owns holder_identity: le_record_clear.
 */
typedef struct le_record {
    char *holder_identity;
    long lease_duration_seconds;
    int64_t acquire_time_us;
    int64_t renew_time_us;
    long lease_transitions;
} le_record;

/* Free holder_identity and zero r. NULL is a no-op. */
void le_record_clear(le_record *r);

/* Deep copy of src into *dst (dst is overwritten, not cleared first). 0 or KC_ERR_NOMEM. */
int le_record_copy(le_record *dst, const le_record *src);

/* True when every field is equal (NULL and "" holders are equal). */
bool le_record_equal(const le_record *a, const le_record *b);

/* True when r names a holder (non-empty). */
bool le_record_held(const le_record *r);

/*
 * What a candidate knows of the Lease: the last record it read and the local
 * monotonic time (seconds, any origin) at which that record was first seen
 * in this form. Zero-initialize; owned strings: le_observed_clear.
 */
typedef struct le_observed {
    bool valid;
    le_record record;
    double time;
} le_observed;

void le_observed_clear(le_observed *o);

/*
 * Note that record r was read at local time now. When o was empty or r
 * differs from o->record, o takes a copy of r and o->time = now (returns 1);
 * when r is the same record, o->time stays (returns 0): an unchanged record
 * ages, however often it is read. KC_ERR_NOMEM on allocation failure.
 */
int le_observe(le_observed *o, const le_record *r, double now);

/*
 * Is the lease described by observed (read at local time observed_time)
 * expired at local time now? True when observed_time + leaseDurationSeconds
 * <= now (client-go's "observedTime + leaseDuration is not after now"). Only
 * local times are compared: renewTime and acquireTime are ignored.
 */
bool le_lease_expired(const le_record *observed, double observed_time, double now);

/*
 * May `identity` write the lease now? Yes when the observation says nobody
 * holds it, we hold it, or the holder's lease expired (le_lease_expired).
 */
bool le_can_acquire(const le_observed *o, const char *identity, double now);

/*
 * Has a leader lost the lease at local time now, with its last successful
 * renewal (or acquisition) started at last_renew? True when now - last_renew
 * >= renew_deadline.
 */
bool le_renew_deadline_passed(double last_renew, double now, double renew_deadline);

/*
 * The record to write to acquire or renew, at wall time now_us (µs).
 *   current NULL (no Lease yet): holder identity, transitions 0,
 *     acquireTime = renewTime = now.
 *   current held by identity (renew): acquireTime and transitions kept,
 *     renewTime = now.
 *   otherwise (free, or expired and held by another): transitions + 1,
 *     acquireTime = renewTime = now.
 * leaseDurationSeconds = lease_duration_seconds in every case. *out is
 * overwritten (owned: le_record_clear). 0 or KC_ERR_NOMEM.
 */
int le_next_record(const le_record *current, const char *identity, long lease_duration_seconds,
                   int64_t now_us, le_record *out);

/*
 * The record that releases a lease we hold (client-go's release): holder
 * cleared, leaseDurationSeconds 1, acquireTime = renewTime = now,
 * transitions kept. 0 or KC_ERR_NOMEM.
 */
int le_release_record(const le_record *current, int64_t now_us, le_record *out);

/*
 * MicroTime text: RFC 3339 in UTC with exactly six fractional digits,
 * "2026-11-23T19:40:43.123456Z". buf must hold LE_MICROTIME_BUFSZ bytes.
 * KC_ERR_INVALID_ARG for a time outside years 0001..9999.
 */
#define LE_MICROTIME_BUFSZ 32
int le_format_micro_time(int64_t us, char *buf);

/*
 * Parse RFC 3339 ("2026-11-23T19:40:43Z", any number of fractional digits,
 * truncated to microseconds; "Z" or a "+hh:mm"/"-hh:mm" offset) into µs since
 * the epoch. KC_ERR_INVALID_ARG when s is not such a time.
 */
int le_parse_micro_time(const char *s, int64_t *out_us);

/*
 * The record of a Lease object (borrowed). A missing spec or field is zero /
 * NULL, as in client-go. KC_ERR_DECODE when a field has the wrong type or a
 * time does not parse; KC_ERR_NOMEM. *out is overwritten (owned).
 */
int le_record_from_lease(json_object *lease, le_record *out);

/*
 * A Lease spec object for r (new reference, caller puts): holderIdentity
 * (always written; "" when none), leaseDurationSeconds, acquireTime,
 * renewTime (null when unset), leaseTransitions. NULL when out of memory.
 */
json_object *le_record_to_spec(const le_record *r);

/* ---- the elector ------------------------------------------------------------ */

typedef void (*le_cb)(void *user);
typedef void (*le_leader_cb)(const char *identity, void *user);

typedef struct le_config {
    const char *namespace_; /* Lease namespace (required) */
    const char *name;       /* Lease name (required); also the metric's name label */
    const char *identity;   /* NULL: le_default_identity() */
    double lease_duration;  /* seconds; whole seconds are written to the Lease (>= 1) */
    double renew_deadline;  /* seconds */
    double retry_period;    /* seconds */
    bool release_on_cancel; /* release the Lease when le_stop ends a leading le_run */
    bool rejoin_on_loss;    /* after losing the lease, be a candidate again instead of
                               returning LE_LOST */
    /*
     * Borrowed, must outlive the elector. Requests run one at a time on a
     * helper thread; give the elector a client of its own made with
     * le_client_opts, so that a hanging API server cannot hold a request for
     * longer than the renew deadline (le_stop waits for a request in flight).
     */
    kc_client *client;
    /* leader_election_master_status (gauge {name}) or NULL; borrowed. */
    met_vec *master_status;
    /*
     * Callbacks, all optional, all called on the le_run thread, never two at
     * once. on_started_leading should return promptly (start workers and
     * return): renewals wait for it. on_stopped_leading is called exactly
     * once after each on_started_leading, when leadership is lost or le_stop
     * ends a leading run, before the Lease is released; when it returns the
     * caller must have stopped acting as leader. (client-go also calls it
     * when Run ends without ever leading; this elector does not.)
     * on_new_leader is called whenever the observed holder changes to a
     * non-empty identity, ours included.
     */
    le_cb on_started_leading;
    le_cb on_stopped_leading;
    le_leader_cb on_new_leader;
    void *user;
} le_config;

/*
 * Defaults: lease 15 s, renew deadline 10 s, retry 2 s, release_on_cancel
 * true, rejoin_on_loss false; everything else zero/NULL.
 */
void le_config_init(le_config *c);

/*
 * Options for the elector's own kc_client: a whole request (connect
 * included) times out after renew_deadline - retry_period (at least 100 ms),
 * and the client does not retry (the elector retries every retry_period).
 * Fields other than timeouts and retries are left as they were in *out.
 */
void le_client_opts(const le_config *c, kc_client_opts *out);

/*
 * "<hostname>_<random UUID v4>", as controller-runtime builds its identity.
 * *out malloc'd (caller frees). 0, KC_ERR_NOMEM or KC_ERR_IO.
 */
int le_default_identity(char **out);

typedef struct le_elector le_elector;

/*
 * Validate c (client-go's rules: lease_duration > renew_deadline >
 * LE_JITTER_FACTOR * retry_period > 0, lease_duration >= 1) and make an
 * elector. Strings of c are copied; client and master_status are borrowed.
 * KC_ERR_INVALID_ARG (err says why) or KC_ERR_NOMEM.
 */
int le_new(const le_config *c, le_elector **out, kc_error *err);

/* Free e. NULL is a no-op. le_run must have returned (or never been called). */
void le_free(le_elector *e);

/* The identity e writes as holder; borrowed for the life of e. Any thread. */
const char *le_identity(const le_elector *e);

enum {
    LE_STOPPED = 0, /* le_stop was called (the Lease was released if we held it) */
    LE_LOST = 1,    /* the lease was lost and rejoin_on_loss is false */
};

/*
 * Run the election until le_stop (LE_STOPPED) or, without rejoin_on_loss,
 * until leadership is lost (LE_LOST; with release_on_cancel a lease we still
 * appear to hold is released on the way out, as client-go does). Blocks the
 * calling thread, which runs the callbacks; starts and joins one helper
 * thread for requests. One le_run at a time per elector (a second concurrent
 * call gets KC_ERR_INVALID_ARG); KC_ERR_NOMEM if the helper thread cannot
 * start. If le_stop was already called, returns LE_STOPPED at once.
 */
int le_run(le_elector *e);

/*
 * Ask le_run to end. Any thread (not a signal handler: use a self-pipe or
 * signalfd thread). Wakes le_run at once when it is waiting; when a request
 * is in flight le_run first waits for it (bounded by the client's timeout).
 * Sticky: later le_run calls return at once. Does not wait for le_run.
 */
void le_stop(le_elector *e);

/* True while this process holds the lease. Any thread; an atomic read. */
bool le_is_leader(const le_elector *e);

/*
 * The holder identity last observed (ours included), copied into a malloc'd
 * string in *out, or NULL when none is known. Any thread. 0 or KC_ERR_NOMEM.
 */
int le_get_leader(le_elector *e, char **out);

#endif
