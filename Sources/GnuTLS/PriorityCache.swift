internal import CGnuTLS

/// Owns one `gnutls_priority_t`: a priority string compiled once per ``TLSContext`` and applied to each of its
/// sessions with `gnutls_priority_set`.
final class PriorityCache {
    let handle: gnutls_priority_t

    /// Compiles `string`.
    ///
    /// - Throws: ``TLSError`` of kind ``TLSError/Kind/configuration`` naming the position and the token GnuTLS
    ///   stopped at.
    init(_ string: String) throws(TLSError) {
        var handle: gnutls_priority_t?
        var errorOffset = 0
        let rc = string.withCString { base -> Int32 in
            var errorPosition: UnsafePointer<CChar>?
            let rc = gnutls_priority_init2(&handle, base, &errorPosition, 0)
            if let errorPosition { errorOffset = base.distance(to: errorPosition) }
            return rc
        }
        guard rc == 0, let handle else {
            let utf8 = Array(string.utf8)
            let offset = min(max(errorOffset, 0), utf8.count)
            let rest = String(decoding: utf8[offset...], as: UTF8.self)
            let token = rest.split(separator: ":", maxSplits: 1).first.map(String.init) ?? rest
            throw TLSError.configuration(
                "priority string is invalid at position \(offset): '\(token)' (in '\(string)')", code: rc)
        }
        self.handle = handle
    }

    deinit { gnutls_priority_deinit(handle) }

    /// The TLS versions the string enables, in GnuTLS's order (DTLS versions left out).
    var versions: [TLSVersion] {
        var list: UnsafePointer<UInt32>?
        let count = gnutls_priority_protocol_list(handle, &list)
        var versions: [TLSVersion] = []
        if count > 0, let list {
            for index in 0..<Int(count) {
                if let version = TLSVersion(gnutls_protocol_t(list[index])) { versions.append(version) }
            }
        }
        return versions
    }

    /// A cipher suite the string enables: its name, and whether it is AEAD (GCM, CCM, ChaCha20-Poly1305).
    struct CipherSuite {
        let name: String
        let isAEAD: Bool
    }

    /// The cipher suites the string enables, in priority order (for example `TLS_AES_128_GCM_SHA256`,
    /// `TLS_ECDHE_ECDSA_AES_128_GCM_SHA256`).
    var cipherSuites: [CipherSuite] {
        var suites: [CipherSuite] = []
        var index: UInt32 = 0
        while true {
            var suite: UInt32 = 0
            let rc = gnutls_priority_get_cipher_suite_index(handle, index, &suite)
            if rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE { break }
            index += 1
            // A suite this build of GnuTLS cannot use is listed but unknown: skip it.
            var mac = GNUTLS_MAC_UNKNOWN
            guard rc == 0, let name = gnutls_cipher_suite_info(Int(suite), nil, nil, nil, &mac, nil) else { continue }
            suites.append(CipherSuite(name: String(cString: name), isAEAD: mac == GNUTLS_MAC_AEAD))
        }
        return suites
    }

    /// The names of the cipher suites the string enables, in priority order.
    var cipherSuiteNames: [String] { cipherSuites.map(\.name) }
}
