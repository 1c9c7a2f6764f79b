import CMicroHTTPD
import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Limits that protect the daemon from oversized or slow clients.
public struct HTTPServerLimits: Sendable, Equatable {
    /// Largest request body accepted; larger ones get 413 before the body is read.
    public var maxBodyBytes: Int = 64 * 1024
    /// Request line plus header fields; larger ones get 431.
    public var maxHeaderBytes: Int = 32 * 1024
    /// The request target (path and query) as sent; longer ones get 414.
    public var maxURLBytes: Int = 8 * 1024
    /// Query arguments in one request; more get 414 (no route takes more than a dozen).
    public var maxQueryParameters: Int = 100
    /// Concurrent connections in total (each holds one thread).
    public var maxConnections: Int = 256
    /// Concurrent connections from one client address (an eighth of `maxConnections` by
    /// default: headroom, so that a few addresses cannot take every connection).
    public var maxConnectionsPerIP: Int = 32
    /// Seconds a connection may sit idle (no bytes either way) before it is closed.
    public var connectionTimeoutSeconds: Int = 60
    /// Seconds a connection may take to send one whole request (line, headers and body), counted
    /// from its opening or from the end of its previous response; trickling bytes does not extend
    /// it. Streaming responses are not bounded by it.
    public var requestReadTimeoutSeconds: Int = 20
    /// While the open connections fill all but `reservedConnections` of `maxConnections`, a
    /// connection still sending its request after this many seconds is closed, so that slow
    /// clients cannot keep health checks and ordinary clients out.
    public var crowdedReadTimeoutSeconds: Double = 1
    /// See `crowdedReadTimeoutSeconds`; 0 = one eighth of `maxConnections`.
    public var reservedConnections: Int = 0

    public init() {}

    /// The connection count from which slow requests are cut short.
    var crowdedThreshold: Int {
        let reserve = reservedConnections > 0 ? reservedConnections : max(1, maxConnections / 8)
        return max(1, maxConnections - reserve)
    }

    /// libmicrohttpd's per-connection memory pool. It holds the read buffer, the request line,
    /// the header fields and one 56-byte entry per header field and query argument; when it runs
    /// out the library answers (or closes) on its own. Twice the header limit plus 64 KiB lets
    /// rind itself see, and answer with problem+json, every request whose headers exceed
    /// `maxHeaderBytes` by up to that much (the query is dropped before parsing when it has too
    /// many arguments, see `MicroHTTPDaemon`).
    var connectionMemoryLimit: Int { max(4096, 2 * maxHeaderBytes + 64 * 1024) }
}

/// Errors starting the listener.
public enum HTTPServerError: Error, CustomStringConvertible, Equatable {
    case addressResolution(host: String, message: String)
    case socket(host: String, port: Int, operation: String, errno: Int32)
    case daemonStart(host: String, port: Int)

    public var description: String {
        switch self {
        case let .addressResolution(host, message):
            return "cannot resolve listen address '\(host)': \(message)"
        case let .socket(host, port, operation, code):
            return "cannot listen on \(host):\(port): \(operation) failed: \(String(cString: strerror(code)))"
        case let .daemonStart(host, port):
            return "libmicrohttpd refused to start on \(host):\(port)"
        }
    }
}

/// One libmicrohttpd daemon serving a Swift handler: binds the listening socket, starts MHD on it
/// through ``MHDDaemonHandle`` (the one owner of the C daemon and of everything its callbacks point
/// at), and stops it in `deinit`.
///
/// MHD runs one thread per connection: ordinary handlers answer at once, and streaming bodies may
/// block their own connection's thread while they wait for job events, which never touches a
/// sampling worker. Bodies are read fully (up to the limit) before the handler runs.
public final class MicroHTTPDaemon: @unchecked Sendable {
    /// Called on a connection thread for every complete request.
    public typealias Handler = @Sendable (HTTPRequest) -> HTTPResponse
    /// Called when a request's response has been sent (or the connection died): for access logs
    /// and metrics. Arguments: the request (body omitted), the status sent, seconds taken.
    public typealias CompletionObserver = @Sendable (HTTPRequest, Int, Double) -> Void

