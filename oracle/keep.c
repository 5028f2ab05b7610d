/*
 * keep.c -- `check` / `compare --keep FILE`: every per-cell array the
 * verdicts read, spilled to an HDF5 file as each layer is judged
 * (docs/SCALING.md "What a run keeps", docs/FORMAT.md "Keep files").
 *
 * The run stays streamed: a layer's arrays go to the file when its verdict
 * is made and are freed by the run as before, so --keep costs disk and
 * write time, not memory.  The file is written under a temporary name
 * beside the target (core/safeout.c) and renamed over it only when the run
 * ends well; a failed write is reported once, at the end, naming the file.
 *
 * Layout (one group per judged tensor and judgement):
 *   /end_to_end/NNNN_name/   the subject's relevance against the reference
 *   /local/NNNN_name/        against the reference's step on the subject's
 *                            own relevance (trace-local judgement)
 *   /local_forward/NNNN_name/ the subject's activations against the
 *                            reference's step on its own inputs
 * each with datasets (batch, *shape) of the tensor:
 *   subject, reference_hi, reference_lo (reference = hi + lo), float32;
 *   bound, sharp (the rigorous and the sharp bound, in units of
 *   u = 2^-24), cond, sharp_cond, float32; flags (uint8, LRP_CELL_* of
 *   oracle/oracle.h),
 * the arrays the judgement had (a missing one is left out), and string
 * attributes name and cells_verdict (the worst cell's verdict; the
 * layer-level checks -- gross errors, totals -- are in the report).
 */
#include "check.h"
#include "h5io_int.h"
#include "safeout.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct lrp_keep {
    lrp_out out;
    hid_t file, grp[3];
    int failed;
    char why[1200];
};

static const char *const GROUPS[3] = {"end_to_end", "local", "local_forward"};

static void keep_fail(lrp_keep *k, const char *obj, const char *what)
{
    if (!k->failed)
        snprintf(k->why, sizeof k->why, "%s: %s: %s", k->out.name, obj, what);
    k->failed = 1;
}

