#define _GNU_SOURCE
#include "rind_allocation_counter.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// glibc's own entry points (exported by libc.so.6 for exactly this use).
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);

static atomic_int counting;
static atomic_long count, attributed;

// Address ranges of the libraries whose own allocations are counted apart (`attributed`).
#define MAX_RANGES 64
static uintptr_t range_lo[MAX_RANGES], range_hi[MAX_RANGES];
static atomic_int ranges;

static inline void note(void *caller) {
    if (!atomic_load_explicit(&counting, memory_order_relaxed)) return;
    atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
    uintptr_t a = (uintptr_t)caller;
    int n = atomic_load_explicit(&ranges, memory_order_acquire);
    for (int i = 0; i < n; i++) {
        if (a >= range_lo[i] && a < range_hi[i]) {
            atomic_fetch_add_explicit(&attributed, 1, memory_order_relaxed);
            return;
        }
    }
}

#define CALLER __builtin_extract_return_addr(__builtin_return_address(0))

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RIND_UNDER_TSAN 1
#endif
#endif

// Under ThreadSanitizer (scripts/tsan.sh, which runs the job and server tests, not the allocation
// test) the allocator is not interposed: TSan brings its own malloc, which this one would bypass,
// and TSan's start-up calls malloc before TSan can run the instrumented code below. The counters
// then stay at 0.
#ifndef RIND_UNDER_TSAN

void *malloc(size_t size) { note(CALLER); return __libc_malloc(size); }
void *calloc(size_t n, size_t size) { note(CALLER); return __libc_calloc(n, size); }
void *realloc(void *p, size_t size) { note(CALLER); return __libc_realloc(p, size); }
void *memalign(size_t alignment, size_t size) { note(CALLER); return __libc_memalign(alignment, size); }
void *aligned_alloc(size_t alignment, size_t size) { note(CALLER); return __libc_memalign(alignment, size); }
void *valloc(size_t size) { note(CALLER); return __libc_valloc(size); }

int posix_memalign(void **out, size_t alignment, size_t size) {
    note(CALLER);
    if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0) return EINVAL;
    void *p = __libc_memalign(alignment, size);
    if (!p && size) return ENOMEM;
    *out = p;
    return 0;
}
#endif

void rind_allocations_start(void) {
    atomic_store(&count, 0);
    atomic_store(&attributed, 0);
    atomic_store(&counting, 1);
}

long rind_allocations_stop(void) {
    atomic_store(&counting, 0);
    return atomic_load(&count);
}

long rind_allocations_attributed(void) { return atomic_load(&attributed); }

static int add_ranges(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    const char *needle = data;
    if (!info->dlpi_name || !strstr(info->dlpi_name, needle)) return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
        int n = atomic_load(&ranges);
        if (n == MAX_RANGES) return 1;
        range_lo[n] = info->dlpi_addr + ph->p_vaddr;
        range_hi[n] = range_lo[n] + ph->p_memsz;
        atomic_store_explicit(&ranges, n + 1, memory_order_release);
    }
    return 0;
}

int rind_allocations_attribute_library(const char *name) {
    int before = atomic_load(&ranges);
    dl_iterate_phdr(add_ranges, (void *)name);
    return atomic_load(&ranges) > before;
}

int rind_allocations_interposed(void) {
    // The process-wide definition of malloc must be this file's: then every library's calls
    // (Swift runtime, OpenBLAS, oneDNN) reach the counter.
    return dlsym(RTLD_DEFAULT, "malloc") == (void *)malloc;
}
