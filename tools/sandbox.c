/*
 * sandbox.c -- parsing untrusted files in a forked child.
 *
 * libhdf5 can crash or loop on corrupted files written with the default
 * ("earliest") format (FORMATS.md: 10 segfaults and 8 hangs in 10,322
 * single-byte flips), and Keras models or traces from other tools are such
 * files.  So the first parse of any file happens in a child process with a
 * CPU-time limit, an address-space limit and a wall-clock deadline; a crash,
 * a kill or a timeout there becomes one line "FILE: file is corrupt or
 * unsupported (...)" and exit code 2, instead of taking the CLI down.  A
 * file the child parsed cleanly is then parsed again in-process (parsing is
 * deterministic, so it parses the same way).
 */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sanitizer.h"
#define UNDER_ASAN LRP_UNDER_ASAN

lrp_status cli_sandboxed(const char *path, lrp_status (*fn)(void *ctx, lrp_err *err), void *ctx,
                         lrp_err *err)
{
    if (getenv("LRP_NO_SANDBOX"))
        return fn(ctx, err);
    long cpu_s = cli_env_long("LRP_SANDBOX_CPU", 60);
    long wall_s = cli_env_long("LRP_SANDBOX_WALL", 120);
    long mem_mb = cli_env_long("LRP_SANDBOX_MEM_MB", 8192);
    int fds[2];
    if (pipe(fds) != 0)
        return lrp_err_set(err, LRP_E_IO, "%s: cannot create pipe: %s", path, strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return lrp_err_set(err, LRP_E_IO, "%s: cannot fork: %s", path, strerror(errno));
    }
    if (pid == 0) {
        close(fds[0]);
        struct rlimit rl;
        rl.rlim_cur = (rlim_t)cpu_s;
        rl.rlim_max = (rlim_t)cpu_s + 1;
        setrlimit(RLIMIT_CPU, &rl);
        if (!UNDER_ASAN) { /* ASan reserves terabytes of address space */
            rl.rlim_cur = rl.rlim_max = (rlim_t)mem_mb << 20;
            setrlimit(RLIMIT_AS, &rl);
        }
        rl.rlim_cur = rl.rlim_max = 0; /* no core dumps of a crashing parse */
        setrlimit(RLIMIT_CORE, &rl);
        /* the child reports through the pipe; whatever a crashing parser
         * prints would break the one-line contract -- except under ASan,
         * where the sanitizer's report from the child is the point of the
         * build (docs/RELIABILITY.md section 3): it reaches stderr before
         * the CLI's line */
        if (!UNDER_ASAN) {
            int devnull = open("/dev/null", O_WRONLY);
            if (devnull >= 0) {
                dup2(devnull, STDERR_FILENO);
                close(devnull);
            }
        }
        lrp_err e = {0};
        lrp_status st = fn(ctx, &e);
        if (st != LRP_OK) {
            size_t n = strlen(e.msg);
            ssize_t w = write(fds[1], e.msg, n);
            (void)w;
        }
        close(fds[1]);
        _exit(st == LRP_OK ? 0 : 10 + (int)st);
    }
    close(fds[1]);
    /* wait with a wall-clock deadline */
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int status = 0, done = 0, timed_out = 0;
    while (!done) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            done = 1;
            break;
        }
        if (r < 0 && errno != EINTR) {
            break;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - t0.tv_sec >= wall_s) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            timed_out = done = 1;
            break;
        }
        struct timespec d = {0, 2000000}; /* 2 ms */
        nanosleep(&d, NULL);
    }
    char msg[LRP_ERR_MSG_MAX];
    ssize_t n = read(fds[0], msg, sizeof msg - 1);
    close(fds[0]);
    msg[n > 0 ? n : 0] = '\0';
    if (timed_out)
        return lrp_err_set(err, LRP_E_FORMAT,
                           "%s: file is corrupt or unsupported (parsing did not finish in %ld s)",
                           path, wall_s);
    if (!done)
        return lrp_err_set(err, LRP_E_IO, "%s: lost the parsing process", path);
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        return lrp_err_set(err, LRP_E_FORMAT,
                           "%s: file is corrupt or unsupported (the parser %s: signal %d, %s)",
                           path, sig == SIGXCPU ? "exceeded its CPU time" : "crashed", sig,
                           strsignal(sig));
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    if (code == 0)
        return LRP_OK;
    if (code > 10 && msg[0])
        return lrp_err_set(err, (lrp_status)(code - 10), "%s", msg);
    return lrp_err_set(err, LRP_E_FORMAT,
                       "%s: file is corrupt or unsupported (the parser exited with %d)", path, code);
}

/* ---- loading a fixture: sandboxed pre-parse, then the real parse ---- */

struct load_ctx {
    const char *path;
};

/* The work the caller will do with the net (cli_load_expect): the child
 * refuses a net beyond the resource limits, so the parent never parses it */
static struct {
    const char *cmd;
    cli_work work;
    int prec, proof;
} expect;

void cli_load_expect(const char *cmd, cli_work work, int prec, int proof)
{
    expect.cmd = cmd;
    expect.work = work;
    expect.prec = prec;
    expect.proof = proof;
}

static lrp_status load_child(void *vctx, lrp_err *err)
{
    struct load_ctx *c = vctx;
    lrp_net *net = NULL;
    lrp_status st = lrp_fixture_read(&net, c->path, err);
    if (st == LRP_OK && expect.cmd)
        st = cli_limits_check(net, c->path, expect.cmd, expect.work, expect.prec, expect.proof,
                              err);
    lrp_net_free(net);
    return st;
}

lrp_status cli_load(lrp_net **out, const char *path, lrp_err *err)
{
    struct load_ctx c = {path};
    *out = NULL;
    lrp_status st = cli_sandboxed(path, load_child, &c, err);
    if (st != LRP_OK)
        return st;
    cli_limits_apply(2); /* the in-process parse and the work: same limits */
    return lrp_fixture_read(out, path, err);
}
