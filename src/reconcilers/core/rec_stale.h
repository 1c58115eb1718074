/*
 * rec_stale - own-write memory: the resourceVersions our writes replaced,
 * per object uid, so a reconcile that finds one of them in a lagging cache
 * returns at once instead of writing against it (a conflict and a backoff):
 * the watch event of our write follows and enqueues the object again.
 *
 * Entries expire after REC_STALE_TTL seconds; at most REC_STALE_RVS versions
 * are kept per object. Threading: every function may be called from any
 * thread (an internal mutex, never held across anything but this module).
 */
#ifndef PROVISIO_REC_STALE_H
#define PROVISIO_REC_STALE_H

#include <stdbool.h>

#include <json-c/json.h>

#define REC_STALE_TTL 60.0 /* s: remembered resourceVersions we replaced */
#define REC_STALE_RVS 4    /* at most this many per object */

typedef struct rec_stale rec_stale;

/* 0 or KC_ERR_NOMEM. */
int rec_stale_new(rec_stale **out);
void rec_stale_free(rec_stale *s);

/* A write of ours replaced resourceVersion rv of object uid (NULL/empty: no-op). */
void rec_stale_note(rec_stale *s, const char *uid, const char *rv);

/*
 * True when the cached object (uid, rv) is one our own writes replaced. A
 * version not remembered drops the object's entry (the cache caught up, or
 * someone else changed the object).
 */
bool rec_stale_check(rec_stale *s, const char *uid, const char *rv);

/* The same for a cached object (borrowed): its metadata.uid and
 * metadata.resourceVersion. */
void rec_stale_note_obj(rec_stale *s, json_object *obj);
bool rec_stale_check_obj(rec_stale *s, json_object *obj);

/* Forget the object (it was deleted). */
void rec_stale_forget(rec_stale *s, const char *uid);

#endif
