import FoundationEssentials

/// A pinned public key: the SHA-256 hash of a certificate's DER SubjectPublicKeyInfo, written as curl writes it,
/// `sha256//BASE64`.
///
/// Make one from a certificate (``init(certificate:)``), from the hash, or from curl's text; print it to get the
/// text back. `openssl x509 -pubkey -noout | openssl pkey -pubin -outform DER | openssl dgst -sha256 -binary |
/// base64` gives the same value.
public struct PublicKeyPin: Sendable, Hashable, CustomStringConvertible {
    /// The 32-byte SHA-256 hash.
    public let sha256: [UInt8]

    /// A pin from the hash itself.
    ///
    /// - Throws: ``TLSError`` of kind ``TLSError/Kind/configuration`` unless it is 32 bytes.
    public init(sha256: [UInt8]) throws(TLSError) {
        guard sha256.count == 32 else {
            throw TLSError.configuration("a SHA-256 public-key pin is 32 bytes, not \(sha256.count)")
        }
        self.sha256 = sha256
    }

    /// The pin of a certificate's public key.
    public init(certificate: Certificate) {
        sha256 = certificate.publicKeySHA256
    }

    /// Parses curl's form, `sha256//` followed by the base64 hash.
    ///
    /// - Throws: ``TLSError`` of kind ``TLSError/Kind/configuration`` naming what is wrong.
    public init(_ text: String) throws(TLSError) {
        let prefix = "sha256//"
        guard text.hasPrefix(prefix) else {
            throw TLSError.configuration("public-key pin '\(text)' must start with 'sha256//'")
        }
        let encoded = String(text.dropFirst(prefix.count))
        guard let bytes = Data(base64Encoded: encoded), bytes.count == 32 else {
            throw TLSError.configuration(
                "public-key pin '\(text)' is not the base64 of a 32-byte SHA-256 hash")
        }
        sha256 = Array(bytes)
    }

    /// Parses a list separated by `;`, as curl's `--pinnedpubkey`.
    public static func parseList(_ text: String) throws(TLSError) -> [PublicKeyPin] {
        var pins: [PublicKeyPin] = []
        for part in text.split(separator: ";", omittingEmptySubsequences: true) {
            pins.append(try PublicKeyPin(String(part.filter { !$0.isWhitespace })))
        }
        guard !pins.isEmpty else { throw TLSError.configuration("the public-key pin list is empty") }
        return pins
    }

    /// `sha256//BASE64`.
    public var description: String { "sha256//" + Data(sha256).base64EncodedString() }
}

/// The application's own check of a peer's certificate chain; see ``TLSConfiguration/peerCheck``.
///
/// Called synchronously during the handshake, on the thread that drives the session, with the chain as the
/// peer sent it (leaf first; empty when a client sent no certificate). Keep it quick: it holds up that
/// connection's handshake.
public typealias PeerCheck = @Sendable (_ chain: [Certificate]) -> PeerCheckResult

/// What a ``PeerCheck`` decides.
public enum PeerCheckResult: Sendable, Hashable {
    /// The peer may go on.
    case accept
    /// The handshake ends with a `bad_certificate` alert; the reason is the error's.
    case reject(reason: String)
}

/// What a server knows of a connection when it chooses its context: the ClientHello's server name and ALPN
/// protocols, read before GnuTLS processes the hello.
public struct ClientHelloInfo: Sendable, Hashable {
    /// The host name the client asks for (SNI), if it sent one.
    public let serverName: String?
    /// The ALPN protocols the client offers, in its order.
    public let applicationProtocols: [String]

    /// Info as a ClientHello would carry it (for tests and selectors).
    public init(serverName: String?, applicationProtocols: [String] = []) {
        self.serverName = serverName
        self.applicationProtocols = applicationProtocols
    }
}

/// Chooses a server's context per connection; see ``TLSConfiguration/contextSelector``.
///
/// Make it from a callback that answers once, on any thread (``callback(_:)``), or from an async function
/// (``async(_:)``). The answer is the context to use (a server context; its own selector is not consulted), or
/// nil to go on with the context the connection started with. An error ends that handshake with a
/// `handshake_failure` alert and an error of kind ``TLSError/Kind/contextSelectionFailed``; other connections are
/// not affected.
public struct ContextSelector: Sendable {
    /// The callback form: `answer` must be called exactly once.
    public typealias Answer = @Sendable (Result<TLSContext?, any Error>) -> Void

    let select: @Sendable (ClientHelloInfo, @escaping Answer) -> Void

    /// A selector that answers through a callback, at once or later, from any thread.
    public static func callback(_ select: @escaping @Sendable (ClientHelloInfo, @escaping Answer) -> Void) -> ContextSelector {
        ContextSelector(select: select)
    }

    /// A selector that is an async function, run in a task of its own for each connection that asks.
    public static func async(_ select: @escaping @Sendable (ClientHelloInfo) async throws -> TLSContext?) -> ContextSelector {
        ContextSelector { hello, answer in
            Task {
                do { answer(.success(try await select(hello))) } catch { answer(.failure(error)) }
            }
        }
    }

    /// Asks for the context of one connection.
    public func callAsFunction(_ hello: ClientHelloInfo, answer: @escaping Answer) {
        select(hello, answer)
    }
}
