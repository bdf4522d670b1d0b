#if canImport(Glibc)
import Glibc
#endif

/// The header a load balancer (HAProxy, Envoy, a cloud NLB) puts before a connection's own bytes to say who the
/// client really is: PROXY protocol version 1 (a text line) or 2 (binary), as HAProxy's specification defines
/// them (https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt).
///
/// A pure value with no I/O: ``parse(_:maximumLength:)`` takes the bytes received so far and says whether they
/// hold a complete header, how long it is, or why they can never become one. `ProxyProtocolHandler` (NIOGnuTLS)
/// runs it on a channel before TLS. Every byte comes from the network: every index is checked, nothing traps.
public struct ProxyHeader: Sendable, Hashable {
    /// The protocol version the header was sent in.
    public enum Version: Int, Sendable, Hashable {
        case v1 = 1
        case v2 = 2
    }

    /// What the sender says the connection is.
    public enum Command: Sendable, Hashable {
        /// Relayed for a client: the addresses (when present) are the client's and the one it connected to.
        case proxy
        /// Made by the balancer itself (a health check, v2 only): use the connection's own addresses.
        case local
    }

    /// The client connection's transport, as declared (v2; v1 `TCP4`/`TCP6` are `.stream`).
    public enum TransportProtocol: Sendable, Hashable {
        case stream
        case datagram
        case unspecified
    }

    /// One end of the client's connection.
    public enum Address: Sendable, Hashable, CustomStringConvertible {
        /// 4 address bytes and a port.
        case ipv4([UInt8], port: UInt16)
        /// 16 address bytes and a port.
        case ipv6([UInt8], port: UInt16)
        /// A Unix-domain socket path (the bytes before the first NUL, at most 108).
        case unix(path: [UInt8])

        /// The address as text (`192.0.2.1`, `2001:db8::1`), nil for a Unix path.
        public var ipAddress: String? {
            switch self {
            case .ipv4(let bytes, _), .ipv6(let bytes, _): return ProxyHeader.text(ofAddress: bytes)
            case .unix: return nil
            }
        }

        /// The port, nil for a Unix path.
        public var port: UInt16? {
            switch self {
            case .ipv4(_, let port), .ipv6(_, let port): return port
            case .unix: return nil
            }
        }

        /// `192.0.2.1:443`, `[2001:db8::1]:443`, or `unix:PATH`.
        public var description: String {
            switch self {
            case .ipv4(_, let port): return "\(ipAddress ?? "?"):\(port)"
            case .ipv6(_, let port): return "[\(ipAddress ?? "?")]:\(port)"
            case .unix(let path): return "unix:\(ProxyHeader.printable(path[...], limit: 108))"
            }
        }
    }

    /// A v2 type-length-value field, kept raw. The types this library knows are in ``TLVType``.
    public struct TLV: Sendable, Hashable {
        public let type: UInt8
        public let value: [UInt8]

        public init(type: UInt8, value: [UInt8]) {
            self.type = type
            self.value = value
        }
    }

    /// The TLV types of the specification.
    public enum TLVType {
        /// The ALPN protocol the client negotiated with the balancer (bytes, e.g. `h2`).
        public static let alpn: UInt8 = 0x01
        /// The host name the client asked for (SNI), UTF-8.
        public static let authority: UInt8 = 0x02
        /// A CRC32c of the whole header; checked by the parser when present.
        public static let crc32c: UInt8 = 0x03
        /// Padding, ignored.
        public static let noop: UInt8 = 0x04
        /// An opaque connection identifier of at most 128 bytes (HAProxy's `unique-id`).
        public static let uniqueID: UInt8 = 0x05
        /// TLS details of the client's connection to the balancer (with sub-TLVs), kept raw.
        public static let ssl: UInt8 = 0x20
        /// The network namespace, US-ASCII.
        public static let netns: UInt8 = 0x30
    }

    /// What the bytes received so far hold.
    public enum ParseResult: Sendable, Hashable {
        /// The start of a header: wait for more bytes.
        case incomplete
        /// A whole header, `length` bytes long; the connection's own bytes follow it.
        case complete(ProxyHeader, length: Int)
    }

