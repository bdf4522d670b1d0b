import Atomics
#if canImport(Glibc)
import Glibc
#endif
import NIOConcurrencyHelpers
import NIOCore
import TLSCommandSupport

/// Keeps a listening socket from spinning when the descriptor table is full, and says so.
///
/// When `accept` fails with EMFILE, NIO keeps the socket registered for reading (its pending read is only
/// cleared by an accept that succeeds), so the event loop retries `accept` as fast as it can, and holding reads
/// back (what NIO's `AcceptBackoffHandler` does) cannot stop it alone. The classic remedy: hold one spare
/// descriptor; when the table is full, give it up so that one accept succeeds, and close that connection at once
/// (the client learns at once instead of hanging in the backlog). That accept clears NIO's pending read, and the
/// next read is held back for ``retryDelay``. Once connections are accepted normally again, the spare is taken
/// back. A line says so at most once per interval, and once when accepting works again. (One handler rather than
/// `AcceptBackoffHandler` in front of this one: every accepted connection passes through each handler.)
final class AcceptGuard: ChannelDuplexHandler {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel
    typealias OutboundIn = Never

    /// How long a failing accept waits before the next try: short enough to serve clients soon after
    /// descriptors are freed, long enough that a full table costs no CPU.
    static let retryDelay = TimeAmount.milliseconds(200)

    static func isExhaustion(_ error: IOError) -> Bool {
        switch error.errnoCode {
        case EMFILE, ENFILE, ENOBUFS, ENOMEM: return true
        default: return false
        }
    }

    /// Connections accepted only to be closed (named here, closed by the child channel initializer).
    let toShed: ShedList
    private let output: ConsoleOutput
    /// What the listener accepts, in its lines ("connections", "metrics connections").
    private let accepting: String
    private let interval: TimeAmount
    private var spare: Int32 = AcceptGuard.openSpare()
    /// The spare was given up: the next connection accepted is closed.
    private var shedNext = false
    /// Reads are held back until then, after a failed accept.
    private var retryAt: NIODeadline?
    /// A read held back, to be made at `retryAt`.
    private var heldRead: Scheduled<Void>?
    private var lastLine: NIODeadline?
    private var failuresSinceLine = 0
    /// Failed accepts since accepting last worked (nil while it works).
    private var failedInARow: Int?

    init(
        output: ConsoleOutput, toShed: ShedList, accepting: String = "connections", interval: TimeAmount = .seconds(10)
    ) {
        self.output = output
        self.accepting = accepting
        self.toShed = toShed
        self.interval = interval
    }

    deinit {
        if spare >= 0 { Glibc.close(spare) }
    }

    func read(context: ChannelHandlerContext) {
        guard heldRead == nil else { return }
        if let retryAt, NIODeadline.now() < retryAt {
            heldRead = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(deadline: retryAt) { [self] in
                heldRead = nil
                context.read()
            }
            return
        }
        retryAt = nil
        context.read()
    }

    func channelInactive(context: ChannelHandlerContext) {
        heldRead?.cancel()
        heldRead = nil
        context.fireChannelInactive()
    }

    private static func openSpare() -> Int32 { open("/dev/null", O_RDONLY | O_CLOEXEC) }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Without a spare descriptor the table is still full: this connection took the last one, so close it
        // (which frees it for the next try) rather than serve it and spin on the next accept.
        if spare < 0 { spare = Self.openSpare() }
        if shedNext || spare < 0 {
            shedNext = false
            toShed.add(unwrapInboundIn(data))
        } else if let failed = failedInARow {
            output.line("tls-server: accepting \(accepting) again after \(failed) failed attempts")
            failedInARow = nil
            failuresSinceLine = 0
            lastLine = nil
        }
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A connection the child initializer refused (and said why, if it had to): nothing more to say.
        if error is RefusedConnection { return }
        guard let error = error as? IOError, Self.isExhaustion(error) else {
            context.fireErrorCaught(error)
            return
        }
        failedInARow = (failedInARow ?? 0) + 1
        failuresSinceLine += 1
        let now = NIODeadline.now()
        retryAt = now + Self.retryDelay
        // A connection closed since the last try may have freed a descriptor: take it as the spare, and give the
        // spare up so that the next accept succeeds (and is closed).
        if spare < 0 { spare = Self.openSpare() }
        if spare >= 0 {
            Glibc.close(spare)
            spare = -1
            shedNext = true
        }
        if let lastLine, now - lastLine < interval { return }
        let retry = Double(Self.retryDelay.nanoseconds) / 1e9
        let earlier = failuresSinceLine > 1 ? " (\(failuresSinceLine) failed accepts since the last line)" : ""
        output.line(
            "tls-server: cannot accept \(accepting): \(String(cString: strerror(error.errnoCode))); closing new "
                + "connections at once and retrying every \(retry) s\(earlier)")
        lastLine = now
        failuresSinceLine = 0
    }
}

/// Connections to close as soon as they are accepted, shared by the listener and the child initializers, which
/// run on other event loops. The common case (none to close) costs one atomic load.
final class ShedList: Sendable {
    private let count = ManagedAtomic(0)
    private let channels = NIOLockedValueBox<Set<ObjectIdentifier>>([])

    func add(_ channel: any Channel) {
        channels.withLockedValue { _ = $0.insert(ObjectIdentifier(channel)) }
        count.wrappingIncrement(ordering: .releasing)
    }

    /// Whether `channel` is one to close; it is then no longer listed.
    func take(_ channel: any Channel) -> Bool {
        guard count.load(ordering: .acquiring) > 0 else { return false }
        let taken = channels.withLockedValue { $0.remove(ObjectIdentifier(channel)) != nil }
        if taken { count.wrappingDecrement(ordering: .relaxed) }
        return taken
    }
}
