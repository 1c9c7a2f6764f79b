// The packed backend's micro-kernels and panel packing, shared inside CKernels by rind_pgemm.c
// (linear layers) and rind_attention.c (attention's two products).
#ifndef RIND_PGEMM_TILES_H
#define RIND_PGEMM_TILES_H

#define RIND_TILE_ROWS 8
#define RIND_TILE_LD 32

/// tile (rows x 16*panels, row stride RIND_TILE_LD) = a (rows, K; row stride lda) times `panels`
/// (1 or 2) consecutive packed panels starting at b (panel stride K * 16); rows <= RIND_TILE_ROWS.
/// Each output is one left-to-right FMA chain over k.
typedef void (*rind_tile_fn)(int rows, int panels, long K, const float *a, long lda, const float *b, float *tile);

/// The micro-kernel of the row kernels' code path (`rind_kernels_isa`): AVX-512, AVX2 or portable.
rind_tile_fn rind_pgemm_tile_kernel(void);

/// dst = the packed form (panels of 16 outputs, k-major, zero past OC) of the (OC, C) matrix whose
/// element (o, k) is w[o * strideO + k * strideK].
void rind_pgemm_pack_strided(float *dst, const float *w, long C, long OC, long strideO, long strideK);

#endif
