internal import CGnuTLS

/// Owns the ALPN names of a ``TLSContext`` as `gnutls_datum_t`s over one allocation, handed to each session with
/// `gnutls_alpn_set_protocols` (which copies them).
final class ApplicationProtocolList {
    /// One datum per name, in order of preference.
    let datums: UnsafeMutableBufferPointer<gnutls_datum_t>
    /// How many names there are (`datums` holds at least one entry, even for none).
    let count: Int
    private let storage: UnsafeMutableRawBufferPointer

    /// Copies `protocols`, which the caller has checked (1 to 32 bytes each, at most 8).
    init(_ protocols: [String]) {
        // One allocation for the names, one for the datums.
        let total = protocols.reduce(0) { $0 + $1.utf8.count }
        storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(total, 1), alignment: 1)
        datums = UnsafeMutableBufferPointer<gnutls_datum_t>.allocate(capacity: max(protocols.count, 1))
        count = protocols.count
        var offset = 0
        for (index, name) in protocols.enumerated() {
            let bytes = Array(name.utf8)
            let start = storage.baseAddress!.advanced(by: offset)
            bytes.withUnsafeBytes { start.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            datums[index] = gnutls_datum_t(data: start.assumingMemoryBound(to: UInt8.self), size: UInt32(bytes.count))
            offset += bytes.count
        }
    }

    deinit {
        storage.deallocate()
        datums.deallocate()
    }
}
