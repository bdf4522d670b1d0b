import Synchronization

/// Where a server keeps TLS 1.2 sessions so that a client can resume one by its session ID (RFC 5246), for
/// clients that do not take tickets (`openssl s_client -no_ticket`, some embedded stacks, sslyze's probe).
/// TLS 1.3 resumes with tickets only and never calls it.
///
/// GnuTLS calls it synchronously, on the connection's event loop, in the middle of a handshake: an
/// implementation backed by a network store (memcached, Redis) must answer from memory or give up quickly
/// (return nil, drop the store) rather than wait, because a slow answer stalls every connection on that loop.
/// A failure never fails a handshake: a session that cannot be stored is not resumable, a lookup that finds
/// nothing gives a full handshake. The stored bytes are GnuTLS's session state, secrets included: a shared store
/// must be as private as the server's key.
public protocol TLSSessionCache: AnyObject, Sendable {
    /// Keeps `session` under `id` (both opaque; ids are at most 32 bytes).
    func store(id: [UInt8], session: [UInt8])
    /// The session stored under `id`, if it is still there.
    func retrieve(id: [UInt8]) -> [UInt8]?
    /// Forgets `id` (GnuTLS removes a session that ended with a fatal error).
    func remove(id: [UInt8])
}

/// The default ``TLSSessionCache``: at most `capacity` sessions in this process's memory, each for at most
/// `lifetime`; when full, the oldest goes first. Thread-safe (one lock; each call is a dictionary operation).
/// Instances do not share it: behind a load balancer, session-ID resumption works when the balancer keeps a
/// client on one instance, and tickets (``TLSConfiguration/ticketKey``) work everywhere.
public final class InMemorySessionCache: TLSSessionCache {
    private struct Entry {
        var session: [UInt8]
        var expires: ContinuousClock.Instant
        /// Position in `order`, to tell a current entry from a replaced one.
        var sequence: Int
    }

    private struct State {
        var entries: [[UInt8]: Entry] = [:]
        /// Keys in the order stored, with the sequence number they were stored under (replaced ones stay until
        /// they reach the front).
        var order: [(key: [UInt8], sequence: Int)] = []
        var head = 0
        var sequence = 0
    }

    /// Most sessions held.
    public let capacity: Int
    /// How long a session stays resumable.
    public let lifetime: Duration
    /// Sessions larger than this are not kept (a TLS 1.2 session with a client certificate chain is a few KiB).
    public static let maximumSessionSize = 64 * 1024

    private let state = Mutex(State())

    /// - Parameters:
    ///   - capacity: most sessions held (at least 1).
    ///   - lifetime: how long each stays resumable; GnuTLS also refuses sessions older than its own expiration
    ///     (6 hours), whichever is shorter.
    public init(capacity: Int = 10_000, lifetime: Duration = .seconds(3600)) {
        self.capacity = max(1, capacity)
        self.lifetime = lifetime
    }

    /// The number of sessions held now (expired ones included until they are looked up or pushed out).
    public var count: Int { state.withLock { $0.entries.count } }

    public func store(id: [UInt8], session: [UInt8]) {
        guard session.count <= Self.maximumSessionSize else { return }
        let expires = ContinuousClock.now + lifetime
        state.withLock { state in
            state.sequence += 1
            state.entries[id] = Entry(session: session, expires: expires, sequence: state.sequence)
            state.order.append((id, state.sequence))
            while state.entries.count > capacity, state.head < state.order.count {
                let (key, sequence) = state.order[state.head]
                state.head += 1
                if state.entries[key]?.sequence == sequence { state.entries[key] = nil }
            }
            // Drop the consumed front of the queue now and then, so it does not grow without bound.
            if state.head > 1024 && state.head * 2 > state.order.count {
                state.order.removeFirst(state.head)
                state.head = 0
            }
        }
    }

    public func retrieve(id: [UInt8]) -> [UInt8]? {
        let now = ContinuousClock.now
        return state.withLock { state in
            guard let entry = state.entries[id] else { return nil }
            guard entry.expires > now else {
                state.entries[id] = nil
                return nil
            }
            return entry.session
        }
    }

    public func remove(id: [UInt8]) {
        state.withLock { state in state.entries[id] = nil }
    }
}
