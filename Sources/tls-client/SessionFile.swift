import Foundation
import GnuTLS

/// --sess-in / --sess-out: a session saved after one connection and offered on the next, as openssl s_client's
/// -sess_out / -sess_in do. The file holds GnuTLS's session data (the ticket and the secrets to use it): it is
/// written with mode 0600 and never printed.
enum SessionFile {
    /// The saved session in `path`.
    static func read(_ path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            let reason = FileManager.default.fileExists(atPath: path) ? "it cannot be read" : "it does not exist"
            throw TLSError(kind: .configuration, reason: "cannot read the session file '\(path)': \(reason)")
        }
        guard !data.isEmpty else {
            throw TLSError(kind: .configuration, reason: "the session file '\(path)' is empty")
        }
        return Array(data)
    }

    /// Writes `bytes` to `path` (replacing it), readable by its owner only.
    static func write(_ bytes: [UInt8], to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw TLSError(
                kind: .configuration, reason: "cannot write the session file '\(path)': \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        // An existing file keeps its mode through O_CREAT: make it private too.
        var failure: Int32 = fchmod(fd, 0o600) == 0 ? 0 : errno
        var written = 0
        while failure == 0 && written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, $0.count - written) }
            if n < 0 {
                if errno == EINTR { continue }
                failure = errno
            } else {
                written += n
            }
        }
        if failure != 0 {
            throw TLSError(
                kind: .configuration, reason: "cannot write the session file '\(path)': \(String(cString: strerror(failure)))")
        }
    }
}
