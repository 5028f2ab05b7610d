/*
 * testutil.c -- see testutil.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "testutil.h"

#include "check.h"
#include "fixtures.h"
#include "graph_int.h"
#include "lrp.h"
#include "pipeline.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

char *tu_mkdtemp(const char *tag)
{
    char buf[256];
    snprintf(buf, sizeof buf, "/tmp/lrp-%s-XXXXXX", tag);
    if (!mkdtemp(buf)) {
        fprintf(stderr, "tu_mkdtemp: %s: %s\n", buf, strerror(errno));
        return NULL;
    }
    char *p = malloc(strlen(buf) + 1);
    if (p)
        memcpy(p, buf, strlen(buf) + 1);
    return p;
}

char *tu_join(char *buf, size_t n, const char *dir, const char *name)
{
    snprintf(buf, n, "%s/%s", dir, name);
    return buf;
}

int tu_exe_dir(char *buf, size_t n, int up)
{
    char self[4096];
    if (n > 0)
        buf[0] = '\0';
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0)
        return -1;
    self[len] = '\0';
    for (int k = 0; k < up; k++) {
        char *slash = strrchr(self, '/');
        if (!slash)
            return -1;
        *slash = '\0';
    }
    if ((size_t)snprintf(buf, n, "%s", self) >= n) {
        buf[0] = '\0';
        return -1;
    }
    return 0;
}

int tu_rmtree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[4096];
    int rc = 0;
    if (!d)
        return -1;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        tu_join(p, sizeof p, dir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            chmod(p, 0700);
            rc |= tu_rmtree(p);
        } else {
            rc |= unlink(p);
        }
    }
    closedir(d);
    return rc | rmdir(dir);
}

int tu_count_entries(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, needle))
            n++;
    closedir(d);
    return n;
}

unsigned char *tu_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long n;
    *len = 0;
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
        goto done;
    buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
        goto done;
    }
    if (buf)
        buf[n] = 0; /* callers may read it as a string */
    *len = (size_t)n;
done:
    fclose(f);
    return buf;
}

int tu_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = len ? fwrite(data, 1, len, f) : 0;
    return (fclose(f) != 0 || w != len) ? -1 : 0;
}

int tu_files_equal(const char *a, const char *b)
{
    size_t na, nb;
    unsigned char *x = tu_read_file(a, &na), *y = tu_read_file(b, &nb);
    int eq = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return eq;
}

int tu_stderr_begin(tu_capture *c)
{
    char name[] = "/tmp/lrp-stderr-XXXXXX";
    fflush(stderr);
    c->saved_fd = -1;
    c->file_fd = mkstemp(name);
    if (c->file_fd < 0)
        return -1;
    unlink(name); /* the descriptor keeps it alive */
    c->saved_fd = dup(2);
    if (c->saved_fd < 0 || dup2(c->file_fd, 2) < 0)
        return -1;
    return 0;
}

size_t tu_stderr_end(tu_capture *c, char *buf, size_t n)
{
    fflush(stderr);
    if (c->saved_fd >= 0) {
        dup2(c->saved_fd, 2);
        close(c->saved_fd);
    }
    if (c->file_fd < 0)
        return 0;
    off_t len = lseek(c->file_fd, 0, SEEK_END);
    if (buf && n > 0) {
        ssize_t r = pread(c->file_fd, buf, n - 1, 0);
        buf[r > 0 ? r : 0] = '\0';
    }
    close(c->file_fd);
    return len > 0 ? (size_t)len : 0;
}

int tu_f32_same(float a, float b)
{
    uint32_t x, y;
    memcpy(&x, &a, sizeof x);
    memcpy(&y, &b, sizeof y);
    return x == y;
}

