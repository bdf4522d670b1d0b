// swift-tools-version:6.0
// The competitor in the benchmarks: the same echo protocol as tls-server, on SwiftNIO + swift-nio-ssl (BoringSSL).
// A separate package so that the main package never pulls in BoringSSL.
import PackageDescription

let package = Package(
    name: "nio-ssl-echo",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "nio-ssl-echo-server", targets: ["nio-ssl-echo-server"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
    ],
    targets: [
        .executableTarget(
            name: "nio-ssl-echo-server",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        )
    ]
)
