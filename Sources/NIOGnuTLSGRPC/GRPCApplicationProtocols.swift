#if GRPC
import GnuTLS

/// The ALPN protocols gRPC over TLS offers: `grpc-exp` (gRPC's experimental identifier, which grpc-swift and
/// the other gRPC implementations send first) and `h2`.
let grpcApplicationProtocols = ["grpc-exp", "h2"]

extension TLSContext {
    /// This context, made to offer gRPC's ALPN protocols: a context whose configuration names none gets
    /// `grpc-exp` and `h2` (a new context from the same configuration); one that already offers `h2` or
    /// `grpc-exp` is used as it is.
    ///
    /// - Throws: ``TLSError`` of kind `configuration` when the context offers only other protocols (gRPC runs
    ///   on HTTP/2, and a server that required ALPN would refuse every connection), or when the context cannot
    ///   be rebuilt.
    func offeringGRPCApplicationProtocols() throws(TLSError) -> TLSContext {
        let offered = configuration.applicationProtocols
        if offered.isEmpty {
            var configuration = self.configuration
            configuration.applicationProtocols = grpcApplicationProtocols
            return try TLSContext(configuration: configuration)
        }
        guard offered.contains(where: grpcApplicationProtocols.contains) else {
            throw TLSError(
                kind: .configuration,
                reason: "the TLS context offers ALPN \(offered) but gRPC needs 'grpc-exp' or 'h2'; "
                    + "leave applicationProtocols empty to get both")
        }
        return self
    }
}
#endif
