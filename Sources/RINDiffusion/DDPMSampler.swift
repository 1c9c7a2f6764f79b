/// The ancestral DDPM update (Ho, Jain, Abbeel 2020, Algorithm 2) in the continuous-time gamma
/// form of RIN's official sampler with the "large" variance (sigma^2 = beta, not the posterior
/// beta-tilde): with a = clip(gamma / gamma', 0, 1),
/// x_{t'} = (x_t - (1 - a) / sqrt(1 - gamma) eps) / sqrt(a) + sqrt(1 - a) z,
/// z = noise(seed, i, k + 1) from the portable generator. Leaves out learned variances.
public struct DDPMSampler: Sampler {
    public init() {}

    public func update(x: UnsafeMutablePointer<Float>, x0: UnsafePointer<Float>, eps: UnsafePointer<Float>,
                       gamma: Double, gammaNext: Double, noise: SamplerNoise, count v: Int) {
        Self.update(x: x, eps: eps, noise: noise.draw(count: v), gamma: gamma, gammaNext: gammaNext, count: v)
    }

    /// x (v) updated in place from eps (v) and fresh noise (v).
    public static func update(x: UnsafeMutablePointer<Float>, eps: UnsafePointer<Float>, noise: UnsafePointer<Float>,
                              gamma: Double, gammaNext: Double, count v: Int) {
        let a = min(max(gamma / gammaNext, 0), 1)
        let c1 = Float((1 - a) / (1 - gamma).squareRoot())
        let c2 = Float(a.squareRoot())
        let c3 = Float((1 - a).squareRoot())
        for i in 0..<v { x[i] = (x[i] - c1 * eps[i]) / c2 + c3 * noise[i] }
    }
}
