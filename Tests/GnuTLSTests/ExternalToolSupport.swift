import Foundation
@testable import GnuTLS
import CGnuTLS

/// Helpers for tests that check the library against real tools: `openssl ocsp` (Debian package `openssl`),
/// `softhsm2-util` (`softhsm2`) and `p11tool` (`gnutls-bin`). A missing tool is a failure that names its
/// package, never a skip.

struct ToolFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Runs a command-line tool to completion; returns what it printed (stdout, then stderr).
///
/// - Throws: ``ToolFailure`` if the tool is not installed (naming the Debian package) or exits with another
///   status than 0 (with its output).
@discardableResult
func runTool(
    _ tool: String, _ arguments: [String], package: String, environment: [String: String] = [:]
) throws -> String {
    let path = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        .split(separator: ":").map { "\($0)/\(tool)" } + ["/usr/bin/\(tool)", "/usr/sbin/\(tool)"]
    guard let executable = path.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
        throw ToolFailure("\(tool) is not installed: these tests need the Debian package '\(package)'")
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let output = Pipe()
    let errors = Pipe()
    process.standardOutput = output
    process.standardError = errors
    process.standardInput = FileHandle.nullDevice
    try process.run()
    // Read both pipes while the tool runs, so that neither fills up.
    nonisolated(unsafe) var errorData = Data()
    let group = DispatchGroup()
    DispatchQueue.global().async(group: group) { errorData = errors.fileHandleForReading.readDataToEndOfFile() }
    let outputData = output.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    process.waitUntilExit()
    let text = String(decoding: outputData, as: UTF8.self) + String(decoding: errorData, as: UTF8.self)
    guard process.terminationStatus == 0 else {
        throw ToolFailure("\(tool) \(arguments.joined(separator: " ")) exited with \(process.terminationStatus): \(text)")
    }
    return text
}

/// A directory made with mkdtemp, removed with everything in it when the value goes away.
final class TemporaryDirectory {
    let path: String

    init(_ prefix: String) throws {
        var template = Array("\(NSTemporaryDirectory())/\(prefix)-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw ToolFailure("mkdtemp failed: \(String(cString: strerror(errno)))")
        }
        path = String(cString: made)
    }

    func file(_ name: String) -> String { "\(path)/\(name)" }

    func write(_ name: String, _ text: String) throws -> String {
        let target = file(name)
        try Data(text.utf8).write(to: URL(fileURLWithPath: target))
        return target
    }

    func write(_ name: String, bytes: [UInt8]) throws -> String {
        let target = file(name)
        try Data(bytes).write(to: URL(fileURLWithPath: target))
        return target
    }

    func read(_ name: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: file(name))))
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// An OCSP responder run offline with `openssl ocsp`: the CA's certificate and the signer's certificate and key
/// (the CA's own by default) in a temporary directory, an index in `openssl ca` format, one request and one
/// response per call.
final class OCSPResponder {
    /// What the index says of a certificate; a certificate not in the index is "unknown" to the responder.
    enum Entry {
        case valid
        case revoked(Date)
    }

    let ca: CertificateAuthority
    let directory: TemporaryDirectory

    init(ca: CertificateAuthority, signer: CertificateAuthority? = nil) throws {
        self.ca = ca
        directory = try TemporaryDirectory("gnutls-ocsp")
        try Certificate.writePEM([ca.certificate], toFile: directory.file("ca.crt"))
        let signer = signer ?? ca
        try Certificate.writePEM([signer.certificate], toFile: directory.file("signer.crt"))
        try signer.privateKey.write(toFile: directory.file("signer.key"))
    }

    /// `YYMMDDHHMMSSZ` in UTC, as `openssl ca` writes dates in its index.
    static func indexTime(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyMMddHHmmss'Z'"
        return formatter.string(from: date)
    }

