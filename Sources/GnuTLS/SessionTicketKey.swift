internal import CGnuTLS

#if canImport(Glibc)
import Glibc
#endif

/// Owns the master key a server's session tickets are protected with: generated once per ``TLSContext`` and
/// given to each server session (`gnutls_session_ticket_enable_server`). GnuTLS derives the rotating ticket
/// encryption keys from it.
final class SessionTicketKey {
    /// The key, at an address that stays put for the context's lifetime.
    let pointer: UnsafeMutablePointer<gnutls_datum_t>

    init() throws(TLSError) {
        pointer = .allocate(capacity: 1)
        pointer.initialize(to: gnutls_datum_t())
        let rc = gnutls_session_ticket_key_generate(pointer)
        guard rc == 0 else { throw TLSError.configuration("cannot generate a session ticket key", code: rc) }
    }

    /// Zeroes the key before GnuTLS frees it: it decrypts every ticket issued with it.
    deinit {
        if let data = pointer.pointee.data {
            memset(data, 0, Int(pointer.pointee.size))
            cgnutls_free(data)
        }
        pointer.deallocate()
    }
}
