import Glibc

/// Small text helpers, so the binary needs only FoundationEssentials (no ICU, a smaller resident agent).
extension StringProtocol {
    /// Without leading and trailing white space (spaces, tabs, line ends; "\r\n" is one Character).
    public var trimmed: String {
        guard let first = firstIndex(where: { !$0.isWhitespace }), let last = lastIndex(where: { !$0.isWhitespace }) else { return "" }
        return String(self[first...last])
    }
}

extension BinaryInteger {
    /// Decimal, zero-padded to `width` digits.
    public func padded(_ width: Int) -> String {
        let s = String(self)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }
}

extension Double {
    /// Fixed-point with `digits` decimals ("%.Nf").
    public func fixed(_ digits: Int) -> String {
        var buf = [CChar](repeating: 0, count: 64)
        _ = withVaList([self]) { vsnprintf(&buf, 64, "%.\(digits)f", $0) }
        return String(cString: buf)
    }
}

/// The user's home directory and name from the password database (what `~` and `$USER` default to).
public enum Env {
    public static var home: String {
        if let pw = getpwuid(getuid()), let dir = pw.pointee.pw_dir { return String(cString: dir) }
        return "/"
    }

    public static var userName: String {
        if let pw = getpwuid(getuid()), let name = pw.pointee.pw_name { return String(cString: name) }
        return "user\(getuid())"
    }
}
