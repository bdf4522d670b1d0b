// The gRPC transport over GnuTLS under stress: a consumer that reads a long server stream slowly, and a raw
// HTTP/2 connection reset (TCP RST) in the middle of a request. The reset comes from Python's ssl module
// (Tests/HummingbirdTests/stress_client.py, its `reset h2` mode); every wait is bounded.
#if GRPC
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import GnuTLS
import NIOGnuTLS
import NIOGnuTLSGRPC
import Testing

private let stressClient = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("HummingbirdTests/stress_client.py").path

/// Runs python3 on stress_client.py to completion (at most 60 s); returns its exit status and standard output.
private func runStressClient(_ arguments: [String]) async throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", stressClient] + arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let clock = ContinuousClock()
    let deadline = clock.now + .seconds(60)
    while process.isRunning {
        if clock.now >= deadline {
            process.terminate()
            throw TimeLimitExceeded()
        }
        try await Task.sleep(for: .milliseconds(20))
    }
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    return (process.terminationStatus, output)
}

private struct TimeLimitExceeded: Error {}

@Suite(.timeLimit(.minutes(2))) struct GRPCStressTests {
    let pki = GRPCPKI.shared
    let base = GRPCOverGnuTLSTests()

    @Test func aLongServerStreamReadSlowlyArrivesWholeAndInOrder() async throws {
        // 4,000 words of 256 bytes: a 1 MiB request and 4,000 responses, far past HTTP/2's 64 KiB window.
        let words = (0..<4000).map { index in String(repeating: Character(UnicodeScalar(97 + index % 26)!), count: 250)
            + String(format: "%06d", index) }
        let received = try await base.withServer(
            serverContext: try pki.serverContext(), clientContext: try pki.clientContext()
        ) { client, _ in
            try await client.serverStreaming(
                request: ClientRequest(message: words.joined(separator: " ")), descriptor: Echo.expand,
                serializer: UTF8Serializer(), deserializer: UTF8Deserializer(), options: .defaults
            ) { response in
                var all: [String] = []
                for try await word in response.messages {
                    all.append(word)
                    if all.count % 100 == 0 { try await Task.sleep(for: .milliseconds(10)) }
                }
                return all
            }
        }
        #expect(received.count == words.count)
        #expect(received == words)
    }

    @Test func aConnectionResetInTheMiddleOfARequestEndsOnlyThatConnection() async throws {
        let caFile = FileManager.default.temporaryDirectory
            .appendingPathComponent("grpc-stress-ca-\(getpid()).crt").path
        try Certificate.writePEM([pki.ca.certificate], toFile: caFile)
        defer { try? FileManager.default.removeItem(atPath: caFile) }
        let transport = try HTTP2ServerTransport.GnuTLS(
            address: .ipv4(host: "127.0.0.1", port: 0), context: try pki.serverContext())
        let server = GRPCServer(transport: transport, services: [EchoService(transport: transport)])
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.serve() }
            defer { server.beginGracefulShutdown() }
            let port = try #require(try await server.listeningAddress?.ipv4).port
            // The HTTP/2 preface, HEADERS for POST /echo and 48 KiB of DATA on stream 1, then RST (no HTTP/1.1
            // follow-up: this server speaks only HTTP/2).
            let (status, output) = try await runStressClient(["reset", "\(port)", caFile, "h2", "--no-follow-up"])
            #expect(status == 0 && output == #"{"alpn": "h2"}"# + "\n", "\(output)")
            // The transport forgets the reset connection, and a real client is then served.
            for _ in 0..<500 where transport.trackedConnectionCount > 0 {
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(transport.trackedConnectionCount == 0)
            let clientTransport = try HTTP2ClientTransport.GnuTLS(
                target: .ipv4(address: "127.0.0.1", port: port), context: try pki.clientContext())
            let reply = try await withGRPCClient(transport: clientTransport) { client in
                try await base.call(client, Echo.get, "after the reset")
            }
            #expect(reply == "echo: after the reset")
        }
    }
}
#endif
