import Foundation

/// The moments `restore --at` understands.
public enum PointInTime {
    public static let accepted = """
    accepted forms: RFC 3339 / ISO 8601 with Z or an offset (2026-11-25T14:30:00Z, 2026-11-25T14:30:00+01:00), \
    local time "YYYY-MM-DD HH:MM[:SS]", @<unix seconds> (@1764081000), relative "<N>s|m|h|d ago" or \
    "<N> seconds|minutes|hours|days ago", or now
    """

    public struct ParseError: Error, CustomStringConvertible {
        public var input: String
        public var description: String { "cannot read the time '\(input)'; \(PointInTime.accepted)" }
    }

    public static func parse(_ raw: String, now: Date = Date(), timeZone: TimeZone = .current) throws -> Date {
        let s = raw.trimmingCharacters(in: .whitespaces)
        if s.lowercased() == "now" { return now }
        if s.hasPrefix("@"), let secs = Double(s.dropFirst()), secs.isFinite { return Date(timeIntervalSince1970: secs) }
        if let d = relative(s.lowercased(), now: now) { return d }
        if let d = absolute(s, localZone: timeZone) { return d }
        throw ParseError(input: raw)
    }

    static func relative(_ s: String, now: Date) -> Date? {
        guard s.hasSuffix(" ago") else { return nil }
        let body = s.dropLast(4).trimmingCharacters(in: .whitespaces)
        let digits = body.prefix { $0.isNumber }
        guard let n = Double(digits), !digits.isEmpty else { return nil }
        let unit = body.dropFirst(digits.count).trimmingCharacters(in: .whitespaces)
        let seconds: Double
        switch unit {
        case "s", "sec", "secs", "second", "seconds": seconds = 1
        case "m", "min", "mins", "minute", "minutes": seconds = 60
        case "h", "hr", "hrs", "hour", "hours": seconds = 3600
        case "d", "day", "days": seconds = 86400
        default: return nil
        }
        return now.addingTimeInterval(-n * seconds)
    }

    /// `YYYY-MM-DD[T ]HH:MM[:SS[.fff]]` then `Z`, `±HH:MM`, `±HHMM`, or nothing (local time).
    static func absolute(_ s: String, localZone: TimeZone) -> Date? {
        let chars = Array(s.utf8)
        var i = 0
        func number(_ count: Int) -> Int? {
            guard i + count <= chars.count, chars[i..<(i + count)].allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
            defer { i += count }
            return chars[i..<(i + count)].reduce(0) { $0 * 10 + Int($1 - 48) }
        }
        func expect(_ c: Character) -> Bool {
            guard i < chars.count, chars[i] == c.asciiValue! else { return false }
            i += 1
            return true
        }
        guard let year = number(4), expect("-"), let month = number(2), expect("-"), let day = number(2) else { return nil }
        guard i < chars.count, chars[i] == UInt8(ascii: "T") || chars[i] == UInt8(ascii: "t") || chars[i] == UInt8(ascii: " ") else { return nil }
        i += 1
        guard let hour = number(2), expect(":"), let minute = number(2) else { return nil }
        var second = 0
        var fraction = 0.0
        if expect(":") {
            guard let sec = number(2) else { return nil }
            second = sec
            if expect(".") {
                let start = i
                while i < chars.count, chars[i] >= 48, chars[i] <= 57 { i += 1 }
                guard i > start, let f = Double("0." + String(decoding: chars[start..<i], as: UTF8.self)) else { return nil }
                fraction = f
            }
        }
        var zone: TimeZone? = localZone
        if i < chars.count {
            if chars[i] == UInt8(ascii: "Z") || chars[i] == UInt8(ascii: "z") {
                zone = TimeZone(secondsFromGMT: 0)
                i += 1
            } else if chars[i] == UInt8(ascii: "+") || chars[i] == UInt8(ascii: "-") {
                let sign = chars[i] == UInt8(ascii: "-") ? -1 : 1
                i += 1
                guard let oh = number(2) else { return nil }
                _ = expect(":")
                guard let om = number(2), oh < 24, om < 60 else { return nil }
                zone = TimeZone(secondsFromGMT: sign * (oh * 3600 + om * 60))
            } else {
                return nil
            }
        }
        guard i == chars.count, let zone, (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else {
            return nil
        }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        let parts = DateComponents(year: year, month: month, day: day, hour: hour, minute: minute, second: second)
        guard let date = calendar.date(from: parts),
              calendar.component(.day, from: date) == day else { return nil }  // 2026-02-30 is not a day
        return date.addingTimeInterval(fraction)
    }
}
