import Foundation
import RINTensor

// The Recurrent Interface Network (Jabri, Fleet, Chen, "Scalable Adaptive Computation for
// Iterative Generation", ICML 2023), bottom-up: linear and LayerNorm weights, feed-forward,
// attention, the pre-norm layer the read / compute / write steps share, the block, the model, and
// its forward pass (the weights come from a `WeightSource`, WeightSources.swift). The
// checkpoint's tensor names appear in this file only (checkpoints/README.md is the contract: the
// function, with the details the paper leaves open fixed).
//
// Shape legend (one image; a batch stacks B of them along the first axis)
//   F, H, W, Cc  frames, height, width, channels of the image (channels last)
//   p, pt        patch size and tube length;  n = (F/pt)(H/p)(W/p) tokens;  P = pt*p*p*Cc
//   D            interface width;  Fi = r_i D its feed-forward width;  Hi read/write heads
//   m            latents (time and class tokens included);  L latent width;  Fl = r_l L;  Hl heads
//   Ci           min(D, L): inner width of the read and write attention
//   X            the interface (n, D);  Z the latents (m, L)

// MARK: - Layers

/// y = x W^T + b with W (outputs, inputs) as PyTorch stores it.
///
/// Built while the `packed` matrix backend is in use, the layer keeps only its weight packed for
/// rind's micro-kernels (`PackedLinearWeight`; a converted float16 copy is let go). Otherwise
/// widening layers keep a transposed copy (inputs, outputs) made once at load, because OpenBLAS runs
/// those products faster as NN (`prefersTransposedWeight`), and all other weights stay where the
/// checkpoint put them (the memory map, for float32 files).
struct Linear {
    let weight: UnsafePointer<Float>   // (outputs, inputs), or (inputs, outputs) when `transposed`; unused when packed
    let packed: PackedLinearWeight?
    let bias: UnsafePointer<Float>     // (outputs)
    let inputs: Int
    let outputs: Int
    let transposed: Bool

    init(_ source: inout some WeightSource, _ name: String, inputs: Int, outputs: Int) throws(CheckpointError) {
        let stored = try source.take(name + ".weight", [outputs, inputs], .linearWeight(fanIn: inputs))
        bias = try source.take(name + ".bias", [outputs], .bias)
        self.inputs = inputs
        self.outputs = outputs
        if source.providesValues && MatmulBackend.current == .packed {
            let storage = TensorStorage(floats: PackedLinearWeight.floatCount(inputs: inputs, outputs: outputs),
                                        hugePages: true)
            packed = PackedLinearWeight(packing: stored, inputs: inputs, outputs: outputs, into: storage.floats)
            source.keep(storage)
            source.discard(stored)
            weight = UnsafePointer(storage.floats)
            transposed = false
            return
        }
        packed = nil
        if source.providesValues && prefersTransposedWeight(inputs: inputs, outputs: outputs) {
            let storage = TensorStorage(floats: inputs * outputs)
            let t = storage.floats
            for o in 0..<outputs {
                for i in 0..<inputs { t[i * outputs + o] = stored[o * inputs + i] }
            }
            weight = UnsafePointer(t)
            transposed = true
            source.keep(storage)  // the network keeps it alive with the other weight buffers
        } else {
            weight = stored
            transposed = false
        }
    }

    /// out (N, outputs) = inp (N, inputs) W^T + b
    func callAsFunction(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, rows: Int) {
        if let packed { return packed.apply(out, ldOut: outputs, inp, ldInp: inputs, bias: bias, rows: rows, mode: .store) }
        linear(out, inp, weight, bias, rows, inputs, outputs, transposedWeight: transposed)
    }

    /// out (N, outputs) = GELU(inp (N, inputs) W^T + b)
    func gelu(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, rows: Int) {
        if let packed { return packed.apply(out, ldOut: outputs, inp, ldInp: inputs, bias: bias, rows: rows, mode: .gelu) }
        linearGELU(out, inp, weight, bias, rows, inputs, outputs, transposedWeight: transposed)
    }

    /// out (N, outputs) += inp (N, inputs) W^T + b
    func accumulate(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, rows: Int) {
        if let packed { return packed.apply(out, ldOut: outputs, inp, ldInp: inputs, bias: bias, rows: rows, mode: .accumulate) }
        linearAccumulate(out, inp, weight, bias, rows, inputs, outputs, transposedWeight: transposed)
    }

