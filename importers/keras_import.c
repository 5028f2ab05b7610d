/*
 * keras_import.c -- Keras .h5 model files (tf.keras 2.x, Keras <= 2.2.2,
 * Keras 3 legacy .h5) to an lrp_net.  docs/KERAS.md is the user view.
 *
 * Conventions bridged (docs/KERAS.md "Layout"):
 *  - activations NHWC -> NCHW: Input (N,H,W,C) -> (C,H,W); channel axes of
 *    BatchNormalization / Concatenate are checked to be the channel axis;
 *  - Dense kernel (in, out) -> (out, in); Conv2D kernel (kh, kw, in/g, out)
 *    -> (out, in/g, kh, kw); DepthwiseConv2D (kh, kw, in, m) -> groups = in,
 *    out channel c*m + k (Keras' own order);
 *  - "same" padding -> explicit per-side padding by TensorFlow's rule
 *    (extra cell at the bottom/right), pools keep count_include_pad = 0;
 *  - Flatten order: Keras flattens (H, W, C), we flatten (C, H, W).  Each
 *    flat tensor carries a permutation perm[k] = our index of Keras element
 *    k; Dense (and BatchNormalization, Concatenate) consuming it get their
 *    input columns permuted, so the imported net computes the same function;
 *  - fused activations: "relu" becomes its own ReLU node "<name>_relu";
 *    "linear" none; "softmax" dropped only at the model output (LRP starts
 *    from the logits), noted in net->description; anything else rejected.
 *
 * Weights are assigned by order, as Keras does: the k-th layer of the config
 * that owns weights takes the k-th layer of model_weights/ whose weight_names
 * is not empty, and its arrays in weight_names order.  Every array's class,
 * rank and dims are checked against what the config implies before reading.
 */
#include "keras_import.h"
#include "graph_int.h"

#include <errno.h>
#include <hdf5.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define KJ_MAX_JSON ((size_t)64 << 20)  /* model_config bytes */
#define KJ_MAX_NAMES 100000             /* entries of a name list */
#define KJ_MAX_NAME_BYTES 4096          /* one layer or weight name */
#define KJ_MAX_WEIGHTS 8                /* arrays per layer we ever expect */

/* One Keras layer's output tensor as seen by the importer. */
typedef struct ktensor {
    int li;         /* lrp layer holding the value, -1 before emission */
    int64_t *perm;  /* flat tensors: perm[k] = our index of Keras element k;
                       NULL means identity */
    int is_pad;     /* output of ZeroPadding2D: li plus pending padding */
    int pad[4];     /* pending zero padding: top, bottom, left, right */
} ktensor;

typedef struct klayer {
    const char *name;
    const char *cls;
    json_t *cfg;           /* layer config object (borrowed from root) */
    json_t *shape_src;     /* implicit input: the batch shape array */
    int pos;               /* index in the config's layer list, -1 implicit */
    int n_in;
    int in[LRP_MAX_INPUTS];
    int widx;              /* index into the file's weighted layers, or -1 */
    int done;
    ktensor t;
} klayer;

typedef struct fwlayer {   /* a model_weights/ layer with weights */
    char *group;
    char **wnames;
    int nw;
} fwlayer;

typedef struct strlist {
    char **s;
    int n;
} strlist;

typedef struct wexp {      /* an expected weight array, Keras layout */
    const char *what;
    int rank;
    int64_t d[4];
} wexp;

typedef struct ctx {
    const char *path;
    lrp_err *err;
    hid_t file;
    json_t *root;
    klayer *kl;
    int nkl;
    int out;               /* the output klayer */
    int cf;                /* channels_first model */
    const char *dialect;
    lrp_net *net;
    fwlayer *fw;
    int nfw;
    char note[160];
} ctx;

/* ---------------------------------------------------------------- */
/* Errors                                                            */
/* ---------------------------------------------------------------- */

#if defined(__GNUC__)
#define KJ_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define KJ_PRINTF(a, b)
#endif

static lrp_status lfail(ctx *c, lrp_status st, int i, const char *fmt, ...) KJ_PRINTF(4, 5);
static lrp_status lfail(ctx *c, lrp_status st, int i, const char *fmt, ...)
{
    char m[LRP_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    const klayer *k = &c->kl[i];
    if (k->pos >= 0)
        return lrp_err_set(c->err, st, "%s: model_config: layer %d '%s' (%s): %s", c->path, k->pos,
                           k->name, k->cls, m);
    return lrp_err_set(c->err, st, "%s: model_config: implicit input layer '%s': %s", c->path,
                       k->name, m);
}

/* The innermost HDF5 error description, for appending to our message. */
static herr_t h5_walk_cb(unsigned n, const H5E_error2_t *e, void *data)
{
    if (n == 0 && e->desc)
        snprintf((char *)data, 160, "%s", e->desc);
    return 0;
}

static const char *h5_why(char *buf)
{
    buf[0] = '\0';
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, h5_walk_cb, buf);
    return buf[0] ? buf : "HDF5 error";
}

/* ---------------------------------------------------------------- */
/* HDF5 helpers                                                      */
/* ---------------------------------------------------------------- */

static void strlist_free(strlist *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->s[i]);
    free(l->s);
    l->s = NULL;
    l->n = 0;
}

/* Appends attribute `name` of obj (a string, or a 0/1-D array of strings,
 * fixed or variable length; an empty numeric array counts as no strings)
 * to out.  max_bytes bounds one string. */
static lrp_status read_strings(ctx *c, hid_t obj, const char *objname, const char *name,
                               size_t max_bytes, strlist *out)
{
    lrp_status st = LRP_OK;
    hid_t a = -1, t = -1, s = -1, mt = -1;
    char **v = NULL, *buf = NULL, why[160];
    hssize_t np = 0;

    a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) {
        st = lrp_err_set(c->err, LRP_E_FORMAT, "%s: %s: cannot open attribute '%s'", c->path,
                         objname, name);
        goto cleanup;
    }
    t = H5Aget_type(a);
    s = H5Aget_space(a);
    if (t < 0 || s < 0)
        goto h5fail;
    np = H5Sget_simple_extent_npoints(s);
    int nd = H5Sget_simple_extent_ndims(s);
    if (np < 0 || nd < 0)
        goto h5fail;
    if (H5Tget_class(t) != H5T_STRING) {
        if (np == 0)
            goto cleanup; /* Keras writes an empty float64 array for "no weights" */
        st = lrp_err_set(c->err, LRP_E_FORMAT, "%s: %s: attribute '%s' is not a string list",
                         c->path, objname, name);
        goto cleanup;
    }
    if (nd > 1 || np > KJ_MAX_NAMES || (int64_t)out->n + np > KJ_MAX_NAMES) {
        st = lrp_err_set(c->err, LRP_E_FORMAT,
                         "%s: %s: attribute '%s' has rank %d / %lld strings (at most 1-D, %d)",
                         c->path, objname, name, nd, (long long)np, KJ_MAX_NAMES);
        goto cleanup;
    }
    if (np == 0)
        goto cleanup;
    char **ns = realloc(out->s, (size_t)(out->n + np) * sizeof *ns);
    if (!ns)
        goto nomem;
    out->s = ns;
    htri_t vl = H5Tis_variable_str(t);
    if (vl < 0)
        goto h5fail;
    if (vl) {
        mt = H5Tcopy(H5T_C_S1);
        if (mt < 0 || H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Tset_cset(mt, H5Tget_cset(t)) < 0)
            goto h5fail;
        v = calloc((size_t)np, sizeof *v);
        if (!v)
            goto nomem;
        if (H5Aread(a, mt, v) < 0)
            goto h5fail;
        for (hssize_t k = 0; k < np; k++) {
            const char *src = v[k] ? v[k] : "";
            size_t len = strlen(src);
            if (len > max_bytes) {
                st = lrp_err_set(c->err, LRP_E_FORMAT,
                                 "%s: %s: attribute '%s': string %lld longer than %zu bytes",
                                 c->path, objname, name, (long long)k, max_bytes);
                goto cleanup;
            }
            char *d = malloc(len + 1);
            if (!d)
                goto nomem;
            memcpy(d, src, len + 1);
            out->s[out->n++] = d;
        }
    } else {
        size_t sz = H5Tget_size(t);
        if (sz == 0 || sz > max_bytes) {
            st = lrp_err_set(c->err, LRP_E_FORMAT,
                             "%s: %s: attribute '%s': string size %zu out of range [1, %zu]",
                             c->path, objname, name, sz, max_bytes);
            goto cleanup;
        }
        if ((size_t)np > (KJ_MAX_JSON * 2) / sz) {
            st = lrp_err_set(c->err, LRP_E_FORMAT, "%s: %s: attribute '%s' too large", c->path,
                             objname, name);
            goto cleanup;
        }
        mt = H5Tcopy(t);
        buf = malloc((size_t)np * sz + 1);
        if (mt < 0)
            goto h5fail;
        if (!buf)
            goto nomem;
        if (H5Aread(a, mt, buf) < 0)
            goto h5fail;
        for (hssize_t k = 0; k < np; k++) {
            const char *src = buf + (size_t)k * sz;
            size_t len = strnlen(src, sz);
            char *d = malloc(len + 1);
            if (!d)
                goto nomem;
            memcpy(d, src, len);
            d[len] = '\0';
            out->s[out->n++] = d;
        }
    }
    goto cleanup;
h5fail:
    st = lrp_err_set(c->err, LRP_E_FORMAT, "%s: %s: cannot read attribute '%s': %s", c->path,
                     objname, name, h5_why(why));
    goto cleanup;
nomem:
    st = lrp_err_set(c->err, LRP_E_NOMEM, "%s: %s: out of memory reading attribute '%s'", c->path,
                     objname, name);
cleanup:
    if (v) {
        for (hssize_t k = 0; k < np; k++)
            if (v[k])
                H5free_memory(v[k]);
        free(v);
    }
    free(buf);
    if (mt >= 0)
        H5Tclose(mt);
    if (t >= 0)
        H5Tclose(t);
    if (s >= 0)
        H5Sclose(s);
    if (a >= 0)
        H5Aclose(a);
    return st;
}

/* Keras' load_attributes_from_hdf5_group: `name`, or `name0`, `name1`, ...
 * when the list was too long for one attribute header message. */
static lrp_status read_name_list(ctx *c, hid_t obj, const char *objname, const char *name,
                                 strlist *out)
{
    htri_t ex = H5Aexists(obj, name);
    if (ex > 0)
        return read_strings(c, obj, objname, name, KJ_MAX_NAME_BYTES, out);
    char an[96];
    int chunk = 0;
    for (;; chunk++) {
        snprintf(an, sizeof an, "%s%d", name, chunk);
        if (H5Aexists(obj, an) <= 0)
            break;
        lrp_status st = read_strings(c, obj, objname, an, KJ_MAX_NAME_BYTES, out);
        if (st)
            return st;
    }
    if (chunk == 0)
        return lrp_err_set(c->err, LRP_E_FORMAT, "%s: %s: missing attribute '%s'", c->path,
                           objname, name);
    return LRP_OK;
}

