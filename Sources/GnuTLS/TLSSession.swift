internal import CGnuTLS

import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// One connection's TLS engine, sans-I/O.
///
/// The session never touches a socket, a thread or a clock. The caller moves bytes:
/// - bytes received from the network go in with ``feed(_:)`` (and ``feedEndOfInput()`` when the transport ends);
/// - bytes the session wants sent come out of ``withPendingOutput(_:)`` / ``takePendingOutput()``;
/// - ``handshake()``, ``read(into:)``, ``write(_:)`` and ``close()`` advance the protocol.
///
/// Any transport can drive it: a blocking socket, an event loop, or another session in memory. A session is
/// owned by one caller at a time (it is not thread-safe); its ``TLSContext`` is shared.
public final class TLSSession {
    /// Where the protocol stands.
    public enum State: Sendable, Equatable {
        /// The handshake has not finished.
        case handshaking
        /// Application data flows both ways.
        case established
        /// This side sent close_notify; the peer may still send.
        case closedForWriting
        /// The peer's close_notify arrived; this side may still send (TLS half-closure).
        case closedForReading
        /// Both sides sent close_notify: the stream ended cleanly.
        case closed
        /// A fatal error ended the session; every call now throws it.
        case failed(TLSError)
    }

    /// The outcome of ``handshake()``.
    public enum HandshakeStatus: Sendable, Equatable {
        /// The handshake finished; ``negotiatedVersion`` and the other properties are set.
        case complete
        /// The session needs more bytes from the peer. Send the pending output first.
        case needsInput
    }

    /// The outcome of ``read(into:)``.
    public enum ReadResult: Sendable, Equatable {
        /// This many plaintext bytes were written to the buffer.
        case bytes(Int)
        /// No plaintext is available until more bytes are fed.
        case needsInput
        /// The peer closed the stream with close_notify: no more data will come.
        case closed
    }

    /// The context this session was made from.
    public let context: TLSContext
    /// The name sent as SNI and checked against the server's certificate (clients), if any.
    public let serverName: String?
    /// Where the protocol stands.
    // Read on every call and never held across a call into GnuTLS (whose callbacks do not touch it): no dynamic
    // exclusivity checks.
    @exclusivity(unchecked) public private(set) var state: State = .handshaking

    let session: gnutls_session_t
    /// The transport buffers, behind a pointer that is also GnuTLS's transport pointer: the push and pull
    /// callbacks reach them without touching this object (no reference counting, no exclusivity checks).
    private let io: UnsafeMutablePointer<TransportBuffers>
    /// The verification name, owned for the session's lifetime as GnuTLS requires.
    private var verifyName: UnsafeMutablePointer<CChar>?
    private var receivedTicket = false

    init(context: TLSContext, serverName: String?) throws(TLSError) {
        self.context = context
        let configuration = context.configuration
        let isClient = configuration.role == .client
        var session: gnutls_session_t?
        let flags = UInt32(isClient ? GNUTLS_CLIENT : GNUTLS_SERVER) | UInt32(GNUTLS_NONBLOCK)
        var rc = gnutls_init(&session, flags)
        guard rc == 0, let session else { throw TLSError.configuration("cannot create a TLS session", code: rc) }
        self.session = session
        self.serverName = serverName
        // The buffers grow on first use and keep their capacity: no allocation per record once data flows,
        // and an idle connection holds only what its handshake needed.
        io = .allocate(capacity: 1)
        io.initialize(to: TransportBuffers(session: session))

        // From here on every stored property is set, so deinit releases the session if a step throws.
        try check(gnutls_priority_set(session, context.priority), "cannot apply the priority string")
        try check(
            gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, UnsafeMutableRawPointer(context.credentials)),
            "cannot attach credentials")
        gnutls_handshake_set_timeout(session, 0)
        gnutls_transport_set_ptr(session, UnsafeMutableRawPointer(io))
        // The hooks below reach this object through the session's user pointer.
        gnutls_session_set_ptr(session, Unmanaged.passUnretained(self).toOpaque())
        gnutls_transport_set_vec_push_function(session, tlsSessionVecPush)
        gnutls_transport_set_pull_function(session, tlsSessionPull)
        gnutls_transport_set_pull_timeout_function(session, tlsSessionPullTimeout)

