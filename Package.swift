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
        // Hummingbird 2 over NIOGnuTLS; empty unless the `Hummingbird` trait is on.
        .library(name: "NIOGnuTLSHummingbird", targets: ["NIOGnuTLSHummingbird"]),
        .executable(name: "https-demo", targets: ["https-demo"]),
    ],
    // Integrations with frameworks are package traits, off by default, so that a package depending only on
    // GnuTLS or NIOGnuTLS neither builds nor links Hummingbird, swift-nio-http2 or gRPC. Enable one with
    // `.package(url: ..., from: ..., traits: ["Hummingbird"])`, or `swift build --traits Hummingbird` here.
    traits: [
        .trait(name: "Hummingbird", description: "NIOGnuTLSHummingbird: HTTPS and HTTP/2 for Hummingbird 2 apps"),
        .trait(
            name: "GRPC", description: "NIOGnuTLSGRPC: TLS for grpc-swift-nio-transport 2",
            enabledTraits: ["X509"]),
        .trait(name: "X509", description: "NIOGnuTLSX509: peer certificates as swift-certificates' X509.Certificate"),
        .default(enabledTraits: []),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.3.0"),
        // Only for `swift package generate-documentation` (tools/docs): a command plugin that no product uses, so
        // a package depending on GnuTLS or NIOGnuTLS neither fetches nor builds it (it is not in that package's
        // Package.resolved).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin.git", from: "1.5.0"),
        // Used only with the Hummingbird trait (every product taken from them below is conditional on it).
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.34.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.0.0"),
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
        // Hummingbird 2 on NIOGnuTLS: HTTP/1.1 and HTTP/2 (ALPN) server builders, the handshake info in routes.
        // Its sources compile to nothing without the trait, and its framework dependencies are not built.
        .target(
            name: "NIOGnuTLSHummingbird",
            dependencies: [
                "GnuTLS", "NIOGnuTLS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird", condition: .when(traits: ["Hummingbird"])),
                .product(name: "HummingbirdCore", package: "hummingbird", condition: .when(traits: ["Hummingbird"])),
                .product(name: "NIOHTTP1", package: "swift-nio", condition: .when(traits: ["Hummingbird"])),
                .product(name: "NIOHTTP2", package: "swift-nio-http2", condition: .when(traits: ["Hummingbird"])),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras", condition: .when(traits: ["Hummingbird"])),
                .product(
                    name: "NIOHTTPTypesHTTP2", package: "swift-nio-extras",
                    condition: .when(traits: ["Hummingbird"])),
                .product(name: "Logging", package: "swift-log", condition: .when(traits: ["Hummingbird"])),
            ]
        ),
        // The demo app of tools/https-demo: GET / and POST /echo over HTTP/1.1 and HTTP/2.
        .executableTarget(
            name: "https-demo",
            dependencies: [
                "GnuTLS", "NIOGnuTLSHummingbird",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird", condition: .when(traits: ["Hummingbird"])),
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
        .testTarget(
            name: "HummingbirdTests",
            dependencies: [
                "GnuTLS", "NIOGnuTLS", "NIOGnuTLSHummingbird",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird", condition: .when(traits: ["Hummingbird"])),
                .product(name: "HummingbirdCore", package: "hummingbird", condition: .when(traits: ["Hummingbird"])),
                .product(name: "Logging", package: "swift-log", condition: .when(traits: ["Hummingbird"])),
                .product(
                    name: "ServiceLifecycle", package: "swift-service-lifecycle",
                    condition: .when(traits: ["Hummingbird"])),
            ],
            // Run by HummingbirdStressTests with python3, not compiled.
            exclude: ["stress_client.py"]
        ),

        // libFuzzer targets (run them with tools/fuzz). Built with -sanitize=fuzzer,address -DFUZZING they have
        // libFuzzer's main; in a plain build each replays the input files named on its command line.
        .target(name: "FuzzSupport", dependencies: ["GnuTLS"], path: "Fuzz/FuzzSupport"),
    ] + fuzzTargets.map { name in
        .executableTarget(name: name, dependencies: ["GnuTLS", "FuzzSupport", "ProxyProtocol"], path: "Fuzz/\(name)")
    }
)

// gRPC (trait GRPC) and swift-certificates (trait X509). The targets are always in the graph, but their
// dependencies are conditional and their sources are `#if GRPC` / `#if X509`, so without the traits they compile
// to nothing and no gRPC, swift-nio-ssl or swift-certificates code is built.
package.products += [
    .library(name: "NIOGnuTLSGRPC", targets: ["NIOGnuTLSGRPC"]),
    .library(name: "NIOGnuTLSX509", targets: ["NIOGnuTLSX509"]),
]
package.dependencies += [
    .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
    .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
    .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
    // swift-certificates' own dependency, named for DER.Serializer and Certificate(derEncoded:).
    .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
]
package.targets += [
    .target(
        name: "NIOGnuTLSX509",
        dependencies: [
            "GnuTLS", "NIOGnuTLS",
            .product(name: "X509", package: "swift-certificates", condition: .when(traits: ["X509"])),
            .product(name: "SwiftASN1", package: "swift-asn1", condition: .when(traits: ["X509"])),
        ]
    ),
    .target(
        name: "NIOGnuTLSGRPC",
        dependencies: [
            "GnuTLS", "NIOGnuTLS",
            .target(name: "NIOGnuTLSX509", condition: .when(traits: ["GRPC"])),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "GRPCCore", package: "grpc-swift-2", condition: .when(traits: ["GRPC"])),
            .product(
                name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport",
                condition: .when(traits: ["GRPC"])),
            .product(name: "X509", package: "swift-certificates", condition: .when(traits: ["GRPC"])),
        ]
    ),
    .testTarget(
        name: "NIOGnuTLSX509Tests",
        dependencies: [
            "GnuTLS", "NIOGnuTLS", "NIOGnuTLSX509",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
            .product(name: "X509", package: "swift-certificates", condition: .when(traits: ["X509"])),
        ]
    ),
    .testTarget(
        name: "NIOGnuTLSGRPCTests",
        dependencies: [
            "GnuTLS", "NIOGnuTLS", "NIOGnuTLSGRPC",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "GRPCCore", package: "grpc-swift-2", condition: .when(traits: ["GRPC"])),
            .product(
                name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport",
                condition: .when(traits: ["GRPC"])),
            .product(name: "X509", package: "swift-certificates", condition: .when(traits: ["GRPC"])),
        ]
    ),
]
