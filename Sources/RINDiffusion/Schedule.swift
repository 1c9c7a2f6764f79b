import Foundation
import RINModel

/// Which noise schedule gamma(t) a sampling run uses (checkpoints/README.md, "Sampling").
public enum ScheduleKind: String, CaseIterable, Codable, Sendable {
    case cosine, sigmoid, linear
}

/// gamma(t), the signal power at time t in [0, 1]: x_t = sqrt(gamma) x0 + sqrt(1 - gamma) eps.
///
/// - cosine: cos(pi t / 2)^2 (Nichol and Dhariwal 2021).
/// - sigmoid: (v(end) - v(t (end - start) + start)) / (v(end) - v(start)), v(x) = sigmoid(x / tau)
///   (Chen 2023, "On the importance of noise scheduling", Algorithm 1), with the checkpoint's
///   training.schedule parameters when it is a sigmoid, else (-3, 3, 0.9).
/// - linear: 1 - t.
/// Computed in double precision, as the PyTorch reference does with Python floats.
public struct NoiseSchedule: Sendable, Equatable {
    public let kind: ScheduleKind
    public let start: Double
    public let end: Double
    public let tau: Double

    /// The clip applied wherever gamma feeds a division or a square root.
    public static let clip = 1e-9

    public init(kind: ScheduleKind, config: RINConfig) {
        self.kind = kind
        (start, end, tau) = config.sigmoidParameters
    }

    /// gamma(t), unclipped.
    public func gamma(_ t: Double) -> Double {
        switch kind {
        case .cosine:
            let c = cos(Double.pi * t / 2)
            return c * c
        case .linear:
            return 1 - t
        case .sigmoid:
            func v(_ x: Double) -> Double { 1 / (1 + exp(-x / tau)) }
            return (v(end) - v(t * (end - start) + start)) / (v(end) - v(start))
        }
    }

    /// gamma(t) clipped to [1e-9, 1 - 1e-9].
    public func clippedGamma(_ t: Double) -> Double {
        min(max(gamma(t), Self.clip), 1 - Self.clip)
    }
}
