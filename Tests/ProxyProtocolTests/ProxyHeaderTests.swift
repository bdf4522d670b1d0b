@testable import ProxyProtocol
import Testing

/// A v2 header: signature, version/command, family/transport, length, then `body` (addresses and TLVs).
func v2(command: UInt8 = 1, family: UInt8 = 1, transport: UInt8 = 1, body: [UInt8], declared: Int? = nil) -> [UInt8] {
    let length = declared ?? body.count
    return ProxyHeader.v2Signature + [0x20 | command, family << 4 | transport, UInt8(length >> 8), UInt8(length & 0xFF)]
        + body
}

/// IPv4 addresses 192.0.2.1:51234 → 198.51.100.7:443 as a v2 address block.
let v4Block: [UInt8] = [192, 0, 2, 1, 198, 51, 100, 7, 0xC8, 0x22, 0x01, 0xBB]

func tlv(_ type: UInt8, _ value: [UInt8]) -> [UInt8] {
    [type, UInt8(value.count >> 8), UInt8(value.count & 0xFF)] + value
}

/// The error `parse` throws for `bytes`, or nil if it does not throw.
func parseError(_ bytes: [UInt8], maximumLength: Int = ProxyHeader.defaultMaximumLength) -> ProxyHeaderError? {
    do {
        _ = try ProxyHeader.parse(bytes, maximumLength: maximumLength)
        return nil
    } catch {
        return error
    }
}

func complete(_ bytes: [UInt8]) throws -> (ProxyHeader, Int) {
    guard case .complete(let header, let length) = try ProxyHeader.parse(bytes) else {
        throw ProxyHeaderError(.truncated, "expected a complete header")
    }
    return (header, length)
}

@Suite struct ProxyHeaderV1Tests {
    @Test func tcp4LineGivesBothAddressesAndItsLength() throws {
        let line = Array("PROXY TCP4 192.0.2.1 198.51.100.7 51234 443\r\n".utf8)
        let (header, length) = try complete(line + [0x16, 0x03, 0x01])
        #expect(length == line.count)
        #expect(header.version == .v1)
        #expect(header.command == .proxy)
        #expect(header.transportProtocol == .stream)
        #expect(header.source == .ipv4([192, 0, 2, 1], port: 51234))
        #expect(header.destination == .ipv4([198, 51, 100, 7], port: 443))
        #expect(header.source?.description == "192.0.2.1:51234")
        #expect(header.tlvs.isEmpty)
    }

    @Test func tcp6LineOfTheLongestFormIsAccepted() throws {
        let address = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        let text = "PROXY TCP6 \(address) \(address) 65535 65535\r\n"
        let (header, length) = try complete(Array(text.utf8))
        #expect(length == 104)
        #expect(header.source == .ipv6(Array(repeating: 0xFF, count: 16), port: 65535))
        #expect(header.source?.description == "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")
    }

    @Test func tcp6CompressedAndMappedFormsAreAccepted() throws {
        let (header, _) = try complete(Array("PROXY TCP6 2001:db8::1 ::ffff:192.0.2.9 1 0\r\n".utf8))
        #expect(header.source == .ipv6([0x20, 0x01, 0x0D, 0xB8] + Array(repeating: 0, count: 11) + [1], port: 1))
        #expect(header.destination?.ipAddress == "::ffff:192.0.2.9")
        #expect(header.destination?.port == 0)
    }

    @Test func unknownIgnoresWhatFollowsAndCarriesNoAddresses() throws {
        // The specification's worst case, 107 bytes: UNKNOWN followed by the longest TCP6 fields.
        let address = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        let longest = "PROXY UNKNOWN \(address) \(address) 65535 65535\r\n"
        #expect(longest.utf8.count == ProxyHeader.maximumV1Length)
        for text in ["PROXY UNKNOWN\r\n", "PROXY UNKNOWN ffff::1 whatever 1 2\r\n", longest] {
            let (header, length) = try complete(Array(text.utf8))
            #expect(length == text.utf8.count)
            #expect(header.source == nil && header.destination == nil)
            #expect(header.transportProtocol == .unspecified)
        }
    }

    @Test func everyPrefixOfAValidLineIsIncomplete() throws {
        let line = Array("PROXY TCP4 192.0.2.1 198.51.100.7 51234 443\r\n".utf8)
        for count in 0..<line.count {
            #expect(try ProxyHeader.parse(Array(line[..<count])) == .incomplete, "prefix of \(count) bytes")
        }
    }

