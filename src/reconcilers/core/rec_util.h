/*
 * rec_util - small helpers every reconciler needs: status conditions in the
 * shape of metav1.Condition, the operator's finalizer, controller owner
 * references, and writes of status and finalizers that go to the API server
 * only when something changed.
 *
 * Objects. Functions that only look things up (rec_get_condition,
 * rec_has_finalizer, rec_obj_*) accept objects straight from an informer
 * store: they never take references, never serialise, and call
 * json_object_get_string on string-typed values only (store.h). Functions
 * that change an object (rec_set_condition, rec_add_finalizer, ...) need a
 * private object: one the caller built or json_object_deep_copy'd.
 *
 * Status codes are kc_status values (kc_error.h): 0 ok, KC_ERR_INVALID_ARG,
 * KC_ERR_NOMEM, or what the API server answered.
 *
 * Threading: every function is reentrant; calls on different objects may run
 * on any threads at once. A private object belongs to one thread.
 */
#ifndef PROVISIO_REC_UTIL_H
#define PROVISIO_REC_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <json-c/json.h>

#include "kc_client.h"

/* The finalizer the operator puts on every claim while it holds anything. */
#define REC_FINALIZER "provisio.dev/finalizer"

/* The condition every kind carries (kubectl wait --for=condition=Ready). */
#define REC_COND_READY "Ready"

#define REC_COND_TRUE "True"
#define REC_COND_FALSE "False"
#define REC_COND_UNKNOWN "Unknown"

/* Buffer for rec_format_time: "2025-01-02T15:04:05Z" and a NUL, with room to spare. */
#define REC_TIME_STRLEN 32

/*
 * RFC 3339 in UTC with seconds and 'Z' (metav1.Time's wire form) into buf.
 * Returns buf, or NULL when t cannot be written in that form (out of range).
 */
const char *rec_format_time(time_t t, char buf[REC_TIME_STRLEN]);

/*
 * An RFC 3339 time ("2025-01-02T15:04:05Z"; fractions of a second are cut,
 * offsets such as +02:00 applied) into *out, seconds since the epoch.
 * false when s is NULL or not such a time.
 */
bool rec_parse_time(const char *s, time_t *out);

/* ---- looking things up (safe on store objects) ---------------------------- */

/*
 * The string at a dotted path ("metadata.name", "spec.claim.uid") of obj, or
 * NULL when absent or not a string. Borrowed from obj: valid while obj is.
 */
const char *rec_obj_str(json_object *obj, const char *dotted_path);

/* The value at a dotted path, or NULL. Borrowed from obj (no reference taken). */
json_object *rec_obj_at(json_object *obj, const char *dotted_path);

/* metadata.labels[key] / metadata.annotations[key] of obj as a string, or
 * NULL (keys hold dots, so no dotted path can name them). */
const char *rec_obj_label(json_object *obj, const char *key);
const char *rec_obj_annotation(json_object *obj, const char *key);

/* metadata.generation, or 0 when absent. */
int64_t rec_obj_generation(json_object *obj);

/* True when metadata.deletionTimestamp is set. */
bool rec_obj_is_deleting(json_object *obj);

/* ---- conditions ----------------------------------------------------------- */

/*
 * The condition of `type` in status.conditions, where `status` is the
 * object's .status (not the whole object). Borrowed from status; NULL when
 * absent (or status is NULL).
 */
json_object *rec_get_condition(json_object *status, const char *type);

/* True when the condition of `type` exists and has status "True". */
bool rec_condition_is_true(json_object *status, const char *type);

/*
 * Set the condition `type` in status.conditions (status: a private object,
 * the object's .status; conditions[] is created when missing), as
 * apimachinery's meta.SetStatusCondition does:
 *   - a new condition gets lastTransitionTime = now;
 *   - an existing one keeps its lastTransitionTime unless its status changes;
 *   - status, reason, message and observedGeneration = generation are always
 *     set to the given values.
 * cond_status is "True", "False" or "Unknown"; type as the CRDs' pattern
 * (CamelCase or domain/CamelCase, <= 316); reason CamelCase as the API
 * conventions' pattern ^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$ (<= 1024);
 * message may be NULL (empty) and is at most 32768 bytes. Anything else is
 * KC_ERR_INVALID_ARG and leaves status unchanged. All strings borrowed
 * (copied). *changed (may be NULL) says whether anything in the condition
 * differs from before.
 */
int rec_set_condition(json_object *status, const char *type, const char *cond_status,
                      const char *reason, const char *message, int64_t generation, time_t now,
                      bool *changed);

/* Remove the condition `type` (private status). *changed (may be NULL) if it was there. */
int rec_remove_condition(json_object *status, const char *type, bool *changed);

/* ---- finalizers ----------------------------------------------------------- */

/* True when metadata.finalizers of obj (may be a store object) holds name. */
bool rec_has_finalizer(json_object *obj, const char *name);

/*
 * Add name to metadata.finalizers of a private obj, unless already there
 * (idempotent). *changed (may be NULL) says whether it was added.
 */
int rec_add_finalizer(json_object *obj, const char *name, bool *changed);

/*
 * Remove every occurrence of name from metadata.finalizers of a private obj
 * (idempotent); an emptied list is removed. *changed (may be NULL).
 */
int rec_remove_finalizer(json_object *obj, const char *name, bool *changed);