        if configuration.applicationProtocols.count > 0 {
            let alpnFlags = isClient ? 0 : UInt32(GNUTLS_ALPN_SERVER_PRECEDENCE.rawValue | GNUTLS_ALPN_MANDATORY.rawValue)
            rc = gnutls_alpn_set_protocols(
                session, context.alpnDatums.baseAddress, UInt32(configuration.applicationProtocols.count), alpnFlags)
            try check(rc, "cannot set ALPN protocols")
        }

        if isClient {
            try configureClient(serverName: serverName)
        } else {
            configureServer()
        }
    }

    deinit {
        gnutls_deinit(session)
        free(verifyName)
        io.pointee.inbound.deallocate()
        io.pointee.outbound.deallocate()
        io.deinitialize(count: 1)
        io.deallocate()
    }

    private func configureClient(serverName: String?) throws(TLSError) {
        let configuration = context.configuration
        if let name = serverName, !name.isEmpty, IPAddress.bytes(name) == nil {
            let bytes = Array(name.utf8)
            try check(
                bytes.withUnsafeBytes { gnutls_server_name_set(session, GNUTLS_NAME_DNS, $0.baseAddress, $0.count) },
                "cannot set the server name '\(name)'")
        }
        switch configuration.certificateVerification {
        case .full:
            guard let name = serverName, !name.isEmpty else {
                throw TLSError.configuration(
                    "full certificate verification needs a server name to check; "
                        + "set one, or choose chain-only verification")
            }
            // An IP literal is checked against the certificate's IP addresses by GnuTLS itself.
            let trimmed = name.hasPrefix("[") && name.hasSuffix("]") ? String(name.dropFirst().dropLast()) : name
            verifyName = strdup(trimmed)
            gnutls_session_set_verify_cert(session, verifyName, 0)
        case .chainOnly:
            gnutls_session_set_verify_cert(session, nil, 0)
        case .insecureNoVerification:
            break
        }
        if configuration.sessionTickets {
            gnutls_handshake_set_hook_function(
                session, UInt32(GNUTLS_HANDSHAKE_NEW_SESSION_TICKET.rawValue), Int32(GNUTLS_HOOK_POST),
                tlsSessionTicketHook)
        }
    }

    private func configureServer() {
        let configuration = context.configuration
        gnutls_handshake_set_hook_function(
            session, UInt32(GNUTLS_HANDSHAKE_CLIENT_HELLO.rawValue), Int32(GNUTLS_HOOK_PRE), tlsSessionClientHelloHook)
        if let key = context.ticketKeyPointer {
            _ = gnutls_session_ticket_enable_server(session, key)
        }
        switch configuration.clientAuthentication {
        case .none:
            gnutls_certificate_server_set_request(session, GNUTLS_CERT_IGNORE)
        case .requestWithoutVerification:
            gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUEST)
        case .requireAnyWithoutVerification:
            gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUIRE)
        case .verifyIfGiven:
            // gnutls_session_set_verify_cert would refuse a client that sends nothing; verify only what is sent.
            gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUEST)
            gnutls_session_set_verify_function(session, tlsSessionVerifyIfGiven)
        case .requireAndVerify:
            gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUIRE)
            gnutls_session_set_verify_cert(session, nil, 0)
        }
        // The CertificateRequest names no CAs: a GnuTLS client would otherwise withhold a certificate whose
        // issuer is not listed, and a refusal would read "no certificate" instead of "untrusted issuer".
        gnutls_certificate_send_x509_rdn_sequence(session, 1)
    }

    // MARK: - Bytes in and out

    /// Hands the session bytes received from the peer.
    public func feed(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        io.pointee.keepBorrowedInput()
        io.pointee.inbound.append(base, count: bytes.count)
    }

    /// Runs `body` with `bytes` as received input that GnuTLS reads in place, without copying them first: the
    /// same as ``feed(_:)`` followed by `body`, minus one copy of every byte. Whatever GnuTLS has not consumed
    /// when `body` returns is copied into the session's own buffer, so `bytes` need only live for the call.
    public func withBorrowedInput<R, E: Error>(_ bytes: UnsafeRawBufferPointer, _ body: () throws(E) -> R) throws(E) -> R {
        // Input already borrowed (a nested call) is kept first, in order.
        io.pointee.keepBorrowedInput()
        io.pointee.borrowed = bytes
        io.pointee.borrowedOffset = 0
        defer { io.pointee.keepBorrowedInput() }
        return try body()
    }

    /// Hands the session bytes received from the peer.
    public func feed(_ bytes: some Sequence<UInt8>) {
        let fed: Void? = bytes.withContiguousStorageIfAvailable { feed(UnsafeRawBufferPointer($0)) }
        if fed == nil { Array(bytes).withUnsafeBytes { feed($0) } }
    }

    /// Tells the session the transport will deliver no more bytes. A stream that ends without the peer's
    /// close_notify is reported as truncation, not as a clean close.
    public func feedEndOfInput() {
        io.pointee.inboundEnded = true
    }

    /// The number of received bytes the session has not consumed yet.
    public var bufferedInputCount: Int { io.pointee.inbound.count + io.pointee.borrowedRemaining }

    /// The number of decrypted bytes GnuTLS holds that ``read(into:)`` has not returned yet.
    public var bufferedPlaintextCount: Int { Int(gnutls_record_check_pending(session)) }

    /// Whether ``read(into:)`` could make progress: input or plaintext is buffered, or the input has ended
    /// (which a read turns into a clean close or a truncation error).
    public var canRead: Bool { io.pointee.hasInput || bufferedPlaintextCount > 0 }

    /// Whether the session has bytes waiting to be sent.
    public var hasPendingOutput: Bool { !io.pointee.outbound.isEmpty }

    /// Where ciphertext goes as GnuTLS produces it. Nil (the default): it collects in the pending output
    /// (``hasPendingOutput``, ``withPendingOutput(_:)``). Set: every piece is handed to the sink at once, which
    /// saves copying it twice (a channel handler appends it straight to its network buffer); output already
    /// pending goes to the sink first. The bytes are valid only during the call.
    public var outputSink: ((UnsafeRawBufferPointer) -> Void)? {
        get { io.pointee.sink }
        set {
            io.pointee.sink = newValue
            if let newValue, !io.pointee.outbound.isEmpty {
                newValue(io.pointee.outbound.bytes)
                io.pointee.outbound.removeAll()
            }
        }
    }

    /// Lends the pending output to `body` (for example to copy it into a network buffer), then discards it.
    /// The buffer is reused for later output, so no allocation happens per record.
    public func withPendingOutput<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        defer { io.pointee.outbound.removeAll() }
        return try body(io.pointee.outbound.bytes)
    }

    /// Returns and discards the pending output.
    public func takePendingOutput() -> [UInt8] {
        withPendingOutput { Array($0) }
    }

    /// Frees the input and output buffers when they hold nothing: a connection that goes quiet after its
    /// handshake then keeps no buffer memory. They are made again on first use.
    public func releaseEmptyBuffers() {
        io.pointee.inbound.releaseIfEmpty()
        io.pointee.outbound.releaseIfEmpty()
    }


    fileprivate func noteTicket() { receivedTicket = true }

    /// Whether the ClientHello offered no protocol version this server accepts (set by the hello hook).
    fileprivate var clientOffersNoAcceptableVersion = false

    /// Verification status recorded by our own verify callback (verify-if-given), read by `fail`.
    fileprivate var callbackVerifyStatus: UInt32?

    // MARK: - Protocol

    /// Advances the handshake with the bytes fed so far.
    ///
    /// Call it until it returns ``HandshakeStatus/complete``; after each call, send the pending output, and on
    /// ``HandshakeStatus/needsInput`` feed what the peer sends next.
    ///
    /// - Throws: ``TLSError``: a verification failure (with its reasons), no common version or cipher, an
    ///   alert from the peer, truncation. A fatal error queues an alert for the peer in the pending output.
    @discardableResult
    public func handshake() throws(TLSError) -> HandshakeStatus {
        switch state {
        case .handshaking: break
        case .failed(let error): throw error
        default: return .complete
        }
        var retries = 0
        while true {
            let before = bufferedInputCount
            let rc = gnutls_handshake(session)
            if rc == 0 {
                state = .established
                return .complete
            }
            switch rc {
            case GNUTLS_E_AGAIN, GNUTLS_E_INTERRUPTED:
                if shouldRetry(bufferedBefore: before, retries: &retries) { continue }
                return .needsInput
            case GNUTLS_E_WARNING_ALERT_RECEIVED, GNUTLS_E_GOT_APPLICATION_DATA:
                continue
            default:
                if gnutls_error_is_fatal(rc) == 0 { continue }
                throw fail(rc, context: "handshake failed")
            }
        }
    }

    /// Whether a call that answered AGAIN should be repeated: input is still buffered and the last call
    /// consumed some of it (or this is one of the first two retries). Bounded, so it can never spin.
    private func shouldRetry(bufferedBefore: Int, retries: inout Int) -> Bool {
        let remaining = bufferedInputCount
        guard remaining > 0 else { return false }
        if remaining < bufferedBefore { return true }
        retries += 1
        return retries <= 2
    }

    /// Whether the handshake has finished successfully.
    public var isHandshakeComplete: Bool {
        switch state {
        case .established, .closedForWriting, .closedForReading, .closed: return true
        default: return false
        }
    }

    /// Reads decrypted application data into `buffer`.
    ///
    /// A client-initiated renegotiation (TLS 1.2) is refused with a `no_renegotiation` alert and reading goes on.
    ///
    /// - Throws: ``TLSError`` on a protocol error, a fatal alert, or truncation (the transport ended without
    ///   close_notify).
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(TLSError) -> ReadResult {
        switch state {
        case .handshaking: throw TLSError.invalidState("cannot read before the handshake has completed")
        case .failed(let error): throw error
        case .closed, .closedForReading: return .closed
        case .established, .closedForWriting: break
        }
        guard let base = buffer.baseAddress, buffer.count > 0 else { return .bytes(0) }
        var retries = 0
        while true {
            let before = bufferedInputCount
            let n = gnutls_record_recv(session, base, buffer.count)
            if n > 0 { return .bytes(n) }
            if n == 0 {
                state = state == .closedForWriting ? .closed : .closedForReading
                return .closed
            }
            let rc = Int32(n)
            switch rc {
            case GNUTLS_E_AGAIN, GNUTLS_E_INTERRUPTED:
                // GnuTLS answers AGAIN after handling a post-handshake message (a TLS 1.3 ticket or key
                // update) even when more records are buffered: go on while input is being consumed.
                if shouldRetry(bufferedBefore: before, retries: &retries) { continue }
                return .needsInput
            case GNUTLS_E_REHANDSHAKE:
                // Renegotiation is refused: a peer must not make us redo handshakes.
                _ = gnutls_alert_send(session, GNUTLS_AL_WARNING, GNUTLS_A_NO_RENEGOTIATION)
                continue
            case GNUTLS_E_WARNING_ALERT_RECEIVED:
                continue
            case GNUTLS_E_UNEXPECTED_PACKET where context.configuration.role == .server && negotiatedVersion == .tls12:
                // GnuTLS 3.7 answers a ClientHello inside an established TLS 1.2 session (a client-initiated
                // renegotiation) with an unexpected_message alert: say what happened.
                throw fail(rc, context: "connection failed: the client tried to renegotiate, which is refused")
            default:
                if gnutls_error_is_fatal(rc) == 0 { continue }
                throw fail(rc, context: "connection failed")
            }
        }
    }

    /// Reads all plaintext that can be decrypted from the bytes fed so far, appending it to `output`.
    ///
    /// - Returns: ``ReadResult/closed`` if the peer's close_notify was reached, otherwise
    ///   ``ReadResult/needsInput``; the count of bytes appended is in neither (compare `output.count`).
    @discardableResult
    public func readAvailable(into output: inout [UInt8]) throws(TLSError) -> ReadResult {
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let outcome = chunk.withUnsafeMutableBytes { raw -> Result<ReadResult, TLSError> in
                do throws(TLSError) { return .success(try read(into: raw)) } catch { return .failure(error) }
            }
            let result = try outcome.get()
            switch result {
            case .bytes(let n): output.append(contentsOf: chunk.prefix(n))
            case .needsInput, .closed: return result
            }
        }
    }

    /// Encrypts `bytes` into records in the pending output.
    ///
    /// - Throws: ``TLSError`` if the handshake has not completed or this side has closed.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(TLSError) {
        switch state {
        case .handshaking: throw TLSError.invalidState("cannot write before the handshake has completed")
        case .closedForWriting, .closed: throw TLSError.invalidState("cannot write after close_notify was sent")
        case .failed(let error): throw error
        case .established, .closedForReading: break
        }
        guard let base = bytes.baseAddress else { return }
        var offset = 0
        while offset < bytes.count {
            let n = gnutls_record_send(session, base + offset, bytes.count - offset)
            if n > 0 {
                offset += n
                continue
            }
            let rc = Int32(n)
            if rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED { continue }
            throw fail(rc, context: "cannot send data")
        }
    }

    /// Encrypts `bytes` into records in the pending output.
    public func write(_ bytes: some Collection<UInt8>) throws(TLSError) {
        let written = bytes.withContiguousStorageIfAvailable { raw in
            Result { () throws(TLSError) in try write(UnsafeRawBufferPointer(raw)) }
        }
        guard let written else {
            // Not contiguous: copy once; an Array always takes the branch above.
            return try write(Array(bytes))
        }
        try written.get()
    }

    /// Starts a TLS 1.2 renegotiation from this side and returns GnuTLS's code with the name of the last alert
    /// received. For tests of the peer's refusal only: the library itself never renegotiates.
    func attemptRenegotiationForTesting() -> (code: Int32, alert: String) {
        let rc = gnutls_handshake(session)
        return (rc, TLSError.alertName(gnutls_alert_get(session)))
    }

    /// Holds back records until ``uncork()``, so many small writes become few full records.
    public func cork() { gnutls_record_cork(session) }

    /// Flushes the records collected since ``cork()`` into the pending output.
    public func uncork() throws(TLSError) {
        let rc = gnutls_record_uncork(session, UInt32(GNUTLS_RECORD_WAIT))
        if rc < 0 { throw fail(Int32(rc), context: "cannot send data") }
    }

    /// Sends close_notify: this side will write no more. The peer's own close_notify arrives through
    /// ``read(into:)`` as ``ReadResult/closed``.
    public func close() throws(TLSError) {
        switch state {
        case .failed(let error): throw error
        case .handshaking: return
        case .established, .closedForWriting, .closedForReading, .closed: break
        }
        guard !closeNotifySent else { return }
        let rc = gnutls_bye(session, GNUTLS_SHUT_WR)
        if rc < 0 && rc != GNUTLS_E_AGAIN && rc != GNUTLS_E_INTERRUPTED {
            throw fail(rc, context: "cannot send close_notify")
        }
        closeNotifySent = true
        switch state {
        case .established: state = .closedForWriting
        case .closedForReading: state = .closed
        default: break
        }
    }

    private var closeNotifySent = false

    /// Records a fatal error, queues the matching alert for the peer when the failure is ours, and returns it.
    private func fail(_ rc: Int32, context description: String) -> TLSError {
        var alert: gnutls_alert_description_t?
        if rc == GNUTLS_E_FATAL_ALERT_RECEIVED || rc == GNUTLS_E_WARNING_ALERT_RECEIVED {
            alert = gnutls_alert_get(session)
        }
        var error: TLSError
        if rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR || rc == GNUTLS_E_CERTIFICATE_ERROR {
            let status = callbackVerifyStatus ?? gnutls_session_get_verify_cert_status(session)
            let chain = peerCertificates
            if chain.isEmpty && context.configuration.role == .server && callbackVerifyStatus == nil {
                error = TLSError(
                    kind: .certificateRequired, code: rc, codeName: TLSError.name(of: rc),
                    reason: "\(description): the client sent no certificate, and one is required")
            } else {
                let checked = verifyName.map { String(cString: $0) }
                let failure = VerificationFailure.decode(status: status, chain: chain, checkedName: checked)
                let whose = context.configuration.role == .client ? "server" : "client"
                error = TLSError(
                    kind: .verification, code: rc, codeName: TLSError.name(of: rc),
                    reason: "\(description): the \(whose)'s certificate was refused: \(failure)",
                    verification: failure)
            }
        } else if rc == GNUTLS_E_PREMATURE_TERMINATION && state == .handshaking {
            error = TLSError(
                kind: .truncated, code: rc, codeName: TLSError.name(of: rc),
                reason: "\(description): the peer closed the connection before the handshake completed")
        } else if clientOffersNoAcceptableVersion && rc != GNUTLS_E_FATAL_ALERT_RECEIVED {
            // GnuTLS words this as "no cipher suites"; the real reason is the version.
            error = TLSError(
                kind: .protocolVersion, code: rc, codeName: TLSError.name(of: rc),
                reason: "\(description): the client offered no protocol version we accept "
                    + "(we accept \(context.enabledVersions.map(\.description).joined(separator: ", ")))")
            _ = gnutls_alert_send(session, GNUTLS_AL_FATAL, GNUTLS_A_PROTOCOL_VERSION)
            state = .failed(error)
            return error
        } else {
            error = TLSError.session(code: rc, receivedAlert: alert, context: description)
        }
        let ourFault = rc != GNUTLS_E_FATAL_ALERT_RECEIVED && rc != GNUTLS_E_PREMATURE_TERMINATION
            && rc != GNUTLS_E_PUSH_ERROR && rc != GNUTLS_E_PULL_ERROR
        if ourFault {
            _ = gnutls_alert_send_appropriate(session, rc)
        }
        state = .failed(error)
        return error
    }

    private func check(_ rc: Int32, _ what: String) throws(TLSError) {
        guard rc >= 0 else { throw TLSError.configuration(what, code: rc) }
    }

    // MARK: - What was negotiated

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

    /// Opaque data with which a later client session can resume this one (see
    /// ``TLSContext/makeSession(serverName:resumptionData:)``), or nil if the server issued no ticket yet.
    /// Under TLS 1.3 tickets arrive after the handshake, so read some data first.
    public var resumptionData: [UInt8]? {
        guard isHandshakeComplete, context.configuration.role == .client else { return nil }
        if negotiatedVersion == .tls13 && !receivedTicket { return nil }
        var datum = gnutls_datum_t()
        guard gnutls_session_get_data2(session, &datum) == 0 else { return nil }
        let bytes = FileBytes.take(datum)
        return bytes.isEmpty ? nil : bytes
    }

    /// Offers saved session data to resume before the handshake starts (clients).
    func setResumptionData(_ bytes: [UInt8]) throws(TLSError) {
        let rc = bytes.withUnsafeBytes { gnutls_session_set_data(session, $0.baseAddress, $0.count) }
        try check(rc, "cannot use the saved session data")
    }
}

