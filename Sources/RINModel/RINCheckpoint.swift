import Foundation

/// A loaded checkpoint directory (`config.json` + `model.safetensors`, checkpoints/README.md):
/// its configuration and its immutable network, shared by every worker.
public final class RINCheckpoint: Sendable {
    /// The directory name: the model's name in the API.
    public let name: String
    public let directory: URL
    public let config: RINConfig
    /// The network with its weights (float32 weights stay in the file's memory map).
    public let network: RINNetwork
    /// The classes as users name them (ids, names, synonyms; the label space's table when the
    /// config names one).
    public let classes: ClassCatalog

    /// Loads and checks a checkpoint directory. Fails, naming the file and the key or tensor, on a
    /// missing file, bad JSON, an unknown architecture or format_version, a missing, extra or
    /// mis-shaped tensor, an unsupported dtype or a truncated file.
    public static func load(from directory: URL) throws(CheckpointError) -> RINCheckpoint {
        let configURL = directory.appendingPathComponent("config.json")
        guard let data = try? Data(contentsOf: configURL) else { throw .missingFile(path: configURL.path) }
        let config = try RINConfig.decode(data, file: configURL.path)
        let weightsPath = directory.appendingPathComponent("model.safetensors").path
        guard FileManager.default.isReadableFile(atPath: weightsPath) else { throw .missingFile(path: weightsPath) }
        let file = try SafeTensorsFile(path: weightsPath)
        var table: [ClassCatalog.Label]? = nil
        if let file = config.classes.labelSpace?.table {
            table = try LabelTable.load(path: directory.appendingPathComponent(file).path)
        }
        let network = try RINNetwork(config: config, file: file)
        return RINCheckpoint(name: directory.standardizedFileURL.lastPathComponent, directory: directory,
                             network: network, labelTable: table)
    }

    /// A checkpoint around an in-memory network (random weights for benchmarks and tests), with
    /// the label space's table when there is one.
    public init(name: String, directory: URL, network: RINNetwork, labelTable: [ClassCatalog.Label]? = nil) {
        self.name = name
        self.directory = directory
        self.config = network.config
        self.network = network
        self.classes = ClassCatalog(modelName: name, config: network.config, table: labelTable)
    }

    /// Writes a checkpoint directory with random weights for `config` (config.json +
    /// model.safetensors), as tests of every layer need; loading it gives the same network as
    /// `RINNetwork(config:randomSeed:zeroLatentConditioning:)`.
    public static func writeRandom(config: RINConfig, to directory: URL, seed: UInt64,
                                   zeroLatentConditioning: Bool = false,
                                   dtype: SafeTensorsWriter.DType = .f32) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try config.encoded().write(to: directory.appendingPathComponent("config.json"))
        let tensors = RINNetwork.randomTensors(for: config, seed: seed, zeroLatentConditioning: zeroLatentConditioning)
        try SafeTensorsWriter.encode(tensors, dtype: dtype).write(to: directory.appendingPathComponent("model.safetensors"))
    }
}