    /// The port actually bound (useful with port 0).
    public let port: Int
    /// The host as given.
    public let host: String

    /// What MHD's callbacks reach: kept alive by `handle` until `MHD_stop_daemon` has returned.
    private let bridge: RequestBridge
    private let handle: MHDDaemonHandle

    /// Called once, right after `MHD_stop_daemon` has returned, with the number of the listening
    /// socket it closed; for tests, which use it to reuse that number as another thread might.
    public var didStopMHD: (@Sendable (Int32) -> Void)? {
        get { handle.didStop }
        set { handle.didStop = newValue }
    }

    /// Binds `host:port`, starts MHD and begins serving.
    public init(host: String, port: Int, limits: HTTPServerLimits, logger: Logger,
                handler: @escaping Handler, observer: @escaping CompletionObserver) throws(HTTPServerError) {
        self.host = host
        let (fd, boundPort) = try Self.bindListeningSocket(host: host, port: port)
        self.port = boundPort
        let bridge = RequestBridge(limits: limits, logger: logger, handler: handler, observer: observer)
        self.bridge = bridge

        var options = rind_mhd_options()
        options.listen_fd = fd
        options.thread_per_connection = 1
        options.thread_pool_size = 0
        options.connection_limit = UInt32(max(1, limits.maxConnections))
        options.per_ip_connection_limit = UInt32(max(0, limits.maxConnectionsPerIP))
        options.connection_timeout_s = UInt32(max(0, limits.connectionTimeoutSeconds))
        options.connection_memory_limit = limits.connectionMemoryLimit
        options.notify_connection = notifyConnectionTrampoline
        options.uri_log = uriLogTrampoline
        let started = MHDDaemonHandle.start(listenSocket: fd, context: bridge) { context in
            options.notify_connection_cls = context
            options.uri_log_cls = context
            return rind_mhd_start(&options, accessHandlerTrampoline, context,
                                  completedTrampoline, context, logTrampoline, context)
        }
        guard let started else { throw .daemonStart(host: host, port: boundPort) }
        handle = started
        bridge.startReaper()
    }

    deinit { stop() }

    /// Ends every open stream, then stops MHD, which joins the connection threads and closes the
    /// listening socket. Safe to call more than once.
    public func stop() {
        bridge.stopStreams()
        handle.stop()
    }

    // MARK: Listening socket

    /// Binds and listens in Swift (rather than letting MHD do it) so errors carry errno and the
    /// ephemeral port can be read back with getsockname.
    private static func bindListeningSocket(host: String, port: Int) throws(HTTPServerError) -> (Int32, Int) {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &result)
        guard status == 0, let first = result else {
            throw .addressResolution(host: host, message: String(cString: gai_strerror(status)))
        }
        defer { freeaddrinfo(result) }
        let fd = socket(first.pointee.ai_family, first.pointee.ai_socktype, first.pointee.ai_protocol)
        if fd < 0 { throw .socket(host: host, port: port, operation: "socket", errno: errno) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if bind(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) != 0 {
            let code = errno
            close(fd)
            throw .socket(host: host, port: port, operation: "bind", errno: code)
        }
        if listen(fd, 128) != 0 {
            let code = errno
            close(fd)
            throw .socket(host: host, port: port, operation: "listen", errno: code)
        }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let bound = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        var boundPort = port
        if bound == 0 {
            if Int32(storage.ss_family) == AF_INET {
                boundPort = withUnsafePointer(to: &storage) {
                    $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
                }
            } else if Int32(storage.ss_family) == AF_INET6 {
                boundPort = withUnsafePointer(to: &storage) {
                    $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
                }
            }
        }
        return (fd, boundPort)
    }

    /// Whether `host` names only loopback addresses (127.0.0.0/8, ::1, "localhost").
    public static func isLoopback(host: String) -> Bool {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_flags = AI_PASSIVE
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0, result != nil else { return false }
        defer { freeaddrinfo(result) }
        var node = result
        var sawAny = false
        while let entry = node {
            sawAny = true
            let address = entry.pointee.ai_addr!
            if Int32(address.pointee.sa_family) == AF_INET {
                let raw = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                    UInt32(bigEndian: $0.pointee.sin_addr.s_addr)
                }
                if raw >> 24 != 127 { return false }
            } else if Int32(address.pointee.sa_family) == AF_INET6 {
                let bytes = address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                    withUnsafeBytes(of: $0.pointee.sin6_addr) { Array($0) }
                }
                if bytes != [UInt8](repeating: 0, count: 15) + [1] { return false }
            } else {
                return false
            }
            node = entry.pointee.ai_next
        }
        return sawAny
    }
}

