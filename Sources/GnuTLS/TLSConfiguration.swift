import FoundationEssentials

/// Everything a TLS endpoint needs to know, as a plain value with secure defaults.
///
/// Make one with ``client(serverName:trustRoots:verification:identity:policy:applicationProtocols:)`` or
/// ``server(identity:clientAuthentication:trustRoots:policy:applicationProtocols:)``, adjust it, then build a
/// ``TLSContext`` once and share it between connections. The defaults are: TLS 1.3 and 1.2 only with
/// forward-secret AEAD suites (Mozilla's "intermediate" profile), the system's trust store, and full
/// verification of the peer's chain and host name.
public struct TLSConfiguration: Sendable {
    /// Which end of the connection this configuration is for.
    public enum Role: Sendable, Hashable {
        /// Initiates connections and verifies the server.
        case client
        /// Accepts connections and presents a certificate.
        case server
    }

    /// The certificate authorities trusted to vouch for the peer.
    public enum TrustRoots: Sendable {
        /// The operating system's store (on Debian, the ca-certificates bundle GnuTLS was built with).
        case system
        /// A PEM or DER file of trust anchors. It replaces the system store.
        case file(String)
        /// Trust anchors in memory. They replace the system store.
        case certificates([Certificate])
        /// Every regular file in a directory, each PEM (one or more certificates) or DER (one), like OpenSSL's
        /// `-CApath` (hidden files and subdirectories are skipped). It replaces the system store.
        case directory(String)
    }

    /// Certificate revocation lists: a peer whose certificate one of them revokes is refused (with the date
    /// of revocation). A CRL must be signed by the CA that issued the certificates it lists.
    public enum RevocationList: Sendable {
        /// A PEM (one or more `X509 CRL` blocks) or DER (one CRL) file.
        case file(String)
        /// CRLs in memory, parsed already.
        case lists([CertificateRevocationList])
    }

    /// How much of the peer's certificate is checked.
    public enum CertificateVerification: Sendable, Hashable {
        /// The chain must lead to a trusted root and the certificate must be valid for the server name and for
        /// TLS server authentication (its extended key usage, when it has one).
        case full
        /// The chain must lead to a trusted root and the certificate must allow TLS server authentication; the
        /// name is not checked.
        ///
        /// - Warning: any certificate from a trusted CA is accepted, whoever it was issued to.
        case chainOnly
        /// Nothing is checked.
        ///
        /// - Warning: anyone on the path can impersonate the peer. Use only for testing.
        case insecureNoVerification
    }

    /// Whether and how a server asks for client certificates. One value per policy, so that a half-configured
    /// mutual TLS (asking for a certificate but accepting any) cannot happen by accident.
    public enum ClientAuthentication: Sendable, Hashable {
        /// No client certificate is asked for.
        case none
        /// A client certificate is asked for but not verified.
        ///
        /// - Warning: any certificate, from anyone, is accepted. Useful only when the application checks it.
        case requestWithoutVerification
        /// A client certificate is required but not verified.
        ///
        /// - Warning: any certificate, from anyone, is accepted. Useful only when the application checks it.
        case requireAnyWithoutVerification
        /// A client certificate is asked for; one that is sent must verify against the trust roots and allow TLS
        /// client authentication (its extended key usage, when it has one).
        case verifyIfGiven
        /// A client certificate is required, must verify against the trust roots and allow TLS client
        /// authentication: mutual TLS.
        case requireAndVerify
    }

    /// The protocol versions, cipher suites and groups allowed, by name or as a raw GnuTLS priority string.
    public enum ProtocolPolicy: Sendable, Hashable, CustomStringConvertible {
        /// Mozilla's "intermediate" profile: TLS 1.3 and 1.2, forward-secret AEAD suites only (no static-RSA
        /// key exchange, no CBC, no CCM), groups X25519, P-256, P-384 and ffdhe2048. The default.
        case intermediate
        /// Mozilla's "modern" profile: TLS 1.3 only.
        case modern
        /// A raw GnuTLS priority string, validated when the context is built.
        ///
        /// - Warning: a raw string can allow old protocol versions and weak ciphers (`NORMAL` alone allows
        ///   TLS 1.0). Check it with `gnutls-cli --priority STRING --list`.
        case custom(String)

