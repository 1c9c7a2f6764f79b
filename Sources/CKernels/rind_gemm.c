#include "rind_gemm.h"
#include "rind_kernels.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

typedef int (*sgemm_fn)(char, char, long, long, long, float, const float *, long, const float *,
                        long, float, float *, long);
typedef void (*set_threads_fn)(int);
typedef int (*get_threads_fn)(void);
typedef struct { int major, minor, patch; } dnnl_version_prefix;
typedef const dnnl_version_prefix *(*version_fn)(void);

static pthread_once_t once = PTHREAD_ONCE_INIT;
static sgemm_fn dnnl_sgemm_ptr;
static set_threads_fn omp_set_ptr;
static get_threads_fn omp_get_ptr;
static char version[32];

static void open_dnnl(void) {
    // OpenMP threads that spin between parallel regions steal the core from whatever else runs
    // there; on a shared machine (this project's: 2 cores, many processes) that made steps several
    // times slower than letting them sleep. Read once by the OpenMP runtime when it loads, so set before
    // dlopen; an operator's own OMP_WAIT_POLICY wins.
    setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
    // RIND_CPU_ISA=avx2 (rind_cpu_isa_cap): oneDNN's JIT held to AVX2 too, as on an AVX2-only CPU.
    int cap = rind_cpu_isa_cap();
    if (cap == 1) setenv("ONEDNN_MAX_CPU_ISA", "AVX2", 0);
    if (cap == 0) setenv("ONEDNN_MAX_CPU_ISA", "SSE41", 0);
    const char *names[] = {"libdnnl.so.2", "libdnnl.so.3", "libdnnl.so"};
    void *handle = NULL;
    for (unsigned i = 0; i < sizeof names / sizeof names[0] && !handle; i++)
        handle = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!handle) return;
    sgemm_fn sgemm = (sgemm_fn)dlsym(handle, "dnnl_sgemm");
    // dlsym on the handle also searches its dependencies: the OpenMP runtime oneDNN was built with.
    set_threads_fn set = (set_threads_fn)dlsym(handle, "omp_set_num_threads");
    get_threads_fn get = (get_threads_fn)dlsym(handle, "omp_get_max_threads");
    version_fn ver = (version_fn)dlsym(handle, "dnnl_version");
    if (!sgemm) return;
    if (ver) {
        const dnnl_version_prefix *v = ver();
        snprintf(version, sizeof version, "%d.%d.%d", v->major, v->minor, v->patch);
    }
    omp_set_ptr = set;
    omp_get_ptr = get;
    dnnl_sgemm_ptr = sgemm;
}

static atomic_int backend = -1;
static atomic_int gemm_threads = 1;

int rind_gemm_backend(void) { return atomic_load_explicit(&backend, memory_order_relaxed); }
void rind_gemm_set_backend(int b) { atomic_store_explicit(&backend, b, memory_order_relaxed); }
int rind_gemm_threads(void) { return atomic_load_explicit(&gemm_threads, memory_order_relaxed); }
void rind_gemm_set_threads(int t) { atomic_store_explicit(&gemm_threads, t < 1 ? 1 : t, memory_order_relaxed); }

int rind_dnnl_available(void) {
    pthread_once(&once, open_dnnl);
    return dnnl_sgemm_ptr != NULL;
}

const char *rind_dnnl_version(void) {
    return rind_dnnl_available() ? version : "";
}

int rind_dnnl_sgemm(char transa, char transb, long M, long N, long K, float alpha,
                    const float *A, long lda, const float *B, long ldb, float beta,
                    float *C, long ldc, int threads) {
    if (!rind_dnnl_available()) return -1;
    // OpenMP's thread count is a per-thread setting: set it for whichever thread calls.
    if (omp_set_ptr && omp_get_ptr && threads > 0 && omp_get_ptr() != threads) omp_set_ptr(threads);
    return dnnl_sgemm_ptr(transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

const char *rind_cpu_vector_isa(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    int cap = rind_cpu_isa_cap();
    if (cap < 0) cap = 2;
    if (cap >= 2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return "avx512";
    if (cap >= 1 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "avx2";
    return "sse";
#else
    return "other";
#endif
}
