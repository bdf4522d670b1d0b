// Issue #10 through the commands, against the tools operators use: several certificates by SNI (openssl s_client,
// tls-client), SIGHUP reload under load, OCSP stapling (responses made with `openssl ocsp`; checked with
// `openssl s_client -status`, `gnutls-cli --ocsp` and `tls-client --ocsp`), keys in a SoftHSM token, public-key
// pins, and keying material compared with OpenSSL's.

import Foundation
import GnuTLS
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A program the tests need from Debian: its path, or a failure that names the package (CI installs it).
func systemTool(_ name: String, package: String) throws -> String {
    for folder in ["/usr/bin", "/usr/sbin", "/bin"] {
        let path = folder + "/" + name
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    throw HarnessError("\(name) is not installed: this test needs the Debian package '\(package)' (.ci/run installs it)")
}

/// The CA of a `TestFiles` directory, to issue more certificates from it.
func filesCA(_ files: TestFiles) throws -> CertificateAuthority {
    CertificateAuthority(
        certificate: try Certificate.load(file: files.path("ca.crt"))[0],
        privateKey: try PrivateKey(file: files.path("ca.key")))
}

func write(_ issued: CertificateAuthority.Issued, as name: String, in files: TestFiles) throws {
    try issued.privateKey.write(toFile: files.path(name + ".key"))
    try Certificate.writePEM(issued.chain, toFile: files.path(name + ".crt"))
}

/// A DER OCSP response for `leaf` made by `openssl ocsp` with the test CA as its own responder: "good", or
/// "revoked" an hour ago. Returns the response file's path.
func makeOCSPResponse(
    for leaf: Certificate, named name: String, in files: TestFiles, revoked: Bool = false
) async throws -> String {
    let openssl = try systemTool("openssl", package: "openssl")
    try Certificate.writePEM([leaf], toFile: files.path(name + "-leaf.pem"))
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.timeZone = TimeZone(identifier: "UTC")
    formatter.dateFormat = "yyMMddHHmmss'Z'"
    let expiry = formatter.string(from: leaf.notValidAfter)
    let status = revoked ? "R\t\(expiry)\t\(formatter.string(from: Date().addingTimeInterval(-3600)))" : "V\t\(expiry)\t"
    let index = "\(status)\t\(leaf.serialNumber.uppercased())\tunknown\t/\(leaf.subject)\n"
    try index.write(toFile: files.path(name + "-index.txt"), atomically: true, encoding: .utf8)
    let request = try await runTool(
        openssl,
        ["ocsp", "-issuer", files.path("ca.crt"), "-cert", files.path(name + "-leaf.pem"), "-no_nonce",
         "-reqout", files.path(name + "-request.der")])
    guard request.status == 0 else { throw HarnessError("openssl ocsp (request) failed:\n\(request)") }
    let response = try await runTool(
        openssl,
        ["ocsp", "-index", files.path(name + "-index.txt"), "-rsigner", files.path("ca.crt"), "-rkey",
         files.path("ca.key"), "-CA", files.path("ca.crt"), "-reqin", files.path(name + "-request.der"),
         "-respout", files.path(name + ".ocsp"), "-ndays", "1"])
    guard response.status == 0 else { throw HarnessError("openssl ocsp (response) failed:\n\(response)") }
    return files.path(name + ".ocsp")
}

/// Runs `openssl s_client` against 127.0.0.1:`port` with `arguments`, standard input empty.
func runOpenSSLClient(port: Int, _ arguments: [String]) async throws -> ToolResult {
    let openssl = try systemTool("openssl", package: "openssl")
    return try await runTool(openssl, ["s_client", "-connect", "127.0.0.1:\(port)"] + arguments, input: Data())
}

/// The value of the first `public key SHA-256` line tls-client --verbose prints (the server's leaf).
func leafKeyHash(_ result: ToolResult) -> String? {
    result.errorLines.first { $0.hasPrefix("  public key SHA-256 ") }.map { String($0.dropFirst("  public key SHA-256 ".count)) }
}

@Suite("Certificates in production: SNI, reload, OCSP, PKCS #11, pins", .timeLimit(.minutes(5)))
struct ProductionCommandTests {

    @Test("Two certificates on one server: openssl s_client -servername and tls-client --servername get the right one; no SNI gets the first")
    func severalCertificatesBySNI() async throws {
        let files = try TestFiles()
        let ca = try filesCA(files)
        try write(try ca.issue(commonName: "alpha.test", dnsNames: ["alpha.test"]), as: "alpha", in: files)
        try write(try ca.issue(commonName: "beta.test", dnsNames: ["beta.test"]), as: "beta", in: files)
        let server = try await ServerProcess.start(
            ["--port", "0", "--cert", files.path("alpha.crt"), "--key", files.path("alpha.key"),
             "--cert", files.path("beta.crt"), "--key", files.path("beta.key")])
        defer { server.kill() }

        for name in ["alpha.test", "beta.test"] {
            let openssl = try await runOpenSSLClient(port: server.port, ["-servername", name, "-CAfile", files.path("ca.crt")])
            #expect(openssl.output.contains("subject=CN = \(name)"), "\(openssl)")
            #expect(openssl.output.contains("Verify return code: 0 (ok)"), "\(openssl)")
            let client = try await runClient(port: server.port, files: files, ["--host", "127.0.0.1", "--servername", name, "--verbose"])
            expectSuccessfulExchange(client)
            #expect(client.errorLines.contains("Certificate 0: subject CN=\(name)"), "\(client)")
        }
        let noSNI = try await runOpenSSLClient(port: server.port, ["-noservername", "-CAfile", files.path("ca.crt")])
        #expect(noSNI.output.contains("subject=CN = alpha.test"), "\(noSNI)")
    }

    @Test("An RSA and an ECDSA certificate for one name: a client that offers only ECDSA signatures gets the ECDSA one, an RSA-only client the RSA one")
    func rsaAndECDSAForOneName() async throws {
        let files = try TestFiles()
        let ca = try filesCA(files)
        try write(try ca.issue(commonName: "localhost", dnsNames: ["localhost"], keyAlgorithm: .rsa(bits: 2048)), as: "rsa", in: files)
        let server = try await ServerProcess.start(
            ["--port", "0", "--cert", files.path("rsa.crt"), "--key", files.path("rsa.key"),
             "--cert", files.path("server.crt"), "--key", files.path("server.key")])
        defer { server.kill() }
        let common = ["-servername", "localhost", "-CAfile", files.path("ca.crt")]
        let ecdsa = try await runOpenSSLClient(port: server.port, common + ["-sigalgs", "ECDSA+SHA256"])
        #expect(ecdsa.output.contains("Peer signature type: ECDSA"), "\(ecdsa)")
        #expect(ecdsa.output.contains("Verify return code: 0 (ok)"), "\(ecdsa)")
        let rsa = try await runOpenSSLClient(port: server.port, common + ["-sigalgs", "rsa_pss_rsae_sha256"])
        #expect(rsa.output.contains("Peer signature type: RSA-PSS"), "\(rsa)")
        #expect(rsa.output.contains("Verify return code: 0 (ok)"), "\(rsa)")
    }

    @Test("SIGHUP under load: every connection succeeds, later ones see the new certificate, one held open across the reload still gets its echo; a broken file keeps the old certificate and says why")
    func reloadUnderLoad() async throws {
        let files = try TestFiles()
        let ca = try filesCA(files)
        let server = try await ServerProcess.start(files.serverArguments())
        defer { server.kill() }
        let before = try await runClient(port: server.port, files: files, ["--verbose"])
        expectSuccessfulExchange(before)
        let oldHash = try #require(leafKeyHash(before), "\(before)")

        // A connection that completes its handshake before the reload and sends its message after it.
        let held = try RawTCPConnection(port: server.port)
        defer { held.close() }
        let heldSession = try await handshake(over: held, trusting: files.path("ca.crt"))
        #expect(heldSession.peerCertificates.first?.publicKeySHA256Hex == oldHash)

        // Load: clients one after another on two tasks, for the whole reload, bounded in count. Each run notes
        // when it started.
        let clock = ContinuousClock()
        typealias Run = (started: ContinuousClock.Instant, result: ToolResult)
        let (runs, reloadedAt) = try await withThrowingTaskGroup(of: [Run].self) { group in
            for _ in 0..<2 {
                group.addTask {
                    var runs: [Run] = []
                    for _ in 0..<15 {
                        let started = clock.now
                        runs.append((started, try await runClient(port: server.port, files: files, ["--verbose"])))
                    }
                    return runs
                }
            }
            // The new certificate and key replace the files (each written atomically), then SIGHUP.
            try await Task.sleep(for: .milliseconds(200))
            let renewed = try ca.issue(commonName: "localhost", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1", "::1"])
            try write(renewed, as: "server", in: files)
            server.send(SIGHUP)
            #expect(try await server.waitForLine("tls-server: reloaded 1 certificate"), "\(server.transcript)")
            let reloadedAt = clock.now
            var all: [Run] = []
            for try await batch in group { all += batch }
            return (all, reloadedAt)
        }
        for run in runs { expectSuccessfulExchange(run.result) }
        let later = runs.filter { $0.started > reloadedAt }
        try #require(!later.isEmpty, "no connection started after the reload: the load ended too soon")
        let renewedHash = try #require(leafKeyHash(later[0].result))
        #expect(renewedHash != oldHash)
        for run in later { #expect(leafKeyHash(run.result) == renewedHash, "\(run.result)") }

        let after = try await runClient(port: server.port, files: files, ["--verbose"])
        expectSuccessfulExchange(after)
        let newHash = try #require(leafKeyHash(after), "\(after)")
        #expect(newHash == renewedHash)

        // The held connection still works, on the certificate it started with.
        try heldSession.write(Array("held across the reload".utf8))
        try held.send(heldSession.takePendingOutput())
        var echoed: [UInt8] = []
        let deadline = clock.now + .seconds(30)
        while echoed.count < 22 && clock.now < deadline {
            guard let bytes = held.receiveAvailable() else { break }
            if bytes.isEmpty { try await Task.sleep(for: .milliseconds(5)); continue }
            heldSession.feed(bytes)
            _ = try heldSession.readAvailable(into: &echoed)
        }
        #expect(String(decoding: echoed, as: UTF8.self) == "held across the reload", "\(server.transcript)")

        // A broken certificate file: the reload fails with its reason, the server keeps the new certificate.
        try "not a certificate\n".write(toFile: files.path("server.crt"), atomically: true, encoding: .utf8)
        server.send(SIGHUP)
        let failure = try await server.waitForLine { $0.hasPrefix("tls-server: reload failed: ") }
        #expect(
            failure == "tls-server: reload failed: certificate file '\(files.path("server.crt"))' holds data that is "
                + "not a valid X.509 certificate (ASN1 parser: Error in TAG.); keeping the previous certificates",
            "\(server.transcript)")
        let still = try await runClient(port: server.port, files: files, ["--verbose"])
        expectSuccessfulExchange(still)
        #expect(leafKeyHash(still) == newHash)
    }

    @Test("OCSP stapling: openssl s_client -status and gnutls-cli --ocsp see 'good'; tls-client --ocsp passes with the staple and fails without; must-staple without a staple is refused; a response for another certificate is refused at start")
    func ocspStapling() async throws {
        let files = try TestFiles()
        let ca = try filesCA(files)
        let leaf = try Certificate.load(file: files.path("server.crt"))[0]
        let response = try await makeOCSPResponse(for: leaf, named: "server", in: files)
        let server = try await ServerProcess.start(files.serverArguments() + ["--ocsp-response", response])
        defer { server.kill() }

        let openssl = try await runOpenSSLClient(
            port: server.port, ["-status", "-servername", "localhost", "-CAfile", files.path("ca.crt")])
        #expect(openssl.output.contains("OCSP Response Status: successful (0x0)"), "\(openssl)")
        #expect(openssl.output.contains("Cert Status: good"), "\(openssl)")

        let gnutlsCLI = try systemTool("gnutls-cli", package: "gnutls-bin")
        let gnutls = try await runTool(
            gnutlsCLI,
            ["--port", "\(server.port)", "--x509cafile", files.path("ca.crt"), "--ocsp", "--verify-hostname",
             "localhost", "127.0.0.1"],
            input: Data("hi\n".utf8))
        #expect(gnutls.output.contains("- Options: OCSP status request"), "\(gnutls)")
        #expect(gnutls.output.contains("- Status: The certificate is trusted."), "\(gnutls)")

        let stapled = try await runClient(port: server.port, files: files, ["--ocsp", "--verbose"])
        expectSuccessfulExchange(stapled)
        #expect(stapled.errorLines.contains { $0.hasPrefix("OCSP staple: good (produced ") }, "\(stapled)")

        // No staple: --ocsp refuses; without --ocsp an ordinary certificate passes.
        let plain = try await ServerProcess.start(files.serverArguments())
        defer { plain.kill() }
        expectClientFailure(
            try await runClient(port: plain.port, files: files, ["--ocsp"]),
            mentioning: ["the server's certificate was refused: no valid stapled OCSP response, and one is required"])

        // A must-staple certificate: refused without a staple, accepted with one.
        let mustStaple = try ca.issue(
            commonName: "localhost", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], mustStaple: true)
        try write(mustStaple, as: "must-staple", in: files)
        let bare = try await ServerProcess.start(files.serverArguments(identity: "must-staple"))
        defer { bare.kill() }
        expectClientFailure(
            try await runClient(port: bare.port, files: files),
            mentioning: ["certificate requires a stapled OCSP response (must-staple) and the server sent none that is valid"])
        let mustStapleResponse = try await makeOCSPResponse(for: mustStaple.certificate, named: "must-staple", in: files)
        let stapling = try await ServerProcess.start(
            files.serverArguments(identity: "must-staple") + ["--ocsp-response", mustStapleResponse])
        defer { stapling.kill() }
        expectSuccessfulExchange(try await runClient(port: stapling.port, files: files))

        // A response for another certificate, and one that says "revoked", are refused when the server starts.
        expectStartupFailure(
            try await runTool("tls-server", files.serverArguments() + ["--ocsp-response", mustStapleResponse]),
            mentioning: ["OCSP response file '\(mustStapleResponse)' is for another certificate"])
        let revoked = try await makeOCSPResponse(for: leaf, named: "revoked", in: files, revoked: true)
        expectStartupFailure(
            try await runTool("tls-server", files.serverArguments() + ["--ocsp-response", revoked]),
            mentioning: ["OCSP response file '\(revoked)' says the certificate was revoked on "])
    }

    @Test("SIGHUP rereads --ocsp-response and --cafile: a renewed certificate is served with its new staple, a response for another certificate is refused with the reason, and a new client CA is trusted")
    func reloadRereadsStapleAndClientTrust() async throws {
        let files = try TestFiles()
        let ca = try filesCA(files)
        func replace(_ name: String, with source: String) throws {
            try Data(contentsOf: URL(fileURLWithPath: source)).write(to: URL(fileURLWithPath: files.path(name)), options: .atomic)
        }
        let leaf = try Certificate.load(file: files.path("server.crt"))[0]
        let firstResponse = try await makeOCSPResponse(for: leaf, named: "first", in: files)
        try replace("live.ocsp", with: firstResponse)
        try replace("client-ca.crt", with: files.path("ca.crt"))
        let server = try await ServerProcess.start(
            files.serverArguments() + ["--ocsp-response", files.path("live.ocsp"), "--verify-client", "optional",
                                       "--cafile", files.path("client-ca.crt")])
        defer { server.kill() }
        func reloads() -> [String] { server.lines.filter { $0.hasPrefix("tls-server: reload") } }
        func reload(expecting count: Int) async throws -> String? {
            server.send(SIGHUP)
            _ = try await eventually(within: .seconds(30)) { reloads().count == count }
            return reloads().count == count ? reloads().last : nil
        }
        let before = try await runClient(port: server.port, files: files, ["--ocsp", "--verbose"])
        expectSuccessfulExchange(before)
        #expect(leafKeyHash(before) == leaf.publicKeySHA256Hex, "\(before)")
        let stranger = ["--cert", files.path("other-client.crt"), "--key", files.path("other-client.key")]
        #expect(try await runClient(port: server.port, files: files, stranger).status == 1)

        // Renewal: a new certificate and key, the response for it, and the other CA for client certificates.
        let renewed = try ca.issue(commonName: "localhost", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1", "::1"])
        try write(renewed, as: "server", in: files)
        try replace("live.ocsp", with: try await makeOCSPResponse(for: renewed.certificate, named: "renewed", in: files))
        try replace("client-ca.crt", with: files.path("other-ca.crt"))
        #expect(try await reload(expecting: 1) == "tls-server: reloaded 1 certificate", "\(server.transcript)")
        let after = try await runClient(port: server.port, files: files, ["--ocsp", "--verbose"])
        expectSuccessfulExchange(after)
        #expect(leafKeyHash(after) == renewed.certificate.publicKeySHA256Hex, "\(after)")
        #expect(after.errorLines.contains { $0.hasPrefix("OCSP staple: good (produced ") }, "\(after)")
        expectSuccessfulExchange(try await runClient(port: server.port, files: files, stranger))

        // The old certificate's response where the renewed one's belongs: refused, the renewed staple stays.
        try replace("live.ocsp", with: firstResponse)
        #expect(
            try await reload(expecting: 2)
                == "tls-server: reload failed: OCSP response file '\(files.path("live.ocsp"))' is for another certificate, "
                + "not for the one it is to be stapled to; keeping the previous certificates",
            "\(server.transcript)")
        let kept = try await runClient(port: server.port, files: files, ["--ocsp", "--verbose"])
        expectSuccessfulExchange(kept)
        #expect(leafKeyHash(kept) == renewed.certificate.publicKeySHA256Hex, "\(kept)")
    }

    @Test("Pinning: the right pin passes, a wrong one fails naming both hashes, and a pin does not bypass verification")
    func publicKeyPinning() async throws {
        let files = try TestFiles()
        let server = try await ServerProcess.start(files.serverArguments())
        defer { server.kill() }
        let leaf = try Certificate.load(file: files.path("server.crt"))[0]
        let right = PublicKeyPin(certificate: leaf).description
        let wrong = PublicKeyPin(certificate: try Certificate.load(file: files.path("client.crt"))[0]).description

        let pinned = try await runClient(port: server.port, files: files, ["--pinnedpubkey", "\(wrong);\(right)", "--verbose"])
        expectSuccessfulExchange(pinned)
        #expect(pinned.errorLines.contains("Public-key pin: matched \(right) (pins: \(wrong);\(right))"), "\(pinned)")
        expectClientFailure(
            try await runClient(port: server.port, files: files, ["--pinnedpubkey", wrong]),
            mentioning: ["certificate's public key \(right) is not pinned (expected \(wrong))"])
        // --verbose shows the refused chain, as it does for a chain GnuTLS refuses.
        let shown = try await runClient(port: server.port, files: files, ["--pinnedpubkey", wrong, "--verbose"])
        #expect(shown.status == 1, "\(shown)")
        #expect(shown.errorLines.first == "Refused certificate chain from localhost:\(server.port):", "\(shown)")
        #expect(leafKeyHash(shown) == leaf.publicKeySHA256Hex, "\(shown)")
        #expect(shown.errorLines.last?.hasSuffix("is not pinned (expected \(wrong))") == true, "\(shown)")
        // The right pin, but no --cafile: the chain is still checked, and it is not trusted.
        expectClientFailure(
            try await runClient(port: server.port, files: files, trust: false, ["--pinnedpubkey", right]),
            mentioning: ["certificate is signed by an untrusted or unknown issuer"])
        // A malformed pin is a usage error.
        let malformed = try await runTool("tls-client", ["--port", "\(server.port)", "--pinnedpubkey", "md5//abc"])
        #expect(malformed.status == 64, "\(malformed)")
        #expect(malformed.errorOutput.contains("Error: --pinnedpubkey: public-key pin 'md5//abc' must start with 'sha256//'"), "\(malformed)")
    }

    @Test("Keying material from tls-client --keymatexport equals openssl s_server's, for TLS 1.3 and TLS 1.2", arguments: ["-tls1_3", "-tls1_2"])
    func keyingMaterialMatchesOpenSSL(version: String) async throws {
        let files = try TestFiles()
        let openssl = try systemTool("openssl", package: "openssl")
        let port = try unusedPort()
        let peer = try ChildProcess(
            openssl,
            ["s_server", "-accept", "127.0.0.1:\(port)", "-cert", files.path("server.crt"), "-key", files.path("server.key"),
             "-naccept", "1", version, "-keymatexport", "EXPORTER-swift-gnutls", "-keymatexportlen", "32"],
            holdingInputOpen: true)
        defer { peer.kill() }
        #expect(try await peer.waitForOutput("ACCEPT"), "\(peer.transcript)")
        let client = try await runClient(
            port: port, files: files, ["--host", "127.0.0.1", "--keymatexport", "EXPORTER-swift-gnutls", "--keymatexportlen", "32", "--timeout", "3"])
        // openssl s_server sends nothing back: the client prints the material after the handshake, then gives up
        // waiting for a response.
        #expect(client.status == 1 && client.errorOutput.contains("timed out after 3 s"), "\(client)")
        let ours = client.output.split(separator: "\n").first { $0.hasPrefix("Keying material: ") }
        #expect(ours?.count == "Keying material: ".count + 64, "\(client)")
        _ = try await eventually(within: .seconds(30)) { peer.stdout.text.contains("    Keying material: ") }
        let theirs = peer.stdout.lines.first { $0.hasPrefix("    Keying material: ") }?.trimmingCharacters(in: .whitespaces)
        #expect(ours.map(String.init) == theirs, "\(client)\n\(peer.transcript)")
    }

    @Test("A server key in a SoftHSM token: openssl s_client and tls-client complete; a wrong PIN, an unknown object and a key for another certificate fail at start with a clear line")
    func pkcs11KeyInSoftHSM() async throws {
        let files = try TestFiles()
        let softhsm = try systemTool("softhsm2-util", package: "softhsm2")
        try FileManager.default.createDirectory(atPath: files.path("tokens"), withIntermediateDirectories: true)
        try "directories.tokendir = \(files.path("tokens"))\nobjectstore.backend = file\nlog.level = ERROR\n"
            .write(toFile: files.path("softhsm2.conf"), atomically: true, encoding: .utf8)
        let environment = ["SOFTHSM2_CONF": files.path("softhsm2.conf")]
        let initialized = try await runTool(
            softhsm, ["--init-token", "--free", "--label", "swift-gnutls", "--pin", "1234", "--so-pin", "5678"],
            environment: environment)
        #expect(initialized.status == 0, "\(initialized)")
        let imported = try await runTool(
            softhsm,
            ["--import", files.path("server.key"), "--token", "swift-gnutls", "--label", "server-key", "--id", "01",
             "--pin", "1234"],
            environment: environment)
        #expect(imported.status == 0, "\(imported)")

        let url = "pkcs11:token=swift-gnutls;object=server-key;type=private"
        let server = try await ServerProcess.start(
            ["--port", "0", "--cert", files.path("server.crt"), "--key", url + "?pin-value=1234"], environment: environment)
        defer { server.kill() }
        expectSuccessfulExchange(try await runClient(port: server.port, files: files))
        let openssl = try await runOpenSSLClient(port: server.port, ["-servername", "localhost", "-CAfile", files.path("ca.crt")])
        #expect(openssl.output.contains("Verify return code: 0 (ok)"), "\(openssl)")
        #expect(!server.output.contains("1234"), "\(server.transcript)")

        // The PIN from a file that ends with a newline, as `echo 1234 > pin` writes it.
        try "1234\n".write(toFile: files.path("pin"), atomically: true, encoding: .utf8)
        let fromFile = try await ServerProcess.start(
            ["--port", "0", "--cert", files.path("server.crt"), "--key", url + "?pin-source=" + files.path("pin")],
            environment: environment)
        defer { fromFile.kill() }
        expectSuccessfulExchange(try await runClient(port: fromFile.port, files: files))

        let wrongPIN = try await runTool(
            "tls-server", ["--port", "0", "--cert", files.path("server.crt"), "--key", url + "?pin-value=9999"],
            environment: environment)
        expectStartupFailure(
            wrongPIN, mentioning: ["cannot load private key '\(url)?pin-value=<redacted>': the PIN is wrong"])
        #expect(!wrongPIN.errorOutput.contains("9999"), "\(wrongPIN)")
        expectStartupFailure(
            try await runTool(
                "tls-server",
                ["--port", "0", "--cert", files.path("server.crt"),
                 "--key", "pkcs11:token=swift-gnutls;object=nothing;type=private?pin-value=1234"],
                environment: environment),
            mentioning: ["no such object in any token"])
        expectStartupFailure(
            try await runTool(
                "tls-server", ["--port", "0", "--cert", files.path("client.crt"), "--key", url + "?pin-value=1234"],
                environment: environment),
            mentioning: ["does not match the certificate in certificate file '\(files.path("client.crt"))'"])
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on right now (for peers that cannot pick their own).
func unusedPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw HarnessError("socket: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw HarnessError("bind: \(String(cString: strerror(errno)))") }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}
