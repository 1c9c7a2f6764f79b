// Cluster mode's lease keeper: one thread per box renews the leases of the jobs this box holds
// (running, or claimed and waiting for a slot) every third of a lease, so a renewal can fail twice
// before the lease runs out. What a renewal learns is acted on here: a cancel asked on another box
// stops the run after its step (as a local cancel does), a job deleted elsewhere or taken by
// another box (this box's lease had expired) is dropped.
import Foundation
import Logging

/// Renews this box's leases; see the top of the file.
final class LeaseKeeper: @unchecked Sendable {
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var stopped = false
    private var alive = false
    private var poked = false
    private let renewLeases: (@Sendable () -> Bool)?

    init(renewLeases: (@Sendable () -> Bool)?) {
        self.renewLeases = renewLeases
    }

    func start(service: JobService) {
        condition.withLock { alive = true }
        let thread = Thread { [self] in loop(service) }
        thread.name = "rind-cluster-leases"
        thread.start()
    }

    /// Renew soon (at most one extra round a second): a job of this box changed in the store.
    func poke() {
        condition.withLock {
            poked = true
            condition.broadcast()
        }
    }

    /// Stops the thread and waits for it (the end of a drain: nothing is held any more).
    func stop() {
        condition.lock()
        defer { condition.unlock() }
        stopped = true
        condition.broadcast()
        while alive { condition.wait() }
    }

    private func loop(_ service: JobService) {
        guard let cluster = service.cluster else { return }
        let period = JobService.seconds(cluster.lease) / 3
        var last = Date.distantPast
        var renewals = OutageLog()
        condition.lock()
        while !stopped {
            let due = last.addingTimeInterval(period)
            let pokeDue = last.addingTimeInterval(min(1, period))
            if Date() < due && !(poked && Date() >= pokeDue) {
                _ = condition.wait(until: poked ? min(due, pokeDue) : due)
                continue
            }
            poked = false
            last = Date()
            condition.unlock()
            if renewLeases?() ?? true {
                renew(service, cluster, renewals: &renewals)
                cluster.refreshQueueGauge()
            }
            condition.lock()
        }
        alive = false
        condition.broadcast()
        condition.unlock()
    }

    private func renew(_ service: JobService, _ cluster: ClusterRuntime, renewals: inout OutageLog) {
        let registry = service.registry
        let held = registry.lock.withLock {
            registry.entries.values.filter { !$0.deleted && !$0.record.status.isFinished }
        }
        guard !held.isEmpty else { return }
        let states: [JobID: LeaseState]
        do {
            states = try cluster.store.renew(held.map(\.id), lease: cluster.lease)
            renewals.succeeded(service.logger, "leases renewed again")
        } catch {
            renewals.failed(service.logger, "cannot renew leases; runs go on, and are dropped if another box takes them",
                            error: error)
            return
        }
        for entry in held {
            switch states[entry.id] {
            case .held(let cancelRequested):
                guard cancelRequested else { continue }
                registry.lock.withLock {
                    guard !entry.deleted, !entry.record.cancelRequested else { return }
                    // The scheduler sees it before the next step and ends the run `canceled`.
                    entry.record.cancelRequested = true
                    entry.record.revision += 1
                    registry.emit(entry, kind: .progress)
                }
            case .deleted:
                service.dropRun(entry, reason: "the job was deleted on another box")
            case .lost, nil:
                service.dropRun(entry, reason: "another box holds the job now (this box's lease expired)")
            }
        }
    }
}
