// The job service: a bounded FIFO queue, a pool of worker threads that run sampling steps, a
// durable store, and event subscriptions. It knows no HTTP, JSON requests or image formats
// (STYLE.md #1): the server maps `JobError` to statuses and is handed encoded bytes.
//
// Public API (stable; later changes only add):
//
//   JobService(configuration: JobService.Configuration, models: [RINCheckpoint],
//              encoder: any ImageEncoder, logger: Logger) throws(JobError)
//     Configuration(stateDirectory:workers:maxQueue:keepJobs:keepHours:previewEvery:
//                   subscriberBuffer:fallbackRetryAfter:now:), .beforeStep (tests' step gate)
//   .models, .modelNames, .defaultModel, .checkpoint(named:) -> RINCheckpoint?
//   .submit(_ request: JobRequest, idempotencyKey: String?) throws(JobError) -> JobSubmission
//     JobRequest(model:classIndex:seed:steps:sampler:schedule:guidance:count:carryLatents:
//                previewEvery:unconditional:), all optional; JobSubmission { job, replayed }
//   .job(_ id: JobID) throws(JobError) -> JobSnapshot                    notFound / gone
//   .list(status: JobStatus?, limit: Int, offset: Int) -> JobPage          newest first
//   .cancel(_ id: JobID) throws(JobError) -> JobSnapshot                  idempotent
//   .delete(_ id: JobID) throws(JobError)                                 idempotent (410 after)
//   .preview(_ id: JobID) throws(JobError) -> JobImage                    latest preview bytes
//   .image(_ id: JobID, index: Int) throws(JobError) -> JobImage          final image bytes
//   .subscribe(_ id: JobID, capacity: Int?) throws(JobError) -> JobSubscription
//   .queueDepth, .runningCount, .isAccepting, .isDraining, .storageWritable()
//   .isMakingProgress(within: Duration) -> Bool     what the systemd watchdog is fed from
//   .drain(deadline: Duration)                                            blocks until stopped
//   .sweepExpired()
//   WorkerPlan.automatic(cores:workers:blasThreads:)    workers x BLAS threads <= cores
//   JobEvent { kind: .snapshot|.progress|.preview|.succeeded|.failed|.canceled|.requeued,
//              job: JobSnapshot, preview: JobImage? }
//   JobSubscription: next(timeout:) -> JobEvent?, async next(), AsyncSequence, cancel()
//   JobError: unknownModel, invalidParameter, queueFull(retryAfter:), shuttingDown, notFound,
//             gone, idempotencyConflict, notFinished(retryAfter:), noResult,
//             imageIndexOutOfRange, noPreview, storage, storageFull
//
// A full or failing state directory never fails a job: a job whose images cannot be written goes
// back to the head of the queue (it re-runs from its seed, so the images are the same), the
// workers pause until a probe write succeeds, and records that could not be written (a cancel, a
// failure) are written again then. So what a restart finds agrees with what clients were told,
// except for a cancel or failure answered while the disk was full and lost in a crash before it
// could be written: such a job runs again after the restart.
//
// Threads: every method may be called from any thread and none waits for a sampling step,
// except `drain`, which waits for the workers to stop.
import Foundation
import Logging
import RINDiffusion
import RINModel

/// Queues sampling jobs, runs them on worker threads, keeps them on disk, and tells subscribers.
///
/// Lifecycle: `init` loads the state directory (finished jobs are served again, queued and
/// interrupted ones are queued again in creation order and re-run from their recorded seed), then
/// starts the workers. `drain(deadline:)` stops it; a drained service stays readable but runs
/// nothing. Workers hold the service, so an undrained service lives until the process ends.
///
/// Batching: each worker runs one job at a time and calls `SamplingRun.step()` in a loop. To share
/// one batched forward pass among several running jobs, `workerLoop` would become a scheduler that
/// takes up to B compatible jobs (same model, same image size) from the queue into slots, and per
/// tick calls a batched step over the slots' runs, then does exactly what `afterStep` does now for
/// each of them (progress, previews, cancel and drain checks); finished or canceled slots are
/// refilled from the queue between ticks. The queue, store and events need no change.
public final class JobService: @unchecked Sendable {
    /// How the service runs. Every limit has a default suited to a small render box.
    public struct Configuration: Sendable {
        /// Where `jobs/<id>/…` and `tombstones.json` live; created if missing.
        public var stateDirectory: URL
        /// Worker threads, each running one job at a time (see `WorkerPlan`).
        public var workers: Int
        /// Queued jobs at most (running ones not counted); more is `JobError.queueFull`.
        public var maxQueue: Int
        /// Finished jobs kept at most (oldest deleted first); nil = no limit.
        public var keepJobs: Int?
        /// Finished jobs are deleted this many hours after they finished; nil = never.
        public var keepHours: Double?
        /// Default preview interval in steps for requests that do not say; 0 = no previews.
        public var previewEvery: Int
        /// Events buffered per subscriber before intermediate ones are dropped.
        public var subscriberBuffer: Int
        /// Retry-After (seconds) suggested while the queue is full and no estimate exists.
        public var fallbackRetryAfter: Int
        /// The wall clock (tests move it to check retention by age).
        public var now: @Sendable () -> Date
        /// For tests: called on the worker's thread before each sampling step of a job, with the
        /// job and the steps it has done, before the worker looks for a cancel, delete or drain;
        /// the step waits until it returns. A test blocks in it to hold a job running at a known
        /// step for as long as it needs, whatever the speed of the machine, and returns to let the
        /// job go on (a hook that never returns blocks `drain` too). nil, the default, costs
        /// nothing; the daemon sets it only for its own tests (see `rind serve`).
        public var beforeStep: (@Sendable (_ job: JobID, _ stepsDone: Int) -> Void)?
        /// Test only (`rind serve --test-hang-at-step`, hidden): every job's worker stops before
        /// this step (after this many steps done) and waits there without progress until the job
        /// is canceled or the drain deadline passes. It stands for a hung worker, so that the
        /// watchdog, drain and restart paths can be tested without relying on slow steps.
        public var testHangAtStep: Int? = nil
        /// Called on the worker thread before each run of a job starts sampling; nil in
        /// production. Tests block in it to hold a job running while they change the world.
        public var beforeRun: (@Sendable (JobID) -> Void)?
        /// Seconds between probe writes while the workers wait for a full state directory.
        public var storageRetrySeconds: Double = 1

