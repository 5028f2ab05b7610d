/*
 * test_report.c -- what people read and look at (issue 16): JUnit valid
 * against the Jenkins JUnit schema (xmllint), errors and good files side by
 * side, JSON branch sums and BatchNorm identities, PNG heatmaps (decoded
 * with libpng and looked at pixel by pixel), and the HTML report rendered
 * by headless Chromium (screenshot and DOM).
 *
 * The CLI is BUILD/lrp-oracle; fixtures are written by the generator.  The
 * Chromium test is skipped (counted by scripts/check.sh) when chromium is
 * absent, unless LRP_REQUIRE_FULL=1.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <png.h>

#include "fixtures.h"
#include "lrp.h"
#include "util/testutil.h"

static char cli[4200], srcdir[4096];
static char *tmp;

static void gen(const char *name)
{
    const lrp_fixture_def *d = lrp_fixture_lookup(name);
    assert_non_null(d);
    lrp_net *net = NULL;
    lrp_err e = {0};
    assert_int_equal(d->build(&net, LRP_FIXTURE_SEED, &e), LRP_OK);
    char p[4300];
    snprintf(p, sizeof p, "%s/%s.h5", tmp, name);
    assert_int_equal(lrp_fixture_write(net, p, &e), LRP_OK);
    lrp_net_free(net);
}

static int setup(void **state)
{
    (void)state;
    char self[4096];
    if (tu_exe_dir(self, sizeof self, 2) != 0)
        return -1;
    snprintf(cli, sizeof cli, "%s/lrp-oracle", self);
    if (!getcwd(srcdir, sizeof srcdir))
        return -1;
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/tests/junit-jenkins.xsd", srcdir);
    if (access(probe, R_OK) != 0) {
        fprintf(stderr, "test_report: run from the source tree (no %s)\n", probe);
        return -1;
    }
    tmp = tu_mkdtemp("report");
    return tmp ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    if (tmp)
        tu_sh("rm -rf '%s'", tmp);
    free(tmp);
    return 0;
}

/* ---- JUnit, JSON, errors beside good files ---- */

