import ArgumentParser
import FoundationEssentials
import Glibc
import GnuTLS
import Logging
import NIOCore
import NIOGnuTLS
import NIOPosix
import NIOConcurrencyHelpers
import Prometheus
import TLSCommandSupport

/// tls-server: accepts TLS connections, prints each client's message and sends it back (the skeleton's protocol).
@main
struct TLSServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tls-server",
        abstract: "A TLS echo server on the system's GnuTLS.",
        discussion: """
            Each connection: prints 'Connection from ADDR', then 'Connection from ADDR: VERSION, CIPHER SUITE' (and \
            ', client SUBJECT' with a client certificate) once the handshake is done, reads the client's message, \
            prints 'Received: MESSAGE', sends the same bytes back, sends close_notify and closes. With --stream it echoes everything until the \
            client closes. On first run, with the default --cert/--key and no files there, it creates a development \
            CA and server certificate under certs/ (testing only). SIGHUP rereads every certificate, key, --cafile \
            and OCSP response: new connections get them, connections in flight keep theirs; a reload that fails \
            keeps the previous ones and says why.

            Exit status: 0 after SIGINT or SIGTERM; 64 for a usage error (an unknown, missing, invalid or repeated \
            option); 1 when the server cannot start (a file, a priority string, the address).
            """,
        version: LibraryVersion.description)

    static let defaultCertificate = "certs/server.crt"
    static let defaultKey = "certs/server.key"

    @Option(help: "Address to listen on ('[::1]' as well as '::1'); 'localhost' listens on 127.0.0.1 and ::1.")
    var host = "localhost"
    @Option(help: "TCP port; 0 picks any free port.") var port = 4443
    @Option(
        help: ArgumentHelp(
            "PEM certificate chain, leaf first, or a pkcs11: URL (default: \(TLSServerCommand.defaultCertificate)).",
            discussion: "Repeat --cert and --key in pairs to serve several certificates: the one whose names match the "
                + "client's SNI (and whose key suits its signature algorithms) is served, the first one otherwise."),
        completion: .file())
    var cert: [String] = []
    @Option(
        help: ArgumentHelp(
            "PEM private key for the --cert in the same position, or a pkcs11: URL (RFC 7512; the PIN in "
                + "?pin-value= or ?pin-source=) (default: \(TLSServerCommand.defaultKey))."), completion: .file())
    var key: [String] = []
    @Option(
        help: "DER OCSP response to staple for the --cert in the same position (repeatable; reread on SIGHUP).",
        completion: .file())
    var ocspResponse: [String] = []
    @Option(help: "PEM or DER trust anchors for client certificates.", completion: .file()) var cafile: String?
    @Option(
        help: "A directory of CA files (PEM or DER, each file loaded) trusted for client certificates.",
        completion: .directory)
    var capath: String?
    @Option(
        help: "Trust anchors added to the others (to the system store without --cafile/--capath; repeatable).",
        completion: .file())
    var addCafile: [String] = []
    @Option(
        help: "PEM or DER certificate revocation list; a revoked client certificate is refused (repeatable).",
        completion: .file())
    var crlfile: [String] = []
    @Option(help: "Most certificates a client's chain may hold, its leaf included (1 to 16; default 16).")
    var verifyDepth: Int?
    @Option(help: "Client-certificate policy: none, optional (verified if sent) or required.")
    var verifyClient: ClientPolicy = .none
    @Option(
        help: ArgumentHelp(priorityHelp, valueName: "intermediate|modern|STRING"),
        completion: .list(namedPolicies.map(\.name)))
    var priority: String?
    @Option(help: "Comma-separated ALPN protocols.") var alpn: String?
    @Flag(help: "Echo every message until the client closes (default: one message, as the skeleton).")
    var stream = false
    @Flag(help: "No per-connection lines (benchmarks).") var quiet = false
    @Flag(help: "Start every line with the UTC time.") var timestamps = false
    @Option(
        help: ArgumentHelp(
            "INSECURE: append the session secrets to FILE (NSS key log format, for Wireshark); warns.", valueName: "file"),
        completion: .file())
    var keylogfile: String?
    @Option(help: "Event-loop threads (default: one per core).") var threads: Int?
    @Option(help: "Most connections open at once; more are refused with a log line.") var maxConnections = 10_000
    @Option(help: "Seconds a connection may stay idle before it is closed (fractions allowed).") var idleTimeout = 30.0
    @Option(help: "Seconds a client has to complete the handshake (fractions allowed).") var handshakeTimeout = 10.0
    @Flag(help: "Expect a PROXY protocol v1 or v2 header first (from a load balancer); 'Connection from' names its client.")
    var proxyProtocol = false
    @Option(help: "Comma-separated networks (CIDR) allowed to send the PROXY header (default: loopback only).")
    var proxyFrom: String?
    @Flag(help: "Set SO_REUSEPORT, so that several processes can listen on the same port.") var reusePort = false
    @Option(
        help: "Session-ticket master key file shared by several instances (make one: tls-certs ticket-key --out FILE).",
        completion: .file())
    var ticketKeyFile: String?
    @Option(help: "TLS 1.2 sessions kept for resumption by session ID (clients without tickets); 0 turns it off.")
    var sessionCache = 10_000
    @Option(
        help: ArgumentHelp(
            "Serve metrics in the Prometheus text format at http://HOST:PORT/metrics (port 0: any free port).",
            discussion: "Plain HTTP without authentication: keep it on loopback (127.0.0.1:9100) or a private "
                + "network. Series: tls_handshakes_total{version,outcome}, tls_handshake_duration_seconds{version}, "
                + "tls_handshake_failures_total{reason}, tls_connection_failures_total{reason}, "
                + "tls_connections_open. At most 8 scrape connections at once, each closed when it has not "
                + "completed a request for 5 s, so that the port cannot starve the TLS one of descriptors.",
            valueName: "host:port"))
    var metrics: String?
    @Option(
        help: ArgumentHelp(
            "Level of the library's log messages, on standard error.",
            discussion: "At debug, each failed connection is logged once with its details (tls.error.kind, "
                + "tls.peer, ...). The per-connection lines on standard output are not affected."))
    var logLevel: Logger.Level = .info

    enum ClientPolicy: String, ExpressibleByArgument, CaseIterable {
        case none, optional, required
    }

    /// The certificate files (or URLs), the default one when none is given.
    var certificates: [String] { cert.isEmpty ? [Self.defaultCertificate] : cert }
    /// The keys, in the same order.
    var keys: [String] { key.isEmpty ? [Self.defaultKey] : key }

    func validate() throws {
        if let problem = hostSyntaxError(host) { throw ValidationError(problem) }
        guard cert.count == key.count else {
            throw ValidationError(
                "--cert and --key go in pairs: \(cert.count) --cert and \(key.count) --key given")
        }
        guard ocspResponse.count <= certificates.count else {
            throw ValidationError(
                "--ocsp-response is given \(ocspResponse.count) times for \(certificates.count) certificates")
        }
        // --cert, --key and --ocsp-response repeat in pairs (several certificates chosen by SNI).
        if let name = repeatedOption(
            in: self, arguments: Array(CommandLine.arguments.dropFirst()),
            allowingRepeats: ["cert", "key", "ocsp-response"])
        {
            throw ValidationError("--\(name) was given more than once; it takes one value")
        }
        if let verifyDepth, !(1...16).contains(verifyDepth) {
            throw ValidationError("--verify-depth must be 1 to 16, not \(verifyDepth)")
        }
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0 to 65535, not \(port)") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        guard maxConnections >= 1 else { throw ValidationError("--max-connections must be at least 1") }
        guard idleTimeout >= 0.001, idleTimeout <= 86_400 else {
            throw ValidationError("--idle-timeout must be 0.001 to 86400 seconds, not \(idleTimeout)")
        }
        guard handshakeTimeout >= 0.001, handshakeTimeout <= 86_400 else {
            throw ValidationError("--handshake-timeout must be 0.001 to 86400 seconds, not \(handshakeTimeout)")
        }
        guard (0...1_000_000).contains(sessionCache) else {
            throw ValidationError("--session-cache must be 0 to 1000000 sessions, not \(sessionCache)")
        }
        if proxyFrom != nil && !proxyProtocol { throw ValidationError("--proxy-from needs --proxy-protocol") }
        if let metrics, case .failure(let error) = splitHostAndPort(metrics, allowingPortZero: true) {
            throw ValidationError("--metrics: \(error.description)")
        }
        _ = try proxyNetworks()
    }

    // Synchronous on purpose: the main thread only waits for SIGINT/SIGTERM with sigwait, so the process runs no
    // Dispatch or Swift-concurrency threads besides NIO's event loops (fewer threads, less memory, and tools
    // such as valgrind can follow it).
    func run() throws {
        let output = ConsoleOutput(timestamps: timestamps)
        let hasTrust = cafile != nil || capath != nil || !addCafile.isEmpty
        if verifyClient != .none && !hasTrust {
            output.error(
                "Error: --verify-client \(verifyClient.rawValue) needs --cafile (or --capath) with the CAs that issue "
                    + "client certificates")
            throw ExitCode.failure
        }
        if verifyClient == .none {
            let unused = [
                cafile.map { _ in "--cafile" }, capath.map { _ in "--capath" }, addCafile.isEmpty ? nil : "--add-cafile",
                crlfile.isEmpty ? nil : "--crlfile", verifyDepth.map { _ in "--verify-depth" },
            ].compactMap { $0 }
            if !unused.isEmpty {
                output.error(
                    "Warning: \(unused.joined(separator: ", ")) without --verify-client: client certificates are not "
                        + "asked for, so \(unused.count == 1 ? "it has" : "they have") no effect")
            }
        }
        let contexts: ReloadableTLSContext
        let keyLog: KeyLogFile?
        do {
            try makeDevelopmentCertificatesIfNeeded(output)
            keyLog = try keylogfile.map { path throws(TLSError) in try KeyLogFile(path: path) }
            contexts = try ReloadableTLSContext(configuration: configuration(keyLog: keyLog))
        } catch let error as TLSError {
            output.error("Error: \(error.reason)")
            throw ExitCode.failure
        }
        for path in keys where !path.hasPrefix("pkcs11:") { warnIfOthersCanReadKey(path, output: output) }
        for warning in policyWarnings(contexts.current) { output.error(warning) }
        if let keyLog { output.error(keyLog.warning) }
        if let warning = keyLogEnvironmentWarning(keylogfile: keylogfile) { output.error(warning) }
        let host = unbracketed(self.host)
        if let ticketKeyFile { warnIfOthersCanReadKey(ticketKeyFile, output: output, what: "session ticket key") }

        // Blocked once start-up I/O is done (a signal must still stop a read that hangs) and before any thread
        // starts, so every event-loop thread inherits the mask and only sigwait sees them.
        let signals = TerminationSignals.block()

        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads ?? System.coreCount)
        var logger = Logger(label: "tls-server") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = logLevel
        let registry = metrics.map { _ in PrometheusCollectorRegistry() }
        let server = EchoServer(
            contexts: contexts, group: group, output: output, stream: stream, quiet: quiet,
            maxConnections: maxConnections, idleTimeout: .nanoseconds(Int64(idleTimeout * 1e9)),
            handshakeTimeout: .nanoseconds(Int64(handshakeTimeout * 1e9)), proxyFrom: try proxyNetworks(),
            reusePort: reusePort, logger: logger,
            metrics: registry.map { TLSMetrics(factory: PrometheusMetricsFactory(registry: $0)) })
        var metricsChannel: (any Channel)?
        if let metrics, let registry, case .success(let address) = splitHostAndPort(metrics, allowingPortZero: true) {
            do {
                let channel = try MetricsServer.start(
                    host: address.host, port: address.port, registry: registry, group: group, output: output)
                metricsChannel = channel
                let port = channel.localAddress?.port ?? address.port
                output.line("tls-server: metrics at http://\(hostForDisplay(address.host)):\(port)/metrics")
            } catch {
                output.error("Error: cannot serve metrics on \(metrics): \(describe(error))")
                try? group.syncShutdownGracefully()
                throw ExitCode.failure
            }
        }
        do {
            let boundPort = try server.listen(host: host, port: port)
            output.line("tls-server: listening on \(host == "localhost" ? host : hostForDisplay(host)):\(boundPort)")
        } catch {
            output.error("Error: cannot listen on \(hostForDisplay(host)):\(port): \(describe(error))")
            try? group.syncShutdownGracefully()
            throw ExitCode.failure
        }

        // SIGHUP rereads every file; SIGINT and SIGTERM stop.
        while signals.wait() == SIGHUP {
            do {
                let context = try contexts.reload()
                let count = context.certificateChains.count
                output.line("tls-server: reloaded \(count) certificate\(count == 1 ? "" : "s")")
            } catch {
                output.line("tls-server: reload failed: \(error.reason); keeping the previous certificates")
            }
        }
        output.line("tls-server: shutting down")
        try? metricsChannel?.close().wait()
        server.shutdown()
    }

    /// The networks allowed to send a PROXY header with --proxy-protocol (nil without it).
    func proxyNetworks() throws -> [IPNetwork]? {
        guard proxyProtocol else { return nil }
        guard let proxyFrom else { return IPNetwork.loopback }
        do {
            return try IPNetwork.list(proxyFrom)
        } catch {
            throw ValidationError("--proxy-from: \(error.description)")
        }
    }

    /// The library configuration these options describe.
    func configuration(keyLog: KeyLogFile? = nil) throws -> TLSConfiguration {
        let clientAuthentication: TLSConfiguration.ClientAuthentication
        switch verifyClient {
        case .none: clientAuthentication = .none
        case .optional: clientAuthentication = .verifyIfGiven
        case .required: clientAuthentication = .requireAndVerify
        }
        let identities = zip(certificates, keys).enumerated().map { index, pair in
            let (chain, key) = pair
            return TLSConfiguration.Identity(
                certificateChain: chain.hasPrefix("pkcs11:") ? .pkcs11(url: chain) : .file(chain),
                privateKey: key.hasPrefix("pkcs11:") ? .pkcs11(url: key, pin: nil) : .file(key, password: nil),
                ocspResponse: index < ocspResponse.count ? .file(ocspResponse[index]) : nil)
        }
        let trust = trustRoots(cafile: cafile, capath: capath, addCAFiles: addCafile)
        var configuration = TLSConfiguration.server(
            identities: identities,
            clientAuthentication: clientAuthentication,
            trustRoots: trust.primary,
            policy: protocolPolicy(priority),
            applicationProtocols: alpn.map { $0.split(separator: ",").map(String.init) } ?? [])
        configuration.additionalTrustRoots = trust.additional
        configuration.revocationLists = crlfile.map { .file($0) }
        configuration.maximumVerificationDepth = verifyDepth
        if let keyLog { configuration.keyLog = { keyLog.append($0) } }
        configuration.ticketKey = ticketKeyFile.map { .file($0) }
        configuration.sessionCache = sessionCache > 0 ? InMemorySessionCache(capacity: sessionCache) : nil
        return configuration
    }

    /// First run: with the default --cert/--key and neither file present, create a development CA and a server
    /// certificate for localhost, 127.0.0.1 and ::1 under certs/.
    func makeDevelopmentCertificatesIfNeeded(_ output: ConsoleOutput) throws {
        guard cert.isEmpty && key.isEmpty else { return }
        let cert = Self.defaultCertificate
        let key = Self.defaultKey
        let manager = FileManager.default
        let haveCertificate = manager.fileExists(atPath: cert)
        let haveKey = manager.fileExists(atPath: key)
        if haveCertificate && haveKey { return }
        if haveCertificate != haveKey {
            throw TLSError(
                kind: .configuration,
                reason: "'\(haveCertificate ? key : cert)' is missing while '\(haveCertificate ? cert : key)' exists; "
                    + "remove the other one to have development certificates made anew")
        }
        let folder = cert.contains("/") ? String(cert[..<(cert.lastIndex(of: "/") ?? cert.endIndex)]) : "."
        do {
            try manager.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw TLSError(kind: .configuration, reason: "cannot create '\(folder)': \(plainReason(error))")
        }
        let ca = try CertificateAuthority.generate()
        let issued = try ca.issue(commonName: "localhost", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1", "::1"])
        try ca.privateKey.write(toFile: folder + "/ca.key")
        try Certificate.writePEM([ca.certificate], toFile: folder + "/ca.crt")
        try issued.privateKey.write(toFile: key)
        try Certificate.writePEM(issued.chain, toFile: cert)
        output.line("tls-server: created a development CA and a certificate for localhost, 127.0.0.1 and ::1 in \(folder)/ (testing only)")
        output.line("tls-server: clients trust it with: tls-client --cafile \(folder)/ca.crt")
    }
}

/// SIGINT, SIGTERM and SIGHUP, blocked in every thread and taken by the main thread with sigwait; SIGPIPE ignored.
extension Logger.Level: @retroactive ExpressibleByArgument {}

struct TerminationSignals {
    private var set = sigset_t()

    static func block() -> TerminationSignals {
        signal(SIGPIPE, SIG_IGN)
        var signals = TerminationSignals()
        sigemptyset(&signals.set)
        sigaddset(&signals.set, SIGINT)
        sigaddset(&signals.set, SIGTERM)
        sigaddset(&signals.set, SIGHUP)
        pthread_sigmask(SIG_BLOCK, &signals.set, nil)
        return signals
    }

    /// Returns the signal when SIGINT, SIGTERM or SIGHUP arrives.
    func wait() -> Int32 {
        var set = self.set
        var number: Int32 = 0
        while sigwait(&set, &number) != 0 {}
        return number
    }
}
