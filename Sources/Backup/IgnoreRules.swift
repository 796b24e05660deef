import Journal

/// gitignore-style rules from `.ecocodeignore` files plus defaults for code workspaces.
/// Later rules win; `!pattern` re-includes; a trailing `/` matches directories only; a pattern with a
/// `/` elsewhere is anchored to its file's directory; `*`, `?`, `[…]` and `**` glob as in git.
public struct IgnoreRules: Sendable {
    struct Rule: Sendable {
        var base: RelativePath
        var pattern: [UInt8]
        var negated: Bool
        var directoryOnly: Bool
        var anchored: Bool
    }

    /// Generated or bulky trees and editor droppings. `.git/` is deliberately backed up (unpushed work).
    /// A `.ecocodeignore` line such as `!node_modules/` re-includes one.
    public static let defaultPatterns = [
        "node_modules/", ".build/", "target/", "__pycache__/", ".venv/",
        "*.swp", "*.swo", "*.swx", "*~", ".#*", "\\#*#", "4913", ".DS_Store",
    ]
    public static let fileName = ".ecocodeignore"

    var rules: [Rule] = []

    public init(defaults: Bool = true) {
        if defaults { for p in Self.defaultPatterns { add(line: Array(p.utf8), base: RelativePath(bytes: [])) } }
    }

    /// Adds the lines of a `.ecocodeignore` found in directory `base`.
    public mutating func add(contents: [UInt8], base: RelativePath) {
        for line in contents.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true) {
            add(line: Array(line), base: base)
        }
    }

    mutating func add(line raw: [UInt8], base: RelativePath) {
        var line = raw
        if line.last == UInt8(ascii: "\r") { line.removeLast() }
        // Trailing spaces are ignored unless escaped.
        while line.last == UInt8(ascii: " ") && !(line.count >= 2 && line[line.count - 2] == UInt8(ascii: "\\")) { line.removeLast() }
        guard let first = line.first, first != UInt8(ascii: "#") else { return }
        var negated = false
        if first == UInt8(ascii: "!") { negated = true; line.removeFirst() }
        else if first == UInt8(ascii: "\\") { line.removeFirst() }
        var directoryOnly = false
        if line.last == UInt8(ascii: "/") { directoryOnly = true; line.removeLast() }
        var anchored = line.contains(UInt8(ascii: "/"))
        if line.first == UInt8(ascii: "/") { line.removeFirst(); anchored = true }
        guard !line.isEmpty else { return }
        rules.append(Rule(base: base, pattern: line, negated: negated, directoryOnly: directoryOnly, anchored: anchored))
    }

    public func isIgnored(_ path: RelativePath, isDirectory: Bool) -> Bool {
        var ignored = false
        for rule in rules {
            if rule.directoryOnly && !isDirectory { continue }
            guard rule.base.bytes.isEmpty || path.isWithin(rule.base), path != rule.base else { continue }
            let rel = rule.base.bytes.isEmpty ? path.bytes : Array(path.bytes[(rule.base.bytes.count + 1)...])
            let subject: ArraySlice<UInt8>
            if rule.anchored {
                subject = rel[...]
            } else {
                let slash = rel.lastIndex(of: UInt8(ascii: "/")).map { $0 + 1 } ?? 0
                subject = rel[slash...]
            }
            if Glob.match(rule.pattern[...], subject) { ignored = !rule.negated }
        }
        return ignored
    }
}

/// gitignore's wildmatch: `*` and `?` stop at `/`, `**` crosses directories, `[a-z]`/`[!x]` classes.
enum Glob {
    static let slash = UInt8(ascii: "/")

    static func match(_ p: ArraySlice<UInt8>, _ s: ArraySlice<UInt8>) -> Bool {
        var p = p, s = s
        while let c = p.first {
            switch c {
            case UInt8(ascii: "*"):
                if p.dropFirst().first == UInt8(ascii: "*") {
                    var rest = p.dropFirst(2)
                    // "**/" also matches zero directories.
                    if rest.first == slash {
                        rest = rest.dropFirst()
                        if match(rest, s) { return true }
                    }
                    var t = s
                    while true {
                        if match(rest, t) { return true }
                        if t.isEmpty { return false }
                        t = t.dropFirst()
                    }
                }
                let rest = p.dropFirst()
                var t = s
                while true {
                    if match(rest, t) { return true }
                    guard let first = t.first, first != slash else { return false }
                    t = t.dropFirst()
                }
            case UInt8(ascii: "?"):
                guard let first = s.first, first != slash else { return false }
                p = p.dropFirst(); s = s.dropFirst()
            case UInt8(ascii: "["):
                guard let first = s.first, first != slash, let (ok, rest) = matchClass(p.dropFirst(), first) else {
                    if s.first == UInt8(ascii: "[") { p = p.dropFirst(); s = s.dropFirst(); continue }
                    return false
                }
                guard ok else { return false }
                p = rest; s = s.dropFirst()
            case UInt8(ascii: "\\") where p.count > 1:
                guard s.first == p[p.startIndex + 1] else { return false }
                p = p.dropFirst(2); s = s.dropFirst()
            default:
                guard s.first == c else { return false }
                p = p.dropFirst(); s = s.dropFirst()
            }
        }
        return s.isEmpty
    }

    /// Matches one character against a `[…]` class; returns nil for an unterminated class.
    static func matchClass(_ p: ArraySlice<UInt8>, _ ch: UInt8) -> (Bool, ArraySlice<UInt8>)? {
        var p = p
        var negate = false
        if p.first == UInt8(ascii: "!") || p.first == UInt8(ascii: "^") { negate = true; p = p.dropFirst() }
        var matched = false
        var first = true
        while let c = p.first {
            if c == UInt8(ascii: "]") && !first { return (matched != negate, p.dropFirst()) }
            first = false
            if p.count >= 3, p[p.startIndex + 1] == UInt8(ascii: "-"), p[p.startIndex + 2] != UInt8(ascii: "]") {
                if c <= ch && ch <= p[p.startIndex + 2] { matched = true }
                p = p.dropFirst(3)
            } else {
                if c == ch { matched = true }
                p = p.dropFirst()
            }
        }
        return nil
    }
}