static void test_junit_schema_and_errors(void **state)
{
    (void)state;
    lrp_err e2 = {0};
    gen("cnn");
    char bad[4300];
    snprintf(bad, sizeof bad, "%s/bad.h5", tmp);
    assert_int_equal(tu_write_file(bad, "not hdf5\n", 9), 0);
    /* a bad file among good ones: exit 2, and the good one is still
     * judged and reported */
    int rc = tu_sh("cd '%s' && '%s' check cnn.h5 bad.h5 --junit r.xml --json r.json >out.txt 2>err.txt",
                tmp, cli);
    assert_int_equal(rc, 2);
    rc = tu_sh("xmllint --noout --schema '%s/tests/junit-jenkins.xsd' '%s/r.xml' 2>'%s/xmllint.txt'",
            srcdir, tmp, tmp);
    if (rc != 0) {
        char p[4300];
        snprintf(p, sizeof p, "%s/xmllint.txt", tmp);
        char *m = tu_slurp(p);
        fail_msg("JUnit output is not valid against the Jenkins schema: %s", m ? m : "?");
    }
    char p[4300];
    snprintf(p, sizeof p, "%s/r.xml", tmp);
    char *x = tu_slurp(p);
    assert_non_null(x);
    assert_non_null(strstr(x, "errors=\"1\""));
    assert_non_null(strstr(x, "<error "));
    assert_non_null(strstr(x, "bad.h5: /: not an HDF5 file"));
    /* testcases are named by the layer that computed the relevance */
    assert_non_null(strstr(x, "name=\"by &apos;conv1&apos;: input\""));
    free(x);

    snprintf(p, sizeof p, "%s/r.json", tmp);
    json_error_t je;
    json_t *root = json_load_file(p, 0, &je);
    assert_non_null(root);
    assert_int_equal(json_array_size(json_object_get(root, "runs")), 1);
    json_t *errs = json_object_get(root, "errors");
    assert_int_equal(json_array_size(errs), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(errs, 0), "file")),
                        "bad.h5");
    assert_true(json_is_false(json_object_get(root, "ok")));
    json_t *layers = json_object_get(json_array_get(json_object_get(root, "runs"), 0), "layers");
    int saw_add = 0, saw_bn = 0;
    for (size_t i = 0; i < json_array_size(layers); i++) {
        json_t *l = json_array_get(layers, i);
        json_t *c = json_object_get(l, "conservation");
        const char *kind = json_string_value(json_object_get(l, "kind"));
        if (!c)
            continue;
        double out = json_real_value(json_object_get(c, "sum_out_ref"));
        json_t *br = json_object_get(c, "branches");
        if (!strcmp(kind, "Add")) {
            /* lrp0 on an Add conserves: the branches sum to the output.
             * The sums are of reference values rounded to double and added
             * in double: a few units of 2^-53 of the magnitudes, far below
             * 1e-12 at these sizes (|R| < 10, a few thousand cells). */
            saw_add = 1;
            assert_int_equal(json_array_size(br), 2);
            /* branches + what the rule absorbed (the stabilizer) = output */
            double s = 0;
            for (size_t k = 0; k < 2; k++)
                s += json_real_value(json_object_get(json_array_get(br, k), "sum_ref"));
            const char *key;
            json_t *v;
            json_object_foreach(json_object_get(c, "absorbed"), key, v) s += json_real_value(v);
            assert_true(fabs(s - out) <= 1e-12 * (1 + fabs(out)));
            /* two genuinely different branches (not one copied twice) */
            assert_true(json_real_value(json_object_get(json_array_get(br, 0), "sum_ref")) !=
                        json_real_value(json_object_get(json_array_get(br, 1), "sum_ref")));
        }
        json_t *ch = json_object_get(c, "bn_channels");
        if (!strcmp(kind, "BatchNorm")) {
            saw_bn = 1;
            assert_true(json_array_size(ch) > 1);
            double tin = 0, tabs = 0, tout = 0;
            for (size_t k = 0; k < json_array_size(ch); k++) {
                json_t *cc = json_array_get(ch, k);
                double a = json_real_value(json_object_get(cc, "sum_in_ref"));
                double b = json_real_value(json_object_get(cc, "absorbed_ref"));
                double o = json_real_value(json_object_get(cc, "sum_out_ref"));
                /* the identity per channel (same double-sum tolerance) */
                assert_true(fabs(a + b - o) <= 1e-12 * (1 + fabs(a) + fabs(b)));
                tin += a;
                tabs += b;
                tout += o;
            }
            /* the channels add up to the layer's totals */
            assert_true(fabs(tout - out) <= 1e-12 * (1 + fabs(out)));
            assert_true(fabs(tin - json_real_value(json_object_get(c, "sum_in_ref"))) <=
                        1e-12 * (1 + fabs(tin)));
            (void)tabs;
        }
    }
    assert_true(saw_add && saw_bn);
    json_decref(root);

    /* a trace whose name has dots (a library version): the classname must
     * still have none (Jenkins would read packages into it) */
    {
        lrp_net *net = NULL;
        char fx[4300], fo[4300];
        snprintf(fx, sizeof fx, "%s/cnn.h5", tmp);
        snprintf(fo, sizeof fo, "%s/cnn_v.h5", tmp);
        assert_int_equal(lrp_fixture_read(&net, fx, &e2), LRP_OK);
        assert_int_equal(lrp_run(NULL, net, LRP_ENGINE_FAST, NULL, &e2), LRP_OK);
        snprintf(net->traces[lrp_net_trace_find(net, "fastpath")].source, LRP_NAME_MAX,
                 "mylib.v1.2");
        assert_int_equal(lrp_fixture_write(net, fo, &e2), LRP_OK);
        lrp_net_free(net);
        assert_int_equal(tu_sh("cd '%s' && '%s' compare cnn_v.h5 --source mylib.v1.2 --junit v.xml "
                            ">/dev/null",
                            tmp, cli),
                         0);
        assert_int_equal(tu_sh("xmllint --noout --schema '%s/tests/junit-jenkins.xsd' '%s/v.xml' "
                            "2>/dev/null",
                            srcdir, tmp),
                         0);
    }

    /* the suite the same way: a damaged fixture file in DIR is one error
     * entry, the runs of the other fixtures are made and reported */
    assert_int_equal(tu_sh("mkdir -p '%s/sdir' && cp '%s/bad.h5' '%s/sdir/cnn.h5'", tmp, tmp, tmp),
                     0);
    rc = tu_sh("cd '%s' && '%s' suite --dir sdir --only mlp,cnn --junit s.xml --json s.json "
            ">s.txt 2>s.err",
            tmp, cli);
    assert_int_equal(rc, 2);
    assert_int_equal(tu_sh("xmllint --noout --schema '%s/tests/junit-jenkins.xsd' '%s/s.xml' "
                        "2>/dev/null",
                        srcdir, tmp),
                     0);
    snprintf(p, sizeof p, "%s/s.json", tmp);
    root = json_load_file(p, 0, &je);
    assert_non_null(root);
    json_t *sr = json_object_get(root, "runs");
    assert_true(json_array_size(sr) >= 2); /* mlp's runs */
    for (size_t i = 0; i < json_array_size(sr); i++)
        assert_non_null(strstr(json_string_value(json_object_get(json_array_get(sr, i), "fixture")),
                               "mlp.h5"));
    assert_int_equal(json_array_size(json_object_get(root, "errors")), 1);
    json_decref(root);
}

