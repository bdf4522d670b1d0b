import GnuTLS
import NIOCore
import NIOTLS

/// What a completed handshake agreed on, announced as a ``GnuTLSEvent/handshakeCompleted(_:)`` user event.
public struct TLSHandshakeInfo: Sendable, Equatable {
    /// The protocol version in use.
    public var version: TLSVersion?
    /// The cipher suite in use, for example `TLS_AES_128_GCM_SHA256`.
    public var cipherSuite: String?
    /// The key-exchange group, for example `X25519`.
    public var group: String?
    /// The ALPN protocol agreed on, if any.
    public var applicationProtocol: String?
    /// Whether an earlier session was resumed.
    public var isResumed: Bool
    /// The peer's certificate chain, leaf first (empty when the peer sent none).
    public var peerCertificates: [Certificate]
    /// The SNI name the client asked for (servers).
    public var requestedServerName: String?

    init(_ session: TLSSession) {
        version = session.negotiatedVersion
        cipherSuite = session.cipherSuite
        group = session.keyExchangeGroup
        applicationProtocol = session.applicationProtocol
        isResumed = session.isResumed
        peerCertificates = session.peerCertificates
        requestedServerName = session.requestedServerName
    }
}

/// User events fired by ``GnuTLSHandler``. NIO's own `TLSUserEvent` is fired as well, so handlers written
/// for swift-nio-ssl (for example `ApplicationProtocolNegotiationHandler`) work unchanged.
public enum GnuTLSEvent: Sendable, Equatable {
    /// The handshake completed.
    case handshakeCompleted(TLSHandshakeInfo)
    /// No bytes moved either way for the handler's idle timeout; the handler closes the connection.
    case idleTimeout(seconds: Int)
    /// The peer sent close_notify: it will send nothing more. Fired only with `allowHalfClosure` (followed by
    /// NIO's `ChannelEvent.inputClosed`); otherwise the handler answers with its own close_notify and closes.
    case peerClosedOutput
}

/// A SwiftNIO channel handler that runs one ``TLSSession`` over a channel.
///
/// Ciphertext read from the channel goes into the session and plaintext comes up the pipeline; plaintext
/// written goes into the session and leaves as records, one channel write per flush. `close` sends close_notify
/// and waits a bounded time for the peer's. A transport that ends without close_notify is reported as a
/// ``TLSError`` of kind ``TLSError/Kind/truncated`` through `errorCaught`, never as a clean close.
///
/// The same role as swift-nio-ssl's `NIOSSLHandler`: put it first in the pipeline of a client or server channel.
public final class GnuTLSHandler: ChannelDuplexHandler, RemovableChannelHandler, DeadlineChecking {
    /// Ciphertext read from the channel.
    public typealias InboundIn = ByteBuffer
    /// Plaintext passed up the pipeline.
    public typealias InboundOut = ByteBuffer
    /// Plaintext written by the handlers after this one.
    public typealias OutboundIn = ByteBuffer
    /// Ciphertext written to the channel.
    public typealias OutboundOut = ByteBuffer

    private enum State {
        /// Waiting for the channel to become active.
        case idle
        case handshaking
        case active
        /// Our close_notify is sent; waiting for the peer's, the transport's end, or the shutdown deadline.
        case closing
        /// The peer's close_notify arrived and half-closure is allowed: we may still write.
        case inputClosed
        case closed
    }

    /// The session this handler drives. Read its negotiated properties after the handshake.
    public let session: TLSSession
    private let handshakeTimeout: TimeAmount
    private let shutdownTimeout: TimeAmount
    private let idleTimeout: TimeAmount?
    private let allowHalfClosure: Bool

