import Foundation
@testable import GnuTLS
import Testing

@Suite struct TLSSessionTests {
    let pki = TestPKI.shared

    static let tls12Only = TLSConfiguration.ProtocolPolicy.custom(
        TLSConfiguration.ProtocolPolicy.intermediate.priorityString + ":-VERS-TLS1.3")

    @Test(arguments: [TLSConfiguration.ProtocolPolicy.intermediate, .modern, tls12Only])
    func handshakeAndOneMebibyteEachWay(policy: TLSConfiguration.ProtocolPolicy) throws {
        let pair = try SessionPair(
            client: pki.clientConfiguration(policy: policy), server: pki.serverConfiguration(policy: policy))
        #expect(pair.handshake(), "client: \(String(describing: pair.clientError)) server: \(String(describing: pair.serverError))")
        let expected: TLSVersion = policy == Self.tls12Only ? .tls12 : .tls13
        #expect(pair.client.negotiatedVersion == expected)
        #expect(pair.server.negotiatedVersion == expected)
        #expect(pair.client.cipherSuite == pair.server.cipherSuite)
        #expect(pair.client.cipherSuite?.contains("GCM") == true || pair.client.cipherSuite?.contains("CHACHA") == true)
        #expect(pair.client.peerCertificates.first == pki.server.certificate)
        #expect(pair.server.peerCertificates.isEmpty)
        #expect(pair.server.requestedServerName == "localhost")

        var generator = SeededGenerator(seed: 7)
        let toServer = (0..<(1 << 20)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let toClient = (0..<(1 << 20)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        #expect(try pair.send(toServer, from: pair.client, to: pair.server) == toServer)
        #expect(try pair.send(toClient, from: pair.server, to: pair.client) == toClient)
    }

    @Test func randomCutsGiveTheSameResultAsWholeDelivery() throws {
        let message = Array("Hello from client!".utf8) + Array(repeating: 0x5a, count: 40_000)
        for seed in 0..<40 {
            var generator = SeededGenerator(seed: UInt64(seed))
            // Piece sizes from 1 byte up to everything, skewed towards small pieces.
            let maxPiece = [1, 7, 100, 1500, 20_000, Int.max][seed % 6]
            let pair = try SessionPair(client: pki.clientConfiguration(), server: pki.serverConfiguration())
            pair.chunker = { remaining in Int.random(in: 1...min(maxPiece, remaining), using: &generator) }
            #expect(pair.handshake(), "seed \(seed): \(String(describing: pair.clientError)) \(String(describing: pair.serverError))")
            #expect(try pair.send(message, from: pair.client, to: pair.server) == message, "seed \(seed)")
            #expect(try pair.send(message, from: pair.server, to: pair.client) == message, "seed \(seed)")
        }
        // A failure outcome is the same too, whatever the cuts.
        for seed in 0..<10 {
            var generator = SeededGenerator(seed: UInt64(seed))
            let pair = try SessionPair(
                client: pki.clientConfiguration(serverName: "wrong.example"), server: pki.serverConfiguration())
            pair.chunker = { remaining in Int.random(in: 1...min(50, remaining), using: &generator) }
            #expect(!pair.handshake())
            #expect(pair.clientError?.kind == .verification, "seed \(seed)")
            #expect(pair.clientError?.verification?.reasons == [.hostnameMismatch], "seed \(seed)")
        }
    }

    @Test func borrowedInputAndAnOutputSinkCarryTheSameBytesAsFeedAndPendingOutput() throws {
        let pair = try SessionPair(client: pki.clientConfiguration(), server: pki.serverConfiguration())
        #expect(pair.handshake())
        var generator = SeededGenerator(seed: 11)
        let message = (0..<50_000).map { _ in UInt8.random(in: 0...255, using: &generator) }
        try pair.client.write(message)
        let ciphertext = pair.client.takePendingOutput()

        // The server gets the ciphertext lent in random pieces and reads at most 1,000 bytes during each loan:
        // what GnuTLS has not read when a loan ends must be kept, in order.
        var received: [UInt8] = []
        var offset = 0
        while offset < ciphertext.count {
            let size = min(Int.random(in: 1...3000, using: &generator), ciphertext.count - offset)
            try ciphertext[offset..<(offset + size)].withUnsafeBytes { raw in
                try pair.server.withBorrowedInput(raw) {
                    var chunk = [UInt8](repeating: 0, count: 1000)
                    let result = try chunk.withUnsafeMutableBytes { buffer in try pair.server.read(into: buffer) }
                    if case .bytes(let n) = result { received += chunk[..<n] }
                }
            }
            offset += size
        }
        #expect(pair.server.bufferedInputCount > 0 || pair.server.bufferedPlaintextCount > 0)
        try pair.server.readAvailable(into: &received)
        #expect(received == message)

        // Output pending when a sink is set goes to it first; later output goes straight to it.
        try pair.server.write(Array("first ".utf8))
        #expect(pair.server.hasPendingOutput)
        let sink = CollectingSink()
        pair.server.outputSink = sink
        #expect(!pair.server.hasPendingOutput)
        try pair.server.write(Array("second".utf8))
        pair.server.outputSink = nil
        #expect(!pair.server.hasPendingOutput)
        pair.client.feed(sink.bytes)
        var reply: [UInt8] = []
        try pair.client.readAvailable(into: &reply)
        #expect(reply == Array("first second".utf8))
    }

    @Test func closeNotifyIsACleanClose() throws {
        let pair = try SessionPair(client: pki.clientConfiguration(), server: pki.serverConfiguration())
        #expect(pair.handshake())
        _ = try pair.send(Array("bye".utf8), from: pair.client, to: pair.server)
        try pair.client.close()
        #expect(pair.client.state == .closedForWriting)
        pair.server.feed(pair.client.takePendingOutput())
        var received: [UInt8] = []
        #expect(try pair.server.readAvailable(into: &received) == .closed)
        #expect(pair.server.state == .closedForReading)
        // Half-closure: the server may still send after the client's close_notify.
        try pair.server.write(Array("last words".utf8))
        // The server answers with its own close_notify; the client sees a clean close too.
        try pair.server.close()
        #expect(pair.server.state == .closed)
        pair.client.feed(pair.server.takePendingOutput())
        #expect(try pair.client.readAvailable(into: &received) == .closed)
        #expect(received == Array("last words".utf8))
        #expect(pair.client.state == .closed)
        #expect(throws: TLSError.self) { try pair.client.write(Array("late".utf8)) }
    }

    @Test(arguments: [TLSConfiguration.ProtocolPolicy.modern, tls12Only])
    func userCanceledThenCloseNotifyAsJavaClosesIsTheEndOfTheStream(policy: TLSConfiguration.ProtocolPolicy) throws {
        let pair = try SessionPair(
            client: pki.clientConfiguration(policy: policy), server: pki.serverConfiguration(policy: policy))
        #expect(pair.handshake())
        // The server replies, then closes as JSSE does: warning user_canceled, then close_notify.
        try pair.server.write(Array("the reply".utf8))
        pair.server._testOnly_sendUserCanceled()
        try pair.server.close()
        pair.client.feed(pair.server.takePendingOutput())
        var received: [UInt8] = []
        #expect(try pair.client.readAvailable(into: &received) == .closed)
        #expect(received == Array("the reply".utf8))
        #expect(pair.client.state == .closedForReading)
        // Our own close after it is not an error.
        try pair.client.close()
        #expect(pair.client.state == .closed)
    }

    @Test func endOfInputWithoutCloseNotifyIsTruncation() throws {
        let pair = try SessionPair(client: pki.clientConfiguration(), server: pki.serverConfiguration())
        #expect(pair.handshake())
        try pair.client.write(Array("partial".utf8))
        pair.server.feed(pair.client.takePendingOutput())
        pair.server.feedEndOfInput()
        var received: [UInt8] = []
        let error = #expect(throws: TLSError.self) { try pair.server.readAvailable(into: &received) }
        #expect(error?.kind == .truncated)
        #expect(error?.codeName == "GNUTLS_E_PREMATURE_TERMINATION")
        #expect(received == Array("partial".utf8), "data before the cut is still delivered")
    }

    @Test func endOfInputDuringTheHandshakeIsTruncation() throws {
        let client = try TLSContext(configuration: pki.clientConfiguration()).makeSession()
        try client.handshake()
        _ = client.takePendingOutput()
        client.feedEndOfInput()
        let error = #expect(throws: TLSError.self) { try client.handshake() }
        #expect(error?.kind == .truncated)
        #expect(error?.codeName == "GNUTLS_E_PREMATURE_TERMINATION")
        #expect(error?.reason.contains("before the handshake completed") == true, "\(String(describing: error))")
    }

    @Test func garbageFromThePeerIsAProtocolError() throws {
        let server = try TLSContext(configuration: pki.serverConfiguration()).makeSession()
        server.feed(Array("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".utf8))
        let error = #expect(throws: TLSError.self) { try server.handshake() }
        // 'G' (0x47) is no TLS record type: GnuTLS stops at the first record header.
        #expect(error?.kind == .protocolViolation, "\(String(describing: error))")
        #expect(error?.codeName == "GNUTLS_E_UNEXPECTED_PACKET")
        #expect(
            error?.reason
                == "handshake failed: the peer's bytes are not valid TLS (An unexpected TLS packet was received.)")
        #expect(server.state == .failed(try #require(error)))
        // The peer is told with an alert record (content type 21).
        #expect(server.takePendingOutput().first == 21)
    }

    @Test func tls13OnlyAgainstTLS12OnlyFailsWithAVersionErrorOnBothSides() throws {
        for (clientPolicy, serverPolicy) in [(TLSConfiguration.ProtocolPolicy.modern, Self.tls12Only), (Self.tls12Only, .modern)] {
            let pair = try SessionPair(
                client: pki.clientConfiguration(policy: clientPolicy), server: pki.serverConfiguration(policy: serverPolicy))
            #expect(!pair.handshake())
            #expect(pair.serverError?.kind == .protocolVersion, "\(String(describing: pair.serverError))")
            #expect(pair.clientError?.kind == .protocolVersion, "\(String(describing: pair.clientError))")
        }
    }

    @Test func aTLS11OnlyPeerIsRefusedWithAVersionErrorOnBothSides() throws {
        let tls11Only = TLSConfiguration.ProtocolPolicy.custom("NORMAL:-VERS-ALL:+VERS-TLS1.1")
        #expect(try TLSContext(configuration: pki.clientConfiguration(policy: tls11Only)).enabledVersions == [.tls11])
        // A TLS 1.1-only client against a server with the default policy, then the other way round.
        let toDefaultServer = try SessionPair(
            client: pki.clientConfiguration(policy: tls11Only), server: pki.serverConfiguration())
        let toDefaultClient = try SessionPair(
            client: pki.clientConfiguration(), server: pki.serverConfiguration(policy: tls11Only))
        for pair in [toDefaultServer, toDefaultClient] {
            #expect(!pair.handshake())
            #expect(pair.serverError?.kind == .protocolVersion, "\(String(describing: pair.serverError))")
            #expect(pair.clientError?.kind == .protocolVersion, "\(String(describing: pair.clientError))")
            #expect(pair.clientError?.alert == "Error in protocol version", "the server said why with an alert")
        }
        #expect(toDefaultServer.serverError?.reason.contains("(we accept TLS 1.3, TLS 1.2)") == true)
        #expect(toDefaultClient.serverError?.reason.contains("(we accept TLS 1.1)") == true)
    }

    @Test func alpnIsAgreed() throws {
        let pair = try SessionPair(
            client: pki.clientConfiguration(alpn: ["h2", "http/1.1"]),
            server: pki.serverConfiguration(alpn: ["http/1.1", "echo"]))
        #expect(pair.handshake())
        #expect(pair.client.applicationProtocol == "http/1.1")
        #expect(pair.server.applicationProtocol == "http/1.1")
    }

    @Test func alpnWithNoCommonProtocolFails() throws {
        let pair = try SessionPair(
            client: pki.clientConfiguration(alpn: ["h2"]), server: pki.serverConfiguration(alpn: ["echo"]))
        #expect(!pair.handshake())
        #expect(pair.serverError?.kind == .noApplicationProtocol, "\(String(describing: pair.serverError))")
        #expect(pair.clientError?.kind == .noApplicationProtocol, "\(String(describing: pair.clientError))")
    }

    @Test func noALPNOnEitherSideMeansNoProtocol() throws {
        let pair = try SessionPair(client: pki.clientConfiguration(), server: pki.serverConfiguration())
        #expect(pair.handshake())
        #expect(pair.client.applicationProtocol == nil)
    }

    @Test(arguments: [TLSConfiguration.ProtocolPolicy.intermediate, tls12Only])
    func resumptionWithATicket(policy: TLSConfiguration.ProtocolPolicy) throws {
        let clientContext = try TLSContext(configuration: pki.clientConfiguration(policy: policy))
        let serverContext = try TLSContext(configuration: pki.serverConfiguration(policy: policy))
        let first = SessionPair(client: try clientContext.makeSession(), server: try serverContext.makeSession())
        #expect(first.handshake())
        // TLS 1.3 tickets come after the handshake: carry one message so the client reads them.
        _ = try first.send(Array("ping".utf8), from: first.server, to: first.client)
        let data = try #require(first.client.resumptionData)
        #expect(!first.client.isResumed)

        let second = SessionPair(
            client: try clientContext.makeSession(serverName: nil, resumptionData: data),
            server: try serverContext.makeSession())
        #expect(second.handshake())
        #expect(second.client.isResumed)
        #expect(second.server.isResumed)
    }

    @Test func clientInitiatedRenegotiationIsRefused() throws {
        let pair = try SessionPair(
            client: pki.clientConfiguration(policy: Self.tls12Only), server: pki.serverConfiguration(policy: Self.tls12Only))
        #expect(pair.handshake())
        #expect(pair.server.negotiatedVersion == .tls12)
        // The client sends a new ClientHello inside the established session.
        #expect(pair.client._testOnly_attemptRenegotiation().code == -28)  // GNUTLS_E_AGAIN: hello sent
        pair.server.feed(pair.client.takePendingOutput())
        var received: [UInt8] = []
        // GnuTLS 3.7 refuses with alerts and ends the connection; the server never runs a second handshake.
        let error = #expect(throws: TLSError.self) { try pair.server.readAvailable(into: &received) }
        #expect(error?.reason.contains("renegotiate") == true, "\(String(describing: error))")
        #expect(received.isEmpty)
        #expect(pair.server.hasPendingOutput, "the refusal is sent as an alert")
        pair.client.feed(pair.server.takePendingOutput())
        let (code, alert) = pair.client._testOnly_attemptRenegotiation()
        // GnuTLS sends a no_renegotiation warning first, then the fatal alert.
        #expect(code == -16)  // GNUTLS_E_WARNING_ALERT_RECEIVED
        #expect(alert == "No renegotiation is allowed")
    }

    @Test func writingBeforeTheHandshakeIsAnError() throws {
        let client = try TLSContext(configuration: pki.clientConfiguration()).makeSession()
        let error = #expect(throws: TLSError.self) { try client.write(Array("early".utf8)) }
        #expect(error?.kind == .invalidState)
    }
}

/// An output sink that keeps what it is given.
final class CollectingSink: TLSOutputSink {
    var bytes: [UInt8] = []
    func takeOutput(_ bytes: UnsafeRawBufferPointer) { self.bytes += bytes }
}

/// OpenSSL clients (openssl s_client, Python's ssl) refuse a TLS 1.3 server's certificate with an alert they
/// send unencrypted, before switching to their handshake keys. GnuTLS, expecting an encrypted record, reports
/// a decryption failure, which read as "the peer's bytes are not valid TLS (Decryption has failed.)".
@Suite struct UnencryptedAlertTests {
    let pki = TestPKI.shared

