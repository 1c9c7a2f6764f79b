// Cluster mode (issue 13): several rind processes ("boxes") share one queue in a `SharedJobStore`
// (PostgreSQL, RINCluster). The parts, one file each:
//
//   ClusterMode.swift    the configuration, the running parts of one box, the store's events
//   ClusterClaimer.swift a thread that claims queued jobs of this box's models when slots are free
//   LeaseKeeper.swift    a thread that renews the leases of this box's jobs and drops lost ones
//   RemoteJobs.swift     the public calls for jobs that live in the store: submit, reads, cancel,
//                        delete, subscriptions fed by the store's notifications
//
// What stays as in local mode: the registry holds the jobs this box runs (claimed ones enter its
// queue, the `BatchScheduler`s run them, JobLifecycle writes through the store), so batching,
// previews, results, cancel and drain are the same code. What differs: the queue and every job
// not running here live in the store; writes are fenced (a `leaseLost` write drops the run: the
// box that holds the job now runs it); a finished job leaves the registry (reads go to the store);
// a drain gives unfinished jobs back to the store (`release`) instead of the state directory.
import Foundation
import Logging
import Metrics

extension JobService {
    /// Cluster mode: the shared store in place of the state directory, and its leases.
    public struct Cluster: Sendable {
        /// The store every box shares (RINCluster's `PostgresJobStore`).
        public var store: any SharedJobStore
        /// How long a claim holds a job without renewal: a box that dies holds its jobs this long,
        /// then another box runs them again from their seed. Renewed every third of it; an idle
        /// box looks for expired leases every half of it.
        public var lease: Duration
        /// Test only: asked before each renewal round; false skips the round, as if the box had
        /// frozen (its leases then expire and another box claims its jobs). nil renews always.
        public var renewLeases: (@Sendable () -> Bool)?

        public init(store: any SharedJobStore, lease: Duration = .seconds(30),
                    renewLeases: (@Sendable () -> Bool)? = nil) {
            self.store = store
            self.lease = lease
            self.renewLeases = renewLeases
        }
    }

    /// True when jobs live in a shared store (`Configuration.cluster`), not the state directory.
    public var usesSharedStore: Bool { cluster != nil }
}

/// The running cluster parts of one box: claimer, lease keeper, remote watchers, the cluster's
/// queue gauge. Created by `JobService.init` in cluster mode.
final class ClusterRuntime: @unchecked Sendable {
    let store: any SharedJobStore
    let lease: Duration
    let claimer: ClusterClaimer
    let keeper: LeaseKeeper
    let watchers: RemoteWatchers
    /// `rind_cluster_queue_depth` (gauge): queued jobs over all boxes, as this box last read it
    /// (every lease renewal round, after each claim, and from each submit's answer).
    let clusterQueueDepth = Gauge(label: "rind_cluster_queue_depth")
    /// `rind_cluster_runs_dropped_total` (counter): runs this box dropped because another box holds
    /// the job now (its lease had expired) or the job was deleted elsewhere.
    let dropped = Counter(label: "rind_cluster_runs_dropped_total")

    init(configuration: JobService.Cluster, logger: Logger) {
        store = configuration.store
        lease = configuration.lease
        claimer = ClusterClaimer()
        keeper = LeaseKeeper(renewLeases: configuration.renewLeases)
        watchers = RemoteWatchers(logger: logger)
    }

    /// Reads the cluster's queue into the gauge (errors are the keeper's and claimer's to log).
    func refreshQueueGauge() {
        if let count = try? store.queuedCount() { clusterQueueDepth.record(count) }
    }
}

extension JobService {
    /// Cluster mode's start (from `init`, before the schedulers start): tables, events, threads.
    func startCluster(_ cluster: ClusterRuntime) throws(JobError) {
        try cluster.store.prepare()
        cluster.store.listen { [weak self] event in self?.handle(event) }
        cluster.claimer.start(service: self)
        cluster.keeper.start(service: self)
        cluster.refreshQueueGauge()
        logger.info("cluster mode: jobs live in the shared store", metadata: [
            "owner": "\(cluster.store.owner)", "lease_seconds": "\(Self.seconds(cluster.lease))",
        ])
    }

    /// What the store tells (on a thread of the store's: hand work off, call no store method here).
    func handle(_ event: SharedStoreEvent) {
        guard let cluster else { return }
        switch event {
        case .queued:
            cluster.claimer.wake(registry)
        case let .changed(id):
            cluster.watchers.changed(id, service: self)
            // A cancel or delete from another box reaches a job running here at the next
            // renewal; a poke brings that renewal forward (at most one a second).
            if registry.lock.withLock({ registry.entries[id] != nil }) { cluster.keeper.poke() }
        case .reconnected:
            logger.notice("the job database's notifications are back; reading watched jobs again")
            cluster.watchers.refreshAll(service: self)
            cluster.claimer.wake(registry)
            cluster.keeper.poke()
        }
    }

