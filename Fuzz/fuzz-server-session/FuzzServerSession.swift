// Fuzz target: a server session fed the input as the client's bytes. Seeds: real ClientHellos (TLS 1.3 and 1.2).
import FuzzSupport
import GnuTLS

let serverContext = FuzzPKI.context(FuzzPKI.serverConfiguration())

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutableRawPointer) -> CInt {
    writeSeedsIfAsked(FuzzPKI.seedPolicies.map { recordFirstFlights(policy: $0).clientHello }, name: "client-hello")
    _ = serverContext
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzOne(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

func fuzzOne(_ input: UnsafeRawBufferPointer) {
    guard let session = try? serverContext.makeSession() else { fatalError("cannot make a server session") }
    session.feed(input)
    drive(session)
}

@main struct FuzzTarget { static func main() { fuzzMain(fuzz, replay: fuzzOne) } }
