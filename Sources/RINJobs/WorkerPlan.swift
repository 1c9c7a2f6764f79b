// How many workers and how many BLAS threads each: workers x BLAS threads must not exceed the cores,
// or the threads fight over them and every job slows down.
import Foundation

/// The number of job workers and the BLAS threads each may use.
///
/// OpenBLAS's thread count is process-wide, so whoever wires the service calls
/// `BLASThreads.set(plan.blasThreadsPerWorker)` once and gives `plan.workers` to
/// `JobService.Configuration`.
public struct WorkerPlan: Sendable, Equatable, CustomStringConvertible {
    public let workers: Int
    public let blasThreadsPerWorker: Int

    public init(workers: Int, blasThreadsPerWorker: Int) {
        self.workers = max(1, workers)
        self.blasThreadsPerWorker = max(1, blasThreadsPerWorker)
    }

    /// Fills in what the operator left out so that `workers * blasThreadsPerWorker <= cores`.
    ///
    /// With neither given: up to 4 BLAS threads per worker (the small matrices of a RIN step gain
    /// little from more) and as many workers as fit, at least 1. With one given, the other is
    /// `cores / given`. With both given they are used as they are (the operator's choice).
    public static func automatic(cores: Int = ProcessInfo.processInfo.activeProcessorCount,
                                 workers: Int? = nil, blasThreads: Int? = nil) -> WorkerPlan {
        let cores = max(1, cores)
        switch (workers, blasThreads) {
        case let (workers?, threads?):
            return WorkerPlan(workers: workers, blasThreadsPerWorker: threads)
        case let (workers?, nil):
            return WorkerPlan(workers: workers, blasThreadsPerWorker: cores / max(1, workers))
        case let (nil, threads?):
            return WorkerPlan(workers: cores / max(1, threads), blasThreadsPerWorker: threads)
        case (nil, nil):
            let threads = min(4, cores)
            return WorkerPlan(workers: cores / threads, blasThreadsPerWorker: threads)
        }
    }

    public var description: String { "\(workers) worker(s) x \(blasThreadsPerWorker) BLAS thread(s)" }
}
