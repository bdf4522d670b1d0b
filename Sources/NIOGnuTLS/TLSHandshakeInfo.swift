import GnuTLS

/// What a completed handshake agreed on, announced as a ``GnuTLSEvent/handshakeCompleted(_:)`` user event and
/// returned by ``GnuTLSHandler/handshakeInfo``.
///
/// A snapshot taken when the handshake completed. Apps and tests can make one themselves with
/// ``init(version:cipherSuite:group:applicationProtocol:isResumed:peerCertificates:requestedServerName:stapledOCSPResponse:serverNameAcknowledged:)``
/// (to hand a route a fake connection, say). It is one reference wide (the values live in an immutable
/// object), so passing it through a pipeline as an event costs no copies of its fields, and the cipher suite
/// and group names become strings only when read.
public struct TLSHandshakeInfo: Sendable, Equatable {
    private final class Storage: Sendable {
        let version: TLSVersion?
        let cipherSuite: StaticName?
        let group: StaticName?
        /// Names given by ``TLSHandshakeInfo/init(version:cipherSuite:group:applicationProtocol:isResumed:peerCertificates:requestedServerName:stapledOCSPResponse:serverNameAcknowledged:)``
        /// rather than read from GnuTLS's tables.
        let cipherSuiteText: String?
        let groupText: String?
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
            cipherSuiteText = nil
            groupText = nil
            applicationProtocol = session.applicationProtocol
            isResumed = session.isResumed
            peerCertificates = session.peerCertificates
            requestedServerName = session.requestedServerName
            stapledOCSPResponse = session.stapledOCSPResponse
            serverNameAcknowledged = session.serverNameAcknowledged
        }

        init(
            version: TLSVersion?, cipherSuite: String?, group: String?, applicationProtocol: String?, isResumed: Bool,
            peerCertificates: [Certificate], requestedServerName: String?, stapledOCSPResponse: OCSPStatus?,
            serverNameAcknowledged: Bool
        ) {
            self.version = version
            self.cipherSuite = nil
            self.group = nil
            self.cipherSuiteText = cipherSuite
            self.groupText = group
            self.applicationProtocol = applicationProtocol
            self.isResumed = isResumed
            self.peerCertificates = peerCertificates
            self.requestedServerName = requestedServerName
            self.stapledOCSPResponse = stapledOCSPResponse
            self.serverNameAcknowledged = serverNameAcknowledged
        }
    }

    private let storage: Storage

    init(_ session: TLSSession) {
        storage = Storage(session)
    }

    /// Creates the record of a handshake from its parts: for code that hands handshake details to something
    /// written against this type (a route that reads the client's certificate, a test of it) without running
    /// a handshake. The handler makes its own from the session.
    public init(
        version: TLSVersion?, cipherSuite: String?, group: String? = nil, applicationProtocol: String? = nil,
        isResumed: Bool = false, peerCertificates: [Certificate] = [], requestedServerName: String? = nil,
        stapledOCSPResponse: OCSPStatus? = nil, serverNameAcknowledged: Bool = false
    ) {
        storage = Storage(
            version: version, cipherSuite: cipherSuite, group: group, applicationProtocol: applicationProtocol,
            isResumed: isResumed, peerCertificates: peerCertificates, requestedServerName: requestedServerName,
            stapledOCSPResponse: stapledOCSPResponse, serverNameAcknowledged: serverNameAcknowledged)
    }

    /// The protocol version in use.
    public var version: TLSVersion? { storage.version }
    /// The cipher suite in use, for example `TLS_AES_128_GCM_SHA256`.
    public var cipherSuite: String? { storage.cipherSuiteText ?? storage.cipherSuite?.description }
    /// The key-exchange group, for example `X25519`.
    public var group: String? { storage.groupText ?? storage.group?.description }
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

    /// Two records are equal when every field is: the same handshake seen twice, or a made one that matches.
    public static func == (lhs: TLSHandshakeInfo, rhs: TLSHandshakeInfo) -> Bool {
        if lhs.storage === rhs.storage { return true }
        let a = lhs.storage
        let b = rhs.storage
        // The names compare as pointers into GnuTLS's tables when both came from a session.
        let sameNames =
            a.cipherSuiteText == nil && a.groupText == nil && b.cipherSuiteText == nil && b.groupText == nil
            ? a.cipherSuite == b.cipherSuite && a.group == b.group
            : lhs.cipherSuite == rhs.cipherSuite && lhs.group == rhs.group
        return a.version == b.version && sameNames
            && a.applicationProtocol == b.applicationProtocol && a.isResumed == b.isResumed
            && a.peerCertificates == b.peerCertificates && a.requestedServerName == b.requestedServerName
            && a.stapledOCSPResponse == b.stapledOCSPResponse
            && a.serverNameAcknowledged == b.serverNameAcknowledged
    }
}
