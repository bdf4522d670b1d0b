#if GRPC
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import GnuTLS
import NIOCore
import NIOGnuTLS
import NIOPosix

extension HTTP2ServerTransport {
    /// A gRPC server transport over GnuTLS: the `HTTP2ServerTransport.Posix` of this library, with a
    /// ``TLSContext`` in place of swift-nio-ssl's configuration.
    ///
    /// ```swift
    /// let transport = try HTTP2ServerTransport.GnuTLS(
    ///     address: .ipv4(host: "0.0.0.0", port: 8443), context: serverContext)
    /// let server = GRPCServer(transport: transport, services: [MyService(transport: transport)])
    /// try await server.serve()
    /// ```
    ///
    /// The context offers ALPN `grpc-exp` and `h2` (added when it names no protocol). Service code reads the
    /// TLS side of its RPC's connection -- version, cipher suite, the client's certificate chain under mutual
    /// TLS -- with ``handshakeInfo(for:)``.
    public struct GnuTLS: ServerTransport, ListeningServerTransport {
        /// The bytes gRPC's NIO transports carry.
        public typealias Bytes = GRPCNIOTransportBytes

        private let underlying: Custom<GnuTLSListenerFactory>
        private let peers: TLSPeerDirectory

        /// Creates a transport; it listens once a `GRPCServer` runs it.
        ///
        /// - Parameters:
        ///   - address: where to listen (IPv4, IPv6 or a Unix socket); port 0 for a free port.
        ///   - context: a server context (its identity; its client authentication for mutual TLS).
        ///   - handshakeTimeout: how long a client may take to complete the TLS handshake.
        ///   - requireALPN: close connections that negotiated no ALPN protocol.
        ///   - config: gRPC's HTTP/2, RPC, connection and compression settings, as for
        ///     `HTTP2ServerTransport.Posix`.
        ///   - eventLoopGroup: the event loops to run on.
        /// - Throws: ``TLSError`` of kind `configuration` for a client context, or one offering only ALPN
        ///   protocols other than gRPC's.
        public init(
            address: GRPCNIOTransportCore.SocketAddress, context: TLSContext,
            handshakeTimeout: TimeAmount = .seconds(10), requireALPN: Bool = false,
            config: HTTP2ServerTransport.Posix.Config = .defaults,
            eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
        ) throws(TLSError) {
            let factory = try GnuTLSListenerFactory(
                address: address, context: context, handshakeTimeout: handshakeTimeout, requireALPN: requireALPN,
                eventLoopGroup: eventLoopGroup)
            self.peers = factory.peers
            self.underlying = Custom(
                listenerFactory: factory,
                config: .init(
                    compression: config.compression, connection: config.connection, http2: config.http2,
                    rpc: config.rpc, channelDebuggingCallbacks: config.channelDebuggingCallbacks))
        }

        /// The address the transport listens on, once it does.
        public var listeningAddress: GRPCNIOTransportCore.SocketAddress {
            get async throws {
                guard let address = await underlying.listeningAddress else {
                    throw RuntimeError(
                        code: .serverIsStopped,
                        message: "There is no listening address: the transport has not started or has stopped.")
                }
                return address
            }
        }

        /// What the TLS handshake of the connection `context`'s RPC arrived on agreed on: version, cipher
        /// suite, ALPN, SNI, and the client's certificate chain (leaf first) under mutual TLS. Nil for a
        /// connection over a Unix socket, or one that has closed.
        ///
        /// Call it from service code with the `ServerContext` the RPC handler receives. (It is a lookup by
        /// `context.remotePeer` because grpc-swift-nio-transport 2.9.2 gives a custom transport no public way
        /// to fill `ServerContext.transportSpecific`.)
        public func handshakeInfo(for context: ServerContext) -> TLSHandshakeInfo? {
            peers.handshakeInfo(for: context)
        }

        /// How many open connections' handshakes ``handshakeInfo(for:)`` can find.
        public var trackedConnectionCount: Int { peers.count }

        /// Called by `GRPCServer`.
        public func listen(
            streamHandler: @escaping @Sendable (
                _ stream: RPCStream<Inbound, Outbound>, _ context: ServerContext
            ) async -> Void
        ) async throws {
            try await underlying.listen(streamHandler: streamHandler)
        }

        /// Called by `GRPCServer`.
        public func configure(context: GRPCServerContext) {
            underlying.configure(context: context)
        }

        /// Stops accepting connections and lets open RPCs finish.
        public func beginGracefulShutdown() {
            underlying.beginGracefulShutdown()
        }
    }
}

extension ServerTransport where Self == HTTP2ServerTransport.GnuTLS {
    /// A gRPC server transport over GnuTLS (see `HTTP2ServerTransport.GnuTLS`), in the
    /// style of `.http2NIOPosix(address:transportSecurity:)`.
    public static func http2GnuTLS(
        address: GRPCNIOTransportCore.SocketAddress, context: TLSContext,
        config: HTTP2ServerTransport.Posix.Config = .defaults
    ) throws(TLSError) -> Self {
        try HTTP2ServerTransport.GnuTLS(address: address, context: context, config: config)
    }
}
#endif