        public init(stateDirectory: URL, workers: Int = 1, maxQueue: Int = 64, keepJobs: Int? = 1000,
                    keepHours: Double? = nil, previewEvery: Int = 5, subscriberBuffer: Int = 16,
                    fallbackRetryAfter: Int = 5, now: @escaping @Sendable () -> Date = { Date() }) {
            self.stateDirectory = stateDirectory
            self.workers = workers
            self.maxQueue = maxQueue
            self.keepJobs = keepJobs
            self.keepHours = keepHours
            self.previewEvery = previewEvery
            self.subscriberBuffer = subscriberBuffer
            self.fallbackRetryAfter = fallbackRetryAfter
            self.now = now
        }
    }

    public let configuration: Configuration
    /// The loaded models; the first is the default.
    public let models: [RINCheckpoint]
    private let modelsByName: [String: RINCheckpoint]
    private let encoder: any ImageEncoder
    private let logger: Logger
    private let store: JobStore
    private let metrics: JobMetrics

    /// One job in memory. Guarded by `lock`, except `writeLock`, which orders this job's file
    /// writes (taken without `lock` held; `lock` may be taken inside it).
    private final class Entry {
        var record: JobRecord
        let checkpoint: RINCheckpoint?
        var preview: JobImage?
        var subscribers: [JobSubscription] = []
        var deleted = false
        var runStart: ContinuousClock.Instant?
        let writeLock = NSLock()

        init(record: JobRecord, checkpoint: RINCheckpoint?) {
            self.record = record
            self.checkpoint = checkpoint
        }
    }

    // Guarded by `lock`.
    private let lock = NSCondition()
    private var entries: [JobID: Entry] = [:]
    private var queue: [JobID] = []
    private var pendingSubmits = 0
    private var idempotency: [String: JobID] = [:]
    private var tombstones: [JobID: Date] = [:]
    private var accepting = true
    private var drainDeadline: ContinuousClock.Instant?
    private var liveWorkers = 0
    private var running = 0
    /// When a worker last took, stepped or ended a job (see `isMakingProgress`).
    private var lastProgress = ContinuousClock.now
    private let tombstoneWriteLock = NSLock()
    /// Workers take no job until a probe write succeeds (a result could not be stored).
    private var storageBlocked = false
    /// Jobs whose latest record could not be written; written again when storage returns.
    private var unsaved: Set<JobID> = []
    private var lastProbe: (at: ContinuousClock.Instant, writable: Bool)?

    /// Loads the state directory and starts `configuration.workers` worker threads.
    ///
    /// Throws only when the state directory itself cannot be created or listed; unreadable
    /// records are moved aside and logged.
    public init(configuration: Configuration, models: [RINCheckpoint], encoder: any ImageEncoder,
                logger: Logger = Logger(label: "rind.jobs")) throws(JobError) {
        precondition(!models.isEmpty, "JobService needs at least one model")
        self.configuration = configuration
        self.models = models
        var byName: [String: RINCheckpoint] = [:]
        for model in models where byName[model.name] == nil { byName[model.name] = model }
        modelsByName = byName
        self.encoder = encoder
        self.logger = logger
        store = JobStore(root: configuration.stateDirectory, fileExtension: encoder.fileExtension)
        metrics = JobMetrics(modelNames: models.map(\.name))
        try store.prepare()
        try recover()
        let workers = max(1, configuration.workers)
        liveWorkers = workers
        for index in 0..<workers {
            let thread = Thread { [self] in workerLoop() }
            thread.name = "rind-worker-\(index)"
            thread.stackSize = 8 << 20
            thread.start()
        }
    }

    /// The loaded models' names, default first.
    public var modelNames: [String] { models.map(\.name) }
    /// The model used when a request names none.
    public var defaultModel: RINCheckpoint { models[0] }
    /// A loaded model by name.
    public func checkpoint(named name: String) -> RINCheckpoint? { modelsByName[name] }

    // MARK: - Submitting