/* Every component of rel (relative to obj) must be a hard link: no soft or
 * external link may lead the reader to another object or another file. */
static lrp_status check_hard_path(ctx *c, hid_t obj, const char *rel, const char *shown)
{
    char buf[KJ_MAX_NAME_BYTES + 1];
    size_t n = strlen(rel);
    if (n == 0 || n > KJ_MAX_NAME_BYTES || rel[0] == '/')
        return lrp_err_set(c->err, LRP_E_FORMAT, "%s: %s: bad object path", c->path, shown);
    memcpy(buf, rel, n + 1);
    for (size_t k = 0; k <= n; k++) {
        if (buf[k] != '/' && buf[k] != '\0')
            continue;
        char save = buf[k];
        buf[k] = '\0';
        H5L_info_t info;
        if (k == 0 || buf[k - 1] == '/' || H5Lexists(obj, buf, H5P_DEFAULT) <= 0 ||
            H5Lget_info(obj, buf, &info, H5P_DEFAULT) < 0)
            return lrp_err_set(c->err, LRP_E_FORMAT, "%s: %s: missing object", c->path, shown);
        if (info.type != H5L_TYPE_HARD)
            return lrp_err_set(c->err, LRP_E_FORMAT,
                               "%s: %s: soft or external link (only hard links are followed)",
                               c->path, shown);
        buf[k] = save;
    }
    return LRP_OK;
}

static void dims_str(char *buf, size_t n, int rank, const int64_t *d)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, n - o, "(");
    for (int k = 0; k < rank && o < n; k++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", k ? ", " : "", (long long)d[k]);
    if (o < n)
        snprintf(buf + o, n - o, ")");
}

/* Reads one weight array, checked against e; *out malloc'ed, Keras layout. */
static lrp_status read_weight(ctx *c, hid_t g, const char *gname, const char *wname,
                              const wexp *e, const char *lname, float **out)
{
    lrp_status st = LRP_OK;
    hid_t d = -1, t = -1, s = -1, pl = -1;
    double *tmp = NULL;
    float *v = NULL;
    char shown[2 * KJ_MAX_NAME_BYTES + 32], why[160], b1[96], b2[96];
    snprintf(shown, sizeof shown, "model_weights/%s/%s", gname, wname);

    if ((st = check_hard_path(c, g, wname, shown)))
        goto cleanup;
    d = H5Dopen2(g, wname, H5P_DEFAULT);
    if (d < 0) {
        st = lrp_err_set(c->err, LRP_E_FORMAT, "%s: %s: not a dataset (%s)", c->path, shown,
                         h5_why(why));
        goto cleanup;
    }
    t = H5Dget_type(d);
    s = H5Dget_space(d);
    pl = H5Dget_create_plist(d);
    if (t < 0 || s < 0 || pl < 0)
        goto h5fail;
    int f32 = 0, f64 = 0;
    if (H5Tget_class(t) != H5T_FLOAT) {
        st = lrp_err_set(c->err, LRP_E_FORMAT, "%s: %s: not a floating-point dataset", c->path,
                         shown);
        goto cleanup;
    }
    f32 = H5Tequal(t, H5T_IEEE_F32LE) > 0 || H5Tequal(t, H5T_IEEE_F32BE) > 0;
    f64 = H5Tequal(t, H5T_IEEE_F64LE) > 0 || H5Tequal(t, H5T_IEEE_F64BE) > 0;
    if (!f32 && !f64) {
        size_t sz = H5Tget_size(t);
        st = lrp_err_set(c->err, LRP_E_UNSUPPORTED,
                         "%s: %s: %s weights (%zu-byte float); only float32 (or float64 holding "
                         "float32 values) is accepted",
                         c->path, shown, sz == 2 ? "float16" : "non-IEEE", sz);
        goto cleanup;
    }
    if (H5Sget_simple_extent_type(s) != H5S_SIMPLE) {
        st = lrp_err_set(c->err, LRP_E_FORMAT, "%s: %s: not a simple array", c->path, shown);
        goto cleanup;
    }
    int nd = H5Sget_simple_extent_ndims(s);
    if (nd < 1 || nd > 4) {
        st = lrp_err_set(c->err, LRP_E_INVALID,
                         "%s: %s: rank %d, expected rank %d for the %s of layer '%s'", c->path,
                         shown, nd, e->rank, e->what, lname);
        goto cleanup;
    }
    hsize_t hd[4];
    int64_t dd[4];
    H5Sget_simple_extent_dims(s, hd, NULL);
    int64_t n = 1;
    int same = nd == e->rank;
    for (int k = 0; k < nd; k++) {
        dd[k] = (hd[k] > (hsize_t)LRP_MAX_DIM) ? LRP_MAX_DIM + 1 : (int64_t)hd[k];
        same = same && dd[k] == e->d[k];
    }
    if (!same) {
        dims_str(b1, sizeof b1, nd, dd);
        dims_str(b2, sizeof b2, e->rank, e->d);
        st = lrp_err_set(c->err, LRP_E_INVALID,
                         "%s: %s: shape %s, expected %s for the %s of layer '%s'", c->path, shown,
                         b1, b2, e->what, lname);
        goto cleanup;
    }
    for (int k = 0; k < nd; k++)
        n *= dd[k]; /* == expected shape, already bounded by lrp_net inference */
    if (n > LRP_MAX_ELEMS) {
        st = lrp_err_set(c->err, LRP_E_INVALID, "%s: %s: too many elements", c->path, shown);
        goto cleanup;
    }
    H5D_layout_t lay = H5Pget_layout(pl);
    if (lay == H5D_VIRTUAL || H5Pget_external_count(pl) != 0) {
        st = lrp_err_set(c->err, LRP_E_FORMAT,
                         "%s: %s: virtual or external storage is not read from untrusted files",
                         c->path, shown);
        goto cleanup;
    }
    v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    if (!v)
        goto nomem;
    if (f32) {
        if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0)
            goto h5fail;
    } else {
        /* float64: accepted only when every value is a binary32 number, so
         * the import stays exact (the oracle's parameters are binary32). */
        tmp = malloc((size_t)(n > 0 ? n : 1) * sizeof *tmp);
        if (!tmp)
            goto nomem;
        if (H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, tmp) < 0)
            goto h5fail;
        for (int64_t k = 0; k < n; k++) {
            v[k] = (float)tmp[k];
            if (isfinite(tmp[k]) && (double)v[k] != tmp[k]) {
                st = lrp_err_set(c->err, LRP_E_UNSUPPORTED,
                                 "%s: %s: float64 weights with value %.17g (index %lld) not exactly "
                                 "representable in float32; convert the model to float32",
                                 c->path, shown, tmp[k], (long long)k);
                goto cleanup;
            }
        }
    }
    for (int64_t k = 0; k < n; k++)
        if (!isfinite(v[k])) {
            st = lrp_err_set(c->err, LRP_E_INVALID, "%s: %s: non-finite value %g at flat index %lld",
                             c->path, shown, (double)v[k], (long long)k);
            goto cleanup;
        }
    *out = v;
    v = NULL;
    goto cleanup;
h5fail:
    st = lrp_err_set(c->err, LRP_E_FORMAT, "%s: %s: cannot read: %s", c->path, shown, h5_why(why));
    goto cleanup;
nomem:
    st = lrp_err_set(c->err, LRP_E_NOMEM, "%s: %s: out of memory", c->path, shown);
cleanup:
    free(tmp);
    free(v);
    if (pl >= 0)
        H5Pclose(pl);
    if (t >= 0)
        H5Tclose(t);
    if (s >= 0)
        H5Sclose(s);
    if (d >= 0)
        H5Dclose(d);
    return st;
}

/* Reads the n weights of klayer i (Keras order), checking count and shapes. */
static lrp_status load_weights(ctx *c, int i, int n, const wexp *e, float **out)
{
    klayer *k = &c->kl[i];
    lrp_status st = LRP_OK;
    char shown[KJ_MAX_NAME_BYTES + 32], list[256];
    hid_t g = -1;
    for (int j = 0; j < n; j++)
        out[j] = NULL;
    if (k->widx < 0 || k->widx >= c->nfw)
        return lfail(c, LRP_E_INVALID, i, "no weights in model_weights for this layer");
    fwlayer *f = &c->fw[k->widx];
    snprintf(shown, sizeof shown, "model_weights/%s", f->group);
    if (f->nw != n) {
        size_t o = 0;
        list[0] = '\0';
        for (int j = 0; j < n && o < sizeof list; j++)
            o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", j ? ", " : "", e[j].what);
        return lrp_err_set(c->err, LRP_E_INVALID,
                           "%s: %s: weight_names lists %d arrays, but %s '%s' (model_config layer "
                           "%d) has %d (%s)",
                           c->path, shown, f->nw, k->cls, k->name, k->pos, n, list);
    }
    if ((st = check_hard_path(c, c->file, shown, shown)))
        return st;
    g = H5Gopen2(c->file, shown, H5P_DEFAULT);
    if (g < 0) {
        char why[160];
        return lrp_err_set(c->err, LRP_E_FORMAT, "%s: %s: not a group (%s)", c->path, shown,
                           h5_why(why));
    }
    for (int j = 0; j < n && !st; j++)
        st = read_weight(c, g, f->group, f->wnames[j], &e[j], k->name, &out[j]);
    H5Gclose(g);
    if (st)
        for (int j = 0; j < n; j++) {
            free(out[j]);
            out[j] = NULL;
        }
    return st;
}

/* ---------------------------------------------------------------- */
/* JSON config accessors                                             */
/* ---------------------------------------------------------------- */

static json_t *jget(json_t *o, const char *key)
{
    return json_is_object(o) ? json_object_get(o, key) : NULL;
}

