// tls-server behind a load balancer: Debian's HAProxy, started by the test in TCP mode with a generated
// configuration, in front of two tls-server processes sharing one port (--reuse-port), each reading the PROXY
// header (--proxy-protocol). Also the PROXY header's failures, one line each, the server serving on.
//
// The TLS client here runs in the test process (GnuTLS's TLSSession over a loopback socket) so that the test
// knows each connection's source port, which the servers must log as the client's address.

import Foundation
import GnuTLS
import Testing

#if canImport(Glibc)
import Glibc
#endif

// MARK: - HAProxy

/// A haproxy process in the foreground (`-db`), TCP mode, one frontend on 127.0.0.1 and one backend server.
final class HAProxyProcess: @unchecked Sendable {
    let child: ChildProcess
    let port: Int
    let directory: TemporaryDirectory

    /// Where Debian installs haproxy, or the first one on PATH.
    static func binary() -> String? {
        var candidates = ["/usr/sbin/haproxy"]
        for folder in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            candidates.append("\(folder)/haproxy")
        }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Starts haproxy forwarding 127.0.0.1:(a free port) to 127.0.0.1:`backendPort` with `serverOptions` on
    /// its server line (`send-proxy-v2`, `send-proxy`), and waits until it accepts connections.
    convenience init(backendPort: Int, serverOptions: String) async throws {
        try await self.init(backendPorts: [backendPort], serverOptions: serverOptions)
    }

    /// The same with one server line per port, taken in turn (`balance roundrobin`).
    init(backendPorts: [Int], serverOptions: String) async throws {
        guard let binary = Self.binary() else {
            throw HarnessError(
                "haproxy is not installed: these tests need Debian's haproxy (apt-get install haproxy; "
                    + "bash .ci/run installs it)")
        }
        directory = try TemporaryDirectory("haproxy-test")
        port = try freeLoopbackPort()
        let configuration = """
            global
                maxconn 2000
            defaults
                mode tcp
                timeout connect 5s
                timeout client 30s
                timeout server 30s
            frontend tls_in
                bind 127.0.0.1:\(port)
                default_backend tls_servers
            backend tls_servers
                balance roundrobin

            """ + backendPorts.enumerated().map { index, port in
                "    server s\(index) 127.0.0.1:\(port) \(serverOptions)\n"
            }.joined()
        let path = directory.path("haproxy.cfg")
        try configuration.write(toFile: path, atomically: true, encoding: .utf8)
        child = try ChildProcess(binary, ["-db", "-f", path])
        let port = self.port
        let child = self.child
        // Listening, seen in /proc/net/tcp: a probe connection would reach the servers and be logged.
        // 30 s: haproxy starts in milliseconds, but CI once saw it take longer than 10 s on a loaded machine.
        let ready = try await eventually(within: .seconds(30)) { !child.isRunning || isListening(port: port) }
        guard ready, child.isRunning else {
            child.kill()
            throw HarnessError("haproxy did not start:\n\(child.transcript)")
        }
    }

    func kill() { child.kill() }
}

/// Whether a socket listens on 127.0.0.1:`port` (or any address) according to /proc/net/tcp.
func isListening(port: Int) -> Bool {
    guard let table = try? String(contentsOfFile: "/proc/net/tcp", encoding: .utf8) else { return false }
    let hexPort = String(format: "%04X", port)
    return table.split(separator: "\n").dropFirst().contains { line in
        let fields = line.split(separator: " ")
        return fields.count > 3 && fields[3] == "0A"
            && (fields[1] == "0100007F:\(hexPort)" || fields[1] == "00000000:\(hexPort)")
    }
}

/// A port of 127.0.0.1 that was free a moment ago (bound to port 0, read, closed).
func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw HarnessError("socket: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = in_addr_t(0x7F00_0001).bigEndian
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
            bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
        }
    }
    guard bound else { throw HarnessError("bind: \(String(cString: strerror(errno)))") }
    return Int(UInt16(bigEndian: address.sin_port))
}

// MARK: - A TLS client in the test process

