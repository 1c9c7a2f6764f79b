import Foundation
import Logging
import RINJobs
import RINModel
import RINServer
import XCTest

enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    static let tinyCheckpoint = directory.appendingPathComponent("checkpoints/tiny")
    static let projectRoot = directory.deletingLastPathComponent().deletingLastPathComponent()

    static func temporaryDirectory(_ prefix: String) -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}

/// A real API server on an ephemeral loopback port with a real job service on the tiny checkpoint.
final class TestServer {
    let server: APIServer
    let service: JobService?
    let stateDirectory: URL
    var port: Int { server.port }

    init(maxQueue: Int = 32, workers: Int = 1, apiKey: String? = nil, maxBodyBytes: Int = 64 * 1024,
         previewEvery: Int = 5, attach: Bool = true, host: String = "127.0.0.1",
         limits: HTTPServerLimits? = nil, stateDirectory: URL? = nil,
         beforeRun: (@Sendable (JobID) -> Void)? = nil) throws {
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
            let checkpoint = try RINCheckpoint.load(from: Fixtures.tinyCheckpoint)
            var jobConfiguration = JobService.Configuration(stateDirectory: self.stateDirectory, workers: workers,
                                                            maxQueue: maxQueue, previewEvery: previewEvery)
            jobConfiguration.beforeRun = beforeRun
            let service = try JobService(configuration: jobConfiguration, models: [checkpoint],
                                         encoder: PNGImageEncoder(), logger: logger)
            server.attach(service)
            self.service = service
        } else {
            service = nil
        }
    }

    func shutdown() {
        server.stop()
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
    func waitFor(_ id: String, _ statuses: Set<String>, step minimumStep: Int = 0, attempts: Int = 6000,
                 file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        var last: [String: Any] = [:]
        for _ in 0..<attempts {
            last = try job(id)
            let step = (last["progress"] as? [String: Any])?["step"] as? Int ?? 0
            if let status = last["status"] as? String, statuses.contains(status), step >= minimumStep { return last }
            usleep(20_000)
        }
        XCTFail("job \(id) never reached \(statuses); last: \(last)", file: file, line: line)
        return last
    }

    /// A job that keeps the single worker busy until canceled.
    func startBlocker() throws -> String {
        let id = try submit("class=0&steps=1000&n=16&seed=1&preview_every=0")["id"] as! String
        try waitFor(id, ["running"])
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
