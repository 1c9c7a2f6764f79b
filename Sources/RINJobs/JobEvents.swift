// Watching a job without ever blocking a scheduler: the service pushes events into one small buffer per
// subscriber and returns at once; a slow reader loses intermediate progress and previews (the newest
// one wins) but always gets the final event.
import Foundation

/// Something that happened to a job, with the job as it was right after.
public struct JobEvent: Sendable, Equatable {
    public enum Kind: String, Sendable, Equatable {
        /// The first event of every subscription: the job as it is now (with its latest preview,
        /// if any). A reconnecting client starts from here.
        case snapshot
        /// A step was done (or the job started).
        case progress
        /// A new preview: `preview` holds it.
        case preview
        case succeeded, failed, canceled
        /// The service drained before the job finished: it stays queued on disk and runs again
        /// when the service restarts. Ends the subscription like a final event.
        case requeued
    }

    public let kind: Kind
    public let job: JobSnapshot
    /// The picture for `.preview`; the latest preview for `.snapshot`; else nil.
    public let preview: JobImage?

    public init(kind: Kind, job: JobSnapshot, preview: JobImage? = nil) {
        self.kind = kind
        self.job = job
        self.preview = preview
    }

    /// True for the events that end a subscription.
    public var isTerminal: Bool {
        switch kind {
        case .succeeded, .failed, .canceled, .requeued: true
        case .snapshot, .progress, .preview: false
        }
    }
}

/// One reader's view of one job's events: from `JobService.subscribe`.
///
/// Read it from a thread with `next(timeout:)`, or from async code with `for await event in
/// subscription`. It ends after the terminal event (or after `cancel()`). Use it from one reader.
public final class JobSubscription: AsyncSequence, @unchecked Sendable {
    public typealias Element = JobEvent

    /// The job it watches.
    public let jobID: JobID
    /// At most this many undelivered events are kept (the terminal one comes on top).
    public let capacity: Int

    // Guarded by `condition`.
    private let condition = NSCondition()
    private var buffer: [JobEvent] = []
    private var ended = false          // the terminal event was pushed, or cancel()
    private var terminalDelivered = false
    private var cancelled = false
    private var dropped = 0
    private var waiter: CheckedContinuation<JobEvent?, Never>?

    init(jobID: JobID, capacity: Int) {
        self.jobID = jobID
        self.capacity = Swift.max(2, capacity)
    }

    /// Events dropped so far because the reader was slower than the job.
    public var droppedEvents: Int { condition.withLock { dropped } }

    /// True once nothing more will come: the terminal event was read, or `cancel()` was called.
    public var isFinished: Bool {
        condition.withLock { cancelled || (terminalDelivered && buffer.isEmpty) }
    }

    /// The next event, waiting up to `timeout`; nil on timeout or when the subscription is finished.
    public func next(timeout: Duration) -> JobEvent? {
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) * 1e-18
        let deadline = Date(timeIntervalSinceNow: Swift.max(0, seconds))
        condition.lock()
        defer { condition.unlock() }
        while buffer.isEmpty && !ended && !cancelled {
            if !condition.wait(until: deadline) { break }
        }
        return popLocked()
    }

    /// The next event, waiting as long as it takes; nil when the subscription is finished or the
    /// task is cancelled.
    public func next() async -> JobEvent? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<JobEvent?, Never>) in
                condition.lock()
                if !buffer.isEmpty || ended || cancelled || Task.isCancelled {
                    let event = popLocked()
                    condition.unlock()
                    continuation.resume(returning: event)
                } else {
                    waiter = continuation
                    condition.unlock()
                }
            }
        } onCancel: {
            cancel()
        }
    }

    /// Stops the subscription: the service forgets it, and waiting readers get nil.
    public func cancel() {
        condition.lock()
        cancelled = true
        let waiting = waiter
        waiter = nil
        condition.broadcast()
        condition.unlock()
        waiting?.resume(returning: nil)
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let subscription: JobSubscription
        public mutating func next() async -> JobEvent? { await subscription.next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(subscription: self) }

    // MARK: - Service side

    /// False once the subscriber cancelled or the terminal event was pushed: the service drops it.
    var isOpen: Bool { condition.withLock { !cancelled && !ended } }

    /// Adds an event without waiting. Over capacity, progress events coalesce (the newest
    /// replaces the older) and a newer preview replaces an older one; then the oldest
    /// non-terminal event goes. Terminal events are always kept.
    func push(_ event: JobEvent) {
        condition.lock()
        guard !cancelled, !ended else {
            condition.unlock()
            return
        }
        if event.isTerminal {
            ended = true
        } else if buffer.count >= capacity {
            if let index = buffer.lastIndex(where: { $0.kind == event.kind && $0.kind != .snapshot }) {
                buffer.remove(at: index)
            } else if let index = buffer.firstIndex(where: { !$0.isTerminal && $0.kind != .snapshot }) {
                buffer.remove(at: index)
            } else {
                buffer.removeFirst()
            }
            dropped += 1
        }
        buffer.append(event)
        let waiting = waiter
        waiter = nil
        let delivered = waiting.map { _ in popLocked() }
        condition.broadcast()
        condition.unlock()
        if let waiting { waiting.resume(returning: delivered ?? nil) }
    }

    private func popLocked() -> JobEvent? {
        guard !cancelled, !buffer.isEmpty else { return nil }
        let event = buffer.removeFirst()
        if event.isTerminal { terminalDelivered = true }
        return event
    }
}
