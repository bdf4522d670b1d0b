internal import CGnuTLS

import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// An X.509 certificate revocation list (CRL), parsed once: who issued it, when, and which certificates (by
/// serial number) it revokes and since when.
///
/// Give CRLs to ``TLSConfiguration/revocationLists``; a peer certificate one of them lists is refused with
/// ``VerificationFailure/Reason/revokedOn(_:serialNumber:reason:)``. Make one for tests with
/// ``CertificateAuthority/revocationList(revoking:revokedAt:thisUpdate:nextUpdate:)``.
public struct CertificateRevocationList: Sendable, Hashable {
    /// One revoked certificate.
    public struct Entry: Sendable, Hashable {
        /// The certificate's serial number, as lowercase hexadecimal (as ``Certificate/serialNumber``).
        public let serialNumber: String
        /// When it was revoked.
        public let revocationDate: Date
        /// Why, when the CRL says (its entry's reasonCode extension).
        public let reason: Reason?
    }

    /// Why a certificate was revoked (RFC 5280's CRLReason).
    public enum Reason: Int, Sendable, Hashable, CustomStringConvertible {
        case unspecified = 0, keyCompromise = 1, caCompromise = 2, affiliationChanged = 3, superseded = 4
        case cessationOfOperation = 5, certificateHold = 6, removeFromCRL = 8, privilegeWithdrawn = 9
        case aaCompromise = 10

        /// The reason in words, for example `key compromise`.
        public var description: String {
            switch self {
            case .unspecified: return "unspecified"
            case .keyCompromise: return "key compromise"
            case .caCompromise: return "CA compromise"
            case .affiliationChanged: return "affiliation changed"
            case .superseded: return "superseded"
            case .cessationOfOperation: return "cessation of operation"
            case .certificateHold: return "certificate hold"
            case .removeFromCRL: return "remove from CRL"
            case .privilegeWithdrawn: return "privilege withdrawn"
            case .aaCompromise: return "AA compromise"
            }
        }
    }

    /// The DER encoding.
    public let derBytes: [UInt8]
    /// The issuer's distinguished name in RFC 4514 form: the CA whose certificates it lists.
    public let issuer: String
    /// When the list was issued.
    public let thisUpdate: Date
    /// When the next list is due, if it says.
    public let nextUpdate: Date?
    /// The revoked certificates.
    public let entries: [Entry]

    /// Parses a DER-encoded CRL.
    public init(derBytes: [UInt8]) throws(TLSError) {
        let handle = try X509RevocationList(bytes: derBytes, source: "CRL")
        self.init(handle: handle, der: derBytes)
    }

    init(handle: X509RevocationList, der: [UInt8]) {
        let crl = handle.crl
        derBytes = der
        var datum = gnutls_datum_t()
        if gnutls_x509_crl_get_issuer_dn3(crl, &datum, 0) == 0 {
            issuer = String(decoding: GnuTLSDatum.take(datum), as: UTF8.self)
        } else {
            issuer = ""
        }
        thisUpdate = Date(timeIntervalSince1970: TimeInterval(gnutls_x509_crl_get_this_update(crl)))
        let next = gnutls_x509_crl_get_next_update(crl)
        nextUpdate = next == -1 ? nil : Date(timeIntervalSince1970: TimeInterval(next))
        var entries: [Entry] = []
        // GnuTLS gives no access to an entry's extensions: the reasons come from the DER itself.
        let reasons = RevocationReasons.parse(der)
        let count = gnutls_x509_crl_get_crt_count(crl)
        if count > 0 {
            for index in 0..<UInt32(count) {
                var serial = [UInt8](repeating: 0, count: 64)
                var size = serial.count
                var time: time_t = 0
                guard gnutls_x509_crl_get_crt_serial(crl, index, &serial, &size, &time) == 0 else { continue }
                let hex = Hex.encode(serial.prefix(size))
                entries.append(
                    Entry(
                        serialNumber: hex, revocationDate: Date(timeIntervalSince1970: TimeInterval(time)),
                        reason: reasons[Self.normalized(hex)]))
            }
        }
        self.entries = entries
    }

    /// Reads a CRL file: PEM (one or more `X509 CRL` blocks) or DER (one CRL).
    ///
    /// - Throws: ``TLSError`` naming the file when it cannot be read or holds no valid CRL.
    public static func load(file path: String) throws(TLSError) -> [CertificateRevocationList] {
        let bytes = try CredentialFile.read(path, what: "CRL file")
        return try parse(bytes: bytes, source: "CRL file '\(path)'")
    }

