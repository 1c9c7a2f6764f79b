import RINTensor

// The weight sources RIN.swift builds the network from, asking each for its tensors by name, shape
// and role (the names themselves stay in RIN.swift).

/// What a tensor is for: decides the random initialisation of in-memory test and benchmark models.
enum WeightRole {
    case linearWeight(fanIn: Int)
    case bias
    case normWeight
    case normBias
    /// LN0 of latent self-conditioning, zero-initialised in training.
    case zeroInitNorm
    case embedding
}

/// Where the network's weights come from when it is built: a checkpoint file, random numbers, or
/// nothing (to list the tensors the architecture needs).
protocol WeightSource {
    /// Buffers the handed-out pointers live in; the network keeps them alive.
    var storages: [TensorStorage] { get }
    /// False for sources whose pointers hold no real values (the shape recorder).
    var providesValues: Bool { get }
    /// Adds a buffer made at load (a transposed weight) to `storages`.
    mutating func keep(_ storage: TensorStorage)
    /// Lets go of a buffer `take` made (a converted tensor) once its values were copied elsewhere
    /// (packed); tensors in the file's memory map stay.
    mutating func discard(_ pointer: UnsafePointer<Float>)
    mutating func take(_ name: String, _ shape: [Int], _ role: WeightRole) throws(CheckpointError) -> UnsafePointer<Float>
}

/// Reads the tensors of a safetensors file, checking shape and dtype; remembers which were used so
/// leftovers can be reported.
struct FileWeights: WeightSource {
    var providesValues: Bool { true }
    let file: SafeTensorsFile
    var used: Set<String> = []
    var storages: [TensorStorage] = []

    init(file: SafeTensorsFile) {
        self.file = file
        storages = [file.map]
    }

    mutating func keep(_ storage: TensorStorage) { storages.append(storage) }

    mutating func discard(_ pointer: UnsafePointer<Float>) {
        storages.removeAll { $0 !== file.map && UnsafePointer($0.floats) == pointer }
    }

    mutating func take(_ name: String, _ shape: [Int], _ role: WeightRole) throws(CheckpointError) -> UnsafePointer<Float> {
        guard let entry = file.entries[name] else { throw .missingTensor(path: file.path, tensor: name) }
        guard entry.shape == shape else {
            throw .wrongShape(path: file.path, tensor: name, expected: shape, found: entry.shape)
        }
        let (pointer, storage) = try file.floats(name)
        used.insert(name)
        if storage !== file.map { storages.append(storage) }
        return pointer
    }

    /// Fails on the first tensor (in name order) that the architecture did not ask for.
    func checkNoLeftovers() throws(CheckpointError) {
        if let extra = file.entries.keys.filter({ !used.contains($0) }).sorted().first {
            throw .unexpectedTensor(path: file.path, tensor: extra)
        }
    }
}

/// Deterministic random weights (SplitMix64 uniforms) for benchmarks and tests.
struct RandomWeights: WeightSource {
    var providesValues: Bool { true }
    var state: UInt64
    let zeroLatentConditioning: Bool
    var storages: [TensorStorage] = []

    init(seed: UInt64, zeroLatentConditioning: Bool) {
        state = seed &+ 0x5EED
        self.zeroLatentConditioning = zeroLatentConditioning
    }

    mutating func keep(_ storage: TensorStorage) { storages.append(storage) }

    mutating func discard(_ pointer: UnsafePointer<Float>) {
        storages.removeAll { UnsafePointer($0.floats) == pointer }
    }

    mutating func uniform() -> Float {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Float(Double(z >> 11) * 0x1p-53) * 2 - 1   // [-1, 1)
    }

    mutating func take(_ name: String, _ shape: [Int], _ role: WeightRole) throws(CheckpointError) -> UnsafePointer<Float> {
        let count = shape.reduce(1, *)
        let storage = TensorStorage(floats: count)
        let p = storage.floats
        for i in 0..<count {
            switch role {
            case .linearWeight(let fanIn): p[i] = uniform() / Float(fanIn).squareRoot()
            case .bias: p[i] = 0.02 * uniform()
            case .normWeight: p[i] = 1 + 0.1 * uniform()
            case .normBias: p[i] = 0.1 * uniform()
            case .zeroInitNorm: p[i] = zeroLatentConditioning ? 0 : 0.5 * uniform()
            case .embedding: p[i] = 0.5 * uniform()
            }
        }
        storages.append(storage)
        return UnsafePointer(p)
    }
}

/// Records the names and shapes asked for; hands out one shared dummy value (never read).
struct ShapeRecorder: WeightSource {
    var tensors: [(name: String, shape: [Int])] = []
    static let dummy = TensorStorage(floats: 1)
    var storages: [TensorStorage] { [Self.dummy] }
    var providesValues: Bool { false }
    mutating func keep(_ storage: TensorStorage) {}
    mutating func discard(_ pointer: UnsafePointer<Float>) {}
    mutating func take(_ name: String, _ shape: [Int], _ role: WeightRole) throws(CheckpointError) -> UnsafePointer<Float> {
        tensors.append((name, shape))
        return UnsafePointer(Self.dummy.floats)
    }
}

/// Random weights that also keep a copy of every tensor by name (for `randomTensors`): the same
/// seed gives the same values in the same construction order as `RINNetwork(config:randomSeed:)`.
struct RecordingRandomWeights: WeightSource {
    var random: RandomWeights
    var tensors: [SafeTensorsWriter.Tensor] = []
    var storages: [TensorStorage] { random.storages }
    var providesValues: Bool { true }
    mutating func keep(_ storage: TensorStorage) { random.keep(storage) }
    mutating func discard(_ pointer: UnsafePointer<Float>) { random.discard(pointer) }

    mutating func take(_ name: String, _ shape: [Int], _ role: WeightRole) throws(CheckpointError) -> UnsafePointer<Float> {
        let p = try random.take(name, shape, role)
        tensors.append(.init(name: name, shape: shape, values: Array(UnsafeBufferPointer(start: p, count: shape.reduce(1, *)))))
        return p
    }
}
