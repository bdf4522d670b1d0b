import Foundation
import GnuTLS
import NIOConcurrencyHelpers
import NIOCore
import NIOGnuTLS
import NIOPosix
import TLSCommandSupport

/// The server's sockets and open connections: binds, counts connections against the limit, shuts down.
final class EchoServer: Sendable {
    let context: TLSContext
    let group: MultiThreadedEventLoopGroup
    let output: ConsoleOutput
    let stream: Bool
    let quiet: Bool
    let maxConnections: Int
    let idleTimeout: TimeAmount
    let handshakeTimeout: TimeAmount

    private let listeners = NIOLockedValueBox<[any Channel]>([])
    private let connections = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])

    init(
        context: TLSContext, group: MultiThreadedEventLoopGroup, output: ConsoleOutput, stream: Bool, quiet: Bool,
        maxConnections: Int, idleTimeout: TimeAmount, handshakeTimeout: TimeAmount
    ) {
        self.context = context
        self.group = group
        self.output = output
        self.stream = stream
        self.quiet = quiet
        self.maxConnections = maxConnections
        self.idleTimeout = idleTimeout
        self.handshakeTimeout = handshakeTimeout
    }

    /// Binds `host` ('localhost' means both 127.0.0.1 and ::1) and returns the port.
    func listen(host: String, port: Int) async throws -> Int {
        let addresses = host == "localhost" ? ["127.0.0.1", "::1"] : [host]
        var boundPort = port
        for (index, address) in addresses.enumerated() {
            do {
                let channel = try await bootstrap().bind(host: address, port: boundPort).get()
                listeners.withLockedValue { $0.append(channel) }
                boundPort = channel.localAddress?.port ?? boundPort
            } catch where index > 0 {
                // localhost without IPv6 still serves on 127.0.0.1.
                output.error("tls-server: not listening on \(address): \(describe(error))")
            }
        }
        return boundPort
    }

    private func bootstrap() -> ServerBootstrap {
        ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // No child options: accepted sockets inherit TCP_NODELAY from the listening socket (NIO sets it),
            // and every option set per child costs a system call and allocations per connection.
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try self.initialize(channel)
                }
            }
    }

    /// Sets up one accepted connection, or refuses it when the limit is reached.
    private func initialize(_ channel: any Channel) throws {
        let id = ObjectIdentifier(channel)
        let admitted = connections.withLockedValue { open -> Bool in
            guard open.count < maxConnections else { return false }
            open[id] = channel
            return true
        }
        guard admitted else {
            let peer = channel.remoteAddress.map(Self.format) ?? "unknown"
            output.line("Connection from \(peer) refused: limit of \(maxConnections) open connections reached")
            channel.close(promise: nil)
            return
        }
        channel.closeFuture.whenComplete { [connections] _ in
            _ = connections.withLockedValue { $0.removeValue(forKey: id) }
        }
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(
            GnuTLSHandler(
                context: context, handshakeTimeout: handshakeTimeout, shutdownTimeout: .seconds(3),
                idleTimeout: idleTimeout, allowHalfClosure: true))
        try sync.addHandler(EchoHandler(stream: stream, quiet: quiet, output: output))
    }

    /// Stops accepting, closes open connections with close_notify, and waits for them up to `deadline`.
    func shutdown(deadline: TimeAmount) async {
        let listening = listeners.withLockedValue { $0 }
        for channel in listening { try? await channel.close() }
        let open = connections.withLockedValue { Array($0.values) }
        let closes = open.map { channel -> EventLoopFuture<Void> in
            channel.close(promise: nil)
            return channel.closeFuture
        }
        guard !closes.isEmpty else { return }
        let loop = group.any()
        let done = loop.makePromise(of: Void.self)
        let completed = NIOLockedValueBox(false)
        let finish: @Sendable () -> Void = {
            if completed.withLockedValue({ old in defer { old = true }; return !old }) { done.succeed(()) }
        }
        EventLoopFuture.andAllComplete(closes, on: loop).whenComplete { _ in finish() }
        let timeout = loop.scheduleTask(in: deadline) { finish() }
        try? await done.futureResult.get()
        timeout.cancel()
    }

    static func format(_ address: SocketAddress) -> String {
        guard let ip = address.ipAddress, let port = address.port else { return "\(address)" }
        return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }
}
