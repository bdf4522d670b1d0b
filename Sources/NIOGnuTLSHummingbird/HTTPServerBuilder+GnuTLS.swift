#if Hummingbird
import GnuTLS
import HummingbirdCore
import NIOCore
import NIOGnuTLS

extension HTTPServerBuilder {
    /// HTTPS over HTTP/1.1 with GnuTLS, for `Application(router:server:)`:
    ///
    /// ```swift
    /// let context = try TLSContext(configuration: .server(identity: .files(certificateChain: "server.crt", privateKey: "server.key")))
    /// let app = Application(router: router, server: .http1(tls: context))
    /// ```
    ///
    /// In a file that also imports HummingbirdTLS or HummingbirdHTTP2 (they re-export NIOSSL's
    /// `TLSConfiguration`), write `GnuTLS.TLSConfiguration.server(...)`.
    ///
    /// - Parameters:
    ///   - context: the server TLS context every connection uses.
    ///   - configuration: Hummingbird's HTTP/1.1 channel configuration.
    ///   - handshakeTimeout: how long a client may take to complete the handshake.
    public static func http1(
        tls context: TLSContext, configuration: HTTP1Channel.Configuration = .init(),
        handshakeTimeout: TimeAmount = .seconds(10)
    ) -> HTTPServerBuilder {
        .init { responder in
            GnuTLSChannel(
                HTTP1Channel(responder: responder, configuration: configuration), context: context,
                handshakeTimeout: handshakeTimeout)
        }
    }

    /// HTTPS with HTTP/2 and HTTP/1.1 chosen by ALPN, with GnuTLS (see ``GnuTLSHTTP2Channel``).
    ///
    /// The context must offer ALPN `h2`: make it with
    /// `applicationProtocols: GnuTLSHTTP2Channel.applicationProtocols`, or use
    /// ``http2(tlsConfiguration:configuration:)``, which does that. A context without `h2` makes the
    /// application fail to start with a ``TLSError`` saying so.
    public static func http2(
        tls context: TLSContext, configuration: GnuTLSHTTP2Channel.Configuration = .init()
    ) -> HTTPServerBuilder {
        .init { responder in
            try GnuTLSHTTP2Channel(context: context, configuration: configuration, responder: responder)
        }
    }

    /// HTTP/2 and HTTP/1.1 by ALPN from a configuration (a `GnuTLS.TLSConfiguration`, module-qualified next to
    /// Hummingbird's TLS modules): builds its context, with ALPN `h2`, `http/1.1` when the configuration names no
    /// protocols, so that a bad certificate file or priority string is an error here, at start-up.
    public static func http2(
        tlsConfiguration: GnuTLS.TLSConfiguration, configuration: GnuTLSHTTP2Channel.Configuration = .init()
    ) throws -> HTTPServerBuilder {
        var tlsConfiguration = tlsConfiguration
        if tlsConfiguration.applicationProtocols.isEmpty {
            tlsConfiguration.applicationProtocols = GnuTLSHTTP2Channel.applicationProtocols
        }
        return .http2(tls: try TLSContext(configuration: tlsConfiguration), configuration: configuration)
    }
}
#endif
