// `rind bench --cross-job`: what cross-job batching gains in the engine, without the daemon's HTTP,
// storage and polling: J jobs (the checkpoint's defaults, each its own seed and class) run one
// after another, then the same J jobs as one batch (`SamplingBatch`, one network pass per step),
// in --rounds rounds alternating the two, so machine load hits both alike.
import Foundation
import RINDiffusion
import RINModel
import RINTensor

extension Bench {
    func benchCrossJob() throws {
        guard !jobs.isEmpty, jobs.allSatisfy({ (1...64).contains($0) }) else {
            throw CommandLineError(message: "--jobs must be 1...64")
        }
        let model = try RINCheckpoint.load(from: URL(fileURLWithPath: checkpoint))
        let classes = max(1, model.config.classes.count)
        func parameters(_ count: Int) throws -> [SamplingParameters] {
            try (0..<count).map { i in
                try SamplingRequest(classIndex: model.config.classes.count > 0 ? i % classes : nil,
                                    seed: UInt64(100 + i), steps: steps).resolved(for: model.config)
            }
        }
        func solo(_ list: [SamplingParameters]) throws -> Double {
            let start = DispatchTime.now().uptimeNanoseconds
            for p in list {
                let run = try SamplingRun(checkpoint: model, parameters: p)
                while !run.isFinished { run.step() }
            }
            return Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
        }
        func batched(_ list: [SamplingParameters]) throws -> Double {
            let start = DispatchTime.now().uptimeNanoseconds
            let runs = try list.map { try SamplingRun(checkpoint: model, parameters: $0) }
            let batch = SamplingBatch(checkpoint: model, rows: runs.reduce(0) { $0 + $1.rows })
            while true {
                let active = runs.filter { !$0.isFinished }
                if active.isEmpty { break }
                batch.step(active)
            }
            return Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
        }
        let sample = try parameters(1)[0]
        print("rind bench --cross-job: \(model.name), \(sample.steps) steps, guidance \(sample.guidance), \(threadCount) thread(s), \(rounds) round(s), median; \(MatmulBackend.summary)")
        _ = try solo(parameters(1))   // warm-up: backend set-up, page cache
        print("| jobs | one after another s | one batch s | images/min one after another | images/min batched | batched / one after another | load avg (1 min) |")
        print("|---|---|---|---|---|---|---|")
        for count in jobs {
            let list = try parameters(count)
            var soloTimes: [Double] = [], batchTimes: [Double] = []
            let load = loadAverage()
            for _ in 0..<rounds {
                soloTimes.append(try solo(list))
                batchTimes.append(try batched(list))
            }
            let s = soloTimes.sorted()[soloTimes.count / 2], b = batchTimes.sorted()[batchTimes.count / 2]
            print(String(format: "| %d | %.2f | %.2f | %.1f | %.1f | %.2fx | %.2f |", count, s, b,
                         Double(count) / s * 60, Double(count) / b * 60, s / b, load))
        }
    }

    private func loadAverage() -> Double {
        guard let text = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8),
              let first = text.split(separator: " ").first, let value = Double(first) else { return .nan }
        return value
    }
}
