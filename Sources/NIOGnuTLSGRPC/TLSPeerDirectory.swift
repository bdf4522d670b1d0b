#if GRPC
import GRPCCore
import NIOCore
import NIOGnuTLS
import Synchronization

/// The handshake of each open connection of one server transport, found by the peer address gRPC puts in
/// `ServerContext.remotePeer`.
///
/// Why it exists: `HTTP2ServerTransport.Custom` can only fill `ServerContext.transportSpecific` through an
/// initializer that is `package` in grpc-swift-nio-transport 2.9.2, so service code cannot be handed the TLS
/// session the way `HTTP2ServerTransport.Posix` hands its `Context`. The peer address is unique among a
/// listener's open TCP connections, so it finds the connection. Unix-socket peers have no address of their
/// own and are not tracked.
final class TLSPeerDirectory: Sendable {
    private struct Entry: Sendable {
        let connection: ObjectIdentifier
        let info: TLSHandshakeInfo
    }

    private let entries = Mutex<[String: Entry]>([:])

    /// Records `channel`'s handshake once it completes, under the key gRPC will report, until the channel
    /// closes.
    func track(_ channel: any Channel, handshake: EventLoopFuture<TLSHandshakeInfo>?) {
        guard let handshake, let key = Self.key(for: channel.remoteAddress) else { return }
        let connection = ObjectIdentifier(channel)
        handshake.whenSuccess { [self] info in
            entries.withLock { $0[key] = Entry(connection: connection, info: info) }
        }
        channel.closeFuture.whenComplete { [self] _ in
            entries.withLock { entries in
                // A later connection from the same address (after this one closed) keeps its own entry.
                if entries[key]?.connection == connection { entries[key] = nil }
            }
        }
    }

    /// The handshake of the connection an RPC arrived on, or nil (a Unix-socket connection, or one that has
    /// closed).
    func handshakeInfo(for context: ServerContext) -> TLSHandshakeInfo? {
        entries.withLock { $0[context.remotePeer]?.info }
    }

    /// How many connections are tracked (for tests: entries must go when connections do).
    var count: Int { entries.withLock { $0.count } }

    /// The format of grpc-swift-nio-transport's `Channel.remoteAddressInfo` (internal there), for TCP.
    static func key(for address: SocketAddress?) -> String? {
        switch address {
        case .v4(let ipv4)?: return "ipv4:\(ipv4.host):\(address?.port ?? 0)"
        case .v6(let ipv6)?: return "ipv6:[\(ipv6.host)]:\(address?.port ?? 0)"
        default: return nil
        }
    }
}
#endif
