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
        /// The peer sent more than a limit allows (for example, before its handshake completed).
        case limitExceeded
        /// The application's own check of the peer's certificate (``TLSConfiguration/peerCheck``) refused it.
        case rejectedByApplication
        /// The server's ``TLSConfiguration/contextSelector`` failed for this connection.
        case contextSelectionFailed
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

    /// The name GnuTLS gives an alert ("protocol version", "unknown CA").
    static func alertName(_ alert: gnutls_alert_description_t) -> String {
        guard let name = gnutls_alert_get_name(alert) else { return "alert \(alert.rawValue)" }
        return String(cString: name)
    }
}
