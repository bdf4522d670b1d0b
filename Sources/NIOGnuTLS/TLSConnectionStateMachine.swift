import GnuTLS

/// What the connection state machine needs of a plaintext buffer. NIO's `ByteBuffer` has it as it is; tests use
/// plain arrays.
protocol TLSPlaintextBuffer {
    /// The number of bytes to send.
    var readableBytes: Int { get }
    /// Lends the bytes to send.
    func withUnsafeReadableBytes<T, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> T) throws(E) -> T
}

/// What the connection state machine needs of a write promise: joining one promise to another. Completing a
/// promise runs other people's code, so that is the handler's job, never the machine's.
protocol TLSWritePromise {
    /// Completes `other` when this promise completes, with the same result.
    func cascade(to other: Self)
}

/// One TLS connection's lifecycle over a transport: handshake, data, close_notify both ways, deadlines, failure.
///
/// The machine drives one ``TLSSession`` and knows nothing of SwiftNIO: it takes events (bytes received, end of
/// input, write, flush, close requested, a deadline passed, the close_notify written) and answers with what the
/// channel handler must do (``Action``, ``InboundAction``): send the session's output, deliver plaintext, fire an
/// event, complete or fail promises, close the channel. It never calls out itself, so a handler further down the
/// pipeline that writes or closes from inside a callback meets a machine whose state is already settled, and every
/// path to the end of a connection -- idle, the peer's close, failure, shutdown, the user's close -- goes through
/// the same transitions, sending close_notify whenever TLS is up.
///
/// Times are nanoseconds of a monotonic clock, passed in by the caller (the machine reads no clock).
struct TLSConnectionStateMachine<Buffer: TLSPlaintextBuffer, Promise: TLSWritePromise> {
    /// The limits of one connection, in nanoseconds.
    struct Timeouts: Equatable {
        /// From the start of the connection to the end of the handshake.
        var handshake: Int64
        /// From our close_notify to the peer's, and to our last bytes being written.
        var shutdown: Int64
        /// Without bytes in either direction once the handshake is done; nil for none.
        var idle: Int64?
    }

    /// Why a promise is refused without an error of the connection's own; the handler turns each into NIO's
    /// `ChannelError`.
    enum Refusal: Equatable {
        /// Our close_notify is sent: nothing more can be written.
        case outputClosed
        /// The channel has closed.
        case channelClosed
        /// The request cannot be carried out at all (closing only the input of a TLS stream).
        case unsupportedOperation
    }

    /// Why a promise is failed.
    enum Failure {
        case refused(Refusal)
        case error(any Error)
    }

    /// Plaintext waiting to be encrypted, with the promises of its writes.
    typealias PendingWrites = [(Buffer, Promise?)]

    /// What the handler must do after an event.
    enum Action {
        /// Nothing.
        case none
        /// Write what the session produced, in one channel write, completing `promise` with it.
        case send(Promise?)
        /// Write what the session produced, which ends with our close_notify, completing `writes` and `close` with
        /// it; report its completion with ``closeNotifyWritten(error:)``.
        case sendCloseNotify(writes: Promise?, close: Promise?)
        /// The stream is over: write what the session produced, fire `TLSUserEvent.shutdownCompleted` if the
        /// close_notify exchange completed, close the channel completing `promise`, and fail `abandoned`.
        case closeChannel(Promise?, shutdownCompleted: Bool, abandoned: PendingWrites)
        /// A fatal error: write what the session produced (the alert), fail the handshake and `abandoned` with
        /// `error`, report `error` down the pipeline, close the channel completing `close`.
        case fail(any Error, abandoned: PendingWrites, close: Promise?)
        /// Succeed `promise`.
        case succeed(Promise?)
        /// Fail `promise`.
        case refuse(Promise?, Failure)
    }

