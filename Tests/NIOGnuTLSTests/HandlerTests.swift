import GnuTLS
import NIOCore
import NIOEmbedded
import NIOGnuTLS
import NIOTLS
import Testing

/// Records what reaches the end of a pipeline.
final class Recorder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    var received: [UInt8] = []
    var events: [Any] = []
    var errors: [any Error] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received.append(contentsOf: unwrapInboundIn(data).readableBytesView)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        events.append(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        errors.append(error)
    }

    var handshakeInfo: TLSHandshakeInfo? {
        for case GnuTLSEvent.handshakeCompleted(let info) in events.compactMap({ $0 as? GnuTLSEvent }) { return info }
        return nil
    }
}

/// A PKI and contexts shared by the handler tests.
struct HandlerPKI: Sendable {
    let ca: CertificateAuthority
    let server: CertificateAuthority.Issued

    static let shared: HandlerPKI = {
        do {
            let ca = try CertificateAuthority.generate(commonName: "Handler Test CA")
            return HandlerPKI(
                ca: ca, server: try ca.issue(commonName: "localhost", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"]))
        } catch {
            fatalError("cannot make the test PKI: \(error)")
        }
    }()

    func serverContext(alpn: [String] = []) throws -> TLSContext {
        try TLSContext(
            configuration: .server(
                identity: .certificates(server.chain, privateKey: server.privateKey), applicationProtocols: alpn))
    }

    func clientContext(alpn: [String] = []) throws -> TLSContext {
        try TLSContext(
            configuration: .client(
                serverName: "localhost", trustRoots: .certificates([ca.certificate]), applicationProtocols: alpn))
    }
}

/// Two embedded channels, each with a GnuTLSHandler and a Recorder, wired to each other by hand.
final class ChannelPair {
    let client = EmbeddedChannel()
    let server = EmbeddedChannel()
    let clientRecorder = Recorder()
    let serverRecorder = Recorder()
    /// Channel writes seen leaving each side (one per flush is the contract).
    var clientWrites = 0
    var serverWrites = 0

    init(
        clientContext: TLSContext, serverContext: TLSContext, handshakeTimeout: TimeAmount = .seconds(10)
    ) throws {
        try client.pipeline.syncOperations.addHandler(GnuTLSHandler(context: clientContext, handshakeTimeout: handshakeTimeout))
        try client.pipeline.syncOperations.addHandler(clientRecorder)
        try server.pipeline.syncOperations.addHandler(GnuTLSHandler(context: serverContext, handshakeTimeout: handshakeTimeout))
        try server.pipeline.syncOperations.addHandler(serverRecorder)
    }

    func activate() throws {
        try server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 2)).wait()
    }

    /// Moves bytes both ways until nothing moves.
    func pump() throws {
        var moved = true
        var rounds = 0
        while moved && rounds < 100 {
            moved = false
            rounds += 1
            while let buffer = try client.readOutbound(as: ByteBuffer.self) {
                clientWrites += 1
                moved = true
                if server.isActive { try server.writeInbound(buffer) }
            }
            while let buffer = try server.readOutbound(as: ByteBuffer.self) {
                serverWrites += 1
                moved = true
                if client.isActive { try client.writeInbound(buffer) }
            }
        }
    }
}

@Suite struct HandlerTests {
    let pki = HandlerPKI.shared

    @Test func handshakeAnnouncesWhatWasAgreedAndDataFlows() throws {
        let pair = try ChannelPair(
            clientContext: pki.clientContext(alpn: ["echo"]), serverContext: pki.serverContext(alpn: ["echo"]))
        try pair.activate()
        try pair.pump()
        let info = try #require(pair.clientRecorder.handshakeInfo)
        #expect(info.version == .tls13)
        #expect(info.applicationProtocol == "echo")
        #expect(info.peerCertificates.first == pki.server.certificate)
        #expect(pair.serverRecorder.handshakeInfo?.requestedServerName == "localhost")
        // swift-nio-ssl's event too, so existing NIO handlers work unchanged.
        #expect(pair.clientRecorder.events.contains { ($0 as? TLSUserEvent) == .handshakeCompleted(negotiatedProtocol: "echo") })

        try pair.client.writeAndFlush(ByteBuffer(string: "Hello from client!")).wait()
        try pair.pump()
        #expect(pair.serverRecorder.received == Array("Hello from client!".utf8))
        try pair.server.writeAndFlush(ByteBuffer(string: "Hello from server!")).wait()
        try pair.pump()
        #expect(pair.clientRecorder.received == Array("Hello from server!".utf8))
    }

