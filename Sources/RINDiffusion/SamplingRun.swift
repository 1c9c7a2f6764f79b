import RINModel

/// One sampling run: owns x_t, the x0 and eps estimates, the carried latents Z and its noise
/// scratch; a step allocates nothing. Used by one thread at a time; the checkpoint's weights are
/// shared.
///
/// Step k = 0..S-1 goes from t = 1 - k/S to t' = 1 - (k+1)/S (checkpoints/README.md, "Sampling"):
/// one network pass over the run's rows (2B images with guidance: the conditional copies first,
/// then the null-class copies, all with the same Z_prev), guidance on the raw outputs, x0 clipped,
/// eps re-derived, then the sampler's update (`Sampler`, one per algorithm). The conditional pass's
/// Z is carried to the next step (or zeros when `carryLatents` is false). After every step the
/// clipped x0 is a ready preview.
///
/// The network pass belongs to a `SamplingBatch`, so that runs of one model, each at its own step,
/// with its own schedule, classes, guidance, latents and noise, share one batched pass:
/// `writeInputs` puts the run's rows into the batch, the batch runs the network, `completeStep`
/// takes the rows back and updates the run. Every row of the network depends only on its own
/// inputs, so a run's images do not depend on what else is in the batch (bit for bit at the
/// bundled models' sizes; see `SamplingBatch.maxPixelDifference` for tiny models).
/// `step()` does the same with a batch of this run alone.
///
/// Buffers (B = count, G = 2 with guidance else 1, v = B * F*H*W*C, m x L latents):
///   x, x0, eps (v)   noise (F*H*W*C)   z (G B m L)   classRows (G B)
public final class SamplingRun {
    public let parameters: SamplingParameters
    public let checkpoint: RINCheckpoint
    public private(set) var stepsDone = 0
    public var isFinished: Bool { stepsDone >= parameters.steps }
    /// Network rows this run takes in a batch: `count`, or 2 * `count` with guidance.
    public let rows: Int
    /// Bytes of the network's scratch (`RINWorkspace`) a batch of this run alone holds.
    public var workspaceBytes: Int { solo.workspaceBytes }

    private let schedule: NoiseSchedule
    private let sampler: any Sampler
    private let guided: Bool
    private let imageValues: Int
    private let latentValues: Int     // m * L
    private let x, x0, eps, noise, z: UnsafeMutablePointer<Float>
    private let classRows: UnsafeMutablePointer<Int>?
    private var haveLatents = false
    /// The batch `step()` uses, made on its first call (runs stepped by a shared batch never make it).
    private lazy var solo = SamplingBatch(checkpoint: checkpoint, rows: rows)

    /// Validates `parameters` for the checkpoint and draws x_T = noise(seed, i, 0) for each image.
    public convenience init(checkpoint: RINCheckpoint, parameters: SamplingParameters) throws(SamplingError) {
        try self.init(checkpoint: checkpoint, parameters: parameters, fullSeedRange: false)
    }

    /// As `init(checkpoint:parameters:)`; `fullSeedRange` accepts any 64-bit seed (the noise
    /// recipe is defined for all of them) where the service limits seeds to JSON-safe integers.
    public init(checkpoint: RINCheckpoint, parameters: SamplingParameters, fullSeedRange: Bool) throws(SamplingError) {
        let config = checkpoint.config
        var check = parameters
        if fullSeedRange { check.seed = 0 }
        _ = try check.validated(for: config)
        let p = parameters
        self.parameters = p
        self.checkpoint = checkpoint
        schedule = NoiseSchedule(kind: p.schedule, config: config)
        sampler = p.sampler.sampler
        guided = p.guidance > 0
        rows = p.count * (guided ? 2 : 1)
        imageValues = config.imageValues
        latentValues = config.latents.count * config.latents.dim
        let v = p.count * imageValues
        func make(_ n: Int) -> UnsafeMutablePointer<Float> {
            let buffer = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
            buffer.initialize(repeating: 0, count: max(n, 1))
            return buffer
        }
        x = make(v); x0 = make(v); eps = make(v)
        noise = make(imageValues)
        z = make(rows * latentValues)
        if config.classes.count > 0 {
            let classRows = UnsafeMutablePointer<Int>.allocate(capacity: rows)
            // nil class = the null row; with guidance the second half is the null row.
            let cond = p.classIndex ?? config.classes.count
            for b in 0..<rows { classRows[b] = b < p.count ? cond : config.classes.count }
            self.classRows = classRows
        } else {
            classRows = nil
        }
        for i in 0..<p.count {
            PortableNoise.fill(x + i * imageValues, count: imageValues, seed: p.seed, image: i, step: 0)
        }
    }

