internal import CGnuTLS

import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// An X.509 certificate, parsed once and inspected through plain Swift values.
///
/// The DER encoding is kept as the certificate's identity; the fields below are decoded when the value is
/// made, so reading them costs nothing.
public struct Certificate: Sendable, Hashable, CustomStringConvertible {
    /// A subject alternative name: the names a certificate is valid for.
    public enum AlternativeName: Sendable, Hashable, CustomStringConvertible {
        /// A DNS name, possibly with a leading wildcard label.
        case dns(String)
        /// An IPv4 or IPv6 address, in its textual form.
        case ipAddress(String)
        /// An e-mail address (rfc822Name).
        case email(String)
        /// A URI.
        case uri(String)

        /// The name prefixed by its kind, for example `DNS:example.com` or `IP:192.0.2.1`.
        public var description: String {
            switch self {
            case .dns(let name): return "DNS:\(name)"
            case .ipAddress(let address): return "IP:\(address)"
            case .email(let address): return "email:\(address)"
            case .uri(let uri): return "URI:\(uri)"
            }
        }
    }

    /// The DER encoding of the certificate.
    public let derBytes: [UInt8]
    /// The subject's distinguished name in RFC 4514 form, for example `CN=localhost`.
    public let subject: String
    /// The issuer's distinguished name in RFC 4514 form.
    public let issuer: String
    /// The subject alternative names, in the order the certificate lists them.
    public let alternativeNames: [AlternativeName]
    /// The start of the validity period.
    public let notValidBefore: Date
    /// The end of the validity period.
    public let notValidAfter: Date
    /// The serial number, as lowercase hexadecimal.
    public let serialNumber: String
    /// SHA-256 of the DER SubjectPublicKeyInfo: the value used for public-key pinning.
    public let publicKeySHA256: [UInt8]
    /// The public key's type as GnuTLS names it, with the curve for elliptic-curve keys: `RSA`,
    /// `ECDSA SECP256R1`, `EdDSA (Ed25519)`.
    public let publicKeyAlgorithm: String
    /// The public key's size in bits (256 for P-256, 2048 for RSA-2048).
    public let publicKeyBits: Int
    /// The algorithm of the issuer's signature, as GnuTLS names it, for example `ECDSA-SHA256` or `RSA-SHA256`.
    public let signatureAlgorithm: String
    /// Whether the certificate may sign other certificates (basicConstraints CA:TRUE).
    public let isCertificateAuthority: Bool
    /// The purposes its extended key usage extension lists, in order; empty when it has no such extension,
    /// which means any purpose (see ``allows(_:)``).
    public let keyPurposes: [KeyPurpose]

    /// Parses a DER-encoded certificate.
    ///
    /// - Throws: ``TLSError`` of kind ``TLSError/Kind/configuration`` if the bytes are not a certificate.
    public init(derBytes: [UInt8]) throws(TLSError) {
        let handle = try X509Certificate(der: derBytes, source: "certificate")
        self.init(handle: handle, der: derBytes)
    }

