import Foundation
@testable import GnuTLS
import Synchronization
import Testing

/// Keys (and a certificate) in a PKCS #11 token (issue #10): a SoftHSM 2 token made at test time
/// (``SoftHSMToken``). Serialized, and the only suite that opens PKCS #11: SoftHSM reads its configuration once
/// per process.
@Suite(.serialized) struct PKCS11Tests {
    let pki = TestPKI.shared

    func handshake(_ identity: TLSConfiguration.Identity, policy: TLSConfiguration.ProtocolPolicy = .intermediate) throws -> SessionPair {
        let pair = try SessionPair(
            client: pki.clientConfiguration(policy: policy), server: .server(identity: identity, policy: policy))
        #expect(pair.handshake(), "client: \(String(describing: pair.clientError)) server: \(String(describing: pair.serverError))")
        return pair
    }

    func loadError(_ identity: TLSConfiguration.Identity) -> TLSError? {
        let error = #expect(throws: TLSError.self) { try TLSContext(configuration: .server(identity: identity)) }
        #expect(error?.kind == .configuration)
        if let error {
            // The PIN is never shown, whichever way it was given.
            #expect(!"\(error) \(error.reason)".contains(SoftHSMToken.pin), "\(error)")
            #expect(!"\(error) \(error.reason)".contains("wrong-pin"), "\(error)")
        }
        return error
    }

    @Test("The server's key in the token, the PIN in the URL: handshakes (TLS 1.3 and 1.2) complete with the right certificate")
    func keyWithPINInURL() throws {
        let token = try SoftHSMToken.get()
        let identity = TLSConfiguration.Identity.pkcs11(
            certificateChain: .certificates(token.server.chain), privateKey: token.url("server", pinValue: SoftHSMToken.pin))
        for policy in [TLSConfiguration.ProtocolPolicy.modern, .custom("NORMAL:-VERS-ALL:+VERS-TLS1.2")] {
            let pair = try handshake(identity, policy: policy)
            #expect(pair.client.peerCertificates.first == token.server.certificate, "\(policy)")
            #expect(pair.client.negotiatedVersion == (policy == .modern ? .tls13 : .tls12))
        }
        // The configuration's description hides the PIN.
        let text = "\(TLSConfiguration.server(identity: identity))"
        #expect(!text.contains(SoftHSMToken.pin) && text.contains("pin-value=<redacted>"), "\(text)")
    }

    @Test("An RSA key in the token signs TLS 1.3 (RSA-PSS) and TLS 1.2 handshakes")
    func rsaKey() throws {
        let token = try SoftHSMToken.get()
        let identity = TLSConfiguration.Identity.pkcs11(
            certificateChain: .certificates(token.rsa.chain), privateKey: token.url("rsa"), pin: .value(SoftHSMToken.pin))
        for policy in [TLSConfiguration.ProtocolPolicy.modern, .custom("NORMAL:-VERS-ALL:+VERS-TLS1.2")] {
            let pair = try handshake(identity, policy: policy)
            #expect(pair.client.peerCertificates.first == token.rsa.certificate, "\(policy)")
        }
    }

    @Test("The PIN as .value and from a callback (told the token's label and attempt 1)")
    func pinGivenOtherwise() throws {
        let token = try SoftHSMToken.get()
        do {
            let byValue = try handshake(.pkcs11(
                certificateChain: .certificates(token.server.chain), privateKey: token.url("server"), pin: .value(SoftHSMToken.pin)))
            #expect(byValue.client.peerCertificates.first == token.server.certificate)
        }
        // (PKCS #11 logs an application in per token: while a key of the token is loaded, another from it loads
        // without a PIN. The context above is gone, so the callback below is asked.)

        let asked = Mutex<[(String, Int)]>([])
        let pin = TLSConfiguration.Identity.PIN.callback { label, attempt in
            asked.withLock { $0.append((label, attempt)) }
            return SoftHSMToken.pin
        }
        let context = try TLSContext(configuration: .server(identity: .pkcs11(
            certificateChain: .certificates(token.server.chain), privateKey: token.url("server"), pin: pin)))
        let calls = asked.withLock { $0 }
        #expect(calls.count == 1, "\(calls)")
        #expect(calls.first?.0 == SoftHSMToken.label)
        #expect(calls.first?.1 == 1)
        // Handshakes after loading sign without asking again.
        for _ in 0..<2 {
            let pair = SessionPair(
                client: try TLSContext(configuration: pki.clientConfiguration()).makeSession(), server: try context.makeSession())
            #expect(pair.handshake(), "\(String(describing: pair.clientError)) \(String(describing: pair.serverError))")
            #expect(pair.client.peerCertificates.first == token.server.certificate)
        }
        #expect(asked.withLock { $0.count } == 1)
    }

