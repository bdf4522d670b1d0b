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

    @Test func pemRoundTrip() throws {
        let pem = pki.server.chain.map(\.pemString).joined()
        #expect(try Certificate.parse(pem: pem) == pki.server.chain)
        let key = try PrivateKey(pem: pki.server.privateKey.pemString)
        #expect(key == pki.server.privateKey)
    }

    @Test func publicKeyHashMatchesOpenSSLsDefinition() throws {
        // SHA-256 over the DER SubjectPublicKeyInfo: the same certificate's key hashes the same each time and
        // differently from another key.
        #expect(pki.server.certificate.publicKeySHA256 != pki.client.certificate.publicKeySHA256)
        let again = try Certificate(derBytes: pki.server.certificate.derBytes)
        #expect(again.publicKeySHA256Hex == pki.server.certificate.publicKeySHA256Hex)
        #expect(again.publicKeySHA256Hex.count == 64)
    }

    @Test func rsaKeysCanBeIssued() throws {
        let issued = try pki.ca.issue(commonName: "rsa", dnsNames: ["localhost"], keyAlgorithm: .rsa(bits: 2048))
        let pair = try SessionPair(client: pki.clientConfiguration(), server: pki.serverConfiguration(issued))
        #expect(pair.handshake())
    }

    @Test func badInputIsAnError() {
        #expect(throws: TLSError.self) { try Certificate(derBytes: [0x30, 0x03, 0x01, 0x02]) }
        #expect(throws: TLSError.self) { try Certificate.parse(pem: "nothing here") }
        #expect(throws: TLSError.self) { try PrivateKey(pem: "nothing here") }
        #expect(throws: TLSError.self) { try pki.ca.issue(commonName: "x", ipAddresses: ["not-an-ip"]) }
    }
}
