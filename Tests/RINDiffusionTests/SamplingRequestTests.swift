import Foundation
import RINDiffusion
import RINModel
import XCTest

/// `SamplingRequest`: the one place where the API's and the CLI's parameters are resolved.
final class SamplingRequestTests: XCTestCase {
    func testDefaultsThenTheRequestsValuesThenValidation() throws {
        let config = tinyConfig()
        let defaults = try SamplingRequest(seed: 4).resolved(for: config)
        XCTAssertEqual(defaults, SamplingParameters(classIndex: 0, seed: 4, steps: 4, sampler: .ddim, schedule: .cosine, guidance: 0))
        let chosen = try SamplingRequest(classIndex: 2, seed: 9, steps: 7, sampler: .ddpm, schedule: .linear,
                                         guidance: 1.5, count: 3, carryLatents: false).resolved(for: config)
        XCTAssertEqual(chosen, SamplingParameters(classIndex: 2, seed: 9, steps: 7, sampler: .ddpm, schedule: .linear,
                                                  guidance: 1.5, count: 3, carryLatents: false))
        XCTAssertEqual(try SamplingRequest().resolved(for: config, seedSource: { 77 }).seed, 77, "a seed is drawn when none is given")
        XCTAssertLessThanOrEqual(try SamplingRequest().resolved(for: config).seed, SamplingParameters.maxSeed)
    }

    func testUnconditionalDropsTheClassAndTheDefaultGuidance() throws {
        var config = tinyConfig()
        config.sampling.guidance = 3
        XCTAssertEqual(try SamplingRequest(seed: 1).resolved(for: config).guidance, 3, "the model's default")
        let unconditional = try SamplingRequest(unconditional: true, seed: 1).resolved(for: config)
        XCTAssertNil(unconditional.classIndex)
        XCTAssertEqual(unconditional.guidance, 0)
        XCTAssertThrowsError(try SamplingRequest(classIndex: 1, unconditional: true).resolved(for: config)) { error in
            guard case let .invalidParameter(name, _) = error as? SamplingError else { return XCTFail("\(error)") }
            XCTAssertEqual(name, "class")
        }
        XCTAssertThrowsError(try SamplingRequest(unconditional: true, guidance: 2).resolved(for: config),
                             "an explicit guidance without a class is refused, not dropped")
    }

    func testTextIsParsedOnceForTheAPIAndTheCLI() throws {
        XCTAssertEqual(try SamplingRequest.sampler("DDPM"), .ddpm)
        XCTAssertEqual(try SamplingRequest.schedule("sigmoid"), .sigmoid)
        XCTAssertThrowsError(try SamplingRequest.sampler("euler")) { error in
            XCTAssertTrue("\(error)".contains("ddim, ddpm"), "\(error)")
        }
        XCTAssertThrowsError(try SamplingRequest.schedule("square"))
        let checkpoint = tinyCheckpoint()
        XCTAssertEqual(try SamplingRequest.classRow("dog", in: checkpoint), 1)
        XCTAssertEqual(try SamplingRequest.classRow("2", in: checkpoint), 2)
        XCTAssertThrowsError(try SamplingRequest.classRow("unicorn", in: checkpoint)) { error in
            guard case let .invalidParameter(name, _) = error as? SamplingError else { return XCTFail("\(error)") }
            XCTAssertEqual(name, "class")
        }
    }
}
