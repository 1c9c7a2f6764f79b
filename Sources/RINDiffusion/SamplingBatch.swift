import RINModel

/// One batched network pass per step for any number of sampling runs of one model: cross-job
/// batching. Each run keeps its own step index, schedule, class rows, guidance (a guided run brings
/// its unconditional rows), latents and noise streams; runs join and leave between any two steps.
///
/// A step lays the runs' rows one after another (run r's rows are `rows(r)` consecutive rows, in
/// the same order a run alone has them), runs `RINNetwork.forward` once over all of them with each
/// row's own gamma, class and Z_prev, then hands every run its rows back (`SamplingRun`).
///
/// The same images as alone: every operation of the forward pass treats each row (image) on its
/// own: LayerNorms, GELU and softmax by row, attention image by image, class and time tokens by row,
/// and every linear layer is one matrix product whose output row i is computed from input row i
/// alone. rind's own micro-kernels (the `packed` backend, every CPU with AVX2 or AVX-512) sum each
/// output as one FMA chain over k whatever the rows, so there a batched image is bit for bit the
/// image alone (max |x0 difference| 0, `SamplingBatchTests`). The matrix libraries (OpenBLAS and
/// oneDNN both, measured) choose kernels, blocking and the thread split from the rows M of a
/// product, and for small M the order in which they sum a row's K terms changes with M. So
/// `RINNetwork.forward` runs the time MLP (M = the batch) one row at a time; every other product has
/// n or m rows per image, and at the bundled models' sizes (256 tokens, 64 latents) oneDNN and
/// OpenBLAS's SkylakeX kernels gave the image alone bit for bit too, but OpenBLAS's Haswell kernels
/// (what a Zen 5 machine runs under OPENBLAS_CORETYPE=Haswell) do not: max |x0 difference| 1.6e-4
/// after 3-6 steps, no pixel changed. A model with very few tokens or latents (the 8x8 test model:
/// 16 tokens, 6 latents) can differ in the last bits of a float on any backend but `packed`, a
/// pixel by one where a value sits on a rounding boundary: `maxPixelDifference` bounds that.
///
/// Buffers (R = capacity in rows, v1 = F*H*W*C, m x L latents):
///   x, prediction (R v1)   gammas (R)   classes (R, class models only)   zIn, zOut (R m L)
///   and the network's `RINWorkspace` for R rows. Grows only in `reserve(rows:)`, so `step`
/// allocates nothing.
public final class SamplingBatch {
    /// How far (in 8-bit levels) a batched image may be from the same run alone: 0 on the `packed`
    /// backend, at most this on the matrix libraries (see above).
    public static let maxPixelDifference = 1

    public let checkpoint: RINCheckpoint
    /// Rows a step may hold.
    public var capacity: Int { buffers.rows }
    /// Bytes of the network's scratch at this capacity.
    public var workspaceBytes: Int { buffers.workspace.byteCount }

    private var buffers: Buffers

    var x: UnsafeMutablePointer<Float> { buffers.x }
    var prediction: UnsafeMutablePointer<Float> { buffers.prediction }
    var zIn: UnsafeMutablePointer<Float> { buffers.zIn }
    var zOut: UnsafeMutablePointer<Float> { buffers.zOut }
    var gammas: UnsafeMutablePointer<Float> { buffers.gammas }
    var classes: UnsafeMutablePointer<Int>? { buffers.classes }

    /// A batch for up to `rows` network rows of `checkpoint`'s model.
    public init(checkpoint: RINCheckpoint, rows: Int) {
        self.checkpoint = checkpoint
        buffers = Buffers(config: checkpoint.config, rows: max(1, rows))
    }

    /// Makes room for `rows` rows (allocates only when it grows).
    public func reserve(rows: Int) {
        guard rows > capacity else { return }
        buffers = Buffers(config: checkpoint.config, rows: rows)
    }

    /// One denoising step of each run, all in one network pass. The runs must be of this batch's
    /// checkpoint, unfinished, distinct, and hold at most `capacity` rows together.
    public func step(_ runs: [SamplingRun]) {
        var total = 0
        for run in runs {
            precondition(run.checkpoint.network === checkpoint.network, "SamplingBatch: a run of another model")
            precondition(!run.isFinished, "SamplingBatch: a finished run")
            precondition(total + run.rows <= capacity, "SamplingBatch: the runs exceed the capacity \(capacity)")
            run.writeInputs(self, row: total)
            total += run.rows
        }
        guard total > 0 else { return }
        forward(rows: total)
        var row = 0
        for run in runs {
            run.completeStep(self, row: row)
            row += run.rows
        }
    }

    /// One step of one run alone (what `SamplingRun.step()` does).
    func step(_ run: SamplingRun) {
        precondition(run.rows <= capacity, "SamplingBatch: \(run.rows) rows exceed the capacity \(capacity)")
        run.writeInputs(self, row: 0)
        forward(rows: run.rows)
        run.completeStep(self, row: 0)
    }

    private func forward(rows: Int) {
        checkpoint.network.forward(
            prediction: prediction, latentsOut: zOut, x: UnsafePointer(x), gamma: UnsafePointer(gammas),
            classes: classes.map { UnsafePointer($0) }, latentsIn: UnsafePointer(zIn), batch: rows,
            workspace: buffers.workspace)
    }

    /// The network's inputs and outputs for `rows` rows, and its workspace.
    private final class Buffers {
        let rows: Int
        let x, prediction, zIn, zOut, gammas: UnsafeMutablePointer<Float>
        let classes: UnsafeMutablePointer<Int>?
        let workspace: RINWorkspace

        init(config: RINConfig, rows: Int) {
            self.rows = rows
            func make(_ n: Int) -> UnsafeMutablePointer<Float> {
                let buffer = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
                buffer.initialize(repeating: 0, count: max(n, 1))
                return buffer
            }
            let imageValues = config.imageValues, latentValues = config.latents.count * config.latents.dim
            x = make(rows * imageValues)
            prediction = make(rows * imageValues)
            zIn = make(rows * latentValues)
            zOut = make(rows * latentValues)
            gammas = make(rows)
            if config.classes.count > 0 {
                let buffer = UnsafeMutablePointer<Int>.allocate(capacity: rows)
                buffer.initialize(repeating: 0, count: rows)
                classes = buffer
            } else {
                classes = nil
            }
            workspace = RINWorkspace(config: config, batch: rows)
        }

        deinit {
            for buffer in [x, prediction, zIn, zOut, gammas] { buffer.deallocate() }
            classes?.deallocate()
        }
    }
}
