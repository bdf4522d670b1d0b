import Foundation
@testable import GnuTLS
import CGnuTLS
import Testing

/// OCSP stapling (issue #10) with responses made at test time by `openssl ocsp` from the test CA: what a server
/// staples, what it refuses to load, and what a client makes of a staple, a missing one and a bad one.
@Suite struct OCSPTests {
    let pki = TestPKI.shared

    static let policies: [TLSVersion: TLSConfiguration.ProtocolPolicy] = [
        .tls13: .modern, .tls12: .custom("NORMAL:-VERS-ALL:+VERS-TLS1.2"),
    ]

    func server(
        _ issued: CertificateAuthority.Issued, ocsp: [UInt8]?, version: TLSVersion = .tls13
    ) -> TLSConfiguration {
        .server(
            identity: .certificates(issued.chain, privateKey: issued.privateKey, ocspResponse: ocsp),
            policy: Self.policies[version]!)
    }

    func client(requiresStaple: Bool = false, version: TLSVersion = .tls13) -> TLSConfiguration {
        var configuration = pki.clientConfiguration(policy: Self.policies[version]!)
        configuration.requiresOCSPStaple = requiresStaple
        return configuration
    }

    func loadError(_ identity: TLSConfiguration.Identity) -> TLSError? {
        let error = #expect(throws: TLSError.self) { try TLSContext(configuration: .server(identity: identity)) }
        #expect(error?.kind == .configuration)
        return error
    }

    func describe(_ pair: SessionPair) -> String {
        "client: \(String(describing: pair.clientError)) server: \(String(describing: pair.serverError))"
    }

    // MARK: - A good staple

    @Test("A good response is stapled and verified, with its dates; a client that requires a staple completes too", arguments: [TLSVersion.tls13, .tls12])
    func goodStaple(version: TLSVersion) throws {
        let responder = try OCSPResponder(ca: pki.ca)
        let der = try responder.good(for: pki.server)
        #expect(try responder.text(of: der).contains("Cert Status: good"))
        let before = Date()
        let serverConfiguration = server(pki.server, ocsp: der, version: version)
        let context = try TLSContext(configuration: serverConfiguration)
        #expect(context.ocspResponses.count == 1)
        #expect(context.ocspResponses[0]?.certificateStatus == .good)
        #expect(context.ocspResponses[0]?.derBytes == der)

        for requiresStaple in [false, true] {
            let pair = try SessionPair(
                client: client(requiresStaple: requiresStaple, version: version), server: serverConfiguration)
            #expect(pair.handshake(), "requiresStaple \(requiresStaple): \(describe(pair))")
            #expect(pair.client.negotiatedVersion == version)
            #expect(pair.client.isOCSPStapleVerified)
            let staple = try #require(pair.client.stapledOCSPResponse)
            #expect(staple.certificateStatus == .good)
            #expect(staple.derBytes == der)
            // openssl signs now (to the second) and sets the next update a day on.
            #expect(abs(staple.thisUpdate.timeIntervalSince(before)) < 120, "\(staple)")
            #expect(abs(staple.producedAt.timeIntervalSince(before)) < 120, "\(staple)")
            let next = try #require(staple.nextUpdate)
            #expect(abs(next.timeIntervalSince(staple.thisUpdate) - 86400) <= 2, "\(staple)")
            #expect(staple.description.hasPrefix("good (produced "), "\(staple)")
            // The server reports nothing: it staples, it does not read a staple.
            #expect(pair.server.stapledOCSPResponse == nil)
        }
    }

