// The job model: what a job is, as the service stores it and as readers see it.
import Foundation
import RINDiffusion

/// A job's identifier: 16 lowercase hexadecimal characters (64 random bits).
///
/// Ids name directories in the state directory, so `init?(_:)` accepts only this exact form: a
/// server can pass an id taken from a URL straight in without any path traversal risk.
public struct JobID: Hashable, Sendable, Codable, CustomStringConvertible, Comparable {
    /// The 16 hexadecimal characters.
    public let rawValue: String

    /// Parses an id; nil unless `string` is exactly 16 characters of `0-9a-f`.
    public init?(_ string: String) {
        guard string.utf8.count == 16,
              string.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
            return nil
        }
        rawValue = string
    }

    /// A fresh random id.
    public static func random() -> JobID {
        var generator = SystemRandomNumberGenerator()
        let hex = String(generator.next() as UInt64, radix: 16)
        return JobID(String(repeating: "0", count: 16 - hex.count) + hex)!
    }

    public var description: String { rawValue }

    public static func < (lhs: JobID, rhs: JobID) -> Bool { lhs.rawValue < rhs.rawValue }

    public init(from decoder: any Decoder) throws {
        let string = try decoder.singleValueContainer().decode(String.self)
        guard let id = JobID(string) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                    debugDescription: "not a job id: \(string)"))
        }
        self = id
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

/// Where a job is in its life. `succeeded`, `failed` and `canceled` are final.
public enum JobStatus: String, Codable, Sendable, CaseIterable {
    case queued, running, succeeded, failed, canceled

    /// True for the final states.
    public var isFinished: Bool {
        switch self {
        case .queued, .running: false
        case .succeeded, .failed, .canceled: true
        }
    }
}

/// How far a job's sampling run has come, for progress bars and ETAs.
public struct JobProgress: Codable, Sendable, Equatable {
    /// Denoising steps done.
    public var step: Int
    /// Denoising steps in all.
    public var steps: Int
    /// Seconds since this run started (0 while queued).
    public var elapsedSeconds: Double
    /// Estimated seconds until the run is done: nil before the first step is done.
    public var etaSeconds: Double?
    /// Mean seconds per step so far: nil before the first step is done.
    public var secondsPerStep: Double?

    public init(step: Int, steps: Int, elapsedSeconds: Double = 0, etaSeconds: Double? = nil,
                secondsPerStep: Double? = nil) {
        self.step = step
        self.steps = steps
        self.elapsedSeconds = elapsedSeconds
        self.etaSeconds = etaSeconds
        self.secondsPerStep = secondsPerStep
    }

    /// `step / steps`, in [0, 1].
    public var fraction: Double { steps > 0 ? Double(step) / Double(steps) : 0 }
}

/// What a client asks for. Every field is optional: nil takes the model's default
/// (`SamplingParameters.defaults(for:)`), and a nil seed is drawn at random when the job is
/// accepted, so the stored, resolved parameters always reproduce the result.
public struct JobRequest: Codable, Sendable, Equatable {
    /// A loaded model's name; nil = the service's default model (the first one it was given).
    public var model: String?
    /// Class index; nil = the model's default. Class names are the server's business: it maps
    /// them to indices with the checkpoint's `config`.
    public var classIndex: Int?
    public var seed: UInt64?
    public var steps: Int?
    public var sampler: SamplerKind?
    public var schedule: ScheduleKind?
    public var guidance: Float?
    /// Images per job.
    public var count: Int?
    public var carryLatents: Bool?
    /// A preview every this many steps; 0 = none; nil = `JobService.Configuration.previewEvery`.
    public var previewEvery: Int?
    /// true = sample without a class (the null class of a model that has one); `classIndex` must
    /// then be nil, and guidance defaults to 0. nil or false = a class (the default one if
    /// `classIndex` is nil).
    public var unconditional: Bool?

