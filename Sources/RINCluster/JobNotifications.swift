// LISTEN on the store's channel, on a connection of its own (a pooled one would go back to the
// pool), for as long as the store lives. A lost connection (database restart, network) is made
// again with backoff (0.1 s doubling to 5 s); once LISTEN is active again the handler hears
// `.reconnected`, because whatever was announced in between is lost and waiters must read again.
// Events reach the handler in order on one dispatch queue of their own: a handler may block (it
// may call the store) without holding up the connection's event loop or Swift's task pool.
import Dispatch
import Foundation
import Logging
import PostgresNIO
import RINJobs

final class JobNotifications: @unchecked Sendable {
    let configuration: PostgresConnection.Configuration
    let channel: String
    let queuedPayload: String
    let metrics: StoreMetrics
    let logger: Logger
    let handler: @Sendable (SharedStoreEvent) -> Void
    /// Told when the connection is lost: the store shortens its calls' wait until one gets through.
    let onLoss: @Sendable () -> Void
    private let delivery = DispatchQueue(label: "rind.cluster.notifications")
    private let lock = NSLock()
    private var task: Task<Void, Never>?

    init(configuration: PostgresConnection.Configuration, channel: String, queuedPayload: String,
         metrics: StoreMetrics, logger: Logger, onLoss: @escaping @Sendable () -> Void,
         handler: @escaping @Sendable (SharedStoreEvent) -> Void) {
        self.configuration = configuration
        self.channel = channel
        self.queuedPayload = queuedPayload
        self.metrics = metrics
        self.logger = logger
        self.handler = handler
        self.onLoss = onLoss
    }

    func start() {
        let task = Task { await self.run() }
        lock.withLock { self.task = task }
    }

    /// Stops listening; the connection closes.
    func stop() {
        lock.withLock { task }?.cancel()
    }

    /// What a payload announces; nil for one this version does not know (logged, skipped).
    func event(_ payload: String) -> SharedStoreEvent? {
        if payload == queuedPayload { return .queued }
        if let id = JobID(payload) { return .changed(id) }
        return nil
    }

    private func deliver(_ event: SharedStoreEvent) {
        let handler = handler
        delivery.async { handler(event) }
    }

    private func run() async {
        var lostBefore = false
        var backoff = Duration.milliseconds(100)
        var connectionID = 1
        while !Task.isCancelled {
            do {
                let connection = try await PostgresConnection.connect(
                    configuration: configuration, id: connectionID, logger: logger)
                connectionID += 1
                do {
                    try await connection.listen(on: channel) { notifications in
                        // LISTEN is active from here on.
                        if lostBefore {
                            lostBefore = false
                            metrics.listenReconnects.increment()
                            logger.info("listening to the job database again")
                            deliver(.reconnected)
                        }
                        backoff = .milliseconds(100)
                        for try await notification in notifications {
                            metrics.notifications.increment()
                            if let event = event(notification.payload) {
                                deliver(event)
                            } else {
                                logger.warning("unknown job notification", metadata: ["payload": "\(notification.payload)"])
                            }
                        }
                    }
                } catch {
                    try? await connection.close()
                    throw error
                }
                try? await connection.close()
                if Task.isCancelled { return }
                logger.warning("the job database ended the notification stream")
            } catch {
                if Task.isCancelled { return }
                if !lostBefore {
                    onLoss()
                    logger.warning("lost the job database's notifications; reconnecting",
                                   metadata: ["error": "\((error as? PSQLError)?.summary ?? "\(error)")"])
                }
            }
            lostBefore = true
            try? await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(5))
        }
    }
}
