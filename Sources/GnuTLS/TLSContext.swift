internal import CGnuTLS

import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// A configuration made ready for use: credentials loaded, trust loaded, priority string compiled.
///
/// Build one at start-up and share it between every connection; it is immutable and thread-safe. Every problem
/// with the configuration (a missing file, unparsable PEM, a key that does not match its certificate, a typo in
/// a priority string) is thrown here, naming the file or the position in the string, never at the first
/// connection.
public final class TLSContext: @unchecked Sendable {
    // @unchecked: GnuTLS credentials and priority caches may be shared by sessions on any thread once set up;
    // nothing here is mutated after init.

    /// The configuration this context was built from.
    public let configuration: TLSConfiguration
    /// The configuration's role. Read through this, not `configuration.role`: from another module, reading
    /// `configuration` copies the whole value (retaining each of its strings and arrays) to take one field.
    public var role: TLSConfiguration.Role { configuration.role }
    /// The number of trust anchors loaded (from the system store or the configured file or certificates).
    public let trustAnchorCount: Int
    /// The certificate chain this side presents, if any (leaf first).
    public let certificateChain: [Certificate]

    /// The TLS versions the priority string enables, newest first.
    public let enabledVersions: [TLSVersion]
    /// The same, as a bit set in ``ClientHelloVersions`` form.
    let enabledVersionBits: UInt8

    let credentials: CertificateCredentials
    let priority: PriorityCache
    /// Server session-ticket key, generated once per context; nil for clients and when tickets are off.
    let ticketKey: SessionTicketKey?
    /// The server's TLS 1.2 session-ID cache, at an address given to each session; nil for clients and without one.
    let sessionCache: SessionCacheBox?
    /// ALPN names, handed to each session.
    let applicationProtocols: ApplicationProtocolList
    /// What sessions verify the peer's certificate against when that is the same for all of them (servers
    /// that verify client certificates, chain-only clients): made once, read by GnuTLS from any session.
    /// Nil otherwise; a client with full verification makes its own, with the server name.
    let sharedPeerVerification: PeerVerification?

    /// Builds a context.
    ///
    /// - Throws: ``TLSError`` of kind ``TLSError/Kind/configuration`` naming what is wrong.
    public init(configuration: TLSConfiguration) throws(TLSError) {
        self.configuration = configuration
        let protocols = configuration.applicationProtocols
        guard protocols.count <= 8 else {
            throw TLSError.configuration("at most 8 ALPN protocols can be offered, not \(protocols.count)")
        }
        for name in protocols where name.utf8.isEmpty || name.utf8.count > 32 {
            throw TLSError.configuration("ALPN protocol '\(name)' must be 1 to 32 bytes long")
        }
        if configuration.role == .server && configuration.identity == nil {
            throw TLSError.configuration("a server needs a certificate chain and private key")
        }

        // Each handle's owner frees it if a later step throws.
        let credentials = try CertificateCredentials()
        let priority = try PriorityCache(configuration.policy.priorityString)
        let versions = priority.versions
        applicationProtocols = ApplicationProtocolList(protocols)
        enabledVersions = versions.sorted { $0.wireValue > $1.wireValue }
        enabledVersionBits = versions.reduce(0) { $0 | ClientHelloVersions.bit($1.wireValue) }
        ticketKey =
            configuration.role == .server && configuration.sessionTickets
            ? try SessionTicketKey(configuration.ticketKey) : nil
        sessionCache = configuration.role == .server ? configuration.sessionCache.map(SessionCacheBox.init) : nil

        switch (configuration.role, configuration.clientAuthentication, configuration.certificateVerification) {
        case (.server, .verifyIfGiven, _), (.server, .requireAndVerify, _):
            sharedPeerVerification = PeerVerification(purpose: .clientAuthentication, name: nil)
        case (.client, _, .chainOnly):
            sharedPeerVerification = PeerVerification(purpose: .serverAuthentication, name: nil)
        default:
            sharedPeerVerification = nil
        }

        if let identity = configuration.identity {
            certificateChain = try TLSContext.loadIdentity(identity, into: credentials.handle)
        } else {
            certificateChain = []
        }
        trustAnchorCount = try TLSContext.loadTrust(configuration, into: credentials.handle)
        if configuration.role == .server {
            _ = gnutls_certificate_set_known_dh_params(credentials.handle, GNUTLS_SEC_PARAM_MEDIUM)
        }
        self.credentials = credentials
        self.priority = priority
    }

    /// A new session for one connection, sharing this context's credentials and policy.
    ///
    /// - Parameter serverName: for clients, the name to send as SNI and verify; overrides the configuration's.
    public func makeSession(serverName: String? = nil) throws(TLSError) -> TLSSession {
        try TLSSession(context: self, serverName: serverName ?? configuration.serverName)
    }

