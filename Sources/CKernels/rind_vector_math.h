// exp, GELU and softmax on AVX-512 and AVX2 registers, for the packed backend's epilogues and
// attention (internal to CKernels). The same algorithms as kernels_body.inc's fast_exp and
// fast_gelu (its comments have the error bounds), written with intrinsics so that they run on
// values still in registers.
#ifndef RIND_VECTOR_MATH_H
#define RIND_VECTOR_MATH_H

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>
#include <math.h>

#define RIND_A512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))

/// e^x as 2^k e^r with |r| <= ln2/2 (degree-7 Taylor polynomial for e^r, as fast_exp), 2^k applied
/// by VSCALEFPS (exact, down into the subnormals and up to +inf); x clamped to [-104, 89]; NaN
/// stays NaN.
static inline __attribute__((always_inline)) RIND_A512 __m512 rind_exp512(__m512 x) {
    x = _mm512_min_ps(_mm512_set1_ps(89.0f), _mm512_max_ps(_mm512_set1_ps(-104.0f), x));
    __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.442695040888963f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(1.428606765330187e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, k);
}

/// GELU(x) = x (1 + erf(x / sqrt 2)) / 2, erf by Abramowitz and Stegun 7.1.26. The exponent
/// -z^2 is held at or above -80, where 1 + erf(z) is already below 1e-35: below that e^-z^2 and
/// the products after it would be subnormal, which costs a microcode assist per operation.
static inline __attribute__((always_inline)) RIND_A512 __m512 rind_gelu512(__m512 x) {
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 z = _mm512_mul_ps(x, _mm512_set1_ps(0.7071067811865476f));
    __m512 a = _mm512_abs_ps(z);
    // t = 1 / d by the 14-bit reciprocal and one Newton step (relative error ~2^-27; a division
    // of 16 floats takes ~16 cycles of the port the FMAs need).
    __m512 d = _mm512_fmadd_ps(_mm512_set1_ps(0.3275911f), a, one);
    __m512 t0 = _mm512_rcp14_ps(d);
    __m512 t = _mm512_mul_ps(t0, _mm512_fnmadd_ps(d, t0, _mm512_set1_ps(2.0f)));
    __m512 p = _mm512_set1_ps(1.061405429f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.453152027f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
    __m512 e = rind_exp512(_mm512_max_ps(_mm512_set1_ps(-80.0f), _mm512_fnmadd_ps(a, a, _mm512_setzero_ps())));
    __m512 y = _mm512_mul_ps(_mm512_mul_ps(p, t), e);
    __mmask16 negative = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_LT_OQ);
    __m512 onePlusErf = _mm512_mask_blend_ps(negative, _mm512_sub_ps(_mm512_set1_ps(2.0f), y), y);
    return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), onePlusErf);
}

/// x (N, C): each row replaced by e^(x - the row's maximum), the differences held at or above -80
/// (as the row kernels' softmax), e^x and its sum in one pass (16 partial sums, then across the
/// lanes); sums[r] = row r's sum. A row's result does not depend on the other rows.
static inline RIND_A512 void rind_softmax_exp_rows512(float *x, long N, long C, float *sums) {
    __mmask16 tail = (__mmask16)((1u << (C % 16)) - 1);
    long full = C / 16 * 16;
    for (long r = 0; r < N; r++) {
        float *row = x + r * C;
        __m512 m = _mm512_set1_ps(-INFINITY);
        for (long i = 0; i < full; i += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(row + i));
        if (tail) m = _mm512_mask_max_ps(m, tail, m, _mm512_maskz_loadu_ps(tail, row + full));
        __m512 maxv = _mm512_set1_ps(_mm512_reduce_max_ps(m));
        const __m512 floor = _mm512_set1_ps(-80.0f);
        __m512 sum = _mm512_setzero_ps();
        for (long i = 0; i < full; i += 16) {
            __m512 e = rind_exp512(_mm512_max_ps(floor, _mm512_sub_ps(_mm512_loadu_ps(row + i), maxv)));
            _mm512_storeu_ps(row + i, e);
            sum = _mm512_add_ps(sum, e);
        }
        if (tail) {
            __m512 e = rind_exp512(_mm512_max_ps(floor, _mm512_sub_ps(_mm512_maskz_loadu_ps(tail, row + full), maxv)));
            _mm512_mask_storeu_ps(row + full, tail, e);
            sum = _mm512_mask_add_ps(sum, tail, sum, e);
        }
        sums[r] = _mm512_reduce_add_ps(sum);
    }
}

