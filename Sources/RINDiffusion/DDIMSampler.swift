/// The deterministic DDIM update (Song, Meng, Ermon 2021, "Denoising Diffusion Implicit Models",
/// eq. 12 with sigma_t = 0), in the continuous-time gamma form of RIN's official sampler:
/// x_{t'} = sqrt(gamma') x0 + sqrt(1 - gamma') eps, with x0 clipped to [-1, 1] and eps re-derived
/// from it. Leaves out DDIM's eta > 0 family (eta = 1 is the DDPM sampler in DDPMSampler.swift).
public struct DDIMSampler: Sampler {
    public init() {}

    public func update(x: UnsafeMutablePointer<Float>, x0: UnsafePointer<Float>, eps: UnsafePointer<Float>,
                       gamma: Double, gammaNext: Double, noise: SamplerNoise, count v: Int) {
        Self.update(x: x, x0: x0, eps: eps, gammaNext: gammaNext, count: v)
    }

    /// x (v) = sqrt(g') x0 (v) + sqrt(1 - g') eps (v).
    public static func update(x: UnsafeMutablePointer<Float>, x0: UnsafePointer<Float>, eps: UnsafePointer<Float>,
                              gammaNext: Double, count v: Int) {
        let a = Float(gammaNext.squareRoot()), b = Float((1 - gammaNext).squareRoot())
        for i in 0..<v { x[i] = a * x0[i] + b * eps[i] }
    }
}