/// A TLS protocol version.
public enum TLSVersion: String, Sendable, Hashable, CustomStringConvertible {
    /// TLS 1.0 (RFC 2246), deprecated by RFC 8996. Only a custom policy can allow it.
    case tls10 = "TLS 1.0"
    /// TLS 1.1 (RFC 4346), deprecated by RFC 8996. Only a custom policy can allow it.
    case tls11 = "TLS 1.1"
    /// TLS 1.2 (RFC 5246).
    case tls12 = "TLS 1.2"
    /// TLS 1.3 (RFC 8446).
    case tls13 = "TLS 1.3"

    init?(_ protocol: gnutls_protocol_t) {
        switch `protocol` {
        case GNUTLS_TLS1_0: self = .tls10
        case GNUTLS_TLS1_1: self = .tls11
        case GNUTLS_TLS1_2: self = .tls12
        case GNUTLS_TLS1_3: self = .tls13
        default: return nil
        }
    }

    /// The version's usual name, for example `TLS 1.3`.
    public var description: String { rawValue }

    /// The version's value on the wire (0x0303 for TLS 1.2).
    var wireValue: UInt16 {
        switch self {
        case .tls10: return 0x0301
        case .tls11: return 0x0302
        case .tls12: return 0x0303
        case .tls13: return 0x0304
        }
    }
}

