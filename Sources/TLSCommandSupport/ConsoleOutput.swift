#if canImport(Glibc)
import Glibc
#endif
import GnuTLS
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Whole lines to standard output and standard error, flushed at once and never interleaved between threads.
public final class ConsoleOutput: Sendable {
    private let lock = NIOLock()

    public init() {}

    /// Writes one line to standard output, unbuffered.
    public func line(_ text: String) { write(text + "\n", to: STDOUT_FILENO) }

    /// Writes one line to standard error, unbuffered.
    public func error(_ text: String) { write(text + "\n", to: STDERR_FILENO) }

    /// Writes raw bytes to standard output (stream mode).
    public func raw(_ bytes: UnsafeRawBufferPointer) { lock.withLock { Self.writeAll(bytes, to: STDOUT_FILENO) } }

    private func write(_ text: String, to fd: Int32) {
        var text = text
        lock.withLock { text.withUTF8 { Self.writeAll(UnsafeRawBufferPointer($0), to: fd) } }
    }

    private static func writeAll(_ bytes: UnsafeRawBufferPointer, to fd: Int32) {
        guard let base = bytes.baseAddress else { return }
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(fd, base + offset, bytes.count - offset)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            offset += n
        }
    }
}

/// A sentence for any error a command meets: TLS errors give their reason, socket errors their cause in words.
public func describe(_ error: any Error) -> String {
    if let error = error as? TLSError { return error.reason }
    if let error = error as? NIOConnectionError {
        let causes = error.connectionErrors.map { describe($0.error) }
        if let first = causes.first { return Set(causes).count == 1 ? first : causes.joined(separator: "; ") }
        if let dns = error.dnsAError ?? error.dnsAAAAError { return "cannot resolve the host name: \(dns)" }
        return "cannot connect"
    }
    if let error = error as? IOError { return errnoDescription(error.errnoCode) }
    if let error = error as? ChannelError {
        switch error {
        case .connectTimeout(let timeout): return "connection timed out after \(timeout.nanoseconds / 1_000_000_000) s"
        case .ioOnClosedChannel, .alreadyClosed, .eof: return "the connection was closed"
        case .outputClosed: return "the connection was closed for writing"
        default: return "\(error)"
        }
    }
    if let error = error as? SocketAddressError {
        switch error {
        case .unknown(let host, _): return "cannot resolve the host name '\(host)'"
        default: return "\(error)"
        }
    }
    return "\(error)"
}

/// `strerror` in lower case, as in "connection refused".
func errnoDescription(_ code: Int32) -> String {
    String(cString: strerror(code)).lowercased()
}

/// Warns on standard error, as ssh does, when a private key file can be read or changed by users other than its
/// owner (and its group, which the ssl-cert convention uses for reading).
public func warnIfOthersCanReadKey(_ path: String, output: ConsoleOutput, what: String = "private key") {
    var info = stat()
    guard stat(path, &info) == 0 else { return }
    let mode = info.st_mode & 0o777
    guard mode & 0o026 != 0 else { return }
    let octal = String(mode, radix: 8)
    let who = mode & 0o004 != 0 ? "every user of this machine can read it" : "users other than its owner can change it"
    output.error("Warning: the \(what) '\(path)' has mode 0\(octal): \(who); chmod 600 '\(path)'")
}