static lrp_status cfg_int(ctx *c, int i, const char *key, int has_def, int64_t def, int64_t lo,
                          int64_t hi, int64_t *out)
{
    json_t *v = jget(c->kl[i].cfg, key);
    if (!v || json_is_null(v)) {
        if (!has_def)
            return lfail(c, LRP_E_FORMAT, i, "config '%s' missing", key);
        *out = def;
        return LRP_OK;
    }
    if (!json_is_integer(v))
        return lfail(c, LRP_E_FORMAT, i, "config '%s' is not an integer", key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return lfail(c, LRP_E_INVALID, i, "config '%s' = %lld out of range [%lld, %lld]", key,
                     (long long)x, (long long)lo, (long long)hi);
    *out = (int64_t)x;
    return LRP_OK;
}

/* An int or a 2-element int list (kernel_size, strides, ...). */
static lrp_status cfg_pair(ctx *c, int i, const char *key, int has_def, const int *def, int lo,
                           int hi, int out[2])
{
    json_t *v = jget(c->kl[i].cfg, key);
    if (!v || json_is_null(v)) {
        if (!has_def)
            return lfail(c, LRP_E_FORMAT, i, "config '%s' missing", key);
        out[0] = def[0];
        out[1] = def[1];
        return LRP_OK;
    }
    json_int_t x[2];
    if (json_is_integer(v)) {
        x[0] = x[1] = json_integer_value(v);
    } else if (json_is_array(v) && json_array_size(v) == 2 &&
               json_is_integer(json_array_get(v, 0)) && json_is_integer(json_array_get(v, 1))) {
        x[0] = json_integer_value(json_array_get(v, 0));
        x[1] = json_integer_value(json_array_get(v, 1));
    } else {
        return lfail(c, LRP_E_FORMAT, i, "config '%s' is not an integer or a pair of integers",
                     key);
    }
    for (int k = 0; k < 2; k++) {
        if (x[k] < lo || x[k] > hi)
            return lfail(c, LRP_E_INVALID, i, "config '%s' = %lld out of range [%d, %d]", key,
                         (long long)x[k], lo, hi);
        out[k] = (int)x[k];
    }
    return LRP_OK;
}

static lrp_status cfg_bool(ctx *c, int i, const char *key, int def, int *out)
{
    json_t *v = jget(c->kl[i].cfg, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return LRP_OK;
    }
    if (!json_is_boolean(v))
        return lfail(c, LRP_E_FORMAT, i, "config '%s' is not a boolean", key);
    *out = json_is_true(v);
    return LRP_OK;
}

/* A string config value; def when absent or null; NULL (error set) else. */
static const char *cfg_str(ctx *c, int i, const char *key, const char *def, lrp_status *st)
{
    json_t *v = jget(c->kl[i].cfg, key);
    if (!v || json_is_null(v))
        return def;
    if (!json_is_string(v)) {
        *st = lfail(c, LRP_E_FORMAT, i, "config '%s' is not a string", key);
        return NULL;
    }
    return json_string_value(v);
}

/* A real (or integer) config value. */
static lrp_status cfg_real(ctx *c, int i, const char *key, double def, double *out)
{
    json_t *v = jget(c->kl[i].cfg, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return LRP_OK;
    }
    if (!json_is_number(v))
        return lfail(c, LRP_E_FORMAT, i, "config '%s' is not a number", key);
    *out = json_number_value(v);
    return LRP_OK;
}

/* ---------------------------------------------------------------- */
/* Graph emission helpers                                            */
/* ---------------------------------------------------------------- */

static int name_taken(ctx *c, const char *n)
{
    if (lrp_net_find(c->net, n) >= 0)
        return 1;
    for (int i = 0; i < c->nkl; i++)
        if (strcmp(c->kl[i].name, n) == 0)
            return 1;
    return 0;
}

/* "<base><suffix>", or with _2, _3, ... until free. */
static lrp_status aux_name(ctx *c, int i, const char *suffix, char *buf)
{
    const char *base = c->kl[i].name;
    if (strlen(base) + strlen(suffix) + 5 >= LRP_NAME_MAX)
        return lfail(c, LRP_E_UNSUPPORTED, i, "name too long to derive node '%s%s'", base, suffix);
    for (int k = 1; k < 1000; k++) {
        char tmp[2 * LRP_NAME_MAX + 16];
        if (k == 1)
            snprintf(tmp, sizeof tmp, "%s%s", base, suffix);
        else
            snprintf(tmp, sizeof tmp, "%s%s_%d", base, suffix, k);
        memcpy(buf, tmp, strlen(tmp) + 1); /* fits: length checked above */
        if (!name_taken(c, buf))
            return LRP_OK;
    }
    return lfail(c, LRP_E_INVALID, i, "cannot find a free name for node '%s%s'", base, suffix);
}

/* Appends a node with inputs; returns its index or -1 (err set). */
static int node(ctx *c, int i, lrp_layer_kind kind, const char *name, int n, const int *ins)
{
    lrp_err e;
    int li = lrp_net_add(c->net, kind, name, &e);
    if (li < 0) {
        lfail(c, e.code, i, "%s", e.msg);
        return -1;
    }
    lrp_layer *l = &c->net->layers[li];
    l->n_in = n;
    for (int k = 0; k < n; k++)
        l->in[k] = ins[k];
    return li;
}

static lrp_status infer(ctx *c, int li)
{
    return lrp_layer_infer(c->net, li, c->path, c->err);
}

static const lrp_shape *shape_of(ctx *c, int li)
{
    return &c->net->layers[li].shape;
}

static lrp_status perm_set(ctx *c, int i, ktensor *t, const int64_t *src, int64_t n)
{
    free(t->perm);
    t->perm = NULL;
    if (!src)
        return LRP_OK;
    t->perm = malloc((size_t)n * sizeof *t->perm);
    if (!t->perm)
        return lfail(c, LRP_E_NOMEM, i, "out of memory");
    memcpy(t->perm, src, (size_t)n * sizeof *t->perm);
    return LRP_OK;
}

/* Keras' element order equals ours for this tensor. */
static int order_native(ctx *c, const ktensor *t)
{
    const lrp_shape *s = shape_of(c, t->li);
    if (s->rank == 1)
        return t->perm == NULL;
    if (s->rank == 3)
        return c->cf || s->d[0] == 1 || s->d[1] * s->d[2] == 1;
    return 0;
}

/* TensorFlow's "same": total = max((ceil(in/s)-1)*s + (k-1)*d + 1 - in, 0),
 * the smaller half before. */
static void same_pad(int64_t in, int k, int s, int d, int *before, int *after)
{
    int64_t out = (in + s - 1) / s;
    int64_t total = (out - 1) * s + (int64_t)(k - 1) * d + 1 - in;
    if (total < 0)
        total = 0;
    *before = (int)(total / 2);
    *after = (int)(total - total / 2);
}

static lrp_status padding_mode(ctx *c, int i, int *same)
{
    lrp_status st = LRP_OK;
    const char *p = cfg_str(c, i, "padding", "valid", &st);
    if (!p)
        return st;
    if (strcasecmp(p, "valid") == 0)
        *same = 0;
    else if (strcasecmp(p, "same") == 0)
        *same = 1;
    else
        return lfail(c, LRP_E_UNSUPPORTED, i, "padding '%s' unsupported (valid, same)", p);
    return LRP_OK;
}

/* Input k of layer i as a value (rejects a pending ZeroPadding2D). */
static lrp_status input_value(ctx *c, int i, int k, ktensor **out)
{
    klayer *src = &c->kl[c->kl[i].in[k]];
    if (src->t.is_pad)
        return lfail(c, LRP_E_UNSUPPORTED, i,
                     "input '%s' is a ZeroPadding2D output; only a following Conv2D, "
                     "DepthwiseConv2D or SeparableConv2D can absorb zero padding",
                     src->name);
    *out = &src->t;
    return LRP_OK;
}

static lrp_status need_rank(ctx *c, int i, const ktensor *t, int rank)
{
    const lrp_shape *s = shape_of(c, t->li);
    if (s->rank != rank)
        return lfail(c, LRP_E_UNSUPPORTED, i, "needs a %s input, got a rank-%d tensor",
                     rank == 3 ? "4-D (batch + spatial)" : "2-D (batch, features)", s->rank + 1);
    return LRP_OK;
}

/* Fused activation of layer i applied to node li; sets kl[i].t.li. */
static lrp_status fused_activation(ctx *c, int i, int li, const char *act)
{
    char nm[LRP_NAME_MAX];
    lrp_status st;
    klayer *k = &c->kl[i];
    if (!act || strcmp(act, "linear") == 0) {
        k->t.li = li;
        return LRP_OK;
    }
    if (strcmp(act, "relu") == 0) {
        if ((st = aux_name(c, i, "_relu", nm)))
            return st;
        int r = node(c, i, LRP_LAYER_RELU, nm, 1, &li);
        if (r < 0)
            return c->err->code;
        k->t.li = r;
        return infer(c, r);
    }
    if (strcmp(act, "softmax") == 0 && i == c->out) {
        snprintf(c->note, sizeof c->note, "; final softmax of '%s' dropped (LRP starts from logits)",
                 k->name);
        k->t.li = li;
        return LRP_OK;
    }
    return lfail(c, LRP_E_UNSUPPORTED, i,
                 "activation '%s' unsupported (relu, linear; softmax only at the model output)",
                 act);
}

static lrp_status activation_of(ctx *c, int i, const char **act)
{
    json_t *v = jget(c->kl[i].cfg, "activation");
    if (!v || json_is_null(v)) {
        *act = NULL;
        return LRP_OK;
    }
    if (json_is_string(v)) {
        *act = json_string_value(v);
        return LRP_OK;
    }
    /* Keras 3 may serialize an activation object {"class_name": ...}. */
    json_t *cn = jget(v, "class_name");
    if (json_is_string(cn)) {
        const char *s = json_string_value(cn);
        if (strcmp(s, "ReLU") == 0 || strcmp(s, "relu") == 0) {
            *act = "relu";
            return LRP_OK;
        }
        return lfail(c, LRP_E_UNSUPPORTED, i, "activation object '%s' unsupported", s);
    }
    return lfail(c, LRP_E_FORMAT, i, "config 'activation' is not a string");
}

static lrp_status check_data_format(ctx *c, int i)
{
    lrp_status st = LRP_OK;
    const char *df = cfg_str(c, i, "data_format", NULL, &st);
    if (st)
        return st;
    if (df && strcmp(df, c->cf ? "channels_first" : "channels_last") != 0)
        return lfail(c, LRP_E_UNSUPPORTED, i, "data_format '%s' in a %s model", df,
                     c->cf ? "channels_first" : "channels_last");
    return LRP_OK;
}

/* ---------------------------------------------------------------- */
/* Class table                                                       */
/* ---------------------------------------------------------------- */

enum kcls {
    K_INPUT, K_DENSE, K_CONV, K_DWCONV, K_SEPCONV, K_MAXPOOL, K_AVGPOOL, K_GAP, K_GMP, K_ADD,
    K_CONCAT, K_BN, K_ACT, K_RELU, K_SOFTMAX, K_FLATTEN, K_RESHAPE, K_DROPOUT, K_ZEROPAD,
    K_NONE
};

static const struct {
    const char *name;
    enum kcls k;
} kclasses[] = {
    {"InputLayer", K_INPUT},
    {"Dense", K_DENSE},
    {"Conv2D", K_CONV},
    {"Convolution2D", K_CONV},
    {"DepthwiseConv2D", K_DWCONV},
    {"SeparableConv2D", K_SEPCONV},
    {"SeparableConvolution2D", K_SEPCONV},
    {"MaxPooling2D", K_MAXPOOL},
    {"MaxPool2D", K_MAXPOOL},
    {"AveragePooling2D", K_AVGPOOL},
    {"AvgPool2D", K_AVGPOOL},
    {"GlobalAveragePooling2D", K_GAP},
    {"GlobalAvgPool2D", K_GAP},
    {"GlobalMaxPooling2D", K_GMP},
    {"GlobalMaxPool2D", K_GMP},
    {"Add", K_ADD},
    {"Concatenate", K_CONCAT},
    {"BatchNormalization", K_BN},
    {"Activation", K_ACT},
    {"ReLU", K_RELU},
    {"Softmax", K_SOFTMAX},
    {"Flatten", K_FLATTEN},
    {"Reshape", K_RESHAPE},
    {"Dropout", K_DROPOUT},
    {"SpatialDropout2D", K_DROPOUT},
    {"GaussianDropout", K_DROPOUT},
    {"GaussianNoise", K_DROPOUT},
    {"AlphaDropout", K_DROPOUT},
    {"ZeroPadding2D", K_ZEROPAD},
};

static enum kcls class_of(const char *cls)
{
    for (size_t j = 0; j < sizeof kclasses / sizeof kclasses[0]; j++)
        if (strcmp(kclasses[j].name, cls) == 0)
            return kclasses[j].k;
    return K_NONE;
}

static int has_weights(enum kcls k)
{
    return k == K_DENSE || k == K_CONV || k == K_DWCONV || k == K_SEPCONV || k == K_BN;
}

/* ---------------------------------------------------------------- */
/* Layers                                                            */
/* ---------------------------------------------------------------- */

static lrp_status emit_input(ctx *c, int i)
{
    klayer *k = &c->kl[i];
    json_t *bs = k->shape_src;
    if (!bs && k->cfg) {
        bs = jget(k->cfg, "batch_input_shape");
        if (!bs)
            bs = jget(k->cfg, "batch_shape"); /* Keras 3 */
    }
    if (!json_is_array(bs))
        return lfail(c, LRP_E_FORMAT, i, "no batch_input_shape / batch_shape");
    size_t r = json_array_size(bs);
    if (r != 2 && r != 4)
        return lfail(c, LRP_E_UNSUPPORTED, i,
                     "input of rank %zu unsupported (2: (batch, features), 4: images)", r);
    int64_t d[4];
    for (size_t a = 1; a < r; a++) {
        json_t *v = json_array_get(bs, a);
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > LRP_MAX_DIM)
            return lfail(c, LRP_E_UNSUPPORTED, i,
                         "input dimension %zu is unknown (null) or out of range; the importer "
                         "needs a fixed input shape",
                         a);
        d[a] = (int64_t)json_integer_value(v);
    }
    int li = node(c, i, LRP_LAYER_INPUT, k->name, 0, NULL);
    if (li < 0)
        return c->err->code;
    lrp_layer *l = &c->net->layers[li];
    if (r == 2) {
        l->shape.rank = 1;
        l->shape.d[0] = d[1];
    } else if (c->cf) {
        l->shape.rank = 3;
        l->shape.d[0] = d[1];
        l->shape.d[1] = d[2];
        l->shape.d[2] = d[3];
    } else {
        l->shape.rank = 3;
        l->shape.d[0] = d[3];
        l->shape.d[1] = d[1];
        l->shape.d[2] = d[2];
    }
    k->t.li = li;
    return infer(c, li);
}

