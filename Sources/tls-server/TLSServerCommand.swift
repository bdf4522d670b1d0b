import ArgumentParser
import FoundationEssentials
import Glibc
import GnuTLS
import NIOCore
import NIOGnuTLS
import NIOPosix
import NIOConcurrencyHelpers
import TLSCommandSupport

/// tls-server: accepts TLS connections, prints each client's message and sends it back (the skeleton's protocol).
@main
struct TLSServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tls-server",
        abstract: "A TLS echo server on the system's GnuTLS.",
        discussion: """
            Each connection: prints 'Connection from ADDR', reads the client's message, prints 'Received: MESSAGE', \
            sends the same bytes back, sends close_notify and closes. With --stream it echoes everything until the \
            client closes. On first run, with the default --cert/--key and no files there, it creates a development \
            CA and server certificate under certs/ (testing only).
            """)

    static let defaultCertificate = "certs/server.crt"
    static let defaultKey = "certs/server.key"

    @Option(help: "Address to listen on; 'localhost' listens on 127.0.0.1 and ::1.") var host = "localhost"
    @Option(help: "TCP port; 0 picks any free port.") var port = 4443
    @Option(help: "PEM certificate chain, leaf first.") var cert = TLSServerCommand.defaultCertificate
    @Option(help: "PEM private key.") var key = TLSServerCommand.defaultKey
    @Option(help: "PEM trust anchors for client certificates.") var cafile: String?
    @Option(help: "Client-certificate policy: none, optional (verified if sent) or required.")
    var verifyClient: ClientPolicy = .none
    @Option(help: "GnuTLS priority string (default: TLS 1.3 and 1.2, forward-secret AEAD suites only).")
    var priority: String?
    @Option(help: "Comma-separated ALPN protocols.") var alpn: String?
    @Flag(help: "Echo every message until the client closes (default: one message, as the skeleton).")
    var stream = false
    @Flag(help: "No per-connection lines (benchmarks).") var quiet = false
    @Option(help: "Event-loop threads (default: one per core).") var threads: Int?
    @Option(help: "Most connections open at once; more are refused with a log line.") var maxConnections = 10_000
    @Option(help: "Seconds a connection may stay idle before it is closed (fractions allowed).") var idleTimeout = 30.0
    @Option(help: "Seconds a client has to complete the handshake (fractions allowed).") var handshakeTimeout = 10.0
    @Flag(help: "Expect a PROXY protocol v1 or v2 header first (from a load balancer); 'Connection from' names its client.")
    var proxyProtocol = false
    @Option(help: "Comma-separated networks (CIDR) allowed to send the PROXY header (default: loopback only).")
    var proxyFrom: String?
    @Flag(help: "Set SO_REUSEPORT, so that several processes can listen on the same port.") var reusePort = false
    @Option(help: "Session-ticket master key file shared by several instances (make one: tls-certs ticket-key --out FILE).")
    var ticketKeyFile: String?
    @Option(help: "TLS 1.2 sessions kept for resumption by session ID (clients without tickets); 0 turns it off.")
    var sessionCache = 10_000

    enum ClientPolicy: String, ExpressibleByArgument, CaseIterable {
        case none, optional, required
    }

    func validate() throws {
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
        _ = try proxyNetworks()
    }

    // Synchronous on purpose: the main thread only waits for SIGINT/SIGTERM with sigwait, so the process runs no
    // Dispatch or Swift-concurrency threads besides NIO's event loops (fewer threads, less memory, and tools
    // such as valgrind can follow it).
    func run() throws {
        let output = ConsoleOutput()
        if verifyClient != .none && cafile == nil {
            output.error("Error: --verify-client \(verifyClient.rawValue) needs --cafile with the CAs that issue client certificates")
            throw ExitCode.failure
        }
        let context: TLSContext
        do {
            try makeDevelopmentCertificatesIfNeeded(output)
            context = try TLSContext(configuration: configuration())
        } catch let error as TLSError {
            output.error("Error: \(error.reason)")
            throw ExitCode.failure
        }
        warnIfOthersCanReadKey(key, output: output)
        if let ticketKeyFile { warnIfOthersCanReadKey(ticketKeyFile, output: output, what: "session ticket key") }

        // Blocked once start-up I/O is done (a signal must still stop a read that hangs) and before any thread
        // starts, so every event-loop thread inherits the mask and only sigwait sees them.
        let signals = TerminationSignals.block()

        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads ?? System.coreCount)
        let server = EchoServer(
            context: context, group: group, output: output, stream: stream, quiet: quiet,
            maxConnections: maxConnections, idleTimeout: .nanoseconds(Int64(idleTimeout * 1e9)),
            handshakeTimeout: .nanoseconds(Int64(handshakeTimeout * 1e9)), proxyFrom: try proxyNetworks(),
            reusePort: reusePort)
        do {
            let boundPort = try server.listen(host: host, port: port)
            output.line("tls-server: listening on \(host):\(boundPort)")
        } catch {
            output.error("Error: cannot listen on \(host):\(port): \(describe(error))")
            try? group.syncShutdownGracefully()
            throw ExitCode.failure
        }

        signals.wait()
        output.line("tls-server: shutting down")
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
    func configuration() throws -> TLSConfiguration {
        let clientAuthentication: TLSConfiguration.ClientAuthentication
        switch verifyClient {
        case .none: clientAuthentication = .none
        case .optional: clientAuthentication = .verifyIfGiven
        case .required: clientAuthentication = .requireAndVerify
        }
        var configuration = TLSConfiguration.server(
            identity: .files(certificateChain: cert, privateKey: key),
            clientAuthentication: clientAuthentication,
            trustRoots: cafile.map { .file($0) } ?? .system,
            policy: priority.map { .custom($0) } ?? .intermediate,
            applicationProtocols: alpn.map { $0.split(separator: ",").map(String.init) } ?? [])
        configuration.ticketKey = ticketKeyFile.map { .file($0) }
        configuration.sessionCache = sessionCache > 0 ? InMemorySessionCache(capacity: sessionCache) : nil
        return configuration
    }

    /// First run: with the default --cert/--key and neither file present, create a development CA and a server
    /// certificate for localhost, 127.0.0.1 and ::1 under certs/.
    func makeDevelopmentCertificatesIfNeeded(_ output: ConsoleOutput) throws {
        guard cert == Self.defaultCertificate && key == Self.defaultKey else { return }
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
            throw TLSError(kind: .configuration, reason: "cannot create '\(folder)': \(error)")
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

/// SIGINT and SIGTERM, blocked in every thread and taken by the main thread with sigwait; SIGPIPE ignored.
struct TerminationSignals {
    private var set = sigset_t()

    static func block() -> TerminationSignals {
        signal(SIGPIPE, SIG_IGN)
        var signals = TerminationSignals()
        sigemptyset(&signals.set)
        sigaddset(&signals.set, SIGINT)
        sigaddset(&signals.set, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &signals.set, nil)
        return signals
    }

    /// Returns when SIGINT or SIGTERM arrives.
    func wait() {
        var set = self.set
        var number: Int32 = 0
        while sigwait(&set, &number) != 0 {}
    }
}
