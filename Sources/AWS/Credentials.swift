import FoundationEssentials
import Glibc
import Synchronization

/// AWS credentials. `description` never shows the secret or the session token.
public struct Credentials: Sendable, CustomStringConvertible {
    public var accessKeyId: String
    public var secretAccessKey: String
    public var sessionToken: String?
    public var expiration: Date?
    /// Where they came from, for `doctor` and errors: "environment", "profile dev", "credential_process (profile dev)".
    public var source: String

    public init(accessKeyId: String, secretAccessKey: String, sessionToken: String? = nil,
                expiration: Date? = nil, source: String) {
        self.accessKeyId = accessKeyId
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.expiration = expiration
        self.source = source
    }

    public var description: String {
        "Credentials(access key \(Self.redact(accessKeyId)), from \(source)"
            + (expiration.map { ", expires \(AWSTime.iso8601($0))" } ?? "") + ")"
    }

    /// Shows only the last four characters of an access key id, as the AWS CLI's `configure list` does.
    public static func redact(_ keyId: String) -> String {
        keyId.count <= 4 ? "****" : String(repeating: "*", count: 16) + keyId.suffix(4)
    }
}

public struct CredentialsError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// Anything that hands out credentials; implementations cache and refresh.
public protocol CredentialProvider: Sendable {
    func credentials() throws -> Credentials
    /// Forget cached credentials, e.g. after the service said they expired.
    func invalidate()
}

/// The AWS CLI's chain, as far as this agent needs it: environment variables, then the named
/// profile in the shared credentials and config files (static keys or `credential_process`).
public final class DefaultCredentialChain: CredentialProvider {
    private let environment: [String: String]
    public let profile: String
    private let cached = Mutex<Credentials?>(nil)
    /// Refresh expiring credentials this long before they run out.
    private let refreshMargin: TimeInterval = 300

    public init(environment: [String: String], profile: String?) {
        self.environment = environment
        self.profile = profile ?? environment["AWS_PROFILE"].flatMap { $0.isEmpty ? nil : $0 } ?? "default"
    }

    public func invalidate() { cached.withLock { $0 = nil } }

    public func credentials() throws -> Credentials {
        if let c = cached.withLock({ $0 }), c.expiration.map({ $0.timeIntervalSinceNow > refreshMargin }) ?? true {
            return c
        }
        let fresh = try resolve()
        cached.withLock { $0 = fresh }
        return fresh
    }

    func resolve() throws -> Credentials {
        if let id = environment["AWS_ACCESS_KEY_ID"], !id.isEmpty {
            guard let secret = environment["AWS_SECRET_ACCESS_KEY"], !secret.isEmpty else {
                throw CredentialsError(message: "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not: set both, or unset both to use profile '\(profile)'")
            }
            let token = environment["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
            return Credentials(accessKeyId: id, secretAccessKey: secret, sessionToken: token, source: "environment")
        }
        let files = SharedConfigFiles(environment: environment)
        let section = files.profile(profile)
        if let id = section["aws_access_key_id"], let secret = section["aws_secret_access_key"] {
            return Credentials(accessKeyId: id, secretAccessKey: secret, sessionToken: section["aws_session_token"],
                               source: "profile \(profile)")
        }
        if let command = section["credential_process"] {
            return try CredentialProcess.run(command, profile: profile)
        }
        if section.isEmpty {
            throw CredentialsError(message: "no AWS credentials: AWS_ACCESS_KEY_ID is not set and profile '\(profile)' is not in \(files.credentialsPath) or \(files.configPath). Run `aws configure --profile \(profile)` or set ECOCODE_AWS_PROFILE_NAME.")
        }
        let unsupported = ["role_arn", "sso_session", "sso_start_url", "web_identity_token_file"].filter { section[$0] != nil }
        if !unsupported.isEmpty {
            throw CredentialsError(message: "profile '\(profile)' uses \(unsupported.joined(separator: ", ")), which ecocode-backup does not support; give it static keys or a credential_process (e.g. `aws configure export-credentials --profile \(profile) --format process`)")
        }
        throw CredentialsError(message: "profile '\(profile)' has no aws_access_key_id/aws_secret_access_key or credential_process")
    }
}

/// The shared `credentials` and `config` files, parsed as the AWS CLI reads them.
public struct SharedConfigFiles: Sendable {
    public let credentialsPath: String
    public let configPath: String
    let credentials: [String: [String: String]]
    let config: [String: [String: String]]

