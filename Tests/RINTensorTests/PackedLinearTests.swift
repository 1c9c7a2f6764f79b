import RINTensor
import XCTest

/// rind's packed-weight linear layers (`PackedLinearWeight`, the `packed` matrix backend) against
/// the plain reference, on every kernel path, with shapes that leave partial tiles and panels, and
/// the property batching relies on: a row's result does not depend on the other rows of the call
/// or on the thread count.
final class PackedLinearTests: XCTestCase {
    func product(_ weight: [Float], _ inp: [Float], bias: [Float]?, rows: Int, inputs: Int, outputs: Int,
                 start: [Float]? = nil, mode: PackedLinearWeight.Mode) -> [Float] {
        var buffer = [Float](repeating: .nan, count: PackedLinearWeight.floatCount(inputs: inputs, outputs: outputs))
        var out = start ?? [Float](repeating: .nan, count: rows * outputs)
        buffer.withUnsafeMutableBufferPointer { packedValues in
            let packed = PackedLinearWeight(packing: weight, inputs: inputs, outputs: outputs, into: packedValues.baseAddress!)
            out.withUnsafeMutableBufferPointer { o in
                if let bias {
                    bias.withUnsafeBufferPointer { b in
                        packed.apply(o.baseAddress!, ldOut: outputs, inp, ldInp: inputs, bias: b.baseAddress!, rows: rows, mode: mode)
                    }
                } else {
                    packed.apply(o.baseAddress!, ldOut: outputs, inp, ldInp: inputs, bias: nil, rows: rows, mode: mode)
                }
            }
        }
        return out
    }

    func testMatchesTheReferenceInEveryModeAndShape() {
        for threads in [1, 2, 3] {
            onEveryPackedPath(threads: threads) { isa in
                // Rows that leave a short last block (7 and 8 in blocks of 6, 9, 17, 33 and 130 in
                // blocks of 8); more column groups than tasks per thread, one or two groups a task.
                for (rows, inputs, outputs) in [(1, 1, 1), (7, 5, 15), (8, 40, 20), (9, 64, 33), (33, 100, 48),
                                                (17, 37, 100), (130, 96, 70), (64, 256, 256), (24, 300, 1100),
                                                (40, 64, 1100)] {
                    let w = random(outputs * inputs, seed: 1), x = random(rows * inputs, seed: 2)
                    let bias = random(outputs, seed: 3), residual = random(rows * outputs, seed: 4)
                    var reference = [Float](repeating: 0, count: rows * outputs)
                    linearReference(&reference, x, w, bias, rows, inputs, outputs)
                    let tolerance: Float = 2e-6 * Float(inputs).squareRoot() + 1e-6
                    let context = "\(isa), \(threads) threads, \(rows)x\(inputs)x\(outputs)"

                    let stored = product(w, x, bias: bias, rows: rows, inputs: inputs, outputs: outputs, mode: .store)
                    XCTAssertLessThan(zip(stored, reference).map { abs($0 - $1) }.max()!, tolerance, "store, \(context)")

                    let accumulated = product(w, x, bias: bias, rows: rows, inputs: inputs, outputs: outputs,
                                              start: residual, mode: .accumulate)
                    let expected = zip(residual, reference).map { $0 + $1 }
                    XCTAssertLessThan(zip(accumulated, expected).map { abs($0 - $1) }.max()!, tolerance, "accumulate, \(context)")

                    let activated = product(w, x, bias: bias, rows: rows, inputs: inputs, outputs: outputs, mode: .gelu)
                    var geluExpected = reference
                    geluReference(&geluExpected, reference, reference.count)
                    XCTAssertLessThan(zip(activated, geluExpected).map { abs($0 - $1) }.max()!, tolerance, "gelu, \(context)")

                    let unbiased = product(w, x, bias: nil, rows: rows, inputs: inputs, outputs: outputs, mode: .store)
                    var plain = [Float](repeating: 0, count: rows * outputs)
                    linearReference(&plain, x, w, nil, rows, inputs, outputs)
                    XCTAssertLessThan(zip(unbiased, plain).map { abs($0 - $1) }.max()!, tolerance, "no bias, \(context)")
                }
            }
        }
    }

    /// The GELU epilogue (on AVX-512 computed on the accumulators, with its own exp) over the whole
    /// range a pre-activation can take: far tails where 1 + erf underflows, both signs, and the
    /// columns past a full panel (masked stores must leave the next row's outputs alone).
    func testGELUEpilogueOverTheWholeRange() {
        let rows = 9, inputs = 3, outputs = 37
        var w = [Float](repeating: 0, count: outputs * inputs)
        for o in 0..<outputs { w[o * inputs] = Float(o - 18) * 2.75 }   // -49.5 ... 49.5 per unit input
        var x = [Float](repeating: 0, count: rows * inputs)
        for r in 0..<rows { x[r * inputs] = Float(r - 4) * 0.5 + 0.1 }  // -1.9 ... 2.1
        let bias = (0..<outputs).map { Float($0 % 5) * 0.01 }
        onEveryPackedPath(threads: 2) { isa in
            var reference = [Float](repeating: 0, count: rows * outputs)
            linearReference(&reference, x, w, bias, rows, inputs, outputs)
            var expected = reference
            geluReference(&expected, reference, reference.count)
            let activated = product(w, x, bias: bias, rows: rows, inputs: inputs, outputs: outputs, mode: .gelu)
            for i in 0..<expected.count {
                XCTAssertEqual(activated[i], expected[i], accuracy: 2e-6 * max(1, abs(expected[i])),
                               "\(isa): pre-activation \(reference[i])")
            }
        }
    }

