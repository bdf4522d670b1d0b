internal import CGnuTLS

/// What the transport callbacks touch: received ciphertext GnuTLS has not consumed, and ciphertext GnuTLS
/// produced that the caller has not taken. Plain memory, so a callback costs no reference counting.
struct TransportBuffers {
    let session: gnutls_session_t
    var inbound = ByteQueue()
    /// Input lent by ``TLSSession/withBorrowedInput(_:_:)``, read after `inbound`: `borrowed[borrowedOffset...]`.
    var borrowed = UnsafeRawBufferPointer(start: nil, count: 0)
    var borrowedOffset = 0
    var outbound = ByteQueue()
    /// Takes produced ciphertext instead of `outbound` when set (``TLSSession/outputSink``).
    unowned(unsafe) var sink: (any TLSOutputSink)?
    /// The transport will deliver no more bytes.
    var inboundEnded = false
    /// Whether pulls update `recentInput` (only during the handshake, so the data path pays nothing).
    var watchesInput = true
    /// The last eight bytes GnuTLS pulled, the newest in the low byte, and how many bytes have been pulled
    /// (at most 8 counted). GnuTLS pulls a record's header, then exactly its body, so after a record fails
    /// to decrypt these end with that record.
    var recentInput: UInt64 = 0
    var recentInputCount = 0

    init(session: gnutls_session_t) { self.session = session }

    var borrowedRemaining: Int { borrowed.count - borrowedOffset }

    /// Whether a pull can make progress: bytes are buffered or the input has ended.
    var hasInput: Bool { !inbound.isEmpty || borrowedRemaining > 0 || inboundEnded }

    mutating func takeBorrowed(into destination: UnsafeMutableRawPointer, capacity: Int) -> Int {
        let n = min(borrowedRemaining, capacity)
        guard n > 0, let base = borrowed.baseAddress else { return 0 }
        destination.copyMemory(from: base + borrowedOffset, byteCount: n)
        borrowedOffset += n
        return n
    }

    /// Notes pulled bytes in `recentInput`.
    mutating func watch(_ pulled: UnsafeRawPointer, count: Int) {
        if count >= 8 {
            // One load of the last eight bytes (GnuTLS pulls whole record bodies, often kilobytes).
            recentInput = UInt64(bigEndian: pulled.loadUnaligned(fromByteOffset: count - 8, as: UInt64.self))
            recentInputCount = 8
            return
        }
        for index in 0..<count {
            recentInput = recentInput << 8 | UInt64(pulled.load(fromByteOffset: index, as: UInt8.self))
        }
        recentInputCount = min(8, recentInputCount + count)
    }

    /// The alert in the last record pulled, when that record is an unencrypted alert (type 21, version 3.x,
    /// length 2): its level and description bytes.
    var unencryptedAlertPulled: (level: UInt8, description: UInt8)? {
        guard recentInputCount >= 7 else { return nil }
        func byte(_ fromEnd: Int) -> UInt8 { UInt8(truncatingIfNeeded: recentInput >> (8 * UInt64(fromEnd - 1))) }
        guard byte(7) == 21, byte(6) == 3, (1...4).contains(byte(5)), byte(4) == 0, byte(3) == 2 else { return nil }
        return (byte(2), byte(1))
    }

    /// Copies what is left of the borrowed input into `inbound` and ends the loan.
    mutating func keepBorrowedInput() {
        if borrowedRemaining > 0, let base = borrowed.baseAddress {
            inbound.append(base + borrowedOffset, count: borrowedRemaining)
        }
        borrowed = UnsafeRawBufferPointer(start: nil, count: 0)
        borrowedOffset = 0
    }
}

/// Takes ciphertext as GnuTLS produces it, instead of the session's pending output (``TLSSession/outputSink``).
package protocol TLSOutputSink: AnyObject {
    /// Takes `bytes`, which are valid only during the call.
    func takeOutput(_ bytes: UnsafeRawBufferPointer)
}