    // The hot stored properties skip Swift's dynamic exclusivity checks (about 115 instructions per access, some
    // 60 accesses per connection): every access happens on the event loop, and none is held across a call that
    // could come back in (GnuTLS's callbacks only touch the output buffer, which nothing holds while calling
    // GnuTLS). The compiler still checks what it can see statically.
    @exclusivity(unchecked) private var state: State = .idle
    @exclusivity(unchecked) private var pendingWrites: [(ByteBuffer, EventLoopPromise<Void>?)] = []
    /// The deadlines (handshake, idle, shutdown) are plain stored times, checked by the event loop's
    /// ``DeadlineSweeper`` while this handler is registered with it: no scheduled task per connection.
    @exclusivity(unchecked) private var sweeper: DeadlineSweeper?
    /// The context the sweeper's checks act on; set only while registered (the sweeper holds the handler).
    @exclusivity(unchecked) private var sweptContext: ChannelHandlerContext?
    @exclusivity(unchecked) var sweeperSlot = -1
    private var handshakeDeadline: NIODeadline = .distantFuture
    private var shutdownDeadline: NIODeadline = .distantFuture
    @exclusivity(unchecked) private var lastActivity: NIODeadline = .distantPast
    private var closePromise: EventLoopPromise<Void>?
    private var handshakePromise: EventLoopPromise<TLSHandshakeInfo>?
    /// The error that ended the connection, given to later writes.
    private var failure: (any Error)?
    @exclusivity(unchecked) private var scratch: ByteBuffer?
    /// Ciphertext the session produced (it arrives through the session's output sink) for the next channel
    /// write. Kept after a write for reuse; `outputSent` says its contents are already gone.
    @exclusivity(unchecked) private var outputBuffer: ByteBuffer?
    @exclusivity(unchecked) private var outputSent = false
    @exclusivity(unchecked) private var allocator = ByteBufferAllocator()
    private var eventLoop: (any EventLoop)?

    /// A future that completes when the handshake does (and fails with its error). Valid once the handler
    /// has been added to a pipeline.
    public var handshakeFuture: EventLoopFuture<TLSHandshakeInfo>? {
        // Made on demand: a pipeline that only listens for the user event pays for no promise.
        if let handshakePromise { return handshakePromise.futureResult }
        guard let eventLoop else { return nil }
        if let failure { return eventLoop.makeFailedFuture(failure) }
        if session.isHandshakeComplete { return eventLoop.makeSucceededFuture(TLSHandshakeInfo(session)) }
        let promise = eventLoop.makePromise(of: TLSHandshakeInfo.self)
        handshakePromise = promise
        return promise.futureResult
    }

    /// Creates a handler for one connection.
    ///
    /// - Parameters:
    ///   - context: the shared TLS context.
    ///   - serverName: for clients, the SNI name and the name verified; overrides the configuration's.
    ///   - handshakeTimeout: how long the handshake may take before the connection is closed.
    ///   - shutdownTimeout: how long `close` waits for the peer's close_notify.
    ///   - idleTimeout: close the connection (with close_notify) after this long without bytes in either
    ///     direction; nil for never.
    ///   - allowHalfClosure: fire ``GnuTLSEvent/peerClosedOutput`` on the peer's close_notify and keep the
    ///     channel open for writing, instead of closing at once.
    public convenience init(
        context: TLSContext, serverName: String? = nil, handshakeTimeout: TimeAmount = .seconds(10),
        shutdownTimeout: TimeAmount = .seconds(3), idleTimeout: TimeAmount? = nil, allowHalfClosure: Bool = false
    ) throws {
        self.init(
            session: try context.makeSession(serverName: serverName), handshakeTimeout: handshakeTimeout,
            shutdownTimeout: shutdownTimeout, idleTimeout: idleTimeout, allowHalfClosure: allowHalfClosure)
    }

    /// Creates a handler around a session made by the caller (for example one resuming an earlier session).
    public init(
        session: TLSSession, handshakeTimeout: TimeAmount = .seconds(10), shutdownTimeout: TimeAmount = .seconds(3),
        idleTimeout: TimeAmount? = nil, allowHalfClosure: Bool = false
    ) {
        self.session = session
        self.handshakeTimeout = handshakeTimeout
        self.shutdownTimeout = shutdownTimeout
        self.idleTimeout = idleTimeout
        self.allowHalfClosure = allowHalfClosure
    }

