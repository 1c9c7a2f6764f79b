import Foundation
import RINDiffusion
import RINModel
import RINTensor
import RINTestSupport
import XCTest

/// Cross-job batching in the engine: runs with different parameters, joining and leaving at
/// different steps, stepped by one `SamplingBatch`, end with exactly the images they make alone.
final class SamplingBatchTests: XCTestCase {
    /// Five runs that differ in everything a job can choose, each joining at its own tick.
    func mixedRuns(_ config: RINConfig) -> [(joinAt: Int, parameters: SamplingParameters)] {
        let guidance: Float = config.classes.nullClass ? 2 : 0
        return [
            (0, SamplingParameters(classIndex: 0, seed: 1, steps: 4, sampler: .ddim, schedule: .cosine, guidance: 0)),
            (0, SamplingParameters(classIndex: 2, seed: 7, steps: 6, sampler: .ddpm, schedule: .cosine,
                                   guidance: guidance, count: 2)),
            (1, SamplingParameters(classIndex: config.classes.nullClass ? nil : 1, seed: 3, steps: 5, sampler: .ddim,
                                   schedule: .sigmoid, guidance: 0, carryLatents: false)),
            (2, SamplingParameters(classIndex: 1, seed: 9, steps: 3, sampler: .ddpm, schedule: .linear,
                                   guidance: guidance * 0.75)),
            (4, SamplingParameters(classIndex: 2, seed: 11, steps: 4, sampler: .ddim, schedule: .cosine,
                                   guidance: 0, count: 3)),
        ]
    }

    /// Steps the runs in one batch, each from its join tick until it finishes; returns the runs
    /// and the largest batch (in rows) a tick had.
    func runBatched(_ checkpoint: RINCheckpoint, _ plan: [(joinAt: Int, parameters: SamplingParameters)])
        throws -> (runs: [SamplingRun], largest: Int) {
        let runs = try plan.map { try SamplingRun(checkpoint: checkpoint, parameters: $0.parameters) }
        let batch = SamplingBatch(checkpoint: checkpoint, rows: 1)
        var tick = 0, largest = 0
        while runs.contains(where: { !$0.isFinished }) {
            let active = zip(plan, runs).filter { $0.0.joinAt <= tick && !$0.1.isFinished }.map { $0.1 }
            let rows = active.reduce(0) { $0 + $1.rows }
            batch.reserve(rows: rows)
            batch.step(active)
            largest = max(largest, rows)
            tick += 1
        }
        return (runs, largest)
    }

    /// On rind's own kernels (`packed`, every CPU with AVX2 or AVX-512) the same floats and pixels as
    /// alone. On the matrix libraries within `SamplingBatch.maxPixelDifference`: they change kernels
    /// with the rows of a product (the tiny model's products have very few), and OpenBLAS's Haswell
    /// kernels, which Zen 5 machines run under OPENBLAS_CORETYPE=Haswell, sum differently at every
    /// size (SamplingBatch.swift).
    func check(_ checkpoint: RINCheckpoint, label: String) throws {
        let plan = mixedRuns(checkpoint.config)
        for backend in MatmulBackend.available {
            let before = MatmulBackend.current
            MatmulBackend.current = backend
            defer { MatmulBackend.current = before }
            let (batched, largest) = try runBatched(checkpoint, plan)
            XCTAssertGreaterThan(largest, plan[0].parameters.count, "the runs shared steps")
            for (index, (entry, run)) in zip(plan, batched).enumerated() {
                let solo = try SamplingRun(checkpoint: checkpoint, parameters: entry.parameters)
                while !solo.isFinished { solo.step() }
                let soloPixels = solo.estimate().flatMap(\.pixels), batchPixels = run.estimate().flatMap(\.pixels)
                let pixelDiff = zip(soloPixels, batchPixels).map { abs(Int($0) - Int($1)) }.max() ?? 0
                let valueDiff = maxAbsDiff(solo.estimateFloats(), run.estimateFloats())
                print("batching identity [\(label), matmul \(backend)] run \(index): max |x0 diff| \(valueDiff), max pixel diff \(pixelDiff)")
                // The matrix libraries sum a row's products in an order that may depend on the rows
                // of the product (SamplingBatch.swift): the last float bits differ, a pixel by at
                // most 1. rind's micro-kernels sum each output as one chain over k, whatever the rows.
                if backend == .packed {
                    XCTAssertEqual(pixelDiff, 0, "\(label) run \(index) [\(backend)]")
                    XCTAssertEqual(valueDiff, 0, "\(label) run \(index) [\(backend)]: x0 differs from the solo run")
                } else {
                    XCTAssertLessThanOrEqual(pixelDiff, SamplingBatch.maxPixelDifference, "\(label) run \(index) [\(backend)]")
                    XCTAssertLessThanOrEqual(valueDiff, 1e-3, "\(label) run \(index) [\(backend)]: x0 drifts from the solo run")
                }
            }
        }
    }

    func testBatchedRunsOfTheTinyModelMatchTheirSoloRuns() throws {
        try check(tinyCheckpoint(), label: "tiny")
    }

    /// The bundled models' configurations (random weights), at 2 threads: big enough that the
    /// products are blocked and split over threads.
    func testBatchedRunsOfTheBundledConfigsMatchTheirSoloRuns() throws {
        let threads = BLASThreads.current
        BLASThreads.set(2)
        defer { BLASThreads.set(threads) }
        for name in ["cifar10-bundled", "imagenet64-bundled"] {
            let url = TestProject.root.appendingPathComponent("Training/configs/\(name).json")
            let config = try RINConfig.decode(Data(contentsOf: url), file: url.path)
            let checkpoint = RINCheckpoint(name: name, directory: url.deletingLastPathComponent(),
                                           network: RINNetwork(config: config, randomSeed: 5))
            try check(checkpoint, label: name)
        }
    }

    func testRunsJoinAndLeaveAtAnyStep() throws {
        let checkpoint = tinyCheckpoint()
        let plan = mixedRuns(checkpoint.config)
        let (runs, _) = try runBatched(checkpoint, plan)
        for (entry, run) in zip(plan, runs) {
            XCTAssertTrue(run.isFinished)
            XCTAssertEqual(run.stepsDone, entry.parameters.steps, "each run took exactly its own steps")
        }
    }

    func testEveryAlgorithmIsBehindTheSamplerProtocol() {
        XCTAssertTrue(SamplerKind.ddim.sampler is DDIMSampler)
        XCTAssertTrue(SamplerKind.ddpm.sampler is DDPMSampler)
    }
}