    /// What the handler must do after a step of processing received bytes (``processInput(into:now:)``).
    enum InboundAction {
        /// Nothing more until more bytes arrive.
        case wait
        /// This many plaintext bytes were written to the buffer: pass them on, then step again.
        case deliver(Int)
        /// The handshake completed: carry out `then` (a half-close asked for during the handshake; otherwise
        /// write the session's output), announce the handshake, ``flush()`` the writes that waited for it, then
        /// step again. `quiet`: nothing else is buffered, so buffers may go.
        case handshakeCompleted(quiet: Bool, then: Action)
        /// The peer's close_notify arrived and half-closure is allowed: announce it, then step again.
        case peerClosedOutput
        /// Carry out `action`, then step again.
        case act(Action)
        /// The server's context selector must choose the context for this hello: ask it, and report its answer
        /// with ``contextSelected(_:)``. Until then the machine waits (input is still buffered and counted).
        case selectContext(ClientHelloInfo)
    }

    /// Where a connection stands. Each state carries what only it needs.
    enum State {
        /// The channel is not active yet. Writes wait.
        case idle
        /// The handshake is under way. Writes wait for it, and so does a half-close.
        case handshaking(HandshakingState)
        /// Application data flows both ways.
        case active
        /// The peer's close_notify arrived and half-closure is allowed: we may still write.
        case inputClosed
        /// Our close_notify went out (a half-close, `close(mode: .output)`); the peer may still send.
        case outputClosed(closeNotifyWritten: Bool)
        /// Our close_notify went out for a full close: waiting for the peer's (or the end of its stream) and for
        /// our last bytes to be written, until `deadline`.
        case closing(ClosingState)
        /// The connection is over; `failure` is what ended it, if it did not end cleanly.
        case closed(failure: (any Error)?)
    }

    struct HandshakingState {
        var deadline: Int64
        /// Bytes received from the peer so far, against ``maximumHandshakeInput``.
        var received = 0
        /// A half-close (`close(mode: .output)`) asked for before the handshake completed, carried out once it
        /// has.
        var halfClose: HalfCloseRequest = .notRequested
        /// The context selector has been asked and has not answered yet.
        var selectingContext = false
    }

    enum HalfCloseRequest {
        case notRequested
        case requested(promise: Promise?)
    }

    struct ClosingState {
        var deadline: Int64
        /// Completed when the channel closes.
        var promise: Promise?
        /// The peer's close_notify arrived, or its stream ended.
        var peerFinished: Bool
        /// The peer's close_notify arrived (the exchange completed cleanly).
        var peerSentCloseNotify: Bool
        /// The channel write that carried our close_notify, and so everything before it, was written.
        var closeNotifyWritten: Bool
    }

    let session: TLSSession
    let timeouts: Timeouts
    /// The most the peer may send before the handshake completes. GnuTLS itself buffers a handshake message of
    /// up to 16 MiB, for as long as the handshake timeout: from a peer nobody has authenticated yet.
    let maximumHandshakeInput: Int
    /// Whether the peer's close_notify leaves our side open for writing (TLS half-closure).
    var allowHalfClosure: Bool
    private(set) var state: State = .idle
    private(set) var pendingWrites: PendingWrites = []
    /// When bytes last moved either way; kept only with an idle timeout (``recordActivity(at:)``).
    private(set) var lastActivity: Int64 = 0

    init(session: TLSSession, timeouts: Timeouts, maximumHandshakeInput: Int = .max, allowHalfClosure: Bool) {
        self.session = session
        self.timeouts = timeouts
        self.maximumHandshakeInput = maximumHandshakeInput
        self.allowHalfClosure = allowHalfClosure
    }

    // MARK: - What the handler asks
    //
    // The queries are `mutating` on purpose: the handler then reads them in place. A non-mutating call on the
    // machine stored in the handler copies it out first (retaining the session, the pending writes and the
    // state's promises) and destroys the copy afterwards, several times per connection.

    /// Whether activity needs recording (there is an idle timeout).
    var tracksActivity: Bool {
        mutating get { timeouts.idle != nil }
    }