/// The Swift side of MHD's callbacks for one daemon: reads requests, runs the handler, queues the
/// responses and feeds streaming bodies. MHD's callbacks reach it through the context pointer that
/// ``MHDDaemonHandle`` keeps retained until `MHD_stop_daemon` has returned.
private final class RequestBridge: @unchecked Sendable {
    private let handler: MicroHTTPDaemon.Handler
    private let observer: MicroHTTPDaemon.CompletionObserver
    private let limits: HTTPServerLimits
    private let logger: Logger
    private let streamsLock = NSLock()
    private var openStreams: [ObjectIdentifier: any StreamingBody] = [:]
    private var stopped = false
    /// Closes connections that take too long to send a request (slowloris).
    private let reaper: SlowRequestReaper

    init(limits: HTTPServerLimits, logger: Logger, handler: @escaping MicroHTTPDaemon.Handler,
         observer: @escaping MicroHTTPDaemon.CompletionObserver) {
        self.handler = handler
        self.observer = observer
        self.limits = limits
        self.logger = logger
        reaper = SlowRequestReaper(limits: limits, logger: logger)
    }

    func startReaper() { reaper.start() }

    /// Ends every open stream (their connections then finish, so `MHD_stop_daemon` can join their
    /// threads) and the reaper; streams asked for from now on get 503. Safe to call more than once.
    func stopStreams() {
        streamsLock.lock()
        if stopped { streamsLock.unlock(); return }
        stopped = true
        let streams = Array(openStreams.values)
        streamsLock.unlock()
        for stream in streams { stream.close() }
        reaper.stop()
    }

    // MARK: Connections (for the reaper)

    func connectionOpened(_ connection: OpaquePointer, context: UnsafeMutablePointer<UnsafeMutableRawPointer?>) {
        let state = reaper.opened(fd: rind_mhd_connection_fd(connection))
        context.pointee = Unmanaged.passRetained(state).toOpaque()
    }

    func connectionClosed(context: UnsafeMutablePointer<UnsafeMutableRawPointer?>) {
        guard let pointer = context.pointee else { return }
        reaper.closed(Unmanaged<SlowRequestReaper.Connection>.fromOpaque(pointer).takeRetainedValue())
        context.pointee = nil
    }

    /// Marks the connection as answering (not bounded by the read timeouts) or as waiting for its
    /// next request.
    private func setReading(_ reading: Bool, on connection: OpaquePointer) {
        guard let pointer = rind_mhd_socket_context(connection) else { return }
        reaper.setReading(reading, Unmanaged<SlowRequestReaper.Connection>.fromOpaque(pointer).takeUnretainedValue())
    }

    // MARK: Callbacks from MHD

    /// Sees the raw request target before libmicrohttpd splits and decodes it. libmicrohttpd keeps
    /// one 56-byte entry per query argument in the connection's memory pool and closes the
    /// connection without an answer when the pool runs out, so a target over the limits has its
    /// query cut here (the library parses the query right after this callback, from this very
    /// buffer) and the request is answered 414 by `handleAccess`. An encoded NUL (`%00`), which
    /// the library's decoding would turn into a silent truncation, is noted for a 400.
    func beginRequest(uri: UnsafePointer<CChar>?) -> RequestState {
        let state = RequestState()
        guard let uri else { return state }
        let length = strlen(uri)
        let raw = UnsafeBufferPointer(start: UnsafeRawPointer(uri).assumingMemoryBound(to: UInt8.self), count: length)
        state.targetBytes = length
        var index = 0
        while index + 2 < length {
            if raw[index] == UInt8(ascii: "%") && raw[index + 1] == UInt8(ascii: "0") && raw[index + 2] == UInt8(ascii: "0") {
                state.encodedNUL = true
                break
            }
            index += 1
        }
        if let question = raw.firstIndex(of: UInt8(ascii: "?")), question + 1 < length {
            state.queryArguments = 1 + raw[(question + 1)...].reduce(0) { $0 + ($1 == UInt8(ascii: "&") ? 1 : 0) }
            if state.queryArguments > limits.maxQueryParameters || length > limits.maxURLBytes {
                UnsafeMutablePointer(mutating: uri)[question + 1] = 0
            }
        }
        return state
    }

