/*
 * safeout.c -- safe output files (contract in safeout.h).
 */
#define _GNU_SOURCE
#include "safeout.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef NAME_MAX
#define NAME_MAX 255
#endif

static char *dupstr(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* The descriptor a name stands for ("-", /dev/stdout, /dev/fd/N, ...), or -1. */
static int fd_name(const char *p)
{
    if (!strcmp(p, "-") || !strcmp(p, "/dev/stdout"))
        return STDOUT_FILENO;
    if (!strcmp(p, "/dev/stderr"))
        return STDERR_FILENO;
    const char *num = NULL;
    if (!strncmp(p, "/dev/fd/", 8))
        num = p + 8;
    else if (!strncmp(p, "/proc/self/fd/", 14))
        num = p + 14;
    if (!num || !*num)
        return -1;
    char *end;
    errno = 0;
    long v = strtol(num, &end, 10);
    if (*end || errno || v < 0 || v > INT_MAX)
        return -1;
    return (int)v;
}

/* Follows symlinks (up to 40) to the final target, which need not exist. */
static char *resolve(const char *path, int *eloop)
{
    char *p = dupstr(path);
    *eloop = 0;
    for (int hop = 0; p && hop < 40; hop++) {
        struct stat st;
        if (lstat(p, &st) != 0 || !S_ISLNK(st.st_mode))
            return p;
        size_t cap = (size_t)(st.st_size > 0 ? st.st_size : PATH_MAX) + 1;
        char *link = malloc(cap);
        ssize_t n = link ? readlink(p, link, cap) : -1;
        if (n < 0 || (size_t)n >= cap) {
            free(link);
            return p; /* changed under us: let open report it */
        }
        link[n] = '\0';
        if (link[0] == '/') {
            free(p);
            p = link;
            continue;
        }
        const char *slash = strrchr(p, '/');
        size_t dl = slash ? (size_t)(slash - p) + 1 : 0;
        char *q = malloc(dl + (size_t)n + 1);
        if (q) {
            memcpy(q, p, dl);
            memcpy(q + dl, link, (size_t)n + 1);
        }
        free(link);
        free(p);
        p = q;
    }
    if (p)
        *eloop = 1;
    return p;
}

/* dir part ("." when none) and base part of p, into malloc'ed strings. */
static int split(const char *p, char **dir, char **base)
{
    const char *slash = strrchr(p, '/');
    if (!slash) {
        *dir = dupstr(".");
        *base = dupstr(p);
    } else {
        size_t dl = slash == p ? 1 : (size_t)(slash - p);
        *dir = malloc(dl + 1);
        if (*dir) {
            memcpy(*dir, p, dl);
            (*dir)[dl] = '\0';
        }
        *base = dupstr(slash + 1);
    }
    if (!*dir || !*base) {
        free(*dir);
        free(*base);
        return -1;
    }
    return 0;
}

/* ".BASE.lrp-tmp." with BASE cut so that prefix + PID + ".XXXXXX" fits
 * NAME_MAX whatever the PID (up to 10 digits). */
static char *tmp_prefix(const char *base)
{
    size_t room = NAME_MAX - (1 + strlen(LRP_TMP_MARK) + 10 + 7);
    size_t bl = strlen(base);
    if (bl > room)
        bl = room;
    char *s = malloc(1 + bl + strlen(LRP_TMP_MARK) + 1);
    if (!s)
        return NULL;
    s[0] = '.';
    memcpy(s + 1, base, bl);
    strcpy(s + 1 + bl, LRP_TMP_MARK);
    return s;
}

/* Removes temporary files of this target left by writers that are gone:
 * ".BASE.lrp-tmp.PID.XXXXXX" with PID not alive. */
static void clean_stale(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    size_t pl = strlen(prefix);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, prefix, pl))
            continue;
        const char *s = e->d_name + pl;
        char *end;
        errno = 0;
        long pid = strtol(s, &end, 10);
        if (end == s || errno || pid <= 0 || pid > INT_MAX || *end != '.' || strlen(end) != 7)
            continue;
        if (pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
            unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
}

