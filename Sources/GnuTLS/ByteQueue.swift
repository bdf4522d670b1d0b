#if canImport(Glibc)
import Glibc
#endif

/// A growable byte queue in memory it allocates itself: bytes are appended at the end and taken from the
/// front. It keeps its capacity (no allocation per record once data flows) until `releaseIfEmpty`.
struct ByteQueue {
    private var base: UnsafeMutableRawPointer?
    private var start = 0
    private var end = 0
    private var capacity = 0

    var count: Int { end - start }
    var isEmpty: Bool { start == end }

    /// The queued bytes (valid until the next mutation).
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base.map { $0 + start }, count: end - start) }

    /// Makes room for `extra` more bytes.
    mutating func reserve(_ extra: Int) {
        let live = end - start
        if end + extra <= capacity { return }
        if let base, live + extra <= capacity {
            // Enough room once the consumed front is reclaimed.
            if live > 0 { memmove(base, base + start, live) }
            start = 0
            end = live
            return
        }
        // Grow geometrically, so a stream of appends costs amortized constant time.
        let newCapacity = max(live + extra, capacity * 2)
        let newBase = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 16)
        if let base, live > 0 { newBase.copyMemory(from: base + start, byteCount: live) }
        base?.deallocate()
        base = newBase
        start = 0
        end = live
        capacity = newCapacity
    }

    mutating func append(_ bytes: UnsafeRawPointer, count: Int) {
        guard count > 0 else { return }
        reserve(count)
        (base! + end).copyMemory(from: bytes, byteCount: count)
        end += count
    }

    /// Moves up to `capacity` bytes from the front to `destination`; returns how many.
    mutating func take(into destination: UnsafeMutableRawPointer, capacity limit: Int) -> Int {
        let n = min(end - start, limit)
        guard n > 0, let base else { return 0 }
        destination.copyMemory(from: base + start, byteCount: n)
        start += n
        if start == end {
            start = 0
            end = 0
        }
        return n
    }

    /// Empties the queue, keeping its capacity.
    mutating func removeAll() {
        start = 0
        end = 0
    }

    /// Frees the memory if the queue holds nothing; it is allocated again on the next append.
    mutating func releaseIfEmpty() {
        guard isEmpty else { return }
        deallocate()
    }

    /// Frees the memory, dropping whatever is queued.
    mutating func deallocate() {
        base?.deallocate()
        base = nil
        start = 0
        end = 0
        capacity = 0
    }
}
