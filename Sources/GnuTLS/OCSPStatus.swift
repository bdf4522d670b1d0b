internal import CGnuTLS

import FoundationEssentials

/// An OCSP response for one certificate, decoded: what a server staples and a client reads back.
public struct OCSPStatus: Sendable, Hashable, CustomStringConvertible {
    /// What the responder says of the certificate.
    public enum CertificateStatus: Sendable, Hashable, CustomStringConvertible {
        /// Not revoked.
        case good
        /// Revoked at the given time.
        case revoked(at: Date)
        /// The responder does not know the certificate.
        case unknown

        /// `good`, `revoked on DATE` or `unknown`.
        public var description: String {
            switch self {
            case .good: return "good"
            case .revoked(let date): return "revoked on \(VerificationFailure.format(date))"
            case .unknown: return "unknown"
            }
        }
    }

    /// The certificate's status.
    public let certificateStatus: CertificateStatus
    /// When the responder signed the response.
    public let producedAt: Date
    /// The time the status is known to be correct.
    public let thisUpdate: Date
    /// The time by which newer information will be available; the response should not be used after it.
    public let nextUpdate: Date?
    /// The DER encoding.
    public let derBytes: [UInt8]

    /// `good (produced ..., this update ..., next update ...)`.
    public var description: String {
        "\(certificateStatus) (produced \(VerificationFailure.format(producedAt)), "
            + "this update \(VerificationFailure.format(thisUpdate)), "
            + "next update \(nextUpdate.map(VerificationFailure.format) ?? "none"))"
    }

    /// Decodes a DER OCSP response.
    ///
    /// - Throws: ``TLSError`` of kind ``TLSError/Kind/configuration`` if it is not one, or if the responder
    ///   answered with an error status instead of a certificate status.
    public init(derBytes: [UInt8]) throws(TLSError) {
        let handle = try Handle(der: derBytes, source: "the OCSP response")
        try self.init(handle: handle, source: "the OCSP response")
    }

    init(handle: Handle, source: String) throws(TLSError) {
        let status = gnutls_ocsp_resp_get_status(handle.resp)
        guard status == Int32(GNUTLS_OCSP_RESP_SUCCESSFUL.rawValue) else {
            let words: String
            switch UInt32(bitPattern: status) {
            case GNUTLS_OCSP_RESP_MALFORMEDREQUEST.rawValue: words = "malformed request"
            case GNUTLS_OCSP_RESP_INTERNALERROR.rawValue: words = "internal error"
            case GNUTLS_OCSP_RESP_TRYLATER.rawValue: words = "try later"
            case GNUTLS_OCSP_RESP_SIGREQUIRED.rawValue: words = "signature required"
            case GNUTLS_OCSP_RESP_UNAUTHORIZED.rawValue: words = "unauthorized"
            default: words = "status \(status)"
            }
            throw TLSError.configuration("\(source) is not a successful response (the responder said: \(words))")
        }
        var certificateStatus: UInt32 = 0
        var thisUpdate: time_t = 0
        var nextUpdate: time_t = 0
        var revocationTime: time_t = 0
        let rc = gnutls_ocsp_resp_get_single(
            handle.resp, 0, nil, nil, nil, nil, &certificateStatus, &thisUpdate, &nextUpdate, &revocationTime, nil)
        guard rc == 0 else {
            throw TLSError.configuration("\(source) holds no certificate status", code: rc)
        }
        switch certificateStatus {
        case GNUTLS_OCSP_CERT_GOOD.rawValue: self.certificateStatus = .good
        case GNUTLS_OCSP_CERT_REVOKED.rawValue:
            self.certificateStatus = .revoked(at: Date(timeIntervalSince1970: TimeInterval(revocationTime)))
        default: self.certificateStatus = .unknown
        }
        self.producedAt = Date(timeIntervalSince1970: TimeInterval(gnutls_ocsp_resp_get_produced(handle.resp)))
        self.thisUpdate = Date(timeIntervalSince1970: TimeInterval(thisUpdate))
        // GnuTLS reports a response without nextUpdate as -1.
        self.nextUpdate = nextUpdate > 0 ? Date(timeIntervalSince1970: TimeInterval(nextUpdate)) : nil
        self.derBytes = handle.der
    }

    /// Checks a response a server is to staple for `leaf`: for that certificate, "good", and current. The
    /// signature is the client's to check (the responder's certificate need not be at hand).
    static func checkForStapling(_ der: [UInt8], leaf: X509Certificate, source: String, now: Date = Date()) throws(TLSError) -> OCSPStatus {
        let handle = try Handle(der: der, source: source)
        let status = try OCSPStatus(handle: handle, source: source)
        guard gnutls_ocsp_resp_check_crt(handle.resp, 0, leaf.crt) == 0 else {
            throw TLSError.configuration("\(source) is for another certificate, not for the one it is to be stapled to")
        }
        switch status.certificateStatus {
        case .good: break
        case .revoked(let date):
            throw TLSError.configuration("\(source) says the certificate was revoked on \(VerificationFailure.format(date))")
        case .unknown:
            throw TLSError.configuration("\(source) says the responder does not know the certificate (status unknown)")
        }
        if let next = status.nextUpdate, next < now {
            throw TLSError.configuration(
                "\(source) has expired: its next update was due \(VerificationFailure.format(next)); fetch a new one")
        }
        if status.thisUpdate > now.addingTimeInterval(300) {
            throw TLSError.configuration(
                "\(source) is not valid yet (this update \(VerificationFailure.format(status.thisUpdate)))")
        }
        return status
    }

    /// Whether a certificate carries the TLS feature status_request (RFC 7633, "must staple").
    static func isMustStaple(der: [UInt8]) -> Bool {
        guard let handle = try? X509Certificate(der: der, source: "certificate") else { return false }
        var features: gnutls_x509_tlsfeatures_t?
        guard gnutls_x509_tlsfeatures_init(&features) == 0, let features else { return false }
        defer { gnutls_x509_tlsfeatures_deinit(features) }
        guard gnutls_x509_crt_get_tlsfeatures(handle.crt, features, 0, nil) == 0 else { return false }
        var index: UInt32 = 0
        var feature: UInt32 = 0
        while gnutls_x509_tlsfeatures_get(features, index, &feature) == 0 {
            if feature == 5 { return true }
            index += 1
        }
        return false
    }

    /// Owns one `gnutls_ocsp_resp_t`.
    final class Handle {
        let resp: gnutls_ocsp_resp_t
        let der: [UInt8]

        init(der: [UInt8], source: String) throws(TLSError) {
            var resp: gnutls_ocsp_resp_t?
            let rc = gnutls_ocsp_resp_init(&resp)
            guard rc == 0, let resp else { throw TLSError.configuration("cannot allocate an OCSP response", code: rc) }
            self.resp = resp
            self.der = der
            let imported = GnuTLSDatum.withNULTerminated(der) { datum in gnutls_ocsp_resp_import(resp, &datum) }
            guard imported == 0 else {
                throw TLSError.configuration(
                    "\(source) is not a DER OCSP response (\(TLSError.message(of: imported)))", code: imported)
            }
        }

        deinit { gnutls_ocsp_resp_deinit(resp) }
    }
}
