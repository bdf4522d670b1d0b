internal import CGnuTLS

import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// Keys and certificates in PKCS #11 tokens (hardware security modules, smart cards, SoftHSM), by RFC 7512 URL.
///
/// GnuTLS loads the PKCS #11 modules p11-kit is configured with (on Debian, every package that registers one in
/// /usr/share/p11-kit/modules, such as softhsm2). The key never leaves the token: GnuTLS asks the token to sign.
enum PKCS11 {
    /// A certificate stored in a token.
    static func certificate(url: String, source: String) throws(TLSError) -> Certificate {
        try checkURL(url, source: source)
        var crt: gnutls_x509_crt_t?
        var rc = gnutls_x509_crt_init(&crt)
        guard rc == 0, let crt else { throw TLSError.configuration("cannot allocate a certificate", code: rc) }
        rc = gnutls_x509_crt_import_url(crt, url, 0)
        guard rc == 0 else {
            gnutls_x509_crt_deinit(crt)
            throw TLSError.configuration("cannot load \(source) from its token: \(explain(rc))", code: rc)
        }
        let handle = try X509Certificate(owning: crt)
        return Certificate(handle: handle, der: handle.der)
    }

    /// Adds a key pair whose key is in a token; returns its index in the credentials.
    ///
    /// The key is used once here, to sign a test message that the certificate's public key must verify: a wrong
    /// PIN, an unknown object or a key that does not belong to the certificate is an error now, not at the first
    /// handshake.
    static func setKey(
        url: String, pin: TLSConfiguration.Identity.PIN?, chain handles: [X509Certificate],
        into credentials: CertificateCredentials, chainSource: String
    ) throws(TLSError) -> Int32 {
        let source = "private key '\(PKCS11URL.redacted(url))'"
        try checkURL(url, source: source)
        var key: gnutls_privkey_t?
        var rc = gnutls_privkey_init(&key)
        guard rc == 0, let key else { throw TLSError.configuration("cannot allocate a private key", code: rc) }
        var owned = true
        defer { if owned { gnutls_privkey_deinit(key) } }

        // A PIN file usually ends with a newline (`echo 1234 > pin`), which GnuTLS would send as part of the PIN:
        // read it here, without the line ending.
        var url = url
        var pin = pin
        if let (path, rest) = pinSource(in: url) {
            let bytes = try CredentialFile.read(path, what: "PIN file")
            var text = String(decoding: bytes, as: UTF8.self)
            while text.hasSuffix("\n") || text.hasSuffix("\r") { text.removeLast() }
            url = rest
            pin = .value(text)
        }
        if let pin {
            let box = PINSource(pin)
            credentials.retained.append(box)
            gnutls_privkey_set_pin_function(key, tlsPINCallback, Unmanaged.passUnretained(box).toOpaque())
        }
        rc = gnutls_privkey_import_url(key, url, 0)
        guard rc == 0 else {
            // GnuTLS reports a login it could not try for want of a PIN as a wrong PIN.
            if rc == GNUTLS_E_PKCS11_PIN_ERROR && pin == nil && !url.contains("pin-value=") && !url.contains("pin-source=") {
                throw TLSError.configuration(
                    "cannot load \(source): the token needs a PIN for it and none was given "
                        + "(add pin-value or pin-source to the URL, or give a PIN)", code: rc)
            }
            throw TLSError.configuration("cannot load \(source): \(explain(rc))", code: rc)
        }
        try checkSignature(key, matches: handles[0], keySource: source, chainSource: chainSource)

        var pcerts = [gnutls_pcert_st](repeating: gnutls_pcert_st(), count: handles.count)
        for (index, handle) in handles.enumerated() {
            rc = gnutls_pcert_import_x509(&pcerts[index], handle.crt, 0)
            guard rc == 0 else {
                for done in 0..<index { gnutls_pcert_deinit(&pcerts[done]) }
                throw TLSError.configuration("cannot use certificate \(index + 1) in \(chainSource)", code: rc)
            }
        }
        rc = gnutls_certificate_set_key(credentials.handle, nil, 0, &pcerts, Int32(pcerts.count), key)
        guard rc >= 0 else {
            // On failure the caller still owns the certificates and the key.
            for index in pcerts.indices { gnutls_pcert_deinit(&pcerts[index]) }
            if rc == GNUTLS_E_CERTIFICATE_KEY_MISMATCH {
                throw TLSError.configuration("\(source) does not match the certificate in \(chainSource)", code: rc)
            }
            throw TLSError.configuration("cannot use \(chainSource) with \(source): \(TLSError.message(of: rc))", code: rc)
        }
        // The credentials own the key and the certificates now.
        owned = false
        return rc
    }

