// Slowloris defence. libmicrohttpd's connection timeout measures idleness, so a client that
// trickles one header byte every few seconds holds its connection (and, here, its thread) forever.
// The reaper bounds the time to send a whole request instead, and cuts it short while connections
// are crowded, so that slow clients cannot keep health checks and ordinary clients out.
import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Tracks the daemon's open connections and, a few times a second, closes (shutdown(2), after
/// which libmicrohttpd sees the end of the stream and cleans up) each one that has been sending its
/// request for longer than ``HTTPServerLimits/requestReadTimeoutSeconds``, or
/// ``HTTPServerLimits/crowdedReadTimeoutSeconds`` while the open connections reach
/// ``HTTPServerLimits/crowdedThreshold``. A connection that is being answered is never touched.
final class SlowRequestReaper: @unchecked Sendable {
    /// One open connection; its fields are guarded by the reaper's lock.
    final class Connection {
        let fd: Int32
        /// Waiting for (the rest of) a request, as opposed to answering one.
        var reading = true
        var since = ContinuousClock.now
        var reaped = false
        init(fd: Int32) { self.fd = fd }
    }

    private let limits: HTTPServerLimits
    private let logger: Logger
    // The close notification takes this lock before libmicrohttpd closes the socket, so a
    // descriptor is never shut down after it was closed and reused.
    private let lock = NSCondition()
    private var connections: [ObjectIdentifier: Connection] = [:]
    private var running = false

    init(limits: HTTPServerLimits, logger: Logger) {
        self.limits = limits
        self.logger = logger
    }

    /// Starts the reaper thread.
    func start() {
        lock.withLock { running = true }
        let thread = Thread { [self] in
            while reapOnce() {}
        }
        thread.name = "rind-http-reaper"
        thread.start()
    }

    /// Stops the reaper thread (it exits within one pass). Idempotent.
    func stop() {
        lock.withLock {
            running = false
            lock.broadcast()
        }
    }

    /// A connection opened (MHD_CONNECTION_NOTIFY_STARTED).
    func opened(fd: Int32) -> Connection {
        let connection = Connection(fd: fd)
        lock.withLock { connections[ObjectIdentifier(connection)] = connection }
        return connection
    }

    /// A connection closed (MHD_CONNECTION_NOTIFY_CLOSED).
    func closed(_ connection: Connection) {
        lock.withLock { connections[ObjectIdentifier(connection)] = nil }
    }

    /// `false` once a response is queued, `true` again when it is sent (the next request's clock).
    func setReading(_ reading: Bool, _ connection: Connection) {
        lock.withLock {
            connection.reading = reading
            connection.since = .now
        }
    }

    /// Waits 0.2 s, then closes the connections past their deadline. Returns false once stopped.
    private func reapOnce() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard running else { return false }
        _ = lock.wait(until: Date(timeIntervalSinceNow: 0.2))
        guard running else { return false }
        let now = ContinuousClock.now
        let crowded = connections.count >= limits.crowdedThreshold
        let limit = Duration.seconds(limits.requestReadTimeoutSeconds)
        let crowdedLimit = Duration.milliseconds(Int64(limits.crowdedReadTimeoutSeconds * 1000))
        var reaped = 0
        for connection in connections.values where connection.reading && !connection.reaped && connection.fd >= 0 {
            let age = connection.since.duration(to: now)
            if age > limit || (crowded && age > crowdedLimit) {
                connection.reaped = true
                shutdown(connection.fd, Int32(SHUT_RDWR))
                reaped += 1
            }
        }
        if reaped > 0 {
            logger.notice("closed connections that were too slow to send a request", metadata: [
                "closed": "\(reaped)", "open": "\(connections.count)", "crowded": "\(crowded)",
            ])
        }
        return true
    }
}
