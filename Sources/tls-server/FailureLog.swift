import NIOConcurrencyHelpers
import NIOCore
import TLSCommandSupport

/// The per-connection lines that report failures, at most `perSecond` a second (after a burst of `burst`):
/// thousands of peers that reset at once must not flood the log. Lines held back are counted by reason and
/// summed up in one line before the next line that is shown, or by ``flush()`` (called every few seconds), so no
/// failure goes unaccounted.
final class FailureLog: Sendable {
    private struct State {
        var tokens: Double
        var refilled: NIODeadline
        var heldBack: [String: Int] = [:]
        var heldBackTotal = 0
    }

    private let output: ConsoleOutput
    private let perSecond: Double
    private let burst: Double
    private let state: NIOLockedValueBox<State>

    init(output: ConsoleOutput, perSecond: Double = 10, burst: Double = 20) {
        self.output = output
        self.perSecond = perSecond
        self.burst = burst
        state = NIOLockedValueBox(State(tokens: burst, refilled: .now()))
    }

    /// Writes `line`, or counts it under `reason` if too many lines went out just now.
    func line(_ line: String, reason: String) {
        state.withLockedValue { state in
            let now = NIODeadline.now()
            let elapsed = Double((now - state.refilled).nanoseconds) / 1e9
            state.tokens = min(burst, state.tokens + elapsed * perSecond)
            state.refilled = now
            guard state.tokens >= 1 else {
                state.heldBack[reason, default: 0] += 1
                state.heldBackTotal += 1
                return
            }
            state.tokens -= 1
            summarize(&state)
            output.line(line)
        }
    }

    /// Writes the summary of the lines held back, if any were.
    func flush() {
        state.withLockedValue { summarize(&$0) }
    }

    private func summarize(_ state: inout State) {
        guard state.heldBackTotal > 0 else { return }
        let reasons = state.heldBack.sorted { $0.value > $1.value }
        var parts = reasons.prefix(3).map { "\($0.value) × \($0.key)" }
        if reasons.count > 3 { parts.append("\(reasons.dropFirst(3).reduce(0) { $0 + $1.value }) others") }
        output.line(
            "tls-server: \(state.heldBackTotal) more connection failures not shown (too many at once): "
                + parts.joined(separator: "; "))
        state.heldBack = [:]
        state.heldBackTotal = 0
    }
}
