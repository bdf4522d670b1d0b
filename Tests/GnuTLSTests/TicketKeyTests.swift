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