extension TLSContext {
    /// A new client session that tries to resume an earlier one with data from ``TLSSession/resumptionData``.
    /// If the server does not accept it, a full handshake happens.
    public func makeSession(serverName: String? = nil, resumptionData: [UInt8]?) throws(TLSError) -> TLSSession {
        let session = try makeSession(serverName: serverName)
        if let resumptionData { try session.setResumptionData(resumptionData) }
        return session
    }
}

// MARK: - GnuTLS transport callbacks (C function pointers: no captures, the session comes through the pointer)

private func tlsSessionVecPush(_ pointer: gnutls_transport_ptr_t?, _ vectors: UnsafePointer<giovec_t>?, _ count: Int32) -> Int {
    guard let pointer, let vectors else { return 0 }
    let io = pointer.assumingMemoryBound(to: TransportBuffers.self)
    var total = 0
    for index in 0..<Int(count) { total += vectors[index].iov_len }
    if let sink = io.pointee.sink {
        for index in 0..<Int(count) where vectors[index].iov_len > 0 {
            sink(UnsafeRawBufferPointer(start: vectors[index].iov_base, count: vectors[index].iov_len))
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

private func tlsSessionPull(_ pointer: gnutls_transport_ptr_t?, _ destination: UnsafeMutableRawPointer?, _ capacity: Int) -> Int {
    guard let pointer, let destination else { return -1 }
    let io = pointer.assumingMemoryBound(to: TransportBuffers.self)
    var n = io.pointee.inbound.take(into: destination, capacity: capacity)
    if n == 0 { n = io.pointee.takeBorrowed(into: destination, capacity: capacity) }
    if n > 0 { return n }
    if io.pointee.inboundEnded { return 0 }
    gnutls_transport_set_errno(io.pointee.session, EAGAIN)
    return -1
}

private func tlsSessionPullTimeout(_ pointer: gnutls_transport_ptr_t?, _ milliseconds: UInt32) -> Int32 {
    guard let pointer else { return 0 }
    return pointer.assumingMemoryBound(to: TransportBuffers.self).pointee.hasInput ? 1 : 0
}

/// The session object behind a GnuTLS session (set with gnutls_session_set_ptr).
private func owner(of session: gnutls_session_t) -> TLSSession? {
    guard let pointer = gnutls_session_get_ptr(session) else { return nil }
    return Unmanaged<TLSSession>.fromOpaque(pointer).takeUnretainedValue()
}

private func tlsSessionTicketHook(
    _ session: gnutls_session_t?, _ htype: UInt32, _ when: UInt32, _ incoming: UInt32, _ message: UnsafePointer<gnutls_datum_t>?
) -> Int32 {
    guard let session else { return 0 }
    owner(of: session)?.noteTicket()
    return 0
}

/// Verify-if-given: a client that sends no certificate passes; one that sends a certificate must verify.
private func tlsSessionVerifyIfGiven(_ session: gnutls_session_t?) -> Int32 {
    guard let session, let owner = owner(of: session) else { return GNUTLS_E_CERTIFICATE_ERROR }
    var count: UInt32 = 0
    guard gnutls_certificate_get_peers(session, &count) != nil, count > 0 else { return 0 }
    var status: UInt32 = 0
    let rc = gnutls_certificate_verify_peers2(session, &status)
    if rc == 0 && status == 0 { return 0 }
    owner.callbackVerifyStatus = rc == 0 ? status : UInt32(GNUTLS_CERT_INVALID.rawValue)
    return GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR
}

/// Reads the versions a ClientHello offers before GnuTLS processes it (see ``ClientHelloVersions``).
private func tlsSessionClientHelloHook(
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

// MARK: - Transport buffers

/// What the transport callbacks touch: received ciphertext GnuTLS has not consumed, and ciphertext GnuTLS
/// produced that the caller has not taken. Plain memory, so a callback costs no reference counting.
struct TransportBuffers {
    let session: gnutls_session_t
    var inbound = ByteQueue()
    /// Input lent by ``TLSSession/withBorrowedInput(_:_:)``, read after `inbound`: `borrowed[borrowedOffset...]`.
    var borrowed = UnsafeRawBufferPointer(start: nil, count: 0)
    var borrowedOffset = 0
    var outbound = ByteQueue()
    /// Takes produced ciphertext instead of `outbound` when set (``TLSSession/outputSink``).
    var sink: ((UnsafeRawBufferPointer) -> Void)?
    /// The transport will deliver no more bytes.
    var inboundEnded = false

    init(session: gnutls_session_t) { self.session = session }

    var borrowedRemaining: Int { borrowed.count - borrowedOffset }

    /// Whether a pull can make progress: bytes are buffered or the input has ended.
    var hasInput: Bool { !inbound.isEmpty || borrowedRemaining > 0 || inboundEnded }

    mutating func takeBorrowed(into destination: UnsafeMutableRawPointer, capacity: Int) -> Int {
        let n = min(borrowedRemaining, capacity)
        guard n > 0, let base = borrowed.baseAddress else { return 0 }
        destination.copyMemory(from: base + borrowedOffset, byteCount: n)
        borrowedOffset += n
        return n
    }

    /// Copies what is left of the borrowed input into `inbound` and ends the loan.
    mutating func keepBorrowedInput() {
        if borrowedRemaining > 0, let base = borrowed.baseAddress {
            inbound.append(base + borrowedOffset, count: borrowedRemaining)
        }
        borrowed = UnsafeRawBufferPointer(start: nil, count: 0)
        borrowedOffset = 0
    }
}

/// A growable byte queue in memory it allocates itself: bytes are appended at the end and taken from the
/// front. It keeps its capacity (no allocation per record once data flows) until `releaseIfEmpty`.
struct ByteQueue {
    private var base: UnsafeMutableRawPointer?
    private var start = 0
    private var end = 0
    private var capacity = 0

    var count: Int { end - start }
    var isEmpty: Bool { start == end }

    /// The queued bytes (valid until the next mutation).
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base.map { $0 + start }, count: end - start) }

    /// Makes room for `extra` more bytes.
    mutating func reserve(_ extra: Int) {
        let live = end - start
        if end + extra <= capacity { return }
        if let base, live + extra <= capacity {
            // Enough room once the consumed front is reclaimed.
            if live > 0 { memmove(base, base + start, live) }
            start = 0
            end = live
            return
        }
        // Grow geometrically, so a stream of appends costs amortized constant time.
        let newCapacity = max(live + extra, capacity * 2)
        let newBase = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 16)
        if let base, live > 0 { newBase.copyMemory(from: base + start, byteCount: live) }
        base?.deallocate()
        base = newBase
        start = 0
        end = live
        capacity = newCapacity
    }

    mutating func append(_ bytes: UnsafeRawPointer, count: Int) {
        guard count > 0 else { return }
        reserve(count)
        (base! + end).copyMemory(from: bytes, byteCount: count)
        end += count
    }

    /// Moves up to `capacity` bytes from the front to `destination`; returns how many.
    mutating func take(into destination: UnsafeMutableRawPointer, capacity limit: Int) -> Int {
        let n = min(end - start, limit)
        guard n > 0, let base else { return 0 }
        destination.copyMemory(from: base + start, byteCount: n)
        start += n
        if start == end {
            start = 0
            end = 0
        }
        return n
    }

    /// Empties the queue, keeping its capacity.
    mutating func removeAll() {
        start = 0
        end = 0
    }

    /// Frees the memory if the queue holds nothing; it is allocated again on the next append.
    mutating func releaseIfEmpty() {
        guard isEmpty else { return }
        deallocate()
    }

    /// Frees the memory, dropping whatever is queued.
    mutating func deallocate() {
        base?.deallocate()
        base = nil
        start = 0
        end = 0
        capacity = 0
    }
}
