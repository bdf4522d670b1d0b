#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import GnuTLS
import NIOConcurrencyHelpers

// What tls-server and tls-client share on the command line: named policies and their warnings, trust options,
// host names as people write them, repeated options, and the key log file.

/// The policies `--priority` accepts by name; anything else is a raw GnuTLS priority string.
public let namedPolicies: [(name: String, policy: TLSConfiguration.ProtocolPolicy)] = [
    ("intermediate", .intermediate), ("modern", .modern),
]

/// The `--priority` help text, listing the presets.
public let priorityHelp =
    "'intermediate' (the default: TLS 1.3 and 1.2, forward-secret AEAD suites only), 'modern' (TLS 1.3 only), "
    + "or a raw GnuTLS priority string (warned about when it allows TLS 1.1 or older, or a suite that is not AEAD)."

/// `--priority VALUE` as a policy: a preset's name, or a raw priority string.
public func protocolPolicy(_ text: String?) -> TLSConfiguration.ProtocolPolicy {
    guard let text else { return .intermediate }
    return namedPolicies.first { $0.name == text.lowercased() }?.policy ?? .custom(text)
}

/// The warnings a context's compiled policy calls for: versions below TLS 1.2, suites that are not AEAD.
/// Empty for the presets.
public func policyWarnings(_ context: TLSContext) -> [String] {
    guard case .custom = context.configuration.policy else { return [] }
    var warnings: [String] = []
    let old = context.enabledVersions.filter { $0 == .tls10 || $0 == .tls11 }
    if !old.isEmpty {
        warnings.append(
            "Warning: --priority enables \(old.map(\.description).joined(separator: " and ")), deprecated and "
                + "insecure (RFC 8996); the default allows TLS 1.2 and 1.3 only")
    }
    let weak = context.nonAEADCipherSuites
    if !weak.isEmpty {
        let shown = weak.prefix(3).joined(separator: ", ") + (weak.count > 3 ? ", ..." : "")
        warnings.append(
            "Warning: --priority enables \(weak.count) cipher suite\(weak.count == 1 ? "" : "s") that "
                + "\(weak.count == 1 ? "is" : "are") not AEAD (CBC or stream ciphers: \(shown)); "
                + "the default allows AEAD suites only")
    }
    return warnings
}

/// The trust roots the trust options describe: `--cafile` and/or `--capath` replace the system store,
/// each `--add-cafile` is added to whatever the others give (the system store when neither is given).
public func trustRoots(
    cafile: String?, capath: String?, addCAFiles: [String]
) -> (primary: TLSConfiguration.TrustRoots, additional: [TLSConfiguration.TrustRoots]) {
    var additional: [TLSConfiguration.TrustRoots] = []
    let primary: TLSConfiguration.TrustRoots
    switch (cafile, capath) {
    case (let file?, let directory?):
        primary = .file(file)
        additional.append(.directory(directory))
    case (let file?, nil): primary = .file(file)
    case (nil, let directory?): primary = .directory(directory)
    case (nil, nil): primary = .system
    }
    additional += addCAFiles.map { .file($0) }
    return (primary, additional)
}

/// A host as people write it: `[::1]` is `::1`.
public func unbracketed(_ host: String) -> String {
    host.hasPrefix("[") && host.hasSuffix("]") && host.count > 2 ? String(host.dropFirst().dropLast()) : host
}

/// Why `--host` cannot name a host as written, for a usage error (nil when it can): a bracket without its
/// partner (`[::1`, `::1]`) would otherwise be looked up as a name and fail later with a puzzling message.
public func hostSyntaxError(_ host: String) -> String? {
    if host.isEmpty { return "--host is empty" }
    let opens = host.hasPrefix("["), closes = host.hasSuffix("]")
    let inner = opens && closes ? host.dropFirst().dropLast() : Substring(host)
    if opens != closes || inner.isEmpty || inner.contains(where: { $0 == "[" || $0 == "]" }) {
        return "--host '\(host)' is not a host: a bracket without its partner, or nothing in them "
            + "(write ::1 or [::1])"
    }
    return nil
}

