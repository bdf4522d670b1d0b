// Fuzz target: the PROXY protocol header parser (ProxyHeader.parse), fed arbitrary connection starts.
// Seeds: v1 lines (TCP4, TCP6, UNKNOWN) and v2 headers (IPv4, IPv6, Unix, LOCAL, with TLVs and a CRC32c), each
// followed by the start of a TLS record, as a balancer sends them.
import FuzzSupport
import ProxyProtocol

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutableRawPointer) -> CInt {
    writeSeedsIfAsked(seeds(), name: "proxy-header")
    return 0
}

func seeds() -> [[UInt8]] {
    let hello: [UInt8] = [0x16, 0x03, 0x01, 0x00, 0x05]
    func v2(_ command: UInt8, _ family: UInt8, _ body: [UInt8]) -> [UInt8] {
        ProxyHeader.v2Signature + [0x20 | command, family << 4 | 1, UInt8(body.count >> 8), UInt8(body.count & 0xFF)]
            + body
    }
    func tlv(_ type: UInt8, _ value: [UInt8]) -> [UInt8] { [type, 0, UInt8(value.count)] + value }
    let v4: [UInt8] = [192, 0, 2, 1, 198, 51, 100, 7, 0xC8, 0x22, 0x01, 0xBB]
    let v6: [UInt8] = Array(repeating: 0x20, count: 32) + [0, 80, 1, 0xBB]
    var unix = [UInt8](repeating: 0, count: 216)
    unix.replaceSubrange(0..<6, with: Array("/run/a".utf8))
    var withCRC = v2(1, 1, v4 + tlv(0x03, [0, 0, 0, 0]))
    withCRC.replaceSubrange((withCRC.count - 4)..., with: [0x5A, 0x5A, 0x5A, 0x5A])
    return [
        Array("PROXY TCP4 192.0.2.1 198.51.100.7 51234 443\r\n".utf8) + hello,
        Array("PROXY TCP6 2001:db8::1 ::ffff:192.0.2.9 1 65535\r\n".utf8) + hello,
        Array("PROXY UNKNOWN\r\n".utf8) + hello,
        v2(1, 1, v4) + hello,
        v2(1, 2, v6 + tlv(0x01, Array("h2".utf8)) + tlv(0x02, Array("example.org".utf8))) + hello,
        v2(1, 3, unix + tlv(0x05, Array(repeating: 7, count: 32)) + tlv(0x20, [1, 0, 0, 0, 0] + tlv(0x21, [0x31]))),
        v2(0, 0, []) + hello,
        withCRC + hello,
    ]
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzOne(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

func fuzzOne(_ input: UnsafeRawBufferPointer) {
    // The first byte picks the bound on v2 headers (16 to 4096 bytes), the rest is what the connection received.
    guard let first = input.first else { return }
    let maximumLength = 16 + Int(first) * 16
    let bytes = UnsafeRawBufferPointer(rebasing: input.dropFirst())
    do {
        switch try ProxyHeader.parse(bytes, maximumLength: maximumLength) {
        case .incomplete:
            // Never incomplete beyond what a header may be.
            precondition(bytes.count < max(ProxyHeader.maximumV1Length, maximumLength), "incomplete at \(bytes.count) bytes")
        case .complete(let header, let length):
            precondition(length >= 16 || header.version == .v1, "a v2 header of \(length) bytes")
            precondition(length <= bytes.count, "length \(length) beyond the \(bytes.count) bytes given")
            precondition(header.version == .v2 || length <= ProxyHeader.maximumV1Length, "v1 line of \(length)")
            precondition(header.version == .v1 || length <= maximumLength, "v2 header of \(length) > \(maximumLength)")
            _ = header.source?.description
            _ = header.destination?.description
            _ = header.authority
            // The same bytes cut anywhere before the end are incomplete, never an error.
            if length > 1 {
                let cut = UnsafeRawBufferPointer(rebasing: bytes[..<(length - 1)])
                precondition((try? ProxyHeader.parse(cut, maximumLength: maximumLength)) == .incomplete, "prefix")
            }
        }
    } catch {
        precondition(!error.reason.isEmpty)
    }
}

@main struct FuzzTarget { static func main() { fuzzMain(fuzz, replay: fuzzOne) } }
