import Foundation
import RINModel
import XCTest

/// Every way loading a checkpoint can fail gives its own error naming the file and the key or tensor.
final class LoaderErrorTests: XCTestCase {
    let config = tinyConfig()

    /// A valid checkpoint directory whose files the test then breaks.
    func validCheckpoint() throws -> URL {
        let directory = temporaryDirectory()
        try RINCheckpoint.writeRandom(config: config, to: directory, seed: 3)
        return directory
    }

    func load(_ directory: URL) -> CheckpointError? {
        do {
            _ = try RINCheckpoint.load(from: directory)
            return nil
        } catch {
            return error
        }
    }

    func configJSON(_ directory: URL) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("config.json"))) as! [String: Any]
    }

    func writeConfig(_ object: [String: Any], _ directory: URL) throws {
        try JSONSerialization.data(withJSONObject: object).write(to: directory.appendingPathComponent("config.json"))
    }

    func writeTensors(_ tensors: [SafeTensorsWriter.Tensor], _ directory: URL) throws {
        try SafeTensorsWriter.encode(tensors).write(to: directory.appendingPathComponent("model.safetensors"))
    }

    func testValidCheckpointLoadsAndNamesItself() throws {
        let directory = try validCheckpoint()
        let checkpoint = try RINCheckpoint.load(from: directory)
        XCTAssertEqual(checkpoint.config, config)
        XCTAssertEqual(checkpoint.name, directory.lastPathComponent)
    }

    func testMissingConfig() throws {
        let directory = try validCheckpoint()
        try FileManager.default.removeItem(at: directory.appendingPathComponent("config.json"))
        guard case .missingFile(let path)? = load(directory) else { return XCTFail("expected missingFile") }
        XCTAssertTrue(path.hasSuffix("config.json"))
    }

    func testMissingWeights() throws {
        let directory = try validCheckpoint()
        try FileManager.default.removeItem(at: directory.appendingPathComponent("model.safetensors"))
        guard case .missingFile(let path)? = load(directory) else { return XCTFail("expected missingFile") }
        XCTAssertTrue(path.hasSuffix("model.safetensors"))
    }

    func testConfigNotJSON() throws {
        let directory = try validCheckpoint()
        try Data("{ not json".utf8).write(to: directory.appendingPathComponent("config.json"))
        guard case .badConfig(let path, _, let message)? = load(directory) else { return XCTFail("expected badConfig") }
        XCTAssertTrue(path.hasSuffix("config.json"))
        XCTAssertTrue(message.contains("JSON"), message)
    }

    func testMissingKeysAreNamed() throws {
        let directory = try validCheckpoint()
        var object = try configJSON(directory)
        object.removeValue(forKey: "blocks")
        try writeConfig(object, directory)
        XCTAssertEqual(load(directory).map { "\($0)" }?.contains("'blocks'"), true)

        object = try configJSON(try validCheckpoint())
        var image = object["image"] as! [String: Any]
        image.removeValue(forKey: "height")
        object["image"] = image
        try writeConfig(object, directory)
        guard case .badConfig(_, let key, _)? = load(directory) else { return XCTFail("expected badConfig") }
        XCTAssertEqual(key, "image.height")
    }

    func testWrongTypeIsNamed() throws {
        let directory = try validCheckpoint()
        var object = try configJSON(directory)
        object["layers_per_block"] = "two"
        try writeConfig(object, directory)
        guard case .badConfig(_, let key, _)? = load(directory) else { return XCTFail("expected badConfig") }
        XCTAssertEqual(key, "layers_per_block")
    }

    func testUnknownArchitectureAndVersion() throws {
        let directory = try validCheckpoint()
        var object = try configJSON(directory)
        object["architecture"] = "dit"
        try writeConfig(object, directory)
        guard case .badConfig(_, let key, let message)? = load(directory) else { return XCTFail("expected badConfig") }
        XCTAssertEqual(key, "architecture")
        XCTAssertTrue(message.contains("dit"))

        object = try configJSON(try validCheckpoint())
        object["format_version"] = 2
        try writeConfig(object, directory)
        guard case .badConfig(_, let versionKey, _)? = load(directory) else { return XCTFail("expected badConfig") }
        XCTAssertEqual(versionKey, "format_version")
    }

    func testInvalidValuesAreNamed() throws {
        let cases: [(String, (inout RINConfig) -> Void)] = [
            ("image.height", { $0.image.height = 7 }),
            ("latents.heads", { $0.latents.heads = 5 }),
            ("interface.heads", { $0.interface.heads = 5 }),
            ("latents.dim", { $0.latents.dim = 20; $0.latents.heads = 2 }),
            ("latents.count", { $0.latents.count = 2 }),
            ("classes.names", { $0.classes.names = ["a"] }),
            ("sampling.sampler", { $0.sampling.sampler = "euler" }),
            ("sampling.steps", { $0.sampling.steps = 0 }),
            ("interface.mlp_ratio", { $0.interface.mlpRatio = 0.01 }),
            ("layers_per_block", { $0.layersPerBlock = -1 }),
        ]
        for (key, breakIt) in cases {
            var broken = config
            breakIt(&broken)
            XCTAssertThrowsError(try broken.validate()) { error in
                guard case .invalidConfig(_, let named, _) = error as! CheckpointError else { return XCTFail("\(key): \(error)") }
                XCTAssertEqual(named, key)
            }
        }
    }

    func testOptionalKeysDefault() throws {
        let directory = try validCheckpoint()
        var object = try configJSON(directory)
        object.removeValue(forKey: "sampling")
        object.removeValue(forKey: "training")
        var classes = object["classes"] as! [String: Any]
        classes.removeValue(forKey: "null_class")
        object["classes"] = classes
        object["extra_key_ignored"] = 1
        try writeConfig(object, directory)
        let decoded = try RINConfig.decode(Data(contentsOf: directory.appendingPathComponent("config.json")))
        XCTAssertEqual(decoded.sampling, RINConfig.Sampling())
        XCTAssertNil(decoded.training)
        XCTAssertFalse(decoded.classes.nullClass)
        XCTAssertEqual(decoded.sigmoidParameters.tau, 0.9)
    }

    func testMissingTensorIsNamed() throws {
        let directory = try validCheckpoint()
        let tensors = RINNetwork.randomTensors(for: config, seed: 1).filter { $0.name != "blocks.1.write.attn.v.bias" }
        try writeTensors(tensors, directory)
        XCTAssertEqual(load(directory), .missingTensor(path: directory.appendingPathComponent("model.safetensors").path,
                                                      tensor: "blocks.1.write.attn.v.bias"))
    }

    func testUnexpectedTensorIsNamed() throws {
        let directory = try validCheckpoint()
        let tensors = RINNetwork.randomTensors(for: config, seed: 1) + [.init(name: "blocks.2.read.attn.q.bias", shape: [1], values: [0])]
        try writeTensors(tensors, directory)
        guard case .unexpectedTensor(_, let name)? = load(directory) else { return XCTFail("expected unexpectedTensor") }
        XCTAssertEqual(name, "blocks.2.read.attn.q.bias")
    }

    func testMisShapedTensorIsNamed() throws {
        let directory = try validCheckpoint()
        let tensors = RINNetwork.randomTensors(for: config, seed: 1).map { t -> SafeTensorsWriter.Tensor in
            t.name == "pos_embed" ? .init(name: t.name, shape: [t.shape[1], t.shape[0]], values: t.values) : t
        }
        try writeTensors(tensors, directory)
        guard case .wrongShape(_, let name, let expected, let found)? = load(directory) else { return XCTFail("expected wrongShape") }
        XCTAssertEqual(name, "pos_embed")
        XCTAssertEqual(expected, [config.tokenCount, config.interface.dim])
        XCTAssertEqual(found, [config.interface.dim, config.tokenCount])
    }

    /// Replaces the JSON header of a safetensors file (keeping the data) and writes it.
    func rewriteHeader(_ directory: URL, _ edit: (inout [String: Any]) -> Void) throws {
        let url = directory.appendingPathComponent("model.safetensors")
        let data = try Data(contentsOf: url)
        let length = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        var header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + length))) as! [String: Any]
        edit(&header)
        // Offsets are relative to the data, so a header of another length keeps them valid.
        let json = try JSONSerialization.data(withJSONObject: header)
        var prefix = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { prefix.append(contentsOf: $0) }
        try (prefix + json + data.suffix(from: 8 + length)).write(to: url)
    }

    func testUnsupportedDTypeIsNamed() throws {
        let directory = try validCheckpoint()
        try rewriteHeader(directory) { header in
            var entry = header["readout.bias"] as! [String: Any]
            entry["dtype"] = "I32"
            header["readout.bias"] = entry
        }
        guard case .unsupportedDType(_, let name, let dtype)? = load(directory) else { return XCTFail("expected unsupportedDType") }
        XCTAssertEqual(name, "readout.bias")
        XCTAssertEqual(dtype, "I32")
    }

    func testTruncatedFile() throws {
        let directory = try validCheckpoint()
        let url = directory.appendingPathComponent("model.safetensors")
        let data = try Data(contentsOf: url)
        try data.prefix(data.count - 10).write(to: url)
        guard case .truncated(_, _, let message)? = load(directory) else { return XCTFail("expected truncated") }
        XCTAssertTrue(message.contains("outside"), message)
    }

    func testOffsetsNotMatchingShape() throws {
        let directory = try validCheckpoint()
        try rewriteHeader(directory) { header in
            var entry = header["readout.bias"] as! [String: Any]
            let offsets = entry["data_offsets"] as! [Int]
            entry["data_offsets"] = [offsets[0], offsets[1] - 4]
            header["readout.bias"] = entry
        }
        guard case .truncated(_, let name, _)? = load(directory) else { return XCTFail("expected truncated") }
        XCTAssertEqual(name, "readout.bias")
    }

    func testOverflowingShapeIsRefusedNotTrapped() throws {
        let directory = try validCheckpoint()
        try rewriteHeader(directory) { header in
            var entry = header["readout.bias"] as! [String: Any]
            entry["shape"] = [1 << 40, 1 << 40]
            header["readout.bias"] = entry
        }
        guard case .truncated(_, let name, _)? = load(directory) else { return XCTFail("expected truncated") }
        XCTAssertEqual(name, "readout.bias")
    }

    /// Offsets near Int.max must be refused with an error, not trap on `dataStart + offset`
    /// (the header is the file's to choose: a hostile or corrupt file must not kill the daemon).
    func testHostileOffsetsAreRefusedNotTrapped() throws {
        let url = temporaryDirectory().appendingPathComponent("hostile.safetensors")
        for offsets in [[0, Int.max], [Int.max - 1, Int.max], [Int.max, Int.max], [0, Int.max - 7]] {
            let json = Data(#"{"x": {"dtype": "F32", "shape": [1], "data_offsets": [\#(offsets[0]), \#(offsets[1])]}}"#.utf8)
            var file = Data()
            withUnsafeBytes(of: UInt64(json.count).littleEndian) { file.append(contentsOf: $0) }
            try (file + json + Data(count: 4)).write(to: url)
            XCTAssertThrowsError(try SafeTensorsReader.read(url), "data_offsets \(offsets)") { error in
                guard case .truncated(_, let name, let message)? = error as? CheckpointError else {
                    return XCTFail("expected truncated for \(offsets), got \(error)")
                }
                XCTAssertEqual(name, "x")
                XCTAssertTrue(message.contains("outside"), message)
            }
        }
    }

    func testBadHeaders() throws {
        let directory = try validCheckpoint()
        let url = directory.appendingPathComponent("model.safetensors")
        try Data([1, 2, 3]).write(to: url)
        guard case .badHeader? = load(directory) else { return XCTFail("expected badHeader for a 3-byte file") }

        var huge = Data()
        withUnsafeBytes(of: UInt64(1 << 40).littleEndian) { huge.append(contentsOf: $0) }
        try (huge + Data("{}".utf8)).write(to: url)
        guard case .badHeader(_, let message)? = load(directory) else { return XCTFail("expected badHeader for a huge length") }
        XCTAssertTrue(message.contains("exceeds"), message)

        var garbage = Data()
        withUnsafeBytes(of: UInt64(4).littleEndian) { garbage.append(contentsOf: $0) }
        try (garbage + Data("[1,2".utf8)).write(to: url)
        guard case .badHeader? = load(directory) else { return XCTFail("expected badHeader for a non-JSON header") }

        var badEntry = Data()
        let json = Data(#"{"x": {"dtype": "F32"}}"#.utf8)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { badEntry.append(contentsOf: $0) }
        try (badEntry + json).write(to: url)
        guard case .badHeader(_, let entryMessage)? = load(directory) else { return XCTFail("expected badHeader for an incomplete entry") }
        XCTAssertTrue(entryMessage.contains("'x'"), entryMessage)
    }

    func testErrorDescriptionsNameFileAndTensor() {
        let error = CheckpointError.wrongShape(path: "/c/model.safetensors", tensor: "readout.weight", expected: [4, 2], found: [2, 4])
        XCTAssertEqual("\(error)", "/c/model.safetensors: tensor 'readout.weight' has shape [2, 4], expected [4, 2]")
    }

    func testHalfAndBFloat16AreConvertedAtLoad() throws {
        let reference = RINNetwork.randomTensors(for: config, seed: 5)
        for dtype in [SafeTensorsWriter.DType.f16, .bf16] {
            let directory = temporaryDirectory()
            try RINCheckpoint.writeRandom(config: config, to: directory, seed: 5, dtype: dtype)
            _ = try RINCheckpoint.load(from: directory)
            let read = try SafeTensorsReader.read(directory.appendingPathComponent("model.safetensors"))
            let relative: Float = dtype == .f16 ? 1.0 / 1024 : 1.0 / 128
            for t in reference {
                let got = read[t.name]!.values
                for (a, b) in zip(got, t.values) {
                    XCTAssertEqual(a, b, accuracy: relative * max(abs(b), 1e-4) + 1e-7, "\(dtype) \(t.name)")
                }
            }
        }
        // Exact conversions of representable values, subnormals and specials.
        let special: [Float] = [0, -0.0, 1, -2, 65504, 6.1035156e-05, 5.9604645e-08, .infinity, -.infinity]
        let directory = temporaryDirectory()
        try SafeTensorsWriter.encode([.init(name: "s", shape: [special.count], values: special)], dtype: .f16)
            .write(to: directory.appendingPathComponent("s.safetensors"))
        XCTAssertEqual(try SafeTensorsReader.read(directory.appendingPathComponent("s.safetensors"))["s"]!.values, special)
    }
}