    /// Takes claimed jobs into the registry's queue, where the schedulers admit them as usual.
    /// Each comes back from the store `running` and counted; here it waits as `queued` until its
    /// scheduler admits it (`markRunningLocked` counts the attempt again, so it is undone here).
    func enqueueClaimed(_ records: [JobRecord]) {
        guard !records.isEmpty else { return }
        registry.lock.withLock {
            for var record in records {
                // Ours already (our own lease expired while the database was away, and nobody
                // else took it): the run going on here goes on.
                guard registry.entries[record.id] == nil, let checkpoint = checkpoint(named: record.model) else { continue }
                record.status = .queued
                record.attempts = max(0, record.attempts - 1)
                record.progress = JobProgress(step: 0, steps: record.parameters.steps)
                let entry = JobEntry(record: record, checkpoint: checkpoint)
                registry.entries[record.id] = entry
                registry.queue.append(record.id)
            }
            metrics.queueDepth.record(registry.queue.count)
            registry.lock.broadcast()
        }
        logger.debug("claimed jobs", metadata: ["jobs": "\(records.map(\.id.rawValue).joined(separator: ","))"])
    }

    /// Whether a write error means this box no longer holds the job (drop the run, not retry).
    static func isLost(_ error: JobError) -> Bool {
        switch error {
        case .leaseLost, .gone, .notFound: true
        default: false
        }
    }

    /// Drops a run this box no longer holds (another box has it, or it was deleted): it leaves the
    /// registry, its scheduler abandons it at its next step (`deleted`), nothing more is written,
    /// and its local subscribers go on watching it through the store. Returns false when it was
    /// gone already. A finished job is left alone (a renewal that raced its end) unless
    /// `finishedToo` (its final write was refused).
    @discardableResult
    func dropRun(_ entry: JobEntry, reason: String, finishedToo: Bool = false) -> Bool {
        guard let cluster else { return false }
        let subscribers = registry.lock.withLock { () -> [JobSubscription]? in
            guard !entry.deleted, finishedToo || !entry.record.status.isFinished else { return nil }
            entry.deleted = true
            entry.preview = nil
            registry.queue.remove(entry.id)
            metrics.queueDepth.record(registry.queue.count)
            if registry.entries[entry.id] === entry { registry.entries[entry.id] = nil }
            registry.unsaved.remove(entry.id)
            let subscribers = entry.subscribers.filter(\.isOpen)
            entry.subscribers = []
            registry.lock.broadcast()
            return subscribers
        }
        guard let subscribers else { return false }
        cluster.dropped.increment()
        logger.notice("dropped a run: \(reason)", metadata: ["job": "\(entry.id)"])
        let last = registry.lock.withLock { entry.record }
        for subscription in subscribers { cluster.watchers.adopt(subscription, last: last, service: self) }
        return true
    }

    /// A finished (and written) job leaves the registry: from now on it is read from the store.
    func forgetFinished(_ entry: JobEntry) {
        guard cluster != nil else { return }
        registry.lock.withLock {
            guard entry.record.status.isFinished, !registry.unsaved.contains(entry.id),
                  registry.entries[entry.id] === entry else { return }
            registry.entries[entry.id] = nil
            entry.subscribers.removeAll()
        }
    }

    /// Drain in cluster mode, after the schedulers stopped: claimed jobs not yet admitted go back
    /// to the store for other boxes, and the claimer and keeper stop.
    func drainCluster(_ cluster: ClusterRuntime) {
        cluster.claimer.stop(registry)
        let waiting = registry.lock.withLock { () -> [JobEntry] in
            let ids = registry.queue.ids
            for id in ids { registry.queue.remove(id) }
            return ids.compactMap { registry.entries[$0] }
        }
        for entry in waiting { releaseToStore(entry) }
        cluster.keeper.stop()
    }

    /// Gives a job this box holds back to the store's queue (another box runs it from its seed),
    /// and forgets it here. A failing database leaves it to the lease, which expires.
    func releaseToStore(_ entry: JobEntry) {
        guard let cluster else { return }
        entry.writeLock.lock()
        defer { entry.writeLock.unlock() }
        let id = entry.id
        do {
            try cluster.store.release(id)
            logger.info("running job given back to the cluster's queue", metadata: ["job": "\(id)"])
        } catch {
            logger.warning("cannot give a job back to the cluster's queue; its lease expires instead",
                           metadata: ["job": "\(id)", "error": "\(error)"])
        }
        registry.lock.withLock {
            entry.deleted = true
            if registry.entries[id] === entry { registry.entries[id] = nil }
            registry.unsaved.remove(id)
        }
    }
}
