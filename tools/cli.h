/*
 * cli.h -- helpers shared by the `lrp-oracle` subcommands.
 */
#ifndef LRP_CLI_H
#define LRP_CLI_H

#include <stddef.h>

#include "lrp.h"

enum { EXIT_OK = 0, EXIT_CHECK_FAILED = 1, EXIT_USAGE = 2 };

/* Prints "lrp-oracle: MSG" and returns EXIT_USAGE. */
int cli_fail(const lrp_err *e);
/* Prints "lrp-oracle CMD: <fmt with arg> (see ...)" and returns EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, const char *arg);
int cli_parse_float(const char *s, float *out);
/* "epsilon eps=1e-06 sign0_pos" etc. */
void cli_rule_str(char *buf, size_t n, const lrp_rule_spec *r);

#endif