/* ---- text reports: widths, row names, legend ---- */

/* The widest line of a file, in bytes (the reports are ASCII without
 * colour when not on a terminal). */
static int widest(const char *name)
{
    char p[4300];
    snprintf(p, sizeof p, "%s/%s", tmp, name);
    char *t = tu_slurp(p);
    assert_non_null(t);
    int w = 0, cur = 0;
    for (const char *q = t; *q; q++) {
        if (*q == '\n') {
            w = cur > w ? cur : w;
            cur = 0;
        } else {
            cur++;
        }
    }
    free(t);
    return cur > w ? cur : w;
}

static void test_text_reports(void **state)
{
    (void)state;
    gen("cnn");
    gen("vgg_dead");
    assert_int_equal(tu_sh("cd '%s' && '%s' check cnn.h5 --rule epsilon --eps 1e-7 --convention "
                        "sign0_zero vgg_dead.h5 >c.txt 2>&1",
                        tmp, cli),
                     1);
    assert_true(widest("c.txt") <= 100);
    assert_int_equal(tu_sh("cd '%s' && '%s' suite --dir . --only vgg_dead --no-color >s.txt 2>&1", tmp,
                        cli),
                     0);
    assert_true(widest("s.txt") <= 100);
    assert_int_equal(tu_sh("cd '%s' && '%s' info cnn.h5 vgg_dead.h5 >i.txt 2>&1", tmp, cli), 0);
    assert_true(widest("i.txt") <= 100);
    char p[4300];
    snprintf(p, sizeof p, "%s/c.txt", tmp);
    char *c = tu_slurp(p);
    assert_non_null(c);
    /* rows are named by the layer that computed the relevance first: the
     * input's relevance by conv1, the output's is where the run starts */
    assert_non_null(strstr(c, "  computed by    tensor "));
    assert_non_null(strstr(c, "\n  conv1          input "));
    assert_non_null(strstr(c, "\n  (output)       fc "));
    assert_null(strstr(c, "legend"));
    free(c);
    /* --wide: the kind column and the Add's branches; --explain: legend */
    assert_int_equal(tu_sh("cd '%s' && '%s' check cnn.h5 --wide --explain >w.txt 2>&1", tmp, cli), 0);
    snprintf(p, sizeof p, "%s/w.txt", tmp);
    char *w = tu_slurp(p);
    assert_non_null(w);
    assert_non_null(strstr(w, " kind "));
    assert_non_null(strstr(w, "Conv2D"));
    assert_non_null(strstr(w, "layer 'add' passes to branch 'conv3'"));
    assert_non_null(strstr(w, "legend"));
    assert_non_null(strstr(w, "ill%"));
    free(w);
    /* golden --html: its table as a page */
    assert_int_equal(tu_sh("cd '%s' && '%s' golden --dir '%s/fixtures/golden' --html gold >/dev/null",
                        tmp, cli, srcdir),
                     0);
    snprintf(p, sizeof p, "%s/gold/index.html", tmp);
    char *g = tu_slurp(p);
    assert_non_null(g);
    assert_non_null(strstr(g, "0 not as committed"));
    assert_non_null(strstr(g, "<td class=\"pass\">PASS</td>"));
    free(g);
    /* trace: per-branch sums and per-channel BatchNorm identities */
    assert_int_equal(tu_sh("cd '%s' && '%s' trace cnn.h5 >t.txt 2>&1", tmp, cli), 0);
    snprintf(p, sizeof p, "%s/t.txt", tmp);
    char *t = tu_slurp(p);
    assert_non_null(t);
    assert_non_null(strstr(t, "branch to 'conv3': sum R ref "));
    assert_non_null(strstr(t, "branch to 'relu1': sum R ref "));
    assert_non_null(strstr(t, "per channel (reference"));
    free(t);
}

