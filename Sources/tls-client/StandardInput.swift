import Foundation

/// Standard input as an async sequence of chunks, read on a thread of its own so no event loop ever blocks.
enum StandardInput {
    /// Chunks of up to 64 KiB until end of input (or a read error).
    static func chunks() -> AsyncStream<[UInt8]> {
        AsyncStream(bufferingPolicy: .bufferingOldest(16)) { continuation in
            let thread = Thread {
                var buffer = [UInt8](repeating: 0, count: 65536)
                while true {
                    let n = buffer.withUnsafeMutableBytes { read(STDIN_FILENO, $0.baseAddress, $0.count) }
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { break }
                    // Back-pressure: wait while the consumer is 16 chunks behind.
                    while case .dropped = continuation.yield(Array(buffer.prefix(n))) {
                        Thread.sleep(forTimeInterval: 0.001)
                    }
                }
                continuation.finish()
            }
            thread.start()
        }
    }
}

/// The time limit ran out.
struct TimeoutError: Error {}

/// Runs `body`, throwing ``TimeoutError`` if it takes longer than `seconds` (no limit when nil).
func withTimeout<T: Sendable>(_ seconds: Int?, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    guard let seconds else { return try await body() }
    return try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(nanoseconds: UInt64(seconds) * 1_000_000_000)
            throw TimeoutError()
        }
        guard let first = try await group.next() else { throw TimeoutError() }
        group.cancelAll()
        return first
    }
}
