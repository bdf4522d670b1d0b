import ArgumentParser
import Dispatch
import NIOCore
import NIOPosix
import NIOSSL

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The benchmark's competitor: tls-server's echo protocol on SwiftNIO + swift-nio-ssl (BoringSSL), written the way a
/// NIO user would write it. Prints nothing per connection.
@main
struct NIOSSLEchoServer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nio-ssl-echo-server",
        abstract: "A TLS echo server on SwiftNIO and swift-nio-ssl, for benchmarks.",
        discussion: """
            Each connection: after the handshake, reads the client's first message, sends the same bytes back, \
            sends close_notify and closes. With --stream it echoes everything until the client closes. \
            Prints 'listening on HOST:PORT' once bound; SIGINT or SIGTERM stops it (exit 0).
            """)

    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "TCP port; 0 picks a free port.") var port = 0
    @Option(help: "PEM certificate chain, leaf first.") var cert: String
    @Option(help: "PEM private key.") var key: String
    @Option(help: "Event-loop threads.") var threads = 1
    @Flag(help: "Accept TLS 1.3 only.") var tls13Only = false
    @Flag(help: "Accept TLS 1.2 only.") var tls12Only = false
    @Flag(help: "Echo every message until the client closes (default: one message, then close).") var stream = false

    /// Mozilla's "intermediate" TLS 1.2 suites: ECDHE with AES-GCM or ChaCha20-Poly1305, client's order preferred.
    /// (Mozilla also lists DHE-RSA suites, which BoringSSL does not implement.) TLS 1.3 suites are not configurable
    /// in BoringSSL; its three are Mozilla's.
    static let intermediateCipherSuites: [NIOTLSCipher] = [
        .TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        .TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        .TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        .TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        .TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        .TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ]

    /// Mozilla's "intermediate" groups. BoringSSL's default list would also offer X25519MLKEM768 first.
    static let intermediateCurves: [NIOTLSCurve] = [.x25519, .secp256r1, .secp384r1]

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0 to 65535, not \(port)") }
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard !(tls13Only && tls12Only) else { throw ValidationError("--tls13-only and --tls12-only exclude each other") }
    }

    func run() throws {
        let sslContext: NIOSSLContext
        do {
            sslContext = try NIOSSLContext(configuration: tlsConfiguration())
        } catch {
            throw fail("cannot load --cert \(cert) / --key \(key): \(error)")
        }

        let stream = self.stream
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // Accepted sockets inherit TCP_NODELAY from the listener (NIO sets it), as in tls-server.
            .childChannelOption(.allowRemoteHalfClosure, value: stream)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        NIOSSLServerHandler(context: sslContext),
                        EchoHandler(stream: stream))
                }
            }

        let server: any Channel
        do {
            server = try bootstrap.bind(host: host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw fail("cannot listen on \(host):\(port): \(error)")
        }

        // SIGINT/SIGTERM close the listener; the main thread then shuts the loops down, closing open connections.
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let signals = [SIGINT, SIGTERM].map { number in
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { server.close(promise: nil) }
            source.resume()
            return source
        }

        print("listening on \(host):\(server.localAddress?.port ?? port)")
        fflush(nil)  // stdout is a pipe under the benchmark: make the line visible now

        try? server.closeFuture.wait()
        try group.syncShutdownGracefully()
        withExtendedLifetime(signals) {}
    }

    func tlsConfiguration() throws -> TLSConfiguration {
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
        configuration.minimumTLSVersion = tls13Only ? .tlsv13 : .tlsv12
        configuration.maximumTLSVersion = tls12Only ? .tlsv12 : nil
        configuration.cipherSuiteValues = Self.intermediateCipherSuites
        configuration.curves = Self.intermediateCurves
        return configuration
    }

    /// Prints `message` to standard error; the returned error exits with status 1 and prints nothing more.
    private func fail(_ message: String) -> ExitCode {
        let line = Array("nio-ssl-echo-server: \(message)\n".utf8)
        _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        return .failure
    }
}

/// The echo protocol on decrypted bytes. One-shot: answer the first read, then close (NIOSSL sends close_notify).
/// Stream: echo every read, flush once per read burst, close when the client closes.
final class EchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let stream: Bool
    private var answered = false

    init(stream: Bool) { self.stream = stream }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if stream {
            context.write(data, promise: nil)
            return
        }
        guard !answered else { return }
        answered = true
        context.writeAndFlush(data, promise: nil)
        context.close(promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if stream { context.flush() }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // With allowRemoteHalfClosure, the client's close_notify (or FIN) arrives as inputClosed: everything it sent
        // has been echoed, so answer with our close_notify and close.
        if case ChannelEvent.inputClosed = event {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Handshake failures, unclean shutdowns, resets: drop the connection, silently.
        context.close(promise: nil)
    }
}
