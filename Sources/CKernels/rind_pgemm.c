#include "rind_pgemm.h"
#include "rind_kernels.h"
#include "rind_pgemm_tiles.h"
#include "rind_vector_math.h"
#include "rind_pool.h"

#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define PANEL RIND_PGEMM_PANEL

_Static_assert(RIND_PGEMM_STORE == RIND_TILE_STORE && RIND_PGEMM_ACCUMULATE == RIND_TILE_ACCUMULATE &&
               RIND_PGEMM_GELU == RIND_TILE_GELU, "a product's mode is its tiles' epilogue");

long rind_pgemm_packed_floats(long C, long OC) { return (OC + PANEL - 1) / PANEL * PANEL * C; }


// MARK: micro-kernels
// Each computes r (rows x 16*panels) = a (rows, K; stride lda) times `panels` consecutive packed
// panels starting at b (panel stride K * 16), one FMA chain per output, and writes it as `o` says.

#define MAX_ROWS RIND_TILE_ROWS
#define TILE_LD RIND_TILE_LD

/// The epilogue of the paths that compute into a tile (row stride TILE_LD) on the stack.
static void tile_write(float *tile, int rows, const rind_tile_out *o) {
    long cols = o->cols;
    if (o->mode == RIND_TILE_GELU) {
        if (o->bias) rind_bias_gelu_rows(tile, TILE_LD, o->bias, rows, cols);
        else for (int i = 0; i < rows; i++) rind_gelu(tile + i * TILE_LD, tile + i * TILE_LD, cols);
    }
    for (int i = 0; i < rows; i++) {
        float *d = o->out + i * o->ld;
        const float *t = tile + i * TILE_LD, *bias = o->bias;
        switch (o->mode) {
        case RIND_TILE_ACCUMULATE:
            if (bias) for (long j = 0; j < cols; j++) d[j] += t[j] + bias[j];
            else for (long j = 0; j < cols; j++) d[j] += t[j];
            break;
        case RIND_TILE_SCALE:
            for (long j = 0; j < cols; j++) d[j] = o->scale * t[j];
            break;
        case RIND_TILE_GELU:
            memcpy(d, t, cols * sizeof(float));
            break;
        default:
            if (bias) for (long j = 0; j < cols; j++) d[j] = t[j] + bias[j];
            else memcpy(d, t, cols * sizeof(float));
        }
    }
}

static void tile_portable(int rows, int panels, long K, const float *a, long lda, const float *b,
                          const rind_tile_out *o) {
    float tile[MAX_ROWS * TILE_LD];
    for (int i = 0; i < rows; i++)
        for (int q = 0; q < panels; q++) {
            float acc[PANEL] = {0};
            const float *bp = b + (long)q * K * PANEL;
            for (long k = 0; k < K; k++) {
                float av = a[i * lda + k];
                for (int j = 0; j < PANEL; j++) acc[j] = __builtin_fmaf(av, bp[k * PANEL + j], acc[j]);
            }
            memcpy(tile + i * TILE_LD + q * PANEL, acc, sizeof acc);
        }
    tile_write(tile, rows, o);
}

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#define HAVE_X86 1
#define A512 RIND_A512
#define A256 RIND_A256

// Panel rows fetched ahead: the weights come from L3 or memory on a layer's first row block (a
// step reads every weight once), where the hardware prefetcher alone left the kernel about 15%
// below its in-cache speed; 32 rows (4 KiB per panel) ahead measured best of 16, 32 and 64 (a
// 64-layer 128x768x3072 stream of 604 MB: 117 -> 131 GFLOP/s on one thread, 254 -> 274 on two).
// The AVX2 kernel reads one panel per k (the AVX-512 one two) in about as many cycles, so it
// fetches 64 rows ahead: the replayed forward pass held to AVX2 on one thread, 32 vs 64 in turn,
// took 0.97 of the time on ImageNet-64 (4 of 4 pairs) and 0.98 on CIFAR-10.
#define PREFETCH 32
#define PREFETCH_AVX2 64

