import Foundation

/// A RIN checkpoint's `config.json` (checkpoints/README.md). The `CodingKeys` are the file's names.
public struct RINConfig: Codable, Sendable, Equatable {
    /// Image or clip geometry: `(frames, height, width, channels)`, channels last.
    public struct Image: Codable, Sendable, Equatable {
        public var frames: Int
        public var height: Int
        public var width: Int
        public var channels: Int
        public init(frames: Int, height: Int, width: Int, channels: Int) {
            self.frames = frames; self.height = height; self.width = width; self.channels = channels
        }
    }

    /// Patch size p (square) and tube length pt along frames.
    public struct Patch: Codable, Sendable, Equatable {
        public var size: Int
        public var frames: Int
        public init(size: Int, frames: Int) { self.size = size; self.frames = frames }
    }

    /// The interface side: width D, heads of the read and write cross-attention, FF ratio r_i.
    public struct Interface: Codable, Sendable, Equatable {
        public var dim: Int
        public var heads: Int
        public var mlpRatio: Double
        enum CodingKeys: String, CodingKey { case dim, heads, mlpRatio = "mlp_ratio" }
        public init(dim: Int, heads: Int, mlpRatio: Double) { self.dim = dim; self.heads = heads; self.mlpRatio = mlpRatio }
    }

    /// The latent side: m latents (time and class tokens included), width L, self-attention heads,
    /// FF ratio r_l.
    public struct Latents: Codable, Sendable, Equatable {
        public var count: Int
        public var dim: Int
        public var heads: Int
        public var mlpRatio: Double
        enum CodingKeys: String, CodingKey { case count, dim, heads, mlpRatio = "mlp_ratio" }
        public init(count: Int, dim: Int, heads: Int, mlpRatio: Double) {
            self.count = count; self.dim = dim; self.heads = heads; self.mlpRatio = mlpRatio
        }
    }

