/* Unit tests of src/manager/log: JSON lines, escaping, levels, threads. */
#include <criterion/criterion.h>

#include "kc_error.h"
#include "log.h"

#include <json-c/json.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static FILE *g_file;

static void setup(void)
{
    g_file = tmpfile();
    cr_assert_not_null(g_file);
    log_set_output(g_file);
    log_set_level(PLOG_INFO);
}

static void teardown(void)
{
    log_set_output(NULL);
    fclose(g_file);
}

TestSuite(log, .init = setup, .fini = teardown);

/* All lines written so far, each parsed; *n receives the count. */
static json_object **read_lines(FILE *f, size_t *n)
{
    fflush(f);
    rewind(f);
    json_object **v = NULL;
    size_t count = 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0) {
        cr_assert_eq(line[len - 1], '\n', "every line ends with a newline");
        json_tokener *tok = json_tokener_new();
        json_object *o = json_tokener_parse_ex(tok, line, (int)len);
        cr_assert_eq(json_tokener_get_error(tok), json_tokener_success, "not JSON: %s", line);
        /* Nothing but the newline may follow the object. */
        size_t end = json_tokener_get_parse_end(tok);
        cr_assert(end <= (size_t)len && strspn(line + end, "\n") == (size_t)len - end,
                  "trailing bytes: %s", line);
        cr_assert_null(memchr(line, '\n', (size_t)len - 1), "a raw newline inside the line");
        json_tokener_free(tok);
        cr_assert(json_object_is_type(o, json_type_object));
        v = realloc(v, (count + 1) * sizeof *v);
        v[count++] = o;
    }
    free(line);
    *n = count;
    return v;
}

static void free_lines(json_object **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        json_object_put(v[i]);
    free(v);
}

static const char *str_field(json_object *o, const char *key)
{
    json_object *f = NULL;
    cr_assert(json_object_object_get_ex(o, key, &f), "no field %s", key);
    cr_assert(json_object_is_type(f, json_type_string), "field %s is not a string", key);
    return json_object_get_string(f);
}

Test(log, line_has_level_ts_msg_and_key_values)
{
    log_info("reconciled", "namespace", "ns1", "name", "claim-a", "reconcileID", "0f3e", NULL);
    size_t n;
    json_object **lines = read_lines(g_file, &n);
    cr_assert_eq(n, 1);
    json_object *o = lines[0];
    cr_assert_str_eq(str_field(o, "level"), "info");
    cr_assert_str_eq(str_field(o, "msg"), "reconciled");
    cr_assert_str_eq(str_field(o, "namespace"), "ns1");
    cr_assert_str_eq(str_field(o, "name"), "claim-a");
    cr_assert_str_eq(str_field(o, "reconcileID"), "0f3e");
    cr_assert_not(json_object_object_get_ex(o, "logger", NULL), "no logger when NULL");

    const char *ts = str_field(o, "ts");
    regex_t re;
    cr_assert_eq(regcomp(&re, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}Z$",
                         REG_EXTENDED | REG_NOSUB),
                 0);
    cr_assert_eq(regexec(&re, ts, 0, NULL, 0), 0, "ts %s is not RFC 3339 UTC", ts);
    regfree(&re);
    struct tm tm = {0};
    cr_assert_not_null(strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm));
    double age = difftime(time(NULL), timegm(&tm));
    cr_assert(age >= -1 && age < 60, "ts is %f s off", age);
    free_lines(lines, n);
}

