/// The protocol versions a ClientHello offers, read from its bytes.
///
/// GnuTLS reports a client whose versions we do not accept as "no supported cipher suites" (it filters the
/// suites by version first). To tell the peer and the user the real reason, the server reads the versions the
/// client offered and, when none is acceptable, answers with a `protocol_version` alert. The bytes come from
/// the network: every index is checked, and anything malformed yields nil (GnuTLS then reports it itself).
/// `package` so that the fuzz target `fuzz-client-hello-versions` can call the parser directly.
package struct ClientHelloVersions: Equatable {
    /// The TLS versions offered, one bit per version: bit 0 = TLS 1.0 (0x0301) … bit 3 = TLS 1.3 (0x0304).
    /// A bit set rather than a `Set` so that reading a hello allocates nothing.
    package let offered: UInt8

    /// The bit for a wire version, or 0 for versions outside TLS 1.0 to 1.3.
    package static func bit(_ version: UInt16) -> UInt8 {
        guard (0x0301...0x0304).contains(version) else { return 0 }
        return 1 << UInt8(version - 0x0301)
    }

    /// Parses a ClientHello handshake body (without the 4-byte handshake header).
    package init?(body: UnsafeRawBufferPointer) {
        var reader = BigEndianReader(bytes: body)
        guard let legacy = reader.u16(), reader.skip(32),  // legacy_version, random
            let sessionIDLength = reader.u8(), reader.skip(Int(sessionIDLength)),
            let suitesLength = reader.u16(), reader.skip(Int(suitesLength)),
            let compressionLength = reader.u8(), reader.skip(Int(compressionLength))
        else { return nil }
        // Without the supported_versions extension, the client accepts every version up to legacy_version.
        let upToLegacy: UInt8 = legacy < 0x0301 ? 0 : (Self.bit(min(legacy, 0x0303)) << 1) - 1
        guard let extensionsLength = reader.u16(), var extensions = reader.sub(Int(extensionsLength)) else {
            offered = upToLegacy
            return
        }
        while let type = extensions.u16(), let length = extensions.u16() {
            guard var data = extensions.sub(Int(length)) else { return nil }
            if type == 43 {  // supported_versions
                guard let listLength = data.u8(), var list = data.sub(Int(listLength)) else { return nil }
                var versions: UInt8 = 0
                while let version = list.u16() { versions |= Self.bit(version) }
                offered = versions
                return
            }
        }
        offered = upToLegacy
    }
}
