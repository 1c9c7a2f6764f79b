// Waiting for a state the test cannot be told about (a job's status over HTTP, a service draining),
// and a value shared with a hook or callback on another thread.
import Foundation
import XCTest

/// Polls `condition` every 10 ms until it holds or `seconds` pass; true if it held. The bound is
/// only there so that a broken build fails instead of hanging: far longer than any wait needs, even
/// on a slow or loaded machine (never a timing assertion).
@discardableResult
public func poll(seconds: Double = 300, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date(timeIntervalSinceNow: seconds)
    while true {
        if try condition() { return true }
        if Date() >= deadline { return false }
        usleep(10_000)
    }
}

/// `poll` for a state the test cannot go on without: when `condition` never holds, fails the test
/// naming `what` and throws `WaitGaveUp`, so that the test stops there.
public func waitUntil(_ what: String, seconds: Double = 300, file: StaticString = #filePath, line: UInt = #line,
                      _ condition: () throws -> Bool) throws {
    guard try poll(seconds: seconds, condition) else {
        XCTFail("gave up waiting: \(what)", file: file, line: line)
        throw WaitGaveUp(what: what)
    }
}

/// What `waitUntil` throws when the state it waited for never came.
public struct WaitGaveUp: Error, CustomStringConvertible {
    public let what: String
    public init(what: String) { self.what = what }
    public var description: String { "gave up waiting: \(what)" }
}

/// A value shared with a hook or callback on another thread, behind a lock.
public final class LockedValue<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var current: Value

    public init(_ value: Value) { current = value }

    public var value: Value {
        get { lock.withLock { current } }
        set { lock.withLock { current = newValue } }
    }
}