    deinit {
        for buffer in [x, x0, eps, noise, z] { buffer.deallocate() }
        classRows?.deallocate()
    }

    /// One denoising step (one network pass over this run's rows, then the sampler update). Does
    /// nothing once the run is finished.
    public func step() {
        guard !isFinished else { return }
        solo.step(self)
    }

    /// gamma(t) of step k's start and end.
    private func gammas(_ k: Int) -> (Double, Double) {
        let S = Double(parameters.steps), k = Double(k)
        return (schedule.clippedGamma(1 - k / S), schedule.clippedGamma(1 - (k + 1) / S))
    }

    /// Writes this run's network inputs for its next step into `batch`'s rows `row ..< row + rows`:
    /// x_t (twice with guidance), gamma, the class rows and Z_prev (zeros before the first step or
    /// without carrying).
    func writeInputs(_ batch: SamplingBatch, row: Int) {
        let (g, _) = gammas(stepsDone)
        let v = parameters.count * imageValues
        for b in 0..<rows { batch.gammas[row + b] = Float(g) }
        let xRows = batch.x + row * imageValues
        xRows.update(from: x, count: v)
        if guided { (xRows + v).update(from: x, count: v) }
        if let classRows, let classes = batch.classes { (classes + row).update(from: classRows, count: rows) }
        let zRows = batch.zIn + row * latentValues
        if haveLatents && parameters.carryLatents {
            zRows.update(from: z, count: rows * latentValues)
        } else {
            zRows.update(repeating: 0, count: rows * latentValues)
        }
    }

    /// Takes this run's rows of `batch`'s network outputs and finishes the step: guidance, the
    /// carried Z, x0 and eps, the sampler update of each image.
    func completeStep(_ batch: SamplingBatch, row: Int) {
        let (g, gNext) = gammas(stepsDone)
        let count = parameters.count
        let v = count * imageValues
        let prediction = batch.prediction + row * imageValues
        let zOut = batch.zOut + row * latentValues
        if guided {
            // Guidance in place over the conditional half; both halves carry the conditional Z.
            combineGuidance(prediction, cond: prediction, uncond: prediction + v, weight: parameters.guidance, v)
            z.update(from: zOut, count: count * latentValues)
            (z + count * latentValues).update(from: zOut, count: count * latentValues)
        } else {
            z.update(from: zOut, count: rows * latentValues)
        }
        haveLatents = true

        predictionToX0Eps(x0: x0, eps: eps, out: prediction, x: x, gamma: g,
                          prediction: checkpoint.config.prediction, v)
        for i in 0..<count {
            let offset = i * imageValues
            sampler.update(x: x + offset, x0: x0 + offset, eps: eps + offset, gamma: g, gammaNext: gNext,
                           noise: SamplerNoise(seed: parameters.seed, image: i, step: stepsDone + 1, scratch: noise),
                           count: imageValues)
        }
        stepsDone += 1
    }

    /// The current x0 estimate as 8-bit images, one per requested image (mid-grey before the
    /// first step). After the last step this is the result.
    public func estimate() -> [ImagePixels] {
        (0..<parameters.count).map { ImagePixels(x0: x0 + $0 * imageValues, image: checkpoint.config.image) }
    }

    /// The current clipped x0 estimate as floats, (count, F, H, W, C).
    public func estimateFloats() -> [Float] {
        Array(UnsafeBufferPointer(start: x0, count: parameters.count * imageValues))
    }

    /// The current x_t as floats, (count, F, H, W, C) (x_T before the first step).
    public func currentSample() -> [Float] {
        Array(UnsafeBufferPointer(start: x, count: parameters.count * imageValues))
    }

    /// The latents Z the next step will take as Z_prev, (count, m, L); zeros before the first step.
    public func carriedLatents() -> [Float] {
        guard haveLatents else { return [Float](repeating: 0, count: parameters.count * latentValues) }
        return Array(UnsafeBufferPointer(start: z, count: parameters.count * latentValues))
    }
}