    @Test func malformedLinesAreRefusedWithTheirReason() {
        let cases: [(String, ProxyHeaderError.Kind, String)] = [
            ("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", .malformed, "protocol 'TCP5' is not TCP4, TCP6 or UNKNOWN"),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", .malformed, "has 3 fields after TCP4, not 4"),
            ("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", .malformed, "has 5 fields after TCP4"),
            ("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", .malformed, "source address '1.2.3.256' is not an IPv4 address"),
            ("PROXY TCP4 1.2.3.4 05.6.7.8 1 2\r\n", .malformed, "destination address '05.6.7.8' is not an IPv4"),
            ("PROXY TCP4 ::1 5.6.7.8 1 2\r\n", .malformed, "source address '::1' is not an IPv4 address"),
            ("PROXY TCP6 1.2.3.4 ::1 1 2\r\n", .malformed, "source address '1.2.3.4' is not an IPv6 address"),
            ("PROXY TCP6 ::1 ::g 1 2\r\n", .malformed, "destination address '::g' is not an IPv6 address"),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", .malformed, "source port '65536' is not a number"),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1 02\r\n", .malformed, "destination port '02' is not a number"),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n", .malformed, "destination port '-2'"),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", .malformed, "ends with LF without CR"),
            ("PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n", .malformed, "has a CR before its end"),
            ("PROXY \r\n", .malformed, "protocol '' is not TCP4"),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2" + String(repeating: " ", count: 80), .tooLong, "no CRLF within 107 bytes"),
            ("PROXX TCP4", .missing, "starts with 'PROXX TC'"),
            ("GET / HTTP/1.1\r\n", .missing, "starts with byte 0x47"),
        ]
        for (text, kind, words) in cases {
            let error = parseError(Array(text.utf8))
            #expect(error?.kind == kind, "\(text.debugDescription): \(String(describing: error))")
            #expect(error?.reason.contains(words) == true, "\(text.debugDescription): \(String(describing: error))")
        }
    }

    @Test func peerBytesInReasonsAreMadePrintableAndShort() {
        let error = parseError(Array("PROXY TCP4 \u{1B}[31m1.2.3.4 5.6.7.8 1 2\r\n".utf8))
        #expect(error?.reason == "PROXY v1 source address '?[31m1.2.3.4' is not an IPv4 address")
    }

    @Test func aTLSClientHelloIsNamedAsSuch() {
        let error = parseError([0x16, 0x03, 0x01, 0x02, 0x00])
        #expect(error == ProxyHeaderError(.missing, "no PROXY protocol header: the connection starts with a TLS handshake"))
    }
}

@Suite struct ProxyHeaderV2Tests {
    @Test func proxyOverIPv4GivesAddressesAndLeavesTheRest() throws {
        let header = v2(body: v4Block)
        let (parsed, length) = try complete(header + [0x16, 0x03, 0x01])
        #expect(length == 28)
        #expect(parsed.version == .v2)
        #expect(parsed.command == .proxy)
        #expect(parsed.transportProtocol == .stream)
        #expect(parsed.source == .ipv4([192, 0, 2, 1], port: 51234))
        #expect(parsed.destination == .ipv4([198, 51, 100, 7], port: 443))
    }

    @Test func proxyOverIPv6() throws {
        let source: [UInt8] = [0x20, 0x01, 0x0D, 0xB8] + Array(repeating: 0, count: 11) + [1]
        let destination: [UInt8] = Array(repeating: 0, count: 15) + [1]
        let (parsed, length) = try complete(v2(family: 2, body: source + destination + [0, 80, 1, 0xBB]))
        #expect(length == 52)
        #expect(parsed.source == .ipv6(source, port: 80))
        #expect(parsed.source?.description == "[2001:db8::1]:80")
        #expect(parsed.destination?.description == "[::1]:443")
    }

    @Test func proxyOverUnixSocketsTakesThePathsUpToTheirNUL() throws {
        var block = [UInt8](repeating: 0, count: 216)
        block.replaceSubrange(0..<9, with: Array("/run/a.sk".utf8))
        block.replaceSubrange(108..<(108 + 6), with: Array("/run/b".utf8))
        let (parsed, _) = try complete(v2(family: 3, transport: 1, body: block))
        #expect(parsed.source == .unix(path: Array("/run/a.sk".utf8)))
        #expect(parsed.destination?.description == "unix:/run/b")
        #expect(parsed.source?.port == nil)
    }

