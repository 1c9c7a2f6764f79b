// Row kernels run on the packed backend's thread pool (rind_pool.c): the steps between a block's
// products that would otherwise run on the calling thread alone while the pool's workers wait.
#ifndef RIND_ROWS_H
#define RIND_ROWS_H

#ifdef __cplusplus
extern "C" {
#endif

/// `rind_layer_norm` over bands of rows on up to `threads` threads (one thread under 16384
/// values). Each row is normalised by the same code whatever the split: same bits.
void rind_layer_norm_pool(float *out, const float *inp, const float *weight, const float *bias,
                          long N, long C, float eps, int threads);

#ifdef __cplusplus
}
#endif
#endif
