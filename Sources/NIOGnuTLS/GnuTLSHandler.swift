import GnuTLS
import Logging
import NIOCore
import NIOTLS

/// A SwiftNIO channel handler that runs one TLS connection over a channel.
///
/// Ciphertext read from the channel goes into the session and plaintext comes up the pipeline; plaintext
/// written goes into the session and leaves as records, one channel write per flush. Every way a connection ends
/// -- `close`, the idle timeout, the peer's close_notify, the channel's shutdown -- sends close_notify when TLS is
/// up, and the channel closes once the peer has answered (or its stream ended, or the shutdown timeout passed)
/// and everything written before the close_notify has been written. A transport that ends without close_notify is
/// reported as a `TLSError` of kind `truncated` through `errorCaught`, never as a clean close.
///
/// The same role as swift-nio-ssl's `NIOSSLHandler`: put it first in the pipeline of a client or server channel.
/// It fires NIO's `TLSUserEvent.handshakeCompleted` and `.shutdownCompleted` as well as ``GnuTLSEvent``s.
///
/// Given a `Logger`, it logs each connection that fails (handshake or later) once, at debug level, with dotted
/// metadata keys (`tls.error.kind`, `tls.error.code`, `tls.error.reason`, `tls.error.alert`, `tls.peer`,
/// `tls.role`, `tls.handshake`, `tls.server_name`); a connection that goes well logs nothing. Given a
/// ``TLSMetrics``, it counts handshakes, their duration and failures, and open connections.
///
/// The handler only carries out what its connection state machine decides (`TLSConnectionStateMachine`).
public final class GnuTLSHandler: ChannelDuplexHandler, RemovableChannelHandler, DeadlineChecking, TLSOutputSink {
    /// Ciphertext read from the channel.
    public typealias InboundIn = ByteBuffer
    /// Plaintext passed up the pipeline.
    public typealias InboundOut = ByteBuffer
    /// Plaintext written by the handlers after this one.
    public typealias OutboundIn = ByteBuffer
    /// Ciphertext written to the channel.
    public typealias OutboundOut = ByteBuffer

    typealias Machine = TLSConnectionStateMachine<ByteBuffer, EventLoopPromise<Void>>

    // The hot stored properties skip Swift's dynamic exclusivity checks (about 115 instructions per access, some
    // 60 accesses per connection): every access happens on the event loop, and none is held across a call that
    // could come back in -- the machine never calls out while it runs (it answers with actions that are carried
    // out after it returns), and GnuTLS's callbacks only touch the output buffer. The compiler still checks what
    // it can see statically.
    @exclusivity(unchecked) private var machine: Machine
    private let session: TLSSession
    /// Half-closure as asked for in `init`; nil follows the channel's `ChannelOptions.allowRemoteHalfClosure`.
    private let explicitHalfClosure: Bool?
    /// What the handshake agreed on, once it has completed (read from the session on each call).
    public var handshakeInfo: TLSHandshakeInfo? {
        guard case .completed = machine.handshakeOutcome else { return nil }
        return TLSHandshakeInfo(session)
    }
    /// How the handshake ended: nil while it is under way, the error that failed it otherwise.
    var handshakeResult: Result<TLSHandshakeInfo, any Error>? {
        switch machine.handshakeOutcome {
        case .pending: return nil
        case .completed: return .success(TLSHandshakeInfo(session))
        case .failed(let failure): return .failure(Self.error(failure))
        }
    }
    /// For a client, data with which a later connection can resume this session (see
    /// `TLSContext.makeSession(serverName:resumptionData:)`), or nil while the server has issued no ticket
    /// (TLS 1.3 tickets arrive after the handshake, with the first records read). Still readable once the
    /// handler has left the pipeline. Read it on the channel's event loop.
    public var resumptionData: [UInt8]? { session.resumptionData }
    /// Made on demand by ``handshakeFuture``: a pipeline that only listens for the user event pays for no promise.
    @exclusivity(unchecked) private var handshakePromise: EventLoopPromise<TLSHandshakeInfo>?
    @exclusivity(unchecked) private var eventLoop: (any EventLoop)?