    init(handle: X509Certificate, der: [UInt8]) {
        let crt = handle.crt
        self.derBytes = der
        self.subject = Self.distinguishedName(crt, issuer: false)
        self.issuer = Self.distinguishedName(crt, issuer: true)
        self.alternativeNames = Self.alternativeNames(crt)
        self.notValidBefore = Date(timeIntervalSince1970: TimeInterval(gnutls_x509_crt_get_activation_time(crt)))
        self.notValidAfter = Date(timeIntervalSince1970: TimeInterval(gnutls_x509_crt_get_expiration_time(crt)))
        var serial = [UInt8](repeating: 0, count: 64)
        var serialSize = serial.count
        if gnutls_x509_crt_get_serial(crt, &serial, &serialSize) == 0 {
            self.serialNumber = Hex.encode(serial.prefix(serialSize))
        } else {
            self.serialNumber = ""
        }
        var keyID = [UInt8](repeating: 0, count: 32)
        var keyIDSize = keyID.count
        if gnutls_x509_crt_get_key_id(crt, UInt32(GNUTLS_KEYID_USE_SHA256.rawValue), &keyID, &keyIDSize) == 0 {
            self.publicKeySHA256 = Array(keyID.prefix(keyIDSize))
        } else {
            self.publicKeySHA256 = []
        }
        var critical: UInt32 = 0
        var ca: UInt32 = 0
        var pathLength: Int32 = 0
        self.isCertificateAuthority =
            gnutls_x509_crt_get_basic_constraints(crt, &critical, &ca, &pathLength) >= 0 && ca != 0
        self.keyPurposes = Self.keyPurposes(crt)
        var bits: UInt32 = 0
        let algorithm = gnutls_x509_crt_get_pk_algorithm(crt, &bits)
        self.publicKeyBits = Int(bits)
        var keyName = algorithm > 0
            ? gnutls_pk_algorithm_get_name(gnutls_pk_algorithm_t(UInt32(algorithm))).map { String(cString: $0) } ?? "unknown"
            : "unknown"
        if algorithm == Int32(GNUTLS_PK_ECDSA.rawValue) {
            keyName = "ECDSA"
            var curve = GNUTLS_ECC_CURVE_INVALID
            var x = gnutls_datum_t()
            var y = gnutls_datum_t()
            if gnutls_x509_crt_get_pk_ecc_raw(crt, &curve, &x, &y) == 0 {
                _ = GnuTLSDatum.take(x)
                _ = GnuTLSDatum.take(y)
                if let name = gnutls_ecc_curve_get_name(curve) { keyName += " " + String(cString: name) }
            }
        }
        self.publicKeyAlgorithm = keyName
        let signature = gnutls_x509_crt_get_signature_algorithm(crt)
        self.signatureAlgorithm = signature > 0
            ? gnutls_sign_get_name(gnutls_sign_algorithm_t(UInt32(signature))).map { String(cString: $0) } ?? "unknown"
            : "unknown"
    }

    /// Whether the certificate may be used for `purpose`: it has no extended key usage extension, or the
    /// extension lists the purpose or any purpose. This is the check GnuTLS makes of a peer's certificate.
    public func allows(_ purpose: KeyPurpose) -> Bool {
        keyPurposes.isEmpty || keyPurposes.contains(purpose) || keyPurposes.contains(.any)
    }

    /// Parses every certificate in PEM text (a chain is several `CERTIFICATE` blocks, leaf first).
    ///
    /// - Throws: ``TLSError`` if the text holds no certificate or a block does not parse.
    public static func parse(pem: String) throws(TLSError) -> [Certificate] {
        try parse(bytes: Array(pem.utf8), source: "PEM text")
    }

    /// Reads a certificate file, PEM (one or more certificates) or DER (one), and parses it.
    ///
    /// - Throws: ``TLSError`` naming the file when it cannot be read or holds no valid certificate.
    public static func load(file path: String) throws(TLSError) -> [Certificate] {
        let bytes = try CredentialFile.read(path, what: "certificate file")
        return try parse(bytes: bytes, source: "certificate file '\(path)'")
    }

    /// Parses PEM or DER bytes; `source` names where they came from in errors.
    static func parse(bytes: [UInt8], source: String) throws(TLSError) -> [Certificate] {
        if PEM.isPEM(bytes) {
            var list: UnsafeMutablePointer<gnutls_x509_crt_t?>?
            var count: UInt32 = 0
            let rc = GnuTLSDatum.withNULTerminated(bytes) { datum in
                gnutls_x509_crt_list_import2(&list, &count, &datum, GNUTLS_X509_FMT_PEM, 0)
            }
            guard rc >= 0, let list else {
                throw TLSError.configuration(
                    "\(source) holds no valid PEM certificate (\(TLSError.message(of: rc)))", code: rc)
            }
            defer { cgnutls_free(list) }
            var certificates: [Certificate] = []
            var failure: TLSError?
            for index in 0..<Int(count) {
                guard let crt = list[index] else { continue }
                do {
                    let handle = try X509Certificate(owning: crt)
                    if failure == nil { certificates.append(Certificate(handle: handle, der: handle.der)) }
                } catch {
                    failure = failure ?? error
                }
            }
            if let failure { throw failure }
            if certificates.isEmpty {
                throw TLSError.configuration("\(source) holds no PEM 'CERTIFICATE' block")
            }
            return certificates
        }
        let handle = try X509Certificate(der: bytes, source: source)
        return [Certificate(handle: handle, der: bytes)]
    }

