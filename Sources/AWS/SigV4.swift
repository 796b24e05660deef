import FoundationEssentials
import Glibc

/// AWS Signature Version 4, header form.
/// S3 signs the wire path as it is (encoded once, never normalized); other services normalize the
/// path and encode it a second time. See AWS's "Create a signed AWS API request".
public struct SigV4Signer: Sendable {
    public var service: String
    public var region: String
    /// Non-S3 services: remove dot segments and duplicate slashes before encoding.
    public var normalizePath: Bool
    /// Non-S3 services: the canonical URI is the wire path encoded once more.
    public var doubleEncodePath: Bool
    /// S3 requires `x-amz-content-sha256`; the published test vectors don't carry it.
    public var sendsContentSHA256: Bool

    public init(service: String, region: String) {
        self.service = service
        self.region = region
        let isS3 = service == "s3"
        normalizePath = !isS3
        doubleEncodePath = !isS3
        sendsContentSHA256 = isS3
    }

    public struct Signature: Sendable {
        public var canonicalRequest: String
        public var stringToSign: String
        public var signature: String
        public var authorization: String
    }

    /// Adds `x-amz-date`, `x-amz-content-sha256` (S3), `x-amz-security-token` and `Authorization`.
    /// `omitSessionTokenFromSignature` appends the token after signing (services that want it unsigned).
    @discardableResult
    public func sign(_ request: inout HTTPRequest, payloadSHA256: String, credentials: Credentials,
                     date: Date, omitSessionTokenFromSignature: Bool = false) -> Signature {
        let amzDate = AWSTime.amzDate(date)
        request.setHeader("X-Amz-Date", amzDate)
        if sendsContentSHA256 { request.setHeader("X-Amz-Content-SHA256", payloadSHA256) }
        let token = credentials.sessionToken.flatMap { $0.isEmpty ? nil : $0 }
        if let token, !omitSessionTokenFromSignature { request.setHeader("X-Amz-Security-Token", token) }
        if request.header("Host") == nil { request.headers.insert(("Host", request.host), at: 0) }

        let (canonicalHeaders, signedHeaders) = Self.canonicalHeaders(request.headers)
        let canonical = [
            request.method,
            canonicalURI(request.path),
            request.canonicalQuery,
            canonicalHeaders,
            signedHeaders,
            payloadSHA256,
        ].joined(separator: "\n")

        let day = String(amzDate.prefix(8))
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let stringToSign = ["AWS4-HMAC-SHA256", amzDate, scope,
                            SHA256.hash(Array(canonical.utf8)).hex].joined(separator: "\n")
        var key = HMAC.sha256(key: Array("AWS4\(credentials.secretAccessKey)".utf8), data: Array(day.utf8))
        for part in [region, service, "aws4_request"] { key = HMAC.sha256(key: key, data: Array(part.utf8)) }
        let signature = HMAC.sha256(key: key, data: Array(stringToSign.utf8)).hex
        let authorization = "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyId)/\(scope), "
            + "SignedHeaders=\(signedHeaders), Signature=\(signature)"
        request.setHeader("Authorization", authorization)
        if let token, omitSessionTokenFromSignature { request.setHeader("X-Amz-Security-Token", token) }
        return Signature(canonicalRequest: canonical, stringToSign: stringToSign,
                         signature: signature, authorization: authorization)
    }

    func canonicalURI(_ wirePath: String) -> String {
        var path = wirePath.isEmpty ? "/" : wirePath
        if normalizePath { path = Self.removeDotSegments(path) }
        return doubleEncodePath ? URIEncoding.encode(path, keepSlash: true) : path
    }

    /// RFC 3986 §5.2.4 plus collapsing empty segments, as the non-S3 services expect.
    static func removeDotSegments(_ path: String) -> String {
        var out: [Substring] = []
        for seg in path.split(separator: "/", omittingEmptySubsequences: true) {
            if seg == "." { continue }
            if seg == ".." { _ = out.popLast(); continue }
            out.append(seg)
        }
        var result = "/" + out.joined(separator: "/")
        let last = path.split(separator: "/", omittingEmptySubsequences: false).last
        if path.hasSuffix("/") || last == "." || last == "..", result != "/" { result += "/" }
        return result
    }

    /// Lowercased names, values trimmed with inner runs of spaces folded, repeats joined by commas.
    static func canonicalHeaders(_ headers: [(String, String)]) -> (String, String) {
        var merged: [String: [String]] = [:]
        for (name, value) in headers {
            let n = name.lowercased()
            if n == "authorization" { continue }
            merged[n, default: []].append(trimAll(value))
        }
        let names = merged.keys.sorted()
        let lines = names.map { "\($0):\(merged[$0]!.joined(separator: ","))\n" }.joined()
        return (lines, names.joined(separator: ";"))
    }

    static func trimAll(_ value: String) -> String {
        value.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" })
            .joined(separator: " ")
    }
}