// The AVX-512 epilogue, on the accumulators c0 (columns 0-15) and c1 (16-31, when panels = 2):
// masked loads and stores keep to the tile's `cols` columns, so no tile on the stack and no copy.
static inline __attribute__((always_inline)) A512 void put512(const int rows, const int panels, const __m512 *c0,
                                                               const __m512 *c1, const rind_tile_out *o) {
    int cols = o->cols;
    __mmask16 m0 = cols >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << cols) - 1);
    __mmask16 m1 = panels < 2 || cols <= 16 ? 0 : (cols >= 32 ? (__mmask16)0xFFFF : (__mmask16)((1u << (cols - 16)) - 1));
    float *out = o->out;
    long ld = o->ld;
    const float *bias = o->bias;
    __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
    if (bias) { b0 = _mm512_maskz_loadu_ps(m0, bias); if (panels == 2) b1 = _mm512_maskz_loadu_ps(m1, bias + 16); }
#define EACH_ROW _Pragma("unroll") for (int i = 0; i < MAX_ROWS; i++) if (i < rows)
    switch (o->mode) {
    case RIND_TILE_ACCUMULATE:
        EACH_ROW {
            float *d = out + i * ld;
            __m512 r0 = bias ? _mm512_add_ps(c0[i], b0) : c0[i];
            _mm512_mask_storeu_ps(d, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, d), r0));
            if (panels == 2) {
                __m512 r1 = bias ? _mm512_add_ps(c1[i], b1) : c1[i];
                _mm512_mask_storeu_ps(d + 16, m1, _mm512_add_ps(_mm512_maskz_loadu_ps(m1, d + 16), r1));
            }
        }
        break;
    case RIND_TILE_GELU:
        EACH_ROW {
            _mm512_mask_storeu_ps(out + i * ld, m0, rind_gelu512(bias ? _mm512_add_ps(c0[i], b0) : c0[i]));
            if (panels == 2)
                _mm512_mask_storeu_ps(out + i * ld + 16, m1, rind_gelu512(bias ? _mm512_add_ps(c1[i], b1) : c1[i]));
        }
        break;
    case RIND_TILE_SCALE: {
        __m512 s = _mm512_set1_ps(o->scale);
        EACH_ROW {
            _mm512_mask_storeu_ps(out + i * ld, m0, _mm512_mul_ps(s, c0[i]));
            if (panels == 2) _mm512_mask_storeu_ps(out + i * ld + 16, m1, _mm512_mul_ps(s, c1[i]));
        }
        break;
    }
    default:
        EACH_ROW {
            _mm512_mask_storeu_ps(out + i * ld, m0, bias ? _mm512_add_ps(c0[i], b0) : c0[i]);
            if (panels == 2) _mm512_mask_storeu_ps(out + i * ld + 16, m1, bias ? _mm512_add_ps(c1[i], b1) : c1[i]);
        }
    }
#undef EACH_ROW
}

// 8 rows x 2 panels: 16 accumulators, two panel loads and one broadcast per row per k.
static inline __attribute__((always_inline)) A512 void k512(const int rows, long K, const float *a,
                                                             long lda, const float *b, const rind_tile_out *o) {
    __m512 c0[MAX_ROWS], c1[MAX_ROWS];
    const float *b1p = b + K * PANEL;
    _Pragma("unroll") for (int i = 0; i < MAX_ROWS; i++)
        if (i < rows) { c0[i] = _mm512_setzero_ps(); c1[i] = _mm512_setzero_ps(); }
    for (long k = 0; k < K; k++) {
        __m512 b0 = _mm512_loadu_ps(b + k * PANEL), b1 = _mm512_loadu_ps(b1p + k * PANEL);
        _mm_prefetch((const char *)(b + (k + PREFETCH) * PANEL), _MM_HINT_T0);
        _mm_prefetch((const char *)(b1p + (k + PREFETCH) * PANEL), _MM_HINT_T0);
        _Pragma("unroll") for (int i = 0; i < MAX_ROWS; i++)
            if (i < rows) {
                __m512 av = _mm512_set1_ps(a[i * lda + k]);
                c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
                c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
            }
    }
    put512(rows, 2, c0, c1, o);
}

// 8 rows x 1 panel (the last, odd panel).
static inline __attribute__((always_inline)) A512 void k512one(const int rows, long K, const float *a,
                                                                long lda, const float *b, const rind_tile_out *o) {
    __m512 c0[MAX_ROWS];
    _Pragma("unroll") for (int i = 0; i < MAX_ROWS; i++) if (i < rows) c0[i] = _mm512_setzero_ps();
    for (long k = 0; k < K; k++) {
        __m512 b0 = _mm512_loadu_ps(b + k * PANEL);
        _mm_prefetch((const char *)(b + (k + PREFETCH) * PANEL), _MM_HINT_T0);
        _Pragma("unroll") for (int i = 0; i < MAX_ROWS; i++)
            if (i < rows) c0[i] = _mm512_fmadd_ps(_mm512_set1_ps(a[i * lda + k]), b0, c0[i]);
    }
    put512(rows, 1, c0, c0, o);
}

