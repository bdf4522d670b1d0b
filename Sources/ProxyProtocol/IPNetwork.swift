/// An IPv4 or IPv6 network in CIDR form (`10.0.0.0/8`, `2001:db8::/32`, or one address), for the list of peers
/// allowed to send a PROXY header.
///
/// An IPv4-mapped IPv6 address (`::ffff:10.1.2.3`, which a dual-stack socket reports for IPv4 peers) matches the
/// IPv4 networks that hold its IPv4 address.
public struct IPNetwork: Sendable, Hashable, CustomStringConvertible {
    /// The network's address bytes (4 or 16), host bits zero.
    public let address: [UInt8]
    /// How many leading bits must match.
    public let prefixLength: Int

    /// Why a network could not be read.
    public struct ParseError: Error, Sendable, Hashable, CustomStringConvertible {
        public let description: String
    }

    /// 127.0.0.0/8 and ::1/128.
    public static let loopback: [IPNetwork] = [
        IPNetwork(uncheckedAddress: [127, 0, 0, 0], prefixLength: 8),
        IPNetwork(uncheckedAddress: Array(repeating: 0, count: 15) + [1], prefixLength: 128),
    ]

    private init(uncheckedAddress address: [UInt8], prefixLength: Int) {
        self.address = address
        self.prefixLength = prefixLength
    }

    /// Reads `ADDRESS/PREFIX` or a lone `ADDRESS` (a network of one). Host bits set beyond the prefix are refused
    /// (`10.1.0.0/8` is more likely a typo than a choice).
    public init(_ text: String) throws(ParseError) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        let addressText = Array(parts[0].utf8)
        let bytes = addressText.withUnsafeBytes { raw in
            ProxyHeader.parseIPv4(raw[...]) ?? ProxyHeader.parseIPv6(raw[...])
        }
        guard let bytes else {
            throw ParseError(description: "'\(text)' is not an IPv4 or IPv6 address or network (e.g. 10.0.0.0/8, ::1)")
        }
        let bits = bytes.count * 8
        var prefix = bits
        if parts.count == 2 {
            guard let value = Int(parts[1]), parts[1].allSatisfy(\.isASCII), (0...bits).contains(value) else {
                throw ParseError(description: "'\(text)' has a prefix length that is not 0 to \(bits)")
            }
            prefix = value
        }
        let network = IPNetwork.masked(bytes, prefixLength: prefix)
        guard network == bytes else {
            let suggestion = IPNetwork(uncheckedAddress: network, prefixLength: prefix)
            throw ParseError(
                description: "'\(text)' has address bits set beyond its /\(prefix) prefix; did you mean \(suggestion)?")
        }
        self.init(uncheckedAddress: bytes, prefixLength: prefix)
    }

    /// Reads a comma-separated list (`127.0.0.1,10.0.0.0/8,::1`); spaces around the commas are allowed.
    public static func list(_ text: String) throws(ParseError) -> [IPNetwork] {
        var networks: [IPNetwork] = []
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let trimmed = item.trimmingPrefix(while: { $0 == " " })
            let name = String(trimmed.reversed().drop(while: { $0 == " " }).reversed())
            guard !name.isEmpty else { throw ParseError(description: "'\(text)' has an empty entry") }
            networks.append(try IPNetwork(name))
        }
        return networks
    }

    /// Whether `address` (4 or 16 bytes) lies in this network.
    public func contains(_ address: [UInt8]) -> Bool {
        var candidate = address
        if candidate.count == 16 && self.address.count == 4 && candidate.prefix(12).elementsEqual(IPNetwork.mappedPrefix) {
            candidate = Array(candidate.suffix(4))
        } else if candidate.count == 4 && self.address.count == 16 {
            candidate = IPNetwork.mappedPrefix + candidate
        }
        guard candidate.count == self.address.count else { return false }
        return IPNetwork.masked(candidate, prefixLength: prefixLength) == self.address
    }

    /// Whether any of `networks` contains `address`.
    public static func any(_ networks: [IPNetwork], contains address: [UInt8]) -> Bool {
        networks.contains { $0.contains(address) }
    }

    public var description: String {
        "\(ProxyHeader.text(ofAddress: address) ?? "?")/\(prefixLength)"
    }

    private static let mappedPrefix: [UInt8] = Array(repeating: 0, count: 10) + [0xFF, 0xFF]

    private static func masked(_ bytes: [UInt8], prefixLength: Int) -> [UInt8] {
        bytes.enumerated().map { index, byte in
            let keep = max(0, min(8, prefixLength - index * 8))
            return keep == 8 ? byte : byte & ~(UInt8(0xFF) >> UInt8(keep))
        }
    }
}