/// x (N, C): each row replaced by its softmax: `rind_softmax_exp_rows512`, then scaled by 1 / sum.
static inline RIND_A512 void rind_softmax_rows512(float *x, long N, long C) {
    __mmask16 tail = (__mmask16)((1u << (C % 16)) - 1);
    long full = C / 16 * 16;
    for (long r = 0; r < N; r++) {
        float *row = x + r * C, sum;
        rind_softmax_exp_rows512(row, 1, C, &sum);
        __m512 inv = _mm512_set1_ps(1.0f / sum);
        for (long i = 0; i < full; i += 16) _mm512_storeu_ps(row + i, _mm512_mul_ps(_mm512_loadu_ps(row + i), inv));
        if (tail) _mm512_mask_storeu_ps(row + full, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, row + full), inv));
    }
}

// MARK: AVX2 + FMA

#define RIND_A256 __attribute__((target("avx2,fma")))

/// e^x on 8 lanes for x in [-80, 0]: its callers' arguments (softmax's once the row's maximum is
/// subtracted, GELU's -x^2 / 2; both floored at -80). The reduction and polynomial of rind_exp512;
/// k = round(x log2 e) in [-116, 0] comes from the 1.5 * 2^23 shifter, whose sum holds k in its
/// low bits (no VROUNDPS and VCVTPS2DQ), and 2^k is one normal factor built in the exponent field
/// (AVX2 has no VSCALEFPS). The general exp it replaced, with clamps, rounding and a two-factor
/// 2^k, took about twice the instructions: attention held to AVX2, whose softmax was ~30% of its
/// time, took 0.88-0.92 of the time with this one (ImageNet-64 and CIFAR-10 shapes).
static inline __attribute__((always_inline)) RIND_A256 __m256 rind_exp_nonpositive256(__m256 x) {
    const __m256 shifter = _mm256_set1_ps(12582912.0f);
    __m256 t = _mm256_fmadd_ps(x, _mm256_set1_ps(1.442695040888963f), shifter);
    __m256 k = _mm256_sub_ps(t, shifter);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(1.428606765330187e-06f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    // t's low bits hold k (two's complement); those of 1.5 * 2^23 shift out past bit 31.
    __m256 scale = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(127)), 23));
    return _mm256_mul_ps(p, scale);
}

/// rind_gelu512 on 8 lanes (the reciprocal from the 12-bit estimate and one Newton step).
static inline __attribute__((always_inline)) RIND_A256 __m256 rind_gelu256(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    __m256 z = _mm256_mul_ps(x, _mm256_set1_ps(0.7071067811865476f));
    __m256 a = _mm256_and_ps(z, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF)));
    __m256 d = _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), a, one);
    __m256 t0 = _mm256_rcp_ps(d);
    __m256 t = _mm256_mul_ps(t0, _mm256_fnmadd_ps(d, t0, _mm256_set1_ps(2.0f)));
    __m256 p = _mm256_set1_ps(1.061405429f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
    __m256 e = rind_exp_nonpositive256(_mm256_max_ps(_mm256_set1_ps(-80.0f), _mm256_fnmadd_ps(a, a, zero)));
    __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, t), e);
    __m256 negative = _mm256_cmp_ps(z, zero, _CMP_LT_OQ);
    __m256 onePlusErf = _mm256_blendv_ps(_mm256_sub_ps(_mm256_set1_ps(2.0f), y), y, negative);
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), onePlusErf);
}


