import AWS
import FoundationEssentials
import Glibc

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

    /// Local times (no offset) are read in the process's time zone (`TZ`).
    public static func parse(_ raw: String, now: Date = Date()) throws -> Date {
        let s = raw.trimmed
        if s.lowercased() == "now" { return now }
        if s.hasPrefix("@"), let secs = Double(s.dropFirst()), secs.isFinite { return Date(timeIntervalSince1970: secs) }
        if let d = relative(s.lowercased(), now: now) { return d }
        if let d = absolute(s) { return d }
        throw ParseError(input: raw)
    }

    static func relative(_ s: String, now: Date) -> Date? {
        guard s.hasSuffix(" ago") else { return nil }
        let body = s.dropLast(4).trimmed
        let digits = body.prefix { $0.isNumber }
        guard let n = Double(digits), !digits.isEmpty else { return nil }
        let unit = body.dropFirst(digits.count).trimmed
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

    static func absolute(_ s: String) -> Date? {
        guard let p = DateTimeText.parse(s) else { return nil }
        if let offset = p.offsetSeconds {
            guard let base = AWSTime.utc(year: p.year, month: p.month, day: p.day, hour: p.hour, minute: p.minute, second: p.second) else {
                return nil
            }
            return Date(timeIntervalSince1970: base - Double(offset) + p.fraction)
        }
        // Local time: mktime applies the zone's offset and daylight saving for that date.
        guard AWSTime.utc(year: p.year, month: p.month, day: p.day, hour: p.hour, minute: p.minute, second: p.second) != nil else {
            return nil
        }
        var t = tm()
        t.tm_year = Int32(p.year - 1900)
        t.tm_mon = Int32(p.month - 1)
        t.tm_mday = Int32(p.day)
        t.tm_hour = Int32(p.hour)
        t.tm_min = Int32(p.minute)
        t.tm_sec = Int32(p.second)
        t.tm_isdst = -1
        let secs = mktime(&t)
        return secs == -1 ? nil : Date(timeIntervalSince1970: Double(secs) + p.fraction)
    }
}
