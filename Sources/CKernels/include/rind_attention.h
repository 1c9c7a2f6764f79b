// Multi-head attention on the packed backend's micro-kernels and thread pool: every image and
// head of a batch in one call, split into many small tasks over the matrix threads.
//
// Shape legend: B images; Nq query rows and Nk key rows per image; Cw the inner width (all heads);
// H heads of hd = Cw / H columns each (head h is the column slice [h*hd, (h+1)*hd)).
//
// out (B*Nq, Cw) = concat_h softmax(q_h k_h^T / sqrt(hd)) v_h, image by image. First each
// (image, head)'s k_h^T and v_h are packed into the micro-kernels' 16-wide panels (`packs`), then
// each task takes 8 query rows of one image and head: their scores against every key (one
// micro-kernel pass per 32 keys), the softmax of those rows (the row kernels' `rind_softmax_rows`),
// and their output columns (one pass per 32 columns of v_h). Each output is one FMA chain in a
// fixed order, so a row's result does not depend on the batch, the thread count or the split.
#ifndef RIND_ATTENTION_H
#define RIND_ATTENTION_H

#ifdef __cplusplus
extern "C" {
#endif

/// Floats `packs` must hold for a call with these dimensions.
long rind_attention_pack_floats(long B, long Nk, long Cw, long H);

/// Floats of scratch each thread needs: the scores of 8 query rows (8 * Nk).
long rind_attention_scratch_floats(long Nk);

/// out (B*Nq, Cw; rows Cw apart) from q (B*Nq, Cw), k and v (B*Nk, Cw). packs: scratch of
/// `rind_attention_pack_floats`; scratch: `slots` * `rind_attention_scratch_floats(Nk)` floats; at
/// most min(threads, slots) threads take part. Cw must be a multiple of H.
void rind_attention(float *out, const float *q, const float *k, const float *v, long B, long Nq, long Nk,
                    long Cw, long H, float *packs, float *scratch, int slots, int threads);

#ifdef __cplusplus
}
#endif
#endif