        /// The GnuTLS priority string this policy stands for.
        public var priorityString: String {
            switch self {
            case .intermediate:
                return "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
                    + ":-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:-MAC-ALL:+AEAD"
                    + ":-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:+DHE-RSA"
                    + ":-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1:+GROUP-FFDHE2048"
                    + ":-SIGN-RSA-SHA1:-SIGN-ECDSA-SHA1"
            case .modern:
                // The TLS 1.2 key exchanges stay listed (TLS 1.3 ignores them) so that a TLS 1.2-only peer is
                // told "protocol version", not "no shared cipher".
                return "NORMAL:-VERS-ALL:+VERS-TLS1.3"
                    + ":-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:-MAC-ALL:+AEAD"
                    + ":-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA"
                    + ":-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1"
                    + ":-SIGN-RSA-SHA1:-SIGN-ECDSA-SHA1"
            case .custom(let string):
                return string
            }
        }

        /// The profile's name and the TLS versions it allows, or the raw string of a custom policy.
        public var description: String {
            switch self {
            case .intermediate: return "intermediate (TLS 1.3, 1.2)"
            case .modern: return "modern (TLS 1.3)"
            case .custom(let string): return "custom '\(string)'"
            }
        }
    }

    /// Client or server.
    public var role: Role
    /// The certificate chains and keys this side presents, each with its OCSP response. Servers need at least
    /// one; a client presents the first (mutual TLS).
    ///
    /// A server serves the identity whose certificate names match the name the client asks for (SNI) and whose
    /// key suits the client's signature algorithms, so an RSA and an ECDSA certificate for one name both work;
    /// the first identity is served when the client sends no name or one that none covers.
    public var identities: [Identity]
    /// The first of ``identities``; setting it replaces them all.
    public var identity: Identity? {
        get { identities.first }
        set { identities = newValue.map { [$0] } ?? [] }
    }
    /// Who is trusted to vouch for the peer's certificate.
    public var trustRoots: TrustRoots
    /// How the server's certificate is checked (clients).
    public var certificateVerification: CertificateVerification
    /// Whether client certificates are asked for and checked (servers).
    public var clientAuthentication: ClientAuthentication
    /// Versions, suites and groups.
    public var policy: ProtocolPolicy
    /// ALPN protocol names in order of preference; empty for no ALPN. At most 8 names of 1 to 32 bytes.
    public var applicationProtocols: [String]
    /// The name sent as SNI and checked against the server's certificate (clients). An IP literal is checked
    /// as an IP address and not sent as SNI. Each connection may override it.
    public var serverName: String?
    /// Whether a server issues session tickets so clients can resume sessions without a full handshake; for a
    /// client, whether it asks for and offers them (without: no TLS 1.3 resumption data, and TLS 1.2 data
    /// resumes by session ID only, on a server with a session cache).
    public var sessionTickets: Bool
    /// Public keys the server's certificate must have one of (clients), checked *in addition to* chain and name
    /// verification, as curl's `--pinnedpubkey sha256//...`. Empty: no pinning.
    public var pinnedPublicKeys: [PublicKeyPin] = []
    /// Whether the server must staple a valid OCSP response for its certificate (clients). Without it, a
    /// response is still asked for and checked when it comes, and a certificate marked "must staple" (TLS
    /// feature status_request) is refused without one.
    public var requiresOCSPStaple = false
    /// The application's own check of the peer's certificate chain, run after the library's verification
    /// succeeded (or, when the peer is not verified, on whatever it sent). Its rejection ends the handshake
    /// with a `bad_certificate` alert and an error of kind ``TLSError/Kind/rejectedByApplication``.
    public var peerCheck: PeerCheck?
    /// Whether a server's certificate request names the CAs it trusts (servers with client authentication).
    /// Off by default: with it, a GnuTLS client withholds a certificate whose issuer is not listed, and the
    /// refusal then reads "no certificate" instead of naming the untrusted issuer.
    public var sendsCertificateAuthorityNames = false
    /// Chooses the context for each connection from its ClientHello (servers): Python's `sni_callback`,
    /// swift-nio-ssl's `sslContextCallback`. The answer may come later, from any thread; the handshake waits
    /// for it (within the handshake timeout). Nil: every connection uses this configuration.
    public var contextSelector: ContextSelector?
    /// Trust anchors added to ``trustRoots`` rather than replacing them: `trustRoots: .system` with
    /// `additionalTrustRoots: [.file("corp-ca.crt")]` trusts the system store *and* that file (as Python's
    /// `load_verify_locations` after `create_default_context`, or swift-nio-ssl's `additionalTrustRoots`).
    public var additionalTrustRoots: [TrustRoots] = []
    /// Revocation lists checked while verifying the peer's chain.
    public var revocationLists: [RevocationList] = []
    /// The most certificates the peer's chain may hold, its leaf included; a longer chain is refused before it
    /// is looked at. Nil: GnuTLS's default, ``VerificationFailure/maximumChainLength``. 1 to that value.
    public var maximumVerificationDepth: Int? = nil
    /// Called with one line in the NSS key log format (`LABEL CLIENT_RANDOM_HEX SECRET_HEX`, no newline) for
    /// each secret a session derives, so that a capture can be decrypted (Wireshark's "(Pre)-Master-Secret log
    /// filename"). Nil: no key log (GnuTLS's own `SSLKEYLOGFILE` handling is then left as it is).
    ///
    /// - Warning: the lines are the session keys. Anyone who has them and a capture reads the traffic.
    public var keyLog: (@Sendable (String) -> Void)? = nil
    /// The session-ticket master key (servers): nil for a fresh random one per context; a shared one lets several
    /// instances resume each other's sessions.
    public var ticketKey: TicketKey? = nil
    /// How long a server's sessions stay resumable (servers): the lifetime of the tickets it issues (TLS 1.3
    /// `ticket_lifetime`; a TLS 1.2 ticket or cached session older than this is refused) and, times three,
    /// GnuTLS's ticket-key rotation period (`gnutls_db_set_cache_expiration`). Whole seconds, 1 s to 7 days;
    /// nil: GnuTLS's 6 hours (keys rotate every 18 h). Instances that share a ``ticketKey`` must share this too,
    /// or they derive different keys. A resumption never extends the first session's lifetime.
    public var sessionLifetime: Duration? = nil
    /// Where a server keeps TLS 1.2 sessions for resumption by session ID (clients without tickets); nil for
    /// none. ``InMemorySessionCache`` is the bounded default; an application can plug in a shared store.
    public var sessionCache: (any TLSSessionCache)? = nil

