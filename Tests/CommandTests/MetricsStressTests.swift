import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// tls-server --metrics under abuse: the metrics port shares the descriptor table and event loops with the TLS
/// port, so scrapers that connect and send nothing, trickle their request, or come in a flood must not starve it,
/// and a full table must not make the metrics listener spin.
@Suite("tls-server --metrics under stress", .timeLimit(.minutes(5)))
struct MetricsStressTests {
    static let request = Array("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8)

    /// Whether `response` holds a whole response: its head and as many body bytes as its Content-Length says.
    static func isComplete(_ response: [UInt8]) -> Bool {
        let text = String(decoding: response, as: UTF8.self)
        guard let end = text.range(of: "\r\n\r\n") else { return false }
        let head = text[..<end.lowerBound].lowercased()
        guard let field = head.range(of: "content-length: ") else { return false }
        let length = Int(head[field.upperBound...].prefix { $0.isNumber }) ?? -1
        return text.utf8.count - text.utf8.distance(from: text.startIndex, to: end.upperBound) >= length
    }

    @Test("Idle and trickling scrapers: at most 8 are kept, each closed 5 s after accept without a full request; the TLS port keeps serving on 40 descriptors")
    func slowScrapersCannotStarveTheTLSPort() async throws {
        let files = try TestFiles()
        let server = try await ServerProcess.start(
            files.serverArguments() + ["--host", "127.0.0.1", "--metrics", "127.0.0.1:0"], directory: files.url)
        defer { server.kill() }
        let metricsPort = try #require(MetricsCommandTests.metricsPort(in: server.output), "\(server.transcript)")
        // The running server holds about 15 descriptors: 40 idle scrapers would take the rest of a table of 40.
        let limit = try await runTool("/usr/bin/prlimit", ["--pid", "\(server.child.pid)", "--nofile=40:40"])
        #expect(limit.status == 0, "\(limit)")

        let clock = ContinuousClock()
        let start = clock.now
        // The first one trickles its request, a byte every 300 ms: bytes alone must not keep it open.
        let trickler = try RawTCPConnection(port: metricsPort)
        defer { trickler.close() }
        var scrapers: [RawTCPConnection] = []
        defer { for scraper in scrapers { scraper.close() } }
        for _ in 0..<40 { scrapers.append(try RawTCPConnection(port: metricsPort)) }

        // All but 7 of the silent ones (8 with the trickler) are closed at once: counted before the 5 s deadline
        // could close the kept ones.
        // Watched from a thread of its own, so that a late turn on the busy cooperative pool cannot make it look.
        let watched = scrapers
        let closedAtOnce = try await onThreadOfItsOwn { () -> Int in
            let until = clock.now + .seconds(4)
            var closed = 0
            repeat {
                closed = watched.filter { $0.peerHasClosed() }.count
                if closed >= 33 { break }
                usleep(10_000)
            } while clock.now < until
            return closed
        }
        #expect(closedAtOnce == 33, "\(closedAtOnce) of 40 silent scrapers closed at once (7 kept with the trickler)")

        // Meanwhile the TLS port has descriptors to serve.
        expectSuccessfulExchange(
            try await runClient(port: server.port, files: files, ["--host", "127.0.0.1", "--servername", "localhost"]))

        var sentBytes = 0
        var trickleClosedAt: Duration?
        // The whole request would take 12 s to trickle out; the deadline is 5 s after accept (timers never fire
        // early; a loaded machine may fire them late, hence the upper bound's margin).
        while clock.now - start < .seconds(12) && trickleClosedAt == nil {
            if sentBytes < Self.request.count - 1 {
                try trickler.send([Self.request[sentBytes]])
                sentBytes += 1
            }
            try await Task.sleep(for: .milliseconds(300))
            if trickler.peerHasClosed() { trickleClosedAt = clock.now - start }
        }
        let trickleWait = try #require(trickleClosedAt, "the trickling scraper was still open after 12 s")
        #expect(trickleWait >= .milliseconds(4_500) && trickleWait < .seconds(11), "closed after \(trickleWait)")
        #expect(sentBytes < Self.request.count, "the whole request went out before the deadline")
        let idleClosed = try await eventually(within: .seconds(10)) { scrapers.allSatisfy { $0.peerHasClosed() } }
        #expect(idleClosed, "silent scrapers still open after \(clock.now - start)")

        // The slots are free again: a scrape is answered.
        let response = try await MetricsCommandTests.get("/metrics", port: metricsPort)
        #expect(response.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(response)")
        #expect(response.contains(#"tls_handshakes_total{version="TLS 1.3",outcome="success"} 1"#), "\(response)")
    }

    @Test("A kept-alive scraper's requests are served until it stops: 20 scrapes on one connection, then closed 5 s after the last")
    func keptAliveScraperIsServedThenClosed() async throws {
        let files = try TestFiles()
        let server = try await ServerProcess.start(
            files.serverArguments() + ["--host", "127.0.0.1", "--metrics", "127.0.0.1:0"], directory: files.url)
        defer { server.kill() }
        let metricsPort = try #require(MetricsCommandTests.metricsPort(in: server.output), "\(server.transcript)")
        let scraper = try RawTCPConnection(port: metricsPort)
        defer { scraper.close() }
        let clock = ContinuousClock()
        // On a thread of its own: a task's sleep could last past the 5 s deadline while the other suites keep the
        // cooperative pool busy (seen on one loaded core), which would close the connection for a reason of ours.
        let (scrapes, closedAfterLast) = try await onThreadOfItsOwn { () throws -> ([String], Duration?) in
            var texts: [String] = []
            for index in 0..<20 {
                try scraper.send(Self.request)
                var response: [UInt8] = []
                let deadline = clock.now + .seconds(30)
                while !Self.isComplete(response) && clock.now < deadline {
                    guard let bytes = scraper.receiveAvailable() else { break }
                    if bytes.isEmpty { usleep(2_000) } else { response += bytes }
                }
                texts.append(String(decoding: response, as: UTF8.self))
                guard Self.isComplete(response) else { break }
                // The first four 2 s apart, 6 s in all, past the 5 s deadline after accept: only a complete
                // request pushes it back.
                if index < 3 { usleep(2_000_000) }
            }
            // Then nothing: the server closes the connection 5 s after the last request.
            let last = clock.now
            while clock.now - last < .seconds(20) {
                if scraper.peerHasClosed() { return (texts, clock.now - last) }
                usleep(10_000)
            }
            return (texts, nil)
        }
        #expect(scrapes.count == 20, "the connection ended after \(scrapes.count) scrapes")
        for (index, text) in scrapes.enumerated() {
            #expect(text.hasPrefix("HTTP/1.1 200 OK\r\n"), "scrape \(index): \(text)")
        }
        let wait = try #require(closedAfterLast, "the idle scraper was left open 20 s after its last request")
        #expect(wait >= .milliseconds(4_500) && wait < .seconds(15), "closed \(wait) after its last request")
    }

    @Test("With the table full of TLS clients, scrapers waiting neither make the metrics listener spin nor stay unanswered once descriptors are free")
    func fullTableDoesNotSpinTheMetricsListener() async throws {
        let files = try TestFiles()
        let server = try await ServerProcess.start(
            files.serverArguments() + [
                "--host", "127.0.0.1", "--metrics", "127.0.0.1:0", "--handshake-timeout", "60",
            ], directory: files.url)
        defer { server.kill() }
        let metricsPort = try #require(MetricsCommandTests.metricsPort(in: server.output), "\(server.transcript)")
        let limit = try await runTool("/usr/bin/prlimit", ["--pid", "\(server.child.pid)", "--nofile=40:40"])
        #expect(limit.status == 0, "\(limit)")
        var clients: [RawTCPConnection] = []
        for _ in 0..<60 { clients.append(try RawTCPConnection(port: server.port)) }
        #expect(
            try await server.waitForLine(where: { $0.hasPrefix("tls-server: cannot accept connections: ") }) != nil,
            "no line about the full table:\n\(server.transcript)")
        var scrapers: [RawTCPConnection] = []
        defer { for scraper in scrapers { scraper.close() } }
        for _ in 0..<3 { scrapers.append(try RawTCPConnection(port: metricsPort)) }
        #expect(
            try await server.waitForLine(where: {
                $0.hasPrefix("tls-server: cannot accept metrics connections: Too many open files")
            }) != nil,
            "no line about the full table from the metrics listener:\n\(server.transcript)")
        // A busy loop on accept would use a whole core (200 ticks in 2 s).
        let before = try cpuTicks(of: server.child.pid)
        try await Task.sleep(for: .seconds(2))
        let ticks = try cpuTicks(of: server.child.pid) - before
        #expect(ticks < 30, "the server used \(ticks) of 200 CPU ticks in 2 s with the table full")

        for client in clients { client.close() }
        expectSuccessfulExchange(
            try await runClient(port: server.port, files: files, ["--host", "127.0.0.1", "--servername", "localhost"]))
        let response = try await MetricsCommandTests.get("/metrics", port: metricsPort)
        #expect(response.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(response)")
    }
}
