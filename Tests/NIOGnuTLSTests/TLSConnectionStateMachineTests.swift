import GnuTLS
@testable import NIOGnuTLS
import Testing

// The connection state machine on its own: two machines, each driving a real TLSSession, wired to each other in
// memory. No channel, no event loop: every event is a call, every answer an action that the test inspects.

/// Plaintext for the machine, as a plain array.
struct TestBytes: TLSPlaintextBuffer {
    let bytes: [UInt8]
    init(_ text: String) { bytes = Array(text.utf8) }
    var readableBytes: Int { bytes.count }
    func withUnsafeReadableBytes<T, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> T) throws(E) -> T {
        var result: Result<T, E>?
        bytes.withUnsafeBytes { raw in result = Result { () throws(E) -> T in try body(raw) } }
        return try result!.get()
    }
}

/// A promise with a name, which records the promises that follow it.
final class TestPromise: TLSWritePromise {
    let name: String
    private(set) var followers: [TestPromise] = []

    init(_ name: String) { self.name = name }

    func cascade(to other: TestPromise) { followers.append(other) }
}

typealias TestMachine = TLSConnectionStateMachine<TestBytes, TestPromise>

let second: Int64 = 1_000_000_000

/// A short, comparable account of an action.
func describe(_ action: TestMachine.Action) -> String {
    func name(_ promise: TestPromise?) -> String { promise?.name ?? "nil" }
    switch action {
    case .none: return "none"
    case .send(let promise): return "send(\(name(promise)))"
    case .sendCloseNotify(let writes, let close): return "sendCloseNotify(writes: \(name(writes)), close: \(name(close)))"
    case .closeChannel(let promise, let shutdownCompleted, let abandoned):
        return "closeChannel(\(name(promise)), shutdownCompleted: \(shutdownCompleted), abandoned: \(abandoned.count))"
    case .fail(let error, let abandoned, let close):
        return "fail(\(describe(error)), abandoned: \(abandoned.count), close: \(name(close)))"
    case .succeed(let promise): return "succeed(\(name(promise)))"
    case .refuse(let promise, .refused(let refusal)): return "refuse(\(name(promise)), \(refusal))"
    case .refuse(let promise, .error(let error)): return "refuse(\(name(promise)), \(describe(error)))"
    }
}

func describe(_ error: any Error) -> String {
    if let error = error as? TLSError { return error.kind.rawValue }
    return "\(error)"
}

func describe(_ step: TestMachine.InboundAction) -> String {
    switch step {
    case .wait: return "wait"
    case .deliver(let count): return "deliver(\(count))"
    case .handshakeCompleted(let quiet, .none): return "handshakeCompleted(quiet: \(quiet))"
    case .handshakeCompleted(let quiet, let then): return "handshakeCompleted(quiet: \(quiet), then: \(describe(then)))"
    case .peerClosedOutput: return "peerClosedOutput"
    case .act(let action): return "act(\(describe(action)))"
    case .selectContext(let hello): return "selectContext(\(hello.serverName ?? "no name"))"
    }
}

struct WriteFailed: Error, CustomStringConvertible {
    var description: String { "write failed" }
}

/// One end of a connection: a machine and the plaintext it delivered.
struct Side {
    var machine: TestMachine
    var delivered: [UInt8] = []

    init(
        session: TLSSession, halfClosure: Bool = false, idle: Int64? = nil, handshake: Int64 = 10 * second,
        maximumHandshakeInput: Int = .max
    ) {
        machine = TestMachine(
            session: session, timeouts: .init(handshake: handshake, shutdown: 3 * second, idle: idle),
            maximumHandshakeInput: maximumHandshakeInput, allowHalfClosure: halfClosure)
    }

    var session: TLSSession { machine.session }

    // The machine's queries are mutating (the handler reads them in place); a copy serves for looking.
    var nextDeadline: Int64? { var copy = machine; return copy.nextDeadline }
    var isReading: Bool { var copy = machine; return copy.isReading }
    var tracksActivity: Bool { var copy = machine; return copy.tracksActivity }
    var handshakeOutcome: TestMachine.HandshakeOutcome { var copy = machine; return copy.handshakeOutcome }

