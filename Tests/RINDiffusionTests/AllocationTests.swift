import CAllocationCounter
import Foundation
import RINDiffusion
import RINModel
import RINTensor
import RINTestSupport
import XCTest

/// The sampling step allocates nothing: every buffer is made when the run is built. Counted by the
/// malloc interposed in this test executable (Sources/CAllocationCounter), on every compute path
/// this machine supports, after one uncounted step (the first call into a backend may set itself
/// up: oneDNN JIT-compiles its kernels and starts its OpenMP threads).
///
/// The matrix libraries allocate inside their own calls, and their C APIs take no scratch memory:
/// oneDNN's sgemm on every call, OpenBLAS when it splits a product across threads. So the test
/// holds everything else to zero: allocations whose caller is one of those libraries (or the C++
/// and OpenMP runtimes oneDNN calls through) are counted apart and printed.
final class AllocationTests: XCTestCase {
    static let matrixLibraries = ["libopenblas", "libdnnl", "libstdc++", "libgomp"]

    /// Tests/Fixtures/checkpoints/tiny, loaded once for the class on the path in use when first
    /// asked for (the default one: `ComputePath.forEach` restores it). Read only: a run keeps its
    /// state in its own buffers, so the tests stay independent of each other.
    static let tiny = Result { try RINCheckpoint.load(from: TestProject.tinyCheckpoint) }

    override func setUp() {
        super.setUp()
        XCTAssertEqual(rind_allocations_interposed(), 1, "malloc is not interposed: the counts below would be meaningless")
    }

    /// (all, outside the matrix libraries) allocations made by `steps` calls of `run.step()` after a
    /// first one; of up to three such windows, the one with the fewest outside the libraries.
    ///
    /// The counter sees every thread of this test process, and threads other tests left behind
    /// (a retention timer, a database client reconnecting) sometimes allocate inside a window (the
    /// full suite measured 18-160 such allocations in 5 of 9 windows, none in the same windows run
    /// alone). A step that allocates does so in every window, so it still fails. A slow path's
    /// windows are long enough for such a thread to hit all three (a clean-clone run: 30 in each
    /// window of packed + baseline kernels, 0 alone), so scripts/test.sh runs this class in a
    /// process of its own.
    func allocations(_ run: SamplingRun, steps: Int) -> (all: Int, rind: Int) {
        allocations(steps: steps, finished: { run.isFinished }, step: run.step)
    }

    /// `allocations(_:steps:)` for any step: `step` once uncounted, then up to three windows.
    func allocations(steps: Int, finished: () -> Bool, step: () -> Void) -> (all: Int, rind: Int) {
        step()
        for library in Self.matrixLibraries { _ = rind_allocations_attribute_library(library) }
        var fewest: (all: Int, rind: Int)?
        for _ in 0..<3 {
            // A finished run's step() does nothing, so every window must have steps left to take.
            XCTAssertFalse(finished(), "the run has no steps left for a window")
            rind_allocations_start()
            for _ in 0..<steps { step() }
            let all = rind_allocations_stop()
            let counts = (all: all, rind: all - rind_allocations_attributed())
            if fewest == nil || counts.rind < fewest!.rind { fewest = counts }
            if counts.rind == 0 { break }
        }
        return fewest!
    }

    /// Asserts that nothing outside the matrix libraries allocated.
    func check(_ counts: (all: Int, rind: Int), _ path: ComputePath, _ what: String) {
        print("allocations [\(path)] \(what): \(counts.all) in all, \(counts.rind) outside the matrix libraries")
        XCTAssertEqual(counts.rind, 0, "\(what) [\(path)]")
    }

    func testTheCounterSeesSwiftAllocations() {
        rind_allocations_start()
        let values = ContiguousArray<Float>(repeating: 1, count: Int.random(in: 1000...2000))
        let count = rind_allocations_stop()
        XCTAssertGreaterThan(values.reduce(0, +), 999)
        XCTAssertGreaterThanOrEqual(count, 1)
    }

    func testStepsOfTheBundledTinyCheckpointAllocateNothing() throws {
        let config = try Self.tiny.get().config
        var cases: [(String, SamplingParameters)] = []
        var ddim = SamplingParameters.defaults(for: config)
        ddim.steps = 14   // one uncounted step and up to three windows of 4
        ddim.count = 3
        ddim.guidance = 0
        cases.append(("ddim, 3 images", ddim))
        var ddpm = ddim
        ddpm.sampler = .ddpm
        ddpm.carryLatents = false
        cases.append(("ddpm, no carry", ddpm))
        if config.classes.nullClass {
            var guided = ddim
            guided.guidance = 3
            guided.classIndex = 0
            cases.append(("guided", guided))
        }
        try ComputePath.forEach { path in
            // Built on the path, not the shared `tiny`: the packed backend packs the weights while
            // the network is built.
            let checkpoint = try RINCheckpoint.load(from: TestProject.tinyCheckpoint)
            for (name, parameters) in cases {
                let run = try SamplingRun(checkpoint: checkpoint, parameters: parameters)
                check(allocations(run, steps: 4), path, "tiny \(name), 4 steps")
            }
        }
    }

    /// A batched step of several runs (cross-job batching) allocates nothing either.
    func testBatchedStepsOfSeveralRunsAllocateNothing() throws {
        let checkpoint = try Self.tiny.get()
        var ddim = SamplingParameters.defaults(for: checkpoint.config)
        ddim.steps = 14   // one uncounted step and up to three windows of 4
        ddim.guidance = 0
        var ddpm = ddim
        ddpm.sampler = .ddpm
        ddpm.seed = 2
        ddpm.count = 2
        var guided = ddim
        guided.guidance = 2
        guided.seed = 3
        try ComputePath.forEach { path in
            let runs = try [ddim, ddpm, guided].map { try SamplingRun(checkpoint: checkpoint, parameters: $0) }
            let batch = SamplingBatch(checkpoint: checkpoint, rows: runs.reduce(0) { $0 + $1.rows })
            let counts = allocations(steps: 4, finished: { runs.contains { $0.isFinished } }, step: { batch.step(runs) })
            check(counts, path, "tiny, 3 runs in one batch, 4 steps")
        }
    }

    /// A model big enough that the matrix backends split products across threads.
    func testStepsOfTheCIFAR10BundledConfigAllocateNothing() throws {
        let url = TestProject.root.appendingPathComponent("Training/configs/cifar10-bundled.json")
        let config = try RINConfig.decode(Data(contentsOf: url), file: url.path)
        var parameters = SamplingParameters.defaults(for: config)
        parameters.steps = 10   // one uncounted step and up to three windows of 3
        parameters.guidance = 3  // one guided image: a batch of 2
        parameters.classIndex = 4
        let threads = BLASThreads.current
        BLASThreads.set(2)
        defer { BLASThreads.set(threads) }
        try ComputePath.forEach { path in
            let checkpoint = RINCheckpoint(name: "cifar10-bundled", directory: url.deletingLastPathComponent(),
                                           network: RINNetwork(config: config, randomSeed: 3))
            let run = try SamplingRun(checkpoint: checkpoint, parameters: parameters)
            check(allocations(run, steps: 3), path, "cifar10-bundled guided, 3 steps")
        }
    }
}
