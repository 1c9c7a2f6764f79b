import Foundation
import RINModel

/// Which sampler a run uses: DDIMSampler.swift, DDPMSampler.swift.
public enum SamplerKind: String, CaseIterable, Codable, Sendable {
    case ddim, ddpm
}

/// Why sampling parameters were refused; the message states the allowed values.
public enum SamplingError: Error, CustomStringConvertible, Equatable {
    case invalidParameter(name: String, message: String)

    public var description: String {
        switch self {
        case .invalidParameter(let name, let message): return "invalid \(name): \(message)"
        }
    }
}

/// Everything a sampling run needs besides the checkpoint.
public struct SamplingParameters: Codable, Sendable, Equatable {
    /// The class row; nil = unconditional (a model without classes, or the null class).
    public var classIndex: Int?
    /// 0...2^53 - 1 (JSON-safe); with `count` it fixes every noise draw.
    public var seed: UInt64
    /// 1...1000.
    public var steps: Int
    public var sampler: SamplerKind
    public var schedule: ScheduleKind
    /// Classifier-free guidance weight, 0...30; > 0 needs a class and `classes.null_class`.
    public var guidance: Float
    /// Images per run, 1...16 (image i starts from noise(seed, i, 0)).
    public var count: Int
    /// true: RIN's latent self-conditioning carries Z between steps; false resets it to zeros.
    public var carryLatents: Bool

    public static let maxSeed: UInt64 = (1 << 53) - 1
    public static let stepRange = 1...1000
    public static let countRange = 1...16
    public static let guidanceRange: ClosedRange<Float> = 0...30

    public init(classIndex: Int?, seed: UInt64, steps: Int, sampler: SamplerKind, schedule: ScheduleKind,
                guidance: Float, count: Int = 1, carryLatents: Bool = true) {
        self.classIndex = classIndex; self.seed = seed; self.steps = steps; self.sampler = sampler
        self.schedule = schedule; self.guidance = guidance; self.count = count; self.carryLatents = carryLatents
    }

    /// The checkpoint's sampling defaults: class 0 (or none for an unconditional model), seed 0,
    /// one image, latents carried; guidance only when the model has a null class.
    public static func defaults(for config: RINConfig) -> SamplingParameters {
        SamplingParameters(
            classIndex: config.classes.count > 0 ? 0 : nil, seed: 0, steps: config.sampling.steps,
            sampler: SamplerKind(rawValue: config.sampling.sampler) ?? .ddim,
            schedule: ScheduleKind(rawValue: config.sampling.schedule) ?? .cosine,
            guidance: config.classes.nullClass ? Float(config.sampling.guidance) : 0)
    }

    /// These parameters if `config`'s model can use them, else the first problem found.
    public func validated(for config: RINConfig) throws(SamplingError) -> SamplingParameters {
        func fail(_ name: String, _ message: String) -> SamplingError { .invalidParameter(name: name, message: message) }
        if config.classes.count == 0 {
            if let classIndex { throw fail("class", "this model is unconditional and takes no class (got \(classIndex))") }
        } else if let classIndex {
            guard classIndex >= 0 && classIndex < config.classes.count else {
                throw fail("class", Self.classRangeMessage(config) + " (got \(classIndex))")
            }
        } else if !config.classes.nullClass {
            throw fail("class", "this model needs a class: " + Self.classRangeMessage(config))
        }
        guard seed <= Self.maxSeed else { throw fail("seed", "must be 0...\(Self.maxSeed) (got \(seed))") }
        guard Self.stepRange.contains(steps) else { throw fail("steps", "must be 1...1000 (got \(steps))") }
        guard Self.countRange.contains(count) else { throw fail("count", "must be 1...16 (got \(count))") }
        guard guidance.isFinite && Self.guidanceRange.contains(guidance) else {
            throw fail("guidance", "must be 0...30 (got \(guidance))")
        }
        if guidance > 0 {
            guard config.classes.nullClass else {
                throw fail("guidance", "must be 0: this model has no null class, so classifier-free guidance is unavailable (got \(guidance))")
            }
            guard classIndex != nil else { throw fail("guidance", "must be 0 without a class (got \(guidance))") }
        }
        return self
    }

    /// "class must be 0...9 or one of airplane, automobile, ..." for `config`.
    static func classRangeMessage(_ config: RINConfig) -> String {
        var message = "class must be 0...\(config.classes.count - 1)"
        if let names = config.classes.names, !names.isEmpty { message += " or one of " + names.joined(separator: ", ") }
        return message
    }
}
