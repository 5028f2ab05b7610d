/*
 * h5sink.c -- an HDF5 file driver for the writer (core/h5io.c): raw data
 * straight to the output file, metadata held in memory until the close.
 *
 * The writer used HDF5's core driver: the whole file built in memory, its
 * chunks also written to the output as they were made, the rest of the
 * image written at the end.  That held every byte of the file twice in
 * fresh memory, which on this project's machines costs more than the disk
 * (a 230 MB trace: about 0.7 s of page faults and copies for a 0.2 s
 * write).  This driver keeps only what libhdf5 may read back or rewrite:
 *
 *   - raw data (H5FD_MEM_DRAW: the chunks) is written to the file at once
 *     and not kept;
 *   - metadata goes to 4 KiB shadow pages, with a bit per byte saying the
 *     byte's latest write was metadata; a raw write over such bytes clears
 *     their bits (a later write wins, whichever kind);
 *   - a read is the file's bytes with the shadow's marked bytes on top;
 *   - at the close the marked bytes are written, and the file's length set
 *     to the end of the allocated space (EOA), which is what the core
 *     driver's image held: bytes never written read as zero either way.
 *
 * So the file is the core driver's image byte for byte (tests/test_h5io.c
 * compares the two).  Like the core driver without a backing store,
 * nothing here reports an I/O error to libhdf5 (a failed close on a full
 * disk once left libhdf5 to crash in its exit handler): the first failure
 * is kept in the sink (errno) for the writer to report.
 */
#define _GNU_SOURCE /* sync_file_range */
#include "h5sink.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SPAGE 4096u

typedef struct spage {
    uint64_t bits[SPAGE / 64]; /* byte i's latest write was metadata */
    unsigned char data[SPAGE];
} spage;

typedef struct sink_file {
    H5FD_t pub; /* first: libhdf5 casts */
    lrp_h5_sink *s;
    haddr_t eoa, eof;
    spage **page; /* the shadow, by page number; NULL: no metadata there */
    size_t n_page;
} sink_file;

static void sink_fail(lrp_h5_sink *s, int e)
{
    if (!s->err)
        s->err = e ? e : EIO;
}

static void *sink_fapl_copy(const void *info)
{
    void *p = malloc(sizeof(lrp_h5_sink *));
    if (p)
        memcpy(p, info, sizeof(lrp_h5_sink *));
    return p;
}

static herr_t sink_fapl_free(void *info)
{
    free(info);
    return 0;
}

static H5FD_t *sink_open(const char *name, unsigned flags, hid_t fapl, haddr_t maxaddr)
{
    (void)name;
    (void)flags;
    (void)maxaddr;
    lrp_h5_sink *const *pp = H5Pget_driver_info(fapl);
    if (!pp || !*pp)
        return NULL;
    sink_file *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->s = *pp;
    return &f->pub;
}

static int pwrite_full(int fd, const unsigned char *b, size_t n, uint64_t at)
{
    while (n > 0) {
        ssize_t r = pwrite(fd, b, n, (off_t)at);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0 ? errno : EIO;
        b += r;
        n -= (size_t)r;
        at += (uint64_t)r;
    }
    return 0;
}

static int bit(const spage *p, unsigned i) { return (int)(p->bits[i / 64] >> (i % 64)) & 1; }

/* The metadata, written at last: every run of marked bytes */
static herr_t sink_close(H5FD_t *file)
{
    sink_file *f = (sink_file *)file;
    for (size_t k = 0; k < f->n_page; k++) {
        spage *p = f->page[k];
        if (!p)
            continue;
        unsigned i = 0;
        while (i < SPAGE && !f->s->err) {
            while (i < SPAGE && !bit(p, i))
                i++;
            unsigned j = i;
            while (j < SPAGE && bit(p, j))
                j++;
            int e = j > i ? pwrite_full(f->s->fd, p->data + i, j - i, (uint64_t)k * SPAGE + i) : 0;
            if (e)
                sink_fail(f->s, e);
            i = j;
        }
        free(p);
    }
    free(f->page);
    /* the length the core driver's image had: the allocated space */
    if (!f->s->err && ftruncate(f->s->fd, (off_t)f->eoa) != 0)
        sink_fail(f->s, errno);
    free(f);
    return 0;
}

static int sink_cmp(const H5FD_t *a, const H5FD_t *b) { return a < b ? -1 : a > b; }

static herr_t sink_query(const H5FD_t *f, unsigned long *flags)
{
    (void)f;
    /* the core driver's, but for its file-image features: they decide
     * nothing about where objects go */
    *flags = H5FD_FEAT_AGGREGATE_METADATA | H5FD_FEAT_ACCUMULATE_METADATA | H5FD_FEAT_DATA_SIEVE |
             H5FD_FEAT_AGGREGATE_SMALLDATA;
    return 0;
}

static haddr_t sink_get_eoa(const H5FD_t *file, H5FD_mem_t type)
{
    (void)type;
    return ((const sink_file *)file)->eoa;
}

static herr_t sink_set_eoa(H5FD_t *file, H5FD_mem_t type, haddr_t addr)
{
    (void)type;
    ((sink_file *)file)->eoa = addr;
    return 0;
}

static haddr_t sink_get_eof(const H5FD_t *file, H5FD_mem_t type)
{
    (void)type;
    return ((const sink_file *)file)->eof;
}

static herr_t sink_get_handle(H5FD_t *file, hid_t fapl, void **handle)
{
    (void)fapl;
    *handle = &((sink_file *)file)->s->fd;
    return 0;
}

