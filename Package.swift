// swift-tools-version:6.0
// rind: an inference daemon for Recurrent Interface Network (RIN) diffusion models on CPUs.
//
// Layers, imported in one direction only:
//   CBLAS, CKernels, CLibPNG, CMicroHTTPD (C libraries and shims)
//   -> RINTensor (kernels; products on rind's packed kernels, OpenBLAS or oneDNN) -> RINModel (checkpoint + RIN forward pass)
//   -> RINDiffusion (schedules, noise, samplers) -> RINJobs (queue, workers, durable store)
//   -> RINServer (HTTP on libmicrohttpd) -> rind (the executable, which only wires)
// RINCluster (the PostgreSQL job store, on postgres-nio) sits on RINJobs and implements its
// SharedJobStore; only the executable may import it.
// RINImage (PNG on libpng) sits beside the stack and is used by the server and the CLI.
import PackageDescription

let package = Package(
    name: "rind",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "rind", targets: ["rind"]),
        // Preloaded by `rind bench --cpuid-mask` into each row's process (see CCPUIDMask).
        .library(name: "rind-cpuid-mask", type: .dynamic, targets: ["CCPUIDMask"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    ],
    targets: [
        // C libraries
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CLibPNG", pkgConfig: "libpng",
                       providers: [.apt(["libpng-dev"])]),
        // C kernels: run-time matrix-product backends (rind's packed micro-kernels, attention and
        // thread pool; oneDNN opened with dlopen, optional), CPU detection, and elementwise kernels
        // compiled per vector ISA (AVX-512, AVX2, baseline).
        .target(name: "CKernels", linkerSettings: [.linkedLibrary("dl")]),
        // Benchmark support: a preloaded library that hides AVX-512 (or AVX) from CPUID, so that
        // `rind bench --cpuid-mask` compares the engines as on a CPU without them.
        .target(name: "CCPUIDMask", publicHeadersPath: "."),
        // Test support only: an interposed malloc that counts allocations (RINDiffusionTests).
        .target(name: "CAllocationCounter"),
        .target(name: "CMicroHTTPD",
                linkerSettings: [.linkedLibrary("microhttpd")]),

        // Engine
        .target(name: "RINTensor", dependencies: ["CBLAS", "CKernels"]),
        .target(name: "RINModel", dependencies: ["RINTensor"]),
        .target(name: "RINDiffusion", dependencies: ["RINModel", "RINTensor"]),
        .target(name: "RINImage", dependencies: ["CLibPNG"]),

        // Service
        .target(name: "RINJobs", dependencies: [
            "RINDiffusion", "RINModel",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
        ]),
        // The job store shared by several boxes (issue 13): PostgreSQL through postgres-nio.
        .target(name: "RINCluster", dependencies: [
            "RINJobs",
            .product(name: "PostgresNIO", package: "postgres-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
        ]),
        .target(name: "RINServer", dependencies: [
            "CMicroHTTPD", "RINJobs", "RINImage", "RINModel", "RINDiffusion",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ], resources: [.copy("openapi.yaml"), .copy("Web")]),

        .executableTarget(name: "rind", dependencies: [
            "RINServer", "RINJobs", "RINCluster", "RINDiffusion", "RINModel", "RINImage", "RINTensor",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        // Tests mirror targets, one test target per target. Shared fixtures live in Tests/Fixtures and are found
        // from #filePath, so no test target bundles resources.
        // Test support only (test targets depend on it, nothing else): the helpers several test targets share
        // (where the repository and its fixtures are, a throwaway PostgreSQL server, a step gate, polling waits,
        // running a process, the test venv's python). It imports no rind target, so the tests of every layer may use it.
        .target(name: "RINTestSupport", path: "Tests/RINTestSupport"),
        // What the job service's tests share (the tiny checkpoint, a lossless encoder, waiting on a job):
        // RINJobsTests and RINClusterTests. Apart from RINTestSupport because it needs RINJobs.
        .target(name: "RINJobsTestSupport", dependencies: ["RINJobs", "RINDiffusion", "RINModel", "RINTestSupport"],
                path: "Tests/RINJobsTestSupport"),
        .testTarget(name: "RINTensorTests", dependencies: ["RINTensor"]),
        .testTarget(name: "RINModelTests", dependencies: ["RINModel", "RINTensor", "RINTestSupport"]),
        .testTarget(name: "RINDiffusionTests", dependencies: ["RINDiffusion", "RINModel", "RINTensor", "CAllocationCounter",
                                                         "RINTestSupport"]),
        .testTarget(name: "RINImageTests", dependencies: ["RINImage", "RINTestSupport"]),
        .testTarget(name: "RINJobsTests", dependencies: ["RINJobs", "RINDiffusion", "RINModel", "RINTestSupport",
                                                    "RINJobsTestSupport"]),
        .testTarget(name: "RINClusterTests", dependencies: [
            "RINCluster", "RINJobs", "RINDiffusion", "RINModel", "RINTestSupport", "RINJobsTestSupport",
            .product(name: "PostgresNIO", package: "postgres-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "RINServerTests", dependencies: ["RINServer", "RINJobs", "RINImage", "RINTestSupport"]),
        .testTarget(name: "DeployTests", dependencies: ["RINTestSupport"]),
    ]
)
