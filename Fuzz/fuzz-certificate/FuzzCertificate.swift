// Fuzz target: certificate and private-key loading from PEM and DER, and an identity or trust store built from
// what loaded. The first input byte picks the loader; the rest is the file's content.
import Foundation
import FuzzSupport
import GnuTLS

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutableRawPointer) -> CInt {
    writeSeedsIfAsked(seeds(), name: "credential")
    return 0
}

func seeds() -> [[UInt8]] {
    let leaf = FuzzPKI.server.certificate
    let key = FuzzPKI.server.privateKey
    let chainPEM = Array(FuzzPKI.server.chain.map(\.pemString).joined().utf8)
    let rsa = (try? PrivateKey.generate(.rsa(bits: 2048))) ?? key
    return [
        [0] + leaf.derBytes, [1] + chainPEM, [2] + Array(key.pemString.utf8), [3] + key.pkcs8DERBytes,
        [4] + key.pkcs8DERBytes, [5] + chainPEM, [5] + leaf.derBytes, [6] + Array(key.pemString.utf8),
        [2] + Array(rsa.pemString.utf8), [7] + FuzzPKI.ca.certificate.derBytes,
    ]
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzOne(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

/// PEM text or DER bytes: `Certificate.parse(pem:)` for text that looks like PEM, `Certificate(derBytes:)` else.
func certificates(_ bytes: [UInt8]) throws(TLSError) -> [Certificate] {
    if bytes.starts(with: Array("-----".utf8)) || bytes.contains(0x2D) && bytes.first != 0x30 {
        return try Certificate.parse(pem: String(decoding: bytes, as: UTF8.self))
    }
    return [try Certificate(derBytes: bytes)]
}

/// FUZZ_VERBOSE=1 prints each input's error (to see which path an input takes).
let verbose = ProcessInfo.processInfo.environment["FUZZ_VERBOSE"] != nil

func touch(_ certificate: Certificate) {
    _ = certificate.description
    _ = certificate.pemString
    _ = certificate.names
    _ = certificate.publicKeySHA256Hex
}

func fuzzOne(_ input: UnsafeRawBufferPointer) {
    guard let mode = input.first else { return }
    let bytes = Array(input.dropFirst())
    let text = String(decoding: bytes, as: UTF8.self)
    do {
        switch mode % 8 {
        case 0: touch(try Certificate(derBytes: bytes))
        case 1: try Certificate.parse(pem: text).forEach(touch)
        case 2: _ = try PrivateKey(pem: text).pemString
        case 3: _ = try PrivateKey(derBytes: bytes).pemString
        case 4: _ = try PrivateKey(derBytes: bytes, password: "fuzz").pemString
        case 5:  // a chain from the input with the leaf's real key: a server identity
            let chain = try certificates(bytes)
            _ = try TLSContext(
                configuration: .server(identity: .certificates(chain, privateKey: FuzzPKI.server.privateKey)))
        case 6:  // a key from the input with the real leaf
            let key = try PrivateKey(pem: text)
            _ = try TLSContext(
                configuration: .server(identity: .certificates([FuzzPKI.server.certificate], privateKey: key)))
        default:  // trust anchors from the input
            let roots = try certificates(bytes)
            _ = try TLSContext(configuration: .client(serverName: "localhost", trustRoots: .certificates(roots)))
        }
    } catch {
        if verbose { print("fuzz-certificate: mode \(mode % 8): \(error)") }
        _ = error.description
    }
}

@main struct FuzzTarget { static func main() { fuzzMain(fuzz, replay: fuzzOne) } }
