import Foundation
@testable import GnuTLS
import Testing

@Suite struct TLSContextTests {
    let pki = TestPKI.shared

    /// A fresh temporary folder, removed by the caller.
    func temporaryFolder() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("gnutls-tests-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    func configurationError(_ configuration: TLSConfiguration) -> TLSError? {
        #expect(throws: TLSError.self) { try TLSContext(configuration: configuration) }
    }

    @Test func missingCertificateFileIsNamed() {
        let error = configurationError(.server(identity: .files(certificateChain: "/nonexistent/server.crt", privateKey: "/nonexistent/server.key")))
        #expect(error?.kind == .configuration)
        #expect(error?.reason.contains("'/nonexistent/server.crt'") == true)
        #expect(error?.reason.contains("No such file") == true)
    }

    @Test func garbagePEMIsNamed() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let certificate = folder + "/garbage.crt"
        let key = folder + "/server.key"
        try "-----BEGIN CERTIFICATE-----\nnot base64 at all!!\n-----END CERTIFICATE-----\n".write(toFile: certificate, atomically: true, encoding: .utf8)
        try pki.server.privateKey.write(toFile: key)
        let error = configurationError(.server(identity: .files(certificateChain: certificate, privateKey: key)))
        #expect(error?.reason.contains("garbage.crt") == true, "\(String(describing: error))")

        try "hello".write(toFile: certificate, atomically: true, encoding: .utf8)
        let notPEM = configurationError(.server(identity: .files(certificateChain: certificate, privateKey: key)))
        #expect(notPEM?.reason.contains("not a valid X.509 certificate") == true, "\(String(describing: notPEM))")

