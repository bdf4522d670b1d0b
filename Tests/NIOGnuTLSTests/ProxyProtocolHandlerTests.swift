import GnuTLS
import NIOCore
import NIOEmbedded
import NIOGnuTLS
import Testing

/// A v2 PROXY header for TCP over IPv4, 192.0.2.1:51234 → 198.51.100.7:443.
let proxyV2Header: [UInt8] = ProxyHeader.v2Signature + [0x21, 0x11, 0, 12, 192, 0, 2, 1, 198, 51, 100, 7, 0xC8, 0x22, 0x01, 0xBB]

@Suite struct ProxyProtocolHandlerTests {
    let pki = HandlerPKI.shared

    /// A channel with the PROXY handler and a recorder, active, its peer at `peer`.
    func channel(
        peer: String = "127.0.0.1", allowed: [IPNetwork] = IPNetwork.loopback, timeout: TimeAmount? = nil
    ) throws -> (EmbeddedChannel, ProxyProtocolHandler, Recorder) {
        let channel = EmbeddedChannel()
        let handler = ProxyProtocolHandler(allowedPeers: allowed, timeout: timeout)
        let recorder = Recorder()
        try channel.pipeline.syncOperations.addHandler(handler)
        try channel.pipeline.syncOperations.addHandler(recorder)
        let address = try SocketAddress(ipAddress: peer, port: 40000)
        channel.remoteAddress = address
        try channel.connect(to: address).wait()
        return (channel, handler, recorder)
    }

    func buffer(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }

    @Test func theHeaderIsAnnouncedAndTheBytesAfterItPassOnUnchangedInTheSameRead() throws {
        let (channel, handler, recorder) = try channel()
        let future = try #require(handler.headerFuture)
        try channel.writeInbound(buffer(proxyV2Header + [0x16, 0x03, 0x01, 0x00, 0x02, 0xAA, 0xBB]))
        let header = try #require(recorder.events.first as? ProxyHeader)
        #expect(header.source?.description == "192.0.2.1:51234")
        #expect(header.source?.socketAddress == (try SocketAddress(ipAddress: "192.0.2.1", port: 51234)))
        #expect(handler.header == header)
        #expect(try future.wait() == header)
        #expect(recorder.received == [0x16, 0x03, 0x01, 0x00, 0x02, 0xAA, 0xBB])
        #expect(recorder.errors.isEmpty)
        // It has left the pipeline: later bytes go straight on.
        #expect(throws: ChannelPipelineError.notFound) {
            try channel.pipeline.syncOperations.handler(type: ProxyProtocolHandler.self)
        }
        try channel.writeInbound(buffer([1, 2, 3]))
        #expect(recorder.received.suffix(3) == [1, 2, 3])
        #expect(channel.isActive)
    }

    @Test func aV1HeaderArrivingByteByByteIsReassembled() throws {
        let (channel, _, recorder) = try channel(peer: "::1")
        let line = Array("PROXY TCP6 2001:db8::7 2001:db8::1 1234 443\r\n".utf8) + [0x16]
        for byte in line { try channel.writeInbound(buffer([byte])) }
        let header = try #require(recorder.events.first as? ProxyHeader)
        #expect(header.version == .v1)
        #expect(header.source?.description == "[2001:db8::7]:1234")
        #expect(recorder.received == [0x16])
        #expect(recorder.events.count == 1)
    }

    @Test func aPeerOutsideTheAllowListIsRefusedBeforeItSendsAnything() throws {
        let (channel, handler, recorder) = try channel(peer: "10.9.8.7", allowed: [try IPNetwork("192.168.0.0/16")])
        #expect(!channel.isActive)
        let error = try #require(recorder.errors.first as? ProxyHeaderError)
        #expect(error.kind == .peerNotAllowed)
        #expect(error.reason == "refused: 10.9.8.7 is not allowed to send a PROXY protocol header")
        #expect(throws: ProxyHeaderError.self) { try handler.headerFuture?.wait() }
        #expect(recorder.errors.count == 1)
    }

    @Test func anIPv4PeerOnADualStackSocketMatchesIPv4Networks() throws {
        let (channel, _, recorder) = try channel(peer: "::ffff:127.0.0.1")
        #expect(channel.isActive)
        try channel.writeInbound(buffer(Array("PROXY UNKNOWN\r\n".utf8)))
        #expect(recorder.events.first as? ProxyHeader != nil)
        #expect(recorder.errors.isEmpty)
    }

    @Test func aMalformedHeaderClosesTheConnectionAndNothingReachesThePipeline() throws {
        let (channel, handler, recorder) = try channel()
        try channel.writeInbound(buffer(Array("PROXY TCP4 1.2.3.4 5.6.7.8 99999 443\r\nsecret".utf8)))
        #expect(!channel.isActive)
        let error = try #require(recorder.errors.first as? ProxyHeaderError)
        #expect(error == ProxyHeaderError(.malformed, "PROXY v1 source port '99999' is not a number from 0 to 65535"))
        #expect(recorder.received.isEmpty)
        #expect(recorder.events.isEmpty)
        #expect(handler.header == nil)
    }

    @Test func noHeaderAtAllIsMissing() throws {
        let (channel, _, recorder) = try channel()
        try channel.writeInbound(buffer([0x16, 0x03, 0x01, 0x00, 0x40]))
        #expect(!channel.isActive)
        let error = try #require(recorder.errors.first as? ProxyHeaderError)
        #expect(error.kind == .missing)
        #expect(error.reason == "no PROXY protocol header: the connection starts with a TLS handshake")
        #expect(recorder.received.isEmpty)
    }

    @Test func aV2HeaderCutAfterTenBytesIsTruncatedWhenTheStreamEnds() throws {
        let (channel, _, recorder) = try channel()
        try channel.writeInbound(buffer(Array(proxyV2Header[..<10])))
        #expect(channel.isActive && recorder.errors.isEmpty)
        try channel.close().wait()
        let error = try #require(recorder.errors.first as? ProxyHeaderError)
        #expect(error == ProxyHeaderError(.truncated, "the connection ended after 10 bytes of a PROXY protocol header"))
        #expect(recorder.errors.count == 1)
    }

    @Test func halfClosureBeforeTheHeaderEndsTheConnection() throws {
        let (channel, _, recorder) = try channel()
        try channel.writeInbound(buffer(Array("PROXY TCP4".utf8)))
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(!channel.isActive)
        let error = try #require(recorder.errors.first as? ProxyHeaderError)
        #expect(error.kind == .truncated)
        #expect(!recorder.events.contains { ($0 as? ChannelEvent) == .inputClosed })
    }

    @Test func aTooLongHeaderIsRefusedOnItsPreamble() throws {
        let (channel, _, recorder) = try channel()
        try channel.writeInbound(buffer(ProxyHeader.v2Signature + [0x21, 0x11, 0xFF, 0xFF]))
        #expect(!channel.isActive)
        #expect((recorder.errors.first as? ProxyHeaderError)?.kind == .tooLong)
    }

    @Test func aTrickledHeaderIsCutOffByTheHandlersTimeout() throws {
        let (channel, _, recorder) = try channel(timeout: .seconds(2))
        let line = Array("PROXY TCP4 192.0.2.1 198.51.100.7 51234 443\r\n".utf8)
        for byte in line.prefix(20) {
            try channel.writeInbound(buffer([byte]))
            channel.embeddedEventLoop.advanceTime(by: .milliseconds(90))
        }
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(300))
        #expect(!channel.isActive)
        let error = try #require(recorder.errors.first as? ProxyHeaderError)
        #expect(error == ProxyHeaderError(.timedOut, "no complete PROXY protocol header within 2 s (20 bytes received)"))
    }

    @Test func withoutItsOwnTimeoutTheTLSHandshakeDeadlineBoundsTheHeader() throws {
        let channel = EmbeddedChannel()
        let recorder = Recorder()
        try channel.pipeline.syncOperations.addHandler(ProxyProtocolHandler())
        try channel.pipeline.syncOperations.addHandler(
            GnuTLSHandler(context: pki.serverContext(), handshakeTimeout: .seconds(1)))
        try channel.pipeline.syncOperations.addHandler(recorder)
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: 40000)
        channel.remoteAddress = address
        try channel.connect(to: address).wait()
        for byte in Array("PROXY TCP4 1.2".utf8) {
            try channel.writeInbound(buffer([byte]))
            channel.embeddedEventLoop.advanceTime(by: .milliseconds(100))
        }
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive)
        let error = try #require(recorder.errors.first as? TLSError)
        #expect(error.kind == .timeout)
    }

    @Test func behindTheHeaderTheTLSHandshakeRunsAndTheApplicationSeesTheHeaderFirst() throws {
        let pair = EmbeddedPair()
        let recorder = Recorder()
        try pair.client.pipeline.syncOperations.addHandler(GnuTLSHandler(context: pki.clientContext()))
        try pair.server.pipeline.syncOperations.addHandler(ProxyProtocolHandler())
        try pair.server.pipeline.syncOperations.addHandler(GnuTLSHandler(context: pki.serverContext()))
        try pair.server.pipeline.syncOperations.addHandler(recorder)
        pair.server.remoteAddress = try SocketAddress(ipAddress: "127.0.0.1", port: 40000)
        try pair.connect()
        // The balancer's header and the client's ClientHello in one read.
        let hello = try #require(try pair.client.readOutbound(as: ByteBuffer.self))
        var first = buffer(proxyV2Header)
        first.writeImmutableBuffer(hello)
        try pair.server.writeInbound(first)
        try pair.pump()
        #expect(recorder.errors.isEmpty)
        #expect(recorder.events.first as? ProxyHeader != nil, "the header comes before the handshake's events")
        #expect(recorder.handshakeInfo != nil)
        try pair.client.writeAndFlush(buffer(Array("hi".utf8))).wait()
        try pair.pump()
        #expect(recorder.received == Array("hi".utf8))
    }
}
