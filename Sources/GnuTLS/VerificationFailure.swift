internal import CGnuTLS

import FoundationEssentials

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
        /// The certificate was revoked (by a CRL that could not be matched to it).
        case revoked
        /// A certificate of the chain was revoked on the given date, by a CRL of its issuer that lists its serial
        /// number (hexadecimal), for the reason the CRL gives, if it gives one.
        case revokedOn(Date, serialNumber: String, reason: CertificateRevocationList.Reason?)
        /// The chain uses an algorithm considered insecure (for example SHA-1 or a short key).
        case insecureAlgorithm
        /// A signature in the chain does not verify.
        case badSignature
        /// The issuer may not issue certificates (not a CA), or a constraint of the chain was broken.
        case invalidIssuer
        /// The certificate's key usage or purpose does not allow this use; ``VerificationFailure/requiredPurpose``
        /// and ``VerificationFailure/certificatePurposes`` say which purpose was needed and which are allowed.
        case wrongPurpose
        /// The peer sent more certificates than GnuTLS verifies (``VerificationFailure/maximumChainLength``);
        /// the value is how many it sent. No other check was made.
        case chainTooLong(Int)
        /// The peer sent more certificates than the configured maximum verification depth allows
        /// (``TLSConfiguration/maximumVerificationDepth``): the limit, and how many it sent.
        case depthExceeded(limit: Int, sent: Int)
        /// The peer sent no certificate although one was required.
        case noCertificate
        /// The certificate's public key is none of the pinned ones (``TLSConfiguration/pinnedPublicKeys``).
        case publicKeyNotPinned(presented: PublicKeyPin, expected: [PublicKeyPin])
        /// No valid OCSP response was stapled, and one is required: by the certificate itself (its TLS feature
        /// extension says "must staple") or by the configuration (``TLSConfiguration/requiresOCSPStaple``).
        case ocspStapleMissing(certificateRequiresIt: Bool)
        /// The stapled OCSP response is not valid: not signed by the issuer, for another certificate, or
        /// out of date.
        case invalidOCSPResponse
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
            case .revokedOn(let date, let serial, let reason):
                return "certificate has been revoked: serial \(serial) was revoked on \(VerificationFailure.format(date))"
                    + (reason.map { " (reason: \($0))" } ?? "")
            case .depthExceeded(let limit, let sent):
                return "the chain is longer than the maximum verification depth of \(limit) "
                    + "(the peer sent \(sent) certificates)"
            case .insecureAlgorithm: return "certificate chain uses an insecure algorithm"
            case .badSignature: return "a signature in the certificate chain does not verify"
            case .invalidIssuer: return "the issuer is not allowed to issue this certificate"
            case .wrongPurpose: return "certificate is not valid for this purpose"
            case .chainTooLong(let count):
                return "the chain is longer than \(VerificationFailure.maximumChainLength) certificates "
                    + "(the peer sent \(count))"
            case .noCertificate: return "the peer sent no certificate"
            case .publicKeyNotPinned(let presented, let expected):
                return "certificate's public key \(presented) is not pinned (expected "
                    + expected.map(\.description).joined(separator: " or ") + ")"
            case .ocspStapleMissing(let certificateRequiresIt):
                return certificateRequiresIt
                    ? "certificate requires a stapled OCSP response (must-staple) and the server sent none that is valid"
                    : "no valid stapled OCSP response, and one is required"
            case .invalidOCSPResponse:
                return "the stapled OCSP response is not valid (wrong signer, another certificate, or out of date)"
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
    /// The raw GnuTLS status bits (`gnutls_certificate_status_t`), for logging. Meaningless when verification
    /// could not be done (a reason such as ``Reason/chainTooLong(_:)``).
    public var status: UInt32
    /// The purpose the certificate had to allow: TLS server authentication for a server's certificate, client
    /// authentication for a client's.
    public var requiredPurpose: KeyPurpose?
    /// The purposes the certificate's extended key usage allows (empty: no such extension, any purpose).
    public var certificatePurposes: [KeyPurpose]
    /// The chain the peer presented and that was refused, leaf first (for showing it).
    public var chain: [Certificate]

    /// The most certificates GnuTLS verifies in a peer's chain (its default verification depth, which this
    /// library does not change); a longer chain is refused without being looked at.
    public static let maximumChainLength = 16

    /// Creates a failure description.
    public init(
        reasons: [Reason], checkedName: String?, certificateNames: [String], status: UInt32,
        requiredPurpose: KeyPurpose? = nil, certificatePurposes: [KeyPurpose] = [], chain: [Certificate] = []
    ) {
        self.chain = chain
        self.reasons = reasons
        self.checkedName = checkedName
        self.certificateNames = certificateNames
        self.status = status
        self.requiredPurpose = requiredPurpose
        self.certificatePurposes = certificatePurposes
    }

    /// One sentence with every reason; a name mismatch names both the name asked for and the names held, a
    /// wrong purpose both the purpose needed and the purposes allowed.
    public var description: String {
        reasons.map { reason -> String in
            switch reason {
            case .hostnameMismatch:
                let held = certificateNames.isEmpty ? "no names" : certificateNames.map { "'\($0)'" }.joined(separator: ", ")
                return "certificate for \(held) does not match the requested name '\(checkedName ?? "")'"
            case .wrongPurpose:
                guard let required = requiredPurpose else { return reason.description }
                let allowed = certificatePurposes.filter { $0 == required || $0 == .any }
                guard certificatePurposes.isEmpty || !allowed.isEmpty else {
                    let list = certificatePurposes.map(\.description).joined(separator: ", ")
                    return "certificate is not valid for \(required) (its extended key usage allows: \(list))"
                }
                // The leaf allows the purpose: GnuTLS also checks the extended key usage of the CAs above it.
                return "a CA certificate in the chain is not valid for \(required)"
            default:
                return reason.description
            }
        }.joined(separator: "; ")
    }

    static func format(_ date: Date) -> String {
        date.formatted(.iso8601)
    }

    /// Every status bit GnuTLS 3.7 defines. A status with any other bit set is not a set of reasons (GnuTLS
    /// reports all ones when it kept no status).
    static let knownStatusBits: UInt32 = [
        GNUTLS_CERT_INVALID, GNUTLS_CERT_REVOKED, GNUTLS_CERT_SIGNER_NOT_FOUND, GNUTLS_CERT_SIGNER_NOT_CA,
        GNUTLS_CERT_INSECURE_ALGORITHM, GNUTLS_CERT_NOT_ACTIVATED, GNUTLS_CERT_EXPIRED,
        GNUTLS_CERT_SIGNATURE_FAILURE, GNUTLS_CERT_REVOCATION_DATA_SUPERSEDED, GNUTLS_CERT_UNEXPECTED_OWNER,
        GNUTLS_CERT_REVOCATION_DATA_ISSUED_IN_FUTURE, GNUTLS_CERT_SIGNER_CONSTRAINTS_FAILURE, GNUTLS_CERT_MISMATCH,
        GNUTLS_CERT_PURPOSE_MISMATCH, GNUTLS_CERT_MISSING_OCSP_STATUS, GNUTLS_CERT_INVALID_OCSP_STATUS,
        GNUTLS_CERT_UNKNOWN_CRIT_EXTENSIONS,
    ].reduce(0) { $0 | $1.rawValue }

    /// Whether `status` can be read as the reasons a certificate was refused: not 0 (nothing wrong) and no bit
    /// GnuTLS does not define.
    static func isCredible(_ status: UInt32) -> Bool {
        status != 0 && status & ~knownStatusBits == 0
    }

    /// Decodes a GnuTLS verification result against the peer's chain.
    ///
    /// - Parameters:
    ///   - status: the status bits, read only when `code` is 0 and they are credible (``isCredible(_:)``).
    ///   - code: what `gnutls_certificate_verify_peers` returned; negative when verification could not be done,
    ///     and then the reason is the code's, not the status's.
    ///   - requiredPurpose: the key purpose the certificate was checked for.
    static func decode(
        status: UInt32, code: Int32 = 0, chain: [Certificate], checkedName: String?,
        requiredPurpose: KeyPurpose? = nil, revocationLists: [CertificateRevocationList] = [],
        maximumDepth: Int = maximumChainLength
    ) -> VerificationFailure {
        let names = chain.first.map { $0.names } ?? []
        let purposes = chain.first.map { $0.keyPurposes } ?? []
        func failure(_ reasons: [Reason]) -> VerificationFailure {
            VerificationFailure(
                reasons: reasons, checkedName: checkedName, certificateNames: names, status: status,
                requiredPurpose: requiredPurpose, certificatePurposes: purposes, chain: chain)
        }
        if code < 0 {
            switch code {
            case GNUTLS_E_CONSTRAINT_ERROR where chain.count > maximumDepth && maximumDepth < maximumChainLength:
                return failure([.depthExceeded(limit: maximumDepth, sent: chain.count)])
            case GNUTLS_E_CONSTRAINT_ERROR where chain.count > maximumChainLength:
                return failure([.chainTooLong(chain.count)])
            case GNUTLS_E_NO_CERTIFICATE_FOUND:
                return failure([.noCertificate])
            default:
                return failure([.other("the certificate could not be verified (\(TLSError.message(of: code)))")])
            }
        }
        guard isCredible(status) else {
            let hex = String(status, radix: 16)
            return failure([.other("certificate verification failed without a reason (status 0x\(hex))")])
        }
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
        if has(GNUTLS_CERT_REVOKED) {
            // Name the first certificate of the chain a CRL lists, with its date.
            let revoked = chain.lazy.compactMap { certificate in
                revocationLists.lazy.compactMap { $0.entry(revoking: certificate) }.first
            }.first
            if let revoked {
                reasons.append(
                    .revokedOn(revoked.revocationDate, serialNumber: revoked.serialNumber, reason: revoked.reason))
            } else {
                reasons.append(.revoked)
            }
        }
        if has(GNUTLS_CERT_INSECURE_ALGORITHM) { reasons.append(.insecureAlgorithm) }
        if has(GNUTLS_CERT_SIGNATURE_FAILURE) { reasons.append(.badSignature) }
        if has(GNUTLS_CERT_SIGNER_NOT_CA) || has(GNUTLS_CERT_SIGNER_CONSTRAINTS_FAILURE) {
            reasons.append(.invalidIssuer)
        }
        if has(GNUTLS_CERT_PURPOSE_MISMATCH) { reasons.append(.wrongPurpose) }
        if has(GNUTLS_CERT_MISSING_OCSP_STATUS) { reasons.append(.ocspStapleMissing(certificateRequiresIt: true)) }
        // GnuTLS marks a stapled response past its next update as superseded revocation data (this library
        // loads no CRLs, the other source of that bit).
        if has(GNUTLS_CERT_INVALID_OCSP_STATUS) || has(GNUTLS_CERT_REVOCATION_DATA_SUPERSEDED) {
            reasons.append(.invalidOCSPResponse)
        }
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
        return failure(reasons)
    }
}
