import Foundation
@testable import GnuTLS
import Testing

@Suite struct VerificationTests {
    let pki = TestPKI.shared

    func failure(
        client: TLSConfiguration, server: TLSConfiguration, serverName: String? = nil
    ) throws -> (client: TLSError?, server: TLSError?) {
        let pair = try SessionPair(client: client, server: server, serverName: serverName)
        #expect(!pair.handshake())
        return (pair.clientError, pair.serverError)
    }

    @Test func expiredCertificateIsRefusedWithItsDate() throws {
        let end = Date().addingTimeInterval(-86400)
        let expired = try pki.ca.issue(
            commonName: "localhost", dnsNames: ["localhost"], notValidBefore: end.addingTimeInterval(-86400),
            notValidAfter: end)
        let (error, _) = try failure(client: pki.clientConfiguration(), server: pki.serverConfiguration(expired))
        #expect(error?.kind == .verification)
        let reasons = error?.verification?.reasons ?? []
        #expect(reasons.count == 1)
        guard case .expired(let date) = reasons.first else {
            Issue.record("expected an expiry, got \(reasons)")
            return
        }
        // Certificate times are whole seconds.
        #expect(date == Date(timeIntervalSince1970: end.timeIntervalSince1970.rounded(.down)))
        #expect(error?.reason.contains("expired on") == true)
    }

    @Test func notYetValidCertificateIsRefused() throws {
        let start = Date().addingTimeInterval(86400)
        let future = try pki.ca.issue(
            commonName: "localhost", dnsNames: ["localhost"], notValidBefore: start, notValidAfter: start.addingTimeInterval(86400))
        let (error, _) = try failure(client: pki.clientConfiguration(), server: pki.serverConfiguration(future))
        guard case .notYetValid(let date) = error?.verification?.reasons.first else {
            Issue.record("expected not-yet-valid, got \(String(describing: error))")
            return
        }
        #expect(date == Date(timeIntervalSince1970: start.timeIntervalSince1970.rounded(.down)))
    }

    @Test func wrongHostNameIsRefusedNamingBothNames() throws {
        let (error, serverError) = try failure(
            client: pki.clientConfiguration(serverName: "wrong.example"), server: pki.serverConfiguration())
        #expect(error?.verification?.reasons == [.hostnameMismatch])
        #expect(error?.verification?.checkedName == "wrong.example")
        #expect(error?.verification?.certificateNames == ["localhost", "127.0.0.1", "::1"])
        #expect(error?.reason.contains("does not match the requested name 'wrong.example'") == true)
        #expect(error?.reason.contains("'localhost'") == true)
        // The client told the server why, with an alert.
        #expect(serverError?.kind == .alertReceived)
    }

    @Test(arguments: ["127.0.0.1", "::1"])
    func ipAddressesAreVerifiedAsIPs(address: String) throws {
        let pair = try SessionPair(client: pki.clientConfiguration(serverName: address), server: pki.serverConfiguration())
        #expect(pair.handshake(), "\(String(describing: pair.clientError))")
        #expect(pair.server.requestedServerName == nil, "an IP address is not sent as SNI")
        let wrong = try SessionPair(client: pki.clientConfiguration(serverName: "127.0.0.2"), server: pki.serverConfiguration())
        #expect(!wrong.handshake())
        #expect(wrong.clientError?.verification?.reasons == [.hostnameMismatch])
    }

    @Test func unknownCAIsRefused() throws {
        let stranger = try pki.otherCA.issue(commonName: "localhost", dnsNames: ["localhost"])
        let (error, _) = try failure(client: pki.clientConfiguration(), server: pki.serverConfiguration(stranger))
        #expect(error?.verification?.reasons == [.untrustedIssuer])
        #expect(error?.reason.contains("untrusted or unknown issuer") == true)
    }

