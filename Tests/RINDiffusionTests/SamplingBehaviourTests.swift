import Foundation
import RINDiffusion
import RINModel
import XCTest

/// SamplingRun, parameters and pixels on tiny random models.
final class SamplingBehaviourTests: XCTestCase {
    func parameters(_ c: RINConfig, class classIndex: Int? = 1, seed: UInt64 = 5, steps: Int = 3,
                    sampler: SamplerKind = .ddim, guidance: Float = 0, count: Int = 2, carry: Bool = true) -> SamplingParameters {
        SamplingParameters(classIndex: classIndex, seed: seed, steps: steps, sampler: sampler, schedule: .cosine,
                           guidance: guidance, count: count, carryLatents: carry)
    }

    func testRunsToFinishedAndStopsThere() throws {
        let checkpoint = tinyCheckpoint()
        let run = try SamplingRun(checkpoint: checkpoint, parameters: parameters(checkpoint.config, steps: 4))
        XCTAssertEqual(run.stepsDone, 0)
        XCTAssertFalse(run.isFinished)
        // Before any step the estimate is x0 = 0: mid grey.
        XCTAssertTrue(run.estimate().allSatisfy { $0.pixels.allSatisfy { $0 == 128 } })
        let estimates = runToEnd(run)
        XCTAssertEqual(estimates.count, 4)
        XCTAssertTrue(run.isFinished)
        XCTAssertEqual(run.stepsDone, 4)
        let final = run.estimateFloats()
        run.step()
        XCTAssertEqual(run.stepsDone, 4)
        XCTAssertEqual(run.estimateFloats(), final)
        XCTAssertTrue(final.allSatisfy { $0 >= -1 && $0 <= 1 })
        let images = run.estimate()
        XCTAssertEqual(images.count, 2)
        XCTAssertEqual(images[0].width, 6)
        XCTAssertEqual(images[0].height, 8)
        XCTAssertEqual(images[0].channels, 3)
    }

    func testDeterministicAndSeedDependent() throws {
        let checkpoint = tinyCheckpoint()
        for sampler in SamplerKind.allCases {
            let p = parameters(checkpoint.config, sampler: sampler)
            let a = runToEnd(try SamplingRun(checkpoint: checkpoint, parameters: p))
            let b = runToEnd(try SamplingRun(checkpoint: checkpoint, parameters: p))
            XCTAssertEqual(a, b, "\(sampler)")
            var other = p
            other.seed = 6
            XCTAssertNotEqual(a.last, runToEnd(try SamplingRun(checkpoint: checkpoint, parameters: other)).last)
        }
    }

    func testImagesOfARunAreIndependentOfCount() throws {
        // Image i starts from noise(seed, i, 0) whatever the count, and images do not interact.
        let checkpoint = tinyCheckpoint()
        let two = runToEnd(try SamplingRun(checkpoint: checkpoint, parameters: parameters(checkpoint.config, sampler: .ddpm, count: 2))).last!
        let one = runToEnd(try SamplingRun(checkpoint: checkpoint, parameters: parameters(checkpoint.config, sampler: .ddpm, count: 1))).last!
        XCTAssertLessThan(maxAbsDiff(one, Array(two.prefix(one.count))), 1e-5)
    }

    func testTinyGuidanceApproachesTheSinglePass() throws {
        // w = 0 is one pass; the guided path runs cond + null as one batch of 2B, and its conditional
        // half must be the single pass, so w -> 0 converges to it.
        let checkpoint = tinyCheckpoint()
        let plain = runToEnd(try SamplingRun(checkpoint: checkpoint, parameters: parameters(checkpoint.config)))
        let tiny = runToEnd(try SamplingRun(checkpoint: checkpoint, parameters: parameters(checkpoint.config, guidance: 1e-6)))
        let strong = runToEnd(try SamplingRun(checkpoint: checkpoint, parameters: parameters(checkpoint.config, guidance: 3)))
        XCTAssertLessThan(maxAbsDiff(plain.last!, tiny.last!), 1e-4)
        XCTAssertGreaterThan(maxAbsDiff(plain.last!, strong.last!), 1e-3)
    }

