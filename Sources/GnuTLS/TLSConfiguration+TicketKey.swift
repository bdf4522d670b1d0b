import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

extension TLSConfiguration {
    /// The session-ticket master key a server uses, when it is not a fresh one per ``TLSContext``: several
    /// instances behind one load balancer that share it accept each other's tickets, so a client resumes
    /// wherever it lands. GnuTLS derives the keys it encrypts tickets with from it and rotates them every 18 h
    /// (see `SessionTicketKey`). When a reload (``ReloadableTLSContext``) reads a different key, tickets made
    /// under the replaced one keep resuming for one rotation period, then that key is dropped; only the key
    /// just replaced is kept.
    ///
    /// A key file holds the 64 bytes in base64 on one line (a trailing newline is allowed); make one with
    /// `tls-certs ticket-key --out FILE` or ``writeNewKey(toFile:)``. It is as secret as a private key: whoever
    /// has it can decrypt the tickets, and with them the sessions they resume (TLS 1.2) or impersonate
    /// resumptions (TLS 1.3). Its bytes are never printed, logged or part of an error.
    public enum TicketKey: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
        /// A key file, read when the context is built.
        case file(String)
        /// The 64 key bytes.
        case bytes([UInt8])

        /// The file's path, or `<redacted>` for bytes.
        public var description: String {
            switch self {
            case .file(let path): return "file(\(String(reflecting: path)))"
            case .bytes: return "bytes(\(PrivateKey.redacted))"
            }
        }

        public var debugDescription: String { description }

        public var customMirror: Mirror {
            switch self {
            case .file(let path): return Mirror(self, children: ["file": path], displayStyle: .enum)
            case .bytes: return Mirror(self, children: ["bytes": PrivateKey.redacted], displayStyle: .enum)
            }
        }

        /// The key's bytes, checked: 64 of them, not all equal.
        func loadBytes() throws(TLSError) -> [UInt8] {
            let bytes: [UInt8]
            let source: String
            switch self {
            case .bytes(let given):
                bytes = given
                source = "the session ticket key"
            case .file(let path):
                source = "session ticket key file '\(path)'"
                bytes = try Self.decodeFile(try CredentialFile.read(path, what: "session ticket key file"), source: source)
            }
            guard bytes.count == SessionTicketKey.size else {
                throw TLSError.configuration(
                    "\(source) holds \(bytes.count) bytes; a session ticket key is \(SessionTicketKey.size) bytes "
                        + "(make one with: tls-certs ticket-key --out FILE)")
            }
            guard Set(bytes).count > 1 else {
                throw TLSError.configuration("\(source) is the same byte repeated: not a random key")
            }
            return bytes
        }

        /// The bytes of a key file's base64 line.
        static func decodeFile(_ contents: [UInt8], source: String) throws(TLSError) -> [UInt8] {
            var text = contents[...]
            if text.last == 0x0A { text = text.dropLast() }
            if text.last == 0x0D { text = text.dropLast() }
            let isBase64 = !text.isEmpty && text.allSatisfy { byte in
                (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || (0x30...0x39).contains(byte)
                    || byte == 0x2B || byte == 0x2F || byte == 0x3D
            }
            guard isBase64, let data = Data(base64Encoded: Data(text)) else {
                throw TLSError.configuration(
                    "\(source) is not one line of base64 (make one with: tls-certs ticket-key --out FILE)")
            }
            return Array(data)
        }

        /// Makes a new random key and writes it to `path` as a key file, readable by its owner only (mode 0600).
        /// An existing file is never replaced: replacing a shared key must be a decision, not an accident.
        public static func writeNewKey(toFile path: String) throws(TLSError) {
            var bytes = try SessionTicketKey.generateBytes()
            var text = Array((Data(bytes).base64EncodedString() + "\n").utf8)
            defer {
                SessionTicketKey.erase(&bytes)
                SessionTicketKey.erase(&text)
            }
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard fd >= 0 else {
                let reason = errno == EEXIST ? "it already exists (remove it first to replace the key)"
                    : String(cString: strerror(errno))
                throw TLSError.configuration("cannot write session ticket key file '\(path)': \(reason)")
            }
            var written = 0
            var failure: Int32 = 0
            while written < text.count {
                let n = text.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, $0.count - written) }
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    break
                }
                written += n
            }
            if failure == 0, fsync(fd) != 0 { failure = errno }
            close(fd)
            if failure != 0 {
                unlink(path)
                throw TLSError.configuration(
                    "cannot write session ticket key file '\(path)': \(String(cString: strerror(failure)))")
            }
        }
    }
}