    @Test func selfSignedLeafIsRefused() throws {
        let selfSigned = try CertificateAuthority.selfSignedLeaf(commonName: "localhost", dnsNames: ["localhost"])
        let (error, _) = try failure(client: pki.clientConfiguration(), server: pki.serverConfiguration(selfSigned))
        #expect(error?.verification?.reasons.contains(.selfSigned) == true, "\(String(describing: error))")
    }

    @Test func chainOnlyAcceptsTheWrongNameButNotAnUnknownCA() throws {
        let pair = try SessionPair(
            client: pki.clientConfiguration(serverName: "wrong.example", verification: .chainOnly),
            server: pki.serverConfiguration())
        #expect(pair.handshake())
        let stranger = try pki.otherCA.issue(commonName: "localhost", dnsNames: ["localhost"])
        let (error, _) = try failure(
            client: pki.clientConfiguration(verification: .chainOnly), server: pki.serverConfiguration(stranger))
        #expect(error?.verification?.reasons == [.untrustedIssuer])
    }

    @Test func noVerificationAcceptsAll() throws {
        let selfSigned = try CertificateAuthority.selfSignedLeaf(commonName: "elsewhere", dnsNames: ["elsewhere"])
        let pair = try SessionPair(
            client: pki.clientConfiguration(serverName: "wrong.example", verification: .insecureNoVerification),
            server: pki.serverConfiguration(selfSigned))
        #expect(pair.handshake())
    }

    @Test func fullVerificationWithoutANameIsAConfigurationError() throws {
        let context = try TLSContext(configuration: pki.clientConfiguration(serverName: nil))
        let error = #expect(throws: TLSError.self) { try context.makeSession() }
        #expect(error?.kind == .configuration)
    }

    // MARK: - Key purpose (extended key usage)