    func testLatentCarryMattersOnlyWithNonZeroLN0() throws {
        let fresh = tinyCheckpoint(zeroLN0: true)
        let carried = runToEnd(try SamplingRun(checkpoint: fresh, parameters: parameters(fresh.config)))
        let reset = runToEnd(try SamplingRun(checkpoint: fresh, parameters: parameters(fresh.config, carry: false)))
        XCTAssertEqual(carried, reset)

        let trained = tinyCheckpoint()
        let carriedT = try SamplingRun(checkpoint: trained, parameters: parameters(trained.config))
        let resetT = try SamplingRun(checkpoint: trained, parameters: parameters(trained.config, carry: false))
        let a = runToEnd(carriedT), b = runToEnd(resetT)
        XCTAssertEqual(a[0], b[0], "the first step always starts from zero latents")
        XCTAssertGreaterThan(maxAbsDiff(a.last!, b.last!), 1e-4)
        XCTAssertTrue(carriedT.carriedLatents().contains { $0 != 0 })
    }

    func testUnconditionalModelAndNullClass() throws {
        let unconditional = tinyCheckpoint(tinyConfig(classes: 0, prediction: .eps))
        let run = try SamplingRun(checkpoint: unconditional, parameters: parameters(unconditional.config, class: nil))
        XCTAssertEqual(runToEnd(run).count, 3)
        let conditional = tinyCheckpoint()
        let nullRun = try SamplingRun(checkpoint: conditional, parameters: parameters(conditional.config, class: nil))
        XCTAssertEqual(runToEnd(nullRun).count, 3)
    }

    func testParameterValidationNamesParameterAndRange() {
        let c = tinyConfig()
        func message(_ change: (inout SamplingParameters) -> Void, config: RINConfig = tinyConfig()) -> String? {
            var p = parameters(config)
            change(&p)
            do {
                _ = try p.validated(for: config)
                return nil
            } catch {
                return "\(error)"
            }
        }
        XCTAssertNil(message { _ in })
        XCTAssertEqual(message { $0.classIndex = 4 }, "invalid class: class must be 0...2 or one of cat, dog, ship (got 4)")
        XCTAssertEqual(message { $0.classIndex = -1 }, "invalid class: class must be 0...2 or one of cat, dog, ship (got -1)")
        XCTAssertEqual(message { $0.steps = 0 }, "invalid steps: must be 1...1000 (got 0)")
        XCTAssertEqual(message { $0.steps = 1001 }, "invalid steps: must be 1...1000 (got 1001)")
        XCTAssertEqual(message { $0.count = 17 }, "invalid count: must be 1...16 (got 17)")
        XCTAssertEqual(message { $0.count = 0 }, "invalid count: must be 1...16 (got 0)")
        XCTAssertEqual(message { $0.guidance = 31 }, "invalid guidance: must be 0...30 (got 31.0)")
        XCTAssertEqual(message { $0.guidance = -1 }, "invalid guidance: must be 0...30 (got -1.0)")
        XCTAssertNotNil(message { $0.guidance = .nan })
        XCTAssertEqual(message { $0.seed = 1 << 53 }, "invalid seed: must be 0...9007199254740991 (got 9007199254740992)")
        XCTAssertNil(message { $0.seed = (1 << 53) - 1 })
        XCTAssertTrue(message({ $0.guidance = 1 }, config: tinyConfig(nullClass: false))!.contains("no null class"))
        XCTAssertTrue(message({ $0.classIndex = nil }, config: tinyConfig(nullClass: false))!.contains("needs a class"))
        XCTAssertTrue(message({ $0.classIndex = nil; $0.guidance = 2 })!.contains("without a class"))
        XCTAssertTrue(message({ $0.classIndex = 0 }, config: tinyConfig(classes: 0))!.contains("unconditional"))
        XCTAssertNil(message({ $0.classIndex = nil }, config: tinyConfig(classes: 0)))
        // SamplingRun refuses the same way; fullSeedRange lifts only the seed limit.
        XCTAssertThrowsError(try SamplingRun(checkpoint: tinyCheckpoint(), parameters: parameters(c, steps: 0)))
        var bigSeed = parameters(c)
        bigSeed.seed = .max
        XCTAssertThrowsError(try SamplingRun(checkpoint: tinyCheckpoint(), parameters: bigSeed))
        XCTAssertNoThrow(try SamplingRun(checkpoint: tinyCheckpoint(), parameters: bigSeed, fullSeedRange: true))
        // Defaults are valid.
        XCTAssertNoThrow(try SamplingParameters.defaults(for: c).validated(for: c))
        XCTAssertNoThrow(try SamplingParameters.defaults(for: tinyConfig(classes: 0)).validated(for: tinyConfig(classes: 0)))
    }