    /// A DER response for `certificate` (issued by this CA), from an index holding
    /// `entries`; valid for `minutes` (the default: a day). `badSignature` corrupts the signature
    /// (`openssl ocsp -badsig`).
    func response(
        for certificate: Certificate, entries: [(Certificate, Entry)],
        minutes: Int? = nil, badSignature: Bool = false
    ) throws -> [UInt8] {
        let name = UUID().uuidString
        let index = entries.map { certificate, entry -> String in
            let serial = certificate.serialNumber.uppercased()
            let expiry = Self.indexTime(certificate.notValidAfter)
            switch entry {
            case .valid: return "V\t\(expiry)\t\t\(serial)\tunknown\t/CN=test\n"
            case .revoked(let date):
                return "R\t\(expiry)\t\(Self.indexTime(date))\t\(serial)\tunknown\t/CN=test\n"
            }
        }.joined()
        let indexPath = try directory.write("\(name).index", index)
        try Certificate.writePEM([certificate], toFile: directory.file("\(name).crt"))
        try runTool(
            "openssl",
            ["ocsp", "-issuer", directory.file("ca.crt"), "-cert", directory.file("\(name).crt"), "-no_nonce",
             "-reqout", directory.file("\(name).req")],
            package: "openssl")
        var arguments = [
            "ocsp", "-index", indexPath, "-rsigner", directory.file("signer.crt"),
            "-rkey", directory.file("signer.key"),
            "-CA", directory.file("ca.crt"), "-reqin", directory.file("\(name).req"),
            "-respout", directory.file("\(name).der"),
        ]
        if let minutes { arguments += ["-nmin", "\(minutes)"] } else { arguments += ["-ndays", "1"] }
        if badSignature { arguments.append("-badsig") }
        try runTool("openssl", arguments, package: "openssl")
        return try directory.read("\(name).der")
    }

    /// A "good" response for `certificate` that expired a day ago (this update two days ago), which `openssl
    /// ocsp` cannot make: built with Python's `cryptography` (Debian package `python3-cryptography`).
    func expired(for certificate: Certificate) throws -> [UInt8] {
        let name = UUID().uuidString
        try Certificate.writePEM([certificate], toFile: directory.file("\(name).crt"))
        let script = """
            import datetime, sys
            from cryptography import x509
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.x509 import ocsp
            leaf = x509.load_pem_x509_certificate(open(sys.argv[1], "rb").read())
            ca = x509.load_pem_x509_certificate(open(sys.argv[2], "rb").read())
            key = serialization.load_pem_private_key(open(sys.argv[3], "rb").read(), None)
            now = datetime.datetime.now(datetime.timezone.utc)
            builder = ocsp.OCSPResponseBuilder().add_response(
                cert=leaf, issuer=ca, algorithm=hashes.SHA1(), cert_status=ocsp.OCSPCertStatus.GOOD,
                this_update=now - datetime.timedelta(days=2), next_update=now - datetime.timedelta(days=1),
                revocation_time=None, revocation_reason=None).responder_id(ocsp.OCSPResponderEncoding.HASH, ca)
            response = builder.sign(key, hashes.SHA256())
            open(sys.argv[4], "wb").write(response.public_bytes(serialization.Encoding.DER))
            """
        let scriptPath = try directory.write("\(name).py", script)
        // GnuTLS 3.7.9 writes an EC key whose scalar has its top bit set with a 33-byte privateKey (a leading
        // zero), which cryptography refuses ("private key value is too short"); openssl rewrites it in the
        // fixed 32 bytes of RFC 5915.
        if !FileManager.default.fileExists(atPath: directory.file("signer-openssl.key")) {
            try runTool(
                "openssl", ["pkey", "-in", directory.file("signer.key"), "-out", directory.file("signer-openssl.key")],
                package: "openssl")
        }
        do {
            try runTool(
                "python3",
                [scriptPath, directory.file("\(name).crt"), directory.file("ca.crt"),
                 directory.file("signer-openssl.key"), directory.file("\(name).der")],
                package: "python3-cryptography")
        } catch let failure as ToolFailure where failure.description.contains("No module named 'cryptography'") {
            throw ToolFailure("Python's cryptography module is missing: these tests need the Debian package 'python3-cryptography'")
        }
        return try directory.read("\(name).der")
    }

    /// A "good" response for `issued`.
    func good(for issued: CertificateAuthority.Issued) throws -> [UInt8] {
        try response(for: issued.certificate, entries: [(issued.certificate, .valid)])
    }

    /// What `openssl ocsp -resp_text` reads in a response (checked against what the library decodes).
    func text(of der: [UInt8]) throws -> String {
        let path = try directory.write("\(UUID().uuidString).der", bytes: der)
        return try runTool("openssl", ["ocsp", "-respin", path, "-resp_text", "-noverify"], package: "openssl")
    }
}

extension TLSContext {
    /// Staples `der` to the context's first identity the way a server that checks nothing would (GnuTLS with
    /// GNUTLS_CERTIFICATE_SKIP_OCSP_RESPONSE_CHECK, `openssl s_server -status_file`): for testing what a client
    /// makes of a response our loader refuses. Call before making sessions.
    func stapleUnchecked(_ der: [UInt8]) throws {
        gnutls_certificate_set_flags(
            credentials.handle,
            UInt32(GNUTLS_CERTIFICATE_API_V2.rawValue | GNUTLS_CERTIFICATE_SKIP_OCSP_RESPONSE_CHECK.rawValue))
        var copy = der
        let rc = copy.withUnsafeMutableBufferPointer { buffer in
            var datum = gnutls_datum_t(data: buffer.baseAddress, size: UInt32(buffer.count))
            return gnutls_certificate_set_ocsp_status_request_mem(credentials.handle, &datum, 0, GNUTLS_X509_FMT_DER)
        }
        guard rc == 0 else { throw ToolFailure("GnuTLS would not staple the response: \(rc)") }
    }
}

