// End-to-end tests of the built commands: each test starts the real tls-server / tls-client / tls-certs binaries
// on 127.0.0.1 / ::1 and checks what a user sees (output lines, exit status, files). Certificates are made at
// test time in a temporary directory. Helpers live in CommandTestSupport.swift.

import Foundation
import GnuTLS
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The certificates one test needs, written as PEM files into a temporary directory of its own:
/// - `ca.crt`/`ca.key`: the test CA;
/// - `server.crt`/`server.key`: a server certificate from it for localhost, 127.0.0.1 and ::1;
/// - `client.crt`/`client.key`: a client certificate from it;
/// - `other-ca.crt`, `other-client.crt`/`other-client.key`: a second CA nobody trusts, and a client it vouches for;
/// - `self-signed.crt`/`self-signed.key`: a server certificate for localhost that no CA vouches for.
struct TestFiles {
    let directory: TemporaryDirectory

    var url: URL { directory.url }
    func path(_ name: String) -> String { directory.path(name) }

    init() throws {
        directory = try TemporaryDirectory()
        let ca = try CertificateAuthority.generate(commonName: "Command Test CA")
        try ca.privateKey.write(toFile: directory.path("ca.key"))
        try Certificate.writePEM([ca.certificate], toFile: directory.path("ca.crt"))

        let server = try ca.issue(commonName: "localhost", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1", "::1"])
        try write(server, as: "server")
        try write(try ca.issue(commonName: "command test client", usage: .client), as: "client")

        let otherCA = try CertificateAuthority.generate(commonName: "Other CA")
        try Certificate.writePEM([otherCA.certificate], toFile: directory.path("other-ca.crt"))
        try write(try otherCA.issue(commonName: "stranger", usage: .client), as: "other-client")

        let selfSigned = try CertificateAuthority.selfSignedLeaf(
            commonName: "localhost", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1", "::1"])
        try write(selfSigned, as: "self-signed")
    }

    private func write(_ issued: CertificateAuthority.Issued, as name: String) throws {
        try issued.privateKey.write(toFile: directory.path(name + ".key"))
        try Certificate.writePEM(issued.chain, toFile: directory.path(name + ".crt"))
    }

    /// `--port 0 --cert NAME.crt --key NAME.key`: the start of a server command line.
    func serverArguments(identity name: String = "server") -> [String] {
        ["--port", "0", "--cert", path(name + ".crt"), "--key", path(name + ".key")]
    }
}

/// Runs tls-client against `port`, trusting `files`' CA unless `trust` is false, with `extra` options.
func runClient(
    port: Int, files: TestFiles?, trust: Bool = true, _ extra: [String] = [], input: Data? = nil,
    timeout: Duration = .seconds(60)
) async throws -> ToolResult {
    var arguments = ["--port", "\(port)"]
    if trust, let files { arguments += ["--cafile", files.path("ca.crt")] }
    return try await runTool("tls-client", arguments + extra, input: input, timeout: timeout)
}

/// Expects a successful exchange of the default message.
func expectSuccessfulExchange(
    _ result: ToolResult, message: String = "Hello from client!", sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(result.status == 0, "\(result)", sourceLocation: sourceLocation)
    #expect(result.output.contains("Connected to "), "\(result)", sourceLocation: sourceLocation)
    #expect(
        result.output.split(separator: "\n").contains("Response: \(message)"), "\(result)",
        sourceLocation: sourceLocation)
}

/// Expects what the client promises for any failure: exit status 1 and exactly one line on standard error,
/// `Error: ...`, containing every one of `words`; no response on standard output.
func expectClientFailure(
    _ result: ToolResult, mentioning words: [String], sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(result.status == 1, "\(result)", sourceLocation: sourceLocation)
    #expect(result.errorLines.count == 1, "expected one line on stderr:\n\(result)", sourceLocation: sourceLocation)
    let line = result.errorLines.first ?? ""
    #expect(line.hasPrefix("Error: "), "\(result)", sourceLocation: sourceLocation)
    for word in words {
        #expect(line.contains(word), "stderr should mention '\(word)':\n\(result)", sourceLocation: sourceLocation)
    }
    #expect(!result.output.contains("Response:"), "\(result)", sourceLocation: sourceLocation)
}

/// Expects a server start-up failure: non-zero exit, no listening line, and `Error` on standard error with all
/// of `words`.
func expectStartupFailure(
    _ result: ToolResult, mentioning words: [String], sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(result.status != 0, "\(result)", sourceLocation: sourceLocation)
    #expect(!result.output.contains("listening on"), "\(result)", sourceLocation: sourceLocation)
    #expect(result.errorOutput.contains("Error"), "\(result)", sourceLocation: sourceLocation)
    for word in words {
        #expect(
            result.errorOutput.contains(word), "stderr should mention '\(word)':\n\(result)",
            sourceLocation: sourceLocation)
    }
}

/// Deterministic bytes that look random (so a stream test exercises every byte value).
func pseudoRandomBytes(count: Int, seed: UInt64) -> Data {
    var state = seed
    var bytes = [UInt8](repeating: 0, count: count)
    for index in 0..<count {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        bytes[index] = UInt8(truncatingIfNeeded: state >> 33)
    }
    return Data(bytes)
}

@Suite("tls-server, tls-client and tls-certs as a user runs them", .timeLimit(.minutes(5)))
struct CommandTests {

    // MARK: 1. First run

