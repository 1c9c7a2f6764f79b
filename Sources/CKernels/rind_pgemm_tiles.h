// The packed backend's micro-kernels and panel packing, shared inside CKernels by rind_pgemm.c
// (linear layers) and rind_attention.c (attention's two products).
#ifndef RIND_PGEMM_TILES_H
#define RIND_PGEMM_TILES_H

#define RIND_TILE_ROWS 8
#define RIND_TILE_LD 32

/// What a micro-kernel does with its result r (rows x cols): the epilogue, applied while r is
/// still in registers (AVX-512) or from a tile on the stack (the other paths).
enum {
    RIND_TILE_STORE = 0,        // out = r (+ bias)
    RIND_TILE_ACCUMULATE = 1,   // out += r (+ bias), added as out + (r + bias)
    RIND_TILE_GELU = 2,         // out = GELU(r (+ bias))
    RIND_TILE_SCALE = 3,        // out = scale * r (attention's scores)
};

/// Where a tile goes: rows x cols (cols <= 16 * panels) at out, rows ld apart; bias (cols) or NULL.
typedef struct {
    float *out;
    long ld;
    const float *bias;
    int mode;
    int cols;
    float scale;
} rind_tile_out;

/// r (rows x 16*panels) = a (rows, K; row stride lda) times `panels` (1 or 2) consecutive packed
/// panels starting at b (panel stride K * 16), written as `o` says; rows <= the kernel's `rows`.
/// Each output is one left-to-right FMA chain over k, and its epilogue does not depend on the
/// other rows or columns of the tile.
typedef void (*rind_tile_fn)(int rows, int panels, long K, const float *a, long lda, const float *b,
                             const rind_tile_out *o);

/// A micro-kernel and the rows it takes per call (<= RIND_TILE_ROWS): callers cut their rows into
/// blocks of `rows`, so that every full block fills the kernel's registers.
typedef struct {
    rind_tile_fn run;
    int rows;
} rind_tile_kernel;

/// The first row of block j (0...blocks) when N rows are cut into blocks of `block` rows: j * block,
/// except that when the last block would hold fewer than half a block, the last two share their
/// rows evenly (128 rows in blocks of 6: ..., 6, 4, 4 rather than ..., 6, 6, 2: a 2-row block
/// keeps only 4 FMA chains busy, too few to hide the FMA latency, so it runs at half speed).
static inline long rind_tile_block_start(long j, long N, int block) {
    long blocks = (N + block - 1) / block;
    if (j >= blocks) return N;
    long tail = N - (blocks - 1) * block;
    if (j == blocks - 1 && blocks >= 2 && 2 * tail < block) return (blocks - 2) * block + (block + tail + 1) / 2;
    return j * block;
}

/// The micro-kernel of the row kernels' code path (`rind_kernels_isa`): AVX-512 (8 rows), AVX2
/// (6 rows: 12 of its 16 registers accumulate) or portable (8 rows).
rind_tile_kernel rind_pgemm_tile_kernel(void);

/// dst = the packed form (panels of 16 outputs, k-major, zero past OC) of the (OC, C) matrix whose
/// element (o, k) is w[o * strideO + k * strideK].
void rind_pgemm_pack_strided(float *dst, const float *w, long C, long OC, long strideO, long strideK);

#endif
