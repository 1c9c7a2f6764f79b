// The JSON bodies of the API (openapi.yaml's schemas). Field names are snake_case as users type them
// in curl; optional fields are written as null rather than left out, so clients see every field.
import Foundation
import RINDiffusion
import RINJobs
import RINModel

/// Formats timestamps as RFC 3339 with milliseconds, in UTC.
enum Timestamp {
    static func string(_ date: Date?) -> String? {
        guard let date else { return nil }
        return ISO8601DateFormatter.string(from: date, timeZone: TimeZone(identifier: "UTC")!,
                                           formatOptions: [.withInternetDateTime, .withFractionalSeconds])
    }
}

/// A `Float` written with its shortest decimal form (3.0 -> 3, 0.1 -> 0.1, not 0.100000001).
struct ShortFloat: Encodable {
    let value: Float
    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(Double(String(value)) ?? Double(value))
    }
}

/// `GET /jobs/<id>`: the job object.
struct JobBody: Encodable {
    struct Progress: Encodable {
        let step: Int, steps: Int, fraction: Double
        let elapsedSeconds: Double, etaSeconds: Double?, secondsPerStep: Double?
        enum CodingKeys: String, CodingKey {
            case step, steps, fraction
            case elapsedSeconds = "elapsed_s", etaSeconds = "eta_s", secondsPerStep = "s_per_step"
        }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(step, forKey: .step)
            try c.encode(steps, forKey: .steps)
            try c.encode(fraction, forKey: .fraction)
            try c.encode(elapsedSeconds, forKey: .elapsedSeconds)
            try c.encode(etaSeconds, forKey: .etaSeconds)
            try c.encode(secondsPerStep, forKey: .secondsPerStep)
        }
    }
    struct Params: Encodable {
        let classIndex: Int?, className: String?, seed: UInt64, steps: Int, sampler: String
        let schedule: String, guidance: ShortFloat, n: Int, previewEvery: Int, carryLatents: Bool
        enum CodingKeys: String, CodingKey {
            case classIndex = "class", className = "class_name", seed, steps, sampler, schedule, guidance, n
            case previewEvery = "preview_every", carryLatents = "carry_latents"
        }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(classIndex, forKey: .classIndex)
            try c.encode(className, forKey: .className)
            try c.encode(seed, forKey: .seed)
            try c.encode(steps, forKey: .steps)
            try c.encode(sampler, forKey: .sampler)
            try c.encode(schedule, forKey: .schedule)
            try c.encode(guidance, forKey: .guidance)
            try c.encode(n, forKey: .n)
            try c.encode(previewEvery, forKey: .previewEvery)
            try c.encode(carryLatents, forKey: .carryLatents)
        }
    }
    struct Links: Encodable {
        let `self`: String, preview: String, stream: String, events: String, image: String
        let images: [String], cancel: String
        /// Video models: each clip's contact sheet (`image` is then the APNG); empty for image models.
        let frames: [String]
    }

    let id: String, status: String, model: String, queuePosition: Int?
    let progress: Progress, params: Params
    let createdAt: String?, startedAt: String?, finishedAt: String?
    let error: String?, cancelRequested: Bool, previewStep: Int?, imageCount: Int, attempts: Int
    let links: Links

    enum CodingKeys: String, CodingKey {
        case id, status, model, queuePosition = "queue_position", progress, params
        case createdAt = "created_at", startedAt = "started_at", finishedAt = "finished_at"
        case error, cancelRequested = "cancel_requested", previewStep = "preview_step"
        case imageCount = "image_count", attempts, links
    }

    init(_ job: JobSnapshot, config: RINConfig?) {
        let base = "/jobs/\(job.id.rawValue)"
        id = job.id.rawValue
        status = job.status.rawValue
        model = job.model
        queuePosition = job.queuePosition
        progress = Progress(step: job.progress.step, steps: job.progress.steps, fraction: job.progress.fraction,
                            elapsedSeconds: job.progress.elapsedSeconds, etaSeconds: job.progress.etaSeconds,
                            secondsPerStep: job.progress.secondsPerStep)
        let parameters = job.parameters
        let names = config?.classes.names
        let className = parameters.classIndex.flatMap { index in
            names.flatMap { index >= 0 && index < $0.count ? $0[index] : nil }
        }
        // `class` is the id users give: the label-space id (ImageNet 207) where the model has one.
        let classId = parameters.classIndex.map { row in
            config?.classes.labelSpace.flatMap { row >= 0 && row < $0.ids.count ? $0.ids[row] : nil } ?? row
        }
        params = Params(classIndex: classId, className: className, seed: parameters.seed,
                        steps: parameters.steps, sampler: parameters.sampler.rawValue,
                        schedule: parameters.schedule.rawValue, guidance: ShortFloat(value: parameters.guidance),
                        n: parameters.count, previewEvery: job.previewEvery, carryLatents: parameters.carryLatents)
        createdAt = Timestamp.string(job.createdAt)
        startedAt = Timestamp.string(job.startedAt)
        finishedAt = Timestamp.string(job.finishedAt)
        error = job.error
        cancelRequested = job.cancelRequested
        previewStep = job.previewStep
        imageCount = job.imageCount
        attempts = job.attempts
        links = Links(self: base, preview: base + "/preview.png", stream: base + "/stream",
                      events: base + "/events", image: base + "/image.png",
                      images: (0..<parameters.count).map { base + "/image.png?i=\($0)" },
                      cancel: base + "/cancel",
                      frames: config?.isVideo == true ? (0..<parameters.count).map { base + "/frames.png?i=\($0)" } : [])
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(status, forKey: .status)
        try c.encode(model, forKey: .model)
        try c.encode(queuePosition, forKey: .queuePosition)
        try c.encode(progress, forKey: .progress)
        try c.encode(params, forKey: .params)
        try c.encode(createdAt, forKey: .createdAt)
        try c.encode(startedAt, forKey: .startedAt)
        try c.encode(finishedAt, forKey: .finishedAt)
        try c.encode(error, forKey: .error)
        try c.encode(cancelRequested, forKey: .cancelRequested)
        try c.encode(previewStep, forKey: .previewStep)
        try c.encode(imageCount, forKey: .imageCount)
        try c.encode(attempts, forKey: .attempts)
        try c.encode(links, forKey: .links)
    }
}

