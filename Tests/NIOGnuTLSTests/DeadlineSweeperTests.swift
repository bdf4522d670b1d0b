import NIOCore
import NIOEmbedded
@testable import NIOGnuTLS
import Testing

/// A member with one deadline that leaves the sweeper when it passes.
private final class Member: DeadlineChecking {
    var sweeperSlot: Int?
    let deadline: NIODeadline
    let sweeper: DeadlineSweeper
    var firedAt: NIODeadline?
    var checks = 0

    init(deadline: NIODeadline, sweeper: DeadlineSweeper) {
        self.deadline = deadline
        self.sweeper = sweeper
    }

    func checkDeadlines(now: NIODeadline) {
        checks += 1
        guard now >= deadline else { return }
        firedAt = now
        sweeper.remove(self)
    }
}

@Suite struct DeadlineSweeperTests {
    @Test func everyDeadlineFiresOnceWithinOnePeriodAndRemovalFromTheMiddleKeepsTheOthers() {
        let loop = EmbeddedEventLoop()
        let sweeper = DeadlineSweeper.of(loop)
        #expect(DeadlineSweeper.of(loop) === sweeper)
        let start = loop.now
        // 100 members with deadlines 1..100 ms apart, checked every 10 ms.
        let members = (1...100).map { Member(deadline: start + .milliseconds(Int64($0 * 7)), sweeper: sweeper) }
        for member in members { sweeper.add(member, resolution: .milliseconds(10)) }
        // Members leaving before their deadline (a connection that closes) are never checked again.
        let leaving = [members[0], members[50], members[99]]
        for member in leaving { sweeper.remove(member) }
        #expect(leaving.allSatisfy { $0.sweeperSlot == nil })
        loop.advanceTime(by: .milliseconds(800))
        for (index, member) in members.enumerated() where !leaving.contains(where: { $0 === member }) {
            let fired = try? #require(member.firedAt, "member \(index) never fired")
            if let fired {
                #expect(fired >= member.deadline)
                #expect(fired - member.deadline <= .milliseconds(10))
            }
        }
        #expect(leaving.allSatisfy { $0.checks == 0 && $0.firedAt == nil })
        // Empty again: the sweeper retired, and a later member gets a fresh one that still works.
        #expect(DeadlineSweeper.of(loop) !== sweeper)
        let later = DeadlineSweeper.of(loop)
        let member = Member(deadline: loop.now + .seconds(2), sweeper: later)
        later.add(member, resolution: .seconds(1))
        loop.advanceTime(by: .seconds(1))
        #expect(member.firedAt == nil)
        loop.advanceTime(by: .seconds(1))
        #expect(member.firedAt != nil)
    }
}
