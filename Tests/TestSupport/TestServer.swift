import Foundation
import Synchronization
import AWS

/// PID of the harness and the write end of its stdin; closing it (or SIGTERM) stops harness and moto.
private let harness = Mutex<(pid: Int32, stdin: Int32)>((0, -1))

/// moto behind the verifying proxy (Tests/tools/s3_verify_proxy.py), started once per test process on
/// free loopback ports and stopped by PID at exit. If it cannot start, every S3 test fails with the reason.
public final class TestServer: Sendable {
    public static let accessKey = "AKIDECOCODETEST"
    public static let secretKey = "ecocode/test+secret=key"

    public let proxyPort: Int
    public let motoPort: Int
    private let process: Process
    private let stdinPipe: Pipe

    public static let shared: Result<TestServer, HarnessError> = Result { try TestServer() }.mapError { $0 as! HarnessError }

    public struct HarnessError: Error, CustomStringConvertible {
        public var description: String
    }

    public static func get() throws -> TestServer { try shared.get() }

    private init() throws {
        let script = Fixtures.root.deletingLastPathComponent().appendingPathComponent("Tests/tools/s3_verify_proxy.py")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", script.path, "--credentials=\(Self.accessKey):\(Self.secretKey)"]
        let out = Pipe()
        stdinPipe = Pipe()
        p.standardOutput = out
        p.standardInput = stdinPipe
        do { try p.run() } catch {
            throw HarnessError(description: "cannot start the S3 test harness (python3 \(script.path)): \(error)")
        }
        process = p
        // Read the READY line byte by byte: the proxy keeps stdout open.
        var line = [UInt8]()
        let handle = out.fileHandleForReading
        while true {
            let d = handle.readData(ofLength: 1)
            if d.isEmpty || d.first == 0x0a { break }
            line.append(d.first!)
        }
        let words = String(decoding: line, as: UTF8.self).split(separator: " ")
        guard words.first == "READY", words.count == 4, let proxy = Int(words[1]), let moto = Int(words[2]) else {
            p.terminate()
            throw HarnessError(description: "moto did not start: \(String(decoding: line, as: UTF8.self)) — install it with pip install 'moto[server]' (and boto3)")
        }
        proxyPort = proxy
        motoPort = moto
        harness.withLock { $0 = (p.processIdentifier, stdinPipe.fileHandleForWriting.fileDescriptor) }
        atexit {
            let (pid, fd) = harness.withLock { $0 }
            guard pid > 0 else { return }
            close(fd)
            kill(pid, SIGTERM)
            // Foundation's Process reaps the child itself; wait for it to be gone, at most 15 s.
            for _ in 0..<150 where kill(pid, 0) == 0 { usleep(100_000) }
            if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
        }
    }

    public var endpoint: String { "http://127.0.0.1:\(proxyPort)" }

    /// The environment a client under test sees: our endpoint and test credentials, nothing from the host.
    public func environment(region: String = "us-east-1", extra: [String: String] = [:]) -> [String: String] {
        var env = ["HOME": "/nonexistent", "AWS_ACCESS_KEY_ID": Self.accessKey, "AWS_SECRET_ACCESS_KEY": Self.secretKey,
                   "AWS_ENDPOINT_URL": endpoint, "ECOCODE_AWS_REGION_NAME": region, "USER": "tester"]
        for (k, v) in extra { env[k] = v }
        return env
    }

    public func context(region: String = "us-east-1") throws -> AWSContext {
        try AWSContext.resolve(settings: Settings.load(environment: environment(region: region), configFile: "/nonexistent"))
    }

    /// A new, empty, versioned bucket for one test.
    public func makeBucket(versioned: Bool = true, retrier: Retrier = Retrier(policy: fastPolicy),
                    region: String = "us-east-1") throws -> S3Client {
        let name = "t-" + UUID().uuidString.lowercased().prefix(18)
        let s3 = S3Client(bucket: String(name), context: try context(region: region), transport: HTTPTransport(), retrier: retrier)
        try s3.createBucket()
        if versioned { try s3.putBucketVersioning(enabled: true) }
        return s3
    }

    public static var fastPolicy: Retrier.Policy {
        var p = Retrier.Policy()
        p.baseDelay = 0.01
        return p
    }

    /// Talks to the proxy's control endpoints (unsigned; not forwarded to moto).
    public func control(_ path: String, json: String = "") throws -> [UInt8] {
        let r = try HTTPTransport().perform(HTTPRequest(method: json.isEmpty ? "GET" : "POST", scheme: "http",
                                                        host: "127.0.0.1:\(proxyPort)", path: "/__proxy/\(path)",
                                                        body: .bytes(Array(json.utf8))))
        return r.body
    }

    public func injectFaults(_ json: String) throws { _ = try control("faults", json: json) }

    public struct LoggedRequest: Decodable {
        public var method: String
        public var path: String
        public var verified: Bool
        public var problem: String?
        public var headers: [String: String]
    }

    /// Requests the proxy saw whose path contains `bucket`.
    public func log(bucket: String) throws -> [LoggedRequest] {
        try JSONDecoder().decode([LoggedRequest].self, from: Data(try control("log"))).filter { $0.path.contains(bucket) }
    }

    /// Runs a Python snippet with boto3 pointed straight at moto: an independent reader of what we stored.
    public func boto(_ code: String) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        let prelude = """
        import boto3, json, sys
        kw = dict(endpoint_url='http://127.0.0.1:\(motoPort)', region_name='us-east-1', aws_access_key_id='x', aws_secret_access_key='y')
        s3 = boto3.client('s3', **kw)
        cw = boto3.client('cloudwatch', **kw)

        """
        p.arguments = ["python3", "-c", prelude + code]
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw HarnessError(description: "boto3 check failed: \(String(decoding: errData, as: UTF8.self))")
        }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