A512 static void tile_avx512(int rows, int panels, long K, const float *a, long lda, const float *b,
                             const rind_tile_out *o) {
#define CASE2(r) case r: k512(r, K, a, lda, b, o); break;
#define CASE1(r) case r: k512one(r, K, a, lda, b, o); break;
    if (panels == 2) {
        switch (rows) { CASE2(8) CASE2(7) CASE2(6) CASE2(5) CASE2(4) CASE2(3) CASE2(2) default: k512(1, K, a, lda, b, o); }
    } else {
        switch (rows) { CASE1(8) CASE1(7) CASE1(6) CASE1(5) CASE1(4) CASE1(3) CASE1(2) default: k512one(1, K, a, lda, b, o); }
    }
#undef CASE2
#undef CASE1
}

// The AVX2 epilogue: rows x (up to) 16 columns of panel q, from accumulators c0 (columns 0-7) and
// c1 (8-15). A full panel is read and written with plain loads and stores, a partial one (the
// last panel of a product whose outputs are not a multiple of 16) with masked ones: VMASKMOVPS
// stores take many micro-ops on AMD cores before Zen 4 (Agner Fog's instruction tables).
static inline __attribute__((always_inline)) A256 __m256 load256(const float *p, __m256i m, int full) {
    return full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, m);
}
static inline __attribute__((always_inline)) A256 void store256(float *p, __m256i m, __m256 v, int full) {
    if (full) _mm256_storeu_ps(p, v);
    else _mm256_maskstore_ps(p, m, v);
}

static inline __attribute__((always_inline)) A256 void put256rows(const int rows, const __m256 *c0, const __m256 *c1,
                                                                   const rind_tile_out *o, int q, int cols, const int full) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(cols), lane);
    __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(cols - 8), lane);
    long ld = o->ld;
    float *out = o->out + q * PANEL;
    const float *bias = o->bias ? o->bias + q * PANEL : NULL;
    __m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps();
    if (bias) { b0 = load256(bias, m0, full); b1 = load256(bias + 8, m1, full); }
    __m256 s = _mm256_set1_ps(o->scale);
    for (int i = 0; i < 6; i++) {
        if (i >= rows) break;
        float *d = out + i * ld;
        __m256 v0 = c0[i], v1 = c1[i];
        switch (o->mode) {
        case RIND_TILE_ACCUMULATE:
            if (bias) { v0 = _mm256_add_ps(v0, b0); v1 = _mm256_add_ps(v1, b1); }
            v0 = _mm256_add_ps(load256(d, m0, full), v0);
            v1 = _mm256_add_ps(load256(d + 8, m1, full), v1);
            break;
        case RIND_TILE_GELU:
            if (bias) { v0 = _mm256_add_ps(v0, b0); v1 = _mm256_add_ps(v1, b1); }
            v0 = rind_gelu256(v0);
            v1 = rind_gelu256(v1);
            break;
        case RIND_TILE_SCALE:
            v0 = _mm256_mul_ps(s, v0);
            v1 = _mm256_mul_ps(s, v1);
            break;
        default:
            if (bias) { v0 = _mm256_add_ps(v0, b0); v1 = _mm256_add_ps(v1, b1); }
        }
        store256(d, m0, v0, full);
        store256(d + 8, m1, v1, full);
    }
}

static inline __attribute__((always_inline)) A256 void put256(const int rows, const __m256 *c0, const __m256 *c1,
                                                               const rind_tile_out *o, int q) {
    int cols = o->cols - q * PANEL < PANEL ? o->cols - q * PANEL : PANEL;
    if (cols == PANEL) put256rows(rows, c0, c1, o, q, cols, 1);
    else put256rows(rows, c0, c1, o, q, cols, 0);
}

