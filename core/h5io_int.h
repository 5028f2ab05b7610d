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
