/// An AWS request that failed, with what the user needs to act on it.
public enum AWSError: Error, Sendable, CustomStringConvertible {
    /// The service answered with an error status (S3 XML or CloudWatch query error document).
    case service(ServiceError)
    /// The request never got an HTTP answer.
    case transport(operation: String, resource: String, TransportError)
    case credentials(CredentialsError)
    case malformedResponse(operation: String, String)

    public var description: String {
        switch self {
        case .service(let e): return e.description
        case .transport(let op, let resource, let e): return "\(op) \(resource): \(e)"
        case .credentials(let e): return e.message
        case .malformedResponse(let op, let why): return "\(op): unexpected response: \(why)"
        }
    }

    public var serviceError: ServiceError? {
        if case .service(let e) = self { return e }
        return nil
    }
}

public struct ServiceError: Error, Sendable, CustomStringConvertible {
    public var operation: String
    public var resource: String
    public var status: Int
    /// S3's `Code` (`NoSuchKey`, `SlowDown`, …) or, for body-less answers (HEAD), one named after the status.
    public var code: String
    public var message: String
    public var requestId: String?
    /// Seconds from a `Retry-After` header, when the service sent one.
    public var retryAfter: Double?
    /// S3's `x-amz-bucket-region`, which tells where a bucket really lives after a 301/400.
    public var bucketRegion: String?

    public var description: String {
        var s = "\(operation) \(resource): \(code) (HTTP \(status))"
        if !message.isEmpty { s += ": \(message)" }
        if let r = bucketRegion { s += " — the bucket is in region \(r); set ECOCODE_AWS_REGION_NAME=\(r)" }
        if let id = requestId { s += " [request id \(id)]" }
        return s
    }

    /// Builds the error from a response: S3's `<Error>`, the query API's `<ErrorResponse><Error>`, or just the status.
    static func from(_ response: HTTPResponse, operation: String, resource: String) -> ServiceError {
        var code = ""
        var message = ""
        var requestId = response.header("x-amz-request-id") ?? response.header("x-amzn-requestid")
        if !response.body.isEmpty, let doc = try? XMLNode.parse(response.body) {
            let error = doc.name == "Error" ? doc : (doc.child("Error") ?? doc)
            code = error["Code"] ?? ""
            message = error["Message"] ?? ""
            requestId = error["RequestId"] ?? doc["RequestId"] ?? requestId
        }
        if code.isEmpty { code = statusName(response.status) }
        let retryAfter = response.header("retry-after").flatMap { value -> Double? in
            if let seconds = Double(value) { return seconds }
            return AWSTime.parseHTTPDate(value).map { max(0, $0.timeIntervalSinceNow) }
        }
        return ServiceError(operation: operation, resource: resource, status: response.status, code: code,
                            message: message, requestId: requestId, retryAfter: retryAfter,
                            bucketRegion: response.status == 301 || response.status == 400 ? response.header("x-amz-bucket-region") : nil)
    }

    static func statusName(_ status: Int) -> String {
        switch status {
        case 301: return "PermanentRedirect"
        case 304: return "NotModified"
        case 400: return "BadRequest"
        case 403: return "Forbidden"
        case 404: return "NotFound"
        case 405: return "MethodNotAllowed"
        case 412: return "PreconditionFailed"
        case 416: return "InvalidRange"
        case 429: return "TooManyRequests"
        case 500: return "InternalError"
        case 503: return "ServiceUnavailable"
        default: return "HTTP\(status)"
        }
    }
}
