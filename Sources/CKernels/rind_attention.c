#include "rind_attention.h"
#include "rind_kernels.h"
#include "rind_pgemm_tiles.h"
#include "rind_pool.h"

#include <math.h>
#include <stddef.h>

#define PANEL 16

static long round_up(long x) { return (x + PANEL - 1) / PANEL * PANEL; }

// A slot's scratch: one head's k_h^T packed as the weight of a product with hd inputs and Nk
// outputs (round_up(Nk) * hd floats), its v_h as one with Nk inputs and hd outputs
// (round_up(hd) * Nk), the scores of one query block (RIND_TILE_ROWS * Nk) and their rows' sums.
static long keys_floats(long Nk, long hd) { return round_up(Nk) * hd; }
static long values_floats(long Nk, long hd) { return round_up(hd) * Nk; }

long rind_attention_scratch_floats(long Nk, long Cw, long H) {
    long hd = Cw / H;
    return keys_floats(Nk, hd) + values_floats(Nk, hd) + RIND_TILE_ROWS * Nk + RIND_TILE_ROWS;
}

typedef struct {
    float *out; const float *q, *k, *v;
    long B, Nq, Nk, Cw, H, hd, queryBlocks, chunks;
    float scale;
    float *scratch; long slotFloats;
    rind_tile_kernel kernel;
} attention_call;

// Query rows [r0, r0 + rows) of image b, head h, against the packed keys and values.
static void query_block(const attention_call *a, long b, long h, long r0, int rows, const float *keys,
                        const float *values, float *scores, float *sums) {
    long Nk = a->Nk, hd = a->hd, Cw = a->Cw;
    const float *q = a->q + (b * a->Nq + r0) * Cw + h * hd;
    float *out = a->out + (b * a->Nq + r0) * Cw + h * hd;

    // scores = scale * q_h k_h^T, 32 keys per micro-kernel pass.
    rind_tile_out o = {NULL, Nk, NULL, RIND_TILE_SCALE, 0, a->scale};
    for (long j0 = 0; j0 < Nk; j0 += 2 * PANEL) {
        int panels = Nk - j0 > PANEL ? 2 : 1;
        o.out = scores + j0;
        o.cols = (int)(Nk - j0 < 2 * PANEL ? Nk - j0 : 2 * PANEL);
        a->kernel.run(rows, panels, hd, q, Cw, keys + j0 * hd, &o);
    }
    // e^(scores - max) and their sums; the division by the sum is applied to the rows of out_h.
    rind_softmax_exp_rows(scores, rows, Nk, sums);
    // out_h = e^scores v_h, 32 columns per pass, then each row times 1 / its sum.
    o = (rind_tile_out){NULL, Cw, NULL, RIND_TILE_STORE, 0, 1.0f};
    for (long d0 = 0; d0 < hd; d0 += 2 * PANEL) {
        int panels = hd - d0 > PANEL ? 2 : 1;
        o.out = out + d0;
        o.cols = (int)(hd - d0 < 2 * PANEL ? hd - d0 : 2 * PANEL);
        a->kernel.run(rows, panels, Nk, scores, Nk, values + d0 * Nk, &o);
    }
    for (int i = 0; i < rows; i++) {
        float inv = 1.0f / sums[i], *row = out + i * Cw;
        for (long d = 0; d < hd; d++) row[d] *= inv;
    }
}

// Task t = (b * H + h) * chunks + c: packs image b's head h into the slot's scratch, then runs
// chunk c of its query blocks.
static void head_task(const void *context, long t, int slot) {
    const attention_call *a = context;
    long bh = t / a->chunks, c = t % a->chunks, b = bh / a->H, h = bh % a->H;
    long Nk = a->Nk, hd = a->hd, n = a->kernel.rows;
    float *keys = a->scratch + slot * a->slotFloats, *values = keys + keys_floats(Nk, hd);
    float *scores = values + values_floats(Nk, hd), *sums = scores + RIND_TILE_ROWS * Nk;
    long base = b * Nk * a->Cw + h * hd;
    // element (key j, column d) = k[j][d]: outputs are keys, inputs columns
    rind_pgemm_pack_strided(keys, a->k + base, hd, Nk, a->Cw, 1);
    // element (column d, key j) = v[j][d]: outputs are columns, inputs keys
    rind_pgemm_pack_strided(values, a->v + base, Nk, hd, 1, a->Cw);
    long first = a->queryBlocks * c / a->chunks, last = a->queryBlocks * (c + 1) / a->chunks;
    for (long blk = first; blk < last; blk++) {
        long r0 = rind_tile_block_start(blk, a->Nq, (int)n);
        query_block(a, b, h, r0, (int)(rind_tile_block_start(blk + 1, a->Nq, (int)n) - r0), keys, values, scores, sums);
    }
}

void rind_attention(float *out, const float *q, const float *k, const float *v, long B, long Nq, long Nk,
                    long Cw, long H, float *scratch, int slots, int threads) {
    if (B <= 0 || Nq <= 0 || Nk <= 0 || H <= 0) return;
    long hd = Cw / H;
    rind_tile_kernel kernel = rind_pgemm_tile_kernel();
    int n = threads < slots ? threads : slots;
    long queryBlocks = (Nq + kernel.rows - 1) / kernel.rows;
    // Whole heads while there are at least 4 per thread (each head packed once, by the thread that
    // runs it); otherwise each head's query blocks in as many chunks as make about 4 tasks per
    // thread, each chunk packing its head again.
    long chunks = (4L * n + B * H - 1) / (B * H);
    if (chunks > queryBlocks) chunks = queryBlocks;
    attention_call a = {out, q, k, v, B, Nq, Nk, Cw, H, hd, queryBlocks, chunks, 1.0f / sqrtf((float)hd),
                        scratch, rind_attention_scratch_floats(Nk, Cw, H), kernel};
    rind_pool_run(head_task, &a, B * H * chunks, n);
}
