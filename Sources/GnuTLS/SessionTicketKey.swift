internal import CGnuTLS

#if canImport(Glibc)
import Glibc
#endif

/// Owns the master key a server's session tickets are protected with, given to each server session
/// (`gnutls_session_ticket_enable_server`): generated once per ``TLSContext``, or the key the configuration names
/// (``TLSConfiguration/TicketKey``) so that several instances accept each other's tickets.
///
/// GnuTLS (3.6.4 and later, `lib/stek.c`) does not encrypt tickets with this key itself: it derives the key in
/// use as SHA3-512(period number ‖ master key), the period number being the Unix time divided by 3 × the session
/// expiration (`gnutls_db_set_cache_expiration`, 21600 s by default: a new derived key every 64800 s = 18 h, at
/// multiples of 18 h since the epoch). Instances that share the master key and a clock derive the same keys and
/// rotate together; a ticket made under the previous period's key is still accepted, and tickets outlive neither
/// the session expiration (6 h) nor the master key (a replaced one is kept for one period, see
/// `PreviousTicketKey`).
final class SessionTicketKey {
    /// The key, at an address that stays put for the context's lifetime.
    let pointer: UnsafeMutablePointer<gnutls_datum_t>
    /// Whether GnuTLS allocated the key bytes (generated) or this object did (given).
    private let allocatedByGnuTLS: Bool

    /// The length of a master key (GnuTLS's `TICKET_MASTER_KEY_SIZE`).
    static let size = 64

    /// A fresh random key.
    init() throws(TLSError) {
        pointer = .allocate(capacity: 1)
        pointer.initialize(to: gnutls_datum_t())
        allocatedByGnuTLS = true
        let rc = gnutls_session_ticket_key_generate(pointer)
        guard rc == 0 else {
            pointer.deallocate()
            throw TLSError.configuration("cannot generate a session ticket key", code: rc)
        }
    }

    /// The given key (``size`` bytes, checked by the caller).
    init(bytes: [UInt8]) {
        pointer = .allocate(capacity: 1)
        allocatedByGnuTLS = false
        let data = UnsafeMutablePointer<UInt8>.allocate(capacity: bytes.count)
        data.initialize(from: bytes, count: bytes.count)
        pointer.initialize(to: gnutls_datum_t(data: data, size: UInt32(bytes.count)))
    }

    /// The configured key, read and checked, or a fresh one.
    convenience init(_ source: TLSConfiguration.TicketKey?) throws(TLSError) {
        guard let source else {
            try self.init()
            return
        }
        var bytes = try source.loadBytes()
        self.init(bytes: bytes)
        SessionTicketKey.erase(&bytes)
    }

    /// Overwrites key bytes with zeros (a write the compiler cannot drop).
    static func erase(_ bytes: inout [UInt8]) {
        bytes.withUnsafeMutableBytes { raw in
            if let base = raw.baseAddress { explicit_bzero(base, raw.count) }
        }
    }

    /// Zeroes the key before it is freed: it decrypts every ticket issued with it.
    deinit {
        if let data = pointer.pointee.data {
            explicit_bzero(data, Int(pointer.pointee.size))
            if allocatedByGnuTLS { cgnutls_free(data) } else { data.deallocate() }
        }
        pointer.deallocate()
    }

    /// The length of the key name a ticket starts with (GnuTLS's `TICKET_KEY_NAME_SIZE`).
    static let nameSize = 16

    /// GnuTLS's rotation period for a session expiration of `lifetime` seconds: `lib/stek.c` derives a new
    /// ticket key every `STEK_ROTATION_PERIOD_PRODUCT` (3) × the expiration.
    static func rotationPeriod(lifetime seconds: Int) -> Int { 3 * seconds }

    /// The name of the key GnuTLS derives from this master key for period number `period` (Unix time divided by
    /// the rotation period): the first 16 bytes of SHA3-512(period, 8 bytes big-endian ‖ master key), the bytes
    /// every ticket encrypted under that derived key starts with (`lib/stek.c`, `totp_sha3`). The name is not
    /// secret (it travels in every ticket); the rest of the digest is, and is erased.
    func keyName(period: UInt64) -> [UInt8] {
        guard let key = pointer.pointee.data, Int(pointer.pointee.size) == Self.size else { return [] }
        var input = [UInt8](repeating: 0, count: 8 + Self.size)
        var digest = [UInt8](repeating: 0, count: 64)
        defer {
            Self.erase(&input)
            Self.erase(&digest)
        }
        for i in 0..<8 { input[i] = UInt8(truncatingIfNeeded: period >> (56 - 8 * UInt64(i))) }
        input.withUnsafeMutableBytes { raw in
            (raw.baseAddress! + 8).copyMemory(from: key, byteCount: Self.size)
        }
        let rc = input.withUnsafeBytes { inputBytes in
            digest.withUnsafeMutableBytes { out in
                gnutls_hash_fast(GNUTLS_DIG_SHA3_512, inputBytes.baseAddress, inputBytes.count, out.baseAddress)
            }
        }
        guard rc == 0 else { return [] }
        return Array(digest.prefix(Self.nameSize))
    }

    /// Whether `other` holds the same key bytes (a reload that read the same file).
    func hasSameBytes(as other: SessionTicketKey) -> Bool {
        guard let mine = pointer.pointee.data, let theirs = other.pointer.pointee.data,
            pointer.pointee.size == other.pointer.pointee.size
        else { return false }
        return memcmp(mine, theirs, Int(pointer.pointee.size)) == 0
    }

    /// 64 random bytes from GnuTLS's key generator (for ``TLSConfiguration/TicketKey/writeNewKey(toFile:)``).
    static func generateBytes() throws(TLSError) -> [UInt8] {
        let key = try SessionTicketKey()
        guard let data = key.pointer.pointee.data, Int(key.pointer.pointee.size) == size else {
            throw TLSError.configuration("GnuTLS made a session ticket key of an unexpected size")
        }
        return Array(UnsafeBufferPointer(start: data, count: size))
    }
}
