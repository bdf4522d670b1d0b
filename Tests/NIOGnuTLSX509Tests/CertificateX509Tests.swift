#if X509
import Foundation
import GnuTLS
import NIOCore
import NIOEmbedded
import NIOGnuTLS
import NIOGnuTLSX509
import Testing
import X509

@Suite struct CertificateX509Tests {
    static let ca: CertificateAuthority = {
        do { return try CertificateAuthority.generate(commonName: "X509 Bridge CA") } catch {
            fatalError("cannot make the test CA: \(error)")
        }
    }()

    @Test func aGnuTLSCertificateBecomesTheSameX509CertificateAndBack() throws {
        let issued = try Self.ca.issue(commonName: "bridge.example", dnsNames: ["bridge.example"], ipAddresses: ["127.0.0.1"])
        let leaf = try #require(issued.chain.first)
        let x509 = try X509.Certificate(leaf)
        #expect(x509.subject.description == "CN=bridge.example")
        #expect(x509.issuer.description == "CN=X509 Bridge CA")
        // The same serial number, byte for byte (GnuTLS prints it as hex).
        #expect(Array(x509.serialNumber.bytes).map { String(format: "%02x", $0) }.joined() == leaf.serialNumber.lowercased().replacingOccurrences(of: ":", with: ""))
        let names = try #require(try x509.extensions.subjectAlternativeNames)
        #expect(names.contains(.dnsName("bridge.example")))
        #expect(x509.notValidAfter == leaf.notValidAfter)
        let back = try GnuTLS.Certificate(x509)
        #expect(back.derBytes == leaf.derBytes)
        #expect(back == leaf)
    }

    @Test func bytesThatAreNotACertificateAreRefusedBySwiftCertificates() throws {
        let caCertificate = Self.ca.certificate
        var der = caCertificate.derBytes
        // Cut the outer SEQUENCE short: GnuTLS's parse already succeeded on the original, the copy must fail.
        der.removeLast(10)
        #expect(throws: (any Error).self) { try X509.Certificate(derEncoded: der) }
        #expect(throws: TLSError.self) { try GnuTLS.Certificate(derBytes: der) }
    }

    @Test func aHandshakesPeerChainIsReadableAsX509Certificates() throws {
        let server = try Self.ca.issue(commonName: "localhost", dnsNames: ["localhost"])
        let serverContext = try TLSContext(
            configuration: .server(identity: .certificates(server.chain, privateKey: server.privateKey)))
        let clientContext = try TLSContext(
            configuration: .client(serverName: "localhost", trustRoots: .certificates([Self.ca.certificate])))
        let client = EmbeddedChannel()
        let serverChannel = EmbeddedChannel()
        let clientHandler = try GnuTLSHandler(context: clientContext)
        try client.pipeline.syncOperations.addHandler(clientHandler)
        try serverChannel.pipeline.syncOperations.addHandler(GnuTLSHandler(context: serverContext))
        try serverChannel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 2)).wait()
        for _ in 0..<20 where clientHandler.handshakeInfo == nil {
            while let bytes = try client.readOutbound(as: ByteBuffer.self) { try serverChannel.writeInbound(bytes) }
            while let bytes = try serverChannel.readOutbound(as: ByteBuffer.self) { try client.writeInbound(bytes) }
        }
        let info = try #require(clientHandler.handshakeInfo)
        let chain = try info.peerX509Certificates()
        #expect(chain.count == info.peerCertificates.count)
        #expect(chain.first?.subject.description == "CN=localhost")
        #expect(try chain.first.map { try GnuTLS.Certificate($0).derBytes } == server.chain.first?.derBytes)
        // No finish(): a close waits for the peer's close_notify, which an EmbeddedChannel would wait for forever
        // (as in NIOGnuTLSTests' ChannelPair).
    }
}
#endif