    /// The event loop's ``DeadlineSweeper``, while this handler's deadlines are checked.
    @exclusivity(unchecked) private var sweeper: DeadlineSweeper?
    /// The context the sweeper's checks act on; set only while registered (the sweeper holds the handler).
    @exclusivity(unchecked) private var sweptContext: ChannelHandlerContext?
    @exclusivity(unchecked) var sweeperSlot: Int?

    /// A plaintext buffer that a read left empty, for the next read.
    @exclusivity(unchecked) private var scratch: ByteBuffer?
    /// Ciphertext the session produced (it arrives through the session's output sink) for the next channel
    /// write: its readable bytes are what is not sent yet. Kept after a write for reuse.
    @exclusivity(unchecked) private var outputBuffer: ByteBuffer?
    @exclusivity(unchecked) private var allocator = ByteBufferAllocator()
    /// Whether a read asked for by the pipeline (`read(context:)`; with `autoRead` off, the only reads there
    /// are) has not yielded plaintext yet: handshake and other records without plaintext then ask for another
    /// read, or a reader waiting for data would wait forever.
    @exclusivity(unchecked) private var readRequested = false

    /// Where failures are logged (at debug); nil logs nothing.
    private let logger: Logger?
    /// Where handshakes and connections are counted; nil counts nothing.
    private let metrics: TLSMetrics?
    /// With ``metrics``: when the handshake started (event-loop uptime, nanoseconds), whether the connection is
    /// counted as open, and whether its handshake's outcome has been counted.
    @exclusivity(unchecked) private var handshakeStarted: Int64 = 0
    @exclusivity(unchecked) private var countedOpen = false
    @exclusivity(unchecked) private var handshakeCounted = false
    /// Whether the handshake completed (the session's own state says failed once a later error ends it).
    @exclusivity(unchecked) private var handshakeAnnounced = false

    /// A future that completes when the handshake does (and fails with its error). Valid once the handler
    /// has been added to a pipeline.
    public var handshakeFuture: EventLoopFuture<TLSHandshakeInfo>? {
        if let handshakePromise { return handshakePromise.futureResult }
        guard let eventLoop else { return nil }
        switch machine.handshakeOutcome {
        case .completed:
            return eventLoop.makeSucceededFuture(TLSHandshakeInfo(session))
        case .failed(let failure):
            return eventLoop.makeFailedFuture(Self.error(failure))
        case .pending:
            let promise = eventLoop.makePromise(of: TLSHandshakeInfo.self)
            handshakePromise = promise
            return promise.futureResult
        }
    }

    /// Derives keying material from the connection's TLS secrets (RFC 5705, RFC 8446 section 7.5); see
    /// `TLSSession.exportKeyingMaterial(label:context:count:)`. Call it on the channel's event loop, once the
    /// handshake has completed.
    public func exportKeyingMaterial(label: String, context: [UInt8]? = nil, count: Int) throws(TLSError) -> [UInt8] {
        try session.exportKeyingMaterial(label: label, context: context, count: count)
    }

