@testable import GnuTLS
import Testing

@Suite struct ClientHelloVersionsTests {
    /// A ClientHello body: legacy version, random, session id, suites, compression, then extensions.
    func hello(legacy: UInt16, supportedVersions: [UInt16]?) -> [UInt8] {
        var body: [UInt8] = [UInt8(legacy >> 8), UInt8(legacy & 0xff)]
        body += [UInt8](repeating: 7, count: 32)
        body += [0]  // no session id
        body += [0, 2, 0x13, 0x01]  // one suite
        body += [1, 0]  // null compression
        var extensions: [UInt8] = []
        if let versions = supportedVersions {
            let list = versions.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xff)] }
            let data = [UInt8(list.count)] + list
            extensions += [0, 43, 0, UInt8(data.count)] + data
        }
        body += [UInt8(extensions.count >> 8), UInt8(extensions.count & 0xff)] + extensions
        return body
    }

    func parse(_ bytes: [UInt8]) -> ClientHelloVersions? {
        bytes.withUnsafeBytes { ClientHelloVersions(body: $0) }
    }

    @Test func supportedVersionsWinOverTheLegacyField() {
        let bits = parse(hello(legacy: 0x0303, supportedVersions: [0x0304]))?.offered
        #expect(bits == ClientHelloVersions.bit(0x0304))
    }

    @Test func withoutTheExtensionEveryVersionUpToLegacyIsOffered() {
        #expect(parse(hello(legacy: 0x0302, supportedVersions: nil))?.offered == 0b0011)
        #expect(parse(hello(legacy: 0x0303, supportedVersions: nil))?.offered == 0b0111)
    }

    @Test func unknownVersionsAreIgnored() {
        #expect(parse(hello(legacy: 0x0303, supportedVersions: [0x7f1c, 0x0a0a, 0x0303]))?.offered == 0b0100)
    }

    @Test func truncatedOrLyingInputYieldsNilNeverACrash() {
        let good = hello(legacy: 0x0303, supportedVersions: [0x0304, 0x0303])
        // legacy_version, random, session id, suites and compression take 41 bytes: a hello cut inside them
        // yields nil; one cut inside its extensions reads as a hello without them (every version up to TLS 1.2).
        for length in 0..<good.count {
            #expect(parse(Array(good.prefix(length)))?.offered == (length < 41 ? nil : 0b0111), "prefix \(length)")
        }
        var lying = good
        lying[lying.count - 6] = 0xff  // extension length larger than what follows
        #expect(parse(lying) == nil)
        var random = SeededGenerator(seed: 3)
        for _ in 0..<2000 {
            let noise = (0..<Int.random(in: 0..<120, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            _ = parse(noise)
        }
    }
}
