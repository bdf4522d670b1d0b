#if canImport(Glibc)
import Glibc
#endif

/// Reading and writing the files the library deals in (certificates, keys), with errors that name the file.
enum CredentialFile {
    /// Files larger than this are refused: no certificate or key file is anywhere near it.
    static let maximumSize = 16 * 1024 * 1024

    /// Reads a whole file. `what` says what the file is for ("certificate file") in errors.
    static func read(_ path: String, what: String) throws(TLSError) -> [UInt8] {
        // Non-blocking, so that a FIFO without a writer cannot hang the open; it is refused below.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else {
            throw TLSError.configuration("cannot read \(what) '\(path)': \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw TLSError.configuration("cannot read \(what) '\(path)': \(String(cString: strerror(errno)))")
        }
        switch info.st_mode & S_IFMT {
        case S_IFREG: break
        case S_IFDIR: throw TLSError.configuration("cannot read \(what) '\(path)': it is a directory")
        case S_IFIFO: throw TLSError.configuration("cannot read \(what) '\(path)': it is a FIFO, not a regular file")
        default: throw TLSError.configuration("cannot read \(what) '\(path)': it is not a regular file")
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw TLSError.configuration("cannot read \(what) '\(path)': \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk.prefix(n))
            if bytes.count > maximumSize {
                throw TLSError.configuration("\(what) '\(path)' is larger than \(maximumSize) bytes")
            }
        }
        if bytes.isEmpty {
            throw TLSError.configuration("\(what) '\(path)' is empty")
        }
        return bytes
    }

    /// Writes a file so that readers see either the old content or the whole new one: a temporary file in the
    /// same folder, created with `mode`, synced, then renamed over the target.
    static func writeAtomically(_ bytes: [UInt8], to path: String, mode: mode_t) throws(TLSError) {
        let temporary = "\(path).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else {
            throw TLSError.configuration("cannot write '\(path)': \(String(cString: strerror(errno)))")
        }
        var written = 0
        var failure: Int32 = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { raw in
                Glibc.write(fd, raw.baseAddress! + written, raw.count - written)
            }
            if n < 0 {
                if errno == EINTR { continue }
                failure = errno
                break
            }
            written += n
        }
        if failure == 0, fchmod(fd, mode) != 0 { failure = errno }
        if failure == 0, fsync(fd) != 0 { failure = errno }
        close(fd)
        if failure == 0, rename(temporary, path) != 0 { failure = errno }
        if failure != 0 {
            unlink(temporary)
            throw TLSError.configuration("cannot write '\(path)': \(String(cString: strerror(failure)))")
        }
    }
}
