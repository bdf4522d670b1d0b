#if canImport(Glibc)
import Glibc
#endif

/// A name in one of GnuTLS's static tables (cipher suites, groups), which live as long as the library: kept as
/// the pointer, and made a `String` only when someone reads it. Every handshake reports these names, and most
/// connections never look at them.
package struct StaticName: @unchecked Sendable, Equatable, CustomStringConvertible {
    // @unchecked: the bytes are constant and never freed.
    private let pointer: UnsafePointer<CChar>

    init(_ pointer: UnsafePointer<CChar>) { self.pointer = pointer }

    /// The name.
    package var description: String { String(cString: pointer) }

    package static func == (lhs: StaticName, rhs: StaticName) -> Bool {
        lhs.pointer == rhs.pointer || strcmp(lhs.pointer, rhs.pointer) == 0
    }
}