    func testPixelConversionRoundsHalfAwayAndClamps() {
        XCTAssertEqual(ImagePixels.byte(-1), 0)
        XCTAssertEqual(ImagePixels.byte(1), 255)
        XCTAssertEqual(ImagePixels.byte(-2), 0)
        XCTAssertEqual(ImagePixels.byte(3), 255)
        XCTAssertEqual(ImagePixels.byte(0), 128)                 // 127.5 rounds up
        XCTAssertEqual(ImagePixels.byte(-0.2), 102)               // 102.0 exactly
        XCTAssertEqual(ImagePixels.byte(-0.5), 64)                // 63.75
    }

    func testVideoFramesSideBySide() {
        let image = RINConfig.Image(frames: 2, height: 1, width: 2, channels: 1)
        // (f, y, x): f0 = [-1, 1], f1 = [0, -1]
        let x0: [Float] = [-1, 1, 0, -1]
        let pixels = x0.withUnsafeBufferPointer { ImagePixels(x0: $0.baseAddress!, image: image) }
        XCTAssertEqual(pixels.width, 4)
        XCTAssertEqual(pixels.height, 1)
        XCTAssertEqual(pixels.pixels, [0, 255, 128, 0])
        XCTAssertEqual(pixels.frames, 2, "the frame count travels with the strip")
    }

    func testSchedules() {
        let c = tinyConfig()
        for kind in ScheduleKind.allCases {
            let s = NoiseSchedule(kind: kind, config: c)
            XCTAssertEqual(s.gamma(0), 1, accuracy: 1e-12, "\(kind)")
            XCTAssertEqual(s.gamma(1), 0, accuracy: 1e-12, "\(kind)")
            XCTAssertEqual(s.clippedGamma(1), 1e-9)
            XCTAssertEqual(s.clippedGamma(0), 1 - 1e-9)
            var previous = 2.0
            for k in 0...20 {
                let g = s.gamma(Double(k) / 20)
                XCTAssertLessThan(g, previous, "\(kind) decreasing")
                previous = g
            }
        }
        XCTAssertEqual(NoiseSchedule(kind: .cosine, config: c).gamma(0.5), 0.5, accuracy: 1e-12)
        XCTAssertEqual(NoiseSchedule(kind: .linear, config: c).gamma(0.25), 0.75, accuracy: 1e-12)
        // The sigmoid uses the checkpoint's own parameters.
        var custom = c
        custom.training = .init(schedule: .init(kind: "sigmoid", start: -3, end: 3, tau: 1.1))
        XCTAssertEqual(NoiseSchedule(kind: .sigmoid, config: custom).tau, 1.1)
        custom.training = .init(schedule: .init(kind: "cosine", start: nil, end: nil, tau: nil))
        XCTAssertEqual(NoiseSchedule(kind: .sigmoid, config: custom).tau, 0.9)
    }

    func testSamplerUpdates() {
        var x: [Float] = [0.5, -0.25]
        DDIMSampler.update(x: &x, x0: [1, -1], eps: [0.5, 2], gammaNext: 0.36, count: 2)
        XCTAssertEqual(x[0], 0.6 * 1 + 0.8 * 0.5, accuracy: 1e-6)
        XCTAssertEqual(x[1], 0.6 * -1 + 0.8 * 2, accuracy: 1e-6)
        var y: [Float] = [0.5]
        DDPMSampler.update(x: &y, eps: [0.2], noise: [1.5], gamma: 0.25, gammaNext: 0.5, count: 1)
        let a = 0.5
        let expected = (0.5 - (1 - a) / (0.75).squareRoot() * 0.2) / a.squareRoot() + (1 - a).squareRoot() * 1.5
        XCTAssertEqual(Double(y[0]), expected, accuracy: 1e-6)
    }
}
