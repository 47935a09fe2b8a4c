import ArgumentParser
import Dispatch
import FEREngine
import FERImage
import FERKernels
import FERRuntime
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure latency, throughput, memory and load time (release builds only give meaningful figures).",
        discussion: """
            Runs `--warmup` passes, then `--iterations` timed passes of one batch of seeded random
            normalised inputs. Reports latency percentiles per batch, images per second, peak resident
            memory of the process and the model's load time (import + fold + pack).

            With --photo FILE, times the whole-photo pipeline on that image instead: decoding (from
            memory), detection (its network alone too), alignment and classification of every face,
            each reported separately; load time covers both models.

            Examples:
              fer-infer bench --batch 1 --threads 1
              fer-infer bench --batch 32 --threads 2 --json
              fer-infer bench --profile
              fer-infer bench --photo group.jpg --detect-size 640 --json
            """)

    @Option(help: "Model file (default: \(ModelLocator.defaultName)).")
    var model: String?

    @Option(help: "Images per forward pass.")
    var batch = 1

    @Option(help: "Threads (batches split across threads; one image shared by all of them at batch 1).")
    var threads = 1

    @Option(help: "Timed passes.")
    var iterations = 50

    @Option(help: "Untimed passes first.")
    var warmup = 5

    @Flag(help: "Print JSON.")
    var json = false

    @Flag(help: "Also print where the time goes, per stage and operation (single-threaded passes).")
    var profile = false

    @Option(help: "Time the whole-photo pipeline on this PNG or JPEG instead of the classifier alone.")
    var photo: String?

    @Option(help: "Face detector for --photo (default: \(DefaultModel.detectorRelativePath)).")
    var detector: String?

    @Option(name: .customLong("detect-size"), help: "Long side of the detector input for --photo.")
    var detectSize = FaceDetectionOptions().detectSize

    func validate() throws {
        guard batch >= 1, threads >= 1, iterations >= 1, warmup >= 0 else {
            throw ValidationError("--batch, --threads and --iterations must be at least 1, --warmup at least 0")
        }
        guard (16...FaceDetectionOptions.maxDetectSize).contains(detectSize) else {
            throw ValidationError("--detect-size must be in 16...\(FaceDetectionOptions.maxDetectSize) (the detector needs about 47 bytes per pixel of its input)")
        }
    }

    func run() throws {
        if let photo { return try runPhoto(photo) }
        let path = try ModelLocator.resolve(model)
        let loadStart = DispatchTime.now().uptimeNanoseconds
        let model: FERModel
        do { model = try FERModel(contentsOf: path) } catch { throw CLIError("\(path): \(error)") }
        let loadMs = Double(DispatchTime.now().uptimeNanoseconds - loadStart) / 1e6

        var state: UInt64 = 0x5EED
        let input = (0..<batch * model.graph.inputChannels * model.inputSize.height * model.inputSize.width).map { _ -> Float in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state) >> 40) / Float(1 << 23)
        }
        let session = model.makeSession(batch: batch, threads: threads)
        try input.withUnsafeBufferPointer { buffer in
            for _ in 0..<warmup { try session.run(nchw: buffer, batch: batch) }
        }
        var times: [Double] = []
        times.reserveCapacity(iterations)
        try input.withUnsafeBufferPointer { buffer in
            for _ in 0..<iterations {
                let t0 = DispatchTime.now().uptimeNanoseconds
                try session.run(nchw: buffer, batch: batch)
                times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
            }
        }
        let sorted = times.sorted()
        func percentile(_ p: Double) -> Double { sorted[min(sorted.count - 1, Int((p / 100 * Double(sorted.count - 1)).rounded()))] }
        let total = times.reduce(0, +)
        let figures: [String: Any] = [
            "model": path, "architecture": model.architecture.description, "batch": batch, "threads": threads,
            "iterations": iterations, "p50_ms": percentile(50), "p90_ms": percentile(90), "p99_ms": percentile(99),
            "min_ms": sorted[0], "mean_ms": total / Double(iterations),
            "images_per_s": Double(batch * iterations) / (total / 1000), "peak_rss_mb": peakResidentMegabytes(),
            "load_ms": loadMs, "workspace_mb": Double(session.workspaceBytes) / 1_048_576,
        ]
        var profileRows: [StageProfile.Entry] = []
        if profile {
            let recorder = StageProfile()
            let single = model.makeSession(batch: batch, threads: 1)
            single.profile = recorder
            try input.withUnsafeBufferPointer { buffer in
                for _ in 0..<iterations { try single.run(nchw: buffer, batch: batch) }
            }
            profileRows = recorder.entries
        }
        // The pass's arithmetic against the machine's: multiply-accumulates per pass (from the
        // profile's count of every step), the rate reached at the median latency, and one thread's
        // measured FMA peak times the threads.
        let kernel = MicroKernel.preferred
        let peak = profile ? kernel.measuredPeak() : 0
        let passGflop = 2 * Double(profileRows.reduce(0) { $0 + $1.multiplyAccumulates }) / Double(max(1, iterations)) / 1e9
        // The rate counts what the kernels multiplied (Winograd convolutions multiply less than the model counts).
        let executedGflop = 2 * Double(profileRows.reduce(0) { $0 + $1.executedMultiplyAccumulates }) / Double(max(1, iterations)) / 1e9
        let achieved = executedGflop / (percentile(50) / 1000)
        if json {
            var object = figures
            if profile {
                object["profile"] = profileRows.map {
                    ["stage": $0.stage, "operation": $0.operation, "ms_per_pass": Double($0.nanoseconds) / 1e6 / Double(iterations),
                     "gflop_per_pass": 2 * Double($0.multiplyAccumulates) / Double(iterations) / 1e9,
                     "executed_gflop_per_pass": 2 * Double($0.executedMultiplyAccumulates) / Double(iterations) / 1e9,
                     "gflops_per_s": $0.gigaflopsPerSecond]
                }
                object["pass_gflop"] = passGflop
                object["executed_gflop"] = executedGflop
                object["achieved_gflops_per_s"] = achieved
                object["fma_peak_gflops_per_s_per_thread"] = peak
                object["fma_peak_vector"] = kernel.rawValue
                object["fraction_of_peak"] = achieved / (peak * Double(threads))
            }
            let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print("\(model.architecture), batch \(batch), \(threads) thread\(threads == 1 ? "" : "s"), \(iterations) passes")
            print(String(format: "latency per batch: p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  (min %.2f)",
                         percentile(50), percentile(90), percentile(99), sorted[0]))
            print(String(format: "throughput: %.1f images/s", figures["images_per_s"] as! Double))
            print(String(format: "model load: %.1f ms   peak RSS: %.1f MB   workspace: %.1f MB",
                         loadMs, peakResidentMegabytes(), Double(session.workspaceBytes) / 1_048_576))
            if profile {
                let executed = executedGflop < passGflop * 0.999
                    ? String(format: " (%.3f multiplied: Winograd convolutions take a quarter of theirs)", executedGflop) : ""
                print(String(format: "arithmetic: %.3f GFLOP per pass", passGflop) + executed
                      + String(format: ", %.1f GFLOP/s at p50 = %.0f%% of the FMA peak (%d x %.1f GFLOP/s: one thread's register-only multiply-add loop, ",
                               achieved, achieved / (peak * Double(threads)) * 100, threads, peak) + "\(kernel.rawValue) vectors)")
                let all = Double(profileRows.reduce(0) { $0 + $1.nanoseconds })
                var byOperation: [String: (ns: UInt64, macs: Int)] = [:]
                for row in profileRows {
                    let before = byOperation[row.operation] ?? (0, 0)
                    byOperation[row.operation] = (before.ns + row.nanoseconds, before.macs + row.executedMultiplyAccumulates)
                }
                print("\nprofile (single thread, ms per pass, GFLOP/s where the operation multiplies):")
                func pad(_ s: String, _ n: Int) -> String { s + String(repeating: " ", count: max(1, n - s.count)) }
                func rate(_ macs: Int, _ ns: UInt64) -> String {
                    macs == 0 ? "" : String(format: "  %6.1f GFLOP/s",
                                            StageProfile.Entry.gigaflopsPerSecond(multiplyAccumulates: macs, nanoseconds: ns))
                }
                for (op, t) in byOperation.sorted(by: { $0.value.ns > $1.value.ns }) {
                    print("  " + pad(op, 28) + String(format: "%8.3f ms  %5.1f%%", Double(t.ns) / 1e6 / Double(iterations), Double(t.ns) / all * 100)
                          + rate(t.macs, t.ns))
                }
                print("per stage:")
                for row in profileRows {
                    print("  " + pad(row.stage, 14) + pad(row.operation, 28)
                          + String(format: "%8.3f ms", Double(row.nanoseconds) / 1e6 / Double(iterations)) + rate(row.executedMultiplyAccumulates, row.nanoseconds))
                }
            }
        }
    }
}

