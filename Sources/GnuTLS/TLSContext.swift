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
    /// The certificate chain this side presents, if any (leaf first): the first of ``certificateChains``.
    public let certificateChain: [Certificate]
    /// Every identity's chain, in the configuration's order.
    public let certificateChains: [[Certificate]]
    /// Every identity's stapled OCSP response as loaded (nil where none was given), in the same order.
    public let ocspResponses: [OCSPStatus?]

    /// The TLS versions the priority string enables, newest first.
    public let enabledVersions: [TLSVersion]
    /// The cipher suites the priority string enables, in priority order (GnuTLS's names, for example
    /// `TLS_AES_128_GCM_SHA256`, `TLS_ECDHE_RSA_AES_128_CBC_SHA1`).
    public var enabledCipherSuites: [String] { priority.cipherSuites.map(\.name) }
    /// The enabled cipher suites that are not AEAD (CBC with a MAC, stream ciphers, NULL): the ones a raw
    /// priority string should not allow. Empty for the named policies.
    public var nonAEADCipherSuites: [String] { priority.cipherSuites.filter { !$0.isAEAD }.map(\.name) }
    /// The revocation lists peers' chains are checked against.
    public let revocationLists: [CertificateRevocationList]
    /// The most certificates a peer's chain may hold.
    public let maximumVerificationDepth: Int
    /// The key log callback, read by each session (see ``TLSConfiguration/keyLog``).
    let keyLog: (@Sendable (String) -> Void)?
    /// The same, as a bit set in ``ClientHelloVersions`` form.
    let enabledVersionBits: UInt8

    let credentials: CertificateCredentials
    let priority: PriorityCache
    /// Server session-ticket key, generated once per context; nil for clients and when tickets are off.
    let ticketKey: SessionTicketKey?
    /// The master key a reload replaced, still accepted for tickets made under it until one rotation period has
    /// passed (servers with a configured ``TLSConfiguration/ticketKey`` that changed); nil otherwise.
    let previousTicketKey: PreviousTicketKey?
    /// ``TLSConfiguration/sessionLifetime`` in whole seconds, checked; nil for GnuTLS's default.
    let sessionLifetimeSeconds: UInt32?
    /// The server's TLS 1.2 session-ID cache, at an address given to each session; nil for clients and without one.
    let sessionCache: SessionCacheBox?
    /// ALPN names, handed to each session.
    let applicationProtocols: ApplicationProtocolList
    /// What sessions verify the peer's certificate against when that is the same for all of them (servers
    /// that verify client certificates, chain-only clients): made once, read by GnuTLS from any session.
    /// Nil otherwise; a client with full verification makes its own, with the server name.
    let sharedPeerVerification: PeerVerification?

    /// Whether sessions check the peer beyond GnuTLS's verification (pins, a required OCSP staple, the
    /// application's check), which takes our own verify callback.
    let hasOwnPeerChecks: Bool

    /// Builds a context.
    ///
    /// - Throws: ``TLSError`` of kind ``TLSError/Kind/configuration`` naming what is wrong.
    public convenience init(configuration: TLSConfiguration) throws(TLSError) {
        try self.init(configuration: configuration, replacing: nil)
    }

    /// Builds a context that takes over from `previous` (a reload): it keeps the previous context's generated
    /// session-ticket key, so that tickets issued before the reload still resume.
    init(configuration: TLSConfiguration, replacing previous: TLSContext?) throws(TLSError) {
        self.configuration = configuration
        let protocols = configuration.applicationProtocols
        guard protocols.count <= 8 else {
            throw TLSError.configuration("at most 8 ALPN protocols can be offered, not \(protocols.count)")
        }
        for name in protocols where name.utf8.isEmpty || name.utf8.count > 32 {
            throw TLSError.configuration("ALPN protocol '\(name)' must be 1 to 32 bytes long")
        }
        if configuration.role == .server && configuration.identities.isEmpty {
            throw TLSError.configuration("a server needs a certificate chain and private key")
        }
        if configuration.role == .client && configuration.identities.count > 1 {
            throw TLSError.configuration("a client presents one certificate chain, not \(configuration.identities.count)")
        }

        hasOwnPeerChecks = !configuration.pinnedPublicKeys.isEmpty || configuration.peerCheck != nil
            || (configuration.role == .client && configuration.requiresOCSPStaple)
        if configuration.role == .server && !configuration.pinnedPublicKeys.isEmpty {
            throw TLSError.configuration("public-key pins are for clients; a server checks client certificates with a peer check")
        }

        // Each handle's owner frees it if a later step throws.
        let credentials = try CertificateCredentials()
        let priority = try PriorityCache(configuration.policy.priorityString)
        let versions = priority.versions
        applicationProtocols = ApplicationProtocolList(protocols)
        enabledVersions = versions.sorted { $0.wireValue > $1.wireValue }
        enabledVersionBits = versions.reduce(0) { $0 | ClientHelloVersions.bit($1.wireValue) }
        if let lifetime = configuration.sessionLifetime {
            let seconds = lifetime.components.seconds
            guard lifetime.components.attoseconds == 0, (1...604_800).contains(seconds) else {
                throw TLSError.configuration("the session lifetime must be whole seconds from 1 s to 7 days, not \(lifetime)")
            }
            sessionLifetimeSeconds = UInt32(seconds)
        } else {
            sessionLifetimeSeconds = nil
        }
        if configuration.role == .server && configuration.sessionTickets {
            // A generated key carries over a reload; a configured one is read again.
            let key: SessionTicketKey
            if configuration.ticketKey == nil, let carried = previous?.ticketKey {
                key = carried
            } else {
                key = try SessionTicketKey(configuration.ticketKey)
            }
            ticketKey = key
            // A key that changed is kept as the previous one for one rotation period; the same key read again
            // keeps the previous one there was (until its own period ends).
            let now = PreviousTicketKey.now
            if let replaced = previous?.ticketKey, replaced !== key, !replaced.hasSameBytes(as: key) {
                let period = SessionTicketKey.rotationPeriod(lifetime: Int(sessionLifetimeSeconds ?? 21_600))
                previousTicketKey = PreviousTicketKey(key: replaced, replacedAt: now, period: period)
            } else if let kept = previous?.previousTicketKey, kept.isKept(at: now) {
                previousTicketKey = kept
            } else {
                previousTicketKey = nil
            }
        } else {
            ticketKey = nil
            previousTicketKey = nil
        }
        sessionCache = configuration.role == .server ? configuration.sessionCache.map(SessionCacheBox.init) : nil
        keyLog = configuration.keyLog
        let depth = configuration.maximumVerificationDepth ?? VerificationFailure.maximumChainLength
        guard (1...VerificationFailure.maximumChainLength).contains(depth) else {
            throw TLSError.configuration(
                "the maximum verification depth must be 1 to \(VerificationFailure.maximumChainLength), not \(depth)")
        }
        maximumVerificationDepth = depth
        var lists: [CertificateRevocationList] = []
        for source in configuration.revocationLists {
            switch source {
            case .file(let path): lists += try CertificateRevocationList.load(file: path)
            case .lists(let given): lists += given
            }
        }
        revocationLists = lists

        switch (configuration.role, configuration.clientAuthentication, configuration.certificateVerification) {
        case (.server, .verifyIfGiven, _), (.server, .requireAndVerify, _):
            sharedPeerVerification = PeerVerification(purpose: .clientAuthentication, name: nil)
        case (.client, _, .chainOnly):
            sharedPeerVerification = PeerVerification(purpose: .serverAuthentication, name: nil)
        default:
            sharedPeerVerification = nil
        }

        let loaded = try IdentityLoader.load(configuration.identities, into: credentials)
        certificateChains = loaded.map(\.chain)
        certificateChain = certificateChains.first ?? []
        ocspResponses = loaded.map(\.ocsp)
        trustAnchorCount = try TLSContext.loadTrust(configuration, into: credentials.handle)
        if trustAnchorCount > 0 {
            try TLSContext.loadRevocation(lists, depth: depth, into: credentials.handle)
        }
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
        var count = try loadAnchors(configuration.trustRoots, into: credentials)
        for roots in configuration.additionalTrustRoots {
            count += try loadAnchors(roots, into: credentials)
        }
        return count
    }

    /// Adds revocation lists and the verification depth to the credentials (after the trust anchors).
    private static func loadRevocation(
        _ lists: [CertificateRevocationList], depth: Int, into credentials: gnutls_certificate_credentials_t
    ) throws(TLSError) {
        for list in lists {
            let rc = GnuTLSDatum.withNULTerminated(list.derBytes) { datum in
                gnutls_certificate_set_x509_crl_mem(credentials, &datum, GNUTLS_X509_FMT_DER)
            }
            guard rc >= 0 else {
                throw TLSError.configuration("cannot use the CRL issued by '\(list.issuer)'", code: rc)
            }
        }
        if depth != VerificationFailure.maximumChainLength {
            // 16384 bits: GnuTLS's default limit on key sizes, left as it is.
            gnutls_certificate_set_verify_limits(credentials, 16384, UInt32(depth))
        }
    }

    /// Loads one source of trust anchors and returns how many it held.
    private static func loadAnchors(
        _ roots: TLSConfiguration.TrustRoots, into credentials: gnutls_certificate_credentials_t
    ) throws(TLSError) -> Int {
        let anchors: [Certificate]
        switch roots {
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
        case .directory(let path):
            anchors = try loadDirectory(path)
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

    /// Every certificate in the regular files of a directory (hidden files and subdirectories skipped), in
    /// the order of the file names.
    static func loadDirectory(_ path: String) throws(TLSError) -> [Certificate] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: path).sorted()
        } catch {
            var info = stat()
            let why: String
            if stat(path, &info) != 0 {
                why = String(cString: strerror(errno)).lowercased()
            } else {
                why = info.st_mode & S_IFMT == S_IFDIR ? "it cannot be read" : "it is not a directory"
            }
            throw TLSError.configuration("cannot read the CA directory '\(path)': \(why)")
        }
        var anchors: [Certificate] = []
        for name in names where !name.hasPrefix(".") {
            let file = path.hasSuffix("/") ? path + name : path + "/" + name
            // Symbolic links are followed (c_rehash makes them); directories and the like are skipped.
            var info = stat()
            guard stat(file, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { continue }
            anchors += try Certificate.load(file: file)
        }
        guard !anchors.isEmpty else {
            throw TLSError.configuration("the CA directory '\(path)' holds no certificate files")
        }
        return anchors
    }
}