static lrp_status emit_dense(ctx *c, int i)
{
    klayer *k = &c->kl[i];
    ktensor *in = NULL;
    lrp_status st;
    int64_t units;
    int bias;
    const char *act;
    float *w[2];
    if ((st = input_value(c, i, 0, &in)) || (st = need_rank(c, i, in, 1)) ||
        (st = cfg_int(c, i, "units", 0, 0, 1, LRP_MAX_DIM, &units)) ||
        (st = cfg_bool(c, i, "use_bias", 1, &bias)) || (st = activation_of(c, i, &act)))
        return st;
    int li = node(c, i, LRP_LAYER_DENSE, k->name, 1, &in->li);
    if (li < 0)
        return c->err->code;
    lrp_layer *l = &c->net->layers[li];
    l->units = units;
    l->has_bias = bias;
    if ((st = infer(c, li)))
        return st;
    int64_t f = shape_of(c, in->li)->d[0];
    wexp e[2] = {{"kernel (in, out)", 2, {f, units}}, {"bias", 1, {units}}};
    if ((st = load_weights(c, i, bias ? 2 : 1, e, w)))
        return st;
    l = &c->net->layers[li];
    l->w = malloc((size_t)(units * f) * sizeof *l->w);
    if (!l->w) {
        free(w[0]);
        if (bias)
            free(w[1]);
        return lfail(c, LRP_E_NOMEM, i, "out of memory");
    }
    /* (in, out) -> (out, in), Keras input column q lands at our column perm[q]. */
    for (int64_t q = 0; q < f; q++) {
        int64_t col = in->perm ? in->perm[q] : q;
        for (int64_t o = 0; o < units; o++)
            l->w[o * f + col] = w[0][q * units + o];
    }
    free(w[0]);
    l->b = bias ? w[1] : NULL;
    return fused_activation(c, i, li, act);
}

/* Conv2D, DepthwiseConv2D and SeparableConv2D. */
static lrp_status emit_conv(ctx *c, int i, int kind) /* 0 conv, 1 depthwise, 2 separable */
{
    klayer *k = &c->kl[i];
    klayer *src = &c->kl[k->in[0]];
    const ktensor *in = &src->t;
    lrp_status st;
    int ks[2], str[2], dil[2], same, bias;
    int64_t filters = 0, groups = 1, mult = 1;
    const char *act;
    static const int one[2] = {1, 1};
    float *w[3] = {NULL, NULL, NULL};
    if ((st = need_rank(c, i, in, 3)) || (st = check_data_format(c, i)) ||
        (st = cfg_pair(c, i, "kernel_size", 0, NULL, 1, 4096, ks)) ||
        (st = cfg_pair(c, i, "strides", 1, one, 1, 4096, str)) ||
        (st = cfg_pair(c, i, "dilation_rate", 1, one, 1, 4096, dil)) ||
        (st = padding_mode(c, i, &same)) || (st = cfg_bool(c, i, "use_bias", 1, &bias)) ||
        (st = activation_of(c, i, &act)))
        return st;
    if (kind != 1 && (st = cfg_int(c, i, "filters", 0, 0, 1, LRP_MAX_DIM, &filters)))
        return st;
    if (kind == 0 && (st = cfg_int(c, i, "groups", 1, 1, 1, LRP_MAX_DIM, &groups)))
        return st;
    if (kind != 0 && (st = cfg_int(c, i, "depth_multiplier", 1, 1, 1, LRP_MAX_DIM, &mult)))
        return st;
    const lrp_shape *is = shape_of(c, in->li);
    int64_t cin = is->d[0];
    int pad[4] = {0, 0, 0, 0};
    if (in->is_pad)
        memcpy(pad, in->pad, sizeof pad);
    if (same) {
        int a, b;
        same_pad(is->d[1] + pad[0] + pad[1], ks[0], str[0], dil[0], &a, &b);
        pad[0] += a;
        pad[1] += b;
        same_pad(is->d[2] + pad[2] + pad[3], ks[1], str[1], dil[1], &a, &b);
        pad[2] += a;
        pad[3] += b;
    }
    if (kind == 0 && cin % groups != 0)
        return lfail(c, LRP_E_INVALID, i, "groups %lld do not divide %lld input channels",
                     (long long)groups, (long long)cin);
    if (kind != 0 && cin * mult > LRP_MAX_DIM)
        return lfail(c, LRP_E_INVALID, i, "depth_multiplier too large");

    int n = 0;
    wexp e[3];
    if (kind == 0) {
        e[n++] = (wexp){"kernel (kh, kw, in/groups, out)", 4, {ks[0], ks[1], cin / groups, filters}};
        if (bias)
            e[n++] = (wexp){"bias", 1, {filters}};
    } else {
        e[n++] = (wexp){"depthwise_kernel (kh, kw, in, depth_multiplier)", 4,
                        {ks[0], ks[1], cin, mult}};
        if (kind == 2)
            e[n++] = (wexp){"pointwise_kernel (1, 1, in*depth_multiplier, out)", 4,
                            {1, 1, cin * mult, filters}};
        if (bias)
            e[n++] = (wexp){"bias", 1, {kind == 2 ? filters : cin * mult}};
    }

    /* The spatial node: Conv2D, or the depthwise part. */
    char dwname[LRP_NAME_MAX];
    const char *nm0 = k->name;
    if (kind == 2) {
        if ((st = aux_name(c, i, "_depthwise", dwname)))
            return st;
        nm0 = dwname;
    }
    int li = node(c, i, LRP_LAYER_CONV2D, nm0, 1, &in->li);
    if (li < 0)
        return c->err->code;
    lrp_layer *l = &c->net->layers[li];
    l->units = kind == 0 ? filters : cin * mult;
    l->groups = kind == 0 ? (int)groups : (int)cin;
    l->kh = ks[0];
    l->kw = ks[1];
    l->sh = str[0];
    l->sw = str[1];
    l->dh = dil[0];
    l->dw = dil[1];
    l->pt = pad[0];
    l->pb = pad[1];
    l->pl = pad[2];
    l->pr = pad[3];
    l->has_bias = kind != 2 && bias;
    if ((st = infer(c, li)) || (st = load_weights(c, i, n, e, w)))
        return st;
    int64_t kk = (int64_t)ks[0] * ks[1];
    l = &c->net->layers[li];
    l->w = malloc((size_t)(l->units * (cin / l->groups) * kk) * sizeof *l->w);
    if (!l->w) {
        st = lfail(c, LRP_E_NOMEM, i, "out of memory");
        goto cleanup;
    }
    if (kind == 0) {
        int64_t cg = cin / groups;
        for (int64_t y = 0; y < ks[0]; y++)
            for (int64_t x = 0; x < ks[1]; x++)
                for (int64_t q = 0; q < cg; q++)
                    for (int64_t o = 0; o < filters; o++)
                        l->w[(o * cg + q) * kk + y * ks[1] + x] =
                            w[0][((y * ks[1] + x) * cg + q) * filters + o];
    } else {
        /* Output channel q*mult + m reads input channel q (group q). */
        for (int64_t y = 0; y < ks[0]; y++)
            for (int64_t x = 0; x < ks[1]; x++)
                for (int64_t q = 0; q < cin; q++)
                    for (int64_t m = 0; m < mult; m++)
                        l->w[(q * mult + m) * kk + y * ks[1] + x] =
                            w[0][((y * ks[1] + x) * cin + q) * mult + m];
    }
    if (kind != 2) {
        l->b = bias ? w[1] : NULL;
        if (bias)
            w[1] = NULL;
        st = fused_activation(c, i, li, act);
        goto cleanup;
    }
    /* Separable: the pointwise 1x1 convolution carries the Keras name. */
    int pw = node(c, i, LRP_LAYER_CONV2D, k->name, 1, &li);
    if (pw < 0) {
        st = c->err->code;
        goto cleanup;
    }
    l = &c->net->layers[pw];
    l->units = filters;
    l->has_bias = bias;
    if ((st = infer(c, pw)))
        goto cleanup;
    int64_t cm = cin * mult;
    l->w = malloc((size_t)(filters * cm) * sizeof *l->w);
    if (!l->w) {
        st = lfail(c, LRP_E_NOMEM, i, "out of memory");
        goto cleanup;
    }
    for (int64_t q = 0; q < cm; q++)
        for (int64_t o = 0; o < filters; o++)
            l->w[o * cm + q] = w[1][q * filters + o];
    if (bias) {
        l->b = w[2];
        w[2] = NULL;
    }
    st = fused_activation(c, i, pw, act);
cleanup:
    for (int j = 0; j < 3; j++)
        free(w[j]);
    return st;
}

