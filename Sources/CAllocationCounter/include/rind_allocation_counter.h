// Counts heap allocations (malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign,
// valloc) made by any thread while counting is on. Linked only into the test executable, where
// its definitions interpose glibc's for the whole process and forward to glibc's own
// (__libc_malloc and friends), so the program behaves as before apart from the count.
#ifndef RIND_ALLOCATION_COUNTER_H
#define RIND_ALLOCATION_COUNTER_H

#ifdef __cplusplus
extern "C" {
#endif

/// Zeroes the count and starts counting.
void rind_allocations_start(void);
/// Stops counting; returns the number of allocations since `rind_allocations_start`.
long rind_allocations_stop(void);
/// 1 when this process's malloc is the interposed one (every library's calls reach the counter).
int rind_allocations_interposed(void);
/// Allocations since `rind_allocations_start` whose caller's code lies in a library registered
/// with `rind_allocations_attribute_library` (counted in the total too).
long rind_allocations_attributed(void);
/// Registers the loaded libraries whose path contains `name` (e.g. "libdnnl"); 1 if any matched.
int rind_allocations_attribute_library(const char *name);

#ifdef __cplusplus
}
#endif
#endif
