/* docs/example.c -- liblrp from a third-party program: load a fixture, assign
 * a composite, run the MPFR reference and the float32 fast path, judge the
 * fast path's trace, print verdicts and the first NaN origin.  Build:
 *   cc example.c $(pkg-config --cflags --libs lrp) -o example */
#include <lrp.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    lrp_net *net = NULL;
    lrp_judgement *j = NULL;
    lrp_err e = {0};
    lrp_composite_params cp = lrp_composite_params_default();
    if (argc != 2 || lrp_fixture_read(&net, argv[1], &e))
        return fprintf(stderr, "usage: example FIXTURE.h5 (%s)\n", e.msg), 2;
    lrp_composite_apply(net, LRP_COMPOSITE_EPSILON_PLUS, &cp);
    if (lrp_run(NULL, net, LRP_ENGINE_REFERENCE, NULL, &e) ||
        lrp_run(NULL, net, LRP_ENGINE_FAST, NULL, &e) ||
        lrp_judge(&j, net, "fastpath", NULL, &e)) {
        fprintf(stderr, "example: %s\n", e.msg);
        lrp_net_free(net);
        return 2;
    }
    const lrp_trace *ref = &net->traces[lrp_net_trace_find(net, "reference")];
    printf("input relevance of sample 0, cell 0: %.9g\n", (double)ref->relevance[0][0]);
    for (int i = 0; i < lrp_judgement_n_layers(j); i++)
        printf("%-12s %s\n", lrp_judgement_layer_name(j, i),
               lrp_verdict_name(lrp_judgement_layer_verdict(j, i)));
    int layer;
    const char *cause;
    if (lrp_judgement_first_nonfinite(j, &layer, NULL, &cause))
        printf("first NaN/inf at '%s': %s\n", lrp_judgement_layer_name(j, layer), cause);
    printf("verdict: %s\n", lrp_verdict_name(lrp_judgement_verdict(j)));
    int ok = lrp_judgement_ok(j);
    lrp_judgement_free(j);
    lrp_net_free(net);
    return ok ? 0 : 1;
}
