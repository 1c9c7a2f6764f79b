// Matrix-product backends chosen at run time (RINTensor's Matmul.swift is the only user).
//
// oneDNN is not linked: its library (Debian's libdnnl2.6, from libdnnl-dev) is opened with dlopen
// on first use, so rind builds and runs without it and uses it where it is installed. oneDNN's
// sgemm JIT-compiles kernels for the widest vector unit the CPU has (AVX-512, AVX2, ...), which
// is what makes it worth having beside OpenBLAS: a distribution OpenBLAS that does not know a CPU
// model falls back to old SSE kernels (Debian's 0.3.21 on a Sapphire Rapids VM: "Prescott").
#ifndef RIND_GEMM_H
#define RIND_GEMM_H

#ifdef __cplusplus
extern "C" {
#endif

/// 1 when libdnnl could be opened and has dnnl_sgemm; opens it on the first call (thread-safe).
int rind_dnnl_available(void);

/// Row-major C (M, N) = alpha op(A) op(B) + beta C through dnnl_sgemm, on `threads` OpenMP
/// threads (set for the calling thread when it differs). transa/transb are 'N' or 'T'.
/// Returns dnnl's status (0 = success); -1 when oneDNN is not available.
int rind_dnnl_sgemm(char transa, char transb, long M, long N, long K, float alpha,
                    const float *A, long lda, const float *B, long ldb, float beta,
                    float *C, long ldc, int threads);

/// The process-wide backend: 0 OpenBLAS, 1 oneDNN; -1 until set. Atomic (relaxed).
int rind_gemm_backend(void);
void rind_gemm_set_backend(int backend);

/// The thread count handed to oneDNN with each product (OpenBLAS keeps its own). Atomic (relaxed).
int rind_gemm_threads(void);
void rind_gemm_set_threads(int threads);

/// oneDNN's version as "major.minor.patch", or "" when not available.
const char *rind_dnnl_version(void);

/// The widest x86 vector extension this CPU and OS support, held at RIND_CPU_ISA's cap
/// (`rind_cpu_isa_cap`): "avx512" (F, BW, DQ, VL), "avx2" (with FMA), "sse" or "other" (not x86).
const char *rind_cpu_vector_isa(void);

#ifdef __cplusplus
}
#endif
#endif