/// rind_softmax_exp_rows512 on 8 lanes: e^x and its sum in one pass, two 8-lane maxima and sums
/// per row (16 floats per iteration, as the AVX-512 path), the last C % 8 by masked loads.
static inline RIND_A256 void rind_softmax_exp_rows256(float *x, long N, long C, float *sums) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(C % 8)), lane);
    const __m256 floor = _mm256_set1_ps(-80.0f), none = _mm256_set1_ps(-INFINITY);
    long full = C / 8 * 8, pairs = C / 16 * 16;
    for (long r = 0; r < N; r++) {
        float *row = x + r * C;
        __m256 m0 = none, m1 = none;
        long i = 0;
        for (; i < pairs; i += 16) {
            m0 = _mm256_max_ps(m0, _mm256_loadu_ps(row + i));
            m1 = _mm256_max_ps(m1, _mm256_loadu_ps(row + i + 8));
        }
        if (i < full) m0 = _mm256_max_ps(m0, _mm256_loadu_ps(row + i));
        if (full < C) m1 = _mm256_max_ps(m1, _mm256_blendv_ps(none, _mm256_maskload_ps(row + full, tail),
                                                              _mm256_castsi256_ps(tail)));
        __m256 m = _mm256_max_ps(m0, m1);
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        __m256 maxv = _mm256_broadcastss_ps(h);
        __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
        for (i = 0; i < pairs; i += 16) {
            __m256 e0 = rind_exp_nonpositive256(_mm256_max_ps(floor, _mm256_sub_ps(_mm256_loadu_ps(row + i), maxv)));
            __m256 e1 = rind_exp_nonpositive256(_mm256_max_ps(floor, _mm256_sub_ps(_mm256_loadu_ps(row + i + 8), maxv)));
            _mm256_storeu_ps(row + i, e0);
            _mm256_storeu_ps(row + i + 8, e1);
            s0 = _mm256_add_ps(s0, e0);
            s1 = _mm256_add_ps(s1, e1);
        }
        if (i < full) {
            __m256 e = rind_exp_nonpositive256(_mm256_max_ps(floor, _mm256_sub_ps(_mm256_loadu_ps(row + i), maxv)));
            _mm256_storeu_ps(row + i, e);
            s0 = _mm256_add_ps(s0, e);
        }
        if (full < C) {
            __m256 e = rind_exp_nonpositive256(_mm256_max_ps(floor, _mm256_sub_ps(_mm256_maskload_ps(row + full, tail), maxv)));
            _mm256_maskstore_ps(row + full, tail, e);
            s1 = _mm256_add_ps(s1, _mm256_and_ps(e, _mm256_castsi256_ps(tail)));
        }
        __m256 s = _mm256_add_ps(s0, s1);
        __m128 q = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        q = _mm_add_ps(q, _mm_movehl_ps(q, q));
        q = _mm_add_ss(q, _mm_movehdup_ps(q));
        sums[r] = _mm_cvtss_f32(q);
    }
}

/// x (N, C): each row replaced by its softmax: `rind_softmax_exp_rows256`, then scaled by 1 / sum.
static inline RIND_A256 void rind_softmax_rows256(float *x, long N, long C) {
    for (long r = 0; r < N; r++) {
        float *row = x + r * C, sum;
        rind_softmax_exp_rows256(row, 1, C, &sum);
        __m256 inv = _mm256_set1_ps(1.0f / sum);
        long i = 0;
        for (; i + 8 <= C; i += 8) _mm256_storeu_ps(row + i, _mm256_mul_ps(_mm256_loadu_ps(row + i), inv));
        for (; i < C; i++) row[i] *= 1.0f / sum;
    }
}

#endif
#endif
