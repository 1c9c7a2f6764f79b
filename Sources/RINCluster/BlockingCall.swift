// The job layer calls its store from plain threads and waits for the answer (SharedJobStore's
// contract); postgres-nio answers in async functions on its event loops. This is the one bridge:
// the operation runs as a task on Swift concurrency's pool while the calling thread waits on a
// semaphore, at most `timeout`. It must not be called from a task or an event-loop thread (it
// would block a thread the operation itself may need).
import Dispatch
import Foundation

/// The operation did not finish within its time limit (the database does not answer).
struct CallTimedOut: Error, CustomStringConvertible {
    let timeout: Duration
    var description: String { "no answer within \(timeout.seconds) s" }
}

/// Where a finished task leaves its result for the waiting thread.
private final class ResultSlot<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var result: Result<Value, any Error>?

    func put(_ result: Result<Value, any Error>) {
        lock.withLock { self.result = result }
    }

    func take() -> Result<Value, any Error>? {
        lock.withLock { result }
    }
}

/// Runs `operation` and blocks the calling thread until it finishes; after `timeout` the task is
/// cancelled and `CallTimedOut` thrown (a database write it started may still commit: callers
/// treat a timeout like any lost connection, see `JobError.databaseUnavailable`).
func blockingCall<Value: Sendable>(timeout: Duration,
                                   _ operation: @escaping @Sendable () async throws -> Value) throws -> Value {
    let done = DispatchSemaphore(value: 0)
    let slot = ResultSlot<Value>()
    let task = Task {
        do {
            slot.put(.success(try await operation()))
        } catch {
            slot.put(.failure(error))
        }
        done.signal()
    }
    let deadline = DispatchTime.now() + .nanoseconds(Int(min(timeout.seconds, 3600) * 1e9))
    if done.wait(timeout: deadline) == .timedOut {
        task.cancel()
        throw CallTimedOut(timeout: timeout)
    }
    return try slot.take()!.get()
}

extension Duration {
    /// The duration in seconds.
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) * 1e-18
    }
}