    public init(model: String? = nil, classIndex: Int? = nil, seed: UInt64? = nil, steps: Int? = nil,
                sampler: SamplerKind? = nil, schedule: ScheduleKind? = nil, guidance: Float? = nil,
                count: Int? = nil, carryLatents: Bool? = nil, previewEvery: Int? = nil,
                unconditional: Bool? = nil) {
        self.model = model
        self.classIndex = classIndex
        self.seed = seed
        self.steps = steps
        self.sampler = sampler
        self.schedule = schedule
        self.guidance = guidance
        self.count = count
        self.carryLatents = carryLatents
        self.previewEvery = previewEvery
        self.unconditional = unconditional
    }
}

extension JobRequest {
    /// The sampling part, for `SamplingRequest.resolved(for:)` (the one place parameters are
    /// resolved and validated).
    var sampling: SamplingRequest {
        SamplingRequest(classIndex: classIndex, unconditional: unconditional ?? false, seed: seed, steps: steps,
                        sampler: sampler, schedule: schedule, guidance: guidance, count: count,
                        carryLatents: carryLatents)
    }
}

/// One encoded picture the service holds, with the step it shows.
public struct JobImage: Sendable, Equatable {
    /// The denoising step the picture was taken after (`steps` for a final image).
    public let step: Int
    /// The bytes the service's `ImageEncoder` produced (PNG when the daemon wires it).
    public let data: Data

    public init(step: Int, data: Data) {
        self.step = step
        self.data = data
    }
}

/// A consistent copy of one job at one revision: what `GET /jobs/<id>` shows.
public struct JobSnapshot: Sendable, Equatable {
    public let id: JobID
    /// The model's name.
    public let model: String
    /// The parameters as resolved (seed included): running them again gives the same images.
    public let parameters: SamplingParameters
    /// A preview every this many steps; 0 = none.
    public let previewEvery: Int
    public let status: JobStatus
    /// 1 = the next job to start; nil unless queued.
    public let queuePosition: Int?
    public let progress: JobProgress
    public let createdAt: Date
    /// When the current (or last) run started; nil while queued.
    public let startedAt: Date?
    public let finishedAt: Date?
    /// Why the job failed; nil unless `status == .failed`.
    public let error: String?
    /// Grows by one on every change, the progress of each step included: an ETag.
    public let revision: Int
    public let idempotencyKey: String?
    /// True once a cancel was asked for; a running job stops after its current step.
    public let cancelRequested: Bool
    /// The step of the latest preview; nil when there is none.
    public let previewStep: Int?
    /// Final images available (`parameters.count` once succeeded, else 0).
    public let imageCount: Int
    /// How many times a run was started (more than 1 after a restart re-ran it).
    public let attempts: Int
    /// The request as the client sent it (before defaults were applied).
    public let request: JobRequest
}

extension JobSnapshot {
    /// The snapshot of a record; `queuePosition` only means something while it is queued.
    init(record: JobRecord, queuePosition: Int?) {
        self.init(
            id: record.id, model: record.model, parameters: record.parameters,
            previewEvery: record.previewEvery, status: record.status,
            queuePosition: record.status == .queued ? queuePosition : nil,
            progress: record.progress, createdAt: record.createdAt, startedAt: record.startedAt,
            finishedAt: record.finishedAt, error: record.error, revision: record.revision,
            idempotencyKey: record.idempotencyKey, cancelRequested: record.cancelRequested,
            previewStep: record.previewStep, imageCount: record.imageCount,
            attempts: record.attempts, request: record.request)
    }
}

/// What `JobService.submit` returns.
public struct JobSubmission: Sendable, Equatable {
    public let job: JobSnapshot
    /// True when an earlier submission with the same idempotency key and request is returned
    /// instead of a new job.
    public let replayed: Bool
}

/// One page of `JobService.list`.
public struct JobPage: Sendable, Equatable {
    /// Newest first.
    public let jobs: [JobSnapshot]
    /// Matching jobs in all (for paging).
    public let total: Int
}
