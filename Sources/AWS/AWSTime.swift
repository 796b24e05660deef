import FoundationEssentials
import Glibc

/// The timestamp forms AWS speaks: `20150830T123600Z` (SigV4), ISO 8601 (XML, CloudWatch, credential_process)
/// and HTTP dates (`Last-Modified`, `Retry-After`). Done with the C library's calendar functions.
public enum AWSTime {
    static func utcFields(_ date: Date) -> tm {
        var t = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&t, &parts)
        return parts
    }

    public static func amzDate(_ date: Date) -> String {
        let t = utcFields(date)
        return (Int(t.tm_year) + 1900).padded(4) + (Int(t.tm_mon) + 1).padded(2) + Int(t.tm_mday).padded(2) + "T"
            + Int(t.tm_hour).padded(2) + Int(t.tm_min).padded(2) + Int(t.tm_sec).padded(2) + "Z"
    }

    public static func iso8601(_ date: Date) -> String {
        let t = utcFields(date)
        return (Int(t.tm_year) + 1900).padded(4) + "-" + (Int(t.tm_mon) + 1).padded(2) + "-" + Int(t.tm_mday).padded(2) + "T"
            + Int(t.tm_hour).padded(2) + ":" + Int(t.tm_min).padded(2) + ":" + Int(t.tm_sec).padded(2) + "Z"
    }

    /// Seconds since the epoch of a UTC calendar time, or nil when a field is out of range (2026-02-30).
    public static func utc(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int) -> Double? {
        guard (1...12).contains(month), (1...31).contains(day), (0...23).contains(hour), (0...59).contains(minute),
              (0...60).contains(second) else { return nil }
        var t = tm()
        t.tm_year = Int32(year - 1900)
        t.tm_mon = Int32(month - 1)
        t.tm_mday = Int32(day)
        t.tm_hour = Int32(hour)
        t.tm_min = Int32(minute)
        t.tm_sec = Int32(second)
        let secs = timegm(&t)
        guard t.tm_mday == Int32(day), t.tm_mon == Int32(month - 1) else { return nil }
        return Double(secs)
    }

    /// Parses `2026-11-25T06:33:42Z`, `…42.123Z` and `…42+01:00` (S3 XML, credential_process expiry).
    public static func parseISO8601(_ s: String) -> Date? {
        guard let p = DateTimeText.parse(s), let offset = p.offsetSeconds,
              let base = utc(year: p.year, month: p.month, day: p.day, hour: p.hour, minute: p.minute, second: p.second) else { return nil }
        return Date(timeIntervalSince1970: base - Double(offset) + p.fraction)
    }

    /// HTTP dates (`Last-Modified`, `Retry-After` as a date): RFC 7231 IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`.
    public static func parseHTTPDate(_ s: String) -> Date? {
        let parts = s.split(separator: " ")
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        guard parts.count == 6, parts[5] == "GMT", let day = Int(parts[1]), let month = months.firstIndex(of: String(parts[2])),
              let year = Int(parts[3]) else { return nil }
        let hms = parts[4].split(separator: ":").compactMap { Int($0) }
        guard hms.count == 3, let secs = utc(year: year, month: month + 1, day: day, hour: hms[0], minute: hms[1], second: hms[2]) else {
            return nil
        }
        return Date(timeIntervalSince1970: secs)
    }
}

/// `YYYY-MM-DD[T ]HH:MM[:SS[.fff]]` then `Z`, `±HH:MM`, `±HHMM`, or nothing (then `offsetSeconds` is nil).
public struct DateTimeText: Sendable {
    public var year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0
    public var fraction = 0.0
    public var offsetSeconds: Int?

    public static func parse(_ s: String) -> DateTimeText? {
        let chars = Array(s.utf8)
        var i = 0
        func number(_ count: Int) -> Int? {
            guard i + count <= chars.count, chars[i..<(i + count)].allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
            defer { i += count }
            return chars[i..<(i + count)].reduce(0) { $0 * 10 + Int($1 - 48) }
        }
        func expect(_ c: UInt8) -> Bool {
            guard i < chars.count, chars[i] == c else { return false }
            i += 1
            return true
        }
        var r = DateTimeText()
        guard let y = number(4), expect(45), let mo = number(2), expect(45), let d = number(2) else { return nil }
        guard i < chars.count, chars[i] == UInt8(ascii: "T") || chars[i] == UInt8(ascii: "t") || chars[i] == UInt8(ascii: " ") else { return nil }
        i += 1
        guard let h = number(2), expect(58), let mi = number(2) else { return nil }
        (r.year, r.month, r.day, r.hour, r.minute) = (y, mo, d, h, mi)
        if expect(58) {
            guard let sec = number(2) else { return nil }
            r.second = sec
            if expect(46) {
                let start = i
                while i < chars.count, chars[i] >= 48, chars[i] <= 57 { i += 1 }
                guard i > start, let f = Double("0." + String(decoding: chars[start..<i], as: UTF8.self)) else { return nil }
                r.fraction = f
            }
        }
        if i < chars.count {
            if chars[i] == UInt8(ascii: "Z") || chars[i] == UInt8(ascii: "z") {
                r.offsetSeconds = 0
                i += 1
            } else if chars[i] == UInt8(ascii: "+") || chars[i] == UInt8(ascii: "-") {
                let sign = chars[i] == UInt8(ascii: "-") ? -1 : 1
                i += 1
                guard let oh = number(2) else { return nil }
                _ = expect(58)
                guard let om = number(2), oh < 24, om < 60 else { return nil }
                r.offsetSeconds = sign * (oh * 3600 + om * 60)
            } else {
                return nil
            }
        }
        return i == chars.count ? r : nil
    }
}
