/*
 * html.h -- the self-contained HTML report of --html DIR (tools/html.c).
 */
#ifndef LRP_HTML_H
#define LRP_HTML_H

#include "cli.h"
#include "report.h"

typedef struct cli_html cli_html;

cli_html *cli_html_new(void);
void cli_html_free(cli_html *h);
/* Adds one run: a row of the verdict table and its section (per-layer
 * table, error plot, conservation, NaN origin, input heatmaps when the
 * report kept cells).  label NULL: the fixture path. */
void cli_html_run(cli_html *h, const lrp_run_report *r, const char *label);
/* Adds a plain table (golden): nrows x ncols cells, row-major; a cell that
 * is a verdict name is coloured. */
void cli_html_table(cli_html *h, const char *caption, int ncols, const char *const *head,
                    const char *const *cells, int nrows);
/* Writes DIR/index.html (DIR created if missing) through core/safeout.c.
 * -1 on success, else the exit code (message printed). */
int cli_html_write(cli_html *h, const char *dir, const char *title);

#endif