    /// out (N, outputs) = inp (N, inputs) W^T + b as a product for `PackedLinearWeight.applyTogether`;
    /// nil unless the weight is packed.
    func product(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, rows: Int) -> PackedLinearWeight.Product? {
        packed.map { .init($0, out, ldOut: outputs, inp, ldInp: inputs, bias: bias, rows: rows, mode: .store) }
    }

    /// out (N, outputs) written with row stride `ldOut`.
    func strided(_ out: UnsafeMutablePointer<Float>, ldOut: Int, _ inp: UnsafePointer<Float>, rows: Int) {
        if let packed { return packed.apply(out, ldOut: ldOut, inp, ldInp: inputs, bias: bias, rows: rows, mode: .store) }
        linearStrided(out, ldOut, inp, inputs, weight, bias, rows, inputs, outputs, transposedWeight: transposed)
    }
}

/// LayerNorm with gain and bias, eps 1e-6, population variance.
struct LayerNormWeights {
    let weight: UnsafePointer<Float>   // (width)
    let bias: UnsafePointer<Float>     // (width)
    let width: Int

    init(_ source: inout some WeightSource, _ name: String, width: Int, zeroInit: Bool = false) throws(CheckpointError) {
        weight = try source.take(name + ".weight", [width], zeroInit ? .zeroInitNorm : .normWeight)
        bias = try source.take(name + ".bias", [width], zeroInit ? .zeroInitNorm : .normBias)
        self.width = width
    }

    /// On the `packed` backend the rows are split over the matrix threads (its pool).
    func callAsFunction(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, rows: Int) {
        if MatmulBackend.current == .packed {
            return layerNormOnMatrixThreads(out, inp, weight, bias, rows, width)
        }
        layerNorm(out, inp, weight, bias, rows, width)
    }
}

/// FF(x) = fc2(GELU(fc1(x))), exact erf GELU.
struct FeedForward {
    let fc1: Linear   // (hidden, width)
    let fc2: Linear   // (width, hidden)

    init(_ source: inout some WeightSource, _ name: String, width: Int, hidden: Int) throws(CheckpointError) {
        fc1 = try Linear(&source, name + ".fc1", inputs: width, outputs: hidden)
        fc2 = try Linear(&source, name + ".fc2", inputs: hidden, outputs: width)
    }

    /// residual (N, width) += FF(inp (N, width)); hidden (N, hidden) is scratch.
    func accumulate(_ residual: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>,
                    hidden: UnsafeMutablePointer<Float>, rows: Int) {
        fc1.gelu(hidden, inp, rows: rows)
        fc2.accumulate(residual, hidden, rows: rows)
    }

    /// out (N, width) = FF(inp (N, width)).
    func callAsFunction(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>,
                        hidden: UnsafeMutablePointer<Float>, rows: Int) {
        fc1.gelu(hidden, inp, rows: rows)
        fc2(out, hidden, rows: rows)
    }
}

/// Multi-head attention with biased q, k, v, out projections; heads are contiguous slices of the
/// inner width; scale 1/sqrt(head width).
struct Attention {
    let q: Linear     // (inner, queryWidth)
    let k: Linear     // (inner, contextWidth)
    let v: Linear     // (inner, contextWidth)
    let out: Linear   // (queryWidth, inner)
    let heads: Int
    let inner: Int

    init(_ source: inout some WeightSource, _ name: String, queryWidth: Int, contextWidth: Int,
         inner: Int, heads: Int) throws(CheckpointError) {
        q = try Linear(&source, name + ".q", inputs: queryWidth, outputs: inner)
        k = try Linear(&source, name + ".k", inputs: contextWidth, outputs: inner)
        v = try Linear(&source, name + ".v", inputs: contextWidth, outputs: inner)
        out = try Linear(&source, name + ".out", inputs: inner, outputs: queryWidth)
        self.heads = heads
        self.inner = inner
    }

