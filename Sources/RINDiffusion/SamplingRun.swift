import RINModel

/// One sampling run: owns x_t, the carried latents Z and all scratch buffers; `step()` allocates
/// nothing. Used by one thread at a time; the checkpoint's weights are shared.
///
/// Step k = 0..S-1 goes from t = 1 - k/S to t' = 1 - (k+1)/S (checkpoints/README.md, "Sampling"):
/// one network pass over the batch (2B images with guidance: the conditional copies first, then
/// the null-class copies, all with the same Z_prev), guidance on the raw outputs, x0 clipped, eps
/// re-derived, then the DDIM or DDPM update. The conditional pass's Z is carried to the next step
/// (or zeros when `carryLatents` is false). After every step the clipped x0 is a ready preview.
///
/// Buffers (B = count, G = 2 with guidance else 1, v = B * F*H*W*C, m x L latents):
///   x, x0, eps (v)   input, prediction (G v)   noise (F*H*W*C)   zIn, zOut (G B m L)
public final class SamplingRun {
    public let parameters: SamplingParameters
    public let checkpoint: RINCheckpoint
    public private(set) var stepsDone = 0
    public var isFinished: Bool { stepsDone >= parameters.steps }
    /// Bytes of the network's scratch (`RINWorkspace`) this run holds.
    public var workspaceBytes: Int { workspace.byteCount }

    private let schedule: NoiseSchedule
    private let network: RINNetwork
    private let workspace: RINWorkspace
    private let guided: Bool
    private let batch: Int            // network batch: count, or 2 * count with guidance
    private let imageValues: Int
    private let latentValues: Int     // m * L
    private let x, x0, eps, input, prediction, noise, gammas: UnsafeMutablePointer<Float>
    private var zIn, zOut: UnsafeMutablePointer<Float>
    private let classes: UnsafeMutablePointer<Int>?
    private var haveLatents = false

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
        network = checkpoint.network
        schedule = NoiseSchedule(kind: p.schedule, config: config)
        guided = p.guidance > 0
        batch = p.count * (guided ? 2 : 1)
        imageValues = config.imageValues
        latentValues = config.latents.count * config.latents.dim
        workspace = RINWorkspace(config: config, batch: batch)
        let v = p.count * imageValues
        func make(_ n: Int) -> UnsafeMutablePointer<Float> {
            let buffer = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
            buffer.initialize(repeating: 0, count: max(n, 1))
            return buffer
        }
        x = make(v); x0 = make(v); eps = make(v)
        input = make(guided ? batch * imageValues : 0)
        prediction = make(batch * imageValues)
        noise = make(imageValues)
        gammas = make(batch)
        zIn = make(batch * latentValues); zOut = make(batch * latentValues)
        if config.classes.count > 0 {
            let rows = UnsafeMutablePointer<Int>.allocate(capacity: batch)
            // nil class = the null row; with guidance the second half is the null row.
            let cond = p.classIndex ?? config.classes.count
            for b in 0..<batch { rows[b] = b < p.count ? cond : config.classes.count }
            classes = rows
        } else {
            classes = nil
        }
        for i in 0..<p.count {
            PortableNoise.fill(x + i * imageValues, count: imageValues, seed: p.seed, image: i, step: 0)
        }
    }

    deinit {
        for buffer in [x, x0, eps, input, prediction, noise, gammas, zIn, zOut] { buffer.deallocate() }
        classes?.deallocate()
    }

    /// One denoising step (one network pass over the batch, then the sampler update). Does nothing
    /// once the run is finished.
    public func step() {
        guard !isFinished else { return }
        let S = Double(parameters.steps), k = Double(stepsDone)
        let g = schedule.clippedGamma(1 - k / S)
        let gNext = schedule.clippedGamma(1 - (k + 1) / S)
        let count = parameters.count
        let v = count * imageValues
        for b in 0..<batch { gammas[b] = Float(g) }

        let netInput: UnsafePointer<Float>
        if guided {
            input.update(from: x, count: v)
            (input + v).update(from: x, count: v)
            netInput = UnsafePointer(input)
        } else {
            netInput = UnsafePointer(x)
        }
        let latentsIn: UnsafePointer<Float>? = (haveLatents && parameters.carryLatents) ? UnsafePointer(zIn) : nil
        network.forward(prediction: prediction, latentsOut: zOut, x: netInput, gamma: gammas,
                        classes: classes.map { UnsafePointer($0) }, latentsIn: latentsIn,
                        batch: batch, workspace: workspace)
        if guided {
            // Guidance in place over the conditional half; both halves carry the conditional Z.
            combineGuidance(prediction, cond: prediction, uncond: prediction + v, weight: parameters.guidance, v)
            zIn.update(from: zOut, count: count * latentValues)
            (zIn + count * latentValues).update(from: zOut, count: count * latentValues)
        } else {
            swap(&zIn, &zOut)
        }
        haveLatents = true

        predictionToX0Eps(x0: x0, eps: eps, out: prediction, x: x, gamma: g,
                          prediction: checkpoint.config.prediction, v)
        switch parameters.sampler {
        case .ddim:
            DDIMSampler.update(x: x, x0: x0, eps: eps, gammaNext: gNext, count: v)
        case .ddpm:
            for i in 0..<count {
                PortableNoise.fill(noise, count: imageValues, seed: parameters.seed, image: i, step: stepsDone + 1)
                DDPMSampler.update(x: x + i * imageValues, eps: eps + i * imageValues, noise: noise,
                                   gamma: g, gammaNext: gNext, count: imageValues)
            }
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
        return Array(UnsafeBufferPointer(start: zIn, count: parameters.count * latentValues))
    }
}
