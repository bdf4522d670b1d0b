#if Hummingbird
import GnuTLS
import HummingbirdCore
import Logging
import NIOCore
import NIOGnuTLS
import NIOHTTP2
import NIOHTTPTypes
import NIOHTTPTypesHTTP2
import NIOTLS

/// HTTP/2 and HTTP/1.1 over TLS with ``GnuTLSHandler``, chosen by ALPN (`h2`, then `http/1.1`; a client that
/// offers neither, or no ALPN at all, gets HTTP/1.1).
///
/// The role of HummingbirdHTTP2's `HTTP2UpgradeChannel`, which cannot be used here: its module depends on
/// swift-nio-ssl, so any app importing it compiles BoringSSL. This one is built from public pieces only:
/// Hummingbird's `HTTP1Channel` for HTTP/1.1 connections and for HTTP/2 streams' request handling, and
/// swift-nio-http2's `configureHTTP2AsyncSecureUpgrade` and `configureAsyncHTTP2Pipeline` with its
/// `NIOHTTP2ServerConnectionManagementHandler` (idle and age limits, GOAWAY on graceful shutdown).
///
/// Most apps do not name it: `HTTPServerBuilder.http2(tls:configuration:)` builds one. Every stream of a
/// connection sees the connection's handshake in ``TLSConnectionInfo/current``.
public struct GnuTLSHTTP2Channel: HTTPChannelHandler {
    /// The ALPN protocols the TLS context must offer, most preferred first.
    public static let applicationProtocols = ["h2", "http/1.1"]

    /// Limits for connections and streams.
    public struct Configuration: Sendable {
        /// Configuration of HTTP/1.1 connections and of every HTTP/2 stream (additional channel handlers, a
        /// stream's idle timeout, decoder limits).
        public var http1: HTTP1Channel.Configuration
        /// Close an HTTP/2 connection that has had no open stream for this long; nil for never.
        public var idleTimeout: TimeAmount?
        /// Close an HTTP/2 connection gracefully (GOAWAY) once it is this old; nil for never.
        public var maxAge: TimeAmount?
        /// How long open streams may take to finish once a graceful close has begun; nil for no limit.
        public var gracefulCloseTimeout: TimeAmount?
        /// How long a client may take to complete the TLS handshake.
        public var handshakeTimeout: TimeAmount

        /// Creates a configuration; the defaults keep idle connections open and give a graceful close 30 s.
        public init(
            http1: HTTP1Channel.Configuration = .init(), idleTimeout: TimeAmount? = nil, maxAge: TimeAmount? = nil,
            gracefulCloseTimeout: TimeAmount? = .seconds(30), handshakeTimeout: TimeAmount = .seconds(10)
        ) {
            self.http1 = http1
            self.idleTimeout = idleTimeout
            self.maxAge = maxAge
            self.gracefulCloseTimeout = gracefulCloseTimeout
            self.handshakeTimeout = handshakeTimeout
        }
    }

    typealias Stream = NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>
    typealias HTTP2Connection = NIOHTTP2Handler.AsyncStreamMultiplexer<Stream>

    /// What ALPN chose, once the handshake has completed, and the handshake itself.
    public struct Value: ServerChildChannelValue {
        let negotiated: EventLoopFuture<NIONegotiatedHTTPVersion<HTTP1Channel.Value, HTTP2Connection>>
        let handshake: EventLoopFuture<TLSHandshakeInfo>
        /// The connection's channel.
        public let channel: any Channel
    }

    /// The server context every connection uses; its ALPN list includes `h2`.
    public let context: TLSContext
    /// Limits for connections and streams.
    public let configuration: Configuration
    /// The app's request handling.
    public let responder: HTTPChannelHandler.Responder
    private let http1: HTTP1Channel

