// Fuzz target: the ClientHello version parser (ClientHelloVersions, package access), fed arbitrary hello bodies.
// Seeds: the bodies of real ClientHellos (TLS 1.3 and 1.2).
import FuzzSupport
import GnuTLS

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutableRawPointer) -> CInt {
    // A record (5 bytes) holding one handshake message (4-byte header): the body starts at byte 9.
    writeSeedsIfAsked(
        FuzzPKI.seedPolicies.map { Array(recordFirstFlights(policy: $0).clientHello.dropFirst(9)) }, name: "hello-body")
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
}

@main struct FuzzTarget { static func main() { fuzzMain(fuzz, replay: fuzzOne) } }
