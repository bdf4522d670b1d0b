/// Reads the first ClientHello from the records a client sent, before GnuTLS sees them, for a server that chooses
/// its context per connection (``TLSConfiguration/contextSelector``).
///
/// GnuTLS picks the certificate while it parses the hello, in the same call that would run its post-client-hello
/// hook, so a hook that pauses the handshake (`GNUTLS_E_AGAIN`) pauses it too late to change the certificate.
/// Reading the hello first lets the session be given the chosen context before GnuTLS reads a byte.
///
/// The bytes come from the network: every length is checked. Anything that is not a well-formed ClientHello in
/// handshake records gives ``Result/notAHello``, and GnuTLS then answers it as it would without a selector.
/// `package` so that a fuzz target can call it.
package enum ClientHelloPeek: Equatable {
    /// What the records hold.
    package enum Result: Equatable {
        /// Not all of the hello has arrived.
        case incomplete
        /// The bytes are not a ClientHello in handshake records.
        case notAHello
        /// The hello, complete.
        case hello(ClientHelloInfo)
    }

    /// The largest hello read: bigger ones are left to GnuTLS (the handler's handshake input limit applies).
    static let maximumHelloLength = 256 * 1024

    /// The most records a hello may be split over (real ones take one or two): beyond it the hello is left to
    /// GnuTLS, so that a hello trickled in tiny records costs a bounded number of re-reads.
    static let maximumRecords = 32

    /// Reads the hello from `records`, the bytes received so far.
    package static func parse(_ records: UnsafeRawBufferPointer) -> Result {
        var needed = 0
        return parse(records, needed: &needed)
    }

    /// The same; when the result is ``Result/incomplete``, `needed` is how many bytes must be buffered before
    /// another read can get further (the end of the record being received), so that a caller fed a byte at a
    /// time reads the buffer again once per record, not once per byte.
    static func parse(_ records: UnsafeRawBufferPointer, needed: inout Int) -> Result {
        var names: [UInt8] = []
        return parse(records, needed: &needed, ticketKeyNames: &names)
    }

    /// The same; for a complete hello, `ticketKeyNames` receives the key names its session tickets start with
    /// (see ``parseBody(_:ticketKeyNames:)``).
    static func parse(_ records: UnsafeRawBufferPointer, needed: inout Int, ticketKeyNames: inout [UInt8]) -> Result {
        // Reassemble the handshake message from the fragments of consecutive handshake records.
        var message: [UInt8] = []
        var reader = BigEndianReader(bytes: records)
        var expected: Int?
        var count = 0
        needed = records.count + 1
        while true {
            if let expected, message.count >= expected { break }
            let start = reader.offset
            guard let type = reader.u8() else { return .incomplete }
            guard type == 22 else { return .notAHello }
            guard let major = reader.u8() else { return .incomplete }
            guard major == 3 else { return .notAHello }
            guard reader.skip(1), let length = reader.u16() else { return .incomplete }
            guard length > 0, length <= 16384 + 2048 else { return .notAHello }
            guard let fragment = reader.sub(Int(length)) else {
                needed = start + 5 + Int(length)
                return .incomplete
            }
            count += 1
            guard count <= maximumRecords else { return .notAHello }
            message.append(contentsOf: fragment.bytes)
            if expected == nil, message.count >= 4 {
                guard message[0] == 1 else { return .notAHello }
                let bodyLength = Int(message[1]) << 16 | Int(message[2]) << 8 | Int(message[3])
                guard bodyLength <= maximumHelloLength else { return .notAHello }
                expected = 4 + bodyLength
            }
        }
        return message.withUnsafeBytes { bytes in
            let body = UnsafeRawBufferPointer(rebasing: bytes[4..<(expected ?? 4)])
            return parseBody(body, ticketKeyNames: &ticketKeyNames).map { .hello($0) } ?? .notAHello
        }
    }

    /// Reads the server name and ALPN list from a ClientHello body.
    package static func parseBody(_ body: UnsafeRawBufferPointer) -> ClientHelloInfo? {
        var names: [UInt8] = []
        return parseBody(body, ticketKeyNames: &names)
    }

    /// The most ticket key names read from one hello (a client offers one or two tickets).
    static let maximumTicketKeyNames = 4

    /// The same, and the key names of the session tickets the hello offers, 16 bytes each one after the other
    /// in `ticketKeyNames`: the first bytes of the TLS 1.2 SessionTicket extension and of each TLS 1.3
    /// pre_shared_key identity (a GnuTLS ticket starts with the name of the key it was encrypted under, see
    /// `PreviousTicketKey`). Shorter ones are skipped; at most ``maximumTicketKeyNames``.
    package static func parseBody(_ body: UnsafeRawBufferPointer, ticketKeyNames: inout [UInt8]) -> ClientHelloInfo? {
        let nameSize = SessionTicketKey.nameSize
        func noteName(_ ticket: BigEndianReader) {
            guard ticket.bytes.count >= nameSize, ticketKeyNames.count < maximumTicketKeyNames * nameSize else { return }
            ticketKeyNames.append(contentsOf: ticket.bytes.prefix(nameSize))
        }
        var reader = BigEndianReader(bytes: body)
        guard reader.skip(2 + 32),  // legacy_version, random
            let sessionIDLength = reader.u8(), reader.skip(Int(sessionIDLength)),
            let suitesLength = reader.u16(), reader.skip(Int(suitesLength)),
            let compressionLength = reader.u8(), reader.skip(Int(compressionLength))
        else { return nil }
        guard let extensionsLength = reader.u16() else { return ClientHelloInfo(serverName: nil) }
        guard var extensions = reader.sub(Int(extensionsLength)) else { return nil }
        var serverName: String?
        var protocols: [String] = []
        while let type = extensions.u16(), let length = extensions.u16() {
            guard var data = extensions.sub(Int(length)) else { return nil }
            switch type {
            case 0:  // server_name
                guard let listLength = data.u16(), var list = data.sub(Int(listLength)) else { return nil }
                while let nameType = list.u8(), let nameLength = list.u16() {
                    guard let name = list.sub(Int(nameLength)) else { return nil }
                    if nameType == 0, serverName == nil {
                        // A host name is ASCII; anything else is not a name GnuTLS would match either.
                        guard name.bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else { return nil }
                        serverName = String(decoding: name.bytes, as: UTF8.self).lowercased()
                    }
                }
            case 16:  // application_layer_protocol_negotiation
                guard let listLength = data.u16(), var list = data.sub(Int(listLength)) else { return nil }
                while let nameLength = list.u8() {
                    guard let name = list.sub(Int(nameLength)) else { return nil }
                    protocols.append(String(decoding: name.bytes, as: UTF8.self))
                }
            case 35:  // session_ticket (TLS 1.2): the ticket itself
                noteName(data)
            case 41:  // pre_shared_key (TLS 1.3): identities, each a ticket and its obfuscated age
                // A malformed list is GnuTLS's to refuse: the names read so far are all there is.
                guard let listLength = data.u16(), var list = data.sub(Int(listLength)) else { break }
                while let identityLength = list.u16() {
                    guard let identity = list.sub(Int(identityLength)), list.skip(4) else { break }
                    noteName(identity)
                }
            default:
                break
            }
        }
        return ClientHelloInfo(serverName: serverName, applicationProtocols: protocols)
    }
}
