import RINTensor
import XCTest

/// Each optimised kernel against its plain reference twin, on sizes that exercise both the vector
/// body and the scalar tail.
final class KernelTests: XCTestCase {
    func maxDiff(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) } }

    func testAddMatchesReference() {
        ComputePath.forEach { path in
            print("path: \(path)")
            for n in [0, 1, 15, 16, 17, 100] {
                let inp = random(n, seed: 1)
                var a = random(n, seed: 2), b = a
                addInPlace(&a, inp, n)
                addInPlaceReference(&b, inp, n)
                XCTAssertEqual(a, b, "n \(n)")
            }
        }
    }

    func testGELUMatchesErfReference() {
        ComputePath.forEach { path in
            print("path: \(path)")
            // Wide range, including the tails where erf saturates and large negative inputs.
            for n in [1, 7, 16, 33, 1000] {
                let inp = random(n, seed: UInt64(n), scale: 8)
                var fast = [Float](repeating: 0, count: n), reference = fast
                gelu(&fast, inp, n)
                geluReference(&reference, inp, n)
                let d = maxDiff(fast, reference)
                print("gelu n \(n): max|diff| = \(d)")
                XCTAssertLessThan(d, 2e-6, "n \(n)")
            }
            var extremes: [Float] = [-100, -10, -5, 0, 1e-8, -1e-8, 5, 10, 100, 0.5, -0.5, 3, -3, 88, -88, 1]
            var reference = extremes
            geluReference(&reference, extremes, extremes.count)
            gelu(&extremes, extremes, extremes.count)
            XCTAssertLessThan(maxDiff(extremes, reference), 2e-6)
            XCTAssertEqual(extremes[0], 0, accuracy: 1e-30)
        }
    }

    func testBiasGELUFusesBiasAndActivation() {
        ComputePath.forEach { path in
            print("path: \(path)")
            let n = 37
            let inp = random(n, seed: 5, scale: 3), bias = random(n, seed: 6)
            var fused = inp
            biasGELUInPlace(&fused, bias, n)
            let summed = zip(inp, bias).map { $0 + $1 }
            var reference = summed
            geluReference(&reference, summed, n)
            XCTAssertLessThan(maxDiff(fused, reference), 2e-6)
        }
    }

    func testVectorExpMatchesLibm() {
        ComputePath.forEach { path in
            print("path: \(path)")
            let n = 200
            let inp = random(n, seed: 9, scale: 80)
            var out = [Float](repeating: 0, count: n)
            expVector(&out, inp, n)
            for i in 0..<n {
                let reference = expf(inp[i])
                XCTAssertEqual(out[i], reference, accuracy: 3e-7 * reference, "exp(\(inp[i]))")
            }
        }
    }

    /// exp over the whole float range: finite up to ln(FLT_MAX) = 88.7228 (it used to give +inf
    /// from 88.38, where 2^k needs exponent 128), +inf above, subnormal results down to about
    /// -103.97, 0 below, and NaN for NaN.
    func testExpOverTheWholeFloatRange() {
        ComputePath.forEach { path in
            print("path: \(path)")
            let lnMax = logf(Float.greatestFiniteMagnitude)
            var edges: [Float] = [88.3763, 88.38, 88.5, 88.7, 88.72, lnMax.nextDown, lnMax, lnMax.nextUp, 88.73, 89, 100,
                                  1e30, .infinity, -87.3, -87.4, -88, -90, -95, -100, -103, -103.9, -103.97, -104,
                                  -110, -1e30, -.infinity, 0, -0.0, 1, -1, 1e-30, -1e-30, .leastNonzeroMagnitude]
            // Every 1/64 from -105 to 90, vector body and tail alike.
            edges += (0..<(195 * 64)).map { Float(-105) + Float($0) / 64 }
            var out = [Float](repeating: 0, count: edges.count)
            expVector(&out, edges, edges.count)
            var worst: Float = 0
            for (x, y) in zip(edges, out) {
                let reference = expf(x)
                if reference.isInfinite || reference == 0 {
                    XCTAssertEqual(y, reference, "exp(\(x))")
                } else if reference.isNormal {
                    let error = abs(y - reference) / reference
                    worst = max(worst, error)
                    XCTAssertLessThan(error, 1e-6, "exp(\(x)) = \(y), libm \(reference)")
                } else {
                    // Subnormal results: within two units of the last place (2^-149).
                    XCTAssertLessThanOrEqual(abs(y - reference), 2 * Float.leastNonzeroMagnitude, "exp(\(x)) = \(y), libm \(reference)")
                }
            }
            print("exp: worst relative error \(worst) over normal results")
            var nan: [Float] = [.nan, -.nan]
            expVector(&nan, nan, 2)
            XCTAssertTrue(nan[0].isNaN && nan[1].isNaN, "exp(NaN) = \(nan)")
        }
    }

    func testLayerNormMatchesReference() {
        ComputePath.forEach { path in
            print("path: \(path)")
            for (N, C) in [(1, 1), (3, 16), (4, 37), (2, 768)] {
                let inp = random(N * C, seed: UInt64(C), scale: 4).map { $0 + 10 }  // offset: tests the two-pass variance
                let w = random(C, seed: 3), b = random(C, seed: 4)
                var fast = [Float](repeating: 0, count: N * C), reference = fast
                layerNorm(&fast, inp, w, b, N, C)
                layerNormReference(&reference, inp, w, b, N, C)
                XCTAssertLessThan(maxDiff(fast, reference), 5e-6, "(\(N), \(C))")
            }
        }
    }

    /// Split over the packed backend's pool, every row keeps the bits of the one-thread kernel,
    /// in place too (a band run twice would normalise its rows twice), on every path and thread
    /// count (sizes below and above the 16384-value split; 8 x 2048 is two bands, fewer than 5
    /// threads' segments of the pool).
    func testLayerNormOnTheMatrixThreadsGivesTheSameBits() {
        for threads in [1, 2, 3, 5] {
            onEveryPackedPath(threads: threads) { isa in
                for (N, C) in [(3, 40), (8, 2048), (64, 256), (301, 192)] {
                    let inp = random(N * C, seed: UInt64(N), scale: 3), w = random(C, seed: 9), b = random(C, seed: 10)
                    var one = [Float](repeating: 0, count: N * C), pooled = one
                    layerNorm(&one, inp, w, b, N, C)
                    layerNormOnMatrixThreads(&pooled, inp, w, b, N, C)
                    XCTAssertEqual(pooled, one, "\(isa), \(threads) threads, (\(N), \(C))")
                    var inPlace = inp
                    inPlace.withUnsafeMutableBufferPointer {
                        layerNormOnMatrixThreads($0.baseAddress!, $0.baseAddress!, w, b, N, C)
                    }
                    XCTAssertEqual(inPlace, one, "in place: \(isa), \(threads) threads, (\(N), \(C))")
                }
            }
        }
    }

    func testLayerNormInPlace() {
        ComputePath.forEach { path in
            print("path: \(path)")
            let C = 20
            var x = random(2 * C, seed: 8)
            let w = [Float](repeating: 1, count: C), b = [Float](repeating: 0, count: C)
            var reference = x
            layerNormReference(&reference, x, w, b, 2, C)
            x.withUnsafeMutableBufferPointer { layerNorm($0.baseAddress!, $0.baseAddress!, w, b, 2, C) }
            XCTAssertLessThan(maxDiff(x, reference), 5e-6)
        }
    }

    func testSoftmaxMatchesReference() {
        ComputePath.forEach { path in
            print("path: \(path)")
            for (N, C) in [(1, 1), (2, 5), (2, 12), (3, 16), (3, 24), (4, 130)] {
                var fast = random(N * C, seed: UInt64(N + C), scale: 30)
                var reference = fast
                softmaxRows(&fast, N, C)
                softmaxRowsReference(&reference, N, C)
                XCTAssertLessThan(maxDiff(fast, reference), 1e-6, "(\(N), \(C))")
                for r in 0..<N { XCTAssertEqual(fast[(r * C)..<((r + 1) * C)].reduce(0, +), 1, accuracy: 1e-5) }
            }
            // Gaps far past e^-87 (sharp attention): the small terms are 0 to within 1e-30.
            var sharp: [Float] = [0, -90, -200, 5, -1000, 4.5, -87.5, 3]
            var reference = sharp
            softmaxRows(&sharp, 1, sharp.count)
            softmaxRowsReference(&reference, 1, reference.count)
            XCTAssertLessThan(maxDiff(sharp, reference), 1e-6)
            for i in [1, 2, 4, 6] { XCTAssertLessThan(sharp[i], 1e-30, "term \(i)") }
        }
    }

    func testSiLU() {
        var x: [Float] = [-2, 0, 3]
        siluInPlace(&x, 3)
        XCTAssertEqual(x[0], -2 / (1 + expf(2)), accuracy: 1e-7)
        XCTAssertEqual(x[1], 0)
        XCTAssertEqual(x[2], 3 / (1 + expf(-3)), accuracy: 1e-6)
    }

    func testLinearVariantsMatchReference() {
        ComputePath.forEach { path in
            print("path: \(path)")
            let (N, C, OC) = (5, 7, 9)
            let inp = random(N * C, seed: 1), w = random(OC * C, seed: 2), b = random(OC, seed: 3)
            var reference = [Float](repeating: 0, count: N * OC)
            linearReference(&reference, inp, w, b, N, C, OC)
            var out = [Float](repeating: .nan, count: N * OC)
            linear(&out, inp, w, b, N, C, OC)
            XCTAssertLessThan(maxDiff(out, reference), 1e-5)

            let residual = random(N * OC, seed: 4)
            var acc = residual
            linearAccumulate(&acc, inp, w, b, N, C, OC)
            XCTAssertLessThan(maxDiff(acc, zip(residual, reference).map { $0 + $1 }), 1e-5)

            var fused = [Float](repeating: .nan, count: N * OC)
            linearGELU(&fused, inp, w, b, N, C, OC)
            var geluRef = reference
            geluReference(&geluRef, reference, N * OC)
            XCTAssertLessThan(maxDiff(fused, geluRef), 1e-5)

            // The same products with the weight stored transposed (C, OC).
            var wT = [Float](repeating: 0, count: OC * C)
            for o in 0..<OC { for c in 0..<C { wT[c * OC + o] = w[o * C + c] } }
            var outT = [Float](repeating: .nan, count: N * OC)
            linear(&outT, inp, wT, b, N, C, OC, transposedWeight: true)
            XCTAssertLessThan(maxDiff(outT, reference), 1e-5)
            var accT = residual
            linearAccumulate(&accT, inp, wT, b, N, C, OC, transposedWeight: true)
            XCTAssertLessThan(maxDiff(accT, acc), 1e-5)
            var fusedT = [Float](repeating: .nan, count: N * OC)
            linearGELU(&fusedT, inp, wT, b, N, C, OC, transposedWeight: true)
            XCTAssertLessThan(maxDiff(fusedT, geluRef), 1e-5)
            XCTAssertTrue(prefersTransposedWeight(inputs: 512, outputs: 2048))
            XCTAssertFalse(prefersTransposedWeight(inputs: 2048, outputs: 512))

            // Strided output: rows 3 apart in a wider array, the gaps untouched.
            var wide = [Float](repeating: -7, count: N * OC * 3)
            linearStrided(&wide, 3 * OC, inp, C, w, b, N, C, OC)
            for r in 0..<N {
                XCTAssertLessThan(maxDiff(Array(wide[(r * 3 * OC)..<(r * 3 * OC + OC)]), Array(reference[(r * OC)..<((r + 1) * OC)])), 1e-5)
                XCTAssertEqual(wide[r * 3 * OC + OC], -7)
            }
        }
    }

    func testAttentionMatchesReference() {
        ComputePath.forEach { path in
            print("path: \(path)")
            for (Nq, Nk, Cw, H) in [(3, 5, 8, 2), (6, 4, 12, 3), (1, 1, 4, 1)] {
                let q = random(Nq * Cw, seed: 1, scale: 2), k = random(Nk * Cw, seed: 2, scale: 2), v = random(Nk * Cw, seed: 3)
                var out = [Float](repeating: .nan, count: Nq * Cw), reference = out
                var scores = [Float](repeating: 0, count: Nq * Nk)
                attention(&out, &scores, q, k, v, Nq, Nk, Cw, H)
                attentionReference(&reference, q, k, v, Nq, Nk, Cw, H)
                XCTAssertLessThan(maxDiff(out, reference), 1e-5, "(\(Nq), \(Nk), \(Cw), \(H))")
            }
        }
    }

    func testPatchifyOrderAndRoundTrip() {
        // One 2-frame 4x4 image with 2 channels, patch 2, tube 2: value = its own (f, y, x, c) index.
        let (B, F, H, W, C, p, pt) = (2, 2, 4, 4, 2, 2, 2)
        let image = (0..<(B * F * H * W * C)).map(Float.init)
        var patches = [Float](repeating: .nan, count: image.count)
        patchify(&patches, image, B, F, H, W, C, p, pt)
        // Token 1 of image 0 is (frame-patch 0, row-patch 0, col-patch 1); its first value is
        // pixel (f 0, y 0, x 2, c 0); the tube's second frame follows the first frame's p*p*C values.
        let P = pt * p * p * C
        XCTAssertEqual(patches[P], Float(((0 * H + 0) * W + 2) * C))
        XCTAssertEqual(patches[P + p * p * C], Float(((1 * H + 0) * W + 2) * C))
        // Within a patch: (row, col, channel) order.
        XCTAssertEqual(patches[P + 1], Float(((0 * H + 0) * W + 2) * C + 1))
        XCTAssertEqual(patches[P + C], Float(((0 * H + 0) * W + 3) * C))
        XCTAssertEqual(patches[P + p * C], Float(((0 * H + 1) * W + 2) * C))
        var back = [Float](repeating: .nan, count: image.count)
        unpatchify(&back, patches, B, F, H, W, C, p, pt)
        XCTAssertEqual(back, image)
    }

    func testBLASThreadsSetAndRead() {
        let before = BLASThreads.current
        BLASThreads.set(1)
        XCTAssertEqual(BLASThreads.current, 1)
        BLASThreads.set(0)  // clamped to 1
        XCTAssertEqual(BLASThreads.current, 1)
        BLASThreads.set(before)
        XCTAssertEqual(BLASThreads.current, before)
    }
}
