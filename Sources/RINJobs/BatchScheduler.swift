// Scheduling and running: one scheduler thread per model takes queued jobs of its model into a
// batch and advances every job in the batch by one step per tick, with one batched network pass
// (RINDiffusion's SamplingBatch). Jobs join between any two steps (when a slot is free and their
// rows fit) and leave at any step (finished, canceled, deleted, or requeued by a drain).
import Foundation
import Logging
import RINDiffusion
import RINModel

/// Runs the jobs of one model, batched.
///
/// Each tick:
/// 1. Admit: while fewer than `Configuration.workers` jobs run (over all models) and the rows fit
///    in `Configuration.maxBatchRows`, take the first queued job of this model (FIFO; a job that
///    does not fit waits, and jobs behind it wait too), mark it running, build its `SamplingRun`.
/// 2. Check each job before its step, in admission order: the `beforeStep` hook, then cancel,
///    delete and the drain deadline; such jobs leave the batch here.
/// 3. Step: one `SamplingBatch.step` over the remaining runs; each keeps its own step index,
///    schedule, class, guidance, latents and noise, so its images are those of a run alone.
/// 4. After: progress and previews for each job; finished jobs store their images and leave.
/// With no job running it sleeps until a job is queued, a slot frees, or the service drains.
///
/// Threads: the scheduler's slots and batch belong to its thread; everything shared goes through
/// the service's registry lock.
final class BatchScheduler: @unchecked Sendable {
    private let service: JobService
    private let checkpoint: RINCheckpoint
    private var batch: SamplingBatch?
    private var slots: [Slot] = []

    /// A running job: its entry, its run and its preview interval.
    private struct Slot {
        let entry: JobEntry
        let run: SamplingRun
        let previewEvery: Int
    }

    /// What a job does at a step boundary.
    private enum Verdict { case proceed, cancel, requeue, abandon }

    init(service: JobService, checkpoint: RINCheckpoint) {
        self.service = service
        self.checkpoint = checkpoint
    }

    /// Starts the scheduler's thread (it holds the service until the service drains).
    func start() {
        let thread = Thread { [self] in loop() }
        thread.name = "rind-scheduler-\(checkpoint.name)"
        thread.stackSize = 8 << 20
        thread.start()
    }

    private var registry: JobRegistry { service.registry }
    private var configuration: JobService.Configuration { service.configuration }

    private func loop() {
        while waitForWork() {
            admit()
            checkBeforeStep()
            guard !slots.isEmpty else { continue }
            step()
            afterStep()
        }
        registry.lock.withLock {
            registry.liveSchedulers -= 1
            registry.lock.broadcast()
        }
    }

    // MARK: - Waiting and admitting

    /// Returns true when there is work (jobs in the batch, or one of this model to admit), false
    /// when the service drains and this scheduler has nothing left. Retries a blocked storage.
    private func waitForWork() -> Bool {
        let lock = registry.lock
        lock.lock()
        defer { lock.unlock() }
        while true {
            if !slots.isEmpty { return true }
            if !registry.accepting { return false }
            if registry.storageBlocked {
                _ = lock.wait(until: Date(timeIntervalSinceNow: configuration.storageRetrySeconds))
                if !registry.accepting { return false }
                lock.unlock()
                let writable = service.retryStorage()
                lock.lock()
                if writable { registry.storageBlocked = false }
                continue
            }
            if registry.running < configuration.workers && nextQueuedLocked() != nil { return true }
            if !lock.wait(until: Date(timeIntervalSinceNow: 60)) {
                lock.unlock()
                service.sweepExpired()
                lock.lock()
            }
        }
    }

    /// The first queued job of this model and its rows (registry lock held).
    private func nextQueuedLocked() -> (entry: JobEntry, rows: Int)? {
        for id in registry.queue.ids {
            guard let entry = registry.entries[id], entry.record.status == .queued, !entry.deleted,
                  entry.record.model == checkpoint.name else { continue }
            let p = entry.record.parameters
            return (entry, p.count * (p.guidance > 0 ? 2 : 1))
        }
        return nil
    }