    /// Resolves `request` against its model (defaults, a random seed if none), writes the job
    /// durably, then queues it.
    ///
    /// With an `idempotencyKey` already used by a retained job: the same request returns that job
    /// (`replayed == true`), a different one throws `idempotencyConflict`.
    public func submit(_ request: JobRequest, idempotencyKey: String? = nil) throws(JobError) -> JobSubmission {
        let modelName = request.model ?? defaultModel.name
        guard let checkpoint = modelsByName[modelName] else {
            throw .unknownModel(modelName, available: modelNames)
        }
        var normalized = request
        normalized.model = modelName
        let (parameters, previewEvery) = try resolve(normalized, for: checkpoint.config)

        let now = configuration.now()
        let record = JobRecord(
            id: JobID.random(), model: modelName, request: normalized, parameters: parameters,
            previewEvery: previewEvery, status: .queued,
            progress: JobProgress(step: 0, steps: parameters.steps), createdAt: now, revision: 1,
            idempotencyKey: idempotencyKey)
        let entry = Entry(record: record, checkpoint: checkpoint)

        lock.lock()
        // A retry is answered even while draining: the job it asks about exists.
        if let key = idempotencyKey, let existingID = idempotency[key], let existing = entries[existingID] {
            defer { lock.unlock() }
            guard existing.record.request == normalized else {
                throw .idempotencyConflict(key: key, existing: existingID)
            }
            return JobSubmission(job: snapshotLocked(existing), replayed: true)
        }
        guard accepting else {
            lock.unlock()
            throw .shuttingDown
        }
        guard queue.count + pendingSubmits < configuration.maxQueue else {
            let retryAfter = retryAfterLocked()
            lock.unlock()
            throw .queueFull(retryAfter: retryAfter)
        }
        // Reserve the place, then write outside the lock: an fsync must not stall the workers.
        pendingSubmits += 1
        entries[record.id] = entry
        if let key = idempotencyKey { idempotency[key] = record.id }
        lock.unlock()

        do {
            try store.makeDirectory(store.directory(of: record.id))
            try store.fsyncDirectory(store.jobsDirectory)
            try persist(entry)
        } catch {
            lock.withLock {
                pendingSubmits -= 1
                lastProbe = nil   // readiness probes again rather than trusting an older answer
                entries[record.id] = nil
                if let key = idempotencyKey, idempotency[key] == record.id { idempotency[key] = nil }
            }
            try? store.remove(record.id)
            logger.error("cannot store a new job", metadata: ["job": "\(record.id)", "error": "\(error)"])
            throw error
        }

        lock.lock()
        defer { lock.unlock() }
        pendingSubmits -= 1
        // A cancel or delete may have come in while the record was written.
        if entry.record.status == .queued && !entry.deleted {
            queue.append(record.id)
            metrics.queueDepth.record(queue.count)
            lock.signal()
        }
        return JobSubmission(job: snapshotLocked(entry), replayed: false)
    }

    /// Applies the model's defaults and the request's values, draws a seed, validates.
    private func resolve(_ request: JobRequest, for config: RINConfig) throws(JobError) -> (SamplingParameters, Int) {
        var parameters = SamplingParameters.defaults(for: config)
        if let value = request.classIndex { parameters.classIndex = value }
        if request.unconditional == true {
            guard request.classIndex == nil else {
                throw .invalidParameter(name: "class", message: "give either a class or unconditional sampling, not both")
            }
            parameters.classIndex = nil
            parameters.guidance = 0   // guidance needs a class; an explicit value below is checked
        }
        if let value = request.steps { parameters.steps = value }
        if let value = request.sampler { parameters.sampler = value }
        if let value = request.schedule { parameters.schedule = value }
        if let value = request.guidance { parameters.guidance = value }
        if let value = request.count { parameters.count = value }
        if let value = request.carryLatents { parameters.carryLatents = value }
        var generator = SystemRandomNumberGenerator()
        // Drawn within the seeds the engine accepts (JSON-safe integers).
        parameters.seed = request.seed ?? (generator.next() & SamplingParameters.maxSeed)
        let validated: SamplingParameters
        do {
            validated = try parameters.validated(for: config)
        } catch {
            throw Self.jobError(error)
        }
        let previewEvery = request.previewEvery ?? configuration.previewEvery
        guard previewEvery >= 0 else {
            throw .invalidParameter(name: "preview_every", message: "must be 0 (no previews) or a number of steps >= 1")
        }
        return (validated, previewEvery)
    }

    private static func jobError(_ error: SamplingError) -> JobError {
        if case let .invalidParameter(name, message) = error {
            return .invalidParameter(name: name, message: message)
        }
        return .invalidParameter(name: "parameters", message: "\(error)")
    }

    // MARK: - Reading

    /// The job as it is now.
    public func job(_ id: JobID) throws(JobError) -> JobSnapshot {
        lock.lock()
        defer { lock.unlock() }
        return snapshotLocked(try entryLocked(id))
    }

