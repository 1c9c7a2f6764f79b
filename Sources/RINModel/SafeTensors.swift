import Foundation

/// Float32 storage that a tensor points into: an owned buffer (converted or random weights) or a
/// read-only memory map of a safetensors file. Immutable once built, so it is shared by all threads.
final class TensorStorage: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let byteCount: Int
    private let mapped: Bool

    /// An owned, zeroed buffer of `floats` values. With `hugePages`, a buffer of 2 MiB or more
    /// starts on a 2 MiB boundary and its whole 2 MiB pages are advised to the kernel's transparent
    /// huge pages (`madvise`; used where THP is `always` or `madvise`, ignored where `never`): a
    /// step streams every packed weight once, and with 4 KiB pages each 4 KiB of a weight panel
    /// cost a page walk (cold panels measured 3-12% faster on huge pages, one thread).
    init(floats: Int, hugePages: Bool = false) {
        byteCount = max(1, floats) * MemoryLayout<Float>.stride
        let huge = Self.hugePageBytes
        let advise = hugePages && byteCount >= huge
        base = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: advise ? huge : 64)
        if advise { _ = madvise(base, byteCount / huge * huge, MADV_HUGEPAGE) }
        base.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
        mapped = false
    }

    /// The x86-64 transparent huge page.
    static let hugePageBytes = 2 << 20

    /// A private read-only map of a whole file.
    init(mapping path: String) throws(CheckpointError) {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw .missingFile(path: path) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .missingFile(path: path) }
        let size = Int(info.st_size)
        guard size >= 8 else { throw .badHeader(path: path, message: "file is \(size) bytes, shorter than the 8-byte header length") }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw .missingFile(path: path)
        }
        base = p
        byteCount = size
        mapped = true
    }

    var floats: UnsafeMutablePointer<Float> { base.assumingMemoryBound(to: Float.self) }

    deinit {
        if mapped { munmap(base, byteCount) } else { base.deallocate() }
    }
}

/// A safetensors file opened by memory map: the header parsed, tensors read on demand.
///
/// Format: 8-byte little-endian header length N, N bytes of JSON
/// `{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}`, then the data;
/// offsets are relative to the first data byte.
struct SafeTensorsFile {
    enum DType: String { case f32 = "F32", f16 = "F16", bf16 = "BF16" }

    struct Entry {
        let dtype: String
        let shape: [Int]
        let begin: Int   // absolute byte offset in the file
        let end: Int
    }

    let path: String
    let map: TensorStorage
    let entries: [String: Entry]

    init(path: String) throws(CheckpointError) {
        self.path = path
        map = try TensorStorage(mapping: path)
        let bytes = map.base.assumingMemoryBound(to: UInt8.self)
        var headerLength: UInt64 = 0
        for i in 0..<8 { headerLength |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        guard headerLength <= UInt64(map.byteCount - 8) else {
            throw .badHeader(path: path, message: "header length \(headerLength) exceeds the file size \(map.byteCount)")
        }
        let dataStart = 8 + Int(headerLength)
        let json = Data(bytes: bytes + 8, count: Int(headerLength))
        guard let object = try? JSONSerialization.jsonObject(with: json), let header = object as? [String: Any] else {
            throw .badHeader(path: path, message: "header is not a JSON object")
        }
        var entries: [String: Entry] = [:]
        for (name, value) in header where name != "__metadata__" {
            guard let fields = value as? [String: Any],
                  let dtype = fields["dtype"] as? String,
                  let shape = fields["shape"] as? [Int],
                  let offsets = fields["data_offsets"] as? [Int], offsets.count == 2 else {
                throw .badHeader(path: path, message: "entry '\(name)' needs dtype, shape and data_offsets [begin, end]")
            }
            // Compared with the data's size, never added to `dataStart`: the header chooses the
            // offsets, and an addition near Int.max would trap instead of refusing the file.
            guard offsets[0] >= 0, offsets[1] >= offsets[0], offsets[1] <= map.byteCount - dataStart else {
                throw .truncated(path: path, tensor: name,
                                 message: "data_offsets \(offsets) lie outside the \(map.byteCount - dataStart) data bytes (file truncated?)")
            }
            guard shape.allSatisfy({ $0 >= 0 }) else {
                throw .badHeader(path: path, message: "entry '\(name)' has a negative dimension in \(shape)")
            }
            // A shape whose element count overflows cannot match any byte range; say so before
            // anything multiplies it.
            var elements = 1
            for dimension in shape {
                let (product, overflow) = elements.multipliedReportingOverflow(by: dimension)
                guard !overflow, product <= map.byteCount else {
                    throw .truncated(path: path, tensor: name, message: "shape \(shape) needs more bytes than the file holds")
                }
                elements = product
            }
            entries[name] = Entry(dtype: dtype, shape: shape, begin: dataStart + offsets[0], end: dataStart + offsets[1])
        }
        self.entries = entries
    }

    /// The float32 values of `name`: in place from the map for aligned F32, else converted into a
    /// new buffer (returned so the caller can keep it alive).
    func floats(_ name: String) throws(CheckpointError) -> (UnsafePointer<Float>, TensorStorage) {
        guard let e = entries[name] else { throw .missingTensor(path: path, tensor: name) }
        guard let dtype = DType(rawValue: e.dtype) else {
            throw .unsupportedDType(path: path, tensor: name, dtype: e.dtype)
        }
        let count = e.shape.reduce(1, *)
        let width = dtype == .f32 ? 4 : 2
        guard e.end - e.begin == count * width else {
            throw .truncated(path: path, tensor: name,
                             message: "holds \(e.end - e.begin) bytes but \(e.dtype) \(e.shape) needs \(count * width)")
        }
        let src = map.base + e.begin
        if dtype == .f32 && e.begin % MemoryLayout<Float>.alignment == 0 {
            return (UnsafePointer(src.assumingMemoryBound(to: Float.self)), map)
        }
        let storage = TensorStorage(floats: count)
        let out = storage.floats
        switch dtype {
        case .f32:
            memcpy(out, src, count * 4)
        case .f16:
            for i in 0..<count { out[i] = halfToFloat(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian) }
        case .bf16:
            for i in 0..<count {
                out[i] = Float(bitPattern: UInt32(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian) << 16)
            }
        }
        return (UnsafePointer(out), storage)
    }
}

/// IEEE 754 binary16 -> binary32, exact (including subnormals, infinities and NaN). Written out
/// rather than using `Float16`, which is not available on every platform Swift supports.
func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h >> 15) << 31
    let exponent = UInt32(h >> 10) & 0x1f
    let mantissa = UInt32(h) & 0x3ff
    if exponent == 0 {
        // Zero or subnormal: value = mantissa * 2^-24.
        let magnitude = Float(mantissa) * Float(sign: .plus, exponent: -24, significand: 1)
        return sign != 0 ? -magnitude : magnitude
    }
    if exponent == 0x1f { return Float(bitPattern: sign | 0x7f80_0000 | (mantissa << 13)) }
    return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
}

