/// Whether a server acknowledged the name the client sent with SNI: RFC 6066 has it answer with an empty
/// server_name extension, in its ServerHello (TLS 1.2) or its EncryptedExtensions (TLS 1.3). GnuTLS does not
/// say, so the client reads the messages itself. They come from the network: every index is checked, and
/// anything malformed reads as "not acknowledged".
enum ServerNameAcknowledgement {
    /// Whether a ServerHello body (without the handshake header) carries server_name.
    static func inServerHello(_ body: UnsafeRawBufferPointer) -> Bool {
        // legacy_version (2), random (32), session id (1 + n), cipher suite (2), compression (1), extensions.
        let sessionIDOffset = 34
        guard body.count > sessionIDOffset else { return false }
        return inExtensions(body, from: sessionIDOffset + 1 + Int(body[sessionIDOffset]) + 3)
    }

    /// Whether an EncryptedExtensions body carries server_name.
    static func inEncryptedExtensions(_ body: UnsafeRawBufferPointer) -> Bool {
        inExtensions(body, from: 0)
    }

    /// Whether the extension list (a 2-byte length, then type, length, data each) at `start` holds type 0.
    private static func inExtensions(_ body: UnsafeRawBufferPointer, from start: Int) -> Bool {
        guard start >= 0, start + 2 <= body.count else { return false }
        let length = Int(body[start]) << 8 | Int(body[start + 1])
        var offset = start + 2
        let end = min(body.count, offset + length)
        while offset + 4 <= end {
            let type = Int(body[offset]) << 8 | Int(body[offset + 1])
            let size = Int(body[offset + 2]) << 8 | Int(body[offset + 3])
            if type == 0 { return true }
            offset += 4 + size
        }
        return false
    }
}