    /// Jobs newest first, optionally only those with `status`, `limit` of them after skipping
    /// `offset`.
    public func list(status: JobStatus? = nil, limit: Int = 50, offset: Int = 0) -> JobPage {
        lock.lock()
        defer { lock.unlock() }
        let matching = entries.values
            .filter { !$0.deleted && (status == nil || $0.record.status == status) }
            .sorted { ($0.record.createdAt, $0.record.id) > ($1.record.createdAt, $1.record.id) }
        let page = matching.dropFirst(max(0, offset)).prefix(max(0, limit))
        return JobPage(jobs: page.map(snapshotLocked), total: matching.count)
    }

    /// The latest preview (after success: the final images as one preview picture). Active jobs
    /// keep theirs in memory; a finished job's is read from disk, so memory does not grow with
    /// the number of retained jobs.
    public func preview(_ id: JobID) throws(JobError) -> JobImage {
        let entry = try lockEntry(id)
        let (cached, step) = (entry.preview, entry.record.previewStep)
        lock.unlock()
        if let cached { return cached }
        guard let step else { throw .noPreview(id) }
        return JobImage(step: step, data: try store.read(store.previewFile(of: id)))
    }

    /// The `index`-th final image of a succeeded job.
    public func image(_ id: JobID, index: Int = 0) throws(JobError) -> JobImage {
        let entry = try lockEntry(id)
        let record = entry.record
        let retryAfter = retryAfterLocked(for: entry)
        lock.unlock()
        switch record.status {
        case .queued, .running:
            throw .notFinished(id, status: record.status, retryAfter: retryAfter)
        case .failed, .canceled:
            throw .noResult(id, status: record.status)
        case .succeeded:
            guard (0..<record.imageCount).contains(index) else {
                throw .imageIndexOutOfRange(id, index: index, count: record.imageCount)
            }
            return JobImage(step: record.progress.steps, data: try store.read(store.imageFile(of: id, index: index)))
        }
    }

    /// Watches a job. The first event is `.snapshot` (with the latest preview); a finished job's
    /// subscription then holds its final event and ends. `capacity` defaults to
    /// `configuration.subscriberBuffer`.
    public func subscribe(_ id: JobID, capacity: Int? = nil) throws(JobError) -> JobSubscription {
        let entry = try lockEntry(id)
        let subscription = JobSubscription(jobID: id, capacity: capacity ?? configuration.subscriberBuffer)
        let snapshot = snapshotLocked(entry)
        if let kind = Self.terminalKind(snapshot.status) {
            lock.unlock()
            // Finished: nothing more will happen, so the (disk) read needs no lock.
            let preview = snapshot.previewStep.flatMap { step in
                (try? store.read(store.previewFile(of: id))).map { JobImage(step: step, data: $0) }
            }
            subscription.push(JobEvent(kind: .snapshot, job: snapshot, preview: preview))
            subscription.push(JobEvent(kind: kind, job: snapshot, preview: kind == .succeeded ? preview : nil))
            return subscription
        }
        defer { lock.unlock() }
        subscription.push(JobEvent(kind: .snapshot, job: snapshot, preview: entry.preview))
        if !accepting && liveWorkers == 0 {
            subscription.push(JobEvent(kind: .requeued, job: snapshot))
        } else {
            entry.subscribers.append(subscription)
        }
        return subscription
    }

    /// Jobs waiting in the queue.
    public var queueDepth: Int { lock.withLock { queue.count } }
    /// Jobs being sampled now.
    public var runningCount: Int { lock.withLock { running } }
    /// False once `drain` was called.
    public var isAccepting: Bool { lock.withLock { accepting } }
    /// True from the call of `drain` on (also after it returned).
    public var isDraining: Bool { lock.withLock { !accepting } }

    /// True while the workers make progress: a job was taken, stepped or ended within `window`,
    /// or there is nothing to run (no job running, and none queued or the service draining).
    /// False when a job is running, or waiting for a worker, and no step has ended for `window`:
    /// a hung worker, or a step longer than `window`. The daemon feeds systemd's watchdog only
    /// while this holds, so a daemon whose workers hang is restarted.
    public func isMakingProgress(within window: Duration) -> Bool {
        lock.withLock {
            if running == 0 && (queue.isEmpty || !accepting) { return true }
            return lastProgress.duration(to: .now) < window
        }
    }

    // MARK: - Cancel and delete

    /// Cancels a queued job at once, or asks a running one to stop after its current step
    /// (`cancelRequested`; it turns `canceled` then). A finished job is returned as it is, so
    /// repeating a cancel is safe.
    @discardableResult
    public func cancel(_ id: JobID) throws(JobError) -> JobSnapshot {
        let entry = try lockEntry(id)
        switch entry.record.status {
        case .queued:
            queue.removeAll { $0 == id }
            metrics.queueDepth.record(queue.count)
            entry.record.cancelRequested = true
            lock.unlock()
            finish(entry, status: .canceled, error: nil)
            return lock.withLock { snapshotLocked(entry) }
        case .running:
            if !entry.record.cancelRequested {
                entry.record.cancelRequested = true
                entry.record.revision += 1
                emitLocked(entry, kind: .progress)
            }
            let snapshot = snapshotLocked(entry)
            lock.unlock()
            // Durable, so a crash now does not run the job again after the restart.
            try? persist(entry)
            return snapshot
        case .succeeded, .failed, .canceled:
            defer { lock.unlock() }
            return snapshotLocked(entry)
        }
    }

