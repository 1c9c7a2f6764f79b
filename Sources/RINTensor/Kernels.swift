import CKernels
import Foundation

/// The code path of the row kernels (GELU, softmax, LayerNorm, adds): C compiled per vector ISA
/// (Sources/CKernels), the widest this CPU supports chosen on first use. Process-wide; tests
/// switch it to check every path the machine has.
public enum KernelISA: Int32, CaseIterable, Sendable, CustomStringConvertible {
    case baseline = 0, avx2 = 1, avx512 = 2

    public var description: String { ["baseline", "avx2", "avx512"][Int(rawValue)] }

    /// Paths this CPU can run, narrowest first.
    public static var supported: [KernelISA] { allCases.filter { rind_kernels_supports($0.rawValue) != 0 } }

    /// The path in use.
    public static var current: KernelISA {
        get { KernelISA(rawValue: rind_kernels_isa()) ?? .baseline }
        set { precondition(rind_kernels_set_isa(newValue.rawValue) == 0, "KernelISA: \(newValue) not supported here") }
    }
}

// Elementwise and row kernels (llm.c style: outputs first, then inputs, weights, dimensions; the
// caller owns every buffer; nothing here allocates).
//
// Shape legend
//   N   rows (tokens)
//   C   row width (channels)
//   n   element count of a flat array
//
// The hot kernels forward to Sources/CKernels (per-ISA C, `KernelISA`); each has a plain scalar
// Swift `...Reference` twin beside it, and RINTensorTests checks one against the other on every
// path the machine supports.

// exp and GELU (exact erf form) are Sources/CKernels/kernels_body.inc's fast_exp and fast_gelu:
// e^x as 2^k e^r with a degree-7 Taylor polynomial for e^r (relative error < 3e-7), erf by
// Abramowitz and Stegun 7.1.26 (|error| <= 1.5e-7), written so that 1 + erf(z) for negative z
// never cancels.

// MARK: - add

/// out (n) += inp (n).
@inlinable
public func addInPlace(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, _ n: Int) {
    rind_add(out, inp, n)
}

/// Reference of `addInPlace`.
public func addInPlaceReference(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, _ n: Int) {
    for i in 0..<n { out[i] += inp[i] }
}

// MARK: - GELU

/// x (n) = GELU(x (n) + bias (n)), in place: the bias of the feed-forward's first layer fused with
/// its activation.
@inlinable
public func biasGELUInPlace(_ x: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, _ n: Int) {
    rind_bias_gelu_rows(x, n, bias, 1, n)
}

/// x (N, C) = GELU(x + bias (C)) row by row, in place.
@inlinable
public func biasGELURows(_ x: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, _ N: Int, _ C: Int) {
    rind_bias_gelu_rows(x, C, bias, N, C)
}

/// x (N, C; rows ld apart) += bias (C).
@inlinable
public func addBiasRows(_ x: UnsafeMutablePointer<Float>, ld: Int, _ bias: UnsafePointer<Float>, _ N: Int, _ C: Int) {
    rind_add_bias_rows(x, ld, bias, N, C)
}

/// out (n) = GELU(inp (n)), exact erf form. out may equal inp.
public func gelu(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, _ n: Int) {
    rind_gelu(out, inp, n)
}

/// Reference of `gelu`: libm's erff.
public func geluReference(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, _ n: Int) {
    for i in 0..<n {
        let x = inp[i]
        out[i] = 0.5 * x * (1 + erff(x * 0.7071067811865476))
    }
}

/// out (n) = exp(inp (n)) by the kernels' exp; exposed so tests can check it against libm.
public func expVector(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, _ n: Int) {
    rind_exp(out, inp, n)
}

// MARK: - SiLU

/// out (n) = x * sigmoid(x), in place. Only the time MLP uses it (L values per image), so it is scalar.
public func siluInPlace(_ x: UnsafeMutablePointer<Float>, _ n: Int) {
    for i in 0..<n { x[i] = x[i] / (1 + expf(-x[i])) }
}

// MARK: - LayerNorm

/// out (N, C) = (inp - mean) / sqrt(var + eps) * weight (C) + bias (C), per row; population
/// variance. out may equal inp.
@inlinable
public func layerNorm(
    _ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>,
    _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>,
    _ N: Int, _ C: Int, eps: Float = 1e-6
) {
    rind_layer_norm(out, inp, weight, bias, N, C, eps)
}

