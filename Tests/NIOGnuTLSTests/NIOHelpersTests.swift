import GnuTLS
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOGnuTLS
import NIOPosix
import NIOTLS
import Testing

/// The helpers and events NIO code written for swift-nio-ssl expects: `syncOperations.addGnuTLSHandler`, the
/// handshake info from the pipeline and from async code, NIO's ALPN handlers, `NIOAsyncChannel` with outbound
/// half-closure, and events passing through.
@Suite struct NIOHelpersTests {
    let pki = HandlerPKI.shared

    /// Two embedded channels whose GnuTLS handlers were added with `addGnuTLSHandler`, and whatever handlers
    /// come after them.
    final class Pair {
        /// The channels and the byte pump, as the lifecycle tests use them.
        let wires = EmbeddedPair()
        var client: EmbeddedChannel { wires.client }
        var server: EmbeddedChannel { wires.server }

        init(
            clientContext: TLSContext, serverContext: TLSContext, clientHandlers: [any ChannelHandler] = [],
            serverHandlers: [any ChannelHandler] = []
        ) throws {
            try client.pipeline.syncOperations.addGnuTLSHandler(context: clientContext, serverName: "localhost")
            try client.pipeline.syncOperations.addHandlers(clientHandlers)
            try server.pipeline.syncOperations.addGnuTLSHandler(context: serverContext)
            try server.pipeline.syncOperations.addHandlers(serverHandlers)
        }

        func activate() throws { try wires.connect() }
        func pump() throws { try wires.pump() }
    }

    // MARK: - Handshake info

    @Test func syncOperationsAndChannelGiveTheHandshakeInfoOnceItCompletes() throws {
        let pair = try Pair(
            clientContext: pki.clientContext(alpn: ["h2", "http/1.1"]), serverContext: pki.serverContext(alpn: ["h2"]))
        // Before the handshake: nil from the pipeline, a future that waits.
        #expect(try pair.client.pipeline.syncOperations.gnuTLSHandshakeInfo() == nil)
        let clientFuture: EventLoopFuture<TLSHandshakeInfo> = pair.client.gnuTLSHandshakeInfo()
        let early = NIOLockedValueBox<TLSHandshakeInfo?>(nil)
        clientFuture.whenSuccess { info in early.withLockedValue { $0 = info } }
        try pair.activate()
        #expect(early.withLockedValue { $0 } == nil)
        try pair.pump()

        let clientInfo = try #require(try pair.client.pipeline.syncOperations.gnuTLSHandshakeInfo())
        #expect(clientInfo.version == .tls13)
        #expect(clientInfo.cipherSuite?.hasPrefix("TLS_") == true)
        #expect(clientInfo.applicationProtocol == "h2")
        #expect(clientInfo.peerCertificates == pki.server.chain)
        #expect(early.withLockedValue { $0 } == clientInfo)
        let serverInfo = try #require(try pair.server.pipeline.syncOperations.gnuTLSHandshakeInfo())
        #expect(serverInfo.requestedServerName == "localhost")
        #expect(serverInfo.peerCertificates.isEmpty)
        #expect(try pair.server.gnuTLSHandshakeInfo().wait() == serverInfo)
    }

