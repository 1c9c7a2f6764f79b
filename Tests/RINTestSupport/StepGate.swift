// Holding a job at a known step, for tests that must not depend on the speed of the machine.
import Foundation
import XCTest

/// A step gate for `JobService.Configuration.beforeStep`: records every call (the steps each job
/// was seen at) and holds the first job that reaches `holdAt` steps done until `open()`: a job
/// pinned running at a known step, whatever the speed of the machine. With `holdAt` nil it holds
/// nothing and only records. Generic over the job's id so that this target needs no RINJobs: the
/// tests use `StepGate<JobID>`.
public final class StepGate<Job: Hashable & Sendable>: @unchecked Sendable {
    private let condition = NSCondition()
    private let holdAt: Int?
    private var opened = false
    private var heldJob: Job?
    private var calls: [Job: [Int]] = [:]

    public init(holdAt: Int?) {
        self.holdAt = holdAt
    }

    /// The hook for `JobService.Configuration.beforeStep`.
    public var hook: @Sendable (Job, Int) -> Void { { [self] job, stepsDone in pass(job, stepsDone) } }

    /// The job held (or once held) at the gate; nil before one came.
    public var held: Job? { condition.withLock { heldJob } }

    /// The steps-done values the hook saw for `job`, in order.
    public func steps(of job: Job) -> [Int] { condition.withLock { calls[job] ?? [] } }

    /// Waits until a job is held and returns it; nil (and a failure) if none came.
    public func waitUntilHeld(file: StaticString = #filePath, line: UInt = #line) -> Job? {
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: 300)
        while heldJob == nil {
            if !condition.wait(until: deadline) {
                XCTFail("no job reached the step gate", file: file, line: line)
                return nil
            }
        }
        return heldJob
    }

    /// Lets the held job go on; from now on no job is held.
    public func open() {
        condition.withLock {
            opened = true
            condition.broadcast()
        }
    }

    private func pass(_ job: Job, _ stepsDone: Int) {
        condition.lock()
        defer { condition.unlock() }
        calls[job, default: []].append(stepsDone)
        guard !opened, stepsDone == holdAt, heldJob == nil || heldJob == job else { return }
        heldJob = job
        condition.broadcast()
        while !opened { condition.wait() }
    }
}
