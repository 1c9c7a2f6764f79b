// What the packed-backend tests share: reproducible inputs and a run on every kernel path.
import RINTensor
import XCTest

extension XCTestCase {
    /// `count` values in [-scale, scale) from a 64-bit linear congruential generator: the same
    /// for a seed on every machine.
    func random(_ count: Int, seed: UInt64, scale: Float = 1) -> [Float] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return (Float(state >> 40) / Float(1 << 24) * 2 - 1) * scale
        }
    }

    /// Runs `body` on the `packed` backend with each kernel path this CPU has and `threads` matrix
    /// threads, then restores the path and thread count.
    func onEveryPackedPath(threads: Int, _ body: (KernelISA) throws -> Void) rethrows {
        let before = ComputePath.current
        let threadsBefore = BLASThreads.current
        defer { ComputePath.current = before; BLASThreads.set(threadsBefore) }
        BLASThreads.set(threads)
        for isa in KernelISA.supported {
            ComputePath.current = ComputePath(matmul: .packed, kernels: isa)
            try body(isa)
        }
    }
}