lrp_status lrp_out_open(lrp_out *o, const char *path, lrp_err *err)
{
    memset(o, 0, sizeof *o);
    o->fd = -1;
    o->name = path ? path : "<no path>";
    if (!path || !*path)
        return lrp_err_set(err, LRP_E_USAGE, "%s: empty output file name", o->name);
    int fdn = fd_name(path);
    if (fdn >= 0) {
        fflush(stdout);
        fflush(stderr);
        if ((o->fd = dup(fdn)) < 0)
            return lrp_err_set(err, LRP_E_IO, "%s: cannot write: %s", path, strerror(errno));
        o->through = 1;
        return LRP_OK;
    }
    int eloop;
    if (!(o->target = resolve(path, &eloop)))
        return lrp_err_set(err, LRP_E_NOMEM, "%s: out of memory", path);
    if (eloop) {
        lrp_out_abort(o);
        return lrp_err_set(err, LRP_E_IO, "%s: too many levels of symbolic links", path);
    }
    struct stat st;
    if (stat(o->target, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            lrp_out_abort(o);
            return lrp_err_set(err, LRP_E_USAGE, "%s: is a directory", path);
        }
        if (!S_ISREG(st.st_mode)) {
            /* FIFO, device, socket: written through, never replaced */
            if ((o->fd = open(o->target, O_WRONLY | O_NOCTTY | O_CLOEXEC)) < 0) {
                int e = errno;
                lrp_out_abort(o);
                return lrp_err_set(err, LRP_E_IO, "%s: cannot open: %s", path, strerror(e));
            }
            o->through = 1;
            return LRP_OK;
        }
        if ((st.st_mode & 0222) == 0 || access(o->target, W_OK) != 0) {
            lrp_out_abort(o);
            return lrp_err_set(err, LRP_E_USAGE,
                               "%s: file is read-only (mode %04o); not overwritten", path,
                               (unsigned)(st.st_mode & 07777));
        }
        if (st.st_nlink > 1) {
            lrp_out_abort(o);
            return lrp_err_set(err, LRP_E_USAGE,
                               "%s: file has %lu hard links and replacing it would split them; "
                               "not overwritten (write to a new name)",
                               path, (unsigned long)st.st_nlink);
        }
        o->exists = 1;
        o->st = st;
    } else if (errno != ENOENT) {
        int e = errno;
        lrp_out_abort(o);
        return lrp_err_set(err, LRP_E_IO, "%s: %s", path, strerror(e));
    }
    char *dir = NULL, *base = NULL, *prefix = NULL;
    if (split(o->target, &dir, &base) || !(prefix = tmp_prefix(base))) {
        free(dir);
        free(base);
        lrp_out_abort(o);
        return lrp_err_set(err, LRP_E_NOMEM, "%s: out of memory", path);
    }
    clean_stale(dir, prefix);
    size_t n = strlen(dir) + 1 + strlen(prefix) + 24;
    if ((o->tmp = malloc(n)))
        snprintf(o->tmp, n, "%s/%s%ld.XXXXXX", dir, prefix, (long)getpid());
    free(dir);
    free(base);
    free(prefix);
    if (!o->tmp) {
        lrp_out_abort(o);
        return lrp_err_set(err, LRP_E_NOMEM, "%s: out of memory", path);
    }
    if ((o->fd = mkostemp(o->tmp, O_CLOEXEC)) < 0) {
        int e = errno;
        free(o->tmp);
        o->tmp = NULL;
        lrp_out_abort(o);
        return lrp_err_set(err, LRP_E_IO, "%s: cannot create a temporary file beside it: %s",
                           path, strerror(e));
    }
    return LRP_OK;
}

lrp_status lrp_out_write(lrp_out *o, const void *buf, size_t n, lrp_err *err)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(o->fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return lrp_err_set(err, LRP_E_IO, "%s: cannot write: %s", o->name,
                               w < 0 ? strerror(errno) : "no progress");
        p += w;
        n -= (size_t)w;
    }
    return LRP_OK;
}

lrp_status lrp_out_commit(lrp_out *o, lrp_err *err)
{
    lrp_status st = LRP_OK;
    if (o->fd < 0)
        return lrp_err_set(err, LRP_E_IO, "%s: output not open", o->name);
    if (o->through) {
        if (close(o->fd) != 0 && errno != EINTR)
            st = lrp_err_set(err, LRP_E_IO, "%s: cannot write: %s", o->name, strerror(errno));
        o->fd = -1;
        lrp_out_abort(o);
        return st;
    }
    mode_t mode;
    if (o->exists) {
        mode = o->st.st_mode & 07777;
        /* the owner when we may (root); a plain user keeps its own */
        if (fchown(o->fd, o->st.st_uid, o->st.st_gid) != 0)
            mode &= 0777; /* no set-id bits on a file of another owner */
    } else {
        mode_t um = umask(0);
        umask(um);
        mode = 0666 & ~um;
    }
    if (fchmod(o->fd, mode) != 0)
        st = lrp_err_set(err, LRP_E_IO, "%s: cannot set the mode: %s", o->name, strerror(errno));
    else if (fsync(o->fd) != 0)
        st = lrp_err_set(err, LRP_E_IO, "%s: cannot write: %s", o->name, strerror(errno));
    int fd = o->fd;
    o->fd = -1;
    if (close(fd) != 0 && st == LRP_OK && errno != EINTR)
        st = lrp_err_set(err, LRP_E_IO, "%s: cannot write: %s", o->name, strerror(errno));
    if (st == LRP_OK && rename(o->tmp, o->target) != 0)
        st = lrp_err_set(err, LRP_E_IO, "%s: cannot rename into place: %s", o->name,
                         strerror(errno));
    if (st == LRP_OK) {
        free(o->tmp); /* renamed: nothing to remove */
        o->tmp = NULL;
        /* the new name on disk too */
        char *dir = NULL, *base = NULL;
        if (split(o->target, &dir, &base) == 0) {
            int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (dfd >= 0) {
                (void)fsync(dfd);
                close(dfd);
            }
            free(dir);
            free(base);
        }
    }
    lrp_out_abort(o);
    return st;
}

void lrp_out_abort(lrp_out *o)
{
    if (o->fd >= 0) {
        close(o->fd);
        o->fd = -1;
    }
    if (o->tmp) {
        unlink(o->tmp);
        free(o->tmp);
        o->tmp = NULL;
    }
    free(o->target);
    o->target = NULL;
}

int lrp_out_is_stdout(const char *path) { return path && fd_name(path) == STDOUT_FILENO; }

int lrp_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (!a || !b || stat(a, &sa) != 0 || stat(b, &sb) != 0)
        return 0;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}
