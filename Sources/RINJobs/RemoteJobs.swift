// Cluster mode's public calls: what `JobService`'s methods do when jobs live in a shared store.
// A job this box holds (running, or claimed and waiting for a slot) is answered from the registry
// as in local mode; every other job from the store. Subscriptions to jobs held elsewhere are fed
// by the store's notifications (`SharedStoreEvent.changed`): each one re-reads the record and
// turns the difference into the events a local subscriber would get; nothing polls.
import Foundation
import Logging

extension JobService {
    /// The registry's entry when this box holds the job (registry lock held).
    func heldEntryLocked(_ id: JobID) -> JobEntry? {
        guard let entry = registry.entries[id], !entry.deleted else { return nil }
        return entry
    }

    /// A record from the store as readers see it (its place in the cluster's queue if queued).
    func remoteSnapshot(_ record: JobRecord, _ cluster: ClusterRuntime) -> JobSnapshot {
        let position = record.status == .queued ? (try? cluster.store.queuePosition(of: record.id)) ?? nil : nil
        return JobSnapshot(record: record, queuePosition: position)
    }

    // MARK: - Submitting

    /// `submit` in cluster mode: the store queues it (the cluster's bound, its idempotency keys)
    /// and answers the job's queue position and the queued count in the same round trip.
    func clusterSubmit(_ record: JobRecord, _ cluster: ClusterRuntime) throws(JobError) -> JobSubmission {
        guard registry.lock.withLock({ registry.accepting }) else { throw .shuttingDown }
        let submitted = try cluster.store.submit(record, maxQueued: configuration.maxQueue)
        let stored = submitted.record
        if submitted.replayed, stored.request != record.request, let key = record.idempotencyKey {
            throw .idempotencyConflict(key: key, existing: stored.id)
        }
        cluster.clusterQueueDepth.record(submitted.queuedCount)
        return JobSubmission(job: JobSnapshot(record: stored, queuePosition: submitted.queuePosition),
                             replayed: submitted.replayed)
    }

    // MARK: - Reading

    func clusterJob(_ id: JobID, _ cluster: ClusterRuntime) throws(JobError) -> JobSnapshot {
        if let held = registry.lock.withLock({ heldEntryLocked(id).map(registry.snapshot) }) { return held }
        return remoteSnapshot(try cluster.store.fetch(id), cluster)
    }

