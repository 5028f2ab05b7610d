/*
 * h5io.c -- the HDF5 fixture file: reader and writer (schema in docs/FORMAT.md).
 *
 * Files come from elsewhere (h5py scripts, converters, other machines), so
 * the reader trusts nothing: every object is checked to be a hard link of the
 * expected type, every dataset's class, rank, dimensions and storage are
 * checked against the shape the graph implies *before* anything is
 * allocated, and every name goes through the X-macro tables in names.c.
 * HDF5's own error printer is switched off for the duration of a call; its
 * error stack is turned into one line "PATH: OBJECT: problem".
 *
 * The writer only writes networks that pass lrp_net_infer, uses the 1.10
 * file format with chunked, Fletcher32-checksummed datasets (docs/RELIABILITY.md section 0: the
 * combination that corrupt files cannot crash or hang), switches off object
 * timestamps so two writes of one net are byte-identical, and goes through a
 * temporary file in the target directory plus rename(), so a failed or killed
 * writer never leaves a half-written or clobbered target.
 *
 * HDF5 on Debian maps unversioned API names to the 1.8 API; every call with
 * a versioned variant uses its explicit name (H5Gcreate2, H5Dopen2, ...).
 */
#define _GNU_SOURCE
#include "lrp.h"
#include "h5io_int.h"
#include "h5sink.h"
#include "kinds.h"
#include "safeout.h"

#include <hdf5.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define OBJ_MAX 512     /* HDF5 object paths we build: names are < 64 bytes */
#define MAX_FLAGS 32    /* flag names in one rule */
#define MAX_FIXED_STR 65536 /* fixed-length string element size we accept */
#define CHUNK_BYTES ((size_t)1 << 20)

int lrp_h5_entry_name(char *buf, size_t n, int li, const char *layer_name)
{
    return snprintf(buf, n, "%03d_%s", li, layer_name);
}

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

/* The innermost description on HDF5's current error stack: the most
 * specific one ("truncated file: eof = ...", "checksum verification
 * failed"), the outer entries only repeat which API call failed. */
typedef struct h5msg {
    char desc[200];
    int nomem; /* some entry is a resource (allocation) failure */
} h5msg;

static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *data)
{
    h5msg *m = data;
    (void)n;
    if (e && e->desc && e->desc[0])
        snprintf(m->desc, sizeof m->desc, "%s", e->desc);
    if (e && e->maj_num == H5E_RESOURCE && (e->min_num == H5E_CANTALLOC || e->min_num == H5E_NOSPACE))
        m->nomem = 1;
    return 0;
}

/* returns 1 when the failure was libhdf5 running out of memory (under
 * LRP_SANDBOX_MEM_MB a read can fail so): that is not the file's fault */
static int h5_last_error(char *buf, size_t n)
{
    h5msg m;
    m.desc[0] = '\0';
    m.nomem = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_cb, &m);
    snprintf(buf, n, "%s", m.desc[0] ? m.desc : "unknown HDF5 error");
    return m.nomem;
}

/* A member index of one large group: every link's name, type and address
 * from one iteration (name order), so that opening each of n members costs
 * a binary search instead of a scan of the group's links.  Our writer keeps
 * links compact (in the object header, see lrp_fixture_write), where libhdf5
 * finds a name by walking every link message and a by-index name by
 * building and sorting the whole link table: per member O(n) and
 * O(n log n), quadratic over a group (56 s for `info` of 4096 layers).
 * Only an accelerator: when the iteration fails the per-name lookups run as
 * before, so errors are reported the same way. */
typedef struct gmember {
    char *name;
    H5L_type_t type;
    haddr_t addr;
} gmember;

typedef struct gindex {
    hid_t g;         /* the group (0: slot free) */
    int state;       /* 0 not built yet, 1 built, -1 iteration failed */
    size_t n, cap;
    gmember *m;      /* in iteration (name) order */
    size_t *sorted;  /* indices into m, by strcmp of the names */
} gindex;

#define GINDEX_SLOTS 4

/* Shared by reader and writer: the file name users know and the error. */
typedef struct ctx {
    const char *path;
    lrp_err *err;
    gindex gix[GINDEX_SLOTS]; /* zero-initialised: g == 0 is no group id */
    int version;              /* the file's format_version (reader) */
} ctx;