    @Test func writesBeforeTheHandshakeAreHeldAndSent() throws {
        let pair = try ChannelPair(clientContext: pki.clientContext(), serverContext: pki.serverContext())
        try pair.activate()
        let written = pair.client.writeAndFlush(ByteBuffer(string: "early"))
        try pair.pump()
        try written.wait()
        #expect(pair.serverRecorder.received == Array("early".utf8))
    }

    @Test func oneChannelWritePerFlush() throws {
        let pair = try ChannelPair(clientContext: pki.clientContext(), serverContext: pki.serverContext())
        try pair.activate()
        try pair.pump()
        let before = pair.clientWrites
        for index in 0..<10 { pair.client.write(ByteBuffer(string: "part \(index);"), promise: nil) }
        pair.client.flush()
        try pair.pump()
        #expect(pair.clientWrites - before == 1)
        #expect(String(decoding: pair.serverRecorder.received, as: UTF8.self) == (0..<10).map { "part \($0);" }.joined())
    }

    @Test func writesLeftUnflushedAtCloseGoOutWithTheCloseNotifyInOneWrite() throws {
        let pair = try ChannelPair(clientContext: pki.clientContext(), serverContext: pki.serverContext())
        try pair.activate()
        try pair.pump()
        let before = pair.clientWrites
        let written = pair.client.write(ByteBuffer(string: "last words"))
        let closed = pair.client.close()
        // Move only the client's output: it must be one channel write holding the data and the close_notify.
        var writes: [ByteBuffer] = []
        while let buffer = try pair.client.readOutbound(as: ByteBuffer.self) { writes.append(buffer) }
        #expect(writes.count == 1)
        pair.clientWrites += writes.count
        for buffer in writes { try pair.server.writeInbound(buffer) }
        try pair.pump()
        try written.wait()
        try closed.wait()
        #expect(pair.clientWrites - before == 1)
        #expect(pair.serverRecorder.received == Array("last words".utf8))
        #expect(pair.serverRecorder.errors.isEmpty)
        #expect(!pair.server.isActive)
    }

    @Test func closeSendsCloseNotifyAndThePeerClosesCleanly() throws {
        let pair = try ChannelPair(clientContext: pki.clientContext(), serverContext: pki.serverContext())
        try pair.activate()
        try pair.pump()
        let closed = pair.client.close()
        try pair.pump()
        // The server answered close_notify with its own and closed; the client's close then completed.
        #expect(!pair.server.isActive)
        try closed.wait()
        #expect(pair.serverRecorder.errors.isEmpty)
        #expect(pair.clientRecorder.errors.isEmpty)
    }

    @Test func endOfStreamWithoutCloseNotifyIsTruncation() throws {
        let pair = try ChannelPair(clientContext: pki.clientContext(), serverContext: pki.serverContext())
        try pair.activate()
        try pair.pump()
        try pair.client.writeAndFlush(ByteBuffer(string: "cut")).wait()
        try pair.pump()
        pair.server.pipeline.fireChannelInactive()
        let error = try #require(pair.serverRecorder.errors.first as? TLSError)
        #expect(error.kind == .truncated)
        #expect(pair.serverRecorder.received == Array("cut".utf8))
    }