    @Test("From a file: the DER written by openssl ocsp -respout is read when the context is built")
    func goodStapleFromFile() throws {
        let responder = try OCSPResponder(ca: pki.ca)
        let path = try responder.directory.write("server.der", bytes: try responder.good(for: pki.server))
        let certificate = responder.directory.file("server.crt")
        let key = responder.directory.file("server.key")
        try Certificate.writePEM(pki.server.chain, toFile: certificate)
        try pki.server.privateKey.write(toFile: key)
        let configuration = TLSConfiguration.server(
            identity: .files(certificateChain: certificate, privateKey: key, ocspResponse: path))
        let pair = try SessionPair(client: client(requiresStaple: true), server: configuration)
        #expect(pair.handshake(), "\(describe(pair))")
        #expect(pair.client.stapledOCSPResponse?.certificateStatus == .good)

        let missing = loadError(
            .files(certificateChain: certificate, privateKey: key, ocspResponse: responder.directory.file("none.der")))
        #expect(missing?.reason.contains("OCSP response file '\(responder.directory.file("none.der"))'") == true,
                "\(String(describing: missing))")
    }

    @Test("A leaf under an intermediate CA, the response signed by the intermediate: the client verifies it with the chain the server sent")
    func stapleFromIntermediate() throws {
        let intermediate = try pki.ca.issueIntermediate(commonName: "Test Intermediate")
        let leaf = try intermediate.issue(commonName: "localhost", dnsNames: ["localhost"], mustStaple: true)
        #expect(leaf.chain.count == 3)
        let responder = try OCSPResponder(ca: intermediate)
        let der = try responder.good(for: leaf)
        let pair = try SessionPair(client: client(requiresStaple: true), server: server(leaf, ocsp: der))
        #expect(pair.handshake(), "\(describe(pair))")
        #expect(pair.client.isOCSPStapleVerified)
        #expect(pair.client.stapledOCSPResponse?.derBytes == der)

        // Asked about the intermediate's leaf, the root's responder (even with the serial in its index) does not
        // know it: the request names the intermediate's name, openssl answers "unknown", and that is refused.
        let rootResponder = try OCSPResponder(ca: pki.ca)
        let wrongIssuer = try rootResponder.response(for: leaf.certificate, entries: [(leaf.certificate, .valid)])
        #expect(try OCSPStatus(derBytes: wrongIssuer).certificateStatus == .unknown)
        let error = loadError(.certificates(leaf.chain, privateKey: leaf.privateKey, ocspResponse: wrongIssuer))
        #expect(error?.reason == "the OCSP response says the responder does not know the certificate (status unknown)")
    }

    // MARK: - No staple

    @Test("No staple and the client requires one: refused for exactly that reason", arguments: [TLSVersion.tls13, .tls12])
    func missingStapleRequired(version: TLSVersion) throws {
        let pair = try SessionPair(
            client: client(requiresStaple: true, version: version), server: server(pki.server, ocsp: nil, version: version))
        #expect(!pair.handshake())
        let error = try #require(pair.clientError)
        #expect(error.kind == .verification)
        #expect(error.verification?.reasons == [.ocspStapleMissing(certificateRequiresIt: false)])
        #expect(error.reason == "handshake failed: the server's certificate was refused: no valid stapled OCSP response, and one is required")
        #expect(pair.client.stapledOCSPResponse == nil)
        #expect(error.verification?.chain == pki.server.chain)

        // Without the requirement the same server is fine.
        let relaxed = try SessionPair(client: client(version: version), server: server(pki.server, ocsp: nil, version: version))
        #expect(relaxed.handshake(), "\(describe(relaxed))")
        #expect(!relaxed.client.isOCSPStapleVerified)
        #expect(relaxed.client.stapledOCSPResponse == nil)
    }

    @Test("A chain-only client (no name check) that requires a staple: a good one passes, none is refused")
    func chainOnlyRequiresStaple() throws {
        var configuration = pki.clientConfiguration(serverName: nil, verification: .chainOnly)
        configuration.requiresOCSPStaple = true
        let responder = try OCSPResponder(ca: pki.ca)
        let stapled = try SessionPair(client: configuration, server: server(pki.server, ocsp: try responder.good(for: pki.server)))
        #expect(stapled.handshake(), "\(describe(stapled))")
        #expect(stapled.client.isOCSPStapleVerified)
        let bare = try SessionPair(client: configuration, server: server(pki.server, ocsp: nil))
        #expect(!bare.handshake())
        #expect(bare.clientError?.verification?.reasons == [.ocspStapleMissing(certificateRequiresIt: false)])
    }

    @Test("A must-staple certificate without a staple is refused by GnuTLS (missing OCSP status); with one it is accepted", arguments: [TLSVersion.tls13, .tls12])
    func mustStaple(version: TLSVersion) throws {
        let mustStaple = try pki.ca.issue(commonName: "localhost", dnsNames: ["localhost"], mustStaple: true)
        let bare = try SessionPair(client: client(version: version), server: server(mustStaple, ocsp: nil, version: version))
        #expect(!bare.handshake())
        let error = try #require(bare.clientError)
        #expect(error.kind == .verification)
        #expect(error.verification?.reasons == [.ocspStapleMissing(certificateRequiresIt: true)])
        #expect(error.verification.map { $0.status & GNUTLS_CERT_MISSING_OCSP_STATUS.rawValue != 0 } == true)
        #expect(error.reason.contains("certificate requires a stapled OCSP response (must-staple) and the server sent none that is valid"), "\(error.reason)")

        let responder = try OCSPResponder(ca: pki.ca)
        let stapled = try SessionPair(
            client: client(version: version), server: server(mustStaple, ocsp: try responder.good(for: mustStaple), version: version))
        #expect(stapled.handshake(), "\(describe(stapled))")
        #expect(stapled.client.isOCSPStapleVerified)
        #expect(stapled.client.stapledOCSPResponse?.certificateStatus == .good)
    }

    // MARK: - Refused when loaded

    @Test("A response for another certificate is refused when loaded, naming the response")
    func responseForAnotherCertificate() throws {
        let responder = try OCSPResponder(ca: pki.ca)
        let other = try pki.ca.issue(commonName: "other", dnsNames: ["other.test"])
        let der = try responder.good(for: other)
        let error = loadError(.certificates(pki.server.chain, privateKey: pki.server.privateKey, ocspResponse: der))
        #expect(error?.reason == "the OCSP response is for another certificate, not for the one it is to be stapled to")

        let path = try responder.directory.write("other.der", bytes: der)
        let fromFile = loadError(TLSConfiguration.Identity(
            certificateChain: .certificates(pki.server.chain), privateKey: .key(pki.server.privateKey),
            ocspResponse: .file(path)))
        #expect(fromFile?.reason == "OCSP response file '\(path)' is for another certificate, not for the one it is to be stapled to")

        // With several identities the error says which one; the right response on each loads.
        let beta = try pki.ca.issue(commonName: "beta.test", dnsNames: ["beta.test"])
        let identities: [TLSConfiguration.Identity] = [
            .certificates(pki.server.chain, privateKey: pki.server.privateKey, ocspResponse: try responder.good(for: pki.server)),
            .certificates(beta.chain, privateKey: beta.privateKey, ocspResponse: der),
        ]
        let second = #expect(throws: TLSError.self) { try TLSContext(configuration: .server(identities: identities)) }
        #expect(second?.reason == "the OCSP response (identity 2) is for another certificate, not for the one it is to be stapled to")
    }

    @Test("Each identity staples its own response: the client asking for the second name gets the second one")
    func responsePerIdentity() throws {
        let responder = try OCSPResponder(ca: pki.ca)
        let beta = try pki.ca.issue(commonName: "beta.test", dnsNames: ["beta.test"])
        let alphaResponse = try responder.good(for: pki.server)
        let betaResponse = try responder.good(for: beta)
        let configuration = TLSConfiguration.server(identities: [
            .certificates(pki.server.chain, privateKey: pki.server.privateKey, ocspResponse: alphaResponse),
            .certificates(beta.chain, privateKey: beta.privateKey, ocspResponse: betaResponse),
        ])
        for (name, expected, leaf) in [("localhost", alphaResponse, pki.server.certificate), ("beta.test", betaResponse, beta.certificate)] {
            var clientConfiguration = client(requiresStaple: true)
            clientConfiguration.serverName = name
            let pair = try SessionPair(client: clientConfiguration, server: configuration)
            #expect(pair.handshake(), "\(name): \(describe(pair))")
            #expect(pair.client.peerCertificates.first == leaf)
            #expect(pair.client.stapledOCSPResponse?.derBytes == expected, "\(name)")
        }
    }

    @Test("A 'revoked' response is refused when loaded, with the revocation date")
    func revokedResponseRefused() throws {
        let responder = try OCSPResponder(ca: pki.ca)
        // Index times are to the second.
        let revokedAt = Date(timeIntervalSince1970: floor(Date().timeIntervalSince1970) - 7200)
        let der = try responder.response(for: pki.server.certificate, entries: [(pki.server.certificate, .revoked(revokedAt))])
        let error = loadError(.certificates(pki.server.chain, privateKey: pki.server.privateKey, ocspResponse: der))
        #expect(error?.reason == "the OCSP response says the certificate was revoked on \(revokedAt.formatted(.iso8601))")
    }

    @Test("A response from a responder that does not know the certificate ('unknown') is refused when loaded")
    func unknownResponseRefused() throws {
        let responder = try OCSPResponder(ca: pki.ca)
        let der = try responder.response(for: pki.server.certificate, entries: [])
        #expect(try responder.text(of: der).contains("Cert Status: unknown"))
        #expect(try OCSPStatus(derBytes: der).certificateStatus == .unknown)
        let error = loadError(.certificates(pki.server.chain, privateKey: pki.server.privateKey, ocspResponse: der))
        #expect(error?.reason == "the OCSP response says the responder does not know the certificate (status unknown)")
    }

    @Test("A response past its next update is refused ('has expired'); one not valid yet too")
    func expiredResponseRefused() throws {
        let responder = try OCSPResponder(ca: pki.ca)
        let der = try responder.response(for: pki.server.certificate, entries: [(pki.server.certificate, .valid)], minutes: 1)
        let status = try OCSPStatus(derBytes: der)
        let next = try #require(status.nextUpdate)
        #expect(abs(next.timeIntervalSince(status.thisUpdate) - 60) <= 2)
        let leaf = try X509Certificate(der: pki.server.certificate.derBytes, source: "leaf")
        // Now it is current.
        #expect(try OCSPStatus.checkForStapling(der, leaf: leaf, source: "the response").certificateStatus == .good)
        #expect(throws: TLSError.configuration("the response has expired: its next update was due \(next.formatted(.iso8601)); fetch a new one")) {
            try OCSPStatus.checkForStapling(der, leaf: leaf, source: "the response", now: next.addingTimeInterval(1))
        }
        #expect(throws: TLSError.configuration("the response is not valid yet (this update \(status.thisUpdate.formatted(.iso8601)))")) {
            try OCSPStatus.checkForStapling(der, leaf: leaf, source: "the response", now: status.thisUpdate.addingTimeInterval(-3600))
        }
    }

    @Test("A response that really is past its next update: refused when loaded; stapled anyway, the client refuses it", arguments: [TLSVersion.tls13, .tls12])
    func expiredResponse(version: TLSVersion) throws {
        let responder = try OCSPResponder(ca: pki.ca)
        let der = try responder.expired(for: pki.server.certificate)
        let status = try OCSPStatus(derBytes: der)
        let next = try #require(status.nextUpdate)
        #expect(next < Date().addingTimeInterval(-86000))
        let error = loadError(.certificates(pki.server.chain, privateKey: pki.server.privateKey, ocspResponse: der))
        #expect(error?.reason == "the OCSP response has expired: its next update was due \(next.formatted(.iso8601)); fetch a new one")

        for requiresStaple in [false, true] {
            let pair = try handshake(stapling: der, requiresStaple: requiresStaple, version: version)
            let refused = try #require(pair.clientError, "the client accepted an expired staple")
            #expect(refused.kind == .verification)
            #expect(refused.verification?.reasons == [.invalidOCSPResponse], "\(refused)")
            #expect(refused.reason == "handshake failed: the server's certificate was refused: the stapled OCSP response is not valid (wrong signer, another certificate, or out of date)")
        }
    }

    @Test("GnuTLS's 'revocation data superseded' bit is a bad staple only when a staple came (an out-of-date CRL sets it too)")
    func supersededMeansTheStapleOnlyWithOne() {
        let status = GNUTLS_CERT_INVALID.rawValue | GNUTLS_CERT_REVOCATION_DATA_SUPERSEDED.rawValue
        let stapled = VerificationFailure.decode(
            status: status, chain: pki.server.chain, checkedName: "localhost", receivedOCSPStaple: true)
        #expect(stapled.reasons == [.invalidOCSPResponse])
        let unstapled = VerificationFailure.decode(status: status, chain: pki.server.chain, checkedName: "localhost")
        #expect(!unstapled.reasons.contains(.invalidOCSPResponse), "\(unstapled)")
        #expect(unstapled.description.contains("superseded"), "\(unstapled)")
    }

    @Test("Bytes that are not an OCSP response, and a response whose status is an error, are clear errors")
    func notAResponse() throws {
        let garbage = Array("not an OCSP response".utf8)
        let error = loadError(.certificates(pki.server.chain, privateKey: pki.server.privateKey, ocspResponse: garbage))
        #expect(error?.reason.hasPrefix("the OCSP response is not a DER OCSP response (") == true, "\(String(describing: error))")
        #expect(throws: TLSError.self) { try OCSPStatus(derBytes: []) }

        // OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED } with no responseBytes, as responders send errors.
        for (code, words) in [(6, "unauthorized"), (3, "try later"), (1, "malformed request"), (2, "internal error"), (5, "signature required")] {
            let der: [UInt8] = [0x30, 0x03, 0x0A, 0x01, UInt8(code)]
            let refused = loadError(.certificates(pki.server.chain, privateKey: pki.server.privateKey, ocspResponse: der))
            #expect(refused?.reason == "the OCSP response is not a successful response (the responder said: \(words))")
            #expect(throws: TLSError.configuration("the OCSP response is not a successful response (the responder said: \(words))")) {
                try OCSPStatus(derBytes: der)
            }
        }
    }

    // MARK: - What a client makes of a bad staple

    @Test("A revoked response decodes to .revoked(at:) with the index's revocation time")
    func revokedDecodes() throws {
        let responder = try OCSPResponder(ca: pki.ca)
        let revokedAt = Date(timeIntervalSince1970: floor(Date().timeIntervalSince1970) - 86400 * 3)
        let der = try responder.response(for: pki.server.certificate, entries: [(pki.server.certificate, .revoked(revokedAt))])
        #expect(try responder.text(of: der).contains("Cert Status: revoked"))
        let status = try OCSPStatus(derBytes: der)
        #expect(status.certificateStatus == .revoked(at: revokedAt))
        #expect(status.certificateStatus.description == "revoked on \(revokedAt.formatted(.iso8601))")
    }

    /// A handshake with a server that staples `der` unchecked.
    func handshake(stapling der: [UInt8], leaf: CertificateAuthority.Issued? = nil, requiresStaple: Bool, version: TLSVersion = .tls13) throws -> SessionPair {
        let context = try TLSContext(configuration: server(leaf ?? pki.server, ocsp: nil, version: version))
        try context.stapleUnchecked(der)
        let clientSession = try TLSContext(configuration: client(requiresStaple: requiresStaple, version: version)).makeSession()
        let pair = SessionPair(client: clientSession, server: try context.makeSession())
        pair.handshake()
        return pair
    }

    @Test("A server that staples a revoked response: the client refuses the certificate as revoked", arguments: [TLSVersion.tls13, .tls12])
    func revokedStapleRefused(version: TLSVersion) throws {
        let responder = try OCSPResponder(ca: pki.ca)
        let der = try responder.response(
            for: pki.server.certificate, entries: [(pki.server.certificate, .revoked(Date().addingTimeInterval(-60)))])
        let pair = try handshake(stapling: der, requiresStaple: false, version: version)
        let error = try #require(pair.clientError, "the client accepted a revoked certificate")
        #expect(error.kind == .verification)
        #expect(error.verification?.reasons == [.revoked])
        #expect(!pair.client.isHandshakeComplete)
    }

    @Test("A staple with a bad signature, for another certificate, or signed by another CA is refused as an invalid OCSP response", arguments: [TLSVersion.tls13, .tls12])
    func invalidStaplesRefused(version: TLSVersion) throws {
        let responder = try OCSPResponder(ca: pki.ca)
        let stranger = try OCSPResponder(ca: pki.ca, signer: pki.otherCA)
        let other = try pki.ca.issue(commonName: "other", dnsNames: ["other.test"])
        let cases: [(String, [UInt8])] = [
            ("bad signature", try responder.response(for: pki.server.certificate, entries: [(pki.server.certificate, .valid)], badSignature: true)),
            ("another certificate", try responder.good(for: other)),
            ("another CA", try stranger.response(for: pki.server.certificate, entries: [(pki.server.certificate, .valid)])),
        ]
        for (name, der) in cases {
            for requiresStaple in [false, true] {
                let pair = try handshake(stapling: der, requiresStaple: requiresStaple, version: version)
                let error = try #require(pair.clientError, "\(name): the client accepted it")
                #expect(error.kind == .verification, "\(name)")
                #expect(error.verification?.reasons == [.invalidOCSPResponse], "\(name), requiresStaple \(requiresStaple)")
                #expect(error.reason.contains("the stapled OCSP response is not valid"), "\(name): \(error.reason)")
            }
        }
    }

    @Test("A staple that says 'unknown' is not a valid staple: a client that requires one refuses it", arguments: [TLSVersion.tls13, .tls12])
    func unknownStapleIsNotValid(version: TLSVersion) throws {
        let responder = try OCSPResponder(ca: pki.ca)
        let der = try responder.response(for: pki.server.certificate, entries: [])
        let relaxed = try handshake(stapling: der, requiresStaple: false, version: version)
        #expect(relaxed.clientError == nil, "\(describe(relaxed))")
        #expect(relaxed.client.stapledOCSPResponse?.certificateStatus == .unknown)
        #expect(!relaxed.client.isOCSPStapleVerified)

        let strict = try handshake(stapling: der, requiresStaple: true, version: version)
        let error = try #require(strict.clientError, "a client that requires a staple accepted an 'unknown' one")
        #expect(error.kind == .verification)
        #expect(error.verification?.reasons == [.ocspStapleMissing(certificateRequiresIt: false)])
        #expect(error.reason == "handshake failed: the server's certificate was refused: no valid stapled OCSP response, and one is required")
    }

    @Test("A must-staple certificate with a staple that says 'unknown' is refused", arguments: [TLSVersion.tls13, .tls12])
    func unknownStapleForMustStaple(version: TLSVersion) throws {
        let responder = try OCSPResponder(ca: pki.ca)
        let mustStaple = try pki.ca.issue(commonName: "localhost", dnsNames: ["localhost"], mustStaple: true)
        let unknownForMustStaple = try responder.response(for: mustStaple.certificate, entries: [])
        let refused = try handshake(stapling: unknownForMustStaple, leaf: mustStaple, requiresStaple: false, version: version)
        let mustError = try #require(refused.clientError, "a must-staple certificate was accepted with an 'unknown' staple")
        #expect(mustError.verification?.reasons == [.ocspStapleMissing(certificateRequiresIt: true)])
    }
}
