import Foundation

/// One HTTP request as the router sees it: headers complete and the body fully read (bounded by
/// ``HTTPServerLimits/maxBodyBytes``).
public struct HTTPRequest: Sendable {
    /// Upper-case method as sent ("GET", "POST", ...).
    public var method: String
    /// The decoded path without the query string ("/jobs/abc").
    public var path: String
    /// Query arguments, decoded, in the order sent.
    public var query: [(name: String, value: String)]
    /// Header fields keyed by lower-cased name; a repeated field's values joined with ", " in the
    /// order sent (RFC 9110 5.3). The server refuses a repeat of a field that is not a list
    /// (Content-Type, Authorization, ...) with 400 before any handler runs.
    public var headers: [String: String]
    /// The request body.
    public var body: [UInt8]
    /// The peer's numeric address ("127.0.0.1"), or "" when unknown.
    public var clientAddress: String

    public init(method: String, path: String, query: [(name: String, value: String)] = [],
                headers: [String: String] = [:], body: [UInt8] = [], clientAddress: String = "") {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.clientAddress = clientAddress
    }

    /// The last value of a query argument, or nil.
    public func queryValue(_ name: String) -> String? {
        query.last(where: { $0.name == name })?.value
    }

    /// A header value by case-insensitive name.
    public func header(_ name: String) -> String? { headers[name.lowercased()] }
}

/// A body produced piece by piece while the connection stays open (multipart previews, SSE).
///
/// libmicrohttpd runs one thread per connection here, so ``nextChunk()`` may block until the job
/// layer has something new; it must return within a few seconds so a stopping server is not held.
public protocol StreamingBody: AnyObject, Sendable {
    /// The next bytes to send; blocks until some exist. nil ends the response.
    func nextChunk() -> [UInt8]?
    /// The client went away or the server is stopping: release subscriptions, wake `nextChunk`.
    func close()
}

/// An HTTP response: status, header fields, and either a complete body or a stream.
public struct HTTPResponse: Sendable {
    /// A complete body, or one produced while the connection stays open.
    public enum Body: Sendable {
        case bytes([UInt8])
        case stream(any StreamingBody)
    }

    /// The HTTP status code.
    public var status: Int
    /// Header fields in the order sent (Content-Length and Date are added by libmicrohttpd).
    public var headers: [(name: String, value: String)]
    public var body: Body

    public init(status: Int, headers: [(name: String, value: String)] = [], body: Body = .bytes([])) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A JSON body from an `Encodable` value (sorted keys, so ETags are stable).
    public static func json<T: Encodable>(_ value: T, status: Int = 200,
                                          headers: [(name: String, value: String)] = []) -> HTTPResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return HTTPResponse(status: status,
                            headers: [("Content-Type", "application/json")] + headers,
                            body: .bytes(Array(data) + [0x0A]))
    }

    /// A plain-text body.
    public static func text(_ text: String, status: Int = 200, contentType: String = "text/plain; charset=utf-8")
        -> HTTPResponse {
        HTTPResponse(status: status, headers: [("Content-Type", contentType)], body: .bytes(Array(text.utf8)))
    }

    /// The value of a header field this response carries, by case-insensitive name.
    public func header(_ name: String) -> String? {
        headers.last(where: { $0.name.caseInsensitiveCompare(name) == .orderedSame })?.value
    }
}
