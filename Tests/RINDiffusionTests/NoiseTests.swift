import Foundation
import RINDiffusion
import RINTestSupport
import XCTest

/// The portable noise generator against Tests/Fixtures/parity/noise.json, bit for bit.
final class NoiseTests: XCTestCase {
    func testMatchesRecordedBits() throws {
        let url = TestProject.fixtures.appendingPathComponent("parity/noise.json")
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        let cases = object["cases"] as! [[String: Any]]
        XCTAssertFalse(cases.isEmpty)
        for c in cases {
            let seed = UInt64(c["seed_string"] as! String)!
            let i = c["i"] as! Int, step = c["step"] as! Int, count = c["count"] as! Int
            let values = PortableNoise.values(count: count, seed: seed, image: i, step: step)
            let expected = (c["bits_hex"] as! [String]).map { UInt32($0.replacingOccurrences(of: "0x", with: ""), radix: 16)! }
            XCTAssertEqual(values.map(\.bitPattern), expected, "seed \(seed) i \(i) step \(step)")
            let key = PortableNoise.mix(PortableNoise.mix(PortableNoise.mix(seed &+ 0x9E37_79B9_7F4A_7C15) ^ UInt64(i)) ^ UInt64(step))
            XCTAssertEqual(key, UInt64((c["key_hex"] as! String).replacingOccurrences(of: "0x", with: ""), radix: 16))
        }
        print("noise: \(cases.count) cases bit-identical")
    }

    func testLooksStandardNormal() {
        let values = PortableNoise.values(count: 20001, seed: 123, image: 0, step: 0)
        let mean = values.reduce(0, +) / Float(values.count)
        let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(values.count)
        XCTAssertEqual(mean, 0, accuracy: 0.03)
        XCTAssertEqual(variance, 1, accuracy: 0.05)
        XCTAssertNotEqual(values, PortableNoise.values(count: 20001, seed: 123, image: 1, step: 0))
        XCTAssertNotEqual(values, PortableNoise.values(count: 20001, seed: 123, image: 0, step: 1))
        // A shorter draw is a prefix of a longer one (odd counts drop the pair's second value).
        XCTAssertEqual(Array(values.prefix(7)), PortableNoise.values(count: 7, seed: 123, image: 0, step: 0))
    }
}
