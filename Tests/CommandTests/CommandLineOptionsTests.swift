// The options people who use openssl s_client/s_server and gnutls-cli/gnutls-serv reach for (issue 13): named
// policies, trust and revocation, the chain in PEM, the key log, the server's connection line, hosts as people
// write them, --version, tls-certs' refusals, repeated options. Each test runs the real binaries on loopback with
// certificates made at test time (TestFiles in CommandTests.swift).

import Foundation
import GnuTLS
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The one certificate chain the test server presents (leaf, then the test CA).
private func serverChain(_ files: TestFiles) throws -> [Certificate] {
    try Certificate.load(file: files.path("server.crt"))
}

/// The test CA, able to sign a CRL.
private func signingCA(_ files: TestFiles) throws -> CertificateAuthority {
    let certificate = try #require(try Certificate.load(file: files.path("ca.crt")).first)
    return CertificateAuthority(certificate: certificate, privateKey: try PrivateKey(file: files.path("ca.key")))
}

/// A date as VerificationFailure words it (ISO 8601, UTC, to the second).
private func iso(_ date: Date) -> String {
    let formatter = ISO8601DateFormatter()
    formatter.timeZone = TimeZone(identifier: "UTC")
    return formatter.string(from: date)
}

@Suite("Options of issue 13: policies, trust, revocation, chains, key log, connection lines, hosts, versions",
       .timeLimit(.minutes(5)))
struct CommandLineOptionsTests {

    // MARK: Named policies

    @Test("--priority presets are listed in --help of both commands and accepted, without a warning")
    func priorityPresets() async throws {
        for tool in ["tls-server", "tls-client"] {
            let help = try await runTool(tool, ["--help"])
            #expect(help.status == 0, "\(help)")
            #expect(help.output.contains("'intermediate'") && help.output.contains("'modern'"), "\(help)")
        }
        let files = try TestFiles()
        let server = try await ServerProcess.start(
            files.serverArguments() + ["--priority", "intermediate"], directory: files.url)
        defer { server.kill() }
        let modern = try await runClient(port: server.port, files: files, ["--priority", "modern"])
        expectSuccessfulExchange(modern)
        #expect(modern.output.contains("(TLS 1.3, "), "\(modern)")
        #expect(modern.errorOutput.isEmpty, "a preset must not warn:\n\(modern)")
        #expect(!server.child.stderr.text.contains("Warning"), "\(server.transcript)")

        // A raw string that keeps to TLS 1.3 (AEAD only) is not warned about either.
        let raw = try await runClient(port: server.port, files: files, ["--priority", "NORMAL:-VERS-ALL:+VERS-TLS1.3"])
        expectSuccessfulExchange(raw)
        #expect(raw.errorOutput.isEmpty, "\(raw)")
    }

    @Test("A raw --priority that allows TLS 1.0/1.1 and CBC suites warns on stderr (client and server)")
    func insecurePriorityWarns() async throws {
        let files = try TestFiles()
        let server = try await ServerProcess.start(files.serverArguments() + ["--priority", "NORMAL"], directory: files.url)
        defer { server.kill() }
        let versionWarning =
            "Warning: --priority enables TLS 1.1 and TLS 1.0, deprecated and insecure (RFC 8996); "
            + "the default allows TLS 1.2 and 1.3 only"
        #expect(
            try await eventually(within: .seconds(30)) { server.child.stderr.lines.contains(versionWarning) },
            "\(server.transcript)")

