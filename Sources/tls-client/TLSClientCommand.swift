import ArgumentParser
import Foundation
import GnuTLS
import NIOCore
import NIOGnuTLS
import NIOPosix
import TLSCommandSupport

/// tls-client: sends a message over TLS and prints the server's response (the skeleton's protocol).
@main
struct TLSClientCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tls-client",
        abstract: "A TLS client on the system's GnuTLS: sends a message and prints the response.",
        discussion: """
            Verifies the server's certificate chain and host name by default. Prints 'Response: REPLY' and exits 0; \
            any failure prints one 'Error: ...' line on standard error and exits 1.
            """)

    @Option(help: "Server to connect to.") var host = "localhost"
    @Option(help: "TCP port.") var port = 4443
    @Option(help: "What to send.") var message = "Hello from client!"
    @Option(help: "PEM trust anchors (replaces the system trust store).") var cafile: String?
    @Option(help: "PEM client certificate chain for mutual TLS.") var cert: String?
    @Option(help: "PEM private key for --cert.") var key: String?
    @Option(help: "Name sent as SNI and verified in the certificate (default: --host).") var servername: String?
    @Option(help: "GnuTLS priority string (default: TLS 1.3 and 1.2, forward-secret AEAD suites only).")
    var priority: String?
    @Option(help: "Comma-separated ALPN protocols.") var alpn: String?
    @Flag(help: "INSECURE: skip certificate verification (anyone can impersonate the server).")
    var insecure = false
    @Flag(help: "Send standard input; write everything received to standard output until the server closes.")
    var stream = false
    @Flag(help: "Print the negotiated version, cipher suite, ALPN, the server's certificates and the verification result.")
    var verbose = false
    @Option(help: "Seconds to wait for the connection, handshake and response.") var timeout = 10
    @Option(help: "Save the session to this file after the exchange (mode 0600), to resume it with --sess-in.")
    var sessOut: String?
    @Option(help: "Offer the session saved in this file (--sess-out); --verbose says whether it was resumed.")
    var sessIn: String?

    func validate() throws {
        guard (1...65535).contains(port) else { throw ValidationError("--port must be 1 to 65535, not \(port)") }
        if (cert == nil) != (key == nil) { throw ValidationError("--cert and --key go together") }
        guard timeout >= 1 else { throw ValidationError("--timeout must be at least 1 s") }
    }

    func run() async throws {
        let output = ConsoleOutput()
        signal(SIGPIPE, SIG_IGN)
        if insecure {
            output.error(
                "Warning: --insecure: the server's certificate is NOT verified; anyone on the path can impersonate it")
        }
        do {
            let context = try TLSContext(configuration: configuration())
            if let key { warnIfOthersCanReadKey(key, output: output) }
            try await withTimeout(stream ? nil : timeout) {
                try await exchange(context: context, output: output)
            }
        } catch {
            output.error("Error: \(describeFailure(error))")
            throw ExitCode.failure
        }
    }

    func configuration() -> TLSConfiguration {
        .client(
            serverName: servername ?? host,
            trustRoots: cafile.map { .file($0) } ?? .system,
            verification: insecure ? .insecureNoVerification : .full,
            identity: cert.map { .files(certificateChain: $0, privateKey: key ?? "") },
            policy: priority.map { .custom($0) } ?? .intermediate,
            applicationProtocols: alpn.map { $0.split(separator: ",").map(String.init) } ?? [])
    }

    /// Connects, sends, and prints what comes back.
    func exchange(context: TLSContext, output: ConsoleOutput) async throws {
        let saved = try sessIn.map(SessionFile.read)
        if let saved, let sessIn {
            // Checked before connecting, so that the error names the file.
            do {
                _ = try context.makeSession(serverName: servername ?? host, resumptionData: saved)
            } catch {
                throw TLSError(
                    kind: .configuration,
                    reason: "the session file '\(sessIn)' holds no session GnuTLS can use (\(error.reason))")
            }
        }
        try await TLSConnection.connect(
            host: host, port: port, context: context, serverName: servername ?? host,
            connectTimeout: .seconds(Int64(timeout)), handshakeTimeout: .seconds(Int64(timeout)),
            shutdownTimeout: .seconds(Int64(min(timeout, 3))), resumptionData: saved
        ) { connection in
            let info = connection.info
            if verbose { printDetails(info, output: output) }
            if stream {
                try await streamStandardIO(connection, output: output)
                try await saveSession(connection, output: output)
                return
            }
            let suite = info.cipherSuite ?? "?"
            output.line("Connected to \(host.contains(":") ? "[\(host)]" : host):\(port) (\(info.version?.description ?? "?"), \(suite))")
            do {
                try await connection.write(Array(message.utf8))
            } catch {
                // The server may have ended the connection with an alert that says why (for example, that it
                // requires a client certificate): report that rather than the failed write.
                while try await connection.read() != nil {}
                throw error
            }
            var response: [UInt8] = []
            do {
                var closedOutput = false
                while let chunk = try await connection.read() {
                    guard response.count + chunk.readableBytes <= 16 * 1024 * 1024 else {
                        throw TLSError(kind: .other, reason: "the response is larger than 16 MiB")
                    }
                    response.append(contentsOf: chunk.readableBytesView)
                    if !closedOutput {
                        // The response has begun: say we are done (close_notify), and take the rest of it until the
                        // server closes. Servers that would otherwise wait for more (openssl s_server, gnutls-serv)
                        // close on our close_notify.
                        closedOutput = true
                        try await connection.closeOutput()
                    }
                }
            } catch let error as TLSError where error.kind == .truncated {
                // The skeleton server closes without close_notify: show what came, and say so.
                output.error("Warning: the server closed the connection without close_notify; the response may be incomplete")
            }
            output.line("Response: \(String(decoding: response, as: UTF8.self))")
            try await saveSession(connection, output: output)
        }
    }

    /// --sess-out: writes the session for a later --sess-in, or says why there is none.
    func saveSession(_ connection: TLSConnection, output: ConsoleOutput) async throws {
        guard let sessOut else { return }
        guard let data = try await connection.resumptionData() else {
            output.error("Warning: the server issued no session ticket; --sess-out '\(sessOut)' not written")
            return
        }
        try SessionFile.write(data, to: sessOut)
    }

    /// --stream: standard input to the server, the server's bytes to standard output, until the server closes.
    func streamStandardIO(_ connection: TLSConnection, output: ConsoleOutput) async throws {
        let writer = connection.writer
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await chunk in StandardInput.chunks() {
                    try await writer.write(chunk)
                }
                // End of input: close_notify, and keep reading what the server still sends.
                try await writer.closeOutput()
            }
            while let chunk = try await connection.read() {
                chunk.withUnsafeReadableBytes { output.raw($0) }
            }
            group.cancelAll()
        }
    }

    func printDetails(_ info: TLSHandshakeInfo, output: ConsoleOutput) {
        var lines = [
            "Protocol: \(info.version?.description ?? "unknown")",
            "Cipher suite: \(info.cipherSuite ?? "unknown")",
            "Key exchange group: \(info.group ?? "unknown")",
            "ALPN: \(info.applicationProtocol ?? "none")",
            "Resumed: \(info.isResumed ? "yes" : "no")",
        ]
        for (index, certificate) in info.peerCertificates.enumerated() {
            lines.append("Certificate \(index): subject \(certificate.subject)")
            lines.append("  issuer \(certificate.issuer)")
            lines.append("  valid \(Self.format(certificate.notValidBefore)) to \(Self.format(certificate.notValidAfter))")
            if !certificate.alternativeNames.isEmpty {
                lines.append("  names \(certificate.alternativeNames.map(\.description).joined(separator: ", "))")
            }
            lines.append("  public key SHA-256 \(certificate.publicKeySHA256Hex)")
        }
        let name = servername ?? host
        lines.append(
            insecure
                ? "Verification: NOT verified (--insecure)"
                : "Verification: chain trusted and certificate valid for '\(name)'")
        for line in lines { output.error(line) }
    }

    static func format(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        return formatter.string(from: date)
    }

    func describeFailure(_ error: any Error) -> String {
        if error is TimeoutError { return "timed out after \(timeout) s waiting for \(host):\(port)" }
        if let error = error as? TLSError, error.kind == .timeout {
            // The handshake's own limit is --timeout too: whichever fires first, the same words.
            return "timed out after \(timeout) s waiting for \(host):\(port) (\(error.reason))"
        }
        let reason = describe(error)
        if error is NIOConnectionError || error is IOError {
            return "cannot connect to \(host):\(port): \(reason)"
        }
        if error is ChannelError { return "the connection to \(host):\(port) ended: \(reason)" }
        return reason
    }
}
