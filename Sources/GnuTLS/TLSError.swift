internal import CGnuTLS

import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// The one error type of the library.
///
/// Every failure carries the GnuTLS error code behind it (0 when the failure is the library's own, such as a
/// missing file), that code's symbolic name, and a sentence a person can act on. Certificate verification
/// failures also carry the decoded ``VerificationFailure``.
public struct TLSError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The broad class of a failure, for programs that react differently to each.
    public enum Kind: String, Sendable, Equatable {
        /// The configuration cannot be used: a missing or unparsable file, a key that does not match its
        /// certificate, an invalid priority string or ALPN list.
        case configuration
        /// The peer's certificate did not pass verification; see ``TLSError/verification``.
        case verification
        /// The two sides share no protocol version.
        case protocolVersion
        /// The two sides share no cipher suite, group or signature algorithm.
        case noSharedAlgorithm
        /// The server and client have no ALPN protocol in common.
        case noApplicationProtocol
        /// The peer sent a fatal alert; ``TLSError/alert`` names it.
        case alertReceived
        /// The peer's certificate is required but was not sent.
        case certificateRequired
        /// The transport ended without a close_notify alert: the data may have been cut short.
        case truncated
        /// The peer's bytes are not TLS, or break the protocol.
        case protocolViolation
        /// The operation is not valid in the session's current state (for example, writing before the
        /// handshake completed, or after close).
        case invalidState
        /// A time limit passed: the handshake took too long, or the peer sent nothing within the idle timeout.
        case timeout
        /// Any other GnuTLS failure; ``TLSError/codeName`` tells which.
        case other
    }

    /// What kind of failure this is.
    public var kind: Kind
    /// The GnuTLS error code (`GNUTLS_E_*`), or 0 when the failure did not come from GnuTLS.
    public var code: Int32
    /// The symbolic name of ``code`` (for example `GNUTLS_E_UNSUPPORTED_VERSION_PACKET`), or an empty string.
    public var codeName: String
    /// A sentence that says what went wrong in words a person can act on.
    public var reason: String
    /// For ``Kind/verification`` failures: why the certificate was refused.
    public var verification: VerificationFailure?
    /// For ``Kind/alertReceived`` and similar: the name of the alert the peer sent, if any.
    public var alert: String?

    /// Creates an error. Most errors are made by the library itself; this is public so that layers above
    /// (the NIO handler, the commands) can report their own failures in the same shape.
    public init(
        kind: Kind, code: Int32 = 0, codeName: String = "", reason: String,
        verification: VerificationFailure? = nil, alert: String? = nil
    ) {
        self.kind = kind
        self.code = code
        self.codeName = codeName
        self.reason = reason
        self.verification = verification
        self.alert = alert
    }

    /// The reason, followed by the GnuTLS code name when there is one.
    public var description: String {
        codeName.isEmpty ? reason : "\(reason) (\(codeName))"
    }

    /// A configuration error that names what was wrong.
    static func configuration(_ reason: String, code: Int32 = 0) -> TLSError {
        TLSError(kind: .configuration, code: code, codeName: code == 0 ? "" : Self.name(of: code), reason: reason)
    }

    /// An error for a session in the wrong state.
    static func invalidState(_ reason: String) -> TLSError {
        TLSError(kind: .invalidState, reason: reason)
    }

    /// The symbolic name GnuTLS gives an error code.
    static func name(of code: Int32) -> String {
        guard let name = gnutls_strerror_name(code) else { return "GNUTLS_E_\(code)" }
        return String(cString: name)
    }

    /// GnuTLS's own description of an error code.
    static func message(of code: Int32) -> String {
        guard let text = gnutls_strerror(code) else { return "GnuTLS error \(code)" }
        return String(cString: text)
    }

    /// Maps a GnuTLS error code from a session operation to an error a person can read.
    ///
    /// - Parameters:
    ///   - code: the negative GnuTLS return code.
    ///   - receivedAlert: the alert the peer sent, when the code says one was received.
    ///   - context: what was being done, prefixed to the generic message ("handshake failed").
    static func session(code: Int32, receivedAlert: gnutls_alert_description_t?, context: String) -> TLSError {
        let name = Self.name(of: code)
        switch code {
        case GNUTLS_E_FATAL_ALERT_RECEIVED:
            let alert = receivedAlert.map(Self.alertName) ?? "unknown"
            let kind: Kind
            var reason = "\(context): the peer sent a fatal '\(alert)' alert"
            switch receivedAlert?.rawValue {
            case GNUTLS_A_PROTOCOL_VERSION.rawValue:
                kind = .protocolVersion
                reason += " (it does not accept any protocol version offered)"
            case GNUTLS_A_HANDSHAKE_FAILURE.rawValue, GNUTLS_A_INSUFFICIENT_SECURITY.rawValue:
                kind = .noSharedAlgorithm
                reason += " (no cipher suite, group or signature algorithm in common)"
            case GNUTLS_A_NO_APPLICATION_PROTOCOL.rawValue:
                kind = .noApplicationProtocol
                reason += " (no ALPN protocol in common)"
            case GNUTLS_A_BAD_CERTIFICATE.rawValue, GNUTLS_A_UNKNOWN_CA.rawValue,
                GNUTLS_A_CERTIFICATE_EXPIRED.rawValue, GNUTLS_A_CERTIFICATE_UNKNOWN.rawValue,
                GNUTLS_A_UNSUPPORTED_CERTIFICATE.rawValue, GNUTLS_A_CERTIFICATE_REVOKED.rawValue:
                kind = .alertReceived
                reason += " (it refused our certificate, or the lack of one)"
            case GNUTLS_A_CERTIFICATE_REQUIRED.rawValue:
                kind = .certificateRequired
                reason += " (it requires a client certificate)"
            default:
                kind = .alertReceived
            }
            return TLSError(kind: kind, code: code, codeName: name, reason: reason, alert: alert)
        case GNUTLS_E_UNSUPPORTED_VERSION_PACKET:
            return TLSError(
                kind: .protocolVersion, code: code, codeName: name,
                reason: "\(context): the peer offered no protocol version we accept (TLS 1.2 or newer by default)")
        case GNUTLS_E_NO_CIPHER_SUITES, GNUTLS_E_UNKNOWN_CIPHER_SUITE, GNUTLS_E_NO_COMMON_KEY_SHARE,
            GNUTLS_E_UNSUPPORTED_SIGNATURE_ALGORITHM, GNUTLS_E_INSUFFICIENT_CREDENTIALS,
            GNUTLS_E_ECC_UNSUPPORTED_CURVE:
            return TLSError(
                kind: .noSharedAlgorithm, code: code, codeName: name,
                reason: "\(context): no cipher suite, group or signature algorithm in common with the peer "
                    + "(\(Self.message(of: code)))")
        case GNUTLS_E_NO_APPLICATION_PROTOCOL:
            return TLSError(
                kind: .noApplicationProtocol, code: code, codeName: name,
                reason: "\(context): the peer offered no ALPN protocol we accept")
        case GNUTLS_E_NO_CERTIFICATE_FOUND, GNUTLS_E_CERTIFICATE_REQUIRED:
            return TLSError(
                kind: .certificateRequired, code: code, codeName: name,
                reason: "\(context): the peer did not send the certificate that is required")
        case GNUTLS_E_PREMATURE_TERMINATION, GNUTLS_E_PULL_ERROR:
            return TLSError(
                kind: .truncated, code: code, codeName: name,
                reason: "\(context): the connection was closed without a TLS close_notify (possible truncation)")
        case GNUTLS_E_UNEXPECTED_PACKET_LENGTH, GNUTLS_E_UNEXPECTED_PACKET,
            GNUTLS_E_UNEXPECTED_HANDSHAKE_PACKET, GNUTLS_E_RECORD_OVERFLOW, GNUTLS_E_DECRYPTION_FAILED,
            GNUTLS_E_ILLEGAL_PARAMETER, GNUTLS_E_RECEIVED_ILLEGAL_PARAMETER, GNUTLS_E_MAC_VERIFY_FAILED:
            return TLSError(
                kind: .protocolViolation, code: code, codeName: name,
                reason: "\(context): the peer's bytes are not valid TLS (\(Self.message(of: code)))")
        default:
            return TLSError(kind: .other, code: code, codeName: name, reason: "\(context): \(Self.message(of: code))")
        }
    }

    /// The name GnuTLS gives an alert ("protocol version", "unknown CA").
    static func alertName(_ alert: gnutls_alert_description_t) -> String {
        guard let name = gnutls_alert_get_name(alert) else { return "alert \(alert.rawValue)" }
        return String(cString: name)
    }
}