/*
 * Make the object's finalizer `name` present (present=true) or absent on the
 * server, if the cached object (borrowed, may be a store object) says it is
 * not so already; otherwise nothing is sent and *out (if wanted) is NULL.
 *
 * The write is a JSON merge patch of metadata.finalizers (the whole list,
 * built from the cached one) that also carries the cached
 * metadata.resourceVersion: the API server takes a resourceVersion in a patch
 * as a precondition, so if the object changed since it was cached (someone
 * else's finalizer came or went) the patch fails with KC_ERR_CONFLICT and no
 * finalizer of anyone else is lost -- requeue and retry from the fresher
 * cache. (A JSON patch with a "test" op would be a CAS too, but a failed test
 * comes back as 422 rather than a Conflict.) The server refuses to add a new
 * finalizer to an object that is being deleted (KC_ERR_INVALID/FORBIDDEN).
 *
 * ref names the object (name and namespace required; subresource ignored).
 * *out (may be NULL) gets the updated object from the server (caller owns
 * it), or NULL when nothing was sent; *sent (may be NULL) says if a request
 * was made.
 */
int rec_ensure_finalizer(kc_client *c, const kc_ref *ref, json_object *cached, const char *name,
                         bool present, json_object **out, bool *sent, kc_error *err);

/* ---- owner references ----------------------------------------------------- */

/*
 * A controller ownerReference {apiVersion, kind, name, uid, controller: true,
 * blockOwnerDeletion: true} in *out (a new object the caller owns). Strings
 * borrowed (copied); all four required (KC_ERR_INVALID_ARG).
 */
int rec_owner_ref_new(const char *api_version, const char *kind, const char *name, const char *uid,
                      json_object **out);

/*
 * The controller ownerReference of owner (borrowed, may be a store object; it
 * must have apiVersion, kind, metadata.name and metadata.uid) in *out.
 * Objects of a List response have no apiVersion/kind: then pass them in
 * api_version/kind (used only when the object lacks them; may be NULL).
 */
int rec_owner_ref_of(json_object *owner, const char *api_version, const char *kind,
                     json_object **out);

/*
 * Put owner_ref (borrowed, copied) into metadata.ownerReferences of a private
 * obj: an entry with the same uid is replaced, otherwise it is appended.
 * An object has at most one controller: if another entry with a different uid
 * is the controller, KC_ERR_CONFLICT (obj unchanged), as controller-runtime's
 * SetControllerReference refuses with AlreadyOwnedError.
 */
int rec_set_owner_ref(json_object *obj, json_object *owner_ref);

/* True when obj (may be a store object) has an ownerReference with uid. */
bool rec_is_owned_by(json_object *obj, const char *uid);

/* printf into *out (malloc'd; NULL on failure). 0 or KC_ERR_NOMEM. */
int rec_msg(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- status --------------------------------------------------------------- */

/*
 * Write new_status (borrowed, not changed) as the status of the object cached
 * (borrowed, may be a store object), through the status subresource, only if
 * it differs from the cached status. status.observedGeneration is set to the
 * cached metadata.generation (when it has one) before comparing, so callers
 * need not. Comparison is semantic (json_object_equal: key order does not
 * matter, array order does).
 *
 * When different: PUT <ref>/status with a copy of the cached object whose
 * status is replaced, carrying the cached metadata.resourceVersion, so a
 * stale cache gives KC_ERR_CONFLICT (requeue; never retried here). ref names
 * the object (its subresource is ignored: "status" is used).
 * *out (may be NULL) gets the server's answer (caller owns it) or NULL when
 * nothing was written; *written (may be NULL) says whether a PUT was made.
 */
int rec_update_status(kc_client *c, const kc_ref *ref, json_object *cached, json_object *new_status,
                      json_object **out, bool *written, kc_error *err);

/*
 * rec_update_status without copies, for a cached object that is the caller's
 * alone (a read of a compact store, a server's answer) and a new_status that
 * holds nothing another thread can see: the request body borrows their
 * members (references taken and dropped on this thread) instead of deep
 * copies (a DevicePool's spec and status list every device: two copies of
 * each pool per write were ~1 MiB of the device operator's peak heap with
 * 10,000 claims). new_status gets observedGeneration added.
 */
int rec_update_status_lent(kc_client *c, const kc_ref *ref, json_object *cached,
                           json_object *new_status, json_object **out, bool *written,
                           kc_error *err);

/* ---- status -------------------------------------------------------------- */

/* Put a deep copy of src (borrowed, may be a store object) under key of o.
 * false when memory ran out. */
bool rec_put_copy(json_object *o, const char *key, json_object *src);

/* Whether objects a and b (borrowed; either may be NULL) hold the same keys
 * with equal values, leaving out the keys skip[0..n_skip): they may differ or
 * be missing on either side. Not objects: json_object_equal. */
bool rec_json_equal_except(json_object *a, json_object *b, const char *const *skip, size_t n_skip);

/* A new status object holding a copy of cached_status.conditions (cached_status
 * borrowed, may be NULL or a store object). *out is new. 0 or KC_ERR_NOMEM. */
int rec_status_base(json_object *cached_status, json_object **out);

/*
 * The status of a claim that holds nothing: only the conditions, carried over
 * from cached_status, with Ready=False reason and message (Ready keeps its
 * lastTransitionTime unless its status changes). *out is new.
 * 0, KC_ERR_INVALID_ARG, KC_ERR_NOMEM.
 */
int rec_status_not_ready(json_object *cached_status, const char *reason, const char *message,
                         int64_t generation, time_t now, json_object **out);

#endif
