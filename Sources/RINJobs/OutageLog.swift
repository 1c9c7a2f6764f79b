// Logging a recurring task's failures once per outage rather than at every attempt (the cluster
// claimer's claims, the lease keeper's renewals).
import Logging

/// Logs a warning with the error when a recurring attempt starts failing and a notice when one
/// works again; the failed attempts in between log nothing.
struct OutageLog {
    /// Whether the last attempt failed.
    private(set) var failing = false

    /// An attempt worked: logs `recovered` if the one before it failed.
    mutating func succeeded(_ logger: Logger, _ recovered: Logger.Message) {
        guard failing else { return }
        failing = false
        logger.notice(recovered)
    }

    /// An attempt failed: logs `message` with `error` if the one before it worked.
    mutating func failed(_ logger: Logger, _ message: Logger.Message, error: any Error) {
        guard !failing else { return }
        failing = true
        logger.warning(message, metadata: ["error": "\(error)"])
    }
}
