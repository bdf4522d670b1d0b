import CoreMetrics
import GnuTLS
import NIOConcurrencyHelpers

/// Opt-in swift-metrics for TLS connections: handshakes by version and outcome, how long they took, why they
/// failed, and how many connections are open.
///
/// Nothing is counted unless a `TLSMetrics` is passed in (``GnuTLSHandler``'s `metrics:`, or the same parameter of
/// ``TLSListener`` and ``TLSConnection``); a handler without one pays one nil check per connection. Make one per
/// process (or per listener, with a distinguishing dimension) and share it: it is `Sendable`, and every
/// connection that shares it adds to the same series.
///
/// ```swift
/// let registry = PrometheusCollectorRegistry()              // swift-prometheus, or any MetricsFactory
/// let metrics = TLSMetrics(factory: PrometheusMetricsFactory(registry: registry))
/// try await TLSListener.listen(host: "::", port: 443, context: context, metrics: metrics) { ... }
/// ```
///
/// The series (names as swift-metrics labels, which Prometheus uses as metric names as they are):
/// - `tls_handshakes_total` (counter), dimensions `version` (`TLS 1.2`, `TLS 1.3`, ...; `unknown` when a
///   handshake failed before a version was agreed) and `outcome` (`success`, `failure`);
/// - `tls_handshake_duration_seconds` (timer), dimension `version`: from the connection becoming active to the
///   handshake completing, successful handshakes only;
/// - `tls_handshake_failures_total` (counter), dimension `reason`;
/// - `tls_connection_failures_total` (counter), dimension `reason`: connections that failed after their
///   handshake (truncated by the peer, an alert, bad records);
/// - `tls_connections_open` (meter): connections whose handler is active, handshaking or not.
///
/// `reason` is a `TLSError.Kind` raw value (`verification`, `timeout`, `alertReceived`, `truncated`, ...), or
/// `closed` for a handshake cut short by a close on our side without a TLS error (the server shutting down, a
/// refused PROXY header). The dimensions are bounded on purpose: a server name, an address or an error's text
/// would make one series per client, so those go to the log (see ``GnuTLSHandler``'s `logger:`), never here.
public final class TLSMetrics: Sendable {
    /// The label of the handshake counter.
    public static let handshakesLabel = "tls_handshakes_total"
    /// The label of the handshake duration timer.
    public static let handshakeDurationLabel = "tls_handshake_duration_seconds"
    /// The label of the handshake failure counter.
    public static let handshakeFailuresLabel = "tls_handshake_failures_total"
    /// The label of the counter of connections that failed after their handshake.
    public static let connectionFailuresLabel = "tls_connection_failures_total"
    /// The label of the open-connection meter.
    public static let openConnectionsLabel = "tls_connections_open"

    /// The `reason` of a handshake ended by a close on our side, with no TLS error.
    static let closedReason = "closed"

    private let factory: any MetricsFactory
    private let dimensions: [(String, String)]
    private let open: Meter
    /// The counters and timers made so far, by label and dimension values: each series is made once, when it is
    /// first needed (a registry then shows only what happened, not every version times every reason).
    private let counters = NIOLockedValueBox<[String: Counter]>([:])
    private let timers = NIOLockedValueBox<[String: Timer]>([:])

    /// Creates the metrics of a set of connections.
    ///
    /// - Parameters:
    ///   - factory: where the metrics go; by default the one bootstrapped with `MetricsSystem.bootstrap`.
    ///   - dimensions: added to every series, to tell several sets apart (`[("listener", "public")]`). Keep
    ///     them constant: each distinct value is a series of its own.
    public init(factory: any MetricsFactory = MetricsSystem.factory, dimensions: [(String, String)] = []) {
        self.factory = factory
        self.dimensions = dimensions
        open = Meter(label: Self.openConnectionsLabel, dimensions: dimensions, factory: factory)
    }

    // MARK: - Events (called by GnuTLSHandler on its event loop)

    func connectionOpened() { open.increment() }

    func connectionClosed() { open.decrement() }

    func handshakeSucceeded(version: TLSVersion?, nanoseconds: Int64) {
        let version = Self.label(version)
        counter(Self.handshakesLabel, [("version", version), ("outcome", "success")]).increment()
        timer(Self.handshakeDurationLabel, [("version", version)]).recordNanoseconds(nanoseconds)
    }

    func handshakeFailed(version: TLSVersion?, reason: String) {
        counter(Self.handshakesLabel, [("version", Self.label(version)), ("outcome", "failure")]).increment()
        counter(Self.handshakeFailuresLabel, [("reason", reason)]).increment()
    }

    func connectionFailed(reason: String) {
        counter(Self.connectionFailuresLabel, [("reason", reason)]).increment()
    }

    /// The `reason` of an error: its `TLSError.Kind`, `other` for errors that are not `TLSError`s.
    static func reason(_ error: any Error) -> String {
        (error as? TLSError)?.kind.rawValue ?? TLSError.Kind.other.rawValue
    }

    private static func label(_ version: TLSVersion?) -> String { version?.rawValue ?? "unknown" }

    private func counter(_ label: String, _ own: [(String, String)]) -> Counter {
        let key = Self.key(label, own)
        return counters.withLockedValue { made in
            if let counter = made[key] { return counter }
            let counter = Counter(label: label, dimensions: own + dimensions, factory: factory)
            made[key] = counter
            return counter
        }
    }

    private func timer(_ label: String, _ own: [(String, String)]) -> Timer {
        let key = Self.key(label, own)
        return timers.withLockedValue { made in
            if let timer = made[key] { return timer }
            let timer = Timer(label: label, dimensions: own + dimensions, factory: factory)
            made[key] = timer
            return timer
        }
    }

    private static func key(_ label: String, _ dimensions: [(String, String)]) -> String {
        dimensions.reduce(label) { $0 + "\u{1}" + $1.1 }
    }
}
