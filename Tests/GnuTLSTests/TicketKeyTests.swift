import Foundation
@testable import GnuTLS
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite struct TicketKeyTests {
    let pki = TestPKI.shared

    static let tls12Only = TLSConfiguration.ProtocolPolicy.custom(
        TLSConfiguration.ProtocolPolicy.intermediate.priorityString + ":-VERS-TLS1.3")

    /// 64 bytes that are not all the same.
    static let keyA: [UInt8] = (0..<64).map { UInt8($0 * 7 & 0xFF) }
    static let keyB: [UInt8] = (0..<64).map { UInt8(($0 * 11 + 3) & 0xFF) }

    func serverContext(_ key: TLSConfiguration.TicketKey?, policy: TLSConfiguration.ProtocolPolicy) throws -> TLSContext {
        var configuration = pki.serverConfiguration(policy: policy)
        configuration.ticketKey = key
        return try TLSContext(configuration: configuration)
    }

    /// A ticket from a full handshake with `issuer`, offered to `resumer`: whether both sides resumed.
    func resumes(issuer: TLSContext, resumer: TLSContext, policy: TLSConfiguration.ProtocolPolicy) throws -> Bool {
        let clientContext = try TLSContext(configuration: pki.clientConfiguration(policy: policy))
        let first = SessionPair(client: try clientContext.makeSession(), server: try issuer.makeSession())
        #expect(first.handshake())
        _ = try first.send(Array("ping".utf8), from: first.server, to: first.client)
        let data = try #require(first.client.resumptionData)
        let second = SessionPair(
            client: try clientContext.makeSession(serverName: nil, resumptionData: data), server: try resumer.makeSession())
        #expect(second.handshake())
        #expect(second.client.isResumed == second.server.isResumed)
        return second.server.isResumed
    }

    /// Resumption data from a full handshake with `issuer`.
    func ticket(from issuer: TLSContext, client clientContext: TLSContext) throws -> [UInt8] {
        let first = SessionPair(client: try clientContext.makeSession(), server: try issuer.makeSession())
        #expect(first.handshake())
        #expect(!first.server.isResumed)
        _ = try first.send(Array("ping".utf8), from: first.server, to: first.client)
        return try #require(first.client.resumptionData)
    }

    /// Whether `data` resumes on `resumer`: the handshake completes either way (a refused ticket means a full
    /// handshake, not an error), and both sides agree.
    func resumes(_ data: [UInt8], on resumer: TLSContext, client clientContext: TLSContext) throws -> Bool {
        let pair = SessionPair(
            client: try clientContext.makeSession(serverName: nil, resumptionData: data), server: try resumer.makeSession())
        #expect(pair.handshake())
        #expect(pair.client.isResumed == pair.server.isResumed)
        _ = try pair.send(Array("ping".utf8), from: pair.client, to: pair.server)
        return pair.server.isResumed
    }

    func reloadable(_ key: [UInt8], policy: TLSConfiguration.ProtocolPolicy) throws -> (ReloadableTLSContext, TLSConfiguration) {
        var configuration = pki.serverConfiguration(policy: policy)
        configuration.ticketKey = .bytes(key)
        return (try ReloadableTLSContext(configuration: configuration), configuration)
    }

    static let keyC: [UInt8] = (0..<64).map { UInt8(($0 * 13 + 5) & 0xFF) }

    @Test(arguments: [TLSConfiguration.ProtocolPolicy.intermediate, tls12Only])
    func aTicketFromBeforeAKeyChangeResumesAfterItAndOneFromTwoChangesAgoDoesNot(policy: TLSConfiguration.ProtocolPolicy) throws {
        let client = try TLSContext(configuration: pki.clientConfiguration(policy: policy))
        let (server, initial) = try reloadable(Self.keyA, policy: policy)
        var configuration = initial
        let underA = try ticket(from: server.current, client: client)
        #expect(server.current.previousTicketKey == nil)

        configuration.ticketKey = .bytes(Self.keyB)
        try server.reload(configuration: configuration)
        #expect(server.current.previousTicketKey != nil)
        #expect(try resumes(underA, on: server.current, client: client), "a ticket from the previous key")
        let underB = try ticket(from: server.current, client: client)
        #expect(try resumes(underB, on: server.current, client: client), "a ticket from the current key")

        // The same key read again: the previous one stays.
        try server.reload(configuration: configuration)
        #expect(try resumes(underA, on: server.current, client: client), "the previous key after a reload with no change")

        configuration.ticketKey = .bytes(Self.keyC)
        try server.reload(configuration: configuration)
        #expect(try !resumes(underA, on: server.current, client: client), "a ticket from the key two changes ago")
        #expect(try resumes(underB, on: server.current, client: client), "a ticket from the key just replaced")
        // A context that never had key B does not accept its tickets.
        #expect(try !resumes(underB, on: try serverContext(.bytes(Self.keyC), policy: policy), client: client))
    }

    /// Whether `data` resumes on a session of `base` (a context with a selector) once the selector has chosen
    /// `selected`: the chosen context's ticket keys, current and previous, decide; the handshake completes either
    /// way.
    func resumes(_ data: [UInt8], on base: TLSContext, selecting selected: TLSContext, client clientContext: TLSContext) throws -> Bool {
        let pair = SessionPair(
            client: try clientContext.makeSession(serverName: nil, resumptionData: data), server: try base.makeSession())
        #expect(!pair.handshake(), "the server should wait for the selector")
        #expect(pair.serverError == nil && pair.clientError == nil)
        try pair.server.selectContext(selected)
        #expect(pair.handshake(), "client: \(String(describing: pair.clientError)) server: \(String(describing: pair.serverError))")
        #expect(pair.server.context === selected)
        #expect(pair.client.isResumed == pair.server.isResumed)
        _ = try pair.send(Array("ping".utf8), from: pair.client, to: pair.server)
        return pair.server.isResumed
    }

    @Test(arguments: [TLSConfiguration.ProtocolPolicy.intermediate, tls12Only])
    func withAContextSelectorTheChosenContextsPreviousKeyDecides(policy: TLSConfiguration.ProtocolPolicy) throws {
        let client = try TLSContext(configuration: pki.clientConfiguration(policy: policy))
        let (replaced, initial) = try reloadable(Self.keyA, policy: policy)
        let underA = try ticket(from: replaced.current, client: client)
        var changed = initial
        changed.ticketKey = .bytes(Self.keyB)
        try replaced.reload(configuration: changed)
        let keepsA = replaced.current
        #expect(keepsA.previousTicketKey != nil)

        // The starting context has another key and no previous one; the selector chooses the context that
        // keeps key A: the ticket made under A resumes.
        var selecting = pki.serverConfiguration(policy: policy)
        selecting.ticketKey = .bytes(Self.keyC)
        selecting.contextSelector = .callback { _, answer in answer(.success(nil)) }
        let base = try TLSContext(configuration: selecting)
        #expect(try resumes(underA, on: base, selecting: keepsA, client: client), "chosen context keeps key A")

        // The other way round: the starting context keeps key A, the chosen one has key B alone: a full
        // handshake, no error.
        var keepingSelector = changed
        keepingSelector.contextSelector = .callback { _, answer in answer(.success(nil)) }
        let (reloadableBase, _) = try reloadable(Self.keyA, policy: policy)
        try reloadableBase.reload(configuration: keepingSelector)
        #expect(reloadableBase.current.previousTicketKey != nil)
        let onlyB = try serverContext(.bytes(Self.keyB), policy: policy)
        #expect(try !resumes(underA, on: reloadableBase.current, selecting: onlyB, client: client), "chosen context lacks key A")
        // And a ticket under B resumes on it.
        let underB = try ticket(from: onlyB, client: client)
        #expect(try resumes(underB, on: reloadableBase.current, selecting: onlyB, client: client), "chosen context has key B")
    }

    @Test func thePreviousKeyIsKeptForOneRotationPeriodAndMatchesOnlyItsOwnNames() throws {
        let key = SessionTicketKey(bytes: Self.keyA)
        let other = SessionTicketKey(bytes: Self.keyB)
        let period = SessionTicketKey.rotationPeriod(lifetime: 21_600)
        #expect(period == 64_800)
        let changed = 1_800_000_000
        let previous = PreviousTicketKey(key: key, replacedAt: changed, period: period)
        let now = changed + 10
        let current = UInt64(now / period)
        let name = key.keyName(period: current)
        #expect(name.count == 16)
        #expect(name != key.keyName(period: current - 1) && name != other.keyName(period: current))
        #expect(previous.issued(anyOf: name, at: now))
        #expect(previous.issued(anyOf: key.keyName(period: current - 1), at: now), "the previous period's name")
        #expect(!previous.issued(anyOf: key.keyName(period: current - 2), at: now), "two periods back")
        #expect(!previous.issued(anyOf: other.keyName(period: current), at: now))
        #expect(previous.issued(anyOf: other.keyName(period: current) + name, at: now), "the second of two tickets")
        #expect(!previous.issued(anyOf: [], at: now) && !previous.issued(anyOf: Array(name.prefix(15)), at: now))
        // Gone one rotation period after the change.
        #expect(previous.isKept(at: changed + period - 1))
        #expect(!previous.isKept(at: changed + period))
        let later = changed + period
        #expect(!previous.issued(anyOf: key.keyName(period: UInt64(later / period)), at: later))
    }

    @Test(arguments: [TLSConfiguration.ProtocolPolicy.intermediate, tls12Only])
    func theHelloOffersATicketNamedAsTheKeyDerivedFromTheMasterKey(policy: TLSConfiguration.ProtocolPolicy) throws {
        // The ticket (TLS 1.2 SessionTicket extension, TLS 1.3 pre_shared_key identity) starts with the name of
        // the key GnuTLS made it under: this period's (or, across a boundary, the previous one's), derived from
        // the master key as lib/stek.c does. The peek reads it from the client's first flight.
        let client = try TLSContext(configuration: pki.clientConfiguration(policy: policy))
        let data = try ticket(from: try serverContext(.bytes(Self.keyA), policy: policy), client: client)
        let session = try client.makeSession(serverName: nil, resumptionData: data)
        #expect(try session.handshake() == .needsInput)
        let hello = session.takePendingOutput()
        var names: [UInt8] = []
        var needed = 0
        let result = hello.withUnsafeBytes { ClientHelloPeek.parse($0, needed: &needed, ticketKeyNames: &names) }
        guard case .hello = result else {
            Issue.record("not read as a hello: \(result)")
            return
        }
        let period = UInt64(SessionTicketKey.rotationPeriod(lifetime: 21_600))
        let current = UInt64(time(nil)) / period
        let master = SessionTicketKey(bytes: Self.keyA)
        #expect(names == master.keyName(period: current) || names == master.keyName(period: current - 1), "\(names)")
        #expect(names != SessionTicketKey(bytes: Self.keyB).keyName(period: current))
        // A hello with no ticket offers no name.
        let fresh = try client.makeSession()
        _ = try fresh.handshake()
        var none: [UInt8] = []
        _ = fresh.takePendingOutput().withUnsafeBytes { ClientHelloPeek.parse($0, needed: &needed, ticketKeyNames: &none) }
        #expect(none.isEmpty)
    }

    @Test(arguments: [TLSConfiguration.ProtocolPolicy.intermediate, tls12Only])
    func aClientWithoutSessionTicketsNeitherAsksForNorKeepsThem(policy: TLSConfiguration.ProtocolPolicy) throws {
        var clientConfiguration = pki.clientConfiguration(policy: policy)
        clientConfiguration.sessionTickets = false
        let client = try TLSContext(configuration: clientConfiguration)
        let server = try serverContext(.bytes(Self.keyA), policy: policy)
        let pair = SessionPair(client: try client.makeSession(), server: try server.makeSession())
        #expect(pair.handshake())
        _ = try pair.send(Array("ping".utf8), from: pair.server, to: pair.client)
        if pair.client.negotiatedVersion == .tls13 {
            #expect(pair.client.resumptionData == nil, "resumption data from a ticket the client did not ask for")
        } else {
            // TLS 1.2 data names the session by its ID only, which this server (no session cache) cannot resume.
            let data = try #require(pair.client.resumptionData)
            #expect(try !resumes(data, on: server, client: client))
        }
        // Given data with a ticket in it (from a client with tickets), it does not offer the ticket.
        let withTickets = try TLSContext(configuration: pki.clientConfiguration(policy: policy))
        let data = try ticket(from: server, client: withTickets)
        let session = try client.makeSession(serverName: nil, resumptionData: data)
        _ = try session.handshake()
        var names: [UInt8] = []
        var needed = 0
        let result = session.takePendingOutput().withUnsafeBytes {
            ClientHelloPeek.parse($0, needed: &needed, ticketKeyNames: &names)
        }
        #expect(result != .notAHello && result != .incomplete)
        #expect(names.isEmpty, "the hello offers a ticket")
        #expect(try !resumes(data, on: server, client: client))
    }

    @Test func resumptionDataPastTheSessionLifetimeIsNotUsed() async throws {
        var datas: [(TLSContext, TLSContext, [UInt8])] = []
        for policy in [TLSConfiguration.ProtocolPolicy.intermediate, Self.tls12Only] {
            var configuration = pki.serverConfiguration(policy: policy)
            configuration.ticketKey = .bytes(Self.keyA)
            configuration.sessionLifetime = .seconds(1)
            let server = try TLSContext(configuration: configuration)
            let client = try TLSContext(configuration: pki.clientConfiguration(policy: policy))
            let data = try ticket(from: server, client: client)
            #expect(try resumes(data, on: server, client: client), "a fresh ticket with a 1 s lifetime")
            datas.append((server, client, data))
        }
        // GnuTLS counts whole seconds: past 2 s, a 1 s ticket has expired everywhere. Its key is still accepted
        // (keys rotate every 3 × 1 s and the previous period's key is accepted), so only the lifetime refuses it.
        try await Task.sleep(for: .milliseconds(2_500))
        for (server, client, data) in datas {
            #expect(try !resumes(data, on: server, client: client), "an expired ticket")
        }
    }

    @Test func aSessionLifetimeOutsideOneSecondToSevenDaysIsRefused() throws {
        for lifetime in [Duration.zero, .milliseconds(1_500), .seconds(604_801)] {
            var configuration = pki.serverConfiguration()
            configuration.sessionLifetime = lifetime
            let error = #expect(throws: TLSError.self) { try TLSContext(configuration: configuration) }
            #expect(error?.reason == "the session lifetime must be whole seconds from 1 s to 7 days, not \(lifetime)")
        }
        var configuration = pki.serverConfiguration()
        configuration.sessionLifetime = .seconds(604_800)
        #expect(try TLSContext(configuration: configuration).sessionLifetimeSeconds == 604_800)
    }

    @Test(arguments: [TLSConfiguration.ProtocolPolicy.intermediate, tls12Only])
    func twoContextsWithTheSameKeyResumeEachOthersTickets(policy: TLSConfiguration.ProtocolPolicy) throws {
        let first = try serverContext(.bytes(Self.keyA), policy: policy)
        let second = try serverContext(.bytes(Self.keyA), policy: policy)
        #expect(try resumes(issuer: first, resumer: second, policy: policy))
    }

    @Test(arguments: [TLSConfiguration.ProtocolPolicy.intermediate, tls12Only])
    func aDifferentKeyOrAFreshOneMeansAFullHandshake(policy: TLSConfiguration.ProtocolPolicy) throws {
        let first = try serverContext(.bytes(Self.keyA), policy: policy)
        #expect(try !resumes(issuer: first, resumer: try serverContext(.bytes(Self.keyB), policy: policy), policy: policy))
        #expect(try !resumes(issuer: first, resumer: try serverContext(nil, policy: policy), policy: policy))
    }

    @Test func aKeyFileWrittenByWriteNewKeyIsPrivateAndWorks() throws {
        let directory = try TemporaryFolder()
        let path = directory.path("ticket.key")
        try TLSConfiguration.TicketKey.writeNewKey(toFile: path)
        var info = stat()
        #expect(stat(path, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.hasSuffix("\n"))
        #expect(Data(base64Encoded: String(text.dropLast()))?.count == 64)
        let first = try serverContext(.file(path), policy: .intermediate)
        let second = try serverContext(.file(path), policy: .intermediate)
        #expect(try resumes(issuer: first, resumer: second, policy: .intermediate))

        // Never over an existing file, and the file is unchanged.
        let error = #expect(throws: TLSError.self) { try TLSConfiguration.TicketKey.writeNewKey(toFile: path) }
        #expect(error?.reason == "cannot write session ticket key file '\(path)': it already exists (remove it first to replace the key)")
        #expect(try String(contentsOfFile: path, encoding: .utf8) == text)
    }

    @Test func badKeysAreRefusedWithTheReason() throws {
        let directory = try TemporaryFolder()
        func file(_ name: String, _ contents: String) throws -> String {
            let path = directory.path(name)
            try contents.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let short = try file("short.key", Data(Self.keyA.prefix(48)).base64EncodedString() + "\n")
        let notBase64 = try file("text.key", "this is not a key\n")
        let twoLines = try file("two.key", Data(Self.keyA).base64EncodedString() + "\n\n")
        let zeros = try file("zeros.key", Data(repeating: 0, count: 64).base64EncodedString())
        let cases: [(TLSConfiguration.TicketKey, String)] = [
            (.file(short), "session ticket key file '\(short)' holds 48 bytes; a session ticket key is 64 bytes (make one with: tls-certs ticket-key --out FILE)"),
            (.file(notBase64), "session ticket key file '\(notBase64)' is not one line of base64 (make one with: tls-certs ticket-key --out FILE)"),
            (.file(twoLines), "session ticket key file '\(twoLines)' is not one line of base64 (make one with: tls-certs ticket-key --out FILE)"),
            (.file(zeros), "session ticket key file '\(zeros)' is the same byte repeated: not a random key"),
            (.file(directory.path("missing.key")), "cannot read session ticket key file '\(directory.path("missing.key"))': No such file or directory"),
            (.bytes(Array(Self.keyA.prefix(32))), "the session ticket key holds 32 bytes; a session ticket key is 64 bytes (make one with: tls-certs ticket-key --out FILE)"),
        ]
        for (key, reason) in cases {
            let error = #expect(throws: TLSError.self) { try serverContext(key, policy: .intermediate) }
            #expect(error?.kind == .configuration)
            #expect(error?.reason == reason)
        }
    }

    @Test func theKeyBytesNeverShowInDescriptionsOrDumps() throws {
        var configuration = pki.serverConfiguration()
        configuration.ticketKey = .bytes(Self.keyA)
        let base64 = Data(Self.keyA).base64EncodedString()
        var dumped = ""
        dump(configuration, to: &dumped)
        for text in [configuration.description, String(reflecting: configuration), dumped, "\(configuration.ticketKey!)"] {
            #expect(text.contains("<redacted>"), "\(text)")
            #expect(!text.contains(base64) && !text.contains("\(Self.keyA)") && !text.contains("[0, 7, 14"), "\(text)")
        }
        configuration.ticketKey = .file("/etc/tls/ticket.key")
        #expect(configuration.description.contains("ticketKey: file(\"/etc/tls/ticket.key\")"))
    }
}

/// A temporary directory removed when this object goes away.
final class TemporaryFolder {
    let path: String

    init() throws {
        var template = Array("\(NSTemporaryDirectory())/ticket-key-tests.XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw TLSError(kind: .configuration, reason: "mkdtemp failed")
        }
        path = String(cString: made)
    }

    func path(_ name: String) -> String { "\(path)/\(name)" }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}