    @Test("A client's key in the token: a server that requires and verifies client certificates lets it in")
    func clientKeyInToken() throws {
        let token = try SoftHSMToken.get()
        let client = TLSConfiguration.client(
            serverName: "localhost", trustRoots: .certificates([pki.ca.certificate]),
            identity: .pkcs11(certificateChain: .certificates(token.client.chain), privateKey: token.url("client"),
                              pin: .value(SoftHSMToken.pin)))
        let pair = try SessionPair(client: client, server: pki.serverConfiguration(clientAuthentication: .requireAndVerify))
        #expect(pair.handshake(), "client: \(String(describing: pair.clientError)) server: \(String(describing: pair.serverError))")
        #expect(pair.server.peerCertificates.first == token.client.certificate)
    }

    @Test("A wrong PIN is a configuration error that says so, in the URL or as .value, and the PIN is not shown")
    func wrongPIN() throws {
        let token = try SoftHSMToken.get()
        let inURL = loadError(.pkcs11(
            certificateChain: .certificates(token.server.chain), privateKey: token.url("server", pinValue: "wrong-pin")))
        #expect(inURL?.reason == "cannot load private key 'pkcs11:token=\(SoftHSMToken.label);object=server;type=private?pin-value=<redacted>': the PIN is wrong")
        let byValue = loadError(.pkcs11(
            certificateChain: .certificates(token.server.chain), privateKey: token.url("server"), pin: .value("wrong-pin")))
        #expect(byValue?.reason == "cannot load private key 'pkcs11:token=\(SoftHSMToken.label);object=server;type=private': the PIN is wrong")
        // The token still opens with the right PIN (a wrong one was tried once, not until it locked).
        _ = try handshake(.pkcs11(
            certificateChain: .certificates(token.server.chain), privateKey: token.url("server"), pin: .value(SoftHSMToken.pin)))
    }

    @Test("A callback is asked again after a wrong PIN (attempt 2), and giving up (nil) ends the load with the PIN error")
    func wrongPINFromCallback() throws {
        let token = try SoftHSMToken.get()
        let asked = Mutex<[Int]>([])
        let giveUp = TLSConfiguration.Identity.PIN.callback { _, attempt in
            asked.withLock { $0.append(attempt) }
            return attempt == 1 ? "wrong-pin" : nil
        }
        let error = loadError(.pkcs11(certificateChain: .certificates(token.server.chain), privateKey: token.url("server"), pin: giveUp))
        #expect(error?.reason.hasSuffix(": the PIN is wrong") == true, "\(String(describing: error))")
        #expect(asked.withLock { $0 } == [1, 2])

        let retried = Mutex<[Int]>([])
        let secondTime = TLSConfiguration.Identity.PIN.callback { _, attempt in
            retried.withLock { $0.append(attempt) }
            return attempt == 1 ? "wrong-pin" : SoftHSMToken.pin
        }
        _ = try handshake(.pkcs11(certificateChain: .certificates(token.server.chain), privateKey: token.url("server"), pin: secondTime))
        #expect(retried.withLock { $0 } == [1, 2])
    }

    @Test("A callback that keeps answering a wrong PIN is asked three times, not until the token locks")
    func callbackAskedAtMostThreeTimes() throws {
        let token = try SoftHSMToken.get()
        let asked = Mutex<[Int]>([])
        let stubborn = TLSConfiguration.Identity.PIN.callback { _, attempt in
            asked.withLock { $0.append(attempt) }
            return "wrong-pin"
        }
        let error = loadError(.pkcs11(certificateChain: .certificates(token.server.chain), privateKey: token.url("server"), pin: stubborn))
        #expect(error?.reason == "cannot load private key 'pkcs11:token=\(SoftHSMToken.label);object=server;type=private': the PIN is wrong")
        #expect(asked.withLock { $0 } == [1, 2, 3])
        #expect(TLSConfiguration.Identity.PIN.maximumAttempts == 3)
    }

    @Test("The PIN from a file (pin-source); a file with a wrong PIN is refused once")
    func pinSource() throws {
        let token = try SoftHSMToken.get()
        let directory = try TemporaryDirectory("gnutls-pin")
        let right = try directory.write("pin", SoftHSMToken.pin)
        let wrong = try directory.write("wrong", "wrong-pin")
        let pair = try handshake(.pkcs11(
            certificateChain: .certificates(token.server.chain),
            privateKey: "pkcs11:token=\(SoftHSMToken.label);object=server;type=private?pin-source=\(right)"))
        #expect(pair.client.peerCertificates.first == token.server.certificate)
        _ = consume pair
        let error = loadError(.pkcs11(
            certificateChain: .certificates(token.server.chain),
            privateKey: "pkcs11:token=\(SoftHSMToken.label);object=server;type=private?pin-source=\(wrong)"))
        #expect(error?.reason == "cannot load private key 'pkcs11:token=\(SoftHSMToken.label);object=server;type=private?pin-source=\(wrong)': the PIN is wrong")
    }

