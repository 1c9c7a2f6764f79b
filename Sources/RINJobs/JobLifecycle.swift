// A job's state changes that write to storage: start, progress, previews, the result, the end,
// and the two ways back to the queue (drain, full storage). Each changes the registry under its
// lock, then writes outside it, in the order the job's `writeLock` gives, then tells subscribers.
import Foundation
import Logging
import RINDiffusion

extension JobService {
    // MARK: - Records

    /// Writes the entry's current record. Reading it inside the write lock means the last write
    /// always carries the latest state, whatever order concurrent writers come in.
    func persist(_ entry: JobEntry) throws(JobError) {
        entry.writeLock.lock()
        defer { entry.writeLock.unlock() }
        let (record, deleted) = registry.lock.withLock { (entry.record, entry.deleted) }
        guard !deleted else { return }
        try store.write(record)
    }

    /// Writes the record; on failure logs it and remembers the job, whose record is written again
    /// once storage takes writes (`retryStorage`); until then the service is not ready
    /// (`storageWritable()` is false) and schedulers admit nothing.
    func persistLogging(_ entry: JobEntry) {
        do {
            try persist(entry)
            registry.lock.withLock { _ = registry.unsaved.remove(entry.id) }
        } catch {
            // Cluster mode: another box holds the job now (or it was deleted): drop the run.
            if cluster != nil && Self.isLost(error) {
                dropRun(entry, reason: "a write was refused: \(error)", finishedToo: true)
                return
            }
            logger.error("cannot persist a job record", metadata: ["job": "\(entry.id)", "error": "\(error)"])
            registry.lock.withLock {
                registry.unsaved.insert(entry.id)
                registry.storageBlocked = true
                registry.lastProbe = nil
            }
        }
    }

    // MARK: - Running

    /// Takes the queued job into a run (call with the registry's lock held; the caller persists).
    func markRunningLocked(_ entry: JobEntry) {
        entry.record.status = .running
        entry.record.startedAt = configuration.now()
        entry.record.attempts += 1
        entry.record.progress = JobProgress(step: 0, steps: entry.record.parameters.steps)
        entry.record.revision += 1
        entry.runStart = ContinuousClock.now
        registry.lastProgress = ContinuousClock.now
        registry.running += 1
        metrics.running.record(registry.running)
        registry.emit(entry, kind: .progress)
    }

    /// A run left its batch, whatever the reason.
    func runEnded() {
        registry.lock.withLock {
            registry.running -= 1
            registry.lastProgress = ContinuousClock.now
            metrics.running.record(registry.running)
            registry.lock.broadcast()
        }
    }

    /// A step of the job ended: progress, ETA, an event.
    func recordStep(_ entry: JobEntry, stepsDone: Int) {
        registry.lock.withLock {
            registry.lastProgress = ContinuousClock.now
            guard !entry.deleted else { return }
            let elapsed = entry.runStart.map { Self.seconds($0.duration(to: .now)) } ?? 0
            let steps = entry.record.parameters.steps
            let perStep = stepsDone > 0 ? elapsed / Double(stepsDone) : nil
            entry.record.progress = JobProgress(
                step: stepsDone, steps: steps, elapsedSeconds: elapsed,
                etaSeconds: perStep.map { $0 * Double(steps - stepsDone) }, secondsPerStep: perStep)
            entry.record.revision += 1
            registry.emit(entry, kind: .progress)
        }
        // Cluster mode: other boxes read progress from the store (and hear of it).
        if cluster != nil { persistLogging(entry) }
    }

    /// Encodes the images as one preview, stores it, keeps it in memory, tells the subscribers. A
    /// failure costs only the preview: logged.
    func publishPreview(_ entry: JobEntry, images: [ImagePixels], step: Int, emit: Bool = true) {
        let id = entry.id
        do {
            let data = try encode { try encoder.encodePreview(images) }
            entry.writeLock.lock()
            defer { entry.writeLock.unlock() }
            if !registry.lock.withLock({ entry.deleted }) {
                // Intermediate previews die with the run; the final one is served with the result.
                try store.writePreview(data, of: id, durable: !emit)
            }
            registry.lock.withLock {
                guard !entry.deleted else { return }
                entry.preview = JobImage(step: step, data: data)
                entry.record.previewStep = step
                entry.record.revision += 1
                if emit { registry.emit(entry, kind: .preview) }
            }
        } catch {
            if cluster != nil && Self.isLost(error) {
                dropRun(entry, reason: "a preview write was refused: \(error)")
                return
            }
            logger.warning("preview failed", metadata: ["job": "\(id)", "error": "\(error)"])
            return
        }
        // Cluster mode: the record says which step the stored preview shows (the final one is
        // written with the result).
        if cluster != nil && emit { persistLogging(entry) }
    }