    /// Parses PEM or DER bytes; `source` names where they came from in errors.
    static func parse(bytes: [UInt8], source: String) throws(TLSError) -> [CertificateRevocationList] {
        guard PEM.isPEM(bytes) else {
            let handle = try X509RevocationList(bytes: bytes, source: source)
            return [CertificateRevocationList(handle: handle, der: bytes)]
        }
        var list: UnsafeMutablePointer<gnutls_x509_crl_t?>?
        var count: UInt32 = 0
        let rc = GnuTLSDatum.withNULTerminated(bytes) { datum in
            gnutls_x509_crl_list_import2(&list, &count, &datum, GNUTLS_X509_FMT_PEM, 0)
        }
        guard rc >= 0, let list else {
            throw TLSError.configuration("\(source) holds no valid PEM CRL (\(TLSError.message(of: rc)))", code: rc)
        }
        defer { cgnutls_free(list) }
        var lists: [CertificateRevocationList] = []
        var failure: TLSError?
        for index in 0..<Int(count) {
            guard let crl = list[index] else { continue }
            do {
                let handle = try X509RevocationList(owning: crl, source: source)
                if failure == nil { lists.append(CertificateRevocationList(handle: handle, der: handle.der)) }
            } catch {
                failure = failure ?? error
            }
        }
        if let failure { throw failure }
        guard !lists.isEmpty else { throw TLSError.configuration("\(source) holds no PEM 'X509 CRL' block") }
        return lists
    }

    /// The PEM encoding.
    public var pemString: String { PEM.encode(der: derBytes, label: "X509 CRL") }

    /// Writes CRLs to a file as PEM, atomically.
    public static func writePEM(_ lists: [CertificateRevocationList], toFile path: String) throws(TLSError) {
        try CredentialFile.writeAtomically(Array(lists.map(\.pemString).joined().utf8), to: path, mode: 0o644)
    }

    /// The entry that revokes `certificate`, if this list is its issuer's and names its serial number.
    public func entry(revoking certificate: Certificate) -> Entry? {
        guard certificate.issuer == issuer else { return nil }
        let serial = Self.normalized(certificate.serialNumber)
        return entries.first { Self.normalized($0.serialNumber) == serial }
    }

    /// A serial number without leading zero bytes (DER may add one to keep the integer positive).
    static func normalized(_ hex: String) -> String {
        var text = Substring(hex)
        while text.count > 2 && text.hasPrefix("00") { text = text.dropFirst(2) }
        return String(text)
    }
}

/// The reasonCode of each entry of a DER CRL, by normalized serial number. A bounds-checked walk over the DER:
/// anything unexpected ends it, and the entries it did not reach simply have no reason.
enum RevocationReasons {
    static func parse(_ der: [UInt8]) -> [String: CertificateRevocationList.Reason] {
        var reasons: [String: CertificateRevocationList.Reason] = [:]
        guard let list = element(der[...]), list.tag == 0x30, let tbs = element(list.content), tbs.tag == 0x30
        else { return reasons }
        var rest = tbs.content
        // version INTEGER OPTIONAL, signature, issuer, thisUpdate, nextUpdate OPTIONAL, revokedCertificates.
        if let first = element(rest), first.tag == 0x02 { rest = first.rest }
        for _ in 0..<2 {
            guard let skipped = element(rest), skipped.tag == 0x30 else { return reasons }
            rest = skipped.rest
        }
        while let time = element(rest), time.tag == 0x17 || time.tag == 0x18 { rest = time.rest }
        guard let revoked = element(rest), revoked.tag == 0x30 else { return reasons }
        var entries = revoked.content
        while let entry = element(entries), entry.tag == 0x30 {
            entries = entry.rest
            guard let serial = element(entry.content), serial.tag == 0x02, let date = element(serial.rest),
                let extensions = element(date.rest), extensions.tag == 0x30
            else { continue }
            var list = extensions.content
            while let item = element(list), item.tag == 0x30 {
                list = item.rest
                guard let oid = element(item.content), oid.tag == 0x06, Array(oid.content) == [0x55, 0x1D, 0x15]
                else { continue }
                var value = oid.rest
                if let critical = element(value), critical.tag == 0x01 { value = critical.rest }
                guard let octets = element(value), octets.tag == 0x04, let code = element(octets.content),
                    code.tag == 0x0A, code.content.count == 1, let byte = code.content.first,
                    let reason = CertificateRevocationList.Reason(rawValue: Int(byte))
                else { continue }
                reasons[CertificateRevocationList.normalized(Hex.encode(serial.content))] = reason
            }
        }
        return reasons
    }

    /// One DER element (short or long definite length, up to 4 length bytes): its tag, content and what follows.
    static func element(_ bytes: ArraySlice<UInt8>) -> (tag: UInt8, content: ArraySlice<UInt8>, rest: ArraySlice<UInt8>)? {
        guard bytes.count >= 2 else { return nil }
        let start = bytes.startIndex
        let tag = bytes[start]
        let first = bytes[start + 1]
        var length = 0
        var offset = start + 2
        if first < 0x80 {
            length = Int(first)
        } else {
            let count = Int(first & 0x7f)
            guard (1...4).contains(count), offset + count <= bytes.endIndex else { return nil }
            for index in 0..<count { length = length << 8 | Int(bytes[offset + index]) }
            offset += count
        }
        guard length <= bytes.endIndex - offset else { return nil }
        return (tag, bytes[offset..<(offset + length)], bytes[(offset + length)...])
    }
}