    @Test("First run in an empty directory creates a development CA, and a later run reuses it")
    func firstRunCreatesDevelopmentCertificates() async throws {
        let cwd = try TemporaryDirectory()
        let certs = cwd.url.appendingPathComponent("certs")
        let caFile = certs.appendingPathComponent("ca.crt")

        let firstCA: Data
        do {
            let server = try await ServerProcess.start(["--port", "0"], directory: cwd.url)
            defer { server.kill() }

            for name in ["ca.crt", "ca.key", "server.crt", "server.key"] {
                let file = certs.appendingPathComponent(name).path
                #expect(FileManager.default.fileExists(atPath: file), "missing \(file)\n\(server.transcript)")
            }
            for name in ["ca.key", "server.key"] {
                let attributes = try FileManager.default.attributesOfItem(atPath: certs.appendingPathComponent(name).path)
                let mode = (attributes[.posixPermissions] as? NSNumber)?.intValue ?? -1
                #expect(mode & 0o777 == 0o600, "\(name) has mode \(String(mode, radix: 8)), not 600")
            }
            #expect(
                server.output.contains("tls-client --cafile certs/ca.crt"),
                "the first run should tell how to trust the new CA:\n\(server.transcript)")

            let result = try await runTool(
                "tls-client", ["--port", "\(server.port)", "--cafile", "certs/ca.crt"], directory: cwd.url)
            expectSuccessfulExchange(result)
            #expect(try await server.waitForLine("Received: Hello from client!"), "\(server.transcript)")
            firstCA = try Data(contentsOf: caFile)
        }

