#include "rind_pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define PAUSE() _mm_pause()
#else
#define PAUSE() ((void)0)
#endif

#define MAX_WORKERS 255

// How long an idle worker spins before it sleeps. Timed rather than counted, as PAUSE takes from
// ~10 to ~50 ns depending on the core. With 4000 PAUSEs (50 us on the Xeon of docs/PERFORMANCE.md)
// the worker fell asleep ~5 times per bundled CIFAR-10 step (strace: 2211 futex calls in 200
// steps, ~1000 with a ~250 us spin), and each wake-up cost the next piece of work the worker's
// start; a 20000-PAUSE spin (~260 us) took 0.87-0.97 of the step time there (bench rows at batch
// 1 and 2 run in turn: 8 of 8 pairs faster).
#define SPIN_NS 250000LL
// How long the caller spins for the workers' last tasks before it yields its core to them.
#define WAIT_NS 50000LL

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}
static pthread_mutex_t pool_mutex = PTHREAD_MUTEX_INITIALIZER;   // guards workers and the wake-up
static pthread_cond_t pool_wake = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t pool_busy = PTHREAD_MUTEX_INITIALIZER;    // held by the work on the pool
static int workers;
static atomic_long generation;

// The work on the pool. A worker takes part only while the work is open (`open_generation` holds
// its generation) and counts itself in `active` first, so the caller, once every segment's tasks
// are taken, closes the work and waits only for workers inside it, never for one still asleep; a
// worker that arrives late sees it closed and leaves without reading it.
static struct { rind_pool_task task; const void *context; int participants; } work;
static atomic_long open_generation = -1;

// The tasks in one contiguous segment per participant, slot s from tasks * s / participants. The
// kernels number their tasks rows first (products: bands of rows, each over its column groups;
// attention: image by image; LayerNorm: bands of rows), so each thread works on the same share of
// the rows in every piece of work of a step, and the activations it writes stay in its own cache
// for the next piece. With one shared counter both threads took tasks of every row band, and a
// task ran ~12% slower on two threads than alone (replayed forward pass, per-task times summed);
// with segments the replayed bundled CIFAR-10 pass at batch 2 took 0.89-0.95 of the time held to
// AVX2 and 0.85-0.87 on AVX-512 (docs/PERFORMANCE.md).
static struct { _Alignas(64) atomic_long next; long end; } segments[MAX_WORKERS + 1];   // a cache line each
static atomic_int active, joined;

static void drain_segment(int s, int slot) {
    for (;;) {
        long t = atomic_fetch_add(&segments[s].next, 1);
        if (t >= segments[s].end) break;
        work.task(work.context, t, slot);
    }
}

// A participant runs its own segment, then helps with the others' (from their fronts): a worker
// that wakes late or loses its core leaves its tasks to whoever is free.
static void drain(int slot) {
    drain_segment(slot, slot);
    for (int i = 1; i < work.participants; i++) drain_segment((slot + i) % work.participants, slot);
}

static void *worker_main(void *unused) {
    (void)unused;
    long seen = atomic_load(&generation);
    for (;;) {
        long g;
        // Spin for SPIN_NS (a step's pieces of work follow each other within microseconds, with
        // up to ~0.1 ms of the caller's own work between some), then sleep: spinning threads on
        // a shared machine take the core from other work.
        long long spinStart = now_ns();
        for (int spin = 1; (g = atomic_load(&generation)) == seen; spin++) {
            PAUSE();
            if (spin % 64 == 0 && now_ns() - spinStart > SPIN_NS) break;
        }
        if (g == seen) {
            pthread_mutex_lock(&pool_mutex);
            while ((g = atomic_load(&generation)) == seen) pthread_cond_wait(&pool_wake, &pool_mutex);
            pthread_mutex_unlock(&pool_mutex);
        }
        seen = g;
        atomic_fetch_add(&active, 1);
        if (atomic_load(&open_generation) == g) {
            int slot = atomic_fetch_add(&joined, 1) + 1;
            if (slot < work.participants) drain(slot);
        }
        atomic_fetch_sub(&active, 1);
    }
    return NULL;
}

void rind_pool_prepare(int threads) {
    pthread_mutex_lock(&pool_busy);
    pthread_mutex_lock(&pool_mutex);
    while (workers < threads - 1 && workers < MAX_WORKERS) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, worker_main, NULL) != 0) break;
        pthread_detach(thread);
        workers++;
    }
    pthread_mutex_unlock(&pool_mutex);
    pthread_mutex_unlock(&pool_busy);
}

void rind_pool_run(rind_pool_task task, const void *context, long tasks, int threads) {
    if (tasks > 1 && threads > 1 && pthread_mutex_trylock(&pool_busy) == 0) {
        int participants = threads <= workers + 1 ? threads : workers + 1;
        if (participants > 1) {
            work.task = task;
            work.context = context;
            work.participants = participants;
            for (int s = 0; s < participants; s++) {
                segments[s].end = tasks * (s + 1) / participants;
                atomic_store(&segments[s].next, tasks * s / participants);
            }
            atomic_store(&joined, 0);
            pthread_mutex_lock(&pool_mutex);
            long g = atomic_load(&generation) + 1;
            atomic_store(&open_generation, g);
            atomic_store(&generation, g);
            pthread_cond_broadcast(&pool_wake);
            pthread_mutex_unlock(&pool_mutex);
            drain(0);
            atomic_store(&open_generation, -1);
            // A worker still inside the work holds its last task; after WAIT_NS it has probably
            // lost its core, so yield ours to let it finish.
            long long waitStart = now_ns();
            for (int spin = 1; atomic_load(&active) > 0; spin++) {
                PAUSE();
                if (spin % 64 == 0 && now_ns() - waitStart > WAIT_NS) break;
            }
            while (atomic_load(&active) > 0) sched_yield();
            pthread_mutex_unlock(&pool_busy);
            return;
        }
        pthread_mutex_unlock(&pool_busy);
    }
    for (long t = 0; t < tasks; t++) task(context, t, 0);
}
