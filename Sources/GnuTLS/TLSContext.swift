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
    /// The number of trust anchors loaded (from the system store or the configured file or certificates).
    public private(set) var trustAnchorCount: Int
    /// The certificate chain this side presents, if any (leaf first).
    public private(set) var certificateChain: [Certificate]

    /// The TLS versions the priority string enables, newest first.
    public private(set) var enabledVersions: [TLSVersion] = []
    /// The same, as a bit set in ``ClientHelloVersions`` form.
    private(set) var enabledVersionBits: UInt8 = 0

    let credentials: gnutls_certificate_credentials_t
    let priority: gnutls_priority_t
    /// Server session-ticket key, generated once per context.
    private let ticketKey: UnsafeMutablePointer<gnutls_datum_t>
    /// ALPN names as datums over one allocation, handed to each session (GnuTLS copies them).
    let alpnDatums: UnsafeMutableBufferPointer<gnutls_datum_t>
    private let alpnStorage: UnsafeMutableRawBufferPointer

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

        var credentials: gnutls_certificate_credentials_t?
        var rc = gnutls_certificate_allocate_credentials(&credentials)
        guard rc == 0, let credentials else { throw TLSError.configuration("cannot allocate credentials", code: rc) }
        self.credentials = credentials

        var priority: gnutls_priority_t?
        let string = configuration.policy.priorityString
        var errorOffset = 0
        rc = string.withCString { base -> Int32 in
            var errorPosition: UnsafePointer<CChar>?
            let rc = gnutls_priority_init2(&priority, base, &errorPosition, 0)
            if let errorPosition { errorOffset = base.distance(to: errorPosition) }
            return rc
        }
        guard rc == 0, let priority else {
            gnutls_certificate_free_credentials(credentials)
            let utf8 = Array(string.utf8)
            let offset = min(max(errorOffset, 0), utf8.count)
            let rest = String(decoding: utf8[offset...], as: UTF8.self)
            let token = rest.split(separator: ":", maxSplits: 1).first.map(String.init) ?? rest
            throw TLSError.configuration(
                "priority string is invalid at position \(offset): '\(token)' (in '\(string)')", code: rc)
        }
        self.priority = priority
        var list: UnsafePointer<UInt32>?
        let count = gnutls_priority_protocol_list(priority, &list)
        var versions: [TLSVersion] = []
        if count > 0, let list {
            for index in 0..<Int(count) {
                if let version = TLSVersion(gnutls_protocol_t(list[index])) { versions.append(version) }
            }
        }

        // ALPN storage: one allocation for the names, one for the datums.
        let total = protocols.reduce(0) { $0 + $1.utf8.count }
        alpnStorage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(total, 1), alignment: 1)
        alpnDatums = UnsafeMutableBufferPointer<gnutls_datum_t>.allocate(capacity: max(protocols.count, 1))
        var offset = 0
        for (index, name) in protocols.enumerated() {
            let bytes = Array(name.utf8)
            let start = alpnStorage.baseAddress!.advanced(by: offset)
            bytes.withUnsafeBytes { start.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            alpnDatums[index] = gnutls_datum_t(
                data: start.assumingMemoryBound(to: UInt8.self), size: UInt32(bytes.count))
            offset += bytes.count
        }

        enabledVersions = versions.sorted { $0.wireValue > $1.wireValue }
        enabledVersionBits = versions.reduce(0) { $0 | ClientHelloVersions.bit($1.wireValue) }
        ticketKey = UnsafeMutablePointer<gnutls_datum_t>.allocate(capacity: 1)
        ticketKey.initialize(to: gnutls_datum_t())
        certificateChain = []
        trustAnchorCount = 0
        // From here on, deinit frees what was allocated if a later step throws.

        if configuration.role == .server, configuration.sessionTickets {
            rc = gnutls_session_ticket_key_generate(ticketKey)
            guard rc == 0 else { throw TLSError.configuration("cannot generate a session ticket key", code: rc) }
        }

        if let identity = configuration.identity {
            certificateChain = try Self.loadIdentity(identity, into: credentials)
        }
        trustAnchorCount = try Self.loadTrust(configuration, into: credentials)
        if configuration.role == .server {
            _ = gnutls_certificate_set_known_dh_params(credentials, GNUTLS_SEC_PARAM_MEDIUM)
        }
    }

    deinit {
        gnutls_priority_deinit(priority)
        gnutls_certificate_free_credentials(credentials)
        if let data = ticketKey.pointee.data {
            memset(data, 0, Int(ticketKey.pointee.size))
            cgnutls_free(data)
        }
        ticketKey.deallocate()
        alpnStorage.deallocate()
        alpnDatums.deallocate()
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

    var ticketKeyPointer: UnsafePointer<gnutls_datum_t>? {
        ticketKey.pointee.data == nil ? nil : UnsafePointer(ticketKey)
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
        for certificate in chain {
            handles.append(try X509Certificate(der: certificate.derBytes, source: chainSource))
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