static lrp_status emit_pool(ctx *c, int i, int maxpool)
{
    klayer *k = &c->kl[i];
    ktensor *in = NULL;
    lrp_status st;
    int ps[2], str[2], same;
    static const int two[2] = {2, 2};
    if ((st = input_value(c, i, 0, &in)) || (st = need_rank(c, i, in, 3)) ||
        (st = check_data_format(c, i)) ||
        (st = cfg_pair(c, i, "pool_size", 1, two, 1, 4096, ps)) ||
        (st = cfg_pair(c, i, "strides", 1, ps, 1, 4096, str)) || (st = padding_mode(c, i, &same)))
        return st;
    int li = node(c, i, maxpool ? LRP_LAYER_MAXPOOL2D : LRP_LAYER_AVGPOOL2D, k->name, 1, &in->li);
    if (li < 0)
        return c->err->code;
    lrp_layer *l = &c->net->layers[li];
    l->kh = ps[0];
    l->kw = ps[1];
    l->sh = str[0];
    l->sw = str[1];
    if (same) {
        const lrp_shape *is = shape_of(c, in->li);
        same_pad(is->d[1], ps[0], str[0], 1, &l->pt, &l->pb);
        same_pad(is->d[2], ps[1], str[1], 1, &l->pl, &l->pr);
    }
    l->count_include_pad = 0; /* TensorFlow averages over the in-image cells */
    k->t.li = li;
    return infer(c, li);
}

static lrp_status emit_global_pool(ctx *c, int i, int maxpool)
{
    klayer *k = &c->kl[i];
    ktensor *in = NULL;
    lrp_status st;
    int keep;
    char nm[LRP_NAME_MAX];
    if ((st = input_value(c, i, 0, &in)) || (st = need_rank(c, i, in, 3)) ||
        (st = check_data_format(c, i)) || (st = cfg_bool(c, i, "keepdims", 0, &keep)))
        return st;
    const lrp_shape *is = shape_of(c, in->li);
    int64_t ch = is->d[0], h = is->d[1], w = is->d[2];
    if (maxpool) {
        /* A max-pool over the whole map gives (C, 1, 1); Flatten it unless keepdims. */
        if (h > 4096 || w > 4096)
            return lfail(c, LRP_E_UNSUPPORTED, i, "feature map larger than 4096");
        if (!keep && (st = aux_name(c, i, "_pool", nm)))
            return st;
        int li = node(c, i, LRP_LAYER_MAXPOOL2D, keep ? k->name : nm, 1, &in->li);
        if (li < 0)
            return c->err->code;
        c->net->layers[li].kh = c->net->layers[li].sh = (int)h;
        c->net->layers[li].kw = c->net->layers[li].sw = (int)w;
        if ((st = infer(c, li)))
            return st;
        k->t.li = li;
        if (keep)
            return LRP_OK;
        int f = node(c, i, LRP_LAYER_FLATTEN, k->name, 1, &li);
        if (f < 0)
            return c->err->code;
        k->t.li = f;
        return infer(c, f);
    }
    if (keep && (st = aux_name(c, i, "_gap", nm)))
        return st;
    int li = node(c, i, LRP_LAYER_GLOBALAVGPOOL, keep ? nm : k->name, 1, &in->li);
    if (li < 0)
        return c->err->code;
    if ((st = infer(c, li)))
        return st;
    k->t.li = li;
    if (!keep)
        return LRP_OK;
    int r = node(c, i, LRP_LAYER_RESHAPE, k->name, 1, &li);
    if (r < 0)
        return c->err->code;
    lrp_layer *l = &c->net->layers[r];
    l->target.rank = 3;
    l->target.d[0] = ch;
    l->target.d[1] = l->target.d[2] = 1;
    k->t.li = r;
    return infer(c, r);
}

static int same_perm(const ktensor *a, const ktensor *b, int64_t n)
{
    if (!a->perm || !b->perm)
        return !a->perm && !b->perm;
    return memcmp(a->perm, b->perm, (size_t)n * sizeof *a->perm) == 0;
}

static lrp_status emit_merge(ctx *c, int i, int concat)
{
    klayer *k = &c->kl[i];
    lrp_status st;
    ktensor *t[LRP_MAX_INPUTS];
    int ins[LRP_MAX_INPUTS];
    if (k->n_in < 2)
        return lfail(c, LRP_E_INVALID, i, "needs at least 2 inputs, has %d", k->n_in);
    for (int j = 0; j < k->n_in; j++) {
        if ((st = input_value(c, i, j, &t[j])))
            return st;
        ins[j] = t[j]->li;
    }
    const lrp_shape *s0 = shape_of(c, ins[0]);
    if (concat) {
        int64_t axis;
        if ((st = cfg_int(c, i, "axis", 1, -1, -4, 3, &axis)))
            return st;
        int ok = s0->rank == 1 ? (axis == -1 || axis == 1)
                               : (c->cf ? (axis == 1 || axis == -3) : (axis == -1 || axis == 3));
        if (!ok)
            return lfail(c, LRP_E_UNSUPPORTED, i,
                         "concatenation along axis %lld, which is not the channel axis",
                         (long long)axis);
    }
    int li = node(c, i, concat ? LRP_LAYER_CONCAT : LRP_LAYER_ADD, k->name, k->n_in, ins);
    if (li < 0)
        return c->err->code;
    if ((st = infer(c, li)))
        return st;
    k->t.li = li;
    if (s0->rank != 1)
        return LRP_OK;
    int any = 0;
    for (int j = 0; j < k->n_in; j++)
        any |= t[j]->perm != NULL;
    if (!any)
        return LRP_OK;
    if (!concat) {
        for (int j = 1; j < k->n_in; j++)
            if (!same_perm(t[0], t[j], s0->d[0]))
                return lfail(c, LRP_E_UNSUPPORTED, i,
                             "adds flat tensors whose NHWC and NCHW element orders differ");
        return perm_set(c, i, &k->t, t[0]->perm, s0->d[0]);
    }
    int64_t n = shape_of(c, li)->d[0], off = 0;
    k->t.perm = malloc((size_t)n * sizeof *k->t.perm);
    if (!k->t.perm)
        return lfail(c, LRP_E_NOMEM, i, "out of memory");
    for (int j = 0; j < k->n_in; j++) {
        int64_t m = shape_of(c, ins[j])->d[0];
        for (int64_t q = 0; q < m; q++)
            k->t.perm[off + q] = off + (t[j]->perm ? t[j]->perm[q] : q);
        off += m;
    }
    return LRP_OK;
}

static lrp_status emit_bn(ctx *c, int i)
{
    klayer *k = &c->kl[i];
    ktensor *in = NULL;
    lrp_status st;
    int scale, center;
    double eps;
    float *w[4];
    if ((st = input_value(c, i, 0, &in)) || (st = cfg_bool(c, i, "scale", 1, &scale)) ||
        (st = cfg_bool(c, i, "center", 1, &center)) ||
        (st = cfg_real(c, i, "epsilon", 1e-3, &eps)))
        return st;
    const lrp_shape *is = shape_of(c, in->li);
    json_t *ax = jget(k->cfg, "axis");
    if (json_is_array(ax) && json_array_size(ax) == 1)
        ax = json_array_get(ax, 0); /* tf.keras stores [3] once built */
    int64_t axis = ax == NULL ? -1 : json_is_integer(ax) ? (int64_t)json_integer_value(ax) : 99;
    int ok = is->rank == 1 ? (axis == -1 || axis == 1)
                           : (c->cf ? (axis == 1 || axis == -3) : (axis == -1 || axis == 3));
    if (!ok)
        return lfail(c, LRP_E_UNSUPPORTED, i, "normalizes an axis other than the channel axis");
    if (!isfinite(eps) || eps < 0 || !isfinite((float)eps))
        return lfail(c, LRP_E_INVALID, i, "epsilon %g must be finite and >= 0", eps);
    int64_t ch = is->d[0];
    int n = 0;
    wexp e[4];
    if (scale)
        e[n++] = (wexp){"gamma", 1, {ch}};
    if (center)
        e[n++] = (wexp){"beta", 1, {ch}};
    e[n++] = (wexp){"moving_mean", 1, {ch}};
    e[n++] = (wexp){"moving_variance", 1, {ch}};
    int li = node(c, i, LRP_LAYER_BATCHNORM, k->name, 1, &in->li);
    if (li < 0)
        return c->err->code;
    /* Keras adds epsilon to the variance in float32: keep that float. */
    c->net->layers[li].bn_eps = (float)eps;
    if ((st = infer(c, li)) || (st = load_weights(c, i, n, e, w)))
        return st;
    /* p: gamma, beta, mean, var (ours to free until handed to the layer). */
    float *p[4] = {NULL, NULL, NULL, NULL};
    int j = 0;
    for (int q = 0; q < 4; q++)
        if ((q == 0 && !scale) || (q == 1 && !center))
            continue;
        else
            p[q] = w[j++];
    for (int q = 0; q < 2 && !st; q++) {
        if (p[q])
            continue;
        p[q] = malloc((size_t)ch * sizeof *p[q]);
        if (!p[q])
            st = lfail(c, LRP_E_NOMEM, i, "out of memory");
        else
            for (int64_t r = 0; r < ch; r++)
                p[q][r] = q == 0 ? 1.0f : 0.0f; /* absent gamma = 1, beta = 0 */
    }
    for (int64_t r = 0; !st && r < ch; r++)
        if (p[3][r] < 0.0f)
            st = lfail(c, LRP_E_INVALID, i, "moving_variance[%lld] = %g is negative", (long long)r,
                       (double)p[3][r]);
    /* A permuted flat input: Keras feature q sits at our index perm[q]. */
    for (int q = 0; q < 4 && !st && in->perm; q++) {
        float *np = malloc((size_t)ch * sizeof *np);
        if (!np) {
            st = lfail(c, LRP_E_NOMEM, i, "out of memory");
            break;
        }
        for (int64_t r = 0; r < ch; r++)
            np[in->perm[r]] = p[q][r];
        free(p[q]);
        p[q] = np;
    }
    if (!st)
        st = perm_set(c, i, &k->t, in->perm, ch);
    if (st) {
        for (int q = 0; q < 4; q++)
            free(p[q]);
        return st;
    }
    lrp_layer *l = &c->net->layers[li];
    l->bn_gamma = p[0];
    l->bn_beta = p[1];
    l->bn_mean = p[2];
    l->bn_var = p[3];
    k->t.li = li;
    return LRP_OK;
}

