// Cluster mode's claimer: one thread per box that takes queued jobs of this box's models from the
// shared store when batch slots are free, the way Oban's and GoodJob's pollers do, but woken by
// notifications rather than polling: the store's `.queued` event (a submit or a release anywhere),
// a run ending here (a slot freed), or, at least every half lease, the clock, so that the jobs of
// a box that died are taken once their lease expired (nobody announces a death).
import Foundation
import Logging

/// Claims jobs into the registry's queue (`JobService.enqueueClaimed`); the schedulers run them.
///
/// Its flags are guarded by the registry's lock, on which it also waits: a run that ends
/// broadcasts there already (`runEnded`).
final class ClusterClaimer: @unchecked Sendable {
    // Guarded by the registry's lock.
    private var wanted = true
    private var stopped = false
    private var alive = false

    /// Starts the thread (cluster mode's `JobService.init`).
    func start(service: JobService) {
        service.registry.lock.withLock { alive = true }
        let thread = Thread { [self] in loop(service) }
        thread.name = "rind-cluster-claimer"
        thread.start()
    }

    /// Something may be queued: look now (if slots are free).
    func wake(_ registry: JobRegistry) {
        registry.lock.withLock {
            wanted = true
            registry.lock.broadcast()
        }
    }

    /// Stops the thread and waits for it (drain).
    func stop(_ registry: JobRegistry) {
        registry.lock.lock()
        defer { registry.lock.unlock() }
        stopped = true
        registry.lock.broadcast()
        while alive { registry.lock.wait() }
    }

    private func loop(_ service: JobService) {
        guard let cluster = service.cluster else { return }
        let registry = service.registry
        let lock = registry.lock
        let period = JobService.seconds(cluster.lease) / 2
        let models = service.modelNames
        var nextTimed = Date()
        // Free slots right after the last claim: more free slots since means a run ended.
        var freeAfterClaim = 0
        var claims = OutageLog()
        lock.lock()
        while !stopped && registry.accepting {
            let free = service.configuration.workers - registry.running - registry.queue.count
            freeAfterClaim = min(freeAfterClaim, max(0, free))
            // Nothing is claimed while results cannot be stored (the schedulers wait too).
            let canClaim = free > 0 && !registry.storageBlocked
            guard canClaim, wanted || free > freeAfterClaim || Date() >= nextTimed else {
                _ = lock.wait(until: canClaim ? nextTimed : Date(timeIntervalSinceNow: min(period, 1)))
                continue
            }
            wanted = false
            lock.unlock()
            var claimed: [JobRecord] = []
            do {
                claimed = try cluster.store.claim(models: models, limit: free, lease: cluster.lease)
                claims.succeeded(service.logger, "the job database answers claims again")
            } catch {
                claims.failed(service.logger, "cannot claim jobs; trying again", error: error)
            }
            service.enqueueClaimed(claimed)
            cluster.refreshQueueGauge()
            lock.lock()
            nextTimed = Date(timeIntervalSinceNow: period)
            freeAfterClaim = free - claimed.count
            // A full claim may have left more behind: look again as soon as a slot is free.
            if claimed.count == free && !claims.failing { wanted = true }
        }
        alive = false
        lock.broadcast()
        lock.unlock()
    }
}
