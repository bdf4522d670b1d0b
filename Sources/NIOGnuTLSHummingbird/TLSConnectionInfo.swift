#if Hummingbird
import GnuTLS
import NIOGnuTLS

/// The handshake of the TLS connection a request arrived on, for route code.
///
/// ``GnuTLSChannel`` and ``GnuTLSHTTP2Channel`` run the handling of every connection (and, for HTTP/2, of every
/// stream, in child tasks) inside `TLSConnectionInfo.$current.withValue(...)`, so a route reads the negotiated
/// version, cipher suite, ALPN protocol and the client's certificate chain without a hop to the event loop and
/// without knowing whether its channel is the connection or an HTTP/2 stream (whose channel is a child of the
/// connection's, the one the TLS handler is in). A task-local rather than a request-context field so that it
/// works with every `RequestContext`, `BasicRequestContext` included; see also `RequestContext.tlsHandshake`.
///
/// Nil outside a request handled by those channels, and in the unusual case of a connection whose handshake
/// failed while its handling was starting. Tasks created with `Task {}` inherit it; detached tasks do not.
public enum TLSConnectionInfo {
    /// The handshake of the current request's connection (a snapshot taken when the handshake completed).
    @TaskLocal public static var current: TLSHandshakeInfo?
}
#endif
