// Multi-head attention on the packed backend's micro-kernels and thread pool: every image and
// head of a batch in one call, split into many small tasks over the matrix threads.
//
// Shape legend: B images; Nq query rows and Nk key rows per image; Cw the inner width (all heads);
// H heads of hd = Cw / H columns each (head h is the column slice [h*hd, (h+1)*hd)).
//
// out (B*Nq, Cw) = concat_h softmax(q_h k_h^T / sqrt(hd)) v_h, image by image, as one piece of work
// on the pool whose tasks are (image, head) pairs, or chunks of a head's query rows when there are
// fewer than 4 pairs per thread. A task packs its head's k_h^T and v_h into the micro-kernels'
// 16-wide panels in its thread's scratch (where they stay in that core's caches), then takes its
// query rows a block of the micro-kernel's rows at a time: their scores against every key (one
// micro-kernel pass per 32 keys), e^(score - the row's maximum) and the row's sum (the row kernels'
// `rind_softmax_exp_rows`), their output columns (one pass per 32 columns of v_h), each output row
// scaled by 1 / its sum at the end (hd values instead of Nk scores). Each output is one FMA chain in
// a fixed order, so a row's result does not depend on the batch, the thread count or the split.
#ifndef RIND_ATTENTION_H
#define RIND_ATTENTION_H

#ifdef __cplusplus
extern "C" {
#endif

/// Floats of scratch each thread needs: one head's packed keys and values, and the scores of one
/// block of query rows.
long rind_attention_scratch_floats(long Nk, long Cw, long H);

/// out (B*Nq, Cw; rows Cw apart) from q (B*Nq, Cw), k and v (B*Nk, Cw). scratch: `slots` *
/// `rind_attention_scratch_floats(Nk, Cw, H)` floats; at most min(threads, slots) threads take
/// part. Cw must be a multiple of H.
void rind_attention(float *out, const float *q, const float *k, const float *v, long B, long Nq, long Nk,
                    long Cw, long H, float *scratch, int slots, int threads);

#ifdef __cplusplus
}
#endif
#endif
