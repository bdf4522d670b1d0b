import Atomics
#if canImport(Glibc)
import Glibc
#endif
import GnuTLS
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOGnuTLS
import NIOPosix
import TLSCommandSupport

/// The server's sockets and open connections: binds, counts connections against the limit, shuts down.
final class EchoServer: Sendable {
    /// The current context, replaced on SIGHUP; each connection takes the one current when it is accepted.
    let contexts: ReloadableTLSContext
    let group: MultiThreadedEventLoopGroup
    let output: ConsoleOutput
    let stream: Bool
    let quiet: Bool
    let maxConnections: Int
    let idleTimeout: TimeAmount
    let handshakeTimeout: TimeAmount
    /// With --proxy-protocol, the networks that may send a PROXY header (every connection must start with one).
    let proxyFrom: [IPNetwork]?
    /// With --reuse-port, SO_REUSEPORT on the listening sockets.
    let reusePort: Bool
    /// The library's log (--log-level): failed connections at debug.
    let logger: Logger
    /// With --metrics, where the handlers count handshakes and connections.
    let metrics: TLSMetrics?

    private let listeners = NIOLockedValueBox<[any Channel]>([])
    /// Open connections, counted across event loops without a lock.
    private let openConnections: ConnectionCounter
    /// Connections accepted with the descriptor table full, to be closed at once (see ``AcceptGuard``).
    private let toShed = ShedList()
    /// Failure lines, rate-limited; its summary of held-back lines is written every few seconds.
    private let failures: FailureLog
    private let flushes = NIOLockedValueBox<RepeatedTask?>(nil)

    init(
        contexts: ReloadableTLSContext, group: MultiThreadedEventLoopGroup, output: ConsoleOutput, stream: Bool, quiet: Bool,
        maxConnections: Int, idleTimeout: TimeAmount, handshakeTimeout: TimeAmount, proxyFrom: [IPNetwork]? = nil,
        reusePort: Bool = false, logger: Logger = Logger(label: "tls-server"), metrics: TLSMetrics? = nil
    ) {
        self.logger = logger
        self.metrics = metrics
        self.proxyFrom = proxyFrom
        self.reusePort = reusePort
        self.contexts = contexts
        self.group = group
        self.output = output
        self.stream = stream
        self.quiet = quiet
        self.maxConnections = maxConnections
        self.idleTimeout = idleTimeout
        self.handshakeTimeout = handshakeTimeout
        self.openConnections = ConnectionCounter(limit: maxConnections)
        self.failures = FailureLog(output: output)
    }

    /// Binds `host` ('localhost' means both 127.0.0.1 and ::1) and returns the port.
    func listen(host: String, port: Int) throws -> Int {
        let failures = self.failures
        let flush = group.next().scheduleRepeatedTask(initialDelay: .seconds(3), delay: .seconds(3)) { _ in
            failures.flush()
        }
        flushes.withLockedValue { $0 = flush }
        let addresses = host == "localhost" ? ["127.0.0.1", "::1"] : [host]
        var boundPort = port
        for (index, address) in addresses.enumerated() {
            do {
                let channel = try bootstrap().bind(host: address, port: boundPort).wait()
                listeners.withLockedValue { $0.append(channel) }
                boundPort = channel.localAddress?.port ?? boundPort
            } catch where index > 0 {
                // localhost without IPv6 still serves on 127.0.0.1.
                output.error("tls-server: not listening on \(address): \(describe(error))")
            }
        }
        return boundPort
    }