Test(log, logger_name_and_typed_values)
{
    log_write(PLOG_ERROR, "ippool", "reconcile failed", "error", "conflict",
              LOG_INT("worker count", 4), LOG_INT("big", -9000000000LL), LOG_DBL("seconds", 0.25),
              LOG_BOOL("requeue", 1), "missing", NULL, NULL);
    size_t n;
    json_object **lines = read_lines(g_file, &n);
    cr_assert_eq(n, 1);
    json_object *o = lines[0], *f;
    cr_assert_str_eq(str_field(o, "level"), "error");
    cr_assert_str_eq(str_field(o, "logger"), "ippool");
    cr_assert_str_eq(str_field(o, "error"), "conflict");
    cr_assert(json_object_object_get_ex(o, "worker count", &f));
    cr_assert(json_object_is_type(f, json_type_int));
    cr_assert_eq(json_object_get_int64(f), 4);
    cr_assert(json_object_object_get_ex(o, "big", &f));
    cr_assert_eq(json_object_get_int64(f), -9000000000LL);
    cr_assert(json_object_object_get_ex(o, "seconds", &f));
    cr_assert(json_object_is_type(f, json_type_double));
    cr_assert_eq(json_object_get_double(f), 0.25);
    cr_assert(json_object_object_get_ex(o, "requeue", &f));
    cr_assert(json_object_is_type(f, json_type_boolean));
    cr_assert(json_object_get_boolean(f));
    cr_assert(json_object_object_get_ex(o, "missing", &f));
    cr_assert_null(f, "a NULL value is JSON null");
    free_lines(lines, n);
}

Test(log, quotes_newlines_and_control_characters_are_escaped)
{
    const char *nasty = "say \"hi\"\\ back\nnext\tline\r\x01\x1f\x7f caf\xc3\xa9 \xe2\x82\xac";
    log_info(nasty, "key \"q\"", nasty, NULL);
    fflush(g_file);
    rewind(g_file);
    char *raw = NULL;
    size_t cap = 0;
    cr_assert_gt(getline(&raw, &cap, g_file), 0);
    cr_assert_null(strchr(raw, '\t'), "raw control characters must not appear");
    cr_assert_null(strchr(raw, '\r'));
    cr_assert_not_null(strstr(raw, "\\u0001"));
    cr_assert_not_null(strstr(raw, "\\u001f"));
    free(raw);

    size_t n;
    json_object **lines = read_lines(g_file, &n);
    cr_assert_eq(n, 1, "an embedded newline must not split the line");
    cr_assert_str_eq(str_field(lines[0], "msg"), nasty);
    cr_assert_str_eq(str_field(lines[0], "key \"q\""), nasty);
    free_lines(lines, n);
}

