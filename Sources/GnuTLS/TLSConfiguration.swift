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

    /// This side's certificate chain and private key.
    public enum Identity: Sendable {
        /// PEM or DER files: the chain (leaf first) and the key, with a password for an encrypted key.
        case files(certificateChain: String, privateKey: String, password: String? = nil)
        /// Certificates and key already in memory.
        case certificates([Certificate], privateKey: PrivateKey)
    }

    /// The certificate authorities trusted to vouch for the peer.
    public enum TrustRoots: Sendable {
        /// The operating system's store (on Debian, the ca-certificates bundle GnuTLS was built with).
        case system
        /// A PEM or DER file of trust anchors. It replaces the system store.
        case file(String)
        /// Trust anchors in memory. They replace the system store.
        case certificates([Certificate])
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
    /// The certificate chain and key this side presents. Required for servers; optional for clients (mutual TLS).
    public var identity: Identity?
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
    /// Whether a server issues session tickets so clients can resume sessions without a full handshake.
    public var sessionTickets: Bool
    /// The session-ticket master key (servers): nil for a fresh random one per context; a shared one lets several
    /// instances resume each other's sessions.
    public var ticketKey: TicketKey? = nil
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
            role: .client, identity: identity, trustRoots: trustRoots, certificateVerification: verification,
            clientAuthentication: .none, policy: policy, applicationProtocols: applicationProtocols,
            serverName: serverName, sessionTickets: true)
    }

    /// A server configuration: presents `identity`; asks for no client certificate unless told to.
    ///
    /// - Parameter trustRoots: the CAs client certificates must chain to, when `clientAuthentication` verifies.
    public static func server(
        identity: Identity,
        clientAuthentication: ClientAuthentication = .none,
        trustRoots: TrustRoots = .system,
        policy: ProtocolPolicy = .intermediate,
        applicationProtocols: [String] = []
    ) -> TLSConfiguration {
        TLSConfiguration(
            role: .server, identity: identity, trustRoots: trustRoots, certificateVerification: .full,
            clientAuthentication: clientAuthentication, policy: policy, applicationProtocols: applicationProtocols,
            serverName: nil, sessionTickets: true)
    }
}
