// One libmicrohttpd daemon: the listening socket, starting and stopping MHD on it. Its callbacks
// (reading and answering requests) are in RequestBridge.swift, its limits in HTTPServerLimits.swift.
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
/// sampling worker. Bodies are read fully (up to the limit) before the handler runs; MHD's
/// callbacks are ``RequestBridge``'s (RequestBridge.swift).
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
        let started = MHDDaemonHandle.start(listenSocket: fd, context: bridge) { context in
            RequestBridge.startMHD(&options, context: context)
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
    /// ephemeral port can be read back with getsockname. A host may resolve to several addresses
    /// ("localhost" to ::1 and 127.0.0.1, where one may be missing or taken): each is tried in
    /// getaddrinfo's order (RFC 6724's preference) and the first that binds and listens is used;
    /// when none does, the error is the last address's.
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
        var lastError: HTTPServerError?
        var node: UnsafeMutablePointer<addrinfo>? = first
        while let entry = node {
            do throws(HTTPServerError) {
                let fd = try listeningSocket(on: entry.pointee, host: host, port: port)
                return (fd, boundPort(of: fd) ?? port)
            } catch {
                lastError = error
            }
            node = entry.pointee.ai_next
        }
        throw lastError!   // getaddrinfo succeeded, so the loop ran at least once
    }

    /// A socket bound to `address` and listening, or the step that failed with its errno.
    private static func listeningSocket(on address: addrinfo, host: String, port: Int) throws(HTTPServerError) -> Int32 {
        let fd = socket(address.ai_family, address.ai_socktype, address.ai_protocol)
        if fd < 0 { throw .socket(host: host, port: port, operation: "socket", errno: errno) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if bind(fd, address.ai_addr, address.ai_addrlen) != 0 {
            let code = errno
            close(fd)
            throw .socket(host: host, port: port, operation: "bind", errno: code)
        }
        if listen(fd, 128) != 0 {
            let code = errno
            close(fd)
            throw .socket(host: host, port: port, operation: "listen", errno: code)
        }
        return fd
    }

    /// The port `fd` is bound to (getsockname), or nil when it cannot be read.
    private static func boundPort(of fd: Int32) -> Int? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let bound = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard bound == 0 else { return nil }
        if Int32(storage.ss_family) == AF_INET {
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
            }
        }
        if Int32(storage.ss_family) == AF_INET6 {
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
            }
        }
        return nil
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
