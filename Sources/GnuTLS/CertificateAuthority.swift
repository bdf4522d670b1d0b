internal import CGnuTLS

import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// A small certificate authority made in memory, for development servers and tests.
///
/// It creates a self-signed CA and issues leaf certificates for servers or clients, with DNS and IP names and
/// a chosen validity period. Nothing here needs `openssl` or `certtool`.
///
/// - Warning: certificates from a development CA are for testing only. Clients trust them only when told to
///   (for example `tls-client --cafile certs/ca.crt`).
public struct CertificateAuthority: Sendable {
    /// The CA's self-signed certificate: the trust anchor clients load.
    public let certificate: Certificate
    /// The CA's private key, which signs the certificates it issues.
    public let privateKey: PrivateKey
    /// The certificates above this one, up to and including the root: empty for a root CA, the issuing CAs
    /// for an intermediate (see ``issueIntermediate(commonName:notValidBefore:notValidAfter:)``).
    public let issuers: [Certificate]

    /// What an issued certificate may be used for (its extended key usage).
    public enum Usage: Sendable, Hashable {
        /// A TLS server certificate (`serverAuth`).
        case server
        /// A TLS client certificate (`clientAuth`).
        case client
        /// Both server and client use.
        case serverAndClient
        /// No extended key usage extension at all, which GnuTLS and OpenSSL accept for any purpose.
        case unspecified
    }

    /// An issued certificate and its key.
    public struct Issued: Sendable {
        /// The leaf certificate.
        public let certificate: Certificate
        /// The leaf's private key.
        public let privateKey: PrivateKey
        /// The chain to present: the leaf, then the CA (and the CAs above it, for an intermediate).
        public let chain: [Certificate]
    }

    /// Wraps an existing CA certificate and key (for example ones loaded from `certs/`).
    public init(certificate: Certificate, privateKey: PrivateKey) {
        self.init(certificate: certificate, privateKey: privateKey, issuers: [])
    }

    private init(certificate: Certificate, privateKey: PrivateKey, issuers: [Certificate]) {
        self.certificate = certificate
        self.privateKey = privateKey
        self.issuers = issuers
    }

    /// Creates a new CA with a fresh key.
    ///
    /// - Parameters:
    ///   - commonName: the CA's name, shown in every certificate it issues.
    ///   - notValidBefore: start of validity; by default one hour ago, to tolerate clock skew.
    ///   - notValidAfter: end of validity; by default ten years from now.
    ///   - keyAlgorithm: the CA key's type.
    public static func generate(
        commonName: String = "swift-gnutls development CA",
        notValidBefore: Date = Date().addingTimeInterval(-3600),
        notValidAfter: Date = Date().addingTimeInterval(10 * 365 * 86400),
        keyAlgorithm: PrivateKey.Algorithm = .ecdsaP256
    ) throws(TLSError) -> CertificateAuthority {
        let key = try X509PrivateKey.generate(keyAlgorithm)
        let certificate = try caCertificate(
            key: key, commonName: commonName, notValidBefore: notValidBefore, notValidAfter: notValidAfter,
            issuer: nil, issuerKey: key)
        return CertificateAuthority(certificate: certificate, privateKey: try PrivateKey(handle: key))
    }

    /// Issues an intermediate CA signed by this one, with a fresh key. What it issues chains up through this
    /// CA: its leaves' ``Issued/chain`` holds every CA certificate up to the root, so calling this repeatedly
    /// makes a chain as long as a test needs.
    ///
    /// - Parameters:
    ///   - commonName: the intermediate's name.
    ///   - notValidBefore: the start of validity; by default one hour ago, to tolerate clock skew.
    ///   - notValidAfter: the end of validity; by default ten years from now.
    public func issueIntermediate(
        commonName: String,
        notValidBefore: Date = Date().addingTimeInterval(-3600),
        notValidAfter: Date = Date().addingTimeInterval(10 * 365 * 86400)
    ) throws(TLSError) -> CertificateAuthority {
        let key = try X509PrivateKey.generate(.ecdsaP256)
        let issuerKey = try X509PrivateKey(bytes: privateKey.pkcs8DERBytes, password: nil, source: "CA key")
        let issuer = try X509Certificate(der: certificate.derBytes, source: "CA certificate")
        let intermediate = try CertificateAuthority.caCertificate(
            key: key, commonName: commonName, notValidBefore: notValidBefore, notValidAfter: notValidAfter,
            issuer: issuer, issuerKey: issuerKey)
        return CertificateAuthority(
            certificate: intermediate, privateKey: try PrivateKey(handle: key), issuers: [certificate] + issuers)
    }

