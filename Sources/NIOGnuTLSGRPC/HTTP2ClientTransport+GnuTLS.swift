#if GRPC
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import GnuTLS
import NIOCore
import NIOGnuTLS
import NIOPosix

extension HTTP2ClientTransport {
    /// A gRPC client transport over GnuTLS: `HTTP2ClientTransport.Posix` with its `.customSecure` transport
    /// security, and a ``GnuTLSHandler`` put first in each connection's pipeline by the
    /// `onCreateTCPConnection` hook.
    ///
    /// ```swift
    /// let transport = try HTTP2ClientTransport.GnuTLS(
    ///     target: .dns(host: "api.example.org", port: 443), context: clientContext)
    /// try await withGRPCClient(transport: transport) { client in ... }
    /// ```
    ///
    /// The context offers ALPN `grpc-exp` and `h2` (added when it names no protocol). The server name sent and
    /// verified is `serverName`, else the context's, else the host of a `.dns` target.
    public struct GnuTLS: ClientTransport {
        /// The bytes gRPC's NIO transports carry.
        public typealias Bytes = GRPCNIOTransportBytes

        private let underlying: HTTP2ClientTransport.Posix

        /// Creates a transport; it connects once a `GRPCClient` runs it.
        ///
        /// - Parameters:
        ///   - target: where to connect, for example `.ipv4(host:port:)` or `.dns(host:port:)`.
        ///   - context: a client context (trust roots, verification, an identity for mutual TLS).
        ///   - serverName: the name to send (SNI) and verify the server's certificate against.
        ///   - handshakeTimeout: how long the TLS handshake may take.
        ///   - config: gRPC's HTTP/2, backoff, connection and compression settings, as for
        ///     `HTTP2ClientTransport.Posix`; an `onCreateTCPConnection` callback in it runs after the TLS
        ///     handler has been added.
        ///   - resolverRegistry: resolves `target`.
        ///   - serviceConfig: gRPC's service config (retries, timeouts, load balancing).
        ///   - eventLoopGroup: the event loops to run on.
        /// - Throws: ``TLSError`` of kind `configuration` for a server context or a context offering only ALPN
        ///   protocols other than gRPC's; `RPCError` when no resolver handles `target`.
        public init(
            target: any ResolvableTarget, context: TLSContext, serverName: String? = nil,
            handshakeTimeout: TimeAmount = .seconds(10), config: HTTP2ClientTransport.Posix.Config = .defaults,
            resolverRegistry: NameResolverRegistry = .defaults, serviceConfig: ServiceConfig = ServiceConfig(),
            eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
        ) throws {
            guard context.role == .client else {
                throw TLSError(kind: .configuration, reason: "a gRPC client needs a client TLS context")
            }
            let context = try context.offeringGRPCApplicationProtocols()
            let name = serverName ?? context.configuration.serverName ?? (target as? ResolvableTargets.DNS)?.host
            var config = config
            let userCallback = config.channelDebuggingCallbacks.onCreateTCPConnection
            config.channelDebuggingCallbacks.onCreateTCPConnection = { channel in
                // gRPC's client pipeline is in place by now: TLS goes in front of it.
                let added = channel.eventLoop.makeCompletedFuture {
                    let handler = try GnuTLSHandler(
                        context: context, serverName: name, handshakeTimeout: handshakeTimeout)
                    try channel.pipeline.syncOperations.addHandler(handler, position: .first)
                }
                guard let userCallback else { return added }
                return added.flatMap { userCallback(channel) }
            }
            self.underlying = try HTTP2ClientTransport.Posix(
                target: target, transportSecurity: .customSecure, config: config, resolverRegistry: resolverRegistry,
                serviceConfig: serviceConfig, eventLoopGroup: eventLoopGroup)
        }

        /// The retry throttle of the service config, if any.
        public var retryThrottle: RetryThrottle? { underlying.retryThrottle }

        /// Called by `GRPCClient`: maintains connections until shut down.
        public func connect() async throws { try await underlying.connect() }

        /// Called by `GRPCClient`.
        public func config(forMethod descriptor: MethodDescriptor) -> MethodConfig? {
            underlying.config(forMethod: descriptor)
        }

        /// Lets open RPCs finish, then closes the connections.
        public func beginGracefulShutdown() { underlying.beginGracefulShutdown() }

        /// Called by `GRPCClient` for each RPC.
        public func withStream<T: Sendable>(
            descriptor: MethodDescriptor, options: CallOptions,
            _ closure: (_ stream: RPCStream<Inbound, Outbound>, _ context: ClientContext) async throws -> T
        ) async throws -> T {
            try await underlying.withStream(descriptor: descriptor, options: options, closure)
        }
    }
}

extension ClientTransport where Self == HTTP2ClientTransport.GnuTLS {
    /// A gRPC client transport over GnuTLS (see `HTTP2ClientTransport.GnuTLS`), in the style of
    /// `.http2NIOPosix(target:transportSecurity:)`.
    public static func http2GnuTLS(
        target: any ResolvableTarget, context: TLSContext, serverName: String? = nil,
        config: HTTP2ClientTransport.Posix.Config = .defaults
    ) throws -> Self {
        try HTTP2ClientTransport.GnuTLS(target: target, context: context, serverName: serverName, config: config)
    }
}
#endif
