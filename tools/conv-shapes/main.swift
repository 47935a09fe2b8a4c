// Times the dense KxK convolutions of RetinaFace (at a 640x443 photo: levels 80x56, 40x28, 20x14,
// stem 320x222) and LFNSB (the 112x112 stem) on one thread, four ways, interleaved:
//   blas     today's engine: im2col of the whole tensor, OpenBLAS sgemm (GEMM.multiply), then
//            Elementwise.biasActivation;
//   packed   im2col of the whole tensor, then PackedGEMM with bias and activation fused;
//   lowered  DenseConvolution.convolve, method .lowered (im2col of cache-sized blocks + PackedGEMM);
//   indirect DenseConvolution.convolve, method .indirect (no lowering), on the 8-float tiles;
//   indirect-avx512  the same on the AVX-512 tiles, where the CPU has them.
// Prints ms per call, as the thread's CPU time (CLOCK_THREAD_CPUTIME_ID: on a shared, loaded
// machine wall time mostly measures the other processes), median of the rounds' medians, and the
// fastest call's wall time; then the largest difference from `blas`.
// Built and run by ./run.sh. `main --only METHOD SHAPE REPS` runs one method on one shape REPS
// times and nothing else (for callgrind; see run.sh).
import COpenBLAS
import Dispatch
import Foundation
import FERKernels

struct Shape {
    let name: String, height: Int, width: Int, cin: Int, cout: Int, stride: Int, activation: PackedEpilogue
}
let leaky = PackedEpilogue.leakyRelu(0.1)
let shapes: [Shape] = [
    Shape(name: "RF stem 3->8 s2", height: 443, width: 640, cin: 3, cout: 8, stride: 2, activation: leaky),
    Shape(name: "RF L1 merge 64->64", height: 56, width: 80, cin: 64, cout: 64, stride: 1, activation: leaky),
    Shape(name: "RF L1 ssh 64->32", height: 56, width: 80, cin: 64, cout: 32, stride: 1, activation: .relu),
    Shape(name: "RF L1 ssh 64->16", height: 56, width: 80, cin: 64, cout: 16, stride: 1, activation: leaky),
    Shape(name: "RF L1 ssh 16->16", height: 56, width: 80, cin: 16, cout: 16, stride: 1, activation: .relu),
    Shape(name: "RF L2 merge 64->64", height: 28, width: 40, cin: 64, cout: 64, stride: 1, activation: leaky),
    Shape(name: "RF L2 ssh 64->32", height: 28, width: 40, cin: 64, cout: 32, stride: 1, activation: .relu),
    Shape(name: "RF L2 ssh 64->16", height: 28, width: 40, cin: 64, cout: 16, stride: 1, activation: leaky),
    Shape(name: "RF L2 ssh 16->16", height: 28, width: 40, cin: 16, cout: 16, stride: 1, activation: .relu),
    Shape(name: "RF L3 ssh 64->32", height: 14, width: 20, cin: 64, cout: 32, stride: 1, activation: .relu),
    Shape(name: "RF L3 ssh 64->16", height: 14, width: 20, cin: 64, cout: 16, stride: 1, activation: leaky),
    Shape(name: "RF L3 ssh 16->16", height: 14, width: 20, cin: 16, cout: 16, stride: 1, activation: .relu),
    Shape(name: "LFNSB stem 3->64 s2", height: 112, width: 112, cin: 3, cout: 64, stride: 2, activation: .identity),
]
// Per detector pass: how many times each shape runs (SSH's 16->16 three times per level).
let perPass = [1, 1, 1, 1, 3, 1, 1, 1, 3, 1, 1, 3, 0]
let methods = ["blas", "packed", "lowered", "indirect"] + (MicroKernel.available.contains(.avx512) ? ["indirect-avx512"] : [])

openblas_set_num_threads(1)
var seed: UInt64 = 1
func nextValue() -> Float {
    seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
    return Float(seed >> 40) / Float(1 << 24) - 0.5
}

