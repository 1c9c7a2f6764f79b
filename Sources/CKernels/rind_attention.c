#include "rind_attention.h"
#include "rind_kernels.h"
#include "rind_pgemm_tiles.h"
#include "rind_pool.h"

#include <math.h>
#include <stddef.h>

#define PANEL 16

static long round_up(long x) { return (x + PANEL - 1) / PANEL * PANEL; }

// One (image, head)'s packs: k_h^T as the weight of a product with hd inputs and Nk outputs
// (round_up(Nk) * hd floats), then v_h as one with Nk inputs and hd outputs (round_up(hd) * Nk).
static long keys_floats(long Nk, long hd) { return round_up(Nk) * hd; }
static long head_floats(long Nk, long hd) { return keys_floats(Nk, hd) + round_up(hd) * Nk; }

long rind_attention_pack_floats(long B, long Nk, long Cw, long H) { return B * H * head_floats(Nk, Cw / H); }

long rind_attention_scratch_floats(long Nk) { return RIND_TILE_ROWS * Nk; }

typedef struct {
    float *out; const float *q, *k, *v;
    long B, Nq, Nk, Cw, H, hd, queryBlocks;
    float scale;
    float *packs, *scratch;
    rind_tile_kernel kernel;
} attention_call;

// Task t packs k_h^T (even t) or v_h (odd t) of image and head t / 2.
static void pack_task(const void *context, long t, int slot) {
    (void)slot;
    const attention_call *a = context;
    long bh = t / 2, b = bh / a->H, h = bh % a->H;
    float *dst = a->packs + bh * head_floats(a->Nk, a->hd);
    long base = b * a->Nk * a->Cw + h * a->hd;
    if (t % 2 == 0)   // element (key j, column d) = k[j][d]: outputs are keys, inputs columns
        rind_pgemm_pack_strided(dst, a->k + base, a->hd, a->Nk, a->Cw, 1);
    else              // element (column d, key j) = v[j][d]: outputs are columns, inputs keys
        rind_pgemm_pack_strided(dst + keys_floats(a->Nk, a->hd), a->v + base, a->Nk, a->hd, 1, a->Cw);
}

// Task t: query rows [n r, n r + n) of image b, head h (n = the micro-kernel's rows), with
// t = (b * H + h) * queryBlocks + r.
static void rows_task(const void *context, long t, int slot) {
    const attention_call *a = context;
    long n = a->kernel.rows, bh = t / a->queryBlocks, r0 = t % a->queryBlocks * n, b = bh / a->H, h = bh % a->H;
    long Nk = a->Nk, hd = a->hd, Cw = a->Cw;
    int rows = a->Nq - r0 < n ? (int)(a->Nq - r0) : (int)n;
    const float *keys = a->packs + bh * head_floats(Nk, hd), *values = keys + keys_floats(Nk, hd);
    const float *q = a->q + (b * a->Nq + r0) * Cw + h * hd;
    float *out = a->out + (b * a->Nq + r0) * Cw + h * hd;
    float *scores = a->scratch + slot * rind_attention_scratch_floats(Nk);   // (rows, Nk)

    // scores = scale * q_h k_h^T, 32 keys per micro-kernel pass.
    rind_tile_out o = {NULL, Nk, NULL, RIND_TILE_SCALE, 0, a->scale};
    for (long j0 = 0; j0 < Nk; j0 += 2 * PANEL) {
        int panels = Nk - j0 > PANEL ? 2 : 1;
        o.out = scores + j0;
        o.cols = (int)(Nk - j0 < 2 * PANEL ? Nk - j0 : 2 * PANEL);
        a->kernel.run(rows, panels, hd, q, Cw, keys + j0 * hd, &o);
    }
    rind_softmax_rows(scores, rows, Nk);
    // out_h = scores v_h, 32 columns per pass.
    o = (rind_tile_out){NULL, Cw, NULL, RIND_TILE_STORE, 0, 1.0f};
    for (long d0 = 0; d0 < hd; d0 += 2 * PANEL) {
        int panels = hd - d0 > PANEL ? 2 : 1;
        o.out = out + d0;
        o.cols = (int)(hd - d0 < 2 * PANEL ? hd - d0 : 2 * PANEL);
        a->kernel.run(rows, panels, Nk, scores, Nk, values + d0 * Nk, &o);
    }
}

void rind_attention(float *out, const float *q, const float *k, const float *v, long B, long Nq, long Nk,
                    long Cw, long H, float *packs, float *scratch, int slots, int threads) {
    if (B <= 0 || Nq <= 0 || Nk <= 0 || H <= 0) return;
    long hd = Cw / H;
    rind_tile_kernel kernel = rind_pgemm_tile_kernel();
    attention_call a = {out, q, k, v, B, Nq, Nk, Cw, H, hd, (Nq + kernel.rows - 1) / kernel.rows,
                        1.0f / sqrtf((float)hd), packs, scratch, kernel};
    int n = threads < slots ? threads : slots;
    rind_pool_run(pack_task, &a, 2 * B * H, n);
    rind_pool_run(rows_task, &a, B * H * a.queryBlocks, n);
}