    /// Deletes a job with its files and remembers its id (`gone`). A queued or running job is
    /// canceled first (a running one stops after its current step). Deleting a deleted or expired
    /// job again succeeds.
    public func delete(_ id: JobID) throws(JobError) {
        lock.lock()
        if tombstones[id] != nil {
            lock.unlock()
            return
        }
        guard let entry = entries[id] else {
            lock.unlock()
            throw .notFound(id)
        }
        let wasActive = !entry.record.status.isFinished
        if wasActive {
            queue.removeAll { $0 == id }
            metrics.queueDepth.record(queue.count)
            entry.record.cancelRequested = true
            entry.record.status = .canceled
            entry.record.finishedAt = configuration.now()
            entry.record.revision += 1
            emitLocked(entry, kind: .canceled)
        }
        removeLocked([entry])
        lock.unlock()
        if wasActive { metrics.finished(.canceled) }
        try removeFiles([entry])
    }

    /// Deletes the finished jobs beyond `keepJobs` or older than `keepHours`. Runs after every
    /// finished job and, while idle, about once a minute; callable any time.
    public func sweepExpired() {
        lock.lock()
        let expired = expiredLocked()
        removeLocked(expired)
        lock.unlock()
        guard !expired.isEmpty else { return }
        logger.info("retention removed finished jobs", metadata: ["count": "\(expired.count)"])
        do {
            try removeFiles(expired)
        } catch {
            logger.error("cannot remove expired jobs", metadata: ["error": "\(error)"])
        }
    }

    private func expiredLocked() -> [Entry] {
        let finished = entries.values
            .filter { $0.record.status.isFinished && !$0.deleted }
            .sorted { ($0.record.finishedAt ?? .distantPast) > ($1.record.finishedAt ?? .distantPast) }
        var expired: [Entry] = []
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

    /// Forgets entries in memory and tombstones them; the files go in `removeFiles`.
    private func removeLocked(_ removed: [Entry]) {
        let now = configuration.now()
        for entry in removed {
            entry.deleted = true
            entry.preview = nil
            entry.subscribers.removeAll()
            entries[entry.record.id] = nil
            tombstones[entry.record.id] = now
            if let key = entry.record.idempotencyKey, idempotency[key] == entry.record.id {
                idempotency[key] = nil
            }
        }
        if tombstones.count > JobStore.maxTombstones {
            let oldest = tombstones.sorted { $0.value < $1.value }.prefix(tombstones.count - JobStore.maxTombstones)
            for (id, _) in oldest { tombstones[id] = nil }
        }
    }

    private func removeFiles(_ removed: [Entry]) throws(JobError) {
        var failure: JobError?
        for entry in removed {
            entry.writeLock.lock()
            do {
                try store.remove(entry.record.id)
            } catch {
                failure = failure ?? error
            }
            entry.writeLock.unlock()
        }
        do {
            try persistTombstones()
        } catch {
            failure = failure ?? error
        }
        if let failure { throw failure }
    }

    private func persistTombstones() throws(JobError) {
        tombstoneWriteLock.lock()
        defer { tombstoneWriteLock.unlock() }
        let list = lock.withLock {
            tombstones.map { Tombstone(id: $0.key, removedAt: $0.value) }.sorted { $0.removedAt < $1.removedAt }
        }
        try store.writeTombstones(list)
    }

    // MARK: - Draining

    /// Stops the service: `submit` throws `shuttingDown` from now on; running jobs go on until
    /// `deadline` has passed and then stop after their current step, persisted as queued so that
    /// the next start runs them again from their seed (same images). Queued jobs stay queued on
    /// disk. Returns when every worker has stopped. Calling it again only waits.
    public func drain(deadline: Duration) {
        lock.lock()
        let first = accepting
        accepting = false
        let proposed = ContinuousClock.now.advanced(by: deadline)
        if drainDeadline.map({ proposed < $0 }) ?? true { drainDeadline = proposed }
        let (runningJobs, queuedJobs) = (running, queue.count)
        lock.broadcast()
        if first {
            // Logged once the deadline is set (the daemon's drain test waits for this line).
            lock.unlock()
            logger.info("job service draining", metadata: [
                "running": "\(runningJobs)", "queued": "\(queuedJobs)",
                "deadline_seconds": "\(Self.seconds(deadline))",
            ])
            lock.lock()
        }
        while liveWorkers > 0 { lock.wait() }
        // Queued jobs will not run in this process: end their subscriptions.
        for id in queue {
            if let entry = entries[id] { emitLocked(entry, kind: .requeued) }
        }
        lock.unlock()
        logger.info("job service drained")
    }

    // MARK: - Workers

    private func workerLoop() {
        while let entry = nextJob() {
            execute(entry)
        }
        lock.withLock {
            liveWorkers -= 1
            lock.broadcast()
        }
    }

    /// Blocks until a job is queued (then marks it running) or the service drains (nil).
    private func nextJob() -> Entry? {
        lock.lock()
        defer { lock.unlock() }
        while true {
            if !accepting { return nil }
            if storageBlocked {
                _ = lock.wait(until: Date(timeIntervalSinceNow: configuration.storageRetrySeconds))
                if !accepting { return nil }
                lock.unlock()
                let writable = retryStorage()
                lock.lock()
                if writable { storageBlocked = false }
                continue
            }
            if !queue.isEmpty {
                let id = queue.removeFirst()
                metrics.queueDepth.record(queue.count)
                guard let entry = entries[id], entry.record.status == .queued, !entry.deleted else { continue }
                let now = configuration.now()
                entry.record.status = .running
                entry.record.startedAt = now
                entry.record.attempts += 1
                entry.record.progress = JobProgress(step: 0, steps: entry.record.parameters.steps)
                entry.record.revision += 1
                entry.runStart = ContinuousClock.now
                lastProgress = ContinuousClock.now
                running += 1
                metrics.running.record(running)
                emitLocked(entry, kind: .progress)
                return entry
            }
            if !lock.wait(until: Date(timeIntervalSinceNow: 60)) {
                lock.unlock()
                sweepExpired()
                lock.lock()
            }
        }
    }

    /// What a worker does between two steps.
    private enum Verdict { case proceed, cancel, requeue, abandon }

    private func verdict(_ entry: Entry) -> Verdict {
        lock.withLock {
            if entry.deleted { return .abandon }
            if entry.record.cancelRequested { return .cancel }
            if let deadline = drainDeadline, ContinuousClock.now >= deadline { return .requeue }
            return .proceed
        }
    }

    private func execute(_ entry: Entry) {
        defer {
            lock.withLock {
                running -= 1
                lastProgress = ContinuousClock.now
                metrics.running.record(running)
            }
        }
        persistLogging(entry)
        let (parameters, previewEvery, id) = lock.withLock {
            (entry.record.parameters, entry.record.previewEvery, entry.record.id)
        }
        guard let checkpoint = entry.checkpoint else {
            finish(entry, status: .failed, error: "model '\(entry.record.model)' is not loaded")
            return
        }
        let run: SamplingRun
        do {
            run = try SamplingRun(checkpoint: checkpoint, parameters: parameters)
        } catch {
            finish(entry, status: .failed, error: "\(error)")
            return
        }
        configuration.beforeRun?(id)
        let stepTimer = metrics.stepSeconds[checkpoint.name]
        while !run.isFinished {
            configuration.beforeStep?(id, run.stepsDone)
            switch verdict(entry) {
            case .proceed: break
            case .cancel:
                finish(entry, status: .canceled, error: nil)
                return
            case .requeue:
                requeue(entry)
                return
            case .abandon:
                return
            }
            if let hang = configuration.testHangAtStep, run.stepsDone == hang {
                hangUntilStopped(entry)
                continue
            }
            let start = ContinuousClock.now
            run.step()
            let duration = start.duration(to: .now)
            stepTimer?.recordNanoseconds(duration.components.seconds * 1_000_000_000
                                         + duration.components.attoseconds / 1_000_000_000)
            afterStep(entry, stepsDone: run.stepsDone)
            if previewEvery > 0 && run.stepsDone % previewEvery == 0 && !run.isFinished {
                publishPreview(entry, images: run.estimate(), step: run.stepsDone)
            }
        }
        let images = run.estimate()
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
            if !lock.withLock({ entry.deleted }) {
                for (index, data) in encoded.enumerated() {
                    try store.writeAtomically(data, to: store.imageFile(of: id, index: index))
                }
            }
        } catch {
            // Not a failure of the job: it runs again (same seed, same images) once the state
            // directory takes writes, and meanwhile it is queued, as its record on disk says.
            logger.error("cannot store the images of a job; it waits for the state directory and runs again",
                         metadata: ["job": "\(id)", "error": "\(error)"])
            requeueForStorage(entry)
            return
        }
        publishPreview(entry, images: images, step: run.stepsDone, emit: false)
        finish(entry, status: .succeeded, error: nil, imageCount: images.count)
    }

