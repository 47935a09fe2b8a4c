// swift-tools-version:6.0
// The LFNSB facial-expression runtime: checkpoint import, BatchNorm folding and a fused,
// BLAS-accelerated forward pass, with the `fer-infer` command-line tool.
import PackageDescription
import Foundation

// Release builds compile the numeric modules for the CPU's AVX2 and FMA units: without a CPU
// target, Swift's SIMD types lower to scalar code. `FER_TARGET_CPU` picks another LLVM CPU name
// (for example `x86-64` for a portable build, `native` for this machine); `FER_TARGET_CPU=none`
// drops every unsafe flag (this one and the kernels' -Ounchecked), which a package depending on this
// one by URL needs, since SwiftPM refuses
// unsafe flags in such dependencies (see README, "Using the runtime from another package").
#if arch(x86_64)
let defaultTargetCPU = "haswell"
#else
let defaultTargetCPU = "none"
#endif
let targetCPU = ProcessInfo.processInfo.environment["FER_TARGET_CPU"] ?? defaultTargetCPU

let numericSettings: [SwiftSetting] =
    targetCPU == "none"
    ? []
    : [.unsafeFlags(["-target-cpu", targetCPU], .when(configuration: .release))]

// The AVX-512 module: compiled for it on x86-64 whatever `FER_TARGET_CPU` says (the choice is made at
// run time), except where unsafe flags are dropped.
#if arch(x86_64)
let avx512Settings: [SwiftSetting] =
    targetCPU == "none"
    ? []
    : [.unsafeFlags(["-target-cpu", "skylake-avx512", "-Ounchecked", "-Xfrontend", "-disable-llvm-merge-functions-pass"],
                     .when(configuration: .release)),
       .define("FER_AVX512", .when(configuration: .release))]
#else
let avx512Settings: [SwiftSetting] = []
#endif