    /// The first problem with a request whose head has arrived, or nil.
    private func headProblem(_ state: RequestState, connection: OpaquePointer) -> Problem? {
        let headerBytes = rind_mhd_request_header_size(connection)
        if headerBytes > limits.maxHeaderBytes {
            return Problem(kind: "header-fields-too-large", title: "Request header fields too large", status: 431,
                           detail: "the request line and header fields take \(headerBytes) bytes; the limit is \(limits.maxHeaderBytes)")
        }
        if state.targetBytes > limits.maxURLBytes {
            return Problem(kind: "uri-too-long", title: "URI too long", status: 414,
                           detail: "the request target has \(state.targetBytes) bytes; the limit is \(limits.maxURLBytes)")
        }
        if state.queryArguments > limits.maxQueryParameters {
            return Problem(kind: "uri-too-long", title: "URI too long", status: 414,
                           detail: "the query has \(state.queryArguments) arguments; the limit is \(limits.maxQueryParameters)")
        }
        if state.encodedNUL {
            return Problem(kind: "bad-request", title: "Bad request", status: 400,
                           detail: "the request target contains an encoded NUL byte (%00), which no path or parameter may hold")
        }
        if let coding = state.request.header("transfer-encoding"),
           coding.trimmingCharacters(in: .whitespaces).lowercased() != "chunked" {
            return Problem(kind: "not-implemented", title: "Not implemented", status: 501,
                           detail: "Transfer-Encoding '\(coding)' is not supported; send the body as is or chunked")
        }
        if let declared = state.request.header("content-length"), Int(declared).map({ $0 > limits.maxBodyBytes }) ?? false {
            return Problem.payloadTooLarge(limit: limits.maxBodyBytes)
        }
        return nil
    }

    func handleAccess(connection: OpaquePointer, url: String, method: String,
                                  uploadData: UnsafePointer<CChar>?, uploadSize: UnsafeMutablePointer<Int>,
                                  state statePointer: UnsafeMutablePointer<UnsafeMutableRawPointer?>) -> MHD_Result {
        let state: RequestState
        if let existing = statePointer.pointee {
            state = Unmanaged<RequestState>.fromOpaque(existing).takeUnretainedValue()
        } else {
            // Without the URI callback's state (it always runs first; kept for safety).
            state = RequestState()
            statePointer.pointee = Unmanaged.passRetained(state).toOpaque()
        }
        if !state.headRead {
            // First call: headers are complete, no body bytes yet.
            state.headRead = true
            state.request = Self.readRequest(connection: connection, url: url, method: method)
            if let problem = headProblem(state, connection: connection) {
                if problem.status == 413 { state.bodyTooLarge = true }
                return queue(problem.response, on: connection, state: state)
            }
            return mhdYes
        }
        if state.answered { return mhdYes }
        if uploadSize.pointee > 0 {
            let count = uploadSize.pointee
            if !state.bodyTooLarge, state.request.body.count + count <= limits.maxBodyBytes, let uploadData {
                uploadData.withMemoryRebound(to: UInt8.self, capacity: count) {
                    state.request.body.append(contentsOf: UnsafeBufferPointer(start: $0, count: count))
                }
            } else {
                state.bodyTooLarge = true
            }
            uploadSize.pointee = 0
            return mhdYes
        }
        if state.bodyTooLarge {
            return queue(Problem.payloadTooLarge(limit: limits.maxBodyBytes).response, on: connection, state: state)
        }
        let response = handler(state.request)
        return queue(response, on: connection, state: state)
    }

