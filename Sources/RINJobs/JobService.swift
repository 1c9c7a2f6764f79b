// The job service: what the server calls. A thin facade over the parts of the job layer, one file
// each (Sources/RINJobs):
//
//   JobRegistry.swift    job state in memory under one lock (no I/O under it); JobEntry
//   JobQueue.swift       the bounded FIFO (full = 429)
//   BatchScheduler.swift one scheduler thread per model: admits queued jobs into the running batch,
//                        steps all of them with one batched forward pass (RINDiffusion's
//                        SamplingBatch), lets them leave at any step (done, canceled, drained)
//   JobLifecycle.swift   state changes that write: persist, progress, previews, finish, requeue
//   Retention.swift      delete, expiry (--keep-jobs, --keep-hours), tombstones
//   Recovery.swift       what a start makes of the state directory
//   ClusterMode.swift    cluster mode (`Configuration.cluster`): the queue in a shared store
//                        (PostgreSQL), with ClusterClaimer, LeaseKeeper and RemoteJobs.swift
//   JobStorage.swift     the storage boundary (records, images, previews, tombstones);
//                        LocalJobStore.swift implements it on the state directory
//   JobEvents.swift      per-subscriber event buffers (fan-out that never blocks a scheduler)
//   Job.swift, JobError.swift, JobMetrics.swift, WorkerPlan.swift, ImageEncoder.swift
//
// It knows no HTTP, JSON requests or image formats (STYLE.md #1): the server maps `JobError` to
// statuses and hands it an encoder.
//
// Public API (stable; later changes only add):
//
//   JobService(configuration: JobService.Configuration, models: [RINCheckpoint],
//              encoder: any ImageEncoder, logger: Logger) throws(JobError)
//     Configuration(stateDirectory:workers:maxQueue:keepJobs:keepHours:previewEvery:
//                   subscriberBuffer:fallbackRetryAfter:now:), .maxBatchRows, .beforeStep (tests' step gate)
//   .models, .modelNames, .defaultModel, .checkpoint(named:) -> RINCheckpoint?
//   .submit(_ request: JobRequest, idempotencyKey: String?) throws(JobError) -> JobSubmission
//     JobRequest(model:classIndex:seed:steps:sampler:schedule:guidance:count:carryLatents:
//                previewEvery:unconditional:), all optional; JobSubmission { job, replayed }
//   .job(_ id: JobID) throws(JobError) -> JobSnapshot                    notFound / gone
//   .list(status: JobStatus?, limit: Int, offset: Int) -> JobPage          newest first
//   .listJobs(status:limit:offset:) throws(JobError) -> JobPage           the same; says databaseUnavailable
//   .cancel(_ id: JobID) throws(JobError) -> JobSnapshot                  idempotent
//   .delete(_ id: JobID) throws(JobError)                                 idempotent (410 after)
//   .preview(_ id: JobID) throws(JobError) -> JobImage                    latest preview bytes
//   .image(_ id: JobID, index: Int) throws(JobError) -> JobImage          final image bytes
//   .subscribe(_ id: JobID, capacity: Int?) throws(JobError) -> JobSubscription
//   .queueDepth, .runningCount, .isAccepting, .isDraining, .storageWritable(), .usesSharedStore
//   .isMakingProgress(within: Duration) -> Bool     what the systemd watchdog is fed from
//   .drain(deadline: Duration)                                            blocks until stopped
//   .sweepExpired()
//   WorkerPlan.automatic(cores:workers:blasThreads:)    batch slots and matrix-library threads
//   JobEvent { kind: .snapshot|.progress|.preview|.succeeded|.failed|.canceled|.requeued,
//              job: JobSnapshot, preview: JobImage? }
//   JobSubscription: next(timeout:) -> JobEvent?, async next(), AsyncSequence, cancel()
//   JobError: unknownModel, invalidParameter, queueFull(retryAfter:), shuttingDown, notFound,
//             gone, idempotencyConflict, notFinished(retryAfter:), noResult,
//             imageIndexOutOfRange, noPreview, storage, storageFull, databaseUnavailable
//   Configuration.cluster: JobService.Cluster(store:lease:renewLeases:)  cluster mode (issue 13)
//
// A full or failing state directory never fails a job: a job whose images cannot be written goes
// back to the head of the queue (it re-runs from its seed, so the images are the same), the
// schedulers admit nothing until a probe write succeeds, and records that could not be written (a
// cancel, a failure) are written again then. So what a restart finds agrees with what clients were
// told, except for a cancel or failure answered while the disk was full and lost in a crash before
// it could be written: such a job runs again after the restart.
//
// Threads: every method may be called from any thread and none waits for a sampling step,
// except `drain`, which waits for the schedulers to stop.
import Foundation
import Logging
import RINDiffusion
import RINModel