    /// A CA certificate without a path length limit, self-signed when `issuer` is nil.
    private static func caCertificate(
        key: X509PrivateKey, commonName: String, notValidBefore: Date, notValidAfter: Date,
        issuer: X509Certificate?, issuerKey: X509PrivateKey
    ) throws(TLSError) -> Certificate {
        let builder = try CertificateBuilder(subjectKey: key, commonName: commonName)
        try builder.set(notValidBefore: notValidBefore, notValidAfter: notValidAfter)
        try builder.check(gnutls_x509_crt_set_basic_constraints(builder.crt, 1, -1), "basic constraints")
        try builder.check(
            gnutls_x509_crt_set_key_usage(builder.crt, UInt32(GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN)),
            "key usage")
        return try builder.sign(issuer: issuer, issuerKey: issuerKey)
    }

    /// Issues a leaf certificate signed by this CA, with a fresh key.
    ///
    /// - Parameters:
    ///   - commonName: the subject's common name.
    ///   - dnsNames: DNS subject alternative names.
    ///   - ipAddresses: IP subject alternative names, as IPv4 or IPv6 literals.
    ///   - usage: server, client, both, or unspecified (no extended key usage).
    ///   - notValidBefore: the start of validity; by default one hour ago, to tolerate clock skew.
    ///   - notValidAfter: the end of validity; by default a year from now.
    ///   - keyAlgorithm: the leaf key's type.
    ///   - mustStaple: whether the certificate carries the TLS feature "status_request" (RFC 7633): clients then
    ///     refuse it without a valid stapled OCSP response.
    /// - Throws: ``TLSError`` if an IP address does not parse or GnuTLS refuses a field.
    public func issue(
        commonName: String,
        dnsNames: [String] = [],
        ipAddresses: [String] = [],
        usage: Usage = .server,
        notValidBefore: Date = Date().addingTimeInterval(-3600),
        notValidAfter: Date = Date().addingTimeInterval(365 * 86400),
        keyAlgorithm: PrivateKey.Algorithm = .ecdsaP256,
        mustStaple: Bool = false
    ) throws(TLSError) -> Issued {
        let key = try X509PrivateKey.generate(keyAlgorithm)
        let issuerKey = try X509PrivateKey(bytes: privateKey.pkcs8DERBytes, password: nil, source: "CA key")
        let issuer = try X509Certificate(der: certificate.derBytes, source: "CA certificate")
        let leaf = try CertificateAuthority.leaf(
            key: key, commonName: commonName, dnsNames: dnsNames, ipAddresses: ipAddresses, usage: usage,
            notValidBefore: notValidBefore, notValidAfter: notValidAfter, issuer: issuer, issuerKey: issuerKey,
            mustStaple: mustStaple)
        return Issued(
            certificate: leaf, privateKey: try PrivateKey(handle: key), chain: [leaf, certificate] + issuers)
    }

    /// Makes a self-signed leaf certificate that no CA vouches for (for testing clients that must refuse it).
    public static func selfSignedLeaf(
        commonName: String,
        dnsNames: [String] = [],
        ipAddresses: [String] = [],
        usage: Usage = .server,
        notValidBefore: Date = Date().addingTimeInterval(-3600),
        notValidAfter: Date = Date().addingTimeInterval(365 * 86400)
    ) throws(TLSError) -> Issued {
        let key = try X509PrivateKey.generate(.ecdsaP256)
        let leaf = try leaf(
            key: key, commonName: commonName, dnsNames: dnsNames, ipAddresses: ipAddresses, usage: usage,
            notValidBefore: notValidBefore, notValidAfter: notValidAfter, issuer: nil, issuerKey: key)
        return Issued(certificate: leaf, privateKey: try PrivateKey(handle: key), chain: [leaf])
    }