    /// residual (B*Nq, queryWidth) += MHA(query (B*Nq, queryWidth), context (B*Nk, contextWidth)),
    /// image by image; all projections run over the whole batch as one product. On the `packed`
    /// backend q, k and v are one piece of work for the matrix threads, and the heads of all images
    /// run as one `PackedAttention` call.
    func accumulate(_ residual: UnsafeMutablePointer<Float>, query: UnsafePointer<Float>, queries: Int,
                    context: UnsafePointer<Float>, keys: Int, batch: Int, workspace ws: RINWorkspace) {
        if let pq = q.product(ws.q, query, rows: batch * queries), let pk = k.product(ws.k, context, rows: batch * keys),
           let pv = v.product(ws.v, context, rows: batch * keys) {
            PackedLinearWeight.applyTogether(pq, pk, pv)
        } else {
            q(ws.q, query, rows: batch * queries)
            k(ws.k, context, rows: batch * keys)
            v(ws.v, context, rows: batch * keys)
        }
        if MatmulBackend.current == .packed {
            PackedAttention.run(ws.attended, ws.q, ws.k, ws.v, batch: batch, queries: queries, keys: keys,
                                width: inner, heads: heads, scratch: ws.attentionScratch, slots: ws.attentionSlots)
            return out.accumulate(residual, ws.attended, rows: batch * queries)
        }
        for b in 0..<batch {
            attention(ws.attended + b * queries * inner, ws.scores,
                      ws.q + b * queries * inner, ws.k + b * keys * inner, ws.v + b * keys * inner,
                      queries, keys, inner, heads)
        }
        out.accumulate(residual, ws.attended, rows: batch * queries)
    }
}

// MARK: - Blocks

/// One pre-norm layer over the rows of one side T (the latents or the interface):
/// T += MHA(LN(T), context); T += FF(LN(T)). The context is the other side as it stands (raw, not
/// normed) or, for self-attention, LN(T) itself. A block's read, compute and write layers are this
/// layer with different widths.
struct ResidualLayer {
    let attnNorm: LayerNormWeights   // (width)
    let attn: Attention              // width <- contextWidth, inner, heads
    let ffNorm: LayerNormWeights     // (width)
    let ff: FeedForward              // width -> hidden -> width

    init(_ source: inout some WeightSource, _ name: String, width: Int, contextWidth: Int, inner: Int,
         heads: Int, hidden: Int) throws(CheckpointError) {
        attnNorm = try LayerNormWeights(&source, name + ".attn_norm", width: width)
        attn = try Attention(&source, name + ".attn", queryWidth: width, contextWidth: contextWidth,
                             inner: inner, heads: heads)
        ffNorm = try LayerNormWeights(&source, name + ".ff_norm", width: width)
        ff = try FeedForward(&source, name + ".ff", width: width, hidden: hidden)
    }

    /// target (batch * rows, width) updated in place; context (batch * keys, contextWidth), or nil
    /// for self-attention (keys = rows); normed (batch * rows, width) is scratch.
    func callAsFunction(_ target: UnsafeMutablePointer<Float>, rows: Int, context: UnsafePointer<Float>?,
                        keys: Int, batch: Int, normed: UnsafeMutablePointer<Float>, workspace ws: RINWorkspace) {
        attnNorm(normed, target, rows: batch * rows)
        attn.accumulate(target, query: normed, queries: rows, context: context ?? UnsafePointer(normed),
                        keys: keys, batch: batch, workspace: ws)
        ffNorm(normed, target, rows: batch * rows)
        ff.accumulate(target, normed, hidden: ws.hidden, rows: batch * rows)
    }
}

/// One RIN block: the latents read the interface (Z += MHA(LN(Z), X); Z += FF(LN(Z))), K layers of
/// latent self-attention (Z += MHA(LN(Z), LN(Z)); Z += FF(LN(Z))), then the interface reads the
/// latents back (X += MHA(LN(X), Z); X += FF(LN(X))).
struct Block {
    let read: ResidualLayer            // L <- D: inner Ci, Hi heads, Fl
    let compute: [ResidualLayer]       // L <- L: inner L, Hl heads, Fl
    let write: ResidualLayer           // D <- L: inner Ci, Hi heads, Fi

    init(_ source: inout some WeightSource, _ name: String, _ c: RINConfig) throws(CheckpointError) {
        let D = c.interface.dim, L = c.latents.dim
        read = try ResidualLayer(&source, name + ".read", width: L, contextWidth: D, inner: c.crossWidth,
                                 heads: c.interface.heads, hidden: c.latentHidden)
        var layers: [ResidualLayer] = []
        for j in 0..<c.layersPerBlock {
            layers.append(try ResidualLayer(&source, name + ".compute.\(j)", width: L, contextWidth: L, inner: L,
                                            heads: c.latents.heads, hidden: c.latentHidden))
        }
        compute = layers
        write = try ResidualLayer(&source, name + ".write", width: D, contextWidth: L, inner: c.crossWidth,
                                  heads: c.interface.heads, hidden: c.interfaceHidden)
    }