    /// The next time ``deadlinePassed(now:)`` has something to do, if any.
    var nextDeadline: Int64? {
        mutating get {
            switch state {
            case .handshaking(let handshaking): return handshaking.deadline
            case .closing(let closing): return closing.deadline
            case .active, .inputClosed, .outputClosed: return timeouts.idle.map { Self.time(lastActivity, plus: $0) }
            case .idle, .closed: return nil
            }
        }
    }

    /// How many plaintext bytes the next ``processInput(into:now:)`` may write; 0 when it reads none.
    var plaintextCapacityNeeded: Int {
        mutating get {
            switch state {
            case .closing(let closing) where closing.peerFinished:
                // Nothing more comes from the peer: what is still buffered (after its close_notify) is not read.
                return 0
            case .active, .outputClosed, .closing:
                guard session.canRead else { return 0 }
                // Plaintext is never longer than the ciphertext it came from: size the buffer to what is there.
                return max(1, min(16 * 1024, session.bufferedInputCount + session.bufferedPlaintextCount))
            case .idle, .handshaking, .inputClosed, .closed:
                return 0
            }
        }
    }

    /// Whether the connection still expects bytes from the peer.
    var isReading: Bool {
        mutating get {
            switch state {
            case .handshaking, .active, .outputClosed: return true
            case .closing(let closing): return !closing.peerFinished
            case .idle, .inputClosed, .closed: return false
            }
        }
    }

    /// Whether an end of the peer's stream now would cut it short (it owes us a close_notify we still read for).
    var expectsCloseNotify: Bool {
        mutating get {
            switch state {
            case .handshaking, .active, .outputClosed: return true
            case .idle, .inputClosed, .closing, .closed: return false
            }
        }
    }

    /// How the handshake ended, if it has.
    enum HandshakeOutcome {
        case pending
        case completed
        case failed(Failure)
    }

    var handshakeOutcome: HandshakeOutcome {
        mutating get {
            switch state {
            case .idle, .handshaking: return .pending
            case .active, .inputClosed, .outputClosed, .closing: return .completed
            case .closed(let failure):
                if session.isHandshakeComplete { return .completed }
                return .failed(failure.map { .error($0) } ?? .refused(.channelClosed))
            }
        }
    }

    // MARK: - Events

    /// Records that bytes moved (only needed with an idle timeout).
    mutating func recordActivity(at now: Int64) {
        lastActivity = now
    }

    /// The channel became active: the handshake starts (a client's first step sends its ClientHello).
    mutating func channelActive(now: Int64) {
        guard case .idle = state else { return }
        lastActivity = now
        state = .handshaking(HandshakingState(deadline: Self.time(now, plus: timeouts.handshake)))
    }

    /// `count` bytes arrived from the peer (before they are processed). During the handshake they count against
    /// ``maximumHandshakeInput``; past it the connection fails with ``TLSError/Kind/limitExceeded`` and a
    /// `handshake_failure` alert.
    mutating func received(_ count: Int) -> Action {
        guard case .handshaking(var handshaking) = state else { return .none }
        handshaking.received += count
        guard handshaking.received > maximumHandshakeInput else {
            state = .handshaking(handshaking)
            return .none
        }
        let error = TLSError(
            kind: .limitExceeded,
            reason: "the peer sent more than \(Self.describe(bytes: maximumHandshakeInput)) before completing the "
                + "handshake")
        session.abort(error)
        return fail(error)
    }

    /// The context selector answered (see ``InboundAction/selectContext(_:)``): the session takes the chosen
    /// context, and the caller steps with ``processInput(into:now:)`` again; or, when it failed, the session sends
    /// a `handshake_failure` alert and the connection fails. An answer that comes after the connection ended (a
    /// handshake timeout, the peer gone) is ignored.
    mutating func contextSelected(_ answer: Result<TLSContext?, any Error>) -> Action {
        guard case .handshaking(var handshaking) = state, handshaking.selectingContext else { return .none }
        handshaking.selectingContext = false
        state = .handshaking(handshaking)
        switch answer {
        case .success(let selected):
            do throws(TLSError) {
                try session.selectContext(selected)
            } catch {
                return fail(error)
            }
            return .none
        case .failure(let error):
            session.failContextSelection(error)
            if case .failed(let reported) = session.state { return fail(reported) }
            return fail(error)
        }
    }

