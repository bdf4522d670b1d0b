import Foundation
import GnuTLS
import Testing

/// Secrets never print: a private key, an identity holding one (or a key password), and a configuration holding
/// such an identity show `<redacted>` in `description`, `debugDescription` and `dump`, with real keys made at
/// test time.
@Suite struct RedactionTests {
    let pki = TestPKI.shared
    static let password = "correct horse battery staple"

    /// `String(describing:)`, `String(reflecting:)` and `dump` of `value`.
    func renderings(_ value: Any) -> [String] {
        var dumped = ""
        dump(value, to: &dumped)
        return [String(describing: value), String(reflecting: value), dumped]
    }

    /// Ways the key's bytes could show: the lines of its PEM body, its DER as hexadecimal, a run of its bytes as
    /// an array prints them, and the element count `dump` gives a byte array.
    func secretForms(of key: PrivateKey) -> [String] {
        let body = key.pemString.split(separator: "\n").filter { !$0.hasPrefix("-----") }.map(String.init)
        let der = key.pkcs8DERBytes
        let hex = der.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }
        let middle = der[(der.count / 2)..<(der.count / 2 + 12)]
        return body + [body.joined(), hex.joined(), middle.map(String.init).joined(separator: ", "),
            "\(der.count) elements"]
    }

    func expectRedacted(
        _ value: Any, key: PrivateKey, password: String? = nil, showing visible: [String] = [],
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        for text in renderings(value) {
            for secret in secretForms(of: key) {
                #expect(!text.contains(secret), "key material in: \(text)", sourceLocation: sourceLocation)
            }
            if let password {
                #expect(!text.contains(password), "password in: \(text)", sourceLocation: sourceLocation)
            }
            #expect(text.contains("redacted"), "\(text)", sourceLocation: sourceLocation)
            for field in visible {
                #expect(text.contains(field), "'\(field)' missing from: \(text)", sourceLocation: sourceLocation)
            }
        }
    }

    @Test func privateKey() throws {
        let key = try PrivateKey.generate()
        // A real key: its PEM loads back (so the redaction checks below look for something that exists).
        #expect(try PrivateKey(pem: key.pemString).pemString == key.pemString, "the key is real")
        expectRedacted(key, key: key)
        expectRedacted(pki.server.privateKey, key: pki.server.privateKey)
    }

    @Test func identityInMemory() {
        let identity = TLSConfiguration.Identity.certificates(pki.server.chain, privateKey: pki.server.privateKey)
        expectRedacted(identity, key: pki.server.privateKey, showing: ["CN=localhost", "CN=Test CA"])
    }

    @Test func identityFromFilesWithAPassword() throws {
        let key = try PrivateKey.generate()
        let identity = TLSConfiguration.Identity.files(
            certificateChain: "/srv/tls/server.crt", privateKey: "/srv/tls/server.key", password: Self.password)
        expectRedacted(
            identity, key: key, password: Self.password, showing: ["/srv/tls/server.crt", "/srv/tls/server.key"])
    }

    @Test func serverConfiguration() {
        let configuration = pki.serverConfiguration(clientAuthentication: .requireAndVerify, alpn: ["h2", "http/1.1"])
        expectRedacted(
            configuration, key: pki.server.privateKey,
            showing: ["server", "requireAndVerify", "h2", "http/1.1", "CN=localhost", "intermediate"])
    }

    @Test func clientConfigurationWithAnEncryptedKeyFile() {
        var configuration = TLSConfiguration.client(
            serverName: "example.org",
            identity: .files(
                certificateChain: "/home/me/client.crt", privateKey: "/home/me/client.key", password: Self.password))
        configuration.applicationProtocols = ["echo"]
        expectRedacted(
            configuration, key: pki.client.privateKey, password: Self.password,
            showing: ["client", "/home/me/client.crt", "/home/me/client.key", "example.org", "echo"])
    }

    @Test func certificateAuthorityAndIssuedCertificates() {
        expectRedacted(pki.ca, key: pki.ca.privateKey, showing: ["CN=Test CA"])
        expectRedacted(pki.client, key: pki.client.privateKey, showing: ["CN=test client"])
    }
}
