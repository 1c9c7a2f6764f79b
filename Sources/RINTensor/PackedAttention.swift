import CKernels

/// Multi-head attention of a whole batch on the `packed` backend: rind's micro-kernels and thread
/// pool (Sources/CKernels/include/rind_attention.h). Every (image, head, 8 query rows) is one task
/// taken by whichever matrix thread is free, so attention runs on all cores instead of as many
/// one-thread sgemm calls per head; a row's result does not depend on the batch or the threads.
///
/// Shapes as in `attention`, for B images stacked: q (B*Nq, Cw), k and v (B*Nk, Cw), out (B*Nq, Cw).
public enum PackedAttention {
    /// Floats of the `packs` scratch for a call with these dimensions.
    public static func packFloats(batch B: Int, keys Nk: Int, width Cw: Int, heads H: Int) -> Int {
        rind_attention_pack_floats(B, Nk, Cw, H)
    }

    /// Floats of per-thread scratch (`scratch` holds `slots` of them).
    public static func scratchFloats(keys Nk: Int) -> Int { rind_attention_scratch_floats(Nk) }

    /// out (B*Nq, Cw) = concat_h softmax(q_h k_h^T / sqrt(hd)) v_h, image by image, on up to
    /// min(matrix threads, slots) threads.
    public static func run(
        _ out: UnsafeMutablePointer<Float>, _ q: UnsafePointer<Float>, _ k: UnsafePointer<Float>,
        _ v: UnsafePointer<Float>, batch B: Int, queries Nq: Int, keys Nk: Int, width Cw: Int, heads H: Int,
        packs: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>, slots: Int
    ) {
        precondition(Cw % H == 0, "PackedAttention: width \(Cw) not divisible by \(H) heads")
        rind_attention(out, q, k, v, B, Nq, Nk, Cw, H, packs, scratch, Int32(slots), rind_gemm_threads())
    }
}
