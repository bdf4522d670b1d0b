internal import CGnuTLS

/// Owns one `gnutls_certificate_credentials_t`: the certificates, key and trust anchors that every session of a
/// ``TLSContext`` shares (attached with `gnutls_credentials_set`).
final class CertificateCredentials {
    let handle: gnutls_certificate_credentials_t
    /// Objects GnuTLS holds raw pointers to for as long as the credentials live (a PKCS #11 key's PIN source).
    var retained: [AnyObject] = []

    init() throws(TLSError) {
        var handle: gnutls_certificate_credentials_t?
        let rc = gnutls_certificate_allocate_credentials(&handle)
        guard rc == 0, let handle else { throw TLSError.configuration("cannot allocate credentials", code: rc) }
        self.handle = handle
        // The key loaders return the index of the key pair they add, which OCSP responses are attached by.
        gnutls_certificate_set_flags(handle, UInt32(GNUTLS_CERTIFICATE_API_V2.rawValue))
    }

    deinit { gnutls_certificate_free_credentials(handle) }
}
