import FoundationEssentials
import Glibc

/// Where requests go and how they are signed, resolved once from settings and the AWS environment.
public struct AWSContext: Sendable {
    public var region: String
    public var regionSource: String
    public var s3Endpoint: Endpoint
    public var cloudWatchEndpoint: Endpoint
    public var credentials: any CredentialProvider

    public struct Endpoint: Sendable {
        public var scheme: String
        public var host: String      // with ":port" when not the default
        public var basePath: String  // "" or "/some/prefix"
        /// Custom endpoints (moto, MinIO, VPC endpoints) get path-style bucket addressing.
        public var isCustom: Bool
    }

    public static func resolve(settings: Settings) throws -> AWSContext {
        let env = settings.environment
        let chain = DefaultCredentialChain(environment: env, profile: settings.profile)
        var region = settings.region
        var regionSource = "ECOCODE_AWS_REGION_NAME"
        if region == nil, let r = env["AWS_REGION"] ?? env["AWS_DEFAULT_REGION"], !r.isEmpty {
            region = try Settings.validateRegion(r, variable: env["AWS_REGION"] != nil ? "AWS_REGION" : "AWS_DEFAULT_REGION")
            regionSource = env["AWS_REGION"] != nil ? "AWS_REGION" : "AWS_DEFAULT_REGION"
        }
        if region == nil, let r = SharedConfigFiles(environment: env).profile(chain.profile)["region"] {
            region = try Settings.validateRegion(r, variable: "region of profile '\(chain.profile)'")
            regionSource = "profile \(chain.profile)"
        }
        guard let region else {
            throw SettingsError(variable: "ECOCODE_AWS_REGION_NAME",
                                message: "is not set, nor AWS_REGION, nor a region in profile '\(chain.profile)': set ECOCODE_AWS_REGION_NAME=us-east-1 (your bucket's region)")
        }
        let s3 = try endpoint(env["AWS_ENDPOINT_URL_S3"] ?? env["AWS_ENDPOINT_URL"], variable: env["AWS_ENDPOINT_URL_S3"] != nil ? "AWS_ENDPOINT_URL_S3" : "AWS_ENDPOINT_URL")
            ?? Endpoint(scheme: "https", host: "s3.\(region).\(dnsSuffix(region))", basePath: "", isCustom: false)
        let cw = try endpoint(env["AWS_ENDPOINT_URL_CLOUDWATCH"] ?? env["AWS_ENDPOINT_URL"], variable: env["AWS_ENDPOINT_URL_CLOUDWATCH"] != nil ? "AWS_ENDPOINT_URL_CLOUDWATCH" : "AWS_ENDPOINT_URL")
            ?? Endpoint(scheme: "https", host: "monitoring.\(region).\(dnsSuffix(region))", basePath: "", isCustom: false)
        return AWSContext(region: region, regionSource: regionSource, s3Endpoint: s3, cloudWatchEndpoint: cw, credentials: chain)
    }

    static func dnsSuffix(_ region: String) -> String {
        region.hasPrefix("cn-") ? "amazonaws.com.cn" : "amazonaws.com"
    }

    static func endpoint(_ url: String?, variable: String) throws -> Endpoint? {
        guard let url, !url.isEmpty else { return nil }
        guard let c = URLComponents(string: url), let scheme = c.scheme?.lowercased(), scheme == "http" || scheme == "https",
              let host = c.host, !host.isEmpty, c.query == nil else {
            throw SettingsError(variable: variable, message: "'\(url)' is not an http(s) URL like http://127.0.0.1:5000")
        }
        var path = c.percentEncodedPath
        while path.hasSuffix("/") { path.removeLast() }
        return Endpoint(scheme: scheme, host: host + (c.port.map { ":\($0)" } ?? ""), basePath: path, isCustom: true)
    }
}
