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
            any failure prints one 'Error: ...' line on standard error and exits 1. A usage error (an unknown, \
            missing, invalid or repeated option) exits 64.
            """,
        version: LibraryVersion.description)

    @Option(help: "Server to connect to ('[::1]' as well as '::1').") var host = "localhost"
    @Option(help: "TCP port.") var port = 4443
    @Option(help: ArgumentHelp("Server as HOST:PORT ('[::1]:4443'), as openssl s_client -connect; instead of --host/--port.", valueName: "host:port"))
    var connect: String?
    @Option(help: "What to send.") var message = "Hello from client!"
    @Option(help: "PEM or DER trust anchors (replace the system trust store).", completion: .file()) var cafile: String?
    @Option(
        help: "A directory of CA files (PEM or DER, each file loaded), like -CApath (replaces the system store).",
        completion: .directory)
    var capath: String?
    @Option(
        help: "Trust anchors added to the others (to the system store without --cafile/--capath; repeatable).",
        completion: .file())
    var addCafile: [String] = []
    @Option(
        help: "PEM or DER certificate revocation list; a revoked server certificate is refused (repeatable).",
        completion: .file())
    var crlfile: [String] = []
    @Option(help: "Most certificates the server's chain may hold, its leaf included (1 to 16; default 16).")
    var verifyDepth: Int?
    @Option(help: "PEM client certificate chain for mutual TLS.", completion: .file()) var cert: String?
    @Option(help: "PEM private key for --cert.", completion: .file()) var key: String?
    @Option(help: "Name sent as SNI and verified in the certificate (default: --host).") var servername: String?
    @Option(
        help: ArgumentHelp(priorityHelp, valueName: "intermediate|modern|STRING"),
        completion: .list(namedPolicies.map(\.name)))
    var priority: String?
    @Option(help: "Comma-separated ALPN protocols.") var alpn: String?
    @Flag(help: "INSECURE: skip certificate verification (anyone can impersonate the server).")
    var insecure = false
    @Flag(help: "Send standard input; write everything received to standard output until the server closes.")
    var stream = false
    @Flag(
        help: "Print the address, negotiated version, cipher suite, ALPN, SNI, the server's certificates (also when refused) and the verification result."
    )
    var verbose = false
    @Flag(help: "Print the server's certificate chain as PEM (standard output), as openssl s_client -showcerts.")
    var showcerts = false
    @Option(
        help: ArgumentHelp(
            "INSECURE: append the session secrets to FILE (NSS key log format, for Wireshark); warns.", valueName: "file"),
        completion: .file())
    var keylogfile: String?
    @Option(help: "Seconds to wait for the connection, handshake and response.") var timeout = 10
    @Option(
        help: "Pin the server's public key, as curl: sha256//BASE64[;sha256//BASE64...] (checked on top of verification).")
    var pinnedpubkey: String?
    @Flag(help: "Require a valid stapled OCSP response (a must-staple certificate always requires one).")
    var ocsp = false
    @Option(help: "Print keying material exported with this label (RFC 5705), as 'Keying material: HEX'.")
    var keymatexport: String?
    @Option(help: "Bytes of keying material to export with --keymatexport.") var keymatexportlen = 20

    @Option(
        help: "Save the session to this file after the exchange (mode 0600), to resume it with --sess-in.",
        completion: .file())
    var sessOut: String?
    @Option(
        help: "Offer the session saved in this file (--sess-out); --verbose says whether it was resumed.",
        completion: .file())
    var sessIn: String?

    /// --host without brackets, or the host of --connect.
    var serverHost: String {
        if let connect, case .success(let parsed) = splitHostAndPort(connect) { return parsed.host }
        return unbracketed(host)
    }

    /// --port, or the port of --connect.
    var serverPort: Int {
        if let connect, case .success(let parsed) = splitHostAndPort(connect) { return parsed.port }
        return port
    }

    func validate() throws {
        if let name = repeatedOption(in: self, arguments: Array(CommandLine.arguments.dropFirst())) {
            throw ValidationError("--\(name) was given more than once; it takes one value")
        }
        if let connect {
            let arguments = CommandLine.arguments
            if arguments.contains(where: { $0 == "--host" || $0.hasPrefix("--host=") || $0 == "--port" || $0.hasPrefix("--port=") }) {
                throw ValidationError("--connect names the host and port; leave out --host and --port")
            }
            if case .failure(let error) = splitHostAndPort(connect) { throw ValidationError("--connect \(error)") }
        }
        if connect == nil, let problem = hostSyntaxError(host) { throw ValidationError(problem) }
        if let verifyDepth, !(1...16).contains(verifyDepth) {
            throw ValidationError("--verify-depth must be 1 to 16, not \(verifyDepth)")
        }
        guard (1...65535).contains(port) else { throw ValidationError("--port must be 1 to 65535, not \(port)") }
        if (cert == nil) != (key == nil) { throw ValidationError("--cert and --key go together") }
        guard timeout >= 1 else { throw ValidationError("--timeout must be at least 1 s") }
        guard (1...65536).contains(keymatexportlen) else {
            throw ValidationError("--keymatexportlen must be 1 to 65536, not \(keymatexportlen)")
        }
        if let pinnedpubkey {
            do {
                _ = try PublicKeyPin.parseList(pinnedpubkey)
            } catch {
                throw ValidationError("--pinnedpubkey: \(error.reason)")
            }
        }
    }

    func run() async throws {
        let output = ConsoleOutput()
        signal(SIGPIPE, SIG_IGN)
        if insecure {
            output.error(
                "Warning: --insecure: the server's certificate is NOT verified; anyone on the path can impersonate it")
            let unused = [
                cafile.map { _ in "--cafile" }, capath.map { _ in "--capath" }, addCafile.isEmpty ? nil : "--add-cafile",
                crlfile.isEmpty ? nil : "--crlfile", verifyDepth.map { _ in "--verify-depth" },
            ].compactMap { $0 }
            if !unused.isEmpty {
                output.error(
                    "Warning: \(unused.joined(separator: ", ")) with --insecure: nothing is verified, so "
                        + "\(unused.count == 1 ? "it has" : "they have") no effect")
            }
        }
        do {
            let keyLog = try keylogfile.map { path throws(TLSError) in try KeyLogFile(path: path) }
            let context = try TLSContext(configuration: configuration(keyLog: keyLog))
            if let key { warnIfOthersCanReadKey(key, output: output) }
            for warning in policyWarnings(context) { output.error(warning) }
            if let keyLog { output.error(keyLog.warning) }
            if let warning = keyLogEnvironmentWarning(keylogfile: keylogfile) { output.error(warning) }
            try await withTimeout(stream ? nil : timeout) {
                try await exchange(context: context, output: output)
            }
        } catch {
            if verbose, let failure = (error as? TLSError)?.verification, !failure.chain.isEmpty {
                // The chain that was refused, to see why.
                output.error("Refused certificate chain from \(hostForDisplay(serverHost)):\(serverPort):")
                for (index, certificate) in failure.chain.enumerated() {
                    for line in certificateLines(certificate, index: index) { output.error(line) }
                }
            }
            if showcerts, let failure = (error as? TLSError)?.verification {
                for certificate in failure.chain { output.text(certificate.pemString) }
            }
            output.error("Error: \(describeFailure(error))")
            throw ExitCode.failure
        }
    }

    func configuration(keyLog: KeyLogFile? = nil) -> TLSConfiguration {
        let trust = trustRoots(cafile: cafile, capath: capath, addCAFiles: addCafile)
        var configuration = TLSConfiguration.client(
            serverName: servername ?? serverHost,
            trustRoots: trust.primary,
            verification: insecure ? .insecureNoVerification : .full,
            identity: cert.map { .files(certificateChain: $0, privateKey: key ?? "") },
            policy: protocolPolicy(priority),
            applicationProtocols: alpn.map { $0.split(separator: ",").map(String.init) } ?? [])
        // Validated in validate().
        configuration.pinnedPublicKeys = pinnedpubkey.flatMap { try? PublicKeyPin.parseList($0) } ?? []
        configuration.requiresOCSPStaple = ocsp
        configuration.additionalTrustRoots = trust.additional
        configuration.revocationLists = crlfile.map { .file($0) }
        configuration.maximumVerificationDepth = verifyDepth
        if let keyLog { configuration.keyLog = { keyLog.append($0) } }
        return configuration
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
            host: serverHost, port: serverPort, context: context, serverName: servername ?? serverHost,
            connectTimeout: .seconds(Int64(timeout)), handshakeTimeout: .seconds(Int64(timeout)),
            shutdownTimeout: .seconds(Int64(min(timeout, 3))), resumptionData: saved
        ) { connection in
            let info = connection.info
            if verbose { printDetails(info, address: connection.remoteAddress, output: output) }
            if let keymatexport {
                let material = try await connection.exportKeyingMaterial(label: keymatexport, count: keymatexportlen)
                output.line("Keying material: \(material.map { String(format: "%02X", $0) }.joined())")
            }
            if showcerts {
                for certificate in info.peerCertificates { output.text(certificate.pemString) }
            }
            if stream {
                try await streamStandardIO(connection, output: output)
                try await saveSession(connection, output: output)
                return
            }
            let suite = info.cipherSuite ?? "?"
            output.line("Connected to \(hostForDisplay(serverHost)):\(serverPort) (\(info.version?.description ?? "?"), \(suite))")
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

    func printDetails(_ info: TLSHandshakeInfo, address: SocketAddress?, output: ConsoleOutput) {
        let name = servername ?? serverHost
        let sni = isIPAddressLiteral(name)
            ? "not sent ('\(name)' is an IP address)"
            : "'\(name)', \(info.serverNameAcknowledged ? "acknowledged" : "not acknowledged") by the server"
        var lines = [
            "Connected to address: \(address.map(Self.format) ?? "unknown")",
            "Protocol: \(info.version?.description ?? "unknown")",
            "Cipher suite: \(info.cipherSuite ?? "unknown")",
            "Key exchange group: \(info.group ?? "unknown")",
            "ALPN: \(info.applicationProtocol ?? "none")",
            "SNI: \(sni)",
            "Resumed: \(info.isResumed ? "yes" : "no")",
        ]
        for (index, certificate) in info.peerCertificates.enumerated() {
            lines += certificateLines(certificate, index: index)
        }
        if let staple = info.stapledOCSPResponse {
            lines.append("OCSP staple: \(staple)")
        } else {
            lines.append("OCSP staple: none")
        }
        if let pinnedpubkey {
            let presented = info.peerCertificates.first.map { PublicKeyPin(certificate: $0).description } ?? "none"
            lines.append("Public-key pin: matched \(presented) (pins: \(pinnedpubkey))")
        }
        lines.append(
            insecure
                ? "Verification: NOT verified (--insecure)"
                : "Verification: chain trusted and certificate valid for '\(name)'")
        for line in lines { output.error(line) }
    }

    static func format(_ address: SocketAddress) -> String {
        guard let ip = address.ipAddress, let port = address.port else { return "unknown" }
        return "\(hostForDisplay(ip)):\(port)"
    }

    func describeFailure(_ error: any Error) -> String {
        let host = hostForDisplay(serverHost)
        let port = serverPort
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