// 6 rows x 1 panel (two 8-float halves): 12 accumulators of the 16 ymm registers.
static inline __attribute__((always_inline)) A256 void k256(const int rows, long K, const float *a, long lda,
                                                             const float *b, const rind_tile_out *o, int q) {
    __m256 c0[6], c1[6];
    for (int i = 0; i < 6; i++) if (i < rows) { c0[i] = _mm256_setzero_ps(); c1[i] = _mm256_setzero_ps(); }
    for (long k = 0; k < K; k++) {
        __m256 b0 = _mm256_loadu_ps(b + k * PANEL), b1 = _mm256_loadu_ps(b + k * PANEL + 8);
        _mm_prefetch((const char *)(b + (k + PREFETCH_AVX2) * PANEL), _MM_HINT_T0);
        for (int i = 0; i < 6; i++)
            if (i < rows) {
                __m256 av = _mm256_broadcast_ss(a + i * lda + k);
                c0[i] = _mm256_fmadd_ps(av, b0, c0[i]);
                c1[i] = _mm256_fmadd_ps(av, b1, c1[i]);
            }
    }
    put256(rows, c0, c1, o, q);
}

A256 static void tile_avx2(int rows, int panels, long K, const float *a, long lda, const float *b,
                           const rind_tile_out *o) {
    for (int q = 0; q < panels; q++) {
        const float *bq = b + (long)q * K * PANEL;
        switch (rows) {
        case 6: k256(6, K, a, lda, bq, o, q); break;
        case 5: k256(5, K, a, lda, bq, o, q); break;
        case 4: k256(4, K, a, lda, bq, o, q); break;
        case 3: k256(3, K, a, lda, bq, o, q); break;
        case 2: k256(2, K, a, lda, bq, o, q); break;
        default: k256(1, K, a, lda, bq, o, q); break;
        }
    }
}

// Packing with strideK = 1 (a row-major weight, attention's keys): 16 rows of 16 inputs loaded
// (masked past the inputs, zero past the outputs), transposed in registers, stored as 16 panel rows.
// Transposed by swapping off-diagonal blocks of 8, 4, 2 and 1 (one VPERMT2PS per row per stage).
A512 static void pack_transpose512(float *dst, const float *w, long C, long OC, long strideO) {
    __m512i lower[4], upper[4];
    for (int s = 0; s < 4; s++) {
        int h = 8 >> s, lo[16], up[16];
        for (int c = 0; c < 16; c++) {
            lo[c] = (c & h) ? 16 + c - h : c;   // row i (bit h clear): its bit-h columns from row i + h
            up[c] = (c & h) ? 16 + c : c + h;   // row i + h: its bit-h-clear columns from row i
        }
        lower[s] = _mm512_loadu_si512(lo);
        upper[s] = _mm512_loadu_si512(up);
    }
    for (long p = 0; p * PANEL < OC; p++) {
        long outputs = OC - p * PANEL < PANEL ? OC - p * PANEL : PANEL;
        for (long k0 = 0; k0 < C; k0 += 16) {
            long inputs = C - k0 < 16 ? C - k0 : 16;
            __mmask16 m = (__mmask16)(inputs == 16 ? 0xFFFF : (1u << inputs) - 1);
            __m512 r[16];
            for (int j = 0; j < 16; j++)
                r[j] = j < outputs ? _mm512_maskz_loadu_ps(m, w + (p * PANEL + j) * strideO + k0) : _mm512_setzero_ps();
            for (int s = 0; s < 4; s++) {
                int h = 8 >> s;
                for (int i = 0; i < 16; i++)
                    if (!(i & h)) {
                        __m512 a = r[i], b = r[i + h];
                        r[i] = _mm512_permutex2var_ps(a, lower[s], b);
                        r[i + h] = _mm512_permutex2var_ps(a, upper[s], b);
                    }
            }
            float *row = dst + (p * C + k0) * PANEL;
            for (long kk = 0; kk < inputs; kk++) _mm512_storeu_ps(row + kk * PANEL, r[kk]);
        }
    }
}

// The same on AVX2: each panel's 16 rows as two 8 x 8 blocks per 8 inputs, transposed in registers.
static inline __attribute__((always_inline)) A256 void transpose8(__m256 r[8]) {
    __m256 t[8], s[8];
    for (int i = 0; i < 4; i++) {   // t[2i], t[2i+1]: rows 2i and 2i+1 interleaved, low and high pairs
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; i++) {   // s[4i + c]: column c (and c + 4) of rows 4i..4i+3
        s[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        s[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        s[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        s[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int c = 0; c < 4; c++) {
        r[c] = _mm256_permute2f128_ps(s[c], s[4 + c], 0x20);
        r[c + 4] = _mm256_permute2f128_ps(s[c], s[4 + c], 0x31);
    }
}

A256 static void pack_transpose256(float *dst, const float *w, long C, long OC, long strideO) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (long p = 0; p * PANEL < OC; p++) {
        long outputs = OC - p * PANEL < PANEL ? OC - p * PANEL : PANEL;
        for (long k0 = 0; k0 < C; k0 += 8) {
            long inputs = C - k0 < 8 ? C - k0 : 8;
            __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)inputs), lane);
            float *row = dst + (p * C + k0) * PANEL;
            for (int half = 0; half < 2; half++) {
                __m256 r[8];
                for (int j = 0; j < 8; j++) {
                    long o = half * 8 + j;
                    r[j] = o < outputs ? _mm256_maskload_ps(w + (p * PANEL + o) * strideO + k0, m) : _mm256_setzero_ps();
                }
                transpose8(r);
                for (long kk = 0; kk < inputs; kk++) _mm256_storeu_ps(row + kk * PANEL + half * 8, r[kk]);
            }
        }
    }
}
#endif