/// One exchange of the echo protocol over TLS on a loopback socket: `preamble` (a PROXY header, when the test
/// plays the balancer) in the clear, then the handshake, the message, and the reply until the server closes.
/// Returns the socket's source port and the reply. Every wait is bounded by `timeout`.
func tlsExchange(
    port: Int, context: TLSContext, message: String = "Hello from client!", preamble: [UInt8] = [],
    resumptionData: [UInt8]? = nil, timeout: Duration = .seconds(30)
) async throws -> (localPort: Int, reply: String, session: TLSSession) {
    let connection = try RawTCPConnection(port: port)
    defer { connection.close() }
    let session = try context.makeSession(resumptionData: resumptionData)
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    if !preamble.isEmpty { try connection.send(preamble) }

    /// Sends what the session wants sent, then waits for bytes and feeds them; false once the server closed.
    func exchangeOnce() async throws -> Bool {
        let output = session.takePendingOutput()
        if !output.isEmpty { try connection.send(output) }
        while clock.now < deadline {
            guard let received = connection.receiveAvailable() else {
                session.feedEndOfInput()
                return false
            }
            if !received.isEmpty {
                session.feed(received)
                return true
            }
            try await Task.sleep(for: .milliseconds(2))
        }
        throw HarnessError("no answer from 127.0.0.1:\(port) within \(timeout)")
    }

    while try session.handshake() != .complete {
        guard try await exchangeOnce() else { _ = try session.handshake(); throw HarnessError("closed during the handshake") }
    }
    try session.write(Array(message.utf8))
    var reply: [UInt8] = []
    reading: while true {
        var chunk = [UInt8](repeating: 0, count: 16384)
        let result = try chunk.withUnsafeMutableBytes { (raw) throws(TLSError) in try session.read(into: raw) }
        switch result {
        case .bytes(let count): reply += chunk[..<count]
        case .closed: break reading
        case .needsInput:
            guard try await exchangeOnce() else {
                _ = try chunk.withUnsafeMutableBytes { (raw) throws(TLSError) in try session.read(into: raw) }
                break reading
            }
        }
    }
    try? session.close()
    let output = session.takePendingOutput()
    if !output.isEmpty { _ = output.withUnsafeBytes { try? connection.sendAvailable($0) } }
    return (connection.localPort, String(decoding: reply, as: UTF8.self), session)
}

/// A PROXY v1 line naming 127.0.0.1:`sourcePort` as the client.
func proxyV1(sourcePort: Int) -> [UInt8] {
    Array("PROXY TCP4 127.0.0.1 127.0.0.1 \(sourcePort) 443\r\n".utf8)
}

/// A PROXY v2 header naming 127.0.0.1:`sourcePort` as the client.
func proxyV2(sourcePort: Int) -> [UInt8] {
    [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x11, 0x00, 0x0C,
     127, 0, 0, 1, 127, 0, 0, 1, UInt8(sourcePort >> 8), UInt8(sourcePort & 0xFF), 0x01, 0xBB]
}

// MARK: - Tests

@Suite(.serialized) struct LoadBalancerTests {
    /// `tls-server` on 127.0.0.1 with the test certificates, `extra` options and `--port PORT`.
    func serverArguments(_ files: TestFiles, port: Int, _ extra: [String]) -> [String] {
        ["--host", "127.0.0.1", "--port", "\(port)", "--cert", files.path("server.crt"), "--key", files.path("server.key")]
            + extra
    }

    func clientContext(_ files: TestFiles) throws -> TLSContext {
        try TLSContext(configuration: .client(serverName: "localhost", trustRoots: .file(files.path("ca.crt"))))
    }

