/*
 * h5io_int.h -- internal constants of the HDF5 fixture format (docs/FORMAT.md),
 * shared by core/h5io.c and the tests that build malformed files by hand.
 */
#ifndef LRP_H5IO_INT_H
#define LRP_H5IO_INT_H

#include "lrp.h"

#include <stddef.h>

/* Root attribute `format`. */
#define LRP_FIXTURE_MAGIC "lrp-oracle-fixture"
#define LRP_TRACE_MAGIC "lrp-oracle-trace" /* a trace file referring to a fixture */

/* Member name of layer li under /network, /rules, .../relevance: the index
 * zero-padded to (at least) 3 digits, '_', the layer name, e.g. "003_conv1".
 * Writes at most n bytes including the NUL; returns what snprintf returns. */
int lrp_h5_entry_name(char *buf, size_t n, int li, const char *layer_name);

/* Most traces a file may hold (a bound for the reader, not a format limit
 * anyone should reach). */
#define LRP_H5_MAX_TRACES 1024

/* HDF5's Fletcher32 checksum of a chunk (the value H5_checksum_fletcher32
 * computes), as the writer stores it after each chunk. */
#include <stdint.h>
uint32_t lrp_h5_fletcher32(const void *data, size_t nbytes);

/* Called by the reader with every float32 array it has read, in the order
 * read (parameters layer by layer, input, relevance_out, zbox_low,
 * zbox_high, then per trace relevance, relevance_lo, activation layer by
 * layer): the sandboxed child streams them to the parent while it parses
 * (tools/sandbox.c).  Process-wide; NULL switches it off. */
void lrp_h5_set_array_hook(void (*fn)(void *ctx, const float *a, int64_t n), void *ctx);

/* Where a float32 dataset's values lie in the file, for a reader that
 * copies them itself (the sandbox's parent, tools/sandbox.c): either one
 * contiguous run of little-endian binary32 values (n_chunks 1, chunk =
 * dims), or a grid of chunks, each stored whole (values beyond the
 * dataset's edge are padding), listed in row-major grid order, each
 * followed by its Fletcher32 checksum when `fletcher` and bit 0 of its
 * filter mask is clear. */
#define LRP_H5_RAW_MAX_CHUNKS (1u << 20)
typedef struct lrp_h5_raw {
    const char *obj; /* the dataset's path in the file (for messages) */
    int rank;        /* 1 .. LRP_MAX_RANK + 1 */
    uint64_t dims[8], chunk[8];
    int fletcher;
    uint64_t n_chunks;
    uint64_t *addr, *size; /* per chunk: its byte address and stored size */
    uint32_t *mask;        /* per chunk: the filters skipped (bit i: filter i) */
} lrp_h5_raw;

/* With a raw hook set, a float32 dataset of the file whose (device,
 * inode) are (dev, ino) that is stored plainly (contiguous, or chunked
 * with no filter but Fletcher32; little-endian binary32; every chunk
 * allocated) is not read: the hook gets its description, and when it
 * returns 1 the reader's array is left as allocated, untouched, and the
 * values are not checked (lrp_net_check_values is the caller's, after it
 * filled the arrays).  Anything else is read as usual.  Process-wide;
 * NULL switches it off. */
void lrp_h5_set_raw_hook(int (*fn)(void *ctx, const lrp_h5_raw *r), void *ctx, uint64_t dev,
                         uint64_t ino);

/* A fixture write in two steps, so that the file can be built while the
 * caller computes the one trace it will hold last (lrp-oracle fast, on
 * another thread): begin checks the net, opens the output and writes
 * everything except the traces named `defer` (NULL: none deferred);
 * finish writes the net's traces of that name (the net may have gained
 * one, nothing else may change: the layers, arrays and other traces must
 * stay as they were, and must not be changed while begin runs), closes and
 * commits; abort discards.  finish and abort free the writer.  begin +
 * finish is lrp_fixture_write_ex (tref: a trace file), byte for byte;
 * with `defer` the file is the same as long as the deferred trace is the
 * net's last. */
typedef struct lrp_h5_writer lrp_h5_writer;
lrp_status lrp_h5_write_begin(lrp_h5_writer **out, const lrp_net *net, const char *path,
                              const lrp_trace_ref *tref, const char *defer, lrp_err *err);
lrp_status lrp_h5_write_finish(lrp_h5_writer *h, const lrp_net *net, lrp_err *err);
void lrp_h5_write_abort(lrp_h5_writer *h);

#endif