    /// z (batch * m, L) and x (batch * n, D) updated in place.
    func callAsFunction(z: UnsafeMutablePointer<Float>, x: UnsafeMutablePointer<Float>, batch: Int, m: Int, n: Int,
                        workspace ws: RINWorkspace) {
        read(z, rows: m, context: x, keys: n, batch: batch, normed: ws.zNorm, workspace: ws)
        for layer in compute { layer(z, rows: m, context: nil, keys: m, batch: batch, normed: ws.zNorm, workspace: ws) }
        write(x, rows: n, context: z, keys: m, batch: batch, normed: ws.xNorm, workspace: ws)
    }
}

// MARK: - The model

/// The RIN network: `forward(x, gamma, classes, latentsIn) -> (prediction, latentsOut)`.
///
/// Weights are immutable after construction and shared by every thread; all per-call state lives
/// in the caller's buffers and `RINWorkspace`, so any number of threads may run `forward`
/// concurrently, each with its own workspace. The carried latents are an argument, never state
/// of the model: the sampler keeps them per job (`SamplingRun`).
public final class RINNetwork: @unchecked Sendable {
    public let config: RINConfig
    let patchEmbed: Linear                // (D, P)
    let patchNorm: LayerNormWeights       // (D)
    let posEmbed: UnsafePointer<Float>    // (n, D)
    let time0: Linear                     // (L, L/4)
    let time2: Linear                     // (L, L)
    let classEmbed: UnsafePointer<Float>? // (count [+1], L)
    let learnedLatents: UnsafePointer<Float>  // (m-2 or m-1, L)
    let selfCondNorm: LayerNormWeights    // (L)
    let selfCondFF: FeedForward           // L -> Fl -> L
    let selfCondOutNorm: LayerNormWeights // (L): LN0
    let blocks: [Block]
    let readoutNorm: LayerNormWeights     // (D)
    let readout: Linear                   // (P, D)
    /// Keeps the memory map and any converted or random buffers alive as long as the weights.
    private let storages: [TensorStorage]

    /// Bytes the weights occupy: the checkpoint's memory map (whole file) plus every buffer made
    /// at load (converted float16/bfloat16 tensors, transposed copies, random weights).
    public var weightBytes: Int { storages.reduce(0) { $0 + $1.byteCount } }

    init(config c: RINConfig, source: inout some WeightSource) throws(CheckpointError) {
        config = c
        let D = c.interface.dim, L = c.latents.dim, P = c.patchValues, n = c.tokenCount
        patchEmbed = try Linear(&source, "patch_embed", inputs: P, outputs: D)
        patchNorm = try LayerNormWeights(&source, "patch_norm", width: D)
        posEmbed = try source.take("pos_embed", [n, D], .embedding)
        time0 = try Linear(&source, "time_mlp.0", inputs: L / 4, outputs: L)
        time2 = try Linear(&source, "time_mlp.2", inputs: L, outputs: L)
        classEmbed = c.classes.count > 0
            ? try source.take("class_embed.weight", [c.classEmbeddingRows, L], .embedding) : nil
        learnedLatents = try source.take("latents", [c.learnedLatentCount, L], .embedding)
        selfCondNorm = try LayerNormWeights(&source, "self_cond.norm", width: L)
        selfCondFF = try FeedForward(&source, "self_cond.ff", width: L, hidden: c.latentHidden)
        selfCondOutNorm = try LayerNormWeights(&source, "self_cond.out_norm", width: L, zeroInit: true)
        var built: [Block] = []
        for b in 0..<c.blocks { built.append(try Block(&source, "blocks.\(b)", c)) }
        blocks = built
        readoutNorm = try LayerNormWeights(&source, "readout_norm", width: D)
        readout = try Linear(&source, "readout", inputs: D, outputs: P)
        storages = source.storages
    }

    /// Loads weights from an opened safetensors file; fails on missing, mis-shaped, unsupported
    /// or unexpected tensors, naming the tensor.
    convenience init(config: RINConfig, file: SafeTensorsFile) throws(CheckpointError) {
        var source = FileWeights(file: file)
        try self.init(config: config, source: &source)
        try source.checkNoLeftovers()
    }