/// `GET /jobs`: one page of jobs, newest first.
struct JobListBody: Encodable {
    let jobs: [JobBody]
    let total: Int
    let limit: Int
    let offset: Int
    let nextCursor: String?
    enum CodingKeys: String, CodingKey { case jobs, total, limit, offset, nextCursor = "next_cursor" }
    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(jobs, forKey: .jobs)
        try c.encode(total, forKey: .total)
        try c.encode(limit, forKey: .limit)
        try c.encode(offset, forKey: .offset)
        try c.encode(nextCursor, forKey: .nextCursor)
    }
}

/// `GET /models`: one loaded checkpoint.
struct ModelBody: Encodable {
    struct Image: Encodable { let frames: Int, height: Int, width: Int, channels: Int }
    struct Classes: Encodable {
        /// `ids[k]` is the id (label-space id, or k) and `names[k]` the name of class k.
        let count: Int, names: [String]?, nullClass: Bool, labelSpace: String?, ids: [Int]
        enum CodingKeys: String, CodingKey { case count, names, nullClass = "null_class", labelSpace = "label_space", ids }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(count, forKey: .count)
            try c.encode(names, forKey: .names)
            try c.encode(nullClass, forKey: .nullClass)
            try c.encode(labelSpace, forKey: .labelSpace)
            try c.encode(ids, forKey: .ids)
        }
    }
    struct Defaults: Encodable {
        let classIndex: Int?, steps: Int, sampler: String, schedule: String, guidance: ShortFloat, n: Int
        let previewEvery: Int
        enum CodingKeys: String, CodingKey {
            case classIndex = "class", steps, sampler, schedule, guidance, n, previewEvery = "preview_every"
        }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(classIndex, forKey: .classIndex)
            try c.encode(steps, forKey: .steps)
            try c.encode(sampler, forKey: .sampler)
            try c.encode(schedule, forKey: .schedule)
            try c.encode(guidance, forKey: .guidance)
            try c.encode(n, forKey: .n)
            try c.encode(previewEvery, forKey: .previewEvery)
        }
    }
    struct Limits: Encodable {
        let steps: [Int], n: [Int], guidanceMin: Double, guidanceSupported: Bool, samplers: [String]
        let schedules: [String]
        enum CodingKeys: String, CodingKey {
            case steps, n, guidanceMin = "guidance_min", guidanceSupported = "guidance_supported"
            case samplers, schedules
        }
    }
    let name: String, isDefault: Bool, image: Image, classes: Classes, prediction: String
    let defaults: Defaults, limits: Limits
    /// "video" for models that make clips (`image.frames` > 1, served as APNG), else "image".
    let kind: String
    /// Video models: the frames per second their clips play at unless a request says; null for images.
    let fps: Int?
    enum CodingKeys: String, CodingKey {
        case name, isDefault = "default", image, classes, prediction, defaults, limits, kind, fps
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(isDefault, forKey: .isDefault)
        try c.encode(kind, forKey: .kind)
        try c.encode(image, forKey: .image)
        try c.encode(fps, forKey: .fps)
        try c.encode(classes, forKey: .classes)
        try c.encode(prediction, forKey: .prediction)
        try c.encode(defaults, forKey: .defaults)
        try c.encode(limits, forKey: .limits)
    }

    init(_ checkpoint: RINCheckpoint, isDefault: Bool, previewEvery: Int) {
        let config = checkpoint.config
        let defaults = SamplingParameters.defaults(for: config)
        name = checkpoint.name
        self.isDefault = isDefault
        image = Image(frames: config.image.frames, height: config.image.height, width: config.image.width,
                      channels: config.image.channels)
        kind = config.isVideo ? "video" : "image"
        fps = config.isVideo ? config.framesPerSecond : nil
        let names = checkpoint.classes.classes.compactMap(\.name)
        classes = Classes(count: config.classes.count, names: !names.isEmpty && names.count == config.classes.count ? names : nil,
                          nullClass: config.classes.nullClass, labelSpace: config.classes.labelSpace?.name,
                          ids: checkpoint.classes.classes.map(\.id))
        prediction = config.prediction.rawValue
        self.defaults = Defaults(classIndex: defaults.classIndex, steps: defaults.steps,
                                 sampler: defaults.sampler.rawValue, schedule: defaults.schedule.rawValue,
                                 guidance: ShortFloat(value: defaults.guidance), n: defaults.count,
                                 previewEvery: previewEvery)
        limits = Limits(steps: [1, 1000], n: [1, 16], guidanceMin: 0, guidanceSupported: config.classes.nullClass,
                        samplers: SamplerKind.allCases.map(\.rawValue), schedules: ScheduleKind.allCases.map(\.rawValue))
    }
}

struct ModelListBody: Encodable {
    /// The model a request that names none goes to (`rind serve --default-model`).
    let defaultModel: String
    let models: [ModelBody]
    enum CodingKeys: String, CodingKey { case defaultModel = "default_model", models }
}

/// `GET /healthz` and `GET /readyz`.
struct HealthBody: Encodable {
    let status: String
}