/* ---- heatmaps ---- */

typedef struct pixels {
    int w, h;
    uint8_t *rgb;
} pixels;

static int load_png(pixels *px, const char *path)
{
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&im, path))
        return -1;
    im.format = PNG_FORMAT_RGB;
    px->w = (int)im.width;
    px->h = (int)im.height;
    px->rgb = malloc(PNG_IMAGE_SIZE(im));
    if (!px->rgb || !png_image_finish_read(&im, NULL, px->rgb, 0, NULL)) {
        free(px->rgb);
        return -1;
    }
    return 0;
}

/* Pixels of exactly this colour. */
static long count_rgb(const pixels *px, int r, int g, int b)
{
    long n = 0;
    for (long i = 0; i < (long)px->w * px->h; i++)
        n += px->rgb[3 * i] == r && px->rgb[3 * i + 1] == g && px->rgb[3 * i + 2] == b;
    return n;
}

/* Strongly coloured pixels of the blue-white-red map (one channel 255, the
 * others below 128). */
static long count_strong(const pixels *px)
{
    long n = 0;
    for (long i = 0; i < (long)px->w * px->h; i++) {
        const uint8_t *p = px->rgb + 3 * i;
        n += (p[0] == 255 && p[1] < 128 && p[2] < 128) || (p[2] == 255 && p[0] < 128 && p[1] < 128);
    }
    return n;
}

/* The legend's swatches: 10 x 10 pixels each (LINE_H - 4 at scale 2). */
#define SWATCH 100