void rind_pgemm_pack_strided(float *dst, const float *w, long C, long OC, long strideO, long strideK) {
    long panels = (OC + PANEL - 1) / PANEL;
    if (strideO == 1) {   // each panel row is (up to) 16 consecutive floats: attention's values
        for (long p = 0; p < panels; p++) {
            long n = OC - p * PANEL < PANEL ? OC - p * PANEL : PANEL;
            for (long k = 0; k < C; k++) {
                float *row = dst + (p * C + k) * PANEL;
                const float *src = w + k * strideK + p * PANEL;
                if (n == PANEL) memcpy(row, src, PANEL * sizeof(float));
                else { memcpy(row, src, n * sizeof(float)); memset(row + n, 0, (PANEL - n) * sizeof(float)); }
            }
        }
        return;
    }
#ifdef HAVE_X86
    if (strideK == 1 && rind_kernels_isa() == 2) {
        pack_transpose512(dst, w, C, OC, strideO);
        return;
    }
    if (strideK == 1 && rind_kernels_isa() == 1) {
        pack_transpose256(dst, w, C, OC, strideO);
        return;
    }
#endif
    for (long p = 0; p < panels; p++)
        for (long k = 0; k < C; k++) {
            float *row = dst + (p * C + k) * PANEL;
            for (long j = 0; j < PANEL; j++) {
                long o = p * PANEL + j;
                row[j] = o < OC ? w[o * strideO + k * strideK] : 0.0f;
            }
        }
}

void rind_pgemm_pack(float *dst, const float *w, long C, long OC) { rind_pgemm_pack_strided(dst, w, C, OC, C, 1); }

rind_tile_kernel rind_pgemm_tile_kernel(void) {
#ifdef HAVE_X86
    switch (rind_kernels_isa()) {
    case 2: return (rind_tile_kernel){tile_avx512, 8};
    case 1: return (rind_tile_kernel){tile_avx2, 6};
    }
#endif
    return (rind_tile_kernel){tile_portable, MAX_ROWS};
}

// MARK: one region of a product

typedef struct {
    float *out; long ldOut; const float *inp; long ldInp; const float *packed; const float *bias;
    long N, C, OC; int mode; rind_tile_kernel kernel;
    long groups;        // column groups of 2 panels (32 outputs)
    long rowBlocks;     // blocks of kernel.rows rows
    long columnTasks, rowTasks;
} product;

// Row blocks [b0, b1) (rind_tile_block_start) x column groups [g0, g1).
static void run_region(const product *p, long b0, long b1, long g0, long g1) {
    long panels = (p->OC + PANEL - 1) / PANEL;
    // Rows in chunks whose input stays in L2 while every panel of the region passes over it.
    int block = p->kernel.rows;
    long chunk = 65536 / (p->C > 0 ? p->C : 1) / block;
    if (chunk < 1) chunk = 1;
    for (long c0 = b0; c0 < b1; c0 += chunk) {
        long c1 = c0 + chunk < b1 ? c0 + chunk : b1;
        for (long g = g0; g < g1; g++) {
            long firstPanel = 2 * g;
            int np = panels - firstPanel >= 2 ? 2 : 1;
            long col0 = firstPanel * PANEL;
            long cols = p->OC - col0 < np * PANEL ? p->OC - col0 : np * PANEL;
            const float *b = p->packed + firstPanel * p->C * PANEL;
            rind_tile_out o = {NULL, p->ldOut, p->bias ? p->bias + col0 : NULL, p->mode, (int)cols, 1.0f};
            for (long j = c0; j < c1; j++) {
                long r = rind_tile_block_start(j, p->N, block);
                int rows = (int)(rind_tile_block_start(j + 1, p->N, block) - r);
                o.out = p->out + r * p->ldOut + col0;
                p->kernel.run(rows, np, p->C, p->inp + r * p->ldInp, p->ldInp, b, &o);
            }
        }
    }
}

