// Fuzz target: priority strings (`.custom`) and ALPN lists through TLSContext(configuration:), then a session
// of the context (a client also writes its ClientHello, which the priorities shape).
// Input: one byte of flags (bit 0: server), the priority string up to a zero byte, then ALPN names, each a
// length byte and that many bytes.
import FuzzSupport
import GnuTLS

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutableRawPointer) -> CInt {
    writeSeedsIfAsked(seeds(), name: "configuration")
    return 0
}

func encode(server: Bool, priority: String, alpn: [String]) -> [UInt8] {
    var bytes: [UInt8] = [server ? 1 : 0] + Array(priority.utf8) + [0]
    for name in alpn { bytes += [UInt8(truncatingIfNeeded: name.utf8.count)] + Array(name.utf8) }
    return bytes
}

func seeds() -> [[UInt8]] {
    let priorities = [
        TLSConfiguration.ProtocolPolicy.intermediate.priorityString,
        TLSConfiguration.ProtocolPolicy.modern.priorityString,
        "NORMAL", "SECURE256:+SECURE128:-VERS-ALL:+VERS-TLS1.2", "PERFORMANCE:%SERVER_PRECEDENCE:%COMPAT",
        "@SYSTEM", "NONE:+VERS-TLS1.3:+AES-128-GCM:+AEAD:+GROUP-X25519:+SIGN-ALL:+COMP-NULL",
        "NORMAL:-VERS-ALL:+VERS-TLS1.1",
    ]
    var seeds: [[UInt8]] = []
    for (index, priority) in priorities.enumerated() {
        seeds.append(encode(server: index % 2 == 0, priority: priority, alpn: ["h2", "http/1.1"]))
        seeds.append(encode(server: index % 2 == 1, priority: priority, alpn: []))
    }
    return seeds
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzOne(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

func fuzzOne(_ input: UnsafeRawBufferPointer) {
    guard let flags = input.first else { return }
    let rest = input.dropFirst()
    let end = rest.firstIndex(of: 0) ?? rest.endIndex
    let priority = String(decoding: rest[rest.startIndex..<end], as: UTF8.self)
    var alpn: [String] = []
    var index = end == rest.endIndex ? end : end + 1
    while index < rest.endIndex {
        let length = Int(rest[index])
        let start = index + 1
        let stop = min(start + length, rest.endIndex)
        alpn.append(String(decoding: rest[start..<stop], as: UTF8.self))
        index = stop
    }
    let server = flags & 1 == 1
    let configuration: TLSConfiguration =
        server
        ? FuzzPKI.serverConfiguration(policy: .custom(priority))
        : FuzzPKI.clientConfiguration(policy: .custom(priority))
    var adjusted = configuration
    adjusted.applicationProtocols = alpn
    adjusted.sessionTickets = flags & 2 == 0
    do {
        let context = try TLSContext(configuration: adjusted)
        _ = context.enabledVersions
        _ = adjusted.description
        let session = try context.makeSession()
        if !server { _ = try session.handshake() }
        _ = session.takePendingOutput()
    } catch {
        _ = error.description
    }
}

@main struct FuzzTarget { static func main() { fuzzMain(fuzz, replay: fuzzOne) } }