    public let version: Version
    public let command: Command
    public let transportProtocol: TransportProtocol
    /// The client's address; nil when the header carries none (v1 `UNKNOWN`, v2 `LOCAL` or `AF_UNSPEC`): then
    /// the connection's own peer address is the one to use.
    public let source: Address?
    /// The address the client connected to (on the balancer); nil as for `source`.
    public let destination: Address?
    /// The v2 TLVs in the order sent (empty for v1, and for v2 `LOCAL`, whose block is discarded).
    public let tlvs: [TLV]

    public init(
        version: Version, command: Command, transportProtocol: TransportProtocol, source: Address?,
        destination: Address?, tlvs: [TLV] = []
    ) {
        self.version = version
        self.command = command
        self.transportProtocol = transportProtocol
        self.source = source
        self.destination = destination
        self.tlvs = tlvs
    }

    /// The value of the first TLV of `type`, if there is one.
    public func value(of type: UInt8) -> [UInt8]? { tlvs.first { $0.type == type }?.value }
    /// The ALPN TLV.
    public var applicationProtocol: [UInt8]? { value(of: TLVType.alpn) }
    /// The authority TLV (the client's SNI), if it is valid UTF-8.
    public var authority: String? { value(of: TLVType.authority).flatMap { String(validating: $0, as: UTF8.self) } }
    /// The unique-ID TLV.
    public var uniqueID: [UInt8]? { value(of: TLVType.uniqueID) }

    /// The longest v1 line the specification allows, CRLF included.
    public static let maximumV1Length = 107
    /// The default bound on a whole v2 header: the 16-byte preamble, 216 bytes of Unix addresses and room for
    /// the TLVs balancers send (ALPN, an authority, a 128-byte unique ID, TLS details with a client CN).
    public static let defaultMaximumLength = 4096
    /// The first 12 bytes of every v2 header.
    public static let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
    static let v1Prefix: [UInt8] = Array("PROXY ".utf8)

    /// Reads a header from the start of `bytes` (what the connection has received so far).
    ///
    /// - Parameter maximumLength: the longest v2 header accepted (v1 lines are bounded by the specification).
    /// - Throws: ``ProxyHeaderError`` of kind `missing` (the bytes cannot start a header), `malformed` or
    ///   `tooLong`. It never throws `truncated`: only the caller knows the connection has ended.
    public static func parse(
        _ bytes: UnsafeRawBufferPointer, maximumLength: Int = defaultMaximumLength
    ) throws(ProxyHeaderError) -> ParseResult {
        guard let first = bytes.first else { return .incomplete }
        if first == v1Prefix[0] {
            try expectPrefix(v1Prefix, of: bytes, version: "v1")
            return try parseV1(bytes)
        }
        if first == v2Signature[0] {
            try expectPrefix(v2Signature, of: bytes, version: "v2")
            return try parseV2(bytes, maximumLength: maximumLength)
        }
        if first == 0x16 {
            throw ProxyHeaderError(.missing, "no PROXY protocol header: the connection starts with a TLS handshake")
        }
        throw ProxyHeaderError(.missing, "no PROXY protocol header: the connection starts with byte \(hex(first))")
    }

    /// The same, for bytes in an array.
    public static func parse(
        _ bytes: [UInt8], maximumLength: Int = defaultMaximumLength
    ) throws(ProxyHeaderError) -> ParseResult {
        let result = bytes.withUnsafeBytes { raw in
            Result { () throws(ProxyHeaderError) in try parse(raw, maximumLength: maximumLength) }
        }
        return try result.get()
    }

    private static func expectPrefix(
        _ prefix: [UInt8], of bytes: UnsafeRawBufferPointer, version: String
    ) throws(ProxyHeaderError) {
        for index in 0..<min(prefix.count, bytes.count) where bytes[index] != prefix[index] {
            throw ProxyHeaderError(
                .missing,
                version == "v1"
                    ? "no PROXY protocol header: the connection starts with '\(printable(bytes[0..<min(bytes.count, 8)], limit: 8))'"
                    : "no PROXY protocol header: the first bytes are not the PROXY v2 signature")
        }
    }

    // MARK: - Version 1

