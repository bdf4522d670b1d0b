import NIOCore

/// User events fired by ``GnuTLSHandler``. NIO's own `TLSUserEvent` is fired as well (`handshakeCompleted`,
/// `shutdownCompleted`), so handlers written for swift-nio-ssl (for example `ApplicationProtocolNegotiationHandler`)
/// work unchanged.
public enum GnuTLSEvent: Sendable, Equatable {
    /// The handshake completed.
    case handshakeCompleted(TLSHandshakeInfo)
    /// No bytes moved either way for the handler's idle timeout (the value given); the handler now closes the
    /// connection with close_notify.
    case idleTimeout(TimeAmount)
    /// The peer sent close_notify: it will send nothing more. Fired only when half-closure is allowed (followed by
    /// NIO's `ChannelEvent.inputClosed`); otherwise the handler answers with its own close_notify and closes.
    case peerClosedOutput
}
