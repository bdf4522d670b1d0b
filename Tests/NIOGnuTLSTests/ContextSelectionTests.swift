import Foundation
import GnuTLS
import NIOCore
import NIOGnuTLS
import NIOPosix
import Testing

/// The context selector on real event loops: answered later from another thread, per connection, and a failure
/// that ends only its own handshake.
@Suite struct ContextSelectionTests {
    let pki = HandlerPKI.shared

    func context(for name: String) throws -> TLSContext {
        let issued = try pki.ca.issue(commonName: name, dnsNames: [name])
        return try TLSContext(configuration: .server(identity: .certificates(issued.chain, privateKey: issued.privateKey)))
    }

    func client(_ name: String) throws -> TLSContext {
        try TLSContext(configuration: .client(serverName: name, trustRoots: .certificates([pki.ca.certificate])))
    }

    /// Handshake deadlines for these tests, which are not about deadlines: the async selector's task and the
    /// listener's handlers wait for turns on the cooperative pool, which the other suites' in-memory handshakes
    /// fill; on a loaded CI machine the default 10 s once ran out (the client's `.timeout` where the
    /// handshake_failure alert was expected).
    static let patience = TimeAmount.seconds(60)

    /// Runs an echo listener whose selector is `selector`, then `body` with its port.
    func withListener(
        _ selector: ContextSelector, _ body: @Sendable (Int) async throws -> Void
    ) async throws {
        var configuration = TLSConfiguration.server(
            identity: .certificates(pki.server.chain, privateKey: pki.server.privateKey))
        configuration.contextSelector = selector
        let serverContext = try TLSContext(configuration: configuration)
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await TLSListener.listen(
                    host: "127.0.0.1", port: 0, context: serverContext, handshakeTimeout: Self.patience,
                    onListening: { address in portContinuation.yield(address?.port ?? 0) }
                ) { connection in
                    while let chunk = try await connection.read() { try await connection.write(chunk) }
                }
            }
            var iterator = ports.makeAsyncIterator()
            let port = try #require(await iterator.next())
            try await body(port)
            group.cancelAll()
        }
    }

    func exchange(port: Int, name: String) async throws -> (certificate: Certificate?, reply: [UInt8]) {
        try await TLSConnection.connect(
            host: "127.0.0.1", port: port, context: try client(name), handshakeTimeout: Self.patience
        ) { connection in
            try await connection.write(Array("via \(name)".utf8))
            try await connection.closeOutput()
            return (connection.info.peerCertificates.first, try await connection.readAll())
        }
    }

    @Test("Answered 50 ms later from another thread: each connection gets the context for its name, concurrently")
    func answeredLaterFromAnotherThread() async throws {
        let sites = ["alpha.test": try context(for: "alpha.test"), "beta.test": try context(for: "beta.test")]
        let asked = Counter()
        let selector = ContextSelector.callback { hello, answer in
            asked.increment()
            let site = hello.serverName.flatMap { sites[$0] }
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(50)) { answer(.success(site)) }
        }
        try await withListener(selector) { port in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<10 {
                    let name = index % 2 == 0 ? "alpha.test" : "beta.test"
                    group.addTask {
                        let (certificate, reply) = try await exchange(port: port, name: name)
                        #expect(certificate == sites[name]?.certificateChain.first)
                        #expect(reply == Array("via \(name)".utf8))
                    }
                }
                try await group.waitForAll()
            }
        }
        #expect(asked.value == 10)
    }

    @Test("The async form, and a selector that fails: that handshake ends with a handshake_failure alert, the next one goes on")
    func failingSelectorEndsOnlyThatHandshake() async throws {
        let beta = try context(for: "beta.test")
        struct UnknownSite: Error {}
        let selector = ContextSelector.async { hello in
            try await Task.sleep(for: .milliseconds(20))
            if hello.serverName == "unknown.test" { throw UnknownSite() }
            return beta
        }
        try await withListener(selector) { port in
            let error = await #expect(throws: TLSError.self) { try await exchange(port: port, name: "unknown.test") }
            #expect(error?.kind == .noSharedAlgorithm)
            #expect(error?.alert == "Handshake failed")
            let (certificate, reply) = try await exchange(port: port, name: "beta.test")
            #expect(certificate == beta.certificateChain.first)
            #expect(reply == Array("via beta.test".utf8))
        }
    }

    @Test("A selector that never answers: the handshake timeout ends the connection")
    func silentSelectorTimesOut() async throws {
        var configuration = TLSConfiguration.server(
            identity: .certificates(pki.server.chain, privateKey: pki.server.privateKey))
        configuration.contextSelector = .callback { _, _ in }
        let serverContext = try TLSContext(configuration: configuration)
        let failures = AsyncStream.makeStream(of: String.self)
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await TLSListener.listen(
                    host: "127.0.0.1", port: 0, context: serverContext, handshakeTimeout: .milliseconds(200),
                    onListening: { address in portContinuation.yield(address?.port ?? 0) },
                    onFailure: { error, _ in failures.continuation.yield((error as? TLSError)?.kind.rawValue ?? "\(error)") }
                ) { _ in }
            }
            var iterator = ports.makeAsyncIterator()
            let port = try #require(await iterator.next())
            await #expect(throws: (any Error).self) { try await exchange(port: port, name: "alpha.test") }
            var reported = failures.stream.makeAsyncIterator()
            #expect(await reported.next() == TLSError.Kind.timeout.rawValue)
            group.cancelAll()
        }
    }
}

/// A thread-safe count.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { lock.withLock { count += 1 } }
    var value: Int { lock.withLock { count } }
}
