import GnuTLS
import NIOCore
import NIOGnuTLS
import NIOPosix
import Testing

/// The listeners here allow 60 s for the handshake: these tests are not about that deadline, and a client's
/// steps run on the test's task, which the other suites' in-memory handshakes can hold back (CI once saw the
/// PROXY test's connection closed by the default 10 s deadline before its client began the handshake).
@Suite struct AsyncAPITests {
    let pki = HandlerPKI.shared

    /// Starts an echo listener on a free loopback port and runs `body` with the port.
    func withEchoServer(_ body: @Sendable (Int) async throws -> Void) async throws {
        let serverContext = try pki.serverContext()
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await TLSListener.listen(
                    host: "127.0.0.1", port: 0, context: serverContext, handshakeTimeout: .seconds(60),
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

    @Test func aListenerBehindABalancerReadsThePROXYHeaderAndRefusesAConnectionWithout() async throws {
        let serverContext = try pki.serverContext()
        let clientContext = try pki.clientContext()
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let (failures, failureContinuation) = AsyncStream.makeStream(of: String.self)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await TLSListener.listen(
                    host: "127.0.0.1", port: 0, context: serverContext, handshakeTimeout: .seconds(60),
                    onListening: { address in portContinuation.yield(address?.port ?? 0) },
                    onFailure: { error, _ in failureContinuation.yield("\(error)") },
                    proxyProtocol: IPNetwork.loopback
                ) { connection in
                    // Answers with the client the header named.
                    try await connection.write(Array((connection.proxyHeader?.source?.description ?? "none").utf8))
                }
            }
            var iterator = ports.makeAsyncIterator()
            let port = try #require(await iterator.next())
            // The balancer's part: the header goes out before the ClientHello.
            let header = Array("PROXY TCP4 203.0.113.9 127.0.0.1 40404 443\r\n".utf8)
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(HeaderWriter(header: header))
                    }
                }
                .connect(host: "127.0.0.1", port: port).get()
            let reply = try await TLSConnection.connectOver(channel, context: clientContext)
            #expect(reply == "203.0.113.9:40404")

            // Straight to TLS, without a header: refused with the header's error, the listener serving on.
            await #expect(throws: (any Error).self) {
                try await TLSConnection.connect(host: "127.0.0.1", port: port, context: clientContext, serverName: "localhost") {
                    try await $0.readAll()
                }
            }
            var failureIterator = failures.makeAsyncIterator()
            #expect(await failureIterator.next() == "no PROXY protocol header: the connection starts with a TLS handshake")
            group.cancelAll()
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


/// Writes `header` as soon as the connection is up, before the TLS handler after it sends its ClientHello.
final class HeaderWriter: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let header: [UInt8]

    init(header: [UInt8]) { self.header = header }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: header)), promise: nil)
        context.fireChannelActive()
    }
}

extension TLSConnection {
    /// A TLS exchange over a connected channel whose pipeline already writes a PROXY header: the reply to nothing,
    /// read until the server closes.
    static func connectOver(_ channel: any Channel, context: TLSContext) async throws -> String {
        let reader = Collector()
        let handshake = try await channel.eventLoop.submit {
            let handler = try GnuTLSHandler(context: context, serverName: "localhost")
            try channel.pipeline.syncOperations.addHandler(handler)
            try channel.pipeline.syncOperations.addHandler(reader)
            return handler.handshakeFuture!
        }.get()
        _ = try await handshake.get()
        try await channel.closeFuture.get()
        return try await channel.eventLoop.submit { String(decoding: reader.bytes, as: UTF8.self) }.get()
    }
}

/// Collects what reaches the end of the pipeline.
final class Collector: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    var bytes: [UInt8] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        bytes += unwrapInboundIn(data).readableBytesView
    }
}
