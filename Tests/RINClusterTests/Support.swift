// A real, throwaway PostgreSQL server per test class (RINTestSupport's ThrowawayPostgres) and a fresh
// database per test, plus the stores ("boxes") and records the tests use.
import Foundation
import Logging
import PostgresNIO
import RINCluster
import RINDiffusion
import RINJobs
import RINTestSupport
import XCTest

extension ThrowawayPostgres {
    /// A fresh database on this server, parsed. sslmode left at its default, prefer: the throwaway
    /// server has no TLS, so this also checks the fallback to plain TCP that a server without
    /// certificates gets.
    func createDatabaseURL() throws -> DatabaseURL {
        try DatabaseURL(parsing: createDatabase())
    }
}

let testLogger = Logger(label: "rind.cluster.test")

struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A test class with one server for all its tests and a fresh database for each test.
class PostgresTestCase: XCTestCase, @unchecked Sendable {
    nonisolated(unsafe) static var server: ThrowawayPostgres?
    nonisolated(unsafe) static var serverError: (any Error)?

    override class func setUp() {
        super.setUp()
        do {
            server = try ThrowawayPostgres()
        } catch {
            serverError = error
        }
    }

    override class func tearDown() {
        try? server?.destroy()
        server = nil
        super.tearDown()
    }

    var server: ThrowawayPostgres!
    var database: DatabaseURL!
    private var stores: [PostgresJobStore] = []

    override func setUpWithError() throws {
        try super.setUpWithError()
        guard let server = Self.server else {
            throw Self.serverError ?? Failure("no PostgreSQL server")
        }
        self.server = server
        database = try server.createDatabaseURL()
    }

    override func tearDown() {
        for store in stores { store.shutdown() }
        stores.removeAll()
        super.tearDown()
    }

    /// A store ("box") on this test's database, prepared (schema migrated) unless told otherwise.
    func makeStore(box: String = "box", database: DatabaseURL? = nil, prepare: Bool = true,
                   configure: (inout PostgresJobStore.Configuration) -> Void = { _ in }) throws -> PostgresJobStore {
        var configuration = PostgresJobStore.Configuration(url: database ?? self.database, password: server.password,
                                                           box: box)
        configuration.callTimeout = .seconds(3)
        configure(&configuration)
        var logger = Logger(label: "rind.cluster.test.\(box)")
        logger.logLevel = .warning
        let store = PostgresJobStore(configuration: configuration, logger: logger)
        stores.append(store)
        if prepare { try store.prepare() }
        return store
    }

    /// A queued job's record, as JobService would submit it.
    func queuedRecord(model: String = "cifar10", key: String? = nil, seed: UInt64 = 7, steps: Int = 20,
                      createdAt: Date = Date()) -> JobRecord {
        let parameters = SamplingParameters(classIndex: 3, seed: seed, steps: steps, sampler: .ddim, schedule: .cosine,
                                            guidance: 1.5, count: 2)
        return JobRecord(id: JobID.random(), model: model, request: JobRequest(model: model, classIndex: 3, seed: seed),
                         parameters: parameters, previewEvery: 5, status: .queued,
                         progress: JobProgress(step: 0, steps: steps), createdAt: createdAt, revision: 1,
                         idempotencyKey: key)
    }

    /// Submits `count` queued jobs with distinct, increasing creation times.
    func submitJobs(_ store: PostgresJobStore, count: Int, model: String = "cifar10") throws -> [JobRecord] {
        let start = Date()
        return try (0..<count).map { index in
            try store.submit(queuedRecord(model: model, seed: UInt64(index),
                                          createdAt: start.addingTimeInterval(Double(index) * 0.001)),
                             maxQueued: 1000).record
        }
    }
}

/// Runs `body` on `count` threads at once (released together) and returns their results in order.
func onThreads<Value: Sendable>(_ count: Int, _ body: @escaping @Sendable (Int) -> Value) -> [Value] {
    let start = DispatchSemaphore(value: 0)
    let done = DispatchGroup()
    let results = ResultsBox<Value>(count: count)
    for index in 0..<count {
        done.enter()
        Thread.detachNewThread {
            start.wait()
            results.set(index, body(index))
            done.leave()
        }
    }
    for _ in 0..<count { start.signal() }
    done.wait()
    return results.values
}

final class ResultsBox<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [Value?]

    init(count: Int) { slots = Array(repeating: nil, count: count) }

    func set(_ index: Int, _ value: Value) { lock.withLock { slots[index] = value } }
    var values: [Value] { lock.withLock { slots.map { $0! } } }
}

/// Collects a store's events for a test to wait on.
final class EventRecorder: @unchecked Sendable {
    private let condition = NSCondition()
    private var events: [SharedStoreEvent] = []

    func record(_ event: SharedStoreEvent) {
        condition.lock()
        events.append(event)
        condition.broadcast()
        condition.unlock()
    }

    /// Waits up to `timeout` for an event that `matches`; true when one came.
    func wait(for timeout: TimeInterval = 10, _ matches: (SharedStoreEvent) -> Bool) -> Bool {
        waitUntil(timeout) { $0.contains(where: matches) }
    }

    /// Waits up to `timeout` until the events heard so far satisfy `condition`.
    func waitUntil(_ timeout: TimeInterval = 10, _ satisfied: ([SharedStoreEvent]) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        condition.lock()
        defer { condition.unlock() }
        while !satisfied(events) {
            if !condition.wait(until: deadline) { return satisfied(events) }
        }
        return true
    }

    var all: [SharedStoreEvent] {
        condition.lock()
        defer { condition.unlock() }
        return events
    }
}

/// Asserts that `body` throws exactly `expected`.
func XCTAssertThrowsJobError<T>(_ expected: JobError, file: StaticString = #filePath, line: UInt = #line,
                                _ body: () throws(JobError) -> T) {
    do {
        _ = try body()
        XCTFail("expected \(expected), got a result", file: file, line: line)
    } catch {
        XCTAssertEqual(error, expected, file: file, line: line)
    }
}

extension PostgresTestCase {
    /// Runs SQL on this test's database on a connection of its own (what the tests check the
    /// stores' work with); every column comes back as text (cast in the SQL where needed).
    @discardableResult
    func sql(_ statement: String, database: DatabaseURL? = nil) throws -> [[String?]] {
        let url = database ?? self.database!
        let configuration = PostgresConnection.Configuration(
            host: url.host, port: url.port, username: url.user, password: server.password,
            database: url.database, tls: .disable)
        return try waitFor {
            let logger = Logger(label: "rind.cluster.test.sql")
            let connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
            do {
                let rows = try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger).collect()
                try await connection.close()
                return try rows.map { row in try row.map { cell in try cell.decode(String?.self) } }
            } catch {
                try? await connection.close()
                throw error
            }
        }
    }
}

/// Waits on this thread for an async operation (tests are synchronous: the stores block).
func waitFor<Value: Sendable>(_ operation: @escaping @Sendable () async throws -> Value) throws -> Value {
    let done = DispatchSemaphore(value: 0)
    let box = ResultsBox<Result<Value, any Error>>(count: 1)
    Task {
        do { box.set(0, .success(try await operation())) } catch { box.set(0, .failure(error)) }
        done.signal()
    }
    guard done.wait(timeout: .now() + 60) == .success else { throw Failure("no answer within 60 s") }
    return try box.values[0].get()
}