    @Test(
        "HAProxy (send-proxy-v2, then send-proxy) before two tls-server --reuse-port --proxy-protocol: 200 connections succeed, both servers serve, each logs the client's own address and port",
        arguments: ["send-proxy-v2", "send-proxy"])
    func haproxyInFrontOfTwoInstances(serverOptions: String) async throws {
        let files = try TestFiles()
        let options = ["--reuse-port", "--proxy-protocol"]
        let first = try await ServerProcess.start(serverArguments(files, port: 0, options), directory: files.url)
        defer { first.kill() }
        let second = try await ServerProcess.start(
            serverArguments(files, port: first.port, options), directory: files.url)
        defer { second.kill() }
        #expect(second.port == first.port)
        let haproxy = try await HAProxyProcess(backendPort: first.port, serverOptions: serverOptions)
        defer { haproxy.kill() }

        let context = try clientContext(files)
        var ports: [Int] = []
        for index in 0..<200 {
            let message = "message \(index)"
            let (localPort, reply, _) = try await tlsExchange(port: haproxy.port, context: context, message: message)
            #expect(reply == message, "connection \(index)")
            ports.append(localPort)
        }
        // Each server logs its connections as the client's address (ours), not haproxy's.
        let expected = Set(ports.map { "Connection from 127.0.0.1:\($0)" })
        let allLogged = try await eventually(within: .seconds(30)) {
            Set(first.lines + second.lines).isSuperset(of: expected)
        }
        // One "Connection from ADDR" line per connection (the handshake's line, "Connection from ADDR: TLS ...",
        // follows it).
        let logged = (first.lines + second.lines).filter { $0.hasPrefix("Connection from ") && !$0.contains(": ") }
        #expect(allLogged, "missing: \(expected.subtracting(first.lines + second.lines).sorted().prefix(5))")
        #expect(logged.count == 200, "\(logged.filter { !expected.contains($0) }.prefix(5))")
        #expect(!first.lines.contains { $0.contains("failed") }, "\(first.lines.filter { $0.contains("failed") })")
        #expect(!second.lines.contains { $0.contains("failed") }, "\(second.lines.filter { $0.contains("failed") })")
        // The kernel spreads haproxy's connections over both listening processes.
        let firstCount = first.lines.filter { $0.hasPrefix("Connection from ") }.count
        let secondCount = second.lines.filter { $0.hasPrefix("Connection from ") }.count
        #expect(firstCount > 0 && secondCount > 0, "first \(firstCount), second \(secondCount)")
    }

    @Test("Without --reuse-port a second server on the same port fails to start: address in use")
    func withoutReusePortTheSecondFails() async throws {
        let files = try TestFiles()
        let first = try await ServerProcess.start(serverArguments(files, port: 0, ["--reuse-port"]), directory: files.url)
        defer { first.kill() }
        let second = try await runTool("tls-server", serverArguments(files, port: first.port, []), directory: files.url)
        expectStartupFailure(second, mentioning: ["cannot listen on 127.0.0.1:\(first.port)", "address already in use"])
    }

    @Test("PROXY failures: a peer outside --proxy-from, a malformed header, a v2 header cut after 10 bytes (closed, and held), no header at all: one line each, and the server keeps serving")
    func proxyHeaderFailures() async throws {
        let files = try TestFiles()
        let context = try clientContext(files)

        // Only 10.0.0.0/8 may send a header: this test's loopback connection is refused, header or not.
        let strict = try await ServerProcess.start(
            serverArguments(files, port: 0, ["--proxy-protocol", "--proxy-from", "10.0.0.0/8"]), directory: files.url)
        defer { strict.kill() }
        let outsider = try RawTCPConnection(port: strict.port)
        try outsider.send(proxyV1(sourcePort: 1234))
        #expect(try await outsider.waitForPeerClose(timeout: .seconds(10)))
        #expect(
            try await strict.waitForLine(
                "Connection from \(outsider.peerName) failed: refused: 127.0.0.1 is not allowed to send a PROXY protocol header"),
            "\(strict.transcript)")
        #expect(!strict.lines.contains("Connection from 127.0.0.1:1234"))

        let server = try await ServerProcess.start(
            serverArguments(files, port: 0, ["--proxy-protocol", "--handshake-timeout", "2"]), directory: files.url)
        defer { server.kill() }