/* Elementwise identity-shaped layers: ReLU, Dropout and friends, Activation. */
static lrp_status emit_elementwise(ctx *c, int i, lrp_layer_kind kind)
{
    klayer *k = &c->kl[i];
    ktensor *in = NULL;
    lrp_status st;
    if ((st = input_value(c, i, 0, &in)))
        return st;
    int li = node(c, i, kind, k->name, 1, &in->li);
    if (li < 0)
        return c->err->code;
    if ((st = infer(c, li)))
        return st;
    k->t.li = li;
    return perm_set(c, i, &k->t, in->perm, lrp_shape_numel(shape_of(c, li)));
}

static lrp_status emit_activation(ctx *c, int i, const char *act)
{
    klayer *k = &c->kl[i];
    ktensor *in = NULL;
    lrp_status st;
    if ((st = input_value(c, i, 0, &in)))
        return st;
    if (!act)
        return lfail(c, LRP_E_FORMAT, i, "config 'activation' missing");
    if (strcmp(act, "relu") == 0)
        return emit_elementwise(c, i, LRP_LAYER_RELU);
    if (strcmp(act, "linear") == 0 || (strcmp(act, "softmax") == 0 && i == c->out)) {
        if (act[0] == 's')
            snprintf(c->note, sizeof c->note,
                     "; final softmax '%s' dropped (LRP starts from logits)", k->name);
        k->t.li = in->li; /* no node: the tensor is its input's */
        return perm_set(c, i, &k->t, in->perm, lrp_shape_numel(shape_of(c, in->li)));
    }
    return lfail(c, LRP_E_UNSUPPORTED, i,
                 "activation '%s' unsupported (relu, linear; softmax only at the model output)",
                 act);
}

static lrp_status emit_relu_layer(ctx *c, int i)
{
    double ms, th;
    lrp_status st;
    json_t *mv = jget(c->kl[i].cfg, "max_value");
    if ((st = cfg_real(c, i, "negative_slope", 0.0, &ms)) ||
        (st = cfg_real(c, i, "threshold", 0.0, &th)))
        return st;
    if ((mv && !json_is_null(mv)) || ms != 0.0 || th != 0.0)
        return lfail(c, LRP_E_UNSUPPORTED, i,
                     "ReLU with max_value, negative_slope or threshold unsupported");
    return emit_elementwise(c, i, LRP_LAYER_RELU);
}

static lrp_status emit_flatten(ctx *c, int i)
{
    klayer *k = &c->kl[i];
    ktensor *in = NULL;
    lrp_status st = LRP_OK;
    if ((st = input_value(c, i, 0, &in)))
        return st;
    const char *df = cfg_str(c, i, "data_format", "channels_last", &st);
    if (!df)
        return st;
    const lrp_shape *is = shape_of(c, in->li);
    int li = node(c, i, LRP_LAYER_FLATTEN, k->name, 1, &in->li);
    if (li < 0)
        return c->err->code;
    if ((st = infer(c, li)))
        return st;
    k->t.li = li;
    int64_t n = lrp_shape_numel(is);
    if (is->rank != 3)
        return perm_set(c, i, &k->t, in->perm, n);
    /* Keras' order: (H, W, C) for a channels_last model; a channels_first
     * model flattens (C, H, W) unless Flatten's own data_format is
     * channels_first, in which case Keras transposes to (H, W, C) first. */
    int hwc;
    if (!c->cf) {
        if (strcmp(df, "channels_last") != 0)
            return lfail(c, LRP_E_UNSUPPORTED, i, "data_format '%s' in a channels_last model", df);
        hwc = 1;
    } else {
        hwc = strcmp(df, "channels_first") == 0;
    }
    int64_t ch = is->d[0], hw = is->d[1] * is->d[2];
    if (!hwc || ch == 1 || hw == 1)
        return LRP_OK;
    k->t.perm = malloc((size_t)n * sizeof *k->t.perm);
    if (!k->t.perm)
        return lfail(c, LRP_E_NOMEM, i, "out of memory");
    for (int64_t p = 0; p < hw; p++)
        for (int64_t q = 0; q < ch; q++)
            k->t.perm[p * ch + q] = q * hw + p; /* Keras (h,w,c) -> our (c,h,w) */
    return LRP_OK;
}

static lrp_status emit_reshape(ctx *c, int i)
{
    klayer *k = &c->kl[i];
    ktensor *in = NULL;
    lrp_status st;
    if ((st = input_value(c, i, 0, &in)))
        return st;
    json_t *ts = jget(k->cfg, "target_shape");
    size_t r = json_is_array(ts) ? json_array_size(ts) : 0;
    if (r != 1 && r != 3)
        return lfail(c, LRP_E_UNSUPPORTED, i,
                     "target_shape must be a list of 1 or 3 dimensions (got %zu)", r);
    int64_t d[3];
    for (size_t a = 0; a < r; a++) {
        json_t *v = json_array_get(ts, a);
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > LRP_MAX_DIM)
            return lfail(c, LRP_E_UNSUPPORTED, i,
                         "target_shape entry %zu is not a positive integer (-1 unsupported)", a);
        d[a] = (int64_t)json_integer_value(v);
    }
    if (r == 1 && shape_of(c, in->li)->rank == 3) {
        /* To flat: exactly Keras' Flatten (Reshape has no data_format, so
         * the default, channels_last, order applies). */
        if (lrp_shape_numel(shape_of(c, in->li)) != d[0])
            return lfail(c, LRP_E_INVALID, i, "target_shape changes the element count");
        return emit_flatten(c, i);
    }
    lrp_shape tg = {0};
    tg.rank = (int)r;
    if (r == 1)
        tg.d[0] = d[0];
    else if (c->cf) {
        tg.d[0] = d[0];
        tg.d[1] = d[1];
        tg.d[2] = d[2];
    } else {
        tg.d[0] = d[2];
        tg.d[1] = d[0];
        tg.d[2] = d[1];
    }
    int tgt_native = r == 1 || c->cf || tg.d[0] == 1 || tg.d[1] * tg.d[2] == 1;
    if (r == 1 && in->perm) {
        /* flat to flat: keeps the permutation */
        int li = node(c, i, LRP_LAYER_RESHAPE, k->name, 1, &in->li);
        if (li < 0)
            return c->err->code;
        c->net->layers[li].target = tg;
        if ((st = infer(c, li)))
            return st;
        k->t.li = li;
        return perm_set(c, i, &k->t, in->perm, tg.d[0]);
    }
    if (!order_native(c, in) || !tgt_native)
        return lfail(c, LRP_E_UNSUPPORTED, i,
                     "this reshape reorders elements between Keras' NHWC and our NCHW layouts");
    int li = node(c, i, LRP_LAYER_RESHAPE, k->name, 1, &in->li);
    if (li < 0)
        return c->err->code;
    c->net->layers[li].target = tg;
    k->t.li = li;
    return infer(c, li);
}

static lrp_status emit_zeropad(ctx *c, int i)
{
    klayer *k = &c->kl[i];
    klayer *src = &c->kl[k->in[0]];
    lrp_status st;
    if ((st = need_rank(c, i, &src->t, 3)) || (st = check_data_format(c, i)))
        return st;
    json_t *p = jget(k->cfg, "padding");
    int64_t v[4];
    if (json_is_integer(p)) {
        v[0] = v[1] = v[2] = v[3] = json_integer_value(p);
    } else if (json_is_array(p) && json_array_size(p) == 2 &&
               json_is_integer(json_array_get(p, 0)) && json_is_integer(json_array_get(p, 1))) {
        v[0] = v[1] = json_integer_value(json_array_get(p, 0));
        v[2] = v[3] = json_integer_value(json_array_get(p, 1));
    } else if (json_is_array(p) && json_array_size(p) == 2 &&
               json_array_size(json_array_get(p, 0)) == 2 &&
               json_array_size(json_array_get(p, 1)) == 2) {
        for (int a = 0; a < 4; a++) {
            json_t *e = json_array_get(json_array_get(p, a / 2), a % 2);
            if (!json_is_integer(e))
                return lfail(c, LRP_E_FORMAT, i, "config 'padding' is malformed");
            v[a] = json_integer_value(e);
        }
    } else {
        return lfail(c, LRP_E_FORMAT, i, "config 'padding' is malformed");
    }
    k->t.li = src->t.li;
    k->t.is_pad = 1;
    for (int a = 0; a < 4; a++) {
        int64_t tot = v[a] + (src->t.is_pad ? src->t.pad[a] : 0);
        if (v[a] < 0 || tot > 4096)
            return lfail(c, LRP_E_INVALID, i, "padding %lld out of range [0, 4096]",
                         (long long)v[a]);
        k->t.pad[a] = (int)tot;
    }
    /* Every consumer must be a convolution. */
    for (int j = 0; j < c->nkl; j++)
        for (int q = 0; q < c->kl[j].n_in; q++)
            if (c->kl[j].in[q] == i) {
                const char *cl = c->kl[j].cls;
                enum kcls kc = class_of(cl);
                if (kc != K_CONV && kc != K_DWCONV && kc != K_SEPCONV && kc != K_ZEROPAD)
                    return lfail(c, LRP_E_UNSUPPORTED, i,
                                 "feeds '%s' (%s); zero padding is only folded into a following "
                                 "convolution",
                                 c->kl[j].name, cl);
            }
    if (i == c->out)
        return lfail(c, LRP_E_UNSUPPORTED, i, "ZeroPadding2D as the model output");
    return LRP_OK;
}

static lrp_status emit_layer(ctx *c, int i)
{
    klayer *k = &c->kl[i];
    const char *act;
    lrp_status st;
    switch (class_of(k->cls)) {
    case K_INPUT: return emit_input(c, i);
    case K_DENSE: return emit_dense(c, i);
    case K_CONV: return emit_conv(c, i, 0);
    case K_DWCONV: return emit_conv(c, i, 1);
    case K_SEPCONV: return emit_conv(c, i, 2);
    case K_MAXPOOL: return emit_pool(c, i, 1);
    case K_AVGPOOL: return emit_pool(c, i, 0);
    case K_GAP: return emit_global_pool(c, i, 0);
    case K_GMP: return emit_global_pool(c, i, 1);
    case K_ADD: return emit_merge(c, i, 0);
    case K_CONCAT: return emit_merge(c, i, 1);
    case K_BN: return emit_bn(c, i);
    case K_ACT:
        if ((st = activation_of(c, i, &act)))
            return st;
        return emit_activation(c, i, act);
    case K_RELU: return emit_relu_layer(c, i);
    case K_SOFTMAX: return emit_activation(c, i, "softmax");
    case K_FLATTEN: return emit_flatten(c, i);
    case K_RESHAPE: return emit_reshape(c, i);
    case K_DROPOUT: return emit_elementwise(c, i, LRP_LAYER_DROPOUT);
    case K_ZEROPAD: return emit_zeropad(c, i);
    case K_NONE: break;
    }
    return lfail(c, LRP_E_UNSUPPORTED, i, "unsupported layer class");
}

