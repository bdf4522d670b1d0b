internal import CGnuTLS

import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// Loads a configuration's identities into one credentials handle: each chain with its key (from a file, memory
/// or a PKCS #11 token) and its OCSP response. GnuTLS then serves, per handshake, the key pair whose names match
/// the client's SNI and whose key suits its signature algorithms, the first one otherwise.
enum IdentityLoader {
    struct Loaded {
        let chain: [Certificate]
        let ocsp: OCSPStatus?
    }

    static func load(_ identities: [TLSConfiguration.Identity], into credentials: CertificateCredentials) throws(TLSError) -> [Loaded] {
        var loaded: [Loaded] = []
        for (position, identity) in identities.enumerated() {
            // With several identities, an error says which one it is about.
            let which = identities.count > 1 ? " (identity \(position + 1))" : ""
            loaded.append(try load(identity, into: credentials, which: which))
        }
        return loaded
    }

    private static func load(
        _ identity: TLSConfiguration.Identity, into credentials: CertificateCredentials, which: String
    ) throws(TLSError) -> Loaded {
        let chain: [Certificate]
        let chainSource: String
        switch identity.certificateChain {
        case .file(let path):
            chain = try Certificate.load(file: path)
            chainSource = "certificate file '\(path)'"
        case .certificates(let certificates):
            guard !certificates.isEmpty else { throw TLSError.configuration("the identity\(which) holds no certificate") }
            chain = certificates
            chainSource = "the certificate chain\(which)"
        case .pkcs11(let url):
            chainSource = "certificate '\(PKCS11URL.redacted(url))'"
            chain = [try PKCS11.certificate(url: url, source: chainSource)]
        }
        let handles = try usableHandles(chain, source: chainSource)

        let index: Int32
        switch identity.privateKey {
        case .file(let path, let password):
            let bytes = try CredentialFile.read(path, what: "private key file")
            let source = "private key file '\(path)'"
            let key = try X509PrivateKey(bytes: bytes, password: password, source: source)
            index = try setX509Key(key, chain: handles, into: credentials, keySource: source, chainSource: chainSource)
        case .key(let privateKey):
            let source = "the private key\(which)"
            let key = try X509PrivateKey(bytes: privateKey.pkcs8DERBytes, password: nil, source: source)
            index = try setX509Key(key, chain: handles, into: credentials, keySource: source, chainSource: chainSource)
        case .pkcs11(let url, let pin):
            index = try PKCS11.setKey(url: url, pin: pin, chain: handles, into: credentials, chainSource: chainSource)
        }

        var ocsp: OCSPStatus?
        if let response = identity.ocspResponse {
            let der: [UInt8]
            let source: String
            switch response {
            case .file(let path):
                der = try CredentialFile.read(path, what: "OCSP response file")
                source = "OCSP response file '\(path)'"
            case .der(let bytes):
                der = bytes
                source = "the OCSP response\(which)"
            }
            let status = try OCSPStatus.checkForStapling(der, leaf: handles[0], source: source)
            let rc = GnuTLSDatum.withNULTerminated(der) { datum in
                gnutls_certificate_set_ocsp_status_request_mem(credentials.handle, &datum, UInt32(index), GNUTLS_X509_FMT_DER)
            }
            guard rc >= 0 else {
                throw TLSError.configuration("cannot staple \(source) to \(chainSource): \(TLSError.message(of: rc))", code: rc)
            }
            ocsp = status
        }
        return Loaded(chain: chain, ocsp: ocsp)
    }

    /// GnuTLS handles for the chain, each checked to have a public key GnuTLS can use.
    ///
    /// GnuTLS 3.7.9's gnutls_certificate_set_x509_key accepts a chain certificate whose public key it cannot use
    /// (an unknown algorithm, an unsupported curve), and the key pair it then stores is never freed (found by
    /// the fuzz-certificate target). Such a chain cannot be used anyway: refuse it first.
    private static func usableHandles(_ chain: [Certificate], source: String) throws(TLSError) -> [X509Certificate] {
        var handles: [X509Certificate] = []
        for (index, certificate) in chain.enumerated() {
            let handle = try X509Certificate(der: certificate.derBytes, source: source)
            guard gnutls_x509_crt_get_pk_algorithm(handle.crt, nil) > 0 else {
                throw TLSError.configuration(
                    "certificate \(index + 1) in \(source) has a public-key algorithm GnuTLS does not support")
            }
            var publicKey: gnutls_pubkey_t?
            guard gnutls_pubkey_init(&publicKey) == 0, let publicKey else {
                throw TLSError.configuration("cannot allocate a public key")
            }
            let imported = gnutls_pubkey_import_x509(publicKey, handle.crt, 0)
            gnutls_pubkey_deinit(publicKey)
            guard imported == 0 else {
                throw TLSError.configuration(
                    "certificate \(index + 1) in \(source) has a public key GnuTLS cannot use "
                        + "(for example an unsupported curve)", code: imported)
            }
            handles.append(handle)
        }
        return handles
    }

    /// Adds a key pair with a key in memory; returns its index in the credentials.
    private static func setX509Key(
        _ key: X509PrivateKey, chain handles: [X509Certificate], into credentials: CertificateCredentials,
        keySource: String, chainSource: String
    ) throws(TLSError) -> Int32 {
        var crts: [gnutls_x509_crt_t?] = handles.map { $0.crt }
        let rc = gnutls_certificate_set_x509_key(credentials.handle, &crts, Int32(crts.count), key.key)
        withExtendedLifetime(handles) {}
        guard rc >= 0 else {
            if rc == GNUTLS_E_CERTIFICATE_KEY_MISMATCH {
                throw TLSError.configuration("\(keySource) does not match the certificate in \(chainSource)", code: rc)
            }
            throw TLSError.configuration(
                "cannot use \(chainSource) with \(keySource): \(TLSError.message(of: rc))", code: rc)
        }
        return rc
    }
}