    /// `openssl s_client -verify_return_error` sends exactly this after a TLS 1.3 ServerHello: a fatal
    /// unknown_ca alert in a plaintext record.
    static let plaintextUnknownCA: [UInt8] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x30]
    /// The middlebox-compatibility change_cipher_spec some clients send first.
    static let changeCipherSpec: [UInt8] = [0x14, 0x03, 0x03, 0x00, 0x01, 0x01]

    /// A server that has sent its TLS 1.3 flight, and the client's ClientHello it answered.
    func serverAwaitingTheClientsFinished() throws -> TLSSession {
        let client = try TLSContext(configuration: pki.clientConfiguration()).makeSession()
        let server = try TLSContext(configuration: pki.serverConfiguration()).makeSession()
        #expect(try client.handshake() == .needsInput)
        server.feed(client.takePendingOutput())
        #expect(try server.handshake() == .needsInput)
        #expect(server.hasPendingOutput)
        _ = server.takePendingOutput()
        return server
    }

    @Test(arguments: [false, true], [false, true])
    func aPlaintextAlertDuringTheHandshakeIsReportedAsThePeersAlert(
        afterChangeCipherSpec: Bool, oneByteAtATime: Bool
    ) throws {
        let server = try serverAwaitingTheClientsFinished()
        let bytes = (afterChangeCipherSpec ? Self.changeCipherSpec : []) + Self.plaintextUnknownCA
        var thrown: TLSError?
        do {
            if oneByteAtATime {
                for byte in bytes {
                    server.feed([byte])
                    try server.handshake()
                }
            } else {
                server.feed(bytes)
                server.feedEndOfInput()
                try server.handshake()
            }
        } catch {
            thrown = error
        }
        let error = try #require(thrown)
        #expect(error.kind == .alertReceived, "\(error)")
        #expect(error.alert == "CA is unknown")
        #expect(
            error.reason
                == "handshake failed: the peer sent a fatal 'CA is unknown' alert (it refused our certificate, or the "
                + "lack of one); the alert came unencrypted (GnuTLS reports it as a decryption failure)")
        #expect(!server.hasPendingOutput, "no alert answers the peer's own")
    }

    @Test func bytesThatAreNotAnAlertAreStillInvalidTLS() throws {
        let server = try serverAwaitingTheClientsFinished()
        server.feed([0x17, 0x03, 0x03, 0x00, 0x02, 0x02, 0x30])
        let error = #expect(throws: TLSError.self) { try server.handshake() }
        #expect(error?.kind == .protocolViolation, "\(String(describing: error))")
    }
}
