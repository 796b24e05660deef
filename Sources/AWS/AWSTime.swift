import Foundation

/// The timestamp forms AWS speaks: `20150830T123600Z` (SigV4) and ISO 8601 (XML, CloudWatch).
public enum AWSTime {
    static func utcFields(_ date: Date) -> tm {
        var t = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&t, &parts)
        return parts
    }

    public static func amzDate(_ date: Date) -> String {
        let t = utcFields(date)
        return String(format: "%04d%02d%02dT%02d%02d%02dZ", Int(t.tm_year) + 1900, Int(t.tm_mon) + 1,
                      Int(t.tm_mday), Int(t.tm_hour), Int(t.tm_min), Int(t.tm_sec))
    }

    public static func iso8601(_ date: Date) -> String {
        let t = utcFields(date)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02dZ", Int(t.tm_year) + 1900, Int(t.tm_mon) + 1,
                      Int(t.tm_mday), Int(t.tm_hour), Int(t.tm_min), Int(t.tm_sec))
    }

    /// Parses `2026-11-25T06:33:42Z`, `…42.123Z` and `…42+01:00` (S3 XML, credential_process expiry).
    public static func parseISO8601(_ s: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = f.date(from: s) { return d }
        f.formatOptions = [.withInternetDateTime]
        return f.date(from: s)
    }

    /// HTTP dates (`Last-Modified`, `Retry-After` as a date): RFC 7231 IMF-fixdate.
    public static func parseHTTPDate(_ s: String) -> Date? {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return f.date(from: s)
    }
}