    /// Back to `queued` with no progress and no preview (the caller holds the lock, persists and
    /// tells subscribers).
    private func resetToQueuedLocked(_ entry: Entry) {
        entry.record.status = .queued
        entry.record.startedAt = nil
        entry.record.progress = JobProgress(step: 0, steps: entry.record.parameters.steps)
        entry.record.previewStep = nil
        entry.preview = nil
        entry.record.revision += 1
    }

    /// A result could not be written: the job goes back to the head of the queue as queued and
    /// the workers wait for the state directory (see `nextJob`).
    private func requeueForStorage(_ entry: Entry) {
        lock.withLock {
            guard !entry.deleted, !entry.record.status.isFinished else { return }
            resetToQueuedLocked(entry)
            storageBlocked = true
            lastProbe = nil
            if entry.record.cancelRequested {
                return
            }
            queue.insert(entry.record.id, at: 0)
            metrics.queueDepth.record(queue.count)
            emitLocked(entry, kind: .progress)
        }
        if lock.withLock({ entry.record.cancelRequested && !entry.record.status.isFinished }) {
            finish(entry, status: .canceled, error: nil)
            return
        }
        persistLogging(entry)
    }

    /// Whether the state directory takes writes (a probe write, at most once a second); false
    /// also while the workers wait for it.
    public func storageWritable() -> Bool {
        let (blocked, cached) = lock.withLock { (storageBlocked, lastProbe) }
        if blocked { return false }
        if let cached, cached.at.duration(to: .now) < .seconds(1) { return cached.writable }
        let writable = store.probeWritable()
        lock.withLock { lastProbe = (ContinuousClock.now, writable) }
        return writable
    }