static lrp_status fail(ctx *c, lrp_status code, const char *obj, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static lrp_status fail(ctx *c, lrp_status code, const char *obj, const char *fmt, ...)
{
    char problem[LRP_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(problem, sizeof problem, fmt, ap);
    va_end(ap);
    return lrp_err_set(c->err, code, "%s: %s: %s", c->path, obj, problem);
}

/* A failed HDF5 call: our words plus HDF5's innermost description; an
 * allocation failure inside libhdf5 is reported as out of memory, not as a
 * problem of the file. */
static lrp_status h5fail(ctx *c, lrp_status code, const char *obj, const char *what)
{
    char h5[200];
    if (h5_last_error(h5, sizeof h5))
        return fail(c, LRP_E_NOMEM, obj, "out of memory in libhdf5 (HDF5: %s)", h5);
    return fail(c, code, obj, "%s (HDF5: %s)", what, h5);
}

/* HDF5's automatic error printing is process-global state: switch it off
 * for one call and put back whatever the caller had. */
typedef struct quiet {
    H5E_auto2_t func;
    void *data;
} quiet;

static void quiet_begin(quiet *q)
{
    q->func = NULL;
    q->data = NULL;
    H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static void quiet_end(const quiet *q) { H5Eset_auto2(H5E_DEFAULT, q->func, q->data); }

static void close_id(hid_t *id)
{
    if (*id >= 0) {
        H5Idec_ref(*id);
        *id = H5I_INVALID_HID;
    }
}

static void dims_str(char *buf, size_t n, int rank, const int64_t *d)
{
    size_t used = 0;
    used += (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < rank && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%lld", i ? ", " : "", (long long)d[i]);
    if (used < n)
        snprintf(buf + used, n - used, ")");
}

static void type_str(char *buf, size_t n, hid_t t)
{
    H5T_class_t cl = H5Tget_class(t);
    size_t bits = H5Tget_size(t) * 8;
    switch (cl) {
    case H5T_INTEGER:
        snprintf(buf, n, "%zu-bit %s integer", bits,
                 H5Tget_sign(t) == H5T_SGN_NONE ? "unsigned" : "signed");
        break;
    case H5T_FLOAT: snprintf(buf, n, "%zu-bit float", bits); break;
    case H5T_STRING: snprintf(buf, n, "string"); break;
    case H5T_ENUM: snprintf(buf, n, "enum"); break;
    case H5T_COMPOUND: snprintf(buf, n, "compound"); break;
    case H5T_ARRAY: snprintf(buf, n, "array type"); break;
    case H5T_VLEN: snprintf(buf, n, "variable-length sequence"); break;
    case H5T_REFERENCE: snprintf(buf, n, "reference"); break;
    case H5T_OPAQUE: snprintf(buf, n, "opaque"); break;
    case H5T_BITFIELD: snprintf(buf, n, "bitfield"); break;
    default: snprintf(buf, n, "unknown type class %d", (int)cl); break;
    }
}

/* parent + "/" + name, truncated to fit (paths only label messages; every
 * object is opened relative to its group, never by this string). */
static void join(char *buf, size_t n, const char *parent, const char *name)
{
    size_t used = 0;
    const char *parts[3] = {strcmp(parent, "/") == 0 ? "" : parent, "/", name};
    for (int i = 0; i < 3; i++)
        for (const char *p = parts[i]; *p && used + 1 < n; p++)
            buf[used++] = *p;
    buf[used] = '\0';
}

/* ------------------------------------------------------------------ */
/* Reader: objects                                                     */
/* ------------------------------------------------------------------ */

static herr_t gindex_cb(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
    gindex *x = data;
    (void)g;
    if (x->n == x->cap) {
        size_t cap = x->cap ? 2 * x->cap : 64;
        gmember *m = realloc(x->m, cap * sizeof *m);
        if (!m)
            return -1;
        x->m = m;
        x->cap = cap;
    }
    gmember *e = &x->m[x->n];
    if (!(e->name = strdup(name)))
        return -1;
    e->type = info->type;
    e->addr = info->type == H5L_TYPE_HARD ? info->u.address : HADDR_UNDEF;
    x->n++;
    return 0;
}

static const gmember *sort_base;
static int cmp_member(const void *a, const void *b)
{
    return strcmp(sort_base[*(const size_t *)a].name, sort_base[*(const size_t *)b].name);
}

static void gindex_clear(gindex *x)
{
    for (size_t i = 0; i < x->n; i++)
        free(x->m[i].name);
    free(x->m);
    free(x->sorted);
    memset(x, 0, sizeof *x);
}

/* Marks group g (just opened, large) for indexing on first use. */
static void gindex_enable(ctx *c, hid_t g)
{
    for (int k = 0; k < GINDEX_SLOTS; k++)
        if (c->gix[k].g <= 0) {
            gindex_clear(&c->gix[k]);
            c->gix[k].g = g;
            return;
        }
}

static void gindex_drop(ctx *c, hid_t g)
{
    for (int k = 0; k < GINDEX_SLOTS; k++)
        if (g > 0 && c->gix[k].g == g)
            gindex_clear(&c->gix[k]);
}

/* The built index of group loc, or NULL (not enabled, or not buildable). */
static gindex *gindex_get(ctx *c, hid_t loc)
{
    gindex *x = NULL;
    for (int k = 0; k < GINDEX_SLOTS && !x; k++)
        if (loc > 0 && c->gix[k].g == loc)
            x = &c->gix[k];
    if (!x || x->state < 0)
        return NULL;
    if (x->state == 0) {
        hsize_t idx = 0;
        hid_t g = x->g;
        herr_t r = H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, gindex_cb, x);
        if (r >= 0 && (x->sorted = malloc((x->n ? x->n : 1) * sizeof *x->sorted))) {
            for (size_t i = 0; i < x->n; i++)
                x->sorted[i] = i;
            sort_base = x->m;
            qsort(x->sorted, x->n, sizeof *x->sorted, cmp_member);
            x->state = 1;
        } else {
            gindex_clear(x);
            x->g = g;
            x->state = -1;
            H5Eclear2(H5E_DEFAULT);
        }
    }
    return x->state == 1 ? x : NULL;
}

static const gmember *gindex_find(const gindex *x, const char *name)
{
    size_t lo = 0, hi = x->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int d = strcmp(x->m[x->sorted[mid]].name, name);
        if (d == 0)
            return &x->m[x->sorted[mid]];
        if (d < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Opens the member `name` of group `loc` (path `lpath`) and checks it is a
 * hard link to an object of type `want`.  When `required` is 0 a missing
 * member gives LRP_OK with *out = H5I_INVALID_HID. */
static lrp_status open_member(ctx *c, hid_t loc, const char *lpath, const char *name,
                              H5I_type_t want, int required, hid_t *out)
{
    char opath[OBJ_MAX];
    hid_t id = H5I_INVALID_HID;
    lrp_status st = LRP_OK;
    H5L_info_t li;
    *out = H5I_INVALID_HID;
    join(opath, sizeof opath, lpath, name);

    gindex *gx = gindex_get(c, loc);
    if (gx) {
        /* the same checks in the same order, from the index */
        const gmember *e = gindex_find(gx, name);
        if (!e) {
            if (required)
                st = fail(c, LRP_E_FORMAT, opath, "missing %s",
                          want == H5I_GROUP ? "group" : "dataset");
            goto cleanup;
        }
        li.type = e->type;
        if (li.type == H5L_TYPE_HARD)
            id = H5Oopen_by_addr(loc, e->addr);
        goto opened;
    }
    htri_t ex = H5Lexists(loc, name, H5P_DEFAULT);
    if (ex < 0) {
        st = h5fail(c, LRP_E_FORMAT, opath, "cannot look up");
        goto cleanup;
    }
    if (ex == 0) {
        if (required)
            st = fail(c, LRP_E_FORMAT, opath, "missing %s",
                      want == H5I_GROUP ? "group" : "dataset");
        goto cleanup;
    }
    if (H5Lget_info(loc, name, &li, H5P_DEFAULT) < 0) {
        st = h5fail(c, LRP_E_FORMAT, opath, "cannot read link");
        goto cleanup;
    }
    if (li.type != H5L_TYPE_HARD) {
        st = fail(c, LRP_E_FORMAT, opath, "is a %s link; only hard links are accepted",
                  li.type == H5L_TYPE_SOFT ? "soft" : li.type == H5L_TYPE_EXTERNAL ? "external"
                                                                                    : "user-defined");
        goto cleanup;
    }
    id = H5Oopen(loc, name, H5P_DEFAULT);
opened:
    if (li.type != H5L_TYPE_HARD) {
        st = fail(c, LRP_E_FORMAT, opath, "is a %s link; only hard links are accepted",
                  li.type == H5L_TYPE_SOFT ? "soft" : li.type == H5L_TYPE_EXTERNAL ? "external"
                                                                                    : "user-defined");
        goto cleanup;
    }
    if (id < 0) {
        st = h5fail(c, LRP_E_FORMAT, opath, "cannot open");
        goto cleanup;
    }
    H5I_type_t got = H5Iget_type(id);
    if (got != want) {
        st = fail(c, LRP_E_FORMAT, opath, "wrong object type: expected a %s, found a %s",
                  want == H5I_GROUP ? "group" : "dataset",
                  got == H5I_GROUP ? "group" : got == H5I_DATASET ? "dataset"
                                             : got == H5I_DATATYPE ? "named datatype" : "other object");
        goto cleanup;
    }
    *out = id;
    id = H5I_INVALID_HID;
cleanup:
    close_id(&id);
    return st;
}

/* Number of links in a group, bounded so loops over it are bounded. */
static lrp_status count_links(ctx *c, hid_t g, const char *gpath, hsize_t maxn, hsize_t *n)
{
    H5G_info_t gi;
    if (H5Gget_info(g, &gi) < 0)
        return h5fail(c, LRP_E_FORMAT, gpath, "cannot read group");
    if (gi.nlinks > maxn)
        return fail(c, LRP_E_INVALID, gpath, "%llu members, at most %llu allowed",
                    (unsigned long long)gi.nlinks, (unsigned long long)maxn);
    *n = gi.nlinks;
    return LRP_OK;
}

/* Name of link k (in name order) of group g; names longer than cap-1 are
 * refused rather than truncated. */
static lrp_status link_name(ctx *c, hid_t g, const char *gpath, hsize_t k, char *buf, size_t cap)
{
    ssize_t len = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, k, NULL, 0, H5P_DEFAULT);
    if (len < 0)
        return h5fail(c, LRP_E_FORMAT, gpath, "cannot list members");
    if ((size_t)len >= cap)
        return fail(c, LRP_E_INVALID, gpath, "member name of %zd bytes, at most %zu allowed", len,
                    cap - 1);
    if (H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, k, buf, cap, H5P_DEFAULT) < 0)
        return h5fail(c, LRP_E_FORMAT, gpath, "cannot list members");
    return LRP_OK;
}

/* Layer index that the entry name "NNN_<layer>" designates, or -1. */
static int entry_layer(const lrp_net *net, const char *name)
{
    char *end;
    if (name[0] < '0' || name[0] > '9')
        return -1;
    errno = 0;
    long i = strtol(name, &end, 10);
    if (errno || *end != '_' || i < 0 || i >= net->n_layers)
        return -1;
    char want[OBJ_MAX];
    lrp_h5_entry_name(want, sizeof want, (int)i, net->layers[i].name);
    return strcmp(want, name) == 0 ? (int)i : -1;
}

/* Every member of a per-layer group (/rules, relevance, ...) must name a
 * layer: a misspelt entry would otherwise be silently ignored. */
static lrp_status check_entries(ctx *c, hid_t g, const char *gpath, const lrp_net *net)
{
    hsize_t n;
    char name[OBJ_MAX], opath[OBJ_MAX];
    lrp_status st = count_links(c, g, gpath, (hsize_t)net->n_layers, &n);
    const gindex *gx = st ? NULL : gindex_get(c, g);
    if (gx && gx->n != n)
        gx = NULL; /* not what the group says it holds: the slow way */
    for (hsize_t k = 0; !st && k < n; k++) {
        if (gx) {
            size_t len = strlen(gx->m[k].name);
            if (len >= sizeof name) {
                st = fail(c, LRP_E_INVALID, gpath, "member name of %zd bytes, at most %zu allowed",
                          (ssize_t)len, sizeof name - 1);
                break;
            }
            memcpy(name, gx->m[k].name, len + 1);
        } else if ((st = link_name(c, g, gpath, k, name, sizeof name))) {
            break;
        }
        if (entry_layer(net, name) < 0) {
            join(opath, sizeof opath, gpath, name);
            st = fail(c, LRP_E_FORMAT, opath,
                      "names no layer (entries are NNN_<layer> with the layer's index in /network order)");
        }
    }
    return st;
}

/* ------------------------------------------------------------------ */
/* Reader: attributes                                                  */
/* ------------------------------------------------------------------ */

static lrp_status has_attr(ctx *c, hid_t obj, const char *opath, const char *name, int *yes)
{
    htri_t ex = H5Aexists(obj, name);
    if (ex < 0)
        return h5fail(c, LRP_E_FORMAT, opath, "cannot look up attributes");
    *yes = ex > 0;
    return LRP_OK;
}

/* Opens attribute `name` and returns its element count: 1 for a scalar,
 * 0 for a null dataspace, the length of a 1-D simple dataspace. */
static lrp_status open_attr(ctx *c, hid_t obj, const char *opath, const char *name, hid_t *a,
                            hid_t *type, hid_t *space, hsize_t *count)
{
    int yes = 0;
    lrp_status st = has_attr(c, obj, opath, name, &yes);
    *a = *type = *space = H5I_INVALID_HID;
    if (st)
        return st;
    if (!yes)
        return fail(c, LRP_E_FORMAT, opath, "missing attribute '%s'", name);
    if ((*a = H5Aopen(obj, name, H5P_DEFAULT)) < 0 || (*type = H5Aget_type(*a)) < 0 ||
        (*space = H5Aget_space(*a)) < 0)
        return h5fail(c, LRP_E_FORMAT, opath, "cannot open attribute");
    H5S_class_t sc = H5Sget_simple_extent_type(*space);
    if (sc == H5S_SCALAR) {
        *count = 1;
    } else if (sc == H5S_NULL) {
        *count = 0;
    } else if (sc == H5S_SIMPLE && H5Sget_simple_extent_ndims(*space) == 1) {
        H5Sget_simple_extent_dims(*space, count, NULL);
    } else {
        return fail(c, LRP_E_FORMAT, opath, "attribute '%s': expected a scalar or a 1-D array", name);
    }
    return LRP_OK;
}

/* Reads a string attribute (scalar or 1-D, variable- or fixed-length) of at
 * most maxn strings, each shorter than cap bytes, into a new array of
 * n * cap bytes (*out, caller frees). */
static lrp_status attr_strings(ctx *c, hid_t obj, const char *opath, const char *name, int maxn,
                               size_t cap, char **out, int *nout)
{
    hid_t a, ft, sp, mt = H5I_INVALID_HID;
    hsize_t n = 0;
    char **vl = NULL, *fx = NULL, *res = NULL;
    int vl_read = 0;
    size_t fsize = 0;
    lrp_status st = open_attr(c, obj, opath, name, &a, &ft, &sp, &n);
    *out = NULL;
    *nout = 0;
    if (st)
        goto cleanup;
    if (H5Tget_class(ft) != H5T_STRING) {
        char t[64];
        type_str(t, sizeof t, ft);
        st = fail(c, LRP_E_FORMAT, opath, "attribute '%s': wrong type: expected string, found %s",
                  name, t);
        goto cleanup;
    }
    if (n > (hsize_t)maxn) {
        st = fail(c, LRP_E_INVALID, opath, "attribute '%s': %llu strings, at most %d allowed", name,
                  (unsigned long long)n, maxn);
        goto cleanup;
    }
    res = calloc(n ? (size_t)n : 1, cap);
    if (!res) {
        st = fail(c, LRP_E_NOMEM, opath, "out of memory reading attribute '%s'", name);
        goto cleanup;
    }
    if (n == 0)
        goto done;
    mt = H5Tcopy(H5T_C_S1);
    if (mt < 0 || H5Tset_cset(mt, H5Tget_cset(ft)) < 0) {
        st = h5fail(c, LRP_E_FORMAT, opath, "cannot make string type");
        goto cleanup;
    }
    htri_t isvar = H5Tis_variable_str(ft);
    if (isvar > 0) {
        vl = calloc((size_t)n, sizeof *vl);
        if (!vl) {
            st = fail(c, LRP_E_NOMEM, opath, "out of memory reading attribute '%s'", name);
            goto cleanup;
        }
        if (H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Aread(a, mt, vl) < 0) {
            st = h5fail(c, LRP_E_FORMAT, opath, "cannot read string attribute");
            goto cleanup;
        }
        vl_read = 1;
        for (hsize_t i = 0; i < n; i++) {
            const char *s = vl[i] ? vl[i] : "";
            size_t len = strlen(s);
            if (len >= cap) {
                st = fail(c, LRP_E_INVALID, opath,
                          "attribute '%s': string of %zu bytes, at most %zu allowed", name, len,
                          cap - 1);
                goto cleanup;
            }
            memcpy(res + i * cap, s, len + 1);
        }
    } else {
        fsize = H5Tget_size(ft);
        if (isvar < 0 || fsize == 0 || fsize > MAX_FIXED_STR) {
            st = fail(c, LRP_E_FORMAT, opath, "attribute '%s': unreadable fixed-length string type",
                      name);
            goto cleanup;
        }
        /* One more byte per element, NUL-terminated: a NULLPAD string that
         * fills its field keeps its last character. */
        fx = calloc((size_t)n, fsize + 1);
        if (!fx) {
            st = fail(c, LRP_E_NOMEM, opath, "out of memory reading attribute '%s'", name);
            goto cleanup;
        }
        /* The raw bytes first (the file's own type, no conversion: a
         * conversion stops at the first NUL and would hide what follows):
         * a NUL inside a fixed-length string, followed by more text, would
         * silently cut the name; refused. */
        hid_t rt = H5Tcopy(ft);
        if (rt < 0 || H5Aread(a, rt, fx) < 0) {
            close_id(&rt);
            st = h5fail(c, LRP_E_FORMAT, opath, "cannot read string attribute");
            goto cleanup;
        }
        close_id(&rt);
        for (hsize_t i = 0; i < n; i++) {
            const char *s = fx + i * fsize;
            size_t len = strnlen(s, fsize);
            for (size_t k = len; k < fsize; k++)
                if (s[k] != '\0') {
                    st = fail(c, LRP_E_INVALID, opath,
                              "attribute '%s': string %llu has a NUL byte at offset %zu followed "
                              "by more text (a name cut short)",
                              name, (unsigned long long)i, len);
                    goto cleanup;
                }
        }
        memset(fx, 0, (size_t)n * (fsize + 1));
        if (H5Tset_size(mt, fsize + 1) < 0 || H5Tset_strpad(mt, H5T_STR_NULLTERM) < 0 ||
            H5Aread(a, mt, fx) < 0) {
            st = h5fail(c, LRP_E_FORMAT, opath, "cannot read string attribute");
            goto cleanup;
        }
        for (hsize_t i = 0; i < n; i++) {
            const char *s = fx + i * (fsize + 1);
            size_t len = strnlen(s, fsize);
            if (len >= cap) {
                st = fail(c, LRP_E_INVALID, opath,
                          "attribute '%s': string of %zu bytes, at most %zu allowed", name, len,
                          cap - 1);
                goto cleanup;
            }
            memcpy(res + i * cap, s, len);
            res[i * cap + len] = '\0';
        }
    }
done:
    *out = res;
    res = NULL;
    *nout = (int)n;
cleanup:
    if (vl_read)
        H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, vl);
    free(vl);
    free(fx);
    free(res);
    close_id(&mt);
    close_id(&sp);
    close_id(&ft);
    close_id(&a);
    return st;
}

/* One string (scalar or 1-element array).  dflt != NULL makes it optional. */
static lrp_status attr_string(ctx *c, hid_t obj, const char *opath, const char *name, char *dst,
                              size_t cap, const char *dflt)
{
    char *v = NULL;
    int n = 0, yes = 1;
    lrp_status st = LRP_OK;
    if (dflt && (st = has_attr(c, obj, opath, name, &yes)))
        return st;
    if (!yes) {
        snprintf(dst, cap, "%s", dflt);
        return LRP_OK;
    }
    if ((st = attr_strings(c, obj, opath, name, 1, cap, &v, &n)))
        return st;
    if (n != 1)
        st = fail(c, LRP_E_FORMAT, opath, "attribute '%s': expected one string, found %d", name, n);
    else
        memcpy(dst, v, cap);
    free(v);
    return st;
}

/* Reads minn..maxn integers.  Any integer class of size <= 8 is accepted,
 * and an enum over one (h5py stores numpy bools as enum over int8); values
 * are converted to int64 by HDF5 (saturating) and range-checked by callers. */
static lrp_status attr_ints(ctx *c, hid_t obj, const char *opath, const char *name, int minn,
                            int maxn, int64_t *out, int *nout)
{
    hid_t a, ft, sp, base = H5I_INVALID_HID;
    hsize_t n = 0;
    int64_t buf[8];
    lrp_status st = open_attr(c, obj, opath, name, &a, &ft, &sp, &n);
    if (st)
        goto cleanup;
    LRP_ASSERT(maxn <= 8);
    H5T_class_t cl = H5Tget_class(ft);
    if (cl == H5T_ENUM)
        base = H5Tget_super(ft);
    else if (cl == H5T_INTEGER)
        base = H5Tcopy(ft);
    if (base < 0 || H5Tget_class(base) != H5T_INTEGER || H5Tget_size(base) > 8) {
        char t[64];
        type_str(t, sizeof t, ft);
        st = fail(c, LRP_E_FORMAT, opath, "attribute '%s': wrong type: expected integer, found %s",
                  name, t);
        goto cleanup;
    }
    if (n < (hsize_t)minn || n > (hsize_t)maxn) {
        st = minn == maxn
                 ? fail(c, LRP_E_FORMAT, opath, "attribute '%s': expected %d value%s, found %llu",
                        name, minn, minn == 1 ? "" : "s", (unsigned long long)n)
                 : fail(c, LRP_E_FORMAT, opath,
                        "attribute '%s': expected %d to %d values, found %llu", name, minn, maxn,
                        (unsigned long long)n);
        goto cleanup;
    }
    /* Read the file's bytes unconverted (the buffer holds n 8-byte slots),
     * then convert in place from the integer base type to int64. */
    memset(buf, 0, sizeof buf);
    if (n > 0 && (H5Aread(a, ft, buf) < 0 ||
                  H5Tconvert(base, H5T_NATIVE_INT64, (size_t)n, buf, NULL, H5P_DEFAULT) < 0)) {
        st = h5fail(c, LRP_E_FORMAT, opath, "cannot read integer attribute");
        goto cleanup;
    }
    memcpy(out, buf, (size_t)n * sizeof *out);
    if (nout)
        *nout = (int)n;
cleanup:
    close_id(&base);
    close_id(&sp);
    close_id(&ft);
    close_id(&a);
    return st;
}

static lrp_status attr_int_range(ctx *c, hid_t obj, const char *opath, const char *name,
                                 int64_t lo, int64_t hi, int64_t *out)
{
    lrp_status st = attr_ints(c, obj, opath, name, 1, 1, out, NULL);
    if (!st && (*out < lo || *out > hi))
        st = fail(c, LRP_E_INVALID, opath, "attribute '%s': value %lld out of range [%lld, %lld]",
                  name, (long long)*out, (long long)lo, (long long)hi);
    return st;
}

/* A fixed number of int-sized values (kernel, stride, padding, ...).  The
 * range only guards the conversion to int; lrp_net_infer judges geometry. */
static lrp_status attr_int_vec(ctx *c, hid_t obj, const char *opath, const char *name, int n,
                               int *dst[])
{
    int64_t v[8];
    lrp_status st = attr_ints(c, obj, opath, name, n, n, v, NULL);
    for (int i = 0; !st && i < n; i++) {
        if (v[i] < INT_MIN / 2 || v[i] > INT_MAX / 2)
            st = fail(c, LRP_E_INVALID, opath, "attribute '%s': value %lld out of range", name,
                      (long long)v[i]);
        else
            *dst[i] = (int)v[i];
    }
    return st;
}

/* A binary32 attribute.  32-bit IEEE floats are taken as they are; a 64-bit
 * float (what h5py writes for a Python float) is accepted only when it is
 * exactly a binary32 value, so no rounding ever happens on the way in. */
static lrp_status attr_float(ctx *c, hid_t obj, const char *opath, const char *name, float *out)
{
    hid_t a, ft, sp;
    hsize_t n = 0;
    lrp_status st = open_attr(c, obj, opath, name, &a, &ft, &sp, &n);
    if (st)
        goto cleanup;
    if (n != 1) {
        st = fail(c, LRP_E_FORMAT, opath, "attribute '%s': expected one value, found %llu", name,
                  (unsigned long long)n);
        goto cleanup;
    }
    if (H5Tget_class(ft) == H5T_FLOAT &&
        (H5Tequal(ft, H5T_IEEE_F32LE) > 0 || H5Tequal(ft, H5T_IEEE_F32BE) > 0)) {
        if (H5Aread(a, H5T_NATIVE_FLOAT, out) < 0)
            st = h5fail(c, LRP_E_FORMAT, opath, "cannot read float attribute");
    } else if (H5Tget_class(ft) == H5T_FLOAT &&
               (H5Tequal(ft, H5T_IEEE_F64LE) > 0 || H5Tequal(ft, H5T_IEEE_F64BE) > 0)) {
        double d;
        if (H5Aread(a, H5T_NATIVE_DOUBLE, &d) < 0) {
            st = h5fail(c, LRP_E_FORMAT, opath, "cannot read float attribute");
        } else if (!isnan(d) && (double)(float)d != d) {
            st = fail(c, LRP_E_FORMAT, opath,
                      "attribute '%s': 64-bit value %.17g is not exactly a binary32 value "
                      "(store it as 32-bit float)",
                      name, d);
        } else {
            *out = (float)d;
        }
    } else {
        char t[64];
        type_str(t, sizeof t, ft);
        st = fail(c, LRP_E_FORMAT, opath,
                  "attribute '%s': wrong type: expected 32-bit float, found %s", name, t);
    }
cleanup:
    close_id(&sp);
    close_id(&ft);
    close_id(&a);
    return st;
}

static lrp_status attr_float_opt(ctx *c, hid_t obj, const char *opath, const char *name, float *out)
{
    int yes = 0;
    lrp_status st = has_attr(c, obj, opath, name, &yes);
    if (!st && yes)
        st = attr_float(c, obj, opath, name, out);
    return st;
}

/* ------------------------------------------------------------------ */
/* Reader: datasets                                                    */
/* ------------------------------------------------------------------ */

/* Opens dataset `name` of group g and checks storage, class, rank and every
 * dimension against want[0..rank-1] before anything is allocated.
 * is_float selects 32-bit IEEE float (parameters, data, relevance) or any
 * integer class (target).  graph_dim >= 0 names the dimension that comes
 * from the input layer `graph_src`: a mismatch only there is a disagreement
 * along the graph (LRP_E_INVALID), any other a malformed file. */
static lrp_status open_checked(ctx *c, hid_t g, const char *gpath, const char *name, int required,
                               int is_float, int rank, const int64_t *want, int graph_dim,
                               const char *graph_src, hid_t *out)
{
    char opath[OBJ_MAX], b1[160], b2[160], t[64];
    hid_t ds = H5I_INVALID_HID, ft = H5I_INVALID_HID, sp = H5I_INVALID_HID, dcpl = H5I_INVALID_HID;
    hsize_t dims[H5S_MAX_RANK];
    int64_t got[H5S_MAX_RANK];
    lrp_status st;
    *out = H5I_INVALID_HID;
    join(opath, sizeof opath, gpath, name);
    if ((st = open_member(c, g, gpath, name, H5I_DATASET, required, &ds)) || ds < 0)
        goto cleanup;

    if ((dcpl = H5Dget_create_plist(ds)) < 0) {
        st = h5fail(c, LRP_E_FORMAT, opath, "cannot read storage properties");
        goto cleanup;
    }
    H5D_layout_t lay = H5Pget_layout(dcpl);
    if (lay == H5D_VIRTUAL || lay < 0) {
        st = fail(c, LRP_E_FORMAT, opath, "virtual dataset storage is not accepted");
        goto cleanup;
    }
    if (H5Pget_external_count(dcpl) != 0) {
        st = fail(c, LRP_E_FORMAT, opath, "external storage is not accepted");
        goto cleanup;
    }

    if ((ft = H5Dget_type(ds)) < 0) {
        st = h5fail(c, LRP_E_FORMAT, opath, "cannot read type");
        goto cleanup;
    }
    int type_ok = is_float ? H5Tget_class(ft) == H5T_FLOAT &&
                                 (H5Tequal(ft, H5T_IEEE_F32LE) > 0 || H5Tequal(ft, H5T_IEEE_F32BE) > 0)
                           : H5Tget_class(ft) == H5T_INTEGER && H5Tget_size(ft) <= 8;
    if (!type_ok) {
        type_str(t, sizeof t, ft);
        st = fail(c, LRP_E_FORMAT, opath, "wrong type: expected %s, found %s",
                  is_float ? "32-bit float (IEEE binary32; other float widths are refused so "
                             "values are never rounded)"
                           : "integer",
                  t);
        goto cleanup;
    }

    if ((sp = H5Dget_space(ds)) < 0) {
        st = h5fail(c, LRP_E_FORMAT, opath, "cannot read dataspace");
        goto cleanup;
    }
    dims_str(b1, sizeof b1, rank, want);
    if (H5Sget_simple_extent_type(sp) != H5S_SIMPLE) {
        st = fail(c, LRP_E_FORMAT, opath, "wrong rank: expected shape %s, found a %s dataspace", b1,
                  H5Sget_simple_extent_type(sp) == H5S_SCALAR ? "scalar" : "null");
        goto cleanup;
    }
    int nd = H5Sget_simple_extent_ndims(sp);
    if (nd < 0 || nd > H5S_MAX_RANK || H5Sget_simple_extent_dims(sp, dims, NULL) < 0) {
        st = h5fail(c, LRP_E_FORMAT, opath, "cannot read dataspace");
        goto cleanup;
    }
    int same = nd == rank, only_graph = nd == rank && graph_dim >= 0;
    for (int i = 0; i < nd; i++) {
        /* Clamp for printing: a hostile dimension can exceed INT64_MAX. */
        got[i] = dims[i] > (hsize_t)INT64_MAX ? INT64_MAX : (int64_t)dims[i];
        if (i < rank && got[i] != want[i]) {
            same = 0;
            if (i != graph_dim)
                only_graph = 0;
        }
    }
    if (!same) {
        dims_str(b2, sizeof b2, nd, got);
        if (only_graph)
            st = fail(c, LRP_E_INVALID, opath,
                      "shape mismatch along the graph: expected shape %s from input layer '%s', found %s",
                      b1, graph_src, b2);
        else
            st = fail(c, LRP_E_FORMAT, opath, "wrong %s: expected shape %s, found %s",
                      nd != rank ? "rank" : "shape", b1, b2);
        goto cleanup;
    }
    *out = ds;
    ds = H5I_INVALID_HID;
cleanup:
    close_id(&dcpl);
    close_id(&sp);
    close_id(&ft);
    close_id(&ds);
    return st;
}

static void (*array_hook)(void *hctx, const float *a, int64_t n);
static void *array_hook_ctx;

void lrp_h5_set_array_hook(void (*fn)(void *hctx, const float *a, int64_t n), void *hctx)
{
    array_hook = fn;
    array_hook_ctx = hctx;
}

static int (*raw_hook)(void *hctx, const lrp_h5_raw *r);
static void *raw_hook_ctx;
static uint64_t raw_dev, raw_ino;

void lrp_h5_set_raw_hook(int (*fn)(void *hctx, const lrp_h5_raw *r), void *hctx, uint64_t dev,
                         uint64_t ino)
{
    raw_hook = fn;
    raw_hook_ctx = hctx;
    raw_dev = dev;
    raw_ino = ino;
}

/* The dataset's storage as lrp_h5_raw describes it, when it is plain
 * enough and in the hook's file; 0 (r->addr etc. freed) when not.  Only
 * libhdf5's description is used, nothing of the values. */
static int describe_raw(hid_t ds, const char *opath, int64_t n, lrp_h5_raw *r)
{
    hid_t fid = H5I_INVALID_HID, ft = H5I_INVALID_HID, dcpl = H5I_INVALID_HID,
          sp = H5I_INVALID_HID;
    int ok = 0;
    memset(r, 0, sizeof *r);
    r->obj = opath;
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    /* the hook's reader copies the file's little-endian bytes as floats:
     * on another host libhdf5 converts them (H5Dread) */
    (void)ds;
    (void)n;
    return 0;
#endif
    /* the same file as the one the hook reads: not a fixture a trace file
     * names, not a file replaced since the hook's was opened */
    int *fdp = NULL;
    struct stat sb;
    if ((fid = H5Iget_file_id(ds)) < 0 || H5Fget_vfd_handle(fid, H5P_DEFAULT, (void **)&fdp) < 0 ||
        !fdp || fstat(*fdp, &sb) != 0 || (uint64_t)sb.st_dev != raw_dev ||
        (uint64_t)sb.st_ino != raw_ino)
        goto done;
    if ((ft = H5Dget_type(ds)) < 0 || H5Tequal(ft, H5T_IEEE_F32LE) <= 0 ||
        (dcpl = H5Dget_create_plist(ds)) < 0 || (sp = H5Dget_space(ds)) < 0)
        goto done;
    hsize_t dims[H5S_MAX_RANK];
    int rank = H5Sget_simple_extent_ndims(sp);
    if (rank < 1 || rank > LRP_MAX_RANK + 1 || H5Sget_simple_extent_dims(sp, dims, NULL) < 0)
        goto done;
    uint64_t total = 1;
    for (int i = 0; i < rank; i++)
        total *= (uint64_t)dims[i];
    if (total != (uint64_t)n)
        goto done;
    r->rank = rank;
    for (int i = 0; i < rank; i++)
        r->dims[i] = r->chunk[i] = (uint64_t)dims[i];
    H5D_layout_t lay = H5Pget_layout(dcpl);
    if (lay == H5D_CONTIGUOUS) {
        haddr_t a = H5Dget_offset(ds);
        if (H5Pget_nfilters(dcpl) != 0 || a == HADDR_UNDEF ||
            H5Dget_storage_size(ds) != (hsize_t)n * sizeof(float))
            goto done;
        r->n_chunks = 1;
        if (!(r->addr = malloc(sizeof *r->addr)) || !(r->size = malloc(sizeof *r->size)) ||
            !(r->mask = calloc(1, sizeof *r->mask)))
            goto done;
        r->addr[0] = (uint64_t)a;
        r->size[0] = (uint64_t)n * sizeof(float);
        ok = 1;
        goto done;
    }
    if (lay != H5D_CHUNKED)
        goto done;
    int nf = H5Pget_nfilters(dcpl);
    if (nf == 1) {
        unsigned flags = 0, cd[8];
        size_t ncd = 8;
        char fname[64];
        unsigned fc = 0;
        if (H5Pget_filter2(dcpl, 0, &flags, &ncd, cd, sizeof fname, fname, &fc) !=
            H5Z_FILTER_FLETCHER32)
            goto done;
        r->fletcher = 1;
    } else if (nf != 0) {
        goto done;
    }
    hsize_t ch[H5S_MAX_RANK];
    if (H5Pget_chunk(dcpl, rank, ch) != rank)
        goto done;
    uint64_t grid[8], nc = 1, cvals = 1;
    for (int i = 0; i < rank; i++) {
        /* the bounds the hook's reader holds a description to
         * (tools/sandbox.c raw_recv): anything else is read here */
        if (ch[i] < 1 || ch[i] > dims[i] || dims[i] > (hsize_t)LRP_MAX_DIM)
            goto done;
        cvals *= (uint64_t)ch[i];
        if (cvals > ((uint64_t)1 << 28))
            goto done;
        r->chunk[i] = (uint64_t)ch[i];
        grid[i] = (r->dims[i] + r->chunk[i] - 1) / r->chunk[i];
        nc *= grid[i];
        if (nc > LRP_H5_RAW_MAX_CHUNKS)
            goto done;
    }
    r->n_chunks = nc;
    if (!(r->addr = malloc(nc * sizeof *r->addr)) || !(r->size = malloc(nc * sizeof *r->size)) ||
        !(r->mask = malloc(nc * sizeof *r->mask)))
        goto done;
    hsize_t off[H5S_MAX_RANK] = {0};
    for (uint64_t k = 0; k < nc; k++) {
        unsigned m = 0;
        haddr_t a = HADDR_UNDEF;
        hsize_t sz = 0;
        if (H5Dget_chunk_info_by_coord(ds, off, &m, &a, &sz) < 0 || a == HADDR_UNDEF)
            goto done; /* an unwritten chunk reads as fill values: libhdf5's */
        if ((m & ~1u) || (uint64_t)sz != cvals * 4 + (r->fletcher && !(m & 1u) ? 4 : 0))
            goto done; /* not stored as the values (and their checksum) alone */
        r->addr[k] = (uint64_t)a;
        r->size[k] = (uint64_t)sz;
        r->mask[k] = m;
        for (int i = rank - 1; i >= 0; i--) {
            off[i] += ch[i];
            if (off[i] < dims[i])
                break;
            off[i] = 0;
        }
    }
    ok = 1;
done:
    if (!ok) {
        free(r->addr);
        free(r->size);
        free(r->mask);
        r->addr = r->size = NULL;
        r->mask = NULL;
    }
    close_id(&sp);
    close_id(&dcpl);
    close_id(&ft);
    close_id(&fid);
    return ok;
}

static int64_t numel(int rank, const int64_t *d)
{
    int64_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= d[i];
    return n;
}

/* Reads a float32 dataset whose shape was checked by open_checked.  The
 * element count is bounded by the graph (LRP_MAX_ELEMS per sample,
 * LRP_MAX_BATCH samples), so the size computation cannot overflow. */
static lrp_status read_floats(ctx *c, hid_t g, const char *gpath, const char *name, int required,
                              int rank, const int64_t *want, int graph_dim, const char *graph_src,
                              float **out)
{
    char opath[OBJ_MAX];
    hid_t ds;
    float *buf = NULL;
    lrp_status st = open_checked(c, g, gpath, name, required, 1, rank, want, graph_dim, graph_src, &ds);
    *out = NULL;
    if (st || ds < 0)
        goto cleanup;
    join(opath, sizeof opath, gpath, name);
    int64_t n = numel(rank, want);
    if (n < 1 || (uint64_t)n > SIZE_MAX / sizeof(float) ||
        !(buf = malloc((size_t)n * sizeof(float)))) {
        st = fail(c, LRP_E_NOMEM, opath, "out of memory for %lld values", (long long)n);
        goto cleanup;
    }
    lrp_h5_raw raw;
    if (raw_hook && describe_raw(ds, opath, n, &raw)) {
        /* the values are the hook's to read: buf stays untouched (no page
         * of it is ever faulted in here) */
        int taken = raw_hook(raw_hook_ctx, &raw);
        free(raw.addr);
        free(raw.size);
        free(raw.mask);
        if (taken) {
            *out = buf;
            buf = NULL;
            goto cleanup;
        }
    }
    if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        st = h5fail(c, LRP_E_FORMAT, opath, "cannot read data (corrupt file?)");
        goto cleanup;
    }
    if (array_hook)
        array_hook(array_hook_ctx, buf, n);
    *out = buf;
    buf = NULL;
cleanup:
    free(buf);
    close_id(&ds);
    return st;
}

/* ------------------------------------------------------------------ */
/* Reader: the network                                                 */
/* ------------------------------------------------------------------ */

typedef struct name_ix {
    const char *name;
    int ix;
} name_ix;

static int cmp_name_ix(const void *a, const void *b)
{
    return strcmp(((const name_ix *)a)->name, ((const name_ix *)b)->name);
}

/* Geometry attributes of one layer: its kind's schema (core/kinds.h), the
 * one the writer (w_layer) follows too. */
static lrp_status read_geometry(ctx *c, hid_t g, const char *gp, lrp_layer *l)
{
    lrp_status st = LRP_OK;
    const lrp_kind_desc *kd = lrp_kind(l->kind);
    char *base = (char *)l;
    for (int a = 0; a < kd->n_attrs; a++) {
        const lrp_kind_attr *at = &kd->attrs[a];
        const char *an = at->name;
        int64_t v[LRP_MAX_RANK];
        int n = 0;
        switch ((lrp_attr_type)at->type) {
        case LRP_A_SHAPE: {
            lrp_shape *s = (lrp_shape *)(base + at->off[0]);
            if ((st = attr_ints(c, g, gp, an, 1, LRP_MAX_RANK, v, &n)))
                return st;
            s->rank = n;
            for (int i = 0; i < n; i++) {
                if (v[i] < 1 || v[i] > LRP_MAX_DIM)
                    return fail(c, LRP_E_INVALID, gp, "attribute '%s': dimension %lld out of range [1, %lld]",
                                an, (long long)v[i], (long long)LRP_MAX_DIM);
                s->d[i] = v[i];
            }
            break;
        }
        case LRP_A_I64:
            /* Only guards the int64 field; lrp_net_infer applies LRP_MAX_DIM. */
            if ((st = attr_ints(c, g, gp, an, 1, 1, (int64_t *)(base + at->off[0]), NULL)))
                return st;
            break;
        case LRP_A_BOOL:
            if ((st = attr_int_range(c, g, gp, an, 0, 1, v)))
                return st;
            *(int *)(base + at->off[0]) = (int)v[0];
            break;
        case LRP_A_I32:
        case LRP_A_I32V: {
            int *dst[4];
            LRP_ASSERT(at->n >= 1 && at->n <= 4);
            for (int i = 0; i < at->n; i++)
                dst[i] = (int *)(base + at->off[i]);
            if ((st = attr_int_vec(c, g, gp, an, at->n, dst)))
                return st;
            break;
        }
        case LRP_A_F32:
            if ((st = attr_float(c, g, gp, an, (float *)(base + at->off[0]))))
                return st;
            break;
        case LRP_A_ENUM: {
            char s[LRP_NAME_MAX], list[256];
            size_t used = 0;
            if ((st = attr_string(c, g, gp, an, s, sizeof s, NULL)))
                return st;
            const char *const *names = lrp_attr_enums[at->n];
            int k = 0;
            while (names[k] && strcmp(names[k], s) != 0)
                k++;
            if (!names[k]) {
                list[0] = '\0';
                for (int q = 0; names[q] && used < sizeof list; q++)
                    used += (size_t)snprintf(list + used, sizeof list - used, "%s'%s'",
                                             q ? ", " : "", names[q]);
                char esc[3 * LRP_NAME_MAX];
                return fail(c, LRP_E_INVALID, gp, "attribute '%s' is '%s', expected one of %s", an,
                            lrp_str_esc(esc, sizeof esc, s), list);
            }
            *(int *)(base + at->off[0]) = k;
            break;
        }
        }
    }
    return LRP_OK;
}

/* Depth-first search along input edges for a cycle; on finding one writes
 * "a -> b -> a" (data-flow direction) into buf and returns 1. */
static int find_cycle(const lrp_net *net, char *buf, size_t bufn)
{
    int n = net->n_layers, found = 0;
    unsigned char *color = calloc((size_t)n, 1); /* 0 new, 1 on stack, 2 done */
    int *stack = malloc((size_t)n * sizeof *stack), *next = malloc((size_t)n * sizeof *next);
    if (!color || !stack || !next)
        goto cleanup;
    for (int s = 0; s < n && !found; s++) {
        if (color[s])
            continue;
        int top = 0;
        stack[0] = s;
        next[0] = 0;
        color[s] = 1;
        while (top >= 0 && !found) {
            int v = stack[top];
            if (next[top] < net->layers[v].n_in) {
                int u = net->layers[v].in[next[top]++];
                if (color[u] == 1) {
                    /* stack[j..top] with stack[j] == u: each entry's input is
                     * the next; data flows from the deepest entry upwards. */
                    int j = top;
                    while (stack[j] != u)
                        j--;
                    size_t used = 0;
                    used += (size_t)snprintf(buf + used, bufn - used, "%s", net->layers[u].name);
                    for (int q = top; q >= j && used < bufn; q--)
                        used += (size_t)snprintf(buf + used, bufn - used, " -> %s",
                                                 net->layers[stack[q]].name);
                    found = 1;
                } else if (color[u] == 0) {
                    color[u] = 1;
                    stack[++top] = u;
                    next[top] = 0;
                }
            } else {
                color[v] = 2;
                top--;
            }
        }
    }
cleanup:
    free(color);
    free(stack);
    free(next);
    return found;
}

static lrp_status copy_err(ctx *c, const lrp_err *e)
{
    return lrp_err_set(c->err, e->code, "%s", e->msg);
}

/* /network: the order attribute, one group per layer, inputs resolved by
 * name.  Leaves shapes to lrp_net_infer. */
static lrp_status read_network(ctx *c, hid_t file, lrp_net *net)
{
    hid_t g = H5I_INVALID_HID, lg = H5I_INVALID_HID;
    char *order = NULL, *inn = NULL;
    name_ix *ix = NULL;
    int n = 0, nin = 0, yes = 0;
    char gp[OBJ_MAX], ename[OBJ_MAX], kind[LRP_NAME_MAX], nm[LRP_NAME_MAX];
    char cyc[LRP_ERR_MSG_MAX / 2];
    lrp_err e2;
    lrp_status st;

    if ((st = open_member(c, file, "/", "network", H5I_GROUP, 1, &g)))
        goto cleanup;
    gindex_enable(c, g);
    if ((st = attr_strings(c, g, "/network", "order", LRP_MAX_LAYERS, LRP_NAME_MAX, &order, &n)))
        goto cleanup;
    if (!(ix = malloc((size_t)(n ? n : 1) * sizeof *ix))) {
        st = fail(c, LRP_E_NOMEM, "/network", "out of memory");
        goto cleanup;
    }
    for (int i = 0; i < n; i++) {
        const char *s = order + (size_t)i * LRP_NAME_MAX;
        if (!*s || strchr(s, '/')) {
            st = fail(c, LRP_E_INVALID, "/network",
                      "attribute 'order': entry %d: layer name '%s' is empty or contains '/'", i, s);
            goto cleanup;
        }
        ix[i].name = s;
        ix[i].ix = i;
    }
    qsort(ix, (size_t)n, sizeof *ix, cmp_name_ix);
    for (int i = 1; i < n; i++)
        if (strcmp(ix[i - 1].name, ix[i].name) == 0) {
            st = fail(c, LRP_E_INVALID, "/network", "attribute 'order': layer '%s' listed twice",
                      ix[i].name);
            goto cleanup;
        }

    for (int i = 0; i < n; i++) {
        const char *lname = order + (size_t)i * LRP_NAME_MAX;
        lrp_layer_kind k;
        lrp_h5_entry_name(ename, sizeof ename, i, lname);
        join(gp, sizeof gp, "/network", ename);
        if ((st = open_member(c, g, "/network", ename, H5I_GROUP, 1, &lg)))
            goto cleanup;
        if ((st = attr_string(c, lg, gp, "name", nm, sizeof nm, NULL)))
            goto cleanup;
        if (strcmp(nm, lname) != 0) {
            st = fail(c, LRP_E_FORMAT, gp,
                      "attribute 'name' is '%s' but /network order lists '%s' here", nm, lname);
            goto cleanup;
        }
        if ((st = attr_string(c, lg, gp, "kind", kind, sizeof kind, NULL)))
            goto cleanup;
        if (lrp_layer_kind_parse(kind, &k) != 0) {
            st = fail(c, LRP_E_UNSUPPORTED, gp, "unknown layer kind '%s'", kind);
            goto cleanup;
        }
        if (lrp_kind(k)->format_version > c->version) {
            st = fail(c, LRP_E_FORMAT, gp, "layer kind '%s' needs format_version %d (the file says %d)",
                      kind, lrp_kind(k)->format_version, c->version);
            goto cleanup;
        }
        int li = lrp_net_add(net, k, lname, &e2);
        if (li < 0) {
            st = copy_err(c, &e2);
            goto cleanup;
        }
        lrp_layer *l = &net->layers[li];
        if ((st = read_geometry(c, lg, gp, l)))
            goto cleanup;
        if (k == LRP_LAYER_INPUT) {
            /* dtype 'token' (version 2): the input is /data/tokens */
            if ((st = has_attr(c, lg, gp, "dtype", &yes)))
                goto cleanup;
            if (yes) {
                char dt[LRP_NAME_MAX];
                if ((st = attr_string(c, lg, gp, "dtype", dt, sizeof dt, NULL)))
                    goto cleanup;
                if (strcmp(dt, "token") != 0 || c->version < 2) {
                    st = fail(c, LRP_E_UNSUPPORTED, gp,
                              "attribute 'dtype' is '%s' (only 'token', format_version 2)", dt);
                    goto cleanup;
                }
                l->tokens = 1;
            }
        }
        /* An Input may omit `inputs`; every other layer must list them. */
        if ((st = has_attr(c, lg, gp, "inputs", &yes)))
            goto cleanup;
        if (yes || lrp_layer_kind_min_inputs(k) > 0) {
            if ((st = attr_strings(c, lg, gp, "inputs", LRP_MAX_INPUTS, LRP_NAME_MAX, &inn, &nin)))
                goto cleanup;
            for (int q = 0; q < nin; q++) {
                name_ix key = {inn + (size_t)q * LRP_NAME_MAX, 0};
                const name_ix *hit = bsearch(&key, ix, (size_t)n, sizeof *ix, cmp_name_ix);
                if (!hit) {
                    st = fail(c, LRP_E_FORMAT, gp, "input '%s' names no layer (not in /network order)",
                              key.name);
                    goto cleanup;
                }
                l->in[q] = hit->ix;
            }
            l->n_in = nin;
            free(inn);
            inn = NULL;
        }
        close_id(&lg);
    }

    /* A group not listed in `order` is an error, not something to skip. */
    hsize_t nl;
    if ((st = count_links(c, g, "/network", (hsize_t)UINT32_MAX, &nl)))
        goto cleanup;
    for (hsize_t q = 0; nl != (hsize_t)n && q < nl; q++) {
        if ((st = link_name(c, g, "/network", q, ename, sizeof ename)))
            goto cleanup;
        if (entry_layer(net, ename) < 0) {
            join(gp, sizeof gp, "/network", ename);
            st = fail(c, LRP_E_FORMAT, gp, "not listed in /network order");
            goto cleanup;
        }
    }

    /* Execution order: an input must come earlier.  Tell a true cycle from
     * a merely misordered list, since the fixes differ. */
    for (int i = 0; i < net->n_layers; i++)
        for (int q = 0; q < net->layers[i].n_in; q++) {
            int j = net->layers[i].in[q];
            if (j < i)
                continue;
            if (find_cycle(net, cyc, sizeof cyc)) {
                st = fail(c, LRP_E_INVALID, "/network", "cycle through layers %s", cyc);
            } else {
                lrp_h5_entry_name(ename, sizeof ename, i, net->layers[i].name);
                join(gp, sizeof gp, "/network", ename);
                st = fail(c, LRP_E_INVALID, gp,
                          "input '%s' comes later in /network order (layers must be listed in execution order)",
                          net->layers[j].name);
            }
            goto cleanup;
        }
cleanup:
    free(order);
    free(inn);
    free(ix);
    close_id(&lg);
    gindex_drop(c, g);
    close_id(&g);
    return st;
}

/* One rule entry: `rule` required; the other attributes default to
 * lrp_rule_default(rule). */
static lrp_status read_rule(ctx *c, hid_t rg, const char *rp, lrp_rule_spec *out)
{
    char s[LRP_NAME_MAX], *flags = NULL;
    int yes = 0, nf = 0;
    int64_t b;
    lrp_rule_id id;
    lrp_stab_id sid;
    lrp_status st;
    if ((st = attr_string(c, rg, rp, "rule", s, sizeof s, NULL)))
        return st;
    if (lrp_rule_parse(s, &id) != 0)
        return fail(c, LRP_E_UNSUPPORTED, rp, "unknown rule '%s'", s);
    lrp_rule_spec r = lrp_rule_default(id);
    if ((st = attr_string(c, rg, rp, "stabilizer", s, sizeof s, lrp_stab_name(r.stab))))
        return st;
    if (lrp_stab_parse(s, &sid) != 0)
        return fail(c, LRP_E_UNSUPPORTED, rp, "unknown stabilizer '%s'", s);
    r.stab = sid;
    if ((st = attr_float_opt(c, rg, rp, "eps", &r.eps)) ||
        (st = attr_float_opt(c, rg, rp, "gamma", &r.gamma)) ||
        (st = attr_float_opt(c, rg, rp, "alpha", &r.alpha)) ||
        (st = attr_float_opt(c, rg, rp, "beta", &r.beta)) ||
        (st = attr_float_opt(c, rg, rp, "low", &r.low)) ||
        (st = attr_float_opt(c, rg, rp, "high", &r.high)))
        return st;
    if ((st = has_attr(c, rg, rp, "bias", &yes)))
        return st;
    if (yes) {
        if ((st = attr_int_range(c, rg, rp, "bias", 0, 1, &b)))
            return st;
        r.bias = (int)b;
    }
    if ((st = has_attr(c, rg, rp, "flags", &yes)))
        return st;
    if (yes) {
        if ((st = attr_strings(c, rg, rp, "flags", MAX_FLAGS, LRP_NAME_MAX, &flags, &nf)))
            return st;
        for (int i = 0; i < nf; i++) {
            unsigned f;
            if (lrp_flag_parse(flags + (size_t)i * LRP_NAME_MAX, &f) != 0) {
                st = fail(c, LRP_E_UNSUPPORTED, rp, "unknown flag '%s'",
                          flags + (size_t)i * LRP_NAME_MAX);
                break;
            }
            r.flags |= f;
        }
        free(flags);
        if (st)
            return st;
    }
    *out = r;
    return LRP_OK;
}

/* A rules group (/rules or /traces/<s>/rules): one optional entry per
 * layer; rules[i] keeps its value for layers without an entry. */
static lrp_status read_rules(ctx *c, hid_t parent, const char *ppath, const lrp_net *net,
                             lrp_rule_spec *rules)
{
    hid_t g = H5I_INVALID_HID, rg = H5I_INVALID_HID;
    char gp[OBJ_MAX], ename[OBJ_MAX], rp[OBJ_MAX];
    lrp_status st;
    join(gp, sizeof gp, ppath, "rules");
    if ((st = open_member(c, parent, ppath, "rules", H5I_GROUP, 0, &g)) || g < 0)
        goto cleanup;
    gindex_enable(c, g);
    if ((st = check_entries(c, g, gp, net)))
        goto cleanup;
    for (int i = 0; i < net->n_layers; i++) {
        lrp_h5_entry_name(ename, sizeof ename, i, net->layers[i].name);
        join(rp, sizeof rp, gp, ename);
        if ((st = open_member(c, g, gp, ename, H5I_GROUP, 0, &rg)))
            goto cleanup;
        if (rg < 0)
            continue;
        if ((st = read_rule(c, rg, rp, &rules[i])))
            goto cleanup;
        close_id(&rg);
    }
cleanup:
    close_id(&rg);
    gindex_drop(c, g);
    close_id(&g);
    return st;
}

/* Parameters, checked against lrp_layer_param_shape (after inference). */
static lrp_status read_params(ctx *c, hid_t file, lrp_net *net)
{
    hid_t g = H5I_INVALID_HID, lg = H5I_INVALID_HID;
    char gp[OBJ_MAX], ename[OBJ_MAX];
    lrp_status st;
    if ((st = open_member(c, file, "/", "network", H5I_GROUP, 1, &g)))
        goto cleanup;
    gindex_enable(c, g);
    for (int i = 0; i < net->n_layers; i++) {
        lrp_layer *l = &net->layers[i];
        const lrp_kind_desc *kd = lrp_kind(l->kind);
        lrp_h5_entry_name(ename, sizeof ename, i, l->name);
        join(gp, sizeof gp, "/network", ename);
        if ((st = open_member(c, g, "/network", ename, H5I_GROUP, 1, &lg)))
            goto cleanup;
        for (int w = 0; w < LRP_P_COUNT; w++) {
            lrp_shape s;
            int64_t d[4];
            int rank, gdim;
            if (!lrp_layer_param_shape(net, i, w, &s)) {
                int yes = 0;
                /* an optional bias (and LayerNorm's / RMSNorm's optional
                 * weight, has_weight): a dataset without its flag is an
                 * error, not ignored */
                if ((w == LRP_P_BIAS || (w == LRP_P_WEIGHT && !kd->weight_rank4)) &&
                    kd->bias_optional) {
                    htri_t ex = H5Lexists(lg, lrp_param_names[w], H5P_DEFAULT);
                    yes = ex != 0;
                }
                if (yes) {
                    st = fail(c, LRP_E_INVALID, gp, "dataset '%s' present but %s is 0",
                              lrp_param_names[w], w == LRP_P_BIAS ? "has_bias" : "has_weight");
                    goto cleanup;
                }
                continue;
            }
            if (kd->weight_rank4 && w == LRP_P_WEIGHT) {
                /* Files keep PyTorch's rank-4 (out, in/groups, kh, kw). */
                rank = 4;
                d[0] = l->units;
                d[1] = s.d[1];
                d[2] = l->kh;
                d[3] = l->kw;
                gdim = 1;
            } else {
                rank = s.rank;
                memcpy(d, s.d, sizeof(int64_t) * (size_t)rank);
                /* Dense fan-in and BatchNorm channels come from the input. */
                gdim = kd->param_in_dim[w];
            }
            if ((st = read_floats(c, lg, gp, lrp_param_names[w], 1, rank, d, gdim,
                                  net->layers[l->in[0]].name, lrp_layer_param_slot(l, w))))
                goto cleanup;
        }
        close_id(&lg);
    }
cleanup:
    close_id(&lg);
    gindex_drop(c, g);
    close_id(&g);
    return st;
}

/* Dimensions (batch, *s) for batch-major tensors. */
static int batch_dims(int64_t *d, int batch, const lrp_shape *s)
{
    d[0] = batch;
    for (int i = 0; i < s->rank; i++)
        d[1 + i] = s->d[i];
    return s->rank + 1;
}

static lrp_status read_data(ctx *c, hid_t file, lrp_net *net)
{
    hid_t g = H5I_INVALID_HID, ds = H5I_INVALID_HID;
    int64_t d[LRP_MAX_RANK + 1], *tbuf = NULL;
    const lrp_shape *ins = &net->layers[0].shape, *outs = &net->layers[net->n_layers - 1].shape;
    int64_t nout = lrp_shape_numel(outs), nin = lrp_shape_numel(ins);
    lrp_status st;
    int r;
    if ((st = open_member(c, file, "/", "data", H5I_GROUP, 1, &g)))
        goto cleanup;
    r = batch_dims(d, net->batch, ins);
    if (net->layers[0].tokens) {
        /* token ids (any integer type), held as exact binary32 integers;
         * the range against the vocabulary is lrp_net_check_values' */
        if ((st = open_checked(c, g, "/data", "tokens", 1, 0, r, d, -1, NULL, &ds)))
            goto cleanup;
        int64_t nt = nin * net->batch;
        if (!(tbuf = malloc((size_t)(nt ? nt : 1) * sizeof *tbuf)) ||
            !(net->input = malloc((size_t)(nt ? nt : 1) * sizeof *net->input))) {
            st = fail(c, LRP_E_NOMEM, "/data/tokens", "out of memory");
            goto cleanup;
        }
        if (H5Dread(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, tbuf) < 0) {
            st = h5fail(c, LRP_E_FORMAT, "/data/tokens", "cannot read data (corrupt file?)");
            goto cleanup;
        }
        for (int64_t i = 0; i < nt; i++) {
            if (tbuf[i] < 0 || tbuf[i] > LRP_MAX_DIM) {
                st = fail(c, LRP_E_INVALID, "/data/tokens", "token[%lld] = %lld out of range",
                          (long long)i, (long long)tbuf[i]);
                goto cleanup;
            }
            net->input[i] = (float)tbuf[i]; /* exact: < 2^24 */
        }
        if (array_hook) /* the sandbox's wire carries them as the input */
            array_hook(array_hook_ctx, net->input, nt);
        free(tbuf);
        tbuf = NULL;
        close_id(&ds);
    } else if ((st = read_floats(c, g, "/data", "input", 1, r, d, -1, NULL, &net->input)))
        goto cleanup;
    int64_t pT = lrp_padding_T(net);
    if (pT > 0) {
        /* (batch, T) integers 0 / 1 (1: the key is masked), held as 0.0 / 1.0 */
        int64_t pd[2] = {net->batch, pT}, np = net->batch * pT;
        if ((st = open_checked(c, g, "/data", "key_padding_mask", 1, 0, 2, pd, -1, NULL, &ds)))
            goto cleanup;
        if (!(tbuf = malloc((size_t)np * sizeof *tbuf)) ||
            !(net->key_padding_mask = malloc((size_t)np * sizeof *net->key_padding_mask))) {
            st = fail(c, LRP_E_NOMEM, "/data/key_padding_mask", "out of memory");
            goto cleanup;
        }
        if (H5Dread(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, tbuf) < 0) {
            st = h5fail(c, LRP_E_FORMAT, "/data/key_padding_mask", "cannot read data (corrupt file?)");
            goto cleanup;
        }
        for (int64_t i = 0; i < np; i++) {
            if (tbuf[i] != 0 && tbuf[i] != 1) {
                st = fail(c, LRP_E_INVALID, "/data/key_padding_mask", "value [%lld] = %lld not 0 or 1",
                          (long long)i, (long long)tbuf[i]);
                goto cleanup;
            }
            net->key_padding_mask[i] = (float)tbuf[i];
        }
        if (array_hook) /* the sandbox's wire carries it as floats */
            array_hook(array_hook_ctx, net->key_padding_mask, np);
        free(tbuf);
        tbuf = NULL;
        close_id(&ds);
    }
    r = batch_dims(d, net->batch, outs);
    if ((st = read_floats(c, g, "/data", "relevance_out", 0, r, d, -1, NULL, &net->r_out)))
        goto cleanup;

    d[0] = net->batch;
    if ((st = open_checked(c, g, "/data", "target", 0, 0, 1, d, -1, NULL, &ds)))
        goto cleanup;
    if (ds >= 0) {
        if (!(tbuf = malloc((size_t)net->batch * sizeof *tbuf)) ||
            !(net->target = malloc((size_t)net->batch * sizeof *net->target))) {
            st = fail(c, LRP_E_NOMEM, "/data/target", "out of memory");
            goto cleanup;
        }
        if (H5Dread(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, tbuf) < 0) {
            st = h5fail(c, LRP_E_FORMAT, "/data/target", "cannot read data (corrupt file?)");
            goto cleanup;
        }
        for (int i = 0; i < net->batch; i++) {
            if (tbuf[i] < 0 || tbuf[i] >= nout) {
                st = fail(c, LRP_E_INVALID, "/data/target",
                          "target[%d] = %lld out of range [0, %lld) for output layer '%s'", i,
                          (long long)tbuf[i], (long long)nout, net->layers[net->n_layers - 1].name);
                goto cleanup;
            }
            net->target[i] = (int32_t)tbuf[i];
        }
    }

    if ((st = read_floats(c, g, "/data", "zbox_low", 0, ins->rank, ins->d, -1, NULL, &net->zbox_low)) ||
        (st = read_floats(c, g, "/data", "zbox_high", 0, ins->rank, ins->d, -1, NULL, &net->zbox_high)))
        goto cleanup;
    if (!net->zbox_low != !net->zbox_high) {
        st = fail(c, LRP_E_INVALID, net->zbox_low ? "/data/zbox_low" : "/data/zbox_high",
                  "zbox_low and zbox_high must be given together");
        goto cleanup;
    }
    for (int64_t i = 0; net->zbox_low && i < nin; i++)
        if (!(net->zbox_low[i] <= net->zbox_high[i])) {
            st = fail(c, LRP_E_INVALID, "/data/zbox_low",
                      "box bound %lld: low %g not <= high %g", (long long)i,
                      (double)net->zbox_low[i], (double)net->zbox_high[i]);
            goto cleanup;
        }
cleanup:
    free(tbuf);
    close_id(&ds);
    close_id(&g);
    return st;
}

/* Composite names are from the table or "". */
static lrp_status check_composite(ctx *c, const char *obj, const char *name)
{
    lrp_composite_id id;
    if (name[0] && lrp_composite_parse(name, &id) != 0)
        return fail(c, LRP_E_UNSUPPORTED, obj, "unknown composite '%s'", name);
    return LRP_OK;
}

static lrp_status read_relevance(ctx *c, hid_t tg, const char *tp, const char *gname,
                                 const lrp_net *net, float **dst)
{
    hid_t g = H5I_INVALID_HID;
    char gp[OBJ_MAX], ename[OBJ_MAX];
    int64_t d[LRP_MAX_RANK + 1];
    lrp_status st;
    join(gp, sizeof gp, tp, gname);
    if ((st = open_member(c, tg, tp, gname, H5I_GROUP, 0, &g)) || g < 0)
        goto cleanup;
    gindex_enable(c, g);
    if ((st = check_entries(c, g, gp, net)))
        goto cleanup;
    for (int i = 0; i < net->n_layers; i++) {
        lrp_h5_entry_name(ename, sizeof ename, i, net->layers[i].name);
        int r = batch_dims(d, net->batch, &net->layers[i].shape);
        if ((st = read_floats(c, g, gp, ename, 0, r, d, -1, NULL, &dst[i])))
            goto cleanup;
    }
cleanup:
    gindex_drop(c, g);
    close_id(&g);
    return st;
}

static lrp_status read_traces(ctx *c, hid_t file, lrp_net *net)
{
    hid_t g = H5I_INVALID_HID, tg = H5I_INVALID_HID;
    char src[LRP_NAME_MAX], tp[OBJ_MAX], where[LRP_ERR_MSG_MAX];
    hsize_t n;
    int64_t prec;
    lrp_err e2;
    lrp_status st;
    if ((st = open_member(c, file, "/", "traces", H5I_GROUP, 0, &g)) || g < 0)
        goto cleanup;
    if ((st = count_links(c, g, "/traces", LRP_H5_MAX_TRACES, &n)))
        goto cleanup;
    /* Traces are unordered in the file; links come in name order, so the
     * net's traces end up sorted by source name. */
    for (hsize_t k = 0; k < n; k++) {
        if ((st = link_name(c, g, "/traces", k, src, sizeof src)))
            goto cleanup;
        join(tp, sizeof tp, "/traces", src);
        if ((st = open_member(c, g, "/traces", src, H5I_GROUP, 1, &tg)))
            goto cleanup;
        lrp_trace *t = lrp_net_trace_add(net, src, &e2);
        if (!t) {
            st = copy_err(c, &e2);
            goto cleanup;
        }
        if ((st = attr_string(c, tg, tp, "producer", t->producer, sizeof t->producer, NULL)) ||
            (st = attr_string(c, tg, tp, "notes", t->notes, sizeof t->notes, "")) ||
            (st = attr_string(c, tg, tp, "profile", t->profile, sizeof t->profile, "")) ||
            (st = attr_string(c, tg, tp, "composite", t->composite, sizeof t->composite, "")) ||
            (st = check_composite(c, tp, t->composite)) ||
            (st = attr_int_range(c, tg, tp, "precision", 1, INT32_MAX, &prec)))
            goto cleanup;
        t->precision = (int)prec;
        /* Entries absent from the trace's rules keep the net's rule. */
        if ((st = read_rules(c, tg, tp, net, t->rules)))
            goto cleanup;
        snprintf(where, sizeof where, "%s: %s/rules", c->path, tp);
        for (int i = 0; i < net->n_layers; i++)
            if ((st = lrp_rule_validate(&t->rules[i], net->layers[i].kind, where,
                                        net->layers[i].name, c->err)))
                goto cleanup;
        if ((st = read_relevance(c, tg, tp, "relevance", net, t->relevance)) ||
            (st = read_relevance(c, tg, tp, "relevance_lo", net, t->relevance_lo)) ||
            (st = read_relevance(c, tg, tp, "activation", net, t->activation)))
            goto cleanup;
        for (int i = 0; i < net->n_layers; i++)
            if (t->relevance_lo[i] && !t->relevance[i]) {
                char ename[OBJ_MAX], lp[OBJ_MAX], op[OBJ_MAX];
                lrp_h5_entry_name(ename, sizeof ename, i, net->layers[i].name);
                join(lp, sizeof lp, tp, "relevance_lo");
                join(op, sizeof op, lp, ename);
                st = fail(c, LRP_E_INVALID, op, "low part without relevance/%s", ename);
                goto cleanup;
            }
        close_id(&tg);
    }
cleanup:
    close_id(&tg);
    close_id(&g);
    return st;
}

/* Unsigned 64-bit attribute (seed): any integer class, negative refused. */
static lrp_status attr_u64(ctx *c, hid_t obj, const char *opath, const char *name, uint64_t *out)
{
    hid_t a, ft, sp;
    hsize_t n = 0;
    lrp_status st = open_attr(c, obj, opath, name, &a, &ft, &sp, &n);
    if (st)
        goto cleanup;
    if (H5Tget_class(ft) != H5T_INTEGER || n != 1) {
        st = fail(c, LRP_E_FORMAT, opath, "attribute '%s': expected one integer", name);
        goto cleanup;
    }
    if (H5Tget_sign(ft) == H5T_SGN_NONE) {
        if (H5Aread(a, H5T_NATIVE_UINT64, out) < 0)
            st = h5fail(c, LRP_E_FORMAT, opath, "cannot read integer attribute");
    } else {
        int64_t v;
        if (H5Aread(a, H5T_NATIVE_INT64, &v) < 0)
            st = h5fail(c, LRP_E_FORMAT, opath, "cannot read integer attribute");
        else if (v < 0)
            st = fail(c, LRP_E_INVALID, opath, "attribute '%s': negative value %lld", name,
                      (long long)v);
        else
            *out = (uint64_t)v;
    }
cleanup:
    close_id(&sp);
    close_id(&ft);
    close_id(&a);
    return st;
}

/* format_version: 1, or 2 (the kinds of docs/FORMAT.md that need it) */
static lrp_status read_version(ctx *c, hid_t file, int64_t *v)
{
    lrp_status st;
    if ((st = attr_ints(c, file, "/", "format_version", 1, 1, v, NULL)))
        return st;
    if (*v < LRP_FORMAT_VERSION || *v > LRP_FORMAT_VERSION_MAX)
        return fail(c, LRP_E_UNSUPPORTED, "/",
                    "format_version %lld not supported (this reader reads versions %d to %d)",
                    (long long)*v, LRP_FORMAT_VERSION, LRP_FORMAT_VERSION_MAX);
    c->version = (int)*v;
    return LRP_OK;
}

static lrp_status read_root(ctx *c, hid_t file, lrp_net *net)
{
    char s[LRP_NAME_MAX];
    int64_t v;
    int yes = 0;
    lrp_status st;
    if ((st = has_attr(c, file, "/", "format", &yes)))
        return st;
    if (!yes)
        return fail(c, LRP_E_FORMAT, "/", "missing attribute 'format' (not an lrp-oracle fixture)");
    if ((st = attr_string(c, file, "/", "format", s, sizeof s, NULL)))
        return st;
    if (strcmp(s, LRP_FIXTURE_MAGIC) != 0)
        return fail(c, LRP_E_FORMAT, "/", "attribute 'format' is '%s', expected '%s'", s,
                    LRP_FIXTURE_MAGIC);
    if ((st = read_version(c, file, &v)))
        return st;
    if ((st = attr_string(c, file, "/", "layout", s, sizeof s, NULL)))
        return st;
    if (strcmp(s, "NCHW") != 0)
        return fail(c, LRP_E_UNSUPPORTED, "/", "layout '%s' not supported (only NCHW)", s);
    if (v >= 2) {
        /* token sequences (T, F), features fastest (docs/TRANSFORMERS.md
         * section 1): required, so that a file converted from an (F, T)
         * framework cannot pass */
        if ((st = attr_string(c, file, "/", "token_layout", s, sizeof s, NULL)))
            return st;
        if (strcmp(s, "TF") != 0)
            return fail(c, LRP_E_UNSUPPORTED, "/", "token_layout '%s' not supported (only TF)", s);
    }
    if ((st = attr_string(c, file, "/", "flatten_order", s, sizeof s, NULL)))
        return st;
    if (strcmp(s, "CHW") != 0)
        return fail(c, LRP_E_UNSUPPORTED, "/", "flatten_order '%s' not supported (only CHW)", s);
    if ((st = attr_int_range(c, file, "/", "batch", 1, LRP_MAX_BATCH, &v)))
        return st;
    net->batch = (int)v;
    if ((st = attr_u64(c, file, "/", "seed", &net->seed)) ||
        (st = attr_string(c, file, "/", "description", net->description, sizeof net->description, "")) ||
        (st = attr_string(c, file, "/", "composite", net->composite, sizeof net->composite, "")) ||
        (st = check_composite(c, "/", net->composite)))
        return st;
    return LRP_OK;
}

/* The digest of a fixture file recorded in a trace file: the bytes read as
 * little-endian 64-bit words w_i (the last one zero-padded),
 *   sum_i w_i (2i + 1) K  mod 2^64,   K = 0x9E3779B97F4A7C15,
 * a linear hash (every single changed word changes it; not a defence
 * against forgery) that numpy computes the same way (tools/python). */
lrp_status lrp_file_digest(uint64_t *digest, int64_t *size, const char *path, lrp_err *err)
{
    struct stat sb;
    /* a FIFO or a device could block or never end */
    if (stat(path, &sb) != 0)
        return lrp_err_set(err, LRP_E_IO, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return lrp_err_set(err, LRP_E_IO, "%s: cannot open: not a regular file", path);
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0)
        return lrp_err_set(err, LRP_E_IO, "%s: cannot open: %s", path, strerror(errno));
    uint64_t h = 0, i = 0;
    int64_t total = 0;
    size_t cap = (size_t)1 << 22;
    unsigned char *buf = malloc(cap + 8);
    lrp_status st = LRP_OK;
    if (!buf) {
        close(fd);
        return lrp_err_set(err, LRP_E_NOMEM, "%s: out of memory", path);
    }
    size_t have = 0; /* bytes in buf not yet hashed (< 8 between reads) */
    for (;;) {
        ssize_t r = read(fd, buf + have, cap);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            st = lrp_err_set(err, LRP_E_IO, "%s: cannot read: %s", path, strerror(errno));
            break;
        }
        total += r;
        have += (size_t)r;
        if (r == 0 && have) { /* the tail, zero-padded */
            memset(buf + have, 0, 8 - have % 8);
            have += 8 - have % 8;
        }
        size_t words = have / 8;
        for (size_t k = 0; k < words; k++, i++) {
            uint64_t wv = 0;
            for (int b = 7; b >= 0; b--)
                wv = wv << 8 | buf[8 * k + (size_t)b];
            h += wv * (2 * i + 1);
        }
        memmove(buf, buf + 8 * words, have - 8 * words);
        have -= 8 * words;
        if (r == 0)
            break;
    }
    free(buf);
    close(fd);
    *digest = h * UINT64_C(0x9E3779B97F4A7C15);
    *size = total;
    return st;
}

