// The job store shared by several rind boxes: PostgreSQL, used as a job queue the way Oban,
// GoodJob and graphile-worker use it (claims with `FOR UPDATE SKIP LOCKED`, leases, LISTEN/NOTIFY).
// It implements RINJobs' `SharedJobStore`; read that protocol's contract first.
//
// One file per part:
//   PostgresJobStore.swift          configuration, connections, the blocking bridge, lifecycle
//   PostgresJobStore+Queue.swift    submit, claim, renew, release, cancel
//   PostgresJobStore+Reads.swift    fetch, position, list, counts, images, previews
//   PostgresJobStore+Writes.swift   fenced writes of the box holding a job, delete, retention, and
//                                   the JobStorage methods cluster mode does not use
//   JobNotifications.swift          LISTEN on its own connection, re-listening after a loss
//   Schema.swift                    tables and migrations; DatabaseURL.swift, DatabaseErrors.swift,
//                                   BlockingCall.swift
//
// Connections: a `PostgresClient` pool (run in a task of its own) serves the calls; each call
// leases one connection, so a transaction never spans two. LISTEN holds a connection of its own.
// A call that gets no answer within `Configuration.callTimeout` (a shorter limit while the
// database is known to be down) throws `JobError.databaseUnavailable`; the pool keeps trying to
// connect in the background (backoff), so calls succeed again once the server is back.
import Foundation
import Logging
import Metrics
import PostgresNIO
import RINDiffusion
import RINJobs

/// `SharedJobStore` on PostgreSQL (see the contract in RINJobs' SharedJobStore.swift).
///
/// Create it, call `prepare()` (connects, creates or migrates the schema), `listen(_:)` once, and
/// `shutdown()` at the end. Every other method blocks its calling thread until the database
/// answered: call it from plain threads, never from a Swift task or an event loop.
public final class PostgresJobStore: SharedJobStore, @unchecked Sendable {
    /// How to reach the database and how long to wait for it.
    public struct Configuration: Sendable {
        public var url: DatabaseURL
        /// From a file or a systemd credential; never from the URL.
        public var password: String?
        /// This box's name (the host name by default in `rind serve`); `owner` adds a suffix.
        public var box: String
        /// Connecting (TCP and authentication) gives up after this.
        public var connectTimeout: Duration = .seconds(3)
        /// A call gives up after this and throws `databaseUnavailable`.
        public var callTimeout: Duration = .seconds(5)
        /// A call gives up after this while the last call found the database unreachable, so a
        /// box answers its 503s quickly during an outage.
        public var callTimeoutWhileDown: Duration = .seconds(1)
        /// `ping()` (readiness) gives up after this.
        public var pingTimeout: Duration = .seconds(2)
        /// `prepare()` (migrations wait for other boxes' migrations) gives up after this.
        public var prepareTimeout: Duration = .seconds(120)
        /// Connections of the pool at most (LISTEN's is one more).
        public var maxConnections: Int = 8
        /// Tombstones kept (newest first) by `expire`.
        public var maxTombstones: Int = 10_000
        /// The clock of record timestamps (`startedAt`, `finishedAt`); leases use the database's.
        public var now: @Sendable () -> Date = { Date() }

        public init(url: DatabaseURL, password: String?, box: String) {
            self.url = url
            self.password = password
            self.box = box
        }
    }

    /// The NOTIFY channel: the payload is a job id (`.changed`) or `queuedPayload` (`.queued`).
    static let channel = "rind_jobs"
    static let queuedPayload = "queued"

    public let configuration: Configuration
    /// `box` + "-" + 8 random hexadecimal characters: unique per start.
    public let owner: String
    let logger: Logger
    let client: PostgresClient
    let metrics = StoreMetrics()
    /// The URL without password: names the database in errors and logs.
    let databaseName: String

    private let lock = NSLock()
    private var runTask: Task<Void, Never>?
    private var notifications: JobNotifications?
    /// Set when a call (or the listener) found the database unreachable, cleared by the next call
    /// that got through.
    private var seemsDown = false