// Task t of the grid rowTasks x columnTasks: a band of row blocks times a band of column groups,
// numbered row band by row band, so that the pool's per-thread segments of tasks are shares of
// the rows (rind_pool.h) where there are several row bands, and of the columns where there is one.
static void run_task(const void *context, long t, int slot) {
    (void)slot;
    const product *p = context;
    long rt = t / p->columnTasks, ct = t % p->columnTasks;
    long b0 = p->rowBlocks * rt / p->rowTasks, b1 = p->rowBlocks * (rt + 1) / p->rowTasks;
    long g0 = p->groups * ct / p->columnTasks, g1 = p->groups * (ct + 1) / p->columnTasks;
    if (b0 < b1 && g0 < g1) run_region(p, b0, b1, g0, g1);
}

void rind_pgemm_prepare(int threads) { rind_pool_prepare(threads); }

// A product's task grid: products under ~2 MFLOP are one task (waking a worker costs more than
// it saves); larger ones are cut into at least 8 tasks per thread (none under ~0.3 MFLOP), taken
// one at a time by the threads (rind_pool.h): a worker that wakes late, or loses its core for a
// while, leaves its tasks to the caller instead of making it wait. Where there are more column
// groups than that, each group is its own task: with bands of several groups the last band kept
// one thread busy while the other waited (one group per task, products of the models' shapes
// alternated in one process against bands: 0.95-0.99 of the time on two threads, AVX-512 and AVX2).
static product plan(const rind_pgemm_job *j, rind_tile_kernel kernel, int threads) {
    long groups = (j->OC + 2 * PANEL - 1) / (2 * PANEL), rowBlocks = (j->N + kernel.rows - 1) / kernel.rows;
    product p = {j->out, j->ldOut, j->inp, j->ldInp, j->packed, j->bias, j->N, j->C, j->OC, j->mode, kernel,
                 groups, rowBlocks, 1, 1};
    double flops = 2.0 * j->N * j->C * j->OC;
    if (threads > 1 && flops >= 2e6) {
        long want = 8L * threads;
        if (flops / want < 3e5) want = (long)(flops / 3e5);
        if (want < threads) want = threads;
        double perGroup = flops / groups;
        long perTask = perGroup >= 3e5 ? 1 : (long)(3e5 / perGroup) + 1, bands = (groups + perTask - 1) / perTask;
        p.columnTasks = bands > want ? bands : (groups < want ? groups : want);
        long rows = (want + p.columnTasks - 1) / p.columnTasks;
        p.rowTasks = rows < rowBlocks ? rows : rowBlocks;
    }
    return p;
}

void rind_pgemm(float *out, long ldOut, const float *inp, long ldInp, const float *packed,
                const float *bias, long N, long C, long OC, int mode, int threads) {
    rind_pgemm_job job = {out, ldOut, inp, ldInp, packed, bias, N, C, OC, mode};
    rind_pgemm_many(&job, 1, threads);
}

// Several products as one piece of work on the pool: their task grids one after another.
typedef struct { product p[RIND_PGEMM_MANY]; long first[RIND_PGEMM_MANY + 1]; int count; } product_list;

static void run_listed(const void *context, long t, int slot) {
    const product_list *l = context;
    int i = 0;
    while (t >= l->first[i + 1]) i++;
    run_task(&l->p[i], t - l->first[i], slot);
}

void rind_pgemm_many(const rind_pgemm_job *jobs, int count, int threads) {
    rind_tile_kernel kernel = rind_pgemm_tile_kernel();
    product_list l = {.count = 0};
    l.first[0] = 0;
    for (int i = 0; i < count && i < RIND_PGEMM_MANY; i++) {
        if (jobs[i].N <= 0 || jobs[i].OC <= 0) continue;
        l.p[l.count] = plan(&jobs[i], kernel, threads);
        l.first[l.count + 1] = l.first[l.count] + l.p[l.count].columnTasks * l.p[l.count].rowTasks;
        l.count++;
    }
    if (l.count == 0) return;
    if (l.first[l.count] == l.count) {   // every product is one task: the calling thread runs them
        for (int i = 0; i < l.count; i++) run_region(&l.p[i], 0, l.p[i].rowBlocks, 0, l.p[i].groups);
        return;
    }
    rind_pool_run(run_listed, &l, l.first[l.count], threads);
}
