import CBLAS
import CKernels
import Foundation

/// What runs the matrix products, chosen once per process at run time.
///
/// OpenBLAS is the portable library every build links. oneDNN (Debian's `libdnnl2`) is opened with
/// dlopen where it is installed; its sgemm JIT-compiles kernels for the widest vector unit the CPU
/// has. `packed` is rind's own: micro-kernels for AVX-512 and AVX2 on linear weights packed once at
/// load, and attention of all heads on the same kernels, split into small tasks over a persistent
/// pool; it holds about 26% less weight memory and its rows do not depend on the batch.
/// `automatic` prefers `packed` on CPUs with AVX-512 or AVX2, where interleaved side-by-side runs
/// measured it faster than oneDNN on every benchmark row (docs/PERFORMANCE.md; AVX2 measured on an
/// AVX-512 CPU held to AVX2 with `rind bench --cpuid-mask avx2`), and faster than OpenBLAS, whose
/// distribution build may predate the CPU model and fall back to generic kernels (Debian's 0.3.21
/// runs its SSE3 "Prescott" kernels on the Sapphire Rapids machines this project is built on). On
/// CPUs without AVX2 it takes OpenBLAS. The operator may force one with
/// RIND_MATMUL=openblas|onednn|packed, and make rind treat the CPU as an AVX2-only or baseline one
/// with RIND_CPU_ISA=avx2|baseline (`rind_cpu_isa_cap`).
public enum MatmulBackend: String, CaseIterable, Sendable, CustomStringConvertible {
    case openBLAS = "openblas"
    case oneDNN = "onednn"
    /// rind's own micro-kernels (Sources/CKernels/rind_pgemm.c) on weights packed once at load for
    /// the linear layers, and attention on the same kernels (`PackedAttention`), split into tasks
    /// over a persistent thread pool; the few other products go to oneDNN where installed, else
    /// OpenBLAS. Weights are packed when a network is built while this backend is in use
    /// (`PackedLinearWeight`).
    case packed = "packed"

    public var description: String { rawValue }

    /// Backends this process can use, OpenBLAS first.
    public static var available: [MatmulBackend] {
        (rind_dnnl_available() != 0 ? [.openBLAS, .oneDNN] : [.openBLAS]) + [.packed]
    }

    /// The choice made when nothing is set: RIND_MATMUL if it names an available backend, else
    /// `packed` when the CPU has AVX-512 or AVX2, else OpenBLAS.
    public static let automatic: MatmulBackend = {
        if let forced = ProcessInfo.processInfo.environment["RIND_MATMUL"],
           let backend = MatmulBackend(rawValue: forced.lowercased()), available.contains(backend) {
            return backend
        }
        return cpuVectorISA == "avx512" || cpuVectorISA == "avx2" ? .packed : .openBLAS
    }()

    /// The backend every product of this process uses now (process-wide, like `BLASThreads`).
    public static var current: MatmulBackend {
        get {
            switch rind_gemm_backend() {
            case 0: return .openBLAS
            case 1: return .oneDNN
            case 2: return .packed
            default: return automatic
            }
        }
        set {
            precondition(available.contains(newValue), "MatmulBackend: \(newValue) is not available")
            rind_gemm_set_backend(newValue == .openBLAS ? 0 : newValue == .oneDNN ? 1 : 2)
        }
    }

    /// What is wrong with the engine's environment variables, in one sentence, or nil when each is
    /// unset or valid: RIND_MATMUL (a backend of `available`) and RIND_CPU_ISA (avx512, avx2 or
    /// baseline: the widest vector unit rind may use, `rind_cpu_isa_cap`). `rind` refuses to start
    /// on it rather than silently run another path.
    public static var environmentProblem: String? {
        let environment = ProcessInfo.processInfo.environment
        if let value = environment["RIND_CPU_ISA"], !value.isEmpty, rind_cpu_isa_cap() < 0 {
            return "RIND_CPU_ISA=\(value) is not one of avx512, avx2, baseline"
        }
        if let value = environment["RIND_MATMUL"], !value.isEmpty {
            guard let backend = MatmulBackend(rawValue: value.lowercased()) else {
                return "RIND_MATMUL=\(value) is not one of openblas, onednn, packed"
            }
            guard available.contains(backend) else {
                return "RIND_MATMUL=\(value): oneDNN (libdnnl) is not installed here"
            }
        }
        return nil
    }

    /// The widest x86 vector extension of this CPU, as capped by RIND_CPU_ISA: "avx512", "avx2",
    /// "sse" or "other".
    public static var cpuVectorISA: String { String(cString: rind_cpu_vector_isa()) }

    /// A one-line description for benchmarks and logs: backend, library version, kernels.
    public static var summary: String {
        let blas = "OpenBLAS \(String(cString: openblas_get_config()).split(separator: " ").dropFirst().first ?? "?") (core \(String(cString: openblas_get_corename())))"
        let dnnl = rind_dnnl_available() != 0 ? "oneDNN \(String(cString: rind_dnnl_version()))" : "oneDNN not installed"
        return "matmul \(current) [\(blas); \(dnnl); CPU vector ISA \(cpuVectorISA)]"
    }
}

/// Below this many FLOPs a oneDNN product runs on one thread.
@usableFromInline let smallProductFlops = 4_000_000

/// Row-major c (M, N) = alpha op(a) op(b) + beta c on the current backend; op transposes when asked.
@usableFromInline
func gemm(
    transA: Bool, transB: Bool, _ M: Int, _ N: Int, _ K: Int, alpha: Float,
    _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
    beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
) {
    let backend = MatmulBackend.current
    if backend == .oneDNN || (backend == .packed && rind_dnnl_available() != 0) {
        // Products too small to split run on the calling thread alone: waking the OpenMP team costs
        // more than it saves (attention's per-head products are 1-4 MFLOP).
        let threads = 2 * M * N * K < smallProductFlops ? 1 : rind_gemm_threads()
        let status = rind_dnnl_sgemm(transA ? 84 : 78, transB ? 84 : 78, M, N, K, alpha, a, lda, b, ldb,
                                     beta, c, ldc, threads)
        precondition(status == 0, "dnnl_sgemm failed with status \(status) for (\(M), \(N), \(K))")
    } else {
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(M), Int32(N), Int32(K), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}

/// One way of running the engine: a matrix-product backend and a row-kernel code path. The test
/// suite runs the kernels and the parity checks once per path this machine supports.
public struct ComputePath: Sendable, Equatable, CustomStringConvertible {
    public var matmul: MatmulBackend
    public var kernels: KernelISA

    public init(matmul: MatmulBackend, kernels: KernelISA) {
        self.matmul = matmul
        self.kernels = kernels
    }

    public var description: String { "matmul \(matmul), kernels \(kernels)" }

    /// Every combination this machine supports.
    public static var supported: [ComputePath] {
        MatmulBackend.available.flatMap { m in KernelISA.supported.map { ComputePath(matmul: m, kernels: $0) } }
    }

    /// The path in use (process-wide).
    public static var current: ComputePath {
        get { ComputePath(matmul: MatmulBackend.current, kernels: KernelISA.current) }
        set {
            MatmulBackend.current = newValue.matmul
            KernelISA.current = newValue.kernels
        }
    }

    /// Runs `body` once on each supported path, then restores the path in use.
    public static func forEach(_ body: (ComputePath) throws -> Void) rethrows {
        let before = current
        defer { current = before }
        for path in supported {
            current = path
            try body(path)
        }
    }
}
