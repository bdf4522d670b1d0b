import Foundation
@testable import GnuTLS
import Synchronization
import Testing

/// A cache that records what it is asked and answers as told.
final class RecordingCache: TLSSessionCache {
    enum Answer { case stored, nothing, garbage }

    private let inner = InMemorySessionCache()
    private let calls = Mutex<[String]>([])
    let answer: Answer

    init(answer: Answer = .stored) { self.answer = answer }

    var log: [String] { calls.withLock { $0 } }

    func store(id: [UInt8], session: [UInt8]) {
        calls.withLock { $0.append("store") }
        inner.store(id: id, session: session)
    }

    func retrieve(id: [UInt8]) -> [UInt8]? {
        calls.withLock { $0.append("retrieve") }
        switch answer {
        case .stored: return inner.retrieve(id: id)
        case .nothing: return nil
        case .garbage: return Array(repeating: 0x41, count: 300)
        }
    }

    func remove(id: [UInt8]) {
        calls.withLock { $0.append("remove") }
        inner.remove(id: id)
    }
}

@Suite struct SessionCacheTests {
    let pki = TestPKI.shared

    static let tls12Only = TLSConfiguration.ProtocolPolicy.custom(
        TLSConfiguration.ProtocolPolicy.intermediate.priorityString + ":-VERS-TLS1.3")

    /// A server without tickets (so TLS 1.2 resumption can only be by session ID), with `cache`.
    func serverContext(_ cache: (any TLSSessionCache)?, policy: TLSConfiguration.ProtocolPolicy = tls12Only) throws -> TLSContext {
        var configuration = pki.serverConfiguration(policy: policy)
        configuration.sessionTickets = false
        configuration.sessionCache = cache
        return try TLSContext(configuration: configuration)
    }

    /// Two connections to `server`, the second offering the first's session: whether it resumed (and both
    /// handshakes completed).
    func secondResumes(_ server: TLSContext, policy: TLSConfiguration.ProtocolPolicy = tls12Only) throws -> Bool {
        let client = try TLSContext(configuration: pki.clientConfiguration(policy: policy))
        let first = SessionPair(client: try client.makeSession(), server: try server.makeSession())
        #expect(first.handshake())
        _ = try first.send(Array("ping".utf8), from: first.server, to: first.client)
        guard let data = first.client.resumptionData else { return false }
        let second = SessionPair(
            client: try client.makeSession(serverName: nil, resumptionData: data), server: try server.makeSession())
        #expect(second.handshake(), "\(String(describing: second.clientError)) \(String(describing: second.serverError))")
        #expect(try second.send(Array("pong".utf8), from: second.client, to: second.server) == Array("pong".utf8))
        #expect(second.client.isResumed == second.server.isResumed)
        return second.server.isResumed
    }

    @Test func tls12ResumesBySessionIDThroughTheCache() throws {
        let cache = InMemorySessionCache(capacity: 10)
        #expect(try secondResumes(try serverContext(cache)))
        #expect(cache.count == 1)
    }

    @Test func withoutACacheATicketlessServerDoesAFullHandshake() throws {
        #expect(try !secondResumes(try serverContext(nil)))
    }

    @Test func aCacheThatFindsNothingOrAnswersGarbageGivesAFullHandshakeNotAFailure() throws {
        for answer in [RecordingCache.Answer.nothing, .garbage] {
            let cache = RecordingCache(answer: answer)
            #expect(try !secondResumes(try serverContext(cache)), "\(answer)")
            #expect(cache.log.contains("retrieve"), "\(answer): \(cache.log)")
        }
    }

    @Test func tls13NeverAsksTheCache() throws {
        let cache = RecordingCache()
        var configuration = pki.serverConfiguration()
        configuration.sessionCache = cache
        #expect(try secondResumes(try TLSContext(configuration: configuration), policy: .intermediate))
        #expect(cache.log.isEmpty, "\(cache.log)")
    }

    @Test func tls12WithTicketsResumesByTicketAndStoresNothing() throws {
        // A full handshake that issues a ticket stores nothing (so the cache costs full handshakes nothing); the
        // resumption looks the client's session ID up once (a miss) before it takes the ticket.
        let cache = RecordingCache()
        var configuration = pki.serverConfiguration(policy: Self.tls12Only)
        configuration.sessionCache = cache
        #expect(try secondResumes(try TLSContext(configuration: configuration)))
        #expect(cache.log == ["retrieve"], "\(cache.log)")
    }

    @Test func theInMemoryCacheKeepsTheNewestWithinItsCapacity() {
        let cache = InMemorySessionCache(capacity: 3)
        for index in 0..<5 { cache.store(id: [UInt8(index)], session: [UInt8(index), 1]) }
        #expect(cache.count == 3)
        #expect(cache.retrieve(id: [0]) == nil && cache.retrieve(id: [1]) == nil)
        #expect(cache.retrieve(id: [4]) == [4, 1])
        // Storing an id again makes it the newest.
        cache.store(id: [2], session: [2, 2])
        cache.store(id: [5], session: [5, 1])
        #expect(cache.retrieve(id: [2]) == [2, 2])
        #expect(cache.retrieve(id: [3]) == nil)
        cache.remove(id: [2])
        #expect(cache.retrieve(id: [2]) == nil)
        #expect(cache.count == 2)
        // Thousands of stores keep the bound (and the queue behind it is trimmed).
        for index in 0..<5000 { cache.store(id: [UInt8(index & 0xFF), UInt8(index >> 8)], session: [1]) }
        #expect(cache.count == 3)
    }

    @Test func expiredAndOversizedSessionsAreNotKept() {
        let expired = InMemorySessionCache(capacity: 3, lifetime: .zero)
        expired.store(id: [1], session: [1])
        #expect(expired.retrieve(id: [1]) == nil)
        #expect(expired.count == 0)
        let cache = InMemorySessionCache()
        cache.store(id: [1], session: Array(repeating: 0, count: InMemorySessionCache.maximumSessionSize + 1))
        #expect(cache.count == 0)
    }
}
