// Fuzz target: the ClientHello parsers that read a peer's bytes before GnuTLS does (package access): the version
// parser (ClientHelloVersions) and the context selector's peek (ClientHelloPeek), each fed arbitrary hello
// bodies, and the peek also fed the input as records. Seeds: the bodies of real ClientHellos (TLS 1.3 and 1.2).
import FuzzSupport
import GnuTLS

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutableRawPointer) -> CInt {
    // A record (5 bytes) holding one handshake message (4-byte header): the body starts at byte 9.
    writeSeedsIfAsked(
        FuzzPKI.seedPolicies.map { Array(recordFirstFlights(policy: $0).clientHello.dropFirst(9)) }, name: "hello-body")
    // The whole records too, for the peek's record reader.
    writeSeedsIfAsked(FuzzPKI.seedPolicies.map { recordFirstFlights(policy: $0).clientHello }, name: "hello-record")
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzOne(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

func fuzzOne(_ input: UnsafeRawBufferPointer) {
    if let hello = ClientHelloVersions(body: input) {
        // Only TLS 1.0 to 1.3 have bits.
        precondition(hello.offered & 0xF0 == 0, "offered \(hello.offered) has a bit outside TLS 1.0-1.3")
    }
    if let info = ClientHelloPeek.parseBody(input) { check(info, size: input.count) }
    if case .hello(let info) = ClientHelloPeek.parse(input) { check(info, size: input.count) }
}

/// What the peek reports comes from the input: a name of printable ASCII in lower case, no more protocols than
/// bytes.
func check(_ info: ClientHelloInfo, size: Int) {
    if let name = info.serverName {
        precondition(name.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7f }, "server name '\(name)' is not printable ASCII")
        precondition(name == name.lowercased(), "server name '\(name)' is not in lower case")
        precondition(name.utf8.count <= size)
    }
    precondition(info.applicationProtocols.count <= size)
}

@main struct FuzzTarget { static func main() { fuzzMain(fuzz, replay: fuzzOne) } }