static void test_heatmaps(void **state)
{
    (void)state;
    gen("cnn");
    gen("vgg_dead");
    /* a clean trace and a damaged one (input relevance sign-flipped), made
     * through the public API */
    char fx[4300], fx2[4300];
    snprintf(fx, sizeof fx, "%s/cnn.h5", tmp);
    snprintf(fx2, sizeof fx2, "%s/cnn_flip.h5", tmp);
    lrp_net *net = NULL;
    lrp_err e = {0};
    assert_int_equal(lrp_fixture_read(&net, fx, &e), LRP_OK);
    lrp_trace *t = NULL;
    assert_int_equal(lrp_run(&t, net, LRP_ENGINE_FAST, NULL, &e), LRP_OK);
    lrp_trace *f = lrp_net_trace_add(net, "flipped", &e);
    assert_non_null(f);
    f->precision = 24;
    t = &net->traces[lrp_net_trace_find(net, "fastpath")];
    int64_t n = lrp_shape_numel(&net->layers[0].shape) * net->batch;
    for (int i = 0; i < net->n_layers; i++) {
        int64_t m = lrp_shape_numel(&net->layers[i].shape) * net->batch;
        f->relevance[i] = malloc((size_t)m * sizeof(float));
        assert_non_null(f->relevance[i]);
        memcpy(f->relevance[i], t->relevance[i], (size_t)m * sizeof(float));
    }
    for (int64_t k = 0; k < n; k++)
        f->relevance[0][k] = -f->relevance[0][k];
    if (lrp_fixture_write(net, fx2, &e) != LRP_OK)
        fail_msg("%s", e.msg);
    lrp_net_free(net);

    assert_int_equal(tu_sh("cd '%s' && '%s' heatmap cnn.h5 --out hm --samples 1 >/dev/null", tmp, cli),
                     0);
    assert_int_equal(tu_sh("cd '%s' && '%s' heatmap cnn_flip.h5 --source flipped --out hm --samples 1 "
                        ">/dev/null",
                        tmp, cli),
                     1); /* the damaged trace fails */
    assert_int_equal(tu_sh("cd '%s' && '%s' heatmap --rule epsilon --eps 1e-7 --convention sign0_zero "
                        "vgg_dead.h5 --out hm --samples 1 --layers flatten,input >/dev/null",
                        tmp, cli),
                     1); /* NONFINITE */
    char p[4300];
    pixels clean, flip, dead, deadin;
    snprintf(p, sizeof p, "%s/hm/cnn_input_s0.png", tmp);
    assert_int_equal(load_png(&clean, p), 0);
    snprintf(p, sizeof p, "%s/hm/cnn_flip_input_s0.png", tmp);
    assert_int_equal(load_png(&flip, p), 0);
    snprintf(p, sizeof p, "%s/hm/vgg_dead_flatten_s0.png", tmp);
    assert_int_equal(load_png(&dead, p), 0);
    snprintf(p, sizeof p, "%s/hm/vgg_dead_input_s0.png", tmp);
    assert_int_equal(load_png(&deadin, p), 0);
    /* no --layers: only the input was drawn */
    snprintf(p, sizeof p, "%s/hm/cnn_conv1_s0.png", tmp);
    assert_int_not_equal(access(p, F_OK), 0);

    /* clean: coloured relevance, nothing marked (black appears only in the
     * legend's NaN swatch, green only in its 'undefined' swatch) */
    assert_true(count_strong(&clean) > 0);
    assert_int_equal(count_rgb(&clean, 0, 0, 0), SWATCH);
    assert_int_equal(count_rgb(&clean, 0, 170, 0), SWATCH);
    /* the sign flip: the error panel, white for the clean trace (errors far
     * below one bound), is saturated now, so many more strong pixels */
    assert_true(count_strong(&flip) > count_strong(&clean) + count_strong(&clean) / 4);
    /* NaN everywhere in the float32 flatten tensor and an undefined
     * reference there: black and green cells beyond the swatches */
    assert_true(count_rgb(&dead, 0, 0, 0) > 10 * SWATCH);
    assert_true(count_rgb(&dead, 0, 170, 0) > 10 * SWATCH);
    /* at the input the reference is defined (no green cells) but float32
     * carried the NaN down (black cells) */
    assert_int_equal(count_rgb(&deadin, 0, 170, 0), SWATCH);
    assert_true(count_rgb(&deadin, 0, 0, 0) > 10 * SWATCH);
    free(clean.rgb);
    free(flip.rgb);
    free(dead.rgb);
    free(deadin.rgb);

    /* bad input: a typo in --layers is an error, not an empty directory */
    assert_int_equal(tu_sh("cd '%s' && '%s' heatmap cnn.h5 --out hm --layers nosuch >/dev/null "
                        "2>/dev/null",
                        tmp, cli),
                     2);
}

/* ---- the HTML report in a real browser ---- */

static int have_chromium(void) { return tu_sh("command -v chromium >/dev/null 2>&1") == 0; }