    /// The transport's input ended (the peer's FIN, or the channel closed). What is buffered is still processed;
    /// step with ``processInput(into:now:)`` afterwards.
    mutating func endOfInput() {
        switch state {
        case .handshaking, .active, .outputClosed, .closing: session.feedEndOfInput()
        case .idle, .inputClosed, .closed: break
        }
    }

    /// One step of processing the bytes received so far. `buffer` must hold ``plaintextCapacityNeeded`` bytes
    /// (it may be empty when that is 0). Call again until it answers ``InboundAction/wait``, carrying out each
    /// answer in between: a handler further down may write or close in between, and the next step sees it.
    mutating func processInput(into buffer: UnsafeMutableRawBufferPointer, now: () -> Int64) -> InboundAction {
        switch state {
        case .handshaking(var handshaking):
            if handshaking.selectingContext { return .wait }
            let status: TLSSession.HandshakeStatus
            do throws(TLSError) {
                status = try session.handshake()
            } catch {
                return .act(fail(error))
            }
            switch status {
            case .complete:
                break
            case .needsInput:
                return .wait
            case .needsContext(let hello):
                handshaking.selectingContext = true
                state = .handshaking(handshaking)
                return .selectContext(hello)
            }
            state = .active
            if case .requested(let promise) = handshaking.halfClose {
                return .handshakeCompleted(quiet: false, then: closeOutput(promise: promise))
            }
            let quiet = pendingWrites.isEmpty
            // Many connections go quiet after the handshake: keep no buffers for them until data moves.
            if quiet { session.releaseEmptyBuffers() }
            return .handshakeCompleted(quiet: quiet, then: .none)
        case .closing(let closing) where closing.peerFinished:
            return .wait
        case .active, .outputClosed, .closing:
            guard buffer.count > 0 else { return .wait }
            let outcome: TLSSession.ReadResult
            do throws(TLSError) {
                outcome = try session.read(into: buffer)
            } catch {
                return endedWithError(error)
            }
            switch outcome {
            case .bytes(let count): return .deliver(count)
            case .needsInput: return .wait
            case .closed: return peerSentCloseNotify(now: now)
            }
        case .idle, .inputClosed, .closed:
            return .wait
        }
    }

    /// The peer's close_notify arrived.
    private mutating func peerSentCloseNotify(now: () -> Int64) -> InboundAction {
        switch state {
        case .active where allowHalfClosure:
            state = .inputClosed
            return .peerClosedOutput
        case .active:
            // Answer with our own close_notify; close once it is written.
            return .act(startClose(promise: nil, peerSentCloseNotify: true, now: now()))
        case .outputClosed(let written):
            state = .closing(
                ClosingState(
                    deadline: Self.time(now(), plus: timeouts.shutdown), promise: nil, peerFinished: true, peerSentCloseNotify: true,
                    closeNotifyWritten: written))
            return .act(closeIfDone())
        case .closing(var closing):
            closing.peerFinished = true
            closing.peerSentCloseNotify = true
            state = .closing(closing)
            return .act(closeIfDone())
        case .idle, .handshaking, .inputClosed, .closed:
            return .wait
        }
    }

    /// Reading failed (a truncated stream, an alert, bad bytes).
    private mutating func endedWithError(_ error: TLSError) -> InboundAction {
        switch state {
        case .closing(var closing) where error.kind == .truncated:
            // After our close_notify, a peer that closes without answering it ended an exchange that is over.
            closing.peerFinished = true
            state = .closing(closing)
            return .act(closeIfDone())
        default:
            return .act(fail(error))
        }
    }

