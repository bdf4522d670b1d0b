import CoreMetrics
import GnuTLS
import InMemoryLogging
import Logging
import MetricsTestKit
import NIOCore
import NIOEmbedded
import NIOGnuTLS
import Testing

/// swift-log and swift-metrics: failures logged once at debug with dotted keys, nothing logged for a connection
/// that goes well; handshakes, their duration, failures by reason and open connections counted when asked for.
@Suite struct ObservabilityTests {
    let pki = HandlerPKI.shared

    /// Client and server embedded channels, each with its own logger and metrics.
    final class Observed {
        /// The channels and the byte pump, as the lifecycle tests use them.
        let wires = EmbeddedPair()
        var client: EmbeddedChannel { wires.client }
        var server: EmbeddedChannel { wires.server }
        let clientLog = InMemoryLogHandler()
        let serverLog = InMemoryLogHandler()
        let clientMetrics = TestMetrics()
        let serverMetrics = TestMetrics()
        let clientRecorder = Recorder()
        let serverRecorder = Recorder()

        init(clientContext: TLSContext, serverContext: TLSContext) throws {
            try client.pipeline.syncOperations.addGnuTLSHandler(
                context: clientContext, serverName: "localhost", logger: Self.logger(clientLog),
                metrics: TLSMetrics(factory: clientMetrics))
            try client.pipeline.syncOperations.addHandler(clientRecorder)
            try server.pipeline.syncOperations.addGnuTLSHandler(
                context: serverContext, logger: Self.logger(serverLog), metrics: TLSMetrics(factory: serverMetrics))
            try server.pipeline.syncOperations.addHandler(serverRecorder)
        }

        static func logger(_ handler: InMemoryLogHandler) -> Logger {
            var logger = Logger(label: "test") { _ in handler }
            logger.logLevel = .trace
            return logger
        }

        func activate() throws { try wires.connect() }
        func pump() throws { try wires.pump() }
    }

    @Test func aConnectionThatGoesWellLogsNothingAndIsCounted() throws {
        let observed = try Observed(clientContext: pki.clientContext(), serverContext: pki.serverContext())
        try observed.activate()
        // Embedded time moves only when told: the handshake takes exactly these 7 ms.
        observed.server.embeddedEventLoop.advanceTime(by: .milliseconds(7))
        observed.client.embeddedEventLoop.advanceTime(by: .milliseconds(7))
        try observed.pump()
        try observed.client.writeAndFlush(ByteBuffer(string: "ping")).wait()
        try observed.pump()
        #expect(observed.serverRecorder.received == Array("ping".utf8))

        for metrics in [observed.clientMetrics, observed.serverMetrics] {
            let success = try metrics.expectCounter(
                TLSMetrics.handshakesLabel, [("version", "TLS 1.3"), ("outcome", "success")])
            #expect(success.totalValue == 1)
            #expect(metrics.counters(label: TLSMetrics.handshakesLabel).count == 1)
            #expect(metrics.counters(label: TLSMetrics.handshakeFailuresLabel).isEmpty)
            let duration = try metrics.expectTimer(TLSMetrics.handshakeDurationLabel, [("version", "TLS 1.3")])
            #expect(duration.values == [7_000_000])
            #expect(try metrics.expectMeter(TLSMetrics.openConnectionsLabel).lastValue == 1)
        }

        let closed = observed.client.close()
        try observed.pump()
        try closed.wait()
        #expect(!observed.server.isActive)
        for metrics in [observed.clientMetrics, observed.serverMetrics] {
            #expect(try metrics.expectMeter(TLSMetrics.openConnectionsLabel).lastValue == 0)
            #expect(metrics.counters(label: TLSMetrics.connectionFailuresLabel).isEmpty)
        }
        #expect(observed.clientLog.entries.isEmpty)
        #expect(observed.serverLog.entries.isEmpty)
    }

