import GnuTLS
import NIOCore
import NIOEmbedded
import NIOGnuTLS
import NIOPosix
import NIOTLS
import Testing

/// Records, at channelActive, whether the TLS handler had written anything yet.
final class ActiveProbe: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    var outboundAtActive: ByteBuffer?
    var sawActive = false

    func channelActive(context: ChannelHandlerContext) {
        sawActive = true
        outboundAtActive = try? (context.channel as? EmbeddedChannel)?.readOutbound(as: ByteBuffer.self)
        context.fireChannelActive()
    }
}

/// Echoes what it reads with a promise that closes the channel once the echo is written, or closes from inside
/// the first read.
final class ReentrantHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    enum Mode { case echoThenCloseFromTheWritePromise, closeInsideTheFirstRead }
    let mode: Mode
    var received: [UInt8] = []
    var errors: [any Error] = []

    init(_ mode: Mode) { self.mode = mode }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        let first = received.isEmpty
        received += buffer.readableBytesView
        switch mode {
        case .echoThenCloseFromTheWritePromise:
            let promise = context.eventLoop.makePromise(of: Void.self)
            promise.futureResult.assumeIsolated().whenSuccess { context.close(promise: nil) }
            context.writeAndFlush(wrapOutboundOut(buffer), promise: promise)
        case .closeInsideTheFirstRead:
            if first { context.close(promise: nil) }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        errors.append(error)
    }
}

/// Two embedded channels with handlers of the test's choosing, wired by hand.
struct EmbeddedPair {
    let client = EmbeddedChannel()
    let server = EmbeddedChannel()

    func connect() throws {
        try server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 2)).wait()
    }

    /// Moves bytes both ways until nothing moves.
    func pump() throws {
        for _ in 0..<100 {
            var moved = false
            while let buffer = try client.readOutbound(as: ByteBuffer.self) {
                moved = true
                if server.isActive { try server.writeInbound(buffer) }
            }
            while let buffer = try server.readOutbound(as: ByteBuffer.self) {
                moved = true
                if client.isActive { try client.writeInbound(buffer) }
            }
            if !moved { return }
        }
    }
}

@Suite struct HandlerLifecycleTests {
    let pki = HandlerPKI.shared

