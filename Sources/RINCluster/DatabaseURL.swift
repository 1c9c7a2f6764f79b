// Where the shared job database is: `postgres://user@host:port/database?sslmode=...`, as
// `rind serve --database URL` takes it. The password never travels in the URL (it would show in
// `ps`, shell history and unit files): it comes from a file or a systemd credential, and a URL
// that holds one is refused.
import Foundation

/// A parsed database URL: everything needed to connect except the password.
public struct DatabaseURL: Sendable, Equatable, CustomStringConvertible {
    /// How the connection uses TLS (libpq's `sslmode` names).
    public enum TLSMode: String, Sendable, CaseIterable {
        /// Plain TCP.
        case disable
        /// TLS when the server offers it (certificate verified), else plain TCP. The default.
        case prefer
        /// TLS or no connection (certificate verified against the system's roots).
        case require
    }

    public var host: String
    public var port: Int
    public var user: String
    public var database: String
    public var tls: TLSMode

    public init(host: String, port: Int = 5432, user: String, database: String, tls: TLSMode = .prefer) {
        self.host = host
        self.port = port
        self.user = user
        self.database = database
        self.tls = tls
    }

    /// Parses `postgres://user@host[:port]/database[?sslmode=disable|prefer|require]` (also
    /// `postgresql://`). Refuses a password in the URL, and anything it would not use.
    public init(parsing string: String) throws(DatabaseURLError) {
        guard let components = URLComponents(string: string) else {
            throw DatabaseURLError("not a URL: expected postgres://user@host:port/database")
        }
        guard let scheme = components.scheme?.lowercased(), scheme == "postgres" || scheme == "postgresql" else {
            throw DatabaseURLError("the scheme must be postgres:// (or postgresql://), not '\(components.scheme ?? "")'")
        }
        if components.password != nil {
            throw DatabaseURLError("the database URL must not hold a password (it would show in process lists and "
                + "unit files): remove it from the URL and give it in a file (--database-password-file) or as "
                + "the systemd credential")
        }
        guard let user = components.user, !user.isEmpty else {
            throw DatabaseURLError("the database URL names no user: postgres://USER@host:port/database")
        }
        guard var host = components.host, !host.isEmpty else {
            throw DatabaseURLError("the database URL names no host: postgres://user@HOST:port/database")
        }
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        let port = components.port ?? 5432
        guard (1...65535).contains(port) else {
            throw DatabaseURLError("the port must be in 1...65535, not \(port)")
        }
        var path = components.path
        if path.hasPrefix("/") { path.removeFirst() }
        guard !path.isEmpty, !path.contains("/") else {
            throw DatabaseURLError("the database URL names no database: postgres://user@host:port/DATABASE")
        }
        var tls = TLSMode.prefer
        for item in components.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                guard let value = item.value, let mode = TLSMode(rawValue: value) else {
                    let allowed = TLSMode.allCases.map(\.rawValue).joined(separator: ", ")
                    throw DatabaseURLError("sslmode must be one of \(allowed), not '\(item.value ?? "")'")
                }
                tls = mode
            case "password":
                throw DatabaseURLError("the database URL must not hold a password: give it in a file "
                    + "(--database-password-file) or as the systemd credential")
            default:
                throw DatabaseURLError("unknown database URL parameter '\(item.name)' (known: sslmode)")
            }
        }
        self.init(host: host, port: port, user: user, database: path, tls: tls)
    }

    /// The URL again, without a password (safe to log).
    public var description: String {
        let hostPart = host.contains(":") ? "[\(host)]" : host
        let query = tls == .prefer ? "" : "?sslmode=\(tls.rawValue)"
        return "postgres://\(user)@\(hostPart):\(port)/\(database)\(query)"
    }
}

/// Why a database URL was refused; `message` says what to write instead.
public struct DatabaseURLError: Error, Equatable, CustomStringConvertible {
    public let message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { "invalid database URL: \(message)" }
}