    @Test func localDiscardsItsBlockWhateverTheFamily() throws {
        let (parsed, length) = try complete(v2(command: 0, family: 1, body: v4Block + tlv(0x05, [1, 2])))
        #expect(length == 16 + 12 + 5)
        #expect(parsed.command == .local)
        #expect(parsed.source == nil && parsed.destination == nil && parsed.tlvs.isEmpty)
        // A health check: LOCAL, UNSPEC, no block at all.
        let (check, checkLength) = try complete(v2(command: 0, family: 0, transport: 0, body: []))
        #expect(checkLength == 16 && check.command == .local && check.transportProtocol == .unspecified)
    }

    @Test func unspecifiedFamilyCarriesNoAddresses() throws {
        let (parsed, _) = try complete(v2(family: 0, transport: 0, body: tlv(0x02, Array("example.org".utf8))))
        #expect(parsed.source == nil)
        #expect(parsed.authority == "example.org")
    }

    @Test func knownTLVsAreReadAndNoopIsDropped() throws {
        let ssl = tlv(0x20, [0x01, 0, 0, 0, 0] + tlv(0x21, Array("TLSv1.3".utf8)))
        let body = v4Block + tlv(0x01, Array("h2".utf8)) + tlv(0x04, [0, 0, 0]) + tlv(0x02, Array("example.org".utf8))
            + tlv(0x05, Array(repeating: 7, count: 128)) + ssl + tlv(0xE0, [])
        let (parsed, length) = try complete(v2(body: body))
        #expect(length == 16 + body.count)
        #expect(parsed.tlvs.map(\.type) == [0x01, 0x02, 0x05, 0x20, 0xE0])
        #expect(parsed.applicationProtocol == Array("h2".utf8))
        #expect(parsed.authority == "example.org")
        #expect(parsed.uniqueID == Array(repeating: 7, count: 128))
        #expect(parsed.value(of: ProxyHeader.TLVType.ssl) == Array(ssl.dropFirst(3)))
    }

    @Test func aCorrectCRC32cIsAcceptedAndAWrongOneRefused() throws {
        // The checksum of the header with its own four bytes zero, in network byte order.
        var header = v2(body: v4Block + tlv(0x03, [0, 0, 0, 0]))
        let crc = CRC32C.checksum(header)
        header.replaceSubrange((header.count - 4)..., with: [UInt8(crc >> 24), UInt8((crc >> 16) & 0xFF), UInt8((crc >> 8) & 0xFF), UInt8(crc & 0xFF)])
        let (parsed, _) = try complete(header)
        #expect(parsed.value(of: ProxyHeader.TLVType.crc32c)?.count == 4)
        header[20] ^= 1  // a changed address byte
        #expect(parseError(header) == ProxyHeaderError(.malformed, "PROXY v2 header fails its CRC32c check"))
    }

    @Test func crc32cOfTheStandardCheckInput() {
        // The CRC32c check value ("123456789" → 0xE3069283), from RFC 3720's definition.
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
    }

    @Test func everyPrefixOfAValidHeaderIsIncomplete() throws {
        let header = v2(body: v4Block + tlv(0x02, Array("example.org".utf8)))
        for count in 0..<header.count {
            #expect(try ProxyHeader.parse(Array(header[..<count])) == .incomplete, "prefix of \(count) bytes")
        }
    }

    @Test func malformedHeadersAreRefusedWithTheirReason() {
        var wrongSignature = v2(body: v4Block)
        wrongSignature[6] = 0x0B
        let cases: [([UInt8], ProxyHeaderError.Kind, String)] = [
            (wrongSignature, .missing, "the first bytes are not the PROXY v2 signature"),
            (Array(wrongSignature[..<8]), .missing, "not the PROXY v2 signature"),
            (ProxyHeader.v2Signature + [0x11, 0x11, 0, 12] + v4Block, .malformed, "has version 1, not 2"),
            (v2(command: 2, body: v4Block), .malformed, "unknown command 2"),
            (v2(family: 4, body: v4Block), .malformed, "unknown address family 4"),
            (v2(transport: 3, body: v4Block), .malformed, "unknown transport protocol 3"),
            (v2(body: Array(v4Block[..<8])), .malformed, "declares 8 bytes, fewer than the 12 of IPv4 addresses"),
            (v2(family: 2, body: v4Block), .malformed, "fewer than the 36 of IPv6 addresses"),
            (v2(body: v4Block + [0x02, 0x00]), .malformed, "TLV at byte 0 is cut short: 2 of its 3 header bytes"),
            (v2(body: v4Block + [0x02, 0x00, 0x09, 0x41]), .malformed, "TLV 0x02 declares 9 bytes, but only 1 remain"),
            (v2(body: v4Block + tlv(0x03, [1, 2])), .malformed, "CRC32c TLV has 2 bytes, not 4"),
            (v2(body: v4Block + tlv(0x05, Array(repeating: 0, count: 129))), .malformed, "unique-ID TLV has 129 bytes"),
        ]
        for (bytes, kind, words) in cases {
            let error = parseError(bytes)
            #expect(error?.kind == kind, "\(bytes): \(String(describing: error))")
            #expect(error?.reason.contains(words) == true, "\(bytes): \(String(describing: error))")
        }
    }

