import Foundation
import Synchronization
@testable import GnuTLS
import Testing

/// Issue #10 in the session layer: several identities chosen by SNI, a context chosen per connection, public-key
/// pins, the application's own check, OCSP stapling and keying-material export. Every handshake runs in memory.
@Suite struct ProductionTests {
    let pki = TestPKI.shared

    static let alpha = try! TestPKI.shared.ca.issue(commonName: "alpha.test", dnsNames: ["alpha.test"])
    static let beta = try! TestPKI.shared.ca.issue(commonName: "beta.test", dnsNames: ["beta.test"])

    func identity(_ issued: CertificateAuthority.Issued) -> TLSConfiguration.Identity {
        .certificates(issued.chain, privateKey: issued.privateKey)
    }

    func twoNames() -> TLSConfiguration {
        .server(identities: [identity(Self.alpha), identity(Self.beta)], trustRoots: .certificates([pki.ca.certificate]))
    }

    func leafSeen(asking serverName: String?, server: TLSConfiguration) throws -> Certificate? {
        let verification: TLSConfiguration.CertificateVerification = serverName == nil ? .chainOnly : .full
        let pair = try SessionPair(
            client: pki.clientConfiguration(serverName: serverName, verification: verification), server: server)
        #expect(pair.handshake(), "client: \(String(describing: pair.clientError)) server: \(String(describing: pair.serverError))")
        return pair.client.peerCertificates.first
    }

    @Test("Two identities: each name gets its own certificate; no SNI, and a name neither covers, get the first")
    func sniChoosesTheIdentity() throws {
        let server = twoNames()
        #expect(try leafSeen(asking: "beta.test", server: server) == Self.beta.certificate)
        #expect(try leafSeen(asking: "alpha.test", server: server) == Self.alpha.certificate)
        #expect(try leafSeen(asking: nil, server: server) == Self.alpha.certificate)
        var unknown = pki.clientConfiguration(serverName: "gamma.test", verification: .chainOnly)
        unknown.serverName = "gamma.test"
        let pair = try SessionPair(client: unknown, server: server)
        #expect(pair.handshake())
        #expect(pair.client.peerCertificates.first == Self.alpha.certificate)
        #expect(pair.server.requestedServerName == "gamma.test")
        let context = try TLSContext(configuration: server)
        #expect(context.certificateChains.map { $0.first } == [Self.alpha.certificate, Self.beta.certificate])
    }

    @Test("An RSA and an ECDSA certificate for one name: a client that signs only with ECDSA gets the ECDSA one, an RSA-only client the RSA one")
    func keyTypeChoosesTheIdentity() throws {
        let rsa = try pki.ca.issue(commonName: "localhost", dnsNames: ["localhost"], keyAlgorithm: .rsa(bits: 2048))
        let ecdsa = try pki.ca.issue(commonName: "localhost", dnsNames: ["localhost"])
        let server = TLSConfiguration.server(
            identities: [identity(rsa), identity(ecdsa)], trustRoots: .certificates([pki.ca.certificate]))
        let base = "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-SIGN-ALL"
        for (signatures, expected) in [
            ("+SIGN-ECDSA-SECP256R1-SHA256:+SIGN-ECDSA-SHA256", ecdsa.certificate),
            ("+SIGN-RSA-PSS-RSAE-SHA256:+SIGN-RSA-SHA256", rsa.certificate),
        ] {
            let client = pki.clientConfiguration(policy: .custom(base + ":" + signatures))
            let pair = try SessionPair(client: client, server: server)
            #expect(pair.handshake(), "\(signatures): \(String(describing: pair.clientError)) / \(String(describing: pair.serverError))")
            #expect(pair.client.peerCertificates.first == expected, "\(signatures)")
        }
    }

    @Test("A context selector: the session reports the hello's name and ALPN before GnuTLS reads it, and the chosen context's certificate is served")
    func selectorChoosesTheContext() throws {
        let betaContext = try TLSContext(configuration: .server(identity: identity(Self.beta), applicationProtocols: ["h2"]))
        var server = pki.serverConfiguration(Self.alpha)
        server.contextSelector = .callback { _, answer in answer(.success(nil)) }
        let pair = try SessionPair(
            client: pki.clientConfiguration(serverName: "beta.test", alpn: ["h2", "http/1.1"]), server: server)
        #expect(!pair.handshake())
        #expect(pair.serverError == nil && pair.clientError == nil)
        // Asked again before an answer, the session still waits.
        #expect(try pair.server.handshake() == .needsInput)
        try pair.server.selectContext(betaContext)
        #expect(pair.handshake(), "client: \(String(describing: pair.clientError)) server: \(String(describing: pair.serverError))")
        #expect(pair.client.peerCertificates.first == Self.beta.certificate)
        #expect(pair.server.context === betaContext)
        // The chosen context's ALPN list applies too.
        #expect(pair.client.applicationProtocol == "h2")
    }