    /// Sets up the pool (it connects on first use); `prepare()` checks the database.
    public init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        databaseName = configuration.url.description
        let suffix = String(UInt32.random(in: .min ... .max), radix: 16)
        owner = "\(configuration.box)-\(String(repeating: "0", count: 8 - suffix.count))\(suffix)"
        var clientConfiguration = PostgresClient.Configuration(
            host: configuration.url.host, port: configuration.url.port, username: configuration.url.user,
            password: configuration.password, database: configuration.url.database,
            tls: Self.clientTLS(configuration.url.tls))
        clientConfiguration.options.connectTimeout = configuration.connectTimeout
        clientConfiguration.options.maximumConnections = max(1, configuration.maxConnections)
        clientConfiguration.options.keepAliveBehavior = .init(frequency: .seconds(30))
        // The pool logs every failed connection attempt at info: several lines a second while the
        // database is down. rind says it once itself (warnings of `call` and the listener), so the
        // pool's own lines go out from warning up only, unless rind runs at debug or trace.
        var poolLogger = logger
        if poolLogger.logLevel > .debug { poolLogger.logLevel = max(poolLogger.logLevel, .warning) }
        client = PostgresClient(configuration: clientConfiguration, backgroundLogger: poolLogger)
        let client = client
        runTask = Task { await client.run() }
    }

    deinit {
        runTask?.cancel()
    }

    static func clientTLS(_ mode: DatabaseURL.TLSMode) -> PostgresClient.Configuration.TLS {
        switch mode {
        case .disable: .disable
        case .prefer: .prefer(.makeClientConfiguration())
        case .require: .require(.makeClientConfiguration())
        }
    }

    /// The configuration of a connection outside the pool (migrations, LISTEN).
    func connectionConfiguration() throws -> PostgresConnection.Configuration {
        let url = configuration.url
        let tls: PostgresConnection.Configuration.TLS
        switch url.tls {
        case .disable: tls = .disable
        case .prefer: tls = .prefer(try NIOSSLContext(configuration: .makeClientConfiguration()))
        case .require: tls = .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
        }
        var connection = PostgresConnection.Configuration(
            host: url.host, port: url.port, username: url.user, password: configuration.password,
            database: url.database, tls: tls)
        connection.options.connectTimeout = .nanoseconds(Int64(configuration.connectTimeout.seconds * 1e9))
        return connection
    }

    // MARK: Lifecycle

    /// Connects on a connection of its own (so a wrong password or host is reported as the server
    /// said it) and creates or migrates the schema (Schema.swift).
    public func prepare() throws(JobError) {
        let connectionConfiguration: PostgresConnection.Configuration
        do {
            connectionConfiguration = try self.connectionConfiguration()
        } catch {
            throw .storage(path: databaseName, message: "TLS setup failed: \(error)")
        }
        let logger = logger
        let databaseName = databaseName
        let applied: [Int]
        do {
            applied = try blockingCall(timeout: configuration.prepareTimeout) {
                let connection = try await PostgresConnection.connect(
                    configuration: connectionConfiguration, id: 0, logger: logger)
                do {
                    let applied = try await Schema.migrate(connection, database: databaseName, logger: logger)
                    try? await connection.close()
                    return applied
                } catch {
                    try? await connection.close()
                    throw error
                }
            }
        } catch {
            throw jobError(error, database: databaseName)
        }
        logger.info("job database ready", metadata: [
            "database": "\(databaseName)", "schema": "\(Schema.latestVersion)",
            "migrated": "\(applied.map(String.init).joined(separator: ","))", "owner": "\(owner)",
        ])
    }

    public func listen(_ handler: @escaping @Sendable (SharedStoreEvent) -> Void) {
        let configuration: PostgresConnection.Configuration
        do {
            configuration = try connectionConfiguration()
        } catch {
            logger.error("cannot listen: TLS setup failed", metadata: ["error": "\(error)"])
            return
        }
        let listener = JobNotifications(configuration: configuration, channel: Self.channel,
                                        queuedPayload: Self.queuedPayload, metrics: metrics,
                                        logger: logger, onLoss: { [weak self] in self?.markDown() },
                                        handler: handler)
        let previous = lock.withLock { () -> JobNotifications? in
            let previous = notifications
            notifications = listener
            return previous
        }
        previous?.stop()
        listener.start()
    }

    /// Whether the database answers `SELECT 1` within `Configuration.pingTimeout` (or the
    /// shorter limit while it is known to be down).
    public func ping() -> Bool {
        do {
            try call(timeout: configuration.pingTimeout) { connection in
                try await connection.query("SELECT 1", logger: self.logger)
            }
            return true
        } catch {
            return false
        }
    }

    public func shutdown() {
        let (listener, task) = lock.withLock { () -> (JobNotifications?, Task<Void, Never>?) in
            defer {
                notifications = nil
                runTask = nil
            }
            return (notifications, runTask)
        }
        listener?.stop()
        guard let task else { return }
        task.cancel()
        // The pool closes its connections when its run() returns; wait a little for that.
        _ = try? blockingCall(timeout: .seconds(5)) { await task.value }
    }

    // MARK: Calls

    /// Runs `operation` on a leased connection and waits for it (the bridge of BlockingCall.swift),
    /// mapping failures to `JobError` (DatabaseErrors.swift).
    @discardableResult
    func call<Value: Sendable>(
        timeout limit: Duration? = nil,
        _ operation: @escaping @Sendable (PostgresConnection) async throws -> Value
    ) throws(JobError) -> Value {
        let down = lock.withLock { seemsDown }
        let normal = limit ?? configuration.callTimeout
        let timeout = down ? min(normal, configuration.callTimeoutWhileDown) : normal
        let client = client
        do {
            let value = try blockingCall(timeout: timeout) {
                try await client.withConnection { connection in try await operation(connection) }
            }
            if down { lock.withLock { seemsDown = false } }
            return value
        } catch {
            let mapped = jobError(error, database: databaseName)
            if case .databaseUnavailable = mapped {
                metrics.unavailable.increment()
                if !down {
                    lock.withLock { seemsDown = true }
                    logger.warning("job database unavailable", metadata: ["error": "\(mapped)"])
                }
            }
            throw mapped
        }
    }

    /// The database seems unreachable: calls wait `callTimeoutWhileDown` until one gets through.
    func markDown() {
        lock.withLock { seemsDown = true }
    }

    /// `call` inside one transaction: committed when `operation` returns, rolled back when it
    /// throws (a `JobError` it throws comes out unchanged).
    @discardableResult
    func transaction<Value: Sendable>(
        _ operation: @escaping @Sendable (PostgresConnection) async throws -> Value
    ) throws(JobError) -> Value {
        let logger = logger
        return try call { connection in
            try await connection.query("BEGIN", logger: logger)
            do {
                let value = try await operation(connection)
                try await connection.query("COMMIT", logger: logger)
                return value
            } catch {
                do {
                    try await connection.query("ROLLBACK", logger: logger)
                } catch {
                    // A connection stuck inside a transaction must not go back to the pool.
                    try? await connection.close()
                }
                throw error
            }
        }
    }

    // MARK: Records

    /// The JSON of a record: job.json's keys (snake_case), but dates as Foundation's own seconds
    /// since 2001 (`deferredToDate`), which come back bit for bit; seconds since 1970 (job.json)
    /// lose the last bit of some dates on the way through the offset, and every box must read the
    /// record the box that wrote it holds. The `created_at`/`finished_at` columns are for people.
    static func encode(_ record: JobRecord) throws(JobError) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .deferredToDate
        encoder.keyEncodingStrategy = .convertToSnakeCase
        do {
            return String(decoding: try encoder.encode(record), as: UTF8.self)
        } catch {
            throw .storage(path: "job \(record.id)", message: "cannot encode the record: \(error)")
        }
    }

    static func decode(_ json: String) throws -> JobRecord {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .deferredToDate
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(JobRecord.self, from: Data(json.utf8))
    }

    /// The columns every record query selects, in the order `records(_:)` decodes them.
    static let recordColumns = "record::text, revision, cancel_requested"

    /// Decodes rows of `recordColumns`; the columns' revision and cancel flag win (Schema.swift).
    static func records(_ rows: PostgresRowSequence) async throws -> [JobRecord] {
        var records: [JobRecord] = []
        for try await (json, revision, cancelRequested) in rows.decode((String, Int, Bool).self) {
            var record = try decode(json)
            record.revision = revision
            record.cancelRequested = cancelRequested
            records.append(record)
        }
        return records
    }

    /// Why a job is not there: `gone` when a tombstone remembers it, else `notFound`.
    static func missing(_ id: JobID, on connection: PostgresConnection, logger: Logger) async throws -> JobError {
        let rows = try await connection.query(
            "SELECT 1 FROM rind_tombstones WHERE id = \(id.rawValue)", logger: logger).collect()
        return rows.isEmpty ? .notFound(id) : .gone(id)
    }

    /// Announces `payload` (a job id or `queuedPayload`) when the transaction commits.
    static func notify(_ payload: String, on connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query("SELECT pg_notify(\(channel), \(payload))", logger: logger)
    }
}

/// The store's metrics (swift-metrics; the server bootstraps the Prometheus backend):
///
/// - `rind_database_unavailable_total` (counter): calls that found the database unreachable.
/// - `rind_database_listen_reconnects_total` (counter): LISTEN connections made again after a loss.
/// - `rind_database_notifications_total` (counter): notifications received.
struct StoreMetrics: Sendable {
    let unavailable = Counter(label: "rind_database_unavailable_total")
    let listenReconnects = Counter(label: "rind_database_listen_reconnects_total")
    let notifications = Counter(label: "rind_database_notifications_total")
}
