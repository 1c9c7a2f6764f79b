/// Why a checkpoint could not be loaded. Every case names the file, and the tensor or config key
/// where there is one, so a user can fix the checkpoint from the message alone.
public enum CheckpointError: Error, CustomStringConvertible, Equatable {
    /// A required file (config.json or model.safetensors) does not exist or cannot be read.
    case missingFile(path: String)
    /// config.json is not valid JSON, or a key is missing or has the wrong type.
    case badConfig(path: String, key: String, message: String)
    /// A config value is present but not allowed (unknown architecture, format_version, bad shape...).
    case invalidConfig(path: String, key: String, message: String)
    /// The safetensors header is malformed (length, JSON, entries).
    case badHeader(path: String, message: String)
    /// A tensor the architecture needs is absent.
    case missingTensor(path: String, tensor: String)
    /// The file holds a tensor the architecture does not use.
    case unexpectedTensor(path: String, tensor: String)
    /// A tensor has the wrong shape.
    case wrongShape(path: String, tensor: String, expected: [Int], found: [Int])
    /// A tensor's dtype is not F32, F16 or BF16.
    case unsupportedDType(path: String, tensor: String, dtype: String)
    /// A tensor's byte range lies outside the file or does not match its shape and dtype.
    case truncated(path: String, tensor: String, message: String)

    public var description: String {
        switch self {
        case .missingFile(let path):
            return "checkpoint file missing or unreadable: \(path)"
        case .badConfig(let path, let key, let message):
            return "\(path): key '\(key)': \(message)"
        case .invalidConfig(let path, let key, let message):
            return "\(path): key '\(key)': \(message)"
        case .badHeader(let path, let message):
            return "\(path): bad safetensors header: \(message)"
        case .missingTensor(let path, let tensor):
            return "\(path): missing tensor '\(tensor)'"
        case .unexpectedTensor(let path, let tensor):
            return "\(path): unexpected tensor '\(tensor)' (not part of the RIN architecture)"
        case .wrongShape(let path, let tensor, let expected, let found):
            return "\(path): tensor '\(tensor)' has shape \(found), expected \(expected)"
        case .unsupportedDType(let path, let tensor, let dtype):
            return "\(path): tensor '\(tensor)' has unsupported dtype \(dtype) (F32, F16, BF16 are supported)"
        case .truncated(let path, let tensor, let message):
            return "\(path): tensor '\(tensor)': \(message)"
        }
    }
}
