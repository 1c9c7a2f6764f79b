// `rind serve`: wires the checkpoints, the job service and the HTTP server together, and runs the
// daemon's life: listen (not ready) -> load models -> ready (sd_notify READY=1) -> SIGTERM/SIGINT ->
// not ready (STOPPING=1) -> drain the job service -> stop listening -> exit 0.
import ArgumentParser
import Dispatch
import Foundation
import Logging
import RINCluster
import RINJobs
import RINModel
import RINServer
import RINTensor

#if canImport(Glibc)
import Glibc
#endif

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the HTTP daemon (what plain `rind` runs).",
        discussion: """
            Every subdirectory of --checkpoints that holds a config.json is a model (the directory \
            name is its API name). A request that names no model goes to --default-model: \
            imagenet64 when present, else cifar10, else the first by name. \
            SIGTERM or SIGINT drains: no new jobs, running jobs get --drain-seconds to finish and \
            are otherwise requeued on disk, then the process exits 0.

            Several daemons, one queue: with --database (or $RIND_DATABASE) jobs live in a \
            PostgreSQL database shared by every daemon given the same URL, not in --state-dir \
            (which is then neither read nor created). Any daemon runs queued jobs of the models it \
            has loaded and answers for every job; a daemon that dies holds its jobs for \
            --lease-seconds, then another runs them again from their seed. The password never goes \
            in the URL: --database-password-file, else the systemd credential \
            rind-database-password ($CREDENTIALS_DIRECTORY), else none. A drain gives running jobs \
            back to the shared queue.
            """)

    @Option(help: "Directory of checkpoints (default: ./checkpoints, else <prefix>/share/rind/checkpoints next to the executable).")
    var checkpoints: String?

    @Option(help: "The model for requests that name none (default: imagenet64, else cifar10, else the first by name).")
    var defaultModel: String?

    @Option(help: "Address to listen on; anything but loopback requires --api-key-file.")
    var host: String = "127.0.0.1"

    @Option(help: "Port to listen on; 0 picks a free one (logged as 'listening on http://HOST:PORT').")
    var port: Int = 8080

    @Option(help: "Where jobs and images are kept (default: $STATE_DIRECTORY under systemd, else ./rind-state).")
    var stateDir: String?

    @Option(help: ArgumentHelp("PostgreSQL database shared by several daemons: postgres://USER@HOST[:PORT]/DATABASE[?sslmode=disable|prefer|require], no password in it (default: $RIND_DATABASE; none: the state directory).", valueName: "url"))
    var database: String?

    @Option(help: ArgumentHelp("File holding the database password (first line; default: $CREDENTIALS_DIRECTORY/rind-database-password when set).", valueName: "path"))
    var databasePasswordFile: String?

    @Option(help: "This daemon's name in the cluster, in leases and logs (default: the host name).")
    var boxName: String?

    @Option(help: "With --database: seconds a daemon holds a job without renewing its lease (renewed every third of it); a dead daemon's jobs run elsewhere after this.")
    var leaseSeconds: Double = 30

    @Option(help: "Queued jobs at most before POST /generate answers 429 (with --database: over all daemons).")
    var maxQueue: Int = 64

    @Option(help: "Jobs running at the same time (default: 8). Running jobs of one model advance together, one batched network pass per step; more wait in the queue.")
    var workers: Int?

    @Option(help: "Threads of the matrix products (rind's packed kernels, OpenBLAS or oneDNN) for every network pass, process-wide (default: all cores).")
    var threads: Int?

    @Option(help: "Network rows a batched step holds at most (an image is one row, two with guidance); bounds the step's memory.")
    var maxBatchRows: Int = 8

    @Option(help: "Finished jobs kept at most (oldest deleted first; 410 Gone after).")
    var keepJobs: Int = 1000

    @Option(help: "Finished jobs are deleted this many hours after they finished.")
    var keepHours: Double = 168

    @Option(help: "Default preview interval in steps for requests without preview_every (0 = none).")
    var previewEvery: Int = 5

    @Option(help: "File holding the bearer API key (first line).")
    var apiKeyFile: String?

    @Option(help: "Largest request body in bytes (413 beyond).")
    var maxBodyBytes: Int = 64 * 1024

    @Option(help: "Largest request line plus headers in bytes (431 beyond).")
    var maxHeaderBytes: Int = 32 * 1024

    @Option(help: "Concurrent connections at most.")
    var maxConnections: Int = 256

    @Option(help: "Concurrent connections per client address at most.")
    var maxConnectionsPerIp: Int = 32

    @Option(help: "Seconds a connection may stay idle before it is closed.")
    var requestTimeout: Int = 60

    @Option(help: "Seconds a client may take to send one whole request (headers and body); slow ones are closed.")
    var readTimeout: Int = 20

    @Option(help: "On SIGTERM, seconds running jobs may go on before they are stopped and requeued.")
    var drainSeconds: Double = 20

    @Option(help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"

    @Option(help: "text or json (one object per line).")
    var logFormat: String = "text"

    /// Test only, so not in --help: the scheduler stops before this step of every job and waits there,
    /// without progress, until the job is canceled or the drain deadline passes (a hung step
    /// for the watchdog test, a running job held for the drain and restart tests).
    @Option(help: .hidden)
    var testHangAtStep: Int?

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
        guard logFormat == "text" || logFormat == "json" else { throw ValidationError("--log-format must be text or json") }
        guard (0...65535).contains(port) else { throw ValidationError("--port must be in 0...65535") }
        guard maxQueue >= 0, keepJobs >= 0, keepHours > 0, previewEvery >= 0, maxBodyBytes > 0,
              maxHeaderBytes >= 4096, maxConnections > 0, maxConnectionsPerIp > 0, requestTimeout > 0,
              readTimeout > 0,
              drainSeconds >= 0 else {
            throw ValidationError("limits must be positive (--max-header-bytes at least 4096)")
        }
        if let workers, workers < 1 { throw ValidationError("--workers must be at least 1") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if maxBatchRows < 1 { throw ValidationError("--max-batch-rows must be at least 1") }
        if let testHangAtStep, testHangAtStep < 0 { throw ValidationError("--test-hang-at-step must be at least 0") }
        guard leaseSeconds >= 3, leaseSeconds <= 3600 else {
            throw ValidationError("--lease-seconds must be in 3...3600 (renewed every third of it)")
        }
        if let boxName, boxName.isEmpty || boxName.count > 64 || boxName.contains(where: { $0.isWhitespace }) {
            throw ValidationError("--box-name must be 1 to 64 characters without spaces")
        }
        if let url = databaseURLText() {
            do {
                _ = try DatabaseURL(parsing: url)
            } catch {
                throw ValidationError("--database: \(error)")
            }
        } else if databasePasswordFile != nil {
            throw ValidationError("--database-password-file needs --database (or RIND_DATABASE)")
        }
    }

    /// --database, else $RIND_DATABASE (for /etc/default/rind); nil: the state directory.
    func databaseURLText() -> String? {
        if let database { return database }
        if let value = ProcessInfo.processInfo.environment["RIND_DATABASE"], !value.isEmpty { return value }
        return nil
    }

    /// The shared store of --database, or nil (local mode). The password: --database-password-file,
    /// else the systemd credential `rind-database-password`, else none (trust or certificates).
    func sharedStore() throws -> PostgresJobStore? {
        guard let text = databaseURLText() else { return nil }
        let url = try DatabaseURL(parsing: text)
        var passwordPath = databasePasswordFile
        if passwordPath == nil, let credentials = ProcessInfo.processInfo.environment["CREDENTIALS_DIRECTORY"],
           !credentials.isEmpty {
            let candidate = URL(fileURLWithPath: credentials).appendingPathComponent("rind-database-password").path
            if FileManager.default.fileExists(atPath: candidate) { passwordPath = candidate }
        }
        var password: String?
        if let passwordPath {
            guard let contents = try? String(contentsOfFile: passwordPath, encoding: .utf8) else {
                throw ValidationError("cannot read the database password file \(passwordPath)")
            }
            let line = contents.split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init) ?? ""
            password = line.trimmingCharacters(in: .whitespacesAndNewlines)
            guard password?.isEmpty == false else { throw ValidationError("the database password file \(passwordPath) is empty") }
        }
        let box = boxName ?? ProcessInfo.processInfo.hostName
        return PostgresJobStore(configuration: PostgresJobStore.Configuration(url: url, password: password, box: box),
                                logger: Logger(label: "rind.database"))
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        let json = logFormat == "json"
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler = json ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "rind")
        logger.logLevel = level

        var serverConfiguration = APIServer.Configuration()
        serverConfiguration.host = host
        serverConfiguration.port = port
        serverConfiguration.limits.maxBodyBytes = maxBodyBytes
        serverConfiguration.limits.maxHeaderBytes = maxHeaderBytes
        serverConfiguration.limits.maxConnections = maxConnections
        serverConfiguration.limits.maxConnectionsPerIP = maxConnectionsPerIp
        serverConfiguration.limits.connectionTimeoutSeconds = requestTimeout
        serverConfiguration.limits.requestReadTimeoutSeconds = readTimeout
        do {
            if let apiKeyFile { serverConfiguration.apiKey = try APIServer.readAPIKey(path: apiKeyFile) }
        } catch {
            logger.critical("\(error)")
            throw ExitCode(2)
        }

        // Metrics first, so the job service's handles bind to the Prometheus backend.
        MetricsBackend.bootstrap()
        let server: APIServer
        do {
            server = try APIServer(configuration: serverConfiguration, logger: Logger(label: "rind.http"))
        } catch {
            logger.critical("\(error)")
            throw ExitCode(2)
        }
        let shownHost = host.contains(":") ? "[\(host)]" : host
        logger.notice("listening on http://\(shownHost):\(server.port)")

        let signals = SignalWaiter(signals: [SIGTERM, SIGINT])
        let notifier = SystemdNotifier()

        // Models.
        let directory = URL(fileURLWithPath: checkpoints ?? Self.defaultCheckpointDirectory())
        let models: [RINCheckpoint]
        do {
            models = try Self.loadModels(from: directory, defaultModel: defaultModel, logger: logger)
        } catch {
            logger.critical("\(error)")
            server.stop()
            throw ExitCode(1)
        }

        // One scheduler thread per model steps its batch; the matrix library's threads (process-wide)
        // work inside each batched pass.
        let plan = WorkerPlan.automatic(workers: workers, blasThreads: threads)
        BLASThreads.set(plan.matrixThreads)
        logger.info("compute path", metadata: ["matmul": .string(MatmulBackend.summary),
                                               "kernels": .string(KernelISA.current.description)])
        let stateDirectory = URL(fileURLWithPath: stateDir ?? Self.defaultStateDirectory())
        var jobConfiguration = JobService.Configuration(
            stateDirectory: stateDirectory, workers: plan.workers, maxQueue: maxQueue, keepJobs: keepJobs,
            keepHours: keepHours, previewEvery: previewEvery)
        jobConfiguration.maxBatchRows = maxBatchRows
        let store: PostgresJobStore?
        do {
            store = try sharedStore()
        } catch {
            logger.critical("\(error)")
            server.stop()
            throw ExitCode(2)
        }
        if let store {
            jobConfiguration.cluster = JobService.Cluster(store: store, lease: .milliseconds(Int64(leaseSeconds * 1000)))
            if stateDir != nil {
                logger.notice("--database is given: jobs live in the database; --state-dir is not used")
            }
        }
        if let hold = TestHoldFile(environment: ProcessInfo.processInfo.environment) {
            logger.warning("\(TestHoldFile.variable) is set: schedulers wait while \(hold.path) exists (for tests only)")
            jobConfiguration.beforeStep = hold.hook
        }
        if let testHangAtStep {
            jobConfiguration.testHangAtStep = testHangAtStep
            logger.warning("--test-hang-at-step \(testHangAtStep): every job will hang at that step (test only)")
        }
        let service: JobService
        do {
            service = try JobService(configuration: jobConfiguration, models: models, encoder: PNGImageEncoder(),
                                     logger: Logger(label: "rind.jobs"))
        } catch {
            logger.critical("\(error)")
            store?.shutdown()
            server.stop()
            throw ExitCode(1)
        }
        server.attach(service)
        var jobsLiveIn: Logger.Metadata = ["state_dir": .string(stateDirectory.path)]
        if let store {
            jobsLiveIn = ["database": .string(store.configuration.url.description), "owner": .string(store.owner)]
        }
        logger.notice("ready", metadata: jobsLiveIn.merging([
            "models": .string(models.map(\.name).joined(separator: ",")), "plan": .string(plan.description),
            "queued": .stringConvertible(service.queueDepth),
        ]) { $1 })
        notifier.notify("READY=1\nSTATUS=serving \(models.count) model(s) on port \(server.port)")
        let watchdog = Self.startWatchdog(notifier: notifier, service: service, logger: logger)

        let received = await signals.next()
        logger.notice("received \(received == SIGTERM ? "SIGTERM" : "SIGINT"): draining")
        server.beginDrain()
        notifier.notify("STOPPING=1\nSTATUS=draining")
        let deadline = Duration.milliseconds(Int64(drainSeconds * 1000))
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            // drain blocks until the schedulers stop: keep it off the cooperative pool.
            Thread.detachNewThread {
                service.drain(deadline: deadline)
                continuation.resume()
            }
        }
        watchdog?.cancel()
        server.stop()
        store?.shutdown()
        logger.notice("drained; exiting", metadata: ["queued": .stringConvertible(service.queueDepth)])
    }

    /// ./checkpoints when it exists, else the install layout's share directory.
    static func defaultCheckpointDirectory() -> String {
        if FileManager.default.fileExists(atPath: "checkpoints") { return "checkpoints" }
        let executable = APIServer.executableURL()
        return executable.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("share/rind/checkpoints").path
    }

    /// `$STATE_DIRECTORY` (systemd's StateDirectory=; the first of a colon list) or ./rind-state.
    static func defaultStateDirectory() -> String {
        if let value = ProcessInfo.processInfo.environment["STATE_DIRECTORY"], !value.isEmpty {
            return String(value.split(separator: ":").first ?? Substring(value))
        }
        return "rind-state"
    }

    /// Models tried in this order when --default-model is not given.
    static let preferredDefaults = ["imagenet64", "cifar10"]

    /// Every subdirectory with a config.json, loaded, the default model first (the job service
    /// sends requests without a model to the first): `defaultModel`, which must exist, else the
    /// first of `preferredDefaults` present, else the first by name.
    static func loadModels(from directory: URL, defaultModel: String?, logger: Logger) throws -> [RINCheckpoint] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        } catch {
            throw ValidationError("cannot read the checkpoints directory \(directory.path): \(error.localizedDescription)")
        }
        let candidates = names.filter {
            FileManager.default.fileExists(atPath: directory.appendingPathComponent($0).appendingPathComponent("config.json").path)
        }
        guard !candidates.isEmpty else {
            throw ValidationError("no models in \(directory.path): each model is a subdirectory with config.json and model.safetensors")
        }
        if let defaultModel, !candidates.contains(defaultModel) {
            throw ValidationError("--default-model '\(defaultModel)' is not a model in \(directory.path); models: \(candidates.joined(separator: ", "))")
        }
        let first = defaultModel ?? preferredDefaults.first(where: candidates.contains) ?? candidates[0]
        let ordered = [first] + candidates.filter { $0 != first }
        var models: [RINCheckpoint] = []
        for name in ordered {
            let started = Date()
            do {
                models.append(try RINCheckpoint.load(from: directory.appendingPathComponent(name)))
            } catch {
                throw ValidationError("cannot load model '\(name)': \(error)")
            }
            logger.info("loaded model", metadata: ["model": .string(name),
                                                   "seconds": .string(String(format: "%.2f", Date().timeIntervalSince(started)))])
        }
        return models
    }

    /// Feeds the systemd watchdog (when `WATCHDOG_USEC` is set) from the job layer's progress, not
    /// from a timer alone: every quarter of the timeout it sends WATCHDOG=1 only if
    /// `service.isMakingProgress(within:)` the whole timeout, i.e. a scheduler admitted a job, ended a
    /// batched step or ended a job within it, or there is nothing to run. A scheduler stuck in a step stops the
    /// feeding, and systemd kills and restarts the daemon (Restart=on-failure); the job is requeued
    /// on disk and runs again. So WatchdogSec= must exceed the longest sampling step.
    static func startWatchdog(notifier: SystemdNotifier, service: JobService, logger: Logger) -> DispatchSourceTimer? {
        guard let half = SystemdNotifier.watchdogInterval() else { return nil }
        let timeout = half * 2
        let timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "rind.watchdog"))
        let tick = half / 2
        let micros = Int(tick.components.seconds) * 1_000_000 + Int(tick.components.attoseconds / 1_000_000_000_000)
        timer.schedule(deadline: .now(), repeating: .microseconds(max(1000, micros)))
        let stalled = SerialFlag()
        timer.setEventHandler {
            if service.isMakingProgress(within: timeout) {
                if stalled.set(false) { logger.notice("the schedulers make progress again; feeding the watchdog") }
                notifier.notify("WATCHDOG=1")
            } else if !stalled.set(true) {
                logger.error("no sampling step ended within the watchdog timeout while jobs wait: not feeding the watchdog",
                             metadata: ["running": .stringConvertible(service.runningCount),
                                        "queued": .stringConvertible(service.queueDepth)])
            }
        }
        timer.resume()
        return timer
    }
}

