#if GRPC
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import GnuTLS
import NIOGnuTLS
import NIOGnuTLSGRPC
import NIOGnuTLSX509
import Testing
import X509

/// Messages are UTF-8 strings: a hand-written service without protobuf code generation.
struct UTF8Serializer: MessageSerializer {
    func serialize<Bytes: GRPCContiguousBytes>(_ message: String) throws -> Bytes { Bytes(Array(message.utf8)) }
}

struct UTF8Deserializer: MessageDeserializer {
    func deserialize<Bytes: GRPCContiguousBytes>(_ bytes: Bytes) throws -> String {
        bytes.withUnsafeBytes { String(decoding: $0, as: UTF8.self) }
    }
}

enum Echo {
    static let get = MethodDescriptor(fullyQualifiedService: "test.Echo", method: "Get")
    static let expand = MethodDescriptor(fullyQualifiedService: "test.Echo", method: "Expand")
    static let collect = MethodDescriptor(fullyQualifiedService: "test.Echo", method: "Collect")
    static let peer = MethodDescriptor(fullyQualifiedService: "test.Echo", method: "Peer")
}

/// Get: unary, "echo: " + the request. Expand: server streaming, one response per word. Collect: bidirectional,
/// each request answered in upper case as it arrives. Peer: unary, what the transport knows about the TLS side
/// of the RPC's connection.
struct EchoService: RegistrableRPCService {
    let transport: HTTP2ServerTransport.GnuTLS

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        router.registerHandler(
            forMethod: Echo.get, deserializer: UTF8Deserializer(), serializer: UTF8Serializer()
        ) { request, _ in
            let message = try await ServerRequest(stream: request).message
            return StreamingServerResponse(single: ServerResponse(message: "echo: \(message)"))
        }
        router.registerHandler(
            forMethod: Echo.expand, deserializer: UTF8Deserializer(), serializer: UTF8Serializer()
        ) { request, _ in
            let message = try await ServerRequest(stream: request).message
            return StreamingServerResponse { writer in
                for word in message.split(separator: " ") { try await writer.write(String(word)) }
                return [:]
            }
        }
        router.registerHandler(
            forMethod: Echo.collect, deserializer: UTF8Deserializer(), serializer: UTF8Serializer()
        ) { request, _ in
            StreamingServerResponse { writer in
                for try await message in request.messages { try await writer.write(message.uppercased()) }
                return [:]
            }
        }
        let transport = self.transport
        router.registerHandler(
            forMethod: Echo.peer, deserializer: UTF8Deserializer(), serializer: UTF8Serializer()
        ) { request, context in
            _ = try await ServerRequest(stream: request).message
            guard let info = transport.handshakeInfo(for: context) else {
                return StreamingServerResponse(error: RPCError(code: .failedPrecondition, message: "no TLS info"))
            }
            let subject = try info.peerX509Certificates().first.map { "\($0.subject)" } ?? "none"
            let fields = [
                info.version.map { "\($0)" } ?? "?", info.applicationProtocol ?? "no ALPN",
                info.requestedServerName ?? "no SNI", subject,
            ]
            return StreamingServerResponse(single: ServerResponse(message: fields.joined(separator: "|")))
        }
    }
}

struct GRPCPKI: Sendable {
    let ca: CertificateAuthority
    let otherCA: CertificateAuthority
    let server: CertificateAuthority.Issued
    let client: CertificateAuthority.Issued

