// Row kernels of the RIN forward pass in C, each compiled three times (AVX-512, AVX2 + FMA, and
// the baseline x86-64 the rest of the build targets); the widest path the CPU supports is chosen
// on first use (cpuid), and tests may switch paths to check each. Swift code targets the baseline, so without this
// its 16-float SIMD loops run as four SSE operations each. RINTensor's Kernels.swift wraps them;
// its plain Swift `...Reference` twins are what the tests check them against.
//
// Shape legend: N rows, C row width; row r of a strided array starts at r * ld.
#ifndef RIND_KERNELS_H
#define RIND_KERNELS_H

#ifdef __cplusplus
extern "C" {
#endif

/// x (N, C; row stride ld) = GELU(x + bias (C)), exact erf form (A&S 7.1.26, |err| <= 1.5e-7).
void rind_bias_gelu_rows(float *x, long ld, const float *bias, long N, long C);

/// out (n) = GELU(inp (n)); out may equal inp.
void rind_gelu(float *out, const float *inp, long n);

/// x (N, C; row stride ld) += bias (C).
void rind_add_bias_rows(float *x, long ld, const float *bias, long N, long C);

/// out (n) += inp (n).
void rind_add(float *out, const float *inp, long n);

/// x (N, C): each row replaced by its softmax (max subtracted first).
void rind_softmax_rows(float *x, long N, long C);

/// x (N, C): each row replaced by e^(x - the row's maximum), and sums[r] = row r's sum: the
/// softmax before its division, for callers that scale a product of the row instead (attention
/// scales its output rows, hd values, rather than its Nk scores).
void rind_softmax_exp_rows(float *x, long N, long C, float *sums);

/// out (N, C) = (inp - mean) / sqrt(var + eps) * weight + bias, per row, population variance,
/// two passes. out may equal inp.
void rind_layer_norm(float *out, const float *inp, const float *weight, const float *bias,
                     long N, long C, float eps);

/// out (n) = exp(inp (n)) by the kernels' own exp (relative error < 3e-7 on (-87, 88)).
void rind_exp(float *out, const float *inp, long n);

/// Code paths: 0 baseline, 1 AVX2 + FMA, 2 AVX-512 (F, BW, DQ, VL).
/// Whether this CPU can run path `isa`.
int rind_kernels_supports(int isa);
/// The widest path the process may choose by itself: RIND_CPU_ISA=avx2 or baseline makes rind
/// behave as on a CPU without the wider units (its kernels, the ISA it reports, oneDNN's
/// ONEDNN_MAX_CPU_ISA when the operator has not set it), to measure or work around a path; 2 when
/// unset. -1 when RIND_CPU_ISA holds anything but avx512, avx2 or baseline (then it is ignored).
int rind_cpu_isa_cap(void);
/// The path in use (chosen on first use: the widest supported).
int rind_kernels_isa(void);
/// Switches every kernel to path `isa` (process-wide); -1 when this CPU cannot run it.
int rind_kernels_set_isa(int isa);

#ifdef __cplusplus
}
#endif
#endif