let package = Package(
    name: "LFNSBRuntime",
    platforms: [.macOS(.v13)],
    products: [
        .library(
            name: "FERRuntime",
            targets: ["FERRuntime", "FERTensor", "FERCheckpoint", "FERKernels", "FERKernelsAVX512", "FEREngine", "FERImage", "FERFaces"]),
        .executable(name: "fer-infer", targets: ["fer-infer"]),
        .executable(name: "fer-serve", targets: ["fer-serve"]),
        // libfer.so: the C ABI (header Sources/FERC/include/fer.h; tools/install-c-library).
        .library(name: "fer", type: .dynamic, targets: ["FERC"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // System libraries: the only places their C symbols are imported.
        .systemLibrary(
            name: "COpenBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(
            name: "CZlib", pkgConfig: "zlib",
            providers: [.apt(["libz-dev"])]),
        // glibc's <malloc.h> (mallopt): ProcessMemory's settings.
        .systemLibrary(name: "CMalloc"),
        .systemLibrary(
            name: "CSpng", pkgConfig: "spng",
            providers: [.apt(["libspng-dev"])]),
        // Cairo: 2D drawing for the executables' pictures (annotated photos, confusion matrices).
        .systemLibrary(
            name: "CCairo", pkgConfig: "cairo",
            providers: [.apt(["libcairo2-dev"])]),
        // libjpeg-turbo's libjpeg API (jpeglib.h, libjpeg62-turbo-dev), behind a small C shim that catches
        // libjpeg's error_exit with setjmp, which Swift cannot do (see Sources/CJPEG/include/CJPEG.h).
        .target(name: "CJPEG", linkerSettings: [.linkedLibrary("jpeg")]),

        // Dense float tensors and the NumPy `.npy` format.
        .target(name: "FERTensor", swiftSettings: numericSettings),
        // PyTorch checkpoint files (zip and legacy containers, safe pickle machine).
        .target(name: "FERCheckpoint", dependencies: ["CZlib"]),
        // The AVX-512 tiles of the packed products, alone in a module compiled for Skylake-AVX512 (the
        // define tells the code it was); FERKernels calls them only on CPUs that have those units.
        .target(
            name: "FERKernelsAVX512",
            swiftSettings: avx512Settings),
        // Numeric kernels on raw buffers: GEMM (OpenBLAS and a packed FMA micro-kernel), depthwise
        // convolutions, activations.
        // -Ounchecked: the hot loops do their own index arithmetic on raw pointers; overflow traps
        // in them cost a third of the depthwise kernels' time.
        .target(
            name: "FERKernels", dependencies: ["COpenBLAS", "FERKernelsAVX512"],
            swiftSettings: numericSettings
                + (targetCPU == "none" ? [] : [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))])),
        // Architectures, BatchNorm folding and the fused forward pass.
        .target(
            name: "FEREngine", dependencies: ["FERTensor", "FERCheckpoint", "FERKernels"],
            swiftSettings: numericSettings),
        // Image files: PNG and JPEG decoding, PIL-exact resizing, the authors' normalisation.
        .target(
            name: "FERImage", dependencies: ["FERTensor", "CSpng", "CJPEG"],
            swiftSettings: numericSettings),
        // The embedding API: one import, a shareable classifier for pixels, encoded images and tensors,
        // and the whole-photo face analyzer (detect, align, classify).
        .target(name: "FERRuntime", dependencies: ["FEREngine", "FERImage", "FERTensor", "FERCheckpoint", "FERFaces", "CMalloc"]),
        // The C ABI over FERRuntime: status codes and per-thread messages, no Swift error crosses it.
        .target(name: "FERC", dependencies: ["FERRuntime"], exclude: ["include"]),
        // Face detection geometry: detector input, priors, decoding, NMS, five-point alignment.
        .target(name: "FERFaces", dependencies: ["FERImage", "FERTensor"], swiftSettings: numericSettings),
        // Drawing on raster (PNG) and SVG canvases through Cairo: rectangles, lines, circles, text.
        // Only the executables link it; the runtime library products never do.
        .target(name: "FERDrawing", dependencies: ["CCairo", "FERImage"]),
        // Labelled test sets (RAF-DB, class folders, CSV/TSV lists) and the metrics papers report on them.
        .target(name: "FEREvaluation", dependencies: ["FEREngine", "FERImage"]),
        // The HTTP service: routes, metrics and error responses over one shared classifier.
        .target(
            name: "FERServe",
            dependencies: [
                "FERRuntime", .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .executableTarget(
            name: "fer-serve",
            dependencies: [
                "FERServe", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .executableTarget(
            name: "fer-infer",
            dependencies: [
                "FEREngine", "FERKernels", "FERCheckpoint", "FERTensor", "FERImage", "FERRuntime", "FERDrawing", "FEREvaluation",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),

        .testTarget(name: "FERTensorTests", dependencies: ["FERTensor"]),
        .testTarget(name: "FERCheckpointTests", dependencies: ["FERCheckpoint", "CZlib"]),
        .testTarget(name: "FERKernelsTests", dependencies: ["FERKernels"]),
        // CZlib: the tests compress the large PNGs they decode (bounded-memory checks) themselves.
        .testTarget(name: "FERImageTests", dependencies: ["FERImage", "FERTensor", "CZlib"]),
        // Test support: counts heap allocations (steady-state inference must make none).
        .target(name: "CAllocationCounter", path: "Tests/CAllocationCounter"),
        .testTarget(
            name: "FEREngineTests",
            dependencies: ["FEREngine", "FERTensor", "FERCheckpoint", "FERKernels", "CAllocationCounter"]),
        .testTarget(name: "FERRuntimeTests", dependencies: ["FERRuntime", "CMalloc"]),
        .testTarget(name: "FERDrawingTests", dependencies: ["FERDrawing", "FERImage"]),
        .testTarget(name: "FEREvaluationTests", dependencies: ["FEREvaluation"]),
        .testTarget(name: "FERFacesTests", dependencies: ["FERFaces", "FERImage", "FERTensor", "FEREngine"]),
        // A C client of the ABI, compiled into the test process.
        .target(name: "CABICheck", path: "Tests/CABICheck"),
        .testTarget(name: "FERCTests", dependencies: ["FERC", "CABICheck", "FERRuntime"]),
        // Image files the tests write (16-bit grey PNG twins of photos).
        .target(name: "TestImages", path: "Tests/TestImages"),
        .testTarget(name: "FerInferTests", dependencies: ["fer-infer", "fer-serve", "FERTensor", "FERImage", "TestImages"]),
        .testTarget(
            name: "FERServeTests",
            dependencies: ["FERServe", "TestImages", .product(name: "HummingbirdTesting", package: "hummingbird")]),
    ]
)
