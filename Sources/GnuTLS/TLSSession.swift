internal import CGnuTLS

import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// One connection's TLS engine, sans-I/O.
///
/// The session never touches a socket, a thread or a clock. The caller moves bytes:
/// - bytes received from the network go in with ``feed(_:)-(Sequence<UInt8>)`` (and ``feedEndOfInput()`` when the transport ends);
/// - bytes the session wants sent come out of ``withPendingOutput(_:)`` / ``takePendingOutput()``;
/// - ``handshake()``, ``read(into:)``, ``write(_:)-(Collection<UInt8>)`` and ``close()`` advance the protocol.
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
        /// The client's hello has arrived and the server's context selector must choose the context for it
        /// (servers with ``TLSConfiguration/contextSelector``). Answer with ``TLSSession/selectContext(_:)`` or
        /// ``TLSSession/failContextSelection(_:)``, then call ``TLSSession/handshake()`` again; until then it
        /// returns ``needsInput``.
        case needsContext(ClientHelloInfo)
    }

    /// Where a server with a context selector stands with it.
    enum ContextSelection {
        /// No selector, or the selection is made.
        case none
        /// The ClientHello has not been read yet.
        case waitingForHello
        /// The selector has been asked about this hello.
        case asked(ClientHelloInfo)
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

    /// The context this session uses: the one it was made from or, on a server with a context selector, the
    /// one selected for it (see ``selectContext(_:)``).
    // Changed only before GnuTLS reads the first byte, never during a call into GnuTLS: no dynamic exclusivity
    // checks.
    @exclusivity(unchecked) public private(set) var context: TLSContext
    /// The name sent as SNI and checked against the server's certificate (clients), if any.
    public let serverName: String?
    // Read on every call and never held across a call into GnuTLS (whose callbacks do not touch it): no dynamic
    // exclusivity checks.
    /// Where the protocol stands.
    ///
    /// Part of the sans-I/O API.
    @exclusivity(unchecked) public private(set) var state: State = .handshaking

    let session: gnutls_session_t
    /// The transport buffers, behind a pointer that is also GnuTLS's transport pointer: the push and pull
    /// callbacks reach them without touching this object (no reference counting, no exclusivity checks).
    private let io: UnsafeMutablePointer<TransportBuffers>
    /// What the peer's certificate is verified against (its purpose, and the server's name for a client),
    /// owned for the session's lifetime as GnuTLS requires; nil when the certificate is not verified.
    // Set while the session is configured, then only read (never across a call that could set it): no dynamic
    // exclusivity checks.
    @exclusivity(unchecked) private(set) var peerVerification: PeerVerification?
    /// The context selection, for servers with a selector.
    private var contextSelection = ContextSelection.none
    /// How many buffered bytes the ClientHello peek needs before it can get further.
    private var peekNeeded = 0
    /// Whether this server session must choose its ticket master key from the hello's tickets: its context
    /// keeps the key a reload replaced (``TLSContext/previousTicketKey``).
    private var choosesTicketKey = false
    /// Whether the peek has read the whole hello (and ``offeredTicketKeyNames`` with it).
    private var helloRead = false
    /// The key names of the tickets the hello offers, 16 bytes each (read by the peek; emptied once used).
    private var offeredTicketKeyNames: [UInt8] = []
    /// Whether a TLS 1.3 session ticket arrived (set by the ticket hook, read by ``resumptionData``).
    private(set) var receivedTicket = false

    init(context: TLSContext, serverName: String?) throws(TLSError) {
        self.context = context
        // The configuration's fields are read where they are needed, not copied whole into a local: a copy
        // retains and releases each of its arrays, strings and closures, on every connection.
        let isClient = context.role == .client
        var session: gnutls_session_t?
        var flags = UInt32(isClient ? GNUTLS_CLIENT : GNUTLS_SERVER) | UInt32(GNUTLS_NONBLOCK)
        // A client that wants no tickets neither asks for nor stores them (GnuTLS would otherwise offer the
        // extension and keep what a server sends).
        if !context.configuration.sessionTickets { flags |= UInt32(GNUTLS_NO_TICKETS.rawValue) }
        let rc = gnutls_init(&session, flags)
        guard rc == 0, let session else { throw TLSError.configuration("cannot create a TLS session", code: rc) }
        self.session = session
        self.serverName = serverName
        // The buffers grow on first use and keep their capacity: no allocation per record once data flows,
        // and an idle connection holds only what its handshake needed.
        io = .allocate(capacity: 1)
        io.initialize(to: TransportBuffers(session: session))

        // From here on every stored property is set, so deinit releases the session if a step throws.
        try check(gnutls_priority_set(session, context.priority.handle), "cannot apply the priority string")
        let credentials = UnsafeMutableRawPointer(context.credentials.handle)
        try check(gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, credentials), "cannot attach credentials")
        gnutls_handshake_set_timeout(session, 0)
        gnutls_transport_set_ptr(session, UnsafeMutableRawPointer(io))
        // The hooks below reach this object through the session's user pointer.
        gnutls_session_set_ptr(session, Unmanaged.passUnretained(self).toOpaque())
        gnutls_transport_set_vec_push_function(session, tlsSessionVecPush)
        gnutls_transport_set_pull_function(session, tlsSessionPull)
        gnutls_transport_set_pull_timeout_function(session, tlsSessionPullTimeout)
        if context.keyLog != nil {
            gnutls_session_set_keylog_function(session, tlsSessionKeyLog)
        }

        if context.applicationProtocols.count > 0 { try configureApplicationProtocols() }

        if isClient {
            try configureClient(serverName: serverName)
        } else {
            try configureServer()
            if context.configuration.contextSelector != nil { contextSelection = .waitingForHello }
        }
    }

    private func configureApplicationProtocols() throws(TLSError) {
        let isClient = context.role == .client
        let alpnFlags = isClient ? 0 : UInt32(GNUTLS_ALPN_SERVER_PRECEDENCE.rawValue | GNUTLS_ALPN_MANDATORY.rawValue)
        let alpn = context.applicationProtocols
        let rc = gnutls_alpn_set_protocols(session, alpn.datums.baseAddress, UInt32(alpn.count), alpnFlags)
        try check(rc, "cannot set ALPN protocols")
    }

    /// Gives a server session the context its selector chose (nil: go on with the one it has), after
    /// ``handshake()`` returned ``HandshakeStatus/needsContext(_:)``. Everything the context holds applies to
    /// this connection: certificates, trust for client certificates, policy, ALPN, client authentication,
    /// session tickets. Only the selector itself is not consulted again.
    ///
    /// Part of the sans-I/O API.
    ///
    /// - Throws: ``TLSError`` of kind ``TLSError/Kind/invalidState`` when no selection is pending, or
    ///   ``TLSError/Kind/contextSelectionFailed`` (after failing the session) for a client context.
    public func selectContext(_ selected: TLSContext?) throws(TLSError) {
        guard case .asked = contextSelection else {
            throw TLSError.invalidState("no context selection is pending for this session")
        }
        contextSelection = .none
        guard let selected, selected !== context else { return }
        guard selected.role == .server else {
            let error = TLSError(
                kind: .contextSelectionFailed, reason: "handshake failed: the context selector chose a client context")
            failContextSelection(error)
            throw error
        }
        let hadProtocols = context.applicationProtocols.count > 0
        context = selected
        peerVerification = nil
        do {
            try check(gnutls_priority_set(session, selected.priority.handle), "cannot apply the priority string")
            let credentials = UnsafeMutableRawPointer(selected.credentials.handle)
            try check(gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, credentials), "cannot attach credentials")
            if hadProtocols || selected.applicationProtocols.count > 0 { try configureApplicationProtocols() }
            try configureServer()
        } catch {
            abort(error)
            throw error
        }
    }

    /// Ends a server session whose context selector failed: a `handshake_failure` alert for the client, and the
    /// session fails with an error of kind ``TLSError/Kind/contextSelectionFailed`` saying why.
    ///
    /// Part of the sans-I/O API.
    public func failContextSelection(_ reason: any Error) {
        let error: TLSError
        if let tlsError = reason as? TLSError, tlsError.kind == .contextSelectionFailed {
            error = tlsError
        } else {
            let words = (reason as? TLSError)?.reason ?? String(describing: reason)
            error = TLSError(
                kind: .contextSelectionFailed, reason: "handshake failed: the context selector failed: \(words)")
        }
        contextSelection = .none
        abort(error)
    }

    /// For a server with a selector that has not chosen yet: whether the hello is there to ask about.
    /// Also, for a server that keeps a previous ticket key, reads the tickets' key names and chooses the key.
    private func peekClientHello() throws(TLSError) -> HandshakeStatus? {
        switch contextSelection {
        case .none:
            guard choosesTicketKey else { return nil }
            if helloRead {
                // The selector has answered: its context's keys decide.
                try chooseTicketKey()
                return nil
            }
        case .asked: return HandshakeStatus.needsInput
        case .waitingForHello: break
        }
        // A hello trickled in small pieces is read again only once a record is complete.
        if bufferedInputCount < peekNeeded && !io.pointee.inboundEnded { return .needsInput }
        io.pointee.keepBorrowedInput()
        offeredTicketKeyNames.removeAll()
        switch ClientHelloPeek.parse(io.pointee.inbound.bytes, needed: &peekNeeded, ticketKeyNames: &offeredTicketKeyNames) {
        case .incomplete:
            // An input that ended is GnuTLS's to report.
            if io.pointee.inboundEnded {
                contextSelection = .none
                choosesTicketKey = false
                return nil
            }
            return .needsInput
        case .notAHello:
            // GnuTLS answers it with the keys it has.
            contextSelection = .none
            choosesTicketKey = false
            offeredTicketKeyNames = []
            return nil
        case .hello(let hello):
            helloRead = true
            if case .waitingForHello = contextSelection {
                contextSelection = .asked(hello)
                return .needsContext(hello)
            }
            try chooseTicketKey()
            return nil
        }
    }

    /// Hands GnuTLS the previous ticket master key instead of the current one when a ticket the hello offers
    /// was made under it (see `PreviousTicketKey`). Before GnuTLS reads the hello, so before it derives a key:
    /// until then `gnutls_session_ticket_enable_server` may be called again.
    private func chooseTicketKey() throws(TLSError) {
        choosesTicketKey = false
        defer { offeredTicketKeyNames = [] }
        guard let previous = context.previousTicketKey,
            previous.issued(anyOf: offeredTicketKeyNames, at: PreviousTicketKey.now)
        else { return }
        let rc = gnutls_session_ticket_enable_server(session, previous.key.pointer)
        guard rc == 0 else {
            let error = TLSError.configuration("cannot use the previous session ticket key", code: rc)
            abort(error)
            throw error
        }
    }

    deinit {
        // The session goes first: GnuTLS may read peerVerification's typed data until then.
        gnutls_deinit(session)
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
            verifyPeer(with: PeerVerification(purpose: .serverAuthentication, name: trimmed))
        case .chainOnly:
            // The name is not checked, the purpose is: a client certificate does not make a server.
            verifyPeer(with: context.sharedPeerVerification)
        case .insecureNoVerification:
            if context.hasOwnPeerChecks { gnutls_session_set_verify_function(session, tlsSessionVerifyPeer) }
        }
        // Every message (GNUTLS_HANDSHAKE_ANY): the hook notes tickets and the server's SNI acknowledgement.
        gnutls_handshake_set_hook_function(session, UInt32.max, Int32(GNUTLS_HOOK_POST), tlsSessionClientHook)
    }

    /// Has GnuTLS verify the peer's certificate during the handshake: its chain, its key purpose (as
    /// `openssl s_server -Verify` and OpenSSL clients do; a certificate without extended key usage passes)
    /// and, when given, the name.
    ///
    /// With checks of the library's own on top (pins, a required OCSP staple, the application's check), our
    /// verify callback runs GnuTLS's verification with the same data and then those checks.
    private func verifyPeer(with verification: PeerVerification?) {
        guard let verification else { preconditionFailure("the context made no verification data for this role") }
        peerVerification = verification
        // A client always checks through our callback: GnuTLS refuses a must-staple certificate only when no
        // staple came, and takes one that says "unknown" as checked.
        if context.hasOwnPeerChecks || context.configuration.role == .client {
            gnutls_session_set_verify_function(session, tlsSessionVerifyPeer)
        } else {
            verification.install(on: session)
        }
    }

    private func configureServer() throws(TLSError) {
        gnutls_handshake_set_hook_function(
            session, UInt32(GNUTLS_HANDSHAKE_CLIENT_HELLO.rawValue), Int32(GNUTLS_HOOK_PRE), tlsSessionClientHelloHook)
        // Before the ticket key: GnuTLS derives the key's rotation period from it.
        if let seconds = context.sessionLifetimeSeconds { gnutls_db_set_cache_expiration(session, Int32(seconds)) }
        if let key = context.ticketKey {
            try check(gnutls_session_ticket_enable_server(session, key.pointer), "cannot enable session tickets")
            // Only a kept previous key makes the hello worth reading first: without one, no cost per connection.
            if let previous = context.previousTicketKey {
                choosesTicketKey = previous.isKept(at: PreviousTicketKey.now)
            } else {
                choosesTicketKey = false
            }
        }
        context.sessionCache?.install(on: session)
        switch context.configuration.clientAuthentication {
        case .none:
            gnutls_certificate_server_set_request(session, GNUTLS_CERT_IGNORE)
        case .requestWithoutVerification:
            gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUEST)
            if context.hasOwnPeerChecks { gnutls_session_set_verify_function(session, tlsSessionVerifyPeer) }
        case .requireAnyWithoutVerification:
            gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUIRE)
            if context.hasOwnPeerChecks { gnutls_session_set_verify_function(session, tlsSessionVerifyPeer) }
        case .verifyIfGiven:
            // gnutls_session_set_verify_cert2 would refuse a client that sends nothing; verify only what is
            // sent, against the same typed data.
            gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUEST)
            peerVerification = context.sharedPeerVerification
            gnutls_session_set_verify_function(session, tlsSessionVerifyPeer)
        case .requireAndVerify:
            gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUIRE)
            verifyPeer(with: context.sharedPeerVerification)
        }
        // By default the CertificateRequest names no CAs: a GnuTLS client would otherwise withhold a certificate
        // whose issuer is not listed, and a refusal would read "no certificate" instead of "untrusted issuer".
        gnutls_certificate_send_x509_rdn_sequence(
            session, context.configuration.sendsCertificateAuthorityNames ? 0 : 1)
    }

    // MARK: - Bytes in and out

    /// Hands the session bytes received from the peer.
    ///
    /// Part of the sans-I/O API.
    public func feed(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        io.pointee.keepBorrowedInput()
        io.pointee.inbound.append(base, count: bytes.count)
    }

    /// Runs `body` with `bytes` as received input that GnuTLS reads in place, without copying them first: the
    /// same as ``feed(_:)`` followed by `body`, minus one copy of every byte. Whatever GnuTLS has not consumed
    /// when `body` returns is copied into the session's own buffer, so `bytes` need only live for the call.
    ///
    /// Not public API: a fast path for the NIO handler in this package (`package` access).
    package func withBorrowedInput<R, E: Error>(_ bytes: UnsafeRawBufferPointer, _ body: () throws(E) -> R) throws(E) -> R {
        // Input already borrowed (a nested call) is kept first, in order.
        io.pointee.keepBorrowedInput()
        io.pointee.borrowed = bytes
        io.pointee.borrowedOffset = 0
        defer { io.pointee.keepBorrowedInput() }
        return try body()
    }

    /// Hands the session bytes received from the peer.
    ///
    /// Part of the sans-I/O API.
    public func feed(_ bytes: some Sequence<UInt8>) {
        let fed: Void? = bytes.withContiguousStorageIfAvailable { feed(UnsafeRawBufferPointer($0)) }
        if fed == nil { Array(bytes).withUnsafeBytes { feed($0) } }
    }

    /// Tells the session the transport will deliver no more bytes. A stream that ends without the peer's
    /// close_notify is reported as truncation, not as a clean close.
    ///
    /// Part of the sans-I/O API.
    public func feedEndOfInput() {
        io.pointee.inboundEnded = true
    }

    /// The number of received bytes the session has not consumed yet.
    ///
    /// Part of the sans-I/O API.
    public var bufferedInputCount: Int { io.pointee.inbound.count + io.pointee.borrowedRemaining }

    /// The number of decrypted bytes GnuTLS holds that ``read(into:)`` has not returned yet.
    ///
    /// Part of the sans-I/O API.
    public var bufferedPlaintextCount: Int { Int(gnutls_record_check_pending(session)) }

    /// Whether ``read(into:)`` could make progress: input or plaintext is buffered, or the input has ended
    /// (which a read turns into a clean close or a truncation error).
    ///
    /// Part of the sans-I/O API.
    public var canRead: Bool { io.pointee.hasInput || bufferedPlaintextCount > 0 }

    /// Whether the session has bytes waiting to be sent.
    ///
    /// Part of the sans-I/O API.
    public var hasPendingOutput: Bool { !io.pointee.outbound.isEmpty }

    /// Where ciphertext goes as GnuTLS produces it. Nil (the default): it collects in the pending output
    /// (``hasPendingOutput``, ``withPendingOutput(_:)``). Set: every piece is handed to the sink at once, which
    /// saves copying it twice (a channel handler appends it straight to its network buffer); output already
    /// pending goes to the sink first. The bytes are valid only during the call.
    ///
    /// Not public API: a fast path for the NIO handler in this package (`package` access). The session does not
    /// keep the sink alive (no reference counting per record): its owner must set this to nil before it goes.
    package var outputSink: (any TLSOutputSink)? {
        get { io.pointee.sink }
        set {
            io.pointee.sink = newValue
            if let newValue, !io.pointee.outbound.isEmpty {
                newValue.takeOutput(io.pointee.outbound.bytes)
                io.pointee.outbound.removeAll()
            }
        }
    }

    /// Lends the pending output to `body` (for example to copy it into a network buffer), then discards it.
    /// The buffer is reused for later output, so no allocation happens per record.
    ///
    /// Part of the sans-I/O API.
    public func withPendingOutput<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        defer { io.pointee.outbound.removeAll() }
        return try body(io.pointee.outbound.bytes)
    }

    /// Returns and discards the pending output.
    ///
    /// Part of the sans-I/O API.
    public func takePendingOutput() -> [UInt8] {
        withPendingOutput { Array($0) }
    }

    /// Frees the input and output buffers when they hold nothing: a connection that goes quiet after its
    /// handshake then keeps no buffer memory. They are made again on first use.
    ///
    /// Not public API: a fast path for the NIO handler in this package (`package` access).
    package func releaseEmptyBuffers() {
        io.pointee.inbound.releaseIfEmpty()
        io.pointee.outbound.releaseIfEmpty()
    }

    /// Whether the server answered the SNI name this client sent with its own server_name extension (RFC 6066),
    /// which says it used the name to choose its certificate. Clients only; false when no name was sent.
    // Set only by the client's hook inside a GnuTLS call, read after it (the handshake info reads it on every
    // connection, servers too): no dynamic exclusivity checks.
    @exclusivity(unchecked) public internal(set) var serverNameAcknowledged = false

    /// Called by the ticket hook when a session ticket arrives.
    func noteTicket() { receivedTicket = true }

    /// The alert in the last record GnuTLS read, if that record was an unencrypted alert (watched during the
    /// handshake only): level and description. Read by `fail` when a record could not be decrypted.
    var unencryptedAlertRead: (level: UInt8, description: UInt8)? { io.pointee.unencryptedAlertPulled }

    /// Whether the ClientHello offered no protocol version this server accepts (set by the hello hook).
    var clientOffersNoAcceptableVersion = false

    /// The result recorded by our own verify callback, read by `fail`: GnuTLS's return code and, when it is 0,
    /// the status bits.
    var callbackVerifyResult: (code: Int32, status: UInt32)?
    /// A refusal by one of the checks our verify callback makes after GnuTLS's (a pin, a required staple, the
    /// application's check), read by `fail`.
    var callbackFailure: TLSError?

    /// Our verify callback: GnuTLS's verification (when the peer is verified), then the pins, the required
    /// OCSP staple and the application's check. Returns 0 to go on, or the code that ends the handshake.
    func verifyInCallback() -> Int32 {
        let configuration = context.configuration
        var count: UInt32 = 0
        let sent = gnutls_certificate_get_peers(session, &count) != nil && count > 0
        if let verification = peerVerification, sent {
            let result = verification.verifyPeer(of: session)
            guard result.code == 0 && result.status == 0 else {
                callbackVerifyResult = result
                return GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR
            }
        }
        let whose = configuration.role == .client ? "server" : "client"
        func refuse(_ reason: VerificationFailure.Reason, chain: [Certificate]) -> Int32 {
            let failure = VerificationFailure(
                reasons: [reason], checkedName: peerVerification?.name,
                certificateNames: chain.first?.names ?? [], status: 0, chain: chain)
            callbackFailure = TLSError(
                kind: .verification, code: GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR,
                codeName: TLSError.name(of: GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR),
                reason: "handshake failed: the \(whose)'s certificate was refused: \(failure)", verification: failure)
            return GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR
        }
        if configuration.role == .client && sent && !hasGoodOCSPStaple {
            // GnuTLS has refused a must-staple certificate without a staple, and one with a staple it could not
            // check (invalid or revoked); what passes here is a missing staple or one that says "unknown". Only
            // the latter needs the certificate read.
            if peerVerification != nil, receivedOCSPStaple, OCSPStatus.isMustStaple(der: peerLeafDER) {
                return refuse(.ocspStapleMissing(certificateRequiresIt: true), chain: peerCertificates)
            }
            if configuration.requiresOCSPStaple {
                return refuse(.ocspStapleMissing(certificateRequiresIt: false), chain: peerCertificates)
            }
        }
        if !configuration.pinnedPublicKeys.isEmpty, sent {
            let chain = peerCertificates
            let presented = chain.first.map(PublicKeyPin.init(certificate:))
            if let presented, !configuration.pinnedPublicKeys.contains(presented) {
                return refuse(.publicKeyNotPinned(presented: presented, expected: configuration.pinnedPublicKeys), chain: chain)
            }
        }
        if let check = configuration.peerCheck {
            let chain = sent ? peerCertificates : []
            if case .reject(let reason) = check(chain) {
                callbackFailure = TLSError(
                    kind: .rejectedByApplication, code: GNUTLS_E_CERTIFICATE_ERROR,
                    codeName: TLSError.name(of: GNUTLS_E_CERTIFICATE_ERROR),
                    reason: "handshake failed: the application refused the \(whose)'s certificate: \(reason)")
                return GNUTLS_E_CERTIFICATE_ERROR
            }
        }
        return 0
    }

    /// The DER of the peer's certificate (empty if it sent none), copied without decoding the chain.
    private var peerLeafDER: [UInt8] {
        var count: UInt32 = 0
        guard let list = gnutls_certificate_get_peers(session, &count), count > 0, let data = list[0].data else { return [] }
        return Array(UnsafeBufferPointer(start: data, count: Int(list[0].size)))
    }

    /// GnuTLS's verdict on the peer's certificate, after `rc` ended the handshake: the return code of the
    /// verification (negative: it could not be done) and, when that is 0, the status bits.
    func peerVerificationResult(handshakeCode rc: Int32) -> (code: Int32, status: UInt32) {
        if let result = callbackVerifyResult { return result }
        let status = gnutls_session_get_verify_cert_status(session)
        if rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR && VerificationFailure.isCredible(status) {
            return (0, status)
        }
        // GNUTLS_E_CERTIFICATE_ERROR: GnuTLS could not verify (a chain longer than it accepts, for one) and kept
        // neither a status (it reads as all ones) nor its reason. Verifying again, with the same data, tells it.
        guard let verification = peerVerification else { return (0, status) }
        return verification.verifyPeer(of: session)
    }

    // MARK: - Protocol

    /// Advances the handshake with the bytes fed so far.
    ///
    /// Call it until it returns ``HandshakeStatus/complete``; after each call, send the pending output, and on
    /// ``HandshakeStatus/needsInput`` feed what the peer sends next.
    ///
    /// Part of the sans-I/O API.
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
        if let status = try peekClientHello() { return status }
        var retries = 0
        while true {
            let before = bufferedInputCount
            let rc = gnutls_handshake(session)
            if rc == 0 {
                state = .established
                io.pointee.watchesInput = false
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
    /// Part of the sans-I/O API.
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
            case GNUTLS_E_FATAL_ALERT_RECEIVED where gnutls_alert_get(session) == GNUTLS_A_USER_CANCELED:
                // Java's TLS (JSSE) ends every TLS 1.3 connection with a warning-level user_canceled followed by
                // close_notify. GnuTLS 3.7 turns any alert under TLS 1.3 into a fatal one and invalidates the
                // session, so the close_notify behind it can no longer be read. Alerts are authenticated once the
                // handshake is done: this is the peer's own decision to end the stream, and what came before it
                // is everything it sent. Take it as the peer's close (as OpenSSL does).
                peerCanceled = true
                state = state == .closedForWriting ? .closed : .closedForReading
                return .closed
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
    /// Part of the sans-I/O API.
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
    /// Part of the sans-I/O API.
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
    ///
    /// Part of the sans-I/O API.
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
    /// received. A test hook, for tests of the peer's refusal only: the library itself never renegotiates.
    /// Sends a warning-level user_canceled alert, as Java's TLS does before its close_notify. For tests only.
    func _testOnly_sendUserCanceled() {
        _ = gnutls_alert_send(session, GNUTLS_AL_WARNING, GNUTLS_A_USER_CANCELED)
    }

    func _testOnly_attemptRenegotiation() -> (code: Int32, alert: String) {
        let rc = gnutls_handshake(session)
        return (rc, TLSError.alertName(gnutls_alert_get(session)))
    }

    /// Holds back records until ``uncork()``, so many small writes become few full records.
    ///
    /// Not public API: a fast path for the NIO handler in this package (`package` access).
    package func cork() { gnutls_record_cork(session) }

    /// Flushes the records collected since ``cork()`` into the pending output.
    ///
    /// Not public API: a fast path for the NIO handler in this package (`package` access).
    package func uncork() throws(TLSError) {
        let rc = gnutls_record_uncork(session, UInt32(GNUTLS_RECORD_WAIT))
        if rc < 0 { throw fail(Int32(rc), context: "cannot send data") }
    }

    /// Sends close_notify: this side will write no more. The peer's own close_notify arrives through
    /// ``read(into:)`` as ``ReadResult/closed``.
    ///
    /// Part of the sans-I/O API.
    public func close() throws(TLSError) {
        switch state {
        case .failed(let error): throw error
        case .handshaking: return
        case .established, .closedForWriting, .closedForReading, .closed: break
        }
        guard !closeNotifySent else { return }
        // After the peer's user_canceled GnuTLS has invalidated the session: nothing more can be sent.
        let rc = peerCanceled ? 0 : gnutls_bye(session, GNUTLS_SHUT_WR)
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
    /// The peer ended the stream with user_canceled (see ``read(into:)``).
    private var peerCanceled = false

    /// Records a fatal error, answers the peer with the alert the classification calls for, and returns it.
    private func fail(_ rc: Int32, context description: String) -> TLSError {
        let (error, answer) = TLSError.session(code: rc, in: self, context: description)
        switch answer {
        case .none: break
        case .protocolVersion: _ = gnutls_alert_send(session, GNUTLS_AL_FATAL, GNUTLS_A_PROTOCOL_VERSION)
        case .appropriate: _ = gnutls_alert_send_appropriate(session, rc)
        }
        state = .failed(error)
        return error
    }

    /// Sends a fatal `handshake_failure` alert and ends the session with `error`: for the layer above, when it
    /// refuses the peer for a reason of its own (a limit), so that the peer learns the connection failed.
    ///
    /// Not public API (`package`): the NIO handler's.
    package func abort(_ error: TLSError) {
        if case .failed = state { return }
        _ = gnutls_alert_send(session, GNUTLS_AL_FATAL, GNUTLS_A_HANDSHAKE_FAILURE)
        state = .failed(error)
    }


    private func check(_ rc: Int32, _ what: String) throws(TLSError) {
        guard rc >= 0 else { throw TLSError.configuration(what, code: rc) }
    }

    /// Offers saved session data to resume before the handshake starts (clients).
    func setResumptionData(_ bytes: [UInt8]) throws(TLSError) {
        let rc = bytes.withUnsafeBytes { gnutls_session_set_data(session, $0.baseAddress, $0.count) }
        try check(rc, "cannot use the saved session data")
    }
}
