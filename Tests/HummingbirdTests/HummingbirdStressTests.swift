// Hummingbird on NIOGnuTLS under misbehaving clients: a slow reader, a client that never reads, and a TCP reset in
// the middle of a request, over HTTP/1.1 and HTTP/2. The clients are Python's ssl module (stress_client.py next to
// this file) and curl. Every test also ends with the app's graceful shutdown, which waits for every connection:
// a connection left open by a reset would make withServer fail after 30 s.
#if Hummingbird
import Foundation
import Testing

private let hello = "Hello from Hummingbird over GnuTLS\n"

/// stress_client.py's path (next to this file in the source tree).
private let stressClient = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("stress_client.py").path

/// The JSON object stress_client.py printed (JSON values only, never mutated: safe to send).
private struct StressResult: @unchecked Sendable, CustomStringConvertible {
    let fields: [String: Any]
    subscript(key: String) -> Any? { fields[key] }
    var description: String { "\(fields)" }
}

/// Runs one stress_client.py mode and decodes the JSON line it prints.
private func stress(_ arguments: [String]) async throws -> StressResult {
    let result = try await run("python3", [stressClient] + arguments, timeout: .seconds(120))
    guard result.status == 0, let line = result.output.split(separator: "\n").last,
        let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
    else { throw HarnessError("stress_client.py failed:\n\(result)") }
    return StressResult(fields: object)
}

/// The test process's resident memory in KiB (the app runs in it).
private func residentKiB() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
    else { return -1 }
    return Int(line.split(separator: " ").dropFirst().first ?? "") ?? -1
}

@Suite("Hummingbird on NIOGnuTLS under stress", .serialized)
struct HummingbirdStressTests {
    @Test("HTTP/1.1: an 8 MiB echo to a reader that takes 64 KiB every 10 ms arrives byte for byte")
    func slowReaderHTTP1() async throws {
        let logs = RecordedLogs()
        let result = try await withServer(.http1, logs: logs) { port in
            try await stress(["slow-reader", "\(port)", TestPKI.shared.caFile, "\(8 * 1024 * 1024)"])
        }
        #expect(result["status"] as? Int == 200, "\(result)")
        #expect(result["received"] as? Int == 8 * 1024 * 1024, "\(result)")
        #expect(result["intact"] as? Bool == true, "\(result)")
        #expect((result["writer_error"] as? [Any])?.isEmpty == true, "\(result)")
        // 128 reads of at most 64 KiB, 10 ms apart: the reader, not the server, set the pace.
        #expect((result["read_s"] as? Double ?? 0) >= 1.2, "\(result)")
        #expect(logs.failures.isEmpty, "\(logs.failures)")
    }

    @Test("HTTP/2: an 8 MiB echo through curl --limit-rate 2M (both directions) arrives byte for byte")
    func slowReaderHTTP2() async throws {
        let pki = TestPKI.shared
        let input = pki.path("slow-upload.bin")
        let output = pki.path("slow-echoed.bin")
        try writeRandomFile(input, size: 8 * 1024 * 1024)
        defer {
            try? FileManager.default.removeItem(atPath: input)
            try? FileManager.default.removeItem(atPath: output)
        }
        let logs = RecordedLogs()
        let result = try await withServer(.http2, logs: logs) { port in
            try await run(
                "curl",
                [
                    "--silent", "--show-error", "--fail", "--max-time", "100", "--cacert", pki.caFile, "--http2",
                    "--limit-rate", "2M", "--resolve", "localhost:\(port):127.0.0.1", "--data-binary", "@\(input)",
                    "--header", "Content-Type: application/octet-stream", "--output", output,
                    "--write-out", "%{http_version} %{size_download} %{time_total}", "https://localhost:\(port)/echo",
                ], timeout: .seconds(110))
        }
        #expect(result.status == 0, "\(result)")
        let fields = result.output.split(separator: " ")
        #expect(fields.prefix(2) == ["2", "\(8 * 1024 * 1024)"], "\(result)")
        // 8 MiB at 2 MiB/s takes at least 4 s (a little less: curl's limiter lets the first burst through).
        #expect((Double(fields.last ?? "") ?? 0) >= 3, "\(result)")
        let (same, hashes) = try await sameContents(input, output)
        #expect(same, "\(hashes)")
        #expect(logs.failures.isEmpty, "\(logs.failures)")
    }

    @Test("HTTP/1.1: a client that sends a 64 MiB POST /echo and never reads is held back, and others are served")
    func clientThatNeverReads() async throws {
        let before = residentKiB()
        let (result, during) = try await withServer(.http1) { port in
            let result = try await stress(["never-reads", "\(port)", TestPKI.shared.caFile])
            return (result, residentKiB())
        }
        let sent = result["sent"] as? Int ?? -1
        #expect(result["stalled"] as? Bool == true, "\(result)")
        // What the echo could not send back stays in the socket buffers (a few MiB each way on loopback) and in
        // the pipeline's bounded buffers; without back-pressure the server would read all 64 MiB.
        #expect(sent > 0 && sent < 24 * 1024 * 1024, "\(result)")
        #expect(during - before < 48 * 1024, "RSS \(before) -> \(during) KiB, \(result)")
        #expect(result["other_status"] as? Int == 200, "\(result)")
        #expect(result["other_body"] as? String == hello, "\(result)")
    }

    @Test("A TCP reset in the middle of a POST /echo ends only that connection", arguments: [
        (ServerKind.http1, "h1"), (.http2, "h2"),
    ])
    func resetMidRequest(kind: ServerKind, version: String) async throws {
        let logs = RecordedLogs()
        let result = try await withServer(kind, logs: logs) { port in
            try await stress(["reset", "\(port)", TestPKI.shared.caFile, version])
        }
        // The HTTP/1.1 server offers no ALPN, so Python's http/1.1 offer gets none back.
        #expect(result["alpn"] as? String == (version == "h2" ? "h2" : nil), "\(result)")
        #expect(result["other_status"] as? Int == 200, "\(result)")
        #expect(result["other_body"] as? String == hello, "\(result)")
        // A peer's reset is not the server's failure: nothing at error level or above.
        #expect(logs.all.filter { $0.level >= .error }.isEmpty, "\(logs.all)")
    }
}
#endif
