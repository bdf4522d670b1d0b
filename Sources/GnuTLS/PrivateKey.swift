internal import CGnuTLS

import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// A private key (RSA, ECDSA or EdDSA), held as unencrypted PKCS #8 DER.
///
/// - Warning: the value holds secret key material in memory. Write it only with ``write(toFile:)``, which
///   creates the file with mode 0600.
public struct PrivateKey: Sendable, Hashable {
    /// The unencrypted PKCS #8 DER encoding.
    public let pkcs8DERBytes: [UInt8]

    /// Parses a key from PEM text (PKCS #8, PKCS #1 or SEC 1; encrypted PKCS #8 with `password`).
    ///
    /// - Throws: ``TLSError`` if the text holds no key or the password is wrong.
    public init(pem: String, password: String? = nil) throws(TLSError) {
        try self.init(bytes: Array(pem.utf8), password: password, source: "PEM text")
    }

    /// Parses a key from DER bytes (PKCS #8 or the algorithm's own format).
    public init(derBytes: [UInt8], password: String? = nil) throws(TLSError) {
        try self.init(bytes: derBytes, password: password, source: "DER bytes")
    }

    /// Reads a key file, PEM or DER.
    ///
    /// - Throws: ``TLSError`` naming the file when it cannot be read or holds no valid key.
    public init(file path: String, password: String? = nil) throws(TLSError) {
        let bytes = try CredentialFile.read(path, what: "private key file")
        try self.init(bytes: bytes, password: password, source: "private key file '\(path)'")
    }

    init(bytes: [UInt8], password: String?, source: String) throws(TLSError) {
        let key = try X509PrivateKey(bytes: bytes, password: password, source: source)
        self.pkcs8DERBytes = try key.pkcs8DER()
    }

    init(handle: X509PrivateKey) throws(TLSError) {
        self.pkcs8DERBytes = try handle.pkcs8DER()
    }

    /// The key as unencrypted PKCS #8 PEM text.
    public var pemString: String {
        PEM.encode(der: pkcs8DERBytes, label: "PRIVATE KEY")
    }

    /// Writes the key as PEM to a file created with mode 0600, atomically.
    public func write(toFile path: String) throws(TLSError) {
        try CredentialFile.writeAtomically(Array(pemString.utf8), to: path, mode: 0o600)
    }

    /// A fresh key.
    ///
    /// - Parameter algorithm: the key type; ECDSA P-256 by default.
    public static func generate(_ algorithm: Algorithm = .ecdsaP256) throws(TLSError) -> PrivateKey {
        try PrivateKey(handle: X509PrivateKey.generate(algorithm))
    }

    /// The key types the library can generate.
    public enum Algorithm: Sendable, Hashable {
        /// ECDSA on the NIST P-256 curve: small, fast, accepted everywhere.
        case ecdsaP256
        /// ECDSA on the NIST P-384 curve.
        case ecdsaP384
        /// RSA with the given modulus size in bits (2048 or more).
        case rsa(bits: Int)
        /// Ed25519.
        case ed25519
    }
}

/// Key material never reaches a log line, `print`, `debugPrint` or `dump`: every rendering shows `<redacted>`.
extension PrivateKey: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The text that stands for secret material wherever a value is printed.
    static let redacted = "<redacted>"

    /// `PrivateKey(<redacted>)`.
    public var description: String { "PrivateKey(\(Self.redacted))" }

    /// `PrivateKey(<redacted>)`.
    public var debugDescription: String { description }

    /// A mirror whose one child, the key bytes, is `<redacted>`.
    public var customMirror: Mirror {
        Mirror(self, children: ["pkcs8DERBytes": Self.redacted], displayStyle: .struct)
    }
}