    /// Probes the state directory; when it takes writes again, writes the records that could not
    /// be written. Returns whether the workers may go on.
    private func retryStorage() -> Bool {
        guard store.probeWritable() else { return false }
        let pending = lock.withLock { () -> [Entry] in
            let ids = unsaved
            unsaved = []
            lastProbe = nil
            return ids.compactMap { entries[$0] }
        }
        for entry in pending { persistLogging(entry) }
        logger.notice("the state directory takes writes again; workers resume", metadata: ["rewritten": "\(pending.count)"])
        return lock.withLock { unsaved.isEmpty }
    }

    private func encode(_ body: () throws -> Data) throws(JobError) -> Data {
        do {
            return try body()
        } catch {
            throw .storage(path: "(encoder)", message: "cannot encode an image: \(error)")
        }
    }

    /// `testHangAtStep`: waits without progress until the job should stop (cancel, delete, drain).
    private func hangUntilStopped(_ entry: Entry) {
        logger.warning("test hang: worker holds the job until it is canceled or drained",
                       metadata: ["job": "\(entry.record.id)", "step": "\(configuration.testHangAtStep ?? 0)"])
        lock.lock()
        defer { lock.unlock() }
        while !entry.deleted && !entry.record.cancelRequested
                && !(drainDeadline.map { ContinuousClock.now >= $0 } ?? false) {
            _ = lock.wait(until: Date(timeIntervalSinceNow: 0.1))
        }
    }

    private func afterStep(_ entry: Entry, stepsDone: Int) {
        lock.withLock {
            lastProgress = ContinuousClock.now
            guard !entry.deleted else { return }
            let elapsed = entry.runStart.map { Self.seconds($0.duration(to: .now)) } ?? 0
            let steps = entry.record.parameters.steps
            let perStep = stepsDone > 0 ? elapsed / Double(stepsDone) : nil
            entry.record.progress = JobProgress(
                step: stepsDone, steps: steps, elapsedSeconds: elapsed,
                etaSeconds: perStep.map { $0 * Double(steps - stepsDone) }, secondsPerStep: perStep)
            entry.record.revision += 1
            emitLocked(entry, kind: .progress)
        }
    }

    /// Encodes the images as one preview, writes `preview.<ext>`, keeps it in memory, tells the
    /// subscribers. A failure costs only the preview: logged.
    private func publishPreview(_ entry: Entry, images: [ImagePixels], step: Int, emit: Bool = true) {
        let id = entry.record.id
        do {
            let data = try encode { try encoder.encodePreview(images) }
            entry.writeLock.lock()
            defer { entry.writeLock.unlock() }
            if !lock.withLock({ entry.deleted }) {
                // Intermediate previews die with the run; the final one is served with the result.
                try store.writeAtomically(data, to: store.previewFile(of: id), durable: !emit)
            }
            lock.withLock {
                guard !entry.deleted else { return }
                entry.preview = JobImage(step: step, data: data)
                entry.record.previewStep = step
                entry.record.revision += 1
                if emit { emitLocked(entry, kind: .preview) }
            }
        } catch {
            logger.warning("preview failed", metadata: ["job": "\(id)", "error": "\(error)"])
        }
    }

