// Fuzz target: a client session that has sent its ClientHello, fed the input as the server's flights.
// Seeds: real server first flights (TLS 1.3 and 1.2), answers to another ClientHello.
import FuzzSupport
import GnuTLS

let clientContext = FuzzPKI.context(FuzzPKI.clientConfiguration())

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutableRawPointer) -> CInt {
    writeSeedsIfAsked(FuzzPKI.seedPolicies.map { recordFirstFlights(policy: $0).serverFlight }, name: "server-flight")
    _ = clientContext
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzOne(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

func fuzzOne(_ input: UnsafeRawBufferPointer) {
    guard let session = try? clientContext.makeSession(),
        (try? session.handshake()) == .needsInput
    else { fatalError("cannot start a client session") }
    _ = session.takePendingOutput()  // the ClientHello
    session.feed(input)
    drive(session)
}

@main struct FuzzTarget { static func main() { fuzzMain(fuzz, replay: fuzzOne) } }