/// binary32 -> binary16 with round-to-nearest-even (used by the writer, for tests and tools).
func floatToHalf(_ f: Float) -> UInt16 {
    let bits = f.bitPattern
    let sign = UInt16((bits >> 16) & 0x8000)
    let exponent = Int((bits >> 23) & 0xff) - 127 + 15
    var mantissa = bits & 0x7f_ffff
    if (bits >> 23) & 0xff == 0xff { return sign | 0x7c00 | (mantissa != 0 ? 0x200 : 0) }
    if exponent >= 0x1f { return sign | 0x7c00 }
    if exponent <= 0 {
        if exponent < -10 { return sign }
        mantissa |= 0x80_0000
        let shift = UInt32(14 - exponent)
        var half = mantissa >> shift
        let rest = mantissa & ((1 << shift) - 1), halfway = UInt32(1) << (shift - 1)
        if rest > halfway || (rest == halfway && half & 1 == 1) { half += 1 }
        return sign | UInt16(half)
    }
    var half = UInt32(exponent) << 10 | (mantissa >> 13)
    let rest = mantissa & 0x1fff
    if rest > 0x1000 || (rest == 0x1000 && half & 1 == 1) { half += 1 }
    return sign | UInt16(half)
}

/// Writes safetensors files: used to save random checkpoints (for tests of every layer and for
/// tools) in the same format the PyTorch exporter writes.
public enum SafeTensorsWriter {
    /// The element type to store.
    public enum DType: String, Sendable { case f32 = "F32", f16 = "F16", bf16 = "BF16" }

    /// One named tensor.
    public struct Tensor: Sendable {
        public var name: String
        public var shape: [Int]
        public var values: [Float]
        public init(name: String, shape: [Int], values: [Float]) {
            self.name = name; self.shape = shape; self.values = values
        }
    }

    /// The bytes of a safetensors file holding `tensors`, header padded to 8 bytes.
    public static func encode(_ tensors: [Tensor], dtype: DType = .f32) -> Data {
        var header: [String: Any] = ["__metadata__": ["format": "pt"]]
        var body = Data()
        for t in tensors {
            let begin = body.count
            switch dtype {
            case .f32:
                for v in t.values { withUnsafeBytes(of: v.bitPattern.littleEndian) { body.append(contentsOf: $0) } }
            case .f16:
                for v in t.values { withUnsafeBytes(of: floatToHalf(v).littleEndian) { body.append(contentsOf: $0) } }
            case .bf16:
                // Round to nearest even on the upper 16 bits.
                for v in t.values {
                    let b = v.bitPattern
                    let rounded = UInt16(truncatingIfNeeded: (b &+ 0x7fff &+ ((b >> 16) & 1)) >> 16)
                    withUnsafeBytes(of: rounded.littleEndian) { body.append(contentsOf: $0) }
                }
            }
            header[t.name] = ["dtype": dtype.rawValue, "shape": t.shape, "data_offsets": [begin, body.count]]
        }
        var json = try! JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while (8 + json.count) % 8 != 0 { json.append(0x20) }
        var out = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        out.append(body)
        return out
    }
}

/// Reads whole safetensors files into arrays (every dtype converted to float32): for tests and
/// tools that compare against recorded tensors. The engine itself loads through the memory map.
public enum SafeTensorsReader {
    /// Every tensor of the file at `url`, by name.
    public static func read(_ url: URL) throws(CheckpointError) -> [String: SafeTensorsWriter.Tensor] {
        let file = try SafeTensorsFile(path: url.path)
        var out: [String: SafeTensorsWriter.Tensor] = [:]
        for (name, entry) in file.entries {
            let (pointer, storage) = try file.floats(name)
            let count = entry.shape.reduce(1, *)
            out[name] = .init(name: name, shape: entry.shape, values: Array(UnsafeBufferPointer(start: pointer, count: count)))
            withExtendedLifetime(storage) {}
        }
        return out
    }
}
