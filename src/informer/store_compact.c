/*
 * store_compact - the STORE_COMPACT compression of stored objects and the
 * reference counting of shared ones (part of store; see store.c for the
 * layout and the invariants, store_internal.h for the shared types).
 *
 * Compression (STORE_COMPACT). Objects of one resource repeat most of their
 * text (keys, apiVersion, kind, labels, pool and namespace names, condition
 * messages), so the store keeps a zstd raw-content dictionary made of the
 * texts of one in ZIP_SAMPLE_EVERY of its first writes (ZIP_SAMPLE_OBJECTS
 * objects or ZIP_SAMPLE_BYTES bytes, whichever comes first; spread out, so
 * a claim storm gives both new and Ready claims) and compresses every later
 * write with it: a 480-byte Reservation becomes ~110 bytes, a 590-byte
 * Ready IPClaim ~100 (zstd alone: ~320 and ~370; a dictionary of new claims
 * only: ~240). The dictionary never changes once made, so every compressed
 * body can always be read back; the first writes stay text. Any zstd failure (out of memory)
 * stores the text instead: compression never loses an object. The
 * dictionaries are the store's (zip.mu guards the samples and cdict); the
 * compression and decompression contexts are one each for the whole process
 * (zip_cmu, zip_dmu: a context is ~40 and ~95 KB, a store's pair was 0.14 MB;
 * a (de)compression of an object takes microseconds, so stores sharing them
 * wait little), and a CDict's match table is sized for objects of a few KB
 * (ZIP_HASH_LOG: 31 KB instead of zstd's 154 KB for a level-1 dictionary,
 * and no larger output on real objects). Readers run under the shared read
 * lock, several at once; the parse runs outside zip_dmu. The advanced zstd
 * calls (a CDict with our parameters) are used only when the library is the
 * version built against; otherwise the store keeps text.
 *
 * Reference counting. Debian's json-c does not count references atomically,
 * so two threads must never json_object_get/put the same object at once.
 * Every get/put of an object the store has shared goes through
 * store_obj_ref()/store_obj_put(), which hold one of a few striped mutexes chosen
 * by the object's address. The store takes the reader's reference while it
 * still holds its lock, so the object cannot be freed in between.
 */
