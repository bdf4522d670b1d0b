import ArgumentParser
import Foundation
import GnuTLS
import TLSCommandSupport

/// Makes development certificates without openssl or certtool: a CA, and leaves it signs.
@main
struct TLSCerts: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tls-certs",
        abstract: "Make development certificates (testing only): a CA and the certificates it signs.",
        discussion: """
            Existing files are never overwritten unless --force is given. Exit status: 0 when the files are \
            written; 64 for a usage error; 1 when a file cannot be read or written.
            """,
        version: LibraryVersion.description,
        subcommands: [MakeCA.self, Issue.self, TicketKey.self])
}

/// The options every subcommand checks the same way.
private func validateCommon(_ command: Any, days: Int) throws {
    if let name = repeatedOption(in: command, arguments: Array(CommandLine.arguments.dropFirst())) {
        throw ValidationError("--\(name) was given more than once; it takes one value")
    }
    guard days >= 1 else {
        throw ValidationError("--days must be at least 1, not \(days) (a certificate that expires at once is of no use)")
    }
}

/// Refuses to replace existing files unless `force`.
private func refuseOverwriting(_ paths: [String], force: Bool) throws(TLSError) {
    guard !force else { return }
    let existing = paths.filter { FileManager.default.fileExists(atPath: $0) }
    guard existing.isEmpty else {
        let list = existing.map { "'\($0)'" }.joined(separator: " and ")
        throw TLSError(
            kind: .configuration,
            reason: "\(list) already exist\(existing.count == 1 ? "s" : ""); give --force to replace "
                + "\(existing.count == 1 ? "it" : "them")")
    }
}

extension TLSCerts {
    struct MakeCA: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ca", abstract: "Create a self-signed CA: PREFIX.crt and PREFIX.key (mode 0600).")

        @Option(help: "Path prefix of the files to write.") var out: String
        @Option(help: "The CA's common name.") var cn = "swift-gnutls development CA"
        @Option(help: "Days of validity (at least 1).") var days = 3650
        @Flag(help: "Replace PREFIX.crt and PREFIX.key if they exist.") var force = false

        func validate() throws { try validateCommon(self, days: days) }

        func run() throws {
            do {
                try refuseOverwriting([out + ".crt", out + ".key"], force: force)
                let ca = try CertificateAuthority.generate(
                    commonName: cn, notValidAfter: Date().addingTimeInterval(Double(days) * 86400))
                try ca.privateKey.write(toFile: out + ".key")
                try Certificate.writePEM([ca.certificate], toFile: out + ".crt")
                print("wrote \(out).crt and \(out).key")
            } catch {
                fail(error)
            }
        }
    }

    struct Issue: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "issue",
            abstract: "Issue a leaf certificate: PREFIX.crt (leaf, then the CA) and PREFIX.key (mode 0600).")

        @Option(
            help: "The CA: a path prefix (certs/ca for certs/ca.crt and certs/ca.key), or the .crt file's name.",
            completion: .file())
        var ca: String
        @Option(help: "Path prefix of the files to write.") var out: String
        @Option(help: "The subject's common name.") var cn: String
        @Option(help: "A DNS name (repeatable).") var dns: [String] = []
        @Option(help: "An IP address (repeatable).") var ip: [String] = []
        @Flag(help: "A client certificate instead of a server one.") var client = false
        @Flag(help: "Already expired (for testing refusals).") var expired = false
        @Flag(help: "Not valid until tomorrow (for testing refusals).") var notYetValid = false
        @Flag(help: "An RSA-2048 key instead of ECDSA P-256.") var rsa = false
        @Option(help: "Days of validity (at least 1).") var days = 365
        @Flag(help: "Replace PREFIX.crt and PREFIX.key if they exist.") var force = false

        func validate() throws { try validateCommon(self, days: days) }

        /// --ca as a prefix: `certs/ca.crt` and `certs/ca` both mean `certs/ca.crt` with `certs/ca.key`.
        var caPrefix: String { ca.hasSuffix(".crt") ? String(ca.dropLast(4)) : ca }

        func run() throws {
            do {
                try refuseOverwriting([out + ".crt", out + ".key"], force: force)
                guard let caCertificate = try Certificate.load(file: caPrefix + ".crt").first else {
                    throw TLSError(kind: .configuration, reason: "'\(caPrefix).crt' holds no certificate")
                }
                // A leaf given as --ca would sign a chain that every verifier refuses.
                guard caCertificate.isCertificateAuthority else {
                    throw TLSError(
                        kind: .configuration,
                        reason: "'\(caPrefix).crt' is not a CA certificate (\(caCertificate.subject) cannot sign "
                            + "others); give the CA made by tls-certs ca")
                }
                let authority = CertificateAuthority(
                    certificate: caCertificate, privateKey: try PrivateKey(file: caPrefix + ".key"))
                let now = Date()
                var start = now.addingTimeInterval(-3600)
                var end = now.addingTimeInterval(Double(days) * 86400)
                if expired {
                    start = now.addingTimeInterval(-30 * 86400)
                    end = now.addingTimeInterval(-86400)
                } else if notYetValid {
                    start = now.addingTimeInterval(86400)
                    end = now.addingTimeInterval(Double(days) * 86400)
                }
                let issued = try authority.issue(
                    commonName: cn, dnsNames: dns, ipAddresses: ip, usage: client ? .client : .server,
                    notValidBefore: start, notValidAfter: end, keyAlgorithm: rsa ? .rsa(bits: 2048) : .ecdsaP256)
                try issued.privateKey.write(toFile: out + ".key")
                try Certificate.writePEM(issued.chain, toFile: out + ".crt")
                print("wrote \(out).crt and \(out).key")
            } catch {
                fail(error)
            }
        }
    }
}

extension TLSCerts {
    struct TicketKey: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ticket-key",
            abstract: "Create a session-ticket master key file (mode 0600) to share between tls-server instances.",
            discussion: """
                The file holds 64 random bytes in base64. Give the same file to every instance behind one load \
                balancer (tls-server --ticket-key-file FILE) so that a client resumes its session on any of them. \
                Keep it as secret as a private key. An existing file is not replaced.
                """)

        @Option(help: "The file to write; it must not exist.") var out: String

        func run() throws {
            do {
                try TLSConfiguration.TicketKey.writeNewKey(toFile: out)
                print("wrote \(out)")
            } catch {
                fail(error)
            }
        }
    }
}

/// One `Error:` line on standard error, exit status 1.
func fail(_ error: any Error) -> Never {
    let reason = plainReason(error)
    FileHandle.standardError.write(Data("Error: \(reason)\n".utf8))
    exit(1)
}
