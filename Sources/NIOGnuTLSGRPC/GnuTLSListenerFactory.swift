#if GRPC
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import GnuTLS
import NIOCore
import NIOGnuTLS
import NIOPosix

/// Accepts gRPC connections over GnuTLS: the `HTTP2ServerTransport.ListenerFactory` behind
/// `HTTP2ServerTransport.GnuTLS`, for apps that build `HTTP2ServerTransport.Custom`
/// themselves.
///
/// Each accepted connection gets a ``GnuTLSHandler`` first in its pipeline, then gRPC's HTTP/2 server pipeline.
/// The context offers ALPN `grpc-exp` and `h2` (added when its configuration names no protocol).
public struct GnuTLSListenerFactory: HTTP2ServerTransport.ListenerFactory {
    /// The event loops the listener and its connections run on.
    public let eventLoopGroup: any EventLoopGroup
    private let address: GRPCNIOTransportCore.SocketAddress
    private let context: TLSContext
    private let handshakeTimeout: TimeAmount
    private let requireALPN: Bool
    let peers: TLSPeerDirectory

    /// Creates a factory.
    ///
    /// - Parameters:
    ///   - address: where to listen: `.ipv4(host:port:)`, `.ipv6(host:port:)` or `.unixDomainSocket(path:)`;
    ///     port 0 picks a free port (the transport's `listeningAddress` tells which).
    ///   - context: a server context.
    ///   - handshakeTimeout: how long a client may take to complete the TLS handshake.
    ///   - requireALPN: close connections whose client negotiated no ALPN protocol (as
    ///     `HTTP2ServerTransport.Posix`'s `requireALPN`; off by default there too).
    ///   - eventLoopGroup: the event loops to run on.
    /// - Throws: ``TLSError`` of kind `configuration` if the context is not a server context, or offers ALPN
    ///   protocols none of which is gRPC's.
    public init(
        address: GRPCNIOTransportCore.SocketAddress, context: TLSContext, handshakeTimeout: TimeAmount = .seconds(10),
        requireALPN: Bool = false, eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) throws(TLSError) {
        guard context.role == .server else {
            throw TLSError(kind: .configuration, reason: "a gRPC server needs a server TLS context")
        }
        self.address = address
        self.context = try context.offeringGRPCApplicationProtocols()
        self.handshakeTimeout = handshakeTimeout
        self.requireALPN = requireALPN
        self.eventLoopGroup = eventLoopGroup
        self.peers = TLSPeerDirectory()
    }

    /// Binds the listening socket; each accepted connection is wrapped in TLS, then configured for gRPC.
    public func makeListeningChannel(
        listenerConfigurator: HTTP2ServerTransport.ListenerConfigurator,
        connectionConfigurator: HTTP2ServerTransport.ConnectionConfigurator
    ) async throws -> NIOAsyncChannel<HTTP2ServerTransport.ConnectionConfigurator.ConnectionChannel, Never> {
        let context = self.context
        let handshakeTimeout = self.handshakeTimeout
        let tls = HTTP2ServerTransport.ConnectionConfigurator.TLS.configured(requireALPN: requireALPN)
        let peers = self.peers
        let bootstrap = ServerBootstrap(group: eventLoopGroup)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in listenerConfigurator.configure(channel: channel) }
        let initializer: @Sendable (any Channel) -> EventLoopFuture<
            HTTP2ServerTransport.ConnectionConfigurator.ConnectionChannel
        > = { channel in
            channel.eventLoop.makeCompletedFuture {
                let handler = try GnuTLSHandler(context: context, handshakeTimeout: handshakeTimeout)
                try channel.pipeline.syncOperations.addHandler(handler)
                peers.track(channel, handshake: handler.handshakeFuture)
            }.flatMap {
                connectionConfigurator.configure(channel: channel, tls: tls)
            }
        }
        if let ipv4 = address.ipv4 {
            return try await bootstrap.bind(host: ipv4.host, port: ipv4.port, childChannelInitializer: initializer)
        }
        if let ipv6 = address.ipv6 {
            return try await bootstrap.bind(host: ipv6.host, port: ipv6.port, childChannelInitializer: initializer)
        }
        if let unix = address.unixDomainSocket {
            return try await bootstrap.bind(
                unixDomainSocketPath: unix.path, cleanupExistingSocketFile: false,
                childChannelInitializer: initializer)
        }
        throw RPCError(
            code: .invalidArgument, message: "GnuTLSListenerFactory cannot listen on \(address): use IPv4, IPv6 or a Unix socket")
    }
}
#endif