/// Queues sampling jobs, runs them in batches on one scheduler thread per model, keeps them in
/// storage, and tells subscribers.
///
/// Lifecycle: `init` loads the state directory (finished jobs are served again, queued and
/// interrupted ones are queued again in creation order and re-run from their recorded seed), then
/// starts the schedulers. `drain(deadline:)` stops it; a drained service stays readable but runs
/// nothing. Schedulers hold the service, so an undrained service lives until the process ends.
public final class JobService: @unchecked Sendable {
    /// How the service runs. Every limit has a default suited to a small render box.
    public struct Configuration: Sendable {
        /// Where `jobs/<id>/…` and `tombstones.json` live; created if missing.
        public var stateDirectory: URL
        /// Jobs running at the same time (batch slots), over all models. Running jobs of one model
        /// advance together, one batched network pass per step (see `BatchScheduler`); more
        /// wait in the queue.
        public var workers: Int
        /// Network rows a batched step holds at most (an image is one row, two with guidance); a
        /// job that alone needs more runs alone. Bounds the scratch memory of a step; 8 measured
        /// best on a 2-core machine (docs/PERFORMANCE.md: 16-row steps were slower per image).
        public var maxBatchRows: Int = 8
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
        /// For tests: called on the scheduler's thread before each sampling step of a job, with
        /// the job and the steps it has done, before the scheduler looks for a cancel, delete or
        /// drain; the step (of the whole batch) waits until it returns. A test blocks in it to hold
        /// a job running at a known step for as long as it needs, whatever the speed of the
        /// machine, and returns to let the job go on (a hook that never returns blocks `drain`
        /// too). nil, the default, costs nothing; the daemon sets it only for its own tests (see
        /// `rind serve`).
        public var beforeStep: (@Sendable (_ job: JobID, _ stepsDone: Int) -> Void)?
        /// Test only (`rind serve --test-hang-at-step`, hidden): a job's scheduler stops before
        /// this step of the job (after this many steps done) and waits there without progress
        /// until the job is canceled or the drain deadline passes. It stands for a hung step, so
        /// that the watchdog, drain and restart paths can be tested without relying on slow steps.
        public var testHangAtStep: Int? = nil
        /// Called on the scheduler thread when a job is admitted, before its first step; nil in
        /// production. Tests block in it to hold a job running while they change the world.
        public var beforeRun: (@Sendable (JobID) -> Void)?
        /// Seconds between probe writes while the schedulers wait for a full state directory.
        public var storageRetrySeconds: Double = 1
        /// Cluster mode: jobs live in this shared store, not in `stateDirectory` (which is then
        /// not used); see ClusterMode.swift. nil, the default: the state directory, as always.
        public var cluster: Cluster? = nil

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
    let encoder: any ImageEncoder
    let logger: Logger
    let store: any JobStorage
    let metrics: JobMetrics
    let registry: JobRegistry
    /// Cluster mode's parts; nil in local mode.
    let cluster: ClusterRuntime?
    /// Orders tombstone writes.
    let tombstoneWriteLock = NSLock()

    /// Loads the state directory and starts one scheduler thread per model.
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
        store = configuration.cluster?.store
            ?? LocalJobStore(root: configuration.stateDirectory, fileExtension: encoder.fileExtension)
        metrics = JobMetrics(modelNames: models.map(\.name))
        registry = JobRegistry(maxQueue: configuration.maxQueue)
        cluster = configuration.cluster.map { ClusterRuntime(configuration: $0, logger: logger) }
        if let cluster {
            try startCluster(cluster)
        } else {
            try store.prepare()
            try recover()
        }
        let schedulers = byName.values.sorted { $0.name < $1.name }.map { BatchScheduler(service: self, checkpoint: $0) }
        registry.liveSchedulers = schedulers.count
        for scheduler in schedulers { scheduler.start() }
    }