        let malformed = try RawTCPConnection(port: server.port)
        try malformed.send(Array("PROXY TCP4 127.0.0.1 10.0.0.1 99999 443\r\n".utf8))
        #expect(try await malformed.waitForPeerClose(timeout: .seconds(10)))
        #expect(
            try await server.waitForLine(
                "Connection from \(malformed.peerName) failed: PROXY v1 source port '99999' is not a number from 0 to 65535"),
            "\(server.transcript)")

        let cut = try RawTCPConnection(port: server.port)
        try cut.send(Array(proxyV2(sourcePort: 1234)[..<10]))
        try await Task.sleep(for: .milliseconds(100))
        cut.close()
        #expect(
            try await server.waitForLine(
                "Connection from \(cut.peerName) failed: the connection ended after 10 bytes of a PROXY protocol header"),
            "\(server.transcript)")

        let held = try RawTCPConnection(port: server.port)
        try held.send(Array(proxyV2(sourcePort: 1234)[..<10]))
        #expect(try await held.waitForPeerClose(timeout: .seconds(10)), "closed by the deadline")
        #expect(
            try await server.waitForLine(
                "Connection from \(held.peerName) failed: no complete PROXY protocol header within 2 s (10 bytes received)"),
            "\(server.transcript)")

        // A client that talks TLS at once, without a balancer in between.
        let direct = try await runClient(port: server.port, files: files, timeout: .seconds(20))
        #expect(direct.status == 1, "\(direct)")
        #expect(
            try await server.waitForLine { line in
                line.hasPrefix("Connection from 127.0.0.1:")
                    && line.hasSuffix(" failed: no PROXY protocol header: the connection starts with a TLS handshake")
            } != nil, "\(server.transcript)")

        // And the server still serves, with either version of the header, naming the client they carry.
        for (index, header) in [proxyV1(sourcePort: 4242), proxyV2(sourcePort: 4343)].enumerated() {
            let (_, reply, _) = try await tlsExchange(
                port: server.port, context: context, message: "still here \(index)", preamble: header)
            #expect(reply == "still here \(index)")
        }
        #expect(try await server.waitForLine("Connection from 127.0.0.1:4242"), "\(server.transcript)")
        #expect(try await server.waitForLine("Connection from 127.0.0.1:4343"), "\(server.transcript)")
        #expect(server.child.isRunning && strict.child.isRunning)
    }

    @Test(
        "A session saved through HAProxy on one instance resumes on the other when both have the same --ticket-key-file (TLS 1.3 and 1.2), and not without it",
        arguments: [("TLS 1.3", "NORMAL:-VERS-ALL:+VERS-TLS1.3"), ("TLS 1.2", "NORMAL:-VERS-ALL:+VERS-TLS1.2")])
    func resumptionAcrossInstances(version: String, priority: String) async throws {
        let files = try TestFiles()
        let keyFile = files.path("ticket.key")
        let made = try await runTool("tls-certs", ["ticket-key", "--out", keyFile])
        #expect(made.status == 0 && made.output == "wrote \(keyFile)\n", "\(made)")
        #expect(!made.output.contains(try String(contentsOfFile: keyFile, encoding: .utf8).dropLast()))

        for shared in [true, false] {
            let options = ["--proxy-protocol"] + (shared ? ["--ticket-key-file", keyFile] : [])
            let first = try await ServerProcess.start(serverArguments(files, port: 0, options), directory: files.url)
            defer { first.kill() }
            let second = try await ServerProcess.start(serverArguments(files, port: 0, options), directory: files.url)
            defer { second.kill() }
            // Round robin: the first connection goes to the first server, the second to the second.
            let haproxy = try await HAProxyProcess(backendPorts: [first.port, second.port], serverOptions: "send-proxy-v2")
            defer { haproxy.kill() }

            let session = files.path("session-\(shared)")
            let client = ["--host", "127.0.0.1", "--servername", "localhost", "--priority", priority, "--verbose"]
            let saving = try await runClient(port: haproxy.port, files: files, client + ["--sess-out", session])
            expectSuccessfulExchange(saving)
            #expect(saving.errorLines.contains("Protocol: \(version)"), "\(saving)")
            #expect(saving.errorLines.contains("Resumed: no"), "\(saving)")
            var info = stat()
            #expect(stat(session, &info) == 0 && info.st_mode & 0o777 == 0o600)

            let resuming = try await runClient(port: haproxy.port, files: files, client + ["--sess-in", session])
            expectSuccessfulExchange(resuming)
            #expect(resuming.errorLines.contains(shared ? "Resumed: yes" : "Resumed: no"), "shared key \(shared): \(resuming)")
            // Each instance served one of the two.
            #expect(try await first.waitForLine { $0.hasPrefix("Received: ") } != nil, "\(first.transcript)")
            #expect(try await second.waitForLine { $0.hasPrefix("Received: ") } != nil, "\(second.transcript)")
            #expect(first.lines.filter { $0.hasPrefix("Received: ") }.count == 1)
        }
    }

    @Test(
        "After SIGHUP with a new --ticket-key-file, a session saved before the change still resumes, and one saved after it too (TLS 1.3 and 1.2)",
        arguments: [("TLS 1.3", "NORMAL:-VERS-ALL:+VERS-TLS1.3"), ("TLS 1.2", "NORMAL:-VERS-ALL:+VERS-TLS1.2")])
    func ticketKeyReplacedOnReload(version: String, priority: String) async throws {
        let files = try TestFiles()
        let keyFile = files.path("ticket.key")
        #expect(try await runTool("tls-certs", ["ticket-key", "--out", keyFile]).status == 0)
        let server = try await ServerProcess.start(
            serverArguments(files, port: 0, ["--ticket-key-file", keyFile]), directory: files.url)
        defer { server.kill() }
        let client = ["--host", "127.0.0.1", "--servername", "localhost", "--priority", priority, "--verbose"]
        let before = files.path("before")
        let saving = try await runClient(port: server.port, files: files, client + ["--sess-out", before])
        expectSuccessfulExchange(saving)
        #expect(saving.errorLines.contains("Protocol: \(version)"), "\(saving)")

        let oldKey = try String(contentsOfFile: keyFile, encoding: .utf8)
        try FileManager.default.removeItem(atPath: keyFile)
        #expect(try await runTool("tls-certs", ["ticket-key", "--out", keyFile]).status == 0)
        #expect(try String(contentsOfFile: keyFile, encoding: .utf8) != oldKey)
        server.send(SIGHUP)
        #expect(try await server.waitForLine("tls-server: reloaded 1 certificate"), "\(server.transcript)")

        let resuming = try await runClient(port: server.port, files: files, client + ["--sess-in", before])
        expectSuccessfulExchange(resuming)
        #expect(resuming.errorLines.contains("Resumed: yes"), "a session from before the key change: \(resuming)")
        let after = files.path("after")
        expectSuccessfulExchange(try await runClient(port: server.port, files: files, client + ["--sess-out", after]))
        let resumingAfter = try await runClient(port: server.port, files: files, client + ["--sess-in", after])
        #expect(resumingAfter.errorLines.contains("Resumed: yes"), "a session from after the key change: \(resumingAfter)")
        // Neither key is ever printed.
        let newKey = try String(contentsOfFile: keyFile, encoding: .utf8).dropLast()
        #expect(!server.transcript.contains(oldKey.dropLast()) && !server.transcript.contains(newKey))
    }

    @Test("A ticket key file of the wrong size or format stops tls-server at start with the reason; the key is never printed")
    func badTicketKeyFile() async throws {
        let files = try TestFiles()
        let short = files.path("short.key")
        try "c2hvcnQ=\n".write(toFile: short, atomically: true, encoding: .utf8)
        let result = try await runTool(
            "tls-server", serverArguments(files, port: 0, ["--ticket-key-file", short]), directory: files.url)
        expectStartupFailure(
            result,
            mentioning: ["session ticket key file '\(short)' holds 5 bytes; a session ticket key is 64 bytes"])
        #expect(!result.errorOutput.contains("c2hvcnQ") && !result.errorOutput.contains("short\n"))

        let garbage = files.path("garbage.key")
        try "not a key at all\n".write(toFile: garbage, atomically: true, encoding: .utf8)
        let second = try await runTool(
            "tls-server", serverArguments(files, port: 0, ["--ticket-key-file", garbage]), directory: files.url)
        expectStartupFailure(second, mentioning: ["session ticket key file '\(garbage)' is not one line of base64"])

        let existing = try await runTool("tls-certs", ["ticket-key", "--out", garbage])
        #expect(existing.status == 1)
        #expect(existing.errorLines == ["Error: cannot write session ticket key file '\(garbage)': it already exists (remove it first to replace the key)"])
    }

    @Test("--proxy-from with a bad network, or without --proxy-protocol, is refused at start with the reason")
    func proxyFromValidation() async throws {
        let files = try TestFiles()
        let bad = try await runTool(
            "tls-server", serverArguments(files, port: 0, ["--proxy-protocol", "--proxy-from", "10.1.0.0/8,::1"]),
            directory: files.url)
        expectStartupFailure(
            bad, mentioning: ["--proxy-from: '10.1.0.0/8' has address bits set beyond its /8 prefix; did you mean 10.0.0.0/8?"])
        let alone = try await runTool(
            "tls-server", serverArguments(files, port: 0, ["--proxy-from", "10.0.0.0/8"]), directory: files.url)
        expectStartupFailure(alone, mentioning: ["--proxy-from needs --proxy-protocol"])
    }

    @Test(
        "TLS 1.2 session-ID resumption: openssl s_client -tls1_2 -no_ticket -sess_out, then -sess_in, is reused; with --session-cache 0 it is not",
        arguments: [true, false])
    func sessionIDResumptionWithOpenSSL(cache: Bool) async throws {
        let files = try TestFiles()
        let server = try await ServerProcess.start(
            serverArguments(files, port: 0, cache ? [] : ["--session-cache", "0"]), directory: files.url)
        defer { server.kill() }
        let session = files.path("openssl.session")
        func run(_ extra: [String]) async throws -> ToolResult {
            try await runTool(
                "/usr/bin/openssl",
                ["s_client", "-connect", "127.0.0.1:\(server.port)", "-tls1_2", "-no_ticket", "-CAfile", files.path("ca.crt"),
                 "-verify_return_error", "-servername", "localhost"] + extra,
                input: Data("resume me\n".utf8))
        }
        let first = try await run(["-sess_out", session])
        #expect(first.output.contains("New, TLSv1.2"), "\(first)")
        let second = try await run(["-sess_in", session])
        #expect(second.output.contains(cache ? "Reused, TLSv1.2" : "New, TLSv1.2"), "\(second)")
        // The resumed connection carries data (s_client leaves at the end of its input, before the echo).
        let both = try await eventually(within: .seconds(30)) {
            server.lines.filter { $0 == "Received: resume me" }.count == 2
        }
        #expect(both, "\(server.transcript)")
    }

    @Test("--session-cache outside 0 to 1000000 is refused at start")
    func sessionCacheValidation() async throws {
        let files = try TestFiles()
        let result = try await runTool(
            "tls-server", serverArguments(files, port: 0, ["--session-cache=-1"]), directory: files.url)
        expectStartupFailure(result, mentioning: ["--session-cache must be 0 to 1000000 sessions, not -1"])
    }

    @Test("tls-client --sess-in with a missing file or one that holds no session fails before connecting, naming the file")
    func badSessionFile() async throws {
        let files = try TestFiles()
        let server = try await ServerProcess.start(serverArguments(files, port: 0, []), directory: files.url)
        defer { server.kill() }
        let garbage = files.path("garbage.session")
        try "not a session".write(toFile: garbage, atomically: true, encoding: .utf8)
        let bad = try await runClient(port: server.port, files: files, ["--host", "127.0.0.1", "--sess-in", garbage])
        expectClientFailure(bad, mentioning: ["the session file '\(garbage)' holds no session GnuTLS can use"])
        let missing = files.path("missing.session")
        let absent = try await runClient(port: server.port, files: files, ["--host", "127.0.0.1", "--sess-in", missing])
        expectClientFailure(absent, mentioning: ["cannot read the session file '\(missing)': it does not exist"])
        #expect(!server.output.contains("Connection from"), "\(server.transcript)")
    }
}