static void test_html_in_chromium(void **state)
{
    (void)state;
    const char *req = getenv("LRP_REQUIRE_FULL");
    if (!have_chromium()) {
        if (req && !strcmp(req, "1"))
            fail_msg("chromium not installed (full tier: sh scripts/deps.sh full)");
        print_message("SKIPPED: chromium absent (full tier: make check FULL=1 or sh "
                      "scripts/deps.sh full installs it)\n");
        skip();
    }
    gen("cnn");
    gen("vgg_dead");
    int rc = tu_sh("cd '%s' && '%s' check cnn.h5 --rule epsilon --eps 1e-7 --convention sign0_zero "
                "vgg_dead.h5 --html html >/dev/null",
                tmp, cli);
    assert_int_equal(rc, 1); /* the NaN run fails */
    char p[4300];
    snprintf(p, sizeof p, "%s/html/index.html", tmp);
    char *page = tu_slurp(p);
    assert_non_null(page);
    /* self-contained: no scripts, no stylesheets or images from elsewhere */
    assert_null(strstr(page, "<script"));
    assert_null(strstr(page, "<link"));
    assert_null(strstr(page, "src=\"http"));
    assert_null(strstr(page, "url("));
    free(page);
    /* the DOM as Chromium built it */
    rc = tu_sh("cd '%s' && timeout 120 chromium --headless --no-sandbox --disable-gpu "
            "--user-data-dir='%s/chrome' --dump-dom 'file://%s/html/index.html' >dom.html "
            "2>chrome.log",
            tmp, tmp, tmp);
    assert_int_equal(rc, 0);
    snprintf(p, sizeof p, "%s/dom.html", tmp);
    char *dom = tu_slurp(p);
    assert_non_null(dom);
    assert_non_null(strstr(dom, "<table id=\"verdicts\">"));
    int rows = 0;
    for (const char *q = dom; (q = strstr(q, "<tr class=\"run\">")); q++)
        rows++;
    assert_int_equal(rows, 2);
    assert_non_null(strstr(dom, "NONFINITE"));
    assert_non_null(strstr(dom, "first NaN/inf: relevance at the output of"));
    assert_non_null(strstr(dom, "src=\"data:image/png;base64,"));
    assert_non_null(strstr(dom, "id=\"legend\""));
    assert_non_null(strstr(dom, "BN identity per channel"));
    assert_non_null(strstr(dom, "branch to 'conv3'"));
    assert_non_null(strstr(dom, "<svg class=\"plot\""));
    free(dom);
    /* the screenshot, of the page `make run` writes (suite --html) on the
     * suite's reproduction of iNNvestigate #2: the verdict table's coloured
     * verdict cells (backgrounds: NONFINITE #f8d0d0, PASS #d8f5d8,
     * ILL-CONDITIONED #d8eef5) and a heatmap's saturated colours are on
     * the first screen */
    rc = tu_sh("cd '%s' && '%s' suite --dir . --only vgg_dead --html suite >/dev/null", tmp, cli);
    assert_int_equal(rc, 0); /* both runs as documented */
    rc = tu_sh("cd '%s' && timeout 120 chromium --headless --no-sandbox --disable-gpu "
            "--user-data-dir='%s/chrome' --hide-scrollbars --window-size=1200,1000 "
            "--screenshot='%s/shot.png' 'file://%s/suite/index.html' >/dev/null 2>>chrome.log",
            tmp, tmp, tmp, tmp);
    assert_int_equal(rc, 0);
    pixels shot;
    snprintf(p, sizeof p, "%s/shot.png", tmp);
    assert_int_equal(load_png(&shot, p), 0);
    assert_int_equal(shot.w, 1200);
    assert_true(count_rgb(&shot, 0xf8, 0xd0, 0xd0) > 200);
    assert_true(count_rgb(&shot, 0xd8, 0xf5, 0xd8) > 200);
    assert_true(count_rgb(&shot, 0xd8, 0xee, 0xf5) > 200);
    assert_true(count_strong(&shot) > 200);
    free(shot.rgb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_junit_schema_and_errors),
        cmocka_unit_test(test_text_reports),
        cmocka_unit_test(test_heatmaps),
        cmocka_unit_test(test_html_in_chromium),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
