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

/* The installed data directory's SUB ("golden", "fixtures") into buf:
 * LRP_DATADIR/SUB when set, else EXE/../../share/lrp-oracle/SUB when it
 * exists (tools/datadir.c).  Returns 1 when buf holds a path, else 0 (use
 * the source-tree default). */
int cli_data_path(char *buf, size_t n, const char *sub);

/* Subcommands (tools/cmd_*.c). */
int cmd_check(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_trace(int argc, char **argv);
int cmd_reference(int argc, char **argv);
int cmd_fast(int argc, char **argv);
int cmd_import_keras(int argc, char **argv);
int cmd_suite(int argc, char **argv);
int cmd_golden(int argc, char **argv);
int cmd_heatmap(int argc, char **argv);

/* Writes n bytes to path through core/safeout.c; -1 on success, else the
 * exit code (message printed). */
int cli_write_bytes(const char *path, const void *data, size_t n);
/* Heatmap PNGs of run r (its layer reports hold cells) into dir, for the
 * input (layers NULL), every tensor ("all") or the named ones, the first
 * max_samples samples.  With written != NULL the paths are collected there
 * (malloc'ed) instead of printed.  -1 on success, else the exit code. */
struct lrp_run_report;
int cli_heatmaps(const char *dir, const char *fixture_path, const struct lrp_run_report *r,
                 const char *layers, int max_samples, char ***written, int *n_written);

/* Convention profiles (tools/profiles.c): rewrites the conventions of the
 * net's rule assignment the way library NAME computes; -1 if unknown. */
/* stated: the rules were stated by the trace itself (compare without rule
 * options): then the profile only adds its quirk flags and never changes a
 * stated rule's eps, convention or BatchNorm treatment. */
int cli_profile_apply(lrp_net *net, const char *name, int stated);
const char *cli_profile_names(void);

/* Runs fn(ctx) in a forked child with CPU/memory/wall limits (env
 * LRP_SANDBOX_CPU, LRP_SANDBOX_MEM_MB, LRP_SANDBOX_WALL; LRP_NO_SANDBOX=1
 * runs in-process).  A crash or timeout becomes LRP_E_FORMAT "corrupt or
 * unsupported"; the child's own error message is passed through. */
lrp_status cli_sandboxed(const char *path, lrp_status (*fn)(void *ctx, lrp_err *err), void *ctx,
                         lrp_err *err);
/* Reads a fixture: parsed and validated in the sandboxed child, which
 * hands the network to this process through a pipe (checked again here:
 * the stream is as untrusted as the file).  LRP_NO_SANDBOX=1 parses
 * in-process. */
lrp_status cli_load(lrp_net **out, const char *path, lrp_err *err);
/* What cli_load_ex hands over: the structure, relevance_out and target
 * always; with CLI_LOAD_ARRAYS also the parameters, the input, the z^B
 * bounds and the traces' arrays (without: those pointers NULL, for
 * `info`).  Each trace's number of relevance layers goes to *trace_layers
 * (malloc'ed, n_traces entries; NULL: not wanted). */
#define CLI_LOAD_ARRAYS 1u
lrp_status cli_load_ex(lrp_net **out, const char *path, unsigned what, int **trace_layers,
                       lrp_err *err);
/* The stream itself (tests): the child's net to fd -- its arrays (the
 * real child sends them while it parses), then the structure; free_sent:
 * the arrays are freed as they are sent -- and the parent's side, with a
 * wall-clock deadline (NULL: none; *timed_out set when it passed).  first:
 * the stream's first byte when already read, else -1.  An error report of
 * the child inside the stream goes to msg (NULL: none expected). */
lrp_status cli_wire_send(int fd, lrp_net *net, unsigned what, int free_sent, lrp_err *err);
/* Datasets stored plainly are not copied through the pipe: the child
 * sends where their values lie in the file (lrp_h5_raw), and the parent
 * reads them itself from `fd` (the file, opened here before the fork) once
 * the child is gone -- libhdf5 still never runs in the parent; the bytes
 * are checked against the checksums the file stores.  cli_wire_recv leaves
 * those arrays NULL and lists them in a cli_raw; cli_raw_fill reads them
 * into the net; cli_raw_free discards the list. */
struct cli_raw_item;
typedef struct cli_raw {
    int fd;        /* the file the child parsed, or -1: no raw arrays accepted */
    uint64_t size; /* its size when opened */
    struct cli_raw_item *item;
    size_t n, cap;
} cli_raw;
lrp_status cli_raw_fill(cli_raw *raw, const char *path, lrp_err *err);
void cli_raw_free(cli_raw *raw);
struct timespec;
lrp_status cli_wire_recv(int fd, int first, const struct timespec *deadline, int *timed_out,
                         unsigned what, const char *path, lrp_net **out, int **trace_layers,
                         cli_raw *raw, char *msg, size_t msgcap, lrp_err *err);

/* Phase timing for benchmarks (bench/bench_process.sh): with LRP_TIMING set
 * in the environment, prints "lrp-oracle: timing: WHAT S s (T s)" on stderr,
 * S the wall time since the previous call, T since the first; else nothing. */
void cli_phase(const char *what);

/* Executes this command again with glibc's malloc tunable for transparent
 * huge pages set, where that is safe (tools/hugepages.c); returns when it
 * does not. */
void cli_hugepages_reexec(char **argv);

/* Resource limits (tools/limits.c, docs/RELIABILITY.md section 3): the
 * work a command is about to do is estimated from the graph and refused
 * above LRP_SANDBOX_MEM_MB / LRP_LIMIT_CPU; cli_limits_apply puts this
 * process under the same limits (first call wins; cli_load calls it). */
typedef enum cli_work { CLI_WORK_JUDGE, CLI_WORK_REFERENCE, CLI_WORK_FAST } cli_work;
typedef struct cli_estimate_t {
    double params, cells, macs; /* cells and MACs include the batch */
    double mem_mb, cpu_s;
} cli_estimate_t;
/* A positive whole number from the environment variable, else dflt. */
long cli_env_long(const char *name, long dflt);
/* 1 when name is one of the comma-separated list. */
int cli_in_list(const char *list, const char *name);
long cli_limit_mem_mb(void);
long cli_limit_cpu_s(void);
void cli_estimate(cli_estimate_t *e, const lrp_net *net, cli_work work, int prec, int proof);
lrp_status cli_limits_check(const lrp_net *net, const char *path, const char *cmd,
                            cli_work work, int prec, int proof, lrp_err *err);
void cli_limits_apply(int threads);
/* The fd the limits' signal handlers write their line to (stderr; an MPI
 * rank > 0 sets its real stderr, tools/cli_mpi.c). */
extern int cli_err_fd;
/* The next cli_load's sandboxed parse also checks the limits for this work. */
void cli_load_expect(const char *cmd, cli_work work, int prec, int proof);

/* Rule-selection options shared by reference/fast/check/compare/trace. */
typedef struct cli_rules {
    int has_composite, has_rule, has_stab, has_eps, has_gamma, has_alpha, has_beta, has_box;
    lrp_composite_id composite;
    lrp_rule_id rule;
    lrp_stab_id stab;
    float eps, gamma, alpha, beta, low, high;
    int no_bias;
    unsigned flags;
    int maxpool_eps; /* --flag captum_maxpool_eps: wta max-pools -> epsilon */
    int bn_mode; /* 0 file's, 1 explicit, 2 fine, 3 canonize */
    int ln_mode; /* LayerNorm: 0 file's, 1 ln_linear, 2 ln_fine, 3 identity */
    int prec, threads;
} cli_rules;

void cli_rules_init(cli_rules *o);
/* Handles one long option (name without dashes); returns 0 or EXIT_USAGE. */
int cli_rules_option(cli_rules *o, const char *opt, const char *arg, const char *cmd);
lrp_status cli_rules_apply(lrp_net *net, const cli_rules *o, const char *where, lrp_err *err);
void cli_rules_describe(char *buf, size_t n, const lrp_net *net, const cli_rules *o);

/* ---- progress of check / compare (tools/progress.c) ---- */
struct lrp_check_opts;
typedef struct cli_progress {
    int mode;   /* 0 silent, 1 a line rewritten on the terminal, 2 log lines */
    int asked;  /* --progress given */
    const char *file;
    int file_k, n_files, prec;
    double t0, last;
    int seq[8], n_phases, k, phase;
    /* the net of the run last seen: compared, never read (under the layer
     * split it is a run's share, freed when the run ends); what the line
     * shows of it is copied: its layer count, costs and current name */
    const lrp_net *net;
    int nl;
    double *cum;  /* per-layer forward cost, cumulative (nl + 1) */
    double *cumb; /* the backward's, in the same allocation */
    char lname[64];
    int li, bwd, in_layers, shown;
    char step[96]; /* what runs after the layers (cli_progress_step); "" none */
} cli_progress;
/* asked: --progress.  Silent unless stderr is a terminal or asked. */
void cli_progress_init(cli_progress *p, int asked);
/* Installs the callbacks in co (and the pipeline's per-layer hook) for one
 * file's run; compare: the run judges a trace (no float32 phases). */
void cli_progress_begin(cli_progress *p, struct lrp_check_opts *co, const char *file, int file_k,
                        int n_files, int compare);
/* The same line for one engine run of `reference` (reference 1) or `fast`
 * (0) on FILE: one phase, per layer; then cli_progress_step names what
 * follows the run (the trace's gathering and writing). */
void cli_progress_begin_run(cli_progress *p, const char *file, int reference, int prec);
void cli_progress_step(cli_progress *p, const char *what);
/* Erases the line on the terminal, if one shows, before an error line
 * (cli_fail and cli_usage_error call it); the next update redraws it. */
void cli_progress_erase(void);
/* Erases the line (terminal) or notes the end (log); removes the hook. */
void cli_progress_clear(cli_progress *p);

/* getopt_long entries for the shared options; val = 1000 + index. */
#define CLI_RULE_OPTIONS \
    {"composite", required_argument, 0, 1000}, \
    {"rule", required_argument, 0, 1001}, \
    {"convention", required_argument, 0, 1002}, \
    {"eps", required_argument, 0, 1003}, \
    {"gamma", required_argument, 0, 1004}, \
    {"alpha", required_argument, 0, 1005}, \
    {"beta", required_argument, 0, 1006}, \
    {"box", required_argument, 0, 1007}, \
    {"no-bias", no_argument, 0, 1008}, \
    {"flag", required_argument, 0, 1009}, \
    {"bn", required_argument, 0, 1010}, \
    {"prec", required_argument, 0, 1011}, \
    {"threads", required_argument, 0, 1012}, \
    {"ln", required_argument, 0, 1013}

#define CLI_RULE_HELP \
    "rule selection (default: the fixture's own assignment):\n" \
    "  --composite NAME   EpsilonPlus, EpsilonPlusFlat, EpsilonAlpha2Beta1[Flat],\n" \
    "                     EpsilonGammaBox, SequentialPresetA, SequentialPresetB\n" \
    "  --rule NAME        one rule on every Dense/Conv2D: lrp0 epsilon gamma alphabeta\n" \
    "                     alpha1beta0 alpha2beta1 zplus wsquare flat zbox\n" \
    "  --convention NAME  stabilizer: sign0_pos signbit sign0_zero zero_only skip_zero\n" \
    "                     positive (docs/SPEC.md section 5)\n" \
    "  --eps X --gamma X --alpha X --beta X --box LOW,HIGH\n" \
    "  --no-bias          no bias in the Dense/Conv2D denominators (a BatchNorm keeps\n" \
    "                     its shift)\n" \
    "  --flag NAME        Dense/Conv2D: gamma_generalized zennit_gamma_drop0\n" \
    "                     innvestigate_ab_fullbias captum_a1b0 captum_gamma_fullbias;\n" \
    "                     MaxPool2D: wta_split_ties, or captum_maxpool_eps (rule epsilon\n" \
    "                     on every max-pool, as Captum: R_i = a_i R_j / stab(a_i))\n" \
    "  --bn MODE          explicit | fine (R_x + R_mu + R_beta) | canonize | pass (R unchanged)\n" \
    "  --ln MODE          LayerNorm: linear (ln_linear) | fine (ln_fine: R_x + ln_mean) |\n" \
    "                     identity (R unchanged)\n" \
    "  --prec P           reference precision in bits (default 128)\n" \
    "  --threads N        threads (default 2)\n"

#endif
