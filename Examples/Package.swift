// swift-tools-version:6.0
// A service-shaped example of embedding the runtime: depends on it by path, as a local
// dependency (which may use the runtime's release CPU flags).
//   swift run -c release --package-path Examples classify-example IMAGE...
import PackageDescription

let package = Package(
    name: "FERExamples",
    platforms: [.macOS(.v13)],
    dependencies: [.package(name: "LFNSBRuntime", path: "..")],
    targets: [
        .executableTarget(
            name: "classify-example",
            dependencies: [.product(name: "FERRuntime", package: "LFNSBRuntime")]),
    ]
)
