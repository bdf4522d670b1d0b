internal import CGnuTLS

/// What a session checks the peer's certificate against, as GnuTLS typed data (`gnutls_typed_vdata_st`): the
/// key purpose the certificate must allow and, for a client with full verification, the server's name.
///
/// `gnutls_session_set_verify_cert2` keeps the pointers it is given and reads them when the peer's
/// certificate arrives, so this object owns the array and its strings, and every session using it holds it.
/// It is never changed after init, so one object can serve the sessions of a context on any thread
/// (``TLSContext`` makes one when the data does not depend on the session).
final class PeerVerification {
    /// The purpose the peer's certificate must allow: server authentication for a server's certificate,
    /// client authentication for a client's.
    let purpose: KeyPurpose
    /// The host name or IP address the certificate must be valid for (clients with full verification).
    let name: String?
    /// The typed data, `count` elements.
    let elements: UnsafeMutablePointer<gnutls_typed_vdata_st>
    let count: UInt32
    private let strings: [UnsafeMutablePointer<CChar>]

    /// - Parameter name: checked as GnuTLS checks a `GNUTLS_DT_DNS_HOSTNAME`: a DNS name by RFC 6125, an IP
    ///   literal against the certificate's IP addresses.
    init(purpose: KeyPurpose, name: String?) {
        self.purpose = purpose
        self.name = name
        var strings: [UnsafeMutablePointer<CChar>] = []
        var data: [gnutls_typed_vdata_st] = []
        // Size 0: GnuTLS reads each value as a NUL-terminated string.
        if let name {
            strings.append(Self.copy(name))
            data.append(gnutls_typed_vdata_st(type: GNUTLS_DT_DNS_HOSTNAME, data: Self.bytes(strings.last), size: 0))
        }
        strings.append(Self.copy(purpose.oid))
        data.append(gnutls_typed_vdata_st(type: GNUTLS_DT_KEY_PURPOSE_OID, data: Self.bytes(strings.last), size: 0))
        self.strings = strings
        elements = .allocate(capacity: data.count)
        elements.initialize(from: data, count: data.count)
        count = UInt32(data.count)
    }

    deinit {
        elements.deinitialize(count: Int(count))
        elements.deallocate()
        for string in strings { string.deallocate() }
    }

    /// A NUL-terminated copy of `text` (no failure path, unlike strdup: a check is never silently dropped).
    private static func copy(_ text: String) -> UnsafeMutablePointer<CChar> {
        let utf8 = Array(text.utf8CString)
        let copy = UnsafeMutablePointer<CChar>.allocate(capacity: utf8.count)
        copy.initialize(from: utf8, count: utf8.count)
        return copy
    }

    private static func bytes(_ string: UnsafeMutablePointer<CChar>?) -> UnsafeMutablePointer<UInt8>? {
        string.map { UnsafeMutableRawPointer($0).assumingMemoryBound(to: UInt8.self) }
    }

    /// Has GnuTLS verify the peer's certificate during the handshake; a failure ends it with
    /// `GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR` (or `GNUTLS_E_CERTIFICATE_ERROR` if it could not verify).
    /// The session must hold this object until it is deinitialised.
    func install(on session: gnutls_session_t) {
        gnutls_session_set_verify_cert2(session, elements, count, 0)
    }

    /// Verifies the peer's certificate now: GnuTLS's return code (negative when verification could not be
    /// done, for example a chain longer than GnuTLS accepts) and the status bits (valid only when it is 0).
    func verifyPeer(of session: gnutls_session_t) -> (code: Int32, status: UInt32) {
        var status: UInt32 = 0
        let rc = gnutls_certificate_verify_peers(session, elements, count, &status)
        return (rc, status)
    }
}
