// The limits the HTTP server puts on clients: sizes, connections and timeouts.

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
    /// many arguments, see `RequestBridge.beginRequest`).
    var connectionMemoryLimit: Int { max(4096, 2 * maxHeaderBytes + 64 * 1024) }
}