    /// Puts a job into a final state, persists it, then tells the subscribers (so a subscriber
    /// that sees `succeeded` finds the images on disk).
    private func finish(_ entry: Entry, status: JobStatus, error: String?, imageCount: Int = 0) {
        let proceed = lock.withLock { () -> Bool in
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
        // Retention runs before the subscribers hear of the end, so whoever sees it sees the
        // older jobs already expired; the subscribers are taken first, as the sweep may remove
        // this very job (keepJobs 0).
        let (subscribers, event) = lock.withLock { () -> ([JobSubscription], JobEvent?) in
            let subscribers = entry.subscribers
            entry.subscribers = []
            defer { entry.preview = nil }   // from now on read from disk (see `preview(_:)`)
            let event = Self.terminalKind(status).map { kind in
                JobEvent(kind: kind, job: snapshotLocked(entry), preview: status == .succeeded ? entry.preview : nil)
            }
            return (subscribers, event)
        }
        metrics.finished(status)
        if let error {
            logger.warning("job failed", metadata: ["job": "\(entry.record.id)", "error": "\(error)"])
        }
        sweepExpired()
        if let event {
            for subscriber in subscribers { subscriber.push(event) }
        }
    }

    /// Drain deadline passed mid-run: back to queued, on disk, for the next start.
    private func requeue(_ entry: Entry) {
        lock.withLock {
            resetToQueuedLocked(entry)
        }
        persistLogging(entry)
        lock.withLock { emitLocked(entry, kind: .requeued) }
        logger.info("running job persisted as queued for the next start", metadata: ["job": "\(entry.record.id)"])
    }

    // MARK: - Persistence

    /// Writes the entry's current record. Reading it inside the write lock means the last write
    /// always carries the latest state, whatever order concurrent writers come in.
    private func persist(_ entry: Entry) throws(JobError) {
        entry.writeLock.lock()
        defer { entry.writeLock.unlock() }
        let (record, deleted) = lock.withLock { (entry.record, entry.deleted) }
        guard !deleted else { return }
        try store.write(record)
    }

    /// Writes the record; on failure logs it and remembers the job, whose record is written again
    /// once the state directory takes writes (see `retryStorage`).
    private func persistLogging(_ entry: Entry) {
        do {
            try persist(entry)
            lock.withLock { _ = unsaved.remove(entry.record.id) }
        } catch {
            logger.error("cannot persist a job record", metadata: ["job": "\(entry.record.id)", "error": "\(error)"])
            lock.withLock {
                unsaved.insert(entry.record.id)
                storageBlocked = true
                lastProbe = nil
            }
        }
    }

    /// Loads the state directory: finished jobs as they are; queued and interrupted ones reset
    /// to queued (a requested cancel is honoured instead), in creation order.
    private func recover() throws(JobError) {
        for tombstone in store.loadTombstones(logger: logger) {
            tombstones[tombstone.id] = tombstone.removedAt
        }
        let records = try store.loadAll(logger: logger)
        var requeued: [Entry] = []
        for var record in records {
            var changed = false
            let checkpoint = modelsByName[record.model]
            if !record.status.isFinished {
                record.startedAt = nil
                record.progress = JobProgress(step: 0, steps: record.parameters.steps)
                record.previewStep = nil
                record.revision += 1
                changed = true
                if record.cancelRequested {
                    record.status = .canceled
                    record.finishedAt = configuration.now()
                } else if checkpoint == nil {
                    record.status = .failed
                    record.finishedAt = configuration.now()
                    record.error = "model '\(record.model)' is not loaded"
                } else {
                    record.status = .queued
                }
            }
            let entry = Entry(record: record, checkpoint: checkpoint)
            entries[record.id] = entry
            tombstones[record.id] = nil
            if let key = record.idempotencyKey { idempotency[key] = record.id }
            if record.status == .queued { requeued.append(entry) }
            if changed { try persist(entry) }
        }
        queue = requeued
            .sorted { ($0.record.createdAt, $0.record.id) < ($1.record.createdAt, $1.record.id) }
            .map(\.record.id)
        metrics.queueDepth.record(queue.count)
        logger.info("job store loaded", metadata: [
            "jobs": "\(entries.count)", "requeued": "\(queue.count)", "tombstones": "\(tombstones.count)",
        ])
        let expired = expiredLocked()
        removeLocked(expired)
        try removeFiles(expired)
    }

    // MARK: - Helpers (call with `lock` held)

    /// Takes `lock` and returns the entry with the lock held; throws with the lock released.
    private func lockEntry(_ id: JobID) throws(JobError) -> Entry {
        lock.lock()
        do {
            return try entryLocked(id)
        } catch {
            lock.unlock()
            throw error
        }
    }

    private func entryLocked(_ id: JobID) throws(JobError) -> Entry {
        if let entry = entries[id], !entry.deleted { return entry }
        if tombstones[id] != nil { throw .gone(id) }
        throw .notFound(id)
    }

    private func snapshotLocked(_ entry: Entry) -> JobSnapshot {
        let record = entry.record
        let position = record.status == .queued ? queue.firstIndex(of: record.id).map { $0 + 1 } : nil
        return JobSnapshot(
            id: record.id, model: record.model, parameters: record.parameters,
            previewEvery: record.previewEvery, status: record.status, queuePosition: position,
            progress: record.progress, createdAt: record.createdAt, startedAt: record.startedAt,
            finishedAt: record.finishedAt, error: record.error, revision: record.revision,
            idempotencyKey: record.idempotencyKey, cancelRequested: record.cancelRequested,
            previewStep: record.previewStep, imageCount: record.imageCount,
            attempts: record.attempts, request: record.request)
    }

    private func emitLocked(_ entry: Entry, kind: JobEvent.Kind, preview: JobImage? = nil) {
        entry.subscribers.removeAll { !$0.isOpen }
        guard !entry.subscribers.isEmpty else { return }
        let event = JobEvent(kind: kind, job: snapshotLocked(entry),
                             preview: kind == .preview ? entry.preview : preview)
        for subscriber in entry.subscribers { subscriber.push(event) }
        if event.isTerminal { entry.subscribers.removeAll() }
    }

    private static func terminalKind(_ status: JobStatus) -> JobEvent.Kind? {
        switch status {
        case .succeeded: .succeeded
        case .failed: .failed
        case .canceled: .canceled
        case .queued, .running: nil
        }
    }

    /// Seconds until a running job should be done, for Retry-After.
    private func retryAfterLocked() -> Int {
        let etas = entries.values.compactMap { $0.record.status == .running ? $0.record.progress.etaSeconds : nil }
        guard let soonest = etas.min() else { return max(1, configuration.fallbackRetryAfter) }
        return max(1, Int(soonest.rounded(.up)))
    }

    private func retryAfterLocked(for entry: Entry) -> Int {
        if entry.record.status == .running, let eta = entry.record.progress.etaSeconds {
            return max(1, Int(eta.rounded(.up)))
        }
        return retryAfterLocked()
    }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) * 1e-18
    }
}
