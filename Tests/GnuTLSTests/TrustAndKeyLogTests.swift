import Foundation
@testable import GnuTLS
import Synchronization
import Testing

/// Library side of issue 13: revocation lists, the verification depth, additional trust roots, the key log,
/// the server's SNI acknowledgement and the compiled policy's suites, on sessions back to back in memory.
@Suite struct TrustAndKeyLogTests {
    let pki = TestPKI.shared

    @Test func revokedServerIsRefusedWithSerialAndDate() throws {
        let revokedAt = Date(timeIntervalSince1970: 1_780_000_000)
        let crl = try pki.ca.revocationList(revoking: [pki.server.certificate], revokedAt: revokedAt)
        #expect(crl.issuer == pki.ca.certificate.subject)
        #expect(crl.entries.map(\.revocationDate) == [revokedAt])
        // PEM round trip.
        #expect(try CertificateRevocationList.parse(bytes: Array(crl.pemString.utf8), source: "test") == [crl])

        var client = pki.clientConfiguration()
        client.revocationLists = [.lists([crl])]
        let pair = try SessionPair(client: client, server: pki.serverConfiguration())
        #expect(!pair.handshake())
        let reasons = pair.clientError?.verification?.reasons ?? []
        #expect(reasons == [.revokedOn(revokedAt, serialNumber: pki.server.certificate.serialNumber, reason: nil)], "\(reasons)")
        #expect(pair.clientError?.verification?.chain == pki.server.chain)
    }

    @Test func revocationReasonWalkSurvivesTruncatedAndFlippedBytes() throws {
        let der = try pki.ca.revocationList(revoking: [pki.server.certificate, pki.client.certificate]).derBytes
        #expect(RevocationReasons.parse(der).isEmpty, "GnuTLS-made CRLs carry no reason codes")
        for length in 0..<der.count { _ = RevocationReasons.parse(Array(der.prefix(length))) }
        for index in 0..<der.count {
            var flipped = der
            flipped[index] ^= 0xff
            _ = RevocationReasons.parse(flipped)
        }
        // A hand-made CRL body: one entry, serial 0x05, reasonCode keyCompromise (1); then the same with the
        // extension's value cut short, which reads as no reason.
        func tlv(_ tag: UInt8, _ content: [UInt8]) -> [UInt8] { [tag, UInt8(content.count)] + content }
        func crl(reasonValue: [UInt8]) -> [UInt8] {
            let reason = tlv(0x30, tlv(0x06, [0x55, 0x1d, 0x15]) + tlv(0x04, reasonValue))
            let entry = tlv(0x30, tlv(0x02, [0x05]) + tlv(0x17, Array("261201000000Z".utf8)) + tlv(0x30, reason))
            let tbs = tlv(0x02, [0x01]) + tlv(0x30, []) + tlv(0x30, []) + tlv(0x17, []) + tlv(0x30, entry)
            return tlv(0x30, tlv(0x30, tbs))
        }
        #expect(RevocationReasons.parse(crl(reasonValue: [0x0a, 0x01, 0x01])) == ["05": .keyCompromise])
        #expect(RevocationReasons.parse(crl(reasonValue: [0x0a, 0x02, 0x01])).isEmpty)
    }

    @Test func depthBelowTheChainIsRefusedWithTheLimit() throws {
        var client = pki.clientConfiguration()
        client.maximumVerificationDepth = 1
        let pair = try SessionPair(client: client, server: pki.serverConfiguration())
        #expect(!pair.handshake())
        #expect(pair.clientError?.verification?.reasons == [.depthExceeded(limit: 1, sent: 2)])

        client.maximumVerificationDepth = 17
        #expect(throws: TLSError.self) { try TLSContext(configuration: client) }
    }

    @Test func additionalTrustRootsAddToTheOthers() throws {
        // Trusting only the other CA refuses; adding the test CA on top accepts.
        var client = pki.clientConfiguration(trust: [pki.otherCA.certificate])
        #expect(!(try SessionPair(client: client, server: pki.serverConfiguration()).handshake()))
        client.additionalTrustRoots = [.certificates([pki.ca.certificate])]
        #expect(try TLSContext(configuration: client).trustAnchorCount == 2)
        #expect(try SessionPair(client: client, server: pki.serverConfiguration()).handshake())
    }

