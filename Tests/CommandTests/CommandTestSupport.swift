// Helpers for running the built commands (tls-server, tls-client, tls-certs) as real processes:
// finding the binaries, temporary directories, a process runner whose every wait has a time limit,
// reading the server's port from its output, and raw TCP sockets for clients that misbehave.
//
// Every wait here is an async poll with a deadline (never a blocking call on a Swift Testing thread),
// so a broken command fails its test instead of hanging the run.

import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A failure of the test harness itself (as opposed to an expectation about the commands).
struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

// MARK: - Finding the binaries

/// Where `swift build` put tls-server, tls-client and tls-certs.
enum Binaries {
    static let tools = ["tls-server", "tls-client", "tls-certs"]

    /// The bin directory, found once per test process (see `locate`).
    static let directory: Result<URL, HarnessError> = locate()

    /// The URL of one of the commands.
    static func url(of tool: String) throws -> URL {
        let directory = try Binaries.directory.get()
        return directory.appendingPathComponent(tool)
    }

    /// Looks, in order, at:
    /// 1. `$TLS_COMMANDS_BIN_DIR`, if set;
    /// 2. the directory of the running test executable and its parents (SwiftPM puts the test bundle next to the
    ///    products: `.build/<triple>/debug/swift-gnutlsPackageTests.xctest`, or inside it on macOS);
    /// 3. `.build/debug` and `.build/release` of the package this file belongs to;
    /// 4. `swift build --show-bin-path`, run in the package directory.
    private static func locate() -> Result<URL, HarnessError> {
        var candidates: [URL] = []
        if let override = ProcessInfo.processInfo.environment["TLS_COMMANDS_BIN_DIR"], !override.isEmpty {
            candidates.append(URL(fileURLWithPath: override))
        }
        var executables: [URL] = []
        #if os(Linux)
        executables.append(URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath())
        #endif
        if let main = Bundle.main.executableURL { executables.append(main.resolvingSymlinksInPath()) }
        executables.append(Bundle.main.bundleURL.resolvingSymlinksInPath())
        for executable in executables {
            var folder = executable.deletingLastPathComponent()
            for _ in 0..<5 {
                candidates.append(folder)
                folder = folder.deletingLastPathComponent()
            }
        }
        // Tests/CommandTests/<this file> → the package root.
        let packageRoot = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        candidates.append(packageRoot.appendingPathComponent(".build/debug"))
        candidates.append(packageRoot.appendingPathComponent(".build/release"))

        if let found = candidates.first(where: containsTools) { return .success(found) }

        if let shown = try? showBinPath(packageRoot: packageRoot), containsTools(shown) { return .success(shown) }
        return .failure(
            HarnessError(
                "cannot find \(tools.joined(separator: ", ")); build them first (swift build --build-tests) "
                    + "or set TLS_COMMANDS_BIN_DIR. Looked in: \(candidates.map(\.path).joined(separator: ", "))"))
    }

    private static func containsTools(_ folder: URL) -> Bool {
        tools.allSatisfy { FileManager.default.isExecutableFile(atPath: folder.appendingPathComponent($0).path) }
    }

    /// `swift build --show-bin-path` (bounded to 60 s; it only prints a path).
    private static func showBinPath(packageRoot: URL) throws -> URL? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["swift", "build", "--show-bin-path"]
        process.currentDirectoryURL = packageRoot
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(60)
        while process.isRunning && Date() < deadline { usleep(50_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            return nil
        }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        let path = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return path.isEmpty ? nil : URL(fileURLWithPath: path)
    }
}

// MARK: - Temporary directories

/// A fresh directory under the system's temporary directory, removed when this object goes away.
final class TemporaryDirectory: @unchecked Sendable {
    let url: URL