    @Test func aDeclaredLengthBeyondTheBoundIsRefusedBeforeItArrives() {
        // Only the 16-byte preamble has arrived: the declared 65535 bytes are refused at once.
        let preamble = v2(body: [], declared: 65535)
        #expect(parseError(preamble) == ProxyHeaderError(.tooLong, "PROXY v2 header of 65551 bytes is longer than the 4096 allowed"))
        #expect(parseError(v2(body: v4Block), maximumLength: 27)?.kind == .tooLong)
        #expect(parseError(v2(body: v4Block), maximumLength: 28) == nil)
    }

    @Test func aHeaderCutAfterTenBytesIsStillIncomplete() throws {
        // Only the caller knows the stream ended (then it is truncation); the parser waits.
        #expect(try ProxyHeader.parse(Array(v2(body: v4Block)[..<10])) == .incomplete)
    }
}

@Suite struct IPNetworkTests {
    @Test func networksContainTheirAddressesOnly() throws {
        let ten = try IPNetwork("10.0.0.0/8")
        #expect(ten.contains([10, 200, 3, 4]))
        #expect(!ten.contains([11, 0, 0, 0]))
        let host = try IPNetwork("192.0.2.7")
        #expect(host.prefixLength == 32 && host.contains([192, 0, 2, 7]) && !host.contains([192, 0, 2, 8]))
        let six = try IPNetwork("2001:db8::/32")
        #expect(six.contains([0x20, 0x01, 0x0D, 0xB8] + Array(repeating: 9, count: 12)))
        #expect(!six.contains([0x20, 0x01, 0x0D, 0xB9] + Array(repeating: 0, count: 12)))
        #expect(!six.contains([10, 0, 0, 1]))
        let odd = try IPNetwork("172.16.0.0/12")
        #expect(odd.contains([172, 31, 255, 255]) && !odd.contains([172, 32, 0, 0]))
        #expect(try IPNetwork("0.0.0.0/0").contains([203, 0, 113, 5]))
    }

    @Test func mappedIPv4PeersMatchIPv4Networks() throws {
        let mapped: [UInt8] = Array(repeating: 0, count: 10) + [0xFF, 0xFF, 127, 0, 0, 1]
        #expect(IPNetwork.any(IPNetwork.loopback, contains: mapped))
        #expect(IPNetwork.any(IPNetwork.loopback, contains: Array(repeating: 0, count: 15) + [1]))
        #expect(!IPNetwork.any(IPNetwork.loopback, contains: [10, 0, 0, 1]))
        #expect(try IPNetwork("::ffff:0:0/96").contains([10, 0, 0, 1]))
    }

    @Test func listsAndTheirErrors() throws {
        let list = try IPNetwork.list("127.0.0.1, 10.0.0.0/8,::1")
        #expect(list.map(\.description) == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"])
        let cases: [(String, String)] = [
            ("10.0.0.0/33", "'10.0.0.0/33' has a prefix length that is not 0 to 32"),
            ("10.1.0.0/8", "'10.1.0.0/8' has address bits set beyond its /8 prefix; did you mean 10.0.0.0/8?"),
            ("localhost", "'localhost' is not an IPv4 or IPv6 address or network (e.g. 10.0.0.0/8, ::1)"),
            ("::1/x", "'::1/x' has a prefix length that is not 0 to 128"),
            ("10.0.0.1,,::1", "'10.0.0.1,,::1' has an empty entry"),
        ]
        for (text, message) in cases {
            #expect(throws: IPNetwork.ParseError(description: message)) { try IPNetwork.list(text) }
        }
    }
}
