internal import CGnuTLS

/// A TLS protocol version.
public enum TLSVersion: String, Sendable, Hashable, CustomStringConvertible {
    /// TLS 1.0 (RFC 2246), deprecated by RFC 8996. Only a custom policy can allow it.
    case tls10 = "TLS 1.0"
    /// TLS 1.1 (RFC 4346), deprecated by RFC 8996. Only a custom policy can allow it.
    case tls11 = "TLS 1.1"
    /// TLS 1.2 (RFC 5246).
    case tls12 = "TLS 1.2"
    /// TLS 1.3 (RFC 8446).
    case tls13 = "TLS 1.3"

    init?(_ protocol: gnutls_protocol_t) {
        switch `protocol` {
        case GNUTLS_TLS1_0: self = .tls10
        case GNUTLS_TLS1_1: self = .tls11
        case GNUTLS_TLS1_2: self = .tls12
        case GNUTLS_TLS1_3: self = .tls13
        default: return nil
        }
    }

    /// The version's usual name, for example `TLS 1.3`.
    public var description: String { rawValue }

    /// The version's value on the wire (0x0303 for TLS 1.2).
    var wireValue: UInt16 {
        switch self {
        case .tls10: return 0x0301
        case .tls11: return 0x0302
        case .tls12: return 0x0303
        case .tls13: return 0x0304
        }
    }
}