    /// Each row computed alone, and the whole batch on 1 and 2 threads, give the same bits.
    func testARowsResultDoesNotDependOnTheBatchOrTheThreads() {
        let rows = 150, inputs = 192, outputs = 200
        let w = random(outputs * inputs, seed: 5), x = random(rows * inputs, seed: 6), bias = random(outputs, seed: 7)
        onEveryPackedPath(threads: 1) { isa in
            for mode in [PackedLinearWeight.Mode.store, .gelu] {
                BLASThreads.set(1)
                let single = product(w, x, bias: bias, rows: rows, inputs: inputs, outputs: outputs, mode: mode)
                BLASThreads.set(2)
                let threaded = product(w, x, bias: bias, rows: rows, inputs: inputs, outputs: outputs, mode: mode)
                XCTAssertEqual(single, threaded, "\(isa) \(mode): 1 vs 2 threads")
                for r in [0, 7, 8, 77, 149] {
                    let alone = product(w, Array(x[(r * inputs)..<((r + 1) * inputs)]), bias: bias, rows: 1,
                                        inputs: inputs, outputs: outputs, mode: mode)
                    XCTAssertEqual(alone, Array(threaded[(r * outputs)..<((r + 1) * outputs)]), "\(isa) \(mode): row \(r) alone")
                }
            }
        }
    }

    /// Three products run together (`applyTogether`: one piece of work on the pool) give the bits
    /// each gives alone, on every path and thread count: a large product, one small enough to be a
    /// single task, one with no rows, in several orders; accumulate and GELU modes, a strided output.
    func testProductsRunTogetherGiveTheBitsOfEachAlone() {
        let shapes: [(rows: Int, inputs: Int, outputs: Int, mode: PackedLinearWeight.Mode, ldOut: Int)] = [
            (150, 192, 200, .accumulate, 200), (3, 20, 17, .gelu, 17), (0, 8, 8, .store, 8), (40, 64, 48, .store, 64)]
        var buffers: [UnsafeMutablePointer<Float>] = []
        defer { buffers.forEach { $0.deallocate() } }
        func buffer(_ values: [Float]) -> UnsafeMutablePointer<Float> {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(values.count, 1))
            p.initialize(from: values, count: values.count)
            buffers.append(p)
            return p
        }
        let weights = shapes.enumerated().map { i, s in
            PackedLinearWeight(packing: random(s.outputs * s.inputs, seed: UInt64(10 + i)), inputs: s.inputs, outputs: s.outputs,
                               into: buffer([Float](repeating: .nan, count: PackedLinearWeight.floatCount(inputs: s.inputs, outputs: s.outputs))))
        }
        let inputs = shapes.enumerated().map { i, s in buffer(random(s.rows * s.inputs, seed: UInt64(20 + i))) }
        let biases = shapes.enumerated().map { i, s in buffer(random(s.outputs, seed: UInt64(30 + i))) }
        let starts = shapes.enumerated().map { i, s in random(s.rows * s.ldOut, seed: UInt64(40 + i)) }
        let outs = starts.map { buffer($0) }
        func run(_ order: [Int], together: Bool) -> [[Float]] {
            for i in shapes.indices { outs[i].update(from: starts[i], count: starts[i].count) }
            let p = order.map { i in
                PackedLinearWeight.Product(weights[i], outs[i], ldOut: shapes[i].ldOut, inputs[i], ldInp: shapes[i].inputs,
                                           bias: biases[i], rows: shapes[i].rows, mode: shapes[i].mode)
            }
            if together { PackedLinearWeight.applyTogether(p[0], p[1], p[2]) } else { p.forEach { $0.apply() } }
            return shapes.indices.map { Array(UnsafeBufferPointer(start: outs[$0], count: starts[$0].count)) }
        }
        for threads in [1, 2, 3] {
            onEveryPackedPath(threads: threads) { isa in
                for order in [[0, 1, 2], [2, 1, 0], [1, 3, 0], [3, 2, 1]] {
                    let together = run(order, together: true), alone = run(order, together: false)
                    XCTAssertEqual(together, alone, "\(isa), \(threads) threads, products \(order)")
                    XCTAssertFalse(together.joined().contains { $0.isNaN }, "\(isa): every output written")
                }
            }
        }
    }

    /// The packed backend's threads spin only briefly after a piece of work, then sleep: an idle
    /// process (a daemon between jobs) burns no CPU.
    func testIdleMatrixThreadsSleep() {
        let (rows, inputs, outputs) = (64, 256, 256)
        let w = random(outputs * inputs, seed: 8), x = random(rows * inputs, seed: 9)
        onEveryPackedPath(threads: 2) { _ in
            _ = product(w, x, bias: nil, rows: rows, inputs: inputs, outputs: outputs, mode: .store)
        }
        usleep(50_000)   // past the workers' spin
        func cpuSeconds() -> Double {
            var usage = rusage()
            getrusage(RUSAGE_SELF.rawValue, &usage)
            return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
                + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
        }
        let before = cpuSeconds(), wallStart = Date()
        usleep(400_000)
        let used = cpuSeconds() - before, wall = Date().timeIntervalSince(wallStart)
        // A worker still spinning would use about the whole interval.
        XCTAssertLessThan(used, 0.25 * wall, "CPU seconds used by an idle process over \(wall) s")
    }
}