    static let shared: GRPCPKI = {
        do {
            let ca = try CertificateAuthority.generate(commonName: "gRPC Test CA")
            return GRPCPKI(
                ca: ca, otherCA: try CertificateAuthority.generate(commonName: "Untrusted CA"),
                server: try ca.issue(commonName: "localhost", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"]),
                client: try ca.issue(commonName: "grpc client", usage: .client))
        } catch {
            fatalError("cannot make the test PKI: \(error)")
        }
    }()

    func serverContext(mutualTLS: Bool = false) throws -> TLSContext {
        try TLSContext(
            configuration: .server(
                identity: .certificates(server.chain, privateKey: server.privateKey),
                clientAuthentication: mutualTLS ? .requireAndVerify : .none, trustRoots: .certificates([ca.certificate])))
    }

    func clientContext(trusting root: GnuTLS.Certificate? = nil, withIdentity: Bool = false) throws -> TLSContext {
        try TLSContext(
            configuration: .client(
                serverName: "localhost", trustRoots: .certificates([root ?? ca.certificate]),
                identity: withIdentity ? .certificates(client.chain, privateKey: client.privateKey) : nil))
    }
}

@Suite(.timeLimit(.minutes(1))) struct GRPCOverGnuTLSTests {
    let pki = GRPCPKI.shared

    /// Runs a gRPC server over GnuTLS on a free loopback port, then `body` with a client transport to it; the
    /// server shuts down when `body` returns or throws.
    func withServer<T: Sendable>(
        serverContext: TLSContext, clientContext: TLSContext,
        _ body: @Sendable (GRPCClient<HTTP2ClientTransport.GnuTLS>, HTTP2ServerTransport.GnuTLS) async throws -> T
    ) async throws -> T {
        let transport = try HTTP2ServerTransport.GnuTLS(
            address: .ipv4(host: "127.0.0.1", port: 0), context: serverContext)
        let server = GRPCServer(transport: transport, services: [EchoService(transport: transport)])
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.serve() }
            defer { server.beginGracefulShutdown() }
            let address = try #require(try await server.listeningAddress?.ipv4)
            let clientTransport = try HTTP2ClientTransport.GnuTLS(
                target: .ipv4(address: "127.0.0.1", port: address.port), context: clientContext)
            let result = try await withGRPCClient(transport: clientTransport) { client in
                try await body(client, transport)
            }
            // The client has closed its connection: the server forgets its handshake (bounded wait).
            for _ in 0..<500 where transport.trackedConnectionCount > 0 { try await Task.sleep(for: .milliseconds(10)) }
            #expect(transport.trackedConnectionCount == 0)
            return result
        }
    }

    func call(_ client: GRPCClient<HTTP2ClientTransport.GnuTLS>, _ method: MethodDescriptor, _ text: String,
              options: CallOptions = .defaults) async throws -> String {
        try await client.unary(
            request: ClientRequest(message: text), descriptor: method, serializer: UTF8Serializer(),
            deserializer: UTF8Deserializer(), options: options
        ) { try $0.message }
    }

    @Test func unaryServerStreamingAndBidirectionalCallsRunOverGnuTLS() async throws {
        try await withServer(serverContext: try pki.serverContext(), clientContext: try pki.clientContext()) {
            client, server in
            #expect(try await call(client, Echo.get, "hello") == "echo: hello")
            let words = try await client.serverStreaming(
                request: ClientRequest(message: "one two three"), descriptor: Echo.expand,
                serializer: UTF8Serializer(), deserializer: UTF8Deserializer(), options: .defaults
            ) { response in
                var words: [String] = []
                for try await word in response.messages { words.append(word) }
                return words
            }
            #expect(words == ["one", "two", "three"])
            let shouted = try await client.bidirectionalStreaming(
                request: StreamingClientRequest(of: String.self) { writer in
                    for word in ["a", "bc", "def"] { try await writer.write(word) }
                },
                descriptor: Echo.collect, serializer: UTF8Serializer(), deserializer: UTF8Deserializer(),
                options: .defaults
            ) { response in
                var all: [String] = []
                for try await message in response.messages { all.append(message) }
                return all
            }
            #expect(shouted == ["A", "BC", "DEF"])
            // The service sees its connection's TLS: TLS 1.3, ALPN (grpc-exp preferred), the SNI name the
            // client derived from its context, no client certificate.
            #expect(try await call(client, Echo.peer, "") == "TLS 1.3|grpc-exp|localhost|none")
            #expect(server.trackedConnectionCount == 1)
        }
    }

    @Test func underMutualTLSTheServiceReadsTheClientCertificateAsX509() async throws {
        try await withServer(
            serverContext: try pki.serverContext(mutualTLS: true),
            clientContext: try pki.clientContext(withIdentity: true)
        ) { client, _ in
            let reply = try await call(client, Echo.peer, "")
            #expect(reply == "TLS 1.3|grpc-exp|localhost|CN=grpc client")
        }
    }

    @Test func aClientThatDoesNotTrustTheServersCAFailsWithAVerificationError() async throws {
        let error: RPCError? = try await withServer(
            serverContext: try pki.serverContext(), clientContext: try pki.clientContext(trusting: pki.otherCA.certificate)
        ) { client, server in
            var options = CallOptions.defaults
            options.waitForReady = false
            options.timeout = .seconds(10)
            let error = await #expect(throws: RPCError.self) { try await call(client, Echo.get, "hello", options: options) }
            #expect(server.trackedConnectionCount == 0)
            return error
        }
        let rpcError = try #require(error)
        #expect(rpcError.code == .unavailable)
        let tlsError = try #require(Self.tlsError(in: rpcError))
        #expect(tlsError.kind == .verification)
        #expect(tlsError.verification?.reasons.contains(.untrustedIssuer) == true)
    }

    @Test func contextsOfTheWrongRoleOrWithOtherALPNAreRefused() throws {
        #expect(throws: TLSError.self) {
            try HTTP2ServerTransport.GnuTLS(address: .ipv4(host: "127.0.0.1", port: 0), context: try pki.clientContext())
        }
        #expect(throws: TLSError.self) {
            try HTTP2ClientTransport.GnuTLS(target: .ipv4(address: "127.0.0.1", port: 1), context: try pki.serverContext())
        }
        var configuration = try pki.serverContext().configuration
        configuration.applicationProtocols = ["http/1.1"]
        let http1Only = try TLSContext(configuration: configuration)
        let error = #expect(throws: TLSError.self) {
            try HTTP2ServerTransport.GnuTLS(address: .ipv4(host: "127.0.0.1", port: 0), context: http1Only)
        }
        #expect(error?.kind == .configuration)
    }

    /// The TLS error behind an RPC error, through its chain of causes.
    static func tlsError(in error: any Error) -> TLSError? {
        var current: (any Error)? = error
        for _ in 0..<10 {
            if let tls = current as? TLSError { return tls }
            if let rpc = current as? RPCError { current = rpc.cause } else { return nil }
        }
        return nil
    }
}
#endif