    // MARK: - Lifecycle

    /// Remembers the event loop, and starts the handshake at once if the channel is already active.
    public func handlerAdded(context: ChannelHandlerContext) {
        eventLoop = context.eventLoop
        allocator = context.channel.allocator
        // Records go straight from GnuTLS into the network buffer (one copy instead of two).
        session.outputSink = { [unowned self] bytes in self.appendOutput(bytes) }
        if context.channel.isActive { startHandshake(context: context) }
    }

    deinit {
        // The session may outlive the handler (it is public): it must not call into a handler that is gone.
        session.outputSink = nil
    }

    /// Stops the deadline checks and fails the handshake future and any pending writes: the handler can no longer
    /// complete them.
    public func handlerRemoved(context: ChannelHandlerContext) {
        stopDeadlines()
        session.outputSink = nil
        failWaiters(ChannelError.ioOnClosedChannel)
    }

    /// Fails the handshake promise and the pending writes, if there are any.
    private func failWaiters(_ error: @autoclosure () -> any Error) {
        guard handshakePromise != nil || !pendingWrites.isEmpty else { return }
        let error = error()
        handshakePromise?.fail(error)
        handshakePromise = nil
        failPendingWrites(error)
    }

    /// Starts the handshake (a client sends its ClientHello), then passes the event on.
    public func channelActive(context: ChannelHandlerContext) {
        startHandshake(context: context)
        context.fireChannelActive()
    }

    /// Reports a transport that ended without close_notify as truncation, fails whatever is still waiting,
    /// and passes the event on.
    public func channelInactive(context: ChannelHandlerContext) {
        switch state {
        case .handshaking, .active:
            // The transport ended without close_notify.
            session.feedEndOfInput()
            processInput(context: context)
        case .idle, .closing, .inputClosed, .closed:
            break
        }
        if case .closed = state {} else { state = .closed }
        stopDeadlines()
        failWaiters(ChannelError.ioOnClosedChannel)
        closePromise?.succeed(())
        closePromise = nil
        context.fireChannelInactive()
    }

    private func startHandshake(context: ChannelHandlerContext) {
        guard case .idle = state else { return }
        state = .handshaking
        let now = context.eventLoop.now
        lastActivity = now
        handshakeDeadline = now + handshakeTimeout
        watchDeadlines(context: context)
        advanceHandshake(context: context)
    }

    // MARK: - Deadlines

    /// Has the event loop's sweeper check this connection's deadlines.
    private func watchDeadlines(context: ChannelHandlerContext) {
        // Joining looks the loop's sweeper up again: the one this handler used before may have retired.
        if sweeperSlot < 0 { sweeper = DeadlineSweeper.of(context.eventLoop) }
        sweptContext = context
        // Deadlines are acted on at most an eighth of the shortest timeout late (at most 1 s).
        let shortest = min(handshakeTimeout, shutdownTimeout, idleTimeout ?? handshakeTimeout)
        let resolution = TimeAmount.nanoseconds(max(1_000_000, min(1_000_000_000, shortest.nanoseconds / 8)))
        sweeper?.add(self, resolution: resolution)
    }

    private func stopDeadlines() {
        sweeper?.remove(self)
        sweptContext = nil
    }

    /// Acts on every deadline that has passed; stops being checked once no deadline applies.
    func checkDeadlines(now: NIODeadline) {
        guard let context = sweptContext else { return }
        switch state {
        case .handshaking:
            if now >= handshakeDeadline {
                let seconds = Double(handshakeTimeout.nanoseconds) / 1e9
                fail(TLSError(kind: .other, reason: "the handshake did not complete within \(seconds) s"), context: context)
            }
        case .active, .inputClosed:
            guard let idleTimeout else {
                stopDeadlines()
                return
            }
            if now >= lastActivity + idleTimeout {
                let seconds = idleTimeout.nanoseconds / 1_000_000_000
                context.fireUserInboundEventTriggered(GnuTLSEvent.idleTimeout(seconds: Int(seconds)))
                context.close(promise: nil)
            }
        case .closing:
            if now >= shutdownDeadline { finishClose(context: context) }
        case .idle, .closed:
            stopDeadlines()
        }
    }

