/// Why a connection's PROXY protocol header was refused.
///
/// Every case closes the connection: a server that expects the header cannot tell a client's bytes from a
/// forged header, so it never guesses. `reason` is a sentence for a log line; it never quotes more than a few
/// bytes of what the peer sent.
public struct ProxyHeaderError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kinds of failure, for code that reacts to them.
    public enum Kind: Sendable, Hashable {
        /// The connection did not start with a PROXY header (v1 `PROXY ` or the v2 signature).
        case missing
        /// The header started but breaks the specification (a bad field, address, length or TLV).
        case malformed
        /// The header is longer than allowed (107 bytes for v1, the configured bound for v2).
        case tooLong
        /// The connection ended before the header was complete.
        case truncated
        /// The header did not arrive in time.
        case timedOut
        /// The peer is not one of those allowed to send a header.
        case peerNotAllowed
    }

    /// What went wrong.
    public let kind: Kind
    /// A sentence that says so, for a log line.
    public let reason: String

    public init(_ kind: Kind, _ reason: String) {
        self.kind = kind
        self.reason = reason
    }

    public var description: String { reason }
}
