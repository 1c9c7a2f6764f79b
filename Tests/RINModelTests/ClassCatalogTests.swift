import Foundation
import RINModel
import XCTest

/// Class ids, names and synonyms resolve to model rows, in a label space (ImageNet-like) and
/// without one (CIFAR-like); every way a lookup fails has its own message.
final class ClassCatalogTests: XCTestCase {
    /// Six rows of ImageNet-1k's table, with both cranes and both maillots.
    let tableText = """
        imagenet1k_index\twnid\tname\tsynonyms
        0\tn01440764\ttench\ttench, Tinca tinca
        134\tn02012849\tcrane\tcrane
        207\tn02099601\tgolden retriever\tgolden retriever
        281\tn02123045\ttabby\ttabby, tabby cat
        517\tn03126707\tcrane\tcrane
        638\tn03710637\tmaillot\tmaillot
        639\tn03710721\tmaillot\tmaillot, tank suit

        """

    /// A model of three ImageNet classes: golden retriever, tabby, crane (the bird).
    func imagenetCatalog() throws -> ClassCatalog {
        var config = tinyConfig(classes: 3)
        config.classes.names = ["golden retriever", "tabby", "crane"]
        config.classes.labelSpace = .init(name: "imagenet-1k", ids: [207, 281, 134], table: "imagenet-1k-classes.tsv")
        try config.validate()
        let table = try LabelTable.parse(tableText, path: "imagenet-1k-classes.tsv")
        return ClassCatalog(modelName: "imagenet64", config: config, table: table)
    }

    func message(_ catalog: ClassCatalog, _ text: String) -> String? {
        do {
            _ = try catalog.resolve(text)
            return nil
        } catch {
            return error.description
        }
    }

    func testIdsNamesAndSynonymsResolveCaseInsensitively() throws {
        let catalog = try imagenetCatalog()
        XCTAssertEqual(try catalog.resolve("207"), 0)
        XCTAssertEqual(try catalog.resolve("281"), 1)
        XCTAssertEqual(try catalog.resolve("golden retriever"), 0)
        XCTAssertEqual(try catalog.resolve("Golden_Retriever"), 0)
        XCTAssertEqual(try catalog.resolve("GOLDEN  RETRIEVER"), 0)
        XCTAssertEqual(try catalog.resolve("tabby cat"), 1)
        XCTAssertEqual(try catalog.resolve("Tabby_Cat"), 1)
        XCTAssertEqual(catalog.label(row: 0), .init(id: 207, name: "golden retriever", synonyms: ["golden retriever"]))
        XCTAssertEqual(catalog.spaceTitle, "ImageNet")
    }

    func testClassesOutsideTheModelAreNamed() throws {
        let catalog = try imagenetCatalog()
        XCTAssertEqual(message(catalog, "0"),
                       "ImageNet class 0 (tench) is not one of the 3 classes of model 'imagenet64'; the model's classes are listed by GET /models")
        XCTAssertEqual(message(catalog, "tinca tinca"),
                       "ImageNet class 0 (tench) is not one of the 3 classes of model 'imagenet64'; the model's classes are listed by GET /models")
        XCTAssertEqual(message(catalog, "1000"),
                       "ImageNet has no class 1000; model 'imagenet64' has 3 classes; the model's classes are listed by GET /models")
        XCTAssertEqual(message(catalog, "-1"),
                       "ImageNet has no class -1; model 'imagenet64' has 3 classes; the model's classes are listed by GET /models")
        let unknown = try XCTUnwrap(message(catalog, "unicorn"))
        XCTAssertTrue(unknown.hasPrefix("unknown class 'unicorn': model 'imagenet64' takes one of its 3 class ids or names"), unknown)
    }