/* ---------------------------------------------------------------- */
/* model_config structure                                            */
/* ---------------------------------------------------------------- */

static int find_layer(ctx *c, const char *name)
{
    for (int i = 0; i < c->nkl; i++)
        if (strcmp(c->kl[i].name, name) == 0)
            return i;
    return -1;
}

/* Appends the producer of one inbound reference [name, node, tensor]. */
static lrp_status add_inbound(ctx *c, int i, json_t *ref)
{
    klayer *k = &c->kl[i];
    json_t *nm = json_array_get(ref, 0), *ni = json_array_get(ref, 1), *ti = json_array_get(ref, 2);
    if (!json_is_string(nm) || !json_is_integer(ni) || !json_is_integer(ti))
        return lfail(c, LRP_E_FORMAT, i, "malformed inbound node entry");
    if (json_integer_value(ni) != 0 || json_integer_value(ti) != 0)
        return lfail(c, LRP_E_UNSUPPORTED, i,
                     "input '%s' node %lld tensor %lld: shared layers and multi-output layers "
                     "are unsupported",
                     json_string_value(nm), (long long)json_integer_value(ni),
                     (long long)json_integer_value(ti));
    int src = find_layer(c, json_string_value(nm));
    if (src < 0)
        return lfail(c, LRP_E_FORMAT, i, "input '%s' names no layer", json_string_value(nm));
    if (k->n_in >= LRP_MAX_INPUTS)
        return lfail(c, LRP_E_UNSUPPORTED, i, "more than %d inputs", LRP_MAX_INPUTS);
    k->in[k->n_in++] = src;
    return LRP_OK;
}

/* Keras 3: tensors are {"class_name": "__keras_tensor__", "config":
 * {"keras_history": [name, node, tensor]}} anywhere inside "args". */
static lrp_status collect_k3(ctx *c, int i, json_t *v, int depth)
{
    lrp_status st;
    if (depth > 8)
        return lfail(c, LRP_E_FORMAT, i, "inbound node nested too deeply");
    if (json_is_array(v)) {
        for (size_t j = 0; j < json_array_size(v); j++)
            if ((st = collect_k3(c, i, json_array_get(v, j), depth + 1)))
                return st;
        return LRP_OK;
    }
    json_t *cn = jget(v, "class_name");
    if (json_is_string(cn) && strcmp(json_string_value(cn), "__keras_tensor__") == 0) {
        json_t *h = jget(jget(v, "config"), "keras_history");
        if (!json_is_array(h) || json_array_size(h) != 3)
            return lfail(c, LRP_E_FORMAT, i, "__keras_tensor__ without keras_history");
        return add_inbound(c, i, h);
    }
    return LRP_OK;
}

static lrp_status parse_inbound(ctx *c, int i, json_t *entry)
{
    json_t *nodes = jget(entry, "inbound_nodes");
    klayer *k = &c->kl[i];
    if (!nodes || (json_is_array(nodes) && json_array_size(nodes) == 0)) {
        if (class_of(k->cls) == K_INPUT)
            return LRP_OK;
        return lfail(c, LRP_E_FORMAT, i, "no inbound node (layer not connected)");
    }
    if (!json_is_array(nodes))
        return lfail(c, LRP_E_FORMAT, i, "inbound_nodes is not a list");
    if (json_array_size(nodes) > 1)
        return lfail(c, LRP_E_UNSUPPORTED, i,
                     "layer is called %zu times (shared layer); unsupported",
                     json_array_size(nodes));
    json_t *n0 = json_array_get(nodes, 0);
    if (json_is_object(n0)) /* Keras 3 */
        return collect_k3(c, i, jget(n0, "args"), 0);
    if (!json_is_array(n0))
        return lfail(c, LRP_E_FORMAT, i, "malformed inbound node");
    for (size_t j = 0; j < json_array_size(n0); j++) {
        json_t *ref = json_array_get(n0, j);
        if (!json_is_array(ref) || json_array_size(ref) < 3)
            return lfail(c, LRP_E_FORMAT, i, "malformed inbound node entry");
        lrp_status st = add_inbound(c, i, ref);
        if (st)
            return st;
    }
    return LRP_OK;
}

/* Builds c->kl from the config's layer list. */
static lrp_status parse_layers(ctx *c)
{
    json_t *cn = jget(c->root, "class_name"), *cfg = jget(c->root, "config");
    const char *p = c->path;
    if (!json_is_string(cn) || !cfg)
        return lrp_err_set(c->err, LRP_E_FORMAT,
                           "%s: model_config: not a Keras model (no class_name / config)", p);
    const char *mcls = json_string_value(cn);
    int seq = strcmp(mcls, "Sequential") == 0;
    if (!seq && strcmp(mcls, "Functional") && strcmp(mcls, "Model"))
        return lrp_err_set(c->err, LRP_E_UNSUPPORTED,
                           "%s: model_config: model class '%s' unsupported (Sequential, "
                           "Functional, Model)",
                           p, mcls);
    json_t *layers;
    json_t *build_shape = NULL;
    if (seq && json_is_array(cfg)) {
        layers = cfg;
        c->dialect = "Keras <= 2.2.2 Sequential";
    } else {
        layers = jget(cfg, "layers");
        build_shape = jget(cfg, "build_input_shape");
        c->dialect = seq ? "Sequential" : "Functional";
    }
    if (!json_is_array(layers) || json_array_size(layers) == 0)
        return lrp_err_set(c->err, LRP_E_FORMAT, "%s: model_config: no layer list", p);
    size_t n = json_array_size(layers);
    if (n >= LRP_MAX_LAYERS)
        return lrp_err_set(c->err, LRP_E_UNSUPPORTED, "%s: model_config: %zu layers (at most %d)",
                           p, n, LRP_MAX_LAYERS - 1);
    c->kl = calloc(n + 1, sizeof *c->kl);
    if (!c->kl)
        return lrp_err_set(c->err, LRP_E_NOMEM, "%s: model_config: out of memory", p);
    int keras3 = 0;
    for (size_t j = 0; j < n; j++) {
        json_t *e = json_array_get(layers, j);
        json_t *lc = jget(e, "config");
        json_t *cls = jget(e, "class_name");
        json_t *nm = jget(lc, "name");
        if (!json_is_string(nm))
            nm = jget(e, "name");
        if (!json_is_object(lc) || !json_is_string(cls) || !json_is_string(nm))
            return lrp_err_set(c->err, LRP_E_FORMAT,
                               "%s: model_config: layer %zu: needs class_name, config and name", p,
                               j);
        keras3 |= jget(e, "module") != NULL;
        klayer *k = &c->kl[c->nkl];
        k->pos = (int)j;
        k->name = json_string_value(nm);
        k->cls = json_string_value(cls);
        k->cfg = lc;
        k->widx = -1;
        k->t.li = -1;
        c->nkl++;
        if (strlen(k->name) == 0 || strlen(k->name) >= LRP_NAME_MAX)
            return lfail(c, LRP_E_UNSUPPORTED, c->nkl - 1, "name empty or longer than %d bytes",
                         LRP_NAME_MAX - 1);
        for (int q = 0; q + 1 < c->nkl; q++)
            if (strcmp(c->kl[q].name, k->name) == 0)
                return lfail(c, LRP_E_FORMAT, c->nkl - 1, "duplicate layer name");
        /* dtype: "float32", or a policy object {"config": {"name": ...}}
         * (tf.keras Policy, Keras 3 DTypePolicy).  Reduced-precision
         * compute would not be the function the float32 weights define. */
        json_t *dt = jget(lc, "dtype");
        if (json_is_object(dt))
            dt = jget(jget(dt, "config"), "name");
        if (json_is_string(dt) && strcmp(json_string_value(dt), "float32") &&
            strcmp(json_string_value(dt), "float64"))
            return lfail(c, LRP_E_UNSUPPORTED, c->nkl - 1,
                         "dtype policy '%s' unsupported (float32 models only)",
                         json_string_value(dt));
        json_t *sub = jget(lc, "layers");
        if (sub || strcmp(k->cls, "Sequential") == 0 || strcmp(k->cls, "Functional") == 0 ||
            strcmp(k->cls, "Model") == 0)
            return lfail(c, LRP_E_UNSUPPORTED, c->nkl - 1,
                         "nested model unsupported; flatten it into one model first");
    }
    if (keras3)
        c->dialect = seq ? "Keras 3 Sequential" : "Keras 3 Functional";

    if (seq) {
        /* Implicit input when the list does not start with an InputLayer. */
        if (class_of(c->kl[0].cls) != K_INPUT) {
            json_t *bs = jget(c->kl[0].cfg, "batch_input_shape");
            if (!bs)
                bs = jget(c->kl[0].cfg, "batch_shape");
            if (!bs)
                bs = build_shape;
            memmove(c->kl + 1, c->kl, (size_t)c->nkl * sizeof *c->kl);
            klayer *k = &c->kl[0];
            memset(k, 0, sizeof *k);
            k->name = "input";
            k->cls = "InputLayer";
            k->pos = -1;
            k->widx = -1;
            k->t.li = -1;
            k->shape_src = bs;
            c->nkl++;
            if (find_layer(c, "input") != 0)
                k->name = "input_0";
        }
        for (int i = 1; i < c->nkl; i++) {
            if (class_of(c->kl[i].cls) == K_INPUT)
                return lfail(c, LRP_E_UNSUPPORTED, i, "InputLayer inside a Sequential model");
            c->kl[i].n_in = 1;
            c->kl[i].in[0] = i - 1;
        }
        c->out = c->nkl - 1;
        return LRP_OK;
    }

    for (int i = 0; i < c->nkl; i++) {
        lrp_status st = parse_inbound(c, i, json_array_get(layers, (size_t)c->kl[i].pos));
        if (st)
            return st;
    }
    json_t *outs = jget(cfg, "output_layers");
    json_t *o = outs;
    if (json_is_array(outs) && json_array_size(outs) == 1 && json_is_array(json_array_get(outs, 0)))
        o = json_array_get(outs, 0);
    if (!json_is_array(o) || json_array_size(o) < 1 || !json_is_string(json_array_get(o, 0)))
        return lrp_err_set(c->err, LRP_E_UNSUPPORTED,
                           "%s: model_config: output_layers: exactly one model output supported",
                           p);
    c->out = find_layer(c, json_string_value(json_array_get(o, 0)));
    if (c->out < 0)
        return lrp_err_set(c->err, LRP_E_FORMAT,
                           "%s: model_config: output_layers: '%s' names no layer", p,
                           json_string_value(json_array_get(o, 0)));
    return LRP_OK;
}

/* channels_first if any layer says so; mixing is rejected per layer later. */
static void find_data_format(ctx *c)
{
    for (int i = 0; i < c->nkl; i++) {
        if (class_of(c->kl[i].cls) == K_FLATTEN)
            continue;
        json_t *df = jget(c->kl[i].cfg, "data_format");
        if (json_is_string(df) && strcmp(json_string_value(df), "channels_first") == 0)
            c->cf = 1;
    }
}