    init(_ label: String = "tls-command-tests") throws {
        var template = Array((NSTemporaryDirectory() as NSString).appendingPathComponent("\(label).XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw HarnessError("mkdtemp failed: \(String(cString: strerror(errno)))")
        }
        url = URL(fileURLWithPath: String(cString: made), isDirectory: true).resolvingSymlinksInPath()
    }

    /// The path of `name` inside this directory.
    func path(_ name: String) -> String { url.appendingPathComponent(name).path }

    deinit { try? FileManager.default.removeItem(at: url) }
}

// MARK: - Child processes

/// Ignores SIGPIPE in the test process once, so writing to a child that already exited (its standard input, a
/// socket it closed) returns EPIPE instead of killing the test run.
private let ignoreSIGPIPE: Void = { signal(SIGPIPE, SIG_IGN) }()

/// Everything one output stream of a child has written so far, read on a thread of its own until end of file.
final class OutputCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var buffer = Data()
    private var reachedEnd = false
    private let handle: FileHandle  // kept open until this collector goes away

    init(reading handle: FileHandle, name: String) {
        self.handle = handle
        let fd = handle.fileDescriptor
        let thread = Thread { [self] in
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                if count <= 0 { break }
                lock.withLock { buffer.append(contentsOf: chunk[0..<count]) }
            }
            lock.withLock { reachedEnd = true }
        }
        thread.name = name
        thread.start()
    }

    /// The bytes so far.
    var data: Data { lock.withLock { buffer } }
    /// The bytes so far, as UTF-8 text.
    var text: String { String(decoding: data, as: UTF8.self) }
    /// The complete lines so far (and a last partial one), without empty lines.
    var lines: [String] { text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init) }
    /// Whether the child (and anything that inherited the stream) closed it.
    var isAtEnd: Bool { lock.withLock { reachedEnd } }
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes. Returns whether it held.
func eventually(within timeout: Duration, _ condition: () -> Bool) async throws -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while true {
        if condition() { return true }
        if clock.now >= deadline { return false }
        try await Task.sleep(for: .milliseconds(20))
    }
}

/// One of the commands, started with pipes on standard output and error (and optionally standard input).
///
/// Call `kill()` in a `defer` right after starting one; it is also killed when this object goes away.
final class ChildProcess: @unchecked Sendable {
    let tool: String
    let arguments: [String]
    let process = Process()
    let stdout: OutputCollector
    let stderr: OutputCollector

    /// Starts `tool` from the bin directory with `arguments`, in `directory` (default: the test's cwd).
    /// With `input`, those bytes are written to its standard input on a thread of their own, then it is closed;
    /// without, standard input is /dev/null.
    /// Standard input left open for the child's lifetime (`holdingInputOpen`), for peers that stop at its end.
    private var heldInput: Pipe?

    /// `environment` adds to (or overrides) the test process's environment. `holdingInputOpen`: standard input is
    /// a pipe nobody writes to and that stays open until the child goes (openssl s_server ends a connection at
    /// the end of its input).
    init(
        _ tool: String, _ arguments: [String], directory: URL? = nil, input: Data? = nil,
        environment: [String: String] = [:], holdingInputOpen: Bool = false
    ) throws {
        _ = ignoreSIGPIPE
        self.tool = tool
        self.arguments = arguments
        // A command of this package by name, or any program by its absolute path.
        process.executableURL = tool.hasPrefix("/") ? URL(fileURLWithPath: tool) : try Binaries.url(of: tool)
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        if let directory { process.currentDirectoryURL = directory }
        let outPipe = Pipe()
        let errPipe = Pipe()
        let inPipe = input.map { _ in Pipe() }
        process.standardOutput = outPipe
        process.standardError = errPipe
        if holdingInputOpen {
            let held = Pipe()
            heldInput = held
            process.standardInput = held
        } else {
            process.standardInput = inPipe ?? FileHandle.nullDevice
        }
        try process.run()
        stdout = OutputCollector(reading: outPipe.fileHandleForReading, name: "\(tool) stdout")
        stderr = OutputCollector(reading: errPipe.fileHandleForReading, name: "\(tool) stderr")
        if let input, let inPipe {
            let writer = inPipe.fileHandleForWriting
            let feeder = Thread {
                input.withUnsafeBytes { bytes in
                    var offset = 0
                    while offset < bytes.count {
                        let written = write(writer.fileDescriptor, bytes.baseAddress! + offset, bytes.count - offset)
                        if written < 0 && errno == EINTR { continue }
                        if written <= 0 { break }  // the child closed its input (EPIPE): stop
                        offset += written
                    }
                }
                try? writer.close()
            }
            feeder.name = "\(tool) stdin"
            feeder.start()
        }
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }

    /// Waits up to `timeout` for the child to exit. Returns whether it did.
    func waitForExit(timeout: Duration) async throws -> Bool {
        try await eventually(within: timeout) { !process.isRunning }
    }

    /// Waits up to `timeout` for `text` to appear on standard output. Returns whether it did.
    func waitForOutput(_ text: String, timeout: Duration = .seconds(30)) async throws -> Bool {
        try await eventually(within: timeout) { stdout.text.contains(text) }
    }

    /// Sends `signal` to the child if it is still running.
    func send(_ signal: Int32) {
        if process.isRunning { systemKill(process.processIdentifier, signal) }
    }

    /// Kills the child (SIGKILL) if it is still running. Safe to call more than once.
    func kill() { send(SIGKILL) }

    /// The exit status once the child has exited normally; nil while it runs or if a signal ended it.
    var exitStatus: Int32? {
        guard !process.isRunning, process.terminationReason == .exit else { return nil }
        return process.terminationStatus
    }

    /// A short account of the command and its output, for failure messages.
    var transcript: String {
        let command = ([tool] + arguments).joined(separator: " ")
        let state = process.isRunning
            ? "still running"
            : (process.terminationReason == .exit
                ? "exit \(process.terminationStatus)" : "killed by signal \(process.terminationStatus)")
        let output = stdout.data.count > 4096 ? "<\(stdout.data.count) bytes>" : stdout.text
        return "$ \(command)\n[\(state)]\n--- stdout ---\n\(output)\n--- stderr ---\n\(stderr.text)"
    }

    deinit { kill() }
}

/// What a command that ran to completion did.
struct ToolResult: Sendable, CustomStringConvertible {
    let status: Int32
    let stdout: Data
    let stderr: Data
    let transcript: String

    var output: String { String(decoding: stdout, as: UTF8.self) }
    var errorOutput: String { String(decoding: stderr, as: UTF8.self) }
    /// Non-empty lines of standard error.
    var errorLines: [String] { errorOutput.split(separator: "\n").map(String.init) }
    var description: String { transcript }
}

/// Runs a command to completion and returns its exit status and output. A command still running after
/// `timeout` is killed and the call throws, so no test waits forever.
func runTool(
    _ tool: String, _ arguments: [String], directory: URL? = nil, input: Data? = nil,
    timeout: Duration = .seconds(60), environment: [String: String] = [:]
) async throws -> ToolResult {
    let child = try ChildProcess(tool, arguments, directory: directory, input: input, environment: environment)
    defer { child.kill() }
    guard try await child.waitForExit(timeout: timeout) else {
        child.kill()
        throw HarnessError("timed out after \(timeout):\n\(child.transcript)")
    }
    // The pipes reach end of file right after the exit; wait briefly for the reader threads to drain them.
    _ = try await eventually(within: .seconds(30)) { child.stdout.isAtEnd && child.stderr.isAtEnd }
    guard child.process.terminationReason == .exit else {
        throw HarnessError("\(tool) was killed by signal \(child.process.terminationStatus):\n\(child.transcript)")
    }
    return ToolResult(
        status: child.process.terminationStatus, stdout: child.stdout.data, stderr: child.stderr.data,
        transcript: child.transcript)
}

// MARK: - tls-server

/// A running tls-server and the port it listens on.
final class ServerProcess: @unchecked Sendable {
    let child: ChildProcess
    let port: Int

    private init(child: ChildProcess, port: Int) {
        self.child = child
        self.port = port
    }