    private static func parseV1(_ bytes: UnsafeRawBufferPointer) throws(ProxyHeaderError) -> ParseResult {
        // "PROXY " is there (or its start); find the CRLF within the 107 bytes a line may have.
        guard bytes.count > v1Prefix.count else { return .incomplete }
        let limit = min(bytes.count, maximumV1Length)
        var end: Int?
        for index in v1Prefix.count..<limit where bytes[index] == 0x0A {
            guard bytes[index - 1] == 0x0D else {
                throw ProxyHeaderError(.malformed, "PROXY v1 line ends with LF without CR")
            }
            end = index - 1
            break
        }
        guard let end else {
            if bytes.count >= maximumV1Length {
                throw ProxyHeaderError(.tooLong, "PROXY v1 line has no CRLF within \(maximumV1Length) bytes")
            }
            return .incomplete
        }
        let line = bytes[v1Prefix.count..<end]
        if line.contains(0x0D) {
            throw ProxyHeaderError(.malformed, "PROXY v1 line has a CR before its end")
        }
        let fields = line.split(separator: 0x20, omittingEmptySubsequences: false)
        let length = end + 2
        guard let proto = fields.first else {
            throw ProxyHeaderError(.malformed, "PROXY v1 line has no protocol")
        }
        if proto.elementsEqual("UNKNOWN".utf8) {
            // The receiver must ignore whatever follows UNKNOWN.
            return .complete(
                ProxyHeader(version: .v1, command: .proxy, transportProtocol: .unspecified, source: nil, destination: nil),
                length: length)
        }
        let isV4: Bool
        if proto.elementsEqual("TCP4".utf8) {
            isV4 = true
        } else if proto.elementsEqual("TCP6".utf8) {
            isV4 = false
        } else {
            throw ProxyHeaderError(
                .malformed, "PROXY v1 protocol '\(printable(proto, limit: 16))' is not TCP4, TCP6 or UNKNOWN")
        }
        guard fields.count == 5 else {
            throw ProxyHeaderError(
                .malformed,
                "PROXY v1 line has \(fields.count - 1) fields after \(isV4 ? "TCP4" : "TCP6"), not 4 "
                    + "(source, destination, source port, destination port, one space apart)")
        }
        let family = isV4 ? "IPv4" : "IPv6"
        func address(_ field: Slice<UnsafeRawBufferPointer>, _ what: String) throws(ProxyHeaderError) -> [UInt8] {
            guard let parsed = isV4 ? parseIPv4(field) : parseIPv6(field) else {
                throw ProxyHeaderError(
                    .malformed, "PROXY v1 \(what) address '\(printable(field, limit: 46))' is not an \(family) address")
            }
            return parsed
        }
        func port(_ field: Slice<UnsafeRawBufferPointer>, _ what: String) throws(ProxyHeaderError) -> UInt16 {
            guard let parsed = parsePort(field) else {
                throw ProxyHeaderError(
                    .malformed, "PROXY v1 \(what) port '\(printable(field, limit: 16))' is not a number from 0 to 65535")
            }
            return parsed
        }
        let sourceBytes = try address(fields[1], "source")
        let destinationBytes = try address(fields[2], "destination")
        let sourcePort = try port(fields[3], "source")
        let destinationPort = try port(fields[4], "destination")
        let source: Address = isV4 ? .ipv4(sourceBytes, port: sourcePort) : .ipv6(sourceBytes, port: sourcePort)
        let destination: Address =
            isV4 ? .ipv4(destinationBytes, port: destinationPort) : .ipv6(destinationBytes, port: destinationPort)
        return .complete(
            ProxyHeader(version: .v1, command: .proxy, transportProtocol: .stream, source: source, destination: destination),
            length: length)
    }