    // MARK: - Inbound

    /// Feeds the ciphertext to the session and passes up any plaintext it decrypts.
    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        switch state {
        case .closed:
            return
        case .idle, .handshaking, .active, .closing, .inputClosed:
            if idleTimeout != nil { lastActivity = context.eventLoop.now }
            // GnuTLS reads the ciphertext in place; only what it leaves unread is copied into the session.
            buffer.withUnsafeReadableBytes { raw in
                session.withBorrowedInput(raw) { processInput(context: context) }
            }
        }
    }

    /// Takes the transport's `ChannelEvent.inputClosed` as the end of the ciphertext and does not pass it on;
    /// every other event is passed on.
    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            // The transport's read side ended (half-closure enabled on the socket).
            switch state {
            case .handshaking, .active, .closing:
                session.feedEndOfInput()
                processInput(context: context)
            default:
                break
            }
            if case .closing = state { finishClose(context: context) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Moves the session forward with whatever input is buffered.
    private func processInput(context: ChannelHandlerContext) {
        if case .handshaking = state { advanceHandshake(context: context) }
        switch state {
        case .active, .closing, .inputClosed: readPlaintext(context: context)
        default: break
        }
        flushSessionOutput(context: context)
    }

    private func advanceHandshake(context: ChannelHandlerContext) {
        do {
            let status = try session.handshake()
            flushSessionOutput(context: context)
            guard status == .complete else { return }
            state = .active
            // Without an idle timeout an open connection has no deadline left to check.
            if idleTimeout == nil { stopDeadlines() }
            let info = TLSHandshakeInfo(session)
            context.fireUserInboundEventTriggered(GnuTLSEvent.handshakeCompleted(info))
            context.fireUserInboundEventTriggered(
                TLSUserEvent.handshakeCompleted(negotiatedProtocol: info.applicationProtocol))
            handshakePromise?.succeed(info)
            handshakePromise = nil
            if pendingWrites.isEmpty {
                // Many connections go quiet after the handshake: keep no buffers for them until data moves.
                session.releaseEmptyBuffers()
                outputBuffer = nil
            }
            flushPendingWrites(context: context)
        } catch {
            fail(error, context: context)
        }
    }

    /// Decrypts everything buffered and passes it up, one buffer per read.
    private func readPlaintext(context: ChannelHandlerContext) {
        var delivered = false
        while session.canRead {
            // Plaintext is never longer than the ciphertext it came from: size the buffer to what is there.
            let needed = max(1, min(16 * 1024, session.bufferedInputCount + session.bufferedPlaintextCount))
            var buffer = scratch ?? context.channel.allocator.buffer(capacity: needed)
            scratch = nil
            buffer.clear(minimumCapacity: needed)
            var outcome = TLSSession.ReadResult.needsInput
            do {
                _ = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: needed) {
                    (raw) throws(TLSError) -> Int in
                    outcome = try session.read(into: raw)
                    if case .bytes(let n) = outcome { return n }
                    return 0
                }
            } catch {
                if delivered { context.fireChannelReadComplete() }
                fail(error, context: context)
                return
            }
            if case .bytes = outcome {
                context.fireChannelRead(wrapInboundOut(buffer))
                delivered = true
                continue
            }
            scratch = buffer
            if delivered { context.fireChannelReadComplete() }
            if outcome == .closed { peerClosed(context: context) }
            return
        }
        if delivered { context.fireChannelReadComplete() }
    }

    /// Sends any records the reads produced (handshake messages, alerts). Read completion is passed on only
    /// when plaintext was delivered.
    public func channelReadComplete(context: ChannelHandlerContext) {
        // Read completion is announced by readPlaintext when plaintext was delivered.
        flushSessionOutput(context: context)
    }

    /// The peer's close_notify arrived.
    private func peerClosed(context: ChannelHandlerContext) {
        switch state {
        case .closing:
            finishClose(context: context)
        case .active where allowHalfClosure:
            state = .inputClosed
            context.fireUserInboundEventTriggered(GnuTLSEvent.peerClosedOutput)
            // NIO's own half-closure event, so that NIOAsyncChannel ends its inbound stream.
            context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        case .active, .inputClosed:
            // Answer with our own close_notify and close.
            try? session.close()
            flushSessionOutput(context: context)
            state = .closed
            context.close(promise: nil)
        default:
            break
        }
    }

    // MARK: - Outbound

    /// Queues plaintext to be encrypted by the next flush, or when the handshake completes. Once the connection
    /// is closing or closed, fails the promise (with the error that ended it, if there was one).
    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let buffer = unwrapOutboundIn(data)
        switch state {
        case .idle, .handshaking, .active, .inputClosed:
            if idleTimeout != nil { lastActivity = context.eventLoop.now }
            pendingWrites.append((buffer, promise))
        case .closing, .closed:
            // Tell the writer why the connection ended (a peer's alert, say), not only that it did.
            promise?.fail(failure ?? ChannelError.outputClosed)
        }
    }

    /// Encrypts the queued writes and sends them as one channel write; before the handshake completes, they
    /// wait for it.
    public func flush(context: ChannelHandlerContext) {
        switch state {
        case .active, .inputClosed: flushPendingWrites(context: context)
        default: break
        }
    }

    /// Encrypts the pending writes into records and sends them as one channel write.
    private func flushPendingWrites(context: ChannelHandlerContext) {
        guard !pendingWrites.isEmpty else { return }
        var promise: EventLoopPromise<Void>?
        guard encryptPendingWrites(context: context, promise: &promise) else { return }
        flushSessionOutput(context: context, promise: promise)
    }

    /// Encrypts the pending writes into the session's output without sending it, so that what follows (a
    /// close_notify, say) can leave in the same channel write. `promise` is set to the promise to complete once
    /// that output is written. Returns false after a failure, which `fail` has handled.
    private func encryptPendingWrites(context: ChannelHandlerContext, promise: inout EventLoopPromise<Void>?) -> Bool {
        let count = pendingWrites.count
        guard count > 0 else { return true }
        // Corking packs many small writes into full records, at the price of copying them once more inside
        // GnuTLS. Writes of a few KiB or more make full records on their own: those are not corked.
        var total = 0
        for index in 0..<count { total += pendingWrites[index].0.readableBytes }
        let cork = count > 1 && total < count * 4096
        do {
            if cork { session.cork() }
            for index in 0..<count {
                try pendingWrites[index].0.withUnsafeReadableBytes { (raw) throws(TLSError) in try session.write(raw) }
            }
            if cork { try session.uncork() }
        } catch {
            failPendingWrites(error)
            fail(error, context: context)
            return false
        }
        // The first writer's promise stands for the channel write and the others follow it. Iterating in place
        // and clearing afterwards keeps the array's storage: nothing is allocated per flush.
        var combined: EventLoopPromise<Void>?
        for index in 0..<count {
            guard let next = pendingWrites[index].1 else { continue }
            if let combined { combined.futureResult.cascade(to: next) } else { combined = next }
        }
        pendingWrites.removeAll(keepingCapacity: true)
        promise = combined
        return true
    }

    /// The session's output sink: appends ciphertext to the buffer of the next channel write.
    private func appendOutput(_ bytes: UnsafeRawBufferPointer) {
        if outputBuffer == nil {
            outputBuffer = allocator.buffer(capacity: bytes.count)
        } else if outputSent {
            // Once the socket has taken the last write, NIO no longer holds the buffer and clearing it allocates
            // nothing (if NIO still holds it, clearing gives us fresh storage: nothing is copied).
            outputBuffer!.clear(minimumCapacity: bytes.count)
        }
        outputSent = false
        outputBuffer!.writeBytes(bytes)
    }

    /// Sends what the session produced since the last write, as one buffer.
    private func flushSessionOutput(context: ChannelHandlerContext, promise: EventLoopPromise<Void>? = nil) {
        guard !outputSent, let buffer = outputBuffer, buffer.readableBytes > 0 else {
            promise?.succeed(())
            return
        }
        outputSent = true
        context.writeAndFlush(wrapOutboundOut(buffer), promise: promise)
    }

    /// Sends close_notify, then closes the channel once the peer's arrives or the shutdown timeout passes.
    /// `CloseMode.output` only sends close_notify (a half-close); before the handshake completes, the channel
    /// closes at once.
    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        switch state {
        case .active, .inputClosed:
            guard mode == .all || mode == .output else {
                context.close(mode: mode, promise: promise)
                return
            }
            // The last writes and the close_notify leave in one channel write.
            var writesPromise: EventLoopPromise<Void>?
            guard encryptPendingWrites(context: context, promise: &writesPromise) else {
                // The failure closes the channel; this close completes with it.
                if let promise { context.channel.closeFuture.cascade(to: promise) }
                return
            }
            let peerAlreadyClosed: Bool
            if case .inputClosed = state { peerAlreadyClosed = true } else { peerAlreadyClosed = false }
            state = .closing
            closePromise = promise
            do {
                try session.close()
            } catch {
                flushSessionOutput(context: context, promise: writesPromise)
                finishClose(context: context)
                return
            }
            flushSessionOutput(context: context, promise: writesPromise)
            if peerAlreadyClosed {
                finishClose(context: context)
                return
            }
            if mode == .output {
                // Half-close: our side is done; reading goes on until the peer's close_notify or EOF.
                closePromise = nil
                promise?.succeed(())
                return
            }
            startShutdownWait(context: context)
        case .closing:
            // Already closing: complete this promise with the first close.
            if let promise {
                if let closePromise { closePromise.futureResult.cascade(to: promise) } else { closePromise = promise }
            }
            if mode == .all && shutdownDeadline == .distantFuture {
                // After a half-close, a full close waits only a bounded time for the peer.
                startShutdownWait(context: context)
            }
        case .closed where mode == .output:
            // The TLS stream is already over (the peer closed, or it failed): nothing is left to half-close.
            promise?.succeed(())
        case .idle, .handshaking, .closed:
            state = .closed
            stopDeadlines()
            context.close(mode: mode, promise: promise)
        }
    }

    /// Waits at most `shutdownTimeout` for the peer's close_notify.
    private func startShutdownWait(context: ChannelHandlerContext) {
        shutdownDeadline = context.eventLoop.now + shutdownTimeout
        watchDeadlines(context: context)
    }

    private func finishClose(context: ChannelHandlerContext) {
        guard case .closing = state else { return }
        state = .closed
        stopDeadlines()
        let promise = closePromise
        closePromise = nil
        context.close(mode: .all, promise: promise)
    }

    // MARK: - Errors

    /// Transport errors once our close_notify is out (a peer that resets instead of answering it, as many
    /// clients do) end the connection quietly: the exchange itself completed. Other errors pass on.
    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch state {
        case .closing where error is IOError:
            finishClose(context: context)
        case .closed where error is IOError:
            return
        default:
            context.fireErrorCaught(error)
        }
    }

    /// A fatal error: send the alert the session queued, report the error, close.
    private func fail(_ error: Error, context: ChannelHandlerContext) {
        if case .closed = state { return }
        state = .closed
        failure = error
        stopDeadlines()
        flushSessionOutput(context: context)
        failWaiters(error)
        context.fireErrorCaught(error)
        let promise = closePromise
        closePromise = nil
        context.close(promise: promise)
    }

    private func failPendingWrites(_ error: Error) {
        let writes = pendingWrites
        pendingWrites.removeAll()
        for (_, promise) in writes { promise?.fail(error) }
    }
}

@available(*, unavailable)
extension GnuTLSHandler: Sendable {}
