import FoundationEssentials
import Glibc

/// One HTTP request as it goes on the wire. `path` is already URI-encoded; query items are raw
/// (decoded) and encoded once, in SigV4's canonical order, when the URL is built.
public struct HTTPRequest: Sendable {
    public var method: String
    public var scheme: String
    public var host: String          // may carry ":port"
    public var path: String
    public var query: [(String, String)]
    public var headers: [(String, String)]
    public var body: RequestBody

    public init(method: String, scheme: String = "https", host: String, path: String = "/",
                query: [(String, String)] = [], headers: [(String, String)] = [], body: RequestBody = .empty) {
        self.method = method
        self.scheme = scheme
        self.host = host
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
    }

    public var canonicalQuery: String {
        query.map { (URIEncoding.encode($0.0, keepSlash: false), URIEncoding.encode($0.1, keepSlash: false)) }
            .sorted { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
            .map { "\($0.0)=\($0.1)" }
            .joined(separator: "&")
    }

    public var url: String {
        let q = canonicalQuery
        return "\(scheme)://\(host)\(path)" + (q.isEmpty ? "" : "?\(q)")
    }

    public func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    public mutating func setHeader(_ name: String, _ value: String) {
        headers.removeAll { $0.0.lowercased() == name.lowercased() }
        headers.append((name, value))
    }
}

/// Where a request body comes from. File ranges are streamed, never loaded whole.
public enum RequestBody: Sendable {
    case empty
    case bytes([UInt8])
    case file(path: String, offset: Int64, length: Int64)

    public var length: Int64 {
        switch self {
        case .empty: return 0
        case .bytes(let b): return Int64(b.count)
        case .file(_, _, let length): return length
        }
    }
}

/// RFC 3986 unreserved-only encoding, as SigV4 requires (uppercase hex, UTF-8 bytes).
public enum URIEncoding {
    public static func encode(_ s: String, keepSlash: Bool) -> String {
        var out = [UInt8]()
        out.reserveCapacity(s.utf8.count)
        let hex: [UInt8] = Array("0123456789ABCDEF".utf8)
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.append(b)
            case UInt8(ascii: "/") where keepSlash:
                out.append(b)
            default:
                out.append(UInt8(ascii: "%"))
                out.append(hex[Int(b >> 4)])
                out.append(hex[Int(b & 0xf)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes %XX escapes; invalid escapes are kept literally. Bytes that are not UTF-8 become U+FFFD.
    public static func decode(_ s: String) -> String {
        let bytes = Array(s.utf8)
        var out = [UInt8]()
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "%"), i + 2 < bytes.count,
               let v = UInt8(String(decoding: bytes[i + 1...i + 2], as: UTF8.self), radix: 16) {
                out.append(v)
                i += 3
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
