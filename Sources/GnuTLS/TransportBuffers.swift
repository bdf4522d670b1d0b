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