/// Owns one `gnutls_x509_crl_t`.
final class X509RevocationList {
    let crl: gnutls_x509_crl_t
    let der: [UInt8]

    init(bytes: [UInt8], source: String) throws(TLSError) {
        var crl: gnutls_x509_crl_t?
        let rc = gnutls_x509_crl_init(&crl)
        guard rc == 0, let crl else { throw TLSError.configuration("cannot allocate a CRL", code: rc) }
        let imported = GnuTLSDatum.withNULTerminated(bytes) { datum in
            gnutls_x509_crl_import(crl, &datum, GNUTLS_X509_FMT_DER)
        }
        guard imported == 0 else {
            gnutls_x509_crl_deinit(crl)
            throw TLSError.configuration(
                "\(source) holds data that is not a valid CRL (\(TLSError.message(of: imported)))", code: imported)
        }
        self.crl = crl
        self.der = bytes
    }

    init(owning crl: gnutls_x509_crl_t, source: String) throws(TLSError) {
        self.crl = crl
        var datum = gnutls_datum_t()
        let rc = gnutls_x509_crl_export2(crl, GNUTLS_X509_FMT_DER, &datum)
        guard rc == 0 else {
            self.der = []
            throw TLSError.configuration("cannot encode a CRL from \(source)", code: rc)
        }
        self.der = GnuTLSDatum.take(datum)
    }

    /// An empty CRL to fill in and sign.
    init() throws(TLSError) {
        var crl: gnutls_x509_crl_t?
        let rc = gnutls_x509_crl_init(&crl)
        guard rc == 0, let crl else { throw TLSError.configuration("cannot allocate a CRL", code: rc) }
        self.crl = crl
        self.der = []
    }

    deinit { gnutls_x509_crl_deinit(crl) }
}

extension CertificateAuthority {
    /// Signs a CRL that revokes `certificates` (which this CA issued), for testing clients and servers that
    /// check revocation.
    ///
    /// - Parameters:
    ///   - certificates: the certificates to list as revoked.
    ///   - revokedAt: the revocation date recorded for each certificate (by default now).
    ///   - thisUpdate: the start of the list's validity (by default now).
    ///   - nextUpdate: when a newer list is due (by default 30 days from now).
    public func revocationList(
        revoking certificates: [Certificate],
        revokedAt: Date = Date(),
        thisUpdate: Date = Date(),
        nextUpdate: Date = Date().addingTimeInterval(30 * 86400)
    ) throws(TLSError) -> CertificateRevocationList {
        let handle = try X509RevocationList()
        let crl = handle.crl
        func check(_ rc: Int32, _ what: String) throws(TLSError) {
            guard rc >= 0 else { throw TLSError.configuration("cannot set the CRL's \(what)", code: rc) }
        }
        try check(gnutls_x509_crl_set_version(crl, 2), "version")
        try check(gnutls_x509_crl_set_this_update(crl, time_t(thisUpdate.timeIntervalSince1970)), "this update")
        try check(gnutls_x509_crl_set_next_update(crl, time_t(nextUpdate.timeIntervalSince1970)), "next update")
        for certificate in certificates {
            let serial = Hex.decode(certificate.serialNumber)
            let rc = serial.withUnsafeBytes { raw in
                gnutls_x509_crl_set_crt_serial(crl, raw.baseAddress, raw.count, time_t(revokedAt.timeIntervalSince1970))
            }
            try check(rc, "entry for serial \(certificate.serialNumber)")
        }
        var number: [UInt8] = [0x01]
        try check(gnutls_x509_crl_set_number(crl, &number, 1), "number")
        let issuer = try X509Certificate(der: self.certificate.derBytes, source: "CA certificate")
        let issuerKey = try X509PrivateKey(bytes: privateKey.pkcs8DERBytes, password: nil, source: "CA key")
        var keyID = [UInt8](repeating: 0, count: 64)
        var size = keyID.count
        if gnutls_x509_crt_get_subject_key_id(issuer.crt, &keyID, &size, nil) == 0 {
            try check(gnutls_x509_crl_set_authority_key_id(crl, keyID, size), "authority key identifier")
        }
        try check(gnutls_x509_crl_sign2(crl, issuer.crt, issuerKey.key, GNUTLS_DIG_SHA256, 0), "signature")
        var datum = gnutls_datum_t()
        try check(gnutls_x509_crl_export2(crl, GNUTLS_X509_FMT_DER, &datum), "encoding")
        return try CertificateRevocationList(derBytes: GnuTLSDatum.take(datum))
    }
}
