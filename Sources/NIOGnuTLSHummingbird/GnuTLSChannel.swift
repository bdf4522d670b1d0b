#if Hummingbird
import GnuTLS
import HummingbirdCore
import Logging
import NIOCore
import NIOGnuTLS

/// Runs a Hummingbird child channel (for example `HTTP1Channel`) over TLS with ``GnuTLSHandler``, in place of
/// HummingbirdTLS's `TLSChannel`, which is tied to swift-nio-ssl (and so to building BoringSSL).
///
/// Most apps do not name it: `HTTPServerBuilder.http1(tls:configuration:)` builds one. Route code sees the
/// connection's handshake through ``TLSConnectionInfo/current`` (or `context.tlsHandshake`).
///
/// Half-closure: the handler follows the channel's `ChannelOptions.allowRemoteHalfClosure`, which Hummingbird's
/// server turns on, so a client that sends close_notify right after its request still gets its response (the
/// close_notify becomes the end of the request stream, as a TCP FIN does on a plain connection).
public struct GnuTLSChannel<BaseChannel: ServerChildChannel>: ServerChildChannel {
    /// The base channel's value, with the handshake that ``handle(value:logger:)`` waits for.
    public struct Value: ServerChildChannelValue {
        /// What the base channel's `setup` returned.
        public let base: BaseChannel.Value
        let handshake: EventLoopFuture<TLSHandshakeInfo>
        /// The connection's channel.
        public var channel: any Channel { base.channel }
    }

    /// The channel that runs over TLS.
    public let baseChannel: BaseChannel
    /// The server context (certificate, key, policy, client authentication) every connection uses.
    public let context: TLSContext
    /// How long a client may take to complete the handshake before the connection is closed.
    public let handshakeTimeout: TimeAmount

    /// Wraps `baseChannel` in TLS.
    ///
    /// - Parameters:
    ///   - baseChannel: the channel that handles the plaintext (usually `HTTP1Channel`).
    ///   - context: a server context, made from a `GnuTLS.TLSConfiguration` (module-qualified when the app also
    ///     imports a Hummingbird TLS module, which re-exports NIOSSL's `TLSConfiguration`).
    ///   - handshakeTimeout: how long a handshake may take.
    public init(_ baseChannel: BaseChannel, context: TLSContext, handshakeTimeout: TimeAmount = .seconds(10)) {
        self.baseChannel = baseChannel
        self.context = context
        self.handshakeTimeout = handshakeTimeout
    }

    /// Puts a ``GnuTLSHandler`` first in the pipeline, then lets the base channel set up the rest.
    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let handshake: EventLoopFuture<TLSHandshakeInfo>
        do {
            handshake = try GnuTLSHandler.addServerHandler(
                to: channel, context: context, handshakeTimeout: handshakeTimeout)
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        return baseChannel.setup(channel: channel, logger: logger).map { Value(base: $0, handshake: handshake) }
    }

    /// Waits for the handshake, then runs the base channel's handling with the handshake in
    /// ``TLSConnectionInfo/current``.
    public func handle(value: Value, logger: Logger) async {
        let info: TLSHandshakeInfo?
        do {
            info = try await value.handshake.get()
        } catch {
            // The handler has closed the channel; the base channel's handling still runs, to wind it down.
            logger.debug("TLS handshake failed", metadata: ["tls.error": "\(error)"])
            info = nil
        }
        await TLSConnectionInfo.$current.withValue(info) {
            await baseChannel.handle(value: value.base, logger: logger)
        }
    }
}

extension GnuTLSChannel: HTTPChannelHandler where BaseChannel: HTTPChannelHandler {
    /// The base channel's responder.
    public var responder: HTTPChannelHandler.Responder { baseChannel.responder }
}

extension GnuTLSHandler {
    /// Adds a server handler for `context` at the front of `channel`'s pipeline (on its event loop) and returns its
    /// handshake future.
    static func addServerHandler(
        to channel: any Channel, context: TLSContext, handshakeTimeout: TimeAmount
    ) throws -> EventLoopFuture<TLSHandshakeInfo> {
        let handler = try GnuTLSHandler(context: context, handshakeTimeout: handshakeTimeout)
        try channel.pipeline.syncOperations.addHandler(handler, position: .first)
        guard let handshake = handler.handshakeFuture else {
            // handshakeFuture is nil only before the handler is in a pipeline.
            throw ChannelError.ioOnClosedChannel
        }
        return handshake
    }
}
#endif
