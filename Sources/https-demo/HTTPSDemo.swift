#if Hummingbird
import ArgumentParser
import Glibc
import GnuTLS
import Hummingbird
import NIOGnuTLSHummingbird

/// https-demo: a small Hummingbird app served over HTTPS by NIOGnuTLS (HTTP/2 and HTTP/1.1 by ALPN), to try the
/// integration with curl, a browser or h2load. tools/https-demo builds it and makes development certificates.
@main
struct HTTPSDemo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "https-demo",
        abstract: "A Hummingbird 2 app over HTTPS on the system's GnuTLS.",
        discussion: """
            GET / answers a short text, POST /echo sends the request body back, GET /tls describes the connection \
            (version, cipher suite, ALPN, client certificate). Prints 'listening on HOST:PORT' once it accepts \
            connections; SIGINT or SIGTERM shut it down gracefully.
            """)

    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "TCP port; 0 picks any free port.") var port = 8443
    @Option(help: "PEM certificate chain, leaf first.") var cert: String
    @Option(help: "PEM private key.") var key: String
    @Option(help: "PEM trust anchors for client certificates (asks clients for one: mutual TLS, optional).")
    var cafile: String?
    @Flag(help: "HTTP/1.1 only (no ALPN).") var http1 = false

    func run() async throws {
        let tls = GnuTLS.TLSConfiguration.server(
            identity: .files(certificateChain: cert, privateKey: key),
            clientAuthentication: cafile == nil ? .none : .verifyIfGiven,
            trustRoots: cafile.map { .file($0) } ?? .system,
            applicationProtocols: http1 ? [] : GnuTLSHTTP2Channel.applicationProtocols)
        let context = try TLSContext(configuration: tls)
        let app = Application(
            router: Self.router(),
            server: http1 ? .http1(tls: context) : .http2(tls: context),
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
    static func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/") { _, _ in "Hello from Hummingbird over GnuTLS\n" }
        router.post("/echo") { request, _ in
            Response(status: .ok, body: ResponseBody(asyncSequence: request.body))
        }
        router.get("/tls") { _, context -> String in
            guard let tls = context.tlsHandshake else { return "no TLS\n" }
            let client = tls.peerCertificates.first.map(\.subject) ?? "none"
            return "\(tls.version.map { "\($0)" } ?? "?") \(tls.cipherSuite ?? "?") "
                + "alpn=\(tls.applicationProtocol ?? "none") client=\(client)\n"
        }
        return router
    }
}
#else
import ArgumentParser

/// Built without the Hummingbird trait: says how to get the real thing. A ParsableCommand even so, because
/// `swift package generate-manual` runs every ArgumentParser product with --experimental-dump-help and stops at
/// the first one whose output is not that JSON, which left tls-server, tls-client and tls-certs without man pages.
@main
struct HTTPSDemoWithoutTrait: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "https-demo",
        abstract: "Needs the Hummingbird trait: swift build --traits Hummingbird (or run tools/https-demo).")

    func run() {
        print("https-demo needs the Hummingbird trait: swift build --traits Hummingbird (or run tools/https-demo)")
    }
}
#endif