    /// The PEM encoding of this certificate.
    public var pemString: String {
        PEM.encode(der: derBytes, label: "CERTIFICATE")
    }

    /// The SHA-256 of the public key as lowercase hexadecimal.
    public var publicKeySHA256Hex: String {
        Hex.encode(publicKeySHA256)
    }

    /// Whether the subject and issuer names are the same (a self-signed or self-issued certificate).
    public var isSelfIssued: Bool { subject == issuer }

    /// The names a host name check looks at: DNS and IP alternative names, or the common name without them.
    public var names: [String] {
        let sans = alternativeNames.compactMap { name -> String? in
            switch name {
            case .dns(let dns): return dns
            case .ipAddress(let ip): return ip
            default: return nil
            }
        }
        if !sans.isEmpty { return sans }
        return subject.split(separator: ",").compactMap { part in
            part.hasPrefix("CN=") ? String(part.dropFirst(3)) : nil
        }
    }

    /// The subject, issuer and alternative names, for logging.
    public var description: String {
        "Certificate(subject: \(subject), issuer: \(issuer), names: \(alternativeNames.map(\.description)))"
    }

    /// Writes certificates to a file as PEM, atomically (a partial file is never left behind).
    public static func writePEM(_ certificates: [Certificate], toFile path: String) throws(TLSError) {
        let text = certificates.map(\.pemString).joined()
        try CredentialFile.writeAtomically(Array(text.utf8), to: path, mode: 0o644)
    }

    private static func distinguishedName(_ crt: gnutls_x509_crt_t, issuer: Bool) -> String {
        var datum = gnutls_datum_t()
        let rc = issuer ? gnutls_x509_crt_get_issuer_dn3(crt, &datum, 0) : gnutls_x509_crt_get_dn3(crt, &datum, 0)
        guard rc == 0, let data = datum.data else { return "" }
        defer { cgnutls_free(data) }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(datum.size)), as: UTF8.self)
    }

    private static func keyPurposes(_ crt: gnutls_x509_crt_t) -> [KeyPurpose] {
        var purposes: [KeyPurpose] = []
        // An OID is short; a longer one is skipped rather than trusted to a bigger buffer.
        for index in 0..<UInt32(64) {
            var buffer = [CChar](repeating: 0, count: 128)
            var size = buffer.count
            let rc = gnutls_x509_crt_get_key_purpose_oid(crt, index, &buffer, &size, nil)
            if rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE { break }
            if rc < 0 { continue }
            let bytes = buffer.prefix(min(size, buffer.count)).prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
            purposes.append(KeyPurpose(oid: String(decoding: bytes, as: UTF8.self)))
        }
        return purposes
    }

    private static func alternativeNames(_ crt: gnutls_x509_crt_t) -> [AlternativeName] {
        var names: [AlternativeName] = []
        var index: UInt32 = 0
        while true {
            var buffer = [UInt8](repeating: 0, count: 1024)
            var size = buffer.count
            let type = gnutls_x509_crt_get_subject_alt_name(crt, index, &buffer, &size, nil)
            if type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE { break }
            index += 1
            if type < 0 { continue }
            let bytes = Array(buffer.prefix(size))
            switch UInt32(type) {
            case GNUTLS_SAN_DNSNAME.rawValue: names.append(.dns(String(decoding: bytes, as: UTF8.self)))
            case GNUTLS_SAN_RFC822NAME.rawValue: names.append(.email(String(decoding: bytes, as: UTF8.self)))
            case GNUTLS_SAN_URI.rawValue: names.append(.uri(String(decoding: bytes, as: UTF8.self)))
            case GNUTLS_SAN_IPADDRESS.rawValue:
                if let text = IPAddress.text(bytes) { names.append(.ipAddress(text)) }
            default: break
            }
            if index > 1000 { break }
        }
        return names
    }
}