/* The shadow page of byte address a (made when `make`), or NULL */
static spage *page_at(sink_file *f, uint64_t a, int make)
{
    size_t k = (size_t)(a / SPAGE);
    if (k >= f->n_page) {
        if (!make)
            return NULL;
        size_t n = f->n_page ? f->n_page : 256;
        while (n <= k)
            n *= 2;
        spage **t = realloc(f->page, n * sizeof *t);
        if (!t)
            return NULL;
        memset(t + f->n_page, 0, (n - f->n_page) * sizeof *t);
        f->page = t;
        f->n_page = n;
    }
    if (!f->page[k] && make)
        f->page[k] = calloc(1, sizeof(spage));
    return f->page[k];
}

static herr_t sink_read(H5FD_t *file, H5FD_mem_t type, hid_t dxpl, haddr_t addr, size_t size,
                        void *buf)
{
    (void)type;
    (void)dxpl;
    sink_file *f = (sink_file *)file;
    unsigned char *b = buf;
    memset(b, 0, size);
    /* what reached the file (raw data; nothing of the metadata yet) */
    size_t got = 0;
    while (got < size) {
        ssize_t r = pread(f->s->fd, b + got, size - got, (off_t)(addr + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            sink_fail(f->s, errno);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    /* the metadata on top */
    for (uint64_t a = addr; a < addr + size;) {
        uint64_t pend = (a / SPAGE + 1) * SPAGE, end = addr + size < pend ? addr + size : pend;
        spage *p = page_at(f, a, 0);
        for (uint64_t x = a; p && x < end; x++)
            if (bit(p, (unsigned)(x % SPAGE)))
                b[x - addr] = p->data[x % SPAGE];
        a = end;
    }
    return 0;
}

static herr_t sink_write(H5FD_t *file, H5FD_mem_t type, hid_t dxpl, haddr_t addr, size_t size,
                         const void *buf)
{
    (void)dxpl;
    sink_file *f = (sink_file *)file;
    lrp_h5_sink *s = f->s;
    const unsigned char *b = buf;
    int raw = type == H5FD_MEM_DRAW;
    if (raw && !s->err) {
        int e = pwrite_full(s->fd, b, size, (uint64_t)addr);
        if (e)
            sink_fail(s, e);
        /* start the disk on it: the final fsync then waits for little */
        if (s->kick_hi == 0 || addr < s->kick_lo)
            s->kick_lo = addr;
        if (addr + size > s->kick_hi)
            s->kick_hi = addr + size;
        if (s->kick_hi - s->kick_lo >= ((uint64_t)32 << 20)) {
            (void)sync_file_range(s->fd, (off_t)s->kick_lo, (off_t)(s->kick_hi - s->kick_lo),
                                  SYNC_FILE_RANGE_WRITE);
            s->kick_lo = s->kick_hi = 0;
        }
    }
    for (uint64_t a = addr; a < addr + size;) {
        uint64_t pend = (a / SPAGE + 1) * SPAGE, end = addr + size < pend ? addr + size : pend;
        spage *p = page_at(f, a, !raw);
        if (!p && !raw) {
            sink_fail(s, ENOMEM);
            break;
        }
        unsigned i0 = (unsigned)(a % SPAGE), n = (unsigned)(end - a);
        if (p) {
            /* the data too for a raw write: a read of the page stays right
             * whatever reached the file */
            memcpy(p->data + i0, b + (a - addr), n);
            for (unsigned i = i0; i < i0 + n; i++) {
                uint64_t m = (uint64_t)1 << (i % 64);
                p->bits[i / 64] = raw ? p->bits[i / 64] & ~m : p->bits[i / 64] | m;
            }
        }
        a = end;
    }
    if (addr + size > f->eof)
        f->eof = addr + size;
    return 0;
}

static herr_t sink_flush(H5FD_t *file, hid_t dxpl, hbool_t closing)
{
    (void)file;
    (void)dxpl;
    (void)closing;
    return 0; /* the metadata is written at the close */
}

static herr_t sink_truncate(H5FD_t *file, hid_t dxpl, hbool_t closing)
{
    (void)file;
    (void)dxpl;
    (void)closing;
    return 0; /* the length is set at the close */
}

static const H5FD_class_t sink_class = {
    "lrp_sink",
    (haddr_t)INT64_MAX,
    H5F_CLOSE_WEAK,
    NULL, /* terminate */
    NULL, NULL, NULL,
    sizeof(lrp_h5_sink *),
    NULL, /* fapl_get */
    sink_fapl_copy,
    sink_fapl_free,
    0, NULL, NULL,
    sink_open,
    sink_close,
    sink_cmp,
    sink_query,
    NULL, /* get_type_map */
    NULL, /* alloc */
    NULL, /* free */
    sink_get_eoa,
    sink_set_eoa,
    sink_get_eof,
    sink_get_handle,
    sink_read,
    sink_write,
    sink_flush,
    sink_truncate,
    NULL, /* lock */
    NULL, /* unlock */
    H5FD_FLMAP_DICHOTOMY,
};

herr_t lrp_h5_sink_set(hid_t fapl, lrp_h5_sink *s)
{
    static hid_t id = H5I_INVALID_HID;
    /* registered once (a library reopened after H5close registers again) */
    if (id < 0 || H5Iis_valid(id) <= 0)
        id = H5FDregister(&sink_class);
    if (id < 0)
        return -1;
    return H5Pset_driver(fapl, id, &s);
}