    @Test func channelActiveIsPassedOnBeforeTheHandshakeStarts() throws {
        let pair = EmbeddedPair()
        let probe = ActiveProbe()
        try pair.client.pipeline.syncOperations.addHandler(GnuTLSHandler(context: pki.clientContext()))
        try pair.client.pipeline.syncOperations.addHandler(probe)
        try pair.client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 2)).wait()
        #expect(probe.sawActive)
        #expect(probe.outboundAtActive == nil, "the ClientHello went out before channelActive was passed on")
        let hello = try #require(try pair.client.readOutbound(as: ByteBuffer.self))
        #expect(hello.getInteger(at: 0, as: UInt8.self) == 0x16, "a handshake record")
    }

    /// The server's handler with `allowHalfClosure`, on a channel whose option says `channelOption`.
    func halfClose(allowHalfClosure: Bool?, channelOption: Bool) throws -> (EmbeddedPair, Recorder) {
        let pair = EmbeddedPair()
        let recorder = Recorder()
        pair.server.allowRemoteHalfClosure = channelOption
        try pair.client.pipeline.syncOperations.addHandler(GnuTLSHandler(context: pki.clientContext()))
        try pair.server.pipeline.syncOperations.addHandler(
            GnuTLSHandler(context: pki.serverContext(), allowHalfClosure: allowHalfClosure))
        try pair.server.pipeline.syncOperations.addHandler(recorder)
        try pair.connect()
        try pair.pump()
        pair.client.close(mode: .output, promise: nil)
        try pair.pump()
        return (pair, recorder)
    }

    @Test func halfClosureFollowsTheChannelsOptionUnlessSetExplicitly() throws {
        // The option on: the peer's close_notify leaves the server open for writing.
        let (open, openRecorder) = try halfClose(allowHalfClosure: nil, channelOption: true)
        #expect(open.server.isActive)
        #expect(openRecorder.events.contains { ($0 as? GnuTLSEvent) == .peerClosedOutput })
        #expect(openRecorder.events.contains { ($0 as? ChannelEvent) == .inputClosed })
        let clientRecorder = Recorder()
        try open.client.pipeline.syncOperations.addHandler(clientRecorder)
        try open.server.writeAndFlush(ByteBuffer(string: "after your close")).wait()
        try open.pump()
        #expect(clientRecorder.received == Array("after your close".utf8))

        // The option off (the default): the server answers with close_notify and closes.
        let (closed, closedRecorder) = try halfClose(allowHalfClosure: nil, channelOption: false)
        #expect(!closed.server.isActive)
        #expect(!closedRecorder.events.contains { ($0 as? GnuTLSEvent) == .peerClosedOutput })
        #expect(closedRecorder.errors.isEmpty)

        // An explicit choice wins over the option.
        let (explicit, explicitRecorder) = try halfClose(allowHalfClosure: false, channelOption: true)
        #expect(!explicit.server.isActive)
        #expect(explicitRecorder.errors.isEmpty)
    }

    @Test func closingOnlyTheInputIsUnsupported() throws {
        let pair = try ChannelPair(clientContext: pki.clientContext(), serverContext: pki.serverContext())
        try pair.activate()
        try pair.pump()
        let closed = pair.client.close(mode: .input)
        #expect(throws: ChannelError.operationUnsupported) { try closed.wait() }
        #expect(pair.client.isActive)
    }

    @Test func shutdownCompletedIsFiredOnBothSidesOnceCloseNotifyWentBothWays() throws {
        let pair = try ChannelPair(clientContext: pki.clientContext(), serverContext: pki.serverContext())
        try pair.activate()
        try pair.pump()
        let closed = pair.client.close()
        try pair.pump()
        try closed.wait()
        #expect(pair.clientRecorder.events.contains { ($0 as? TLSUserEvent) == .shutdownCompleted })
        #expect(pair.serverRecorder.events.contains { ($0 as? TLSUserEvent) == .shutdownCompleted })
        #expect(pair.clientRecorder.errors.isEmpty && pair.serverRecorder.errors.isEmpty)
    }

    @Test func theHandshakeTimeoutIsATimeoutAndMayBeShorterThanASecond() throws {
        let pair = try ChannelPair(
            clientContext: pki.clientContext(), serverContext: pki.serverContext(), handshakeTimeout: .milliseconds(500))
        try pair.server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        pair.server.embeddedEventLoop.advanceTime(by: .milliseconds(400))
        #expect(pair.server.isActive)
        pair.server.embeddedEventLoop.advanceTime(by: .milliseconds(200))
        #expect(!pair.server.isActive)
        let error = try #require(pair.serverRecorder.errors.first as? TLSError)
        #expect(error.kind == .timeout)
        #expect(error.reason == "the handshake did not complete within 0.5 s")
        #expect(pair.serverRecorder.errors.count == 1)
    }

    @Test func aHandlerThatClosesFromAWritePromiseGetsItsEchoAndCloseNotifyOut() throws {
        let pair = EmbeddedPair()
        let echo = ReentrantHandler(.echoThenCloseFromTheWritePromise)
        let clientRecorder = Recorder()
        try pair.client.pipeline.syncOperations.addHandler(GnuTLSHandler(context: pki.clientContext()))
        try pair.client.pipeline.syncOperations.addHandler(clientRecorder)
        try pair.server.pipeline.syncOperations.addHandler(GnuTLSHandler(context: pki.serverContext()))
        try pair.server.pipeline.syncOperations.addHandler(echo)
        try pair.connect()
        try pair.pump()
        try pair.client.writeAndFlush(ByteBuffer(string: "ping")).wait()
        try pair.pump()
        #expect(clientRecorder.received == Array("ping".utf8))
        // The client answered the server's close_notify; both ends closed cleanly.
        #expect(!pair.server.isActive && !pair.client.isActive)
        #expect(clientRecorder.errors.isEmpty && echo.errors.isEmpty)
        #expect(clientRecorder.events.contains { ($0 as? TLSUserEvent) == .shutdownCompleted })
    }

    @Test func aHandlerThatClosesInsideAReadStillGetsTheRecordsThatCameWithIt() throws {
        let pair = EmbeddedPair()
        let reader = ReentrantHandler(.closeInsideTheFirstRead)
        try pair.client.pipeline.syncOperations.addHandler(GnuTLSHandler(context: pki.clientContext()))
        try pair.server.pipeline.syncOperations.addHandler(GnuTLSHandler(context: pki.serverContext()))
        try pair.server.pipeline.syncOperations.addHandler(reader)
        try pair.connect()
        try pair.pump()
        // Two records, which reach the server in one read.
        try pair.client.writeAndFlush(ByteBuffer(string: "one,")).wait()
        try pair.client.writeAndFlush(ByteBuffer(string: "two")).wait()
        var both = ByteBuffer()
        while var buffer = try pair.client.readOutbound(as: ByteBuffer.self) { both.writeBuffer(&buffer) }
        try pair.server.writeInbound(both)
        #expect(reader.received == Array("one,two".utf8))
        try pair.pump()
        #expect(!pair.server.isActive && !pair.client.isActive)
        #expect(reader.errors.isEmpty)
    }

    @Test func garbageFailsTheHandshakeWithAnUnexpectedMessageAlert() throws {
        let pair = try ChannelPair(clientContext: pki.clientContext(), serverContext: pki.serverContext())
        try pair.server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try pair.server.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
        #expect(!pair.server.isActive)
        let error = try #require(pair.serverRecorder.errors.first as? TLSError)
        #expect(error.kind == .protocolViolation, "\(error)")
        // What went out: one fatal alert record.
        let alert = try #require(try pair.server.readOutbound(as: ByteBuffer.self))
        let bytes = Array(alert.readableBytesView)
        #expect(bytes.count == 7, "\(bytes)")
        #expect(bytes.first == 0x15, "an alert record: \(bytes)")
        #expect(Array(bytes.suffix(2)) == [2, 10], "fatal unexpected_message: \(bytes)")
    }

    @Test func withAutoReadOffARecordWithoutPlaintextAsksForAnotherRead() async throws {
        let serverContext = try pki.serverContext()
        let clientContext = try pki.clientContext()
        let group = MultiThreadedEventLoopGroup.singleton
        let received = group.next().makePromise(of: String.self)
        /// Asks for one read when the channel becomes active, as a reader with autoRead off does, and closes
        /// once the message came.
        final class OneRead: ChannelInboundHandler, Sendable {
            typealias InboundIn = ByteBuffer
            let received: EventLoopPromise<String>
            init(_ received: EventLoopPromise<String>) { self.received = received }
            func channelActive(context: ChannelHandlerContext) {
                context.read()
                context.fireChannelActive()
            }
            func channelRead(context: ChannelHandlerContext, data: NIOAny) {
                received.succeed(String(buffer: unwrapInboundIn(data)))
                context.close(promise: nil)
            }
        }
        let server = try await ServerBootstrap(group: group)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(GnuTLSHandler(context: serverContext))
                    try channel.pipeline.syncOperations.addHandler(OneRead(received))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(server.localAddress?.port)
        // A bound for a hang, not a measure of speed: generous, as sanitizer runs share two cores with other tests.
        let timeout = group.next().scheduleTask(in: .seconds(30)) {
            received.fail(TLSError(kind: .timeout, reason: "the server never read the message"))
        }
        try await TLSConnection.connect(host: "127.0.0.1", port: port, context: clientContext, serverName: "localhost") {
            connection in
            try await connection.write(Array("hello".utf8))
            #expect(try await received.futureResult.get() == "hello")
        }
        timeout.cancel()
        try await server.close()
    }
}
