// swift-tools-version:6.0
// Benchmarks, kept apart from the product: depends on the runtime by path.
//   swift run -c release --package-path Benchmarks import-benchmark [CHECKPOINT] [--runs N]
import PackageDescription

let package = Package(
    name: "LFNSBBenchmarks",
    platforms: [.macOS(.v13)],
    dependencies: [.package(name: "LFNSBRuntime", path: "..")],
    targets: [
        .executableTarget(
            name: "import-benchmark",
            dependencies: [.product(name: "FERRuntime", package: "LFNSBRuntime")]),
    ]
)