/// One shape's buffers and a closure per method.
final class Case {
    let s: Shape, g: ConvolutionGeometry
    let input: [Float], weight: [Float], bias: [Float]
    var output: [Float]
    var scratch: [Float]
    let packed: PackedWeights
    init(_ s: Shape) {
        self.s = s
        g = try! ConvolutionGeometry(batch: 1, height: s.height, width: s.width, inputChannels: s.cin, outputChannels: s.cout,
                                     kernel: 3, stride: s.stride, padding: 1)
        input = (0..<s.height * s.width * s.cin).map { _ in nextValue() }
        weight = (0..<g.inner * s.cout).map { _ in nextValue() }
        bias = (0..<s.cout).map { _ in nextValue() }
        output = [Float](repeating: 0, count: g.pixels * s.cout)
        let scratchCount = max(g.pixels * g.inner, DenseConvolution.scratchCount(g, method: .lowered), DenseConvolution.scratchCount(g, method: .indirect))
        scratch = [Float](repeating: 0, count: scratchCount)
        packed = DenseConvolution.pack(weight: weight, kernel: 3, inputChannels: s.cin, outputChannels: s.cout, bias: bias, slopes: nil)
    }
    func run(_ method: String) {
        let (g, s) = (self.g, self.s)
        input.withUnsafeBufferPointer { x in
            output.withUnsafeMutableBufferPointer { y in
                scratch.withUnsafeMutableBufferPointer { t in
                    let (x, y, t) = (x.baseAddress!, y.baseAddress!, t.baseAddress!)
                    switch method {
                    case "blas", "packed":
                        Im2col.lower(input: x, batch: 1, height: s.height, width: s.width, channels: s.cin, kernel: 3, stride: s.stride,
                                     pad: 1, columns: t)
                        if method == "blas" {
                            GEMM.multiply(m: g.pixels, n: s.cout, k: g.inner, a: t, lda: g.inner, b: weight, ldb: s.cout, c: y, ldc: s.cout)
                            let act: Activation = switch s.activation {
                            case .relu: .relu
                            case .leakyRelu(let v): .leakyRelu(v)
                            default: .identity
                            }
                            bias.withUnsafeBufferPointer { b in
                                Elementwise.biasActivation(y, rows: g.pixels, cols: s.cout, ld: s.cout, bias: b.baseAddress, activation: act)
                            }
                        } else {
                            PackedGEMM.multiply(m: g.pixels, a: t, lda: g.inner, b: packed, c: y, ldc: s.cout, accumulate: false,
                                                epilogue: s.activation)
                        }
                    default:
                        DenseConvolution.convolve(g, input: x, weights: packed, output: y, epilogue: s.activation, scratch: t,
                                             method: method == "lowered" ? .lowered : .indirect,
                                             kernel: method == "indirect" ? .simd8 : MicroKernel.preferred)
                    }
                }
            }
        }
    }
}

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e6 }
func cpuNow() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
    return Double(t.tv_sec) * 1e3 + Double(t.tv_nsec) / 1e6
}
func median(_ v: [Double]) -> Double { let s = v.sorted(); return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2 }

let args = CommandLine.arguments
if args.count == 5, args[1] == "--only" {
    let c = Case(shapes[Int(args[3])!])
    for _ in 0..<Int(args[4])! { c.run(args[2]) }
    exit(0)
}

let rounds = Int(ProcessInfo.processInfo.environment["ROUNDS"] ?? "7")!
print("shape\tpixels\tMMAC\t" + methods.map { "\($0)_cpu_ms" }.joined(separator: "\t") + "\t" + methods.map { "\($0)_wall_min" }.joined(separator: "\t")
      + "\t\(methods.last!)/blas\tmin \(methods.last!)/blas\tmax|diff|")
var passMinimum = [Double](repeating: 0, count: methods.count)
var passTotals = [Double](repeating: 0, count: methods.count)
// SHAPES="0 4" times only those shapes (indices into `shapes`).
let selected = ProcessInfo.processInfo.environment["SHAPES"].map { $0.split(separator: " ").map { Int($0)! } }
for (index, s) in shapes.enumerated() where selected?.contains(index) ?? true {
    let c = Case(s)
    c.run("blas")
    let expected = c.output
    var worst: Float = 0
    var samples = [[Double]](repeating: [], count: methods.count)
    var fastest = [Double](repeating: .infinity, count: methods.count)
    let macs = Double(c.g.pixels * c.g.inner * s.cout)
    let reps = max(3, min(50, Int(20e6 / macs) + 1))
    for _ in 0..<rounds {
        for (m, method) in methods.enumerated() {
            c.output = [Float](repeating: .nan, count: c.output.count)
            c.run(method)
            for i in 0..<expected.count { worst = max(worst, abs(c.output[i] - expected[i])) }
            var times: [Double] = [], cpu: [Double] = []
            for _ in 0..<reps {
                let (t0, u0) = (now(), cpuNow())
                c.run(method)
                cpu.append(cpuNow() - u0)
                times.append(now() - t0)
            }
            samples[m].append(median(cpu))
            fastest[m] = min(fastest[m], times.min()!)
        }
    }
    let ms = samples.map(median)
    for m in 0..<methods.count {
        passTotals[m] += ms[m] * Double(perPass[index])
        passMinimum[m] += fastest[m] * Double(perPass[index])
    }
    print("\(s.name)\t\(c.g.pixels)\t" + String(format: "%.1f", macs / 1e6) + "\t"
          + (ms + fastest).map { String(format: "%.3f", $0) }.joined(separator: "\t")
          + "\t" + String(format: "%.2f", ms.last! / ms[0]) + "\t" + String(format: "%.2f", fastest.last! / fastest[0]) + "\t" + String(format: "%.1e", worst))
}
print("RetinaFace pass (every 3x3 conv at 640x443)\t\t\t" + (passTotals + passMinimum).map { String(format: "%.3f", $0) }.joined(separator: "\t"))
