// The rind HTTP API (openapi.yaml) on top of `MicroHTTPDaemon`. Request threads never sample: every
// handler validates, calls the job service (which never waits for a step) and answers. Job layer
// errors become problem+json here and only here (STYLE.md #6).
import Foundation
import Logging
import RINDiffusion
import RINJobs
import RINModel

#if canImport(Glibc)
import Glibc
#endif

/// Errors starting the API server.
public enum APIServerError: Error, CustomStringConvertible, Equatable {
    /// Binding a non-loopback address without an API key would expose the daemon to the network.
    case apiKeyRequired(host: String)
    /// The API key file is missing, unreadable or empty.
    case apiKeyFile(path: String, message: String)
    /// The listener could not start.
    case listen(HTTPServerError)

    public var description: String {
        switch self {
        case let .apiKeyRequired(host):
            return "refusing to listen on '\(host)' without an API key: a non-loopback address needs --api-key-file FILE (a bearer token) so that only clients holding the key can submit jobs"
        case let .apiKeyFile(path, message):
            return "cannot use API key file '\(path)': \(message)"
        case let .listen(error):
            return error.description
        }
    }
}

/// The rind HTTP API server.
///
/// It listens as soon as it is created, answering `503` (with `Retry-After`) on job routes and
/// `/readyz` until ``attach(_:)`` hands it a loaded job service; ``beginDrain()`` turns it back to
/// not-ready for a graceful stop. Health, readiness and metrics never need the API key.
public final class APIServer: @unchecked Sendable {
    /// Everything the server needs besides the job service.
    public struct Configuration: Sendable {
        public var host: String = "127.0.0.1"
        /// 0 picks a free port; read it back from ``APIServer/port``.
        public var port: Int = 8080
        public var limits = HTTPServerLimits()
        /// The bearer token clients must send; nil = none (loopback only).
        public var apiKey: String?
        /// Seconds between SSE keep-alive comments.
        public var keepAliveSeconds: Double = 15
        /// Suggested by `Retry-After` while loading or draining.
        public var unavailableRetryAfter: Int = 5
        /// The OpenAPI document served at `/openapi.yaml`; nil = looked up next to the executable.
        public var openAPIDocumentPath: String?

        public init() {}
    }