    private func admit() {
        var admitted: [JobEntry] = []
        registry.lock.withLock {
            var rows = slots.reduce(0) { $0 + $1.run.rows }
            while registry.accepting && !registry.storageBlocked && registry.running < configuration.workers {
                guard let next = nextQueuedLocked(),
                      rows == 0 || rows + next.rows <= configuration.maxBatchRows else { break }
                let entry = next.entry
                registry.queue.remove(entry.id)
                service.metrics.queueDepth.record(registry.queue.count)
                service.markRunningLocked(entry)
                rows += next.rows
                admitted.append(entry)
            }
        }
        for entry in admitted {
            service.persistLogging(entry)
            let (parameters, previewEvery) = registry.lock.withLock { (entry.record.parameters, entry.record.previewEvery) }
            let run: SamplingRun
            do {
                run = try SamplingRun(checkpoint: checkpoint, parameters: parameters)
            } catch {
                service.finish(entry, status: .failed, error: "\(error)")
                service.runEnded()
                continue
            }
            configuration.beforeRun?(entry.id)
            slots.append(Slot(entry: entry, run: run, previewEvery: previewEvery))
        }
    }

    // MARK: - Before, during and after a step

    /// Hooks and verdicts before the step; jobs that stop leave the batch.
    private func checkBeforeStep() {
        var kept: [Slot] = []
        for slot in slots {
            var verdict = Verdict.proceed
            while true {
                configuration.beforeStep?(slot.entry.id, slot.run.stepsDone)
                verdict = self.verdict(slot.entry)
                guard verdict == .proceed, let hang = configuration.testHangAtStep, slot.run.stepsDone == hang else { break }
                hangUntilStopped(slot.entry)
            }
            switch verdict {
            case .proceed:
                kept.append(slot)
                continue
            case .cancel:
                service.finish(slot.entry, status: .canceled, error: nil)
            case .requeue:
                service.requeueForDrain(slot.entry)
            case .abandon:
                break
            }
            service.runEnded()
        }
        slots = kept
    }

    private func verdict(_ entry: JobEntry) -> Verdict {
        registry.lock.withLock {
            if entry.deleted { return .abandon }
            if entry.record.cancelRequested { return .cancel }
            if let deadline = registry.drainDeadline, ContinuousClock.now >= deadline { return .requeue }
            return .proceed
        }
    }

    /// One batched step of every job in the batch.
    private func step() {
        let runs = slots.map(\.run)
        let rows = runs.reduce(0) { $0 + $1.rows }
        if let batch {
            batch.reserve(rows: rows)
        } else {
            batch = SamplingBatch(checkpoint: checkpoint, rows: rows)
        }
        let start = ContinuousClock.now
        batch!.step(runs)
        let duration = start.duration(to: .now)
        registry.lock.withLock { registry.lastProgress = ContinuousClock.now }
        service.metrics.stepSeconds[checkpoint.name]?.recordNanoseconds(
            duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
    }

    /// Progress and previews; finished jobs store their images and leave the batch.
    private func afterStep() {
        var kept: [Slot] = []
        for slot in slots {
            let run = slot.run
            service.recordStep(slot.entry, stepsDone: run.stepsDone)
            if !run.isFinished {
                if slot.previewEvery > 0 && run.stepsDone % slot.previewEvery == 0 {
                    service.publishPreview(slot.entry, images: run.estimate(), step: run.stepsDone)
                }
                kept.append(slot)
                continue
            }
            service.storeResult(slot.entry, images: run.estimate(), step: run.stepsDone)
            service.runEnded()
        }
        slots = kept
    }

    /// `testHangAtStep`: waits without progress until the job should stop (cancel, delete, drain).
    private func hangUntilStopped(_ entry: JobEntry) {
        service.logger.warning("test hang: the scheduler holds the job until it is canceled or drained",
                               metadata: ["job": "\(entry.id)", "step": "\(configuration.testHangAtStep ?? 0)"])
        let lock = registry.lock
        lock.lock()
        defer { lock.unlock() }
        while !entry.deleted && !entry.record.cancelRequested
                && !(registry.drainDeadline.map { ContinuousClock.now >= $0 } ?? false) {
            _ = lock.wait(until: Date(timeIntervalSinceNow: 0.1))
        }
    }
}