/// A SoftHSM 2 token made once per test process, under a temporary `SOFTHSM2_CONF` set in this process's
/// environment before anything opens PKCS #11 (SoftHSM reads it once, when p11-kit initialises it on the first
/// PKCS #11 use). It holds: the key and certificate of ``server`` (label "server", ID 01), an unrelated key
/// ("other", ID 02), an RSA key with its certificate in ``rsa`` (label "rsa", ID 03, key only) and the key
/// of the client certificate ``client`` (label "client", ID 04, key only).
///
/// The directory is removed when the process exits.
final class SoftHSMToken: Sendable {
    static let label = "swift-gnutls-test"
    /// The user PIN (a test token's; never a real secret).
    static let pin = "2718281828"
    static let soPIN = "3141592653"

    let path: String
    let server: CertificateAuthority.Issued
    let rsa: CertificateAuthority.Issued
    let client: CertificateAuthority.Issued

    /// The token, or why it could not be made (every PKCS #11 test fails with that reason).
    static let shared: Result<SoftHSMToken, ToolFailure> = {
        do {
            return .success(try SoftHSMToken())
        } catch let failure as ToolFailure {
            return .failure(failure)
        } catch {
            return .failure(ToolFailure("cannot make the SoftHSM token: \(error)"))
        }
    }()

    static func get() throws -> SoftHSMToken { try shared.get() }

    nonisolated(unsafe) private static var directoryToRemove: String?

    private init() throws {
        let pki = TestPKI.shared
        var template = Array("\(NSTemporaryDirectory())/gnutls-softhsm-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw ToolFailure("mkdtemp failed: \(String(cString: strerror(errno)))")
        }
        path = String(cString: made)
        Self.directoryToRemove = path
        atexit {
            if let path = SoftHSMToken.directoryToRemove { try? FileManager.default.removeItem(atPath: path) }
        }
        try FileManager.default.createDirectory(atPath: "\(path)/tokens", withIntermediateDirectories: true)
        let configuration = "\(path)/softhsm2.conf"
        try Data("directories.tokendir = \(path)/tokens\nobjectstore.backend = file\nlog.level = ERROR\n".utf8)
            .write(to: URL(fileURLWithPath: configuration))
        setenv("SOFTHSM2_CONF", configuration, 1)
        let environment = ["SOFTHSM2_CONF": configuration, "GNUTLS_PIN": Self.pin]

        try runTool(
            "softhsm2-util", ["--init-token", "--free", "--label", Self.label, "--pin", Self.pin, "--so-pin", Self.soPIN],
            package: "softhsm2", environment: environment)

        server = pki.server
        rsa = try pki.ca.issue(commonName: "localhost", dnsNames: ["localhost"], keyAlgorithm: .rsa(bits: 2048))
        client = pki.client
        let other = try PrivateKey.generate()
        for (label, id, key) in [
            ("server", "01", server.privateKey), ("other", "02", other), ("rsa", "03", rsa.privateKey),
            ("client", "04", client.privateKey),
        ] {
            let keyFile = "\(path)/\(label).key"
            try key.write(toFile: keyFile)
            defer { try? FileManager.default.removeItem(atPath: keyFile) }
            try runTool(
                "softhsm2-util",
                ["--import", keyFile, "--token", Self.label, "--label", label, "--id", id, "--pin", Self.pin],
                package: "softhsm2", environment: environment)
        }
        // softhsm2-util cannot import certificates; p11tool (gnutls-bin) can.
        let certificateFile = "\(path)/server.crt"
        try Certificate.writePEM([server.certificate], toFile: certificateFile)
        try runTool(
            "p11tool",
            ["--provider", "/usr/lib/softhsm/libsofthsm2.so", "--login", "--write", "--load-certificate", certificateFile,
             "--label", "server", "--id", "01", "pkcs11:token=\(Self.label)"],
            package: "gnutls-bin", environment: environment)
    }

    /// An RFC 7512 URL for an object in the token.
    func url(_ object: String, type: String = "private", pinValue: String? = nil) -> String {
        "pkcs11:token=\(Self.label);object=\(object);type=\(type)" + (pinValue.map { "?pin-value=\($0)" } ?? "")
    }
}
