#include "rind_kernels.h"
#include "rind_vector_math.h"

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

// 16 lanes: one AVX-512 register, two AVX2 registers. The loops are written so that the
// compiler's vectorizer maps them onto whichever registers the code path targets, without
// reassociating the scalar arithmetic (no fast-math): every path computes the same values up to
// FMA contraction.
#define LANES 16

typedef struct {
    void (*bias_gelu_rows)(float *, long, const float *, long, long);
    void (*gelu)(float *, const float *, long);
    void (*add_bias_rows)(float *, long, const float *, long, long);
    void (*add)(float *, const float *, long);
    void (*exp)(float *, const float *, long);
    void (*softmax_rows)(float *, long, long);
    void (*softmax_exp_rows)(float *, long, long, float *);
    void (*layer_norm)(float *, const float *, const float *, const float *, long, long, float);
} kernel_table;

#define TABLE(s) {s##_rind_bias_gelu_rows, s##_rind_gelu, s##_rind_add_bias_rows, s##_rind_add, s##_rind_exp, \
                  s##_rind_softmax_rows, s##_rind_softmax_exp_rows, s##_rind_layer_norm}

#define ATTR
#define SFX(name) baseline_##name
#include "kernels_body.inc"
#undef ATTR
#undef SFX
static const kernel_table baseline_table = TABLE(baseline);

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#define HAVE_X86_PATHS 1
#define ATTR __attribute__((target("avx2,fma,bmi,bmi2,f16c,lzcnt,movbe")))
#define SFX(name) avx2_##name
#define OWN_SOFTMAX
#include "kernels_body.inc"
#undef OWN_SOFTMAX
#undef ATTR
#undef SFX
// Its softmax too is written with intrinsics (rind_vector_math.h).
static const kernel_table avx2_table = {avx2_rind_bias_gelu_rows, avx2_rind_gelu, avx2_rind_add_bias_rows,
                                        avx2_rind_add, avx2_rind_exp, rind_softmax_rows256,
                                        rind_softmax_exp_rows256, avx2_rind_layer_norm};

#define ATTR __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512cd,avx2,fma,bmi,bmi2,f16c,lzcnt,movbe")))
#define SFX(name) avx512_##name
#define OWN_SOFTMAX
#include "kernels_body.inc"
#undef OWN_SOFTMAX
#undef ATTR
#undef SFX
// The AVX-512 path's softmax is written with intrinsics (rind_vector_math.h: exp by VSCALEFPS, e^x
// and its sum in one pass; 0.54 vs 1.04 ns per score for 64 keys against the vectorised C).
static const kernel_table avx512_table = {avx512_rind_bias_gelu_rows, avx512_rind_gelu, avx512_rind_add_bias_rows,
                                          avx512_rind_add, avx512_rind_exp, rind_softmax_rows512,
                                          rind_softmax_exp_rows512, avx512_rind_layer_norm};
#endif

static int supported(int isa) {
#ifdef HAVE_X86_PATHS
    __builtin_cpu_init();
    if (isa == 2)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (isa == 1) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return isa == 0;
}

static const kernel_table *table_for(int isa) {
#ifdef HAVE_X86_PATHS
    if (isa == 2) return &avx512_table;
    if (isa == 1) return &avx2_table;
#endif
    return &baseline_table;
}

static _Atomic(const kernel_table *) current;
static atomic_int current_isa = -1;

int rind_cpu_isa_cap(void) {
    const char *v = getenv("RIND_CPU_ISA");
    if (!v || !*v || strcmp(v, "avx512") == 0) return 2;
    if (strcmp(v, "avx2") == 0) return 1;
    if (strcmp(v, "baseline") == 0) return 0;
    return -1;
}

static const kernel_table *kernels(void) {
    const kernel_table *t = atomic_load_explicit(&current, memory_order_acquire);
    if (t) return t;
    int cap = rind_cpu_isa_cap();
    if (cap < 0) cap = 2;
    int best = supported(2) && cap >= 2 ? 2 : (supported(1) && cap >= 1 ? 1 : 0);
    rind_kernels_set_isa(best);
    return atomic_load_explicit(&current, memory_order_acquire);
}

int rind_kernels_supports(int isa) { return isa >= 0 && isa <= 2 && supported(isa); }

int rind_kernels_set_isa(int isa) {
    if (!rind_kernels_supports(isa)) return -1;
    atomic_store_explicit(&current_isa, isa, memory_order_relaxed);
    atomic_store_explicit(&current, table_for(isa), memory_order_release);
    return 0;
}

int rind_kernels_isa(void) {
    kernels();
    return atomic_load_explicit(&current_isa, memory_order_relaxed);
}

void rind_bias_gelu_rows(float *x, long ld, const float *bias, long N, long C) { kernels()->bias_gelu_rows(x, ld, bias, N, C); }
void rind_gelu(float *out, const float *inp, long n) { kernels()->gelu(out, inp, n); }
void rind_add_bias_rows(float *x, long ld, const float *bias, long N, long C) { kernels()->add_bias_rows(x, ld, bias, N, C); }
void rind_add(float *out, const float *inp, long n) { kernels()->add(out, inp, n); }
void rind_exp(float *out, const float *inp, long n) { kernels()->exp(out, inp, n); }
void rind_softmax_rows(float *x, long N, long C) { kernels()->softmax_rows(x, N, C); }
void rind_softmax_exp_rows(float *x, long N, long C, float *sums) { kernels()->softmax_exp_rows(x, N, C, sums); }
void rind_layer_norm(float *out, const float *inp, const float *weight, const float *bias, long N, long C, float eps) {
    kernels()->layer_norm(out, inp, weight, bias, N, C, eps);
}
