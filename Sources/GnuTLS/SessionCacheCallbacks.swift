internal import CGnuTLS

// GnuTLS's session database callbacks (gnutls_db_set_*), over a ``TLSSessionCache``. They are C function
// pointers: the cache is reached through the pointer given to gnutls_db_set_ptr, a ``SessionCacheBox`` the
// context owns (and every session keeps its context alive).

/// Holds a server context's session cache at an address GnuTLS can be given.
final class SessionCacheBox {
    let cache: any TLSSessionCache

    init(_ cache: any TLSSessionCache) {
        self.cache = cache
    }

    /// Points a server session's session database at this cache.
    func install(on session: gnutls_session_t) {
        gnutls_db_set_ptr(session, Unmanaged.passUnretained(self).toOpaque())
        gnutls_db_set_store_function(session, sessionCacheStore)
        gnutls_db_set_retrieve_function(session, sessionCacheRetrieve)
        gnutls_db_set_remove_function(session, sessionCacheRemove)
    }

    static func of(_ pointer: UnsafeMutableRawPointer?) -> SessionCacheBox? {
        guard let pointer else { return nil }
        return Unmanaged<SessionCacheBox>.fromOpaque(pointer).takeUnretainedValue()
    }
}

private func bytes(_ datum: gnutls_datum_t) -> [UInt8] {
    guard let data = datum.data, datum.size > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: Int(datum.size)))
}

/// Always 0: a session that could not be stored is only not resumable, never a failed handshake.
func sessionCacheStore(_ pointer: UnsafeMutableRawPointer?, _ key: gnutls_datum_t, _ data: gnutls_datum_t) -> Int32 {
    guard let box = SessionCacheBox.of(pointer) else { return 0 }
    let id = bytes(key)
    let session = bytes(data)
    guard !id.isEmpty, !session.isEmpty else { return 0 }
    box.cache.store(id: id, session: session)
    return 0
}

/// The stored session in memory from gnutls_malloc (GnuTLS frees it), or an empty datum: a full handshake.
func sessionCacheRetrieve(_ pointer: UnsafeMutableRawPointer?, _ key: gnutls_datum_t) -> gnutls_datum_t {
    guard let box = SessionCacheBox.of(pointer) else { return gnutls_datum_t() }
    let id = bytes(key)
    guard !id.isEmpty, let session = box.cache.retrieve(id: id), !session.isEmpty,
        session.count <= Int(UInt32.max),
        let memory = cgnutls_malloc(session.count)
    else { return gnutls_datum_t() }
    session.withUnsafeBytes { memory.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    return gnutls_datum_t(data: memory.assumingMemoryBound(to: UInt8.self), size: UInt32(session.count))
}

func sessionCacheRemove(_ pointer: UnsafeMutableRawPointer?, _ key: gnutls_datum_t) -> Int32 {
    guard let box = SessionCacheBox.of(pointer) else { return 0 }
    let id = bytes(key)
    if !id.isEmpty { box.cache.remove(id: id) }
    return 0
}
