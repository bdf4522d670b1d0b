import ArgumentParser
import Glibc
import Hummingbird
import HummingbirdCore
import HummingbirdHTTP2
import HummingbirdTLS
import NIOCore
import NIOSSL

/// https-demo-nio-ssl: Sources/https-demo/HTTPSDemo.swift with Hummingbird's own TLS (HummingbirdTLS,
/// HummingbirdHTTP2 on swift-nio-ssl) in place of NIOGnuTLSHummingbird, for tools/bench --hummingbird-only.
///
/// What differs from the demo, and why:
/// - the TLS configuration is swift-nio-ssl's (`.http2Upgrade(tlsConfiguration:)` offers ALPN h2 and http/1.1,
///   like `GnuTLSHTTP2Channel.applicationProtocols`; `--http1` is `.tls(.http1(), ...)`, without ALPN);
/// - no `--cafile` (mutual TLS is not benchmarked);
/// - GET /tls: swift-nio-ssl has no public accessor for the negotiated cipher suite or ALPN protocol, so the route
///   prints the version from `nioSSL_tlsVersion()`, `?` for the cipher suite, and the ALPN protocol the request
///   arrived on (h2 for an HTTP/2 stream, else the listener's offer); it needs the channel, so the routes run
///   on `ChannelRequestContext` (BasicRequestContext plus the channel) rather than `BasicRequestContext`.
/// GET / and POST /echo are the demo's code; GET / answers the same 35 bytes ("GnuTLS" -> "NIOSSL" keeps the length).
@main
struct HTTPSDemoNIOSSL: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "https-demo-nio-ssl",
        abstract: "The https-demo Hummingbird 2 app over HTTPS on swift-nio-ssl (the benchmark's peer).")

    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "TCP port; 0 picks any free port.") var port = 8443
    @Option(help: "PEM certificate chain, leaf first.") var cert: String
    @Option(help: "PEM private key.") var key: String
    @Flag(help: "HTTP/1.1 only (no ALPN).") var http1 = false

    func run() async throws {
        let tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
        let http1 = self.http1
        let host = self.host
        let server = try http1
            ? HTTPServerBuilder.tls(.http1(), tlsConfiguration: tls) : HTTPServerBuilder.http2Upgrade(tlsConfiguration: tls)
        let app = Application(
            router: Self.router(http1: http1),
            server: server,
            configuration: .init(address: .hostname(host, port: port), serverName: "https-demo"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                print("listening on \(host):\(port) (\(http1 ? "HTTP/1.1" : "HTTP/2 and HTTP/1.1"))")
                // At once even into a pipe or file, so that a script waiting for the line sees it.
                fflush(nil)
            })
        try await app.runService()
    }

    /// The demo's routes.
    static func router(http1: Bool) -> Router<ChannelRequestContext> {
        let router = Router(context: ChannelRequestContext.self)
        router.get("/") { _, _ in "Hello from Hummingbird over NIOSSL\n" }
        router.post("/echo") { request, _ in
            Response(status: .ok, body: ResponseBody(asyncSequence: request.body))
        }
        router.get("/tls") { _, context -> String in
            // An HTTP/2 stream's parent is the connection, which holds the NIOSSLHandler.
            let connection = context.channel.parent ?? context.channel
            guard let version = try? await connection.nioSSL_tlsVersion().get() else { return "no TLS\n" }
            let alpn = context.channel.parent != nil ? "h2" : (http1 ? "none" : "http/1.1")
            return "\(version) ? alpn=\(alpn) client=none\n"
        }
        return router
    }
}

/// BasicRequestContext plus the request's channel: GET /tls asks the channel's NIOSSLHandler for the version.
struct ChannelRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel

    init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
    }
}