    @Test func aFailedVerificationIsLoggedOnceAtDebugAndCountedByReason() throws {
        let stranger = try CertificateAuthority.generate(commonName: "Stranger CA")
        let untrusting = try TLSContext(
            configuration: .client(serverName: "localhost", trustRoots: .certificates([stranger.certificate])))
        let observed = try Observed(clientContext: untrusting, serverContext: pki.serverContext())
        try observed.activate()
        try observed.pump()
        #expect((observed.clientRecorder.errors.first as? TLSError)?.kind == .verification)

        let entries = observed.clientLog.entries
        #expect(entries.count == 1)
        let entry = try #require(entries.first)
        #expect(entry.level == .debug)
        #expect(entry.message == "TLS handshake failed")
        #expect(entry.metadata["tls.error.kind"] == "verification")
        #expect(entry.metadata["tls.role"] == "client")
        #expect(entry.metadata["tls.handshake"] == "failed")
        #expect(entry.metadata["tls.peer"] == "[IPv4]127.0.0.1:2")
        #expect(entry.metadata["tls.error.code"]?.description.hasPrefix("GNUTLS_E_") == true)
        #expect(entry.metadata["tls.error.reason"]?.description.contains("issuer") == true)

        let client = observed.clientMetrics
        #expect(try client.expectCounter(
            TLSMetrics.handshakesLabel, [("version", "unknown"), ("outcome", "failure")]).totalValue == 1)
        #expect(
            try client.expectCounter(TLSMetrics.handshakeFailuresLabel, [("reason", "verification")]).totalValue == 1)
        #expect(client.counters(label: TLSMetrics.handshakeFailuresLabel).count == 1)
        #expect(client.timers(label: TLSMetrics.handshakeDurationLabel).isEmpty)

        // The server hears the client's alert: a failure of its own, with the reason it saw.
        let server = observed.serverMetrics
        #expect(
            try server.expectCounter(TLSMetrics.handshakeFailuresLabel, [("reason", "alertReceived")]).totalValue == 1)
        #expect(observed.serverLog.entries.map { $0.metadata["tls.error.kind"] } == ["alertReceived"])
        #expect(observed.serverLog.entries.first?.metadata["tls.error.alert"] != nil)
        for metrics in [client, server] {
            #expect(try metrics.expectMeter(TLSMetrics.openConnectionsLabel).lastValue == 0)
        }
    }

    @Test func truncationAfterTheHandshakeIsAConnectionFailure() throws {
        let observed = try Observed(clientContext: pki.clientContext(), serverContext: pki.serverContext())
        try observed.activate()
        try observed.pump()
        observed.server.pipeline.fireChannelInactive()
        #expect((observed.serverRecorder.errors.first as? TLSError)?.kind == .truncated)
        let server = observed.serverMetrics
        #expect(try server.expectCounter(TLSMetrics.connectionFailuresLabel, [("reason", "truncated")]).totalValue == 1)
        #expect(server.counters(label: TLSMetrics.handshakeFailuresLabel).isEmpty)
        #expect(try server.expectMeter(TLSMetrics.openConnectionsLabel).lastValue == 0)
        let entry = try #require(observed.serverLog.entries.first)
        #expect(observed.serverLog.entries.count == 1)
        #expect(entry.message == "TLS connection failed")
        #expect(entry.metadata["tls.handshake"] == "completed")
        #expect(entry.metadata["tls.error.kind"] == "truncated")
        #expect(entry.metadata["tls.server_name"] == "localhost")
    }

    @Test func aHandshakeClosedOnOurSideIsCountedAsClosed() throws {
        let observed = try Observed(clientContext: pki.clientContext(), serverContext: pki.serverContext())
        try observed.activate()
        // The ClientHello is on its way; the server shuts the connection before answering.
        try observed.server.close().wait()
        let server = observed.serverMetrics
        #expect(try server.expectCounter(TLSMetrics.handshakeFailuresLabel, [("reason", "closed")]).totalValue == 1)
        #expect(try server.expectCounter(
            TLSMetrics.handshakesLabel, [("version", "unknown"), ("outcome", "failure")]).totalValue == 1)
        #expect(try server.expectMeter(TLSMetrics.openConnectionsLabel).lastValue == 0)
    }

    @Test func aLoggerAboveDebugIsNotAskedForAnything() throws {
        let stranger = try CertificateAuthority.generate(commonName: "Stranger CA")
        let untrusting = try TLSContext(
            configuration: .client(serverName: "localhost", trustRoots: .certificates([stranger.certificate])))
        let log = InMemoryLogHandler()
        var logger = Observed.logger(log)
        logger.logLevel = .info
        let client = EmbeddedChannel()
        let server = EmbeddedChannel()
        try client.pipeline.syncOperations.addGnuTLSHandler(context: untrusting, logger: logger)
        try client.pipeline.syncOperations.addHandler(ErrorSwallower())
        try server.pipeline.syncOperations.addGnuTLSHandler(context: pki.serverContext())
        try server.pipeline.syncOperations.addHandler(ErrorSwallower())
        try server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 2)).wait()
        for _ in 0..<10 {
            while let buffer = try client.readOutbound(as: ByteBuffer.self) {
                if server.isActive { try server.writeInbound(buffer) }
            }
            while let buffer = try server.readOutbound(as: ByteBuffer.self) {
                if client.isActive { try client.writeInbound(buffer) }
            }
        }
        #expect(!client.isActive)
        #expect(log.entries.isEmpty)
    }
}