static lrp_status fixture_read_depth(lrp_net **out, const char *path, int depth, lrp_err *err);

lrp_status lrp_fixture_read(lrp_net **out, const char *path, lrp_err *err)
{
    return fixture_read_depth(out, path, 0, err);
}

/* A trace file (docs/FORMAT.md "Trace files"): the fixture it names,
 * checked by size and digest, then the trace file's own traces. */
static lrp_status read_trace_file(ctx *c, hid_t file, const char *path, int depth, lrp_net **out)
{
    char ref[4096], full[8192];
    int64_t v, size;
    uint64_t want;
    lrp_status st;
    lrp_net *net = NULL;
    if ((st = read_version(c, file, &v)))
        return st;
    if ((st = attr_string(c, file, "/", "fixture", ref, sizeof ref, NULL)) ||
        (st = attr_ints(c, file, "/", "fixture_size", 1, 1, &size, NULL)) ||
        (st = attr_u64(c, file, "/", "fixture_digest", &want)))
        return st;
    if (!ref[0])
        return fail(c, LRP_E_INVALID, "/", "attribute 'fixture' is empty");
    if (depth > 0)
        return fail(c, LRP_E_INVALID, "/", "a trace file's fixture is itself a trace file");
    if (ref[0] == '/') {
        snprintf(full, sizeof full, "%s", ref);
    } else { /* relative to the trace file's directory */
        const char *slash = strrchr(path, '/');
        if (slash)
            snprintf(full, sizeof full, "%.*s/%s", (int)(slash - path), path, ref);
        else
            snprintf(full, sizeof full, "%s", ref);
    }
    uint64_t got;
    int64_t gsize;
    lrp_err e2 = {0};
    if (lrp_file_digest(&got, &gsize, full, &e2) != LRP_OK)
        return fail(c, LRP_E_IO, "/", "its fixture %s: %s", full, e2.msg);
    if (gsize != size || got != want)
        return fail(c, LRP_E_INVALID, "/",
                    "its fixture %s changed since the trace was written (%lld bytes, digest "
                    "%016llx; the trace file recorded %lld bytes, %016llx)",
                    full, (long long)gsize, (unsigned long long)got, (long long)size,
                    (unsigned long long)want);
    if ((st = fixture_read_depth(&net, full, depth + 1, &e2)) != LRP_OK)
        return fail(c, st, "/", "its fixture: %s", e2.msg);
    int before = net->n_traces;
    if ((st = read_traces(c, file, net))) {
        lrp_net_free(net);
        return st;
    }
    /* a source in both files is ambiguous */
    for (int k = before; k < net->n_traces; k++)
        for (int j = 0; j < before; j++)
            if (!strcmp(net->traces[k].source, net->traces[j].source)) {
                st = fail(c, LRP_E_INVALID, "/traces", "trace '%s' is also in the fixture %s",
                          net->traces[k].source, full);
                lrp_net_free(net);
                return st;
            }
    *out = net;
    return LRP_OK;
}