    @Test(arguments: [TLSConfiguration.ClientAuthentication.verifyIfGiven, .requireAndVerify])
    func aClientCertificateForServersOnlyIsRefusedForItsPurpose(policy: TLSConfiguration.ClientAuthentication) throws {
        // `openssl s_server -Verify` refuses it too ("unsuitable certificate purpose").
        let serverOnly = try pki.ca.issue(commonName: "test client", usage: .server)
        let pair = try SessionPair(
            client: pki.clientConfiguration(identity: serverOnly),
            server: pki.serverConfiguration(clientAuthentication: policy))
        #expect(!pair.handshake())
        let error = pair.serverError
        #expect(error?.kind == .verification, "\(String(describing: error))")
        #expect(error?.verification?.reasons == [.wrongPurpose])
        #expect(error?.verification?.requiredPurpose == .clientAuthentication)
        #expect(error?.verification?.certificatePurposes == [.serverAuthentication])
        #expect(
            error?.reason == "handshake failed: the client's certificate was refused: certificate is not valid for TLS "
                + "client authentication (its extended key usage allows: TLS server authentication)")
    }

    /// GnuTLS keeps the typed data given to gnutls_session_set_verify_cert2 and reads it when the certificate
    /// arrives: data that did not outlive the call (a temporary array) made this refusal read "certificate for
    /// 'localhost' does not match the requested name 'localhost'".
    @Test(arguments: [TLSConfiguration.CertificateVerification.full, .chainOnly])
    func aServerCertificateForClientsOnlyIsRefusedForItsPurposeNotItsName(
        verification: TLSConfiguration.CertificateVerification
    ) throws {
        let clientOnly = try pki.ca.issue(commonName: "localhost", dnsNames: ["localhost"], usage: .client)
        let (error, _) = try failure(
            client: pki.clientConfiguration(verification: verification), server: pki.serverConfiguration(clientOnly))
        #expect(error?.kind == .verification, "\(String(describing: error))")
        #expect(error?.verification?.reasons == [.wrongPurpose])
        #expect(error?.verification?.requiredPurpose == .serverAuthentication)
        #expect(
            error?.reason == "handshake failed: the server's certificate was refused: certificate is not valid for TLS "
                + "server authentication (its extended key usage allows: TLS client authentication)")
    }

    @Test func aWrongNameAndAWrongPurposeAreBothReported() throws {
        let clientOnly = try pki.ca.issue(commonName: "localhost", dnsNames: ["localhost"], usage: .client)
        let (error, _) = try failure(
            client: pki.clientConfiguration(serverName: "wrong.example"), server: pki.serverConfiguration(clientOnly))
        #expect(error?.verification?.reasons == [.hostnameMismatch, .wrongPurpose])
        #expect(error?.reason.contains("does not match the requested name 'wrong.example'") == true)
        #expect(error?.reason.contains("not valid for TLS server authentication") == true)
    }

    @Test(arguments: [CertificateAuthority.Usage.unspecified, .serverAndClient])
    func aCertificateWithoutExtendedKeyUsageOrWithBothServesEitherSide(usage: CertificateAuthority.Usage) throws {
        let server = try pki.ca.issue(
            commonName: "localhost", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], usage: usage)
        let client = try pki.ca.issue(commonName: "test client", usage: usage)
        for policy in [TLSConfiguration.ClientAuthentication.verifyIfGiven, .requireAndVerify] {
            for name in ["localhost", "127.0.0.1"] {
                let pair = try SessionPair(
                    client: pki.clientConfiguration(serverName: name, identity: client),
                    server: pki.serverConfiguration(server, clientAuthentication: policy))
                let ok = pair.handshake()
                let errors = [pair.clientError, pair.serverError].map { String(describing: $0) }
                #expect(ok, "\(policy) \(name): \(errors)")
            }
        }
    }

    // MARK: - Chain length

    /// A leaf under `intermediates` CAs below the test CA: a chain of `intermediates + 2` certificates.
    func deepLeaf(
        intermediates: Int, usage: CertificateAuthority.Usage = .server
    ) throws -> CertificateAuthority.Issued {
        var ca = pki.ca
        for index in 1...intermediates { ca = try ca.issueIntermediate(commonName: "Intermediate \(index)") }
        return try ca.issue(commonName: "localhost", dnsNames: ["localhost"], usage: usage)
    }

    @Test func aChainOfSixteenIsAccepted() throws {
        let leaf = try deepLeaf(intermediates: 14)
        #expect(leaf.chain.count == 16)
        let pair = try SessionPair(client: pki.clientConfiguration(), server: pki.serverConfiguration(leaf))
        #expect(pair.handshake(), "\(String(describing: pair.clientError))")
    }

    /// GnuTLS refuses a chain longer than its verification depth before looking at it, and keeps no status:
    /// it read as every reason at once ("expired; not yet valid; untrusted issuer; ... revoked").
    @Test func aServerChainLongerThanSixteenIsRefusedForItsLength() throws {
        let leaf = try deepLeaf(intermediates: 18)
        #expect(leaf.chain.count == 20)
        let (error, _) = try failure(client: pki.clientConfiguration(), server: pki.serverConfiguration(leaf))
        #expect(error?.kind == .verification)
        #expect(error?.verification?.reasons == [.chainTooLong(20)])
        #expect(
            error?.reason
                == "handshake failed: the server's certificate was refused: the chain is longer than 16 certificates "
                + "(the peer sent 20)")
    }

    @Test(arguments: [TLSConfiguration.ClientAuthentication.verifyIfGiven, .requireAndVerify])
    func aClientChainLongerThanSixteenIsRefusedForItsLength(policy: TLSConfiguration.ClientAuthentication) throws {
        let leaf = try deepLeaf(intermediates: 15, usage: .client)
        let pair = try SessionPair(
            client: pki.clientConfiguration(identity: leaf),
            server: pki.serverConfiguration(clientAuthentication: policy))
        #expect(!pair.handshake())
        #expect(
            pair.serverError?.verification?.reasons == [.chainTooLong(17)], "\(String(describing: pair.serverError))")
        #expect(
            pair.serverError?.reason
                == "handshake failed: the client's certificate was refused: the chain is longer than 16 certificates "
                + "(the peer sent 17)")
    }

    /// A status GnuTLS did not set (all ones), or 0 with a failure, is not a list of reasons.
    @Test(arguments: [UInt32.max, 0, 1 << 31 | 1 << 1] as [UInt32])
    func aStatusThatIsNotASetOfReasonsIsNotExpandedIntoAll(status: UInt32) throws {
        let failure = VerificationFailure.decode(status: status, chain: pki.server.chain, checkedName: "localhost")
        #expect(failure.reasons.count == 1)
        #expect(failure.description.hasPrefix("certificate verification failed without a reason"), "\(failure)")
    }

    @Test func invalidAloneIsOneReason() throws {
        let failure = VerificationFailure.decode(status: 1 << 1, chain: pki.server.chain, checkedName: "localhost")
        #expect(failure.reasons.count == 1)
        #expect(!failure.description.contains("does not match"))
    }

    @Test func aVerificationThatCouldNotRunGivesGnuTLSsReason() throws {
        // GNUTLS_E_MEMORY_ERROR (-25): the status is not read.
        let failure = VerificationFailure.decode(
            status: UInt32.max, code: -25, chain: pki.server.chain, checkedName: "localhost")
        #expect(failure.reasons.count == 1)
        #expect(failure.description.hasPrefix("the certificate could not be verified ("), "\(failure)")
    }

    // MARK: - Client authentication

    enum ClientCertificate: String, CaseIterable, Sendable { case good, none, otherCA }

    static let policies: [TLSConfiguration.ClientAuthentication] = [
        .none, .requestWithoutVerification, .requireAnyWithoutVerification, .verifyIfGiven, .requireAndVerify,
    ]

    /// Whether each policy accepts each kind of client certificate.
    static func accepted(_ policy: TLSConfiguration.ClientAuthentication, _ certificate: ClientCertificate) -> Bool {
        switch (policy, certificate) {
        case (.none, _), (.requestWithoutVerification, _): return true
        case (.requireAnyWithoutVerification, .none): return false
        case (.requireAnyWithoutVerification, _): return true
        case (.verifyIfGiven, .otherCA): return false
        case (.verifyIfGiven, _): return true
        case (.requireAndVerify, .good): return true
        case (.requireAndVerify, _): return false
        }
    }

    @Test(arguments: policies, ClientCertificate.allCases)
    func clientAuthentication(policy: TLSConfiguration.ClientAuthentication, certificate: ClientCertificate) throws {
        let identity: CertificateAuthority.Issued? =
            switch certificate {
            case .good: pki.client
            case .none: nil
            case .otherCA: pki.otherClient
            }
        let pair = try SessionPair(
            client: pki.clientConfiguration(identity: identity),
            server: pki.serverConfiguration(clientAuthentication: policy))
        let ok = pair.handshake()
        #expect(ok == Self.accepted(policy, certificate), "server: \(String(describing: pair.serverError))")
        if ok {
            let presented = pair.server.peerCertificates.first
            switch (policy, certificate) {
            case (.none, _): #expect(presented == nil)
            case (_, .good): #expect(presented == pki.client.certificate)
            default: break
            }
        } else if certificate == .none {
            #expect(pair.serverError?.kind == .certificateRequired, "\(String(describing: pair.serverError))")
            #expect(pair.serverError?.codeName == "GNUTLS_E_CERTIFICATE_REQUIRED")
        } else {
            // Only a certificate from the CA nobody trusts is refused for what it is.
            #expect(certificate == .otherCA)
            #expect(pair.serverError?.kind == .verification, "\(String(describing: pair.serverError))")
            #expect(pair.serverError?.verification?.reasons == [.untrustedIssuer])
        }
    }
}
