/*
 * seedgen.c -- writes every registered fixture (fixtures/suite.c) into a
 * directory, like `lrp-oracle gen`, for the fuzz seed corpus.  Linked from
 * core/ and fixtures/ only, so the corpus can be made while other modules
 * are being edited.
 */
#include <stdio.h>

#include "fixtures.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: seedgen OUTDIR\n");
        return 2;
    }
    int bad = 0;
    for (int i = 0; i < lrp_fixture_count; i++) {
        const lrp_fixture_def *d = &lrp_fixture_defs[i];
        lrp_net *net = NULL;
        lrp_err e = {0};
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.h5", argv[1], d->name);
        if (d->build(&net, LRP_FIXTURE_SEED, &e) != LRP_OK ||
            lrp_fixture_write(net, path, &e) != LRP_OK) {
            fprintf(stderr, "seedgen: %s: %s\n", d->name, e.msg);
            bad = 1;
        }
        lrp_net_free(net);
    }
    return bad;
}
