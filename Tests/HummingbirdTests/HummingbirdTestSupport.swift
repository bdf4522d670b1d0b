// An in-process Hummingbird app on NIOGnuTLS for the tests, a development PKI written to a temporary directory
// for the external clients (curl, h2load, Python), and a runner for those clients whose every wait is bounded.
#if Hummingbird
import Foundation
import GnuTLS
import Hummingbird
import HummingbirdCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOGnuTLSHummingbird
import ServiceLifecycle

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A CA, a server certificate for localhost/127.0.0.1 and a client certificate (CN alice), in memory and as PEM
/// files (keys mode 0600) in a directory removed when the process ends its use of it.
final class TestPKI: @unchecked Sendable {
    let ca: CertificateAuthority
    let server: CertificateAuthority.Issued
    let client: CertificateAuthority.Issued
    let directory: URL

    var caFile: String { directory.appendingPathComponent("ca.crt").path }
    var clientCertificateFile: String { directory.appendingPathComponent("client.crt").path }
    var clientKeyFile: String { directory.appendingPathComponent("client.key").path }
    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    static let shared: TestPKI = {
        do { return try TestPKI() } catch { fatalError("cannot make the test PKI: \(error)") }
    }()

    private init() throws {
        ca = try CertificateAuthority.generate(commonName: "Hummingbird Test CA")
        server = try ca.issue(commonName: "localhost", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"])
        client = try ca.issue(commonName: "alice", usage: .client)
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("gnutls-hummingbird-tests-\(getpid())", isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try Certificate.writePEM([ca.certificate], toFile: caFile)
        try Certificate.writePEM(client.chain, toFile: clientCertificateFile)
        try client.privateKey.write(toFile: clientKeyFile)
    }

    /// A server context: the server certificate, client certificates verified when sent, ALPN as given.
    func serverContext(alpn: [String]) throws -> TLSContext {
        try TLSContext(
            configuration: GnuTLS.TLSConfiguration.server(
                identity: .certificates(server.chain, privateKey: server.privateKey),
                clientAuthentication: .verifyIfGiven, trustRoots: .certificates([ca.certificate]),
                applicationProtocols: alpn))
    }

    /// A client context that trusts the CA.
    func clientContext() throws -> TLSContext {
        try TLSContext(
            configuration: .client(serverName: "localhost", trustRoots: .certificates([ca.certificate])))
    }
}

/// Every log record at or above `.debug`, for the "nothing logged for a normal close" checks.
final class RecordedLogs: @unchecked Sendable {
    struct Record: Sendable, CustomStringConvertible {
        let level: Logger.Level
        let message: String
        var description: String { "[\(level)] \(message)" }
    }
    private let records = NIOLockedValueBox<[Record]>([])
    var all: [Record] { records.withLockedValue { $0 } }
    func append(_ record: Record) { records.withLockedValue { $0.append(record) } }

    /// Warnings and errors, and the debug lines this package writes when a connection fails.
    var failures: [Record] {
        all.filter {
            $0.level >= .warning || $0.message.contains("TLS handshake") || $0.message.contains("ended with an error")
        }
    }

    func logger() -> Logger {
        var logger = Logger(label: "hummingbird-tests") { _ in RecordingHandler(logs: self) }
        logger.logLevel = .debug
        return logger
    }

    private struct RecordingHandler: LogHandler {
        let logs: RecordedLogs
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .debug
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let extra = (event.metadata ?? [:]).map { "\($0)=\($1)" }.sorted().joined(separator: " ")
            let message = "\(event.message)" + (event.error.map { " error=\($0)" } ?? "")
            logs.append(Record(level: event.level, message: extra.isEmpty ? message : "\(message) \(extra)"))
        }
    }
}

/// The routes the tests use (the same as the demo app's): GET /, POST /echo, GET /tls.
func testRouter() -> Router<BasicRequestContext> {
    let router = Router()
    router.get("/") { _, _ in "Hello from Hummingbird over GnuTLS\n" }
    router.post("/echo") { request, _ in
        Response(status: .ok, body: ResponseBody(asyncSequence: request.body))
    }
    router.get("/tls") { _, context -> String in
        guard let tls = context.tlsHandshake else { return "no TLS\n" }
        let client = tls.peerCertificates.first.map(\.subject) ?? "none"
        return "\(tls.version.map { "\($0)" } ?? "?") alpn=\(tls.applicationProtocol ?? "none") client=\(client)\n"
    }
    return router
}

enum ServerKind: Sendable { case http1, http2 }

/// Runs `body` with a Hummingbird app listening on 127.0.0.1 (a free port), then shuts the app down.
func withServer<T: Sendable>(
    _ kind: ServerKind, logs: RecordedLogs = RecordedLogs(), _ body: @Sendable (Int) async throws -> T
) async throws -> T {
    let pki = TestPKI.shared
    let server: HTTPServerBuilder
    switch kind {
    case .http1: server = .http1(tls: try pki.serverContext(alpn: []))
    case .http2: server = .http2(tls: try pki.serverContext(alpn: GnuTLSHTTP2Channel.applicationProtocols))
    }
    let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
    let app = Application(
        router: testRouter(), server: server,
        configuration: .init(address: .hostname("127.0.0.1", port: 0)),
        onServerRunning: { channel in
            portContinuation.yield(channel.localAddress?.port ?? 0)
            portContinuation.finish()
        },
        logger: logs.logger())
    // Stopped by a graceful shutdown, as SIGTERM stops a deployed app (cancelling would log an error).
    let group = ServiceGroup(
        configuration: .init(services: [app], gracefulShutdownSignals: [], logger: logs.logger()))
    let serverTask = Task { try await group.run() }
    defer { serverTask.cancel() }
    let port = try await withTimeout(.seconds(30), "the server did not start") {
        for await port in ports where port > 0 { return port }
        throw HarnessError("the server reported no port")
    }
    let result: Result<T, any Error>
    do {
        result = .success(try await body(port))
    } catch {
        result = .failure(error)
    }
    await group.triggerGracefulShutdown()
    try await withTimeout(.seconds(30), "the server did not shut down") { try await serverTask.value }
    return try result.get()
}

/// Runs `operation`, failing with `message` if it has not finished within `timeout`.
func withTimeout<T: Sendable>(
    _ timeout: Duration, _ message: String, _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await Task.sleep(for: timeout)
            throw HarnessError("\(message) within \(timeout)")
        }
        defer { group.cancelAll() }
        guard let first = try await group.next() else { throw HarnessError(message) }
        return first
    }
}