    @Test func handshakeTimesOut() throws {
        let pair = try ChannelPair(
            clientContext: pki.clientContext(), serverContext: pki.serverContext(), handshakeTimeout: .seconds(5))
        try pair.server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        // The client never speaks.
        pair.server.embeddedEventLoop.advanceTime(by: .seconds(4))
        #expect(pair.server.isActive)
        pair.server.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(!pair.server.isActive)
        let error = try #require(pair.serverRecorder.errors.first as? TLSError)
        #expect(error.kind == .timeout)
        #expect(error.reason == "the handshake did not complete within 5 s")
    }

    @Test func verificationFailureReachesTheClientPipeline() throws {
        let other = try CertificateAuthority.generate(commonName: "Other")
        let clientContext = try TLSContext(
            configuration: .client(serverName: "localhost", trustRoots: .certificates([other.certificate])))
        let pair = try ChannelPair(clientContext: clientContext, serverContext: pki.serverContext())
        try pair.activate()
        try pair.pump()
        let error = try #require(pair.clientRecorder.errors.first as? TLSError)
        #expect(error.verification?.reasons == [.untrustedIssuer])
        #expect(!pair.client.isActive)
        // The server learned why from the alert.
        #expect((pair.serverRecorder.errors.first as? TLSError)?.kind == .alertReceived)
    }
}

@Suite struct HandlerTimerTests {
    let pki = HandlerPKI.shared

    @Test func idleConnectionsAreClosedWithCloseNotifyAndActivityKeepsThemOpen() throws {
        let client = EmbeddedChannel()
        let server = EmbeddedChannel()
        let recorder = Recorder()
        let clientRecorder = Recorder()
        try client.pipeline.syncOperations.addHandler(GnuTLSHandler(context: pki.clientContext()))
        try client.pipeline.syncOperations.addHandler(clientRecorder)
        try server.pipeline.syncOperations.addHandler(
            GnuTLSHandler(context: pki.serverContext(), idleTimeout: .seconds(30)))
        try server.pipeline.syncOperations.addHandler(recorder)
        try server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 2)).wait()
        func pump() throws {
            for _ in 0..<20 {
                var moved = false
                while let b = try client.readOutbound(as: ByteBuffer.self) { moved = true; if server.isActive { try server.writeInbound(b) } }
                while let b = try server.readOutbound(as: ByteBuffer.self) { moved = true; if client.isActive { try client.writeInbound(b) } }
                if !moved { break }
            }
        }
        try pump()
        #expect(recorder.handshakeInfo != nil)
        // Activity at 20 s pushes the deadline to 50 s.
        server.embeddedEventLoop.advanceTime(by: .seconds(20))
        try client.writeAndFlush(ByteBuffer(string: "still here")).wait()
        try pump()
        server.embeddedEventLoop.advanceTime(by: .seconds(25))
        #expect(server.isActive)
        server.embeddedEventLoop.advanceTime(by: .seconds(6))
        // The server's close_notify is on its way; the connection waits for the answer.
        #expect(server.isActive)
        try pump()
        #expect(!server.isActive && !client.isActive)
        // One idle event, no error on either side: the client saw a clean close_notify exchange.
        #expect(recorder.events.filter { ($0 as? GnuTLSEvent) == .idleTimeout(.seconds(30)) }.count == 1)
        #expect(recorder.errors.isEmpty, "\(recorder.errors)")
        #expect(clientRecorder.errors.isEmpty, "\(clientRecorder.errors)")
        #expect(clientRecorder.events.contains { ($0 as? TLSUserEvent) == .shutdownCompleted })
        #expect(recorder.events.contains { ($0 as? TLSUserEvent) == .shutdownCompleted })
    }

    @Test func closeWaitsABoundedTimeForThePeersCloseNotify() throws {
        let pair = try ChannelPair(clientContext: pki.clientContext(), serverContext: pki.serverContext())
        try pair.activate()
        try pair.pump()
        // The client's close_notify never reaches the server's peer: the server's close completes on the timer.
        let closed = pair.server.close()
        pair.server.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(pair.server.isActive)
        pair.server.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(!pair.server.isActive)
        try closed.wait()
    }
}
