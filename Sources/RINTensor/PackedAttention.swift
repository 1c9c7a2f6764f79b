import CKernels

/// Multi-head attention of a whole batch on the `packed` backend: rind's micro-kernels and thread
/// pool (Sources/CKernels/include/rind_attention.h). Every (image, head) is one task taken by
/// whichever matrix thread is free (or a chunk of a head's query rows, when there are fewer than 4
/// heads per thread): it packs the head's keys and values in that thread's scratch and runs its
/// query rows against them, so attention runs on all cores instead of as many one-thread sgemm
/// calls per head; a row's result does not depend on the batch or the threads.
///
/// Shapes as in `attention`, for B images stacked: q (B*Nq, Cw), k and v (B*Nk, Cw), out (B*Nq, Cw).
public enum PackedAttention {
    /// Floats of per-thread scratch (`scratch` holds `slots` of them) for keys Nk, width Cw, H heads.
    public static func scratchFloats(keys Nk: Int, width Cw: Int, heads H: Int) -> Int {
        rind_attention_scratch_floats(Nk, Cw, H)
    }

    /// out (B*Nq, Cw) = concat_h softmax(q_h k_h^T / sqrt(hd)) v_h, image by image, on up to
    /// min(matrix threads, slots) threads.
    public static func run(
        _ out: UnsafeMutablePointer<Float>, _ q: UnsafePointer<Float>, _ k: UnsafePointer<Float>,
        _ v: UnsafePointer<Float>, batch B: Int, queries Nq: Int, keys Nk: Int, width Cw: Int, heads H: Int,
        scratch: UnsafeMutablePointer<Float>, slots: Int
    ) {
        precondition(Cw % H == 0, "PackedAttention: width \(Cw) not divisible by \(H) heads")
        rind_attention(out, q, k, v, B, Nq, Nk, Cw, H, scratch, Int32(slots), rind_gemm_threads())
    }
}
