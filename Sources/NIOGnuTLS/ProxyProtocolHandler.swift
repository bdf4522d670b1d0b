import NIOCore
@_exported import ProxyProtocol

/// Reads a PROXY protocol header (v1 or v2) from the start of a connection, tells the pipeline who the client
/// really is, and leaves: put it before ``GnuTLSHandler`` on a server behind a load balancer that sends one
/// (HAProxy `send-proxy` / `send-proxy-v2`, Envoy, a cloud NLB).
///
/// - The connection's peer must be in `allowedPeers` (by default loopback only): anyone else could claim any
///   address, so a peer outside the list is refused as soon as the connection is active, before a byte is read.
/// - Once the header is complete it fires the `ProxyHeader` as a user inbound event (so a handler after the TLS
///   handler sees it before the handshake completes), makes it readable through ``header`` and ``headerFuture``,
///   passes every byte after the header on unchanged (the ClientHello often arrives in the same read), and
///   removes itself.
/// - A header that is missing, malformed, too long or cut short by the end of the stream, or that has not arrived
///   within `timeout`, fails the connection: a `ProxyHeaderError` of that kind goes through `errorCaught`
///   (and fails ``headerFuture``) and the channel is closed. No byte of such a connection reaches the TLS handler.
///
/// The TLS handler's handshake deadline starts when the channel becomes active, so it bounds the header too; the
/// handler's own `timeout` only makes the error say what was missing.
///
/// - Warning: only put it on connections that come from the balancer: a header sent by anyone else is a lie the
///   application would believe. `allowedPeers` is the guard.
public final class ProxyProtocolHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private enum State {
        /// Waiting for the header; the bytes received so far (nil before the first read).
        case waiting(ByteBuffer?)
        /// The header was read; the handler is leaving the pipeline.
        case done
        /// The connection was refused; whatever still arrives is dropped.
        case failed
    }

    private var state: State = .waiting(nil)
    private let allowedPeers: [IPNetwork]
    private let maximumLength: Int
    private let timeout: TimeAmount?
    private var timer: Scheduled<Void>?
    private var promise: EventLoopPromise<ProxyHeader>?
    private var readRequested = false
    private var checkedPeer = false

    /// The header, once it has been read.
    public private(set) var header: ProxyHeader?

    /// Completes with the header, or fails with the `ProxyHeaderError` that refused the connection. Valid once
    /// the handler has been added to a pipeline.
    public var headerFuture: EventLoopFuture<ProxyHeader>? { promise?.futureResult }

    /// - Parameters:
    ///   - allowedPeers: the networks whose connections may carry a header (the balancers); connections from
    ///     elsewhere are refused with `ProxyHeaderError` of kind `peerNotAllowed`.
    ///   - maximumLength: the longest v2 header accepted (v1 lines are bounded at 107 bytes by the specification).
    ///   - timeout: how long after the channel becomes active the header must be complete; nil leaves the bound
    ///     to the TLS handler's handshake timeout.
    public init(
        allowedPeers: [IPNetwork] = IPNetwork.loopback, maximumLength: Int = ProxyHeader.defaultMaximumLength,
        timeout: TimeAmount? = nil
    ) {
        self.allowedPeers = allowedPeers
        self.maximumLength = maximumLength
        self.timeout = timeout
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        promise = context.eventLoop.makePromise(of: ProxyHeader.self)
        if context.channel.isActive, let refusal = start(context: context) { fail(refusal, context: context) }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        if case .waiting = state {
            state = .failed
            promise?.fail(ProxyHeaderError(.truncated, "the PROXY protocol handler was removed before the header arrived"))
        }
    }

    /// Starts the timer before passing the event on, so that it runs out before the TLS handler's handshake
    /// deadline (which starts at this event) and a late header is reported as a late header.
    public func channelActive(context: ChannelHandlerContext) {
        let refusal = start(context: context)
        context.fireChannelActive()
        if let refusal { fail(refusal, context: context) }
    }

    /// Checks the peer against the allow list (returning the refusal, if it is not in it) and starts the timer,
    /// once.
    private func start(context: ChannelHandlerContext) -> ProxyHeaderError? {
        guard !checkedPeer, case .waiting = state else { return nil }
        checkedPeer = true
        guard let peer = context.channel.remoteAddress, let bytes = Self.addressBytes(peer),
            IPNetwork.any(allowedPeers, contains: bytes)
        else {
            let who = context.channel.remoteAddress?.ipAddress ?? "a peer without an IP address"
            return ProxyHeaderError(.peerNotAllowed, "refused: \(who) is not allowed to send a PROXY protocol header")
        }
        if let timeout {
            timer = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: timeout) { [self] in
                guard case .waiting(let buffer) = state else { return }
                let count = buffer?.readableBytes ?? 0
                fail(
                    ProxyHeaderError(
                        .timedOut,
                        "no complete PROXY protocol header within \(Self.seconds(timeout)) s (\(count) bytes received)"),
                    context: context)
            }
        }
        return nil
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .waiting(var buffer) = state else {
            if case .done = state { context.fireChannelRead(data) }
            return
        }
        var incoming = unwrapInboundIn(data)
        if buffer == nil {
            buffer = incoming
        } else {
            buffer!.writeBuffer(&incoming)
        }
        let parsed = buffer!.withUnsafeReadableBytes { raw in
            Result { () throws(ProxyHeaderError) in try ProxyHeader.parse(raw, maximumLength: maximumLength) }
        }
        let result: ProxyHeader.ParseResult
        switch parsed {
        case .success(let value): result = value
        case .failure(let error):
            fail(error, context: context)
            return
        }
        switch result {
        case .incomplete:
            state = .waiting(buffer)
        case .complete(let header, let length):
            state = .done
            timer?.cancel()
            timer = nil
            self.header = header
            buffer!.moveReaderIndex(forwardBy: length)
            context.fireUserInboundEventTriggered(header)
            promise?.succeed(header)
            if buffer!.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(buffer!)) }
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }

    /// While the header is incomplete, read completion stays here (nothing was passed on), and a read the
    /// pipeline asked for is asked for again so that a channel without `autoRead` gets the rest of the header.
    public func channelReadComplete(context: ChannelHandlerContext) {
        switch state {
        case .waiting:
            if readRequested { context.read() }
        case .done:
            context.fireChannelReadComplete()
        case .failed:
            break
        }
    }

    public func read(context: ChannelHandlerContext) {
        if case .waiting = state { readRequested = true }
        context.read()
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .waiting(let buffer) = state, let channelEvent = event as? ChannelEvent, channelEvent == .inputClosed {
            fail(Self.endedEarly(buffer), context: context)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        if case .waiting(let buffer) = state { fail(Self.endedEarly(buffer), context: context) }
        context.fireChannelInactive()
    }

    private static func endedEarly(_ buffer: ByteBuffer?) -> ProxyHeaderError {
        let count = buffer?.readableBytes ?? 0
        if count == 0 {
            return ProxyHeaderError(.missing, "the connection ended before a PROXY protocol header")
        }
        return ProxyHeaderError(.truncated, "the connection ended after \(count) bytes of a PROXY protocol header")
    }

    private func fail(_ error: ProxyHeaderError, context: ChannelHandlerContext) {
        guard case .waiting = state else { return }
        state = .failed
        timer?.cancel()
        timer = nil
        promise?.fail(error)
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }

    /// The 4 or 16 bytes of an IP socket address.
    static func addressBytes(_ address: SocketAddress) -> [UInt8]? {
        switch address {
        case .v4(let v4):
            return withUnsafeBytes(of: v4.address.sin_addr) { Array($0) }
        case .v6(let v6):
            return withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) }
        case .unixDomainSocket:
            return nil
        }
    }

    private static func seconds(_ amount: TimeAmount) -> String {
        let nanoseconds = amount.nanoseconds
        if nanoseconds % 1_000_000_000 == 0 { return "\(nanoseconds / 1_000_000_000)" }
        return "\(Double(nanoseconds) / 1e9)"
    }
}

@available(*, unavailable)
extension ProxyProtocolHandler: Sendable {}

extension ProxyHeader.Address {
    /// The address as a NIO `SocketAddress` (nil for a Unix path that does not fit a `sockaddr_un`).
    public var socketAddress: SocketAddress? {
        switch self {
        case .ipv4(let bytes, let port), .ipv6(let bytes, let port):
            var buffer = ByteBufferAllocator().buffer(capacity: bytes.count)
            buffer.writeBytes(bytes)
            return try? SocketAddress(packedIPAddress: buffer, port: Int(port))
        case .unix(let path):
            return try? SocketAddress(unixDomainSocketPath: String(decoding: path, as: UTF8.self))
        }
    }
}
