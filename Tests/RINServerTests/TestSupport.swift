import Foundation
import Logging
import RINJobs
import RINModel
import RINServer
import RINTestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

enum Fixtures {
    /// The tiny checkpoint's geometry with 4 frames: a video model (ClipAPITests).
    static let tinyVideoCheckpoint = TestProject.fixtures.appendingPathComponent("checkpoints/tiny-video")

    static func temporaryDirectory(_ prefix: String) -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}

/// Holds jobs of an in-process service at `JobService.Configuration.beforeStep`: while the gate is
/// closed, a worker waits there before the next step of its job, so a test keeps a job running, and
/// the jobs behind it queued, for as long as it needs, whatever the speed of the machine. Open by
/// default; the test opens it again to let the jobs go. (RINTestSupport's `StepGate` is another
/// gate: it holds the first job that reaches a given step, and only that one.)
final class AllJobsGate: @unchecked Sendable {
    private let condition = NSCondition()
    private var closed = false
    private var held: [JobID: Int] = [:]   // jobs waiting at the gate now, with their steps done

    /// The hook for `JobService.Configuration.beforeStep`.
    var hook: @Sendable (JobID, Int) -> Void { { [self] job, stepsDone in pass(job, stepsDone) } }

    /// From now on, workers wait before their next step.
    func close() {
        condition.withLock { closed = true }
    }

    /// Lets every held job go on, and the ones that come later pass.
    func open() {
        condition.withLock {
            closed = false
            condition.broadcast()
        }
    }

    /// Waits until the job waits at the gate and returns its steps done; nil (and a failure) if it
    /// never came.
    @discardableResult
    func waitUntilHeld(_ id: String, seconds: Double = 300, file: StaticString = #filePath,
                       line: UInt = #line) -> Int? {
        guard let job = JobID(id) else {
            XCTFail("not a job id: \(id)", file: file, line: line)
            return nil
        }
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: seconds)
        while held[job] == nil {
            if !condition.wait(until: deadline) {
                XCTFail("job \(id) never reached the step gate", file: file, line: line)
                return nil
            }
        }
        return held[job]
    }

    private func pass(_ job: JobID, _ stepsDone: Int) {
        condition.lock()
        defer { condition.unlock() }
        while closed {
            if held[job] == nil {
                held[job] = stepsDone
                condition.broadcast()
            }
            condition.wait()
        }
        held[job] = nil
    }
}

/// A file named by `RIND_TEST_HOLD_FILE` for a `rind` subprocess: while it exists, the daemon's
/// workers wait before each step of a job after its first `freeSteps` (Sources/rind/TestHoldFile.swift).
/// Release it before the daemon is stopped (`defer { hold.release() }` after the daemon's own
/// `defer`): a held worker keeps the drain waiting.
struct HoldFile {
    let url: URL
    var environment: [String: String] { ["RIND_TEST_HOLD_FILE": url.path] }

    init(in directory: URL, freeSteps: Int = 0) throws {
        url = directory.appendingPathComponent("hold-\(UUID().uuidString.prefix(8))")
        try Data("\(freeSteps)\n".utf8).write(to: url)
    }

    /// Lets the held jobs go on (again: nothing).
    func release() {
        try? FileManager.default.removeItem(at: url)
    }
}

/// A real API server on an ephemeral loopback port with a real job service on the tiny checkpoint.
final class TestServer {
    let server: APIServer
    let service: JobService?
    let stateDirectory: URL
    /// Holds this server's jobs between steps while closed (see `startBlocker`).
    let gate = AllJobsGate()
    var port: Int { server.port }

    init(maxQueue: Int = 32, workers: Int = 1, apiKey: String? = nil, maxBodyBytes: Int = 64 * 1024,
         previewEvery: Int = 5, attach: Bool = true, host: String = "127.0.0.1",
         limits: HTTPServerLimits? = nil, stateDirectory: URL? = nil,
         beforeRun: (@Sendable (JobID) -> Void)? = nil, video: Bool = false) throws {
        MetricsBackend.bootstrap()
        self.stateDirectory = stateDirectory ?? Fixtures.temporaryDirectory("rind-server-test")
        var configuration = APIServer.Configuration()
        configuration.host = host
        configuration.port = 0
        configuration.apiKey = apiKey
        if let limits { configuration.limits = limits }
        configuration.limits.maxBodyBytes = maxBodyBytes
        configuration.keepAliveSeconds = 0.5
        var logger = Logger(label: "rind.test")
        logger.logLevel = .warning
        server = try APIServer(configuration: configuration, logger: logger)
        if attach {
            let checkpoint = try RINCheckpoint.load(from: TestProject.tinyCheckpoint)
            // `video`: the tiny-video model is loaded too, after the default.
            let models = try [checkpoint] + (video ? [RINCheckpoint.load(from: Fixtures.tinyVideoCheckpoint)] : [])
            var jobConfiguration = JobService.Configuration(stateDirectory: self.stateDirectory, workers: workers,
                                                            maxQueue: maxQueue, previewEvery: previewEvery)
            jobConfiguration.beforeStep = gate.hook
            jobConfiguration.beforeRun = beforeRun
            let service = try JobService(configuration: jobConfiguration, models: models,
                                         encoder: PNGImageEncoder(), logger: logger)
            server.attach(service)
            self.service = service
        } else {
            service = nil
        }
    }

    func shutdown() {
        server.stop()
        gate.open()   // a held worker would keep the drain waiting
        service?.drain(deadline: .zero)
        try? FileManager.default.removeItem(at: stateDirectory)
    }

    // MARK: Conveniences

