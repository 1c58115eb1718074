/*
 * rec_claim_fixture - what the unit tests of the shared claim flow need
 * around a detached domain (rec_domain_new_detached): a replay server and a
 * client, the domain's three stores filled as an informer would fill them,
 * the script of answers, and assertions on the requests the flow sent (API
 * requests; Events, written by the sender thread at its own pace, are
 * answered by catch-alls and counted apart).
 *
 * One environment at a time (RCF), set up by rcf_start at the top of a test
 * and torn down by rcf_stop (a suite's .fini). Strings the helpers return are
 * owned by the environment and freed by rcf_stop; a failed check aborts the
 * test with a message naming RCF.label.
 *
 * Claims live in RCF_NS. What a claim or pool looks like is the test's (its
 * domain's spec); names of Reservations come from the domain's slot_name.
 */
#ifndef PROVISIO_REC_CLAIM_FIXTURE_H
#define PROVISIO_REC_CLAIM_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "controller.h"
#include "kc_client.h"
#include "rec_domain.h"
#include "rec_events.h"
#include "replay_server.h"
#include "store.h"

#define RCF_NS "ns"
#define RCF_RESV "/apis/provisio.dev/v1alpha1/reservations"

typedef struct rcf_env {
    const rec_domain_def *def;
    const char *label; /* the domain, in failure messages */
    rs_server *srv;
    kc_config *cfg;
    kc_client *cli;
    rec_domain *d;
    store *claims, *pools, *resv;
    char *garbage[1024]; /* strings a test made */
    size_t n_garbage;
    json_object *jgarbage[64]; /* parsed request bodies */
    size_t n_jgarbage;
    /* Without a domain (rcf_start_client): the recorder the Event helpers
     * flush, set by the test (borrowed), or NULL. */
    rec_events *events;
    /* rcf_api_*: leave out GETs with a query (informers' lists and watches);
     * GETs of one object still count. */
    bool skip_informer_reads;
} rcf_env;

extern rcf_env RCF;

/* A detached domain of def over a fresh replay server. */
void rcf_start(const rec_domain_def *def, const char *label);
/* The replay server (Event catch-alls pushed) and RCF.cli, without a domain:
 * RCF.def, RCF.d and the stores stay NULL, and the helpers that need them
 * (slot names, rcf_cache_*) must not be used. For code driven over RCF.cli
 * by the test itself (the volume app, tests/support/vol_fixture.h). */
void rcf_start_client(const char *label);
void rcf_stop(void);

/* s (malloc'd, not NULL) freed by rcf_stop; returns s. */
char *rcf_keep(char *s);
const char *rcf_fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
/* text parsed (the caller's reference). */
json_object *rcf_parse(const char *text);

/* metadata of an object (ns NULL: cluster-scoped), generation 1, with our
 * finalizer and a deletionTimestamp when asked. */
const char *rcf_meta_json(const char *name, const char *ns, const char *uid, const char *rv,
                          bool finalizer, bool deleting);

/* The Reservation name of slot of pool, as the domain names it, and its path. */
const char *rcf_resv_name(const char *pool, const char *slot);
const char *rcf_resv_path(const char *pool, const char *slot);

/* A Reservation of slot of pool held by the claim RCF_NS/claim. */
typedef struct rcf_resv {
    const char *pool, *slot;
    const char *claim, *claim_uid;
    const char *uid, *rv;   /* the Reservation's own */
    const char *spec_extra; /* more spec members (",\"bytes\":1024"), or NULL */
} rcf_resv;
const char *rcf_resv_json(const rcf_resv *r);

/* /apis/<group>/<version>/[namespaces/<ns>/]<resource>/<name> */
const char *rcf_ref_path(kc_ref ref, const char *ns, const char *name);

/* Put the object of text into the cache and run the handler of its add. */
void rcf_cache_claim(const char *text);
void rcf_cache_pool(const char *text);
void rcf_cache_resv(const char *text);
/* Take the Reservation name out of the cache and run the handler of its
 * delete (text: the object as it was). */
void rcf_uncache_resv(const char *name, const char *text);

/* The script: the next request of method to a target starting with path is
 * answered status, body. */
void rcf_answer(const char *method, const char *path, int status, const char *body);
/* A Status object of a failure. */
const char *rcf_status_body(int code, const char *reason);
extern const char RCF_SUCCESS[];

/* What was sent: API requests (not Events). */
bool rcf_is_event(const rs_request *r);
const rs_request *rcf_api_at(size_t i);
size_t rcf_api_count(void);
const char *rcf_describe_requests(void);
void rcf_assert_api_count(size_t want);
/* The i-th API request is method target; its body parsed (NULL if empty). */
json_object *rcf_assert_api(size_t i, const char *method, const char *target);
/* The string at path of o, or "(none)". */
const char *rcf_str_at(json_object *o, const char *path);
int64_t rcf_int_at(json_object *o, const char *key);

/* Request i POSTs the Reservation of slot of pool for RCF_NS/claim. */
void rcf_assert_post(size_t i, const char *pool, const char *slot, const char *claim,
                     const char *claim_uid);
/* Request i DELETEs slot's Reservation with preconditions uid and rv. */
void rcf_assert_delete(size_t i, const char *pool, const char *slot, const char *uid,
                       const char *rv);
/* Request i PUTs a status to target, decided on rv, with Ready status and
 * reason; returns the status. */
json_object *rcf_assert_status(size_t i, const char *target, const char *rv,
                               const char *ready_status, const char *reason);
/* Request i is a merge patch of our finalizer (present or not) on target, decided on rv. */
void rcf_assert_finalizer_patch(size_t i, const char *target, const char *rv, bool present);

/* Events written so far (after a flush): how many with reason, and the
 * message of the last one with it (or NULL). */
size_t rcf_events_with_reason(const char *reason);
const char *rcf_event_message(const char *reason);
size_t rcf_events_written(void);

/* r, its message kept. */
ctl_result rcf_keep_result(ctl_result r);
const char *rcf_outcome_name(ctl_outcome o);
void rcf_assert_outcome(ctl_result r, ctl_outcome want);

#endif
