import GnuTLS
import NIOCore
import NIOGnuTLS
import TLSCommandSupport

/// The skeleton's protocol on plaintext: print the client's message, send it back, close.
/// With `stream`, echo everything until the client closes.
///
/// Back-pressure: while the channel is not writable (the peer reads slower than it sends, or not at all), read
/// requests are held back until it is writable again, so a connection costs at most NIO's write buffer (its
/// high watermark) and the socket buffers, however much the peer sends.
final class EchoHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let stream: Bool
    private let quiet: Bool
    private let output: ConsoleOutput
    private var answered = false
    private var message: ByteBuffer?
    private var reported = false
    /// A read was asked for while the channel was not writable.
    private var readHeld = false

    /// The peer's address, formatted only when a line names it (not per connection under --quiet).
    private var peer = "unknown"

    private let openConnections: ConnectionCounter

    private let failures: FailureLog
    /// Behind a balancer (--proxy-protocol): the client is named by the PROXY header, so its line waits for it.
    private let proxied: Bool

    init(
        stream: Bool, quiet: Bool, output: ConsoleOutput, failures: FailureLog, openConnections: ConnectionCounter,
        proxied: Bool = false
    ) {
        self.proxied = proxied
        self.openConnections = openConnections
        self.failures = failures
        self.stream = stream
        self.quiet = quiet
        self.output = output
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        openConnections.release()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if !quiet {
            peer = context.channel.remoteAddress.map(EchoServer.format) ?? "unknown"
            if !proxied { output.line("Connection from \(peer)") }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if stream {
            context.write(data, promise: nil)
            return
        }
        guard !answered else { return }
        // The message is what arrives in one read burst: all records decrypted before channelReadComplete
        // (a message larger than one 16 KiB record arrives as several).
        var buffer = unwrapInboundIn(data)
        if message == nil {
            message = buffer
        } else {
            message?.writeBuffer(&buffer)
        }
    }

    func read(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            context.read()
        } else {
            readHeld = true
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if readHeld && context.channel.isWritable {
            readHeld = false
            context.read()
        }
        context.fireChannelWritabilityChanged()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if stream {
            context.flush()
        } else if !answered, let message {
            answered = true
            if !quiet { output.line("Received: \(String(decoding: message.readableBytesView, as: UTF8.self))") }
            // Written without a flush: closing sends the reply and close_notify in one packet.
            context.write(wrapOutboundOut(message), promise: nil)
            context.close(promise: nil)
            self.message = nil
        }
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Most events are of other types (NIO's TLSUserEvent and ChannelEvent): a comparison of types passes
        // them on without a dynamic cast that fails (a few hundred instructions each).
        guard type(of: event) == GnuTLSEvent.self else {
            if proxied, let header = event as? ProxyHeader {
                // The client the balancer relayed (LOCAL and UNKNOWN headers carry none: the peer is the balancer).
                if let source = header.source { peer = source.description }
                if !quiet { output.line("Connection from \(peer)") }
            }
            context.fireUserInboundEventTriggered(event)
            return
        }
        switch event as? GnuTLSEvent {
        case .peerClosedOutput:
            // The client is done: everything it sent has been echoed; answer with close_notify.
            context.close(promise: nil)
        case .handshakeCompleted(let info):
            if !quiet { output.line("Connection from \(peer): \(Self.summary(info))") }
            context.fireUserInboundEventTriggered(event)
        case .idleTimeout(let idle):
            // The TLS handler closes the connection itself, with close_notify.
            report("closed after \(seconds(idle)) s without activity", reason: "idle", context: context)
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let reason = describe(error)
        report("failed: \(Self.refusingSide(error))\(reason)", reason: reason, context: context)
        context.close(promise: nil)
    }

    /// One line per failed connection, even with --quiet (failures are never silent), but no more than the
    /// failure log lets through at once; the rest are counted in its summary.
    private func report(_ what: String, reason: String, context: ChannelHandlerContext) {
        guard !reported else { return }
        reported = true
        if quiet && peer == "unknown" { peer = context.channel.remoteAddress.map(EchoServer.format) ?? "unknown" }
        failures.line("Connection from \(peer) \(what)", reason: reason)
    }

    /// `TLS 1.3, TLS_AES_128_GCM_SHA256`, and `, client CN=alice` when the client sent a certificate.
    static func summary(_ info: TLSHandshakeInfo) -> String {
        var text = "\(info.version?.description ?? "unknown version"), \(info.cipherSuite ?? "unknown cipher suite")"
        if let client = info.peerCertificates.first { text += ", client \(client.subject)" }
        return text
    }

    /// Which side ended a failed handshake: the client, with an alert (it refused us), or this server (it
    /// refused the client's certificate, versions or algorithms). Empty when neither refused (a timeout, a
    /// reset, bytes that are not TLS).
    static func refusingSide(_ error: any Error) -> String {
        guard let error = error as? TLSError else { return "" }
        if error.alert != nil { return "refused by the client: " }
        switch error.kind {
        case .verification, .certificateRequired, .protocolVersion, .noSharedAlgorithm, .noApplicationProtocol:
            return "refused by this server: "
        default:
            return ""
        }
    }

    private func seconds(_ amount: TimeAmount) -> String {
        let nanoseconds = amount.nanoseconds
        if nanoseconds % 1_000_000_000 == 0 { return "\(nanoseconds / 1_000_000_000)" }
        return "\(Double(nanoseconds) / 1e9)"
    }
}
