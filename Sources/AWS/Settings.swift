import FoundationEssentials
import Glibc

/// The agent's settings, from (highest first) command-line flags, the environment, then the
/// env-style file `$XDG_CONFIG_HOME/ecocode/backup.env`. Variable names follow the EcoCode cloud guide.
public struct Settings: Sendable {
    public enum Source: String, Sendable { case flag, environment, file, profile, `default` }

    public var region: String?
    public var profile: String?
    public var bucket: String?
    public var useS3Sync: Bool
    public var kmsKeyId: String?
    public var prefix: String
    public var stateDir: String
    /// Which layer each variable came from, for `status`/`doctor` output.
    public var sources: [String: Source]
    /// Accepted but questionable combinations, for the caller to log.
    public var warnings: [String]
    /// The merged variables (flags > environment > file), including the AWS_* ones.
    public var environment: [String: String]

    /// True when backups go to S3; otherwise to the local versioned store.
    public var usesS3: Bool { useS3Sync && bucket != nil }

    public static let known = [
        "ECOCODE_AWS_REGION_NAME", "ECOCODE_AWS_PROFILE_NAME", "ECOCODE_AWS_WORKSPACE_BUCKET",
        "ECOCODE_AWS_USE_S3_SYNC", "ECOCODE_AWS_KMS_KEY_ID", "ECOCODE_BACKUP_PREFIX", "ECOCODE_BACKUP_STATE_DIR",
    ]
    /// Other flags of the EcoCode guide: accepted, not used by this agent.
    public static let ignored = ["ECOCODE_AWS_USE_BEDROCK", "ECOCODE_AWS_USE_SECRETS_MANAGER"]

    public static func configFilePath(environment: [String: String]) -> String {
        let base = environment["XDG_CONFIG_HOME"].flatMap { $0.hasPrefix("/") ? $0 : nil }
            ?? (environment["HOME"] ?? Env.home) + "/.config"
        return base + "/ecocode/backup.env"
    }

    /// Merges the three layers and validates every value; throws `SettingsError` naming the variable.
    public static func load(flags: [String: String] = [:],
                            environment: [String: String] = ProcessInfo.processInfo.environment,
                            configFile: String? = nil) throws -> Settings {
        let path = configFile ?? configFilePath(environment: environment)
        var fileValues: [String: String] = [:]
        if FileManager.default.fileExists(atPath: path) {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw SettingsError(variable: path, message: "cannot be read; check its permissions")
            }
            fileValues = try EnvFile.parse(text, path: path)
        }
        var merged = fileValues
        var sources: [String: Source] = fileValues.mapValues { _ in .file }
        for (k, v) in environment { merged[k] = v; sources[k] = .environment }
        for (k, v) in flags { merged[k] = v; sources[k] = .flag }

        func value(_ name: String) -> String? {
            guard let v = merged[name]?.trimmed, !v.isEmpty else { return nil }
            return v
        }

