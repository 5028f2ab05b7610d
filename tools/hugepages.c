/*
 * hugepages.c -- transparent huge pages for the big runs.
 *
 * The MPFR runs allocate and free tensors of tens of megabytes layer after
 * layer; glibc hands each to the kernel and back (mmap / munmap), and every
 * 4 KiB page of it then faults in again.  glibc's tunable
 * glibc.malloc.hugetlb=1 (glibc >= 2.35) makes malloc advise huge pages
 * (madvise MADV_HUGEPAGE) on what it maps, which this kernel's
 * transparent-huge-page mode "madvise" (Debian's default) then backs with
 * 2 MiB pages: 512 times fewer faults.  A tunable is read once, when the
 * process starts, so the command sets it and executes itself again, before
 * anything else (MPI included) has run.
 *
 * Measured (docs/SCALING.md, December 2026, idle 2-core machine):
 * ResNet-50 224 `compare` 4:05 -> 3:16 wall, 348 -> 298 CPU-s (system time
 * 40 -> 15 s), peak RSS 1.99 -> 2.01 GB.
 *
 * Not done when: LRP_NO_HUGETLB is set; GLIBC_TUNABLES already names the
 * tunable (the user's choice, or the second execution); LD_PRELOAD is set
 * (valgrind, a profiler or a sanitizer runtime runs this process: the new
 * image would escape it); or /proc/self/exe cannot be executed (then the
 * run simply goes on).  Under an MPI launcher (mpirun, srun) it is done
 * too: the execution keeps the process, its environment and its
 * descriptors, and happens before MPI_Init, so the launcher sees the same
 * rank (make check-mpi runs every rank so); the layer split's ranks were
 * 1.14-1.32 x the one-process time at 64x64 and 112x112 without huge
 * pages, 0.90-1.10 x with (docs/SCALING.md).
 */
#define _GNU_SOURCE
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TUNABLE "glibc.malloc.hugetlb=1"

void cli_hugepages_reexec(char **argv)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
    const char *t = getenv("GLIBC_TUNABLES");
    if (getenv("LRP_NO_HUGETLB") || (t && strstr(t, "glibc.malloc.hugetlb")) ||
        getenv("LD_PRELOAD"))
        return;
    char buf[4096];
    int n = t && *t ? snprintf(buf, sizeof buf, "%s:%s", t, TUNABLE)
                    : snprintf(buf, sizeof buf, "%s", TUNABLE);
    if (n < 0 || (size_t)n >= sizeof buf || setenv("GLIBC_TUNABLES", buf, 1))
        return;
    execv("/proc/self/exe", argv);
    /* not executed: run as we are, and do not leave the variable to a
     * child that would try again */
    if (t)
        setenv("GLIBC_TUNABLES", t, 1);
    else
        unsetenv("GLIBC_TUNABLES");
#else
    (void)argv;
#endif
}
