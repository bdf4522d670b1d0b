// swift-tools-version:6.1
import PackageDescription

let fuzzTargets = [
    "fuzz-server-session", "fuzz-client-session", "fuzz-certificate", "fuzz-configuration",
    "fuzz-client-hello-versions", "fuzz-proxy-header",
]

let package = Package(
    name: "swift-gnutls",
    products: [
        .library(name: "GnuTLS", targets: ["GnuTLS"]),
        .library(name: "NIOGnuTLS", targets: ["NIOGnuTLS"]),
        .executable(name: "tls-server", targets: ["tls-server"]),
        .executable(name: "tls-client", targets: ["tls-client"]),
        .executable(name: "tls-certs", targets: ["tls-certs"]),
    ],
    // Integrations with frameworks are package traits, off by default, so that a package depending only on
    // GnuTLS or NIOGnuTLS neither builds nor links Hummingbird, swift-nio-http2 or gRPC. Enable one with
    // `.package(url: ..., from: ..., traits: ["Hummingbird"])`, or `swift build --traits Hummingbird` here.
    traits: [
        .trait(name: "Hummingbird", description: "NIOGnuTLSHummingbird: HTTPS and HTTP/2 for Hummingbird 2 apps"),
        .trait(name: "GRPC", description: "NIOGnuTLSGRPC: TLS for grpc-swift-nio-transport 2"),
        .default(enabledTraits: []),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.3.0"),
        // Logging and metrics the way swift-server libraries do them: a Logger and a MetricsFactory are passed
        // in, nothing is logged or counted unless asked for. Both are small, API-only packages.
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        // Only tls-server's --metrics uses it (the Prometheus text format); the libraries do not.
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // The system's GnuTLS, seen through a modulemap and a header of static inline shims.
        .systemLibrary(
            name: "CGnuTLS",
            pkgConfig: "gnutls",
            providers: [.apt(["libgnutls28-dev"])]
        ),
        // The Swift session layer: configuration, context, sans-I/O session, errors, certificates.
        .target(name: "GnuTLS", dependencies: ["CGnuTLS"]),
        // The PROXY protocol (v1 and v2) header parser and peer allow list: pure values, no NIO, no GnuTLS.
        .target(name: "ProxyProtocol"),
        // SwiftNIO channel handler and async API over the session layer.
        .target(
            name: "NIOGnuTLS",
            dependencies: [
                "GnuTLS", "ProxyProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),
        // Output and error wording shared by the commands.
        .target(
            name: "TLSCommandSupport",
            dependencies: [
                "GnuTLS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "tls-server",
            dependencies: [
                "GnuTLS", "NIOGnuTLS", "TLSCommandSupport",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .executableTarget(
            name: "tls-client",
            dependencies: [
                "GnuTLS", "NIOGnuTLS", "TLSCommandSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "tls-certs",
            dependencies: [
                "GnuTLS", "TLSCommandSupport", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "GnuTLSTests", dependencies: ["GnuTLS"]),
        .testTarget(name: "ProxyProtocolTests", dependencies: ["ProxyProtocol"]),
        .testTarget(
            name: "NIOGnuTLSTests",
            dependencies: [
                "GnuTLS", "NIOGnuTLS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "InMemoryLogging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ]
        ),
        .testTarget(name: "CommandTests", dependencies: ["GnuTLS"]),

        // libFuzzer targets (run them with tools/fuzz). Built with -sanitize=fuzzer,address -DFUZZING they have
        // libFuzzer's main; in a plain build each replays the input files named on its command line.
        .target(name: "FuzzSupport", dependencies: ["GnuTLS"], path: "Fuzz/FuzzSupport"),
    ] + fuzzTargets.map { name in
        .executableTarget(name: name, dependencies: ["GnuTLS", "FuzzSupport", "ProxyProtocol"], path: "Fuzz/\(name)")
    }
)
