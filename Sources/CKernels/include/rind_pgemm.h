// Linear layers on weights packed once at load: out = inp W^T + bias with W the (OC, C) weight as
// PyTorch stores it. The weight is repacked into column panels of RIND_PGEMM_PANEL outputs, each
// panel k-major (panel p holds W[p*16 + j][k] at (p*C + k)*16 + j, zero past OC), so a micro-kernel
// streams one panel row per k with no per-call packing. Micro-kernels: AVX-512 (8 rows x 32
// outputs), AVX2 + FMA (6 x 16), portable C; picked by the row kernels' code path
// (`rind_kernels_isa`). Each output is one left-to-right FMA chain over k, so a row's result does not
// depend on how many rows are in the call, how the call is split over threads, or where the row
// sits in a tile: batched and solo runs of an image give the same bits.
//
// Threads: the pool of Sources/CKernels/rind_pool.c. A product of 2 MFLOP or more is cut into
// about 8 tasks per thread (bands of output panels, then of rows; none under ~0.3 MFLOP) that the
// caller and the workers take from a counter, so a worker that wakes late or loses its core leaves
// its share to the caller (`rind_pgemm_many` puts several independent products' tasks on one
// counter). One product runs on the pool at a time; a caller that finds the pool
// busy runs its product on its own thread instead.
#ifndef RIND_PGEMM_H
#define RIND_PGEMM_H

#ifdef __cplusplus
extern "C" {
#endif

#define RIND_PGEMM_PANEL 16

/// Floats a packed (OC, C) weight occupies: ceil(OC / 16) * 16 * C.
long rind_pgemm_packed_floats(long C, long OC);

/// dst = the packed form of w (OC, C), row-major.
void rind_pgemm_pack(float *dst, const float *w, long C, long OC);

/// What a product does with its result r = inp W^T + bias.
enum { RIND_PGEMM_STORE = 0, RIND_PGEMM_ACCUMULATE = 1, RIND_PGEMM_GELU = 2 };

/// out (N, OC; row stride ldOut) = r, += r, or = GELU(r) (mode), with inp (N, C; row stride ldInp),
/// packed from `rind_pgemm_pack`, bias (OC) or NULL; on up to `threads` threads.
void rind_pgemm(float *out, long ldOut, const float *inp, long ldInp, const float *packed,
                const float *bias, long N, long C, long OC, int mode, int threads);

/// One product of `rind_pgemm_many`: rind_pgemm's arguments.
typedef struct {
    float *out; long ldOut; const float *inp; long ldInp; const float *packed; const float *bias;
    long N, C, OC; int mode;
} rind_pgemm_job;

/// The most products one `rind_pgemm_many` call takes (it ignores those past it).
#define RIND_PGEMM_MANY 4

/// Runs up to RIND_PGEMM_MANY independent products (no output overlaps another's input or output,
/// e.g. attention's q, k and v projections) as one piece of work on the pool: one start and one
/// wait instead of one per product, and the threads that finish one product's tasks go on with
/// the next one's. Each product's results are those `rind_pgemm` gives.
void rind_pgemm_many(const rind_pgemm_job *jobs, int count, int threads);

/// Starts the pool's workers for up to `threads` threads now (at load), so that no product has to.
void rind_pgemm_prepare(int threads);

#ifdef __cplusplus
}
#endif
#endif