    func submit(_ query: String, headers: [String: String] = [:]) throws -> [String: Any] {
        let result = try http("POST", port, "/generate?\(query)", headers: headers)
        XCTAssertEqual(result.status, 202, "submit \(query): \(result.text)")
        return result.json
    }

    func job(_ id: String) throws -> [String: Any] {
        try http("GET", port, "/jobs/\(id)").json
    }

    /// Polls until the job's status is one of `statuses` (bounded; never a timing assertion).
    @discardableResult
    func waitFor(_ id: String, _ statuses: Set<String>, step minimumStep: Int = 0,
                 file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        var last: [String: Any] = [:]
        let reached = try poll {
            last = try job(id)
            let step = (last["progress"] as? [String: Any])?["step"] as? Int ?? 0
            return (last["status"] as? String).map(statuses.contains) == true && step >= minimumStep
        }
        if !reached { XCTFail("job \(id) never reached \(statuses); last: \(last)", file: file, line: line) }
        return last
    }

    /// Closes the gate and submits a job that then holds the single worker, running, before its
    /// first step; jobs submitted after it stay queued. The test lets it go with `gate.open()`
    /// (after a cancel or delete, if it should not run).
    func startBlocker(file: StaticString = #filePath, line: UInt = #line) throws -> String {
        gate.close()
        let id = try submit("class=0&steps=50&seed=1&preview_every=0")["id"] as! String
        XCTAssertEqual(gate.waitUntilHeld(id, file: file, line: line), 0, file: file, line: line)
        return id
    }
}

/// Problem bodies: content type, status field, and the parameter named.
func assertProblem(_ result: HTTPResult, status: Int, parameter: String? = nil,
                   file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(result.status, status, result.text, file: file, line: line)
    XCTAssertEqual(result.header("content-type"), "application/problem+json", file: file, line: line)
    let body = result.json
    XCTAssertEqual(body["status"] as? Int, status, file: file, line: line)
    XCTAssertNotNil(body["type"] as? String, file: file, line: line)
    XCTAssertNotNil(body["title"] as? String, file: file, line: line)
    XCTAssertFalse((body["detail"] as? String ?? "").isEmpty, file: file, line: line)
    if let parameter {
        XCTAssertEqual(body["parameter"] as? String, parameter, "detail: \(body["detail"] ?? "")", file: file, line: line)
    }
}

/// Reads one SSE event (name, data); nil at the end of the stream. Comments are skipped but counted.
func readEvent(_ reader: TestBodyReader, comments: inout Int) -> (name: String, data: String)? {
    var name = "message"
    var data: [String] = []
    var sawField = false
    while let line = reader.line() {
        if line.isEmpty {
            if sawField && !data.isEmpty { return (name, data.joined(separator: "\n")) }
            sawField = false
            continue
        }
        if line.hasPrefix(":") { comments += 1; continue }
        sawField = true
        if line.hasPrefix("event: ") { name = String(line.dropFirst(7)) }
        if line.hasPrefix("data: ") { data.append(String(line.dropFirst(6))) }
    }
    return nil
}

/// Reads one multipart part (headers, body); nil after the closing boundary.
func readPart(_ reader: TestBodyReader, boundary: String) -> (headers: [String: String], body: [UInt8])? {
    while let line = reader.line() {
        if line == "--\(boundary)--" { return nil }
        if line == "--\(boundary)" { break }
    }
    var headers: [String: String] = [:]
    while let line = reader.line(), !line.isEmpty {
        guard let colon = line.firstIndex(of: ":") else { continue }
        headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    guard let length = headers["content-length"].flatMap(Int.init), let body = reader.bytes(length) else { return nil }
    _ = reader.line()
    return (headers, body)
}

/// Holds jobs where the job layer calls `beforeRun` until the test opens it.
final class RunGate: @unchecked Sendable {
    private let condition = NSCondition()
    private var open = false

    /// For `JobService.Configuration.beforeRun`.
    var hook: @Sendable (JobID) -> Void { { [self] _ in wait() } }

    func wait() {
        condition.lock()
        while !open { condition.wait() }
        condition.unlock()
    }

    func release() {
        condition.lock()
        open = true
        condition.broadcast()
        condition.unlock()
    }
}

/// A listening TCP socket holding `port` on a numeric `address` ("127.0.0.1", "::1"), so that
/// another socket's bind there fails with EADDRINUSE; port 0 takes a free one. nil when the
/// address cannot be bound here (no IPv6, or the port is taken).
final class HeldPort {
    let fd: Int32
    let port: Int

    init?(address: String, port: Int) {
        var hints = addrinfo()
        hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(address, String(port), &hints, &result) == 0, let entry = result?.pointee else { return nil }
        defer { freeaddrinfo(result) }
        let socketFD = socket(entry.ai_family, entry.ai_socktype, entry.ai_protocol)
        // SO_REUSEADDR: a connection of an earlier test left in TIME_WAIT must not stop the hold;
        // a listening socket still refuses every other bind.
        var one: Int32 = 1
        setsockopt(socketFD, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        guard socketFD >= 0, bind(socketFD, entry.ai_addr, entry.ai_addrlen) == 0, listen(socketFD, 1) == 0,
              withUnsafeMutablePointer(to: &storage, {
                  $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socketFD, $0, &length) }
              }) == 0 else {
            if socketFD >= 0 { close(socketFD) }
            return nil
        }
        fd = socketFD
        // sin_port and sin6_port both sit right after the 2-byte family, in network byte order.
        self.port = withUnsafeBytes(of: storage) { Int($0[2]) << 8 | Int($0[3]) }
    }

    deinit { close(fd) }
}
