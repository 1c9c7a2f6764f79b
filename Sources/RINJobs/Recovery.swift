// What a start makes of the state directory.
import Foundation
import Logging

extension JobService {
    /// Loads storage into the registry: finished jobs as they are; queued and interrupted ones
    /// reset to queued (a requested cancel is honoured instead), in creation order; jobs of a
    /// model no longer loaded fail. A job with a tombstone was being removed when the last run
    /// stopped: the tombstone wins and its files are removed now.
    func recover() throws(JobError) {
        for tombstone in store.loadTombstones(logger: logger) {
            registry.tombstones[tombstone.id] = tombstone.removedAt
        }
        let records = try store.loadAll(logger: logger)
        var requeued: [JobEntry] = []
        for var record in records {
            if registry.tombstones[record.id] != nil {
                do {
                    try store.remove(record.id)
                    logger.notice("finished the removal of a deleted job", metadata: ["job": "\(record.id)"])
                } catch {
                    logger.error("cannot remove a deleted job's files", metadata: ["job": "\(record.id)", "error": "\(error)"])
                }
                continue
            }
            var changed = false
            let model = checkpoint(named: record.model)
            if !record.status.isFinished {
                record.startedAt = nil
                record.progress = JobProgress(step: 0, steps: record.parameters.steps)
                record.previewStep = nil
                record.revision += 1
                changed = true
                if record.cancelRequested {
                    record.status = .canceled
                    record.finishedAt = configuration.now()
                } else if model == nil {
                    record.status = .failed
                    record.finishedAt = configuration.now()
                    record.error = "model '\(record.model)' is not loaded"
                } else {
                    record.status = .queued
                }
            }
            let entry = JobEntry(record: record, checkpoint: model)
            registry.entries[record.id] = entry
            if let key = record.idempotencyKey { registry.idempotency[key] = record.id }
            if record.status == .queued { requeued.append(entry) }
            if changed { try persist(entry) }
        }
        for entry in requeued.sorted(by: { ($0.record.createdAt, $0.id) < ($1.record.createdAt, $1.id) }) {
            registry.queue.append(entry.id)
        }
        metrics.queueDepth.record(registry.queue.count)
        logger.info("job store loaded", metadata: [
            "jobs": "\(registry.entries.count)", "requeued": "\(registry.queue.count)",
            "tombstones": "\(registry.tombstones.count)",
        ])
        let expired = expiredLocked()
        forgetLocked(expired)
        try removeFiles(expired)
    }
}
