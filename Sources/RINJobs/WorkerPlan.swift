// How many jobs run at once and how many threads the matrix library uses.
//
// With cross-job batching (BatchScheduler) the running jobs of a model share one scheduler thread
// and one batched network pass per step, so the cores are best spent inside the matrix products of
// that one pass: one batched product with all cores beats several single-job products contending
// for them (docs/PERFORMANCE.md, "Thread model"). So the plan is: all cores for the matrix library,
// and a number of batch slots.
import Foundation

/// Jobs running at the same time (batch slots, shared by all models) and the matrix library's
/// threads (OpenBLAS and oneDNN; process-wide).
///
/// Whoever wires the service calls `BLASThreads.set(plan.matrixThreads)` once and gives
/// `plan.workers` to `JobService.Configuration`.
public struct WorkerPlan: Sendable, Equatable, CustomStringConvertible {
    /// Jobs running at the same time; each model's running jobs step together in one batch.
    public let workers: Int
    /// Threads of every matrix product (process-wide).
    public let matrixThreads: Int

    /// Batch slots when the operator gives none.
    public static let defaultWorkers = 8

    public init(workers: Int, matrixThreads: Int) {
        self.workers = max(1, workers)
        self.matrixThreads = max(1, matrixThreads)
    }

    /// Fills in what the operator left out: `defaultWorkers` slots, and one matrix thread per core.
    public static func automatic(cores: Int = ProcessInfo.processInfo.activeProcessorCount,
                                 workers: Int? = nil, blasThreads: Int? = nil) -> WorkerPlan {
        WorkerPlan(workers: workers ?? defaultWorkers, matrixThreads: blasThreads ?? max(1, cores))
    }

    public var description: String {
        "\(workers) batch slot(s), \(matrixThreads) matrix thread(s)"
    }
}
