internal import CGnuTLS

/// What the handshake settled: version, suite, group, ALPN, resumption, names and certificates.
extension TLSSession {
    /// The protocol version in use, once the handshake has completed.
    public var negotiatedVersion: TLSVersion? {
        guard isHandshakeComplete else { return nil }
        return TLSVersion(gnutls_protocol_get_version(session))
    }

    /// The cipher suite in use (for example `TLS_AES_128_GCM_SHA256`), once the handshake has completed.
    public var cipherSuite: String? {
        guard isHandshakeComplete, let name = gnutls_ciphersuite_get(session) else { return nil }
        return String(cString: name)
    }

    /// The cipher suite's name in GnuTLS's table, read without making a string (see ``StaticName``).
    package var cipherSuiteName: StaticName? {
        guard isHandshakeComplete, let name = gnutls_ciphersuite_get(session) else { return nil }
        return StaticName(name)
    }

    /// The key-exchange group's name in GnuTLS's table, read without making a string.
    package var keyExchangeGroupName: StaticName? {
        guard isHandshakeComplete, let name = gnutls_group_get_name(gnutls_group_get(session)) else { return nil }
        return StaticName(name)
    }

    /// The key-exchange group in use (for example `X25519`), once the handshake has completed.
    public var keyExchangeGroup: String? {
        guard isHandshakeComplete else { return nil }
        let group = gnutls_group_get(session)
        guard let name = gnutls_group_get_name(group) else { return nil }
        return String(cString: name)
    }

    /// The ALPN protocol both sides agreed on, if any.
    public var applicationProtocol: String? {
        guard isHandshakeComplete else { return nil }
        var datum = gnutls_datum_t()
        guard gnutls_alpn_get_selected_protocol(session, &datum) == 0, let data = datum.data else { return nil }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(datum.size)), as: UTF8.self)
    }

    /// Whether the handshake resumed an earlier session instead of doing a full key exchange.
    public var isResumed: Bool {
        isHandshakeComplete && gnutls_session_is_resumed(session) != 0
    }

    /// The server name the client asked for with SNI (servers), if any.
    public var requestedServerName: String? {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 256) { buffer -> String? in
            var size = buffer.count
            var type: UInt32 = 0
            guard gnutls_server_name_get(session, buffer.baseAddress, &size, &type, 0) == 0 else { return nil }
            return String(decoding: UnsafeBufferPointer(rebasing: buffer[..<min(size, buffer.count)]), as: UTF8.self)
        }
    }

    /// The certificate chain the peer presented (leaf first); empty if it sent none.
    public var peerCertificates: [Certificate] {
        var count: UInt32 = 0
        guard let list = gnutls_certificate_get_peers(session, &count), count > 0 else { return [] }
        return (0..<Int(count)).compactMap { index in
            let datum = list[index]
            guard let data = datum.data else { return nil }
            return try? Certificate(derBytes: Array(UnsafeBufferPointer(start: data, count: Int(datum.size))))
        }
    }

    /// The OCSP response the server stapled for its certificate (clients), decoded; nil if it sent none.
    public var stapledOCSPResponse: OCSPStatus? {
        guard isHandshakeComplete, context.role == .client else { return nil }
        var datum = gnutls_datum_t()
        // The datum is the session's; it is only copied.
        guard gnutls_ocsp_status_request_get2(session, 0, &datum) == 0, let data = datum.data, datum.size > 0 else {
            return nil
        }
        return try? OCSPStatus(derBytes: Array(UnsafeBufferPointer(start: data, count: Int(datum.size))))
    }

    /// Whether a stapled OCSP response was received and verified (signed for the server's certificate, current,
    /// "good"). Only a verifying client checks one.
    public var isOCSPStapleVerified: Bool {
        isHandshakeComplete && hasGoodOCSPStaple
    }

    /// Whether the server stapled an OCSP response (clients), valid or not.
    var receivedOCSPStaple: Bool {
        var datum = gnutls_datum_t()
        return gnutls_ocsp_status_request_get2(session, 0, &datum) == 0 && datum.size > 0
    }

    /// Whether GnuTLS checked the stapled response (signed for the certificate, current, not "revoked") and it
    /// says "good". GnuTLS's check also passes a response whose status is "unknown", which vouches for nothing.
    var hasGoodOCSPStaple: Bool {
        guard gnutls_ocsp_status_request_is_checked(session, 0) != 0 else { return false }
        var datum = gnutls_datum_t()
        guard gnutls_ocsp_status_request_get2(session, 0, &datum) == 0, let data = datum.data, datum.size > 0 else {
            return false
        }
        let status = try? OCSPStatus(derBytes: Array(UnsafeBufferPointer(start: data, count: Int(datum.size))))
        return status?.certificateStatus == .good
    }

    /// Derives keying material from the session's secrets (RFC 5705; RFC 8446 section 7.5 for TLS 1.3), for
    /// protocols that bind themselves to this TLS connection. Both ends get the same bytes for the same label
    /// and context; `openssl s_client -keymatexport LABEL -keymatexportlen N` prints them too.
    ///
    /// - Parameters:
    ///   - label: the exporter label, for example `EXPORTER-my-protocol`.
    ///   - context: the context value; nil for none (distinct from an empty one under TLS 1.2).
    ///   - count: how many bytes to derive (1 to 65536).
    public func exportKeyingMaterial(label: String, context: [UInt8]? = nil, count: Int) throws(TLSError) -> [UInt8] {
        guard isHandshakeComplete else {
            throw TLSError.invalidState("keying material can be exported only after the handshake")
        }
        guard (1...65536).contains(count) else {
            throw TLSError.invalidState("keying material must be 1 to 65536 bytes, not \(count)")
        }
        var output = [UInt8](repeating: 0, count: count)
        let labelBytes = Array(label.utf8)
        let rc: Int32 = labelBytes.withUnsafeBufferPointer { labelBuffer in
            output.withUnsafeMutableBytes { out in
                labelBuffer.withMemoryRebound(to: CChar.self) { labelChars in
                    if let context {
                        return context.withUnsafeBufferPointer { contextBuffer in
                            contextBuffer.withMemoryRebound(to: CChar.self) { contextChars in
                                gnutls_prf_rfc5705(
                                    session, labelChars.count, labelChars.baseAddress, contextChars.count,
                                    contextChars.baseAddress ?? UnsafePointer(bitPattern: 1), count, out.baseAddress)
                            }
                        }
                    }
                    return gnutls_prf_rfc5705(session, labelChars.count, labelChars.baseAddress, 0, nil, count, out.baseAddress)
                }
            }
        }
        guard rc == 0 else {
            throw TLSError(kind: .other, code: rc, codeName: TLSError.name(of: rc),
                           reason: "cannot export keying material: \(TLSError.message(of: rc))")
        }
        return output
    }

    /// Opaque data with which a later client session can resume this one (see
    /// ``TLSContext/makeSession(serverName:resumptionData:)``), or nil if the server issued no ticket yet.
    /// Under TLS 1.3 tickets arrive after the handshake, so read some data first.
    public var resumptionData: [UInt8]? {
        guard isHandshakeComplete, context.configuration.role == .client else { return nil }
        // A client without tickets would not offer one (GNUTLS_NO_TICKETS), though a GnuTLS server sends it.
        if negotiatedVersion == .tls13 && (!receivedTicket || !context.configuration.sessionTickets) { return nil }
        var datum = gnutls_datum_t()
        guard gnutls_session_get_data2(session, &datum) == 0 else { return nil }
        let bytes = GnuTLSDatum.take(datum)
        return bytes.isEmpty ? nil : bytes
    }
}