        // Second start in the same directory: the files are reused, not replaced.
        let again = try await ServerProcess.start(["--port", "0"], directory: cwd.url)
        defer { again.kill() }
        #expect(!again.output.contains("created a development CA"), "\(again.transcript)")
        #expect(try Data(contentsOf: caFile) == firstCA, "certs/ca.crt changed on the second run")
        let result = try await runTool(
            "tls-client", ["--port", "\(again.port)", "--cafile", "certs/ca.crt"], directory: cwd.url)
        expectSuccessfulExchange(result)
    }

    // MARK: 2–6. Start-up errors

    @Test("A certificate file that does not exist: non-zero exit naming the file")
    func missingCertificateFile() async throws {
        let files = try TestFiles()
        let result = try await runTool(
            "tls-server",
            ["--port", "0", "--cert", "/nonexistent/server.crt", "--key", files.path("server.key")],
            directory: files.url)
        expectStartupFailure(result, mentioning: ["Error:", "/nonexistent/server.crt"])
    }

    @Test("A bad priority string: non-zero exit naming the position of the mistake")
    func badPriorityString() async throws {
        let files = try TestFiles()
        let result = try await runTool(
            "tls-server", files.serverArguments() + ["--priority", "NORMAL:+VERS-TLS9"], directory: files.url)
        expectStartupFailure(result, mentioning: ["Error:", "position", "VERS-TLS9"])
    }

    @Test("--verify-client required without --cafile: non-zero exit saying --cafile is needed")
    func verifyClientWithoutCAFile() async throws {
        let files = try TestFiles()
        let result = try await runTool(
            "tls-server", files.serverArguments() + ["--verify-client", "required"], directory: files.url)
        expectStartupFailure(result, mentioning: ["--verify-client", "--cafile"])
    }

    @Test("A port already in use: the second server exits non-zero with an Error naming the port")
    func portInUse() async throws {
        let files = try TestFiles()
        let first = try await ServerProcess.start(files.serverArguments(), directory: files.url)
        defer { first.kill() }

        let second = try await runTool(
            "tls-server",
            ["--port", "\(first.port)", "--cert", files.path("server.crt"), "--key", files.path("server.key")],
            directory: files.url)
        expectStartupFailure(second, mentioning: ["Error:", ":\(first.port)", "in use"])

        // The first server is unharmed.
        expectSuccessfulExchange(try await runClient(port: first.port, files: files))
    }

    @Test("A key that does not belong to the certificate: non-zero exit saying it does not match")
    func mismatchedCertificateAndKey() async throws {
        let files = try TestFiles()
        let result = try await runTool(
            "tls-server",
            ["--port", "0", "--cert", files.path("server.crt"), "--key", files.path("client.key")],
            directory: files.url)
        expectStartupFailure(result, mentioning: ["Error:", "does not match"])
    }

    // MARK: 7. Client refusals

    @Test("Client: a server name the certificate does not cover is refused")
    func clientRefusesWrongServerName() async throws {
        let files = try TestFiles()
        let server = try await ServerProcess.start(files.serverArguments(), directory: files.url)
        defer { server.kill() }
        let result = try await runClient(port: server.port, files: files, ["--servername", "wrong.example"])
        expectClientFailure(result, mentioning: ["does not match the requested name", "wrong.example"])
    }

    @Test("Client: a certificate from a CA the system does not trust is refused (no --cafile)")
    func clientRefusesUntrustedIssuer() async throws {
        let files = try TestFiles()
        let server = try await ServerProcess.start(files.serverArguments(), directory: files.url)
        defer { server.kill() }
        let result = try await runClient(port: server.port, files: files, trust: false)
        expectClientFailure(result, mentioning: ["untrusted or unknown issuer"])
    }

    @Test("Client: an expired server certificate (tls-certs issue --expired) is refused")
    func clientRefusesExpiredCertificate() async throws {
        let files = try TestFiles()
        let issued = try await runTool(
            "tls-certs",
            [
                "issue", "--ca", files.path("ca"), "--out", files.path("expired"), "--cn", "localhost",
                "--dns", "localhost", "--ip", "127.0.0.1", "--ip", "::1", "--expired",
            ])
        #expect(issued.status == 0, "\(issued)")
        #expect(FileManager.default.fileExists(atPath: files.path("expired.crt")), "\(issued)")

        let server = try await ServerProcess.start(files.serverArguments(identity: "expired"), directory: files.url)
        defer { server.kill() }
        let result = try await runClient(port: server.port, files: files)
        expectClientFailure(result, mentioning: ["expired"])
    }

    @Test("Client: a port nobody listens on gives 'connection refused'")
    func clientReportsConnectionRefused() async throws {
        let files = try TestFiles()
        let closed = try ClosedPort()
        let result = try await runClient(port: closed.port, files: files, ["--host", "127.0.0.1"])
        expectClientFailure(result, mentioning: ["connection refused", "\(closed.port)"])
    }

    // MARK: 8. --insecure

    @Test("Client --insecure warns on stderr and accepts a certificate nobody vouches for")
    func insecureClientWarnsAndConnects() async throws {
        let files = try TestFiles()
        let server = try await ServerProcess.start(
            files.serverArguments(identity: "self-signed"), directory: files.url)
        defer { server.kill() }

        let result = try await runClient(port: server.port, files: files, trust: false, ["--insecure"])
        expectSuccessfulExchange(result)
        #expect(result.errorOutput.contains("Warning"), "\(result)")
        #expect(result.errorOutput.contains("--insecure"), "\(result)")
        #expect(!result.errorOutput.contains("Error"), "\(result)")
    }

    // MARK: 9. Concurrency and garbage

    @Test("Client --stream: a server that ends without close_notify after ours is truncation (exit 1), after what came")
    func streamClientReportsTruncationAfterItsOwnCloseNotify() async throws {
        let files = try TestFiles()
        // A Python ssl server that echoes until our close_notify, then drops TLS without its own.
        let script = files.path("truncating_server.py")
        try """
            import socket, ssl, sys
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(sys.argv[1], sys.argv[2])
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            print(listener.getsockname()[1], flush=True)
            raw, _ = listener.accept()
            tls = ctx.wrap_socket(raw, server_side=True)
            data = b""
            while True:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                data += chunk
            tls.sendall(data)
            raw.shutdown(socket.SHUT_RDWR)
            """.write(toFile: script, atomically: true, encoding: .utf8)
        let server = try ChildProcess("/usr/bin/python3", [script, files.path("server.crt"), files.path("server.key")])
        defer { server.kill() }
        var port: Int?
        #expect(try await eventually(within: .seconds(30)) {
            port = Int(server.stdout.text.trimmingCharacters(in: .whitespacesAndNewlines))
            return port != nil
        }, "\(server.transcript)")
        let result = try await runClient(
            port: try #require(port), files: files, ["--host", "127.0.0.1", "--servername", "localhost", "--stream"],
            input: Data("everything I sent\n".utf8))
        #expect(result.output == "everything I sent\n", "\(result)")
        expectClientFailure(result, mentioning: ["close_notify", "truncation"])
    }

    @Test("Many failures at once are not a flood: a burst of lines, then a summary that accounts for every one")
    func failureLinesAreRateLimited() async throws {
        let files = try TestFiles()
        let server = try await ServerProcess.start(files.serverArguments() + ["--quiet"], directory: files.url)
        defer { server.kill() }
        let count = 150
        var clients: [RawTCPConnection] = []
        for _ in 0..<count {
            let client = try RawTCPConnection(port: server.port)
            try client.send(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
            clients.append(client)
        }
        func shown() -> Int { server.lines.filter { $0.hasPrefix("Connection from ") && $0.contains(" failed: ") }.count }
        func summarized() -> Int {
            server.lines.filter { $0.hasPrefix("tls-server: ") && $0.contains(" more connection failures not shown") }
                .compactMap { Int($0.dropFirst("tls-server: ".count).prefix { $0.isNumber }) }
                .reduce(0, +)
        }
        #expect(try await eventually(within: .seconds(15)) { shown() + summarized() == count }, "\(server.transcript)")
        #expect(shown() < 60, "\(shown()) failure lines for \(count) failures")
        #expect(summarized() > 0)
        for client in clients { client.close() }
    }

    @Test("A FIFO given as --cert is refused at once, not waited on; a key others can read is warned about")
    func startUpFiles() async throws {
        let files = try TestFiles()
        #expect(mkfifo(files.path("fifo.crt"), 0o600) == 0)
        let fifo = try await runTool(
            "tls-server", ["--port", "0", "--cert", files.path("fifo.crt"), "--key", files.path("server.key")],
            timeout: .seconds(10))
        #expect(fifo.status == 1, "\(fifo)")
        #expect(
            fifo.errorOutput.contains("cannot read certificate file '\(files.path("fifo.crt"))': it is a FIFO, not a regular file"),
            "\(fifo)")

        // The key as written (mode 0600): no warning. Readable by everyone: a warning that names the mode.
        let quiet = try await ServerProcess.start(files.serverArguments(), directory: files.url)
        quiet.kill()
        let exposedKey = files.path("exposed.key")
        try FileManager.default.copyItem(atPath: files.path("server.key"), toPath: exposedKey)
        #expect(chmod(exposedKey, 0o644) == 0)
        let exposed = try await ServerProcess.start(
            ["--port", "0", "--cert", files.path("server.crt"), "--key", exposedKey], directory: files.url)
        defer { exposed.kill() }
        #expect(
            try await eventually(within: .seconds(30)) {
                exposed.child.stderr.text.contains(
                    "Warning: the private key '\(exposedKey)' has mode 0644: every user of this machine can read it")
            },
            "\(exposed.transcript)")
        #expect(!quiet.child.stderr.text.contains("Warning"), "\(quiet.transcript)")
    }

    @Test("Client: --timeout bounds the whole run against a server that accepts and never answers")
    func clientTimeoutAgainstASilentServer() async throws {
        let silent = try SilentListener()
        let clock = ContinuousClock()
        // What a run costs that fails at once (connection refused): starting and ending the process, which a
        // loaded machine makes slow. The bug this test guards against returned after 10 s, not 1 s.
        let refused = try ClosedPort()
        let baselineStart = clock.now
        expectClientFailure(
            try await runClient(port: refused.port, files: nil, trust: false, ["--timeout", "1"]),
            mentioning: ["connection refused"])
        let baseline = clock.now - baselineStart
        let start = clock.now
        let result = try await runClient(port: silent.port, files: nil, trust: false, ["--timeout", "1"])
        let elapsed = clock.now - start
        expectClientFailure(result, mentioning: ["timed out after 1 s"])
        #expect(elapsed >= .milliseconds(900), "returned after \(elapsed)")
        #expect(elapsed < baseline + .seconds(4), "returned after \(elapsed); a refused run took \(baseline)")
    }

    @Test("A ClientHello that declares 16 MiB is refused after 64 KiB with an alert and a line, and costs the server no memory")
    func oversizedClientHello() async throws {
        let files = try TestFiles()
        // A handshake deadline far away: this test is about the 64 KiB bound, and its clients send from the test's
        // task, which a loaded machine's busy cooperative pool once held back past the default 10 s.
        let server = try await ServerProcess.start(
            files.serverArguments() + ["--handshake-timeout", "60"], directory: files.url)
        defer { server.kill() }
        let startRSS = try residentKiB(of: server.child.pid)
        func record(_ body: [UInt8]) -> [UInt8] {
            [0x16, 0x03, 0x01, UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body
        }
        let first = record([0x01, 0xFF, 0xFF, 0x00] + [UInt8](repeating: 0, count: 16 * 1024 - 4))
        let next = record([UInt8](repeating: 0, count: 16 * 1024))
        // Eight such clients at once, each sending up to 2 MiB of the message.
        struct Client {
            let connection: RawTCPConnection
            var sent = 0
            var pending: [UInt8] = []
            var received: [UInt8] = []
            var closed = false
        }
        var clients: [Client] = []
        for _ in 0..<8 { clients.append(Client(connection: try RawTCPConnection(port: server.port))) }
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(30)
        while clients.contains(where: { !$0.closed }) && clock.now < deadline {
            for index in clients.indices where !clients[index].closed {
                guard let bytes = clients[index].connection.receiveAvailable() else {
                    clients[index].closed = true
                    continue
                }
                clients[index].received += bytes
                if clients[index].pending.isEmpty && clients[index].sent < 2 * 1024 * 1024 {
                    clients[index].pending = clients[index].sent == 0 ? first : next
                }
                let taken = (try? clients[index].pending.withUnsafeBytes {
                    try clients[index].connection.sendAvailable($0)
                }) ?? 0
                clients[index].pending.removeFirst(taken)
                clients[index].sent += taken
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        let allClosed = clients.allSatisfy { $0.closed }
        #expect(allClosed, "connections still open after 30 s")
        for client in clients {
            let (connection, sent, received) = (client.connection, client.sent, client.received)
            #expect(sent < 256 * 1024, "the server took \(sent) bytes of the handshake")
            #expect(Array(received.suffix(7)) == [0x15, 0x03, 0x03, 0x00, 0x02, 2, 40], "no handshake_failure alert: \(received)")
            #expect(
                try await server.waitForLine(
                    "Connection from \(connection.peerName) failed: the peer sent more than 64 KiB before completing the handshake"),
                "\(server.transcript)")
        }
        let grownKiB = try residentKiB(of: server.child.pid) - startRSS
        #expect(grownKiB < 16 * 1024, "the server grew by \(grownKiB) KiB")
    }

    @Test("--stream: a slow reader that sends close_notify right after its data still gets every byte back, then the server's close_notify")
    func streamEchoesEverythingToASlowReader() async throws {
        let files = try TestFiles()
        let server = try await ServerProcess.start(files.serverArguments() + ["--stream", "--quiet"], directory: files.url)
        defer { server.kill() }
        // A small window: the server's echo waits in its own buffers, not in ours.
        let connection = try RawTCPConnection(port: server.port, receiveBuffer: 8 * 1024)
        defer { connection.close() }
        let session = try await handshake(over: connection, trusting: files.path("ca.crt"))

        // 8 MB of a pattern that shows where a gap would be, then close_notify at once; read 64 KiB every 10 ms,
        // and nothing for a second right after the close_notify went out (the server reads it while its echo is
        // still waiting to be written).
        let total = 8 * 1024 * 1024
        let message = (0..<total).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 13) }
        var pending: [UInt8] = []
        var offset = 0
        var closed = false
        var received: [UInt8] = []
        var outcome = TLSSession.ReadResult.needsInput
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(60)
        while outcome != .closed && clock.now < deadline {
            if pending.isEmpty && offset < total {
                let end = min(total, offset + 64 * 1024)
                try session.write(message[offset..<end])
                offset = end
                pending = session.takePendingOutput()
            } else if pending.isEmpty && !closed {
                try session.close()
                pending = session.takePendingOutput()
                closed = true
            }
            if !pending.isEmpty {
                let taken = try pending.withUnsafeBytes { try connection.sendAvailable($0) }
                pending.removeFirst(taken)
                if closed && pending.isEmpty { try await Task.sleep(for: .seconds(1)) }
            }
            try await Task.sleep(for: .milliseconds(10))
            guard let bytes = connection.receiveAvailable(limit: 64 * 1024) else { break }
            session.feed(bytes)
            outcome = try session.readAvailable(into: &received)
        }
        #expect(closed, "sent \(offset) of \(total) bytes")
        #expect(outcome == .closed, "no close_notify from the server (received \(received.count) of \(total) bytes)")
        #expect(received.count == total)
        #expect(received == message, "the echo differs from what was sent")
    }

    @Test("--stream: a client that sends without reading costs the server a bounded buffer, not what it sends")
    func streamBackPressure() async throws {
        let files = try TestFiles()
        let server = try await ServerProcess.start(files.serverArguments() + ["--stream", "--quiet"], directory: files.url)
        defer { server.kill() }
        let connection = try RawTCPConnection(port: server.port)
        defer { connection.close() }
        let session = try await handshake(over: connection, trusting: files.path("ca.crt"))
        let startRSS = try residentKiB(of: server.child.pid)

        // Send up to 200 MB and read nothing, until the server stops taking bytes for 3 s (a loaded machine may
        // pause the server for a second while it still takes bytes).
        let chunk = [UInt8](repeating: 0x61, count: 64 * 1024)
        var pending: [UInt8] = []
        var sent = 0
        let clock = ContinuousClock()
        var lastProgress = clock.now
        let deadline = clock.now + .seconds(30)
        while sent < 200_000_000 && clock.now - lastProgress < .seconds(3) && clock.now < deadline {
            if pending.isEmpty {
                try session.write(chunk)
                pending = session.takePendingOutput()
            }
            let taken = try pending.withUnsafeBytes { try connection.sendAvailable($0) }
            if taken > 0 {
                pending.removeFirst(taken)
                sent += taken
                lastProgress = clock.now
            } else {
                try await Task.sleep(for: .milliseconds(10))
            }
        }
        let grownKiB = try residentKiB(of: server.child.pid) - startRSS
        #expect(sent < 100_000_000, "the server took \(sent) bytes from a client that reads nothing")
        #expect(grownKiB < 32 * 1024, "the server grew by \(grownKiB) KiB while the client sent \(sent) bytes")
    }

    @Test("With the descriptor table full the server neither spins nor stays silent, and serves again once descriptors are free")
    func descriptorExhaustion() async throws {
        let files = try TestFiles()
        // Its clients never send a hello: a far handshake deadline keeps the table full however slowly the test runs.
        let server = try await ServerProcess.start(
            files.serverArguments() + ["--host", "127.0.0.1", "--handshake-timeout", "60"], directory: files.url)
        defer { server.kill() }
        // The running server may open 40 descriptors; more clients than that wait in the listen backlog.
        let limit = try await runTool("/usr/bin/prlimit", ["--pid", "\(server.child.pid)", "--nofile=40:40"])
        #expect(limit.status == 0, "\(limit)")
        var clients: [RawTCPConnection] = []
        for _ in 0..<60 { clients.append(try RawTCPConnection(port: server.port)) }
        #expect(
            try await server.waitForLine(where: { $0.hasPrefix("tls-server: cannot accept connections: Too many open files") }) != nil,
            "no line about the full table:\n\(server.transcript)")
        // A full table costs no CPU: a busy loop on accept would use a whole core (200 ticks in 2 s).
        let before = try cpuTicks(of: server.child.pid)
        try await Task.sleep(for: .seconds(2))
        let ticks = try cpuTicks(of: server.child.pid) - before
        #expect(ticks < 30, "the server used \(ticks) of 200 CPU ticks in 2 s with the table full")
        #expect(server.lines.filter { $0.hasPrefix("tls-server: cannot accept connections") }.count == 1, "\(server.transcript)")

        for client in clients { client.close() }
        let result = try await runClient(port: server.port, files: files, ["--host", "127.0.0.1", "--servername", "localhost"])
        expectSuccessfulExchange(result)
        #expect(
            try await server.waitForLine(where: { $0.hasPrefix("tls-server: accepting connections again after ") }) != nil,
            "\(server.transcript)")
    }

    @Test("On the real event loop: no handshake within --handshake-timeout closes with a line; no bytes for --idle-timeout sends close_notify, logs one line, and closes once the client answers")
    func handshakeAndIdleDeadlines() async throws {
        let files = try TestFiles()
        // One event loop: a later connection's line comes after everything an earlier connection logged.
        let server = try await ServerProcess.start(
            files.serverArguments() + ["--handshake-timeout", "1", "--idle-timeout", "1", "--threads", "1"],
            directory: files.url)
        defer { server.kill() }
        let clock = ContinuousClock()

        // A client that never sends its ClientHello.
        let silent = try RawTCPConnection(port: server.port)
        defer { silent.close() }
        let silentStart = clock.now
        #expect(try await silent.waitForPeerClose(timeout: .seconds(20)), "the silent connection was left open")
        let silentWait = clock.now - silentStart
        // Not before the 1 s deadline; the upper bound only tells the timer from "never" (a loaded CI machine
        // once closed it after 3.4 s; the line below names the deadline that did it).
        #expect(silentWait >= .milliseconds(900) && silentWait < .seconds(15), "closed after \(silentWait)")
        #expect(
            try await server.waitForLine(where: {
                $0.hasPrefix("Connection from \(silent.peerName) failed: ") && $0.contains("handshake did not complete within 1 s")
            }) != nil,
            "no handshake-timeout line:\n\(server.transcript)")

        // A client that completes its handshake (the library's sans-I/O session over a plain socket), then idles.
        // It runs on a thread of its own: the server allows 1 s for the handshake, and the test's task could wait
        // that long for a turn on the cooperative pool while the other suites' in-memory handshakes fill it.
        let idle = try RawTCPConnection(port: server.port)
        defer { idle.close() }
        let caFile = files.path("ca.crt")
        let exchange = try await onThreadOfItsOwn { () throws -> IdleExchange in
            let context = try TLSContext(configuration: .client(trustRoots: .file(caFile)))
            let session = try context.makeSession(serverName: "localhost")
            var complete = false
            let handshakeDeadline = clock.now + .seconds(30)
            while !complete && clock.now < handshakeDeadline {
                complete = try session.handshake() == .complete
                if session.hasPendingOutput { try idle.send(session.takePendingOutput()) }
                if complete { break }
                guard let bytes = idle.receiveAvailable() else { break }
                if bytes.isEmpty { usleep(2_000) } else { session.feed(bytes) }
            }
            guard complete else { return IdleExchange(complete: false) }
            let idleStart = clock.now

            // What arrives after the idle timeout is the server's close_notify, on a connection it keeps open for
            // our answer (the TLS 1.3 session ticket may come first).
            var exchange = IdleExchange(complete: true)
            let readDeadline = clock.now + .seconds(20)
            while exchange.outcome != .closed && clock.now < readDeadline {
                guard let bytes = idle.receiveAvailable() else { break }
                if bytes.isEmpty {
                    usleep(2_000)
                    continue
                }
                session.feed(bytes)
                exchange.outcome = try session.readAvailable(into: &exchange.plaintext)
            }
            exchange.idleWait = clock.now - idleStart
            // Our close_notify in answer.
            try session.close()
            try idle.send(session.takePendingOutput())
            return exchange
        }
        #expect(exchange.complete, "the handshake did not complete:\n\(server.transcript)")
        let idleWait = exchange.idleWait
        #expect(exchange.outcome == .closed, "no close_notify from the server after \(idleWait):\n\(server.transcript)")
        #expect(exchange.plaintext.isEmpty)
        #expect(idleWait >= .milliseconds(900) && idleWait < .seconds(15), "close_notify after \(idleWait)")

        // Our close_notify went in answer: the server closes at once, not after its 3 s shutdown timeout.
        let answerStart = clock.now
        #expect(try await idle.waitForPeerClose(timeout: .seconds(10)), "the idle connection was left open")
        // A timer never fires early: a close by the 3 s shutdown timer comes 3 s or more after our close_notify,
        // however loaded the machine, so anything under 2.9 s is the server answering it.
        #expect(clock.now - answerStart < .milliseconds(2_900), "closed \(clock.now - answerStart) after our close_notify")

        // One line for the idle connection, and no failure reported about the close the server made itself.
        let result = try await runClient(port: server.port, files: files)
        expectSuccessfulExchange(result)
        #expect(try await server.waitForLine("Received: Hello from client!"), "\(server.transcript)")
        let idleLines = server.transcript.split(separator: "\n").filter { $0.hasPrefix("Connection from \(idle.peerName) ") }
        #expect(idleLines == ["Connection from \(idle.peerName) closed after 1 s without activity"], "\(server.transcript)")
    }

    @Test("A silent client does not hold up others; garbage fails one connection, not the server")
    func silentAndGarbageClients() async throws {
        let files = try TestFiles()
        let server = try await ServerProcess.start(
            files.serverArguments() + ["--handshake-timeout", "60"], directory: files.url)
        defer { server.kill() }

        // A client that connects and says nothing.
        let silent = try RawTCPConnection(port: server.port)
        defer { silent.close() }
        #expect(
            try await server.waitForLine("Connection from \(silent.peerName)"),
            "the server did not accept the silent connection:\n\(server.transcript)")

        // A normal exchange meanwhile completes, while the silent connection is still waiting in its handshake
        // (not yet closed by the 60 s handshake timeout): it was not served after the silent one.
        let result = try await runClient(port: server.port, files: files)
        expectSuccessfulExchange(result)
        #expect(!silent.peerHasClosed(), "the normal client only got through after the silent one was dropped")
        #expect(
            !server.lines.contains { $0.hasPrefix("Connection from \(silent.peerName) ") },
            "the silent connection was already reported when the normal one finished:\n\(server.transcript)")

        // Garbage instead of a ClientHello: the server logs one failure for that connection and closes it.
        let garbage = try RawTCPConnection(port: server.port)
        defer { garbage.close() }
        try garbage.send(Array("GET / HTTP/1.0\r\n\r\n".utf8))
        let failurePrefix = "Connection from \(garbage.peerName) failed: "
        let failure = try await server.waitForLine { $0.hasPrefix(failurePrefix) }
        #expect(failure != nil, "no failure line for the garbage connection:\n\(server.transcript)")
        #expect(
            try await garbage.waitForPeerClose(timeout: .seconds(20)),
            "the server did not close the garbage connection")
        try await Task.sleep(for: .milliseconds(300))  // any second report would be out by now
        #expect(
            server.lines.filter { $0.hasPrefix(failurePrefix) }.count == 1,
            "expected exactly one failure line for \(garbage.peerName):\n\(server.transcript)")

        // And the server still serves the next client.
        expectSuccessfulExchange(try await runClient(port: server.port, files: files, ["--message", "still there?"]),
                                 message: "still there?")
        #expect(try await server.waitForLine("Received: still there?"), "\(server.transcript)")
    }

    // MARK: 10. --stream

    @Test("--stream echoes 1 MiB of standard input back to standard output exactly")
    func streamEchoesStandardInput() async throws {
        let files = try TestFiles()
        let server = try await ServerProcess.start(files.serverArguments() + ["--stream"], directory: files.url)
        defer { server.kill() }

        let input = pseudoRandomBytes(count: 1 << 20, seed: 42)
        let result = try await runClient(port: server.port, files: files, ["--stream"], input: input, timeout: .seconds(60))
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout.count == input.count, "received \(result.stdout.count) of \(input.count) bytes")
        #expect(result.stdout == input, "the echoed bytes differ from the input")
        #expect(!result.errorOutput.contains("Error"), "\(result)")
    }

    @Test("A ClientHello twice tls-server's first receive buffer is read whole; data then flows both ways")
    func largeClientHelloIsReadWhole() async throws {
        // tls-server starts each connection with a 512-byte receive buffer (an idle connection keeps it): a hello of
        // about 1 KiB takes more than one read, and the protocol the server picks is the last one offered.
        let files = try TestFiles()
        let offered = (0..<8).map { index in String(repeating: Character(UnicodeScalar(UInt8(97 + index))), count: 31) }
        let server = try await ServerProcess.start(
            files.serverArguments() + ["--stream", "--alpn", offered[7]], directory: files.url)
        defer { server.kill() }
        let client = [
            "--alpn", offered.joined(separator: ","),
            "--priority", "NORMAL:-VERS-ALL:+VERS-TLS1.3:-GROUP-ALL:+GROUP-FFDHE4096:+GROUP-X25519",
        ]

        let details = try await runClient(port: server.port, files: files, client + ["--verbose"])
        #expect(details.status == 0, "\(details)")
        #expect(details.errorLines.contains("ALPN: \(offered[7])"), "\(details)")

        let input = pseudoRandomBytes(count: 256 << 10, seed: 7)
        let result = try await runClient(
            port: server.port, files: files, client + ["--stream"], input: input, timeout: .seconds(60))
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout == input, "received \(result.stdout.count) of \(input.count) bytes, or different ones")
    }

    // MARK: 11. Mutual TLS

    @Test("--verify-client required: a client certificate from the CA gets in, no certificate does not")
    func mutualTLSRequired() async throws {
        let files = try TestFiles()
        let server = try await ServerProcess.start(
            files.serverArguments() + ["--verify-client", "required", "--cafile", files.path("ca.crt")],
            directory: files.url)
        defer { server.kill() }

        let withCertificate = try await runClient(
            port: server.port, files: files, ["--cert", files.path("client.crt"), "--key", files.path("client.key")])
        expectSuccessfulExchange(withCertificate)
        #expect(try await server.waitForLine("Received: Hello from client!"), "\(server.transcript)")

        let without = try await runClient(port: server.port, files: files, ["--message", "no certificate"])
        #expect(without.status == 1, "\(without)")
        #expect(without.errorLines.count == 1 && without.errorLines[0].hasPrefix("Error: "), "\(without)")
        #expect(!without.output.contains("Response:"), "\(without)")
        let failure = try await server.waitForLine { $0.hasPrefix("Connection from ") && $0.contains(" failed: ") }
        #expect(failure != nil, "the server did not log the refused client:\n\(server.transcript)")
        #expect(!server.output.contains("Received: no certificate"), "\(server.transcript)")
    }

    @Test("--verify-client optional: no certificate gets in, a certificate from another CA does not")
    func mutualTLSOptional() async throws {
        let files = try TestFiles()
        let server = try await ServerProcess.start(
            files.serverArguments() + ["--verify-client", "optional", "--cafile", files.path("ca.crt")],
            directory: files.url)
        defer { server.kill() }

        expectSuccessfulExchange(try await runClient(port: server.port, files: files))

        let stranger = try await runClient(
            port: server.port, files: files,
            [
                "--message", "from a stranger", "--cert", files.path("other-client.crt"), "--key",
                files.path("other-client.key"),
            ])
        #expect(stranger.status == 1, "\(stranger)")
        #expect(stranger.errorLines.count == 1 && stranger.errorLines[0].hasPrefix("Error: "), "\(stranger)")
        #expect(!stranger.output.contains("Response:"), "\(stranger)")
        let failure = try await server.waitForLine { $0.hasPrefix("Connection from ") && $0.contains(" failed: ") }
        #expect(failure != nil, "the server did not log the refused client:\n\(server.transcript)")
        #expect(!server.output.contains("Received: from a stranger"), "\(server.transcript)")
    }

    /// When the server refuses the client's certificate (or its lack of one), the client must say so. With TLS 1.3
    /// the client's handshake completes before the server has checked its certificate, so the refusal (a fatal
    /// alert) arrives while the client sends its message; whichever way that race goes, the one `Error:` line must
    /// carry the reason, not a generic "cannot connect ... the connection was closed". Each case runs ten times,
    /// since the wrong wording depends on timing.
    @Test(
        "A client the server refuses for its certificate is told why, every time",
        arguments: [
            ("required", ["--message", "no certificate"]),
            ("optional", ["--message", "from a stranger", "--cert", "other-client.crt", "--key", "other-client.key"]),
        ])
    func refusedClientIsToldWhy(policy: String, clientOptions: [String]) async throws {
        let files = try TestFiles()
        let server = try await ServerProcess.start(
            files.serverArguments() + ["--verify-client", policy, "--cafile", files.path("ca.crt")],
            directory: files.url)
        defer { server.kill() }
        let options = clientOptions.map { $0.hasSuffix(".crt") || $0.hasSuffix(".key") ? files.path($0) : $0 }

        for _ in 0..<10 {
            let result = try await runClient(port: server.port, files: files, options)
            expectClientFailure(result, mentioning: [])
            let line = result.errorLines.first ?? ""
            #expect(line.lowercased().contains("certificate"), "the reason is missing:\n\(result)")
            #expect(!line.contains("cannot connect"), "the client did connect; the server refused it:\n\(result)")
        }
    }

    // MARK: 12. Signals

    @Test("SIGTERM and SIGINT: 'shutting down', exit status 0", arguments: [SIGTERM, SIGINT])
    func signalShutsDownCleanly(signal: Int32) async throws {
        let files = try TestFiles()
        let server = try await ServerProcess.start(files.serverArguments(), directory: files.url)
        defer { server.kill() }

        server.send(signal)
        #expect(try await server.child.waitForExit(timeout: .seconds(10)), "still running:\n\(server.transcript)")
        #expect(server.child.exitStatus == 0, "\(server.transcript)")
        #expect(server.lines.contains("tls-server: shutting down"), "\(server.transcript)")
    }

    @Test("SIGTERM with a silent client connected: the server still exits promptly, status 0")
    func signalWithOpenConnection() async throws {
        let files = try TestFiles()
        // Timeouts far longer than the wait below: the server must not wait for them to expire.
        let server = try await ServerProcess.start(
            files.serverArguments() + ["--handshake-timeout", "60", "--idle-timeout", "60"], directory: files.url)
        defer { server.kill() }
        let silent = try RawTCPConnection(port: server.port)
        defer { silent.close() }
        #expect(try await server.waitForLine("Connection from \(silent.peerName)"), "\(server.transcript)")

        server.send(SIGTERM)
        #expect(
            try await server.child.waitForExit(timeout: .seconds(20)),
            "still running 20 s after SIGTERM (its connection would stay open for 60 s):\n\(server.transcript)")
        #expect(server.child.exitStatus == 0, "\(server.transcript)")
        #expect(server.lines.contains("tls-server: shutting down"), "\(server.transcript)")
        #expect(try await silent.waitForPeerClose(timeout: .seconds(10)), "the open connection was not closed")
    }

    // MARK: 13. Connection limit

    @Test("--max-connections 1: a second connection is refused with a log line; the slot frees when the first goes")
    func connectionLimit() async throws {
        let files = try TestFiles()
        let server = try await ServerProcess.start(
            // The admitted connection never sends its hello: a far handshake deadline keeps it open however slowly
            // the test runs (a loaded machine once took longer than the default 10 s).
            files.serverArguments() + ["--max-connections", "1", "--handshake-timeout", "60"], directory: files.url)
        defer { server.kill() }

        let first = try RawTCPConnection(port: server.port)
        defer { first.close() }
        #expect(try await server.waitForLine("Connection from \(first.peerName)"), "\(server.transcript)")

        let second = try RawTCPConnection(port: server.port)
        defer { second.close() }
        #expect(
            try await server.waitForLine(
                "Connection from \(second.peerName) refused: limit of 1 open connections reached"),
            "\(server.transcript)")
        #expect(try await second.waitForPeerClose(timeout: .seconds(20)), "the refused connection was left open")
        #expect(!first.peerHasClosed(), "the admitted connection was closed")

        // Once the first connection goes (the server reports it), its slot is free: a client is served again.
        first.close()
        #expect(
            try await server.waitForLine { $0.hasPrefix("Connection from \(first.peerName) failed: ") } != nil,
            "\(server.transcript)")
        expectSuccessfulExchange(try await runClient(port: server.port, files: files))
    }
}

