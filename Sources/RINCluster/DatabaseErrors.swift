// What a failed database call means to the job layer (SharedJobStore's contract): a server that
// cannot be reached (or is shutting down, starting, overloaded) is `JobError.databaseUnavailable`
// (HTTP 503, the client retries, the pool reconnects); a full disk is `storageFull`; anything else
// the server refuses is a `storage` error naming the database, which points at a bug or a schema
// changed by hand.
import Foundation
import PostgresNIO
import RINJobs

/// SQLSTATE codes the store acts on (PostgreSQL's Appendix A).
enum SQLState {
    static let uniqueViolation = "23505"
    static let foreignKeyViolation = "23503"
    static let diskFull = "53100"
    /// Classes that mean "not reachable now": connection exception (08), operator intervention
    /// such as admin shutdown or "the database system is starting up" (57), insufficient
    /// resources (53), system error (58), and a transaction rolled back by a serialization
    /// failure or deadlock (40), which a retry resolves.
    static let unavailableClasses: Set<String> = ["08", "57", "53", "58", "40"]
}

extension PSQLError {
    /// The server's SQLSTATE, when the server refused the statement.
    var sqlState: String? { code == .server ? serverInfo?[.sqlState] : nil }

    /// A message fit for a log or a 503 body: PSQLError's own description hides the server's
    /// words on purpose (they may quote data); the SQLSTATE, message and failing step are kept.
    var summary: String {
        if code == .server, let info = serverInfo {
            return "\(info[.sqlState] ?? "?????"): \(info[.message] ?? "server error")"
        }
        if let underlying { return "\(code): \(underlying)" }
        return "\(code)"
    }
}

/// Maps whatever a database call threw to the job layer's error. `database` names the database
/// (a URL without password) in storage errors.
func jobError(_ error: any Error, database: String) -> JobError {
    switch error {
    case let error as JobError:
        return error
    case let error as CallTimedOut:
        return .databaseUnavailable(message: "\(database): \(error)")
    case let error as PostgresTransactionError:
        if let inner = error.closureError ?? error.beginError ?? error.commitError {
            return jobError(inner, database: database)
        }
        return .databaseUnavailable(message: "\(database): transaction failed")
    case let error as PSQLError:
        guard let state = error.sqlState else {
            // Not the server's refusal: the connection failed, closed, or the pool is shut down.
            return .databaseUnavailable(message: "\(database): \(error.summary)")
        }
        if state == SQLState.diskFull {
            return .storageFull(path: database, message: error.summary)
        }
        if SQLState.unavailableClasses.contains(String(state.prefix(2))) {
            return .databaseUnavailable(message: "\(database): \(error.summary)")
        }
        return .storage(path: database, message: error.summary)
    case let error as PostgresDecodingError:
        return .storage(path: database, message: "unexpected column type: \(error.code) in \(error.columnName)")
    case is DecodingError, is EncodingError:
        return .storage(path: database, message: "unreadable job record: \(error)")
    case is CancellationError:
        return .databaseUnavailable(message: "\(database): the call was cancelled")
    default:
        // Connection pool and channel errors (connection refused, circuit breaker open).
        return .databaseUnavailable(message: "\(database): \(String(describing: error))")
    }
}
