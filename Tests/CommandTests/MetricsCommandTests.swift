import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// tls-server --metrics and --log-level, as an operator uses them: Prometheus scrapes /metrics over HTTP, the
/// log goes to standard error, the per-connection lines stay on standard output as they were.
@Suite("tls-server --metrics and --log-level", .timeLimit(.minutes(5)))
struct MetricsCommandTests {
    /// The port in `tls-server: metrics at http://HOST:PORT/metrics`, once printed.
    static func metricsPort(in output: String) -> Int? {
        for line in output.split(separator: "\n") where line.contains("tls-server: metrics at http://") {
            guard let end = line.range(of: "/metrics", options: .backwards),
                let colon = line[..<end.lowerBound].lastIndex(of: ":")
            else { continue }
            return Int(line[line.index(after: colon)..<end.lowerBound])
        }
        return nil
    }

    /// One HTTP/1.1 request over a plain socket; the whole response (the server closes: `Connection: close`).
    static func get(_ path: String, port: Int) async throws -> String {
        let connection = try RawTCPConnection(port: port)
        defer { connection.close() }
        try connection.send(Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8))
        var response: [UInt8] = []
        let closed = try await eventually(within: .seconds(30)) {
            guard let bytes = connection.receiveAvailable() else { return true }
            response += bytes
            return false
        }
        guard closed else { throw HarnessError("no complete response to GET \(path) within 10 s") }
        return String(decoding: response, as: UTF8.self)
    }

    /// The samples of a Prometheus text body, by name and labels (sorted, so that their order does not matter):
    /// `tls_handshakes_total{outcome="success",version="TLS 1.3"}` → 3.
    static func samples(in body: String) -> [String: Double] {
        var samples: [String: Double] = [:]
        for line in body.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                continue
            }
            let series = line[..<space]
            guard let open = series.firstIndex(of: "{"), series.hasSuffix("}") else {
                samples[String(series)] = value
                continue
            }
            let labels = series[series.index(after: open)..<series.index(before: series.endIndex)]
                .split(separator: ",").map(String.init).sorted()
            samples["\(series[..<open]){\(labels.joined(separator: ","))}"] = value
        }
        return samples
    }

    @Test("--metrics: three good connections and a refused client certificate, by version, outcome and reason")
    func metricsCountHandshakes() async throws {
        let files = try TestFiles()
        let server = try await ServerProcess.start(
            files.serverArguments()
                + ["--verify-client", "optional", "--cafile", files.path("ca.crt"), "--metrics", "127.0.0.1:0"],
            directory: files.url)
        defer { server.kill() }
        let port = try #require(Self.metricsPort(in: server.output), "\(server.transcript)")

        for index in 0..<3 {
            expectSuccessfulExchange(
                try await runClient(port: server.port, files: files, ["--message", "hello \(index)"]),
                message: "hello \(index)")
        }
        // A client certificate from a CA the server does not trust: the server's verification refuses it.
        let refused = try await runClient(
            port: server.port, files: files,
            ["--cert", files.path("other-client.crt"), "--key", files.path("other-client.key")])
        #expect(refused.status == 1, "\(refused)")

        // The protocol lines are unchanged on standard output.
        #expect(try await server.waitForLine { $0.hasPrefix("Received: hello 2") } != nil, "\(server.transcript)")

        // Connections close shortly after the clients exit: wait for the gauge to come back to 0.
        var samples: [String: Double] = [:]
        var response = ""
        for _ in 0..<50 {
            response = try await Self.get("/metrics", port: port)
            samples = Self.samples(in: response)
            if samples["tls_connections_open"] == 0 { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(response.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(response)")
        #expect(response.lowercased().contains("content-type: text/plain; version=0.0.4"), "\(response)")
        #expect(response.contains("# TYPE tls_handshakes_total counter"), "\(response)")
        #expect(samples[#"tls_handshakes_total{outcome="success",version="TLS 1.3"}"#] == 3, "\(response)")
        #expect(samples[#"tls_handshakes_total{outcome="failure",version="unknown"}"#] == 1, "\(response)")
        #expect(samples[#"tls_handshake_failures_total{reason="verification"}"#] == 1, "\(response)")
        #expect(samples[#"tls_handshake_duration_seconds_count{version="TLS 1.3"}"#] == 3, "\(response)")
        #expect(samples["tls_connections_open"] == 0, "\(response)")
        // Only these reasons and versions: no series per client, name or address.
        let failureSeries = samples.keys.filter { $0.hasPrefix("tls_handshake_failures_total") }
        #expect(failureSeries == [#"tls_handshake_failures_total{reason="verification"}"#], "\(response)")
        #expect(!response.contains("127.0.0.1") && !response.contains("localhost"), "\(response)")

        let notFound = try await Self.get("/", port: port)
        #expect(notFound.hasPrefix("HTTP/1.1 404 Not Found\r\n"), "\(notFound)")
    }

    @Test("--log-level debug: a refused connection is logged on standard error with its kind; info logs nothing")
    func logLevelDebugLogsFailures() async throws {
        let files = try TestFiles()
        let server = try await ServerProcess.start(
            files.serverArguments() + ["--log-level", "debug"], directory: files.url)
        defer { server.kill() }
        expectSuccessfulExchange(try await runClient(port: server.port, files: files))
        // The client does not trust the server's CA and refuses it with an alert.
        _ = try await runClient(port: server.port, files: files, trust: false)
        let logged = try await eventually(within: .seconds(30)) {
            server.child.stderr.text.contains("TLS handshake failed")
        }
        let log = server.child.stderr.text
        #expect(logged, "\(server.transcript)")
        #expect(log.contains("tls.error.kind=alertReceived"), "\(log)")
        #expect(log.contains("tls.peer="), "\(log)")
        #expect(log.split(separator: "\n").filter { $0.contains("TLS handshake failed") }.count == 1, "\(log)")
        // The failure line on standard output is still there, and stdout carries no log lines.
        #expect(!server.output.contains("tls.error.kind"), "\(server.transcript)")
        #expect(server.output.contains("Connection from 127.0.0.1:"), "\(server.transcript)")

        let quiet = try await ServerProcess.start(files.serverArguments(), directory: files.url)
        defer { quiet.kill() }
        _ = try await runClient(port: quiet.port, files: files, trust: false)
        #expect(try await quiet.waitForLine { $0.contains(" failed: ") } != nil, "\(quiet.transcript)")
        #expect(!quiet.child.stderr.text.contains("TLS handshake failed"), "\(quiet.transcript)")
    }

    @Test("--metrics with a malformed address or --log-level with an unknown level is a usage error")
    func badOptions() async throws {
        let files = try TestFiles()
        let metrics = try await runTool(
            "tls-server", files.serverArguments() + ["--metrics", "nowhere"], directory: files.url)
        #expect(metrics.status == 64, "\(metrics)")
        #expect(metrics.errorOutput.contains("--metrics"), "\(metrics)")
        let level = try await runTool(
            "tls-server", files.serverArguments() + ["--log-level", "loud"], directory: files.url)
        #expect(level.status == 64, "\(level)")
        #expect(level.errorOutput.contains("log-level"), "\(level)")
    }
}
