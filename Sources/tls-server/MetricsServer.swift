import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import TLSCommandSupport

/// `--metrics HOST:PORT`: serves the registry in the Prometheus text format at `GET /metrics`, over plain
/// HTTP/1.1 (a scraper on the same host or network; there is no TLS or authentication on this port, so it is
/// meant for loopback or a private network). Everything else is 404, or 405 for another method.
///
/// The port shares the process's descriptor table and event loops with the TLS port, so it must not be a way to
/// starve it: at most ``maxConnections`` scrape connections are open at once (more are closed at once), each must
/// complete a request within ``requestDeadline`` of being accepted or of its previous request (a client that
/// connects and sends nothing, trickles its request, or stops reading its responses is closed), and with the
/// table full the listener backs off like the TLS one (``AcceptGuard``) instead of retrying accept in a busy
/// loop and taking the descriptor the TLS listener frees to recover.
enum MetricsServer {
    /// A scraper needs one connection; a few more allow for several scrapers and reconnects.
    static let maxConnections = 8
    /// Prometheus sends its request as soon as it connects, and keeps a connection between scrapes only as an
    /// optimisation (it reconnects when the server has closed it).
    static let requestDeadline = TimeAmount.seconds(5)

    /// Binds and returns the listening channel.
    static func start(
        host: String, port: Int, registry: PrometheusCollectorRegistry, group: any EventLoopGroup,
        output: ConsoleOutput
    ) throws -> any Channel {
        let toShed = ShedList()
        let open = ConnectionCounter(limit: maxConnections)
        return try ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        AcceptGuard(output: output, toShed: toShed, accepting: "metrics connections"))
                }
            }
            .childChannelInitializer { channel in
                // A refusal fails the initializer, and the bootstrap closes the connection (as in EchoServer).
                guard !toShed.take(channel), open.acquire() else {
                    return channel.eventLoop.makeFailedFuture(RefusedConnection())
                }
                channel.closeFuture.whenComplete { _ in open.release() }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(
                        MetricsHTTPHandler(registry: registry, requestDeadline: requestDeadline))
                }
            }
            .bind(host: host, port: port).wait()
    }
}

/// Answers one request at a time from the pipeline NIO's HTTP/1.1 server handlers set up, and closes the
/// connection when no complete request has come for `requestDeadline` (since it was accepted or since the
/// previous request).
final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let registry: PrometheusCollectorRegistry
    private let requestDeadline: TimeAmount
    private var head: HTTPRequestHead?
    private var deadline: Scheduled<Void>?

    init(registry: PrometheusCollectorRegistry, requestDeadline: TimeAmount) {
        self.registry = registry
        self.requestDeadline = requestDeadline
    }

    func handlerAdded(context: ChannelHandlerContext) { armDeadline(context: context) }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): self.head = head
        case .body: break
        case .end:
            guard let head else { return }
            self.head = nil
            armDeadline(context: context)
            respond(to: head, context: context)
        }
    }

    /// Bytes alone do not push the deadline back: only a complete request does (a trickled request is closed).
    private func armDeadline(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: requestDeadline) {
            context.close(promise: nil)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        let status: HTTPResponseStatus
        var body = context.channel.allocator.buffer(capacity: 0)
        var headers = HTTPHeaders()
        if path != "/metrics" {
            status = .notFound
            body.writeString("not found: metrics are at /metrics\n")
            headers.add(name: "content-type", value: "text/plain; charset=utf-8")
        } else if head.method != .GET && head.method != .HEAD {
            status = .methodNotAllowed
            headers.add(name: "allow", value: "GET, HEAD")
        } else {
            status = .ok
            // The Prometheus text exposition format, version 0.0.4.
            headers.add(name: "content-type", value: "text/plain; version=0.0.4; charset=utf-8")
            if head.method == .GET { body.writeBytes(registry.emitToBuffer()) }
        }
        headers.add(name: "content-length", value: "\(body.readableBytes)")
        if !head.isKeepAlive { headers.add(name: "connection", value: "close") }
        let responseHead = HTTPResponseHead(version: head.version, status: status, headers: headers)
        context.write(wrapOutboundOut(.head(responseHead)), promise: nil)
        if body.readableBytes > 0 { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        let keepAlive = head.isKeepAlive
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            if !keepAlive { context.close(promise: nil) }
        }
    }
}
