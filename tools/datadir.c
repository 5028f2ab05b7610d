/*
 * datadir.c -- where an installed lrp-oracle finds its data (the golden
 * traces and the fixture suite) without the source tree.
 *
 * `make install` puts them under PREFIX/share/lrp-oracle/{golden,fixtures}
 * and the program under PREFIX/bin, so the data directory is found relative
 * to the running executable (/proc/self/exe), which keeps an installed
 * tree relocatable (a DESTDIR staging tree works as it will once copied).
 * LRP_DATADIR overrides.  A program run from the build tree
 * (build/lrp-oracle) has no build/../share/lrp-oracle and keeps the
 * source-tree defaults (fixtures/golden, build/fixtures).
 */
#define _GNU_SOURCE
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cli_data_path(char *buf, size_t n, const char *sub)
{
    struct stat sb;
    const char *env = getenv("LRP_DATADIR");
    if (env && *env) {
        if (snprintf(buf, n, "%s/%s", env, sub) >= (int)n)
            return 0;
        return 1; /* explicit: used even when absent, so errors name it */
    }
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0)
        return 0;
    exe[len] = '\0';
    /* PREFIX/bin/lrp-oracle -> PREFIX */
    for (int up = 0; up < 2; up++) {
        char *slash = strrchr(exe, '/');
        if (!slash)
            return 0;
        *slash = '\0';
    }
    if (snprintf(buf, n, "%s/share/lrp-oracle/%s", exe[0] ? exe : "", sub) >= (int)n)
        return 0;
    return stat(buf, &sb) == 0 && S_ISDIR(sb.st_mode);
}