    private func queue(_ response: HTTPResponse, on connection: OpaquePointer, state: RequestState) -> MHD_Result {
        state.answered = true
        state.status = response.status
        setReading(false, on: connection)
        var body = response.body
        if state.request.method == "HEAD", case .stream(let stream) = body {
            // libmicrohttpd skips the body of a HEAD answer but still sends a chunked stream's
            // terminator ("0\r\n\r\n"), which a keep-alive client would read as the next
            // response: answer with the headers and an empty body instead.
            stream.close()
            body = .bytes([])
        }
        let mhdResponse: OpaquePointer?
        switch body {
        case .bytes(let bytes):
            mhdResponse = bytes.withUnsafeBytes { raw in
                MHD_create_response_from_buffer(raw.count, UnsafeMutableRawPointer(mutating: raw.baseAddress),
                                                MHD_ResponseMemoryMode(rawValue: 2)!)
            }
        case .stream(let body):
            streamsLock.lock()
            if stopped {
                streamsLock.unlock()
                body.close()
                return queue(Problem.unavailable(detail: "the server is shutting down", retryAfter: 5).response,
                             on: connection, state: state)
            }
            openStreams[ObjectIdentifier(body)] = body
            streamsLock.unlock()
            let pump = StreamPump(body: body, bridge: self)
            mhdResponse = MHD_create_response_from_callback(UInt64.max, 16 * 1024, streamReaderTrampoline,
                                                           Unmanaged.passRetained(pump).toOpaque(),
                                                           streamFreeTrampoline)
        }
        guard let mhdResponse else { return mhdNo }
        for (name, value) in response.headers {
            _ = MHD_add_response_header(mhdResponse, name, value)
        }
        let result = MHD_queue_response(connection, UInt32(response.status), mhdResponse)
        MHD_destroy_response(mhdResponse)
        return result
    }

    func streamEnded(_ body: any StreamingBody) {
        streamsLock.lock()
        openStreams[ObjectIdentifier(body)] = nil
        streamsLock.unlock()
        body.close()
    }

    func completed(connection: OpaquePointer?, state pointer: UnsafeMutableRawPointer) {
        let state = Unmanaged<RequestState>.fromOpaque(pointer).takeRetainedValue()
        if let connection { setReading(true, on: connection) }
        guard state.headRead else { return }   // libmicrohttpd answered this one itself
        var request = state.request
        request.body = []
        observer(request, state.status, Date().timeIntervalSince(state.started))
    }

    func log(_ message: String) {
        // A client that went away (or a slow one the reaper cut) is routine; the reaper logs
        // its own summary.
        if message.contains("detected connection closure") || message.contains("Connection reset") {
            logger.debug("libmicrohttpd: \(message)")
        } else {
            logger.warning("libmicrohttpd: \(message)")
        }
    }

    private static func readRequest(connection: OpaquePointer, url: String, method: String) -> HTTPRequest {
        final class Collector {
            var headers: [String: String] = [:]
            var query: [(name: String, value: String)] = []
        }
        let collector = Collector()
        let box = Unmanaged.passUnretained(collector).toOpaque()
        _ = MHD_get_connection_values(connection, MHD_ValueKind(rawValue: 1)!, { cls, _, key, value in
            let collector = Unmanaged<Collector>.fromOpaque(cls!).takeUnretainedValue()
            if let key {
                collector.headers[String(cString: key).lowercased()] = value.map { String(cString: $0) } ?? ""
            }
            return mhdYes
        }, box)
        _ = MHD_get_connection_values(connection, MHD_ValueKind(rawValue: 8)!, { cls, _, key, value in
            let collector = Unmanaged<Collector>.fromOpaque(cls!).takeUnretainedValue()
            if let key {
                collector.query.append((String(cString: key), value.map { String(cString: $0) } ?? ""))
            }
            return mhdYes
        }, box)
        var address = [CChar](repeating: 0, count: 64)
        let client = rind_mhd_client_address(connection, &address, address.count) == 0
            ? String(decoding: address.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
        return HTTPRequest(method: method.uppercased(), path: url, query: collector.query,
                           headers: collector.headers, body: [], clientAddress: client)
    }
}

// C enums with closed extensibility import as Swift enums; their raw values are the C ones.
private let mhdYes = MHD_Result(rawValue: 1)!
private let mhdNo = MHD_Result(rawValue: 0)!

/// Per-request state kept in MHD's `con_cls` between the calls of one request; created by the
/// URI callback when the request line has arrived.
private final class RequestState {
    var request = HTTPRequest(method: "", path: "")
    /// The access handler has seen the complete head and filled `request`.
    var headRead = false
    var targetBytes = 0
    var queryArguments = 0
    var encodedNUL = false
    var bodyTooLarge = false
    var answered = false
    var status = 500
    let started = Date()
}

/// Feeds a ``StreamingBody`` to MHD's content-reader callback, which asks for at most `max` bytes
/// at a time.
private final class StreamPump {
    let body: any StreamingBody
    weak var bridge: RequestBridge?
    var pending: [UInt8] = []
    var offset = 0
    init(body: any StreamingBody, bridge: RequestBridge) {
        self.body = body
        self.bridge = bridge
    }