    /// Ciphertext the session wants sent.
    func output() -> [UInt8] { session.takePendingOutput() }

    /// Feeds `bytes` and steps until the machine waits. `between` runs after every step, as a handler further
    /// down the pipeline would (it may write or close). Returns the steps, without the final wait.
    mutating func receive(
        _ bytes: [UInt8], now: Int64 = 0, between: (inout TestMachine, TestMachine.InboundAction) -> Void = { _, _ in }
    ) -> [String] {
        session.feed(bytes)
        return step(now: now, between: between)
    }

    mutating func step(
        now: Int64 = 0, between: (inout TestMachine, TestMachine.InboundAction) -> Void = { _, _ in }
    ) -> [String] {
        var steps: [String] = []
        for _ in 0..<1000 {
            var buffer = [UInt8](repeating: 0, count: machine.plaintextCapacityNeeded)
            let step = buffer.withUnsafeMutableBytes { raw in machine.processInput(into: raw) { now } }
            if case .wait = step { return steps }
            if case .deliver(let count) = step { delivered += buffer[..<count] }
            steps.append(describe(step))
            between(&machine, step)
        }
        Issue.record("the machine never waited: \(steps.suffix(5))")
        return steps
    }

    /// A write followed by a flush.
    mutating func send(_ text: String, promise: TestPromise? = nil) -> String {
        let written = describe(machine.write(TestBytes(text), promise: promise))
        guard written == "none" else { return written }
        return describe(machine.flush())
    }
}

/// Moves bytes both ways until neither side has anything to send; returns each side's steps.
@discardableResult
func pump(_ client: inout Side, _ server: inout Side, now: Int64 = 0) -> (client: [String], server: [String]) {
    var steps: (client: [String], server: [String]) = ([], [])
    for _ in 0..<20 {
        let fromClient = client.output()
        if !fromClient.isEmpty { steps.server += server.receive(fromClient, now: now) }
        let fromServer = server.output()
        if !fromServer.isEmpty { steps.client += client.receive(fromServer, now: now) }
        if fromClient.isEmpty && fromServer.isEmpty { break }
    }
    return steps
}

@Suite struct TLSConnectionStateMachineTests {
    let pki = HandlerPKI.shared

    func makePair(
        serverHalfClosure: Bool = false, clientHalfClosure: Bool = false, idle: Int64? = nil
    ) throws -> (Side, Side) {
        let client = Side(session: try pki.clientContext().makeSession(serverName: "localhost"), halfClosure: clientHalfClosure)
        let server = Side(session: try pki.serverContext().makeSession(), halfClosure: serverHalfClosure, idle: idle)
        return (client, server)
    }

    /// Both channels become active at `now` and the handshake runs to its end.
    @discardableResult
    func connect(_ client: inout Side, _ server: inout Side, now: Int64 = 0) -> (client: [String], server: [String]) {
        client.machine.channelActive(now: now)
        server.machine.channelActive(now: now)
        let first = client.step(now: now)
        let rest = pump(&client, &server, now: now)
        return (first + rest.client, rest.server)
    }

    // MARK: - Before and during the handshake

    @Test func writesBeforeTheChannelIsActiveWaitForTheHandshakeAndLeaveAfterIt() throws {
        var (client, server) = try makePair()
        let early = TestPromise("early")
        #expect(describe(client.machine.write(TestBytes("early"), promise: early)) == "none")
        #expect(describe(client.machine.flush()) == "none")
        #expect(client.output().isEmpty)
        let steps = connect(&client, &server)
        #expect(steps.client == ["handshakeCompleted(quiet: false)"])
        #expect(steps.server == ["handshakeCompleted(quiet: true)"])
        #expect(describe(client.machine.flush()) == "send(early)")
        pump(&client, &server)
        #expect(server.delivered == Array("early".utf8))
    }