        try Certificate.writePEM(pki.server.chain, toFile: certificate)
        try "-----BEGIN PRIVATE" .appending(" KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").write(toFile: key, atomically: true, encoding: .utf8)
        let badKey = configurationError(.server(identity: .files(certificateChain: certificate, privateKey: key)))
        #expect(badKey?.reason.contains("server.key") == true, "\(String(describing: badKey))")
    }

    @Test func mismatchedKeyIsRefused() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try Certificate.writePEM(pki.server.chain, toFile: folder + "/server.crt")
        try pki.client.privateKey.write(toFile: folder + "/client.key")
        let error = configurationError(.server(identity: .files(certificateChain: folder + "/server.crt", privateKey: folder + "/client.key")))
        #expect(error?.reason.contains("does not match") == true, "\(String(describing: error))")
        #expect(error?.codeName == "GNUTLS_E_CERTIFICATE_KEY_MISMATCH")
    }

    /// Found by tools/fuzz (fuzz-certificate, a leak): the input was this package's own chain in PEM with one
    /// base64 character of the CA's SubjectPublicKeyInfo algorithm changed, to OID 1.2.840.1268738.1, presented
    /// with the leaf's real key. GnuTLS 3.7.9 accepted the chain and leaked the key pair it stored (2,300 bytes
    /// per context). The input's leaf key existed only in that fuzz process, so the test makes the same shape:
    /// the CA's ecPublicKey OID (1.2.840.10045.2.1) changed to 1.2.840.10045.2.9, which GnuTLS does not know.
    @Test func aChainCertificateWithAnUnknownKeyAlgorithmIsRefused() throws {
        var ca = pki.ca.certificate.derBytes
        let ecPublicKey: [UInt8] = [0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01]
        let at = try #require((0...(ca.count - ecPublicKey.count)).first { Array(ca[$0..<($0 + ecPublicKey.count)]) == ecPublicKey })
        ca[at + 8] = 0x09
        let chain = [pki.server.certificate, try Certificate(derBytes: ca)]
        let error = configurationError(.server(identity: .certificates(chain, privateKey: pki.server.privateKey)))
        #expect(
            error?.reason == "certificate 2 in the certificate chain has a public-key algorithm GnuTLS does not support",
            "\(String(describing: error))")
    }

    @Test func aChainCertificateWithAnUnsupportedCurveIsRefused() throws {
        // The leaf's prime256v1 (1.2.840.10045.3.1.7) made prime239v1 (...3.1.4), which GnuTLS does not support.
        var leaf = pki.server.certificate.derBytes
        let prime256v1: [UInt8] = [0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07]
        let at = try #require(
            (0...(leaf.count - prime256v1.count)).first { Array(leaf[$0..<($0 + prime256v1.count)]) == prime256v1 })
        leaf[at + 9] = 0x04
        let chain = [try Certificate(derBytes: leaf), pki.ca.certificate]
        let error = configurationError(.server(identity: .certificates(chain, privateKey: pki.server.privateKey)))
        #expect(
            error?.reason == "certificate 1 in the certificate chain has a public key GnuTLS cannot use "
                + "(for example an unsupported curve)",
            "\(String(describing: error))")
    }

    @Test func filesWrittenByTheLibraryLoadBack() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try Certificate.writePEM(pki.server.chain, toFile: folder + "/server.crt")
        try pki.server.privateKey.write(toFile: folder + "/server.key")
        var info = stat()
        #expect(stat(folder + "/server.key", &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
        let context = try TLSContext(configuration: .server(identity: .files(certificateChain: folder + "/server.crt", privateKey: folder + "/server.key")))
        #expect(context.certificateChain == pki.server.chain)
        // DER works too.
        let der = folder + "/ca.der"
        #expect(FileManager.default.createFile(atPath: der, contents: Data(pki.ca.certificate.derBytes)))
        let client = try TLSContext(configuration: .client(serverName: "localhost", trustRoots: .file(der)))
        #expect(client.trustAnchorCount == 1)
    }

    @Test func badPriorityStringNamesThePosition() {
        let error = configurationError(pki.serverConfiguration(policy: .custom("NORMAL:-VERS-ALL:+VERS-TLS9")))
        #expect(error?.kind == .configuration)
        #expect(error?.reason.contains("position 17") == true, "\(String(describing: error))")
        #expect(error?.reason.contains("'+VERS-TLS9'") == true, "\(String(describing: error))")
    }

    @Test func badALPNListsAreRefused() {
        let empty = configurationError(pki.serverConfiguration(alpn: [""]))
        #expect(empty?.kind == .configuration)
        #expect(empty?.reason == "ALPN protocol '' must be 1 to 32 bytes long")
        let long = String(repeating: "x", count: 33)
        let tooLong = configurationError(pki.serverConfiguration(alpn: [long]))
        #expect(tooLong?.kind == .configuration)
        #expect(tooLong?.reason == "ALPN protocol '\(long)' must be 1 to 32 bytes long")
        let tooMany = configurationError(pki.serverConfiguration(alpn: (0..<9).map { "p\($0)" }))
        #expect(tooMany?.kind == .configuration)
        #expect(tooMany?.reason == "at most 8 ALPN protocols can be offered, not 9")
    }

    @Test func trustRootsFromAFileReplaceTheSystemStore() throws {
        // A trust file made here, so the outcome does not depend on the machine's ca-certificates.
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/trust.pem"
        try Certificate.writePEM([pki.otherCA.certificate, pki.ca.certificate], toFile: path)
        let context = try TLSContext(configuration: pki.clientConfiguration().withTrustRoots(.file(path)))
        #expect(context.trustAnchorCount == 2)
        // Both anchors are in use: servers from either CA verify.
        let stranger = try pki.otherCA.issue(commonName: "localhost", dnsNames: ["localhost"])
        for server in [pki.server, stranger] {
            let pair = SessionPair(
                client: try context.makeSession(),
                server: try TLSContext(configuration: pki.serverConfiguration(server)).makeSession())
            #expect(pair.handshake(), "\(String(describing: pair.clientError))")
        }
        // Only the file's anchors: a server from a third CA is refused.
        let third = try CertificateAuthority.generate(commonName: "Third CA").issue(
            commonName: "localhost", dnsNames: ["localhost"])
        let refused = SessionPair(
            client: try context.makeSession(),
            server: try TLSContext(configuration: pki.serverConfiguration(third)).makeSession())
        #expect(!refused.handshake())
        #expect(refused.clientError?.verification?.reasons == [.untrustedIssuer])
    }

    @Test func emptyTrustRootsAreAConfigurationError() {
        let error = configurationError(pki.clientConfiguration(trust: []))
        #expect(error?.kind == .configuration)
        #expect(error?.reason == "the trust roots hold no certificate")
    }

    @Test func defaultPolicyEnablesTLS12AndNewerWithForwardSecretAEADSuitesOnly() throws {
        // The defaults, with trust roots of our own so that the machine's store plays no part.
        var client = TLSConfiguration.client(serverName: "localhost")
        #expect(client.policy == .intermediate)
        #expect(client.certificateVerification == .full)
        client.trustRoots = .certificates([pki.ca.certificate])
        let server = TLSConfiguration.server(
            identity: .certificates(pki.server.chain, privateKey: pki.server.privateKey))
        #expect(server.policy == .intermediate)
        for configuration in [client, server] {
            // What GnuTLS made of the priority string, not the string itself.
            let context = try TLSContext(configuration: configuration)
            #expect(context.enabledVersions == [.tls13, .tls12])
            let suites = context.priority.cipherSuiteNames
            let tls13 = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"]
            #expect(suites.filter { tls13.contains($0) } == tls13)
            let tls12 = suites.filter { !tls13.contains($0) }
            #expect(!tls12.isEmpty)
            for suite in tls12 {
                #expect(suite.hasPrefix("TLS_ECDHE_") || suite.hasPrefix("TLS_DHE_"), "not forward-secret: \(suite)")
                #expect(suite.contains("_GCM_") || suite.hasSuffix("_CHACHA20_POLY1305"), "not AEAD: \(suite)")
            }
        }
        let pair = SessionPair(
            client: try TLSContext(configuration: client).makeSession(),
            server: try TLSContext(configuration: server).makeSession())
        #expect(pair.handshake())
        #expect(pair.client.negotiatedVersion == .tls13)
    }
}

extension TLSConfiguration {
    func withTrustRoots(_ roots: TrustRoots) -> TLSConfiguration {
        var copy = self
        copy.trustRoots = roots
        return copy
    }
}
