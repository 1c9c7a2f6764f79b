import CBLAS
import CKernels

/// The number of threads OpenBLAS uses for every matrix product in this process.
///
/// OpenBLAS keeps one global thread pool, so this is a process-wide setting: the daemon sets it once
/// at start-up (and `rind bench` sets it per run so that the product peak and the model use the same
/// number of threads).
public enum BLASThreads {
    /// Sets the thread count of OpenBLAS, oneDNN and the packed backend's pool (`MatmulBackend`);
    /// values below 1 are treated as 1.
    public static func set(_ n: Int) {
        openblas_set_num_threads(Int32(max(1, n)))
        rind_gemm_set_threads(Int32(max(1, n)))
        rind_pgemm_prepare(Int32(max(1, n)))   // the packed backend's pool, started now rather than in a step
    }

    /// The thread count OpenBLAS will use for the next product.
    public static var current: Int {
        Int(openblas_get_num_threads())
    }
}