lrp_status lrp_keep_open(lrp_keep **kp, const char *path, lrp_err *err)
{
    *kp = NULL;
    lrp_keep *k = calloc(1, sizeof *k);
    if (!k)
        return lrp_err_set(err, LRP_E_NOMEM, "%s: out of memory", path);
    k->file = H5I_INVALID_HID;
    for (int g = 0; g < 3; g++)
        k->grp[g] = H5I_INVALID_HID;
    lrp_status st = lrp_out_open(&k->out, path, err);
    if (st) {
        free(k);
        return st;
    }
    if (k->out.through) {
        lrp_out_abort(&k->out);
        free(k);
        return lrp_err_set(err, LRP_E_USAGE,
                           "%s: --keep needs a regular file (an HDF5 file cannot be streamed)",
                           path);
    }
    H5E_auto2_t f = NULL;
    void *d = NULL;
    H5Eget_auto2(H5E_DEFAULT, &f, &d);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    if (fcpl >= 0)
        H5Pset_obj_track_times(fcpl, 0);
    k->file = H5Fcreate(k->out.tmp, H5F_ACC_TRUNC, fcpl >= 0 ? fcpl : H5P_DEFAULT, H5P_DEFAULT);
    if (fcpl >= 0)
        H5Pclose(fcpl);
    for (int g = 0; g < 3 && k->file >= 0; g++)
        k->grp[g] = H5Gcreate2(k->file, GROUPS[g], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Eset_auto2(H5E_DEFAULT, f, d);
    if (k->file < 0 || k->grp[2] < 0) {
        lrp_keep_abort(k);
        return lrp_err_set(err, LRP_E_IO, "%s: cannot create the HDF5 file", path);
    }
    *kp = k;
    return LRP_OK;
}

static void w_str_attr(lrp_keep *k, hid_t obj, const char *opath, const char *name,
                       const char *v)
{
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR), a = H5I_INVALID_HID;
    if (t < 0 || sp < 0 || H5Tset_size(t, H5T_VARIABLE) < 0 ||
        H5Tset_cset(t, H5T_CSET_UTF8) < 0 ||
        (a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        H5Awrite(a, t, &v) < 0)
        keep_fail(k, opath, "cannot write an attribute");
    if (a >= 0)
        H5Aclose(a);
    if (sp >= 0)
        H5Sclose(sp);
    if (t >= 0)
        H5Tclose(t);
}

static void w_arr(lrp_keep *k, hid_t g, const char *gpath, const char *name, int rank,
                  const hsize_t *dims, hid_t ftype, hid_t mtype, const void *v)
{
    if (!v || k->failed)
        return;
    hid_t sp = H5Screate_simple(rank, dims, NULL), ds = H5I_INVALID_HID;
    if (sp < 0 ||
        (ds = H5Dcreate2(g, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) {
        char p[600];
        snprintf(p, sizeof p, "%s/%s", gpath, name);
        keep_fail(k, p, "cannot write the dataset (disk full?)");
    }
    if (ds >= 0)
        H5Dclose(ds);
    if (sp >= 0)
        H5Sclose(sp);
}

void lrp_keep_layer(lrp_keep *k, lrp_keep_kind kind, const lrp_net *net, int li,
                    const float *subject, const lrp_cell_ref *ref, lrp_verdict v)
{
    if (!k || k->failed || kind < 0 || kind > 2)
        return;
    char ename[300], gpath[400];
    lrp_h5_entry_name(ename, sizeof ename, li, net->layers[li].name);
    snprintf(gpath, sizeof gpath, "/%s/%s", GROUPS[kind], ename);
    hsize_t dims[LRP_MAX_RANK + 1];
    const lrp_shape *s = &net->layers[li].shape;
    dims[0] = (hsize_t)net->batch;
    for (int d = 0; d < s->rank; d++)
        dims[d + 1] = (hsize_t)s->d[d];
    int rank = s->rank + 1;
    H5E_auto2_t f = NULL;
    void *cd = NULL;
    H5Eget_auto2(H5E_DEFAULT, &f, &cd);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t g = H5Gcreate2(k->grp[kind], ename, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) {
        keep_fail(k, gpath, "cannot create the group");
    } else {
        w_str_attr(k, g, gpath, "name", net->layers[li].name);
        w_str_attr(k, g, gpath, "cells_verdict", lrp_verdict_name(v));
        w_arr(k, g, gpath, "subject", rank, dims, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, subject);
        w_arr(k, g, gpath, "reference_hi", rank, dims, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, ref->hi);
        w_arr(k, g, gpath, "reference_lo", rank, dims, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, ref->lo);
        w_arr(k, g, gpath, "bound", rank, dims, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, ref->bound);
        w_arr(k, g, gpath, "sharp", rank, dims, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, ref->sharp);
        w_arr(k, g, gpath, "cond", rank, dims, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, ref->cond);
        w_arr(k, g, gpath, "sharp_cond", rank, dims, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT,
              ref->scond);
        w_arr(k, g, gpath, "flags", rank, dims, H5T_STD_U8LE, H5T_NATIVE_UINT8, ref->cflags);
        H5Gclose(g);
    }
    H5Eset_auto2(H5E_DEFAULT, f, cd);
}

static void keep_close(lrp_keep *k)
{
    for (int g = 0; g < 3; g++)
        if (k->grp[g] >= 0) {
            H5Gclose(k->grp[g]);
            k->grp[g] = H5I_INVALID_HID;
        }
    if (k->file >= 0) {
        if (H5Fclose(k->file) < 0)
            keep_fail(k, "/", "cannot close the HDF5 file (disk full?)");
        k->file = H5I_INVALID_HID;
    }
}

lrp_status lrp_keep_commit(lrp_keep *k, const char *label, const char *source, lrp_err *err)
{
    if (!k)
        return LRP_OK;
    H5E_auto2_t f = NULL;
    void *cd = NULL;
    H5Eget_auto2(H5E_DEFAULT, &f, &cd);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (!k->failed && k->file >= 0) {
        w_str_attr(k, k->file, "/", "format", "lrp-oracle keep 1");
        w_str_attr(k, k->file, "/", "fixture", label ? label : "");
        w_str_attr(k, k->file, "/", "source", source ? source : "fastpath");
        w_str_attr(k, k->file, "/", "bound_unit", "u = 2^-24: |subject - reference| <= bound * u");
    }
    keep_close(k);
    H5Eset_auto2(H5E_DEFAULT, f, cd);
    lrp_status st = LRP_OK;
    if (k->failed) {
        st = lrp_err_set(err, LRP_E_IO, "%s", k->why);
        lrp_out_abort(&k->out);
    } else {
        st = lrp_out_commit(&k->out, err);
    }
    free(k);
    return st;
}

void lrp_keep_abort(lrp_keep *k)
{
    if (!k)
        return;
    H5E_auto2_t f = NULL;
    void *cd = NULL;
    H5Eget_auto2(H5E_DEFAULT, &f, &cd);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    keep_close(k);
    H5Eset_auto2(H5E_DEFAULT, f, cd);
    lrp_out_abort(&k->out);
    free(k);
}