    func testAmbiguousNamesListTheCandidates() throws {
        let catalog = try imagenetCatalog()
        XCTAssertEqual(message(catalog, "crane"),
                       "class 'crane' is ambiguous in ImageNet: it names 134 (crane) or 517 (crane, not in this model); give the id")
        XCTAssertEqual(message(catalog, "MAILLOT"),
                       "class 'MAILLOT' is ambiguous in ImageNet: it names 638 (maillot, not in this model) or 639 (maillot [tank suit], not in this model); give the id")
        XCTAssertEqual(try catalog.resolve("134"), 2, "the id picks one crane")
    }

    func testModelsWithoutALabelSpaceKeepRowsAndNames() throws {
        let config = tinyConfig(classes: 3)   // names c0, c1, c2
        let catalog = ClassCatalog(modelName: "cifar10", config: config)
        XCTAssertNil(catalog.spaceTitle)
        XCTAssertEqual(try catalog.resolve("2"), 2)
        XCTAssertEqual(try catalog.resolve("C1"), 1)
        XCTAssertEqual(message(catalog, "207"), "class 207 is out of range: model 'cifar10' has classes 0...2")
        XCTAssertEqual(message(catalog, "-1"), "class -1 is out of range: model 'cifar10' has classes 0...2")
        XCTAssertTrue(message(catalog, "dog")!.hasPrefix("unknown class 'dog': model 'cifar10' takes one of its 3 class ids or names (for example c0, c1, c2)"))
        let unconditional = ClassCatalog(modelName: "u", config: tinyConfig(classes: 0))
        XCTAssertEqual(message(unconditional, "1"), "model 'u' is unconditional and takes no class (got '1')")
    }

    func testLabelSpaceIsValidatedAndTheTableLoaded() throws {
        var config = tinyConfig(classes: 3)
        config.classes.labelSpace = .init(name: "imagenet-1k", ids: [207, 281], table: nil)
        XCTAssertThrowsError(try config.validate()) { error in
            guard case .invalidConfig(_, let key, _) = error as! CheckpointError else { return XCTFail("\(error)") }
            XCTAssertEqual(key, "classes.label_space.ids")
        }
        config.classes.labelSpace = .init(name: "imagenet-1k", ids: [207, 281, 207], table: nil)
        XCTAssertThrowsError(try config.validate())
        config.classes.labelSpace = .init(name: "imagenet-1k", ids: [207, 281, 134], table: "../etc/passwd")
        XCTAssertThrowsError(try config.validate()) { error in
            guard case .invalidConfig(_, let key, _) = error as! CheckpointError else { return XCTFail("\(error)") }
            XCTAssertEqual(key, "classes.label_space.table")
        }

        // A checkpoint directory: the table is read at load; a missing table is a missing file.
        config.classes.labelSpace = .init(name: "imagenet-1k", ids: [207, 281, 134], table: "imagenet-1k-classes.tsv")
        let directory = temporaryDirectory()
        try RINCheckpoint.writeRandom(config: config, to: directory, seed: 1)
        XCTAssertThrowsError(try RINCheckpoint.load(from: directory)) { error in
            guard case .missingFile(let path) = error as! CheckpointError else { return XCTFail("\(error)") }
            XCTAssertTrue(path.hasSuffix("imagenet-1k-classes.tsv"))
        }
        try tableText.write(to: directory.appendingPathComponent("imagenet-1k-classes.tsv"), atomically: true, encoding: .utf8)
        let checkpoint = try RINCheckpoint.load(from: directory)
        XCTAssertEqual(try checkpoint.classes.resolve("golden_retriever"), 0)
        XCTAssertEqual(checkpoint.config.classes.labelSpace?.ids, [207, 281, 134])
        // The label space survives a round trip through config.json.
        XCTAssertEqual(try RINConfig.decode(config.encoded()), config)

        try "id\twnid\tname\nx\ty\tz\n".write(to: directory.appendingPathComponent("imagenet-1k-classes.tsv"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try RINCheckpoint.load(from: directory)) { error in
            guard case .invalidConfig(_, let key, _) = error as! CheckpointError else { return XCTFail("\(error)") }
            XCTAssertEqual(key, "line 2")
        }
    }
}
