/* fp_pool.c -- fp_parallel_for on a persistent thread pool.
 *
 * An LRP pass over ResNet-50 makes about a thousand parallel calls, many of
 * them on small tensors; creating and joining a thread per call cost more
 * than some of the work.  The pool keeps nthreads - 1 workers asleep on a
 * condition variable between calls.  Items are still claimed dynamically
 * from one atomic counter and each item writes outputs no other item
 * writes, so which thread runs an item never changes a bit.
 *
 * One caller at a time uses the pool; a concurrent or nested call (the pool
 * busy) falls back to threads of its own, with the same results.  After
 * fork() the child starts with an empty pool (its workers are not copied).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "fp_kernels_int.h"

typedef struct {
    fp_item_fn fn;
    void *ctx;
    int64_t n;
    _Atomic int64_t next;
} pf_state;

static void pf_work(pf_state *st)
{
    for (;;) {
        int64_t i = atomic_fetch_add(&st->next, 1);
        if (i >= st->n)
            break;
        st->fn(st->ctx, i);
    }
}

static void *pf_thread(void *arg)
{
    pf_work(arg);
    return NULL;
}

#define POOL_MAX 63

static struct {
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    int nworkers;
    unsigned long gen;   /* job number */
    pf_state *job;
    int want;            /* workers 0..want-1 take part in the job */
    int active;          /* of those, still working */
    int atfork;
} P = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
       0, 0, NULL, 0, 0, 0};
static pthread_mutex_t pool_use = PTHREAD_MUTEX_INITIALIZER;
/* the job number a worker was made at (it may be made for the job that is
 * being posted, and must not wait for the one after) */
static unsigned long start_gen[POOL_MAX];

static void *pool_worker(void *arg)
{
    int me = (int)(intptr_t)arg;
    pthread_mutex_lock(&P.mu);
    unsigned long seen = start_gen[me];
    for (;;) {
        while (P.gen == seen)
            pthread_cond_wait(&P.work, &P.mu);
        seen = P.gen;
        if (me >= P.want)
            continue;
        pf_state *st = P.job;
        pthread_mutex_unlock(&P.mu);
        pf_work(st);
        pthread_mutex_lock(&P.mu);
        if (--P.active == 0)
            pthread_cond_signal(&P.done);
    }
    return NULL;
}

/* The child of a fork has none of the workers: start over. */
static void pool_after_fork_child(void)
{
    pthread_mutex_init(&P.mu, NULL);
    pthread_cond_init(&P.work, NULL);
    pthread_cond_init(&P.done, NULL);
    pthread_mutex_init(&pool_use, NULL);
    P.nworkers = 0;
    P.gen = 0;
    P.job = NULL;
    P.want = P.active = 0;
}

/* Under P.mu: at least k workers (fewer if threads cannot be made). */
static void pool_grow(int k)
{
    if (!P.atfork) {
        pthread_atfork(NULL, NULL, pool_after_fork_child);
        P.atfork = 1;
    }
    while (P.nworkers < k && P.nworkers < POOL_MAX) {
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        start_gen[P.nworkers] = P.gen;
        int rc = pthread_create(&t, &a, pool_worker, (void *)(intptr_t)P.nworkers);
        pthread_attr_destroy(&a);
        if (rc != 0)
            break;
        P.nworkers++;
    }
}

/* Without the pool: threads of this call's own. */
static void spawn_for(int nthreads, pf_state *st)
{
    pthread_t tid[64];
    int started = 0;
    for (int t = 1; t < nthreads; t++) {
        if (pthread_create(&tid[started], NULL, pf_thread, st) != 0)
            break; /* fewer threads: same results, only slower */
        started++;
    }
    pf_work(st);
    for (int t = 0; t < started; t++)
        pthread_join(tid[t], NULL);
}

void fp_parallel_for(int nthreads, int64_t n, fp_item_fn fn, void *ctx)
{
    nthreads = fp_threads(nthreads);
    if (n <= 0)
        return;
    if (nthreads > n)
        nthreads = (int)n;
    pf_state st = {fn, ctx, n, 0};
    if (nthreads <= 1) {
        pf_work(&st);
        return;
    }
    if (pthread_mutex_trylock(&pool_use) != 0) {
        spawn_for(nthreads, &st); /* pool busy: concurrent or nested call */
        return;
    }
    pthread_mutex_lock(&P.mu);
    pool_grow(nthreads - 1);
    int want = nthreads - 1 < P.nworkers ? nthreads - 1 : P.nworkers;
    P.job = &st;
    P.want = want;
    P.active = want;
    P.gen++;
    pthread_cond_broadcast(&P.work);
    pthread_mutex_unlock(&P.mu);
    pf_work(&st);
    pthread_mutex_lock(&P.mu);
    while (P.active > 0)
        pthread_cond_wait(&P.done, &P.mu);
    P.job = NULL;
    pthread_mutex_unlock(&P.mu);
    pthread_mutex_unlock(&pool_use);
}