        var warnings: [String] = []
        let bucket = try value("ECOCODE_AWS_WORKSPACE_BUCKET").map { try validateBucket($0) }
        let useS3 = try value("ECOCODE_AWS_USE_S3_SYNC").map { try parseBool($0, variable: "ECOCODE_AWS_USE_S3_SYNC") } ?? true
        if useS3, bucket == nil, value("ECOCODE_AWS_USE_S3_SYNC") != nil {
            warnings.append("ECOCODE_AWS_USE_S3_SYNC is on but ECOCODE_AWS_WORKSPACE_BUCKET is not set: backing up to the local store")
        }
        let region = try value("ECOCODE_AWS_REGION_NAME").map { try validateRegion($0, variable: "ECOCODE_AWS_REGION_NAME") }
        let kms = try value("ECOCODE_AWS_KMS_KEY_ID").map { try validateKMSKey($0) }
        let user = merged["USER"] ?? merged["LOGNAME"] ?? Env.userName
        let prefix = try validatePrefix(value("ECOCODE_BACKUP_PREFIX") ?? "workspaces/\(user)")
        let stateHome = merged["XDG_STATE_HOME"].flatMap { $0.hasPrefix("/") ? $0 : nil }
            ?? (merged["HOME"] ?? Env.home) + "/.local/state"
        let stateDir = value("ECOCODE_BACKUP_STATE_DIR") ?? stateHome + "/ecocode-backup"
        guard stateDir.hasPrefix("/") else {
            throw SettingsError(variable: "ECOCODE_BACKUP_STATE_DIR", message: "must be an absolute path, got '\(stateDir)'")
        }
        for name in known where sources[name] == nil { sources[name] = .default }
        return Settings(region: region, profile: value("ECOCODE_AWS_PROFILE_NAME"), bucket: bucket, useS3Sync: useS3,
                        kmsKeyId: kms, prefix: prefix, stateDir: stateDir, sources: sources, warnings: warnings,
                        environment: merged)
    }

    static func parseBool(_ s: String, variable: String) throws -> Bool {
        switch s.lowercased() {
        case "true", "1", "yes", "on": return true
        case "false", "0", "no", "off": return false
        default: throw SettingsError(variable: variable, message: "must be true/false, 1/0 or yes/no, got '\(s)'")
        }
    }

    /// S3's general-purpose bucket naming rules.
    public static func validateBucket(_ name: String) throws -> String {
        func fail(_ why: String) -> SettingsError {
            SettingsError(variable: "ECOCODE_AWS_WORKSPACE_BUCKET", message: "'\(name)' is not a valid S3 bucket name: \(why)")
        }
        guard (3...63).contains(name.count) else { throw fail("it must be 3 to 63 characters long") }
        guard name.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "." || $0 == "-" }) else {
            throw fail("only lowercase letters, digits, dots and hyphens are allowed")
        }
        guard let f = name.first, let l = name.last, f.isLetter || f.isNumber, l.isLetter || l.isNumber else {
            throw fail("it must begin and end with a letter or digit")
        }
        guard !name.contains("..") else { throw fail("it must not contain two adjacent dots") }
        let quads = name.split(separator: ".")
        if quads.count == 4, quads.allSatisfy({ Int($0).map { (0...255).contains($0) } ?? false }) {
            throw fail("it must not look like an IP address")
        }
        for p in ["xn--", "sthree-", "amzn-s3-demo-"] where name.hasPrefix(p) { throw fail("the prefix '\(p)' is reserved") }
        for s in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"] where name.hasSuffix(s) {
            throw fail("the suffix '\(s)' is reserved")
        }
        return name
    }

    /// Region names look like `us-east-1`, `eu-central-2`, `us-gov-west-1`.
    public static func validateRegion(_ region: String, variable: String) throws -> String {
        let parts = region.split(separator: "-", omittingEmptySubsequences: false)
        let ok = parts.count >= 3
            && parts.dropLast().allSatisfy { !$0.isEmpty && $0.allSatisfy { ("a"..."z").contains($0) } }
            && parts[0].count >= 2
            && !(parts.last!.isEmpty) && parts.last!.allSatisfy(\.isNumber)
        guard ok else {
            throw SettingsError(variable: variable, message: "'\(region)' is not an AWS region name (like us-east-1 or eu-central-1)")
        }
        return region
    }

    /// A key id (UUID or `mrk-…`), key ARN, `alias/name` or alias ARN.
    static func validateKMSKey(_ key: String) throws -> String {
        let ok = !key.contains(where: { $0.isWhitespace })
            && (key.hasPrefix("arn:aws") && key.contains(":kms:")
                || key.hasPrefix("alias/") && key.count > 6
                || key.wholeMatch(of: /(mrk-)?[0-9a-fA-F-]{32,36}/) != nil)
        guard ok else {
            throw SettingsError(variable: "ECOCODE_AWS_KMS_KEY_ID",
                                message: "'\(key)' is not a KMS key id, key ARN, alias/NAME or alias ARN")
        }
        return key
    }

    /// The key prefix: relative, no empty, `.` or `..` segments; a trailing slash is dropped.
    static func validatePrefix(_ raw: String) throws -> String {
        var prefix = raw
        while prefix.hasSuffix("/") { prefix.removeLast() }
        let segments = prefix.split(separator: "/", omittingEmptySubsequences: false)
        guard !prefix.hasPrefix("/"), prefix.isEmpty || segments.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." }) else {
            throw SettingsError(variable: "ECOCODE_BACKUP_PREFIX",
                                message: "'\(raw)' must be a relative key prefix like workspaces/alice, without empty, '.' or '..' segments")
        }
        return prefix
    }
}

public struct SettingsError: Error, Sendable, CustomStringConvertible {
    public var variable: String
    public var message: String
    public var description: String { "\(variable) \(message)" }
}

/// `KEY=value` lines as in the EcoCode guide's `.env`: `export` allowed, `#` comments, quotes stripped.
public enum EnvFile {
    public static func parse(_ text: String, path: String) throws -> [String: String] {
        var values: [String: String] = [:]
        for (index, raw) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            var line = raw.trimmed
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("export ") { line = String(line.dropFirst(7)).trimmed }
            guard let eq = line.firstIndex(of: "="),
                  case let key = line[..<eq].trimmed,
                  !key.isEmpty, key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
                throw SettingsError(variable: "\(path):\(index + 1)", message: "is not a KEY=value line")
            }
            var value = line[line.index(after: eq)...].trimmed
            if let q = value.first, q == "\"" || q == "'" {
                let rest = value.dropFirst()
                guard let close = rest.firstIndex(of: q),
                      case let after = rest[rest.index(after: close)...].trimmed,
                      after.isEmpty || after.hasPrefix("#") else {
                    throw SettingsError(variable: "\(path):\(index + 1)", message: "has an unterminated quote")
                }
                value = String(rest[..<close])
            } else if let hash = value.firstRange(of: " #") {
                value = value[..<hash.lowerBound].trimmed
            }
            values[key] = value
        }
        return values
    }
}