    private static func leaf(
        key: X509PrivateKey, commonName: String, dnsNames: [String], ipAddresses: [String], usage: Usage,
        notValidBefore: Date, notValidAfter: Date, issuer: X509Certificate?, issuerKey: X509PrivateKey,
        mustStaple: Bool = false
    ) throws(TLSError) -> Certificate {
        let builder = try CertificateBuilder(subjectKey: key, commonName: commonName)
        try builder.set(notValidBefore: notValidBefore, notValidAfter: notValidAfter)
        try builder.check(gnutls_x509_crt_set_basic_constraints(builder.crt, 0, -1), "basic constraints")
        try builder.check(gnutls_x509_crt_set_key_usage(builder.crt, UInt32(GNUTLS_KEY_DIGITAL_SIGNATURE)), "key usage")
        for name in dnsNames {
            let rc = Array(name.utf8).withUnsafeBytes { raw in
                gnutls_x509_crt_set_subject_alt_name(
                    builder.crt, GNUTLS_SAN_DNSNAME, raw.baseAddress, UInt32(raw.count), UInt32(GNUTLS_FSAN_APPEND))
            }
            try builder.check(rc, "DNS name '\(name)'")
        }
        for address in ipAddresses {
            guard let bytes = IPAddress.bytes(address) else {
                throw TLSError.configuration("'\(address)' is not an IPv4 or IPv6 address")
            }
            let rc = bytes.withUnsafeBytes { raw in
                gnutls_x509_crt_set_subject_alt_name(
                    builder.crt, GNUTLS_SAN_IPADDRESS, raw.baseAddress, UInt32(raw.count), UInt32(GNUTLS_FSAN_APPEND))
            }
            try builder.check(rc, "IP address '\(address)'")
        }
        let purposes: [String]
        switch usage {
        case .server: purposes = [GNUTLS_KP_TLS_WWW_SERVER]
        case .client: purposes = [GNUTLS_KP_TLS_WWW_CLIENT]
        case .serverAndClient: purposes = [GNUTLS_KP_TLS_WWW_SERVER, GNUTLS_KP_TLS_WWW_CLIENT]
        case .unspecified: purposes = []
        }
        for oid in purposes {
            try builder.check(gnutls_x509_crt_set_key_purpose_oid(builder.crt, oid, 0), "key purpose")
        }
        if mustStaple {
            // The TLS feature extension (RFC 7633) with status_request (5): "must staple".
            var features: gnutls_x509_tlsfeatures_t?
            try builder.check(gnutls_x509_tlsfeatures_init(&features), "TLS features")
            defer { gnutls_x509_tlsfeatures_deinit(features) }
            try builder.check(gnutls_x509_tlsfeatures_add(features, 5), "TLS feature status_request")
            try builder.check(gnutls_x509_crt_set_tlsfeatures(builder.crt, features), "TLS features")
        }
        return try builder.sign(issuer: issuer, issuerKey: issuerKey)
    }
}

/// Fills in and signs one `gnutls_x509_crt_t`.
private final class CertificateBuilder {
    let crt: gnutls_x509_crt_t
    let subjectKey: X509PrivateKey

    init(subjectKey: X509PrivateKey, commonName: String) throws(TLSError) {
        var crt: gnutls_x509_crt_t?
        let rc = gnutls_x509_crt_init(&crt)
        guard rc == 0, let crt else { throw TLSError.configuration("cannot allocate a certificate", code: rc) }
        self.crt = crt
        self.subjectKey = subjectKey
        try check(gnutls_x509_crt_set_version(crt, 3), "version")
        // A random positive serial of 16 bytes (the top bit cleared keeps the DER integer positive).
        var serial = (0..<16).map { _ in UInt8.random(in: 0...255) }
        serial[0] &= 0x7f
        serial[0] |= 0x01
        try check(serial.withUnsafeBytes { gnutls_x509_crt_set_serial(crt, $0.baseAddress, $0.count) }, "serial")
        // The common name goes in by OID so that no DN string escaping is needed.
        let cn = Array(commonName.utf8)
        try check(
            cn.withUnsafeBytes { gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, $0.baseAddress, UInt32($0.count)) },
            "common name '\(commonName)'")
        try check(gnutls_x509_crt_set_key(crt, subjectKey.key), "public key")
        var keyID = [UInt8](repeating: 0, count: 64)
        var size = keyID.count
        try check(gnutls_x509_crt_get_key_id(crt, 0, &keyID, &size), "key identifier")
        try check(gnutls_x509_crt_set_subject_key_id(crt, keyID, size), "subject key identifier")
    }

    func set(notValidBefore: Date, notValidAfter: Date) throws(TLSError) {
        guard notValidAfter > notValidBefore else {
            throw TLSError.configuration("a certificate's validity must end after it starts")
        }
        try check(gnutls_x509_crt_set_activation_time(crt, time_t(notValidBefore.timeIntervalSince1970)), "start of validity")
        try check(gnutls_x509_crt_set_expiration_time(crt, time_t(notValidAfter.timeIntervalSince1970)), "end of validity")
    }

    func check(_ rc: Int32, _ what: String) throws(TLSError) {
        guard rc >= 0 else { throw TLSError.configuration("cannot set the certificate's \(what)", code: rc) }
    }

    /// Signs with the issuer's key (self-signs when `issuer` is nil) and returns the parsed certificate.
    func sign(issuer: X509Certificate?, issuerKey: X509PrivateKey) throws(TLSError) -> Certificate {
        if let issuer {
            var keyID = [UInt8](repeating: 0, count: 64)
            var size = keyID.count
            if gnutls_x509_crt_get_subject_key_id(issuer.crt, &keyID, &size, nil) == 0 {
                try check(gnutls_x509_crt_set_authority_key_id(crt, keyID, size), "authority key identifier")
            }
        }
        let rc = gnutls_x509_crt_sign2(crt, issuer?.crt ?? crt, issuerKey.key, GNUTLS_DIG_SHA256, 0)
        try check(rc, "signature")
        var datum = gnutls_datum_t()
        try check(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &datum), "encoding")
        return try Certificate(derBytes: GnuTLSDatum.take(datum))
    }

    deinit { gnutls_x509_crt_deinit(crt) }
}
