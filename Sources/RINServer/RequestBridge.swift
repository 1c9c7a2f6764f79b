// libmicrohttpd's callbacks, on the Swift side: requests read and checked against the limits,
// handed to the handler, answered (streams pumped), and connections tracked for the reaper.
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

/// The Swift side of MHD's callbacks for one daemon: reads requests, runs the handler, queues the
/// responses and feeds streaming bodies. MHD's callbacks reach it through the context pointer that
/// ``MHDDaemonHandle`` keeps retained until `MHD_stop_daemon` has returned.
final class RequestBridge: @unchecked Sendable {
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

    /// Starts MHD with `options` and this file's callbacks, each given `context`: the pointer to
    /// the bridge that ``MHDDaemonHandle`` keeps retained until `MHD_stop_daemon` has returned.
    static func startMHD(_ options: inout rind_mhd_options, context: UnsafeMutableRawPointer) -> OpaquePointer? {
        options.notify_connection = notifyConnectionTrampoline
        options.notify_connection_cls = context
        options.uri_log = uriLogTrampoline
        options.uri_log_cls = context
        return rind_mhd_start(&options, accessHandlerTrampoline, context,
                              completedTrampoline, context, logTrampoline, context)
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

    fileprivate func connectionOpened(_ connection: OpaquePointer,
                                      context: UnsafeMutablePointer<UnsafeMutableRawPointer?>) {
        let state = reaper.opened(fd: rind_mhd_connection_fd(connection))
        context.pointee = Unmanaged.passRetained(state).toOpaque()
    }

    fileprivate func connectionClosed(context: UnsafeMutablePointer<UnsafeMutableRawPointer?>) {
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
    fileprivate func beginRequest(uri: UnsafePointer<CChar>?) -> RequestState {
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
            return Problem.badRequest("the request target contains an encoded NUL byte (%00), which no path or parameter may hold")
        }
        if let field = state.repeatedSingleField {
            return Problem.badRequest("the header field \(field) appears more than once; send it once", parameter: field)
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

    fileprivate func handleAccess(connection: OpaquePointer, url: String, method: String,
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
            (state.request, state.repeatedSingleField) = Self.readRequest(connection: connection, url: url, method: method)
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

    fileprivate func streamEnded(_ body: any StreamingBody) {
        streamsLock.lock()
        openStreams[ObjectIdentifier(body)] = nil
        streamsLock.unlock()
        body.close()
    }

    fileprivate func completed(connection: OpaquePointer?, state pointer: UnsafeMutableRawPointer) {
        let state = Unmanaged<RequestState>.fromOpaque(pointer).takeRetainedValue()
        if let connection { setReading(true, on: connection) }
        guard state.headRead else { return }   // libmicrohttpd answered this one itself
        var request = state.request
        request.body = []
        observer(request, state.status, Date().timeIntervalSince(state.started))
    }

    fileprivate func log(_ message: String) {
        // A client that went away (or a slow one the reaper cut) is routine; the reaper logs
        // its own summary.
        if message.contains("detected connection closure") || message.contains("Connection reset") {
            logger.debug("libmicrohttpd: \(message)")
        } else {
            logger.warning("libmicrohttpd: \(message)")
        }
    }

    /// Header fields a request may carry at most once; a repeat is answered 400 naming the field.
    /// RFC 9110 5.3 lets a recipient join a repeated field's lines with ", " only where the field is
    /// a list. Content-Type and Authorization are not lists, nor is Idempotency-Key (a structured
    /// Item), and a repeated Host is a 400 by RFC 9112 3.2. Content-Length and Transfer-Encoding
    /// frame the body: libmicrohttpd reads them from their first line, so rind reading the joined
    /// (or, before, the last) value could disagree with the library about where the body ends.
    /// If-None-Match, the other field rind reads, is a list and is joined.
    private static let singleFields = ["Content-Length", "Transfer-Encoding", "Host", "Content-Type",
                                       "Authorization", "Idempotency-Key"]

    /// Header fields keyed by lower-cased name, a repeated field's values joined with ", " in
    /// arrival order (RFC 9110 5.3), and the first of ``singleFields`` that was repeated, if any.
    private static func joinFields(_ fields: [(name: String, value: String)])
        -> (headers: [String: String], repeatedSingleField: String?) {
        var headers: [String: String] = [:]
        var repeatedSingleField: String?
        for (name, value) in fields {
            let key = name.lowercased()
            guard let earlier = headers[key] else {
                headers[key] = value
                continue
            }
            headers[key] = earlier + ", " + value
            if repeatedSingleField == nil {
                repeatedSingleField = singleFields.first { $0.lowercased() == key }
            }
        }
        return (headers, repeatedSingleField)
    }

    /// The request as the handler will see it, and the first of ``singleFields`` it repeats.
    private static func readRequest(connection: OpaquePointer, url: String, method: String)
        -> (request: HTTPRequest, repeatedSingleField: String?) {
        final class Collector {
            var fields: [(name: String, value: String)] = []
            var query: [(name: String, value: String)] = []
        }
        let collector = Collector()
        let box = Unmanaged.passUnretained(collector).toOpaque()
        // libmicrohttpd hands the fields over in the order they arrived.
        _ = MHD_get_connection_values(connection, MHD_ValueKind(rawValue: 1)!, { cls, _, key, value in
            let collector = Unmanaged<Collector>.fromOpaque(cls!).takeUnretainedValue()
            if let key {
                collector.fields.append((String(cString: key), value.map { String(cString: $0) } ?? ""))
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
        let (headers, repeatedSingleField) = joinFields(collector.fields)
        return (HTTPRequest(method: method.uppercased(), path: url, query: collector.query,
                            headers: headers, body: [], clientAddress: client), repeatedSingleField)
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
    /// The first of `RequestBridge.singleFields` the head repeats (answered 400).
    var repeatedSingleField: String?
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