/// Why a peer's certificate was refused.
public struct VerificationFailure: Sendable, Equatable, CustomStringConvertible {
    /// One reason for refusal. A certificate can fail for several at once.
    public enum Reason: Sendable, Equatable, CustomStringConvertible {
        /// The certificate's validity ended at the given date.
        case expired(Date)
        /// The certificate is valid only from the given date on.
        case notYetValid(Date)
        /// No trusted certificate authority signed the chain.
        case untrustedIssuer
        /// The certificate signed itself and is not itself trusted.
        case selfSigned
        /// The certificate was not issued for the name that was checked.
        case hostnameMismatch
        /// The certificate was revoked.
        case revoked
        /// The chain uses an algorithm considered insecure (for example SHA-1 or a short key).
        case insecureAlgorithm
        /// A signature in the chain does not verify.
        case badSignature
        /// The issuer may not issue certificates (not a CA), or a constraint of the chain was broken.
        case invalidIssuer
        /// The certificate's key usage or purpose does not allow this use.
        case wrongPurpose
        /// The peer sent no certificate although one was required.
        case noCertificate
        /// Another reason, as GnuTLS words it.
        case other(String)

        /// The reason as a short lowercase phrase, so that several can be joined into one sentence.
        public var description: String {
            switch self {
            case .expired(let date): return "certificate expired on \(VerificationFailure.format(date))"
            case .notYetValid(let date): return "certificate is not valid until \(VerificationFailure.format(date))"
            case .untrustedIssuer: return "certificate is signed by an untrusted or unknown issuer"
            case .selfSigned: return "certificate is self-signed and not trusted"
            case .hostnameMismatch: return "certificate does not match the requested name"
            case .revoked: return "certificate has been revoked"
            case .insecureAlgorithm: return "certificate chain uses an insecure algorithm"
            case .badSignature: return "a signature in the certificate chain does not verify"
            case .invalidIssuer: return "the issuer is not allowed to issue this certificate"
            case .wrongPurpose: return "certificate is not valid for this purpose"
            case .noCertificate: return "the peer sent no certificate"
            case .other(let text): return text
            }
        }
    }