    /// The file a URL's `pin-source` attribute names (`pin-source=FILE` or `pin-source=file:FILE`), and the URL
    /// without it.
    static func pinSource(in url: String) -> (path: String, url: String)? {
        guard let question = url.firstIndex(of: "?") else { return nil }
        let query = url[url.index(after: question)...].split(separator: "&", omittingEmptySubsequences: false)
        guard let attribute = query.first(where: { $0.hasPrefix("pin-source=") }) else { return nil }
        var path = String(attribute.dropFirst("pin-source=".count))
        if path.hasPrefix("file:") { path.removeFirst("file:".count) }
        path = percentDecoded(path)
        let others = query.filter { !$0.hasPrefix("pin-source=") }
        let base = String(url[..<question])
        return (path, others.isEmpty ? base : base + "?" + others.joined(separator: "&"))
    }

    /// RFC 3986 percent-decoding (`%2F` is `/`); a malformed escape is left as it is.
    static func percentDecoded(_ text: String) -> String {
        var bytes: [UInt8] = []
        let utf8 = Array(text.utf8)
        var index = 0
        while index < utf8.count {
            if utf8[index] == UInt8(ascii: "%"), index + 2 < utf8.count,
                let value = UInt8(String(decoding: utf8[(index + 1)...(index + 2)], as: UTF8.self), radix: 16)
            {
                bytes.append(value)
                index += 3
            } else {
                bytes.append(utf8[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func checkURL(_ url: String, source: String) throws(TLSError) {
        guard url.hasPrefix("pkcs11:") else {
            throw TLSError.configuration("\(source) is not a PKCS #11 URL (they start with 'pkcs11:')")
        }
        guard gnutls_url_is_supported(url) != 0 else {
            throw TLSError.configuration("this GnuTLS cannot open PKCS #11 URLs (built without p11-kit)")
        }
    }

    /// Signs a test message with the token's key and verifies it with the certificate's public key.
    private static func checkSignature(
        _ key: gnutls_privkey_t, matches leaf: X509Certificate, keySource: String, chainSource: String
    ) throws(TLSError) {
        var publicKey: gnutls_pubkey_t?
        guard gnutls_pubkey_init(&publicKey) == 0, let publicKey else {
            throw TLSError.configuration("cannot allocate a public key")
        }
        defer { gnutls_pubkey_deinit(publicKey) }
        var rc = gnutls_pubkey_import_x509(publicKey, leaf.crt, 0)
        guard rc == 0 else { throw TLSError.configuration("cannot read the public key of \(chainSource)", code: rc) }
        let algorithm = gnutls_pk_algorithm_t(rawValue: UInt32(gnutls_pubkey_get_pk_algorithm(publicKey, nil)))
        let signature: gnutls_sign_algorithm_t
        switch algorithm {
        case GNUTLS_PK_EDDSA_ED25519: signature = GNUTLS_SIGN_EDDSA_ED25519
        case GNUTLS_PK_EDDSA_ED448: signature = GNUTLS_SIGN_EDDSA_ED448
        default: signature = gnutls_pk_to_sign(algorithm, GNUTLS_DIG_SHA256)
        }
        var message = Array("swift-gnutls key check".utf8)
        var signed = gnutls_datum_t()
        rc = message.withUnsafeMutableBufferPointer { buffer in
            var data = gnutls_datum_t(data: buffer.baseAddress, size: UInt32(buffer.count))
            return gnutls_privkey_sign_data2(key, signature, 0, &data, &signed)
        }
        guard rc == 0 else {
            throw TLSError.configuration("\(keySource) cannot sign: \(explain(rc))", code: rc)
        }
        defer { cgnutls_free(signed.data) }
        rc = message.withUnsafeMutableBufferPointer { buffer in
            var data = gnutls_datum_t(data: buffer.baseAddress, size: UInt32(buffer.count))
            return gnutls_pubkey_verify_data2(publicKey, signature, 0, &data, &signed)
        }
        guard rc >= 0 else {
            throw TLSError.configuration(
                "\(keySource) does not match the certificate in \(chainSource)", code: GNUTLS_E_CERTIFICATE_KEY_MISMATCH)
        }
    }

    /// Words for the PKCS #11 failures people meet.
    static func explain(_ rc: Int32) -> String {
        switch rc {
        case GNUTLS_E_PKCS11_PIN_ERROR:
            return "the PIN is wrong"
        case GNUTLS_E_PKCS11_PIN_LOCKED: return "the token's PIN is locked"
        case GNUTLS_E_PKCS11_PIN_EXPIRED: return "the token's PIN has expired"
        case GNUTLS_E_PKCS11_REQUESTED_OBJECT_NOT_AVAILBLE, GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE:
            // The second is what GnuTLS returns when it logged in to the token and still found no such object.
            return "no such object in any token (check the token and object names, and that a PIN is given for a private key)"
        case GNUTLS_E_PKCS11_TOKEN_ERROR, GNUTLS_E_PKCS11_SLOT_ERROR:
            return "the token is not available"
        case GNUTLS_E_PARSING_ERROR, GNUTLS_E_INVALID_REQUEST:
            return "the URL is not valid (RFC 7512: pkcs11:token=...;object=...;type=private)"
        default: return TLSError.message(of: rc)
        }
    }
}

/// The PIN of one PKCS #11 key, reached by GnuTLS's PIN callback through its user pointer.
final class PINSource {
    let pin: TLSConfiguration.Identity.PIN
    init(_ pin: TLSConfiguration.Identity.PIN) { self.pin = pin }
}

/// GnuTLS asks for a PIN: a fixed PIN is given once (a wrong one is not retried, so a token is never locked by
/// repeated attempts); a callback is asked each time with the attempt number, at most
/// `PIN.maximumAttempts` times.
func tlsPINCallback(
    _ userdata: UnsafeMutableRawPointer?, _ attempt: Int32, _ tokenURL: UnsafePointer<CChar>?,
    _ tokenLabel: UnsafePointer<CChar>?, _ flags: UInt32, _ pin: UnsafeMutablePointer<CChar>?, _ pinMax: Int
) -> Int32 {
    guard let userdata, let pin, pinMax > 0 else { return GNUTLS_E_PKCS11_PIN_ERROR }
    let source = Unmanaged<PINSource>.fromOpaque(userdata).takeUnretainedValue()
    let text: String?
    switch source.pin {
    case .value(let value):
        text = attempt == 0 && flags & UInt32(GNUTLS_PIN_WRONG.rawValue) == 0 ? value : nil
    case .callback(let ask):
        // GnuTLS asks again after every wrong PIN, without end: stop before a token that counts them locks.
        text = attempt < TLSConfiguration.Identity.PIN.maximumAttempts
            ? ask(tokenLabel.map { String(cString: $0) } ?? "", Int(attempt) + 1) : nil
    }
    guard let text else { return GNUTLS_E_PKCS11_PIN_ERROR }
    let bytes = Array(text.utf8)
    guard bytes.count < pinMax else { return GNUTLS_E_PKCS11_PIN_ERROR }
    for (index, byte) in bytes.enumerated() { pin[index] = CChar(bitPattern: byte) }
    pin[bytes.count] = 0
    return 0
}
