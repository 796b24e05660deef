import FoundationEssentials
import Glibc

/// Signs, sends and retries requests for one service. S3 and CloudWatch clients are built on it.
public struct AWSClient: Sendable {
    public let signer: SigV4Signer
    public let credentials: any CredentialProvider
    public let transport: HTTPTransport
    public let retrier: Retrier
    let now: @Sendable () -> Date

    public init(service: String, region: String, credentials: any CredentialProvider,
                transport: HTTPTransport, retrier: Retrier, now: @escaping @Sendable () -> Date = { Date() }) {
        self.signer = SigV4Signer(service: service, region: region)
        self.credentials = credentials
        self.transport = transport
        self.retrier = retrier
        self.now = now
    }

    /// Sends `request`, signed afresh for every attempt; returns only 2xx answers, throws `AWSError` otherwise.
    public func send(_ request: HTTPRequest, payloadSHA256: String, operation: String, resource: String,
                     sink: ResponseSink = .memory) throws -> HTTPResponse {
        try retrier.run(onRefresh: { credentials.invalidate() }) { _ in
            let creds: Credentials
            do { creds = try credentials.credentials() } catch let e as CredentialsError { throw AWSError.credentials(e) }
            if let exp = creds.expiration, exp <= now() {
                throw AWSError.credentials(CredentialsError(message: "AWS credentials from \(creds.source) expired at \(AWSTime.iso8601(exp)); refresh them"))
            }
            var signed = request
            signer.sign(&signed, payloadSHA256: payloadSHA256, credentials: creds, date: now())
            let response: HTTPResponse
            do { response = try transport.perform(signed, sink: sink) } catch let e as TransportError {
                throw AWSError.transport(operation: operation, resource: resource, e)
            }
            guard (200...299).contains(response.status) else {
                throw AWSError.service(ServiceError.from(response, operation: operation, resource: resource))
            }
            return response
        }
    }
}