    public init(environment: [String: String]) {
        let home = environment["HOME"] ?? Env.home
        credentialsPath = environment["AWS_SHARED_CREDENTIALS_FILE"].map(Self.expandTilde(home)) ?? "\(home)/.aws/credentials"
        configPath = environment["AWS_CONFIG_FILE"].map(Self.expandTilde(home)) ?? "\(home)/.aws/config"
        credentials = Self.parseINI((try? String(contentsOfFile: credentialsPath, encoding: .utf8)) ?? "")
        config = Self.parseINI((try? String(contentsOfFile: configPath, encoding: .utf8)) ?? "")
    }

    static func expandTilde(_ home: String) -> (String) -> String {
        { $0.hasPrefix("~/") ? home + $0.dropFirst() : $0 }
    }

    /// Keys of one profile: the credentials file wins over the config file, key by key.
    public func profile(_ name: String) -> [String: String] {
        // The config file names non-default profiles "[profile x]"; the credentials file just "[x]".
        var merged = config[name == "default" ? "default" : "profile \(name)"] ?? (name == "default" ? [:] : config[name] ?? [:])
        for (k, v) in credentials[name] ?? [:] { merged[k] = v }
        return merged
    }

    static func parseINI(_ text: String) -> [String: [String: String]] {
        var sections: [String: [String: String]] = [:]
        var current: String?
        for raw in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
            let line = raw.trimmed
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                let name = line.dropFirst().dropLast().trimmed
                current = name.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
                if sections[current!] == nil { sections[current!] = [:] }
                continue
            }
            guard let section = current else { continue }
            // Indented lines continue a nested block (s3 = \n  max_concurrent_requests = 4): skip them.
            if raw.first == " " || raw.first == "\t" { continue }
            guard let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq].trimmed.lowercased()
            let value = line[line.index(after: eq)...].trimmed
            sections[section]![key] = value
        }
        return sections
    }
}

/// `credential_process`: runs the command and reads the JSON it prints (Version 1).
enum CredentialProcess {
    struct Output: Decodable {
        var Version: Int
        var AccessKeyId: String
        var SecretAccessKey: String
        var SessionToken: String?
        var Expiration: String?
    }

    static func run(_ command: String, profile: String) throws -> Credentials {
        let result = try ShellCommand.run(command)
        let data = Data(result.stdout)
        guard result.status == 0 else {
            let errText = String(decoding: result.stderr, as: UTF8.self)
            throw CredentialsError(message: "credential_process of profile '\(profile)' exited with status \(result.status): \(errText.prefix(300).trimmed)")
        }
        guard let parsed = try? JSONDecoder().decode(Output.self, from: data), parsed.Version == 1 else {
            throw CredentialsError(message: "credential_process of profile '\(profile)' did not print the expected JSON ({\"Version\": 1, \"AccessKeyId\": …, \"SecretAccessKey\": …})")
        }
        var expiration: Date?
        if let e = parsed.Expiration {
            guard let d = AWSTime.parseISO8601(e) else {
                throw CredentialsError(message: "credential_process of profile '\(profile)' printed an Expiration that is not ISO 8601: \(e)")
            }
            guard d > Date() else {
                throw CredentialsError(message: "credential_process of profile '\(profile)' returned credentials that expired at \(e); refresh your login (e.g. `aws sso login`)")
            }
            expiration = d
        }
        return Credentials(accessKeyId: parsed.AccessKeyId, secretAccessKey: parsed.SecretAccessKey,
                           sessionToken: parsed.SessionToken, expiration: expiration,
                           source: "credential_process (profile \(profile))")
    }
}
