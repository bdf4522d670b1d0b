#if Hummingbird
import GnuTLS
import Hummingbird
import NIOGnuTLS

extension RequestContext {
    /// The TLS handshake of the connection this request arrived on (``TLSConnectionInfo/current``): version,
    /// cipher suite, ALPN protocol, and in ``TLSHandshakeInfo/peerCertificates`` the client's certificate chain,
    /// leaf first, when the TLS context asks for one (mutual TLS).
    ///
    /// ```swift
    /// router.get("/whoami") { _, context in
    ///     context.tlsHandshake?.peerCertificates.first?.subject ?? "anonymous"
    /// }
    /// ```
    public var tlsHandshake: TLSHandshakeInfo? { TLSConnectionInfo.current }
}
#endif
