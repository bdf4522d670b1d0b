// Issue #10's library settings that the commands have no flag for, checked against OpenSSL and Python on a real
// socket: the application's own check of a client certificate (the peer must see the alert), keying material
// exported on the server (the same bytes as `openssl s_client -keymatexport`), and the CA names in the
// certificate request (what `openssl s_client` lists as acceptable).

import Foundation
import GnuTLS
import NIOGnuTLS
import NIOPosix
import Synchronization
import Testing

/// What a peer program printed (standard output, then standard error) and how it ended.
struct PeerResult: CustomStringConvertible {
    let status: Int32
    let output: String
    var description: String { "exit \(status):\n\(output)" }
}

/// Runs `tool` (found in /usr/bin) with `input` on its standard input, killed after `timeout`.
///
/// - Throws: if the tool is not installed, naming the Debian package CI installs it from.
func runPeer(
    _ tool: String, package: String, _ arguments: [String], input: Data = Data(), timeout: Duration = .seconds(20)
) async throws -> PeerResult {
    let path = "/usr/bin/" + tool
    guard FileManager.default.isExecutableFile(atPath: path) else {
        throw PeerFailure("\(tool) is not installed: this test needs the Debian package '\(package)'")
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    let output = Pipe()
    let inputPipe = Pipe()
    process.standardOutput = output
    process.standardError = output
    process.standardInput = inputPipe
    let ended = AsyncStream.makeStream(of: Int32.self)
    process.terminationHandler = { ended.continuation.yield($0.terminationStatus) }
    try process.run()
    inputPipe.fileHandleForWriting.write(input)
    try inputPipe.fileHandleForWriting.close()
    let collected = Mutex(Data())
    let reader = Thread {
        let data = output.fileHandleForReading.readDataToEndOfFile()
        collected.withLock { $0 = data }
    }
    reader.start()
    let status = try await withThrowingTaskGroup(of: Int32?.self) { group in
        group.addTask {
            var iterator = ended.stream.makeAsyncIterator()
            return await iterator.next()
        }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        let first = try await group.next() ?? nil
        group.cancelAll()
        return first
    }
    guard let status else {
        process.terminate()
        throw PeerFailure("\(tool) \(arguments.joined(separator: " ")) did not end within \(timeout)")
    }
    // The pipe closes when the process is gone; the reader then has everything.
    for _ in 0..<200 where collected.withLock({ $0.isEmpty }) && reader.isExecuting {
        try await Task.sleep(for: .milliseconds(10))
    }
    return PeerResult(status: status, output: String(decoding: collected.withLock { $0 }, as: UTF8.self))
}

struct PeerFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

@Suite("Library settings against openssl and Python: the application's check, exporters, CA names", .timeLimit(.minutes(5)))
struct PeerInteropTests {
    let pki = HandlerPKI.shared

    /// The CA, and client certificates for alice.test and mallory.test, in a temporary directory.
    final class Files: Sendable {
        let directory: String
        init(_ pki: HandlerPKI) throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("peer-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try Certificate.writePEM([pki.ca.certificate], toFile: path("ca.crt"))
            for name in ["alice", "mallory"] {
                let issued = try pki.ca.issue(commonName: name, dnsNames: ["\(name).test"], usage: .client)
                try Certificate.writePEM(issued.chain, toFile: path("\(name).crt"))
                try issued.privateKey.write(toFile: path("\(name).key"))
            }
        }
        func path(_ name: String) -> String { directory + "/" + name }
        deinit { try? FileManager.default.removeItem(atPath: directory) }
    }

    /// Runs a listener on `context` whose connections go to `handler`, and `body` with its port; failed
    /// connections are reported to `failures`.
    func withListener(
        _ context: TLSContext, failures: AsyncStream<TLSError>.Continuation? = nil,
        handler: @escaping @Sendable (TLSConnection) async throws -> Void,
        _ body: @Sendable (Int) async throws -> Void
    ) async throws {
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await TLSListener.listen(
                    host: "127.0.0.1", port: 0, context: context, handshakeTimeout: .seconds(60),
                    onListening: { address in portContinuation.yield(address?.port ?? 0) },
                    onFailure: { error, _ in if let error = error as? TLSError { failures?.yield(error) } },
                    handler)
            }
            var iterator = ports.makeAsyncIterator()
            let port = try #require(await iterator.next())
            try await body(port)
            group.cancelAll()
        }
    }

    /// Echoes one chunk, then closes.
    static let echoOnce: @Sendable (TLSConnection) async throws -> Void = { connection in
        if let chunk = try await connection.read() { try await connection.write(chunk) }
    }

    @Test("The application's check refuses mallory.test's client certificate: openssl s_client and Python see a bad_certificate alert; alice.test gets her echo")
    func applicationCheckSeenByOpenSSLAndPython() async throws {
        let files = try Files(pki)
        var configuration = TLSConfiguration.server(
            identity: .certificates(pki.server.chain, privateKey: pki.server.privateKey),
            clientAuthentication: .requireAndVerify, trustRoots: .certificates([pki.ca.certificate]))
        configuration.peerCheck = { chain in
            let names = chain.first?.alternativeNames ?? []
            return names.contains(.dns("alice.test")) ? .accept : .reject(reason: "not on the allow list")
        }
        let failures = AsyncStream.makeStream(of: TLSError.self)
        try await withListener(try TLSContext(configuration: configuration), failures: failures.continuation, handler: Self.echoOnce) { port in
            func openssl(_ name: String) async throws -> PeerResult {
                try await runPeer(
                    "openssl", package: "openssl",
                    ["s_client", "-connect", "127.0.0.1:\(port)", "-servername", "localhost", "-CAfile", files.path("ca.crt"),
                     "-cert", files.path("\(name).crt"), "-key", files.path("\(name).key"), "-ign_eof", "-quiet"],
                    input: Data("from \(name)\n".utf8))
            }
            let refused = try await openssl("mallory")
            #expect(refused.output.contains("alert bad certificate") && refused.output.contains("SSL alert number 42"), "\(refused)")
            #expect(!refused.output.contains("from mallory"), "\(refused)")
            var reported = failures.stream.makeAsyncIterator()
            let failure = await reported.next()
            #expect(failure?.kind == .rejectedByApplication, "\(String(describing: failure))")
            #expect(failure?.reason == "handshake failed: the application refused the client's certificate: not on the allow list")

            let admitted = try await openssl("alice")
            #expect(admitted.output.contains("from alice"), "\(admitted)")

            let python = try await runPeer(
                "python3", package: "python3",
                ["-c", """
                import socket, ssl, sys
                context = ssl.create_default_context(cafile=sys.argv[2])
                context.load_cert_chain(sys.argv[3], sys.argv[4])
                with context.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10),
                                         server_hostname="localhost") as tls:
                    tls.sendall(b"from python\\n")
                    try:
                        print("received", tls.recv(100))
                    except ssl.SSLError as error:
                        print("refused", error.reason)
                """, "\(port)", files.path("ca.crt"), files.path("mallory.crt"), files.path("mallory.key")])
            #expect(python.output == "refused SSLV3_ALERT_BAD_CERTIFICATE\n", "\(python)")
        }
    }

    @Test("CA names in the certificate request: off, openssl s_client is told none; on, it lists the trusted CA", arguments: ["-tls1_3", "-tls1_2"])
    func certificateAuthorityNamesSeenByOpenSSL(version: String) async throws {
        let files = try Files(pki)
        for sends in [false, true] {
            var configuration = TLSConfiguration.server(
                identity: .certificates(pki.server.chain, privateKey: pki.server.privateKey),
                clientAuthentication: .verifyIfGiven, trustRoots: .certificates([pki.ca.certificate]))
            configuration.sendsCertificateAuthorityNames = sends
            try await withListener(try TLSContext(configuration: configuration), handler: Self.echoOnce) { port in
                let openssl = try await runPeer(
                    "openssl", package: "openssl",
                    ["s_client", "-connect", "127.0.0.1:\(port)", "-servername", "localhost", "-CAfile", files.path("ca.crt"),
                     version, "-ign_eof"],
                    input: Data("hello\n".utf8))
                #expect(openssl.output.contains("hello"), "\(openssl)")
                if sends {
                    #expect(openssl.output.contains("Acceptable client certificate CA names\nCN = Handler Test CA\n"), "\(openssl)")
                } else {
                    #expect(openssl.output.contains("No client certificate CA names sent"), "\(openssl)")
                }
            }
        }
    }
}
