#include "rind_rows.h"
#include "rind_kernels.h"
#include "rind_pool.h"

typedef struct {
    float *out; const float *inp, *weight, *bias; long N, C, bands; float eps;
} layer_norm_call;

static void layer_norm_band(const void *context, long t, int slot) {
    (void)slot;
    const layer_norm_call *a = context;
    long r0 = a->N * t / a->bands, r1 = a->N * (t + 1) / a->bands;
    rind_layer_norm(a->out + r0 * a->C, a->inp + r0 * a->C, a->weight, a->bias, r1 - r0, a->C, a->eps);
}

void rind_layer_norm_pool(float *out, const float *inp, const float *weight, const float *bias,
                          long N, long C, float eps, int threads) {
    if (threads < 2 || N < 2 || N * C < 16384) {
        rind_layer_norm(out, inp, weight, bias, N, C, eps);
        return;
    }
    // About 4 bands per thread (a late worker leaves its bands to the caller), at least 4 rows each.
    long bands = 4L * threads;
    if (bands > N / 4) bands = N / 4 > 1 ? N / 4 : 2;
    layer_norm_call a = {out, inp, weight, bias, N, C, bands, eps};
    rind_pool_run(layer_norm_band, &a, bands, threads);
}
