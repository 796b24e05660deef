/// A small XML reader for S3's response documents: elements, text, the five entities and numeric
/// character references, CDATA, comments. Namespace prefixes are dropped; attributes are ignored.
public struct XMLNode: Sendable {
    public var name: String
    public var children: [XMLNode] = []
    public var text: String = ""

    public func child(_ name: String) -> XMLNode? { children.first { $0.name == name } }
    public func all(_ name: String) -> [XMLNode] { children.filter { $0.name == name } }
    /// Text of the first child with this name.
    public subscript(_ name: String) -> String? { child(name)?.text }

    public static func parse(_ bytes: [UInt8]) throws -> XMLNode {
        var p = XMLReader(bytes: bytes)
        return try p.document()
    }
}

public struct XMLError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { "malformed XML: \(message)" }
}

struct XMLReader {
    let bytes: [UInt8]
    var i = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    mutating func document() throws -> XMLNode {
        while true {
            skipSpace()
            guard i < bytes.count else { throw XMLError(message: "no root element") }
            if starts("<?") { try skip(past: "?>") } else if starts("<!--") { try skip(past: "-->") }
            else if starts("<!") { try skip(past: ">") } else { return try element() }
        }
    }

    mutating func element() throws -> XMLNode {
        guard peek == UInt8(ascii: "<") else { throw XMLError(message: "expected '<' at \(i)") }
        i += 1
        let name = localName(readName())
        var node = XMLNode(name: name)
        // Attributes: skip to the end of the tag, honouring quotes.
        var quote: UInt8? = nil
        while i < bytes.count {
            let c = bytes[i]
            if let q = quote { if c == q { quote = nil } } else if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") { quote = c }
            else if c == UInt8(ascii: "/") && i + 1 < bytes.count && bytes[i + 1] == UInt8(ascii: ">") { i += 2; return node }
            else if c == UInt8(ascii: ">") { i += 1; break }
            i += 1
        }
        var text: [UInt8] = []
        while i < bytes.count {
            if starts("</") {
                i += 2
                let close = localName(readName())
                guard close == name else { throw XMLError(message: "</\(close)> closes <\(name)>") }
                try skip(past: ">")
                node.text = String(decoding: text, as: UTF8.self)
                return node
            } else if starts("<!--") {
                try skip(past: "-->")
            } else if starts("<![CDATA[") {
                i += 9
                let start = i
                try skip(past: "]]>")
                text.append(contentsOf: bytes[start..<(i - 3)])
            } else if peek == UInt8(ascii: "<") {
                node.children.append(try element())
            } else if peek == UInt8(ascii: "&") {
                text.append(contentsOf: try entity())
            } else {
                text.append(bytes[i])
                i += 1
            }
        }
        throw XMLError(message: "<\(name)> is not closed")
    }

    mutating func entity() throws -> [UInt8] {
        let start = i
        while i < bytes.count && bytes[i] != UInt8(ascii: ";") { i += 1 }
        guard i < bytes.count else { throw XMLError(message: "unterminated entity") }
        let name = String(decoding: bytes[(start + 1)..<i], as: UTF8.self)
        i += 1
        switch name {
        case "amp": return [UInt8(ascii: "&")]
        case "lt": return [UInt8(ascii: "<")]
        case "gt": return [UInt8(ascii: ">")]
        case "quot": return [UInt8(ascii: "\"")]
        case "apos": return [UInt8(ascii: "'")]
        default:
            let value: UInt32?
            if name.hasPrefix("#x") || name.hasPrefix("#X") { value = UInt32(name.dropFirst(2), radix: 16) }
            else if name.hasPrefix("#") { value = UInt32(name.dropFirst(), radix: 10) }
            else { value = nil }
            guard let v = value, let scalar = Unicode.Scalar(v) else { throw XMLError(message: "unknown entity &\(name);") }
            return Array(String(Character(scalar)).utf8)
        }
    }

    var peek: UInt8? { i < bytes.count ? bytes[i] : nil }

    func starts(_ s: StaticString) -> Bool {
        let n = s.utf8CodeUnitCount
        guard i + n <= bytes.count else { return false }
        return s.withUTF8Buffer { buf in (0..<n).allSatisfy { bytes[i + $0] == buf[$0] } }
    }

    mutating func skip(past s: StaticString) throws {
        while i < bytes.count {
            if starts(s) { i += s.utf8CodeUnitCount; return }
            i += 1
        }
        throw XMLError(message: "expected \(s)")
    }

    mutating func skipSpace() {
        while let c = peek, c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d { i += 1 }
    }

    mutating func readName() -> String {
        let start = i
        while let c = peek, !(c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d || c == UInt8(ascii: ">") || c == UInt8(ascii: "/")) { i += 1 }
        return String(decoding: bytes[start..<i], as: UTF8.self)
    }

    func localName(_ qualified: String) -> String {
        qualified.split(separator: ":").last.map(String.init) ?? qualified
    }
}

/// Builds request documents; text is escaped.
public enum XMLWriter {
    public static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for ch in s.unicodeScalars {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            case "\r": out += "&#13;"
            default: out.unicodeScalars.append(ch)
            }
        }
        return out
    }

    public static func element(_ name: String, _ text: String) -> String { "<\(name)>\(escape(text))</\(name)>" }
}
