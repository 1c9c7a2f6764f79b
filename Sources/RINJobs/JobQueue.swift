// The bounded FIFO of queued jobs. Plain data: the registry's lock guards it (JobRegistry.swift).

/// Queued job ids in the order they run, with room reserved for submissions still being written.
///
/// A submission reserves a place before its record is written (`reserve`) and takes it after
/// (`commit`) or gives it back (`release`), so the bound holds while the write runs outside the
/// lock. More than `capacity` queued or reserved is `JobError.queueFull` (HTTP 429).
struct JobQueue {
    /// Queued jobs at most (running ones not counted).
    let capacity: Int
    private(set) var ids: [JobID] = []
    /// Places reserved by submissions whose record is being written.
    private var reserved = 0

    init(capacity: Int) {
        self.capacity = capacity
    }

    var count: Int { ids.count }
    var isEmpty: Bool { ids.isEmpty }

    /// Reserves a place; false when the queue is full.
    mutating func reserve() -> Bool {
        guard ids.count + reserved < capacity else { return false }
        reserved += 1
        return true
    }

    /// Gives a reserved place back without queueing.
    mutating func release() { reserved -= 1 }

    /// Turns a reservation into a place at the back; `enqueue: false` only gives the place back
    /// (the job was canceled or deleted while its record was written).
    mutating func commit(_ id: JobID, enqueue: Bool = true) {
        reserved -= 1
        if enqueue { ids.append(id) }
    }

    /// Queues at the back without a reservation (recovery).
    mutating func append(_ id: JobID) { ids.append(id) }

    /// Queues at the front: a job that could not store its result runs next.
    mutating func pushFront(_ id: JobID) { ids.insert(id, at: 0) }

    mutating func remove(_ id: JobID) { ids.removeAll { $0 == id } }

    /// 1 for the next job to run.
    func position(of id: JobID) -> Int? { ids.firstIndex(of: id).map { $0 + 1 } }

    /// Takes the first queued job that `accept` takes, keeping the others in order.
    mutating func takeFirst(where accept: (JobID) -> Bool) -> JobID? {
        guard let index = ids.firstIndex(where: accept) else { return nil }
        return ids.remove(at: index)
    }
}
