/// One sampling algorithm: how x_t moves to x_{t'} once the network's output has been turned into
/// the clipped x0 estimate and the re-derived eps (Prediction.swift). One conforming type per file:
/// `DDIMSampler` (DDIMSampler.swift), `DDPMSampler` (DDPMSampler.swift); `SamplerKind.sampler`
/// picks one. `SamplingRun` calls the protocol and never switches on the kind.
///
/// An update works on one image at a time (v = F*H*W*C values) so that images of different jobs,
/// each with its own noise stream, can share a batched network pass (`SamplingBatch`).
public protocol Sampler: Sendable {
    /// x (v) updated in place from step k's x0 (v) and eps (v), going from gamma(t) to gamma(t').
    /// A stochastic sampler draws its fresh noise from `noise`. Allocates nothing.
    func update(x: UnsafeMutablePointer<Float>, x0: UnsafePointer<Float>, eps: UnsafePointer<Float>,
                gamma: Double, gammaNext: Double, noise: SamplerNoise, count v: Int)
}

/// The fresh noise one image may use in one step: `PortableNoise` (seed, image, step) written into
/// the caller's scratch buffer only when a sampler asks for it.
public struct SamplerNoise {
    /// The run's seed.
    public let seed: UInt64
    /// The image's index in its run (image i's streams are noise(seed, i, ·)).
    public let image: Int
    /// The noise step: k + 1 for denoising step k (step 0 is the start x_T).
    public let step: Int
    /// Scratch of at least v floats, owned by the run.
    let scratch: UnsafeMutablePointer<Float>

    public init(seed: UInt64, image: Int, step: Int, scratch: UnsafeMutablePointer<Float>) {
        self.seed = seed; self.image = image; self.step = step; self.scratch = scratch
    }

    /// noise(seed, image, step): `count` normals in the scratch buffer.
    public func draw(count: Int) -> UnsafePointer<Float> {
        PortableNoise.fill(scratch, count: count, seed: seed, image: image, step: step)
        return UnsafePointer(scratch)
    }
}

extension SamplerKind {
    /// The algorithm of this kind.
    public var sampler: any Sampler {
        switch self {
        case .ddim: return DDIMSampler()
        case .ddpm: return DDPMSampler()
        }
    }
}