    /// The run is done: encode and store its images, then `succeeded`. Images that cannot be
    /// stored send the job back to the queue (`requeueForStorage`).
    func storeResult(_ entry: JobEntry, images: [ImagePixels], step: Int) {
        let id = entry.id
        let encoded: [Data]
        do {
            encoded = try images.map { image throws(JobError) in try encode { try encoder.encode(image) } }
        } catch {
            // The encoder is deterministic: running the job again would fail again.
            finish(entry, status: .failed, error: "cannot store the images: \(error)")
            return
        }
        do {
            entry.writeLock.lock()
            defer { entry.writeLock.unlock() }
            if !registry.lock.withLock({ entry.deleted }) {
                for (index, data) in encoded.enumerated() {
                    try store.writeImage(data, of: id, index: index)
                }
            }
        } catch {
            if cluster != nil && Self.isLost(error) {
                dropRun(entry, reason: "an image write was refused: \(error)")
                return
            }
            // Not a failure of the job: it runs again (same seed, same images) once the state
            // directory takes writes, and meanwhile it is queued, as its record on disk says.
            logger.error(cluster == nil ? "cannot store the images of a job; it waits for the state directory and runs again"
                                        : "cannot store the images of a job; it waits for the job database and runs again",
                         metadata: ["job": "\(id)", "error": "\(error)"])
            requeueForStorage(entry)
            return
        }
        publishPreview(entry, images: images, step: step, emit: false)
        finish(entry, status: .succeeded, error: nil, imageCount: images.count)
    }

    /// Puts a job into a final state, persists it, then tells the subscribers (so a subscriber
    /// that sees `succeeded` finds the images in storage).
    func finish(_ entry: JobEntry, status: JobStatus, error: String?, imageCount: Int = 0) {
        let proceed = registry.lock.withLock { () -> Bool in
            guard !entry.deleted, !entry.record.status.isFinished else { return false }
            entry.record.status = status
            entry.record.finishedAt = configuration.now()
            entry.record.error = error
            entry.record.imageCount = imageCount
            if status == .succeeded {
                entry.record.progress.etaSeconds = 0
            }
            entry.record.revision += 1
            return true
        }
        guard proceed else { return }
        persistLogging(entry)
        // Cluster mode: a refused write dropped it (another box holds it): no end here.
        if cluster != nil && registry.lock.withLock({ entry.deleted }) { return }
        // Retention runs before the subscribers hear of the end, so whoever sees it sees the
        // older jobs already expired; the subscribers are taken first, as the sweep may remove
        // this very job (keepJobs 0).
        let (subscribers, event) = registry.lock.withLock { () -> ([JobSubscription], JobEvent?) in
            let subscribers = entry.subscribers
            entry.subscribers = []
            defer { entry.preview = nil }   // from now on read from storage (see `preview(_:)`)
            let event = JobRegistry.terminalKind(status).map { kind in
                JobEvent(kind: kind, job: registry.snapshot(entry), preview: status == .succeeded ? entry.preview : nil)
            }
            return (subscribers, event)
        }
        metrics.finished(status)
        if let error {
            logger.warning("job failed", metadata: ["job": "\(entry.id)", "error": "\(error)"])
        }
        sweepExpired()
        if let event {
            for subscriber in subscribers { subscriber.push(event) }
        }
        forgetFinished(entry)
    }

    // MARK: - Back to the queue

    /// Drain deadline passed mid-run: back to queued, on disk, for the next start.
    /// Cluster mode: back to the cluster's queue (`SharedJobStore.release`), for another box.
    func requeueForDrain(_ entry: JobEntry) {
        registry.lock.withLock { registry.resetToQueued(entry) }
        if cluster != nil {
            releaseToStore(entry)
            registry.lock.withLock { registry.emit(entry, kind: .requeued) }
            return
        }
        persistLogging(entry)
        registry.lock.withLock { registry.emit(entry, kind: .requeued) }
        logger.info("running job persisted as queued for the next start", metadata: ["job": "\(entry.id)"])
    }

    /// A result could not be written: the job goes back to the head of the queue as queued and
    /// the schedulers wait for the state directory (see `BatchScheduler`).
    func requeueForStorage(_ entry: JobEntry) {
        let canceled = registry.lock.withLock { () -> Bool in
            guard !entry.deleted, !entry.record.status.isFinished else { return false }
            registry.resetToQueued(entry)
            registry.storageBlocked = true
            registry.lastProbe = nil
            if entry.record.cancelRequested { return true }
            registry.queue.pushFront(entry.id)
            metrics.queueDepth.record(registry.queue.count)
            registry.emit(entry, kind: .progress)
            return false
        }
        if canceled {
            finish(entry, status: .canceled, error: nil)
            return
        }
        // Cluster mode: the store keeps it `running`, held by this box (the keeper renews it),
        // until it runs again here; its progress written meanwhile is not worth writing now.
        if cluster != nil {
            registry.lock.withLock { _ = registry.unsaved.remove(entry.id) }
            return
        }
        persistLogging(entry)
    }

    /// Probes the state directory; when it takes writes again, writes the records that could not
    /// be written. Returns whether the schedulers may go on.
    func retryStorage() -> Bool {
        guard probeStorage() else { return false }
        let pending = registry.lock.withLock { () -> [JobEntry] in
            let ids = registry.unsaved
            registry.unsaved = []
            registry.lastProbe = nil
            return ids.compactMap { registry.entries[$0] }
        }
        for entry in pending {
            persistLogging(entry)
            forgetFinished(entry)
        }
        logger.notice(cluster == nil ? "the state directory takes writes again; schedulers resume"
                                     : "the job database takes writes again; schedulers resume",
                      metadata: ["rewritten": "\(pending.count)"])
        return registry.lock.withLock { registry.unsaved.isEmpty }
    }

    func encode(_ body: () throws -> Data) throws(JobError) -> Data {
        do {
            return try body()
        } catch {
            throw .storage(path: "(encoder)", message: "cannot encode an image: \(error)")
        }
    }
}
