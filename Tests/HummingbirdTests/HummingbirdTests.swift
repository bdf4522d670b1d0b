// Hummingbird 2 on NIOGnuTLS, end to end: a real app on loopback and real clients (curl, h2load, Python, and the
// package's own TLS client for the close_notify case). Built and run only with the Hummingbird trait:
// swift test --traits Hummingbird --filter HummingbirdTests
#if Hummingbird
import Foundation
import GnuTLS
import NIOCore
import NIOGnuTLS
import NIOGnuTLSHummingbird
import Testing

private let hello = "Hello from Hummingbird over GnuTLS\n"

/// The curl arguments every test uses: trust the test CA, fail on HTTP errors, bounded in time.
private func curlArguments(_ extra: [String]) -> [String] {
    ["--silent", "--show-error", "--fail", "--max-time", "60", "--cacert", TestPKI.shared.caFile] + extra
}

@Suite("Hummingbird on NIOGnuTLS", .serialized)
struct HummingbirdTests {
    @Test("HTTP/1.1: several URLs on one kept-alive connection, nothing logged for the close")
    func keepAlive() async throws {
        let logs = RecordedLogs()
        let result = try await withServer(.http1, logs: logs) { port in
            let base = "https://localhost:\(port)"
            return try await run(
                "curl",
                curlArguments([
                    "--http1.1", "--resolve", "localhost:\(port):127.0.0.1",
                    "--write-out", "|%{http_version} %{num_connects}\n",
                    "\(base)/", "\(base)/", "\(base)/tls",
                ]))
        }
        #expect(result.status == 0, "\(result)")
        let lines = result.output.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        // Body, then "|version new-connections": one connection made for the first URL, reused for the others.
        #expect(
            lines.prefix(5) == [
                "Hello from Hummingbird over GnuTLS", "|1.1 1", "Hello from Hummingbird over GnuTLS", "|1.1 0",
                "TLS 1.3 alpn=none client=none",
            ], "\(result)")
        #expect(lines.dropFirst(5).first == "|1.1 0", "\(result)")
        #expect(logs.failures.isEmpty, "\(logs.failures)")
    }

    @Test("A 10 MB POST is echoed intact, over HTTP/1.1 and HTTP/2", arguments: ["--http1.1", "--http2"])
    func largeEcho(version: String) async throws {
        let pki = TestPKI.shared
        let input = pki.path("upload-\(version.dropFirst(2)).bin")
        let output = pki.path("echoed-\(version.dropFirst(2)).bin")
        try writeRandomFile(input, size: 10 * 1024 * 1024)
        defer {
            try? FileManager.default.removeItem(atPath: input)
            try? FileManager.default.removeItem(atPath: output)
        }
        let result = try await withServer(.http2) { port in
            try await run(
                "curl",
                curlArguments([
                    version, "--resolve", "localhost:\(port):127.0.0.1", "--data-binary", "@\(input)",
                    "--header", "Content-Type: application/octet-stream", "--output", output,
                    "--write-out", "%{http_version} %{size_download}", "https://localhost:\(port)/echo",
                ]))
        }
        #expect(result.status == 0, "\(result)")
        #expect(result.output == "\(version == "--http2" ? "2" : "1.1") \(10 * 1024 * 1024)", "\(result)")
        let (same, hashes) = try await sameContents(input, output)
        #expect(same, "\(hashes)")
    }

    @Test("curl --http2 negotiates HTTP/2 through ALPN; a stream sees the connection's handshake")
    func http2() async throws {
        let logs = RecordedLogs()
        let result = try await withServer(.http2, logs: logs) { port in
            let base = "https://localhost:\(port)"
            return try await run(
                "curl",
                curlArguments([
                    "--http2", "--resolve", "localhost:\(port):127.0.0.1", "--write-out", "|%{http_version}\n",
                    "\(base)/", "\(base)/tls",
                ]))
        }
        #expect(result.status == 0, "\(result)")
        #expect(result.output == "\(hello)|2\nTLS 1.3 alpn=h2 client=none\n|2\n", "\(result)")
        #expect(logs.failures.isEmpty, "\(logs.failures)")
    }

    @Test("A client without ALPN h2 gets HTTP/1.1 from the HTTP/2 server")
    func fallbackToHTTP1() async throws {
        let result = try await withServer(.http2) { port in
            try await run(
                "curl",
                curlArguments([
                    "--http1.1", "--resolve", "localhost:\(port):127.0.0.1", "--write-out", "|%{http_version}",
                    "https://localhost:\(port)/tls",
                ]))
        }
        #expect(result.output == "TLS 1.3 alpn=http/1.1 client=none\n|1.1", "\(result)")
    }

    @Test("Python http.client over HTTP/1.1")
    func python() async throws {
        let script = """
            import http.client, ssl, sys
            context = ssl.create_default_context(cafile=sys.argv[1])
            connection = http.client.HTTPSConnection("localhost", int(sys.argv[2]), context=context, timeout=30)
            connection.request("POST", "/echo", body=b"ping from python")
            response = connection.getresponse()
            print(response.status, response.read().decode(), connection.sock.version())
            connection.close()
            """
        let result = try await withServer(.http2) { port in
            try await run("python3", ["-c", script, TestPKI.shared.caFile, "\(port)"])
        }
        #expect(result.output == "200 ping from python TLSv1.3\n", "\(result)")
    }

    @Test("h2load -n 2000 -c 10 -m 10 completes with every request answered 2xx")
    func h2load() async throws {
        let logs = RecordedLogs()
        let result = try await withServer(.http2, logs: logs) { port in
            try await run(
                "h2load", ["-n", "2000", "-c", "10", "-m", "10", "https://127.0.0.1:\(port)/"], timeout: .seconds(120))
        }
        #expect(result.status == 0, "\(result)")
        let summary = result.output.split(separator: "\n").first { $0.hasPrefix("requests:") }.map(String.init)
        #expect(
            summary == "requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout",
            "\(result)")
        let statuses = result.output.split(separator: "\n").first { $0.hasPrefix("status codes:") }.map(String.init)
        #expect(statuses == "status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx", "\(result)")
        #expect(result.output.contains("Application protocol: h2"), "\(result)")
        #expect(logs.failures.isEmpty, "\(logs.failures)")
    }

    @Test("A client that sends close_notify right after its request still gets the response", arguments: [
        ServerKind.http1, .http2,
    ])
    func closeNotifyAfterRequest(kind: ServerKind) async throws {
        let logs = RecordedLogs()
        let response = try await withServer(kind, logs: logs) { port in
            try await TLSConnection.connect(host: "127.0.0.1", port: port, context: try TestPKI.shared.clientContext())
            { connection in
                try await connection.write(Array("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".utf8))
                try await connection.closeOutput()
                // Ends without an error only if the server answered with close_notify after the response.
                return String(decoding: try await connection.readAll(limit: 64 * 1024), as: UTF8.self)
            }
        }
        #expect(response.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(response)")
        #expect(response.hasSuffix("\r\n\r\n\(hello)"), "\(response)")
        #expect(logs.failures.isEmpty, "\(logs.failures)")
    }

    @Test("mTLS: a route sees the client certificate's subject, over HTTP/1.1 and HTTP/2", arguments: [
        "--http1.1", "--http2",
    ])
    func mutualTLS(version: String) async throws {
        let pki = TestPKI.shared
        let result = try await withServer(.http2) { port in
            try await run(
                "curl",
                curlArguments([
                    version, "--resolve", "localhost:\(port):127.0.0.1", "--cert", pki.clientCertificateFile,
                    "--key", pki.clientKeyFile, "https://localhost:\(port)/tls",
                ]))
        }
        let alpn = version == "--http2" ? "h2" : "http/1.1"
        #expect(result.output == "TLS 1.3 alpn=\(alpn) client=CN=alice\n", "\(result)")
    }

    @Test("The HTTP/2 builder refuses a context that does not offer ALPN h2")
    func http2NeedsALPN() throws {
        let context = try TestPKI.shared.serverContext(alpn: ["http/1.1"])
        #expect(throws: TLSError.self) {
            _ = try GnuTLSHTTP2Channel(context: context) { _, _, _ in }
        }
    }
}
#endif
