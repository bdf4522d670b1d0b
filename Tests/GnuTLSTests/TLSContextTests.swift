import Foundation
import GnuTLS
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
        FileManager.default.createFile(atPath: der, contents: Data(pki.ca.certificate.derBytes))
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
        #expect(configurationError(pki.serverConfiguration(alpn: [""])) != nil)
        #expect(configurationError(pki.serverConfiguration(alpn: [String(repeating: "x", count: 33)])) != nil)
        #expect(configurationError(pki.serverConfiguration(alpn: (0..<9).map { "p\($0)" })) != nil)
    }

    @Test func systemTrustStoreLoads() throws {
        let context = try TLSContext(configuration: .client(serverName: "example.org"))
        #expect(context.trustAnchorCount > 10)
    }

    @Test func defaultPolicyIsTLS12AndNewerWithAEADOnly() {
        let string = TLSConfiguration.ProtocolPolicy.intermediate.priorityString
        #expect(string.contains("-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"))
        #expect(!string.contains("CBC"))
        #expect(TLSConfiguration.client().policy == .intermediate)
        #expect(TLSConfiguration.client().certificateVerification == .full)
    }
}
