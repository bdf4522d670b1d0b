import GnuTLS
import Logging
import NIOCore
import NIOPosix

/// Serves TLS connections with async/await: each connection runs in its own child task.
///
/// ```swift
/// try await TLSListener.listen(host: "localhost", port: 4443, context: serverContext) { connection in
///     while let chunk = try await connection.read() { try await connection.write(chunk) }
/// }
/// ```
public enum TLSListener {
    /// Listens until the surrounding task is cancelled or the listening socket fails.
    ///
    /// - Parameters:
    ///   - host: the address to bind.
    ///   - port: the TCP port; 0 for any free port (`onListening` receives the real one).
    ///   - context: a server context.
    ///   - handshakeTimeout: how long a client may take to complete the handshake.
    ///   - group: the event loops to run on.
    ///   - onListening: called once with the bound address.
    ///   - onFailure: called for each connection that fails (handshake or body), with the peer's address;
    ///     serving goes on.
    ///   - proxyProtocol: behind a load balancer, the networks allowed to send a PROXY protocol header (see
    ///     ``ProxyProtocolHandler``): every connection must then start with one, within the handshake timeout,
    ///     and ``TLSConnection/proxyHeader`` holds it. A refused header fails the connection with its
    ///     `ProxyHeaderError`. Nil (the default): no header is expected.
    ///   - logger: where failed connections are logged, at debug level: a failed handshake or TLS error by the
    ///     ``GnuTLSHandler``, a refused PROXY header or an error thrown by `handler` by the listener. A
    ///     connection that goes well logs nothing.
    ///   - metrics: where handshakes and open connections are counted (see ``TLSMetrics``); nil counts nothing.
    ///   - handler: serves one connection; it is closed with close_notify when the closure returns.
    public static func listen(
        host: String, port: Int, context: TLSContext, handshakeTimeout: TimeAmount = .seconds(10),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        onListening: @Sendable (SocketAddress?) -> Void = { _ in },
        onFailure: @escaping @Sendable (any Error, SocketAddress?) -> Void = { _, _ in },
        proxyProtocol: [IPNetwork]? = nil, logger: Logger? = nil, metrics: TLSMetrics? = nil,
        _ handler: @escaping @Sendable (TLSConnection) async throws -> Void
    ) async throws {
        typealias Accepted = (
            NIOAsyncChannel<ByteBuffer, ByteBuffer>, EventLoopFuture<TLSHandshakeInfo>, EventLoopFuture<ProxyHeader>?
        )
        let server: NIOAsyncChannel<Accepted, Never> = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    var header: EventLoopFuture<ProxyHeader>?
                    if let proxyProtocol {
                        let proxy = ProxyProtocolHandler(allowedPeers: proxyProtocol, timeout: handshakeTimeout)
                        try channel.pipeline.syncOperations.addHandler(proxy)
                        header = proxy.headerFuture
                    }
                    let (async, handshake) = try TLSConnection.wrap(
                        channel,
                        handler: GnuTLSHandler(
                            context: context, handshakeTimeout: handshakeTimeout, allowHalfClosure: true,
                            logger: logger, metrics: metrics))
                    return (async, handshake, header)
                }
            }
        onListening(server.channel.localAddress)
        try await server.executeThenClose { inbound in
            try await withThrowingDiscardingTaskGroup { group in
                for try await (channel, handshake, header) in inbound {
                    group.addTask {
                        let peer = channel.channel.remoteAddress
                        do {
                            try await TLSConnection.run(
                                channel, handshake: handshake, proxyHeader: header, logger: logger, handler)
                        } catch {
                            onFailure(error, peer)
                        }
                    }
                }
            }
        }
    }
}
