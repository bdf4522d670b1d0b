internal import CGnuTLS

#if canImport(Glibc)
import Glibc
#endif

// GnuTLS transport and hook callbacks. They are C function pointers: no captures. The transport callbacks
// reach the session's buffers through the transport pointer; the hooks reach the session through its user
// pointer.

func tlsSessionVecPush(_ pointer: gnutls_transport_ptr_t?, _ vectors: UnsafePointer<giovec_t>?, _ count: Int32) -> Int {
    guard let pointer, let vectors else { return 0 }
    let io = pointer.assumingMemoryBound(to: TransportBuffers.self)
    var total = 0
    for index in 0..<Int(count) { total += vectors[index].iov_len }
    if let sink = io.pointee.sink {
        for index in 0..<Int(count) where vectors[index].iov_len > 0 {
            sink.takeOutput(UnsafeRawBufferPointer(start: vectors[index].iov_base, count: vectors[index].iov_len))
        }
        return total
    }
    // One reservation for everything this push brings (a handshake flight comes at once).
    io.pointee.outbound.reserve(total)
    for index in 0..<Int(count) {
        let vector = vectors[index]
        guard let base = vector.iov_base, vector.iov_len > 0 else { continue }
        io.pointee.outbound.append(base, count: vector.iov_len)
    }
    return total
}

func tlsSessionPull(_ pointer: gnutls_transport_ptr_t?, _ destination: UnsafeMutableRawPointer?, _ capacity: Int) -> Int {
    guard let pointer, let destination else { return -1 }
    let io = pointer.assumingMemoryBound(to: TransportBuffers.self)
    var n = io.pointee.inbound.take(into: destination, capacity: capacity)
    if n == 0 { n = io.pointee.takeBorrowed(into: destination, capacity: capacity) }
    if n > 0 {
        if io.pointee.watchesInput { io.pointee.watch(destination, count: n) }
        return n
    }
    if io.pointee.inboundEnded { return 0 }
    gnutls_transport_set_errno(io.pointee.session, EAGAIN)
    return -1
}

func tlsSessionPullTimeout(_ pointer: gnutls_transport_ptr_t?, _ milliseconds: UInt32) -> Int32 {
    guard let pointer else { return 0 }
    return pointer.assumingMemoryBound(to: TransportBuffers.self).pointee.hasInput ? 1 : 0
}

/// The session object behind a GnuTLS session (set with gnutls_session_set_ptr).
private func owner(of session: gnutls_session_t) -> TLSSession? {
    guard let pointer = gnutls_session_get_ptr(session) else { return nil }
    return Unmanaged<TLSSession>.fromOpaque(pointer).takeUnretainedValue()
}

/// A client's hook, after each handshake message (GnuTLS keeps one hook per session): notes session tickets, and
/// whether the server acknowledged SNI.
func tlsSessionClientHook(
    _ session: gnutls_session_t?, _ htype: UInt32, _ when: UInt32, _ incoming: UInt32, _ message: UnsafePointer<gnutls_datum_t>?
) -> Int32 {
    guard let session, incoming != 0, let owner = owner(of: session) else { return 0 }
    switch htype {
    case GNUTLS_HANDSHAKE_NEW_SESSION_TICKET.rawValue:
        owner.noteTicket()
    case GNUTLS_HANDSHAKE_SERVER_HELLO.rawValue, GNUTLS_HANDSHAKE_ENCRYPTED_EXTENSIONS.rawValue:
        guard let message, let data = message.pointee.data else { return 0 }
        let body = UnsafeRawBufferPointer(start: data, count: Int(message.pointee.size))
        let acknowledged = htype == GNUTLS_HANDSHAKE_SERVER_HELLO.rawValue
            ? ServerNameAcknowledgement.inServerHello(body) : ServerNameAcknowledgement.inEncryptedExtensions(body)
        if acknowledged { owner.serverNameAcknowledged = true }
    default:
        break
    }
    return 0
}

/// Our verify callback (see ``TLSSession/verifyInCallback()``): verify-if-given (a client that sends no
/// certificate passes; one that sends a certificate must verify, as `gnutls_session_set_verify_cert2` would verify
/// it), and the checks made on top of GnuTLS's verification.
func tlsSessionVerifyPeer(_ session: gnutls_session_t?) -> Int32 {
    guard let session, let owner = owner(of: session) else { return GNUTLS_E_CERTIFICATE_ERROR }
    return owner.verifyInCallback()
}

/// Reads the versions a ClientHello offers before GnuTLS processes it (see ``ClientHelloVersions``).
func tlsSessionClientHelloHook(
    _ session: gnutls_session_t?, _ htype: UInt32, _ when: UInt32, _ incoming: UInt32, _ message: UnsafePointer<gnutls_datum_t>?
) -> Int32 {
    guard let session, incoming != 0, let message, let data = message.pointee.data, let owner = owner(of: session)
    else { return 0 }
    let body = UnsafeRawBufferPointer(start: data, count: Int(message.pointee.size))
    if let hello = ClientHelloVersions(body: body) {
        owner.clientOffersNoAcceptableVersion = hello.offered & owner.context.enabledVersionBits == 0
    }
    return 0
}

/// Hands each secret GnuTLS derives to the context's key log as an NSS key log line:
/// `LABEL CLIENT_RANDOM_HEX SECRET_HEX`.
func tlsSessionKeyLog(
    _ session: gnutls_session_t?, _ label: UnsafePointer<CChar>?, _ secret: UnsafePointer<gnutls_datum_t>?
) -> Int32 {
    guard let session, let label, let secret, let data = secret.pointee.data, let owner = owner(of: session),
        let keyLog = owner.context.keyLog
    else { return 0 }
    var client = gnutls_datum_t()
    var server = gnutls_datum_t()
    gnutls_session_get_random(session, &client, &server)
    guard let random = client.data else { return 0 }
    let clientRandom = Hex.encode(UnsafeBufferPointer(start: random, count: Int(client.size)))
    let secretHex = Hex.encode(UnsafeBufferPointer(start: data, count: Int(secret.pointee.size)))
    keyLog("\(String(cString: label)) \(clientRandom) \(secretHex)")
    return 0
}
