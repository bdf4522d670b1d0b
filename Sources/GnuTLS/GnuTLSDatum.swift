internal import CGnuTLS

/// Moving bytes in and out of `gnutls_datum_t`, the (pointer, size) pair every GnuTLS call takes and returns.
enum GnuTLSDatum {
    /// Calls `body` with a datum over a NUL-terminated copy of `bytes` (GnuTLS's PEM parsers need the NUL;
    /// the NUL is not counted in the datum's size).
    static func withNULTerminated<R>(_ bytes: [UInt8], _ body: (inout gnutls_datum_t) -> R) -> R {
        var copy = bytes
        copy.append(0)
        return copy.withUnsafeMutableBufferPointer { buffer in
            var datum = gnutls_datum_t(data: buffer.baseAddress, size: UInt32(bytes.count))
            return body(&datum)
        }
    }

    /// Copies a GnuTLS-allocated datum into Swift memory and frees it.
    static func take(_ datum: gnutls_datum_t) -> [UInt8] {
        guard let data = datum.data else { return [] }
        defer { cgnutls_free(data) }
        return Array(UnsafeBufferPointer(start: data, count: Int(datum.size)))
    }
}