#include "store_internal.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ZSTD_createCDict_advanced and ZSTD_getCParams: in libzstd's exported
 * "advanced" API since 1.3 (Debian's libzstd 1.5.4 exports both). */
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#include "kc_error.h"

#define ZIP_SAMPLE_OBJECTS 16
#define ZIP_SAMPLE_EVERY 32 /* one write in 32 is a sample: a mix of the objects' states */
#define ZIP_SAMPLE_BYTES 8192
#define ZIP_LEVEL 1
#define ZIP_HASH_LOG 11    /* match table of 2^11 entries: objects are a few KB */
#define ZIP_SIZE_HINT 2048 /* a typical object's text, for zstd's parameters */
#define ZIP_TAG 'Z'

/* ---- reference counting across threads ----------------------------------- */

#define REF_STRIPES 64
static pthread_mutex_t ref_locks[REF_STRIPES];
static pthread_once_t ref_once = PTHREAD_ONCE_INIT;

static void ref_locks_init(void)
{
    for (size_t i = 0; i < REF_STRIPES; i++)
        pthread_mutex_init(&ref_locks[i], NULL);
}

static pthread_mutex_t *ref_lock_of(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 17;
    x *= 0x9e3779b97f4a7c15ULL;
    return &ref_locks[(x >> 58) % REF_STRIPES];
}

json_object *store_obj_ref(json_object *obj)
{
    pthread_once(&ref_once, ref_locks_init);
    pthread_mutex_t *m = ref_lock_of(obj);
    pthread_mutex_lock(m);
    json_object_get(obj);
    pthread_mutex_unlock(m);
    return obj;
}

void store_obj_put(json_object *obj)
{
    if (obj == NULL)
        return;
    pthread_once(&ref_once, ref_locks_init);
    pthread_mutex_t *m = ref_lock_of(obj);
    pthread_mutex_lock(m);
    json_object_put(obj);
    pthread_mutex_unlock(m);
}

void store_objs_free(json_object **objs, size_t n)
{
    if (objs == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        store_obj_put(objs[i]);
    free(objs);
}

void store_keys_free(char **keys, size_t n)
{
    if (keys == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(keys[i]);
    free(keys);
}

/* ---- compression (STORE_COMPACT) ----------------------------------------------- */

/* A compact entry's buffer with its "rv\0" head written and room for
 * body_len more bytes after it; NULL when out of memory. */
static char *data_new(const char *rv, size_t rvlen, size_t body_len)
{
    char *buf = malloc(rvlen + 1 + body_len);
    if (buf == NULL)
        return NULL;
    if (rvlen)
        memcpy(buf, rv, rvlen);
    buf[rvlen] = '\0';
    return buf;
}

/* The process's contexts, made on first use under their mutex (never freed:
 * they live as long as the process, reachable from here). */
static pthread_mutex_t zip_cmu = PTHREAD_MUTEX_INITIALIZER;
static ZSTD_CCtx *zip_cctx;
static pthread_mutex_t zip_dmu = PTHREAD_MUTEX_INITIALIZER;
static ZSTD_DCtx *zip_dctx;

/* Make the dictionaries from the samples; under zip.mu. */
static void zip_make_dict(store_zip *z)
{
    if (ZSTD_versionNumber() != ZSTD_VERSION_NUMBER) { /* the advanced API is not ABI-stable */
        z->off = true;
        free(z->samples);
        z->samples = NULL;
        return;
    }
    ZSTD_compressionParameters cp = ZSTD_getCParams(ZIP_LEVEL, ZIP_SIZE_HINT, z->sample_len);
    if (cp.hashLog > ZIP_HASH_LOG)
        cp.hashLog = ZIP_HASH_LOG;
    if (cp.chainLog > ZIP_HASH_LOG)
        cp.chainLog = ZIP_HASH_LOG;
    z->cdict = ZSTD_createCDict_advanced(z->samples, z->sample_len, ZSTD_dlm_byCopy, ZSTD_dct_auto,
                                         cp, ZSTD_defaultCMem);
    z->ddict = ZSTD_createDDict(z->samples, z->sample_len);
    if (!z->cdict || !z->ddict) {
        ZSTD_freeCDict(z->cdict);
        ZSTD_freeDDict(z->ddict);
        z->cdict = NULL;
        z->ddict = NULL;
        z->off = true;
    }
    free(z->samples);
    z->samples = NULL;
}

/*
 * The body of a compact entry with js compressed: "rv\0" 'Z' len frame,
 * malloc'd; or NULL to store the text (no dictionary yet, zstd failed, or
 * no gain).
 */
static char *zip_body(store *s, const char *rv, size_t rvlen, const char *js, size_t jlen)
{
    store_zip *z = &s->zip;
    char *buf = NULL;
    pthread_mutex_lock(&z->mu);
    if (z->cdict == NULL && !z->off) {
        /* Still sampling: keep one text in ZIP_SAMPLE_EVERY (whole, or up to
         * the limit). */
        if (z->n_writes++ % ZIP_SAMPLE_EVERY != 0) {
            pthread_mutex_unlock(&z->mu);
            return NULL;
        }
        size_t take =
            jlen < ZIP_SAMPLE_BYTES - z->sample_len ? jlen : ZIP_SAMPLE_BYTES - z->sample_len;
        if (z->samples == NULL)
            z->samples = malloc(ZIP_SAMPLE_BYTES);
        if (z->samples == NULL) {
            z->off = true;
        } else {
            memcpy(z->samples + z->sample_len, js, take);
            z->sample_len += take;
            z->n_samples++;
            if (z->n_samples >= ZIP_SAMPLE_OBJECTS || z->sample_len >= ZIP_SAMPLE_BYTES)
                zip_make_dict(z);
        }
        pthread_mutex_unlock(&z->mu);
        return NULL; /* a sample is stored as text */
    }
    if (z->cdict != NULL && jlen <= UINT32_MAX) {
        size_t bound = ZSTD_compressBound(jlen);
        size_t head = rvlen + 1 + 1 + sizeof(uint32_t);
        buf = data_new(rv, rvlen, 1 + sizeof(uint32_t) + bound);
        if (buf != NULL) {
            pthread_mutex_lock(&zip_cmu);
            if (zip_cctx == NULL)
                zip_cctx = ZSTD_createCCtx();
            size_t n = zip_cctx != NULL ? ZSTD_compress_usingCDict(zip_cctx, buf + head, bound, js,
                                                                   jlen, z->cdict)
                                        : (size_t)-1;
            pthread_mutex_unlock(&zip_cmu);
            if (ZSTD_isError(n) || n >= jlen) {
                free(buf);
                buf = NULL;
            } else {
                buf[rvlen + 1] = ZIP_TAG;
                uint32_t n32 = (uint32_t)n;
                memcpy(buf + rvlen + 2, &n32, sizeof n32);
                char *fit = realloc(buf, head + n);
                if (fit != NULL)
                    buf = fit;
            }
        }
    }
    pthread_mutex_unlock(&z->mu);
    return buf;
}

/* Parse a compact body; NULL on failure (out of memory, or a body that
 * does not decompress, which the store never writes). */
static json_object *zip_parse(store *s, const char *body)
{
    if (body[0] != ZIP_TAG)
        return json_tokener_parse(body);
    store_zip *z = &s->zip;
    uint32_t n;
    memcpy(&n, body + 1, sizeof n);
    const char *frame = body + 1 + sizeof n;
    unsigned long long len = ZSTD_getFrameContentSize(frame, n);
    if (len == ZSTD_CONTENTSIZE_ERROR || len == ZSTD_CONTENTSIZE_UNKNOWN || len >= SIZE_MAX)
        return NULL;
    char *text = malloc((size_t)len + 1);
    if (text == NULL)
        return NULL;
    pthread_mutex_lock(&zip_dmu);
    if (zip_dctx == NULL)
        zip_dctx = ZSTD_createDCtx();
    size_t got = zip_dctx != NULL
                     ? ZSTD_decompress_usingDDict(zip_dctx, text, (size_t)len, frame, n, z->ddict)
                     : (size_t)-1;
    pthread_mutex_unlock(&zip_dmu);
    json_object *o = NULL;
    if (!ZSTD_isError(got) && got == len) {
        text[got] = '\0';
        o = json_tokener_parse(text);
    }
    free(text);
    return o;
}

/* The stored form of obj (consumed on success and on failure alike, except
 * that in shared mode the returned data *is* obj). */
int store_prepare_data(store *s, json_object *obj, void **data_out)
{
    *data_out = NULL;
    if (!s->compact) {
        store_shrink_tree(obj);
        *data_out = obj;
        return KC_OK;
    }
    const char *rv = store_obj_rv(obj);
    size_t rvlen = rv ? strlen(rv) : 0, jlen = 0;
    const char *js = json_object_to_json_string_length(
        obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &jlen);
    if (js == NULL)
        return KC_ERR_NOMEM;
    char *buf = zip_body(s, rv, rvlen, js, jlen);
    if (buf == NULL) {
        buf = data_new(rv, rvlen, jlen + 1);
        if (buf == NULL)
            return KC_ERR_NOMEM;
        memcpy(buf + rvlen + 1, js, jlen + 1);
    }
    *data_out = buf;
    return KC_OK;
}

/* Bytes of a compact body (for store_data_bytes). */
size_t store_data_size(const char *data)
{
    size_t rvlen = strlen(data);
    const char *body = data + rvlen + 1;
    if (body[0] == ZIP_TAG) {
        uint32_t n;
        memcpy(&n, body + 1, sizeof n);
        return rvlen + 1 + 1 + sizeof n + n;
    }
    return rvlen + 1 + strlen(body) + 1;
}

void store_data_release(store *s, void *data)
{
    if (data == NULL)
        return;
    if (s->compact)
        free(data);
    else
        store_obj_put(data);
}

/* A reader's reference to an entry's object; call under the lock. NULL on
 * parse failure (out of memory). */
json_object *store_data_ref(store *s, void *data)
{
    if (!s->compact)
        return store_obj_ref(data);
    const char *buf = data;
    return zip_parse(s, buf + strlen(buf) + 1);
}

/* Turn stored data that has left the store into a caller's reference
 * (consumes data). */
json_object *store_data_to_obj(store *s, void *data)
{
    if (data == NULL)
        return NULL;
    if (!s->compact)
        return data;
    json_object *o = store_data_ref(s, data);
    free(data);
    return o;
}

bool store_data_rv_equal(store *s, void *data, json_object *obj)
{
    const char *a = s->compact ? (const char *)data : store_obj_rv(data);
    const char *b = store_obj_rv(obj);
    return a != NULL && b != NULL && a[0] != '\0' && strcmp(a, b) == 0;
}