    /// In-memory random weights (deterministic for a seed), for benchmarks and tests.
    /// `zeroLatentConditioning` zeroes LN0, as a freshly initialised model has it.
    public convenience init(config: RINConfig, randomSeed: UInt64, zeroLatentConditioning: Bool = false) {
        var source = RandomWeights(seed: randomSeed, zeroLatentConditioning: zeroLatentConditioning)
        // A random source never throws.
        try! self.init(config: config, source: &source)
    }

    /// Every tensor the architecture needs for `config`, with its shape, in construction order.
    public static func tensorShapes(for config: RINConfig) -> [(name: String, shape: [Int])] {
        var recorder = ShapeRecorder()
        _ = try! RINNetwork(config: config, source: &recorder)
        return recorder.tensors
    }

    /// Random weights as safetensors tensors (the same values `init(config:randomSeed:)` builds),
    /// for writing test checkpoints.
    public static func randomTensors(for config: RINConfig, seed: UInt64,
                                     zeroLatentConditioning: Bool = false) -> [SafeTensorsWriter.Tensor] {
        var recorder = RecordingRandomWeights(
            random: RandomWeights(seed: seed, zeroLatentConditioning: zeroLatentConditioning))
        _ = try! RINNetwork(config: config, source: &recorder)
        return recorder.tensors
    }

    // MARK: Forward

    /// One forward pass over a batch.
    ///
    /// - prediction: (B, F, H, W, Cc) output, the network's eps / x0 / v prediction.
    /// - latentsOut: (B, m, L) output Z; used as the working latent array, so it must not alias
    ///   `latentsIn`.
    /// - x: (B, F, H, W, Cc) noisy images x_t.
    /// - gamma: (B) signal power of each image's noise level (clipped to [1e-9, 1 - 1e-9] here).
    /// - classes: (B) class rows (the null row `count` for the unconditional pass); nil for a
    ///   model without classes.
    /// - latentsIn: (B, m, L) Z_prev, or nil for zeros.
    public func forward(
        prediction: UnsafeMutablePointer<Float>, latentsOut: UnsafeMutablePointer<Float>,
        x: UnsafePointer<Float>, gamma: UnsafePointer<Float>, classes: UnsafePointer<Int>?,
        latentsIn: UnsafePointer<Float>?, batch B: Int, workspace ws: RINWorkspace
    ) {
        let c = config
        precondition(B >= 1 && B <= ws.batch, "forward: batch \(B) exceeds the workspace's \(ws.batch)")
        precondition(ws.config == c, "forward: workspace built for another configuration")
        precondition(latentsIn.map { UnsafeRawPointer($0) != UnsafeRawPointer(latentsOut) } ?? true,
                     "forward: latentsIn and latentsOut must be different buffers")
        let D = c.interface.dim, L = c.latents.dim, n = c.tokenCount, m = c.latents.count
        let X = ws.x, Z = latentsOut

        // Interface: X = LN(patchify(x) W_pe^T + b_pe) + pos_embed.
        patchify(ws.patches, x, B, c.image.frames, c.image.height, c.image.width, c.image.channels,
                 c.patch.size, c.patch.frames)
        patchEmbed(ws.xNorm, ws.patches, rows: B * n)
        patchNorm(X, ws.xNorm, rows: B * n)
        for b in 0..<B { addInPlace(X + b * n * D, posEmbed, n * D) }

        // Latents: learned table, time token, class token.
        let learned = c.learnedLatentCount
        for b in 0..<B {
            (Z + b * m * L).update(from: learnedLatents, count: learned * L)
        }
        for b in 0..<B { timeFeatures(ws.timeFeatures + b * (L / 4), gamma: gamma[b], width: L) }
        // One row per product: with B rows the matrix libraries pick kernels by B and sum in
        // another order, so an image's time token (and so its pixels) would depend on how many
        // images share the batch (cross-job batching, RINDiffusion's SamplingBatch). The other
        // products have at least n or m rows per image, where their order does not change.
        for b in 0..<B { time0(ws.timeHidden + b * L, ws.timeFeatures + b * (L / 4), rows: 1) }
        siluInPlace(ws.timeHidden, B * L)
        // Written straight into row `learned` of the image's Z.
        for b in 0..<B { time2.strided(Z + (b * m + learned) * L, ldOut: L, ws.timeHidden + b * L, rows: 1) }
        if let classEmbed {
            guard let classes else { preconditionFailure("forward: a class-conditional model needs classes") }
            for b in 0..<B {
                precondition(classes[b] >= 0 && classes[b] < c.classEmbeddingRows, "forward: class \(classes[b]) out of range")
                (Z + (b * m + learned + 1) * L).update(from: classEmbed + classes[b] * L, count: L)
            }
        }

        // Latent self-conditioning: Z += LN0(Z_prev + FF(LN(Z_prev))); always applied.
        let zPrev = latentsIn ?? UnsafePointer(ws.zeros)
        selfCondNorm(ws.zNorm, zPrev, rows: B * m)
        selfCondFF(ws.selfCond, ws.zNorm, hidden: ws.hidden, rows: B * m)
        addInPlace(ws.selfCond, zPrev, B * m * L)
        selfCondOutNorm(ws.selfCond, ws.selfCond, rows: B * m)
        addInPlace(Z, ws.selfCond, B * m * L)

        for block in blocks { block(z: Z, x: X, batch: B, m: m, n: n, workspace: ws) }

        // Readout: LN(X) W_ro^T + b_ro, unpatchified.
        readoutNorm(ws.xNorm, X, rows: B * n)
        readout(ws.patches, ws.xNorm, rows: B * n)
        unpatchify(prediction, ws.patches, B, c.image.frames, c.image.height, c.image.width,
                   c.image.channels, c.patch.size, c.patch.frames)
    }