    /// Creates a handler for one connection.
    ///
    /// - Parameters:
    ///   - context: the shared TLS context.
    ///   - serverName: for clients, the SNI name and the name verified; overrides the configuration's.
    ///   - handshakeTimeout: how long the handshake may take before the connection is closed.
    ///   - shutdownTimeout: how long a close waits for the peer's close_notify and for the last bytes to be
    ///     written.
    ///   - idleTimeout: close the connection (with close_notify) after this long without bytes in either
    ///     direction; nil for never.
    ///   - allowHalfClosure: on the peer's close_notify, fire ``GnuTLSEvent/peerClosedOutput`` and keep the
    ///     channel open for writing (true), or answer with close_notify and close (false). Nil (the default)
    ///     follows the channel's `ChannelOptions.allowRemoteHalfClosure`, as swift-nio-ssl does.
    ///   - maximumHandshakeInput: the most the peer may send before the handshake completes; more fails the
    ///     connection (`TLSError` of kind `limitExceeded`, with a `handshake_failure` alert). Nil: 64 KiB for a
    ///     server (ClientHellos are a few KiB, post-quantum ones ~10 KiB, client certificate chains rarely
    ///     more than 20 KiB), 512 KiB for a client (long server chains with stapled responses).
    ///   - logger: where a failed connection is logged, once, at debug level (nothing for one that goes well).
    ///   - metrics: where handshakes and open connections are counted; nil (the default) counts nothing.
    public convenience init(
        context: TLSContext, serverName: String? = nil, handshakeTimeout: TimeAmount = .seconds(10),
        shutdownTimeout: TimeAmount = .seconds(3), idleTimeout: TimeAmount? = nil, allowHalfClosure: Bool? = nil,
        maximumHandshakeInput: Int? = nil, logger: Logger? = nil, metrics: TLSMetrics? = nil
    ) throws {
        self.init(
            session: try context.makeSession(serverName: serverName), handshakeTimeout: handshakeTimeout,
            shutdownTimeout: shutdownTimeout, idleTimeout: idleTimeout, allowHalfClosure: allowHalfClosure,
            maximumHandshakeInput: maximumHandshakeInput, logger: logger, metrics: metrics)
    }

    /// The default ``init(context:serverName:handshakeTimeout:shutdownTimeout:idleTimeout:allowHalfClosure:maximumHandshakeInput:logger:metrics:)``
    /// limit on what a peer may send before the handshake completes, by role.
    public static func defaultMaximumHandshakeInput(for role: TLSConfiguration.Role) -> Int {
        role == .server ? 64 * 1024 : 512 * 1024
    }

    /// Creates a handler around a session made by the caller (for example one resuming an earlier session). The
    /// handler owns the session from now on: nothing else may use it. The other parameters are those of
    /// ``init(context:serverName:handshakeTimeout:shutdownTimeout:idleTimeout:allowHalfClosure:maximumHandshakeInput:logger:metrics:)``.
    public init(
        session: TLSSession, handshakeTimeout: TimeAmount = .seconds(10), shutdownTimeout: TimeAmount = .seconds(3),
        idleTimeout: TimeAmount? = nil, allowHalfClosure: Bool? = nil, maximumHandshakeInput: Int? = nil,
        logger: Logger? = nil, metrics: TLSMetrics? = nil
    ) {
        self.session = session
        self.logger = logger
        self.metrics = metrics
        self.explicitHalfClosure = allowHalfClosure
        self.machine = Machine(
            session: session,
            timeouts: .init(
                handshake: handshakeTimeout.nanoseconds, shutdown: shutdownTimeout.nanoseconds,
                idle: idleTimeout?.nanoseconds),
            maximumHandshakeInput: maximumHandshakeInput
                ?? Self.defaultMaximumHandshakeInput(for: session.context.role),
            allowHalfClosure: allowHalfClosure ?? false)
    }

    deinit {
        // The session must not call into a handler that is gone.
        session.outputSink = nil
    }

    // MARK: - Lifecycle

    /// Remembers the event loop, and starts the handshake at once if the channel is already active.
    public func handlerAdded(context: ChannelHandlerContext) {
        eventLoop = context.eventLoop
        allocator = context.channel.allocator
        if explicitHalfClosure == nil {
            machine.allowHalfClosure =
                (try? context.channel.syncOptions?.getOption(ChannelOptions.allowRemoteHalfClosure)) ?? false
        }
        // Records go straight from GnuTLS into the network buffer (one copy instead of two).
        session.outputSink = self
        if context.channel.isActive { startHandshake(context: context) }
    }

    /// Stops the deadline checks and fails the handshake future and any pending writes: the handler can no longer
    /// complete them.
    public func handlerRemoved(context: ChannelHandlerContext) {
        stopDeadlines()
        if countedOpen { countClosed() }
        session.outputSink = nil
        fail(machine.handlerRemoved(), handshake: true, with: ChannelError.ioOnClosedChannel)
    }

