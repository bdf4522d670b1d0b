import GnuTLS

/// What a completed handshake agreed on, announced as a ``GnuTLSEvent/handshakeCompleted(_:)`` user event and
/// kept by ``GnuTLSHandler/handshakeInfo``.
public struct TLSHandshakeInfo: Sendable, Equatable {
    /// The protocol version in use.
    public var version: TLSVersion?
    /// The cipher suite in use, for example `TLS_AES_128_GCM_SHA256`.
    public var cipherSuite: String?
    /// The key-exchange group, for example `X25519`.
    public var group: String?
    /// The ALPN protocol agreed on, if any.
    public var applicationProtocol: String?
    /// Whether an earlier session was resumed.
    public var isResumed: Bool
    /// The peer's certificate chain, leaf first (empty when the peer sent none).
    public var peerCertificates: [Certificate]
    /// The SNI name the client asked for (servers).
    public var requestedServerName: String?

    init(_ session: TLSSession) {
        version = session.negotiatedVersion
        cipherSuite = session.cipherSuite
        group = session.keyExchangeGroup
        applicationProtocol = session.applicationProtocol
        isResumed = session.isResumed
        peerCertificates = session.peerCertificates
        requestedServerName = session.requestedServerName
    }
}