    /// Starts `tls-server ARGUMENTS` (add `--port 0`) and waits until it prints its listening line.
    /// Throws, with the server's output, if it exits or stays silent for `timeout`.
    static func start(
        _ arguments: [String], directory: URL? = nil, timeout: Duration = .seconds(60),
        environment: [String: String] = [:]
    ) async throws -> ServerProcess {
        let child = try ChildProcess("tls-server", arguments, directory: directory, environment: environment)
        var port: Int?
        let ready = try await eventually(within: timeout) {
            port = listeningPort(in: child.stdout.text)
            return port != nil || !child.isRunning
        }
        guard ready, let port else {
            child.kill()
            throw HarnessError("tls-server did not start listening:\n\(child.transcript)")
        }
        return ServerProcess(child: child, port: port)
    }

    /// The port in the line `tls-server: listening on HOST:PORT` (HOST may itself contain colons), if printed.
    static func listeningPort(in output: String) -> Int? {
        let marker = "tls-server: listening on "
        // Anywhere in the line: with --timestamps it starts with the time.
        for line in output.split(separator: "\n") where line.contains(marker) {
            guard let colon = line.lastIndex(of: ":") else { continue }
            return Int(line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        return nil
    }

    /// Everything the server printed on standard output so far.
    var output: String { child.stdout.text }
    var lines: [String] { child.stdout.lines }

    /// Waits up to `timeout` for `text` to appear on the server's standard output.
    func waitForOutput(_ text: String, timeout: Duration = .seconds(30)) async throws -> Bool {
        try await child.waitForOutput(text, timeout: timeout)
    }

    /// Waits up to `timeout` for a whole output line that satisfies `predicate`; returns it, or nil.
    func waitForLine(timeout: Duration = .seconds(30), where predicate: (String) -> Bool) async throws -> String? {
        var found: String?
        _ = try await eventually(within: timeout) {
            found = lines.first(where: predicate)
            return found != nil
        }
        return found
    }

    /// Waits up to `timeout` for the output line `line`, exactly. Returns whether it came.
    func waitForLine(_ line: String, timeout: Duration = .seconds(30)) async throws -> Bool {
        try await waitForLine(timeout: timeout) { $0 == line } != nil
    }

    /// Sends `signal` (SIGTERM, SIGINT) to the server.
    func send(_ signal: Int32) { child.send(signal) }

    /// Kills the server if it is still running.
    func kill() { child.kill() }

    var transcript: String { child.transcript }
}

// MARK: - Raw TCP sockets

/// A plain TCP connection to 127.0.0.1, for clients that say nothing, say the wrong thing, or hold a slot.
final class RawTCPConnection: @unchecked Sendable {
    private(set) var fd: Int32
    /// This end's port: the server logs the connection as `127.0.0.1:localPort`.
    let localPort: Int

    /// Connects (blocking, local, so immediate) to 127.0.0.1:`port`, then switches to non-blocking I/O. With
    /// `receiveBuffer`, the socket's receive buffer (and so the window the peer may fill) is set that small first.
    init(port: Int, receiveBuffer: Int32? = nil) throws {
        let fd = socket(AF_INET, socketType, 0)
        guard fd >= 0 else { throw HarnessError("socket: \(String(cString: strerror(errno)))") }
        if var size = receiveBuffer {
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var address = loopbackAddress(port: port)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0 else {
            let reason = String(cString: strerror(errno))
            systemClose(fd)
            throw HarnessError("connect to 127.0.0.1:\(port): \(reason)")
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        self.fd = fd
        localPort = boundPort(of: fd)
    }

    /// The peer as the server prints it.
    var peerName: String { "127.0.0.1:\(localPort)" }

    /// Sends all of `bytes` (the socket buffer is large enough for the small messages tests send).
    func send(_ bytes: [UInt8]) throws {
        let sent = bytes.withUnsafeBytes { systemSend(fd, $0) }
        guard sent == bytes.count else { throw HarnessError("send: \(String(cString: strerror(errno)))") }
    }

    /// Sends what the socket takes now without waiting; returns how many bytes it took (0 when its buffer is full).
    func sendAvailable(_ bytes: UnsafeRawBufferPointer) throws -> Int {
        let sent = Glibc.send(fd, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL))
        if sent >= 0 { return sent }
        if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return 0 }
        throw HarnessError("send: \(String(cString: strerror(errno)))")
    }

    /// What the peer has sent so far and not yet been read, up to about `limit` bytes (empty if nothing is
    /// waiting); nil once it closed.
    func receiveAvailable(limit: Int = .max) -> [UInt8]? {
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while received.count < limit {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if count > 0 {
                received += chunk[..<count]
                continue
            }
            if count == 0 { return received.isEmpty ? nil : received }
            if errno == EINTR { continue }
            return received
        }
        return received
    }

    /// Whether the peer has closed the connection, reading and dropping whatever it sent first.
    /// Returns false while the connection is open and quiet.
    func peerHasClosed() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if count > 0 { continue }
            if count == 0 { return true }
            if errno == EINTR { continue }
            return !(errno == EAGAIN || errno == EWOULDBLOCK)
        }
    }