    @Test("The hello the selector sees carries the client's SNI and ALPN; nil keeps the starting context")
    func selectorSeesTheHello() throws {
        var server = pki.serverConfiguration(Self.alpha)
        server.contextSelector = .callback { _, answer in answer(.success(nil)) }
        let serverSession = try TLSContext(configuration: server).makeSession()
        let client = try TLSContext(configuration: pki.clientConfiguration(serverName: "alpha.test", alpn: ["h2", "http/1.1"])).makeSession()
        #expect(try client.handshake() == .needsInput)
        let hello = client.takePendingOutput()
        // Trickled: incomplete until the last byte.
        for byte in hello.dropLast() {
            serverSession.feed([byte])
            #expect(try serverSession.handshake() == .needsInput)
        }
        serverSession.feed([hello.last!])
        #expect(try serverSession.handshake() == .needsContext(ClientHelloInfo(serverName: "alpha.test", applicationProtocols: ["h2", "http/1.1"])))
        try serverSession.selectContext(nil)
        let pair = SessionPair(client: client, server: serverSession)
        _ = try serverSession.handshake()
        #expect(pair.handshake())
        #expect(client.peerCertificates.first == Self.alpha.certificate)
    }

    @Test("A selector that fails ends that handshake with a handshake_failure alert and an error of its own kind")
    func failedSelectionEndsOnlyThatHandshake() throws {
        var server = pki.serverConfiguration(Self.alpha)
        server.contextSelector = .callback { _, answer in answer(.success(nil)) }
        struct NoSuchHost: Error, CustomStringConvertible { var description: String { "no site is configured for beta.test" } }
        let pair = try SessionPair(client: pki.clientConfiguration(serverName: "beta.test"), server: server)
        #expect(!pair.handshake())
        pair.server.failContextSelection(NoSuchHost())
        #expect(!pair.handshake())
        guard case .failed(let error) = pair.server.state else {
            Issue.record("the server session did not fail: \(pair.server.state)")
            return
        }
        #expect(error.kind == .contextSelectionFailed)
        #expect(error.reason == "handshake failed: the context selector failed: no site is configured for beta.test")
        #expect(pair.clientError?.kind == .noSharedAlgorithm)
        #expect(pair.clientError?.alert == "Handshake failed")
    }

    @Test("A ClientHello that is not one (or not in handshake records) is left to GnuTLS, which refuses it as without a selector")
    func notAHelloIsLeftToGnuTLS() {
        let garbage: [UInt8] = Array("GET / HTTP/1.1\r\n\r\n".utf8)
        #expect(garbage.withUnsafeBytes { ClientHelloPeek.parse($0) } == .notAHello)
        let wrongMessage: [UInt8] = [22, 3, 1, 0, 4, 2, 0, 0, 0]
        #expect(wrongMessage.withUnsafeBytes { ClientHelloPeek.parse($0) } == .notAHello)
        let cut: [UInt8] = [22, 3, 1, 0, 200, 1, 0, 0, 196]
        #expect(cut.withUnsafeBytes { ClientHelloPeek.parse($0) } == .incomplete)
        let empty: [UInt8] = []
        #expect(empty.withUnsafeBytes { ClientHelloPeek.parse($0) } == .incomplete)
    }

    @Test("A hello trickled in tiny records: the peek is read again once per record, and more than 32 records leave it to GnuTLS")
    func trickledHelloIsBounded() {
        var needed = 0
        let cut: [UInt8] = [22, 3, 1, 0, 200, 1, 0, 0, 196]
        #expect(cut.withUnsafeBytes { ClientHelloPeek.parse($0, needed: &needed) } == .incomplete)
        #expect(needed == 205)
        // A handshake message of 100 bytes sent one byte per record.
        var records: [UInt8] = []
        for byte in [1, 0, 0, 96] + [UInt8](repeating: 0, count: 96) as [UInt8] { records += [22, 3, 1, 0, 1, byte] }
        #expect(records.withUnsafeBytes { ClientHelloPeek.parse($0) } == .notAHello)
        let fewer = Array(records.prefix(6 * ClientHelloPeek.maximumRecords))
        #expect(fewer.withUnsafeBytes { ClientHelloPeek.parse($0, needed: &needed) } == .incomplete)
        #expect(needed == fewer.count + 1)
    }

