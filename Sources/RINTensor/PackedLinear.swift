import CKernels

/// A linear layer's weight packed once at load for the `packed` matrix backend: column panels of
/// `panelWidth` outputs, each k-major (Sources/CKernels/include/rind_pgemm.h has the layout).
/// The caller owns the buffer (`floatCount` floats); this only describes it.
public struct PackedLinearWeight: @unchecked Sendable {
    public static let panelWidth = Int(RIND_PGEMM_PANEL)
    public let values: UnsafePointer<Float>
    public let inputs: Int
    public let outputs: Int

    /// Floats the packed form of an (outputs, inputs) weight takes.
    public static func floatCount(inputs: Int, outputs: Int) -> Int {
        rind_pgemm_packed_floats(inputs, outputs)
    }

    /// Packs `weight` (outputs, inputs), row-major as PyTorch stores it, into `buffer`
    /// (`floatCount` floats).
    public init(packing weight: UnsafePointer<Float>, inputs: Int, outputs: Int, into buffer: UnsafeMutablePointer<Float>) {
        rind_pgemm_pack(buffer, weight, inputs, outputs)
        values = UnsafePointer(buffer)
        self.inputs = inputs
        self.outputs = outputs
    }

    /// What a product does with inp W^T + bias.
    public enum Mode: Int32 { case store = 0, accumulate = 1, gelu = 2 }

    /// One product with this weight, described for `applyTogether`: `apply`'s arguments.
    public struct Product {
        public let weight: PackedLinearWeight
        public let out: UnsafeMutablePointer<Float>
        public let ldOut: Int
        public let inp: UnsafePointer<Float>
        public let ldInp: Int
        public let bias: UnsafePointer<Float>?
        public let rows: Int
        public let mode: Mode

        public init(_ weight: PackedLinearWeight, _ out: UnsafeMutablePointer<Float>, ldOut: Int, _ inp: UnsafePointer<Float>,
                    ldInp: Int, bias: UnsafePointer<Float>?, rows: Int, mode: Mode) {
            self.weight = weight; self.out = out; self.ldOut = ldOut; self.inp = inp; self.ldInp = ldInp
            self.bias = bias; self.rows = rows; self.mode = mode
        }

        var job: rind_pgemm_job {
            rind_pgemm_job(out: out, ldOut: ldOut, inp: inp, ldInp: ldInp, packed: weight.values, bias: bias,
                           N: rows, C: weight.inputs, OC: weight.outputs, mode: mode.rawValue)
        }

        /// Runs this product alone.
        public func apply() { weight.apply(out, ldOut: ldOut, inp, ldInp: ldInp, bias: bias, rows: rows, mode: mode) }
    }

    /// Three independent products (no output is another's input, none overlap: attention's q, k
    /// and v projections), with the results `apply` gives each. On the `packed` backend they run
    /// as one piece of work on the matrix threads (`rind_pgemm_many`): one start and one wait
    /// instead of three, and a thread done with one product's share goes on with the next.
    public static func applyTogether(_ a: Product, _ b: Product, _ c: Product) {
        guard MatmulBackend.current == .packed else {
            a.apply(); b.apply(); c.apply()
            return
        }
        var jobs = (a.job, b.job, c.job)
        withUnsafePointer(to: &jobs) {
            $0.withMemoryRebound(to: rind_pgemm_job.self, capacity: 3) { rind_pgemm_many($0, 3, rind_gemm_threads()) }
        }
    }

    /// out (N, outputs; row stride ldOut) = / += / = GELU of inp (N, inputs; row stride ldInp) W^T + bias.
    ///
    /// On the `packed` backend rind's micro-kernels run it on the matrix threads; on the others
    /// (a network packed under `packed`, then switched, as the tests do) each panel is one sgemm.
    public func apply(_ out: UnsafeMutablePointer<Float>, ldOut: Int, _ inp: UnsafePointer<Float>, ldInp: Int,
                      bias: UnsafePointer<Float>?, rows N: Int, mode: Mode) {
        if MatmulBackend.current == .packed {
            rind_pgemm(out, ldOut, inp, ldInp, values, bias, N, inputs, outputs, mode.rawValue, rind_gemm_threads())
            return
        }
        let w = Self.panelWidth
        var column = 0
        while column < outputs {
            let columns = min(w, outputs - column)
            gemm(transA: false, transB: false, N, columns, inputs, alpha: 1, inp, ldInp,
                 values + column * inputs, w, beta: mode == .accumulate ? 1 : 0, out + column, ldOut)
            column += w
        }
        switch mode {
        case .gelu:
            precondition(ldOut == outputs, "PackedLinearWeight: GELU rows must be contiguous")
            biasGELURows(out, bias!, N, outputs)
        case .store, .accumulate:
            if let bias { addBiasRows(out, ld: ldOut, bias, N, outputs) }
        }
    }
}