void tu_assert_f32_bits(const float *a, const float *b, size_t n, const char *what)
{
    if (!a || !b) {
        if (a != b)
            fail_msg("%s: one array is NULL, the other is not", what);
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (!tu_f32_same(a[i], b[i])) {
            uint32_t x, y;
            memcpy(&x, &a[i], sizeof x);
            memcpy(&y, &b[i], sizeof y);
            fail_msg("%s[%zu]: bits 0x%08x (%a) vs 0x%08x (%a)", what, i, (unsigned)x,
                     (double)a[i], (unsigned)y, (double)b[i]);
        }
}

int tu_sh(const char *fmt, ...)
{
    char cmd[16384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

char *tu_slurp(const char *path)
{
    size_t n = 0;
    unsigned char *b = tu_read_file(path, &n);
    if (!b)
        return NULL;
    char *s = realloc(b, n + 1);
    if (!s) {
        free(b);
        return NULL;
    }
    s[n] = '\0';
    return s;
}

int tu_cli_path(char *buf, size_t n)
{
    const char *env = getenv("LRP_TEST_CLI");
    if (env && *env) {
        snprintf(buf, n, "%s", env);
    } else {
        char self[4096];
        if (tu_exe_dir(self, sizeof self, 2) != 0)
            return -1;
        snprintf(buf, n, "%s/lrp-oracle", self);
    }
    return access(buf, X_OK) == 0 ? 0 : -1;
}

static void read_into(const char *path, char *buf, size_t n)
{
    if (!buf || !n)
        return;
    FILE *f = fopen(path, "r");
    size_t m = f ? fread(buf, 1, n - 1, f) : 0;
    buf[m] = '\0';
    if (f)
        fclose(f);
}

int tu_run_cli(const char *dir, const char *pre, const char *cli, const char *args, char *out,
               size_t on, char *err, size_t en)
{
    char fo[4200], fe[4200];
    snprintf(fo, sizeof fo, "%s/.stdout", dir);
    snprintf(fe, sizeof fe, "%s/.stderr", dir);
    int rc = tu_sh("cd '%s' && %s '%s' %s >'%s' 2>'%s' </dev/null", dir, pre ? pre : "", cli, args,
                   fo, fe);
    read_into(fo, out, on);
    read_into(fe, err, en);
    return rc;
}

void tu_expect_infer_error(struct lrp_net *net, const char *want)
{
    lrp_err e = {0};
    lrp_status st = lrp_net_infer(net, "f.h5", &e);
    assert_int_not_equal(st, LRP_OK);
    if (!strstr(e.msg, want) || !strstr(e.msg, "f.h5") || strchr(e.msg, '\n'))
        fail_msg("message '%s' lacks '%s' or the file, or is not one line", e.msg, want);
}

struct lrp_net *tu_fixture(const char *name)
{
    lrp_net *net = NULL;
    lrp_err e = {0};
    const lrp_fixture_def *d = lrp_fixture_lookup(name);
    if (!d)
        fail_msg("no suite fixture '%s'", name);
    if (d->build(&net, LRP_FIXTURE_SEED, &e) != LRP_OK)
        fail_msg("%s: %s", name, e.msg);
    return net;
}

int tu_build_reshape(lrp_builder *b, const char *name, int in, int rank, int64_t d0, int64_t d1,
                     int64_t d2)
{
    lrp_err e = {0};
    int li = lrp_net_add(b->net, LRP_LAYER_RESHAPE, name, &e);
    if (li < 0)
        fail_msg("%s", e.msg);
    lrp_layer *l = &b->net->layers[li];
    l->n_in = 1;
    l->in[0] = in;
    l->target.rank = rank;
    l->target.d[0] = d0;
    l->target.d[1] = d1;
    l->target.d[2] = d2;
    if (lrp_layer_infer(b->net, li, "<test>", &e))
        fail_msg("%s", e.msg);
    return li;
}

lrp_run_report tu_judge(const char *label, lrp_net *net, const char *source)
{
    return tu_judge_den(label, net, source, 0);
}

lrp_run_report tu_judge_den(const char *label, lrp_net *net, const char *source,
                            int recomputed_den)
{
    lrp_check_opts o;
    lrp_check_opts_default(&o);
    o.source = source;
    o.label = label;
    o.proof_extra = 0;
    o.recomputed_den = recomputed_den;
    lrp_run_report rep;
    lrp_err e = {0};
    if (lrp_check(&rep, net, &o, &e) != LRP_OK)
        fail_msg("%s", e.msg);
    return rep;
}

void tu_sim_init(tu_sim *s, int R, int fail_rank, int fail_at)
{
    memset(s, 0, sizeof *s);
    if (R < 1 || R > TU_SIM_MAXR)
        fail_msg("tu_sim_init: %d ranks (1 to %d)", R, TU_SIM_MAXR);
    s->R = R;
    s->fail_rank = fail_rank;
    s->fail_at = fail_at;
    pthread_barrier_init(&s->bar, NULL, (unsigned)R);
}

void tu_sim_destroy(tu_sim *s) { pthread_barrier_destroy(&s->bar); }

int tu_sim_exchange(tu_sim *s, int q, const void *buf, size_t n, const char *fail, void **out,
                    size_t *total, int every)
{
    if (s->seen_fail[q])
        s->after_fail[q]++;
    int call = ++s->calls[q];
    s->failed[q] = fail != NULL || (q == s->fail_rank && call == s->fail_at);
    s->buf[q] = s->failed[q] ? NULL : buf;
    s->n[q] = s->failed[q] ? 0 : n;
    pthread_barrier_wait(&s->bar);
    int any = 0;
    size_t sum = 0;
    for (int r = 0; r < s->R; r++) {
        any |= s->failed[r];
        sum += s->n[r];
    }
    *out = NULL;
    *total = 0;
    if (!any && (every || q == 0)) {
        unsigned char *d = malloc(sum ? sum : 1);
        if (!d)
            fail_msg("tu_sim_exchange: out of memory for %zu bytes", sum);
        size_t at = 0;
        for (int r = 0; r < s->R; r++) {
            if (s->n[r])
                memcpy(d + at, s->buf[r], s->n[r]);
            at += s->n[r];
        }
        *out = d;
        *total = sum;
    }
    /* every rank has copied before any buffer is reused */
    pthread_barrier_wait(&s->bar);
    if (any)
        s->seen_fail[q] = 1;
    return any ? -1 : 0;
}

/* ---- a flaky engine (testutil.h) ---- */

tu_lin_bwd_fn tu_flaky_real;
int tu_flaky_dense;
_Thread_local int tu_flaky_calls;

void tu_flaky_lin_bwd(void *ctx, void *out, const lrp_lin *L, const void *x,
                      const lrp_bwd_part *parts, int np, int64_t batch)
{
    tu_flaky_real(ctx, out, L, x, parts, np, batch);
    if ((tu_flaky_calls++ / tu_flaky_dense) % 2 == 1)
        for (int64_t i = 0; i < batch * L->n_in; i++)
            ((float *)out)[i] *= 1.00390625f;
}

void tu_flaky_arm(const lrp_net *net, tu_lin_bwd_fn real)
{
    tu_flaky_dense = 0;
    for (int i = 0; i < net->n_layers; i++)
        tu_flaky_dense += net->layers[i].kind == LRP_LAYER_DENSE;
    assert_true(tu_flaky_dense > 0);
    tu_flaky_real = real;
}

/* every token-wise kind divided by rows of tokens, nothing run whole: a
 * token Input of 7 ids, Embedding, Position (each rank's rows of the
 * table start at its block's first token), LayerNorm, a gated MLP (Dense,
 * GELU, Dense, Mul of inputs split alike), a residual Add, Flatten and a
 * Dense head; batch 2, EpsilonPlus.  7 tokens: R = 9 leaves two ranks
 * without one. */
lrp_net *tu_build_tokens(void)
{
    lrp_net *net = lrp_net_new();
    assert_non_null(net);
    lrp_err e = {0};
    lrp_builder b;
    lrp_build_begin(&b, net, 0x70c5u, &e);
    int t = lrp_build_token_input(&b, "tokens", 7);
    int x = lrp_build_embedding(&b, "embed", t, 11, 6);
    x = lrp_build_position(&b, "pos", x, 9);
    int n = lrp_build_layernorm(&b, "ln", x, 1e-5f, 1);
    int g = lrp_build_dense(&b, "up", n, 8, 1);
    g = lrp_build_act(&b, "gelu", g, LRP_LAYER_GELU, 0);
    int v = lrp_build_dense(&b, "val", n, 8, 1);
    int m = lrp_build_mul(&b, "gate", g, v);
    m = lrp_build_dense(&b, "down", m, 6, 1);
    int ad[2] = {x, m};
    int a = lrp_build_add(&b, "res", 2, ad);
    a = lrp_build_flatten(&b, "flat", a);
    lrp_build_dense(&b, "head", a, 4, 1);
    if (lrp_build_finish(&b, 2))
        fail_msg("build: %s", e.msg);
    lrp_composite_params cp = lrp_composite_params_default();
    lrp_composite_apply(net, LRP_COMPOSITE_EPSILON_PLUS, &cp);
    return net;
}