/// An error in words for an `Error:` line. `"\(error)"` of a Foundation error prints Swift type names
/// (`CocoaError(code: FoundationEssentials.CocoaError.Code(rawValue: 516), ...)`); the system's own wording of
/// the errno underneath says the same to a person.
public func plainReason(_ error: any Error) -> String {
    if let error = error as? TLSError { return error.reason }
    if let error = error as? POSIXError { return String(cString: strerror(error.code.rawValue)) }
    if let error = error as? CocoaError {
        if let posix = error.userInfo["NSUnderlyingError"] as? POSIXError {
            return String(cString: strerror(posix.code.rawValue))
        }
        switch error.code {
        case .fileNoSuchFile, .fileReadNoSuchFile: return String(cString: strerror(ENOENT))
        case .fileWriteFileExists: return String(cString: strerror(EEXIST))
        case .fileReadNoPermission, .fileWriteNoPermission: return String(cString: strerror(EACCES))
        default: return "file operation failed (Foundation error \(error.code.rawValue))"
        }
    }
    return "\(error)"
}

/// Whether `text` is an IPv4 or IPv6 address literal (not sent as SNI).
public func isIPAddressLiteral(_ text: String) -> Bool {
    var buffer = [UInt8](repeating: 0, count: 16)
    return inet_pton(AF_INET, text, &buffer) == 1 || inet_pton(AF_INET6, text, &buffer) == 1
}

/// A host written for display with a port: IPv6 addresses in brackets.
public func hostForDisplay(_ host: String) -> String {
    host.contains(":") ? "[\(host)]" : host
}

/// Splits `HOST:PORT` (`[::1]:4443`, `localhost:4443`, `192.0.2.1:443`) as `openssl s_client -connect` takes
/// it; nil, with the reason, when it is not of that form. `allowingPortZero` accepts port 0 (any free port) for
/// addresses to listen on.
public func splitHostAndPort(
    _ text: String, allowingPortZero: Bool = false
) -> Result<(host: String, port: Int), HostPortError> {
    let host: Substring
    let rest: Substring
    if text.hasPrefix("[") {
        guard let close = text.firstIndex(of: "]") else { return .failure(HostPortError(text, "the '[' has no ']'")) }
        host = text[text.index(after: text.startIndex)..<close]
        rest = text[text.index(after: close)...]
    } else {
        guard let colon = text.lastIndex(of: ":") else {
            return .failure(HostPortError(text, "it has no port (write HOST:PORT)"))
        }
        host = text[..<colon]
        rest = text[colon...]
        if host.contains(":") {
            return .failure(HostPortError(text, "write an IPv6 address in brackets, as [::1]:4443"))
        }
    }
    guard rest.hasPrefix(":"), let port = Int(rest.dropFirst()), ((allowingPortZero ? 0 : 1)...65535).contains(port)
    else {
        let lowest = allowingPortZero ? 0 : 1
        return .failure(HostPortError(text, "the port must be a number from \(lowest) to 65535 after the last ':'"))
    }
    guard !host.isEmpty else { return .failure(HostPortError(text, "the host is empty")) }
    return .success((String(host), port))
}

/// Why `--connect` could not be split.
public struct HostPortError: Error, CustomStringConvertible {
    public let description: String
    init(_ text: String, _ why: String) { description = "'\(text)' is not HOST:PORT: \(why)" }
}