    @Test func additionalTrustRootsAddToTheSystemStore() throws {
        // Python's load_verify_locations after create_default_context: the system's anchors stay, one is added.
        let system = try TLSContext(configuration: .client(serverName: "localhost")).trustAnchorCount
        #expect(system > 1)
        var client = TLSConfiguration.client(serverName: "localhost")
        #expect(!(try SessionPair(client: client, server: pki.serverConfiguration()).handshake()))
        client.additionalTrustRoots = [.certificates([pki.ca.certificate])]
        #expect(try TLSContext(configuration: client).trustAnchorCount == system + 1)
        #expect(try SessionPair(client: client, server: pki.serverConfiguration()).handshake())
    }

    @Test func keyLogGetsFiveTLS13SecretsWithTheClientRandom() throws {
        let lines = Mutex<[String]>([])
        var client = pki.clientConfiguration()
        client.keyLog = { line in lines.withLock { $0.append(line) } }
        let pair = try SessionPair(client: client, server: pki.serverConfiguration())
        #expect(pair.handshake())
        let logged = lines.withLock { $0 }
        #expect(
            Set(logged.compactMap { $0.split(separator: " ").first.map(String.init) }) == [
                "CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0",
                "SERVER_TRAFFIC_SECRET_0", "EXPORTER_SECRET",
            ], "\(logged)")
        #expect(logged.count == 5)
        #expect(Set(logged.map { $0.split(separator: " ")[1] }).count == 1)
    }

    @Test func serverNameAcknowledgementIsReadFromTheServersMessages() throws {
        // A TLS 1.2 ServerHello: version, random, empty session id, suite, compression, then extensions.
        func serverHello(extensions: [UInt8]) -> [UInt8] {
            [0x03, 0x03] + Array(repeating: 7, count: 32) + [0, 0xc0, 0x2b, 0]
                + [UInt8(extensions.count >> 8), UInt8(extensions.count & 0xff)] + extensions
        }
        let withName = serverHello(extensions: [0, 23, 0, 0, 0, 0, 0, 0])  // extended_master_secret, server_name
        let without = serverHello(extensions: [0, 23, 0, 0, 0xff, 0x01, 0, 1, 0])
        #expect(withName.withUnsafeBytes { ServerNameAcknowledgement.inServerHello($0) })
        #expect(!without.withUnsafeBytes { ServerNameAcknowledgement.inServerHello($0) })

        // GnuTLS's own server does not acknowledge SNI (openssl s_server does): the session reports what came.
        let pair = try SessionPair(client: pki.clientConfiguration(), server: pki.serverConfiguration())
        #expect(pair.handshake())
        #expect(!pair.client.serverNameAcknowledged)
    }

    @Test func malformedServerMessagesReadAsNotAcknowledged() {
        for bytes: [UInt8] in [[], [0], Array(repeating: 0xff, count: 40), [0, 10, 0, 0, 0, 200], [0, 4, 0, 0, 0, 0]] {
            bytes.withUnsafeBytes { raw in
                _ = ServerNameAcknowledgement.inServerHello(raw)
                let found = ServerNameAcknowledgement.inEncryptedExtensions(raw)
                #expect(found == (bytes == [0, 4, 0, 0, 0, 0] || bytes == [0, 10, 0, 0, 0, 200]))
            }
        }
    }

    @Test func policiesReportTheirNonAEADSuites() throws {
        #expect(try TLSContext(configuration: pki.clientConfiguration()).nonAEADCipherSuites.isEmpty)
        let normal = try TLSContext(configuration: pki.clientConfiguration(policy: .custom("NORMAL")))
        #expect(normal.nonAEADCipherSuites.contains { $0.contains("_CBC_") })
        #expect(normal.enabledVersions.contains(.tls10))
    }

    @Test func directoryTrustLoadsEveryFileAndSkipsHiddenOnes() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("capath-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try Data(pki.ca.certificate.derBytes).write(to: folder.appendingPathComponent("a.der"))
        try Certificate.writePEM([pki.otherCA.certificate], toFile: folder.appendingPathComponent("b.pem").path)
        try Data("junk".utf8).write(to: folder.appendingPathComponent(".junk"))
        #expect(try TLSContext.loadDirectory(folder.path) == [pki.ca.certificate, pki.otherCA.certificate])
        try Data("junk".utf8).write(to: folder.appendingPathComponent("c.txt"))
        #expect(throws: TLSError.self) { try TLSContext.loadDirectory(folder.path) }
    }
}