    /// A handler further down wrote plaintext. It waits for ``flush()``, or for the handshake.
    mutating func write(_ buffer: Buffer, promise: Promise?) -> Action {
        switch state {
        case .idle, .handshaking, .active, .inputClosed:
            pendingWrites.append((buffer, promise))
            return .none
        case .outputClosed, .closing:
            return .refuse(promise, .refused(.outputClosed))
        case .closed(let failure):
            // Tell the writer why the connection ended (a peer's alert, say), not only that it did.
            return .refuse(promise, failure.map { .error($0) } ?? .refused(.outputClosed))
        }
    }

    /// Encrypts the pending writes and sends them as one channel write; before the handshake completes, they
    /// wait for it.
    mutating func flush() -> Action {
        switch state {
        case .active, .inputClosed:
            guard !pendingWrites.isEmpty else { return .none }
            switch encryptPendingWrites() {
            case .success(let promise): return .send(promise)
            case .failure(let error): return fail(error)
            }
        case .idle, .handshaking, .outputClosed, .closing, .closed:
            return .none
        }
    }

    /// A close was requested (by a handler, the application, or the channel's shutdown). `.output` sends
    /// close_notify and keeps reading; `.all` sends close_notify and closes once the peer answers (or its stream
    /// ends, or the shutdown timeout passes) and our last bytes are written. Before the handshake completes,
    /// the channel closes at once.
    mutating func close(all: Bool, input: Bool = false, promise: Promise?, now: Int64) -> Action {
        if input { return .refuse(promise, .refused(.unsupportedOperation)) }
        switch state {
        case .handshaking(var handshaking) where !all:
            // Carried out once the handshake completes, after the writes that came before it.
            switch handshaking.halfClose {
            case .notRequested: handshaking.halfClose = .requested(promise: promise)
            case .requested(let first): handshaking.halfClose = .requested(promise: Self.join(first, promise))
            }
            state = .handshaking(handshaking)
            return .none
        case .handshaking(let handshaking):
            var closePromise = promise
            if case .requested(let first) = handshaking.halfClose { closePromise = Self.join(first, promise) }
            let abandoned = takePendingWrites()
            state = .closed(failure: nil)
            return .closeChannel(closePromise, shutdownCompleted: false, abandoned: abandoned)
        case .idle:
            let abandoned = takePendingWrites()
            state = .closed(failure: nil)
            return .closeChannel(promise, shutdownCompleted: false, abandoned: abandoned)
        case .active where !all:
            return closeOutput(promise: promise)
        case .active:
            return startClose(promise: promise, peerSentCloseNotify: false, now: now)
        case .inputClosed:
            // The peer is done already: a half-close is a full one.
            return startClose(promise: promise, peerSentCloseNotify: true, now: now)
        case .outputClosed where !all:
            return .refuse(promise, .refused(.outputClosed))
        case .outputClosed(let written):
            // After a half-close, a full close waits only a bounded time for the peer.
            state = .closing(
                ClosingState(
                    deadline: Self.time(now, plus: timeouts.shutdown), promise: promise, peerFinished: false,
                    peerSentCloseNotify: false, closeNotifyWritten: written))
            return .none
        case .closing(var closing):
            // Already closing: this promise completes with the first close.
            closing.promise = Self.join(closing.promise, promise)
            state = .closing(closing)
            return .none
        case .closed:
            return all ? .closeChannel(promise, shutdownCompleted: false, abandoned: []) : .succeed(promise)
        }
    }

    /// The channel write that carried our close_notify completed; `error` if it failed.
    mutating func closeNotifyWritten(error: (any Error)?) -> Action {
        switch state {
        case .outputClosed:
            if let error { return fail(error) }
            state = .outputClosed(closeNotifyWritten: true)
            return .none
        case .closing(var closing):
            if let error {
                // The peer did not take everything we sent: that is a failure, whatever came after.
                return fail(error)
            }
            closing.closeNotifyWritten = true
            state = .closing(closing)
            return closeIfDone()
        case .idle, .handshaking, .active, .inputClosed, .closed:
            return .none
        }
    }

