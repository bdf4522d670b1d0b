#if X509
import GnuTLS
import NIOGnuTLS
import SwiftASN1
import X509

// The two modules both name their certificate type `Certificate`: here, and in an app that imports both, write
// `GnuTLS.Certificate` and `X509.Certificate`.

extension X509.Certificate {
    /// Parses a certificate this library returned (a peer's, a context's) as swift-certificates' type, which is
    /// what gRPC's `ServerContext`, Vapor 5 and swift-http-server hand to application code. The DER bytes are
    /// reparsed by swift-certificates; nothing is shared with GnuTLS.
    ///
    /// - Throws: swift-certificates' parse error if it refuses a certificate GnuTLS accepted (it is stricter
    ///   about some encodings).
    public init(_ certificate: GnuTLS.Certificate) throws {
        try self.init(derEncoded: certificate.derBytes)
    }
}

extension GnuTLS.Certificate {
    /// Converts a swift-certificates value to this library's certificate (for example to trust it or pin it),
    /// through its DER encoding.
    ///
    /// - Throws: ``TLSError`` if GnuTLS cannot parse the encoding swift-certificates produced.
    public init(_ certificate: X509.Certificate) throws {
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        try self.init(derBytes: serializer.serializedBytes)
    }
}

extension TLSHandshakeInfo {
    /// The peer's certificate chain as swift-certificates values, leaf first, in the order the peer sent it;
    /// empty when it sent none. With certificate verification on (the default) the leaf is the certificate
    /// GnuTLS verified; the chain is as presented, not a path built to a trust anchor.
    ///
    /// - Throws: swift-certificates' parse error for the first certificate it refuses.
    public func peerX509Certificates() throws -> [X509.Certificate] {
        try peerCertificates.map { try X509.Certificate($0) }
    }
}
#endif