    /// All the reasons the certificate was refused.
    public var reasons: [Reason]
    /// The host name or IP address that was checked, when one was.
    public var checkedName: String?
    /// The names the certificate holds (DNS and IP subject alternative names, or the common name).
    public var certificateNames: [String]
    /// The raw GnuTLS status bits (`gnutls_certificate_status_t`), for logging.
    public var status: UInt32

    /// Creates a failure description.
    public init(reasons: [Reason], checkedName: String?, certificateNames: [String], status: UInt32) {
        self.reasons = reasons
        self.checkedName = checkedName
        self.certificateNames = certificateNames
        self.status = status
    }

    /// One sentence with every reason; a name mismatch names both the name asked for and the names held.
    public var description: String {
        reasons.map { reason -> String in
            if case .hostnameMismatch = reason {
                let held = certificateNames.isEmpty ? "no names" : certificateNames.map { "'\($0)'" }.joined(separator: ", ")
                return "certificate for \(held) does not match the requested name '\(checkedName ?? "")'"
            }
            return reason.description
        }.joined(separator: "; ")
    }

    static func format(_ date: Date) -> String {
        date.formatted(.iso8601)
    }

    /// Decodes GnuTLS verification status bits against the peer's chain.
    static func decode(status: UInt32, chain: [Certificate], checkedName: String?) -> VerificationFailure {
        var reasons: [Reason] = []
        let leaf = chain.first
        func has(_ flag: gnutls_certificate_status_t) -> Bool { status & flag.rawValue != 0 }
        if has(GNUTLS_CERT_EXPIRED) {
            // Name the first certificate in the chain whose validity has ended.
            let now = Date()
            let date = chain.first(where: { $0.notValidAfter < now })?.notValidAfter ?? leaf?.notValidAfter
            reasons.append(.expired(date ?? now))
        }
        if has(GNUTLS_CERT_NOT_ACTIVATED) {
            let now = Date()
            let date = chain.first(where: { $0.notValidBefore > now })?.notValidBefore ?? leaf?.notValidBefore
            reasons.append(.notYetValid(date ?? now))
        }
        if has(GNUTLS_CERT_SIGNER_NOT_FOUND) {
            if chain.count == 1, let leaf, leaf.isSelfIssued {
                reasons.append(.selfSigned)
            } else {
                reasons.append(.untrustedIssuer)
            }
        }
        if has(GNUTLS_CERT_UNEXPECTED_OWNER) { reasons.append(.hostnameMismatch) }
        if has(GNUTLS_CERT_REVOKED) { reasons.append(.revoked) }
        if has(GNUTLS_CERT_INSECURE_ALGORITHM) { reasons.append(.insecureAlgorithm) }
        if has(GNUTLS_CERT_SIGNATURE_FAILURE) { reasons.append(.badSignature) }
        if has(GNUTLS_CERT_SIGNER_NOT_CA) || has(GNUTLS_CERT_SIGNER_CONSTRAINTS_FAILURE) {
            reasons.append(.invalidIssuer)
        }
        if has(GNUTLS_CERT_PURPOSE_MISMATCH) { reasons.append(.wrongPurpose) }
        if reasons.isEmpty {
            var text = gnutls_datum_t()
            if gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0) == 0,
                let data = text.data
            {
                reasons.append(.other(String(cString: data)))
                cgnutls_free(data)
            } else {
                reasons.append(.other("certificate verification failed (status 0x\(String(status, radix: 16)))"))
            }
        }
        let names = leaf.map { $0.names } ?? []
        return VerificationFailure(reasons: reasons, checkedName: checkedName, certificateNames: names, status: status)
    }
}
