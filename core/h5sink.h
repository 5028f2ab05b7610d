/*
 * h5sink.h -- the writer's HDF5 file driver (core/h5sink.c): raw data to
 * the output file as it is written, metadata in memory until the close.
 */
#ifndef LRP_H5SINK_H
#define LRP_H5SINK_H

#include <hdf5.h>
#include <stdint.h>

typedef struct lrp_h5_sink {
    int fd;                    /* the output (a regular file, opened for writing) */
    int err;                   /* errno of the first failed write, 0 */
    uint64_t kick_lo, kick_hi; /* written since the last sync_file_range */
} lrp_h5_sink;

/* Sets fapl to write through s (which must outlive the file).  Negative on
 * failure (libhdf5's error stack says why). */
herr_t lrp_h5_sink_set(hid_t fapl, lrp_h5_sink *s);

#endif