    /// The loaded models' names, default first.
    public var modelNames: [String] { models.map(\.name) }
    /// The model used when a request names none.
    public var defaultModel: RINCheckpoint { models[0] }
    /// A loaded model by name.
    public func checkpoint(named name: String) -> RINCheckpoint? { modelsByName[name] }

    // MARK: - Submitting

    /// Resolves `request` against its model (`SamplingRequest.resolved`: defaults, a random seed
    /// if none), writes the job durably, then queues it.
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
        let parameters: SamplingParameters
        do {
            parameters = try normalized.sampling.resolved(for: checkpoint.config)
        } catch {
            throw Self.jobError(error)
        }
        let previewEvery = normalized.previewEvery ?? configuration.previewEvery
        guard previewEvery >= 0 else {
            throw .invalidParameter(name: "preview_every", message: "must be 0 (no previews) or a number of steps >= 1")
        }

        let record = JobRecord(
            id: JobID.random(), model: modelName, request: normalized, parameters: parameters,
            previewEvery: previewEvery, status: .queued,
            progress: JobProgress(step: 0, steps: parameters.steps), createdAt: configuration.now(), revision: 1,
            idempotencyKey: idempotencyKey)
        if let cluster { return try clusterSubmit(record, cluster) }
        let entry = JobEntry(record: record, checkpoint: checkpoint)

        let lock = registry.lock
        lock.lock()
        // A retry is answered even while draining: the job it asks about exists.
        if let key = idempotencyKey, let existingID = registry.idempotency[key], let existing = registry.entries[existingID] {
            defer { lock.unlock() }
            guard existing.record.request == normalized else {
                throw .idempotencyConflict(key: key, existing: existingID)
            }
            return JobSubmission(job: registry.snapshot(existing), replayed: true)
        }
        guard registry.accepting else {
            lock.unlock()
            throw .shuttingDown
        }
        guard registry.queue.reserve() else {
            let retryAfter = registry.retryAfter(fallback: configuration.fallbackRetryAfter)
            lock.unlock()
            throw .queueFull(retryAfter: retryAfter)
        }
        // Place reserved; the write happens outside the lock: an fsync must not stall the schedulers.
        registry.entries[record.id] = entry
        if let key = idempotencyKey { registry.idempotency[key] = record.id }
        lock.unlock()

        do {
            entry.writeLock.lock()
            defer { entry.writeLock.unlock() }
            try store.create(lock.withLock { entry.record })
        } catch {
            lock.withLock {
                registry.queue.release()
                registry.lastProbe = nil   // readiness probes again rather than trusting an older answer
                registry.entries[record.id] = nil
                if let key = idempotencyKey, registry.idempotency[key] == record.id { registry.idempotency[key] = nil }
            }
            try? store.remove(record.id)
            logger.error("cannot store a new job", metadata: ["job": "\(record.id)", "error": "\(error)"])
            throw error
        }