    func clusterList(status: JobStatus?, limit: Int, offset: Int, _ cluster: ClusterRuntime) throws(JobError) -> JobPage {
        let (records, total) = try cluster.store.list(status: status, limit: max(0, limit), offset: max(0, offset))
        let held = registry.lock.withLock {
            records.compactMap { heldEntryLocked($0.id).map(registry.snapshot) }
        }
        let heldByID = Dictionary(held.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        // The page's queue positions in one query, not one per job.
        let queued = records.filter { $0.status == .queued && heldByID[$0.id] == nil }.map(\.id)
        let positions = (try? cluster.store.queuePositions(of: queued)) ?? [:]
        let jobs = records.map { record in
            heldByID[record.id] ?? JobSnapshot(record: record, queuePosition: positions[record.id])
        }
        return JobPage(jobs: jobs, total: total)
    }

    func clusterPreview(_ id: JobID, _ cluster: ClusterRuntime) throws(JobError) -> JobImage {
        let held = registry.lock.withLock { heldEntryLocked(id).map { ($0.preview, $0.record.previewStep) } }
        let cached: JobImage?, step: Int?
        if let held {
            (cached, step) = held
        } else {
            (cached, step) = (nil, try cluster.store.fetch(id).previewStep)
        }
        if let cached { return cached }
        guard let step else { throw .noPreview(id) }
        return JobImage(step: step, data: try cluster.store.readPreview(of: id))
    }

    func clusterImage(_ id: JobID, index: Int, _ cluster: ClusterRuntime) throws(JobError) -> JobImage {
        let held = registry.lock.withLock { () -> (JobRecord, Int)? in
            heldEntryLocked(id).map { ($0.record, registry.retryAfter(for: $0, fallback: configuration.fallbackRetryAfter)) }
        }
        if let (record, retryAfter) = held { return try finalImage(record, index: index, retryAfter: retryAfter) }
        let record = try cluster.store.fetch(id)
        let eta = record.status == .running ? record.progress.etaSeconds : nil
        let retryAfter = eta.map { max(1, Int($0.rounded(.up))) } ?? max(1, configuration.fallbackRetryAfter)
        return try finalImage(record, index: index, retryAfter: retryAfter)
    }

    // MARK: - Cancel and delete

    /// `cancel` of a job this box does not hold: the store cancels a queued one at once, or asks
    /// the box running it (its lease keeper hears of it).
    func clusterCancel(_ id: JobID, _ cluster: ClusterRuntime) throws(JobError) -> JobSnapshot {
        remoteSnapshot(try cluster.store.requestCancel(id), cluster)
    }

    /// `delete` in cluster mode: the store deletes it wherever it is (the box running it drops
    /// it at its next renewal); a run here ends now, its subscribers hear `canceled`.
    func clusterDelete(_ id: JobID, _ cluster: ClusterRuntime) throws(JobError) {
        try cluster.store.delete(id)
        let (wasActive, subscribers, event) = registry.lock.withLock { () -> (Bool, [JobSubscription], JobEvent?) in
            guard let entry = heldEntryLocked(id) else { return (false, [], nil) }
            let wasActive = !entry.record.status.isFinished
            if wasActive {
                entry.record.cancelRequested = true
                entry.record.status = .canceled
                entry.record.finishedAt = configuration.now()
                entry.record.revision += 1
            }
            entry.deleted = true
            entry.preview = nil
            registry.queue.remove(id)
            metrics.queueDepth.record(registry.queue.count)
            registry.entries[id] = nil
            registry.unsaved.remove(id)
            let subscribers = entry.subscribers
            entry.subscribers = []
            registry.lock.broadcast()
            return (wasActive, subscribers, JobEvent(kind: .canceled, job: registry.snapshot(entry)))
        }
        if wasActive { metrics.finished(.canceled) }
        if let event { for subscriber in subscribers { subscriber.push(event) } }
    }

    /// Retention over the cluster (`sweepExpired` in cluster mode).
    func clusterSweep(_ cluster: ClusterRuntime) {
        let cutoff = configuration.keepHours.map { configuration.now().addingTimeInterval(-$0 * 3600) }
        do {
            let count = try cluster.store.expire(keepJobs: configuration.keepJobs, finishedBefore: cutoff)
            if count > 0 { logger.info("retention removed finished jobs", metadata: ["count": "\(count)"]) }
        } catch {
            logger.warning("cannot expire finished jobs now", metadata: ["error": "\(error)"])
        }
    }

    // MARK: - Subscribing

    /// `subscribe` to a job this box does not hold: a snapshot now, then events from the store's
    /// notifications.
    func clusterSubscribe(_ id: JobID, capacity: Int, _ cluster: ClusterRuntime) throws(JobError) -> JobSubscription {
        let record = try cluster.store.fetch(id)
        let subscription = JobSubscription(jobID: id, capacity: capacity)
        let preview = record.previewStep.flatMap { step in
            (try? cluster.store.readPreview(of: id)).map { JobImage(step: step, data: $0) }
        }
        let snapshot = remoteSnapshot(record, cluster)
        subscription.push(JobEvent(kind: .snapshot, job: snapshot, preview: preview))
        if let kind = JobRegistry.terminalKind(record.status) {
            subscription.push(JobEvent(kind: kind, job: snapshot, preview: kind == .succeeded ? preview : nil))
            return subscription
        }
        cluster.watchers.watch(subscription, last: record, service: self)
        return subscription
    }
}

/// Subscriptions to jobs held by other boxes, fed from the store's notifications. Changes are
/// read on one serial queue, at most one pending read per job however many notifications came
/// (progress notifications of a batch coalesce).
final class RemoteWatchers: @unchecked Sendable {
    private final class Watch {
        var subscriptions: [JobSubscription] = []
        var last: JobRecord
        init(last: JobRecord) { self.last = last }
    }

