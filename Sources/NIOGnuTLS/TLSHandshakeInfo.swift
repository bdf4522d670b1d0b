import GnuTLS

/// What a completed handshake agreed on, announced as a ``GnuTLSEvent/handshakeCompleted(_:)`` user event and
/// returned by ``GnuTLSHandler/handshakeInfo``.
///
/// A snapshot taken when the handshake completed. It is one reference wide (the values live in an immutable
/// object), so passing it through a pipeline as an event costs no copies of its fields, and the cipher suite
/// and group names become strings only when read.
public struct TLSHandshakeInfo: Sendable, Equatable {
    private final class Storage: Sendable {
        let version: TLSVersion?
        let cipherSuite: StaticName?
        let group: StaticName?
        let applicationProtocol: String?
        let isResumed: Bool
        let peerCertificates: [Certificate]
        let requestedServerName: String?
        let stapledOCSPResponse: OCSPStatus?
        let serverNameAcknowledged: Bool

        init(_ session: TLSSession) {
            version = session.negotiatedVersion
            cipherSuite = session.cipherSuiteName
            group = session.keyExchangeGroupName
            applicationProtocol = session.applicationProtocol
            isResumed = session.isResumed
            peerCertificates = session.peerCertificates
            requestedServerName = session.requestedServerName
            stapledOCSPResponse = session.stapledOCSPResponse
            serverNameAcknowledged = session.serverNameAcknowledged
        }
    }

    private let storage: Storage

    init(_ session: TLSSession) {
        storage = Storage(session)
    }

    /// The protocol version in use.
    public var version: TLSVersion? { storage.version }
    /// The cipher suite in use, for example `TLS_AES_128_GCM_SHA256`.
    public var cipherSuite: String? { storage.cipherSuite?.description }
    /// The key-exchange group, for example `X25519`.
    public var group: String? { storage.group?.description }
    /// The ALPN protocol agreed on, if any.
    public var applicationProtocol: String? { storage.applicationProtocol }
    /// Whether an earlier session was resumed.
    public var isResumed: Bool { storage.isResumed }
    /// The peer's certificate chain, leaf first (empty when the peer sent none).
    public var peerCertificates: [Certificate] { storage.peerCertificates }
    /// The SNI name the client asked for (servers).
    public var requestedServerName: String? { storage.requestedServerName }
    /// The OCSP response the server stapled (clients), decoded; nil if it sent none.
    public var stapledOCSPResponse: OCSPStatus? { storage.stapledOCSPResponse }
    /// Whether the server acknowledged the SNI name the client sent (clients).
    public var serverNameAcknowledged: Bool { storage.serverNameAcknowledged }

    public static func == (lhs: TLSHandshakeInfo, rhs: TLSHandshakeInfo) -> Bool {
        if lhs.storage === rhs.storage { return true }
        let a = lhs.storage
        let b = rhs.storage
        return a.version == b.version && a.cipherSuite == b.cipherSuite && a.group == b.group
            && a.applicationProtocol == b.applicationProtocol && a.isResumed == b.isResumed
            && a.peerCertificates == b.peerCertificates && a.requestedServerName == b.requestedServerName
            && a.stapledOCSPResponse == b.stapledOCSPResponse
            && a.serverNameAcknowledged == b.serverNameAcknowledged
    }
}