        let result = try await runClient(port: server.port, files: files, ["--priority", "NORMAL"])
        expectSuccessfulExchange(result)
        #expect(result.errorLines.count == 2, "\(result)")
        #expect(result.errorLines.first == versionWarning, "\(result)")
        let suites = result.errorLines.last ?? ""
        #expect(suites.hasPrefix("Warning: --priority enables "), "\(result)")
        #expect(suites.contains("cipher suites that are not AEAD (CBC or stream ciphers: TLS_"), "\(result)")
        #expect(suites.contains("_CBC_"), "\(result)")
    }

    // MARK: Revocation and trust

    @Test("--crlfile (PEM and DER): a revoked server certificate is refused with its serial and revocation date")
    func revokedServerIsRefused() async throws {
        let files = try TestFiles()
        let leaf = try #require(try serverChain(files).first)
        let revokedAt = Date(timeIntervalSince1970: 1_780_000_000)
        let crl = try signingCA(files).revocationList(revoking: [leaf], revokedAt: revokedAt)
        try CertificateRevocationList.writePEM([crl], toFile: files.path("crl.pem"))
        try Data(crl.derBytes).write(to: files.url.appendingPathComponent("crl.der"))
        // A CRL of the same CA that revokes someone else.
        let other = try signingCA(files).revocationList(
            revoking: [try #require(try Certificate.load(file: files.path("client.crt")).first)])
        try CertificateRevocationList.writePEM([other], toFile: files.path("other-crl.pem"))

        let server = try await ServerProcess.start(files.serverArguments(), directory: files.url)
        defer { server.kill() }
        for file in ["crl.pem", "crl.der"] {
            let result = try await runClient(port: server.port, files: files, ["--crlfile", files.path(file)])
            expectClientFailure(
                result,
                mentioning: [
                    "the server's certificate was refused: certificate has been revoked: serial \(leaf.serialNumber) "
                        + "was revoked on \(iso(revokedAt))"
                ])
        }
        expectSuccessfulExchange(
            try await runClient(port: server.port, files: files, ["--crlfile", files.path("other-crl.pem")]))
    }

    @Test("A CRL from openssl ca with a reason code: the refusal names the reason too")
    func revocationReasonFromOpenSSL() async throws {
        let files = try TestFiles()
        let leaf = try #require(try serverChain(files).first)
        let database = files.path("index.txt")
        try Data().write(to: URL(fileURLWithPath: database))
        let config = files.path("ca.cnf")
        try Data(
            """
            [ca]
            default_ca = test
            [test]
            database = \(database)
            certificate = \(files.path("ca.crt"))
            private_key = \(files.path("ca.key"))
            default_md = sha256
            default_crl_days = 30

            """.utf8
        ).write(to: URL(fileURLWithPath: config))
        let openssl = "/usr/bin/openssl"
        let revoke = try await runTool(
            openssl, ["ca", "-config", config, "-revoke", files.path("server.crt"), "-crl_reason", "keyCompromise"])
        #expect(revoke.status == 0, "\(revoke)")
        let generate = try await runTool(openssl, ["ca", "-config", config, "-gencrl", "-out", files.path("crl.pem")])
        #expect(generate.status == 0, "\(generate)")

        let server = try await ServerProcess.start(files.serverArguments(), directory: files.url)
        defer { server.kill() }
        let result = try await runClient(port: server.port, files: files, ["--crlfile", files.path("crl.pem")])
        expectClientFailure(
            result, mentioning: ["certificate has been revoked: serial \(leaf.serialNumber) was revoked on "])
        #expect(result.errorLines.first?.hasSuffix("(reason: key compromise)") == true, "\(result)")
    }

    @Test("Server --crlfile: a revoked client certificate is refused, and the line says this server refused it")
    func revokedClientIsRefused() async throws {
        let files = try TestFiles()
        let client = try #require(try Certificate.load(file: files.path("client.crt")).first)
        let crl = try signingCA(files).revocationList(revoking: [client])
        try CertificateRevocationList.writePEM([crl], toFile: files.path("crl.pem"))
        let server = try await ServerProcess.start(
            files.serverArguments()
                + ["--verify-client", "required", "--cafile", files.path("ca.crt"), "--crlfile", files.path("crl.pem")],
            directory: files.url)
        defer { server.kill() }
        let result = try await runClient(
            port: server.port, files: files, ["--cert", files.path("client.crt"), "--key", files.path("client.key")])
        #expect(result.status == 1, "\(result)")
        let line = try await server.waitForLine { $0.hasPrefix("Connection from ") && $0.contains(" failed: ") }
        #expect(
            line?.contains(
                "failed: refused by this server: handshake failed: the client's certificate was refused: "
                    + "certificate has been revoked: serial \(client.serialNumber) was revoked on ") == true,
            "\(server.transcript)")
    }

    @Test("--capath: a directory of CA files (PEM and DER) is trusted; without the right CA in it, refused")
    func capath() async throws {
        let files = try TestFiles()
        let server = try await ServerProcess.start(files.serverArguments(), directory: files.url)
        defer { server.kill() }
        let trusted = files.url.appendingPathComponent("trusted")
        let untrusted = files.url.appendingPathComponent("untrusted")
        for folder in [trusted, untrusted] { try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true) }
        let ca = try #require(try Certificate.load(file: files.path("ca.crt")).first)
        let otherCA = try #require(try Certificate.load(file: files.path("other-ca.crt")).first)
        // The test CA as DER, another CA as PEM, a hidden file and a subdirectory that must be skipped.
        try Data(ca.derBytes).write(to: trusted.appendingPathComponent("test-ca.der"))
        try Certificate.writePEM([otherCA], toFile: trusted.appendingPathComponent("other.pem").path)
        try Data("not a certificate".utf8).write(to: trusted.appendingPathComponent(".hidden"))
        try FileManager.default.createDirectory(at: trusted.appendingPathComponent("sub"), withIntermediateDirectories: true)
        try Certificate.writePEM([otherCA], toFile: untrusted.appendingPathComponent("other.pem").path)

        expectSuccessfulExchange(
            try await runClient(port: server.port, files: files, trust: false, ["--capath", trusted.path]))
        expectClientFailure(
            try await runClient(port: server.port, files: files, trust: false, ["--capath", untrusted.path]),
            mentioning: ["certificate is signed by an untrusted or unknown issuer"])
        expectClientFailure(
            try await runClient(port: server.port, files: files, trust: false, ["--capath", files.path("missing")]),
            mentioning: ["cannot read the CA directory '\(files.path("missing"))'"])
    }

    @Test("--add-cafile trusts a CA on top of the system store; without it the system store alone refuses")
    func additionalAnchors() async throws {
        let files = try TestFiles()
        let server = try await ServerProcess.start(files.serverArguments(), directory: files.url)
        defer { server.kill() }
        expectSuccessfulExchange(
            try await runClient(port: server.port, files: files, trust: false, ["--add-cafile", files.path("ca.crt")]))
        expectClientFailure(
            try await runClient(port: server.port, files: files, trust: false),
            mentioning: ["certificate is signed by an untrusted or unknown issuer"])
    }

    @Test("--verify-depth 1 refuses the server's two-certificate chain, naming the limit; 2 accepts it")
    func verifyDepth() async throws {
        let files = try TestFiles()
        let server = try await ServerProcess.start(files.serverArguments(), directory: files.url)
        defer { server.kill() }
        expectClientFailure(
            try await runClient(port: server.port, files: files, ["--verify-depth", "1"]),
            mentioning: ["the chain is longer than the maximum verification depth of 1 (the peer sent 2 certificates)"])
        expectSuccessfulExchange(try await runClient(port: server.port, files: files, ["--verify-depth", "2"]))
        let invalid = try await runClient(port: server.port, files: files, ["--verify-depth", "0"])
        #expect(invalid.status == 64, "\(invalid)")
        #expect(invalid.errorOutput.contains("Error: --verify-depth must be 1 to 16, not 0"), "\(invalid)")
    }

    // MARK: Seeing the chain

    @Test("--showcerts prints the server's chain as PEM, the same certificates the server presents")
    func showcerts() async throws {
        let files = try TestFiles()
        let server = try await ServerProcess.start(files.serverArguments(), directory: files.url)
        defer { server.kill() }
        let result = try await runClient(port: server.port, files: files, ["--showcerts"])
        expectSuccessfulExchange(result)
        let shown = try Certificate.parse(pem: result.output)
        #expect(shown == (try serverChain(files)), "\(result)")
        #expect(result.output.components(separatedBy: "-----BEGIN CERTIFICATE-----").count == 3, "\(result)")

        // Refused (the CA is not trusted): the chain is still shown, and the run fails as usual.
        let refused = try await runClient(port: server.port, files: files, trust: false, ["--showcerts"])
        expectClientFailure(refused, mentioning: ["certificate is signed by an untrusted or unknown issuer"])
        #expect(try Certificate.parse(pem: refused.output) == (try serverChain(files)), "\(refused)")
    }

    @Test("--verbose shows the address, SNI, key, signature and serial; on a refusal it still shows the chain")
    func verbose() async throws {
        let files = try TestFiles()
        let server = try await ServerProcess.start(files.serverArguments(), directory: files.url)
        defer { server.kill() }
        let leaf = try #require(try serverChain(files).first)
        let result = try await runClient(port: server.port, files: files, ["--verbose"])
        expectSuccessfulExchange(result)
        for line in [
            // GnuTLS's server does not acknowledge SNI (openssl s_server does).
            "Connected to address: 127.0.0.1:\(server.port)", "SNI: 'localhost', not acknowledged by the server",
            "Certificate 0: subject CN=localhost",
            "  key ECDSA SECP256R1, 256 bits", "  signature ECDSA-SHA256", "  serial \(leaf.serialNumber)",
        ] {
            #expect(result.errorLines.contains(line), "missing '\(line)':\n\(result)")
        }

        let refused = try await runClient(port: server.port, files: files, trust: false, ["--verbose"])
        #expect(refused.status == 1, "\(refused)")
        #expect(refused.errorLines.first == "Refused certificate chain from localhost:\(server.port):", "\(refused)")
        #expect(refused.errorLines.contains("Certificate 0: subject CN=localhost"), "\(refused)")
        #expect(refused.errorLines.contains("  serial \(leaf.serialNumber)"), "\(refused)")
        #expect(refused.errorLines.last?.hasPrefix("Error: handshake failed: the server's certificate was refused") == true, "\(refused)")
    }

    // MARK: Key log

    @Test("--keylogfile writes the 5 TLS 1.3 secrets in NSS key log format, on both sides, and warns")
    func keyLogFile() async throws {
        let files = try TestFiles()
        let serverLog = files.path("server-keys.txt")
        let clientLog = files.path("client-keys.txt")
        let server = try await ServerProcess.start(
            files.serverArguments() + ["--keylogfile", serverLog], directory: files.url)
        defer { server.kill() }
        let result = try await runClient(port: server.port, files: files, ["--keylogfile", clientLog])
        expectSuccessfulExchange(result)
        #expect(
            result.errorLines == [
                "Warning: --keylogfile: the session secrets are written to '\(clientLog)'; anyone with that file and "
                    + "a capture can read the traffic"
            ], "\(result)")
        #expect(try await server.waitForLine("Received: Hello from client!"), "\(server.transcript)")
        #expect(server.child.stderr.text.contains("Warning: --keylogfile: the session secrets are written to '\(serverLog)'"))

        let labels: Set<String> = [
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0",
            "SERVER_TRAFFIC_SECRET_0", "EXPORTER_SECRET",
        ]
        var randoms: Set<String> = []
        var bySide: [[String]] = []
        for path in [clientLog, serverLog] {
            let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
            #expect(lines.count == 5, "\(path):\n\(lines.joined(separator: "\n"))")
            let fields = lines.map { $0.split(separator: " ").map(String.init) }
            #expect(Set(fields.compactMap(\.first)) == labels, "\(lines)")
            for field in fields {
                #expect(field.count == 3, "\(field)")
                guard field.count == 3 else { continue }
                randoms.insert(field[1])
                #expect(field[1].count == 64 && field[1].allSatisfy(\.isHexDigit), "\(field)")
                // TLS_AES_128_GCM_SHA256: SHA-256 secrets, 32 bytes.
                #expect(field[2].count == 64 && field[2].allSatisfy(\.isHexDigit), "\(field)")
            }
            bySide.append(lines.sorted())
            let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber
            #expect(mode?.intValue == 0o600, "\(path) mode \(String(describing: mode))")
        }
        #expect(randoms.count == 1, "one connection has one client random: \(randoms)")
        #expect(bySide.count == 2 && bySide[0] == bySide[1], "client and server must log the same secrets")
    }

    @Test("SSLKEYLOGFILE, which GnuTLS honours silently, is warned about; with --keylogfile it is not used")
    func sslKeyLogFileEnvironment() async throws {
        let files = try TestFiles()
        let server = try await ServerProcess.start(files.serverArguments(), directory: files.url)
        defer { server.kill() }
        let environmentFile = files.path("env-keys.txt")
        let client = try Binaries.url(of: "tls-client").path
        let arguments = ["SSLKEYLOGFILE=\(environmentFile)", client, "--port", "\(server.port)", "--cafile", files.path("ca.crt")]
        let warned = try await runTool("/usr/bin/env", arguments)
        expectSuccessfulExchange(warned)
        #expect(
            warned.errorLines == [
                "Warning: SSLKEYLOGFILE is set: GnuTLS writes the session secrets to '\(environmentFile)'; anyone with "
                    + "that file and a capture can read the traffic"
            ], "\(warned)")
        let written = try String(contentsOfFile: environmentFile, encoding: .utf8).split(separator: "\n")
        #expect(written.count == 5, "\(written)")

        try FileManager.default.removeItem(atPath: environmentFile)
        let replaced = try await runTool("/usr/bin/env", arguments + ["--keylogfile", files.path("keys.txt")])
        expectSuccessfulExchange(replaced)
        #expect(!FileManager.default.fileExists(atPath: environmentFile), "SSLKEYLOGFILE was still written")
        #expect(!replaced.errorOutput.contains("SSLKEYLOGFILE"), "\(replaced)")
    }

    // MARK: The server's lines

    @Test("The connection line carries version, suite and client subject; refusals say which side refused")
    func connectionLines() async throws {
        let files = try TestFiles()
        let server = try await ServerProcess.start(
            files.serverArguments()
                + ["--verify-client", "optional", "--cafile", files.path("ca.crt"), "--timestamps"],
            directory: files.url)
        defer { server.kill() }
        let stamp = #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "#

        expectSuccessfulExchange(
            try await runClient(
                port: server.port, files: files, ["--cert", files.path("client.crt"), "--key", files.path("client.key")]))
        let withSubject = try await server.waitForLine {
            $0.hasSuffix(": TLS 1.3, TLS_AES_128_GCM_SHA256, client CN=command test client")
        }
        let line = try #require(withSubject, "\(server.transcript)")
        #expect(line.range(of: stamp + #"Connection from 127\.0\.0\.1:\d+: TLS 1\.3"#, options: .regularExpression) != nil, "\(line)")

        expectSuccessfulExchange(
            try await runClient(port: server.port, files: files, ["--message", "anonymous"]), message: "anonymous")
        #expect(try await server.waitForLine { $0.hasSuffix(": TLS 1.3, TLS_AES_128_GCM_SHA256") } != nil, "\(server.transcript)")

        // The client refuses the server (it does not trust the CA): the server says the client refused.
        _ = try await runClient(port: server.port, files: files, trust: false)
        let byClient = try await server.waitForLine { $0.contains(" failed: refused by the client: ") }
        #expect(byClient?.contains("the peer sent a fatal") == true, "\(server.transcript)")

        // The server refuses a client certificate from another CA.
        _ = try await runClient(
            port: server.port, files: files,
            ["--cert", files.path("other-client.crt"), "--key", files.path("other-client.key")])
        let byServer = try await server.waitForLine { $0.contains(" failed: refused by this server: ") }
        #expect(
            byServer?.contains("the client's certificate was refused: certificate is signed by an untrusted or unknown issuer")
                == true, "\(server.transcript)")
    }

    @Test("Trust options that mean nothing warn: the server's without --verify-client, the client's with --insecure")
    func meaninglessTrustOptionsWarn() async throws {
        let files = try TestFiles()
        let server = try await ServerProcess.start(
            files.serverArguments() + ["--cafile", files.path("ca.crt")], directory: files.url)
        defer { server.kill() }
        #expect(
            server.child.stderr.lines == [
                "Warning: --cafile without --verify-client: client certificates are not asked for, so it has no effect"
            ], "\(server.transcript)")

        let client = try await runClient(port: server.port, files: files, ["--insecure", "--verify-depth", "3"])
        expectSuccessfulExchange(client)
        #expect(
            client.errorLines.last
                == "Warning: --cafile, --verify-depth with --insecure: nothing is verified, so they have no effect",
            "\(client)")
    }

    // MARK: Hosts

    @Test("--host [::1] on both commands, and --connect HOST:PORT as s_client -connect")
    func hostsAsPeopleWriteThem() async throws {
        let files = try TestFiles()
        let server = try await ServerProcess.start(files.serverArguments() + ["--host", "[::1]"], directory: files.url)
        defer { server.kill() }
        #expect(server.lines.contains("tls-server: listening on [::1]:\(server.port)"), "\(server.transcript)")

        let bracketed = try await runClient(port: server.port, files: files, ["--host", "[::1]"])
        expectSuccessfulExchange(bracketed)
        #expect(bracketed.output.contains("Connected to [::1]:\(server.port) "), "\(bracketed)")

        let connect = try await runTool(
            "tls-client", ["--connect", "[::1]:\(server.port)", "--cafile", files.path("ca.crt")])
        expectSuccessfulExchange(connect)
        #expect(connect.output.contains("Connected to [::1]:\(server.port) "), "\(connect)")

        let unbracketed = try await runTool("tls-client", ["--connect", "::1:\(server.port)"])
        #expect(unbracketed.status == 64, "\(unbracketed)")
        #expect(
            unbracketed.errorLines.first
                == "Error: --connect '::1:\(server.port)' is not HOST:PORT: write an IPv6 address in brackets, as [::1]:4443",
            "\(unbracketed)")

        // A bracket without its partner is a usage error, not a host name looked up and not found.
        for (tool, host) in [("tls-client", "[::1"), ("tls-server", "::1]"), ("tls-client", "[]")] {
            let unbalanced = try await runTool(tool, ["--host", host, "--port", "1"])
            #expect(unbalanced.status == 64, "\(unbalanced)")
            #expect(
                unbalanced.errorLines.first
                    == "Error: --host '\(host)' is not a host: a bracket without its partner, or nothing in them "
                    + "(write ::1 or [::1])",
                "\(unbalanced)")
        }

        let both = try await runTool("tls-client", ["--connect", "localhost:1", "--port", "2"])
        #expect(both.status == 64, "\(both)")
        #expect(both.errorLines.first == "Error: --connect names the host and port; leave out --host and --port", "\(both)")
    }

    @Test("An unknown host: the error says so in words, with no Swift type name (client and server)")
    func unknownHostInWords() async throws {
        let client = try await runTool("tls-client", ["--host", "nosuch.invalid", "--timeout", "5"])
        expectClientFailure(client, mentioning: ["cannot connect to nosuch.invalid:4443: cannot resolve the host name 'nosuch.invalid'"])
        #expect(!client.errorOutput.contains("SocketAddressError") && !client.errorOutput.contains("UnknownHost"), "\(client)")

        let files = try TestFiles()
        let server = try await runTool("tls-server", files.serverArguments() + ["--host", "nosuch.invalid"])
        expectStartupFailure(server, mentioning: ["Error: cannot listen on nosuch.invalid:0: cannot resolve the host name 'nosuch.invalid'"])
        #expect(!server.errorOutput.contains("SocketAddressError"), "\(server)")
    }

    @Test("A file where tls-server makes certs/: the error in the system's words, with no Swift type name")
    func developmentFolderIsAFile() async throws {
        let folder = try TemporaryDirectory()
        try Data().write(to: folder.url.appendingPathComponent("certs"))
        let server = try await runTool("tls-server", ["--port", "0"], directory: folder.url)
        #expect(server.status == 1, "\(server)")
        #expect(server.errorLines == ["Error: cannot create 'certs': File exists"], "\(server)")
    }

    // MARK: Versions, usage errors

    @Test("--version on every command prints the package and GnuTLS versions", arguments: ["tls-server", "tls-client", "tls-certs"])
    func version(tool: String) async throws {
        let result = try await runTool(tool, ["--version"])
        #expect(result.status == 0, "\(result)")
        #expect(result.output == "\(LibraryVersion.package) (GnuTLS \(LibraryVersion.gnutls))\n", "\(result)")
    }

    @Test("A repeated single-value option is a usage error (exit 64) naming it")
    func repeatedOptionIsAnError() async throws {
        let client = try await runTool("tls-client", ["--port", "1", "--port=2"])
        #expect(client.status == 64, "\(client)")
        #expect(client.errorLines.first == "Error: --port was given more than once; it takes one value", "\(client)")
        let server = try await runTool("tls-server", ["--port", "0", "--cafile", "a.crt", "--cafile", "b.crt"])
        #expect(server.status == 64, "\(server)")
        #expect(server.errorLines.first == "Error: --cafile was given more than once; it takes one value", "\(server)")
        // A value that looks like an option is a value, not a second option.
        let message = try await runTool("tls-client", ["--message=--port", "--port", "1", "--timeout", "0"])
        #expect(message.errorLines.first == "Error: --timeout must be at least 1 s", "\(message)")
    }

    // MARK: tls-certs

    @Test("tls-certs refuses to overwrite a CA or leaf without --force, takes --ca as a file name, refuses --days 0")
    func tlsCertsRefusals() async throws {
        let folder = try TemporaryDirectory()
        let ca = folder.path("ca")
        #expect(try await runTool("tls-certs", ["ca", "--out", ca]).status == 0)
        let original = try Data(contentsOf: URL(fileURLWithPath: ca + ".key"))

        let again = try await runTool("tls-certs", ["ca", "--out", ca])
        #expect(again.status == 1, "\(again)")
        #expect(
            again.errorLines == ["Error: '\(ca).crt' and '\(ca).key' already exist; give --force to replace them"],
            "\(again)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: ca + ".key")) == original, "the CA key was replaced")

        // --ca as the certificate's file name.
        let leaf = folder.path("leaf")
        let issued = try await runTool("tls-certs", ["issue", "--ca", ca + ".crt", "--out", leaf, "--cn", "x"])
        #expect(issued.status == 0, "\(issued)")
        let reissue = try await runTool("tls-certs", ["issue", "--ca", ca, "--out", leaf, "--cn", "x"])
        #expect(reissue.status == 1, "\(reissue)")
        #expect(reissue.errorOutput.contains("already exist; give --force"), "\(reissue)")
        #expect(try await runTool("tls-certs", ["issue", "--ca", ca, "--out", leaf, "--cn", "x", "--force"]).status == 0)

        // A leaf is not a CA: signing with it would make a chain every verifier refuses.
        let byLeaf = try await runTool("tls-certs", ["issue", "--ca", leaf, "--out", folder.path("l2"), "--cn", "y"])
        #expect(byLeaf.status == 1, "\(byLeaf)")
        #expect(
            byLeaf.errorLines
                == [
                    "Error: '\(leaf).crt' is not a CA certificate (CN=x cannot sign others); give the CA made by "
                        + "tls-certs ca"
                ],
            "\(byLeaf)")
        #expect(!FileManager.default.fileExists(atPath: folder.path("l2.crt")))

        let replaced = try await runTool("tls-certs", ["ca", "--out", ca, "--force"])
        #expect(replaced.status == 0, "\(replaced)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: ca + ".key")) != original, "--force did not replace the key")

        for days in ["0", "-3"] {
            let result = try await runTool("tls-certs", ["issue", "--ca", ca, "--out", folder.path("d"), "--cn", "x", "--days=\(days)"])
            #expect(result.status == 64, "\(result)")
            #expect(result.errorOutput.contains("Error: --days must be at least 1, not \(days)"), "\(result)")
            #expect(!FileManager.default.fileExists(atPath: folder.path("d.crt")))
        }
    }
}