/// The first single-value option given more than once in `arguments`, if any (swift-argument-parser lets the
/// last one win silently). The command's options are found by reflection: every `@Option` whose value is not
/// an array takes one value; `allowingRepeats` exempts some by name.
public func repeatedOption(in command: Any, arguments: [String], allowingRepeats allowed: Set<String> = []) -> String? {
    var single: Set<String> = []
    var takesValue: Set<String> = []
    for child in Mirror(reflecting: command).children {
        guard let label = child.label, label.hasPrefix("_") else { continue }
        let typeName = String(describing: type(of: child.value))
        guard typeName.hasPrefix("Option<") else { continue }
        let name = optionName(String(label.dropFirst()))
        takesValue.insert(name)
        if !typeName.hasPrefix("Option<Array<") { single.insert(name) }
    }
    var seen: Set<String> = []
    var index = 0
    while index < arguments.count {
        let argument = arguments[index]
        index += 1
        if argument == "--" { break }
        guard argument.hasPrefix("--") else { continue }
        let body = argument.dropFirst(2)
        let name = String(body.split(separator: "=", maxSplits: 1).first ?? "")
        if takesValue.contains(name) && !body.contains("=") { index += 1 }
        if single.contains(name) && !allowed.contains(name) && !seen.insert(name).inserted { return name }
    }
    return nil
}

/// A property name as swift-argument-parser spells its option: `maxConnections` → `max-connections`.
func optionName(_ property: String) -> String {
    var name = ""
    for character in property {
        if character.isUppercase {
            name += "-" + character.lowercased()
        } else {
            name.append(character)
        }
    }
    return name
}

/// The warning for `SSLKEYLOGFILE`, which GnuTLS honours by itself, silently, when `--keylogfile` is not given
/// (with `--keylogfile` the variable is ignored); nil when it is not set.
public func keyLogEnvironmentWarning(keylogfile: String?) -> String? {
    guard keylogfile == nil, let path = getenv("SSLKEYLOGFILE").map({ String(cString: $0) }), !path.isEmpty else {
        return nil
    }
    return "Warning: SSLKEYLOGFILE is set: GnuTLS writes the session secrets to '\(path)'; anyone with that file "
        + "and a capture can read the traffic"
}

/// The key log file of `--keylogfile`: NSS key log lines appended, the file created mode 0600.
public final class KeyLogFile: Sendable {
    private let fd: Int32
    private let lock = NIOLock()
    public let path: String

    /// Opens (creates, or appends to) `path`.
    public init(path: String) throws(TLSError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NONBLOCK, 0o600)
        guard fd >= 0 else {
            throw TLSError(
                kind: .configuration,
                reason: "cannot open the key log file '\(path)': \(String(cString: strerror(errno)).lowercased())")
        }
        self.fd = fd
        self.path = path
    }

    deinit { close(fd) }

    /// The warning the commands print when the file is in use.
    public var warning: String {
        "Warning: --keylogfile: the session secrets are written to '\(path)'; anyone with that file and a capture "
            + "can read the traffic"
    }

    /// Appends one line (a newline is added).
    public func append(_ line: String) {
        var text = line + "\n"
        lock.withLock {
            text.withUTF8 { bytes in
                var offset = 0
                while offset < bytes.count {
                    let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { return }
                    offset += n
                }
            }
        }
    }
}

/// A certificate in the words `--verbose` uses: subject, issuer, validity, names, key, signature, serial.
public func certificateLines(_ certificate: Certificate, index: Int) -> [String] {
    var lines = [
        "Certificate \(index): subject \(certificate.subject)",
        "  issuer \(certificate.issuer)",
        "  valid \(isoDate(certificate.notValidBefore)) to \(isoDate(certificate.notValidAfter))",
    ]
    if !certificate.alternativeNames.isEmpty {
        lines.append("  names \(certificate.alternativeNames.map(\.description).joined(separator: ", "))")
    }
    lines.append("  key \(certificate.publicKeyAlgorithm), \(certificate.publicKeyBits) bits")
    lines.append("  signature \(certificate.signatureAlgorithm)")
    lines.append("  serial \(certificate.serialNumber)")
    lines.append("  public key SHA-256 \(certificate.publicKeySHA256Hex)")
    return lines
}

/// A date as ISO 8601 in UTC, to the second.
public func isoDate(_ date: Date) -> String {
    var seconds = time_t(date.timeIntervalSince1970)
    var parts = tm()
    gmtime_r(&seconds, &parts)
    func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
    return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T"
        + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))Z"
}
