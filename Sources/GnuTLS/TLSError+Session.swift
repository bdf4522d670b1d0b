internal import CGnuTLS

/// How a failed session operation becomes a ``TLSError``: the one place where GnuTLS codes are classified into
/// kinds and reasons, and where it is decided which alert, if any, the peer is sent.
extension TLSError {
    /// The alert a session sends the peer after a failure.
    enum PeerAlert: Equatable {
        /// None: the peer's own alert or the transport ended the session.
        case none
        /// A fatal protocol_version alert, for a client that offered no version we accept (GnuTLS would
        /// answer with a handshake_failure alert).
        case protocolVersion
        /// The alert GnuTLS picks for the code (`gnutls_alert_send_appropriate`).
        case appropriate
    }

    /// Classifies a failed session operation.
    ///
    /// - Parameters:
    ///   - code: the negative GnuTLS return code.
    ///   - session: the session it failed in. Its role, state, verification status and the versions the
    ///     client offered say more than the code alone.
    ///   - context: what was being done, prefixed to the reason ("handshake failed").
    /// - Returns: the error, and the alert to answer the peer with.
    static func session(code rc: Int32, in session: TLSSession, context description: String) -> (TLSError, PeerAlert) {
        let role = session.context.configuration.role
        if let failure = session.callbackFailure {
            return (failure, .appropriate)
        }
        if rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR || rc == GNUTLS_E_CERTIFICATE_ERROR {
            let chain = session.peerCertificates
            let error: TLSError
            if chain.isEmpty && role == .server && session.callbackVerifyResult == nil {
                error = TLSError(
                    kind: .certificateRequired, code: rc, codeName: TLSError.name(of: rc),
                    reason: "\(description): the client sent no certificate, and one is required")
            } else {
                let result = session.peerVerificationResult(handshakeCode: rc)
                let failure = VerificationFailure.decode(
                    status: result.status, code: result.code, chain: chain, checkedName: session.peerVerification?.name,
                    requiredPurpose: session.peerVerification?.purpose,
                    revocationLists: session.context.revocationLists,
                    maximumDepth: session.context.maximumVerificationDepth)
                let whose = role == .client ? "server" : "client"
                error = TLSError(
                    kind: .verification, code: rc, codeName: TLSError.name(of: rc),
                    reason: "\(description): the \(whose)'s certificate was refused: \(failure)",
                    verification: failure)
            }
            return (error, .appropriate)
        }
        if rc == GNUTLS_E_PREMATURE_TERMINATION && session.state == .handshaking {
            let error = TLSError(
                kind: .truncated, code: rc, codeName: TLSError.name(of: rc),
                reason: "\(description): the peer closed the connection before the handshake completed")
            return (error, .none)
        }
        if session.clientOffersNoAcceptableVersion && rc != GNUTLS_E_FATAL_ALERT_RECEIVED {
            // GnuTLS words this as "no cipher suites"; the real reason is the version.
            let accepted = session.context.enabledVersions.map(\.description).joined(separator: ", ")
            let error = TLSError(
                kind: .protocolVersion, code: rc, codeName: TLSError.name(of: rc),
                reason: "\(description): the client offered no protocol version we accept (we accept \(accepted))")
            return (error, .protocolVersion)
        }
        if rc == GNUTLS_E_DECRYPTION_FAILED && session.state == .handshaking,
            let (level, value) = session.unencryptedAlertRead, level == GNUTLS_AL_FATAL.rawValue
        {
            // OpenSSL (openssl s_client, Python's ssl) refuses a TLS 1.3 server's certificate with an alert it
            // sends unencrypted, before it has switched to its handshake keys; GnuTLS, expecting an encrypted
            // record, reports a decryption failure. The alert is still the peer's reason: report it as one.
            let alert = gnutls_alert_description_t(rawValue: UInt32(value))
            var error = classify(code: GNUTLS_E_FATAL_ALERT_RECEIVED, receivedAlert: alert, context: description)
            error.code = rc
            error.codeName = TLSError.name(of: rc)
            error.reason += "; the alert came unencrypted (GnuTLS reports it as a decryption failure)"
            return (error, .none)
        }
        var alert: gnutls_alert_description_t?
        if rc == GNUTLS_E_FATAL_ALERT_RECEIVED || rc == GNUTLS_E_WARNING_ALERT_RECEIVED {
            alert = gnutls_alert_get(session.session)
        }
        let error = classify(code: rc, receivedAlert: alert, context: description)
        // The peer's alert or the transport ended it: nothing to answer.
        let ourFault = rc != GNUTLS_E_FATAL_ALERT_RECEIVED && rc != GNUTLS_E_PREMATURE_TERMINATION
            && rc != GNUTLS_E_PUSH_ERROR && rc != GNUTLS_E_PULL_ERROR
        return (error, ourFault ? .appropriate : .none)
    }

    /// Classifies a GnuTLS code by itself, with the alert the peer sent when the code says one was received.
    private static func classify(code: Int32, receivedAlert: gnutls_alert_description_t?, context: String) -> TLSError {
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
}