static lrp_status fixture_read_depth(lrp_net **out, const char *path, int depth, lrp_err *err)
{
    ctx c = {.path = path ? path : "<no path>", .err = err};
    quiet q;
    hid_t fapl = H5I_INVALID_HID, file = H5I_INVALID_HID;
    lrp_net *net = NULL;
    lrp_rule_spec *rules = NULL;
    lrp_status st = LRP_OK;
    struct stat sb;

    LRP_ASSERT(out != NULL);
    *out = NULL;
    quiet_begin(&q);
    if (!path) {
        st = fail(&c, LRP_E_USAGE, "/", "no file name given");
        goto cleanup;
    }
    if (stat(path, &sb) != 0 || access(path, R_OK) != 0) {
        st = fail(&c, LRP_E_IO, "/", "cannot open: %s", strerror(errno));
        goto cleanup;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = fail(&c, LRP_E_IO, "/", "cannot open: not a regular file");
        goto cleanup;
    }
    htri_t is = sb.st_size > 0 ? H5Fis_hdf5(path) : 0;
    if (is < 0) {
        /* the check itself failed (not "no signature"): out of memory, I/O */
        st = h5fail(&c, LRP_E_FORMAT, "/", "cannot check the HDF5 signature (out of memory or "
                                                  "a read error)");
        goto cleanup;
    }
    if (is == 0) {
        st = fail(&c, LRP_E_FORMAT, "/", "not an HDF5 file (%s)",
                  sb.st_size == 0 ? "empty file" : "no HDF5 signature");
        goto cleanup;
    }
    if ((fapl = H5Pcreate(H5P_FILE_ACCESS)) < 0 || H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) {
        st = h5fail(&c, LRP_E_NOMEM, "/", "cannot set up file access");
        goto cleanup;
    }
    if ((file = H5Fopen(path, H5F_ACC_RDONLY, fapl)) < 0) {
        st = h5fail(&c, LRP_E_FORMAT, "/", "cannot open HDF5 file (truncated or corrupt)");
        goto cleanup;
    }
    {
        char fmt[LRP_NAME_MAX];
        int yes = 0;
        if (!has_attr(&c, file, "/", "format", &yes) && yes &&
            !attr_string(&c, file, "/", "format", fmt, sizeof fmt, NULL) &&
            !strcmp(fmt, LRP_TRACE_MAGIC)) {
            st = read_trace_file(&c, file, path, depth, out);
            goto cleanup;
        }
    }
    if (!(net = lrp_net_new())) {
        st = fail(&c, LRP_E_NOMEM, "/", "out of memory");
        goto cleanup;
    }
    if ((st = read_root(&c, file, net)) || (st = read_network(&c, file, net)))
        goto cleanup;
    if (!(rules = malloc((size_t)net->n_layers * sizeof *rules + 1))) {
        st = fail(&c, LRP_E_NOMEM, "/rules", "out of memory");
        goto cleanup;
    }
    for (int i = 0; i < net->n_layers; i++)
        rules[i] = net->layers[i].rule;
    if ((st = read_rules(&c, file, "/", net, rules)))
        goto cleanup;
    for (int i = 0; i < net->n_layers; i++)
        net->layers[i].rule = rules[i];
    if ((st = lrp_net_infer(net, path, err)) || (st = read_params(&c, file, net)) ||
        (st = read_data(&c, file, net)) || (st = read_traces(&c, file, net)) ||
        /* with the raw hook the values are not here yet: the caller checks */
        (!raw_hook && (st = lrp_net_check_values(net, path, err))))
        goto cleanup;
    *out = net;
    net = NULL;
cleanup:
    free(rules);
    lrp_net_free(net);
    close_id(&file);
    close_id(&fapl);
    quiet_end(&q);
    return st;
}