/// A flag touched only on the watchdog's serial queue; `set` returns the previous value.
final class SerialFlag: @unchecked Sendable {
    private var value = false
    func set(_ newValue: Bool) -> Bool {
        defer { value = newValue }
        return value
    }
}

/// Turns SIGTERM/SIGINT into an awaitable value with DispatchSource (the signals are ignored by
/// default handling, so the process is not killed before it drains).
final class SignalWaiter: @unchecked Sendable {
    private let lock = NSLock()
    private var received: [Int32] = []
    private var waiter: CheckedContinuation<Int32, Never>?
    private var sources: [DispatchSourceSignal] = []
    private let queue = DispatchQueue(label: "rind.signals")

    init(signals: [Int32]) {
        for number in signals {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { [weak self] in self?.deliver(number) }
            source.resume()
            sources.append(source)
        }
    }

    private func deliver(_ number: Int32) {
        lock.lock()
        if let waiter {
            self.waiter = nil
            lock.unlock()
            waiter.resume(returning: number)
        } else {
            received.append(number)
            lock.unlock()
        }
    }

    /// The next signal (one already received is returned at once).
    func next() async -> Int32 {
        await withCheckedContinuation { continuation in
            lock.lock()
            if !received.isEmpty {
                let number = received.removeFirst()
                lock.unlock()
                continuation.resume(returning: number)
            } else {
                waiter = continuation
                lock.unlock()
            }
        }
    }
}