    @Test("A token key as the second identity, with its OCSP response: the client asking for its name gets its certificate and staple")
    func tokenKeyWithStaple() throws {
        let token = try SoftHSMToken.get()
        let responder = try OCSPResponder(ca: pki.ca)
        let alpha = try pki.ca.issue(commonName: "alpha.test", dnsNames: ["alpha.test"])
        let staple = try responder.good(for: token.server)
        let server = TLSConfiguration.server(identities: [
            .certificates(alpha.chain, privateKey: alpha.privateKey, ocspResponse: try responder.good(for: alpha)),
            .pkcs11(certificateChain: .certificates(token.server.chain), privateKey: token.url("server"),
                    pin: .value(SoftHSMToken.pin), ocspResponse: .der(staple)),
        ])
        var client = pki.clientConfiguration()
        client.requiresOCSPStaple = true
        let pair = try SessionPair(client: client, server: server)
        #expect(pair.handshake(), "client: \(String(describing: pair.clientError)) server: \(String(describing: pair.serverError))")
        #expect(pair.client.peerCertificates.first == token.server.certificate)
        #expect(pair.client.stapledOCSPResponse?.derBytes == staple)
        #expect(pair.client.isOCSPStapleVerified)
    }

    @Test("No PIN at all: the error says the token needs one, not that it is wrong")
    func noPIN() throws {
        let token = try SoftHSMToken.get()
        let error = loadError(.pkcs11(certificateChain: .certificates(token.server.chain), privateKey: token.url("server")))
        #expect(error?.reason == "cannot load private key 'pkcs11:token=\(SoftHSMToken.label);object=server;type=private': the token needs a PIN for it and none was given (add pin-value or pin-source to the URL, or give a PIN)")
    }

    @Test("An unknown object, a key that is not the certificate's, and what is not a PKCS #11 URL are clear errors")
    func badReferences() throws {
        let token = try SoftHSMToken.get()
        let unknown = loadError(.pkcs11(
            certificateChain: .certificates(token.server.chain), privateKey: token.url("nothing"), pin: .value(SoftHSMToken.pin)))
        #expect(unknown?.reason == "cannot load private key 'pkcs11:token=\(SoftHSMToken.label);object=nothing;type=private': no such object in any token (check the token and object names, and that a PIN is given for a private key)")

        let unknownToken = loadError(.pkcs11(
            certificateChain: .certificates(token.server.chain), privateKey: "pkcs11:token=no-such-token;object=server;type=private",
            pin: .value(SoftHSMToken.pin)))
        #expect(unknownToken?.reason.hasPrefix("cannot load private key 'pkcs11:token=no-such-token;object=server;type=private': no such object") == true,
                "\(String(describing: unknownToken))")

        let mismatch = loadError(.pkcs11(
            certificateChain: .certificates(token.server.chain), privateKey: token.url("other"), pin: .value(SoftHSMToken.pin)))
        #expect(mismatch?.reason == "private key 'pkcs11:token=\(SoftHSMToken.label);object=other;type=private' does not match the certificate in the certificate chain")

        let notAURL = loadError(.pkcs11(certificateChain: .certificates(token.server.chain), privateKey: "/etc/ssl/private/key.pem"))
        #expect(notAURL?.reason == "private key '/etc/ssl/private/key.pem' is not a PKCS #11 URL (they start with 'pkcs11:')")
    }

    @Test("The certificate from the token too: the handshake serves it, and an unknown certificate object is a clear error")
    func certificateInToken() throws {
        let token = try SoftHSMToken.get()
        let identity = TLSConfiguration.Identity.pkcs11(
            certificateChain: .pkcs11(url: token.url("server", type: "cert")), privateKey: token.url("server"),
            pin: .value(SoftHSMToken.pin))
        let context = try TLSContext(configuration: .server(identity: identity))
        #expect(context.certificateChain == [token.server.certificate])
        let pair = try handshake(identity)
        #expect(pair.client.peerCertificates == [token.server.certificate])

        let missing = loadError(.pkcs11(
            certificateChain: .pkcs11(url: token.url("nothing", type: "cert")), privateKey: token.url("server"),
            pin: .value(SoftHSMToken.pin)))
        #expect(missing?.reason.hasPrefix("cannot load certificate 'pkcs11:token=\(SoftHSMToken.label);object=nothing;type=cert' from its token: ") == true,
                "\(String(describing: missing))")
    }
}
