#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import NIOCore

/// Something with deadlines (handshake, idle, shutdown) that a ``DeadlineSweeper`` checks.
protocol DeadlineChecking: AnyObject {
    /// Where this member sits in its sweeper's list (for removal in constant time).
    var sweeperSlot: Int? { get set }
    /// Acts on the deadlines that have passed at `now`. May remove itself (or others) from the sweeper.
    func checkDeadlines(now: NIODeadline)
}

/// Checks the deadlines of every connection on one event loop from a single periodic timer.
///
/// A timer per connection costs a scheduled task, a promise and a future per connection, a `timerfd_settime`
/// whenever the earliest deadline changes, and -- worse as connections grow -- NIO cancels a scheduled task by
/// scanning every task of the loop. Here a connection only joins a list (and leaves it in constant time);
/// its deadlines are plain stored times that the sweep compares with the clock. The price is resolution:
/// a deadline is acted on at most one period late (the period is an eighth of the shortest timeout in use,
/// at most 1 s).
final class DeadlineSweeper: NIOScheduledCallbackHandler {
    private let eventLoop: any EventLoop
    // Touched only on the event loop, never across a call that could come back in (checkDeadlines may remove
    // members, but the sweep holds no access to the list while calling it): no dynamic exclusivity checks.
    @exclusivity(unchecked) private var members: [any DeadlineChecking] = []
    @exclusivity(unchecked) private var period: TimeAmount = .seconds(1)
    @exclusivity(unchecked) private var scheduled: NIOScheduledCallback?

    private init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// The sweeper of `eventLoop`, made on first use. Call on the event loop.
    static func of(_ eventLoop: any EventLoop) -> DeadlineSweeper {
        let registry = SweeperRegistry.current
        let key = ObjectIdentifier(eventLoop)
        if let sweeper = registry.sweepers[key] { return sweeper }
        let sweeper = DeadlineSweeper(eventLoop: eventLoop)
        registry.sweepers[key] = sweeper
        return sweeper
    }

    /// Starts checking `member`, at least every `resolution`.
    func add(_ member: any DeadlineChecking, resolution: TimeAmount) {
        guard member.sweeperSlot == nil else { return }
        member.sweeperSlot = members.count
        members.append(member)
        if resolution < period {
            period = resolution
            // A shorter period than the one scheduled: schedule anew.
            scheduled?.cancel()
            scheduled = nil
        }
        if scheduled == nil { schedule() }
    }

    /// Stops checking `member`.
    func remove(_ member: any DeadlineChecking) {
        guard let slot = member.sweeperSlot, slot < members.count, members[slot] === member else { return }
        member.sweeperSlot = nil
        let last = members.removeLast()
        if slot < members.count {
            members[slot] = last
            last.sweeperSlot = slot
        }
        // An empty sweeper retires at its next tick if still empty, not now: between bursts of short connections
        // the loop keeps one sweeper and one scheduled callback instead of making and cancelling them each time.
    }

    func handleScheduledCallback(eventLoop: some EventLoop) {
        scheduled = nil
        let now = eventLoop.now
        var index = 0
        while index < members.count {
            let member = members[index]
            member.checkDeadlines(now: now)
            // A member that removed itself was replaced by the last one: check that one at the same index.
            if index < members.count && members[index] === member { index += 1 }
        }
        if members.isEmpty { retire() } else if scheduled == nil { schedule() }
    }

    private func schedule() {
        scheduled = try? eventLoop.assumeIsolatedUnsafeUnchecked().scheduleCallback(
            at: eventLoop.now + period, handler: self)
    }

    /// Empty at a tick: stop and forget this sweeper (a later connection makes a new one).
    private func retire() {
        scheduled?.cancel()
        scheduled = nil
        let registry = SweeperRegistry.current
        let key = ObjectIdentifier(eventLoop)
        if registry.sweepers[key] === self { registry.sweepers[key] = nil }
    }
}

/// The sweepers used on the current thread, one per event loop. An event loop runs on one thread, so a
/// thread-local registry needs no lock and two loops never touch the same one.
final class SweeperRegistry {
    var sweepers: [ObjectIdentifier: DeadlineSweeper] = [:]

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        let rc = pthread_key_create(&key) { pointer in
            guard let pointer else { return }
            Unmanaged<SweeperRegistry>.fromOpaque(pointer).release()
        }
        precondition(rc == 0, "pthread_key_create failed: \(rc)")
        return key
    }()

    static var current: SweeperRegistry {
        if let pointer = pthread_getspecific(key) {
            return Unmanaged<SweeperRegistry>.fromOpaque(pointer).takeUnretainedValue()
        }
        let registry = SweeperRegistry()
        pthread_setspecific(key, Unmanaged.passRetained(registry).toOpaque())
        return registry
    }
}
