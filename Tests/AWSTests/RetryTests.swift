import Foundation
import Synchronization
import Testing
@testable import AWS
import TestSupport

/// Records the delays the retrier asks for instead of sleeping.
final class SleepRecorder: Sendable {
    let delays = Mutex<[Double]>([])
    var sleep: @Sendable (Double) -> Void { { d in self.delays.withLock { $0.append(d) } } }
    var recorded: [Double] { delays.withLock { $0 } }
}

struct RetryPolicyTests {
    static func serviceError(_ status: Int, _ code: String, retryAfter: Double? = nil) -> AWSError {
        .service(ServiceError(operation: "PutObject", resource: "s3://b/k", status: status, code: code, message: "",
                              requestId: nil, retryAfter: retryAfter))
    }

    @Test func classifiesLikeTheStandardMode() {
        #expect(Retrier.classify(Self.serviceError(503, "SlowDown")) == .retry(timeout: false))
        #expect(Retrier.classify(Self.serviceError(400, "ThrottlingException")) == .retry(timeout: false))
        #expect(Retrier.classify(Self.serviceError(400, "RequestTimeout")) == .retry(timeout: false))
        for status in [500, 502, 503, 504] {
            #expect(Retrier.classify(Self.serviceError(status, "Whatever")) == .retry(timeout: false))
        }
        for (status, code) in [(400, "InvalidArgument"), (403, "AccessDenied"), (404, "NoSuchKey"), (409, "Conflict"), (412, "PreconditionFailed")] {
            #expect(Retrier.classify(Self.serviceError(status, code)) == .fail)
        }
        #expect(Retrier.classify(Self.serviceError(400, "ExpiredToken")) == .refreshCredentials)
        let t = { (k: TransportErrorKind) in AWSError.transport(operation: "GetObject", resource: "x", TransportError(kind: k, message: "")) }
        #expect(Retrier.classify(t(.timeout)) == .retry(timeout: true))
        #expect(Retrier.classify(t(.connectionReset)) == .retry(timeout: false))
        #expect(Retrier.classify(t(.dns)) == .retry(timeout: false))
        #expect(Retrier.classify(t(.tls)) == .fail)
        #expect(Retrier.classify(t(.local)) == .fail)
    }

    @Test func backoffIsFullJitterCappedAt20Seconds() {
        let recorder = SleepRecorder()
        var policy = Retrier.Policy()
        policy.maxAttempts = 8
        let retrier = Retrier(policy: policy, sleep: recorder.sleep, random: { 0.999 })
        var attempts = 0
        #expect(throws: AWSError.self) {
            try retrier.run { _ in attempts += 1; throw Self.serviceError(503, "SlowDown") }
        }
        #expect(attempts == 8)
        let expected = [1.0, 2, 4, 8, 16, 20, 20].map { $0 * 0.999 }
        #expect(zip(recorder.recorded, expected).allSatisfy { abs($0 - $1) < 1e-9 })
        #expect(recorder.recorded.count == 7)
    }

    @Test func retryAfterIsHonoured() throws {
        let recorder = SleepRecorder()
        let retrier = Retrier(sleep: recorder.sleep, random: { 0 })
        var n = 0
        let v = try retrier.run { _ -> Int in
            n += 1
            if n == 1 { throw Self.serviceError(503, "SlowDown", retryAfter: 7) }
            return 42
        }
        #expect(v == 42)
        #expect(recorder.recorded == [7])
    }

    @Test func nonRetryableErrorsFailAtOnce() {
        let retrier = Retrier(sleep: { _ in Issue.record("must not sleep") })
        var attempts = 0
        #expect(throws: AWSError.self) { try retrier.run { _ in attempts += 1; throw Self.serviceError(403, "AccessDenied") } }
        #expect(attempts == 1)
    }

    @Test func tokenBucketStopsARetryStormAndRefillsOnSuccess() {
        var policy = Retrier.Policy()
        policy.maxAttempts = 3
        let retrier = Retrier(policy: policy, sleep: { _ in })
        var attempts = 0
        // 500 tokens, 5 per retry: 100 retries are allowed, then requests fail on their first error.
        for _ in 0..<60 {
            _ = try? retrier.run { _ in attempts += 1; throw Self.serviceError(503, "SlowDown") }
        }
        #expect(retrier.availableTokens == 0)
        #expect(attempts == 50 * 3 + 10)
        attempts = 0
        _ = try? retrier.run { _ in attempts += 1; throw Self.serviceError(503, "SlowDown") }
        #expect(attempts == 1)
        _ = try? retrier.run { _ in 1 }
        #expect(retrier.availableTokens == 1)
        // Timeouts cost 10.
        let fresh = Retrier(policy: policy, sleep: { _ in })
        _ = try? fresh.run { _ in throw AWSError.transport(operation: "x", resource: "y", TransportError(kind: .timeout, message: "")) }
        #expect(fresh.availableTokens == 480)
        // A success after retries returns what it spent.
        var first = true
        _ = try? fresh.run { _ -> Int in
            if first { first = false; throw Self.serviceError(500, "InternalError") }
            return 1
        }
        #expect(fresh.availableTokens == 480)
    }

    @Test func expiredCredentialsAreRefreshedOnce() throws {
        let retrier = Retrier(sleep: { _ in })
        var refreshed = 0
        var n = 0
        let v = try retrier.run(onRefresh: { refreshed += 1 }) { _ -> Int in
            n += 1
            if n == 1 { throw Self.serviceError(400, "ExpiredToken") }
            return 7
        }
        #expect(v == 7 && refreshed == 1)
        #expect(throws: AWSError.self) {
            try retrier.run(onRefresh: { refreshed += 1 }) { _ in throw Self.serviceError(400, "ExpiredToken") }
        }
        #expect(refreshed == 2)
    }
}

