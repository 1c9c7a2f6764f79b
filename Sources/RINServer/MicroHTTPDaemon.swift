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
    /// Per-connection memory for the request line and headers; larger headers get 431.
    public var maxHeaderBytes: Int = 32 * 1024
    /// Concurrent connections in total (each holds one thread).
    public var maxConnections: Int = 256
    /// Concurrent connections from one client address.
    public var maxConnectionsPerIP: Int = 64
    /// Seconds a connection may sit idle (no bytes either way) before it is closed.
    public var connectionTimeoutSeconds: Int = 60

    public init() {}
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

/// Owns one libmicrohttpd daemon: the listening socket, the MHD handle (stopped in `deinit`),
/// and the bridge from MHD's C callbacks to a Swift handler.
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

    private let handler: Handler
    private let observer: CompletionObserver
    private let limits: HTTPServerLimits
    private let logger: Logger
    private var daemon: OpaquePointer?
    private var listenFD: Int32
    private let streamsLock = NSLock()
    private var openStreams: [ObjectIdentifier: any StreamingBody] = [:]
    private var stopped = false

    /// Binds `host:port`, starts MHD and begins serving.
    public init(host: String, port: Int, limits: HTTPServerLimits, logger: Logger,
                handler: @escaping Handler, observer: @escaping CompletionObserver) throws(HTTPServerError) {
        self.host = host
        self.handler = handler
        self.observer = observer
        self.limits = limits
        self.logger = logger
        let (fd, boundPort) = try Self.bindListeningSocket(host: host, port: port)
        self.listenFD = fd
        self.port = boundPort

        var options = rind_mhd_options()
        options.listen_fd = fd
        options.thread_per_connection = 1
        options.thread_pool_size = 0
        options.connection_limit = UInt32(max(1, limits.maxConnections))
        options.per_ip_connection_limit = UInt32(max(0, limits.maxConnectionsPerIP))
        options.connection_timeout_s = UInt32(max(0, limits.connectionTimeoutSeconds))
        options.connection_memory_limit = max(4096, limits.maxHeaderBytes)
        let context = Unmanaged.passUnretained(self).toOpaque()
        daemon = rind_mhd_start(&options, accessHandlerTrampoline, context,
                                completedTrampoline, context, logTrampoline, context)
        if daemon == nil {
            close(fd)
            throw .daemonStart(host: host, port: boundPort)
        }
    }

    deinit { stop() }

    /// Ends every open stream, then stops MHD (which joins the connection threads) and closes
    /// the socket. Safe to call more than once.
    public func stop() {
        streamsLock.lock()
        if stopped { streamsLock.unlock(); return }
        stopped = true
        let streams = Array(openStreams.values)
        streamsLock.unlock()
        for stream in streams { stream.close() }
        if let daemon {
            MHD_stop_daemon(daemon)
            self.daemon = nil
        }
        if listenFD >= 0 {
            close(listenFD)
            listenFD = -1
        }
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

    // MARK: Callbacks from MHD

    fileprivate func handleAccess(connection: OpaquePointer, url: String, method: String,
                                  uploadData: UnsafePointer<CChar>?, uploadSize: UnsafeMutablePointer<Int>,
                                  state statePointer: UnsafeMutablePointer<UnsafeMutableRawPointer?>) -> MHD_Result {
        guard let existing = statePointer.pointee else {
            // First call: headers are complete, no body bytes yet.
            let state = RequestState(request: Self.readRequest(connection: connection, url: url, method: method))
            statePointer.pointee = Unmanaged.passRetained(state).toOpaque()
            if let declared = state.request.header("content-length").flatMap(Int.init),
               declared > limits.maxBodyBytes {
                state.bodyTooLarge = true
                return queue(Problem.payloadTooLarge(limit: limits.maxBodyBytes).response, on: connection, state: state)
            }
            return mhdYes
        }
        let state = Unmanaged<RequestState>.fromOpaque(existing).takeUnretainedValue()
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
        let mhdResponse: OpaquePointer?
        switch response.body {
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
            let pump = StreamPump(body: body, daemon: self)
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

    fileprivate func streamEnded(_ body: any StreamingBody) {
        streamsLock.lock()
        openStreams[ObjectIdentifier(body)] = nil
        streamsLock.unlock()
        body.close()
    }

    fileprivate func completed(state pointer: UnsafeMutableRawPointer) {
        let state = Unmanaged<RequestState>.fromOpaque(pointer).takeRetainedValue()
        var request = state.request
        request.body = []
        observer(request, state.status, Date().timeIntervalSince(state.started))
    }

    fileprivate func log(_ message: String) {
        logger.warning("libmicrohttpd: \(message)")
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

/// Per-request state kept in MHD's `con_cls` between the calls of one request.
private final class RequestState {
    var request: HTTPRequest
    var bodyTooLarge = false
    var answered = false
    var status = 500
    let started = Date()
    init(request: HTTPRequest) { self.request = request }
}

/// Feeds a ``StreamingBody`` to MHD's content-reader callback, which asks for at most `max` bytes
/// at a time.
private final class StreamPump {
    let body: any StreamingBody
    weak var daemon: MicroHTTPDaemon?
    var pending: [UInt8] = []
    var offset = 0
    init(body: any StreamingBody, daemon: MicroHTTPDaemon) {
        self.body = body
        self.daemon = daemon
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
    let daemon = Unmanaged<MicroHTTPDaemon>.fromOpaque(cls).takeUnretainedValue()
    return daemon.handleAccess(connection: connection, url: url.map { String(cString: $0) } ?? "/",
                               method: method.map { String(cString: $0) } ?? "GET",
                               uploadData: uploadData, uploadSize: uploadSize, state: conCls)
}

private let completedTrampoline: MHD_RequestCompletedCallback = { cls, _, conCls, _ in
    guard let cls, let conCls, let state = conCls.pointee else { return }
    let daemon = Unmanaged<MicroHTTPDaemon>.fromOpaque(cls).takeUnretainedValue()
    daemon.completed(state: state)
    conCls.pointee = nil
}

private let streamReaderTrampoline: MHD_ContentReaderCallback = { cls, _, buffer, max in
    guard let cls, let buffer else { return -2 }
    let pump = Unmanaged<StreamPump>.fromOpaque(cls).takeUnretainedValue()
    return pump.read(into: buffer, max: max)
}

private let streamFreeTrampoline: MHD_ContentReaderFreeCallback = { cls in
    guard let cls else { return }
    let pump = Unmanaged<StreamPump>.fromOpaque(cls).takeRetainedValue()
    if let daemon = pump.daemon { daemon.streamEnded(pump.body) } else { pump.body.close() }
}

private let logTrampoline: rind_mhd_log_callback = { cls, message in
    guard let cls, let message else { return }
    Unmanaged<MicroHTTPDaemon>.fromOpaque(cls).takeUnretainedValue().log(String(cString: message))
}
