internal import CGnuTLS

/// The versions a program built on this package runs with: this package's, and the system GnuTLS it loaded.
public enum LibraryVersion {
    /// This package's version.
    public static let package = "0.1.0"

    /// The version of the GnuTLS library loaded at run time (for example `3.7.9`), which security updates of
    /// the distribution change without a rebuild.
    public static var gnutls: String {
        gnutls_check_version(nil).map { String(cString: $0) } ?? "unknown"
    }

    /// What `--version` prints: `0.1.0 (GnuTLS 3.7.9)`.
    public static var description: String { "\(package) (GnuTLS \(gnutls))" }
}
