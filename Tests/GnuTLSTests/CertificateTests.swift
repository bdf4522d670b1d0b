import Foundation
import GnuTLS
import Testing

@Suite struct CertificateTests {
    let pki = TestPKI.shared

    @Test func issuedCertificatesCarryTheirFields() throws {
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        let end = start.addingTimeInterval(30 * 86400)
        let issued = try pki.ca.issue(
            commonName: "svc", dnsNames: ["svc.test", "*.svc.test"], ipAddresses: ["10.1.2.3", "fe80::1"],
            notValidBefore: start, notValidAfter: end)
        let certificate = issued.certificate
        #expect(certificate.subject == "CN=svc")
        #expect(certificate.issuer == "CN=Test CA")
        #expect(certificate.alternativeNames == [.dns("svc.test"), .dns("*.svc.test"), .ipAddress("10.1.2.3"), .ipAddress("fe80::1")])
        #expect(certificate.notValidBefore == start)
        #expect(certificate.notValidAfter == end)
        #expect(certificate.publicKeySHA256.count == 32)
        #expect(!certificate.isCertificateAuthority)
        #expect(pki.ca.certificate.isCertificateAuthority)
        #expect(pki.ca.certificate.isSelfIssued)
        #expect(issued.chain == [certificate, pki.ca.certificate])
    }

    @Test func keyPurposesAreReadFromTheExtendedKeyUsage() throws {
        #expect(pki.server.certificate.keyPurposes == [.serverAuthentication])
        #expect(pki.client.certificate.keyPurposes == [.clientAuthentication])
        #expect(!pki.client.certificate.allows(.serverAuthentication))
        let both = try pki.ca.issue(commonName: "both", usage: .serverAndClient)
        #expect(both.certificate.keyPurposes == [.serverAuthentication, .clientAuthentication])
        let unspecified = try pki.ca.issue(commonName: "any", usage: .unspecified)
        #expect(unspecified.certificate.keyPurposes.isEmpty)
        #expect(unspecified.certificate.allows(.serverAuthentication))
        #expect(unspecified.certificate.allows(.clientAuthentication))
        #expect(KeyPurpose.clientAuthentication.description == "TLS client authentication")
        #expect(KeyPurpose(oid: "1.2.3.4").description == "1.2.3.4")
    }

    @Test func intermediatesChainUpToTheRoot() throws {
        let first = try pki.ca.issueIntermediate(commonName: "Intermediate 1")
        let second = try first.issueIntermediate(commonName: "Intermediate 2")
        let leaf = try second.issue(commonName: "leaf")
        #expect(leaf.chain.map(\.subject) == ["CN=leaf", "CN=Intermediate 2", "CN=Intermediate 1", "CN=Test CA"])
        #expect(leaf.chain.dropLast().map(\.issuer) == ["CN=Intermediate 2", "CN=Intermediate 1", "CN=Test CA"])
        #expect(second.certificate.isCertificateAuthority)
    }

    @Test func pemRoundTrip() throws {
        let pem = pki.server.chain.map(\.pemString).joined()
        #expect(try Certificate.parse(pem: pem) == pki.server.chain)
        let key = try PrivateKey(pem: pki.server.privateKey.pemString)
        #expect(key == pki.server.privateKey)
    }

    /// SHA-256 of the certificate's DER SubjectPublicKeyInfo, computed by openssl and sha256sum.
    func opensslPublicKeySHA256(_ certificate: Certificate) throws -> String {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("gnutls-spki-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("leaf.pem").path
        try Certificate.writePEM([certificate], toFile: path)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [
            "-c",
            "set -o pipefail; openssl x509 -in \"$1\" -pubkey -noout | openssl pkey -pubin -outform der | sha256sum",
            "bash", path,
        ]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "openssl or sha256sum failed")
        return String(decoding: data, as: UTF8.self).split(separator: " ").first.map(String.init) ?? ""
    }

    @Test func publicKeyHashMatchesOpenSSLsDefinition() throws {
        // SHA-256 over the DER SubjectPublicKeyInfo (the HPKP / pinning value), checked against openssl's
        // encoding of the same key for each key type.
        let rsa = try pki.ca.issue(commonName: "rsa", keyAlgorithm: .rsa(bits: 2048))
        let ed25519 = try pki.ca.issue(commonName: "ed25519", keyAlgorithm: .ed25519)
        for certificate in [pki.server.certificate, pki.ca.certificate, rsa.certificate, ed25519.certificate] {
            let expected = try opensslPublicKeySHA256(certificate)
            #expect(expected.count == 64, "sha256sum printed '\(expected)'")
            #expect(certificate.publicKeySHA256Hex == expected, "\(certificate.subject)")
            #expect(try Certificate(derBytes: certificate.derBytes).publicKeySHA256Hex == expected)
        }
        #expect(pki.server.certificate.publicKeySHA256 != pki.client.certificate.publicKeySHA256)
    }

    @Test func rsaKeysCanBeIssued() throws {
        let issued = try pki.ca.issue(commonName: "rsa", dnsNames: ["localhost"], keyAlgorithm: .rsa(bits: 2048))
        let pair = try SessionPair(client: pki.clientConfiguration(), server: pki.serverConfiguration(issued))
        #expect(pair.handshake())
    }

    @Test func badInputIsAConfigurationErrorThatSaysWhat() {
        let der = #expect(throws: TLSError.self) { try Certificate(derBytes: [0x30, 0x03, 0x01, 0x02]) }
        #expect(der?.kind == .configuration)
        #expect(der?.reason.hasPrefix("certificate holds data that is not a valid X.509 certificate") == true)
        let pem = #expect(throws: TLSError.self) { try Certificate.parse(pem: "nothing here") }
        #expect(pem?.kind == .configuration)
        #expect(pem?.reason.hasPrefix("PEM text holds data that is not a valid X.509 certificate") == true)
        let key = #expect(throws: TLSError.self) { try PrivateKey(pem: "nothing here") }
        #expect(key?.kind == .configuration)
        #expect(key?.reason.hasPrefix("PEM text holds no usable private key") == true)
        let ip = #expect(throws: TLSError.self) { try pki.ca.issue(commonName: "x", ipAddresses: ["not-an-ip"]) }
        #expect(ip?.kind == .configuration)
        #expect(ip?.reason == "'not-an-ip' is not an IPv4 or IPv6 address")
    }
}
