import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus

/// `--metrics HOST:PORT`: serves the registry in the Prometheus text format at `GET /metrics`, over plain
/// HTTP/1.1 (a scraper on the same host or network; there is no TLS or authentication on this port, so it is
/// meant for loopback or a private network). Everything else is 404, or 405 for another method.
enum MetricsServer {
    /// Binds and returns the listening channel.
    static func start(
        host: String, port: Int, registry: PrometheusCollectorRegistry, group: any EventLoopGroup
    ) throws -> any Channel {
        try ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(MetricsHTTPHandler(registry: registry))
                }
            }
            .bind(host: host, port: port).wait()
    }
}

/// Answers one request at a time from the pipeline NIO's HTTP/1.1 server handlers set up.
final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let registry: PrometheusCollectorRegistry
    private var head: HTTPRequestHead?

    init(registry: PrometheusCollectorRegistry) { self.registry = registry }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): self.head = head
        case .body: break
        case .end:
            guard let head else { return }
            self.head = nil
            respond(to: head, context: context)
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
