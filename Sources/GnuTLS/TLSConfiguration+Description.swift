/// A configuration can be logged whole: the private key and its password show as `<redacted>` in `print`,
/// `debugPrint` and `dump`, while file paths, certificates' subjects, the role, the policy and ALPN show as
/// they are.
extension TLSConfiguration: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// Every field, with the identity's secrets redacted.
    public var description: String {
        "TLSConfiguration(role: \(role), identity: \(identity.map(\.description) ?? "nil"), "
            + "trustRoots: \(trustRoots), certificateVerification: \(certificateVerification), "
            + "clientAuthentication: \(clientAuthentication), policy: \(policy), "
            + "applicationProtocols: \(applicationProtocols), serverName: \(String(reflecting: serverName)), "
            + "sessionTickets: \(sessionTickets), ticketKey: \(ticketKey.map(\.description) ?? "nil"))"
    }

    /// The same as ``description``.
    public var debugDescription: String { description }

    /// Every field as a child; the identity reflects with its own redacting mirror.
    public var customMirror: Mirror {
        Mirror(
            self,
            children: [
                "role": role, "identity": identity as Any, "trustRoots": trustRoots,
                "certificateVerification": certificateVerification, "clientAuthentication": clientAuthentication,
                "policy": policy, "applicationProtocols": applicationProtocols, "serverName": serverName as Any,
                "sessionTickets": sessionTickets, "ticketKey": ticketKey as Any,
            ],
            displayStyle: .struct)
    }
}

extension TLSConfiguration.Identity: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The file paths or the certificates' subjects; the key (in memory) and the password show as `<redacted>`.
    public var description: String {
        switch self {
        case .files(let chain, let key, let password):
            return "files(certificateChain: \(String(reflecting: chain)), privateKey: \(String(reflecting: key)), "
                + "password: \(password == nil ? "nil" : PrivateKey.redacted))"
        case .certificates(let certificates, _):
            return "certificates(\(certificates.map(\.subject)), privateKey: \(PrivateKey.redacted))"
        }
    }

    /// The same as ``description``.
    public var debugDescription: String { description }

    /// The paths or certificates as they are; the key and the password as `<redacted>`.
    public var customMirror: Mirror {
        switch self {
        case .files(let chain, let key, let password):
            return Mirror(
                self,
                children: [
                    "certificateChain": chain, "privateKey": key,
                    "password": password.map { _ in PrivateKey.redacted } as Any,
                ],
                displayStyle: .enum)
        case .certificates(let certificates, let privateKey):
            return Mirror(
                self, children: ["certificates": certificates, "privateKey": privateKey], displayStyle: .enum)
        }
    }
}