    @Test func aFailedHandshakeFailsTheWaitingFutureAndTheSyncLookupWithItsError() throws {
        let stranger = try CertificateAuthority.generate(commonName: "Stranger CA")
        let untrusting = try TLSContext(
            configuration: .client(serverName: "localhost", trustRoots: .certificates([stranger.certificate])))
        // The handlers report the errors down the pipeline too (the embedded channels would rethrow them).
        let pair = try Pair(
            clientContext: untrusting, serverContext: pki.serverContext(), clientHandlers: [ErrorSwallower()],
            serverHandlers: [ErrorSwallower()])
        let waiting = pair.client.gnuTLSHandshakeInfo()
        let failure = NIOLockedValueBox<(any Error)?>(nil)
        waiting.whenFailure { error in failure.withLockedValue { $0 = error } }
        try pair.activate()
        #expect(try pair.client.pipeline.syncOperations.gnuTLSHandshakeInfo() == nil)
        try pair.pump()
        #expect((failure.withLockedValue { $0 } as? TLSError)?.kind == .verification)
        // Until the channel's close has run its course, the pipeline still holds the handler: the same error.
        #expect {
            try pair.client.pipeline.syncOperations.gnuTLSHandshakeInfo()
        } throws: { error in
            (error as? TLSError)?.kind == .verification
        }
    }

    @Test func asyncCodeWaitsForTheHandshakeOverLoopbackAndGetsTheErrorOfOneThatFailed() async throws {
        let serverContext = try pki.serverContext(alpn: ["h2"])
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addGnuTLSHandler(context: serverContext)
                    try channel.pipeline.syncOperations.addHandler(ErrorSwallower())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(server.localAddress?.port)

        // Asked from the channel initializer, before the connection is even active: the answer waits.
        func connect(_ context: TLSContext) async throws -> (any Channel, EventLoopFuture<TLSHandshakeInfo>) {
            let asked = NIOLockedValueBox<EventLoopFuture<TLSHandshakeInfo>?>(nil)
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addGnuTLSHandler(context: context, serverName: "localhost")
                        try channel.pipeline.syncOperations.addHandler(ErrorSwallower())
                        let future: EventLoopFuture<TLSHandshakeInfo> = channel.gnuTLSHandshakeInfo()
                        asked.withLockedValue { $0 = future }
                    }
                }
                .connect(host: "127.0.0.1", port: port).get()
            return (channel, try #require(asked.withLockedValue { $0 }))
        }

        let (good, early) = try await connect(pki.clientContext(alpn: ["h2"]))
        // Asked from async code right after connecting, while the handshake may still be under way.
        let info = try await good.gnuTLSHandshakeInfo()
        #expect(try await early.get() == info)
        #expect(info.version == .tls13)
        #expect(info.applicationProtocol == "h2")
        #expect(info.peerCertificates.first == pki.server.certificate)
        try await good.close()

        let stranger = try CertificateAuthority.generate(commonName: "Stranger CA")
        let (bad, waiting) = try await connect(
            TLSContext(
                configuration: .client(serverName: "localhost", trustRoots: .certificates([stranger.certificate]))))
        await #expect {
            try await waiting.get()
        } throws: { error in
            (error as? TLSError)?.kind == .verification
        }
        // Once the channel has closed, the handler (and what its handshake came to) has left the pipeline.
        try? await bad.closeFuture.get()
        await #expect(throws: ChannelError.ioOnClosedChannel) { try await bad.gnuTLSHandshakeInfo() }
        try await server.close()
    }

    @Test func aPipelineWithoutTheHandlerSaysSo() throws {
        let channel = EmbeddedChannel()
        #expect(throws: ChannelPipelineError.notFound) { try channel.pipeline.syncOperations.gnuTLSHandshakeInfo() }
        // Not active: there may have been a handler that left with the close.
        #expect(throws: ChannelError.ioOnClosedChannel) { try channel.gnuTLSHandshakeInfo().wait() }
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        #expect(throws: ChannelPipelineError.notFound) { try channel.gnuTLSHandshakeInfo().wait() }
    }

    @Test func handshakeInfoCanBeMadeByAppsAndTests() throws {
        let made = TLSHandshakeInfo(
            version: .tls12, cipherSuite: "TLS_ECDHE_ECDSA_AES_128_GCM_SHA256", group: "SECP256R1",
            applicationProtocol: "http/1.1", peerCertificates: pki.server.chain, requestedServerName: "localhost")
        #expect(made.version == .tls12)
        #expect(made.cipherSuite == "TLS_ECDHE_ECDSA_AES_128_GCM_SHA256")
        #expect(made.group == "SECP256R1")
        #expect(made.applicationProtocol == "http/1.1")
        #expect(made.peerCertificates == pki.server.chain)
        #expect(made.requestedServerName == "localhost")
        #expect(!made.isResumed && !made.serverNameAcknowledged && made.stapledOCSPResponse == nil)
        #expect(made == TLSHandshakeInfo(
            version: .tls12, cipherSuite: "TLS_ECDHE_ECDSA_AES_128_GCM_SHA256", group: "SECP256R1",
            applicationProtocol: "http/1.1", peerCertificates: pki.server.chain, requestedServerName: "localhost"))
        #expect(made != TLSHandshakeInfo(version: .tls13, cipherSuite: "TLS_ECDHE_ECDSA_AES_128_GCM_SHA256"))

        // A made one equals the handler's own when the fields match.
        let pair = try Pair(clientContext: pki.clientContext(), serverContext: pki.serverContext())
        try pair.activate()
        try pair.pump()
        let real = try #require(try pair.client.pipeline.syncOperations.gnuTLSHandshakeInfo())
        let copy = TLSHandshakeInfo(
            version: real.version, cipherSuite: real.cipherSuite, group: real.group,
            applicationProtocol: real.applicationProtocol, isResumed: real.isResumed,
            peerCertificates: real.peerCertificates, requestedServerName: real.requestedServerName,
            stapledOCSPResponse: real.stapledOCSPResponse, serverNameAcknowledged: real.serverNameAcknowledged)
        #expect(copy == real)
    }

    // MARK: - NIO's ALPN handlers

    @Test func applicationProtocolNegotiationHandlerSeesTheNegotiatedProtocolAndTheFallback() throws {
        for (offered, expected) in [
            (["h2", "http/1.1"], ALPNResult.negotiated("h2")), ([], ALPNResult.fallback),
        ] {
            var seen: [ALPNResult] = []
            let negotiation = ApplicationProtocolNegotiationHandler { result in
                seen.append(result)
                return EmbeddedEventLoop().makeSucceededVoidFuture()
            }
            let pair = try Pair(
                clientContext: pki.clientContext(alpn: offered), serverContext: pki.serverContext(alpn: ["h2"]),
                serverHandlers: [negotiation])
            try pair.activate()
            try pair.pump()
            #expect(seen == [expected])
            // The negotiation handler removes itself once it is done (and passes data on meanwhile).
            #expect(throws: ChannelPipelineError.notFound) {
                try pair.server.pipeline.syncOperations.handler(type: ApplicationProtocolNegotiationHandler.self)
            }
        }
    }

    @Test func typedApplicationProtocolNegotiationHandlerCompletesItsResult() throws {
        let negotiation = NIOTypedApplicationProtocolNegotiationHandler<String> { result, channel in
            switch result {
            case .negotiated(let name): return channel.eventLoop.makeSucceededFuture("speaks \(name)")
            case .fallback: return channel.eventLoop.makeSucceededFuture("fallback")
            }
        }
        let pair = try Pair(
            clientContext: pki.clientContext(alpn: ["http/1.1"]),
            serverContext: pki.serverContext(alpn: ["h2", "http/1.1"]),
            serverHandlers: [negotiation])
        try pair.activate()
        try pair.pump()
        #expect(try negotiation.protocolNegotiationResult.wait() == "speaks http/1.1")
    }

    // MARK: - Events and half-closure

    @Test func channelShouldQuiesceEventPassesThroughBeforeAndAfterTheHandshake() throws {
        let recorder = Recorder()
        let pair = try Pair(
            clientContext: pki.clientContext(), serverContext: pki.serverContext(), serverHandlers: [recorder])
        pair.server.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        #expect(recorder.events.filter { $0 is ChannelShouldQuiesceEvent }.count == 1)
        try pair.activate()
        try pair.pump()
        #expect(recorder.handshakeInfo != nil)
        pair.server.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        #expect(recorder.events.filter { $0 is ChannelShouldQuiesceEvent }.count == 2)
        // The handler does not act on it itself: the connection stays open for the application to wind down.
        #expect(pair.server.isActive)
    }

    @Test func asyncChannelWithOutboundHalfClosureSendsCloseNotifyAndStillReadsTheReply() async throws {
        let serverContext = try pki.serverContext()
        let clientContext = try pki.clientContext()
        let halfClosing = NIOAsyncChannel<ByteBuffer, ByteBuffer>.Configuration(isOutboundHalfClosureEnabled: true)
        let server: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never> = try await ServerBootstrap(
            group: MultiThreadedEventLoopGroup.singleton
        )
        .childChannelOption(.allowRemoteHalfClosure, value: true)
        .bind(host: "127.0.0.1", port: 0) { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addGnuTLSHandler(context: serverContext)
                return try NIOAsyncChannel(wrappingChannelSynchronously: channel, configuration: halfClosing)
            }
        }
        let port = try #require(server.channel.localAddress?.port)

        try await withThrowingTaskGroup(of: Void.self) { group in
            // The server reads until the client's close_notify ends its inbound stream, then answers and closes.
            group.addTask {
                try await server.executeThenClose { inbound in
                    for try await connection in inbound {
                        try await connection.executeThenClose { inbound, outbound in
                            var received = ByteBuffer()
                            for try await var chunk in inbound { received.writeBuffer(&chunk) }
                            try await outbound.write(ByteBuffer(string: "reply to: \(String(buffer: received))"))
                        }
                        return
                    }
                }
            }
            let client = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelOption(.allowRemoteHalfClosure, value: true)
                .connect(host: "127.0.0.1", port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addGnuTLSHandler(
                            context: clientContext, serverName: "localhost")
                        return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                            wrappingChannelSynchronously: channel, configuration: halfClosing)
                    }
                }
            let reply = try await client.executeThenClose { inbound, outbound in
                try await outbound.write(ByteBuffer(string: "hello"))
                // With outbound half-closure on, finishing the writer closes the output: our close_notify.
                outbound.finish()
                var reply = ByteBuffer()
                for try await var chunk in inbound { reply.writeBuffer(&chunk) }
                return String(buffer: reply)
            }
            #expect(reply == "reply to: hello")
            try await group.waitForAll()
        }
    }
}

/// Takes errors out of the pipeline, so that the tests look at them where they are reported instead.
final class ErrorSwallower: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    func errorCaught(context: ChannelHandlerContext, error: any Error) {}
}
