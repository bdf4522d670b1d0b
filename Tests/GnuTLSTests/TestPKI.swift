import Foundation
import GnuTLS

/// A development PKI made once per test process: one CA, a server leaf for localhost, a client leaf, and a
/// second CA that nobody trusts.
struct TestPKI: Sendable {
    let ca: CertificateAuthority
    let otherCA: CertificateAuthority
    let server: CertificateAuthority.Issued
    let client: CertificateAuthority.Issued
    let otherClient: CertificateAuthority.Issued

    static let shared: TestPKI = {
        do {
            let ca = try CertificateAuthority.generate(commonName: "Test CA")
            let otherCA = try CertificateAuthority.generate(commonName: "Other CA")
            return TestPKI(
                ca: ca, otherCA: otherCA,
                server: try ca.issue(commonName: "localhost", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1", "::1"]),
                client: try ca.issue(commonName: "test client", usage: .client),
                otherClient: try otherCA.issue(commonName: "stranger", usage: .client))
        } catch {
            fatalError("cannot make the test PKI: \(error)")
        }
    }()

    func serverConfiguration(
        _ issued: CertificateAuthority.Issued? = nil,
        clientAuthentication: TLSConfiguration.ClientAuthentication = .none,
        policy: TLSConfiguration.ProtocolPolicy = .intermediate,
        alpn: [String] = []
    ) -> TLSConfiguration {
        let leaf = issued ?? server
        return .server(
            identity: .certificates(leaf.chain, privateKey: leaf.privateKey),
            clientAuthentication: clientAuthentication,
            trustRoots: .certificates([ca.certificate]),
            policy: policy, applicationProtocols: alpn)
    }

    func clientConfiguration(
        serverName: String? = "localhost",
        verification: TLSConfiguration.CertificateVerification = .full,
        trust: [Certificate]? = nil,
        identity: CertificateAuthority.Issued? = nil,
        policy: TLSConfiguration.ProtocolPolicy = .intermediate,
        alpn: [String] = []
    ) -> TLSConfiguration {
        .client(
            serverName: serverName, trustRoots: .certificates(trust ?? [ca.certificate]), verification: verification,
            identity: identity.map { .certificates($0.chain, privateKey: $0.privateKey) },
            policy: policy, applicationProtocols: alpn)
    }
}

/// Two sessions wired back to back in memory.
final class SessionPair {
    let client: TLSSession
    let server: TLSSession
    var clientError: TLSError?
    var serverError: TLSError?
    /// How the bytes from one side are cut before the other sees them (nil: whole).
    var chunker: ((Int) -> Int)?

    init(client: TLSConfiguration, server: TLSConfiguration, serverName: String? = nil) throws {
        self.client = try TLSContext(configuration: client).makeSession(serverName: serverName)
        self.server = try TLSContext(configuration: server).makeSession()
    }

    init(client: TLSSession, server: TLSSession) {
        self.client = client
        self.server = server
    }

    /// Moves pending output from `from` to `to`, cut into pieces by the chunker.
    /// Returns whether any byte moved.
    @discardableResult
    func transfer(from: TLSSession, to: TLSSession) -> Bool {
        guard from.hasPendingOutput else { return false }
        let bytes = from.takePendingOutput()
        var offset = 0
        while offset < bytes.count {
            let size = chunker.map { max(1, min($0(bytes.count - offset), bytes.count - offset)) } ?? (bytes.count - offset)
            to.feed(bytes[offset..<(offset + size)])
            offset += size
            // Let the receiver process each piece as it would arrive from a socket.
            if to.isHandshakeComplete == false && errorOf(to) == nil { step(to) }
        }
        return true
    }

    private func errorOf(_ session: TLSSession) -> TLSError? {
        session === client ? clientError : serverError
    }

    private func step(_ session: TLSSession) {
        do {
            try session.handshake()
        } catch {
            if session === client { clientError = error } else { serverError = error }
        }
    }

    /// Runs both handshakes to completion or failure. Returns true when both completed.
    @discardableResult
    func handshake(maxRounds: Int = 100) -> Bool {
        step(client)
        for _ in 0..<maxRounds {
            let moved1 = transfer(from: client, to: server)
            if serverError == nil { step(server) }
            let moved2 = transfer(from: server, to: client)
            if clientError == nil { step(client) }
            if client.isHandshakeComplete && server.isHandshakeComplete && !client.hasPendingOutput
                && !server.hasPendingOutput
            {
                return true
            }
            if !moved1 && !moved2 && !client.hasPendingOutput && !server.hasPendingOutput { break }
        }
        return client.isHandshakeComplete && server.isHandshakeComplete && clientError == nil && serverError == nil
    }

    /// Sends `bytes` from one side and reads everything the other side can decrypt.
    func send(_ bytes: [UInt8], from: TLSSession, to: TLSSession) throws -> [UInt8] {
        try from.write(bytes)
        var received: [UInt8] = []
        while from.hasPendingOutput {
            let chunk = from.takePendingOutput()
            var offset = 0
            while offset < chunk.count {
                let size = chunker.map { max(1, min($0(chunk.count - offset), chunk.count - offset)) } ?? (chunk.count - offset)
                to.feed(chunk[offset..<(offset + size)])
                offset += size
                try to.readAvailable(into: &received)
            }
        }
        // Replies the receiver queued (TLS 1.3 key updates, alerts) go back.
        transfer(from: to, to: from)
        return received
    }
}

/// A small seeded generator so random cuts are reproducible.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
