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

#endif
