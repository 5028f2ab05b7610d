/*
 * safeout.h -- writing an output file without losing what the user has
 * (docs/RELIABILITY.md, "Outputs").  Every file the project writes (JSON and
 * JUnit reports, fixtures) goes through it:
 *
 *   - "-" (and /dev/stdout, /dev/stderr, /dev/fd/N, /proc/self/fd/N) is the
 *     process's own descriptor, written through;
 *   - a path that is not a regular file (FIFO, character device, ...) is
 *     opened and written through: never replaced;
 *   - a symlink is followed to its final target; the temporary file is made
 *     beside the target and renamed over it (the link stays a link);
 *   - a regular file is replaced atomically: temporary file in the same
 *     directory, fsync, rename; an existing file keeps its mode (and, when
 *     permitted, owner), a new one gets 0666 & ~umask;
 *   - an existing read-only file, or one with more than one hard link (a
 *     rename would split the links), is refused (LRP_E_USAGE), untouched;
 *   - temporary files are named ".NAME.lrp-tmp.PID.XXXXXX" (NAME shortened
 *     so the whole name fits NAME_MAX); those of a dead PID left by a killed
 *     writer of the same target are removed on the next write.
 */
#ifndef LRP_SAFEOUT_H
#define LRP_SAFEOUT_H

#include <stddef.h>
#include <sys/stat.h>

#include "lrp.h"

typedef struct lrp_out {
    const char *name; /* as the user spelt it (messages) */
    char *target;     /* the file written: symlinks resolved (malloc'ed) */
    char *tmp;        /* temporary file beside target; NULL when written through */
    int fd;           /* -1 when closed */
    int through;      /* written directly (stdout, FIFO, device) */
    int exists;       /* target existed as a regular file */
    struct stat st;   /* its status then */
} lrp_out;

/* Marker in temporary file names (tests look for it). */
#define LRP_TMP_MARK ".lrp-tmp."

lrp_status lrp_out_open(lrp_out *o, const char *path, lrp_err *err);
/* Writes all n bytes (retries short writes and EINTR). */
lrp_status lrp_out_write(lrp_out *o, const void *buf, size_t n, lrp_err *err);
/* Makes the output final (sync, mode, rename).  On failure the temporary
 * file is removed and an existing target is left untouched. */
lrp_status lrp_out_commit(lrp_out *o, lrp_err *err);
/* Discards a temporary file (no-op after commit). */
void lrp_out_abort(lrp_out *o);

/* 1 when path names the process's stdout ("-", /dev/stdout, /dev/fd/1):
 * the caller then keeps its own messages off stdout. */
int lrp_out_is_stdout(const char *path);

/* 1 when both paths name the same existing file (device and inode, symlinks
 * followed), else 0. */
int lrp_same_file(const char *a, const char *b);

#endif
