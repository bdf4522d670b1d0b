import Synchronization

/// A server's context that can be replaced while it serves: certificates, keys, trust anchors and OCSP responses
/// reread without a restart.
///
/// Give ``current`` to each new connection (for example in the child channel initializer). ``reload()`` builds a
/// new context from the same configuration, rereading every file it names; when that succeeds, new connections
/// get it, and connections in flight keep the context they started with (each holds its own). When it fails,
/// nothing changes and the error says exactly why. Thread-safe: reloads and reads may happen on any thread at
/// once.
///
/// A generated session-ticket key carries over to each new context, so tickets issued before a reload still
/// resume after it. A configured key (``TLSConfiguration/ticketKey``) is read again; when it changed, the
/// replaced key is still accepted for tickets made under it for one rotation period (3 ×
/// ``TLSConfiguration/sessionLifetime``, 18 h by default).
public final class ReloadableTLSContext: Sendable {
    private let state: Mutex<(context: TLSContext, generation: Int)>

    /// Builds the first context.
    ///
    /// - Throws: ``TLSError`` of kind ``TLSError/Kind/configuration``, as ``TLSContext/init(configuration:)``.
    public init(configuration: TLSConfiguration) throws(TLSError) {
        state = Mutex((try TLSContext(configuration: configuration), 0))
    }

    /// Wraps a context already built.
    public init(_ context: TLSContext) {
        state = Mutex((context, 0))
    }

    /// The context for a new connection.
    public var current: TLSContext { state.withLock { $0.context } }

    /// How many reloads have succeeded.
    public var generation: Int { state.withLock { $0.generation } }

    /// Builds a new context from the current configuration, rereading its files, and makes it current.
    ///
    /// - Returns: the new context.
    /// - Throws: ``TLSError`` of kind ``TLSError/Kind/configuration`` naming what is wrong; the current context
    ///   stays.
    @discardableResult
    public func reload() throws(TLSError) -> TLSContext {
        try reload(configuration: current.configuration)
    }

    /// Builds a context from `configuration` and makes it current.
    ///
    /// - Throws: ``TLSError`` of kind ``TLSError/Kind/configuration`` naming what is wrong; the current context
    ///   stays.
    @discardableResult
    public func reload(configuration: TLSConfiguration) throws(TLSError) -> TLSContext {
        // Built outside the lock: loading files and keys takes time, and connections keep being accepted.
        let previous = current
        let next = try TLSContext(configuration: configuration, replacing: previous)
        state.withLock { state in
            state.context = next
            state.generation += 1
        }
        return next
    }
}
