/// A configuration can be logged whole: the private key and its password show as `<redacted>` in `print`,
/// `debugPrint` and `dump`, while file paths, certificates' subjects, the role, the policy and ALPN show as
/// they are.
extension TLSConfiguration: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// Every field, with the identity's secrets redacted.
    public var description: String {
        "TLSConfiguration(role: \(role), identities: \(identities), "
            + "trustRoots: \(trustRoots), certificateVerification: \(certificateVerification), "
            + "clientAuthentication: \(clientAuthentication), policy: \(policy), "
            + "applicationProtocols: \(applicationProtocols), serverName: \(String(reflecting: serverName)), "
            + "sessionTickets: \(sessionTickets), additionalTrustRoots: \(additionalTrustRoots), "
            + "revocationLists: \(revocationLists.count), "
            + "maximumVerificationDepth: \(maximumVerificationDepth.map(String.init) ?? "nil"), "
            + "keyLog: \(keyLog == nil ? "nil" : "set"), "
            + "ticketKey: \(ticketKey.map(\.description) ?? "nil"), "
            + "sessionLifetime: \(sessionLifetime.map { "\($0)" } ?? "nil"))"
    }

    /// The same as ``description``.
    public var debugDescription: String { description }

    /// Every field as a child; the identity reflects with its own redacting mirror.
    public var customMirror: Mirror {
        Mirror(
            self,
            children: [
                "role": role, "identities": identities, "trustRoots": trustRoots,
                "certificateVerification": certificateVerification, "clientAuthentication": clientAuthentication,
                "policy": policy, "applicationProtocols": applicationProtocols, "serverName": serverName as Any,
                "sessionTickets": sessionTickets, "additionalTrustRoots": additionalTrustRoots,
                "revocationLists": revocationLists.count, "maximumVerificationDepth": maximumVerificationDepth as Any,
                "keyLog": keyLog == nil ? "nil" : "set",
                "ticketKey": ticketKey as Any, "sessionLifetime": sessionLifetime as Any,
            ],
            displayStyle: .struct)
    }
}

extension TLSConfiguration.Identity: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The file paths, the certificates' subjects or the token URLs; a key in memory, a password and a PIN
    /// (also one inside a URL) show as `<redacted>`.
    public var description: String {
        "Identity(certificateChain: \(certificateChain), privateKey: \(privateKey)"
            + "\(ocspResponse.map { ", ocspResponse: \($0)" } ?? ""))"
    }

    /// The same as ``description``.
    public var debugDescription: String { description }

    /// The parts, each with its own redacting rendering.
    public var customMirror: Mirror {
        Mirror(
            self,
            children: [
                "certificateChain": certificateChain.description, "privateKey": privateKey.description,
                "ocspResponse": ocspResponse.map(\.description) as Any,
            ],
            displayStyle: .struct)
    }
}

extension TLSConfiguration.Identity.CertificateChain: CustomStringConvertible {
    /// The path, the subjects, or the URL with any PIN redacted.
    public var description: String {
        switch self {
        case .file(let path): return "file(\(String(reflecting: path)))"
        case .certificates(let certificates): return "certificates(\(certificates.map(\.subject)))"
        case .pkcs11(let url): return "pkcs11(\(String(reflecting: PKCS11URL.redacted(url))))"
        }
    }
}

extension TLSConfiguration.Identity.Key: CustomStringConvertible, CustomReflectable {
    /// The path or the URL; the key, the password and the PIN as `<redacted>`.
    public var description: String {
        switch self {
        case .file(let path, let password):
            return "file(\(String(reflecting: path)), password: \(password == nil ? "nil" : PrivateKey.redacted))"
        case .key: return "key(\(PrivateKey.redacted))"
        case .pkcs11(let url, let pin):
            return "pkcs11(\(String(reflecting: PKCS11URL.redacted(url))), pin: \(pin == nil ? "nil" : PrivateKey.redacted))"
        }
    }

    /// The same text as ``description``, as the only child: `dump` never reaches the secrets.
    public var customMirror: Mirror { Mirror(self, children: ["redacted": description], displayStyle: .enum) }
}

extension TLSConfiguration.Identity.PIN: CustomStringConvertible, CustomReflectable {
    /// `<redacted>`.
    public var description: String { PrivateKey.redacted }
    /// No children.
    public var customMirror: Mirror { Mirror(self, children: ["pin": PrivateKey.redacted], displayStyle: .enum) }
}

extension TLSConfiguration.Identity.OCSPResponse: CustomStringConvertible {
    /// The path, or the size of the response in memory.
    public var description: String {
        switch self {
        case .file(let path): return "file(\(String(reflecting: path)))"
        case .der(let bytes): return "der(\(bytes.count) bytes)"
        }
    }
}

/// RFC 7512 PKCS #11 URLs as they may be shown: a `pin-value` attribute is replaced by `<redacted>`.
enum PKCS11URL {
    static func redacted(_ url: String) -> String {
        // Attributes are separated by ';' (path) and '&' (query); the query starts at '?'.
        var result = ""
        var attribute = ""
        func flush() {
            result += attribute.hasPrefix("pin-value=") ? "pin-value=" + PrivateKey.redacted : attribute
            attribute = ""
        }
        for character in url {
            if character == ";" || character == "&" || character == "?" {
                flush()
                result.append(character)
            } else {
                attribute.append(character)
            }
        }
        flush()
        return result
    }
}