    /// Passes the event on, then starts the handshake (a client sends its ClientHello).
    public func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
        startHandshake(context: context)
    }

    /// Reports a transport that ended without close_notify as truncation, fails whatever is still waiting,
    /// and passes the event on.
    public func channelInactive(context: ChannelHandlerContext) {
        if machine.expectsCloseNotify {
            machine.endOfInput()
            processInput(context: context)
        }
        let (close, abandoned) = machine.channelInactive()
        stopDeadlines()
        if countedOpen { countClosed() }
        fail(abandoned, handshake: true, with: ChannelError.ioOnClosedChannel)
        close?.succeed(())
        context.fireChannelInactive()
    }

    private func startHandshake(context: ChannelHandlerContext) {
        let now = Self.nanoseconds(context.eventLoop.now)
        if let metrics, !countedOpen, case .idle = machine.state {
            countedOpen = true
            handshakeStarted = now
            metrics.connectionOpened()
        }
        machine.channelActive(now: now)
        processInput(context: context)
    }

    // MARK: - Logging and metrics (never on the path of a connection that goes well, unless metrics are on)

    /// The connection is no longer open: a handshake it never finished, without an error of its own, was cut
    /// short by a close.
    private func countClosed() {
        countedOpen = false
        guard let metrics else { return }
        if !handshakeCounted && !handshakeAnnounced {
            handshakeCounted = true
            metrics.handshakeFailed(version: session.negotiatedVersion, reason: TLSMetrics.closedReason)
        }
        metrics.connectionClosed()
    }

    /// Counts and logs the error that ends the connection.
    private func report(_ error: any Error, context: ChannelHandlerContext) {
        let duringHandshake = !handshakeAnnounced
        if let metrics {
            let reason = TLSMetrics.reason(error)
            if duringHandshake {
                if !handshakeCounted {
                    handshakeCounted = true
                    metrics.handshakeFailed(version: session.negotiatedVersion, reason: reason)
                }
            } else {
                metrics.connectionFailed(reason: reason)
            }
        }
        guard let logger, logger.logLevel <= .debug else { return }
        var metadata: Logger.Metadata = [
            "tls.role": "\(session.context.role)",
            "tls.handshake": duringHandshake ? "failed" : "completed",
        ]
        if let peer = context.channel.remoteAddress { metadata["tls.peer"] = "\(peer)" }
        if let name = session.requestedServerName { metadata["tls.server_name"] = "\(name)" }
        if let error = error as? TLSError {
            metadata["tls.error.kind"] = "\(error.kind.rawValue)"
            metadata["tls.error.code"] = "\(error.codeName)"
            metadata["tls.error.reason"] = "\(error.reason)"
            if let alert = error.alert { metadata["tls.error.alert"] = "\(alert)" }
        } else {
            metadata["tls.error.kind"] = "\(TLSError.Kind.other.rawValue)"
            metadata["tls.error.reason"] = "\(String(describing: error))"
        }
        logger.debug(duringHandshake ? "TLS handshake failed" : "TLS connection failed", metadata: metadata)
    }

    // MARK: - Deadlines

    /// Has the event loop's sweeper check this connection's deadlines while the machine has any.
    private func updateDeadlines(context: ChannelHandlerContext) {
        if machine.nextDeadline == nil {
            if sweeperSlot != nil { stopDeadlines() }
        } else if sweeperSlot == nil {
            // Joining looks the loop's sweeper up again: the one this handler used before may have retired.
            sweeper = DeadlineSweeper.of(context.eventLoop)
            sweptContext = context
            // Deadlines are acted on at most an eighth of the shortest timeout late (at most 1 s).
            let timeouts = machine.timeouts
            let shortest = min(timeouts.handshake, timeouts.shutdown, timeouts.idle ?? timeouts.handshake)
            let resolution = TimeAmount.nanoseconds(max(1_000_000, min(1_000_000_000, shortest / 8)))
            sweeper?.add(self, resolution: resolution)
        }
    }

    private func stopDeadlines() {
        sweeper?.remove(self)
        sweptContext = nil
    }

    /// Acts on every deadline that has passed.
    func checkDeadlines(now: NIODeadline) {
        guard let context = sweptContext else { return }
        let nanoseconds = Self.nanoseconds(now)
        switch machine.deadlinePassed(now: nanoseconds) {
        case .none:
            break
        case .idleTimeout(let idle):
            context.fireUserInboundEventTriggered(GnuTLSEvent.idleTimeout(.nanoseconds(idle)))
            // Our own close (not the channel's): close_notify first.
            perform(machine.close(all: true, promise: nil, now: nanoseconds), context: context)
        case .act(let action):
            perform(action, context: context)
        }
        updateDeadlines(context: context)
    }

    // MARK: - Inbound

    /// Feeds the ciphertext to the session and passes up any plaintext it decrypts.
    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        perform(machine.received(buffer.readableBytes), context: context)
        guard machine.isReading else { return }
        if machine.tracksActivity { machine.recordActivity(at: Self.nanoseconds(context.eventLoop.now)) }
        // GnuTLS reads the ciphertext in place; only what it leaves unread is copied into the session.
        buffer.withUnsafeReadableBytes { raw in
            session.withBorrowedInput(raw) { processInput(context: context) }
        }
    }

    /// Takes the transport's `ChannelEvent.inputClosed` as the end of the ciphertext and does not pass it on;
    /// every other event is passed on.
    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            machine.endOfInput()
            processInput(context: context)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Steps the machine over whatever input is buffered, carrying out each step.
    private func processInput(context: ChannelHandlerContext) {
        var delivered = false
        loop: while true {
            let capacity = machine.plaintextCapacityNeeded
            var buffer: ByteBuffer?
            let step: Machine.InboundAction
            if capacity > 0 {
                var plaintext = scratch ?? allocator.buffer(capacity: capacity)
                scratch = nil
                plaintext.clear(minimumCapacity: capacity)
                var result = Machine.InboundAction.wait
                plaintext.writeWithUnsafeMutableBytes(minimumWritableBytes: capacity) { raw in
                    result = machine.processInput(into: raw) { Self.nanoseconds(context.eventLoop.now) }
                    if case .deliver(let count) = result { return count }
                    return 0
                }
                step = result
                buffer = plaintext
            } else {
                step = machine.processInput(into: UnsafeMutableRawBufferPointer(start: nil, count: 0)) {
                    Self.nanoseconds(context.eventLoop.now)
                }
            }
            switch step {
            case .wait:
                if let buffer { scratch = buffer }
                break loop
            case .deliver:
                context.fireChannelRead(wrapInboundOut(buffer!))
                delivered = true
            case .handshakeCompleted(let quiet, let then):
                if case .none = then {
                    flushOutput(context: context)
                    if quiet { outputBuffer = nil }
                } else {
                    perform(then, context: context)
                }
                // A write that failed at once may have closed the channel already: then there is nothing to
                // announce (the handshake future has failed).
                if case .closed = machine.state { continue }
                announceHandshake(context: context)
                perform(machine.flush(), context: context)
            case .peerClosedOutput:
                if let buffer { scratch = buffer }
                if delivered { readComplete(context: context, &delivered) }
                context.fireUserInboundEventTriggered(GnuTLSEvent.peerClosedOutput)
                // NIO's own half-closure event, so that NIOAsyncChannel ends its inbound stream.
                context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
            case .act(let action):
                if let buffer { scratch = buffer }
                if delivered { readComplete(context: context, &delivered) }
                perform(action, context: context)
            case .selectContext(let hello):
                if let buffer { scratch = buffer }
                askContextSelector(about: hello, context: context)
            }
        }
        if delivered { readComplete(context: context, &delivered) }
        flushOutput(context: context)
        updateDeadlines(context: context)
    }

    /// Asks the configuration's context selector about a hello; its answer, from any thread, comes back to the
    /// event loop and resumes the handshake.
    private func askContextSelector(about hello: ClientHelloInfo, context: ChannelHandlerContext) {
        guard let selector = session.context.configuration.contextSelector else {
            perform(machine.contextSelected(.success(nil)), context: context)
            processInput(context: context)
            return
        }
        let loop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        selector(hello) { answer in
            loop.execute {
                let (handler, context) = bound.value
                handler.perform(handler.machine.contextSelected(answer), context: context)
                handler.processInput(context: context)
            }
        }
    }

    private func readComplete(context: ChannelHandlerContext, _ delivered: inout Bool) {
        delivered = false
        readRequested = false
        context.fireChannelReadComplete()
    }

    private func announceHandshake(context: ChannelHandlerContext) {
        let info = TLSHandshakeInfo(session)
        // Taken first: a handler that fails the connection from inside an event must not fail it as well.
        let promise = handshakePromise
        handshakePromise = nil
        handshakeAnnounced = true
        if let metrics, !handshakeCounted {
            handshakeCounted = true
            metrics.handshakeSucceeded(
                version: info.version, nanoseconds: Self.nanoseconds(context.eventLoop.now) - handshakeStarted)
        }
        context.fireUserInboundEventTriggered(GnuTLSEvent.handshakeCompleted(info))
        context.fireUserInboundEventTriggered(TLSUserEvent.handshakeCompleted(negotiatedProtocol: info.applicationProtocol))
        promise?.succeed(info)
    }

    /// Sends the records the reads produced (handshake messages, alerts). Read completion is passed on when
    /// plaintext was delivered; a read the pipeline asked for that yielded none asks for another.
    public func channelReadComplete(context: ChannelHandlerContext) {
        flushOutput(context: context)
        if readRequested && machine.isReading { context.read() }
    }

    // MARK: - Outbound

    /// Passes the request on, and remembers it until plaintext answers it.
    public func read(context: ChannelHandlerContext) {
        readRequested = true
        context.read()
    }

    /// Queues plaintext to be encrypted by the next flush, or when the handshake completes. Once close_notify is
    /// sent or the connection has ended, fails the promise (with the error that ended it, if there was one).
    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if machine.tracksActivity { machine.recordActivity(at: Self.nanoseconds(context.eventLoop.now)) }
        perform(machine.write(unwrapOutboundIn(data), promise: promise), context: context)
    }

    /// Encrypts the queued writes and sends them as one channel write; before the handshake completes, they
    /// wait for it.
    public func flush(context: ChannelHandlerContext) {
        perform(machine.flush(), context: context)
    }

    /// Sends close_notify, then closes the channel once the peer's arrives (or its stream ends, or the shutdown
    /// timeout passes) and everything before it is written. `CloseMode.output` only sends close_notify (a TLS
    /// half-close); `CloseMode.input` fails with `ChannelError.operationUnsupported` (TLS cannot close one's
    /// input). Before the handshake completes, the channel closes at once.
    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        let action = machine.close(
            all: mode == .all, input: mode == .input, promise: promise, now: Self.nanoseconds(context.eventLoop.now))
        perform(action, context: context)
        updateDeadlines(context: context)
    }

    // MARK: - Errors

    /// Transport errors once everything we sent is written and our close_notify is out (a peer that resets
    /// instead of answering it, as many clients do) end the connection quietly: the exchange itself completed.
    /// Other errors pass on.
    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch machine.errorCaught(isTransportError: error is IOError) {
        case .pass: context.fireErrorCaught(error)
        case .drop: break
        case .act(let action): perform(action, context: context)
        }
    }

    // MARK: - Carrying out the machine's actions

    private func perform(_ action: Machine.Action, context: ChannelHandlerContext) {
        switch action {
        case .none:
            break
        case .send(let promise):
            flushOutput(context: context, promise: promise)
        case .sendCloseNotify(let writes, let close):
            // The close_notify is the last thing we send: once its write completes, everything before it has
            // been written too, and the channel may close without dropping a byte.
            let written = context.eventLoop.makePromise(of: Void.self)
            if let writes { written.futureResult.cascade(to: writes) }
            if let close { written.futureResult.cascade(to: close) }
            written.futureResult.assumeIsolatedUnsafeUnchecked().whenComplete { [self] result in
                var error: (any Error)?
                if case .failure(let failure) = result { error = failure }
                perform(machine.closeNotifyWritten(error: error), context: context)
                updateDeadlines(context: context)
            }
            flushOutput(context: context, promise: written)
        case .closeChannel(let promise, let shutdownCompleted, let abandoned):
            flushOutput(context: context)
            fail(abandoned, handshake: false, with: ChannelError.ioOnClosedChannel)
            if shutdownCompleted { context.fireUserInboundEventTriggered(TLSUserEvent.shutdownCompleted) }
            context.close(mode: .all, promise: promise)
        case .fail(let error, let abandoned, let close):
            // The alert the session queued goes out first.
            flushOutput(context: context)
            if logger != nil || metrics != nil { report(error, context: context) }
            fail(abandoned, handshake: true, with: error)
            context.fireErrorCaught(error)
            context.close(mode: .all, promise: close)
        case .succeed(let promise):
            promise?.succeed(())
        case .refuse(let promise, let failure):
            promise?.fail(Self.error(failure))
        }
    }

    /// Fails writes that can no longer be sent, and the handshake future if it is still waiting.
    private func fail(_ writes: Machine.PendingWrites, handshake: Bool, with error: @autoclosure () -> any Error) {
        // Usually nothing waits: then no error is made (boxing one allocates).
        guard (handshake && handshakePromise != nil) || !writes.isEmpty else { return }
        let error = error()
        if handshake, let handshakePromise {
            self.handshakePromise = nil
            handshakePromise.fail(error)
        }
        for (_, promise) in writes { promise?.fail(error) }
    }

    private static func error(_ failure: Machine.Failure) -> any Error {
        switch failure {
        case .error(let error): return error
        case .refused(.outputClosed): return ChannelError.outputClosed
        case .refused(.channelClosed): return ChannelError.ioOnClosedChannel
        case .refused(.unsupportedOperation): return ChannelError.operationUnsupported
        }
    }

    private static func nanoseconds(_ time: NIODeadline) -> Int64 {
        Int64(truncatingIfNeeded: time.uptimeNanoseconds)
    }

    // MARK: - Output

    /// The session's output sink: appends ciphertext to the buffer of the next channel write.
    package func takeOutput(_ bytes: UnsafeRawBufferPointer) {
        if outputBuffer == nil {
            outputBuffer = allocator.buffer(capacity: bytes.count)
        } else if outputBuffer!.readableBytes == 0 {
            // Everything in it was sent. Once the socket has taken the last write, NIO no longer holds the buffer
            // and clearing it allocates nothing (if NIO still holds it, clearing gives us fresh storage: nothing is
            // copied).
            outputBuffer!.clear(minimumCapacity: bytes.count)
        }
        outputBuffer!.writeBytes(bytes)
    }

    /// Sends what the session produced since the last write, as one buffer. With nothing to send, a promise
    /// goes with an empty write, so that it completes after the writes before it, in order.
    private func flushOutput(context: ChannelHandlerContext, promise: EventLoopPromise<Void>? = nil) {
        guard let buffer = outputBuffer, buffer.readableBytes > 0 else {
            if let promise { context.writeAndFlush(wrapOutboundOut(allocator.buffer(capacity: 0)), promise: promise) }
            return
        }
        // Our copy of the buffer now holds nothing unsent (moving its reader index touches no storage: NIO's copy
        // keeps the bytes).
        outputBuffer!.moveReaderIndex(forwardBy: buffer.readableBytes)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: promise)
    }
}

@available(*, unavailable)
extension GnuTLSHandler: Sendable {}

extension ByteBuffer: TLSPlaintextBuffer {}

extension EventLoopPromise: TLSWritePromise where Value == Void {
    func cascade(to other: EventLoopPromise<Void>) {
        futureResult.cascade(to: other)
    }
}
