import Foundation

/// The portable Gaussian noise shared by the Swift engine and the PyTorch reference
/// (checkpoints/README.md, "Noise: one recipe for Swift and Python"), so a seed gives the same
/// image on both sides.
///
/// Recipe, on wrapping unsigned 64-bit integers:
/// ```
/// mix(z):  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
///          z = (z ^ (z >> 27)) * 0x94D049BB133111EB
///          return z ^ (z >> 31)
/// key    = mix(mix(mix(seed + 0x9E3779B97F4A7C15) ^ i) ^ step)
/// pair q: r1 = mix(key + (2q + 1) * 0x9E3779B97F4A7C15), r2 = mix(key + (2q + 2) * 0x9E3779B97F4A7C15)
///         u1 = ((r1 >> 11) + 1) * 2^-53 in (0, 1];  u2 = (r2 >> 11) * 2^-53 in [0, 1)
///         rad = sqrt(-2 ln u1) (float64)
///         out[2q] = float32(rad cos(2 pi u2)); out[2q + 1] = float32(rad sin(2 pi u2))
/// ```
/// SplitMix64 (Steele, Lea, Flood 2014) supplies the bits and Box-Muller the normals; an odd
/// count drops the last value. `noise(seed, i, 0)` is image i's start x_T; DDPM step k adds
/// `noise(seed, i, k + 1)`.
public enum PortableNoise {
    static let golden: UInt64 = 0x9E37_79B9_7F4A_7C15

    /// SplitMix64's finaliser.
    @inline(__always)
    public static func mix(_ zIn: UInt64) -> UInt64 {
        var z = zIn
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Fills `out` (count floats) with image `image`'s normals for `step`. Allocates nothing.
    public static func fill(_ out: UnsafeMutablePointer<Float>, count: Int, seed: UInt64, image: Int, step: Int) {
        let key = mix(mix(mix(seed &+ golden) ^ UInt64(image)) ^ UInt64(step))
        var q: UInt64 = 0
        var index = 0
        while index < count {
            let r1 = mix(key &+ (2 &* q &+ 1) &* golden)
            let r2 = mix(key &+ (2 &* q &+ 2) &* golden)
            let u1 = Double((r1 >> 11) + 1) * 0x1p-53
            let u2 = Double(r2 >> 11) * 0x1p-53
            let rad = (-2 * log(u1)).squareRoot()
            out[index] = Float(rad * cos(2 * Double.pi * u2))
            if index + 1 < count { out[index + 1] = Float(rad * sin(2 * Double.pi * u2)) }
            index += 2
            q += 1
        }
    }

    /// `count` normals as an array (for tests and tools).
    public static func values(count: Int, seed: UInt64, image: Int, step: Int) -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            fill(buffer.baseAddress!, count: count, seed: seed, image: image, step: step)
            initialized = count
        }
    }
}