    /// Dotted decimal, four parts of 1 to 3 digits, no leading zeros, each at most 255.
    static func parseIPv4(_ text: Slice<UnsafeRawBufferPointer>) -> [UInt8]? {
        let parts = text.split(separator: 0x2E, omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var bytes: [UInt8] = []
        for part in parts {
            guard (1...3).contains(part.count), part.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
            if part.count > 1 && part.first == 0x30 { return nil }
            let value = part.reduce(0) { $0 * 10 + Int($1 - 0x30) }
            guard value <= 255 else { return nil }
            bytes.append(UInt8(value))
        }
        return bytes
    }

    /// Any textual IPv6 form inet_pton accepts (including `::ffff:192.0.2.1`).
    static func parseIPv6(_ text: Slice<UnsafeRawBufferPointer>) -> [UInt8]? {
        guard (2...45).contains(text.count),
            text.allSatisfy({ $0 == 0x3A || $0 == 0x2E || (0x30...0x39).contains($0) || (0x41...0x46).contains($0)
                || (0x61...0x66).contains($0) })
        else { return nil }
        var address = in6_addr()
        let string = String(decoding: text, as: UTF8.self)
        guard inet_pton(AF_INET6, string, &address) == 1 else { return nil }
        return withUnsafeBytes(of: &address) { Array($0) }
    }

    /// 1 to 5 decimal digits, no leading zeros, at most 65535.
    static func parsePort(_ text: Slice<UnsafeRawBufferPointer>) -> UInt16? {
        guard (1...5).contains(text.count), text.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
        if text.count > 1 && text.first == 0x30 { return nil }
        let value = text.reduce(0) { $0 * 10 + Int($1 - 0x30) }
        return value <= 65535 ? UInt16(value) : nil
    }

    // MARK: - Version 2

    private static func parseV2(
        _ bytes: UnsafeRawBufferPointer, maximumLength: Int
    ) throws(ProxyHeaderError) -> ParseResult {
        guard bytes.count >= 16 else { return .incomplete }
        let versionAndCommand = bytes[12]
        guard versionAndCommand >> 4 == 2 else {
            throw ProxyHeaderError(.malformed, "PROXY v2 header has version \(versionAndCommand >> 4), not 2")
        }
        let command: Command
        switch versionAndCommand & 0x0F {
        case 0: command = .local
        case 1: command = .proxy
        case let other: throw ProxyHeaderError(.malformed, "PROXY v2 header has unknown command \(other) (0 LOCAL, 1 PROXY)")
        }
        let familyAndTransport = bytes[13]
        let addressLength: Int
        switch familyAndTransport >> 4 {
        case 0: addressLength = 0
        case 1: addressLength = 12
        case 2: addressLength = 36
        case 3: addressLength = 216
        case let other:
            throw ProxyHeaderError(
                .malformed, "PROXY v2 header has unknown address family \(other) (0 UNSPEC, 1 INET, 2 INET6, 3 UNIX)")
        }
        let transportProtocol: TransportProtocol
        switch familyAndTransport & 0x0F {
        case 0: transportProtocol = .unspecified
        case 1: transportProtocol = .stream
        case 2: transportProtocol = .datagram
        case let other:
            throw ProxyHeaderError(
                .malformed, "PROXY v2 header has unknown transport protocol \(other) (0 UNSPEC, 1 STREAM, 2 DGRAM)")
        }
        let declared = Int(bytes[14]) << 8 | Int(bytes[15])
        let length = 16 + declared
        guard length <= maximumLength else {
            throw ProxyHeaderError(
                .tooLong, "PROXY v2 header of \(length) bytes is longer than the \(maximumLength) allowed")
        }
        guard bytes.count >= length else { return .incomplete }
        if command == .local {
            // The receiver must use the connection's own addresses and discard the whole block.
            return .complete(
                ProxyHeader(
                    version: .v2, command: .local, transportProtocol: transportProtocol, source: nil, destination: nil),
                length: length)
        }
        guard declared >= addressLength else {
            let family = ["", "IPv4", "IPv6", "Unix"][Int(familyAndTransport >> 4)]
            throw ProxyHeaderError(
                .malformed,
                "PROXY v2 header declares \(declared) bytes, fewer than the \(addressLength) of \(family) addresses")
        }
        let block = UnsafeRawBufferPointer(rebasing: bytes[16..<length])
        var source: Address?
        var destination: Address?
        switch familyAndTransport >> 4 {
        case 1:
            source = .ipv4(Array(block[0..<4]), port: u16(block, 8))
            destination = .ipv4(Array(block[4..<8]), port: u16(block, 10))
        case 2:
            source = .ipv6(Array(block[0..<16]), port: u16(block, 32))
            destination = .ipv6(Array(block[16..<32]), port: u16(block, 34))
        case 3:
            source = .unix(path: Array(block[0..<108].prefix { $0 != 0 }))
            destination = .unix(path: Array(block[108..<216].prefix { $0 != 0 }))
        default:
            break
        }
        let tlvs = try parseTLVs(UnsafeRawBufferPointer(rebasing: block[addressLength...]), header: bytes[0..<length])
        return .complete(
            ProxyHeader(
                version: .v2, command: .proxy, transportProtocol: transportProtocol, source: source,
                destination: destination, tlvs: tlvs),
            length: length)
    }

    private static func parseTLVs(
        _ bytes: UnsafeRawBufferPointer, header: Slice<UnsafeRawBufferPointer>
    ) throws(ProxyHeaderError) -> [TLV] {
        var tlvs: [TLV] = []
        var offset = 0
        while offset < bytes.count {
            guard offset + 3 <= bytes.count else {
                throw ProxyHeaderError(
                    .malformed, "PROXY v2 TLV at byte \(offset) is cut short: \(bytes.count - offset) of its 3 header bytes")
            }
            let type = bytes[offset]
            let length = Int(u16(bytes, offset + 1))
            let start = offset + 3
            guard start + length <= bytes.count else {
                throw ProxyHeaderError(
                    .malformed,
                    "PROXY v2 TLV \(hex(type)) declares \(length) bytes, but only \(bytes.count - start) remain in the header")
            }
            let value = Array(bytes[start..<(start + length)])
            switch type {
            case TLVType.crc32c:
                guard length == 4 else {
                    throw ProxyHeaderError(.malformed, "PROXY v2 CRC32c TLV has \(length) bytes, not 4")
                }
                // The checksum covers the whole header with the checksum's own bytes taken as zero.
                let at = header.count - bytes.count + start
                let expected = UInt32(value[0]) << 24 | UInt32(value[1]) << 16 | UInt32(value[2]) << 8 | UInt32(value[3])
                guard CRC32C.checksum(header, zeroing: at..<(at + 4)) == expected else {
                    throw ProxyHeaderError(.malformed, "PROXY v2 header fails its CRC32c check")
                }
            case TLVType.uniqueID where length > 128:
                throw ProxyHeaderError(.malformed, "PROXY v2 unique-ID TLV has \(length) bytes, more than 128")
            default:
                break
            }
            if type != TLVType.noop { tlvs.append(TLV(type: type, value: value)) }
            offset = start + length
        }
        return tlvs
    }

    private static func u16(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt16 {
        UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    // MARK: - Text

    static func hex(_ byte: UInt8) -> String {
        let digits = Array("0123456789abcdef".utf8)
        return "0x" + String(decoding: [digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]], as: UTF8.self)
    }

    /// Peer bytes for a log line: printable ASCII as is, anything else as `?`, at most `limit` characters.
    static func printable<Bytes: Collection<UInt8>>(_ bytes: Bytes, limit: Int) -> String {
        var text = String(decoding: bytes.prefix(limit).map { (0x20...0x7E).contains($0) ? $0 : 0x3F }, as: UTF8.self)
        if bytes.count > limit { text += "..." }
        return text
    }

    /// `192.0.2.1` or `2001:db8::1` for 4 or 16 bytes.
    static func text(ofAddress bytes: [UInt8]) -> String? {
        if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") }
        guard bytes.count == 16 else { return nil }
        var out = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        let ok = bytes.withUnsafeBytes { raw in inet_ntop(AF_INET6, raw.baseAddress, &out, socklen_t(out.count)) }
        guard ok != nil else { return nil }
        return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// CRC32c (Castagnoli), the checksum of the v2 `PP2_TYPE_CRC32C` TLV.
enum CRC32C {
    static let table: [UInt32] = (0..<256).map { index in
        var crc = UInt32(index)
        for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        return crc
    }

    /// The checksum of `bytes`, with the bytes at the positions `zeroing` (relative to the slice's start) taken
    /// as zero.
    static func checksum(_ bytes: Slice<UnsafeRawBufferPointer>, zeroing: Range<Int>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for (position, byte) in bytes.enumerated() {
            let value = zeroing.contains(position) ? 0 : byte
            crc = table[Int((crc ^ UInt32(value)) & 0xFF)] ^ (crc >> 8)
        }
        return crc ^ 0xFFFF_FFFF
    }

    /// The checksum of `bytes`.
    static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0[...], zeroing: 0..<0) }
    }
}
