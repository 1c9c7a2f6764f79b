// The built `rind serve` as a child process, and a blocking HTTP client for it: what the tests of
// this target that talk to real daemons share.
import Foundation
import RINTestSupport
import XCTest

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#endif

/// One `rind serve` process on a free loopback port (`--port 0`), its log kept in memory.
final class RindDaemon: @unchecked Sendable {
    let process = Process()
    /// `http://127.0.0.1:PORT`, from the "listening on" line.
    private(set) var base = ""
    private let logLock = NSLock()
    private var logText = ""

    /// Starts `rind serve <arguments>` and returns once the daemon listens; `ready` waits for
    /// `/readyz` too.
    init(arguments: [String], environment: [String: String] = [:], directory: URL, ready: Bool = true) throws {
        process.executableURL = DeployTests.rindBinary
        process.arguments = ["serve", "--port", "0"] + arguments
        process.currentDirectoryURL = directory
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let pipe = Pipe()
        process.standardError = pipe
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        // "listening on http://127.0.0.1:PORT" is logged before the models load.
        var seen = ""
        while true {
            let complete = seen.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
            if let line = complete.first(where: { $0.contains("listening on http://") }),
               let url = line.range(of: #"http://[0-9A-Za-z.:\[\]]+"#, options: .regularExpression) {
                base = String(line[url])
                break
            }
            let chunk = pipe.fileHandleForReading.availableData
            guard !chunk.isEmpty else {
                process.waitUntilExit()
                throw DaemonError.exited(status: process.terminationStatus, log: seen)
            }
            seen += String(decoding: chunk, as: UTF8.self)
        }
        logText = seen
        // Keep reading the log so the daemon never blocks on a full pipe.
        pipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self, !data.isEmpty else { return }
            self.logLock.withLock { self.logText += String(decoding: data, as: UTF8.self) }
        }
        if ready { try waitUntilReady() }
    }

    enum DaemonError: Error, CustomStringConvertible {
        case exited(status: Int32, log: String)
        case neverReady(log: String)
        var description: String {
            switch self {
            case let .exited(status, log): "rind serve exited with status \(status):\n\(log)"
            case let .neverReady(log): "rind serve never became ready:\n\(log)"
            }
        }
    }

    /// Everything the daemon logged so far.
    var log: String { logLock.withLock { logText } }

    /// Waits (bounded, not a timing assertion) until `/readyz` answers 200.
    func waitUntilReady() throws {
        for _ in 0..<3000 {
            if let ready = try? HTTP.request("GET", base + "/readyz"), ready.status == 200 { return }
            guard process.isRunning else { throw DaemonError.exited(status: process.terminationStatus, log: log) }
            usleep(50_000)
        }
        throw DaemonError.neverReady(log: log)
    }

    /// SIGKILL: the box dies without a word.
    func kill9() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// SIGTERM (a drain) and wait for the exit.
    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }
}

/// A blocking HTTP client over URLSession.
enum HTTP {
    struct Response {
        let status: Int
        let headers: [String: String]
        let body: Data
        var text: String { String(decoding: body, as: UTF8.self) }
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
    }

    static func request(_ method: String, _ url: String, headers: [String: String] = [:],
                        timeout: Double = 600) throws -> Response {
        guard let target = URL(string: url) else { throw URLError(.badURL) }
        var request = URLRequest(url: target)
        request.httpMethod = method
        request.timeoutInterval = timeout
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var result: Result<Response, any Error> = .failure(URLError(.unknown))
        URLSession.shared.dataTask(with: request) { data, response, error in
            if let error {
                result = .failure(error)
            } else {
                let http = response as? HTTPURLResponse
                var headers: [String: String] = [:]
                for (name, value) in http?.allHeaderFields ?? [:] {
                    headers["\(name)".lowercased()] = "\(value)"
                }
                result = .success(Response(status: http?.statusCode ?? 0, headers: headers, body: data ?? Data()))
            }
            done.signal()
        }.resume()
        done.wait()
        return try result.get()
    }

    /// Polls `GET base/jobs/id` until the job is finished; its status (bounded wait).
    static func waitForEnd(_ base: String, _ id: String) throws -> String {
        var status = ""
        let ended = try poll(seconds: 600) {
            status = try request("GET", base + "/jobs/\(id)").json["status"] as? String ?? ""
            return ["succeeded", "failed", "canceled"].contains(status)
        }
        return ended ? status : "never finished"
    }
}