    /// Acts on every deadline that has passed at `now`. The idle timeout answers
    /// ``DeadlineOutcome/idleTimeout(_:)``: announce it, then ``close(all:input:promise:now:)``.
    enum DeadlineOutcome {
        case none
        case idleTimeout(Int64)
        case act(Action)
    }

    mutating func deadlinePassed(now: Int64) -> DeadlineOutcome {
        switch state {
        case .handshaking(let handshaking):
            guard now >= handshaking.deadline else { return .none }
            let error = TLSError(
                kind: .timeout,
                reason: "the handshake did not complete within \(Self.describe(nanoseconds: timeouts.handshake))")
            return .act(fail(error))
        case .active, .inputClosed, .outputClosed:
            guard let idle = timeouts.idle, now >= Self.time(lastActivity, plus: idle) else { return .none }
            // Bytes moving again restarts the wait; the close that follows resets nothing.
            lastActivity = now
            return .idleTimeout(idle)
        case .closing(let closing):
            guard now >= closing.deadline else { return .none }
            // The peer neither answered nor took our last bytes in time: close anyway.
            state = .closed(failure: nil)
            return .act(.closeChannel(closing.promise, shutdownCompleted: false, abandoned: takePendingWrites()))
        case .idle, .closed:
            return .none
        }
    }

    /// An error came up the pipeline from the transport.
    enum ErrorDisposition {
        /// Pass it on.
        case pass
        /// Drop it: it ends a connection that is over.
        case drop
        /// Drop it and carry out `action`.
        case act(Action)
    }

    mutating func errorCaught(isTransportError: Bool) -> ErrorDisposition {
        guard isTransportError else { return .pass }
        switch state {
        case .closing(let closing) where closing.closeNotifyWritten:
            // Once everything we sent is written, a peer that resets instead of answering our close_notify (as
            // many clients do) ends the connection quietly: the exchange itself completed.
            state = .closed(failure: nil)
            return .act(.closeChannel(closing.promise, shutdownCompleted: false, abandoned: []))
        case .closed:
            return .drop
        default:
            return .pass
        }
    }

    /// The channel closed: what still waits fails (`abandoned`), and a close under way succeeds (`close`). Call
    /// ``endOfInput()`` and step first, so that a stream cut short is reported.
    mutating func channelInactive() -> (close: Promise?, abandoned: PendingWrites) {
        var promise: Promise?
        if case .closing(let closing) = state { promise = closing.promise }
        if case .closed = state {} else { state = .closed(failure: nil) }
        return (promise, takePendingWrites())
    }

    /// The handler left the pipeline: what still waits can never complete, and nothing more happens.
    mutating func handlerRemoved() -> PendingWrites {
        state = .closed(failure: nil)
        return takePendingWrites()
    }

    // MARK: - Transitions

    /// Sends close_notify (after the pending writes) for a full close.
    private mutating func startClose(promise: Promise?, peerSentCloseNotify: Bool, now: Int64) -> Action {
        let writes: Promise?
        switch sendCloseNotify() {
        case .success(let promise): writes = promise
        case .failure(let error): return fail(error, close: promise)
        }
        state = .closing(
            ClosingState(
                deadline: Self.time(now, plus: timeouts.shutdown), promise: promise, peerFinished: peerSentCloseNotify,
                peerSentCloseNotify: peerSentCloseNotify, closeNotifyWritten: false))
        return .sendCloseNotify(writes: writes, close: nil)
    }

    /// Sends close_notify (after the pending writes) and keeps reading.
    private mutating func closeOutput(promise: Promise?) -> Action {
        let writes: Promise?
        switch sendCloseNotify() {
        case .success(let promise): writes = promise
        case .failure(let error): return fail(error, close: promise)
        }
        state = .outputClosed(closeNotifyWritten: false)
        return .sendCloseNotify(writes: writes, close: promise)
    }

