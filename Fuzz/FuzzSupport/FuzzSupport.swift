// Shared by the fuzz targets in Fuzz/: a development PKI made once per process, the seed writer, and a replay
// driver for builds without libFuzzer. Run the targets with tools/fuzz.
import Foundation
import GnuTLS

/// One CA and one server leaf for "localhost", made once per process (in memory, never written to disk).
public enum FuzzPKI {
    public static let ca: CertificateAuthority = {
        do { return try CertificateAuthority.generate(commonName: "Fuzz CA") } catch { fatalError("fuzz CA: \(error)") }
    }()

    public static let server: CertificateAuthority.Issued = {
        do {
            return try ca.issue(commonName: "localhost", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"])
        } catch { fatalError("fuzz server leaf: \(error)") }
    }()

    public static func serverConfiguration(policy: TLSConfiguration.ProtocolPolicy = .intermediate) -> TLSConfiguration {
        .server(
            identity: .certificates(server.chain, privateKey: server.privateKey),
            clientAuthentication: .verifyIfGiven, trustRoots: .certificates([ca.certificate]),
            policy: policy, applicationProtocols: ["h2", "http/1.1"])
    }

    public static func clientConfiguration(policy: TLSConfiguration.ProtocolPolicy = .intermediate) -> TLSConfiguration {
        .client(
            serverName: "localhost", trustRoots: .certificates([ca.certificate]), policy: policy,
            applicationProtocols: ["h2", "http/1.1"])
    }

    public static func context(_ configuration: TLSConfiguration) -> TLSContext {
        do { return try TLSContext(configuration: configuration) } catch { fatalError("fuzz context: \(error)") }
    }

    /// The policies seeds are recorded for: both versions, TLS 1.3 only, TLS 1.2 only.
    public static let seedPolicies: [TLSConfiguration.ProtocolPolicy] = [
        .intermediate, .modern, .custom("NORMAL:-VERS-ALL:+VERS-TLS1.2"),
    ]
}

/// A client's first flight (its ClientHello) and the server's answer to it, from two real sessions in memory.
public func recordFirstFlights(policy: TLSConfiguration.ProtocolPolicy) -> (clientHello: [UInt8], serverFlight: [UInt8]) {
    do {
        let client = try FuzzPKI.context(FuzzPKI.clientConfiguration(policy: policy)).makeSession()
        let server = try FuzzPKI.context(FuzzPKI.serverConfiguration(policy: .intermediate)).makeSession()
        _ = try client.handshake()
        let hello = client.takePendingOutput()
        server.feed(hello)
        _ = try server.handshake()
        return (hello, server.takePendingOutput())
    } catch {
        fatalError("cannot record first flights for \(policy): \(error)")
    }
}

/// When FUZZ_SEED_DIR is set, writes `seeds` there (named by index) so that libFuzzer, started with that
/// directory as its corpus, begins from real inputs. Called from LLVMFuzzerInitialize, which libFuzzer runs
/// before it reads the corpus.
public func writeSeedsIfAsked(_ seeds: @autoclosure () -> [[UInt8]], name: String) {
    guard let directory = ProcessInfo.processInfo.environment["FUZZ_SEED_DIR"] else { return }
    for (index, seed) in seeds().enumerated() {
        let path = "\(directory)/seed-\(name)-\(index)"
        guard FileManager.default.createFile(atPath: path, contents: Data(seed)) else {
            fatalError("cannot write seed \(path)")
        }
    }
}

/// Without libFuzzer (a plain `swift build`), a fuzz target runs each file named on the command line (or each
/// file in a named directory) through its entry point once: a way to replay a crash input under a debugger.
public func replayArguments(_ body: (UnsafeRawBufferPointer) -> Void) {
    var paths: [String] = []
    for argument in CommandLine.arguments.dropFirst() {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: argument, isDirectory: &isDirectory), isDirectory.boolValue {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: argument)) ?? []
            paths += names.sorted().map { "\(argument)/\($0)" }
        } else {
            paths.append(argument)
        }
    }
    for path in paths {
        guard let data = FileManager.default.contents(atPath: path) else {
            print("cannot read \(path)")
            exit(2)
        }
        data.withUnsafeBytes { body($0) }
        print("ran \(path) (\(data.count) bytes)")
    }
}

/// Drives a session over the bytes already fed: the handshake, then reads while it is complete, then end of
/// input. Every error is an expected outcome; only a crash or a sanitizer report is a finding.
public func drive(_ session: TLSSession) {
    do {
        var buffer = [UInt8](repeating: 0, count: 16384)
        if try session.handshake() == .complete {
            _ = session.negotiatedVersion
            _ = session.cipherSuite
            _ = session.applicationProtocol
            _ = session.requestedServerName
            _ = session.peerCertificates
            reading: while true {
                let result = try buffer.withUnsafeMutableBytes { (raw) throws(TLSError) in try session.read(into: raw) }
                switch result {
                case .bytes: continue
                case .needsInput, .closed: break reading
                }
            }
            try session.write([0x68, 0x69])
        }
        _ = session.takePendingOutput()
        session.feedEndOfInput()
        _ = try session.handshake()
        _ = try buffer.withUnsafeMutableBytes { (raw) throws(TLSError) in try session.read(into: raw) }
    } catch {
        _ = session.takePendingOutput()
    }
}

/// The entry point of every fuzz target. With -DFUZZING (tools/fuzz), hands control to libFuzzer's driver:
/// SwiftPM links an executable's `main` to the module's own entry point (`--defsym main=<module>_main`), so
/// libFuzzer's `main` is never used and `LLVMFuzzerRunDriver` is called instead. Without it, replays files.
public func fuzzMain(
    _ testOneInput: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt, replay: (UnsafeRawBufferPointer) -> Void
) -> Never {
    #if FUZZING
    var argc = CommandLine.argc
    var argv = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, testOneInput))
    #else
    replayArguments(replay)
    exit(0)
    #endif
}

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ testOneInput: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt
#endif
