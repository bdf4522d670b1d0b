import GnuTLS
import Logging
import NIOCore

extension ChannelPipeline.SynchronousOperations {
    /// Adds a ``GnuTLSHandler`` for `context` (a client or a server context) in a channel initializer, in one
    /// call, as NIO code is written: `try channel.pipeline.syncOperations.addGnuTLSHandler(context: context)`.
    ///
    /// The parameters are those of
    /// ``GnuTLSHandler/init(context:serverName:handshakeTimeout:shutdownTimeout:idleTimeout:allowHalfClosure:maximumHandshakeInput:logger:metrics:)``;
    /// `position` is where it goes (TLS usually comes first: `.last` of an empty pipeline, or `.first`).
    /// Returns the handler, for code that wants its ``GnuTLSHandler/handshakeFuture`` on the event loop.
    @discardableResult
    public func addGnuTLSHandler(
        context: TLSContext, serverName: String? = nil, handshakeTimeout: TimeAmount = .seconds(10),
        shutdownTimeout: TimeAmount = .seconds(3), idleTimeout: TimeAmount? = nil, allowHalfClosure: Bool? = nil,
        maximumHandshakeInput: Int? = nil, logger: Logger? = nil, metrics: TLSMetrics? = nil,
        position: ChannelPipeline.SynchronousOperations.Position = .last
    ) throws -> GnuTLSHandler {
        let handler = try GnuTLSHandler(
            context: context, serverName: serverName, handshakeTimeout: handshakeTimeout,
            shutdownTimeout: shutdownTimeout, idleTimeout: idleTimeout, allowHalfClosure: allowHalfClosure,
            maximumHandshakeInput: maximumHandshakeInput, logger: logger, metrics: metrics)
        try addHandler(handler, position: position)
        return handler
    }

    /// What the handshake of this pipeline's ``GnuTLSHandler`` agreed on (version, cipher suite, ALPN, the
    /// peer's certificates), for code already on the event loop; nil while the handshake is under way. The
    /// counterpart of swift-nio-ssl's `syncOperations.nioSSL_peerCertificate()`; async code uses
    /// `Channel/gnuTLSHandshakeInfo()`, which waits.
    ///
    /// - Throws: the handshake's error if it failed (a `TLSError`), `ChannelPipelineError.notFound` if the
    ///   pipeline has no ``GnuTLSHandler`` (it leaves the pipeline when the channel closes).
    public func gnuTLSHandshakeInfo() throws -> TLSHandshakeInfo? {
        try handler(type: GnuTLSHandler.self).handshakeResult?.get()
    }
}
