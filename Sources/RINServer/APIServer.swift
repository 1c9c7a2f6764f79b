// The rind HTTP API (openapi.yaml) on top of `MicroHTTPDaemon`: the server's lifecycle, dispatch
// (API key, routing, query rules) and the route table. The handlers live in one file per resource
// (JobsHandlers.swift, ModelsHandlers.swift, HealthHandlers.swift, MetricsHandlers.swift,
// WebHandlers.swift). Request threads never sample: every handler validates, calls the job service
// (which never waits for a step) and answers. Job layer errors become problem+json in
// JobErrorProblems.swift and only there.
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
        /// The folder of the page served at `/` (index.html, app.js, style.css); nil = looked up
        /// next to the executable (`WebAssets`).
        public var webDirectory: String?

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

    enum Phase { case loading, ready, draining }

    public let configuration: Configuration
    private let logger: Logger
    let metrics = HTTPMetrics()
    let lock = NSLock()
    var phase = Phase.loading
    var service: JobService?
    private var daemon: MicroHTTPDaemon?
    private var router = Router()
    let openAPIDocument: [UInt8]?
    /// The page at `/` and its files; nil when they were not installed.
    let webAssets: WebAssets?

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
        webAssets = WebAssets.load(explicitDirectory: configuration.webDirectory)
        if let webAssets {
            logger.debug("the page at / comes from \(webAssets.directory.path)")
        } else {
            logger.warning("no web page installed (share/rind/web beside the binary): / answers 404")
        }
        router = makeRouter()
        let daemon: MicroHTTPDaemon
        do {
            daemon = try MicroHTTPDaemon(
                host: configuration.host, port: configuration.port, limits: configuration.limits, logger: logger,
                // Weak: a request still in flight while the server is released (its deinit stops
                // the daemon, which waits for that request) must not reach a deinitialising self.
                handler: { [weak self] request in
                    self?.handle(request) ?? Problem.unavailable(detail: "the server is shutting down", retryAfter: 5).response
                },
                observer: { [weak self] request, status, seconds in self?.completed(request, status, seconds) })
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
    func readyService() -> Result<JobService, Problem> {
        lock.withLock {
            if let service { return .success(service) }
            return .failure(.unavailable(detail: "the models are still loading", retryAfter: configuration.unavailableRetryAfter))
        }
    }

    func withService(_ body: (JobService) throws(Problem) -> HTTPResponse) -> HTTPResponse {
        switch readyService() {
        case .failure(let problem): return problem.response
        case .success(let service):
            do { return try body(service) } catch { return error.response }
        }
    }

    func currentPhase() -> Phase { lock.withLock { phase } }

    // MARK: Routes

    /// Every route, in one place; the handlers live in one file per resource (JobsHandlers.swift,
    /// ModelsHandlers.swift, HealthHandlers.swift, MetricsHandlers.swift, WebHandlers.swift).
    private func makeRouter() -> Router {
        var router = Router()
        router.add("POST", "/generate") { [unowned self] request, _ in generate(request) }
        router.add("GET", "/jobs") { [unowned self] request, _ in listJobs(request) }
        router.add("GET", "/jobs/{id}") { [unowned self] request, parameters in getJob(request, parameters) }
        router.add("DELETE", "/jobs/{id}") { [unowned self] _, parameters in deleteJob(parameters) }
        router.add("POST", "/jobs/{id}/cancel") { [unowned self] _, parameters in cancelJob(parameters) }
        router.add("GET", "/jobs/{id}/preview.png") { [unowned self] _, parameters in preview(parameters) }
        router.add("GET", "/jobs/{id}/image.png") { [unowned self] request, parameters in image(request, parameters) }
        router.add("GET", "/jobs/{id}/frames.png") { [unowned self] request, parameters in frames(request, parameters) }
        router.add("GET", "/jobs/{id}/stream") { [unowned self] request, parameters in stream(request, parameters) }
        router.add("GET", "/jobs/{id}/events") { [unowned self] _, parameters in events(parameters) }
        router.add("GET", "/models") { [unowned self] _, _ in models() }
        router.add("GET", "/healthz", open: true) { [unowned self] _, _ in health() }
        router.add("GET", "/readyz", open: true) { [unowned self] _, _ in readiness() }
        router.add("GET", "/metrics", open: true) { [unowned self] _, _ in metricsPage() }
        router.add("GET", "/openapi.yaml", open: true) { [unowned self] _, _ in openAPIDocumentResponse() }
        router.add("GET", "/", open: true) { [unowned self] _, _ in webPage() }
        router.add("GET", "/web/{file}", open: true) { [unowned self] _, parameters in webFile(parameters["file"] ?? "") }
        return router
    }
}