    /// Creates the channel.
    ///
    /// - Parameters:
    ///   - context: a server context whose configuration offers ALPN `h2` (see ``applicationProtocols``).
    ///   - configuration: limits for connections and streams.
    ///   - responder: the app's request handling (Hummingbird passes it to the server builder's closure).
    /// - Throws: a ``TLSError`` of kind `configuration` when the context does not offer `h2`: every client would
    ///   then get HTTP/1.1, silently.
    public init(
        context: TLSContext, configuration: Configuration = .init(),
        responder: @escaping HTTPChannelHandler.Responder
    ) throws {
        guard context.configuration.applicationProtocols.contains("h2") else {
            throw TLSError(
                kind: .configuration,
                reason:
                "the TLS context offers no ALPN 'h2' (it offers \(context.configuration.applicationProtocols)); "
                    + "make it with applicationProtocols: [\"h2\", \"http/1.1\"] for HTTP/2")
        }
        self.context = context
        self.configuration = configuration
        self.responder = responder
        self.http1 = HTTP1Channel(responder: responder, configuration: configuration.http1)
    }

    /// Puts a ``GnuTLSHandler`` first, then an ALPN handler that sets up HTTP/2 or HTTP/1.1 once the handshake
    /// has said which.
    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let handshake: EventLoopFuture<TLSHandshakeInfo>
        do {
            handshake = try GnuTLSHandler.addServerHandler(
                to: channel, context: context, handshakeTimeout: configuration.handshakeTimeout)
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        return channel.configureHTTP2AsyncSecureUpgrade { channel in
            self.http1.setup(channel: channel, logger: logger)
        } http2ConnectionInitializer: { channel in
            self.setUpHTTP2(channel: channel, logger: logger)
        }.map { negotiated in
            Value(negotiated: negotiated, handshake: handshake, channel: channel)
        }
    }

    /// Serves the connection as ALPN decided, with the handshake in ``TLSConnectionInfo/current``.
    public func handle(value: Value, logger: Logger) async {
        let negotiated: NIONegotiatedHTTPVersion<HTTP1Channel.Value, HTTP2Connection>
        let info: TLSHandshakeInfo
        do {
            negotiated = try await value.negotiated.get()
            info = try await value.handshake.get()
        } catch {
            logger.debug("TLS handshake or protocol negotiation failed", metadata: ["tls.error": "\(error)"])
            return
        }
        await TLSConnectionInfo.$current.withValue(info) {
            switch negotiated {
            case .http1_1(let connection):
                await http1.handle(value: connection, logger: logger)
            case .http2(let connection):
                await handleHTTP2(connection, logger: logger)
            }
        }
    }

    private func setUpHTTP2(channel: any Channel, logger: Logger) -> EventLoopFuture<HTTP2Connection> {
        let streamConfiguration = configuration.http1
        let management = NIOHTTP2ServerConnectionManagementHandler.Configuration(
            maxIdleTime: configuration.idleTimeout, maxAge: configuration.maxAge,
            maxGraceTime: configuration.gracefulCloseTimeout, keepalive: nil)
        return channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.configureAsyncHTTP2Pipeline(
                mode: .server, connectionManagerConfiguration: management
            ) { stream in
                stream.eventLoop.makeCompletedFuture {
                    let pipeline = stream.pipeline.syncOperations
                    try pipeline.addHandler(HTTP2FramePayloadToHTTPServerCodec())
                    try pipeline.addHandlers(streamConfiguration.additionalChannelHandlers())
                    try pipeline.addHandler(
                        HTTPConnectionStateHandler(
                            idleTimeout: streamConfiguration.idleTimeout.map { Duration($0) }, logger: logger))
                    return try Stream(wrappingChannelSynchronously: stream)
                }
            }
        }
    }

    /// One child task per stream; each runs Hummingbird's request loop, which ends with the stream's one request.
    private func handleHTTP2(_ connection: HTTP2Connection, logger: Logger) async {
        do {
            try await withThrowingDiscardingTaskGroup { group in
                for try await stream in connection.inbound {
                    group.addTask {
                        await self.handleHTTP(asyncChannel: stream, logger: logger)
                    }
                }
            }
        } catch let error as TLSError where error.kind == .truncated {
            // Many HTTP/2 clients (curl among them) close without close_notify once their streams are done; HTTP/2
            // frames its own ends, so this loses nothing. Hummingbird logs its HTTP/1.1 equivalent at trace too.
            logger.trace("HTTP/2 connection closed without close_notify", metadata: ["http2.error": "\(error)"])
        } catch {
            logger.debug("HTTP/2 connection ended with an error", metadata: ["http2.error": "\(error)"])
        }
    }
}
#endif