    /// Class conditioning: `count` 0 means unconditional; `nullClass` adds the guidance row.
    public struct Classes: Codable, Sendable, Equatable {
        public var count: Int
        public var names: [String]?
        public var nullClass: Bool
        /// Where the classes live in a larger label space (absent: class k is id k).
        public var labelSpace: LabelSpace?
        enum CodingKeys: String, CodingKey { case count, names, nullClass = "null_class", labelSpace = "label_space" }
        public init(count: Int, names: [String]?, nullClass: Bool, labelSpace: LabelSpace? = nil) {
            self.count = count; self.names = names; self.nullClass = nullClass; self.labelSpace = labelSpace
        }
        /// `null_class` may be absent (false), as in the Python reference.
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            count = try c.decode(Int.self, forKey: .count)
            names = try c.decodeIfPresent([String].self, forKey: .names)
            nullClass = try c.decodeIfPresent(Bool.self, forKey: .nullClass) ?? false
            labelSpace = try c.decodeIfPresent(LabelSpace.self, forKey: .labelSpace)
        }
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(count, forKey: .count)
            try c.encodeIfPresent(names, forKey: .names)
            try c.encode(nullClass, forKey: .nullClass)
            try c.encodeIfPresent(labelSpace, forKey: .labelSpace)
        }
    }

    /// `classes.label_space` (checkpoints/README.md): class k of the model is id `ids[k]` of the
    /// label space `name` (e.g. "imagenet-1k"); `table`, a file in the checkpoint directory, lists
    /// the whole space (id, wnid, name, synonyms) so that ids and names the model was not trained on
    /// are recognised and named in errors.
    public struct LabelSpace: Codable, Sendable, Equatable {
        public var name: String
        public var ids: [Int]
        public var table: String?
        public init(name: String, ids: [Int], table: String? = nil) { self.name = name; self.ids = ids; self.table = table }
    }

    /// What the network predicts.
    public enum Prediction: String, Codable, Sendable, Equatable, CaseIterable {
        case eps, x0, v
    }

    /// The training noise schedule; only a sigmoid's parameters are used at sampling time.
    public struct TrainingSchedule: Codable, Sendable, Equatable {
        public var kind: String
        public var start: Double?
        public var end: Double?
        public var tau: Double?
        public init(kind: String, start: Double?, end: Double?, tau: Double?) {
            self.kind = kind; self.start = start; self.end = end; self.tau = tau
        }
    }

    /// How the checkpoint was trained (informative, except `schedule`).
    public struct Training: Codable, Sendable, Equatable {
        public var schedule: TrainingSchedule
        public var selfConditioningRate: Double?
        public var labelDropout: Double?
        public var steps: Int?
        public var notes: String?
        enum CodingKeys: String, CodingKey {
            case schedule, steps, notes
            case selfConditioningRate = "self_conditioning_rate", labelDropout = "label_dropout"
        }
        public init(schedule: TrainingSchedule, selfConditioningRate: Double? = nil,
                    labelDropout: Double? = nil, steps: Int? = nil, notes: String? = nil) {
            self.schedule = schedule; self.selfConditioningRate = selfConditioningRate
            self.labelDropout = labelDropout; self.steps = steps; self.notes = notes
        }
    }

    /// Defaults for sampling requests that do not say. `sampler` is "ddim" or "ddpm", `schedule`
    /// "cosine", "sigmoid" or "linear" (checked by `validate()`; the enums live in RINDiffusion).
    public struct Sampling: Codable, Sendable, Equatable {
        public var steps: Int
        public var sampler: String
        public var schedule: String
        public var guidance: Double
        /// Video models: the playback rate of their clips in frames per second (1...50); nil =
        /// `Sampling.defaultFPS`. Ignored for image models.
        public var fps: Int?
        /// The frame rate of a video model whose config gives none.
        public static let defaultFPS = 8
        /// The frame rates a config or a request may ask for: browsers play delays under 20 ms slower.
        public static let fpsRange = 1...50
        public init(steps: Int = 50, sampler: String = "ddim", schedule: String = "cosine", guidance: Double = 0,
                    fps: Int? = nil) {
            self.steps = steps; self.sampler = sampler; self.schedule = schedule; self.guidance = guidance
            self.fps = fps
        }
        /// Every key may be absent; the defaults are the Python reference's (50, ddim, cosine, 0).
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            let d = Sampling()
            steps = try c.decodeIfPresent(Int.self, forKey: .steps) ?? d.steps
            sampler = try c.decodeIfPresent(String.self, forKey: .sampler) ?? d.sampler
            schedule = try c.decodeIfPresent(String.self, forKey: .schedule) ?? d.schedule
            guidance = try c.decodeIfPresent(Double.self, forKey: .guidance) ?? d.guidance
            fps = try c.decodeIfPresent(Int.self, forKey: .fps)
        }
    }

    public var formatVersion: Int
    public var architecture: String
    public var image: Image
    public var patch: Patch
    public var interface: Interface
    public var latents: Latents
    public var blocks: Int
    public var layersPerBlock: Int
    public var classes: Classes
    public var prediction: Prediction
    /// Optional in the file: without it a sigmoid sampling schedule uses (-3, 3, 0.9).
    public var training: Training?
    public var sampling: Sampling

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        formatVersion = try c.decode(Int.self, forKey: .formatVersion)
        architecture = try c.decode(String.self, forKey: .architecture)
        // Check the identity keys before the rest so a foreign file gets the clearest message.
        guard formatVersion == 1 else {
            throw DecodingError.dataCorrupted(.init(codingPath: [CodingKeys.formatVersion],
                debugDescription: "unsupported version \(formatVersion); this engine reads version 1"))
        }
        guard architecture == "rin" else {
            throw DecodingError.dataCorrupted(.init(codingPath: [CodingKeys.architecture],
                debugDescription: "unknown architecture '\(architecture)'; this engine reads 'rin'"))
        }
        image = try c.decode(Image.self, forKey: .image)
        patch = try c.decode(Patch.self, forKey: .patch)
        interface = try c.decode(Interface.self, forKey: .interface)
        latents = try c.decode(Latents.self, forKey: .latents)
        blocks = try c.decode(Int.self, forKey: .blocks)
        layersPerBlock = try c.decode(Int.self, forKey: .layersPerBlock)
        classes = try c.decode(Classes.self, forKey: .classes)
        prediction = try c.decode(Prediction.self, forKey: .prediction)
        training = try c.decodeIfPresent(Training.self, forKey: .training)
        sampling = try c.decodeIfPresent(Sampling.self, forKey: .sampling) ?? Sampling()
    }

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version", architecture, image, patch, interface, latents, blocks
        case layersPerBlock = "layers_per_block", classes, prediction, training, sampling
    }

    public init(formatVersion: Int = 1, architecture: String = "rin", image: Image, patch: Patch,
                interface: Interface, latents: Latents, blocks: Int, layersPerBlock: Int,
                classes: Classes, prediction: Prediction, training: Training?, sampling: Sampling) {
        self.formatVersion = formatVersion; self.architecture = architecture; self.image = image
        self.patch = patch; self.interface = interface; self.latents = latents; self.blocks = blocks
        self.layersPerBlock = layersPerBlock; self.classes = classes; self.prediction = prediction
        self.training = training; self.sampling = sampling
    }

    // MARK: Derived sizes (checkpoints/README.md, "Derived")

    /// n: interface tokens.
    public var tokenCount: Int {
        (image.frames / patch.frames) * (image.height / patch.size) * (image.width / patch.size)
    }
    /// P: values per patch.
    public var patchValues: Int { patch.frames * patch.size * patch.size * image.channels }
    /// Ci = min(D, L): inner width of the read and write attention.
    public var crossWidth: Int { min(interface.dim, latents.dim) }
    /// r_l L: hidden width of the latent feed-forwards.
    public var latentHidden: Int { Int((Double(latents.dim) * latents.mlpRatio).rounded()) }
    /// r_i D: hidden width of the interface feed-forwards.
    public var interfaceHidden: Int { Int((Double(interface.dim) * interface.mlpRatio).rounded()) }
    /// (start, end, tau) of the sigmoid sampling schedule: training.schedule's when it is a
    /// sigmoid, else (-3, 3, 0.9) (checkpoints/README.md, "Sampling").
    public var sigmoidParameters: (start: Double, end: Double, tau: Double) {
        if let s = training?.schedule, s.kind == "sigmoid" { return (s.start ?? -3, s.end ?? 3, s.tau ?? 0.9) }
        return (-3, 3, 0.9)
    }
    /// Whether the model makes clips (`image.frames` > 1) rather than images.
    public var isVideo: Bool { image.frames > 1 }
    /// The playback rate of the model's clips: `sampling.fps`, else `Sampling.defaultFPS`.
    public var framesPerSecond: Int { sampling.fps ?? Sampling.defaultFPS }
    /// Floats in one image (or clip): frames * height * width * channels.
    public var imageValues: Int { image.frames * image.height * image.width * image.channels }
    /// Rows of the learned latent table: m - 2, or m - 1 when unconditional.
    public var learnedLatentCount: Int { latents.count - (classes.count > 0 ? 2 : 1) }
    /// Rows of the class embedding: count (+ 1 with the null class).
    public var classEmbeddingRows: Int { classes.count + (classes.nullClass ? 1 : 0) }

    /// Checks every value the engine relies on; the error names the key.
    public func validate(file: String = "config.json") throws(CheckpointError) {
        func fail(_ key: String, _ message: String) -> CheckpointError {
            .invalidConfig(path: file, key: key, message: message)
        }
        guard formatVersion == 1 else { throw fail("format_version", "unsupported version \(formatVersion); this engine reads version 1") }
        guard architecture == "rin" else { throw fail("architecture", "unknown architecture '\(architecture)'; this engine reads 'rin'") }
        let positives: [(String, Int)] = [
            ("image.frames", image.frames), ("image.height", image.height), ("image.width", image.width),
            ("image.channels", image.channels), ("patch.size", patch.size), ("patch.frames", patch.frames),
            ("interface.dim", interface.dim), ("interface.heads", interface.heads),
            ("latents.count", latents.count),
            ("latents.dim", latents.dim), ("latents.heads", latents.heads), ("blocks", blocks),
        ]
        for (key, value) in positives where value < 1 { throw fail(key, "must be >= 1, found \(value)") }
        guard layersPerBlock >= 0 else { throw fail("layers_per_block", "must be >= 0, found \(layersPerBlock)") }
        for (key, width, ratio) in [("interface.mlp_ratio", interface.dim, interface.mlpRatio),
                                    ("latents.mlp_ratio", latents.dim, latents.mlpRatio)] {
            let hidden = Double(width) * ratio
            guard ratio.isFinite, hidden >= 1, abs(hidden - hidden.rounded()) <= 1e-9 else {
                throw fail(key, "times the width must be a positive integer, found \(ratio)")
            }
        }
        guard image.height % patch.size == 0 else { throw fail("image.height", "\(image.height) is not divisible by patch.size \(patch.size)") }
        guard image.width % patch.size == 0 else { throw fail("image.width", "\(image.width) is not divisible by patch.size \(patch.size)") }
        guard image.frames % patch.frames == 0 else { throw fail("image.frames", "\(image.frames) is not divisible by patch.frames \(patch.frames)") }
        guard latents.dim % 8 == 0 else { throw fail("latents.dim", "must be a multiple of 8 (the time features have L/4 values, half sin, half cos), found \(latents.dim)") }
        guard latents.dim % latents.heads == 0 else { throw fail("latents.heads", "\(latents.heads) does not divide latents.dim \(latents.dim)") }
        guard crossWidth % interface.heads == 0 else { throw fail("interface.heads", "\(interface.heads) does not divide min(interface.dim, latents.dim) = \(crossWidth)") }
        guard classes.count >= 0 else { throw fail("classes.count", "must be >= 0, found \(classes.count)") }
        guard learnedLatentCount >= 1 else { throw fail("latents.count", "\(latents.count) leaves no learned latents besides the time and class tokens") }
        if let names = classes.names, names.count != classes.count {
            throw fail("classes.names", "has \(names.count) names but classes.count is \(classes.count)")
        }
        if classes.count == 0 && classes.nullClass { throw fail("classes.null_class", "needs classes.count >= 1") }
        if let space = classes.labelSpace {
            guard !space.name.isEmpty else { throw fail("classes.label_space.name", "must not be empty") }
            guard space.ids.count == classes.count else {
                throw fail("classes.label_space.ids", "has \(space.ids.count) ids but classes.count is \(classes.count)")
            }
            if let bad = space.ids.first(where: { $0 < 0 }) { throw fail("classes.label_space.ids", "ids must be >= 0, found \(bad)") }
            guard Set(space.ids).count == space.ids.count else { throw fail("classes.label_space.ids", "ids must be distinct") }
            if let table = space.table {
                guard !table.isEmpty, !table.contains("/"), table != ".", table != ".." else {
                    throw fail("classes.label_space.table", "must be a file name in the checkpoint directory, found '\(table)'")
                }
            }
        }
        // Only what makes the defaults meaningless is refused here; a request that takes a default
        // outside the request ranges (steps > 1000, guidance > 30) is refused when it is made.
        guard sampling.steps >= 1 else { throw fail("sampling.steps", "must be >= 1, found \(sampling.steps)") }
        guard ["ddim", "ddpm"].contains(sampling.sampler) else { throw fail("sampling.sampler", "must be ddim or ddpm, found '\(sampling.sampler)'") }
        guard ["cosine", "sigmoid", "linear"].contains(sampling.schedule) else { throw fail("sampling.schedule", "must be cosine, sigmoid or linear, found '\(sampling.schedule)'") }
        guard sampling.guidance >= 0 && sampling.guidance.isFinite else { throw fail("sampling.guidance", "must be >= 0, found \(sampling.guidance)") }
        if let fps = sampling.fps, !Sampling.fpsRange.contains(fps) {
            throw fail("sampling.fps", "must be in \(Sampling.fpsRange.lowerBound)...\(Sampling.fpsRange.upperBound) frames per second, found \(fps)")
        }
        if let s = training?.schedule, s.kind == "sigmoid" {
            let start = s.start ?? -3, end = s.end ?? 3, tau = s.tau ?? 0.9
            guard tau > 0 else { throw fail("training.schedule.tau", "must be > 0, found \(tau)") }
            guard end > start else { throw fail("training.schedule.end", "must be greater than start (\(start)), found \(end)") }
        }
    }

    /// Decodes and validates config.json data; errors name `file` and the key.
    public static func decode(_ data: Data, file: String = "config.json") throws(CheckpointError) -> RINConfig {
        let config: RINConfig
        do {
            config = try JSONDecoder().decode(RINConfig.self, from: data)
        } catch let error as DecodingError {
            throw Self.describe(error, file: file)
        } catch {
            throw .badConfig(path: file, key: "", message: "\(error)")
        }
        try config.validate(file: file)
        return config
    }

    /// The JSON of this configuration, with the file's key names.
    public func encoded() -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        // Encoding plain structs of numbers and strings cannot fail.
        return try! encoder.encode(self)
    }

    private static func describe(_ error: DecodingError, file: String) -> CheckpointError {
        func path(_ codingPath: [any CodingKey], _ last: (any CodingKey)? = nil) -> String {
            (codingPath + (last.map { [$0] } ?? [])).map { $0.intValue.map(String.init) ?? $0.stringValue }
                .joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let context):
            return .badConfig(path: file, key: path(context.codingPath, key), message: "required key is missing")
        case .typeMismatch(let type, let context):
            return .badConfig(path: file, key: path(context.codingPath), message: "expected \(type)")
        case .valueNotFound(let type, let context):
            return .badConfig(path: file, key: path(context.codingPath), message: "expected \(type), found null")
        case .dataCorrupted(let context):
            let key = path(context.codingPath)
            if context.codingPath.isEmpty {
                return .badConfig(path: file, key: "", message: "not valid JSON")
            }
            return .badConfig(path: file, key: key, message: context.debugDescription)
        @unknown default:
            return .badConfig(path: file, key: "", message: "\(error)")
        }
    }
}
