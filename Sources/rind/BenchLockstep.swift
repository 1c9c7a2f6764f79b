// `rind bench --interleave steps` (the default with --onnx / --torch): the engines' row processes
// for one (config, batch) are started one after another and stay up side by side, each with its
// model loaded, and take turns (rind, ONNX Runtime, torch, rind, ...) running short bursts of
// steps when this process asks. Noise from other work on a shared machine comes and goes over
// seconds, so bursts a fraction of a second apart see the same machine: the ratio of neighbouring
// bursts is the steady figure. A burst starts with one untimed step (after another engine's turn
// the caches hold its data and a pool's threads are asleep), then times steps until they add up
// to `Bench.lockstepBurst` seconds (at least one), as a daemon runs a job's steps back to back.
// Between two engines' turns the parent pauses, so that the last engine's threads have stopped
// spinning before the next one starts.
//
// The protocol (a row child run with --lockstep; Training/bench_torch.py's time_steps is the Python
// side): the child prints {"ready": true} once its model is loaded; then for each line "burst S" on
// its standard input it runs a burst of S seconds and prints {"seconds": [its timed steps]}; on
// "done" (or the end of its input) it prints its row's JSON over the bursts after the first
// --warmup ones, as a row child without --lockstep does over its steps, and exits.
import Foundation
import RINServer

/// The child side of the protocol, for rind's own row process.
enum LockstepRow {
    /// Serves bursts: `step` runs the next step and returns its seconds. Returns the timed steps of
    /// the bursts after the first `warmup`.
    static func serve(warmup: Int, _ step: () throws -> Double) throws -> [Double] {
        write(["ready": true])
        var times: [Double] = []
        var bursts = 0
        while let line = readLine() {
            let words = line.split(separator: " ")
            if words == ["done"] { break }
            guard words.count == 2, words[0] == "burst", let budget = Double(words[1]), budget >= 0 else {
                throw CommandLineError(message: "bench --lockstep: unknown command '\(line)'")
            }
            _ = try step()
            var burst: [Double] = []
            while burst.isEmpty || burst.reduce(0, +) < budget { burst.append(try step()) }
            write(["seconds": burst])
            if bursts >= warmup { times += burst }
            bursts += 1
        }
        guard !times.isEmpty else { throw CommandLineError(message: "bench --lockstep: ended before any timed burst") }
        return times
    }

    /// One JSON line on standard output, written at once (not held in stdio's buffer: the parent
    /// waits for it).
    static func write(_ object: [String: Any]) {
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return }
        FileHandle.standardOutput.write(data + Data("\n".utf8))
    }
}

/// The parent side: one engine's row process, started with its --lockstep flag.
final class LockstepChild {
    let name: String
    private let process = Process()
    private let input = Pipe(), output = Pipe()
    private var buffer = Data()

    /// Starts the process and waits until its model is loaded.
    init(name: String, executable: String, arguments: [String], environment: [String: String]) throws {
        self.name = name
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = environment
        process.standardInput = input
        process.standardOutput = output
        do { try process.run() } catch { throw CommandLineError(message: "cannot run \(executable): \(error)") }
        let ready = try readObject()
        guard ready["ready"] as? Bool == true else { throw CommandLineError(message: "\(name) row: no ready line") }
    }

    /// Runs one burst of about `seconds` in the child; the seconds of its timed steps, as the child
    /// timed them.
    func burst(_ seconds: Double) throws -> [Double] {
        try send("burst \(seconds)")
        guard let steps = try readObject()["seconds"] as? [Double], !steps.isEmpty else {
            throw CommandLineError(message: "\(name) row: a burst printed no seconds")
        }
        return steps
    }

