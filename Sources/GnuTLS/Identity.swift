extension TLSConfiguration {
    /// One certificate chain, its private key and, for a server, the OCSP response it staples.
    ///
    /// Make one with ``files(certificateChain:privateKey:password:ocspResponse:)``,
    /// ``certificates(_:privateKey:ocspResponse:)`` or ``pkcs11(certificateChain:privateKey:pin:ocspResponse:)``,
    /// or from its parts.
    public struct Identity: Sendable {
        /// Where the certificate chain comes from.
        public enum CertificateChain: Sendable {
            /// A PEM (one or more certificates, leaf first) or DER (one certificate) file.
            case file(String)
            /// Certificates in memory, leaf first.
            case certificates([Certificate])
            /// A certificate in a PKCS #11 token, by RFC 7512 URL (`pkcs11:token=...;object=...;type=cert`).
            case pkcs11(url: String)
        }

        /// Where the private key comes from.
        public enum Key: Sendable {
            /// A PEM or DER file, with the password of an encrypted key.
            case file(String, password: String?)
            /// A key in memory.
            case key(PrivateKey)
            /// A key in a PKCS #11 token, by RFC 7512 URL (`pkcs11:token=...;object=...;type=private`). The
            /// PIN comes from the URL (`?pin-value=...` or `?pin-source=FILE`) or from `pin`.
            case pkcs11(url: String, pin: PIN?)
        }

        /// The PIN that opens a PKCS #11 token.
        public enum PIN: Sendable {
            /// The PIN itself.
            case value(String)
            /// Asked for when the token needs it: the token's label and the attempt (1 first) in, the PIN (or
            /// nil to give up) out. Called on the thread that builds the context or signs. It is asked at most
            /// ``PIN/maximumAttempts`` times in a row: GnuTLS would otherwise ask for as long as it answers,
            /// until a token that counts wrong PINs locks itself.
            case callback(@Sendable (_ tokenLabel: String, _ attempt: Int) -> String?)

            /// How many times a PIN callback is asked before the load fails with "the PIN is wrong".
            public static let maximumAttempts = 3
        }

        /// A DER OCSP response for the leaf certificate, stapled to the handshake when a client asks for it.
        public enum OCSPResponse: Sendable {
            /// A file holding the DER response (`openssl ocsp -respout`), read when the context is built.
            case file(String)
            /// The DER response in memory.
            case der([UInt8])
        }

        /// The chain, leaf first.
        public var certificateChain: CertificateChain
        /// The leaf's private key.
        public var privateKey: Key
        /// The leaf's OCSP response (servers). It must be for this certificate, successful, "good" and not past
        /// its next update, or the context is not built.
        public var ocspResponse: OCSPResponse?

        /// An identity from its parts.
        public init(certificateChain: CertificateChain, privateKey: Key, ocspResponse: OCSPResponse? = nil) {
            self.certificateChain = certificateChain
            self.privateKey = privateKey
            self.ocspResponse = ocspResponse
        }

        /// PEM or DER files: the chain (leaf first) and the key, with a password for an encrypted key, and
        /// optionally the DER OCSP response to staple.
        public static func files(
            certificateChain: String, privateKey: String, password: String? = nil, ocspResponse: String? = nil
        ) -> Identity {
            Identity(
                certificateChain: .file(certificateChain), privateKey: .file(privateKey, password: password),
                ocspResponse: ocspResponse.map { .file($0) })
        }

        /// Certificates and key already in memory, and optionally the DER OCSP response to staple.
        public static func certificates(
            _ certificates: [Certificate], privateKey: PrivateKey, ocspResponse: [UInt8]? = nil
        ) -> Identity {
            Identity(
                certificateChain: .certificates(certificates), privateKey: .key(privateKey),
                ocspResponse: ocspResponse.map { .der($0) })
        }

        /// A key in a PKCS #11 token (RFC 7512 URL), with its chain from a file, memory or the token.
        public static func pkcs11(
            certificateChain: CertificateChain, privateKey url: String, pin: PIN? = nil,
            ocspResponse: OCSPResponse? = nil
        ) -> Identity {
            Identity(certificateChain: certificateChain, privateKey: .pkcs11(url: url, pin: pin), ocspResponse: ocspResponse)
        }
    }
}