    /// Waits up to `timeout` for the peer to close the connection. Returns whether it did.
    func waitForPeerClose(timeout: Duration) async throws -> Bool {
        try await eventually(within: timeout) { peerHasClosed() }
    }

    func close() {
        if fd >= 0 { systemClose(fd) }
        fd = -1
    }

    deinit { close() }
}

/// A TCP socket listening on a port of 127.0.0.1 that never accepts: connections complete in the kernel's
/// backlog and then nothing is ever said (a server that hangs).
final class SilentListener: @unchecked Sendable {
    private let fd: Int32
    let port: Int

    init() throws {
        fd = try boundLoopbackSocket()
        guard listen(fd, 16) == 0 else {
            let reason = String(cString: strerror(errno))
            systemClose(fd)
            throw HarnessError("listen: \(reason)")
        }
        port = boundPort(of: fd)
    }

    deinit { systemClose(fd) }
}

/// A TCP socket bound to a port on 127.0.0.1 but not listening: connecting to that port is refused, and no other
/// program can take the port while this object lives.
final class ClosedPort: @unchecked Sendable {
    private let fd: Int32
    let port: Int

    init() throws {
        fd = try boundLoopbackSocket()
        port = boundPort(of: fd)
    }

    deinit { systemClose(fd) }
}

/// A TCP socket bound to a free port of 127.0.0.1.
private func boundLoopbackSocket() throws -> Int32 {
    let fd = socket(AF_INET, socketType, 0)
    guard fd >= 0 else { throw HarnessError("socket: \(String(cString: strerror(errno)))") }
    var address = loopbackAddress(port: 0)
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    guard rc == 0 else {
        let reason = String(cString: strerror(errno))
        systemClose(fd)
        throw HarnessError("bind: \(reason)")
    }
    return fd
}

// The C functions, under names that methods called kill/close/send do not shadow.
private func systemKill(_ pid: pid_t, _ signal: Int32) { _ = kill(pid, signal) }
private func systemClose(_ fd: Int32) { _ = close(fd) }
private func systemSend(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int {
    #if os(Linux)
    send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
    #else
    send(fd, bytes.baseAddress, bytes.count, 0)
    #endif
}

/// A TCP stream socket, closed on exec: a command started while the socket is open must not inherit it, or
/// closing it here would not close the connection.
#if os(Linux)
private let socketType = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
#else
private let socketType = SOCK_STREAM
#endif

/// 127.0.0.1:`port` as a sockaddr_in.
private func loopbackAddress(port: Int) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port)).bigEndian
    address.sin_addr.s_addr = in_addr_t(0x7F00_0001).bigEndian
    return address
}

/// The local port a socket is bound to.
private func boundPort(of fd: Int32) -> Int {
    var address = sockaddr_in()
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Runs `body` on a new thread and waits for it without holding a thread of the cooperative pool, for the parts of
/// a test that must answer a server within its deadlines whatever the other suites are doing with the pool.
func onThreadOfItsOwn<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.start()
    }
}