        lock.lock()
        defer { lock.unlock() }
        // A cancel or delete may have come in while the record was written.
        let enqueue = entry.record.status == .queued && !entry.deleted
        registry.queue.commit(record.id, enqueue: enqueue)
        if enqueue {
            metrics.queueDepth.record(registry.queue.count)
            lock.broadcast()
        }
        return JobSubmission(job: registry.snapshot(entry), replayed: false)
    }

    static func jobError(_ error: SamplingError) -> JobError {
        switch error {
        case let .invalidParameter(name, message): .invalidParameter(name: name, message: message)
        }
    }

    // MARK: - Reading

    /// The job as it is now.
    public func job(_ id: JobID) throws(JobError) -> JobSnapshot {
        if let cluster { return try clusterJob(id, cluster) }
        return try registry.locked { () throws(JobError) -> JobSnapshot in registry.snapshot(try registry.entry(id)) }
    }

    /// Jobs newest first, optionally only those with `status`, `limit` of them after skipping
    /// `offset`.
    /// In cluster mode a database failure gives an empty page: `listJobs` says what happened.
    public func list(status: JobStatus? = nil, limit: Int = 50, offset: Int = 0) -> JobPage {
        (try? listJobs(status: status, limit: limit, offset: offset)) ?? JobPage(jobs: [], total: 0)
    }

    /// `list`, with the store's error (cluster mode: `databaseUnavailable`); local mode never throws.
    public func listJobs(status: JobStatus? = nil, limit: Int = 50, offset: Int = 0) throws(JobError) -> JobPage {
        if let cluster { return try clusterList(status: status, limit: limit, offset: offset, cluster) }
        return registry.lock.withLock {
            let matching = registry.entries.values
                .filter { !$0.deleted && (status == nil || $0.record.status == status) }
                .sorted { ($0.record.createdAt, $0.record.id) > ($1.record.createdAt, $1.record.id) }
            let page = matching.dropFirst(max(0, offset)).prefix(max(0, limit))
            return JobPage(jobs: page.map(registry.snapshot), total: matching.count)
        }
    }

    /// The latest preview (after success: the final images as one preview picture). Active jobs
    /// keep theirs in memory; a finished job's is read from storage, so memory does not grow with
    /// the number of retained jobs.
    public func preview(_ id: JobID) throws(JobError) -> JobImage {
        if let cluster { return try clusterPreview(id, cluster) }
        let (cached, step) = try registry.locked { () throws(JobError) -> (JobImage?, Int?) in
            let entry = try registry.entry(id)
            return (entry.preview, entry.record.previewStep)
        }
        if let cached { return cached }
        guard let step else { throw .noPreview(id) }
        return JobImage(step: step, data: try store.readPreview(of: id))
    }

    /// The `index`-th final image of a succeeded job.
    public func image(_ id: JobID, index: Int = 0) throws(JobError) -> JobImage {
        if let cluster { return try clusterImage(id, index: index, cluster) }
        let (record, retryAfter) = try registry.locked { () throws(JobError) -> (JobRecord, Int) in
            let entry = try registry.entry(id)
            return (entry.record, registry.retryAfter(for: entry, fallback: configuration.fallbackRetryAfter))
        }
        return try finalImage(record, index: index, retryAfter: retryAfter)
    }

    /// The `index`-th final image of the job `record` describes, or why there is none.
    func finalImage(_ record: JobRecord, index: Int, retryAfter: Int) throws(JobError) -> JobImage {
        let id = record.id
        switch record.status {
        case .queued, .running:
            throw .notFinished(id, status: record.status, retryAfter: retryAfter)
        case .failed, .canceled:
            throw .noResult(id, status: record.status)
        case .succeeded:
            guard (0..<record.imageCount).contains(index) else {
                throw .imageIndexOutOfRange(id, index: index, count: record.imageCount)
            }
            return JobImage(step: record.progress.steps, data: try store.readImage(of: id, index: index))
        }
    }

    /// Watches a job. The first event is `.snapshot` (with the latest preview); a finished job's
    /// subscription then holds its final event and ends. `capacity` defaults to
    /// `configuration.subscriberBuffer`.
    public func subscribe(_ id: JobID, capacity: Int? = nil) throws(JobError) -> JobSubscription {
        let subscription = JobSubscription(jobID: id, capacity: capacity ?? configuration.subscriberBuffer)
        let lock = registry.lock
        lock.lock()
        let entry: JobEntry
        do {
            entry = try registry.entry(id)
        } catch {
            lock.unlock()
            // Cluster mode: a job this box does not hold is watched through the store.
            if let cluster { return try clusterSubscribe(id, capacity: subscription.capacity, cluster) }
            throw error
        }
        let snapshot = registry.snapshot(entry)
        if let kind = JobRegistry.terminalKind(snapshot.status) {
            lock.unlock()
            // Finished: nothing more will happen, so the (storage) read needs no lock.
            let preview = snapshot.previewStep.flatMap { step in
                (try? store.readPreview(of: id)).map { JobImage(step: step, data: $0) }
            }
            subscription.push(JobEvent(kind: .snapshot, job: snapshot, preview: preview))
            subscription.push(JobEvent(kind: kind, job: snapshot, preview: kind == .succeeded ? preview : nil))
            return subscription
        }
        defer { lock.unlock() }
        subscription.push(JobEvent(kind: .snapshot, job: snapshot, preview: entry.preview))
        if !registry.accepting && registry.liveSchedulers == 0 {
            subscription.push(JobEvent(kind: .requeued, job: snapshot))
        } else {
            entry.subscribers.append(subscription)
        }
        return subscription
    }

    /// Jobs waiting in the queue.
    public var queueDepth: Int { registry.lock.withLock { registry.queue.count } }
    /// Jobs being sampled now.
    public var runningCount: Int { registry.lock.withLock { registry.running } }
    /// False once `drain` was called.
    public var isAccepting: Bool { registry.lock.withLock { registry.accepting } }
    /// True from the call of `drain` on (also after it returned).
    public var isDraining: Bool { registry.lock.withLock { !registry.accepting } }

    /// True while the schedulers make progress: a job was admitted, a batched step ended or a job
    /// ended within `window`, or there is nothing to run (no job running, and none queued or the
    /// service draining). False when a job is running, or waiting for a slot, and no step has
    /// ended for `window`: a hung step, or a step longer than `window`. The daemon feeds systemd's
    /// watchdog only while this holds, so a daemon whose scheduler hangs is restarted.
    public func isMakingProgress(within window: Duration) -> Bool {
        registry.lock.withLock {
            if registry.running == 0 && (registry.queue.isEmpty || !registry.accepting) { return true }
            return registry.lastProgress.duration(to: .now) < window
        }
    }

    // MARK: - Cancel

    /// Cancels a queued job at once, or asks a running one to stop after its current step
    /// (`cancelRequested`; it turns `canceled` then). A finished job is returned as it is, so
    /// repeating a cancel is safe.
    @discardableResult
    public func cancel(_ id: JobID) throws(JobError) -> JobSnapshot {
        let lock = registry.lock
        lock.lock()
        let entry: JobEntry
        do {
            entry = try registry.entry(id)
        } catch {
            lock.unlock()
            // Cluster mode: a job this box does not hold is canceled in the store.
            if let cluster { return try clusterCancel(id, cluster) }
            throw error
        }
        switch entry.record.status {
        case .queued:
            registry.queue.remove(id)
            metrics.queueDepth.record(registry.queue.count)
            entry.record.cancelRequested = true
            lock.unlock()
            finish(entry, status: .canceled, error: nil)
            return lock.withLock { registry.snapshot(entry) }
        case .running:
            if !entry.record.cancelRequested {
                entry.record.cancelRequested = true
                entry.record.revision += 1
                registry.emit(entry, kind: .progress)
            }
            let snapshot = registry.snapshot(entry)
            lock.unlock()
            // Durable, so a crash now does not run the job again after the restart. A record that
            // cannot be written now is written when storage returns (readiness says so meanwhile).
            persistLogging(entry)
            return snapshot
        case .succeeded, .failed, .canceled:
            defer { lock.unlock() }
            return registry.snapshot(entry)
        }
    }

    // MARK: - Draining

    /// Stops the service: `submit` throws `shuttingDown` from now on; running jobs go on until
    /// `deadline` has passed and then stop after their current step, persisted as queued so that
    /// the next start runs them again from their seed (same images). Queued jobs stay queued on
    /// disk. Returns when every scheduler has stopped. Calling it again only waits.
    public func drain(deadline: Duration) {
        let lock = registry.lock
        lock.lock()
        let first = registry.accepting
        registry.accepting = false
        let proposed = ContinuousClock.now.advanced(by: deadline)
        if registry.drainDeadline.map({ proposed < $0 }) ?? true { registry.drainDeadline = proposed }
        let (runningJobs, queuedJobs) = (registry.running, registry.queue.count)
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
        while registry.liveSchedulers > 0 { lock.wait() }
        // Queued jobs will not run in this process: end their subscriptions.
        for id in registry.queue.ids {
            if let entry = registry.entries[id] { registry.emit(entry, kind: .requeued) }
        }
        lock.unlock()
        if let cluster { drainCluster(cluster) }
        logger.info("job service drained")
    }

    // MARK: - Storage

    /// Whether the state directory takes writes (a probe write, at most once a second); false
    /// also while the schedulers wait for it. In cluster mode: whether the database answers.
    public func storageWritable() -> Bool {
        let (blocked, cached) = registry.lock.withLock { (registry.storageBlocked, registry.lastProbe) }
        if blocked { return false }
        if let cached, cached.at.duration(to: .now) < .seconds(1) { return cached.writable }
        let writable = probeStorage()
        registry.lock.withLock { registry.lastProbe = (ContinuousClock.now, writable) }
        return writable
    }

    /// Whether storage takes writes now: a probe write, or in cluster mode whether the database
    /// answers.
    func probeStorage() -> Bool {
        if let cluster { return cluster.store.ping() }
        return store.probeWritable()
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) * 1e-18
    }
}
