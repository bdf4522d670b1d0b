import GnuTLS
import Logging
import NIOCore
import NIOPosix

/// A TLS connection for people who would rather not write channel handlers: `write` and `read` with async/await.
///
/// The connection lives inside a scope:
/// ``connect(host:port:context:serverName:group:connectTimeout:handshakeTimeout:shutdownTimeout:resumptionData:logger:metrics:_:)``
/// or ``TLSListener/listen(host:port:context:handshakeTimeout:group:onListening:onFailure:proxyProtocol:logger:metrics:_:)``
/// hand it to your closure once the handshake has completed, and close it (with close_notify) when the closure
/// returns.
/// Use it from one task at a time.
///
/// ```swift
/// let context = try TLSContext(configuration: .client(serverName: "localhost", trustRoots: .file("certs/ca.crt")))
/// let reply = try await TLSConnection.connect(host: "localhost", port: 4443, context: context) { connection in
///     try await connection.write(Array("Hello from client!".utf8))
///     return try await connection.readAll()
/// }
/// ```
public final class TLSConnection {
    /// What the handshake agreed on.
    public let info: TLSHandshakeInfo
    /// The peer's address.
    public let remoteAddress: SocketAddress?
    /// The PROXY protocol header the connection began with, on a ``TLSListener`` that expects one (its
    /// `proxyProtocol` parameter): the client the load balancer relayed is `proxyHeader?.source`.
    public let proxyHeader: ProxyHeader?

    private let channel: any Channel
    /// The TLS handler, for ``resumptionData()`` (nil for connections made by ``TLSListener``).
    private let handler: NIOLoopBound<GnuTLSHandler>?
    private var inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    private var finished = false

    init(
        channel: any Channel, inbound: NIOAsyncChannelInboundStream<ByteBuffer>, info: TLSHandshakeInfo,
        handler: NIOLoopBound<GnuTLSHandler>? = nil, proxyHeader: ProxyHeader? = nil
    ) {
        self.channel = channel
        self.handler = handler
        self.proxyHeader = proxyHeader
        self.info = info
        self.remoteAddress = channel.remoteAddress
        self.inbound = inbound.makeAsyncIterator()
    }

