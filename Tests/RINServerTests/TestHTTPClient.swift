// A tiny blocking HTTP/1.1 client over a raw socket, so tests see exactly what the server sends
// (status lines, headers, chunked streams read piece by piece) without URLSession's buffering.
import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

struct HTTPResult {
    let status: Int
    /// Lower-cased names.
    let headers: [String: String]
    let body: [UInt8]

    var text: String { String(decoding: body, as: UTF8.self) }
    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:]
    }
    func header(_ name: String) -> String? { headers[name.lowercased()] }
}

enum TestHTTPError: Error { case connect(Int32), closed, malformed(String) }

/// One connection; reads are buffered and time out (SO_RCVTIMEO) so a broken server fails a test
/// instead of hanging it.
/// Anything read a byte at a time: the raw connection, and a response body (chunked or not) over it.
protocol ByteSource {
    func byte() -> UInt8?
}

extension ByteSource {
    /// One CRLF- or LF-terminated line without its terminator; nil at the end of the input.
    func line() -> String? {
        var bytes: [UInt8] = []
        while let byte = byte() {
            if byte == 0x0A {
                if bytes.last == 0x0D { bytes.removeLast() }
                return String(decoding: bytes, as: UTF8.self)
            }
            bytes.append(byte)
        }
        return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self)
    }
}

final class TestHTTPConnection: ByteSource {
    private let fd: Int32
    private var buffer: [UInt8] = []
    private var position = 0
    /// True once a read gave up waiting (SO_RCVTIMEO) rather than seeing the server close.
    private(set) var timedOut = false

    /// `source`: a loopback address to connect from ("127.0.0.2"; Linux routes all of 127/8 to
    /// lo), so a test can act as several clients.
    init(port: Int, timeoutSeconds: Int = 60, source: String? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        if let source {
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            local.sin_addr.s_addr = inet_addr(source)
            let bound = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if bound != 0 {
                let code = errno
                close(fd)
                throw TestHTTPError.connect(code)
            }
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if result != 0 {
            let code = errno
            close(fd)
            throw TestHTTPError.connect(code)
        }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func write(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent <= 0 { return }
            offset += sent
        }
    }

    private func fill() -> Bool {
        if position > 0 && position == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            position = 0
        }
        var chunk = [UInt8](repeating: 0, count: 16384)
        let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { timedOut = true }
        if count <= 0 { return false }
        buffer.append(contentsOf: chunk[0..<count])
        return true
    }

    func byte() -> UInt8? {
        if position >= buffer.count && !fill() { return nil }
        defer { position += 1 }
        return buffer[position]
    }

    func bytes(_ count: Int) -> [UInt8]? {
        var result: [UInt8] = []
        result.reserveCapacity(count)
        while result.count < count {
            if position >= buffer.count && !fill() { return nil }
            let take = min(count - result.count, buffer.count - position)
            result.append(contentsOf: buffer[position..<position + take])
            position += take
        }
        return result
    }

    /// Sends a request.
    func send(method: String, path: String, headers: [String: String] = [:], body: [UInt8]? = nil,
              keepAlive: Bool = false) {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if !keepAlive { head += "Connection: close\r\n" }
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if let body { head += "Content-Length: \(body.count)\r\n" }
        head += "\r\n"
        write(Array(head.utf8) + (body ?? []))
    }

    /// Reads the status line and headers.
    func readHead() throws -> (status: Int, headers: [String: String]) {
        guard let statusLine = line() else { throw TestHTTPError.closed }
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else { throw TestHTTPError.malformed(statusLine) }
        var headers: [String: String] = [:]
        while let line = line(), !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return (status, headers)
    }
}

/// The decoded body of one response, read on demand (chunked, Content-Length, or until close).
final class TestBodyReader: ByteSource {
    private let connection: TestHTTPConnection
    private let chunked: Bool
    private var remaining: Int?       // Content-Length left, or bytes left in the current chunk
    private var ended = false

    init(connection: TestHTTPConnection, headers: [String: String], method: String, status: Int) {
        self.connection = connection
        chunked = headers["transfer-encoding"]?.lowercased().contains("chunked") ?? false
        if method == "HEAD" || status == 204 || status == 304 {
            ended = true
        } else if !chunked, let length = headers["content-length"].flatMap(Int.init) {
            remaining = length
            if length == 0 { ended = true }
        }
    }

    func byte() -> UInt8? {
        if ended { return nil }
        if chunked {
            if remaining == nil || remaining == 0 {
                if remaining == 0 { _ = connection.line() }   // CRLF after a chunk
                guard let sizeLine = connection.line(),
                      let size = Int(sizeLine.split(separator: ";")[0].trimmingCharacters(in: .whitespaces), radix: 16)
                else { ended = true; return nil }
                if size == 0 {
                    while let trailer = connection.line(), !trailer.isEmpty {}
                    ended = true
                    return nil
                }
                remaining = size
            }
            remaining! -= 1
            return connection.byte()
        }
        if let left = remaining {
            if left == 0 { ended = true; return nil }
            remaining = left - 1
        }
        guard let byte = connection.byte() else { ended = true; return nil }
        return byte
    }

    func bytes(_ count: Int) -> [UInt8]? {
        var result: [UInt8] = []
        for _ in 0..<count {
            guard let byte = byte() else { return nil }
            result.append(byte)
        }
        return result
    }

    func readAll() -> [UInt8] {
        var result: [UInt8] = []
        while let byte = byte() { result.append(byte) }
        return result
    }
}

extension TestHTTPConnection {
    /// Reads one whole response to a `method` request.
    func readResponse(method: String) throws -> HTTPResult {
        let (status, headers) = try readHead()
        let reader = TestBodyReader(connection: self, headers: headers, method: method, status: status)
        return HTTPResult(status: status, headers: headers, body: reader.readAll())
    }
}

/// One request on a fresh connection.
func http(_ method: String, _ port: Int, _ path: String, headers: [String: String] = [:], body: [UInt8]? = nil)
    throws -> HTTPResult {
    let connection = try TestHTTPConnection(port: port)
    connection.send(method: method, path: path, headers: headers, body: body)
    return try connection.readResponse(method: method)
}

/// One request on a fresh connection with its header fields written exactly as given, in order,
/// repeats included (`http` takes a dictionary); only `Connection: close` is added.
func http(_ port: Int, requestLine: String, fields: [String], body: String = "") throws -> HTTPResult {
    let connection = try TestHTTPConnection(port: port, timeoutSeconds: 30)
    let head = ([requestLine] + fields + ["Connection: close"]).joined(separator: "\r\n") + "\r\n\r\n"
    connection.write(Array((head + body).utf8))
    return try connection.readResponse(method: String(requestLine.prefix { $0 != " " }))
}

/// A JSON POST.
func postJSON(_ port: Int, _ path: String, _ object: Any, headers: [String: String] = [:]) throws -> HTTPResult {
    let data = try JSONSerialization.data(withJSONObject: object)
    return try http("POST", port, path, headers: headers.merging(["Content-Type": "application/json"]) { $1 },
                    body: Array(data))
}

/// Opens a streaming response and returns its reader.
func openStream(_ port: Int, _ path: String, headers: [String: String] = [:]) throws
    -> (status: Int, headers: [String: String], reader: TestBodyReader, connection: TestHTTPConnection) {
    let connection = try TestHTTPConnection(port: port)
    connection.send(method: "GET", path: path, headers: headers)
    let (status, responseHeaders) = try connection.readHead()
    return (status, responseHeaders, TestBodyReader(connection: connection, headers: responseHeaders, method: "GET",
                                                    status: status), connection)
}