    @Test func closingBeforeTheHandshakeCompletesClosesAtOnceWithoutCloseNotify() throws {
        var (client, _) = try makePair()
        client.machine.channelActive(now: 0)
        _ = client.step()
        let hello = client.output()
        #expect(hello.first == 0x16, "a ClientHello record")
        let waiting = TestPromise("waiting")
        let closed = TestPromise("closed")
        _ = client.machine.write(TestBytes("never sent"), promise: waiting)
        #expect(describe(client.machine.close(all: true, promise: closed, now: 0)) == "closeChannel(closed, shutdownCompleted: false, abandoned: 1)")
        #expect(client.output().isEmpty, "no alert and no close_notify before TLS is up")
        guard case .failed(.refused(.channelClosed)) = client.handshakeOutcome else {
            Issue.record("handshake outcome: \(client.handshakeOutcome)")
            return
        }
    }

    @Test func aHalfCloseDuringTheHandshakeIsCarriedOutAfterItBehindTheWritesBeforeIt() throws {
        var (client, server) = try makePair(serverHalfClosure: true)
        client.machine.channelActive(now: 0)
        server.machine.channelActive(now: 0)
        #expect(client.step() == [])
        _ = client.machine.write(TestBytes("request"), promise: TestPromise("request"))
        #expect(describe(client.machine.close(all: false, promise: TestPromise("half"), now: 0)) == "none")
        #expect(describe(client.machine.close(all: false, promise: TestPromise("again"), now: 0)) == "none")
        let steps = pump(&client, &server)
        #expect(steps.client == ["handshakeCompleted(quiet: false, then: sendCloseNotify(writes: request, close: half))"])
        #expect(steps.server == ["handshakeCompleted(quiet: true)", "deliver(7)", "peerClosedOutput"])
        #expect(server.delivered == Array("request".utf8))
        guard case .outputClosed = client.machine.state else {
            Issue.record("state: \(client.machine.state)")
            return
        }
    }

    @Test func aHandlerRemovedLeavesAMachineThatDoesNothingMore() throws {
        var (client, server) = try makePair()
        connect(&client, &server)
        _ = client.machine.close(all: true, promise: nil, now: 0)
        #expect(client.nextDeadline == 3 * second)
        #expect(client.machine.handlerRemoved().isEmpty)
        #expect(client.nextDeadline == nil, "no deadline keeps a removed handler in the sweeper")
        #expect(describe(client.machine.closeNotifyWritten(error: nil)) == "none")
    }

    @Test func aTimeoutOfForeverNeverPasses() throws {
        var server = Side(session: try pki.serverContext().makeSession(), handshake: .max)
        server.machine.channelActive(now: 5 * second)
        #expect(server.nextDeadline == .max)
        guard case .none = server.machine.deadlinePassed(now: .max - 1) else {
            Issue.record("a handshake timeout of .max passed")
            return
        }
    }

