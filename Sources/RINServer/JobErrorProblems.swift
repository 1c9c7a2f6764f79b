// The one place where job layer errors (`JobError`) become HTTP problems: lower layers throw their
// own typed errors and know nothing of HTTP.
import Foundation
import RINJobs

extension APIServer {
    /// Runs a job service call, turning its error into the problem to answer.
    static func mapped<T>(_ body: () throws(JobError) -> T) throws(Problem) -> T {
        do { return try body() } catch { throw problem(for: error) }
    }

    /// Maps every job layer error to its problem.
    static func problem(for error: JobError) -> Problem {
        switch error {
        case let .unknownModel(name, available):
            return .invalidParameter("model", "unknown model '\(name)'; loaded: \(available.joined(separator: ", "))")
        case let .invalidParameter(name, message):
            let apiName = GenerateParameters.apiName(name)
            return .invalidParameter(apiName, "'\(apiName)': \(message)")
        case let .queueFull(retryAfter):
            return .queueFull(retryAfter: max(1, retryAfter), detail: error.description)
        case .shuttingDown:
            return .unavailable(detail: error.description, retryAfter: 5)
        case .notFound:
            return .notFound(error.description)
        case .gone:
            return .gone(error.description)
        case .idempotencyConflict:
            return Problem(kind: "idempotency-conflict", title: "Idempotency key reused", status: 422,
                           detail: error.description, parameter: "Idempotency-Key")
        case let .notFinished(_, _, retryAfter):
            return .conflict(error.description, retryAfter: max(1, retryAfter))
        case .noResult:
            return Problem(kind: "no-result", title: "Job has no result", status: 404, detail: error.description)
        case .imageIndexOutOfRange:
            return .invalidParameter("i", error.description)
        case .noPreview:
            return Problem(kind: "no-preview", title: "No preview yet", status: 404, detail: error.description)
        case .storage:
            // The path stays in the log (JobService logs it); clients learn only what happened.
            return .internalError("the state directory could not be read or written; the error is in the daemon's log")
        case .storageFull:
            return Problem(kind: "insufficient-storage", title: "Insufficient storage", status: 507,
                           detail: "the state directory is full; the job was not accepted", headers: ["Retry-After": "30"])
        case .databaseUnavailable:
            // The database's own message stays in the log; the daemon reconnects by itself.
            return .unavailable(detail: "the job database is unavailable; the daemon reconnects by itself", retryAfter: 5)
        case .leaseLost:
            return .internalError("the job moved to another box; the error is in the daemon's log")
        }
    }
}
