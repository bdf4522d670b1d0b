internal import CGnuTLS

/// Owns one `gnutls_certificate_credentials_t`: the certificates, key and trust anchors that every session of a
/// ``TLSContext`` shares (attached with `gnutls_credentials_set`).
final class CertificateCredentials {
    let handle: gnutls_certificate_credentials_t

    init() throws(TLSError) {
        var handle: gnutls_certificate_credentials_t?
        let rc = gnutls_certificate_allocate_credentials(&handle)
        guard rc == 0, let handle else { throw TLSError.configuration("cannot allocate credentials", code: rc) }
        self.handle = handle
    }

    deinit { gnutls_certificate_free_credentials(handle) }
}
