internal import CGnuTLS

/// Owns one `gnutls_x509_privkey_t`.
final class X509PrivateKey {
    let key: gnutls_x509_privkey_t

    private init(key: gnutls_x509_privkey_t) { self.key = key }

    convenience init(bytes: [UInt8], password: String?, source: String) throws(TLSError) {
        let key = try Self.allocate()
        self.init(key: key)
        let format = PEM.isPEM(bytes) ? GNUTLS_X509_FMT_PEM : GNUTLS_X509_FMT_DER
        let rc = GnuTLSDatum.withNULTerminated(bytes) { datum in
            gnutls_x509_privkey_import2(key, &datum, format, password, password == nil ? UInt32(GNUTLS_PKCS_PLAIN.rawValue) : 0)
        }
        guard rc == 0 else {
            let detail: String
            switch rc {
            case GNUTLS_E_DECRYPTION_FAILED:
                detail = password == nil ? "the key is encrypted and no password was given" : "the password is wrong"
            default: detail = TLSError.message(of: rc)
            }
            throw TLSError.configuration("\(source) holds no usable private key (\(detail))", code: rc)
        }
    }

    static func generate(_ algorithm: PrivateKey.Algorithm) throws(TLSError) -> X509PrivateKey {
        let handle = X509PrivateKey(key: try allocate())
        let rc: Int32
        switch algorithm {
        case .ecdsaP256:
            rc = gnutls_x509_privkey_generate2(handle.key, GNUTLS_PK_ECDSA, cgnutls_curve_to_bits(GNUTLS_ECC_CURVE_SECP256R1), 0, nil, 0)
        case .ecdsaP384:
            rc = gnutls_x509_privkey_generate2(handle.key, GNUTLS_PK_ECDSA, cgnutls_curve_to_bits(GNUTLS_ECC_CURVE_SECP384R1), 0, nil, 0)
        case .rsa(let bits):
            guard bits >= 2048, bits <= 16384 else {
                throw TLSError.configuration("RSA keys must have 2048 to 16384 bits, not \(bits)")
            }
            rc = gnutls_x509_privkey_generate2(handle.key, GNUTLS_PK_RSA, UInt32(bits), 0, nil, 0)
        case .ed25519:
            rc = gnutls_x509_privkey_generate2(handle.key, GNUTLS_PK_EDDSA_ED25519, 256, 0, nil, 0)
        }
        guard rc == 0 else { throw TLSError.configuration("cannot generate a private key", code: rc) }
        return handle
    }

    private static func allocate() throws(TLSError) -> gnutls_x509_privkey_t {
        var key: gnutls_x509_privkey_t?
        let rc = gnutls_x509_privkey_init(&key)
        guard rc == 0, let key else { throw TLSError.configuration("cannot allocate a private key", code: rc) }
        return key
    }

    func pkcs8DER() throws(TLSError) -> [UInt8] {
        var datum = gnutls_datum_t()
        let rc = gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_DER, nil, UInt32(GNUTLS_PKCS_PLAIN.rawValue), &datum)
        guard rc == 0 else { throw TLSError.configuration("cannot encode a private key", code: rc) }
        return GnuTLSDatum.take(datum)
    }

    deinit { gnutls_x509_privkey_deinit(key) }
}