    /// Connects to a TLS server and completes the handshake.
    ///
    /// - Parameters:
    ///   - host: a host name or IP address.
    ///   - port: the TCP port.
    ///   - context: a client context.
    ///   - serverName: the name sent as SNI and verified; by default `host` (an IP address is verified as an IP).
    ///   - group: the event loops to run on.
    ///   - connectTimeout: how long the TCP connect may take.
    ///   - handshakeTimeout: how long the handshake may take once connected.
    ///   - shutdownTimeout: how long the close at the end waits for the server's close_notify.
    ///   - resumptionData: what ``resumptionData()`` returned on an earlier connection to the same server: the
    ///     session is resumed if the server still accepts it (``TLSHandshakeInfo/isResumed``), or a full
    ///     handshake happens.
    ///   - logger: where a failed connect or handshake is logged, at debug level (nothing when all goes well).
    ///   - metrics: where the handshake and the open connection are counted (see ``TLSMetrics``); nil counts
    ///     nothing.
    ///   - body: uses the connection once the handshake has completed; its result is returned. The connection is
    ///     closed with close_notify when it returns or throws.
    ///
    /// Cancelling the task closes the connection: a handshake in progress then fails at once.
    /// - Throws: a `TLSError` when the handshake or verification fails, or NIO's error when the connection
    ///   cannot be made.
    public static func connect<Result>(
        host: String, port: Int, context: TLSContext, serverName: String? = nil,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, connectTimeout: TimeAmount = .seconds(10),
        handshakeTimeout: TimeAmount = .seconds(10), shutdownTimeout: TimeAmount = .seconds(3),
        resumptionData: [UInt8]? = nil, logger: Logger? = nil, metrics: TLSMetrics? = nil,
        _ body: (TLSConnection) async throws -> Result
    ) async throws -> Result {
        let name = serverName ?? context.configuration.serverName ?? host
        let connected:
            (NIOAsyncChannel<ByteBuffer, ByteBuffer>, EventLoopFuture<TLSHandshakeInfo>, NIOLoopBound<GnuTLSHandler>)
        do {
            connected = try await ClientBootstrap(group: group)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handler = GnuTLSHandler(
                        session: try context.makeSession(serverName: name, resumptionData: resumptionData),
                        handshakeTimeout: handshakeTimeout, shutdownTimeout: shutdownTimeout, logger: logger,
                        metrics: metrics)
                    let (async, handshake) = try Self.wrap(channel, handler: handler)
                    return (async, handshake, NIOLoopBound(handler, eventLoop: channel.eventLoop))
                }
            }
        } catch {
            // No TLS yet: the handler, which logs TLS failures, never saw this connection.
            logger?.debug(
                "TLS connect failed",
                metadata: [
                    "tls.peer": "\(host):\(port)", "tls.role": "client",
                    "tls.error.kind": "\((error as? TLSError)?.kind.rawValue ?? "connect")",
                    "tls.error.reason": "\(String(describing: error))",
                ])
            throw error
        }
        let (channel, handshake, handler) = connected
        return try await run(channel, handshake: handshake, handler: handler, body)
    }

    /// Data with which a later ``connect(host:port:context:serverName:group:connectTimeout:handshakeTimeout:shutdownTimeout:resumptionData:logger:metrics:_:)``
    /// can resume this session, or nil if the server has issued no ticket (yet: TLS 1.3 tickets arrive after the
    /// handshake, with the first data read). It holds the session's secrets: keep it like a key.
    public func resumptionData() async throws -> [UInt8]? {
        guard let handler else { return nil }
        return try await channel.eventLoop.submit { handler.value.resumptionData }.get()
    }

    /// Waits for the handshake, hands the connection to `body`, and closes it afterwards.
    static func run<Result>(
        _ channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>, handshake: EventLoopFuture<TLSHandshakeInfo>,
        handler: NIOLoopBound<GnuTLSHandler>? = nil, proxyHeader: EventLoopFuture<ProxyHeader>? = nil,
        logger: Logger? = nil, _ body: (TLSConnection) async throws -> Result
    ) async throws -> Result {
        // A cancelled task closes the channel, which ends a handshake or a read that is waiting (waiting on a
        // future does not notice cancellation by itself).
        let underlying = channel.channel
        return try await withTaskCancellationHandler {
            let info: TLSHandshakeInfo
            var header: ProxyHeader?
            do {
                // A refused PROXY header closes the channel, which fails the handshake too: report the header.
                if let proxyHeader {
                    do {
                        header = try await proxyHeader.get()
                    } catch {
                        logger?.debug(
                            "PROXY header refused",
                            metadata: [
                                "tls.peer": "\(underlying.remoteAddress.map { "\($0)" } ?? "unknown")",
                                "tls.error.reason": "\(String(describing: error))",
                            ])
                        throw error
                    }
                }
                // The handler logs a failed handshake itself.
                info = try await handshake.get()
            } catch {
                try? await channel.channel.close()
                throw error
            }
            // Writes go straight to the channel (see ``Writer``); the async channel supplies the inbound stream.
            return try await channel.executeThenClose { inbound, _ in
                do {
                    return try await body(
                        TLSConnection(
                            channel: channel.channel, inbound: inbound, info: info, handler: handler,
                            proxyHeader: header))
                } catch {
                    logger?.debug(
                        "TLS connection handler failed",
                        metadata: [
                            "tls.peer": "\(underlying.remoteAddress.map { "\($0)" } ?? "unknown")",
                            "tls.error.kind": "\((error as? TLSError)?.kind.rawValue ?? "other")",
                            "tls.error.reason": "\(String(describing: error))",
                        ])
                    throw error
                }
            }
        } onCancel: {
            underlying.close(promise: nil)
        }
    }

    /// Adds `handler` to the channel and wraps the channel for async use. Runs on the channel's event loop.
    static func wrap(
        _ channel: any Channel, handler: GnuTLSHandler
    ) throws -> (NIOAsyncChannel<ByteBuffer, ByteBuffer>, EventLoopFuture<TLSHandshakeInfo>) {
        try channel.pipeline.syncOperations.addHandler(handler)
        guard let handshake = handler.handshakeFuture else {
            throw TLSError(kind: .invalidState, reason: "the TLS handler was not added to the pipeline")
        }
        let async = try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
        return (async, handshake)
    }

    /// Derives keying material from the connection's TLS secrets (RFC 5705, RFC 8446 section 7.5): both ends get
    /// the same bytes for the same label and context.
    public func exportKeyingMaterial(label: String, context: [UInt8]? = nil, count: Int) async throws -> [UInt8] {
        let channel = self.channel
        return try await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.handler(type: GnuTLSHandler.self)
                .exportKeyingMaterial(label: label, context: context, count: count)
        }.get()
    }

    /// Sends bytes to the peer.
    public func write(_ bytes: some Sequence<UInt8>) async throws {
        try await writer.write(bytes)
    }

    /// Sends a buffer to the peer.
    public func write(_ buffer: ByteBuffer) async throws {
        try await writer.write(buffer)
    }

    /// The sending half, which another task may use while this one reads.
    public var writer: Writer { Writer(channel: channel) }

    /// The sending half of a connection. It is `Sendable`: one task can write while another reads.
    public struct Writer: Sendable {
        let channel: any Channel

        /// Sends bytes to the peer; returns once they are handed to the socket.
        public func write(_ bytes: some Sequence<UInt8>) async throws {
            var buffer = channel.allocator.buffer(capacity: bytes.underestimatedCount)
            buffer.writeBytes(bytes)
            try await write(buffer)
        }

        /// Sends a buffer to the peer; returns once it is handed to the socket. Awaiting each write keeps the
        /// order of writes and closes, and lets a slow peer slow the writer down.
        public func write(_ buffer: ByteBuffer) async throws {
            try await channel.writeAndFlush(buffer)
        }

        /// Stops sending: close_notify goes out, and the peer may still send until it closes too.
        /// Does nothing if the connection has already closed.
        public func closeOutput() async throws {
            do {
                try await channel.close(mode: .output)
            } catch ChannelError.alreadyClosed {
            } catch ChannelError.ioOnClosedChannel {
            }
        }
    }

    /// The next bytes from the peer, or nil once the peer has closed the connection with close_notify.
    ///
    /// - Throws: a `TLSError` of kind `truncated` when the connection ended without close_notify, or any other
    ///   error the connection met.
    public func read() async throws -> ByteBuffer? {
        guard !finished else { return nil }
        if let buffer = try await inbound.next() { return buffer }
        finished = true
        return nil
    }

    /// Reads until the peer closes, up to `limit` bytes.
    ///
    /// - Throws: a `TLSError` of kind `truncated` if the connection ended without close_notify, or an error
    ///   if more than `limit` bytes arrive.
    public func readAll(limit: Int = 16 * 1024 * 1024) async throws -> [UInt8] {
        var bytes: [UInt8] = []
        while let buffer = try await read() {
            guard bytes.count + buffer.readableBytes <= limit else {
                throw TLSError(kind: .other, reason: "the peer sent more than \(limit) bytes")
            }
            bytes.append(contentsOf: buffer.readableBytesView)
        }
        return bytes
    }

    /// Stops sending: close_notify is sent, and ``read()`` goes on until the peer closes too.
    public func closeOutput() async throws {
        try await writer.closeOutput()
    }
}