    @Test func aClientHelloThatDeclares16MiBIsRefusedOnceTheLimitIsPassed() throws {
        var server = Side(session: try pki.serverContext().makeSession(), maximumHandshakeInput: 64 * 1024)
        server.machine.channelActive(now: 0)
        // Handshake records: a ClientHello header declaring just under 16 MiB, then more of its body.
        func record(_ body: [UInt8]) -> [UInt8] {
            [0x16, 0x03, 0x01, UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body
        }
        let first = record([0x01, 0xFF, 0xFF, 0x00] + [UInt8](repeating: 0, count: 16 * 1024 - 4))
        let next = record([UInt8](repeating: 0, count: 16 * 1024))
        var accepted = 0
        var refusal: String?
        for index in 0..<64 {
            let bytes = index == 0 ? first : next
            let action = describe(server.machine.received(bytes.count))
            guard action == "none" else {
                refusal = action
                break
            }
            accepted += bytes.count
            #expect(server.receive(bytes) == [], "record \(index)")
        }
        #expect(refusal == "fail(limitExceeded, abandoned: 0, close: nil)")
        #expect(accepted <= 64 * 1024, "accepted \(accepted) bytes")
        guard case .closed(let failure as TLSError) = server.machine.state else {
            Issue.record("state: \(server.machine.state)")
            return
        }
        #expect(failure.reason == "the peer sent more than 64 KiB before completing the handshake")
        // The peer is told: one fatal handshake_failure alert.
        #expect(Array(server.output().suffix(7)) == [0x15, 0x03, 0x03, 0x00, 0x02, 2, 40])
    }

    @Test(arguments: [(10 * second, "10 s"), (second / 2, "0.5 s")])
    func theHandshakeDeadlineFailsTheConnectionWithATimeout(limit: Int64, wording: String) throws {
        var server = Side(session: try pki.serverContext().makeSession(), handshake: limit)
        server.machine.channelActive(now: 5 * second)
        #expect(server.nextDeadline == 5 * second + limit)
        guard case .none = server.machine.deadlinePassed(now: 5 * second + limit - 1) else {
            Issue.record("acted before the deadline")
            return
        }
        guard case .act(let action) = server.machine.deadlinePassed(now: 5 * second + limit),
            case .fail(let error as TLSError, _, _) = action
        else {
            Issue.record("no failure at the deadline")
            return
        }
        #expect(error.kind == .timeout)
        #expect(error.reason == "the handshake did not complete within \(wording)")
        #expect(server.nextDeadline == nil)
        guard case .failed(.error(let outcome as TLSError)) = server.handshakeOutcome else {
            Issue.record("handshake outcome: \(server.handshakeOutcome)")
            return
        }
        #expect(outcome.kind == .timeout)
    }

    @Test func aHandshakeFailureFailsTheWaitingWritesAndQueuesTheAlert() throws {
        let other = try CertificateAuthority.generate(commonName: "Other")
        var client = Side(
            session: try TLSContext(
                configuration: .client(serverName: "localhost", trustRoots: .certificates([other.certificate]))
            ).makeSession(serverName: "localhost"))
        var server = Side(session: try pki.serverContext().makeSession())
        _ = client.machine.write(TestBytes("never sent"), promise: TestPromise("w"))
        let steps = connect(&client, &server)
        #expect(steps.client == ["act(fail(verification, abandoned: 1, close: nil))"])
        #expect(steps.server == ["act(fail(alertReceived, abandoned: 0, close: nil))"])
        guard case .closed(let failure as TLSError) = client.machine.state else {
            Issue.record("state: \(client.machine.state)")
            return
        }
        #expect(failure.verification?.reasons == [.untrustedIssuer])
        // A write after the failure learns why.
        #expect(describe(client.machine.write(TestBytes("late"), promise: TestPromise("late"))) == "refuse(late, verification)")
    }

    // MARK: - Data

    @Test func oneSendPerFlushStandsForEveryWriteBeforeIt() throws {
        var (client, server) = try makePair()
        connect(&client, &server)
        let first = TestPromise("first")
        let third = TestPromise("third")
        _ = client.machine.write(TestBytes("one;"), promise: first)
        _ = client.machine.write(TestBytes("two;"), promise: nil)
        _ = client.machine.write(TestBytes("three;"), promise: third)
        #expect(describe(client.machine.flush()) == "send(first)")
        #expect(first.followers.map(\.name) == ["third"])
        #expect(describe(client.machine.flush()) == "none", "nothing left to send")
        let steps = pump(&client, &server)
        #expect(steps.server == ["deliver(14)"], "corked into one record")
        #expect(server.delivered == Array("one;two;three;".utf8))
    }

    // MARK: - Closing

    @Test func thePeersCloseNotifyIsAnsweredAndEachSideClosesOnceItsOwnIsWritten() throws {
        var (client, server) = try makePair()
        connect(&client, &server)
        let closed = TestPromise("closed")
        #expect(describe(client.machine.close(all: true, promise: closed, now: 0)) == "sendCloseNotify(writes: nil, close: nil)")
        #expect(client.nextDeadline == 3 * second)
        #expect(server.receive(client.output()) == ["act(sendCloseNotify(writes: nil, close: nil))"])
        // The server's close_notify is not written yet: its channel stays open.
        #expect(describe(server.machine.closeNotifyWritten(error: nil)) == "closeChannel(nil, shutdownCompleted: true, abandoned: 0)")
        // The client has the server's answer before its own close_notify was reported written.
        #expect(client.receive(server.output()) == ["act(none)"])
        #expect(describe(client.machine.closeNotifyWritten(error: nil)) == "closeChannel(closed, shutdownCompleted: true, abandoned: 0)")
        #expect(client.nextDeadline == nil)
        #expect(describe(client.machine.write(TestBytes("late"), promise: TestPromise("late"))) == "refuse(late, outputClosed)")
    }

    @Test func withHalfClosureThePeersCloseNotifyLeavesUsWritingUntilWeClose() throws {
        var (client, server) = try makePair(serverHalfClosure: true)
        connect(&client, &server)
        let halfClosed = TestPromise("halfClosed")
        #expect(describe(client.machine.close(all: false, promise: halfClosed, now: 0)) == "sendCloseNotify(writes: nil, close: halfClosed)")
        #expect(describe(client.machine.closeNotifyWritten(error: nil)) == "none")
        #expect(describe(client.machine.close(all: false, promise: TestPromise("again"), now: 0)) == "refuse(again, outputClosed)")
        #expect(server.receive(client.output()) == ["peerClosedOutput"])
        #expect(server.nextDeadline == nil, "no idle timeout, and the peer owes nothing more")
        #expect(server.send("reply") == "send(nil)")
        #expect(describe(server.machine.close(all: true, promise: TestPromise("closed"), now: 0)) == "sendCloseNotify(writes: nil, close: nil)")
        #expect(describe(server.machine.closeNotifyWritten(error: nil)) == "closeChannel(closed, shutdownCompleted: true, abandoned: 0)")
        // The client, half-closed, still reads: the reply, then the server's close_notify.
        #expect(client.receive(server.output()) == ["deliver(5)", "act(closeChannel(nil, shutdownCompleted: true, abandoned: 0))"])
        #expect(client.delivered == Array("reply".utf8))
    }

    @Test func theLastWritesAndTheCloseNotifyLeaveTogether() throws {
        var (client, server) = try makePair()
        connect(&client, &server)
        _ = client.machine.write(TestBytes("last words"), promise: TestPromise("last"))
        #expect(describe(client.machine.close(all: true, promise: nil, now: 0)) == "sendCloseNotify(writes: last, close: nil)")
        #expect(server.receive(client.output()) == ["deliver(10)", "act(sendCloseNotify(writes: nil, close: nil))"])
        #expect(server.delivered == Array("last words".utf8))
    }

    @Test func aCloseWaitsABoundedTimeForThePeer() throws {
        var (client, server) = try makePair()
        connect(&client, &server)
        let closed = TestPromise("closed")
        _ = client.machine.close(all: true, promise: closed, now: 5 * second)
        _ = client.machine.closeNotifyWritten(error: nil)
        // A second close joins the first.
        let second2 = TestPromise("second")
        #expect(describe(client.machine.close(all: true, promise: second2, now: 6 * second)) == "none")
        #expect(closed.followers.map(\.name) == ["second"])
        #expect(client.nextDeadline == 8 * second)
        guard case .none = client.machine.deadlinePassed(now: 8 * second - 1) else {
            Issue.record("closed before the shutdown timeout")
            return
        }
        guard case .act(let action) = client.machine.deadlinePassed(now: 8 * second) else {
            Issue.record("still open after the shutdown timeout")
            return
        }
        #expect(describe(action) == "closeChannel(closed, shutdownCompleted: false, abandoned: 0)")
    }

    @Test func closingTheInputAloneIsUnsupported() throws {
        var (client, server) = try makePair()
        connect(&client, &server)
        let promise = TestPromise("input")
        #expect(describe(client.machine.close(all: false, input: true, promise: promise, now: 0)) == "refuse(input, unsupportedOperation)")
        guard case .active = client.machine.state else {
            Issue.record("state: \(client.machine.state)")
            return
        }
    }

    // MARK: - The end of the peer's stream

    @Test func anEndWithoutCloseNotifyIsTruncationWhileWeStillExpectOne() throws {
        var (client, server) = try makePair()
        connect(&client, &server)
        #expect(server.send("cut") == "send(nil)")
        server.machine.endOfInput()
        #expect(server.step() == ["act(fail(truncated, abandoned: 0, close: nil))"])

        // Half-closed by us, we still wait for the peer's close_notify: its absence is truncation too.
        var (client2, server2) = try makePair()
        connect(&client2, &server2)
        _ = client2.machine.close(all: false, promise: nil, now: 0)
        _ = client2.machine.closeNotifyWritten(error: nil)
        #expect(client2.send("x") == "refuse(nil, outputClosed)")
        client2.machine.endOfInput()
        #expect(client2.step() == ["act(fail(truncated, abandoned: 0, close: nil))"])
        _ = client
    }

    @Test func afterOurFullCloseAnEndWithoutTheAnswerClosesQuietly() throws {
        var (client, server) = try makePair()
        connect(&client, &server)
        _ = client.machine.close(all: true, promise: TestPromise("closed"), now: 0)
        client.machine.endOfInput()
        // Our close_notify is not written yet: wait for it.
        #expect(client.step() == ["act(none)"])
        #expect(!client.isReading)
        #expect(describe(client.machine.closeNotifyWritten(error: nil)) == "closeChannel(closed, shutdownCompleted: false, abandoned: 0)")
        _ = server
    }

    @Test func transportErrorsAreQuietOnlyOnceEverythingWeSentIsWritten() throws {
        var (client, server) = try makePair()
        connect(&client, &server)
        guard case .pass = client.machine.errorCaught(isTransportError: true) else {
            Issue.record("a reset of an open connection must be reported")
            return
        }
        _ = client.machine.close(all: true, promise: TestPromise("closed"), now: 0)
        guard case .pass = client.machine.errorCaught(isTransportError: true) else {
            Issue.record("a reset before our last bytes were written must be reported")
            return
        }
        _ = client.machine.closeNotifyWritten(error: nil)
        guard case .pass = client.machine.errorCaught(isTransportError: false) else {
            Issue.record("errors of our own are always reported")
            return
        }
        guard case .act(let action) = client.machine.errorCaught(isTransportError: true) else {
            Issue.record("a reset in answer to our close_notify closes quietly")
            return
        }
        #expect(describe(action) == "closeChannel(closed, shutdownCompleted: false, abandoned: 0)")
        guard case .drop = client.machine.errorCaught(isTransportError: true) else {
            Issue.record("errors after the end are dropped")
            return
        }
        _ = server
    }

    @Test func aCloseNotifyWriteThatFailsIsAFailure() throws {
        var (client, server) = try makePair()
        connect(&client, &server)
        let closed = TestPromise("closed")
        _ = client.machine.close(all: true, promise: closed, now: 0)
        #expect(describe(client.machine.closeNotifyWritten(error: WriteFailed())) == "fail(write failed, abandoned: 0, close: closed)")
        _ = server
    }

    @Test func channelInactiveSucceedsAClosesUnderWayAndAbandonsWaitingWrites() throws {
        var (client, _) = try makePair()
        _ = client.machine.write(TestBytes("never"), promise: TestPromise("w"))
        let (close, abandoned) = client.machine.channelInactive()
        #expect(close == nil)
        #expect(abandoned.count == 1)
        guard case .closed(nil) = client.machine.state else {
            Issue.record("state: \(client.machine.state)")
            return
        }
    }

    // MARK: - Idle timeout

    @Test func theIdleTimeoutCountsFromTheLastActivityAndThenClosesWithCloseNotify() throws {
        var (client, server) = try makePair(idle: 30 * second)
        connect(&client, &server)
        #expect(server.tracksActivity)
        #expect(server.nextDeadline == 30 * second)
        server.machine.recordActivity(at: 20 * second)
        #expect(server.nextDeadline == 50 * second)
        guard case .none = server.machine.deadlinePassed(now: 50 * second - 1) else {
            Issue.record("idle before the timeout")
            return
        }
        guard case .idleTimeout(let idle) = server.machine.deadlinePassed(now: 50 * second) else {
            Issue.record("no idle timeout")
            return
        }
        #expect(idle == 30 * second)
        #expect(describe(server.machine.close(all: true, promise: nil, now: 50 * second)) == "sendCloseNotify(writes: nil, close: nil)")
        #expect(server.nextDeadline == 53 * second, "now the shutdown timeout")
        #expect(client.receive(server.output()) == ["act(sendCloseNotify(writes: nil, close: nil))"])
        // Without an idle timeout, an open connection has no deadline.
        #expect(!client.tracksActivity)
    }

    @Test func withoutAnIdleTimeoutAnOpenConnectionHasNoDeadline() throws {
        var (client, server) = try makePair()
        connect(&client, &server)
        #expect(client.nextDeadline == nil)
        #expect(server.nextDeadline == nil)
    }

    // MARK: - Re-entrancy: a handler further down acts between two steps

    @Test func aHandlerThatClosesFromInsideAReadStillGetsWhatFollowsAndTheCloseNotifyGoesOut() throws {
        var (client, server) = try makePair()
        connect(&client, &server)
        #expect(client.send("one") == "send(nil)")
        #expect(client.send("two") == "send(nil)")
        var actions: [String] = []
        let steps = server.receive(client.output()) { machine, step in
            if case .deliver = step, actions.isEmpty {
                actions.append(describe(machine.close(all: true, promise: TestPromise("closed"), now: 0)))
            }
        }
        #expect(steps == ["deliver(3)", "deliver(3)"])
        #expect(actions == ["sendCloseNotify(writes: nil, close: nil)"])
        #expect(server.delivered == Array("onetwo".utf8))
        #expect(client.receive(server.output()) == ["act(sendCloseNotify(writes: nil, close: nil))"])
    }

    @Test func aHandlerThatWritesFromInsideAReadSendsAtOnce() throws {
        var (client, server) = try makePair()
        connect(&client, &server)
        #expect(client.send("ping") == "send(nil)")
        var actions: [String] = []
        let steps = server.receive(client.output()) { machine, step in
            guard case .deliver = step else { return }
            actions.append(describe(machine.write(TestBytes("pong"), promise: TestPromise("pong"))))
            actions.append(describe(machine.flush()))
        }
        #expect(steps == ["deliver(4)"])
        #expect(actions == ["none", "send(pong)"])
        pump(&client, &server)
        #expect(client.delivered == Array("pong".utf8))
    }

    @Test func aHandlerThatClosesWhenTheHandshakeCompletesGetsACloseNotifyNotAnAbort() throws {
        var (client, server) = try makePair()
        client.machine.channelActive(now: 0)
        server.machine.channelActive(now: 0)
        _ = client.step()
        var serverActions: [String] = []
        for _ in 0..<5 {
            let fromClient = client.output()
            if !fromClient.isEmpty {
                _ = server.receive(fromClient) { machine, step in
                    guard case .handshakeCompleted = step else { return }
                    serverActions.append(describe(machine.close(all: true, promise: nil, now: 0)))
                    serverActions.append(describe(machine.flush()))
                }
            }
            let fromServer = server.output()
            if !fromServer.isEmpty { _ = client.receive(fromServer) }
        }
        #expect(serverActions == ["sendCloseNotify(writes: nil, close: nil)", "none"])
        guard case .closing = client.machine.state else {
            Issue.record("the client did not get the server's close_notify: \(client.machine.state)")
            return
        }
    }
}
