// swift-tools-version:6.0
// The competitor in the Hummingbird benchmark (tools/bench --hummingbird-only): the https-demo app (GET /,
// POST /echo, GET /tls; HTTP/2 and HTTP/1.1 by ALPN) on Hummingbird's own TLS, HummingbirdHTTP2 over
// swift-nio-ssl (BoringSSL), instead of NIOGnuTLSHummingbird. A separate package so that the main package never
// pulls in BoringSSL; the same Hummingbird (and so the same default traits) as the main package.
import PackageDescription

let package = Package(
    name: "hummingbird-nio-ssl",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "https-demo-nio-ssl", targets: ["hummingbird-nio-ssl"])
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
    ],
    targets: [
        .executableTarget(
            name: "hummingbird-nio-ssl",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdHTTP2", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        )
    ]
)
