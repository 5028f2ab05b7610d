/*
 * keras_import.h -- import a Keras .h5 model file (model_config JSON plus
 * model_weights/) as an lrp_net.  docs/KERAS.md lists the dialects and
 * layers accepted and the conversions made (NHWC -> NCHW, kernel layouts,
 * "same" padding made explicit, the Flatten order, fused activations).
 */
#ifndef LRP_KERAS_IMPORT_H
#define LRP_KERAS_IMPORT_H

#include "lrp.h"

/* Reads the Keras model at path and builds an inferred lrp_net computing
 * the same function (up to a dropped final softmax), parameters in binary32
 * exactly as stored.  The file is treated as untrusted: every object is
 * validated before allocating.  On failure *out is NULL and err holds one
 * line "PATH: OBJECT: problem" with LRP_E_IO, LRP_E_FORMAT, LRP_E_INVALID,
 * LRP_E_UNSUPPORTED or LRP_E_NOMEM.  net->description records the Keras
 * version, the dialect and any note (e.g. the dropped softmax).
 * HDF5's automatic error printer is silenced during the call and restored. */
lrp_status lrp_keras_import(lrp_net **out, const char *path, lrp_err *err);

#endif