    /// Encrypts the pending writes, then close_notify, into the session's output: the last writes and the
    /// close_notify leave in one channel write.
    private mutating func sendCloseNotify() -> Result<Promise?, TLSError> {
        let writes = encryptPendingWrites()
        guard case .success = writes else { return writes }
        do throws(TLSError) {
            try session.close()
        } catch {
            return .failure(error)
        }
        return writes
    }

    /// Closes the channel once the close_notify exchange is over and our last bytes are written.
    private mutating func closeIfDone() -> Action {
        guard case .closing(let closing) = state, closing.peerFinished, closing.closeNotifyWritten else { return .none }
        state = .closed(failure: nil)
        return .closeChannel(closing.promise, shutdownCompleted: closing.peerSentCloseNotify, abandoned: [])
    }

    /// A fatal error: the connection is over.
    private mutating func fail(_ error: any Error, close: Promise? = nil) -> Action {
        var promise = close
        if case .closing(let closing) = state { promise = Self.join(closing.promise, close) }
        state = .closed(failure: error)
        return .fail(error, abandoned: takePendingWrites(), close: promise)
    }

    private mutating func takePendingWrites() -> PendingWrites {
        guard !pendingWrites.isEmpty else { return [] }
        let writes = pendingWrites
        pendingWrites = []
        return writes
    }

    /// Encrypts the pending writes into records in the session's output. Returns the promise that stands for
    /// them all (the others follow it), to complete with the channel write.
    private mutating func encryptPendingWrites() -> Result<Promise?, TLSError> {
        let count = pendingWrites.count
        guard count > 0 else { return .success(nil) }
        // Corking packs many small writes into full records, at the price of copying them once more inside
        // GnuTLS. Writes of a few KiB or more make full records on their own: those are not corked.
        var total = 0
        for index in 0..<count { total += pendingWrites[index].0.readableBytes }
        let cork = count > 1 && total < count * 4096
        do throws(TLSError) {
            if cork { session.cork() }
            for index in 0..<count {
                try pendingWrites[index].0.withUnsafeReadableBytes { (raw) throws(TLSError) in try session.write(raw) }
            }
            if cork { try session.uncork() }
        } catch {
            return .failure(error)
        }
        // The first writer's promise stands for the channel write and the others follow it. Iterating in place
        // and clearing afterwards keeps the array's storage: nothing is allocated per flush.
        var combined: Promise?
        for index in 0..<count {
            guard let next = pendingWrites[index].1 else { continue }
            combined = Self.join(combined, next)
        }
        pendingWrites.removeAll(keepingCapacity: true)
        return .success(combined)
    }

    /// One promise that stands for both: `second` completes with `first`. Cascading only registers a callback
    /// (the promises here are not completed yet), so nothing runs while the machine changes.
    static func join(_ first: Promise?, _ second: Promise?) -> Promise? {
        guard let first else { return second }
        if let second { first.cascade(to: second) }
        return first
    }

    /// `time + duration`, at most the end of time: a timeout of `.nanoseconds(.max)` means never.
    static func time(_ time: Int64, plus duration: Int64) -> Int64 {
        let (sum, overflow) = time.addingReportingOverflow(duration)
        return overflow ? .max : sum
    }

    /// A size for a person: "64 KiB", "100 bytes".
    static func describe(bytes: Int) -> String {
        if bytes >= 1024 && bytes % 1024 == 0 { return "\(bytes / 1024) KiB" }
        return "\(bytes) bytes"
    }

    /// A duration for a person: "10 s", "0.5 s".
    static func describe(nanoseconds: Int64) -> String {
        if nanoseconds % 1_000_000_000 == 0 { return "\(nanoseconds / 1_000_000_000) s" }
        return "\(Double(nanoseconds) / 1e9) s"
    }
}