    /// Standardised sinusoidal features of gamma (checkpoints/README.md, "Time token"), computed in
    /// float64 from the float32 gamma and rounded to float32 once, as the contract fixes it: the
    /// angles reach 1e4 radians, where float32 rounding of any intermediate moves sin/cos by ~1e-3.
    func timeFeatures(_ out: UnsafeMutablePointer<Float>, gamma: Float, width L: Int) {
        let h = L / 8
        let g = Double(min(max(gamma, Float(1e-9)), Float(1 - 1e-9)))
        let s = g * 1e4
        let logScale = -log(10000.0)
        // Feature j in float64 (sin for j < h, cos after); recomputed in each pass so that nothing
        // is allocated.
        func feature(_ j: Int) -> Double {
            let angle = s * exp(logScale * Double(j % h) / Double(h))
            return j < h ? sin(angle) : cos(angle)
        }
        var mean: Double = 0
        for j in 0..<(2 * h) { mean += feature(j) }
        mean /= Double(2 * h)
        var variance: Double = 0
        for j in 0..<(2 * h) { let d = feature(j) - mean; variance += d * d }
        variance /= Double(2 * h)
        let denominator = (variance + 1e-6).squareRoot()
        for j in 0..<(2 * h) { out[j] = Float((feature(j) - mean) / denominator) }
    }

    // MARK: Cost

    /// Floating-point operations of one forward pass for one image (multiply and add counted as
    /// two), from the configuration alone: every matrix product, attention included. Elementwise
    /// work (LayerNorm, GELU, softmax) is left out, as is usual for model FLOP counts.
    public static func flopsPerImage(_ c: RINConfig) -> Double {
        let n = Double(c.tokenCount), m = Double(c.latents.count), D = Double(c.interface.dim)
        let L = Double(c.latents.dim), P = Double(c.patchValues), Ci = Double(c.crossWidth)
        let Fl = Double(c.latentHidden), Fi = Double(c.interfaceHidden)
        let ffLatent = 2 * 2 * m * L * Fl
        var total = 2 * n * P * D + 2 * (L / 4 * L + L * L) + ffLatent + 2 * n * D * P
        let read = 2 * m * L * Ci + 2 * 2 * n * D * Ci + 2 * 2 * m * n * Ci + 2 * m * Ci * L + ffLatent
        let compute = 4 * 2 * m * L * L + 2 * 2 * m * m * L + ffLatent
        let write = 2 * n * D * Ci + 2 * 2 * m * L * Ci + 2 * 2 * n * m * Ci + 2 * n * Ci * D + 2 * 2 * n * D * Fi
        total += Double(c.blocks) * (read + Double(c.layersPerBlock) * compute + write)
        return total
    }
}