    private func bootstrap() -> ServerBootstrap {
        ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // Several processes on one port, the kernel spreading connections between them.
            .serverChannelOption(.socketOption(.init(rawValue: SO_REUSEPORT)), value: reusePort ? 1 : 0)
            // With the descriptor table full, accept fails at once and NIO would retry it in a busy loop:
            // back off, and say so (the classic bind path adds no backoff by itself).
            .serverChannelInitializer { [output, toShed] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AcceptGuard(output: output, toShed: toShed))
                }
            }
            // No child options: accepted sockets inherit TCP_NODELAY from the listening socket (NIO sets it),
            // and every option set per child costs a system call and allocations per connection.
            .childChannelInitializer { [self] channel in
                // makeSucceededVoidFuture is a cached future on NIO's event loops: nothing allocated per accept.
                do {
                    try self.initialize(channel)
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
    }

    /// Sets up one accepted connection, or refuses it when the limit is reached.
    private func initialize(_ channel: any Channel) throws {
        // A refusal fails the initializer: the bootstrap then closes the connection before it is registered
        // (closing it from here would leave NIO registering a channel that nothing serves).
        if toShed.take(channel) {
            // Accepted with the last descriptor, to unblock the listening socket: no line per connection (the
            // listener's line says why).
            throw RefusedConnection()
        }
        guard openConnections.acquire() else {
            let peer = channel.remoteAddress.map(Self.format) ?? "unknown"
            failures.line(
                "Connection from \(peer) refused: limit of \(maxConnections) open connections reached",
                reason: "limit of open connections reached")
            throw RefusedConnection()
        }
        // NIO keeps a connection's receive buffer for as long as the connection lives, at the largest size it
        // ever had (2 KiB at first by default). ClientHellos of GnuTLS, OpenSSL and curl and the records that end a
        // handshake fit in 512 bytes, so an idle connection keeps 1.5 KiB less; a larger hello costs one more
        // read and the buffer grows to what it needs, as it does for bulk data (up to 64 KiB).
        try channel.syncOptions?.setOption(ChannelOptions.recvAllocator, value: Self.receiveAllocator)
        let sync = channel.pipeline.syncOperations
        if let proxyFrom {
            // Before TLS; its own deadline is the handshake's, so that a late header is named as such.
            try sync.addHandler(ProxyProtocolHandler(allowedPeers: proxyFrom, timeout: handshakeTimeout))
        }
        try sync.addHandler(
            GnuTLSHandler(
                context: contexts.current, handshakeTimeout: handshakeTimeout, shutdownTimeout: .seconds(3),
                idleTimeout: idleTimeout, allowHalfClosure: true, logger: logger, metrics: metrics))
        try sync.addHandler(
            EchoHandler(
                stream: stream, quiet: quiet, output: output, failures: failures, openConnections: openConnections,
                proxied: proxyFrom != nil))
    }

    /// Stops accepting, then shuts the event loops down: NIO closes every open connection, each handler sends
    /// close_notify and waits at most its shutdown timeout (3 s) for the peer's.
    func shutdown() {
        let listening = listeners.withLockedValue { $0 }
        for channel in listening { try? channel.close().wait() }
        flushes.withLockedValue { $0?.cancel() }
        try? group.syncShutdownGracefully()
        failures.flush()
    }

    /// The receive-buffer sizes of every connection: starts at 512 bytes instead of NIO's 2 KiB (see `initialize`).
    static let receiveAllocator = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: 65536)

    static func format(_ address: SocketAddress) -> String {
        guard let ip = address.ipAddress, let port = address.port else { return "\(address)" }
        return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }
}

/// A connection the server closes as soon as it is accepted (the reason is logged where it is decided).
struct RefusedConnection: Error {}

/// Counts open connections against a limit; shared by every event loop.
final class ConnectionCounter: Sendable {
    private let count = ManagedAtomic(0)
    let limit: Int

    init(limit: Int) { self.limit = limit }

    /// Takes a slot, or returns false when all `limit` are taken.
    func acquire() -> Bool {
        if count.wrappingIncrementThenLoad(ordering: .relaxed) <= limit { return true }
        count.wrappingDecrement(ordering: .relaxed)
        return false
    }

    /// Gives a slot back.
    func release() {
        count.wrappingDecrement(ordering: .relaxed)
    }
}
