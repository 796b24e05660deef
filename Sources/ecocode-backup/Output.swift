import Glibc

/// JSON for `--json` output: keys sorted, nulls kept (the desktop app reads fixed schemas).
indirect enum JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
                         ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral {
    case null, bool(Bool), int(Int64), double(Double), string(String), array([JSONValue]), object([String: JSONValue])

    init(stringLiteral s: String) { self = .string(s) }
    init(integerLiteral i: Int) { self = .int(Int64(i)) }
    init(booleanLiteral b: Bool) { self = .bool(b) }
    init(arrayLiteral a: JSONValue...) { self = .array(a) }
    init(dictionaryLiteral pairs: (String, JSONValue)...) { self = .object(Dictionary(uniqueKeysWithValues: pairs)) }

    static func from(_ v: String?) -> JSONValue { v.map { .string($0) } ?? .null }
    static func from(_ v: Int?) -> JSONValue { v.map { .int(Int64($0)) } ?? .null }
    static func from(_ v: Int64) -> JSONValue { .int(v) }

    var rendered: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d): return d.isFinite ? String(d) : "null"
        case .string(let s): return Self.quote(s)
        case .array(let a): return "[" + a.map(\.rendered).joined(separator: ",") + "]"
        case .object(let o):
            // Sorted by the keys' bytes: deterministic, and independent of Unicode equivalence.
            let keys = o.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
            return "{" + keys.map { Self.quote($0) + ":" + o[$0]!.rendered }.joined(separator: ",") + "}"
        }
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20: out += "\\u" + String(u.value, radix: 16).leftPad(4, with: "0")
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}

/// One line (or more) on standard error; never buffered behind standard output.
func printError(_ text: String) {
    let line = text.hasSuffix("\n") ? text : text + "\n"
    _ = line.withCString { write(STDERR_FILENO, $0, strlen($0)) }
}

extension String {
    func leftPad(_ width: Int, with pad: Character = " ") -> String {
        count >= width ? self : String(repeating: pad, count: width - count) + self
    }

    func rightPad(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }

    /// The last path component ("/a/b" → "b").
    var lastPathComponent: String { split(separator: "/").last.map(String.init) ?? self }

    /// The path without its last component ("/a/b" → "/a", "b" → ".").
    var deletingLastPathComponent: String {
        guard let slash = lastIndex(of: "/") else { return "." }
        return slash == startIndex ? "/" : String(self[..<slash])
    }
}
