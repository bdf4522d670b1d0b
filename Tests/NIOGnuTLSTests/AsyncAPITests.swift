import GnuTLS
import NIOCore
import NIOGnuTLS
import NIOPosix
import Testing

@Suite struct AsyncAPITests {
    let pki = HandlerPKI.shared

    /// Starts an echo listener on a free loopback port and runs `body` with the port.
    func withEchoServer(_ body: @Sendable (Int) async throws -> Void) async throws {
        let serverContext = try pki.serverContext()
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await TLSListener.listen(
                    host: "127.0.0.1", port: 0, context: serverContext,
                    onListening: { address in portContinuation.yield(address?.port ?? 0) }
                ) { connection in
                    while let chunk = try await connection.read() { try await connection.write(chunk) }
                }
            }
            var iterator = ports.makeAsyncIterator()
            let port = try #require(await iterator.next())
            try await body(port)
            group.cancelAll()
        }
    }

    @Test func connectWriteReadAndClose() async throws {
        let clientContext = try pki.clientContext()
        try await withEchoServer { port in
            let reply = try await TLSConnection.connect(host: "127.0.0.1", port: port, context: clientContext, serverName: "localhost") {
                connection in
                #expect(connection.info.version == .tls13)
                try await connection.write(Array("Hello from client!".utf8))
                try await connection.closeOutput()
                var bytes: [UInt8] = []
                while let chunk = try await connection.read() { bytes.append(contentsOf: chunk.readableBytesView) }
                return bytes
            }
            #expect(reply == Array("Hello from client!".utf8))
        }
    }

    @Test func aSecondConnectionResumesWithTheFirstOnesResumptionData() async throws {
        let clientContext = try pki.clientContext()
        try await withEchoServer { port in
            func exchange(_ data: [UInt8]?) async throws -> (resumed: Bool, data: [UInt8]?) {
                try await TLSConnection.connect(
                    host: "127.0.0.1", port: port, context: clientContext, serverName: "localhost", resumptionData: data
                ) { connection in
                    try await connection.write(Array("ping".utf8))
                    try await connection.closeOutput()
                    #expect(try await connection.readAll() == Array("ping".utf8))
                    // Read after the server's close_notify: the TLS 1.3 ticket came with the echo.
                    return (connection.info.isResumed, try await connection.resumptionData())
                }
            }
            let first = try await exchange(nil)
            #expect(!first.resumed)
            let data = try #require(first.data)
            let second = try await exchange(data)
            #expect(second.resumed)
        }
    }

    @Test func manyConcurrentConnections() async throws {
        let clientContext = try pki.clientContext()
        try await withEchoServer { port in
            try await withThrowingTaskGroup(of: Bool.self) { group in
                for index in 0..<20 {
                    group.addTask {
                        let message = Array("message \(index)".utf8)
                        let reply = try await TLSConnection.connect(
                            host: "127.0.0.1", port: port, context: clientContext, serverName: "localhost"
                        ) { connection in
                            try await connection.write(message)
                            try await connection.closeOutput()
                            return try await connection.readAll()
                        }
                        return reply == message
                    }
                }
                var successes = 0
                for try await ok in group where ok { successes += 1 }
                #expect(successes == 20)
            }
        }
    }

    @Test func verificationFailureIsThrownFromConnect() async throws {
        let other = try CertificateAuthority.generate(commonName: "Other")
        let clientContext = try TLSContext(
            configuration: .client(serverName: "localhost", trustRoots: .certificates([other.certificate])))
        try await withEchoServer { port in
            let error = await #expect(throws: TLSError.self) {
                try await TLSConnection.connect(host: "127.0.0.1", port: port, context: clientContext) { _ in }
            }
            #expect(error?.kind == .verification)
        }
    }
}
