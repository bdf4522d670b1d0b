/// A bounds-checked big-endian reader over bytes from the network: every read checks the bounds and yields nil
/// past the end.
struct BigEndianReader {
    let bytes: UnsafeRawBufferPointer
    var offset = 0

    mutating func u8() -> UInt8? {
        guard offset + 1 <= bytes.count else { return nil }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func u16() -> UInt16? {
        guard offset + 2 <= bytes.count else { return nil }
        defer { offset += 2 }
        return UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    mutating func skip(_ count: Int) -> Bool {
        guard count >= 0, offset + count <= bytes.count else { return false }
        offset += count
        return true
    }

    mutating func sub(_ count: Int) -> BigEndianReader? {
        guard count >= 0, offset + count <= bytes.count else { return nil }
        defer { offset += count }
        return BigEndianReader(bytes: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)]))
    }
}
