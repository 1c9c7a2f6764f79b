import Foundation
// Matrix products, all through `gemm` (row-major sgemm on the current `MatmulBackend`).
//
// Shape legend
//   N   rows of the input (tokens, possibly several images' tokens stacked)
//   C   input width
//   OC  output width
//   Nq, Nk  query and key rows of one attention; Cw the inner width (all heads); H heads; hd = Cw / H
// Linear weights are PyTorch's (OC, C): out = inp @ weight^T + bias, which is sgemm with B transposed,
// so the checkpoint's float32 tensors are used straight from the memory map without a copy.

/// out (N, OC) = inp (N, C) @ weight (OC, C)^T + bias (OC). With `transposedWeight` the weight is
/// stored (C, OC) instead (see `weightLayout`).
@inlinable
public func linear(
    _ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>,
    _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
    _ N: Int, _ C: Int, _ OC: Int, transposedWeight: Bool = false
) {
    linearStrided(out, OC, inp, C, weight, bias, N, C, OC, transposedWeight: transposedWeight)
}

/// Whether a (OC, C) weight is better kept transposed as (C, OC), so that products run as sgemm
/// NN instead of NT. Measured with OpenBLAS 0.3.21 on this project's Zen 3 machine (one thread):
/// NN beats NT clearly when the layer widens (128x3072x768: 62 vs 40 GFLOP/s; 128x2048x512: 64 vs
/// 57) and ties when it narrows, so widening layers (the feed-forwards' fc1) are transposed once at
/// load and the rest stay in place in the memory map.
public func prefersTransposedWeight(inputs C: Int, outputs OC: Int) -> Bool { OC > C }

/// As `linear`, with explicit row strides: out rows are `ldOut` floats apart, inp rows `ldInp` apart.
/// Lets the time MLP write its token straight into a row of the latent array.
@inlinable
public func linearStrided(
    _ out: UnsafeMutablePointer<Float>, _ ldOut: Int, _ inp: UnsafePointer<Float>, _ ldInp: Int,
    _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
    _ N: Int, _ C: Int, _ OC: Int, transposedWeight: Bool = false
) {
    gemm(transA: false, transB: !transposedWeight, N, OC, C, alpha: 1, inp, ldInp,
                weight, transposedWeight ? OC : C, beta: 0, out, ldOut)
    if let bias { addBiasRows(out, ld: ldOut, bias, N, OC) }
}

/// out (N, OC) += inp (N, C) @ weight (OC, C)^T + bias (OC): the residual update, accumulated by
/// sgemm itself (beta = 1) so the product never needs its own buffer.
@inlinable
public func linearAccumulate(
    _ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>,
    _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
    _ N: Int, _ C: Int, _ OC: Int, transposedWeight: Bool = false
) {
    gemm(transA: false, transB: !transposedWeight, N, OC, C, alpha: 1, inp, C,
                weight, transposedWeight ? OC : C, beta: 1, out, OC)
    if let bias { addBiasRows(out, ld: OC, bias, N, OC) }
}

/// out (N, OC) = GELU(inp (N, C) @ weight (OC, C)^T + bias (OC)): the first feed-forward layer with
/// its bias and activation fused into one pass over the output.
@inlinable
public func linearGELU(
    _ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>,
    _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>,
    _ N: Int, _ C: Int, _ OC: Int, transposedWeight: Bool = false
) {
    gemm(transA: false, transB: !transposedWeight, N, OC, C, alpha: 1, inp, C,
                weight, transposedWeight ? OC : C, beta: 0, out, OC)
    biasGELURows(out, bias, N, OC)
}

/// c (M, N) = a (M, K) @ b (K, N), plain row-major sgemm; used by the benchmark to measure the
/// peak of the library backends with the same library and thread count as the model.
public func sgemm(
    _ c: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
    _ M: Int, _ K: Int, _ N: Int
) {
    gemm(transA: false, transB: false, M, N, K, alpha: 1, a, K, b, N, beta: 0, c, N)
}

/// Multi-head attention for one image: out (Nq, Cw) = concat_h softmax(q_h k_h^T / sqrt(hd)) v_h.
///
/// q (Nq, Cw), k (Nk, Cw), v (Nk, Cw); head h is the contiguous column slice [h*hd, (h+1)*hd)
/// (checkpoints/README.md). scores (Nq, Nk) is caller-owned scratch. Each head is two strided sgemm
/// calls (the leading dimension Cw picks the slice), so nothing is gathered or transposed.
public func attention(
    _ out: UnsafeMutablePointer<Float>, _ scores: UnsafeMutablePointer<Float>,
    _ q: UnsafePointer<Float>, _ k: UnsafePointer<Float>, _ v: UnsafePointer<Float>,
    _ Nq: Int, _ Nk: Int, _ Cw: Int, _ H: Int
) {
    precondition(Cw % H == 0, "attention: width \(Cw) not divisible by \(H) heads")
    let hd = Cw / H
    let scale = 1 / Float(hd).squareRoot()
    for h in 0..<H {
        let off = h * hd
        // scores (Nq, Nk) = scale * q_h (Nq, hd) @ k_h (Nk, hd)^T
        gemm(transA: false, transB: true, Nq, Nk, hd, alpha: scale, q + off, Cw, k + off, Cw, beta: 0, scores, Nk)
        softmaxRows(scores, Nq, Nk)
        // out_h (Nq, hd) = scores (Nq, Nk) @ v_h (Nk, hd)
        gemm(transA: false, transB: false, Nq, hd, Nk, alpha: 1, scores, Nk, v + off, Cw, beta: 0, out + off, Cw)
    }
}

/// Plain triple-loop reference of `attention`, for tests only.
public func attentionReference(
    _ out: UnsafeMutablePointer<Float>,
    _ q: UnsafePointer<Float>, _ k: UnsafePointer<Float>, _ v: UnsafePointer<Float>,
    _ Nq: Int, _ Nk: Int, _ Cw: Int, _ H: Int
) {
    let hd = Cw / H
    let scale = 1 / Float(hd).squareRoot()
    var row = [Float](repeating: 0, count: Nk)
    for h in 0..<H {
        for i in 0..<Nq {
            var maxv = -Float.infinity
            for j in 0..<Nk {
                var s: Float = 0
                for d in 0..<hd { s += q[i * Cw + h * hd + d] * k[j * Cw + h * hd + d] }
                row[j] = s * scale
                maxv = max(maxv, row[j])
            }
            var sum: Float = 0
            for j in 0..<Nk { row[j] = expf(row[j] - maxv); sum += row[j] }
            for d in 0..<hd {
                var acc: Float = 0
                for j in 0..<Nk { acc += row[j] / sum * v[j * Cw + h * hd + d] }
                out[i * Cw + h * hd + d] = acc
            }
        }
    }
}

/// Plain reference of `linear`, for tests only.
public func linearReference(
    _ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>,
    _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
    _ N: Int, _ C: Int, _ OC: Int
) {
    for r in 0..<N {
        for o in 0..<OC {
            var s: Float = bias?[o] ?? 0
            for c in 0..<C { s += inp[r * C + c] * weight[o * C + c] }
            out[r * OC + o] = s
        }
    }
}
