// The packed backend's persistent thread pool (internal to CKernels: rind_pgemm.c and
// rind_attention.c run their work on it).
//
// A piece of work is `tasks` independent tasks, cut into one contiguous segment per participant
// (the caller first); each takes the tasks of its own segment one at a time from the segment's
// atomic counter, then those left in the others', so a worker that lost its core (a shared
// machine) delays the caller by at most the task it holds, never by a fixed share of the work.
// Number tasks so that neighbours share data (rows first): a thread then keeps to the same part
// of the data from one piece of work to the next. Tasks must not depend on which thread runs them
// except through `slot`, the participant's number in [0, threads): 0 is the caller; a task may use
// per-slot scratch.
#ifndef RIND_POOL_H
#define RIND_POOL_H

typedef void (*rind_pool_task)(const void *context, long task, int slot);

/// Runs task(context, t, slot) for every t in [0, tasks) on the calling thread and up to
/// `threads` - 1 pool workers, and returns when all have finished. One piece of work runs on the
/// pool at a time; a caller that finds it busy (another thread's product) runs every task itself.
void rind_pool_run(rind_pool_task task, const void *context, long tasks, int threads);

/// Starts workers so that up to `threads` threads can take part (idempotent; never shrinks).
void rind_pool_prepare(int threads);

#endif
