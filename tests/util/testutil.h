/*
 * testutil.h -- helpers shared by the cmocka test binaries: scratch
 * directories, stderr capture, file bytes, bitwise float comparison.
 * Include as "util/testutil.h" from a test file, after <cmocka.h> (the
 * assertion helpers report via fail_msg).
 */
#ifndef LRP_TESTUTIL_H
#define LRP_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Creates a fresh directory /tmp/lrp-<tag>-XXXXXX; returns a malloc'ed
 * path, or NULL (with a message on stderr) on failure. */
char *tu_mkdtemp(const char *tag);
/* Removes every entry of dir (one level, no recursion into subdirectories
 * except empty ones) and dir itself.  Returns 0 on success. */
int tu_rmtree(const char *dir);
/* dir + "/" + name into buf (n bytes); returns buf. */
char *tu_join(char *buf, size_t n, const char *dir, const char *name);
/* Number of entries of dir whose name contains `needle`. */
int tu_count_entries(const char *dir, const char *needle);

/* The directory `up` levels above this test binary (/proc/self/exe):
 * up = 2 gives BUILD for BUILD/tests/test_x, up = 3 its parent (normally
 * the source tree).  Returns 0, or -1 when the path cannot be read or has
 * fewer levels (buf then holds ""). */
int tu_exe_dir(char *buf, size_t n, int up);

/* Whole file into a malloc'ed buffer (*len bytes); NULL on failure. */
unsigned char *tu_read_file(const char *path, size_t *len);
int tu_write_file(const char *path, const void *data, size_t len);
/* 1 when both files exist and have identical bytes. */
int tu_files_equal(const char *a, const char *b);

/* Redirects stderr (fd 2) into a temporary file until tu_stderr_end, which
 * restores it and returns the number of bytes written meanwhile (and copies
 * up to n-1 of them into buf when buf != NULL). */
typedef struct tu_capture {
    int saved_fd;
    int file_fd;
} tu_capture;
int tu_stderr_begin(tu_capture *c);
size_t tu_stderr_end(tu_capture *c, char *buf, size_t n);

/* Bitwise float comparison: +0 != -0, NaNs equal only with equal bits. */
int tu_f32_same(float a, float b);
/* Fails the current cmocka test, naming `what` and the first index whose
 * bits differ. */
void tu_assert_f32_bits(const float *a, const float *b, size_t n, const char *what);

#endif
