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
    /// Whether each line starts with the UTC time (`2026-12-01T12:00:00.123Z `).
    public let timestamps: Bool

    public init(timestamps: Bool = false) {
        self.timestamps = timestamps
    }

    /// Writes one line to standard output, unbuffered.
    public func line(_ text: String) { write(stamped(text) + "\n", to: STDOUT_FILENO) }

    /// Writes one line to standard error, unbuffered.
    public func error(_ text: String) { write(stamped(text) + "\n", to: STDERR_FILENO) }

    private func stamped(_ text: String) -> String {
        timestamps ? Self.timestamp() + " " + text : text
    }

    /// The current UTC time in ISO 8601 form with milliseconds.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let milliseconds = Int(now.tv_nsec / 1_000_000)
        let fraction = milliseconds < 10 ? "00\(milliseconds)" : (milliseconds < 100 ? "0\(milliseconds)" : "\(milliseconds)")
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T"
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)).\(fraction)Z"
    }

    /// Writes text to standard output as it is (no timestamp, no newline added).
    public func text(_ text: String) { write(text, to: STDOUT_FILENO) }

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
        if let dns = error.dnsAError ?? error.dnsAAAAError {
            let text = describe(dns)
            return text.hasPrefix("cannot resolve") ? text : "cannot resolve the host name: \(text)"
        }
        return "cannot connect"
    }
    if let error = error as? IOError { return errnoDescription(error.errnoCode) }
    if let error = error as? ChannelError {
        switch error {
        case .connectTimeout(let timeout): return "connection timed out after \(timeout.nanoseconds / 1_000_000_000) s"
        case .ioOnClosedChannel, .alreadyClosed, .eof: return "the connection was closed"
        case .outputClosed: return "the connection was closed for writing"
        case .connectPending: return "a connection is already being made"
        case .inputClosed: return "the connection was closed for reading"
        case .writeMessageTooLarge: return "a message is too large to send"
        case .operationUnsupported: return "the operation is not supported"
        default: return "the connection failed"
        }
    }
    if let error = error as? SocketAddressError {
        switch error {
        case .unknown(let host, _): return "cannot resolve the host name '\(host)'"
        case .unsupported: return "the address family is not supported"
        case .unixDomainSocketPathTooLong: return "the socket path is too long"
        case .failedToParseIPString(let text): return "'\(text)' is not an IP address"
        }
    }
    if let error = error as? SocketAddressError.UnknownHost {
        // NIO's own description starts with its type name.
        return "cannot resolve the host name '\(error.host)': \(error.errorDescription.lowercased())"
    }
    if error is SocketAddressError.FailedToParseIPByteBuffer { return "the address is not an IP address" }
    if error is CancellationError { return "cancelled" }
    // Anything else: its own words when it has them, never a bare Swift type or case name.
    if let error = error as? any CustomStringConvertible { return error.description }
    return "unexpected failure"
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