    /// Reads an API key file: the first line, surrounding white space removed; must not be empty.
    public static func readAPIKey(path: String) throws(APIServerError) -> String {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw .apiKeyFile(path: path, message: error.localizedDescription)
        }
        let key = text.split(whereSeparator: \.isNewline).first.map {
            $0.trimmingCharacters(in: .whitespaces)
        } ?? ""
        guard !key.isEmpty else { throw .apiKeyFile(path: path, message: "the file is empty") }
        return key
    }

    private enum Phase { case loading, ready, draining }

    public let configuration: Configuration
    private let logger: Logger
    private let metrics = HTTPMetrics()
    private let lock = NSLock()
    private var phase = Phase.loading
    private var service: JobService?
    private var daemon: MicroHTTPDaemon?
    private var router = Router()
    private let openAPIDocument: [UInt8]?

    /// The port the server listens on.
    public var port: Int { lock.withLock { daemon?.port ?? configuration.port } }

    /// Starts listening (not ready yet). Refuses a non-loopback host without an API key.
    public init(configuration: Configuration, logger: Logger = Logger(label: "rind.http")) throws(APIServerError) {
        if configuration.apiKey == nil && !MicroHTTPDaemon.isLoopback(host: configuration.host) {
            throw .apiKeyRequired(host: configuration.host)
        }
        MetricsBackend.bootstrap()
        self.configuration = configuration
        self.logger = logger
        openAPIDocument = Self.loadOpenAPIDocument(explicitPath: configuration.openAPIDocumentPath)
        router = makeRouter()
        let daemon: MicroHTTPDaemon
        do {
            daemon = try MicroHTTPDaemon(
                host: configuration.host, port: configuration.port, limits: configuration.limits, logger: logger,
                handler: { [unowned self] request in self.handle(request) },
                observer: { [unowned self] request, status, seconds in self.completed(request, status, seconds) })
        } catch {
            throw .listen(error)
        }
        lock.withLock { self.daemon = daemon }
    }

    deinit { daemon?.stop() }

    /// Makes the server ready: job routes go to `service` from now on.
    public func attach(_ service: JobService) {
        lock.withLock {
            self.service = service
            if phase == .loading { phase = .ready }
        }
    }

    /// Not ready from now on: `/readyz` and `POST /generate` answer 503; reads keep working so
    /// clients can still fetch finished results while the job service drains.
    public func beginDrain() {
        lock.withLock { phase = .draining }
    }

    /// Stops listening; open streams end. Idempotent.
    public func stop() {
        let daemon = lock.withLock { () -> MicroHTTPDaemon? in
            let current = self.daemon
            self.daemon = nil
            return current
        }
        daemon?.stop()
    }

    // MARK: Dispatch

    func handle(_ request: HTTPRequest) -> HTTPResponse {
        let match = router.match(method: request.method, path: request.path)
        // The key is checked before 404 and 405, so that without it nothing tells which routes
        // exist; only the open routes answer everyone.
        if let key = configuration.apiKey, !Self.authorized(request, key: key) {
            switch match {
            case .handler(let route, _, _), .methodNotAllowed(let route):
                if !route.open { return Problem.unauthorized().response }
            case .notFound:
                return Problem.unauthorized().response
            }
        }
        switch match {
        case .notFound:
            return Problem.notFound("no route \(request.path); see /openapi.yaml").response
        case .methodNotAllowed(let route):
            return Problem.methodNotAllowed(method: request.method, path: request.path,
                                            allowed: route.allowedMethods).response
        case .handler(_, let handler, let parameters):
            if let problem = Self.queryProblem(request) { return problem.response }
            return handler(request, parameters)
        }
    }

    /// The rules every route's query follows (openapi.yaml): each parameter at most once, never
    /// with an empty value. Leaving a parameter out is how to ask for its default.
    static func queryProblem(_ request: HTTPRequest) -> Problem? {
        var seen: Set<String> = []
        for (name, value) in request.query {
            if !seen.insert(name).inserted {
                return .invalidParameter(name, "'\(name)' is given more than once")
            }
            if value.isEmpty {
                return .invalidParameter(name, "'\(name)' is empty; leave it out for the default")
            }
        }
        return nil
    }

    private func completed(_ request: HTTPRequest, _ status: Int, _ seconds: Double) {
        let route: String
        switch router.match(method: request.method, path: request.path) {
        case .handler(let matched, _, _), .methodNotAllowed(let matched): route = matched.template
        case .notFound: route = "unmatched"
        }
        metrics.recordRequest(route: route, method: HTTPMetrics.methodLabel(request.method), status: status,
                              seconds: seconds)
        logger.info("\(request.method) \(request.path) \(status)", metadata: [
            "method": .string(request.method), "path": .string(request.path), "status": .stringConvertible(status),
            "duration_ms": .string(String(format: "%.1f", seconds * 1000)), "client": .string(request.clientAddress),
        ])
    }

    /// Constant-time comparison of the bearer token with the key: the time taken does not depend on
    /// where the first differing byte is.
    static func authorized(_ request: HTTPRequest, key: String) -> Bool {
        guard let header = request.header("authorization") else { return false }
        let prefix = "bearer "
        guard header.count > prefix.count, header.lowercased().hasPrefix(prefix) else { return false }
        let token = Array(header.utf8.dropFirst(prefix.utf8.count))
        let expected = Array(key.utf8)
        var difference = UInt8(token.count == expected.count ? 0 : 1)
        for index in 0..<expected.count {
            difference |= expected[index] ^ (index < token.count ? token[index] : 0)
        }
        return difference == 0
    }

    /// The service, or the 503 to answer while there is none.
    private func readyService() -> Result<JobService, Problem> {
        lock.withLock {
            if let service { return .success(service) }
            return .failure(.unavailable(detail: "the models are still loading", retryAfter: configuration.unavailableRetryAfter))
        }
    }

    private func withService(_ body: (JobService) throws(Problem) -> HTTPResponse) -> HTTPResponse {
        switch readyService() {
        case .failure(let problem): return problem.response
        case .success(let service):
            do { return try body(service) } catch { return error.response }
        }
    }

    private func currentPhase() -> Phase { lock.withLock { phase } }

    // MARK: Routes

    private func makeRouter() -> Router {
        var router = Router()
        router.add("POST", "/generate") { [unowned self] request, _ in generate(request) }
        router.add("GET", "/jobs") { [unowned self] request, _ in listJobs(request) }
        router.add("GET", "/jobs/{id}") { [unowned self] request, parameters in getJob(request, parameters) }
        router.add("DELETE", "/jobs/{id}") { [unowned self] _, parameters in deleteJob(parameters) }
        router.add("POST", "/jobs/{id}/cancel") { [unowned self] _, parameters in cancelJob(parameters) }
        router.add("GET", "/jobs/{id}/preview.png") { [unowned self] _, parameters in preview(parameters) }
        router.add("GET", "/jobs/{id}/image.png") { [unowned self] request, parameters in image(request, parameters) }
        router.add("GET", "/jobs/{id}/frames.png") { [unowned self] request, parameters in
            withService { service throws(Problem) in try ClipRoutes.frames(service, request, parameters) }
        }
        router.add("GET", "/jobs/{id}/stream") { [unowned self] request, parameters in stream(request, parameters) }
        router.add("GET", "/jobs/{id}/events") { [unowned self] _, parameters in events(parameters) }
        router.add("GET", "/models") { [unowned self] _, _ in models() }
        router.add("GET", "/healthz", open: true) { _, _ in .json(HealthBody(status: "ok")) }
        router.add("GET", "/readyz", open: true) { [unowned self] _, _ in readiness() }
        router.add("GET", "/metrics", open: true) { [unowned self] _, _ in
            .text(metrics.render(), contentType: "text/plain; version=0.0.4; charset=utf-8")
        }
        router.add("GET", "/openapi.yaml", open: true) { [unowned self] _, _ in
            guard let openAPIDocument else { return Problem.notFound("openapi.yaml was not installed with this binary").response }
            return HTTPResponse(status: 200, headers: [("Content-Type", "application/yaml")], body: .bytes(openAPIDocument))
        }
        return router
    }

    private func readiness() -> HTTPResponse {
        switch (currentPhase(), readyService()) {
        case (.ready, .success(let service)):
            guard service.storageWritable() else {
                return Problem.unavailable(detail: "the state directory cannot be written (full or read-only); jobs wait until it can",
                                           retryAfter: 30).response
            }
            return .json(HealthBody(status: "ready"))
        case (.draining, _):
            return Problem.unavailable(detail: "the daemon is shutting down", retryAfter: configuration.unavailableRetryAfter).response
        default:
            return Problem.unavailable(detail: "the models are still loading", retryAfter: configuration.unavailableRetryAfter).response
        }
    }

    private func generate(_ request: HTTPRequest) -> HTTPResponse {
        if currentPhase() == .draining {
            return Problem.unavailable(detail: "the daemon is shutting down and accepts no new jobs",
                                       retryAfter: configuration.unavailableRetryAfter).response
        }
        return withService { service throws(Problem) in
            let values = try GenerateParameters.collect(request)
            let modelName = values["model"]
            let checkpoint: RINCheckpoint
            if let modelName {
                guard let found = service.checkpoint(named: modelName) else {
                    throw Problem.invalidParameter("model", "unknown model '\(modelName)'; loaded: \(service.modelNames.joined(separator: ", "))")
                }
                checkpoint = found
            } else {
                checkpoint = service.defaultModel
            }
            let jobRequest = try GenerateParameters.jobRequest(values, model: modelName, checkpoint: checkpoint)
            let key = request.header("idempotency-key")
            if let key, key.isEmpty || key.utf8.count > 255 || key.unicodeScalars.contains(where: { $0.value < 0x21 || $0.value > 0x7E }) {
                throw Problem.invalidParameter("Idempotency-Key", "the Idempotency-Key header must be 1 to 255 visible ASCII characters")
            }
            let submission = try Self.mapped { () throws(JobError) in
                try service.submit(jobRequest, idempotencyKey: key)
            }
            let job = submission.job
            var headers: [(name: String, value: String)] = [("Location", "/jobs/\(job.id.rawValue)"),
                                                            ("ETag", Self.etag(job)), ("Cache-Control", "no-store")]
            if submission.replayed { headers.append(("Idempotent-Replayed", "true")) }
            return .json(JobBody(job, config: checkpoint.config), status: 202, headers: headers)
        }
    }

    private func jobID(_ parameters: Router.Parameters) throws(Problem) -> JobID {
        let text = parameters["id"] ?? ""
        guard let id = JobID(text) else {
            throw Problem.notFound("no job '\(text)' (job ids are 16 hexadecimal characters)")
        }
        return id
    }

    private func config(_ service: JobService, _ job: JobSnapshot) -> RINConfig? {
        service.checkpoint(named: job.model)?.config
    }

    private func getJob(_ request: HTTPRequest, _ parameters: Router.Parameters) -> HTTPResponse {
        withService { service throws(Problem) in
            let id = try jobID(parameters)
            let job: JobSnapshot
            job = try Self.mapped { () throws(JobError) in try service.job(id) }
            let etag = Self.etag(job)
            if let match = request.header("if-none-match"), Self.etagMatches(match, etag) {
                return HTTPResponse(status: 304, headers: [("ETag", etag), ("Cache-Control", "no-cache")])
            }
            return .json(JobBody(job, config: config(service, job)), headers: [("ETag", etag), ("Cache-Control", "no-cache")])
        }
    }

    private func listJobs(_ request: HTTPRequest) -> HTTPResponse {
        withService { service throws(Problem) in
            var status: JobStatus?
            if let text = request.queryValue("status") {
                guard let parsed = JobStatus(rawValue: text.lowercased()) else {
                    throw Problem.invalidParameter("status", "'status' must be one of \(JobStatus.allCases.map(\.rawValue).joined(separator: ", ")); got '\(text)'")
                }
                status = parsed
            }
            let limit = try Self.integerQuery(request, "limit", default: 50, range: 1...500)
            var offset = try Self.integerQuery(request, "offset", default: 0, range: 0...Int(Int32.max))
            if let cursor = request.queryValue("cursor") {
                guard let decoded = Self.decodeCursor(cursor) else {
                    throw Problem.invalidParameter("cursor", "'cursor' must be a next_cursor value from an earlier page")
                }
                offset = decoded
            }
            let page = service.list(status: status, limit: limit, offset: offset)
            let next = offset + page.jobs.count < page.total ? Self.encodeCursor(offset + page.jobs.count) : nil
            return .json(JobListBody(jobs: page.jobs.map { JobBody($0, config: config(service, $0)) },
                                     total: page.total, limit: limit, offset: offset, nextCursor: next),
                         headers: [("Cache-Control", "no-cache")])
        }
    }

    private func cancelJob(_ parameters: Router.Parameters) -> HTTPResponse {
        withService { service throws(Problem) in
            let id = try jobID(parameters)
            let job: JobSnapshot
            job = try Self.mapped { () throws(JobError) in try service.cancel(id) }
            return .json(JobBody(job, config: config(service, job)), headers: [("ETag", Self.etag(job))])
        }
    }

    private func deleteJob(_ parameters: Router.Parameters) -> HTTPResponse {
        withService { service throws(Problem) in
            let id = try jobID(parameters)
            try Self.mapped { () throws(JobError) in try service.delete(id) }
            return HTTPResponse(status: 204)
        }
    }

    private func preview(_ parameters: Router.Parameters) -> HTTPResponse {
        withService { service throws(Problem) in
            let id = try jobID(parameters)
            let image: JobImage
            image = try Self.mapped { () throws(JobError) in try service.preview(id) }
            return HTTPResponse(status: 200, headers: [("Content-Type", "image/png"), ("X-Step", String(image.step)),
                                                       ("Cache-Control", "no-store")],
                                body: .bytes(Array(image.data)))
        }
    }

    private func image(_ request: HTTPRequest, _ parameters: Router.Parameters) -> HTTPResponse {
        withService { service throws(Problem) in
            let id = try jobID(parameters)
            let index = try Self.integerQuery(request, "i", default: 0, range: 0...Int(Int32.max))
            let image: JobImage
            image = try Self.mapped { () throws(JobError) in try service.image(id, index: index) }
            if let clip = try ClipRoutes.clipResponse(service, id: id, image: image, request: request) { return clip }
            return HTTPResponse(status: 200, headers: [("Content-Type", "image/png"),
                                                       ("Cache-Control", "public, max-age=31536000, immutable")],
                                body: .bytes(Array(image.data)))
        }
    }

    private func stream(_ request: HTTPRequest, _ parameters: Router.Parameters) -> HTTPResponse {
        withService { service throws(Problem) in
            let id = try jobID(parameters)
            let index = try Self.integerQuery(request, "i", default: 0, range: 0...Int(Int32.max))
            let subscription: JobSubscription
            subscription = try Self.mapped { () throws(JobError) in try service.subscribe(id) }
            let body = PreviewStreamBody(subscription: subscription) { [weak service] in
                ClipRoutes.streamFinal(service, id: id, index: index)
            }
            return HTTPResponse(status: 200, headers: [
                ("Content-Type", "multipart/x-mixed-replace; boundary=\(PreviewStreamBody.boundary)"),
                ("Cache-Control", "no-store"),
            ], body: .stream(body))
        }
    }

    private func events(_ parameters: Router.Parameters) -> HTTPResponse {
        withService { service throws(Problem) in
            let id = try jobID(parameters)
            let subscription: JobSubscription
            subscription = try Self.mapped { () throws(JobError) in try service.subscribe(id) }
            let snapshotConfig = (try? service.job(id)).flatMap { config(service, $0) }
            let body = ServerSentEventsBody(subscription: subscription, config: snapshotConfig,
                                            keepAlive: .milliseconds(Int64(configuration.keepAliveSeconds * 1000)))
            return HTTPResponse(status: 200, headers: [("Content-Type", "text/event-stream"),
                                                       ("Cache-Control", "no-store"), ("X-Accel-Buffering", "no")],
                                body: .stream(body))
        }
    }

    private func models() -> HTTPResponse {
        withService { service throws(Problem) in
            let models = service.models.enumerated().map { index, checkpoint in
                ModelBody(checkpoint, isDefault: index == 0, previewEvery: service.configuration.previewEvery)
            }
            return .json(ModelListBody(defaultModel: service.defaultModel.name, models: models))
        }
    }

    // MARK: Helpers

    /// Runs a job service call, turning its error into the problem to answer.
    static func mapped<T>(_ body: () throws(JobError) -> T) throws(Problem) -> T {
        do { return try body() } catch { throw problem(for: error) }
    }

    /// Maps every job layer error to its problem (STYLE.md #6).
    static func problem(for error: JobError) -> Problem {
        switch error {
        case let .unknownModel(name, available):
            return .invalidParameter("model", "unknown model '\(name)'; loaded: \(available.joined(separator: ", "))")
        case let .invalidParameter(name, message):
            let apiName = GenerateParameters.apiName(name)
            return .invalidParameter(apiName, "'\(apiName)': \(message)")
        case let .queueFull(retryAfter):
            return .queueFull(retryAfter: max(1, retryAfter), detail: error.description)
        case .shuttingDown:
            return .unavailable(detail: error.description, retryAfter: 5)
        case .notFound:
            return .notFound(error.description)
        case .gone:
            return .gone(error.description)
        case .idempotencyConflict:
            return Problem(kind: "idempotency-conflict", title: "Idempotency key reused", status: 422,
                           detail: error.description, parameter: "Idempotency-Key")
        case let .notFinished(_, _, retryAfter):
            return .conflict(error.description, retryAfter: max(1, retryAfter))
        case .noResult:
            return Problem(kind: "no-result", title: "Job has no result", status: 404, detail: error.description)
        case .imageIndexOutOfRange:
            return .invalidParameter("i", error.description)
        case .noPreview:
            return Problem(kind: "no-preview", title: "No preview yet", status: 404, detail: error.description)
        case .storage:
            // The path stays in the log (JobService logs it); clients learn only what happened.
            return .internalError("the state directory could not be read or written; the error is in the daemon's log")
        case .storageFull:
            return Problem(kind: "insufficient-storage", title: "Insufficient storage", status: 507,
                           detail: "the state directory is full; the job was not accepted", headers: ["Retry-After": "30"])
        }
    }

    static func etag(_ job: JobSnapshot) -> String { "\"\(job.id.rawValue)-\(job.revision)\"" }

    static func etagMatches(_ header: String, _ etag: String) -> Bool {
        header.split(separator: ",").contains { candidate in
            var value = candidate.trimmingCharacters(in: .whitespaces)
            if value == "*" { return true }
            if value.hasPrefix("W/") { value.removeFirst(2) }
            return value == etag
        }
    }

    static func integerQuery(_ request: HTTPRequest, _ name: String, default value: Int, range: ClosedRange<Int>)
        throws(Problem) -> Int {
        guard let text = request.queryValue(name) else { return value }
        guard let parsed = Int(text), range.contains(parsed) else {
            throw Problem.invalidParameter(name, "'\(name)' must be an integer in \(range.lowerBound)...\(range.upperBound); got '\(text)'")
        }
        return parsed
    }

    /// Cursors are opaque to clients; they hold the offset of the next page.
    static func encodeCursor(_ offset: Int) -> String { "o" + String(offset, radix: 36) }
    static func decodeCursor(_ cursor: String) -> Int? {
        guard cursor.hasPrefix("o"), let value = Int(cursor.dropFirst(), radix: 36), value >= 0 else { return nil }
        return value
    }

    /// This process's executable, symlinks resolved (argv[0] may be a bare name found on PATH).
    public static func executableURL() -> URL {
        let link = URL(fileURLWithPath: "/proc/self/exe")
        if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: link.path) {
            return URL(fileURLWithPath: target)
        }
        return (Bundle.main.executableURL ?? URL(fileURLWithPath: CommandLine.arguments.first ?? "")).resolvingSymlinksInPath()
    }

    /// The OpenAPI document: an explicit path, else next to the executable (SwiftPM's resource
    /// bundle, or `../share/rind/` after install), else beside this source file in a checkout.
    static func loadOpenAPIDocument(explicitPath: String?) -> [UInt8]? {
        var candidates: [URL] = []
        if let explicitPath { candidates.append(URL(fileURLWithPath: explicitPath)) }
        let executable = executableURL()
        let directory = executable.deletingLastPathComponent()
        candidates.append(directory.appendingPathComponent("rind_RINServer.resources/openapi.yaml"))
        candidates.append(directory.deletingLastPathComponent().appendingPathComponent("share/rind/openapi.yaml"))
        if let main = Bundle.main.resourceURL {
            candidates.append(main.appendingPathComponent("rind_RINServer.resources/openapi.yaml"))
        }
        candidates.append(URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("openapi.yaml"))
        for candidate in candidates {
            if let data = FileManager.default.contents(atPath: candidate.path), !data.isEmpty { return Array(data) }
        }
        return nil
    }
}