extension Bench {
    /// The photo mode: every stage of the pipeline timed over `iterations` runs.
    func runPhoto(_ photo: String) throws {
        guard !profile, batch == 1 else { throw ValidationError("--photo times one photo: --profile and --batch do not apply") }
        let bytes: [UInt8]
        do { bytes = try ImageDecoder.readFile(pathBytes: Array(photo.utf8), maxBytes: ImageDecodingOptions.default.maxFileBytes) } catch { throw CLIError("\(error)") }
        let path = try ModelLocator.resolve(model)
        let loadStart = DispatchTime.now().uptimeNanoseconds
        let analyzer: FaceAnalyzer
        do {
            let classifier = try FERClassifier(model: try FERModel(contentsOf: path), maxBatch: 8, threads: threads)
            analyzer = try FaceAnalyzer(detectorPath: detector, classifier: classifier,
                                        options: FaceDetectionOptions(detectSize: detectSize), threads: threads)
        } catch { throw CLIError("\(error)") }
        let loadMs = Double(DispatchTime.now().uptimeNanoseconds - loadStart) / 1e6
        ProcessMemory.keepFreedBuffers()  // as `fer-infer PHOTO` does

        let stageNames = ["decode", "detect", "detect_network", "align", "classify", "total"]
        var times: [String: [Double]] = [:]
        var last: PhotoAnalysis?
        for i in 0..<(warmup + iterations) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let image: RGBImage
            do { image = try ImageDecoder.decode(bytes: bytes, path: photo).image } catch { throw CLIError("\(error)") }
            let decodeMs = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
            let analysis: PhotoAnalysis
            do { analysis = try analyzer.analyze(image) } catch { throw CLIError("\(photo): \(error)") }
            let totalMs = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
            guard i >= warmup else { continue }
            let t = analysis.timing
            for (name, ms) in zip(stageNames, [decodeMs, t.detect, t.detectNetwork, t.align, t.classify, totalMs]) {
                times[name, default: []].append(ms)
            }
            last = analysis
        }
        let analysis = last!
        var stages: [String: [String: Double]] = [:]
        for name in stageNames {
            let sorted = times[name]!.sorted()
            func percentile(_ p: Double) -> Double { sorted[min(sorted.count - 1, Int((p / 100 * Double(sorted.count - 1)).rounded()))] }
            stages[name] = ["p50_ms": percentile(50), "p90_ms": percentile(90), "min_ms": sorted[0],
                            "mean_ms": sorted.reduce(0, +) / Double(sorted.count)]
        }
        if json {
            let object: [String: Any] = [
                "mode": "photo", "input": photo, "width": analysis.width, "height": analysis.height,
                "detector_input": [analysis.detectorWidth, analysis.detectorHeight], "faces": analysis.faces.count,
                "model": path, "threads": threads, "iterations": iterations, "stages": stages,
                "load_ms": loadMs, "peak_rss_mb": peakResidentMegabytes(),
            ]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print("\(photo): \(analysis.width)x\(analysis.height), detector input \(analysis.detectorWidth)x\(analysis.detectorHeight), "
              + "\(analysis.faces.count) face\(analysis.faces.count == 1 ? "" : "s"), \(threads) thread\(threads == 1 ? "" : "s"), \(iterations) runs")
        for name in stageNames {
            let st = stages[name]!
            let shown = name == "detect_network" ? "  (network)" : name
            print(String(format: "%@ p50 %8.2f ms  p90 %8.2f ms  min %8.2f ms", shown.padding(toLength: 12, withPad: " ", startingAt: 0),
                         st["p50_ms"]!, st["p90_ms"]!, st["min_ms"]!))
        }
        print(String(format: "models load: %.1f ms   peak RSS: %.1f MB", loadMs, peakResidentMegabytes()))
    }
}

/// Peak resident set size of this process, in MB (Linux reports ru_maxrss in kilobytes).
func peakResidentMegabytes() -> Double {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    return Double(usage.ru_maxrss) / 1024
}
