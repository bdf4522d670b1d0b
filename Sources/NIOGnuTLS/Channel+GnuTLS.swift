import GnuTLS
import NIOCore

extension Channel {
    /// What the TLS handshake of this channel agreed on (version, cipher suite, ALPN, the peer's certificates),
    /// once it has completed: the counterpart of swift-nio-ssl's `channel.nioSSL_peerCertificate()`. It may be
    /// called from any thread; the answer comes from the channel's event loop.
    ///
    /// Before the handshake completes, the future waits for it. A channel without a ``GnuTLSHandler`` of its own
    /// is looked up through its parents, so an HTTP/2 stream channel answers with its connection's handshake.
    ///
    /// - Returns: a future that fails with the handshake's error (a `TLSError`) if the handshake fails while it
    ///   waits, or has failed and the channel is still closing; with `ChannelError.ioOnClosedChannel` once the
    ///   channel has closed (the handler has then left the pipeline, and its handshake's outcome with it: ask
    ///   early, for example in the channel initializer, to be sure of getting the handshake's error); and with
    ///   `ChannelPipelineError.notFound` if an open channel and its parents have no ``GnuTLSHandler``.
    public func gnuTLSHandshakeInfo() -> EventLoopFuture<TLSHandshakeInfo> {
        handshakeInfoFuture()
    }

    /// What the TLS handshake of this channel agreed on, for async code: waits for the handshake if it is still
    /// under way. See the future-returning `gnuTLSHandshakeInfo()` for the details and the errors.
    public func gnuTLSHandshakeInfo() async throws -> TLSHandshakeInfo {
        try await handshakeInfoFuture().get()
    }

    private func handshakeInfoFuture() -> EventLoopFuture<TLSHandshakeInfo> {
        let channel: any Channel = self
        let lookup: @Sendable () -> EventLoopFuture<TLSHandshakeInfo> = {
            do {
                let handler = try channel.pipeline.syncOperations.handler(type: GnuTLSHandler.self)
                guard let future = handler.handshakeFuture else {
                    return channel.eventLoop.makeFailedFuture(ChannelPipelineError.notFound)
                }
                return future
            } catch {
                if let parent = channel.parent { return parent.handshakeInfoFuture() }
                // The handler leaves the pipeline when the channel closes, and what its handshake came to with it.
                if !channel.isActive { return channel.eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel) }
                return channel.eventLoop.makeFailedFuture(error)
            }
        }
        if eventLoop.inEventLoop { return lookup() }
        return eventLoop.flatSubmit(lookup)
    }
}
