import RINModel

/// What a caller asks a sampling run for, before the model's defaults: every field optional.
///
/// The one place where a request's parameters are resolved and validated: the HTTP API (through
/// the job layer's `JobRequest`) and `rind sample` both build one of these, turn their text into
/// values with `sampler(_:)`, `schedule(_:)` and `classRow(_:in:)`, and call `resolved(for:)`,
/// which applies the checkpoint's defaults (`SamplingParameters.defaults(for:)`), draws a seed
/// when none is given, and validates the result (`SamplingParameters.validated(for:)`).
public struct SamplingRequest: Sendable, Equatable {
    /// A class row of the model (`classRow(_:in:)` turns ids and names into one); nil = the
    /// model's default class, or none with `unconditional`.
    public var classIndex: Int?
    /// true = sample without a class (the null class of a model that has one); `classIndex` must
    /// then be nil.
    public var unconditional: Bool
    public var seed: UInt64?
    public var steps: Int?
    public var sampler: SamplerKind?
    public var schedule: ScheduleKind?
    public var guidance: Float?
    public var count: Int?
    public var carryLatents: Bool?

    public init(classIndex: Int? = nil, unconditional: Bool = false, seed: UInt64? = nil, steps: Int? = nil,
                sampler: SamplerKind? = nil, schedule: ScheduleKind? = nil, guidance: Float? = nil,
                count: Int? = nil, carryLatents: Bool? = nil) {
        self.classIndex = classIndex; self.unconditional = unconditional; self.seed = seed
        self.steps = steps; self.sampler = sampler; self.schedule = schedule; self.guidance = guidance
        self.count = count; self.carryLatents = carryLatents
    }

    /// A seed from the system's generator, within the seeds the engine accepts (JSON-safe integers).
    public static func randomSeed() -> UInt64 {
        var generator = SystemRandomNumberGenerator()
        return generator.next() & SamplingParameters.maxSeed
    }

    /// The parameters for `config`'s model: its defaults, then this request's values; a seed from
    /// `seedSource` when none was given. Guidance falls to 0 without a class unless the request
    /// sets it (then validation says why it cannot be). Throws the first invalid parameter.
    public func resolved(for config: RINConfig, seedSource: () -> UInt64 = SamplingRequest.randomSeed)
        throws(SamplingError) -> SamplingParameters {
        var parameters = SamplingParameters.defaults(for: config)
        if let classIndex { parameters.classIndex = classIndex }
        if unconditional {
            guard classIndex == nil else {
                throw .invalidParameter(name: "class", message: "give either a class or unconditional sampling, not both")
            }
            parameters.classIndex = nil
        }
        if parameters.classIndex == nil && guidance == nil { parameters.guidance = 0 }
        if let steps { parameters.steps = steps }
        if let sampler { parameters.sampler = sampler }
        if let schedule { parameters.schedule = schedule }
        if let guidance { parameters.guidance = guidance }
        if let count { parameters.count = count }
        if let carryLatents { parameters.carryLatents = carryLatents }
        parameters.seed = seed ?? seedSource()
        return try parameters.validated(for: config)
    }

    // MARK: Text, as the API and the CLI receive it

    /// "ddim" or "ddpm", case-insensitively.
    public static func sampler(_ text: String) throws(SamplingError) -> SamplerKind {
        guard let kind = SamplerKind(rawValue: text.lowercased()) else {
            throw .invalidParameter(name: "sampler", message: "must be one of \(SamplerKind.allCases.map(\.rawValue).joined(separator: ", ")); got '\(text)'")
        }
        return kind
    }

    /// "cosine", "sigmoid" or "linear", case-insensitively.
    public static func schedule(_ text: String) throws(SamplingError) -> ScheduleKind {
        guard let kind = ScheduleKind(rawValue: text.lowercased()) else {
            throw .invalidParameter(name: "schedule", message: "must be one of \(ScheduleKind.allCases.map(\.rawValue).joined(separator: ", ")); got '\(text)'")
        }
        return kind
    }

    /// The model row of a class given as an id, a name or a synonym (the checkpoint's `ClassCatalog`).
    public static func classRow(_ text: String, in checkpoint: RINCheckpoint) throws(SamplingError) -> Int {
        do {
            return try checkpoint.classes.resolve(text)
        } catch {
            throw .invalidParameter(name: "class", message: error.description)
        }
    }
}