/* ---------------------------------------------------------------- */
/* model_weights                                                     */
/* ---------------------------------------------------------------- */

static lrp_status read_weight_index(ctx *c)
{
    lrp_status st = LRP_OK;
    strlist names = {0};
    hid_t g = -1;
    if (H5Lexists(c->file, "model_weights", H5P_DEFAULT) <= 0)
        return lrp_err_set(c->err, LRP_E_FORMAT,
                           "%s: model_weights: missing group (file saved without weights?)",
                           c->path);
    if ((st = check_hard_path(c, c->file, "model_weights", "model_weights")))
        return st;
    g = H5Gopen2(c->file, "model_weights", H5P_DEFAULT);
    if (g < 0)
        return lrp_err_set(c->err, LRP_E_FORMAT, "%s: model_weights: not a group", c->path);
    if ((st = read_name_list(c, g, "model_weights", "layer_names", &names)))
        goto cleanup;
    c->fw = calloc((size_t)(names.n > 0 ? names.n : 1), sizeof *c->fw);
    if (!c->fw) {
        st = lrp_err_set(c->err, LRP_E_NOMEM, "%s: model_weights: out of memory", c->path);
        goto cleanup;
    }
    for (int j = 0; j < names.n; j++) {
        char shown[KJ_MAX_NAME_BYTES + 32];
        snprintf(shown, sizeof shown, "model_weights/%s", names.s[j]);
        if ((st = check_hard_path(c, g, names.s[j], shown)))
            goto cleanup;
        hid_t lg = H5Gopen2(g, names.s[j], H5P_DEFAULT);
        if (lg < 0) {
            st = lrp_err_set(c->err, LRP_E_FORMAT, "%s: %s: not a group", c->path, shown);
            goto cleanup;
        }
        strlist wn = {0};
        st = read_name_list(c, lg, shown, "weight_names", &wn);
        H5Gclose(lg);
        if (st) {
            strlist_free(&wn);
            goto cleanup;
        }
        if (wn.n == 0) {
            strlist_free(&wn);
            continue;
        }
        if (wn.n > KJ_MAX_WEIGHTS) {
            strlist_free(&wn);
            st = lrp_err_set(c->err, LRP_E_INVALID, "%s: %s: %d weight arrays (at most %d)",
                             c->path, shown, wn.n, KJ_MAX_WEIGHTS);
            goto cleanup;
        }
        fwlayer *f = &c->fw[c->nfw++];
        f->group = names.s[j];
        names.s[j] = NULL;
        f->wnames = wn.s;
        f->nw = wn.n;
    }
    int want = 0;
    for (int i = 0; i < c->nkl; i++)
        if (has_weights(class_of(c->kl[i].cls)))
            c->kl[i].widx = want++;
    if (want != c->nfw)
        st = lrp_err_set(c->err, LRP_E_INVALID,
                         "%s: model_weights: %d layers carry weights, model_config has %d layers "
                         "with weights (Keras assigns them by order)",
                         c->path, c->nfw, want);
cleanup:
    strlist_free(&names);
    H5Gclose(g);
    return st;
}

/* ---------------------------------------------------------------- */
/* Driver                                                            */
/* ---------------------------------------------------------------- */

/* Python's json writes NaN / Infinity / -Infinity, which are not JSON.
 * Finds the first such bare token outside strings; 1-based line/column. */
static int find_nonjson_number(const char *s, size_t n, int *line, int *col, const char **tok)
{
    int ln = 1, cl = 1, instr = 0;
    for (size_t k = 0; k < n; k++) {
        char ch = s[k];
        if (instr) {
            if (ch == '\\')
                k++, cl++;
            else if (ch == '"')
                instr = 0;
        } else if (ch == '"') {
            instr = 1;
        } else if ((ch == 'N' && n - k >= 3 && memcmp(s + k, "NaN", 3) == 0) ||
                   (ch == 'I' && n - k >= 8 && memcmp(s + k, "Infinity", 8) == 0)) {
            *line = ln;
            *col = cl;
            *tok = ch == 'N' ? "NaN" : (k > 0 && s[k - 1] == '-') ? "-Infinity" : "Infinity";
            return 1;
        }
        if (ch == '\n') {
            ln++;
            cl = 1;
        } else {
            cl++;
        }
    }
    return 0;
}

static lrp_status parse_config(ctx *c)
{
    strlist s = {0};
    lrp_status st;
    if (H5Aexists(c->file, "model_config") <= 0)
        return lrp_err_set(c->err, LRP_E_FORMAT,
                           "%s: model_config: missing root attribute (not a Keras model file, or a "
                           "weights-only file)",
                           c->path);
    if ((st = read_strings(c, c->file, "model_config", "model_config", KJ_MAX_JSON, &s))) {
        /* read_strings may have grown the list before failing (fuzz_keras,
         * tests/fuzz_regress/keras/ours-kerasimport-config-leak*) */
        strlist_free(&s);
        return st;
    }
    if (s.n != 1) {
        strlist_free(&s);
        return lrp_err_set(c->err, LRP_E_FORMAT, "%s: model_config: not a single string",
                           c->path);
    }
    size_t n = strlen(s.s[0]);
    json_error_t je;
    c->root = json_loadb(s.s[0], n, JSON_REJECT_DUPLICATES, &je);
    if (!c->root) {
        int ln, cl;
        const char *tok;
        if (find_nonjson_number(s.s[0], n, &ln, &cl, &tok))
            st = lrp_err_set(c->err, LRP_E_FORMAT,
                             "%s: model_config: line %d column %d: bare %s (Python's json "
                             "extension, not valid JSON); replace it in the model's config",
                             c->path, ln, cl, tok);
        else
            st = lrp_err_set(c->err, LRP_E_FORMAT,
                             "%s: model_config: invalid JSON at line %d column %d: %s", c->path,
                             je.line, je.column, je.text);
    } else if (!json_is_object(c->root)) {
        st = lrp_err_set(c->err, LRP_E_FORMAT, "%s: model_config: JSON is not an object", c->path);
    }
    strlist_free(&s);
    return st;
}

static lrp_status run(ctx *c)
{
    lrp_status st;
    char why[160];
    FILE *fp = fopen(c->path, "rb");
    if (!fp)
        return lrp_err_set(c->err, LRP_E_IO, "%s: file: cannot open: %s", c->path,
                           strerror(errno));
    fclose(fp);
    if (H5Fis_hdf5(c->path) <= 0)
        return lrp_err_set(c->err, LRP_E_FORMAT, "%s: file: not an HDF5 file", c->path);
    c->file = H5Fopen(c->path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (c->file < 0)
        return lrp_err_set(c->err, LRP_E_FORMAT, "%s: file: cannot open as HDF5: %s", c->path,
                           h5_why(why));
    if ((st = parse_config(c)) || (st = parse_layers(c)))
        return st;
    /* Classes first, so an unsupported layer is named before weights are counted. */
    for (int i = 0; i < c->nkl; i++)
        if (class_of(c->kl[i].cls) == K_NONE)
            return lfail(c, LRP_E_UNSUPPORTED, i, "unsupported layer class");
    find_data_format(c);
    if ((st = read_weight_index(c)))
        return st;
    c->net = lrp_net_new();
    if (!c->net)
        return lrp_err_set(c->err, LRP_E_NOMEM, "%s: network: out of memory", c->path);
    /* Execution order: config order, each layer once its inputs are done. */
    int left = c->nkl, progress = 1;
    while (left > 0 && progress) {
        progress = 0;
        for (int i = 0; i < c->nkl; i++) {
            klayer *k = &c->kl[i];
            if (k->done)
                continue;
            int ready = 1;
            for (int q = 0; q < k->n_in && ready; q++)
                ready = c->kl[k->in[q]].done;
            if (!ready)
                continue;
            if (class_of(k->cls) == K_INPUT && k->n_in)
                return lfail(c, LRP_E_FORMAT, i, "InputLayer with inputs");
            if (class_of(k->cls) != K_INPUT && k->n_in == 0)
                return lfail(c, LRP_E_FORMAT, i, "no inputs");
            if ((st = emit_layer(c, i)))
                return st;
            k->done = 1;
            left--;
            progress = 1;
        }
    }
    if (left > 0)
        return lrp_err_set(c->err, LRP_E_INVALID, "%s: model_config: the layer graph has a cycle",
                           c->path);
    const klayer *o = &c->kl[c->out];
    if (o->t.perm)
        return lfail(c, LRP_E_UNSUPPORTED, c->out,
                     "the model output is a flattened NHWC tensor whose element order differs "
                     "from NCHW");
    if (o->t.li != c->net->n_layers - 1)
        return lrp_err_set(c->err, LRP_E_INVALID,
                           "%s: model_config: output '%s' is not the last layer computed (the "
                           "model has unused branches)",
                           c->path, o->name);
    /* Description: version, dialect, notes. */
    strlist ver = {0};
    const char *kv = "?";
    if (H5Aexists(c->file, "keras_version") > 0 &&
        read_strings(c, c->file, "keras_version", "keras_version", 64, &ver) == LRP_OK &&
        ver.n == 1)
        kv = ver.s[0];
    snprintf(c->net->description, sizeof c->net->description,
             "imported from Keras %s (%s, %s)%s", kv, c->dialect,
             c->cf ? "channels_first" : "channels_last", c->note);
    strlist_free(&ver);
    lrp_err_set(c->err, LRP_OK, "%s", ""); /* a failed optional read leaves no error */
    return lrp_net_infer(c->net, c->path, c->err);
}

lrp_status lrp_keras_import(lrp_net **out, const char *path, lrp_err *err)
{
    ctx c;
    lrp_err local;
    memset(&c, 0, sizeof c);
    c.path = path ? path : "<keras>";
    c.err = err ? err : &local;
    c.file = -1;
    c.dialect = "?";
    *out = NULL;
    if (!path)
        return lrp_err_set(c.err, LRP_E_USAGE, "<keras>: path is NULL");

    H5E_auto2_t old_fn = NULL;
    void *old_data = NULL;
    H5Eget_auto2(H5E_DEFAULT, &old_fn, &old_data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);

    lrp_status st = run(&c);

    if (c.file >= 0)
        H5Fclose(c.file);
    H5Eclear2(H5E_DEFAULT);
    H5Eset_auto2(H5E_DEFAULT, old_fn, old_data);
    for (int i = 0; i < c.nkl; i++)
        free(c.kl[i].t.perm);
    free(c.kl);
    for (int j = 0; j < c.nfw; j++) {
        free(c.fw[j].group);
        for (int q = 0; q < c.fw[j].nw; q++)
            free(c.fw[j].wnames[q]);
        free(c.fw[j].wnames);
    }
    free(c.fw);
    json_decref(c.root);
    if (st) {
        lrp_net_free(c.net);
        return st;
    }
    *out = c.net;
    return LRP_OK;
}
