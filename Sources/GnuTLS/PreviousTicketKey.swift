import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The session-ticket master key a reload replaced, kept for one rotation period after the change so that
/// tickets made under it still resume: without it, replacing the shared key on every instance would turn every
/// outstanding ticket into a full handshake at once.
///
/// GnuTLS takes one master key per session (`gnutls_session_ticket_enable_server`), so the server reads the key
/// names the ClientHello's tickets start with before GnuTLS does (`ClientHelloPeek`) and hands a session this
/// key instead of the current one when one of them is a name derived from it (current or previous period,
/// as GnuTLS accepts for its own key). Tickets GnuTLS issues on such a resumption are made under this key too;
/// they stop resuming when it is dropped, as GnuTLS never lets a ticket outlive the first session's lifetime
/// anyway.
///
/// Only one previous key is kept: a key two changes old is gone. The names are not secret (every ticket carries
/// one); the key is, and goes with this object (`SessionTicketKey` erases it).
final class PreviousTicketKey: @unchecked Sendable {
    // @unchecked: `key` is never changed after init, and GnuTLS only reads it; `names` is behind a lock.

    /// The replaced master key.
    let key: SessionTicketKey
    /// The Unix time from which it is no longer accepted: one rotation period after the change.
    let keptUntil: Int
    /// GnuTLS's rotation period, in seconds (3 × the session lifetime).
    let period: Int
    /// The key names for one period number and the one before it, 16 bytes each, made when first needed.
    private let names = Mutex<(period: UInt64, names: [UInt8])>((0, []))

    /// Keeps `key`, replaced at Unix time `now`, for one rotation period of `period` seconds.
    init(key: SessionTicketKey, replacedAt now: Int, period: Int) {
        self.key = key
        self.period = max(period, 1)
        keptUntil = now + self.period
    }

    /// The current Unix time (the clock GnuTLS's key rotation reads).
    static var now: Int { Int(time(nil)) }

    /// Whether it is still accepted at Unix time `now`.
    func isKept(at now: Int) -> Bool { now < keptUntil }

    /// Whether one of `offered` (16-byte key names, one after the other, from the ClientHello's tickets) names
    /// a key GnuTLS derives from this master key at Unix time `now`, while it is kept.
    func issued(anyOf offered: [UInt8], at now: Int) -> Bool {
        guard isKept(at: now), offered.count >= SessionTicketKey.nameSize, now > 0 else { return false }
        let current = UInt64(now / period)
        let known = names.withLock { state in
            if state.period != current || state.names.isEmpty {
                state = (current, key.keyName(period: current) + (current > 1 ? key.keyName(period: current - 1) : []))
            }
            return state.names
        }
        let size = SessionTicketKey.nameSize
        return offered.withUnsafeBytes { offeredBytes in
            known.withUnsafeBytes { knownBytes in
                var start = 0
                while start + size <= offeredBytes.count {
                    var candidate = 0
                    while candidate + size <= knownBytes.count {
                        if memcmp(offeredBytes.baseAddress! + start, knownBytes.baseAddress! + candidate, size) == 0 {
                            return true
                        }
                        candidate += size
                    }
                    start += size
                }
                return false
            }
        }
    }
}
