/*
 * fuzz_common.h -- shared by the libFuzzer harnesses: the input bytes go to
 * a fresh file on tmpfs ($LRP_FUZZ_DIR, else /dev/shm, or $TMPDIR when
 * /dev/shm is missing), the
 * loader under test reads that path, and after every input the harness
 * checks that the loader closed every HDF5 identifier it opened (a leaked id
 * keeps the file open inside libhdf5: a real bug, reported as a crash).
 */
#ifndef LRP_FUZZ_COMMON_H
#define LRP_FUZZ_COMMON_H

#include <hdf5.h>

#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lrp.h"

static char fz_path[256];

/* the last input's file goes with the process (libFuzzer ends with exit);
 * a crash leaves it, as the input to reproduce */
static void fz_remove_input(void)
{
    if (fz_path[0])
        unlink(fz_path);
}

/* Writes data to a new file (unlinking the previous one first, so libhdf5
 * never sees a reused inode); returns the path or NULL. */
static const char *fz_write_input(const uint8_t *data, size_t size)
{
    if (!fz_path[0]) {
        /* fuzz/run.sh gives each run its own directory and removes it
         * (a fork-mode worker killed at the time limit leaves its file) */
        const char *dir = getenv("LRP_FUZZ_DIR");
        if (!dir)
            dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
        snprintf(fz_path, sizeof fz_path, "%s/lrp-fuzz-%ld.h5", dir ? dir : "/tmp",
                 (long)getpid());
        atexit(fz_remove_input);
    }
    unlink(fz_path);
    int fd = open(fz_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return NULL;
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(fd, data + off, size - off);
        if (w <= 0) {
            close(fd);
            return NULL;
        }
        off += (size_t)w;
    }
    close(fd);
    return fz_path;
}

/* The loader must leave no HDF5 object open, and its message must be one
 * non-empty line when it fails. */
static void fz_check_after(lrp_status st, const lrp_err *e, const char *what)
{
    ssize_t open_ids = H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (open_ids != 0) {
        fprintf(stderr, "%s: %ld HDF5 identifiers left open after the call (status %s)\n",
                what, (long)open_ids, lrp_status_name(st));
        abort();
    }
    if (st != LRP_OK) {
        if (!e->msg[0] || strchr(e->msg, '\n')) {
            fprintf(stderr, "%s: error message is empty or not one line: \"%s\"\n", what,
                    e->msg);
            abort();
        }
    }
}

static void fz_init(void)
{
    /* libhdf5's own error printer stays off even before the loader silences it */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

#endif