/* ------------------------------------------------------------------ */
/* Writer                                                              */
/* ------------------------------------------------------------------ */

typedef struct wr {
    ctx c;
    hid_t str;  /* variable-length UTF-8 string type, file and memory */
    hid_t gcpl; /* group creation: no timestamps */
} wr;

static lrp_status w_attr(wr *w, hid_t obj, const char *opath, const char *name, hid_t ftype,
                         hid_t mtype, int is_array, hsize_t n, const void *buf)
{
    hid_t sp = H5I_INVALID_HID, a = H5I_INVALID_HID;
    lrp_status st = LRP_OK;
    sp = is_array ? H5Screate_simple(1, &n, NULL) : H5Screate(H5S_SCALAR);
    if (sp < 0 || (a = H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        (n > 0 && H5Awrite(a, mtype, buf) < 0)) {
        char what[128];
        snprintf(what, sizeof what, "cannot write attribute '%s'", name);
        st = h5fail(&w->c, LRP_E_IO, opath, what);
    }
    close_id(&a);
    close_id(&sp);
    return st;
}

/* Strings are written FIXED-length (UTF-8, NUL-terminated, sized to the
 * longest value).  Variable-length strings live in HDF5's global heap,
 * which carries no checksum even with V110 bounds: flipping every byte of
 * a 30 KB fixture written with them made libhdf5 segfault 294 times (in
 * H5HG_read) and hang 6 times.  Fixed-length values sit inside the
 * checksummed object headers.  The reader accepts both (h5py writes
 * either, depending on its version). */
static lrp_status w_fixed_strs(wr *w, hid_t obj, const char *opath, const char *name,
                               const char *const *v, int n, int is_array)
{
    size_t len = 1;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(v[i]) + 1;
        if (l > len)
            len = l;
    }
    char *buf = calloc((size_t)(n > 0 ? n : 1), len);
    hid_t t = H5Tcopy(H5T_C_S1);
    lrp_status st = LRP_OK;
    if (!buf || t < 0 || H5Tset_size(t, len) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0 ||
        H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        st = h5fail(&w->c, LRP_E_NOMEM, opath, "cannot build a string type");
    } else {
        for (int i = 0; i < n; i++)
            memcpy(buf + (size_t)i * len, v[i], strlen(v[i]));
        st = w_attr(w, obj, opath, name, t, t, is_array, (hsize_t)n, buf);
    }
    if (t >= 0)
        H5Tclose(t);
    free(buf);
    return st;
}