/// Retries against injected faults on the wire: the proxy answers 503s or drops connections.
@Suite(.serialized) struct RetryOverTheWireTests {
    @Test func throttledPutsSucceedAfterRetries() throws {
        let server = try TestServer.get()
        let recorder = SleepRecorder()
        let s3 = try server.makeBucket(retrier: Retrier(policy: TestServer.fastPolicy, sleep: recorder.sleep))
        try server.injectFaults(#"[{"method": "PUT", "path_contains": "\#(s3.bucket)/throttled", "status": 503, "code": "SlowDown", "times": 2, "retry_after": "1"}]"#)
        let put = try s3.putObject(key: "throttled", payload: .bytes([1, 2, 3]))
        #expect(put.versionId != nil)
        let puts = try server.log(bucket: s3.bucket).filter { $0.method == "PUT" && $0.path.hasSuffix("/throttled") }
        #expect(puts.count == 3)
        #expect(recorder.recorded.count == 2)
        #expect(recorder.recorded.allSatisfy { $0 >= 1 })
    }

    @Test func resetConnectionsAreRetried() throws {
        let server = try TestServer.get()
        let s3 = try server.makeBucket()
        _ = try s3.putObject(key: "reset me", payload: .bytes(Array("payload".utf8)))
        try server.injectFaults(#"[{"method": "GET", "path_contains": "\#(s3.bucket)/reset%20me", "reset": true, "times": 1}]"#)
        let (body, _) = try s3.getObjectBytes(key: "reset me")
        #expect(String(decoding: body, as: UTF8.self) == "payload")
        #expect(try server.log(bucket: s3.bucket).filter { $0.method == "GET" }.count == 2)
    }

    @Test func clientErrorsAreNotRetriedAndPersistentFailuresStopAtMaxAttempts() throws {
        let server = try TestServer.get()
        let s3 = try server.makeBucket()
        try server.injectFaults(#"[{"method": "PUT", "path_contains": "\#(s3.bucket)/bad", "status": 400, "code": "InvalidArgument", "times": 5}]"#)
        #expect(throws: AWSError.self) { try s3.putObject(key: "bad", payload: .bytes([1])) }
        #expect(try server.log(bucket: s3.bucket).filter { $0.path.hasSuffix("/bad") }.count == 1)

        try server.injectFaults(#"[{"method": "PUT", "path_contains": "\#(s3.bucket)/down", "status": 500, "code": "InternalError", "times": 10}]"#)
        do {
            _ = try s3.putObject(key: "down", payload: .bytes([1]))
            Issue.record("expected failure")
        } catch let AWSError.service(e) {
            #expect(e.code == "InternalError" && e.status == 500)
        }
        #expect(try server.log(bucket: s3.bucket).filter { $0.path.hasSuffix("/down") }.count == 3)
    }
}

struct TransportErrorTests {
    @Test func refusedConnectionIsAConnectError() throws {
        let port = try closedPort()
        do {
            _ = try HTTPTransport().perform(HTTPRequest(method: "GET", scheme: "http", host: "127.0.0.1:\(port)"))
            Issue.record("expected failure")
        } catch let e as TransportError {
            #expect(e.kind == .connect)
        }
    }

    @Test func unresolvableHostIsADNSError() throws {
        do {
            _ = try HTTPTransport().perform(HTTPRequest(method: "GET", scheme: "http", host: "no-such-host.invalid"))
            Issue.record("expected failure")
        } catch let e as TransportError {
            #expect(e.kind == .dns)
        }
    }

    @Test func stalledServerIsATimeout() throws {
        // A listening socket that never answers: the low-speed limit ends the transfer.
        let (fd, port) = try loopbackSocket(listening: true)
        defer { close(fd) }
        var options = HTTPTransport.Options()
        options.lowSpeedSeconds = 1
        do {
            _ = try HTTPTransport(options: options).perform(HTTPRequest(method: "GET", scheme: "http", host: "127.0.0.1:\(port)"))
            Issue.record("expected timeout")
        } catch let e as TransportError {
            #expect(e.kind == .timeout)
        }
    }

    @Test func aFileThatShrinksMidUploadFailsInsteadOfSendingAShortBody() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("shrink-\(UUID().uuidString)").path
        FileManager.default.createFile(atPath: path, contents: Data(count: 10))
        defer { unlink(path) }
        let server = try TestServer.get()
        do {
            _ = try HTTPTransport().perform(HTTPRequest(method: "PUT", scheme: "http", host: "127.0.0.1:\(server.proxyPort)",
                                                         path: "/__proxy/clear", body: .file(path: path, offset: 0, length: 1000)))
            Issue.record("expected failure")
        } catch let e as TransportError {
            #expect(e.kind == .local)
            #expect(e.message.contains("shorter"))
        }
    }

    func closedPort() throws -> UInt16 {
        let (fd, port) = try loopbackSocket(listening: false)
        close(fd)
        return port
    }

    /// A TCP socket bound to a free loopback port; listening (but never accepting) when asked.
    func loopbackSocket(listening: Bool) throws -> (Int32, UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        try #require(withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } } == 0)
        if listening { listen(fd, 4) }
        withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(fd, $0, &len) } }
        return (fd, UInt16(bigEndian: addr.sin_port))
    }
}