    // MARK: - Pins and the application's check

    @Test("A pin of the server's key passes; a wrong pin fails naming both hashes; a pin does not replace verification")
    func publicKeyPins() throws {
        let right = PublicKeyPin(certificate: pki.server.certificate)
        let wrong = PublicKeyPin(certificate: Self.alpha.certificate)
        #expect(try PublicKeyPin(right.description) == right)

        var client = pki.clientConfiguration()
        client.pinnedPublicKeys = [wrong, right]
        let good = try SessionPair(client: client, server: pki.serverConfiguration())
        #expect(good.handshake(), "\(String(describing: good.clientError))")

        client.pinnedPublicKeys = [wrong]
        let bad = try SessionPair(client: client, server: pki.serverConfiguration())
        #expect(!bad.handshake())
        #expect(bad.clientError?.kind == .verification)
        #expect(bad.clientError?.verification?.reasons == [.publicKeyNotPinned(presented: right, expected: [wrong])])
        // The refused chain comes with the failure, as for GnuTLS's own refusals (tls-client --verbose prints it).
        #expect(bad.clientError?.verification?.chain == pki.server.chain)
        let reason = bad.clientError?.reason ?? ""
        #expect(reason.contains(right.description) && reason.contains(wrong.description), "\(reason)")
        #expect(bad.serverError?.alert == "Certificate is bad")

        // Pinned, but from a CA the client does not trust: still refused for the issuer.
        var untrusting = pki.clientConfiguration(trust: [pki.otherCA.certificate])
        untrusting.pinnedPublicKeys = [right]
        let unverified = try SessionPair(client: untrusting, server: pki.serverConfiguration())
        #expect(!unverified.handshake())
        #expect(unverified.clientError?.verification?.reasons == [.untrustedIssuer])
    }

