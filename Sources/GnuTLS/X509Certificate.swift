internal import CGnuTLS

/// Owns one `gnutls_x509_crt_t`.
final class X509Certificate {
    let crt: gnutls_x509_crt_t
    let der: [UInt8]

    init(der: [UInt8], source: String) throws(TLSError) {
        var crt: gnutls_x509_crt_t?
        let rc = gnutls_x509_crt_init(&crt)
        guard rc == 0, let crt else {
            throw TLSError.configuration("cannot allocate a certificate", code: rc)
        }
        let imported = GnuTLSDatum.withNULTerminated(der) { datum in gnutls_x509_crt_import(crt, &datum, GNUTLS_X509_FMT_DER) }
        guard imported == 0 else {
            gnutls_x509_crt_deinit(crt)
            throw TLSError.configuration(
                "\(source) holds data that is not a valid X.509 certificate (\(TLSError.message(of: imported)))",
                code: imported)
        }
        self.crt = crt
        self.der = der
    }

    /// Takes ownership of an already initialised certificate.
    init(owning crt: gnutls_x509_crt_t) throws(TLSError) {
        self.crt = crt
        var datum = gnutls_datum_t()
        let rc = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &datum)
        guard rc == 0, let data = datum.data else {
            self.der = []
            throw TLSError.configuration("cannot encode a certificate", code: rc)
        }
        defer { cgnutls_free(data) }
        self.der = Array(UnsafeBufferPointer(start: data, count: Int(datum.size)))
    }

    deinit { gnutls_x509_crt_deinit(crt) }
}
