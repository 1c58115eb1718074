/*
 * rec_api_fixture - for the unit tests of rec_util's writes and rec_events:
 * a replay server (replay_server.h) and a kc_client on it (a token user,
 * no client retries), one at a time, and small JSON helpers. raf_stop is a
 * suite's .fini (after anything still writing through the client is gone).
 */
#ifndef PROVISIO_REC_API_FIXTURE_H
#define PROVISIO_REC_API_FIXTURE_H

#include <stdint.h>
#include <time.h>

#include <json-c/json.h>

#include "kc_client.h"
#include "replay_server.h"

extern rs_server *raf_srv;
extern kc_client *raf_cli;

/* request_timeout_ms: the client's bound on one request; 0 = its default. */
void raf_start_with_timeout(long request_timeout_ms);
void raf_start(void);
void raf_stop(void);

/* text parsed (fails the test when it is not JSON); owned by the caller. */
json_object *raf_parse(const char *text);
/* The body of request r, parsed. */
json_object *raf_body_json(const rs_request *r);
/* The string at path of o, or "(none)". */
const char *raf_str_at(json_object *o, const char *path);
/* The integer at path of o (fails the test when absent). */
int64_t raf_int_at(json_object *o, const char *path);

/* 2025-01-02T15:04:05Z and one hour later. */
#define RAF_T0 ((time_t)1735830245)
#define RAF_T1 ((time_t)(1735830245 + 3600))

#endif