    /// Ends the child's row: its JSON (figures over its timed steps, peak RSS, ...).
    func finish() throws -> [String: Any] {
        try send("done")
        let row = try readObject()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw CommandLineError(message: "\(name) row exited with status \(process.terminationStatus)")
        }
        return row
    }

    /// Ends the child at once (another engine's row failed).
    func stop() {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }

    private func send(_ command: String) throws {
        do { try input.fileHandleForWriting.write(contentsOf: Data((command + "\n").utf8)) } catch {
            throw CommandLineError(message: "\(name) row: its process is gone (\(error))")
        }
    }

    /// The next line on the child's standard output that is a JSON object (libraries may print
    /// other lines); fails when the child closes its output first.
    private func readObject() throws -> [String: Any] {
        let newline = UInt8(ascii: "\n")
        while true {
            if let end = buffer.firstIndex(of: newline) {
                let line = buffer[buffer.startIndex..<end]
                buffer = Data(buffer[(end + 1)...])
                if let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] { return object }
                continue
            }
            let more = output.fileHandleForReading.availableData
            guard !more.isEmpty else {
                process.waitUntilExit()
                throw CommandLineError(message: "\(name) row ended early (status \(process.terminationStatus))")
            }
            buffer += more
        }
    }
}

extension Bench {
    /// Seconds of timed steps per burst: short against the machine's noise, long enough for a
    /// few steps of the small models.
    static let lockstepBurst = 0.3
    /// Seconds between one engine's turn and the next engine's: longer than any engine's threads
    /// spin after their work (rind's pool: well under a millisecond; ONNX Runtime's, spinning on).
    static let lockstepPause: useconds_t = 50_000

    /// One (config, batch) with the engines taking turns: --warmup untimed bursts each, then
    /// --repeats timed ones.
    func lockstepRow(config: String, batch: Int, environment: [String: String]) throws -> ComparedRow {
        _ = try loadConfig(config)  // fail early, with the file's own message
        signal(SIGPIPE, SIG_IGN)    // a child that died is reported by the write, not by the signal
        let executable = APIServer.executableURL().path   // argv[0] may be a bare name found on PATH
        var children: [LockstepChild] = []
        defer { children.forEach { $0.stop() } }
        children.append(try LockstepChild(
            name: "rind", executable: executable,
            arguments: ["bench", "--row", "\(config):\(batch)", "--lockstep", "--threads", "\(threadCount)",
                        "--configs-dir", configsDir, "--warmup", "\(warmup)", "--repeats", "\(repeats)", "--matmul", matmul],
            environment: environment))
        for (name, python, script) in [("ONNX Runtime", onnx, "bench_onnx.py"), ("torch", torch, "bench_torch.py")] {
            guard let python else { continue }
            children.append(try LockstepChild(name: name, executable: python,
                                              arguments: pythonRowArguments(script: script, config: config, batch: batch) + ["--lockstep"],
                                              environment: environment))
        }
        // bursts[engine][k]: the timed steps of its k-th timed burst
        var bursts = [[[Double]]](repeating: [], count: children.count)
        for k in 0..<(warmup + repeats) {
            for (i, child) in children.enumerated() {
                usleep(Bench.lockstepPause)
                let steps = try child.burst(Bench.lockstepBurst)
                if k >= warmup { bursts[i].append(steps) }
            }
        }
        // The other engines end first, rind last after a pause: its child then measures its
        // product peak (bench --row) with the others' processes gone. Ended first, right after
        // torch's last burst (whose OpenMP threads may still spin), one Zen 5 row's peak read 295
        // GFLOP/s where the others read 386-477 (a row at "139% of peak").
        var rows = [[String: Any]](repeating: [:], count: children.count)
        for i in children.indices.reversed() {
            if i == 0 { usleep(Bench.lockstepPause) }
            rows[i] = try children[i].finish()
        }
        let medians = bursts.map { $0.map { EngineFigures.median($0)! } }
        func figures(_ name: String) -> EngineFigures {
            guard let i = children.firstIndex(where: { $0.name == name }) else { return EngineFigures([]) }
            return EngineFigures([rows[i]], bursts: medians[i])
        }
        return ComparedRow(config: config, batch: batch, rind: rows[0], rindRuns: [rows[0]],
                           rindFastest: bursts[0].joined().min()!, rindBursts: medians[0],
                           ort: figures("ONNX Runtime"), torch: figures("torch"))
    }
}
