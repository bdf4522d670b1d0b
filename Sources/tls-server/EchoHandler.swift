import GnuTLS
import NIOCore
import NIOGnuTLS
import TLSCommandSupport

/// The skeleton's protocol on plaintext: print the client's message, send it back, close.
/// With `stream`, echo everything until the client closes.
final class EchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let peer: String
    private let stream: Bool
    private let quiet: Bool
    private let output: ConsoleOutput
    private var answered = false
    private var reported = false

    init(peer: String, stream: Bool, quiet: Bool, output: ConsoleOutput) {
        self.peer = peer
        self.stream = stream
        self.quiet = quiet
        self.output = output
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if !quiet { output.line("Connection from \(peer)") }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        if stream {
            context.write(data, promise: nil)
            return
        }
        guard !answered else { return }
        answered = true
        if !quiet { output.line("Received: \(String(decoding: buffer.readableBytesView, as: UTF8.self))") }
        context.writeAndFlush(data, promise: nil)
        context.close(promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if stream { context.flush() }
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case GnuTLSEvent.peerClosedOutput:
            // The client is done: everything it sent has been echoed; answer with close_notify.
            context.close(promise: nil)
        case let idle as IdleTimeoutEvent:
            report("closed after \(idle.seconds) s without activity")
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        report("failed: \(describe(error))")
        context.close(promise: nil)
    }

    /// One line per failed connection, even with --quiet: failures are never silent.
    private func report(_ what: String) {
        guard !reported else { return }
        reported = true
        output.line("Connection from \(peer) \(what)")
    }
}
