import RINTensor
import XCTest

/// The `packed` backend's attention (`PackedAttention`: all images and heads of a batch in one
/// call on rind's micro-kernels and pool) against the plain reference, on every kernel path and
/// thread count, with shapes that leave partial tiles, panels and heads whose width is not a
/// multiple of 16; and the property cross-job batching relies on: an image's rows do not depend on
/// the other images of the batch or on the threads.
final class PackedAttentionTests: XCTestCase {
    /// PackedAttention over `batch` images stacked in q (batch*Nq, Cw), k and v (batch*Nk, Cw).
    func packedAttention(_ q: [Float], _ k: [Float], _ v: [Float], batch: Int, Nq: Int, Nk: Int, Cw: Int, H: Int,
                         slots: Int = 4) -> [Float] {
        var out = [Float](repeating: .nan, count: batch * Nq * Cw)
        var scratch = [Float](repeating: .nan, count: slots * PackedAttention.scratchFloats(keys: Nk, width: Cw, heads: H))
        PackedAttention.run(&out, q, k, v, batch: batch, queries: Nq, keys: Nk, width: Cw, heads: H,
                            scratch: &scratch, slots: slots)
        return out
    }

    func testMatchesTheReferenceOnEveryPathAndShape() {
        for threads in [1, 2, 3] {
            onEveryPackedPath(threads: threads) { isa in
                // (batch, Nq, Nk, Cw, H): bundled-model shapes, odd row and key counts, head widths
                // 20 and 48 (not multiples of 32, 20 not of 16), one head, one key.
                for (batch, Nq, Nk, Cw, H) in [(1, 64, 256, 192, 6), (2, 256, 64, 192, 6), (3, 13, 37, 40, 2),
                                               (1, 9, 50, 96, 2), (2, 5, 1, 16, 1), (1, 17, 33, 32, 1)] {
                    let q = random(batch * Nq * Cw, seed: 1), k = random(batch * Nk * Cw, seed: 2)
                    let v = random(batch * Nk * Cw, seed: 3)
                    let got = packedAttention(q, k, v, batch: batch, Nq: Nq, Nk: Nk, Cw: Cw, H: H)
                    var worst: Float = 0
                    for b in 0..<batch {
                        var reference = [Float](repeating: 0, count: Nq * Cw)
                        let qb = Array(q[(b * Nq * Cw)..<((b + 1) * Nq * Cw)])
                        let kb = Array(k[(b * Nk * Cw)..<((b + 1) * Nk * Cw)])
                        let vb = Array(v[(b * Nk * Cw)..<((b + 1) * Nk * Cw)])
                        attentionReference(&reference, qb, kb, vb, Nq, Nk, Cw, H)
                        for i in 0..<(Nq * Cw) { worst = max(worst, abs(got[b * Nq * Cw + i] - reference[i])) }
                    }
                    XCTAssertLessThan(worst, 2e-6, "\(isa), \(threads) threads, B \(batch) Nq \(Nq) Nk \(Nk) Cw \(Cw) H \(H)")
                }
            }
        }
    }

    /// One image alone, and the same image inside a batch of three on 1, 2 and 3 threads (and
    /// with a single scratch slot), give the same bits.
    func testAnImagesRowsDoNotDependOnTheBatchOrTheThreads() {
        let Nq = 70, Nk = 90, Cw = 96, H = 3, batch = 3
        let q = random(batch * Nq * Cw, seed: 4), k = random(batch * Nk * Cw, seed: 5), v = random(batch * Nk * Cw, seed: 6)
        onEveryPackedPath(threads: 1) { isa in
            let single = packedAttention(q, k, v, batch: batch, Nq: Nq, Nk: Nk, Cw: Cw, H: H)
            for threads in [2, 3] {
                BLASThreads.set(threads)
                XCTAssertEqual(packedAttention(q, k, v, batch: batch, Nq: Nq, Nk: Nk, Cw: Cw, H: H), single,
                               "\(isa): 1 vs \(threads) threads")
                XCTAssertEqual(packedAttention(q, k, v, batch: batch, Nq: Nq, Nk: Nk, Cw: Cw, H: H, slots: 1), single,
                               "\(isa): one scratch slot, \(threads) threads")
            }
            BLASThreads.set(1)
            let b = 1
            let alone = packedAttention(Array(q[(b * Nq * Cw)..<((b + 1) * Nq * Cw)]), Array(k[(b * Nk * Cw)..<((b + 1) * Nk * Cw)]),
                                        Array(v[(b * Nk * Cw)..<((b + 1) * Nk * Cw)]), batch: 1, Nq: Nq, Nk: Nk, Cw: Cw, H: H)
            XCTAssertEqual(alone, Array(single[(b * Nq * Cw)..<((b + 1) * Nq * Cw)]), "\(isa): image 1 alone vs in the batch")
        }
    }
}
