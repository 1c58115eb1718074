/*
 * testenv - what tests share: paths of fixtures and, for the e2e tier, the
 * control plane started by the ctest fixture (KUBECONFIG, PROVISIO_KUBE_DIR).
 */
#ifndef PROVISIO_TESTENV_H
#define PROVISIO_TESTENV_H

#include <stddef.h>

/* Absolute path of tests/fixtures/<name>; malloc'd, caller frees. */
char *testenv_fixture_path(const char *name);

/* Read a whole file into a malloc'd NUL-terminated buffer; NULL on error. */
char *testenv_read_file(const char *path, size_t *len);

/* Write data to path (created/truncated, mode 0600). 0 ok, -1 on error. */
int testenv_write_file(const char *path, const char *data, size_t len);

/* A fresh private directory under $TMPDIR; malloc'd path, caller frees. */
char *testenv_tempdir(void);

/* Remove a directory tree made by testenv_tempdir (best effort). */
void testenv_rmtree(const char *path);

#endif