    /// A new client session that tries to resume an earlier one with data from ``TLSSession/resumptionData``.
    /// If the server does not accept it, a full handshake happens.
    public func makeSession(serverName: String? = nil, resumptionData: [UInt8]?) throws(TLSError) -> TLSSession {
        let session = try makeSession(serverName: serverName)
        if let resumptionData { try session.setResumptionData(resumptionData) }
        return session
    }

    private static func loadIdentity(
        _ identity: TLSConfiguration.Identity, into credentials: gnutls_certificate_credentials_t
    ) throws(TLSError) -> [Certificate] {
        let chain: [Certificate]
        let key: X509PrivateKey
        let keySource: String
        let chainSource: String
        switch identity {
        case .files(let chainPath, let keyPath, let password):
            chain = try Certificate.load(file: chainPath)
            let bytes = try CredentialFile.read(keyPath, what: "private key file")
            keySource = "private key file '\(keyPath)'"
            chainSource = "certificate file '\(chainPath)'"
            key = try X509PrivateKey(bytes: bytes, password: password, source: keySource)
        case .certificates(let certificates, let privateKey):
            guard !certificates.isEmpty else {
                throw TLSError.configuration("the identity holds no certificate")
            }
            chain = certificates
            keySource = "the private key"
            chainSource = "the certificate chain"
            key = try X509PrivateKey(bytes: privateKey.pkcs8DERBytes, password: nil, source: keySource)
        }
        var handles: [X509Certificate] = []
        for (index, certificate) in chain.enumerated() {
            let handle = try X509Certificate(der: certificate.derBytes, source: chainSource)
            // GnuTLS 3.7.9's gnutls_certificate_set_x509_key accepts a chain certificate whose public key it cannot
            // use (an unknown algorithm, an unsupported curve), and the key pair it then stores is never freed
            // (found by the fuzz-certificate target). Such a chain cannot be used anyway: refuse it first.
            guard gnutls_x509_crt_get_pk_algorithm(handle.crt, nil) > 0 else {
                throw TLSError.configuration(
                    "certificate \(index + 1) in \(chainSource) has a public-key algorithm GnuTLS does not support")
            }
            var publicKey: gnutls_pubkey_t?
            guard gnutls_pubkey_init(&publicKey) == 0, let publicKey else {
                throw TLSError.configuration("cannot allocate a public key")
            }
            let imported = gnutls_pubkey_import_x509(publicKey, handle.crt, 0)
            gnutls_pubkey_deinit(publicKey)
            guard imported == 0 else {
                throw TLSError.configuration(
                    "certificate \(index + 1) in \(chainSource) has a public key GnuTLS cannot use "
                        + "(for example an unsupported curve)", code: imported)
            }
            handles.append(handle)
        }
        var crts: [gnutls_x509_crt_t?] = handles.map { $0.crt }
        let rc = gnutls_certificate_set_x509_key(credentials, &crts, Int32(crts.count), key.key)
        withExtendedLifetime(handles) {}
        guard rc >= 0 else {
            if rc == GNUTLS_E_CERTIFICATE_KEY_MISMATCH {
                throw TLSError.configuration(
                    "\(keySource) does not match the certificate in \(chainSource)", code: rc)
            }
            throw TLSError.configuration("cannot use \(chainSource) with \(keySource): \(TLSError.message(of: rc))", code: rc)
        }
        return chain
    }

    private static func loadTrust(
        _ configuration: TLSConfiguration, into credentials: gnutls_certificate_credentials_t
    ) throws(TLSError) -> Int {
        let needsTrust: Bool
        switch configuration.role {
        case .client: needsTrust = configuration.certificateVerification != .insecureNoVerification
        case .server:
            switch configuration.clientAuthentication {
            case .verifyIfGiven, .requireAndVerify: needsTrust = true
            default: needsTrust = false
            }
        }
        guard needsTrust else { return 0 }
        let anchors: [Certificate]
        switch configuration.trustRoots {
        case .system:
            let count = gnutls_certificate_set_x509_system_trust(credentials)
            guard count > 0 else {
                throw TLSError.configuration(
                    "the system trust store holds no certificates (is the ca-certificates package installed?)",
                    code: count < 0 ? count : 0)
            }
            return Int(count)
        case .file(let path):
            anchors = try Certificate.load(file: path)
        case .certificates(let certificates):
            guard !certificates.isEmpty else { throw TLSError.configuration("the trust roots hold no certificate") }
            anchors = certificates
        }
        for anchor in anchors {
            let rc = GnuTLSDatum.withNULTerminated(anchor.derBytes) { datum in
                gnutls_certificate_set_x509_trust_mem(credentials, &datum, GNUTLS_X509_FMT_DER)
            }
            guard rc >= 0 else {
                throw TLSError.configuration("cannot add trust anchor '\(anchor.subject)'", code: rc)
            }
        }
        return anchors.count
    }
}