    /// A client configuration: verifies the server fully against the system trust store by default.
    public static func client(
        serverName: String? = nil,
        trustRoots: TrustRoots = .system,
        verification: CertificateVerification = .full,
        identity: Identity? = nil,
        policy: ProtocolPolicy = .intermediate,
        applicationProtocols: [String] = []
    ) -> TLSConfiguration {
        TLSConfiguration(
            role: .client, identities: identity.map { [$0] } ?? [], trustRoots: trustRoots, certificateVerification: verification,
            clientAuthentication: .none, policy: policy, applicationProtocols: applicationProtocols,
            serverName: serverName, sessionTickets: true)
    }

    /// A server configuration: presents `identity`; asks for no client certificate unless told to.
    ///
    /// - Parameters:
    ///   - identity: the certificate chain and private key to present.
    ///   - clientAuthentication: whether client certificates are asked for and verified (mutual TLS).
    ///   - trustRoots: the CAs client certificates must chain to, when `clientAuthentication` verifies.
    ///   - policy: the protocol versions, cipher suites and groups allowed.
    ///   - applicationProtocols: ALPN protocol names in order of preference; empty for no ALPN.
    public static func server(
        identity: Identity,
        clientAuthentication: ClientAuthentication = .none,
        trustRoots: TrustRoots = .system,
        policy: ProtocolPolicy = .intermediate,
        applicationProtocols: [String] = []
    ) -> TLSConfiguration {
        server(
            identities: [identity], clientAuthentication: clientAuthentication, trustRoots: trustRoots,
            policy: policy, applicationProtocols: applicationProtocols)
    }

    /// A server configuration with several identities, chosen per connection by the name the client asks for
    /// (see ``identities``); the first is the default.
    public static func server(
        identities: [Identity],
        clientAuthentication: ClientAuthentication = .none,
        trustRoots: TrustRoots = .system,
        policy: ProtocolPolicy = .intermediate,
        applicationProtocols: [String] = []
    ) -> TLSConfiguration {
        TLSConfiguration(
            role: .server, identities: identities, trustRoots: trustRoots, certificateVerification: .full,
            clientAuthentication: clientAuthentication, policy: policy, applicationProtocols: applicationProtocols,
            serverName: nil, sessionTickets: true)
    }
}