static lrp_status w_str(wr *w, hid_t obj, const char *opath, const char *name, const char *s)
{
    return w_fixed_strs(w, obj, opath, name, &s, 1, 0);
}

static lrp_status w_strs(wr *w, hid_t obj, const char *opath, const char *name,
                         const char *const *v, int n)
{
    return w_fixed_strs(w, obj, opath, name, v, n, 1);
}

static lrp_status w_i32(wr *w, hid_t obj, const char *opath, const char *name, int32_t v)
{
    return w_attr(w, obj, opath, name, H5T_STD_I32LE, H5T_NATIVE_INT32, 0, 1, &v);
}

static lrp_status w_i32v(wr *w, hid_t obj, const char *opath, const char *name, const int32_t *v,
                         int n)
{
    return w_attr(w, obj, opath, name, H5T_STD_I32LE, H5T_NATIVE_INT32, 1, (hsize_t)n, v);
}

static lrp_status w_i64(wr *w, hid_t obj, const char *opath, const char *name, int64_t v)
{
    return w_attr(w, obj, opath, name, H5T_STD_I64LE, H5T_NATIVE_INT64, 0, 1, &v);
}

static lrp_status w_f32(wr *w, hid_t obj, const char *opath, const char *name, float v)
{
    return w_attr(w, obj, opath, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 0, 1, &v);
}

static lrp_status w_shape(wr *w, hid_t obj, const char *opath, const char *name, const lrp_shape *s)
{
    return w_attr(w, obj, opath, name, H5T_STD_I64LE, H5T_NATIVE_INT64, 1, (hsize_t)s->rank, s->d);
}

/* Groups of one entry per layer get their object header sized for the
 * links up front when the net is deep: links stay compact (below), and a
 * compact group grown one link at a time reallocates its header each time
 * (H5O__alloc: 75% of a 193 s write of a 4095-layer net). Below the
 * threshold the header, and so the file's bytes, are HDF5's default. */
#define LINK_EST_MIN 256

static lrp_status w_group_n(wr *w, hid_t parent, const char *ppath, const char *name,
                            int64_t nlinks, hid_t *out)
{
    char gp[OBJ_MAX];
    hid_t gcpl = w->gcpl, own = H5I_INVALID_HID;
    if (nlinks > LINK_EST_MIN) {
        if ((own = H5Pcopy(w->gcpl)) < 0 ||
            H5Pset_est_link_info(own, (unsigned)(nlinks < 65535 ? nlinks : 65535), 24) < 0) {
            if (own >= 0)
                H5Pclose(own);
            join(gp, sizeof gp, ppath, name);
            return h5fail(&w->c, LRP_E_NOMEM, gp, "cannot set up HDF5 properties");
        }
        gcpl = own;
    }
    *out = H5Gcreate2(parent, name, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    if (own >= 0)
        H5Pclose(own);
    if (*out < 0) {
        join(gp, sizeof gp, ppath, name);
        return h5fail(&w->c, LRP_E_IO, gp, "cannot create group");
    }
    return LRP_OK;
}

static lrp_status w_group(wr *w, hid_t parent, const char *ppath, const char *name, hid_t *out)
{
    char gp[OBJ_MAX];
    *out = H5Gcreate2(parent, name, H5P_DEFAULT, w->gcpl, H5P_DEFAULT);
    if (*out < 0) {
        join(gp, sizeof gp, ppath, name);
        return h5fail(&w->c, LRP_E_IO, gp, "cannot create group");
    }
    return LRP_OK;
}

/* HDF5's Fletcher32 (H5_checksum_fletcher32: big-endian 16-bit words,
 * blocks of 360 words each followed by the end-around-carry folds, an odd
 * last byte as the high half of a word), bit for bit: a block's two sums
 * are the loop's integers (s1 += w; s2 += s1 over the block gives
 * s2 + n s1 + sum (n - i) w_i), computed in 64 bits, so the folds see the
 * same values.  About 1.6 times the speed of libhdf5's byte loop. */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("O3"))) /* integer sums: vectorized, same integers */
#endif
uint32_t lrp_h5_fletcher32(const void *data, size_t nbytes)
{
    const unsigned char *d = data;
    size_t len = nbytes / 2;
    uint64_t sum1 = 0, sum2 = 0;
    while (len) {
        /* s <= 360 * 65535 and t <= (360 * 361 / 2) * 65535 < 2^32 */
        uint32_t n = len > 360 ? 360 : (uint32_t)len, s = 0, t = 0;
        for (uint32_t i = 0; i < n; i++) {
            uint32_t w = (uint32_t)d[2 * i] << 8 | d[2 * i + 1];
            s += w;
            t += (n - i) * w;
        }
        sum2 += (uint64_t)n * sum1 + t;
        sum1 += s;
        d += 2 * (size_t)n;
        len -= n;
        sum1 = (sum1 & 0xffff) + (sum1 >> 16);
        sum2 = (sum2 & 0xffff) + (sum2 >> 16);
    }
    if (nbytes % 2) {
        sum1 += (uint64_t)*d << 8;
        sum2 += sum1;
        sum1 = (sum1 & 0xffff) + (sum1 >> 16);
        sum2 = (sum2 & 0xffff) + (sum2 >> 16);
    }
    sum1 = (sum1 & 0xffff) + (sum1 >> 16);
    sum2 = (sum2 & 0xffff) + (sum2 >> 16);
    return (uint32_t)(sum2 << 16 | sum1);
}

/* One chunk as the Fletcher32 filter stores it: the chunk's values (those
 * beyond the dataset's edge 0, as libhdf5 fills them), then the checksum,
 * little-endian.  buf holds chunk bytes + 4. */
static size_t pack_chunk(unsigned char *buf, const unsigned char *src, size_t esize, int rank,
                         const hsize_t *dims, const hsize_t *chunk, const hsize_t *off)
{
    size_t cbytes = esize;
    for (int i = 0; i < rank; i++)
        cbytes *= (size_t)chunk[i];
    /* rows along the last dimension: the part inside the dataset is copied */
    hsize_t idx[LRP_MAX_RANK + 1] = {0};
    size_t row = (size_t)chunk[rank - 1] * esize;
    hsize_t last_in = dims[rank - 1] - off[rank - 1];
    size_t keep = (size_t)(last_in < chunk[rank - 1] ? last_in : chunk[rank - 1]) * esize;
    unsigned char *dst = buf;
    for (;;) {
        int inside = 1;
        size_t so = 0;
        for (int i = 0; i < rank - 1; i++) {
            if (off[i] + idx[i] >= dims[i])
                inside = 0;
            so = so * (size_t)dims[i] + (size_t)(off[i] + idx[i]);
        }
        if (inside) {
            so = (so * (size_t)dims[rank - 1] + (size_t)off[rank - 1]) * esize;
            memcpy(dst, src + so, keep);
            memset(dst + keep, 0, row - keep);
        } else {
            memset(dst, 0, row);
        }
        dst += row;
        int i = rank - 2;
        for (; i >= 0; i--) {
            if (++idx[i] < chunk[i])
                break;
            idx[i] = 0;
        }
        if (i < 0)
            break;
    }
    uint32_t f = lrp_h5_fletcher32(buf, cbytes);
    buf[cbytes] = (unsigned char)f;
    buf[cbytes + 1] = (unsigned char)(f >> 8);
    buf[cbytes + 2] = (unsigned char)(f >> 16);
    buf[cbytes + 3] = (unsigned char)(f >> 24);
    return cbytes + 4;
}