    private let lock = NSLock()
    private var watches: [JobID: Watch] = [:]
    private var pending: Set<JobID> = []
    private let queue = DispatchQueue(label: "rind.cluster.watchers")
    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    /// Starts feeding `subscription` (which has had its snapshot, of `last`); reads the job once
    /// more at once, for changes between that read and now.
    func watch(_ subscription: JobSubscription, last: JobRecord, service: JobService) {
        lock.withLock {
            let watch = watches[last.id] ?? Watch(last: last)
            watch.subscriptions.append(subscription)
            watches[last.id] = watch
        }
        schedule(last.id, service: service)
    }

    /// A local subscriber of a run this box dropped: it goes on through the store.
    func adopt(_ subscription: JobSubscription, last: JobRecord, service: JobService) {
        watch(subscription, last: last, service: service)
    }

    /// The store says the job changed.
    func changed(_ id: JobID, service: JobService) {
        guard lock.withLock({ watches[id] != nil }) else { return }
        schedule(id, service: service)
    }

    /// Notifications were lost (the store reconnected): read every watched job again.
    func refreshAll(service: JobService) {
        for id in lock.withLock({ Array(watches.keys) }) { schedule(id, service: service) }
    }

    private func schedule(_ id: JobID, service: JobService) {
        let first = lock.withLock { pending.insert(id).inserted }
        guard first else { return }
        queue.async { [self] in refresh(id, service: service) }
    }

    private func refresh(_ id: JobID, service: JobService) {
        guard let cluster = service.cluster else { return }
        let last = lock.withLock { () -> JobRecord? in
            pending.remove(id)
            guard let watch = watches[id] else { return nil }
            watch.subscriptions.removeAll { !$0.isOpen }
            if watch.subscriptions.isEmpty {
                watches[id] = nil
                return nil
            }
            return watch.last
        }
        guard let last else { return }
        let events: [JobEvent]
        let now: JobRecord
        do {
            now = try cluster.store.fetch(id)
            events = self.events(from: last, to: now, service: service, cluster)
        } catch {
            switch error {
            case .gone, .notFound:
                // Deleted (or expired) on some box: the end a local subscriber gets from a delete.
                var record = last
                if !record.status.isFinished {
                    record.status = .canceled
                    record.cancelRequested = true
                }
                deliver(id, [JobEvent(kind: .canceled, job: JobSnapshot(record: record, queuePosition: nil))], last: record)
            default:
                // The store reconnects and says so (`.reconnected`); every watch is read then.
                logger.debug("cannot read a watched job now", metadata: ["job": "\(id)", "error": "\(error)"])
            }
            return
        }
        deliver(id, events, last: now)
    }

    private func deliver(_ id: JobID, _ events: [JobEvent], last: JobRecord) {
        let subscriptions = lock.withLock { () -> [JobSubscription] in
            guard let watch = watches[id] else { return [] }
            watch.last = last
            let subscriptions = watch.subscriptions
            if events.contains(where: \.isTerminal) { watches[id] = nil }
            return subscriptions
        }
        for subscription in subscriptions {
            for event in events { subscription.push(event) }
        }
    }

    /// What a local subscriber would have heard between two reads of the record.
    private func events(from last: JobRecord, to now: JobRecord, service: JobService, _ cluster: ClusterRuntime) -> [JobEvent] {
        guard now != last else { return [] }
        let snapshot = service.remoteSnapshot(now, cluster)
        func preview() -> JobImage? {
            now.previewStep.flatMap { step in
                (try? cluster.store.readPreview(of: now.id)).map { JobImage(step: step, data: $0) }
            }
        }
        if let kind = JobRegistry.terminalKind(now.status) {
            return [JobEvent(kind: kind, job: snapshot, preview: kind == .succeeded ? preview() : nil)]
        }
        if now.previewStep != nil, now.previewStep != last.previewStep || now.attempts != last.attempts,
           let preview = preview() {
            return [JobEvent(kind: .preview, job: snapshot, preview: preview)]
        }
        return [JobEvent(kind: .progress, job: snapshot)]
    }
}