    func read(into buffer: UnsafeMutablePointer<CChar>, max: Int) -> Int {
        while offset >= pending.count {
            guard let chunk = body.nextChunk() else { return -1 }  // MHD_CONTENT_READER_END_OF_STREAM
            pending = chunk
            offset = 0
        }
        let count = min(max, pending.count - offset)
        pending.withUnsafeBufferPointer { source in
            UnsafeMutableRawPointer(buffer).copyMemory(from: source.baseAddress! + offset, byteCount: count)
        }
        offset += count
        return count
    }
}

private let accessHandlerTrampoline: MHD_AccessHandlerCallback = {
    cls, connection, url, method, _, uploadData, uploadSize, conCls in
    guard let cls, let connection, let uploadSize, let conCls else { return mhdNo }
    let bridge = Unmanaged<RequestBridge>.fromOpaque(cls).takeUnretainedValue()
    return bridge.handleAccess(connection: connection, url: url.map { String(cString: $0) } ?? "/",
                               method: method.map { String(cString: $0) } ?? "GET",
                               uploadData: uploadData, uploadSize: uploadSize, state: conCls)
}

private let completedTrampoline: MHD_RequestCompletedCallback = { cls, connection, conCls, _ in
    guard let cls, let conCls, let state = conCls.pointee else { return }
    let bridge = Unmanaged<RequestBridge>.fromOpaque(cls).takeUnretainedValue()
    bridge.completed(connection: connection, state: state)
    conCls.pointee = nil
}

private let notifyConnectionTrampoline: MHD_NotifyConnectionCallback = { cls, connection, context, code in
    guard let cls, let connection, let context else { return }
    let bridge = Unmanaged<RequestBridge>.fromOpaque(cls).takeUnretainedValue()
    if code.rawValue == 0 {   // MHD_CONNECTION_NOTIFY_STARTED
        bridge.connectionOpened(connection, context: context)
    } else {
        bridge.connectionClosed(context: context)
    }
}

private let uriLogTrampoline: @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<CChar>?, OpaquePointer?)
    -> UnsafeMutableRawPointer? = { cls, uri, _ in
    guard let cls else { return nil }
    let bridge = Unmanaged<RequestBridge>.fromOpaque(cls).takeUnretainedValue()
    return Unmanaged.passRetained(bridge.beginRequest(uri: uri)).toOpaque()
}

private let streamReaderTrampoline: MHD_ContentReaderCallback = { cls, _, buffer, max in
    guard let cls, let buffer else { return -2 }
    let pump = Unmanaged<StreamPump>.fromOpaque(cls).takeUnretainedValue()
    return pump.read(into: buffer, max: max)
}

private let streamFreeTrampoline: MHD_ContentReaderFreeCallback = { cls in
    guard let cls else { return }
    let pump = Unmanaged<StreamPump>.fromOpaque(cls).takeRetainedValue()
    if let bridge = pump.bridge { bridge.streamEnded(pump.body) } else { pump.body.close() }
}

private let logTrampoline: rind_mhd_log_callback = { cls, message in
    guard let cls, let message else { return }
    Unmanaged<RequestBridge>.fromOpaque(cls).takeUnretainedValue().log(String(cString: message))
}