/// User plus system CPU time of a process so far, in clock ticks (`/proc/PID/stat` fields 14 and 15).
func cpuTicks(of pid: Int32) throws -> Int {
    let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    guard let close = stat.lastIndex(of: ")") else { throw HarnessError("unreadable /proc/\(pid)/stat") }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 13, let user = Int(fields[11]), let system = Int(fields[12]) else {
        throw HarnessError("unreadable /proc/\(pid)/stat")
    }
    return user + system
}

/// The resident set of a process, in KiB (`VmRSS` in `/proc/PID/status`).
func residentKiB(of pid: Int32) throws -> Int {
    let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
    for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        if let value = line.split(separator: " ").compactMap({ Int($0) }).first { return value }
    }
    throw HarnessError("no VmRSS in /proc/\(pid)/status")
}

/// Completes a TLS handshake over `connection` with the library's sans-I/O session, as a client that trusts
/// `caFile`, and returns the session.
func handshake(over connection: RawTCPConnection, trusting caFile: String) async throws -> TLSSession {
    let context = try TLSContext(configuration: .client(trustRoots: .file(caFile)))
    let session = try context.makeSession(serverName: "localhost")
    let clock = ContinuousClock()
    // 30 s: a handshake takes milliseconds, but CI once saw this take longer than 5 s on a loaded machine.
    let deadline = clock.now + .seconds(30)
    while clock.now < deadline {
        let complete = try session.handshake() == .complete
        if session.hasPendingOutput { try connection.send(session.takePendingOutput()) }
        if complete { return session }
        guard let bytes = connection.receiveAvailable() else { break }
        if bytes.isEmpty { try await Task.sleep(for: .milliseconds(5)) } else { session.feed(bytes) }
    }
    throw HarnessError("the handshake did not complete")
}

/// What the idle client of `handshakeAndIdleDeadlines` saw.
struct IdleExchange: Sendable {
    var complete: Bool
    var outcome = TLSSession.ReadResult.needsInput
    var plaintext: [UInt8] = []
    var idleWait: Duration = .zero
}
