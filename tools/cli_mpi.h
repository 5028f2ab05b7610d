/*
 * cli_mpi.h -- the optional MPI layer of the CLI (issue 14 item 3,
 * docs/SCALING.md "MPI").
 *
 * `make MPI=1` compiles tools/cli_mpi.c with -DLRP_MPI and mpicc into
 * build-mpi/; the default build compiles the same file without it, where
 * every function below is the one-rank case (rank 0 of 1, collectives that
 * return their input), so the default binary has no MPI dependency and the
 * commands have one code path.
 *
 * Rules every rank keeps:
 *   - only rank 0 writes user files and stdout (the other ranks' stdout is
 *     /dev/null from cli_mpi_init on, as a safety net);
 *   - an error is one line from the rank that met it: the other ranks'
 *     stderr is held in a temporary file and its last line is replayed by
 *     cli_mpi_agree when that rank is the first to fail;
 *   - every exchange of data is preceded by an agreement (cli_mpi_agree,
 *     or the same carrying the byte counts inside an exchange), so a rank that
 *     failed never leaves the others waiting in a collective; the job's
 *     exit code is that of the lowest failing rank;
 *   - waiting ranks poll for 100 us, then with a sleep instead of
 *     spinning (the machine's cores are the ranks' and their threads').
 */
#ifndef LRP_CLI_MPI_H
#define LRP_CLI_MPI_H

#include <stddef.h>
#include <stdint.h>

#include "lrp.h"

/* Called first thing in main.  Outside mpirun (or without LRP_MPI): one
 * rank. */
void cli_mpi_init(int *argc, char ***argv);
/* Called with main's exit code: agrees on the job's code (the lowest
 * failing rank's), finalizes MPI and returns it. */
int cli_mpi_finish(int rc);
int cli_mpi_rank(void);
int cli_mpi_size(void);
/* Ranks sharing this node (threads default to cores / local ranks). */
int cli_mpi_local_size(void);

/* isatty(fd), except under an MPI launcher (mpirun, srun): there the
 * streams are the launcher's forwarding (Open MPI gives rank 0 a pty even
 * when mpirun's own output is a file), so no colours and no progress line
 * rewritten in place, whatever isatty says. */
int cli_isatty(int fd);

/* Collective: rc is this rank's state, -1 fine or an exit code.  Returns
 * -1 when every rank is fine, else the exit code of the lowest failing
 * rank (same value on every rank); that rank's error line reaches stderr
 * once. */
int cli_mpi_agree(int rc);

/* Collective: rank r's n bytes are gathered on rank 0, concatenated in
 * rank order into *all (malloc'ed, rank 0 only; others get NULL) of *total
 * bytes.  Returns -1, or EXIT_USAGE (message printed) when rank 0 runs
 * out of memory or a share exceeds the MPI count range; the status is
 * agreed, so every rank returns the same. */
int cli_mpi_gather(const void *buf, size_t n, void **all, size_t *total);

/* lrp_check's sample split (oracle/check.h lrp_check_split) over the
 * ranks: cli_split_gather is its gather, ctx a cli_split (zeroed, code
 * -1).  A failure reported by a rank (fail) is agreed like any other:
 * code becomes the job's exit code on every rank, and self says whether
 * this rank was one that failed. */
typedef struct cli_split {
    int code; /* -1, or the agreed exit code after a failure */
    int self; /* this rank reported a failure of its own */
    int entered; /* the caller's: lrp_check was called (it makes the exchanges) */
} cli_split;
int cli_split_gather(void *ctx, const void *buf, size_t n, const char *fail, void **all,
                     size_t *total);

/* The layer split's exchange (core/pipeline.h lrp_pipe_split.exchange):
 * as cli_split_gather, with the concatenation on every rank. */
int cli_split_allgather(void *ctx, const void *buf, size_t n, const char *fail, void **all,
                        size_t *total);

/* The contiguous block of n items (samples) of this rank: the first
 * n % size ranks get one more.  A rank may get none. */
void cli_mpi_block(int64_t n, int64_t *first, int64_t *count);

/* The ranks' inputs alike, and one copy of the weights a node.
 * Collective over every rank, called once every rank has loaded the same
 * FILE and agreed so (the splits of one file):
 *   - every rank hashes what it read (the layer parameters, with traces
 *     nonzero every trace's arrays, the batch's input and output
 *     relevance) and compares with rank 0's; a rank that read other
 *     values (the file changed while the ranks read it, or another node
 *     has another file of that path) fails with one line naming the
 *     array and the rank;
 *   - then the ranks of each node keep one copy of the parameters (and,
 *     with traces nonzero, of the traces: not where a trace may be
 *     replaced) in shared memory, mapped read-only, instead of one copy
 *     each, and free their own.  A node whose shared memory cannot be had
 *     (no /dev/shm, or too little room: posix_fallocate reserves it
 *     first) keeps one copy a rank, as before: not an error.
 *     LRP_MPI_SHARE=0 keeps one copy a rank (bench/).
 * Returns -1, or the agreed exit code (every rank the same). */
int cli_mpi_share(lrp_net *net, const char *path, int traces);
/* lrp_net_free for a net that may hold shared arrays: they are forgotten
 * (the shared copy is unmapped), the rest freed. */
void cli_net_free(lrp_net *net);


/* ---- results as bytes (tools/runwire.c; no MPI in it) ---- */

/* A growable byte buffer. */
typedef struct cli_bytes {
    unsigned char *p;
    size_t n, cap;
    int oom; /* an append failed: the buffer is incomplete */
} cli_bytes;
void cli_bytes_put(cli_bytes *b, const void *data, size_t n);
void cli_bytes_free(cli_bytes *b);

/* A run report (tools and ranks of one build on one kind of machine: the
 * structs travel as their bytes, the pointers are rebuilt): appended to b;
 * read back from *pos of buf (n bytes) into r, -1 on a short or damaged
 * buffer (r then freed and zeroed). */
struct lrp_run_report;
void cli_report_pack(cli_bytes *b, const struct lrp_run_report *r);
int cli_report_unpack(struct lrp_run_report *r, const unsigned char *buf, size_t n, size_t *pos);

#endif
