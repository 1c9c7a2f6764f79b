// Retention: deleting jobs (by request or by age and count) and the tombstones that remember them.
//
// Order of a removal: the registry forgets the job and tombstones it (memory), the tombstone list
// is written, then the job's files are removed. A removal cut short (a crash, a failing disk)
// therefore leaves a tombstone beside leftover files, never files without a tombstone, and the
// next start finishes the removal (`recover`): a deleted job never comes back.
import Foundation
import Logging

extension JobService {
    /// Deletes a job with its files and remembers its id (`gone`). A queued or running job is
    /// canceled first (a running one stops after its current step). Deleting a deleted or expired
    /// job again succeeds.
    public func delete(_ id: JobID) throws(JobError) {
        if let cluster { return try clusterDelete(id, cluster) }
        let lock = registry.lock
        lock.lock()
        if registry.tombstones[id] != nil {
            lock.unlock()
            return
        }
        guard let entry = registry.entries[id] else {
            lock.unlock()
            throw .notFound(id)
        }
        let wasActive = !entry.record.status.isFinished
        if wasActive {
            registry.queue.remove(id)
            metrics.queueDepth.record(registry.queue.count)
            entry.record.cancelRequested = true
            entry.record.status = .canceled
            entry.record.finishedAt = configuration.now()
            entry.record.revision += 1
            registry.emit(entry, kind: .canceled)
        }
        forgetLocked([entry])
        lock.unlock()
        if wasActive { metrics.finished(.canceled) }
        try removeFiles([entry])
    }

    /// Deletes the finished jobs beyond `keepJobs` or older than `keepHours`. Runs after every
    /// finished job and, while idle, about once a minute; callable any time.
    public func sweepExpired() {
        if let cluster { return clusterSweep(cluster) }
        let expired = registry.lock.withLock { () -> [JobEntry] in
            let expired = expiredLocked()
            forgetLocked(expired)
            return expired
        }
        guard !expired.isEmpty else { return }
        logger.info("retention removed finished jobs", metadata: ["count": "\(expired.count)"])
        do {
            try removeFiles(expired)
        } catch {
            logger.error("cannot remove expired jobs", metadata: ["error": "\(error)"])
        }
    }

    /// The finished jobs retention removes now (registry lock held).
    func expiredLocked() -> [JobEntry] {
        let finished = registry.entries.values
            .filter { $0.record.status.isFinished && !$0.deleted }
            .sorted { ($0.record.finishedAt ?? .distantPast) > ($1.record.finishedAt ?? .distantPast) }
        var expired: [JobEntry] = []
        if let keep = configuration.keepJobs, finished.count > keep {
            expired += finished[max(0, keep)...]
        }
        if let hours = configuration.keepHours {
            let cutoff = configuration.now().addingTimeInterval(-hours * 3600)
            let kept = finished.prefix(max(0, configuration.keepJobs ?? finished.count))
            expired += kept.filter { ($0.record.finishedAt ?? .distantPast) < cutoff }
        }
        return expired
    }

    /// Forgets entries in memory and tombstones them (registry lock held); the files go in
    /// `removeFiles`.
    func forgetLocked(_ removed: [JobEntry]) {
        let now = configuration.now()
        for entry in removed {
            entry.deleted = true
            entry.preview = nil
            entry.subscribers.removeAll()
            registry.entries[entry.id] = nil
            registry.tombstones[entry.id] = now
            if let key = entry.record.idempotencyKey, registry.idempotency[key] == entry.id {
                registry.idempotency[key] = nil
            }
        }
        if registry.tombstones.count > JobRegistry.maxTombstones {
            let oldest = registry.tombstones.sorted { $0.value < $1.value }
                .prefix(registry.tombstones.count - JobRegistry.maxTombstones)
            for (id, _) in oldest { registry.tombstones[id] = nil }
        }
    }

    /// Writes the tombstones, then removes the jobs' files (see the order above). Throws the
    /// first failure after trying every job.
    func removeFiles(_ removed: [JobEntry]) throws(JobError) {
        try persistTombstones()
        var failure: JobError?
        for entry in removed {
            // A writer still holding the job (a scheduler storing a preview) finishes first; it
            // writes nothing more once the entry is marked deleted.
            entry.writeLock.lock()
            do {
                try store.remove(entry.id)
            } catch {
                failure = failure ?? error
            }
            entry.writeLock.unlock()
        }
        if let failure { throw failure }
    }

    func persistTombstones() throws(JobError) {
        tombstoneWriteLock.lock()
        defer { tombstoneWriteLock.unlock() }
        let list = registry.lock.withLock {
            registry.tombstones.map { Tombstone(id: $0.key, removedAt: $0.value) }.sorted { $0.removedAt < $1.removedAt }
        }
        try store.writeTombstones(list)
    }
}
