internal import CGnuTLS

/// A purpose from a certificate's extended key usage extension, identified by its OID.
///
/// A TLS server's certificate must allow ``serverAuthentication`` and a client's ``clientAuthentication``.
/// A certificate without the extension may be used for any purpose (the rule of GnuTLS, OpenSSL and RFC 5280).
public struct KeyPurpose: Sendable, Hashable, CustomStringConvertible {
    /// The purpose's object identifier, for example `1.3.6.1.5.5.7.3.1`.
    public let oid: String

    /// Wraps an OID.
    public init(oid: String) {
        self.oid = oid
    }

    /// TLS server authentication (`serverAuth`).
    public static let serverAuthentication = KeyPurpose(oid: GNUTLS_KP_TLS_WWW_SERVER)
    /// TLS client authentication (`clientAuth`).
    public static let clientAuthentication = KeyPurpose(oid: GNUTLS_KP_TLS_WWW_CLIENT)
    /// Any purpose (`anyExtendedKeyUsage`).
    public static let any = KeyPurpose(oid: GNUTLS_KP_ANY)

    /// The purpose in words ("TLS server authentication"), or its OID when it has no common name.
    public var description: String {
        switch oid {
        case GNUTLS_KP_TLS_WWW_SERVER: return "TLS server authentication"
        case GNUTLS_KP_TLS_WWW_CLIENT: return "TLS client authentication"
        case GNUTLS_KP_CODE_SIGNING: return "code signing"
        case GNUTLS_KP_EMAIL_PROTECTION: return "e-mail protection"
        case GNUTLS_KP_TIME_STAMPING: return "time stamping"
        case GNUTLS_KP_OCSP_SIGNING: return "OCSP signing"
        case GNUTLS_KP_IPSEC_IKE: return "IPsec IKE"
        case GNUTLS_KP_MS_SMART_CARD_LOGON: return "smart card logon"
        case GNUTLS_KP_ANY: return "any purpose"
        default: return oid
        }
    }
}