/// `layerNorm` over bands of rows on the packed backend's pool, on the matrix threads
/// (`BLASThreads`); each row's bits are those of `layerNorm`.
@inlinable
public func layerNormOnMatrixThreads(
    _ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>,
    _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>,
    _ N: Int, _ C: Int, eps: Float = 1e-6
) {
    rind_layer_norm_pool(out, inp, weight, bias, N, C, eps, rind_gemm_threads())
}

/// Reference of `layerNorm` (double accumulation).
public func layerNormReference(
    _ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>,
    _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>,
    _ N: Int, _ C: Int, eps: Float = 1e-6
) {
    for row in 0..<N {
        var mean = 0.0
        for i in 0..<C { mean += Double(inp[row * C + i]) }
        mean /= Double(C)
        var variance = 0.0
        for i in 0..<C { let d = Double(inp[row * C + i]) - mean; variance += d * d }
        variance /= Double(C)
        let rstd = 1 / (variance + Double(eps)).squareRoot()
        for i in 0..<C {
            out[row * C + i] = Float((Double(inp[row * C + i]) - mean) * rstd) * weight[i] + bias[i]
        }
    }
}

// MARK: - softmax

/// x (N, C): each row replaced by its softmax, in place (max subtracted first).
@inlinable
public func softmaxRows(_ x: UnsafeMutablePointer<Float>, _ N: Int, _ C: Int) {
    rind_softmax_rows(x, N, C)
}

/// Reference of `softmaxRows`.
public func softmaxRowsReference(_ x: UnsafeMutablePointer<Float>, _ N: Int, _ C: Int) {
    for row in 0..<N {
        let r = x + row * C
        var maxv = -Float.infinity
        for i in 0..<C { maxv = max(maxv, r[i]) }
        var sum: Double = 0
        for i in 0..<C { r[i] = expf(r[i] - maxv); sum += Double(r[i]) }
        for i in 0..<C { r[i] = Float(Double(r[i]) / sum) }
    }
}

// MARK: - patches

/// Cuts images into patch rows: out (B * n, P) from inp (B, F, H, W, Cc) (channels last), with
/// n = (F/pt)(H/p)(W/p) tokens in row-major (frame-patch, row-patch, col-patch) order and each patch
/// flattened in (pt, row, col, channel) order, P = pt*p*p*Cc (checkpoints/README.md).
public func patchify(
    _ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>,
    _ B: Int, _ F: Int, _ H: Int, _ W: Int, _ Cc: Int, _ p: Int, _ pt: Int
) {
    movePatches(out, UnsafeMutablePointer(mutating: inp), B, F, H, W, Cc, p, pt, toPatches: true)
}

/// Inverse of `patchify`: out (B, F, H, W, Cc) from inp (B * n, P).
public func unpatchify(
    _ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>,
    _ B: Int, _ F: Int, _ H: Int, _ W: Int, _ Cc: Int, _ p: Int, _ pt: Int
) {
    movePatches(UnsafeMutablePointer(mutating: inp), out, B, F, H, W, Cc, p, pt, toPatches: false)
}

/// One loop nest for both directions, so patchify and unpatchify cannot disagree on the order.
/// A patch row of p*Cc floats is contiguous in the image, so the copy moves whole runs.
@usableFromInline
func movePatches(
    _ patches: UnsafeMutablePointer<Float>, _ image: UnsafeMutablePointer<Float>,
    _ B: Int, _ F: Int, _ H: Int, _ W: Int, _ Cc: Int, _ p: Int, _ pt: Int, toPatches: Bool
) {
    let fp = F / pt, hp = H / p, wp = W / p
    let run = p * Cc
    var token = 0
    for b in 0..<B {
        let img = image + b * F * H * W * Cc
        for tf in 0..<fp {
            for th in 0..<hp {
                for tw in 0..<wp {
                    var dst = patches + token * pt * p * run
                    for f in 0..<pt {
                        for r in 0..<p {
                            let src = img + (((tf * pt + f) * H + th * p + r) * W + tw * p) * Cc
                            if toPatches { dst.update(from: src, count: run) } else { src.update(from: dst, count: run) }
                            dst += run
                        }
                    }
                    token += 1
                }
            }
        }
    }
}