/* A chunked, Fletcher32-checksummed dataset.  Chunks are the whole array
 * halved along its largest dimensions until at most CHUNK_BYTES, so small
 * arrays are one chunk and the layout depends only on the shape.  The
 * chunks are written directly (H5Dwrite_chunk, in row-major chunk order,
 * as libhdf5's own write of the whole array stores them), checksummed
 * here: libhdf5's filter path copied every chunk twice more and summed it
 * byte by byte.  The file is the same, byte for byte. */
static lrp_status w_ds(wr *w, hid_t g, const char *gpath, const char *name, hid_t ftype,
                       hid_t mtype, int rank, const int64_t *d, const void *buf)
{
    char opath[OBJ_MAX];
    hid_t dcpl = H5I_INVALID_HID, sp = H5I_INVALID_HID, ds = H5I_INVALID_HID;
    hsize_t dims[LRP_MAX_RANK + 1], chunk[LRP_MAX_RANK + 1];
    lrp_status st = LRP_OK;
    size_t esize = H5Tget_size(ftype), bytes = esize;
    unsigned char *cbuf = NULL;
    LRP_ASSERT(rank >= 1 && rank <= LRP_MAX_RANK + 1);
    LRP_ASSERT(H5Tget_size(mtype) == esize);
    for (int i = 0; i < rank; i++) {
        dims[i] = chunk[i] = (hsize_t)d[i];
        bytes *= (size_t)d[i];
    }
    while (bytes > CHUNK_BYTES) {
        int big = 0;
        for (int i = 1; i < rank; i++)
            if (chunk[i] > chunk[big])
                big = i;
        if (chunk[big] == 1)
            break;
        bytes = bytes / chunk[big] * ((chunk[big] + 1) / 2);
        chunk[big] = (chunk[big] + 1) / 2;
    }
    /* the memory and file types are the same little-endian types here:
     * the values are stored as they are */
    int direct = H5Tequal(ftype, mtype) > 0 || (esize == 4 && H5Tget_order(mtype) == H5T_ORDER_LE &&
                                               H5Tget_class(mtype) == H5Tget_class(ftype) &&
                                               H5Tget_order(ftype) == H5T_ORDER_LE &&
                                               (H5Tget_class(ftype) != H5T_INTEGER ||
                                                H5Tget_sign(ftype) == H5Tget_sign(mtype)));
    if ((dcpl = H5Pcreate(H5P_DATASET_CREATE)) < 0 || H5Pset_obj_track_times(dcpl, 0) < 0 ||
        H5Pset_chunk(dcpl, rank, chunk) < 0 || H5Pset_fletcher32(dcpl) < 0 ||
        (sp = H5Screate_simple(rank, dims, NULL)) < 0 ||
        (ds = H5Dcreate2(g, name, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0)
        goto fail;
    if (!direct) {
        if (H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
            goto fail;
        goto cleanup;
    }
    if (!(cbuf = malloc(bytes + 4))) {
        join(opath, sizeof opath, gpath, name);
        st = fail(&w->c, LRP_E_NOMEM, opath, "out of memory");
        goto cleanup;
    }
    hsize_t off[LRP_MAX_RANK + 1] = {0};
    for (;;) {
        size_t n = pack_chunk(cbuf, buf, esize, rank, dims, chunk, off);
        if (H5Dwrite_chunk(ds, H5P_DEFAULT, 0, off, n, cbuf) < 0)
            goto fail;
        int i = rank - 1;
        for (; i >= 0; i--) {
            off[i] += chunk[i];
            if (off[i] < dims[i])
                break;
            off[i] = 0;
        }
        if (i < 0)
            break;
    }
    goto cleanup;
fail:
    join(opath, sizeof opath, gpath, name);
    st = h5fail(&w->c, LRP_E_IO, opath, "cannot write dataset");
cleanup:
    free(cbuf);
    close_id(&ds);
    close_id(&sp);
    close_id(&dcpl);
    return st;
}

static lrp_status w_floats(wr *w, hid_t g, const char *gpath, const char *name, int rank,
                           const int64_t *d, const float *buf)
{
    return w_ds(w, g, gpath, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, rank, d, buf);
}

static lrp_status w_rule(wr *w, hid_t parent, const char *ppath, const char *ename,
                         const lrp_rule_spec *r)
{
    hid_t g;
    char rp[OBJ_MAX];
    const char *flags[MAX_FLAGS];
    int nf = 0;
    lrp_status st = w_group(w, parent, ppath, ename, &g);
    if (st)
        return st;
    join(rp, sizeof rp, ppath, ename);
    for (int b = 0; b < MAX_FLAGS; b++)
        if (r->flags & (1u << b))
            flags[nf++] = lrp_flag_name(1u << b);
    if (!(st = w_str(w, g, rp, "rule", lrp_rule_name(r->rule))) &&
        !(st = w_str(w, g, rp, "stabilizer", lrp_stab_name(r->stab))) &&
        !(st = w_f32(w, g, rp, "eps", r->eps)) && !(st = w_f32(w, g, rp, "gamma", r->gamma)) &&
        !(st = w_f32(w, g, rp, "alpha", r->alpha)) && !(st = w_f32(w, g, rp, "beta", r->beta)) &&
        !(st = w_f32(w, g, rp, "low", r->low)) && !(st = w_f32(w, g, rp, "high", r->high)) &&
        !(st = w_i32(w, g, rp, "bias", r->bias)))
        st = w_strs(w, g, rp, "flags", flags, nf);
    close_id(&g);
    return st;
}

static lrp_status w_rules(wr *w, hid_t parent, const char *ppath, const lrp_net *net,
                          const lrp_rule_spec *rules, int stride_layers)
{
    hid_t g;
    char gp[OBJ_MAX], ename[OBJ_MAX];
    lrp_status st = w_group_n(w, parent, ppath, "rules", net->n_layers, &g);
    join(gp, sizeof gp, ppath, "rules");
    for (int i = 0; !st && i < net->n_layers; i++) {
        /* stride_layers: read rules from the layer array or a plain array. */
        const lrp_rule_spec *r = stride_layers ? &net->layers[i].rule : &rules[i];
        lrp_h5_entry_name(ename, sizeof ename, i, net->layers[i].name);
        st = w_rule(w, g, gp, ename, r);
    }
    close_id(&g);
    return st;
}

static lrp_status w_layer(wr *w, hid_t ng, const lrp_net *net, int i)
{
    const lrp_layer *l = &net->layers[i];
    char ename[OBJ_MAX], gp[OBJ_MAX];
    const char *inputs[LRP_MAX_INPUTS];
    const lrp_kind_desc *kd = lrp_kind(l->kind);
    const char *base = (const char *)l;
    hid_t g;
    lrp_status st;
    lrp_h5_entry_name(ename, sizeof ename, i, l->name);
    join(gp, sizeof gp, "/network", ename);
    if ((st = w_group(w, ng, "/network", ename, &g)))
        return st;
    for (int q = 0; q < l->n_in; q++)
        inputs[q] = net->layers[l->in[q]].name;
    if ((st = w_str(w, g, gp, "name", l->name)) ||
        (st = w_str(w, g, gp, "kind", lrp_layer_kind_name(l->kind))) ||
        (st = w_strs(w, g, gp, "inputs", inputs, l->n_in)))
        goto cleanup;
    if (l->kind == LRP_LAYER_INPUT && l->tokens && (st = w_str(w, g, gp, "dtype", "token")))
        goto cleanup;
    /* the kind's schema (core/kinds.h), in the order the reader reads it */
    for (int a = 0; a < kd->n_attrs; a++) {
        const lrp_kind_attr *at = &kd->attrs[a];
        const void *f = base + at->off[0];
        switch ((lrp_attr_type)at->type) {
        case LRP_A_SHAPE: st = w_shape(w, g, gp, at->name, f); break;
        case LRP_A_I64: st = w_i64(w, g, gp, at->name, *(const int64_t *)f); break;
        case LRP_A_BOOL:
        case LRP_A_I32: st = w_i32(w, g, gp, at->name, *(const int *)f); break;
        case LRP_A_I32V: {
            int32_t v[4];
            LRP_ASSERT(at->n >= 1 && at->n <= 4);
            for (int q = 0; q < at->n; q++)
                v[q] = *(const int *)(base + at->off[q]);
            st = w_i32v(w, g, gp, at->name, v, at->n);
            break;
        }
        case LRP_A_F32: st = w_f32(w, g, gp, at->name, *(const float *)f); break;
        case LRP_A_ENUM: {
            /* the inference checked the index against the names */
            int k = *(const int *)f;
            st = w_str(w, g, gp, at->name, lrp_attr_enums[at->n][k]);
            break;
        }
        }
        if (st)
            goto cleanup;
    }
    for (int p = 0; p < LRP_P_COUNT; p++) {
        lrp_shape s;
        int64_t d[4];
        int rank;
        if (!lrp_layer_param_shape(net, i, p, &s))
            continue;
        rank = s.rank;
        memcpy(d, s.d, sizeof(int64_t) * (size_t)rank);
        if (kd->weight_rank4 && p == LRP_P_WEIGHT) {
            rank = 4;
            d[2] = l->kh;
            d[3] = l->kw;
        }
        if ((st = w_floats(w, g, gp, lrp_param_names[p], rank, d, lrp_layer_param(l, p))))
            goto cleanup;
    }
cleanup:
    close_id(&g);
    return st;
}

static lrp_status w_data(wr *w, hid_t file, const lrp_net *net)
{
    hid_t g;
    int64_t d[LRP_MAX_RANK + 1];
    const lrp_shape *ins = &net->layers[0].shape, *outs = &net->layers[net->n_layers - 1].shape;
    int r;
    lrp_status st = w_group(w, file, "/", "data", &g);
    if (st)
        return st;
    r = batch_dims(d, net->batch, ins);
    if (net->layers[0].tokens) {
        int64_t nt = lrp_shape_numel(ins) * net->batch;
        int64_t *tk = malloc((size_t)(nt ? nt : 1) * sizeof *tk);
        if (!tk) {
            st = fail(&w->c, LRP_E_NOMEM, "/data/tokens", "out of memory");
            goto cleanup;
        }
        for (int64_t i = 0; i < nt; i++)
            tk[i] = (int64_t)net->input[i];
        st = w_ds(w, g, "/data", "tokens", H5T_STD_I64LE, H5T_NATIVE_INT64, r, d, tk);
        free(tk);
        if (st)
            goto cleanup;
    } else if ((st = w_floats(w, g, "/data", "input", r, d, net->input)))
        goto cleanup;
    int64_t pT = lrp_padding_T(net);
    if (pT > 0 && net->key_padding_mask) {
        int64_t pd[2] = {net->batch, pT}, np = net->batch * pT;
        uint8_t *km = malloc((size_t)np);
        if (!km) {
            st = fail(&w->c, LRP_E_NOMEM, "/data/key_padding_mask", "out of memory");
            goto cleanup;
        }
        for (int64_t i = 0; i < np; i++)
            km[i] = net->key_padding_mask[i] != 0.0f;
        st = w_ds(w, g, "/data", "key_padding_mask", H5T_STD_U8LE, H5T_NATIVE_UINT8, 2, pd, km);
        free(km);
        if (st)
            goto cleanup;
    }
    r = batch_dims(d, net->batch, outs);
    if (net->r_out && (st = w_floats(w, g, "/data", "relevance_out", r, d, net->r_out)))
        goto cleanup;
    d[0] = net->batch;
    if (net->target &&
        (st = w_ds(w, g, "/data", "target", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, d, net->target)))
        goto cleanup;
    if (net->zbox_low &&
        ((st = w_floats(w, g, "/data", "zbox_low", ins->rank, ins->d, net->zbox_low)) ||
         (st = w_floats(w, g, "/data", "zbox_high", ins->rank, ins->d, net->zbox_high))))
        goto cleanup;
cleanup:
    close_id(&g);
    return st;
}

static lrp_status w_relevance(wr *w, hid_t tg, const char *tp, const char *gname,
                              const lrp_net *net, float *const *rel)
{
    hid_t g;
    char gp[OBJ_MAX], ename[OBJ_MAX];
    int64_t d[LRP_MAX_RANK + 1];
    lrp_status st = w_group_n(w, tg, tp, gname, net->n_layers, &g);
    join(gp, sizeof gp, tp, gname);
    for (int i = 0; !st && i < net->n_layers; i++) {
        if (!rel[i])
            continue;
        lrp_h5_entry_name(ename, sizeof ename, i, net->layers[i].name);
        int r = batch_dims(d, net->batch, &net->layers[i].shape);
        st = w_floats(w, g, gp, ename, r, d, rel[i]);
    }
    close_id(&g);
    return st;
}

/* One trace, into the open /traces group g. */
static lrp_status w_trace(wr *w, hid_t g, const lrp_trace *t, const lrp_net *net)
{
    hid_t tg = H5I_INVALID_HID;
    char tp[OBJ_MAX];
    lrp_status st;
    join(tp, sizeof tp, "/traces", t->source);
    if ((st = w_group(w, g, "/traces", t->source, &tg)))
        return st;
    if (!(st = w_str(w, tg, tp, "producer", t->producer)) &&
        !(st = w_str(w, tg, tp, "notes", t->notes)) &&
        !(st = w_str(w, tg, tp, "profile", t->profile)) &&
        !(st = w_str(w, tg, tp, "composite", t->composite)) &&
        !(st = w_i32(w, tg, tp, "precision", t->precision)) &&
        !(st = w_rules(w, tg, tp, net, t->rules, 0)) &&
        !(st = w_relevance(w, tg, tp, "relevance", net, t->relevance)) &&
        !(st = w_relevance(w, tg, tp, "relevance_lo", net, t->relevance_lo))) {
        int any = 0;
        for (int i = 0; t->activation && i < net->n_layers; i++)
            any |= t->activation[i] != NULL;
        if (any) /* the group only when there is something in it */
            st = w_relevance(w, tg, tp, "activation", net, t->activation);
    }
    close_id(&tg);
    return st;
}

static int str_ok(const char *s, size_t cap) { return memchr(s, '\0', cap) != NULL; }

static int name_ok(const char *s, size_t cap) { return str_ok(s, cap) && *s && !strchr(s, '/'); }

/* What the writer refuses beyond lrp_net_infer: anything the reader would
 * refuse, so every file written reads back. `inf` is the inferred copy. */
static lrp_status check_writable(ctx *c, const lrp_net *net, const lrp_net *inf)
{
    static const char *const pn[6] = {"weight", "bias", "gamma", "beta", "mean", "var"};
    char where[LRP_ERR_MSG_MAX];
    lrp_status st;
    if (!str_ok(net->description, sizeof net->description) ||
        !str_ok(net->composite, sizeof net->composite))
        return fail(c, LRP_E_INVALID, "network", "description or composite not NUL-terminated");
    if ((st = check_composite(c, "network", net->composite)))
        return st;
    for (int i = 0; i < inf->n_layers; i++) {
        const lrp_layer *l = &inf->layers[i];
        const float *pv[6] = {l->w, l->b, l->bn_gamma, l->bn_beta, l->bn_mean, l->bn_var};
        lrp_shape s;
        if (!name_ok(l->name, sizeof l->name))
            return fail(c, LRP_E_INVALID, "network", "layer name '%s' contains '/'", l->name);
        for (int p = 0; p < 6; p++)
            if (lrp_layer_param_shape(inf, i, p, &s) && !pv[p])
                return fail(c, LRP_E_INVALID, "network", "layer '%s': parameter '%s' missing",
                            l->name, pn[p]);
    }
    if (!net->input)
        return fail(c, LRP_E_INVALID, "network", "no input data (net->input is NULL)");
    if (!net->zbox_low != !net->zbox_high)
        return fail(c, LRP_E_INVALID, "network", "zbox_low and zbox_high must be given together");
    int64_t nout = lrp_shape_numel(&inf->layers[inf->n_layers - 1].shape);
    for (int b = 0; net->target && b < net->batch; b++)
        if (net->target[b] < 0 || net->target[b] >= nout)
            return fail(c, LRP_E_INVALID, "network", "target[%d] = %d out of range [0, %lld)", b,
                        (int)net->target[b], (long long)nout);
    for (int k = 0; k < net->n_traces; k++) {
        const lrp_trace *t = &net->traces[k];
        if (!name_ok(t->source, sizeof t->source) || !str_ok(t->producer, sizeof t->producer) ||
            !str_ok(t->notes, sizeof t->notes) || !str_ok(t->profile, sizeof t->profile) ||
            !str_ok(t->composite, sizeof t->composite))
            return fail(c, LRP_E_INVALID, "network",
                        "trace %d: source name empty or with '/', or a string not terminated", k);
        if ((st = check_composite(c, "network", t->composite)))
            return st;
        for (int j = 0; j < k; j++)
            if (strcmp(net->traces[j].source, t->source) == 0)
                return fail(c, LRP_E_INVALID, "network", "trace '%s' appears twice", t->source);
        if (t->n_layers != net->n_layers || !t->rules || !t->relevance || !t->relevance_lo)
            return fail(c, LRP_E_INVALID, "network",
                        "trace '%s': has %d layers, the network %d (or arrays missing)", t->source,
                        t->n_layers, net->n_layers);
        if (t->precision < 1)
            return fail(c, LRP_E_INVALID, "network", "trace '%s': precision %d must be >= 1",
                        t->source, t->precision);
        snprintf(where, sizeof where, "%s: trace '%s'", c->path, t->source);
        for (int i = 0; i < net->n_layers; i++) {
            if ((st = lrp_rule_validate(&t->rules[i], net->layers[i].kind, where,
                                        net->layers[i].name, c->err)))
                return st;
            if (t->relevance_lo[i] && !t->relevance[i])
                return fail(c, LRP_E_INVALID, "network",
                            "trace '%s': layer '%s': relevance_lo without relevance", t->source,
                            net->layers[i].name);
        }
    }
    return LRP_OK;
}

/* For stdout and FIFOs the writer builds the file in memory (HDF5's core
 * driver without backing store); these callbacks keep the driver's buffer when the file is closed,
 * so the image is the file exactly as H5Fclose finished it. */
typedef struct img {
    unsigned char *buf; /* the closed file's buffer, owned here */
    size_t cap;         /* its allocated size (>= the file's end) */
} img;

static void *img_malloc(size_t size, H5FD_file_image_op_t op, void *udata)
{
    (void)op;
    img *m = udata;
    void *p = malloc(size ? size : 1);
    if (p && op == H5FD_FILE_IMAGE_OP_FILE_OPEN)
        m->cap = size;
    return p;
}

static void *img_memcpy(void *dest, const void *src, size_t size, H5FD_file_image_op_t op,
                        void *udata)
{
    (void)op;
    (void)udata;
    return memcpy(dest, src, size);
}

static void *img_realloc(void *ptr, size_t size, H5FD_file_image_op_t op, void *udata)
{
    img *m = udata;
    void *p = realloc(ptr, size ? size : 1);
    if (p && op == H5FD_FILE_IMAGE_OP_FILE_RESIZE)
        m->cap = size;
    return p;
}

static herr_t img_free(void *ptr, H5FD_file_image_op_t op, void *udata)
{
    img *m = udata;
    if (op == H5FD_FILE_IMAGE_OP_FILE_CLOSE && ptr) {
        free(m->buf); /* the last file closed is the one written */
        m->buf = ptr; /* kept: the finished file */
        return 0;
    }
    free(ptr);
    return 0;
}

static void *img_udata_copy(void *udata) { return udata; }
static herr_t img_udata_free(void *udata)
{
    (void)udata;
    return 0;
}

/* The file's length: the end-of-file address of the version 2/3 superblock
 * the writer makes (offset 28, 8-byte little-endian, base address 0); 0 when
 * the image is not such a file or the address exceeds the buffer. */
static size_t img_length(const img *m)
{
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    const unsigned char *b = m->buf;
    if (!b || m->cap < 48 || memcmp(b, sig, 8) || (b[8] != 2 && b[8] != 3) || b[9] != 8)
        return 0;
    uint64_t base = 0, eof = 0;
    for (int k = 7; k >= 0; k--) {
        base = base << 8 | b[12 + k];
        eof = eof << 8 | b[28 + k];
    }
    if (base != 0 || eof < 48 || eof > m->cap)
        return 0;
    return (size_t)eof;
}

/* The format version a net is written as: 2 when one of its layers' kinds
 * needs it (core/kinds.h), else 1, so that files without those kinds stay
 * byte-identical to version 1's. */
static int file_version(const lrp_net *net)
{
    int v = LRP_FORMAT_VERSION;
    for (int i = 0; i < net->n_layers; i++)
        if (lrp_kind(net->layers[i].kind)->format_version > v)
            v = lrp_kind(net->layers[i].kind)->format_version;
    return v;
}

lrp_status lrp_fixture_write(const lrp_net *net, const char *path, lrp_err *err)
{
    return lrp_fixture_write_ex(net, path, NULL, err);
}

/* A write in two steps (h5io_int.h): everything but the deferred traces,
 * then those, the close and the commit.  One write is begin + finish, so
 * the calls to libhdf5 and the file are the same either way. */
struct lrp_h5_writer {
    wr w;
    lrp_net inf;       /* shallow copy of the net, layers inferred (copy) */
    lrp_layer *copy;
    const char **order;
    img image;
    H5FD_file_image_callbacks_t image_cb;
    lrp_h5_sink sink; /* a regular output: written through core/h5sink.c */
    int sinking;
    lrp_out out;
    int out_open;
    hid_t fcpl, fapl, file, ng, tg;
    char *defer;       /* the source written by finish, or NULL */
    const lrp_trace_ref *tref;
};

void lrp_h5_write_abort(lrp_h5_writer *h)
{
    if (!h)
        return;
    quiet q;
    quiet_begin(&q);
    if (h->out_open)
        lrp_out_abort(&h->out);
    close_id(&h->tg);
    close_id(&h->ng);
    close_id(&h->file);
    free(h->image.buf);
    close_id(&h->w.str);
    close_id(&h->w.gcpl);
    close_id(&h->fapl);
    close_id(&h->fcpl);
    free(h->order);
    free(h->copy);
    free(h->defer);
    free(h);
    quiet_end(&q);
}

lrp_status lrp_h5_write_begin(lrp_h5_writer **out, const lrp_net *net, const char *path,
                              const lrp_trace_ref *tref, const char *defer, lrp_err *err)
{
    lrp_h5_writer *h = calloc(1, sizeof *h);
    quiet q;
    lrp_status st = LRP_OK;
    *out = NULL;
    if (!h)
        return lrp_err_set(err, LRP_E_NOMEM, "%s: out of memory", path ? path : "<no path>");
    h->w = (wr){.c = {.path = path ? path : "<no path>", .err = err}, .str = H5I_INVALID_HID,
                .gcpl = H5I_INVALID_HID};
    h->fcpl = h->fapl = h->file = h->ng = h->tg = H5I_INVALID_HID;
    h->image_cb = (H5FD_file_image_callbacks_t){img_malloc,     img_memcpy,     img_realloc, img_free,
                                                img_udata_copy, img_udata_free, &h->image};
    h->tref = tref;
    wr *w = &h->w;
    ctx *c = &w->c;
    quiet_begin(&q);
    if (!path || !net) {
        st = fail(c, LRP_E_USAGE, "/", "no file name or no network given");
        goto done;
    }
    if (defer && !(h->defer = strdup(defer))) {
        st = fail(c, LRP_E_NOMEM, "network", "out of memory");
        goto done;
    }
    /* Validate on a shallow copy: lrp_net_infer writes shapes, and the
     * caller's net is const.  Parameters stay shared (read only). */
    h->inf = *net;
    if (net->n_layers > 0) {
        if (!(h->copy = malloc((size_t)net->n_layers * sizeof *h->copy))) {
            st = fail(c, LRP_E_NOMEM, "network", "out of memory");
            goto done;
        }
        memcpy(h->copy, net->layers, (size_t)net->n_layers * sizeof *h->copy);
    }
    h->inf.layers = h->copy;
    if ((st = lrp_net_infer(&h->inf, path, err)) || (st = check_writable(c, net, &h->inf)))
        goto done;
    lrp_net *inf = &h->inf;

    if (!(h->order = malloc((size_t)(inf->n_layers ? inf->n_layers : 1) * sizeof *h->order))) {
        st = fail(c, LRP_E_NOMEM, "/", "out of memory");
        goto done;
    }
    /* libhdf5 never sees an I/O error (a failed H5Fclose on a full disk
     * left it to crash in its exit handler): the file goes through
     * core/h5sink.c or is built in memory (below); stdout, FIFOs, symlinks
     * and modes are core/safeout.c's. */
    if ((h->fcpl = H5Pcreate(H5P_FILE_CREATE)) < 0 || H5Pset_obj_track_times(h->fcpl, 0) < 0 ||
        (h->fapl = H5Pcreate(H5P_FILE_ACCESS)) < 0 ||
        H5Pset_libver_bounds(h->fapl, H5F_LIBVER_V110, H5F_LIBVER_V110) < 0 ||
        H5Pset_fclose_degree(h->fapl, H5F_CLOSE_STRONG) < 0 ||
        (w->gcpl = H5Pcreate(H5P_GROUP_CREATE)) < 0 || H5Pset_obj_track_times(w->gcpl, 0) < 0 ||
        /* links stay "compact" (in the checksummed object header) however
         * many a group has: past 8 links HDF5 would move them to a fractal
         * heap without checksum, where one flipped byte made libhdf5 free a
         * bad pointer (fuzz_fixture, tests/fuzz_regress) */
        H5Pset_link_phase_change(w->gcpl, 65535, 65534) < 0 ||
        (w->str = H5Tcopy(H5T_C_S1)) < 0 || H5Tset_size(w->str, H5T_VARIABLE) < 0 ||
        H5Tset_cset(w->str, H5T_CSET_UTF8) < 0) {
        st = h5fail(c, LRP_E_NOMEM, "/", "cannot set up HDF5 properties");
        goto done;
    }
    /* The output is opened before the file is built: a regular file gets
     * the chunks as they are made */
    if ((st = lrp_out_open(&h->out, path, err)))
        goto done;
    h->out_open = 1;
    /* A regular output is written through core/h5sink.c (raw data at once,
     * metadata at the close); anything else (stdout, a FIFO) gets the image
     * built in memory by the core driver, written at the end. */
    h->sinking = !h->out.through && !getenv("LRP_H5_CORE");
    h->sink = (lrp_h5_sink){h->out.fd, 0, 0, 0};
    if (h->sinking ? lrp_h5_sink_set(h->fapl, &h->sink) < 0
                   : H5Pset_fapl_core(h->fapl, (size_t)1 << 20, 0) < 0 ||
                         H5Pset_file_image_callbacks(h->fapl, &h->image_cb) < 0) {
        st = h5fail(c, LRP_E_NOMEM, "/", "cannot set up HDF5 properties");
        goto done;
    }
    /* A name no file can have (nothing can be below the device /dev/null):
     * libhdf5 first tries to open an existing file of the name, and the core
     * driver would read the target (or block on a FIFO or a terminal). */
    if ((h->file = H5Fcreate("/dev/null/lrp-oracle-image.h5", H5F_ACC_TRUNC, h->fcpl, h->fapl)) < 0) {
        st = h5fail(c, LRP_E_IO, "/", "cannot create HDF5 file");
        goto done;
    }
    hid_t file = h->file;
    for (int i = 0; i < inf->n_layers; i++)
        h->order[i] = inf->layers[i].name;
    if (tref) {
        /* a trace file: the traces and the fixture they belong to */
        if ((st = w_str(w, file, "/", "format", LRP_TRACE_MAGIC)) ||
            (st = w_i32(w, file, "/", "format_version", file_version(inf))) ||
            (st = w_str(w, file, "/", "fixture", tref->fixture)) ||
            (st = w_i64(w, file, "/", "fixture_size", tref->size)) ||
            (st = w_attr(w, file, "/", "fixture_digest", H5T_STD_U64LE, H5T_NATIVE_UINT64, 0, 1,
                         &tref->digest)))
            goto done;
    } else {
        if ((st = w_str(w, file, "/", "format", LRP_FIXTURE_MAGIC)) ||
            (st = w_i32(w, file, "/", "format_version", file_version(inf))) ||
            (st = w_str(w, file, "/", "layout", "NCHW")) ||
            (st = w_str(w, file, "/", "flatten_order", "CHW")) ||
            (file_version(inf) >= 2 && (st = w_str(w, file, "/", "token_layout", "TF"))) ||
            (st = w_i32(w, file, "/", "batch", net->batch)) ||
            (st = w_attr(w, file, "/", "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, 0, 1,
                         &net->seed)) ||
            (st = w_str(w, file, "/", "description", net->description)) ||
            (st = w_str(w, file, "/", "composite", net->composite)))
            goto done;
        if ((st = w_group_n(w, file, "/", "network", inf->n_layers + 1, &h->ng)) ||
            (st = w_strs(w, h->ng, "/network", "order", h->order, inf->n_layers)))
            goto done;
        for (int i = 0; i < inf->n_layers; i++)
            if ((st = w_layer(w, h->ng, inf, i)))
                goto done;
        close_id(&h->ng);
        if ((st = w_rules(w, file, "/", inf, NULL, 1)) || (st = w_data(w, file, inf)))
            goto done;
    }
    if ((st = w_group(w, file, "/", "traces", &h->tg)))
        goto done;
    for (int k = 0; k < net->n_traces; k++) {
        const lrp_trace *t = &net->traces[k];
        if ((tref && strcmp(tref->source, t->source) != 0) ||
            (h->defer && !strcmp(h->defer, t->source)))
            continue;
        if ((st = w_trace(w, h->tg, t, inf)))
            goto done;
    }
done:
    quiet_end(&q);
    if (st) {
        lrp_h5_write_abort(h);
        return st;
    }
    *out = h;
    return LRP_OK;
}

lrp_status lrp_h5_write_finish(lrp_h5_writer *h, const lrp_net *net, lrp_err *err)
{
    quiet q;
    lrp_status st = LRP_OK;
    wr *w = &h->w;
    ctx *c = &w->c;
    c->err = err;
    quiet_begin(&q);
    if (h->defer) {
        /* the net may have gained the deferred trace: checked like the rest
         * (the layers must be those of begin) */
        if (net->n_layers != h->inf.n_layers) {
            st = fail(c, LRP_E_USAGE, "network", "the network changed during the write");
            goto done;
        }
        h->inf.traces = net->traces;
        h->inf.n_traces = net->n_traces;
        if ((st = check_writable(c, net, &h->inf)))
            goto done;
        for (int k = 0; k < net->n_traces; k++)
            if (!strcmp(h->defer, net->traces[k].source) &&
                (st = w_trace(w, h->tg, &net->traces[k], &h->inf)))
                goto done;
    }
    close_id(&h->tg);
    herr_t cl = H5Fclose(h->file);
    h->file = H5I_INVALID_HID;
    if (cl < 0) {
        st = h5fail(c, LRP_E_IO, "/", "cannot finish writing");
        goto done;
    }
    if (h->sinking) {
        if (h->sink.err) {
            st = lrp_err_set(err, LRP_E_IO, "%s: cannot write: %s", h->out.name,
                             strerror(h->sink.err));
            goto done;
        }
        if ((st = lrp_out_commit(&h->out, err)))
            goto done;
        h->out_open = 0;
        goto done;
    }
    size_t isz = img_length(&h->image);
    if (isz == 0) {
        st = fail(c, LRP_E_IO, "/", "cannot finish writing (no file image)");
        goto done;
    }
    if ((st = lrp_out_write(&h->out, h->image.buf, isz, err)) ||
        (st = lrp_out_commit(&h->out, err)))
        goto done;
    h->out_open = 0;
done:
    quiet_end(&q);
    lrp_h5_write_abort(h);
    return st;
}

lrp_status lrp_fixture_write_ex(const lrp_net *net, const char *path, const lrp_trace_ref *tref,
                                lrp_err *err)
{
    lrp_h5_writer *h = NULL;
    lrp_status st = lrp_h5_write_begin(&h, net, path, tref, NULL, err);
    return st ? st : lrp_h5_write_finish(h, net, err);
}