/// Writes `size` random bytes (a multiple of 8) to `path`: an upload whose echo is compared with `sameContents`.
func writeRandomFile(_ path: String, size: Int) throws {
    var generator = SystemRandomNumberGenerator()
    let words = (0..<(size / 8)).map { _ in generator.next() as UInt64 }
    try words.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: path)) }
}

/// Whether two files have the same SHA-256 (sha256sum printed two equal 64-digit sums), and sha256sum's run.
func sameContents(_ first: String, _ second: String) async throws -> (same: Bool, hashes: ProgramResult) {
    let hashes = try await run("sha256sum", [first, second])
    let sums = hashes.output.split(separator: "\n").map { $0.split(separator: " ").first.map(String.init) ?? "" }
    return (sums.count == 2 && sums[0] == sums[1] && sums[0].count == 64, hashes)
}

/// What an external program did.
struct ProgramResult: Sendable, CustomStringConvertible {
    let status: Int32
    let output: String
    let errorOutput: String
    let command: String
    var description: String { "$ \(command)\n[exit \(status)]\n--- stdout ---\n\(output)\n--- stderr ---\n\(errorOutput)" }
}

/// Runs a program found on PATH to completion (output through files, so a chatty one never blocks), killing it
/// after `timeout`.
func run(_ program: String, _ arguments: [String], timeout: Duration = .seconds(60)) async throws -> ProgramResult {
    let search = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
    guard let path = search.map({ "\($0)/\(program)" }).first(where: { FileManager.default.isExecutableFile(atPath: $0) })
    else {
        throw HarnessError("\(program) is not installed (bash .ci/run installs it)")
    }
    let directory = TestPKI.shared.directory
    let name = UUID().uuidString
    let outURL = directory.appendingPathComponent("\(name).out")
    let errURL = directory.appendingPathComponent("\(name).err")
    guard FileManager.default.createFile(atPath: outURL.path, contents: nil),
        FileManager.default.createFile(atPath: errURL.path, contents: nil)
    else { throw HarnessError("cannot create output files in \(directory.path)") }
    defer {
        try? FileManager.default.removeItem(at: outURL)
        try? FileManager.default.removeItem(at: errURL)
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    process.standardInput = FileHandle.nullDevice
    process.standardOutput = try FileHandle(forWritingTo: outURL)
    process.standardError = try FileHandle(forWritingTo: errURL)
    try process.run()
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while process.isRunning {
        if clock.now >= deadline {
            process.terminate()
            kill(process.processIdentifier, SIGKILL)
            throw HarnessError("\(program) \(arguments.joined(separator: " ")) did not finish within \(timeout)")
        }
        try await Task.sleep(for: .milliseconds(20))
    }
    return ProgramResult(
        status: process.terminationStatus,
        output: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
        errorOutput: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "",
        command: ([program] + arguments).joined(separator: " "))
}
#endif