    @Test("curl's pin syntax: a list separated by ';', and clear errors for what is not a pin")
    func pinSyntax() throws {
        let pin = PublicKeyPin(certificate: pki.server.certificate)
        #expect(try PublicKeyPin.parseList("\(pin);\(PublicKeyPin(certificate: Self.beta.certificate))").count == 2)
        #expect(throws: TLSError.configuration("public-key pin 'abc' must start with 'sha256//'")) { try PublicKeyPin("abc") }
        #expect(throws: TLSError.configuration("public-key pin 'sha256//AAAA' is not the base64 of a 32-byte SHA-256 hash")) {
            try PublicKeyPin("sha256//AAAA")
        }
    }

    @Test("The application's check refuses a client certificate whose SAN is not on its list; the client gets an alert, others get in")
    func applicationCheck() throws {
        let blocked = try pki.ca.issue(commonName: "mallory", dnsNames: ["mallory.test"], usage: .client)
        let allowed = try pki.ca.issue(commonName: "alice", dnsNames: ["alice.test"], usage: .client)
        var server = pki.serverConfiguration(clientAuthentication: .requireAndVerify)
        server.peerCheck = { chain in
            let names = chain.first?.alternativeNames ?? []
            return names.contains(.dns("alice.test")) ? .accept : .reject(reason: "\(names) is not on the allow list")
        }
        let refused = try SessionPair(client: pki.clientConfiguration(identity: blocked), server: server)
        #expect(!refused.handshake())
        #expect(refused.serverError?.kind == .rejectedByApplication)
        #expect(refused.serverError?.reason == "handshake failed: the application refused the client's certificate: [DNS:mallory.test] is not on the allow list")
        // Under TLS 1.3 the client's handshake is over before the server checks its certificate: the alert
        // comes as the next record it reads.
        pair(refused, deliversAlertToClient: "Certificate is bad")

        let admitted = try SessionPair(client: pki.clientConfiguration(identity: allowed), server: server)
        #expect(admitted.handshake(), "\(String(describing: admitted.serverError))")
        // Verification still comes first: a stranger's certificate fails it, not the application's check.
        let stranger = try SessionPair(client: pki.clientConfiguration(identity: pki.otherClient), server: server)
        #expect(!stranger.handshake())
        #expect(stranger.serverError?.kind == .verification)
    }

    func pair(_ pair: SessionPair, deliversAlertToClient alert: String) {
        if let error = pair.clientError {
            #expect(error.kind == .alertReceived)
            #expect(error.alert == alert)
            return
        }
        pair.transfer(from: pair.server, to: pair.client)
        var sink: [UInt8] = []
        let error = #expect(throws: TLSError.self) { try pair.client.readAvailable(into: &sink) }
        #expect(error?.kind == .alertReceived)
        #expect(error?.alert == alert)
    }

    @Test("A client's own check sees the server's chain and can refuse it")
    func clientApplicationCheck() throws {
        var client = pki.clientConfiguration()
        client.peerCheck = { chain in chain.count == 2 ? .reject(reason: "expected a chain of one") : .accept }
        let pair = try SessionPair(client: client, server: pki.serverConfiguration())
        #expect(!pair.handshake())
        #expect(pair.clientError?.kind == .rejectedByApplication)
        #expect(pair.clientError?.reason == "handshake failed: the application refused the server's certificate: expected a chain of one")
    }

    // MARK: - Keying material

    @Test("Exported keying material is the same on both ends, differs by label and context, and needs a completed handshake", arguments: [TLSConfiguration.ProtocolPolicy.intermediate, .custom("NORMAL:-VERS-ALL:+VERS-TLS1.2")])
    func keyingMaterial(policy: TLSConfiguration.ProtocolPolicy) throws {
        let pair = try SessionPair(client: pki.clientConfiguration(policy: policy), server: pki.serverConfiguration(policy: policy))
        #expect(throws: TLSError.invalidState("keying material can be exported only after the handshake")) {
            try pair.client.exportKeyingMaterial(label: "EXPORTER-test", count: 32)
        }
        #expect(pair.handshake())
        let client = try pair.client.exportKeyingMaterial(label: "EXPORTER-test", count: 32)
        #expect(client.count == 32)
        #expect(try pair.server.exportKeyingMaterial(label: "EXPORTER-test", count: 32) == client)
        #expect(try pair.server.exportKeyingMaterial(label: "EXPORTER-other", count: 32) != client)
        let withContext = try pair.client.exportKeyingMaterial(label: "EXPORTER-test", context: [1, 2, 3], count: 32)
        #expect(withContext != client)
        #expect(try pair.server.exportKeyingMaterial(label: "EXPORTER-test", context: [1, 2, 3], count: 32) == withContext)
    }

    // MARK: - Identities from every source, and redaction

    @Test("A PKCS #11 URL with a PIN in it never shows the PIN")
    func pkcs11URLRedaction() {
        let identity = TLSConfiguration.Identity.pkcs11(
            certificateChain: .file("/srv/tls/server.crt"),
            privateKey: "pkcs11:token=web;object=key;type=private?pin-value=123456", pin: .value("654321"))
        let text = "\(identity) \(String(reflecting: identity))"
        var dumped = ""
        dump(identity, to: &dumped)
        for rendering in [text, dumped] {
            #expect(!rendering.contains("123456") && !rendering.contains("654321"), "\(rendering)")
            #expect(rendering.contains("pkcs11:token=web;object=key;type=private?pin-value=<redacted>"), "\(rendering)")
        }
    }

    @Test("pin-source in a PKCS #11 URL: the file path (plain, file:, percent-encoded) and the URL without it")
    func pinSourceAttribute() {
        #expect(PKCS11.pinSource(in: "pkcs11:token=a;object=b?pin-source=/etc/pin")! == ("/etc/pin", "pkcs11:token=a;object=b"))
        #expect(PKCS11.pinSource(in: "pkcs11:token=a?module-name=x&pin-source=file:/etc/my%20pin")! == ("/etc/my pin", "pkcs11:token=a?module-name=x"))
        #expect(PKCS11.pinSource(in: "pkcs11:token=a?pin-value=1") == nil)
        #expect(PKCS11.pinSource(in: "pkcs11:token=a;object=b") == nil)
    }

    @Test("Several identities: a broken one is named by its position")
    func brokenSecondIdentity() throws {
        let broken = TLSConfiguration.Identity.certificates(Self.beta.chain, privateKey: Self.alpha.privateKey)
        let error = #expect(throws: TLSError.self) {
            try TLSContext(configuration: .server(identities: [identity(Self.alpha), broken]))
        }
        #expect(error?.kind == .configuration)
        #expect(error?.reason == "the private key (identity 2) does not match the certificate in the certificate chain (identity 2)")
    }
}

/// Reload: a new context for new sessions, the old one kept by sessions in flight, a failed reload that changes
/// nothing, and reloads racing handshakes on several threads.
@Suite struct ReloadTests {
    let pki = TestPKI.shared

    func write(_ issued: CertificateAuthority.Issued, to folder: URL) throws {
        try issued.privateKey.write(toFile: folder.appendingPathComponent("server.key").path)
        try Certificate.writePEM(issued.chain, toFile: folder.appendingPathComponent("server.crt").path)
    }

