import Foundation
import RINTensor

/// All scratch memory of `RINNetwork.forward` for batches of up to `batch` images: allocated once
/// (per sampling run), so a forward pass allocates nothing. One workspace per thread.
///
/// Buffers (B = batch; legend in RIN.swift):
///   patches (B*n, max(P, 1))   x, xNorm (B*n, D)   zNorm, selfCond, zeros (B*m, L)
///   q, attended (B*max(n, m), max(Ci, L))   k, v (B*max(n, m), max(Ci, L))
///   scores (max(n, m), m): every attention has the m latents on one side (read m x n, compute
///   m x m, write n x m)   hidden (B * max(m*Fl, n*Fi))
///   timeFeatures (B, L/4)   timeHidden (B, L)
///   attentionScratch: the `packed` backend's attention (`PackedAttention`): for each of
///   `attentionSlots` threads, one head's packed keys and values and the scores of one block of
///   query rows, for the largest of the three attentions
public final class RINWorkspace: @unchecked Sendable {
    public let config: RINConfig
    public let batch: Int
    let patches, x, xNorm, zNorm, selfCond, zeros: UnsafeMutablePointer<Float>
    let q, k, v, attended, scores, hidden, timeFeatures, timeHidden: UnsafeMutablePointer<Float>
    let attentionScratch: UnsafeMutablePointer<Float>
    /// Threads the packed attention may use with this workspace: the cores, or the matrix threads
    /// if more were asked for when it was made.
    let attentionSlots: Int
    private var all: [UnsafeMutablePointer<Float>] = []
    /// Bytes of all the buffers together.
    public let byteCount: Int

    /// Scratch for batches of 1...`batch` images of `config`'s model.
    public init(config c: RINConfig, batch: Int) {
        precondition(batch >= 1, "RINWorkspace: batch must be >= 1")
        self.config = c
        self.batch = batch
        let B = batch, n = c.tokenCount, m = c.latents.count, D = c.interface.dim, L = c.latents.dim
        let rows = max(n, m), width = max(c.crossWidth, L)
        var made: [UnsafeMutablePointer<Float>] = []
        var bytes = 0
        func make(_ count: Int) -> UnsafeMutablePointer<Float> {
            bytes += max(count, 1) * MemoryLayout<Float>.stride
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
            p.initialize(repeating: 0, count: max(count, 1))
            made.append(p)
            return p
        }
        patches = make(B * n * c.patchValues)
        x = make(B * n * D)
        xNorm = make(B * n * D)
        zNorm = make(B * m * L)
        selfCond = make(B * m * L)
        zeros = make(B * m * L)
        q = make(B * rows * width)
        k = make(B * rows * width)
        v = make(B * rows * width)
        attended = make(B * rows * width)
        scores = make(rows * m)
        hidden = make(B * max(m * c.latentHidden, n * c.interfaceHidden))
        timeFeatures = make(B * L / 4)
        timeHidden = make(B * L)
        let Ci = c.crossWidth, Hi = c.interface.heads, Hl = c.latents.heads
        attentionSlots = min(256, max(1, ProcessInfo.processInfo.activeProcessorCount, BLASThreads.current))
        attentionScratch = make(attentionSlots * max(PackedAttention.scratchFloats(keys: n, width: Ci, heads: Hi),  // read
                                                     PackedAttention.scratchFloats(keys: m, width: L, heads: Hl),   // compute
                                                     PackedAttention.scratchFloats(keys: m, width: Ci, heads: Hi))) // write
        all = made
        byteCount = bytes
    }

    deinit { for p in all { p.deallocate() } }
}