Test(log, invalid_utf8_becomes_replacement_characters)
{
    /* A stray continuation byte, a truncated sequence, an overlong '/', a surrogate. */
    log_info("a\x80"
             "b\xe2\x82"
             "c\xc0\xaf"
             "d\xed\xa0\x80"
             "e",
             NULL);
    size_t n;
    json_object **lines = read_lines(g_file, &n);
    cr_assert_eq(n, 1);
    const char *msg = str_field(lines[0], "msg");
    /* Each bad byte is one U+FFFD (EF BF BD). */
    cr_assert_str_eq(msg, "a\xef\xbf\xbd"
                          "b\xef\xbf\xbd\xef\xbf\xbd"
                          "c\xef\xbf\xbd\xef\xbf\xbd"
                          "d\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                          "e");
    free_lines(lines, n);
}

/* Lines around the first buffer size (256 bytes) and far past it come out whole. */
Test(log, lines_of_every_length_around_the_buffer_growth_are_whole)
{
    char msg[400];
    for (size_t len = 150; len < sizeof msg; len++) {
        for (size_t i = 0; i < len; i++)
            msg[i] = (char)('a' + i % 26);
        msg[len] = '\0';
        log_info(msg, NULL);
    }
    /* 100,000 bytes of which every other one is escaped: many doublings. */
    size_t big_n = 100000;
    char *big = malloc(big_n + 1);
    cr_assert_not_null(big);
    for (size_t i = 0; i < big_n; i++)
        big[i] = i % 2 ? '"' : 'x';
    big[big_n] = '\0';
    log_info("big", "value", big, NULL);

    size_t n;
    json_object **lines = read_lines(g_file, &n);
    cr_assert_eq(n, sizeof msg - 150 + 1);
    for (size_t len = 150; len < sizeof msg; len++) {
        const char *got = str_field(lines[len - 150], "msg");
        cr_assert_eq(strlen(got), len);
        for (size_t i = 0; i < len; i++)
            cr_assert_eq(got[i], (char)('a' + i % 26), "msg of %zu bytes differs at %zu", len, i);
    }
    cr_assert_str_eq(str_field(lines[n - 1], "value"), big);
    free_lines(lines, n);
    free(big);
}

Test(log, threshold_filters_levels)
{
    log_debug("hidden", NULL);
    log_info("shown", NULL);
    cr_assert_not(log_enabled(PLOG_DEBUG));
    log_set_level(PLOG_DEBUG);
    cr_assert(log_enabled(PLOG_DEBUG));
    log_debug("now shown", NULL);
    log_set_level(PLOG_ERROR);
    log_info("hidden too", NULL);
    log_error("error shown", NULL);
    log_set_level(PLOG_OFF);
    log_error("nothing at all", NULL);
    cr_assert_not(log_enabled(PLOG_ERROR));
    size_t n;
    json_object **lines = read_lines(g_file, &n);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(str_field(lines[0], "msg"), "shown");
    cr_assert_str_eq(str_field(lines[1], "msg"), "now shown");
    cr_assert_str_eq(str_field(lines[1], "level"), "debug");
    cr_assert_str_eq(str_field(lines[2], "msg"), "error shown");
    free_lines(lines, n);
}

Test(log, zap_log_level_values_parse)
{
    plog_level l;
    cr_assert_eq(log_parse_level("debug", &l), 0);
    cr_assert_eq(l, PLOG_DEBUG);
    cr_assert_eq(log_parse_level("info", &l), 0);
    cr_assert_eq(l, PLOG_INFO);
    cr_assert_eq(log_parse_level("error", &l), 0);
    cr_assert_eq(l, PLOG_ERROR);
    cr_assert_eq(log_parse_level("panic", &l), 0);
    cr_assert_eq(l, PLOG_OFF);
    cr_assert_eq(log_parse_level("0", &l), 0);
    cr_assert_eq(l, PLOG_INFO);
    cr_assert_eq(log_parse_level("3", &l), 0);
    cr_assert_eq(l, PLOG_DEBUG);
    cr_assert_eq(log_parse_level("", &l), KC_ERR_INVALID_ARG);
    cr_assert_eq(log_parse_level("warn", &l), KC_ERR_INVALID_ARG);
    cr_assert_eq(log_parse_level("-1", &l), KC_ERR_INVALID_ARG);
    cr_assert_str_eq(log_level_name(PLOG_ERROR), "error");
}

#define NTHREADS 8
#define NLINES 500

static void *writer(void *p)
{
    int id = (int)(intptr_t)p;
    /* Long values so a line is far bigger than stdio's or a pipe's atomic unit. */
    char *pad = malloc(9000);
    memset(pad, 'a' + id, 8999);
    pad[8999] = '\0';
    for (int i = 0; i < NLINES; i++)
        log_info("line", LOG_INT("thread", id), LOG_INT("seq", i), "pad", pad, NULL);
    free(pad);
    return NULL;
}

Test(log, lines_from_8_threads_never_interleave)
{
    pthread_t t[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, writer, (void *)(intptr_t)i), 0);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    size_t n;
    json_object **lines = read_lines(g_file, &n); /* every line parses whole */
    cr_assert_eq(n, NTHREADS * NLINES);
    int next[NTHREADS] = {0};
    for (size_t i = 0; i < n; i++) {
        json_object *f;
        cr_assert(json_object_object_get_ex(lines[i], "thread", &f));
        int id = json_object_get_int(f);
        cr_assert(json_object_object_get_ex(lines[i], "seq", &f));
        cr_assert_eq(json_object_get_int(f), next[id]++, "thread %d lines out of order", id);
        cr_assert_eq(strlen(str_field(lines[i], "pad")), 8999);
    }
    free_lines(lines, n);
}

Test(log, default_output_is_stderr_with_one_write_per_line)
{
    log_set_output(NULL);
    FILE *capture = tmpfile();
    int saved = dup(STDERR_FILENO);
    cr_assert(dup2(fileno(capture), STDERR_FILENO) >= 0);
    log_info("to stderr", "k", "v", NULL);
    dup2(saved, STDERR_FILENO);
    close(saved);
    size_t n;
    json_object **lines = read_lines(capture, &n);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(str_field(lines[0], "msg"), "to stderr");
    cr_assert_str_eq(str_field(lines[0], "k"), "v");
    free_lines(lines, n);
    fclose(capture);
}