    func folder() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("reload-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    @Test("A reload rereads the files: new sessions get the new certificate, a session made before keeps the old one, and a broken file changes nothing")
    func reloadRereadsFiles() throws {
        let directory = try folder()
        defer { try? FileManager.default.removeItem(at: directory) }
        let first = try pki.ca.issue(commonName: "localhost", dnsNames: ["localhost"])
        try write(first, to: directory)
        let reloadable = try ReloadableTLSContext(
            configuration: .server(
                identity: .files(
                    certificateChain: directory.appendingPathComponent("server.crt").path,
                    privateKey: directory.appendingPathComponent("server.key").path)))
        let inFlight = try reloadable.current.makeSession()

        let second = try pki.ca.issue(commonName: "localhost", dnsNames: ["localhost"])
        try write(second, to: directory)
        let reloaded = try reloadable.reload()
        #expect(reloadable.generation == 1)
        #expect(reloaded.certificateChain.first == second.certificate)
        // Tickets issued before the reload still decrypt after it: the generated key carried over.
        #expect(reloaded.ticketKey === inFlight.context.ticketKey)

        let client = try TLSContext(configuration: pki.clientConfiguration()).makeSession()
        let old = SessionPair(client: client, server: inFlight)
        #expect(old.handshake())
        #expect(client.peerCertificates.first == first.certificate)
        let fresh = SessionPair(
            client: try TLSContext(configuration: pki.clientConfiguration()).makeSession(),
            server: try reloadable.current.makeSession())
        #expect(fresh.handshake())
        #expect(fresh.client.peerCertificates.first == second.certificate)

        try "garbage".write(to: directory.appendingPathComponent("server.key"), atomically: true, encoding: .utf8)
        let error = #expect(throws: TLSError.self) { try reloadable.reload() }
        #expect(error?.kind == .configuration)
        #expect(error?.reason.hasPrefix("private key file '\(directory.appendingPathComponent("server.key").path)' holds no usable private key") == true, "\(String(describing: error))")
        #expect(reloadable.generation == 1)
        #expect(reloadable.current === reloaded)
    }

    @Test("Reloads while two threads make sessions and complete handshakes: every handshake completes")
    func reloadRacesHandshakes() throws {
        let identities = try (0..<3).map { _ in try pki.ca.issue(commonName: "localhost", dnsNames: ["localhost"]) }
        let configurations = identities.map { pki.serverConfiguration($0) }
        let reloadable = try ReloadableTLSContext(configuration: configurations[0])
        let clientContext = try TLSContext(configuration: pki.clientConfiguration())
        let failures = Mutex(0)
        let done = Mutex(0)
        // Bounded in CPU as well as count: the suite runs tests in parallel on two cores, and some of them wait
        // on event loops with deadlines.
        let threads = (0..<2).map { _ in
            Thread {
                for _ in 0..<15 {
                    do {
                        let pair = SessionPair(client: try clientContext.makeSession(), server: try reloadable.current.makeSession())
                        if !pair.handshake() { failures.withLock { $0 += 1 } }
                    } catch {
                        failures.withLock { $0 += 1 }
                    }
                }
                done.withLock { $0 += 1 }
            }
        }
        for thread in threads { thread.start() }
        var reloads = 0
        while done.withLock({ $0 }) < 2 {
            try reloadable.reload(configuration: configurations[reloads % 3])
            reloads += 1
            Thread.sleep(forTimeInterval: 0.002)
        }
        #expect(failures.withLock { $0 } == 0)
        #expect(reloads > 0 && reloadable.generation == reloads)
    }
}

@Suite struct CertificateRequestTests {
    let pki = TestPKI.shared

    @Test("CA names in the certificate request are a setting: off, a client from another CA sends its certificate and is refused for its issuer; on, a GnuTLS client withholds it")
    func caNamesInTheCertificateRequest() throws {
        var server = pki.serverConfiguration(clientAuthentication: .requireAndVerify)
        let silent = try SessionPair(client: pki.clientConfiguration(identity: pki.otherClient), server: server)
        #expect(!silent.handshake())
        #expect(silent.serverError?.kind == .verification)
        #expect(silent.serverError?.verification?.reasons == [.untrustedIssuer])

        server.sendsCertificateAuthorityNames = true
        let named = try SessionPair(client: pki.clientConfiguration(identity: pki.otherClient), server: server)
        #expect(!named.handshake())
        #expect(named.serverError?.kind == .certificateRequired)
        // A client from the listed CA still gets in.
        let trusted = try SessionPair(client: pki.clientConfiguration(identity: pki.client), server: server)
        #expect(trusted.handshake(), "\(String(describing: trusted.serverError))")
    }
}
