import Foundation
import Testing
@testable import AWS
@testable import Backup
@testable import Journal
import TestSupport

/// `status` and `doctor` as real subprocesses against moto.
@Suite(.serialized) struct OpsTests {
    typealias Setup = SyncTests.Setup

    func status(_ t: Setup, env: [String: String]? = nil) throws -> (code: Int32, doc: [String: Any], raw: CLI.Result) {
        let r = try CLI.run(["status", "--json"], env: env ?? t.env)
        let doc = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any] ?? [:]
        return (r.status, doc, r)
    }

    /// The schema the EcoCode desktop app reads.
    func checkSchema(_ doc: [String: Any]) {
        let agent = doc["agent"] as? [String: Any]
        #expect(agent?["running"] is Bool)
        #expect(agent?.keys.contains("pid") == true && agent?.keys.contains("last_heartbeat") == true)
        let dest = doc["destination"] as? [String: Any]
        for k in ["kind", "prefix", "mode"] { #expect(dest?[k] != nil, "destination.\(k)") }
        let alarm = doc["alarm"] as? [String: Any]
        #expect(alarm?["name"] as? String == "EcoCodeWorkspaceSyncFailures")
        #expect(alarm?["threshold"] as? Int == 5 && alarm?["window_minutes"] as? Int == 15)
        #expect(alarm?["failures"] is Int && alarm?["breached"] is Bool)
        for w in doc["workspaces"] as? [[String: Any]] ?? [] {
            for k in ["path", "name", "tracked_files", "pending_changes", "oldest_pending_seconds", "in_flight", "last_success", "failures_15m"] {
                #expect(w.keys.contains(k), "workspaces[].\(k)")
            }
        }
    }

    @Test func statusBeforeDuringAndAfterWork() throws {
        var t = try Setup()
        defer { t.cleanup() }
        let before = try status(t)
        #expect(before.code == 0, "\(before.raw.stderr)")
        checkSchema(before.doc)
        #expect((before.doc["workspaces"] as? [Any])?.isEmpty == true)
        #expect((before.doc["destination"] as? [String: Any])?["bucket"] as? String == t.s3.bucket)

        try t.ws.write("a.txt", "a")
        try t.ws.write("b.txt", "b")
        #expect(try t.sync().status == 0)
        let after = try status(t)
        #expect(after.code == 0)
        checkSchema(after.doc)
        let ws = try #require((after.doc["workspaces"] as? [[String: Any]])?.first)
        #expect(ws["tracked_files"] as? Int == 2 && ws["pending_changes"] as? Int == 0)
        #expect(ws["last_success"] is String && (ws["bytes_uploaded_24h"] as? Int ?? 0) == 2)

        // Configured but not running: degraded.
        t.env["ECOCODE_BACKUP_WORKSPACES"] = t.ws.path
        let idle = try status(t)
        #expect(idle.code == 1)
        #expect((idle.doc["problems"] as? [String])?.first?.contains("agent not running") == true)

        let agent = try CLI.start(["agent"], env: t.env)
        defer { agent.terminate(); agent.waitUntilExit() }
        var during: (code: Int32, doc: [String: Any], raw: CLI.Result)?
        for _ in 0..<40 {
            during = try status(t)
            if (during?.doc["agent"] as? [String: Any])?["running"] as? Bool == true { break }
            usleep(250_000)
        }
        let doc = try #require(during?.doc)
        checkSchema(doc)
        let a = doc["agent"] as? [String: Any]
        #expect(a?["running"] as? Bool == true)
        #expect(a?["pid"] as? Int == Int(agent.processIdentifier))
        #expect((doc["destination"] as? [String: Any])?["mode"] as? String == "online")
        #expect(during?.code == 0, "\(doc["problems"] ?? "")")
        #expect(((doc["watcher"] as? [String: Any])?["watches"] as? Int ?? 0) >= 1)
    }

    @Test func statusWhileTheEndpointFailsShowsLocalOnlyPendingAndTheAlarm() throws {
        var t = try Setup()
        defer { t.cleanup() }
        t.env["ECOCODE_BACKUP_WORKSPACES"] = t.ws.path
        try t.ws.write("first.txt", "synced")
        #expect(try t.sync().status == 0)
        // Every upload to this bucket now loses its connection.
        try t.server.injectFaults(#"[{"method": "PUT", "path_contains": "/\#(t.s3.bucket)/", "reset": true, "times": 10000}]"#)
        defer { _ = try? t.server.control("clear", json: #"{"path_contains": "/\#(t.s3.bucket)/"}"#) }
        try t.ws.write("x.txt", "x")
        try t.ws.write("y.txt", "y")
        let r = try CLI.run(["sync", "--workspace", t.ws.path, "--timeout", "8"], env: t.env)
        #expect(r.status == 1)
        #expect(r.stderr.contains("not durable: x.txt"))

        let agent = try CLI.start(["agent"], env: t.env)
        defer { agent.terminate(); agent.waitUntilExit() }
        var doc: [String: Any] = [:]
        var code: Int32 = 0
        for _ in 0..<60 {
            (code, doc, _) = try status(t)
            if (doc["agent"] as? [String: Any])?["mode"] as? String == "local-only" { break }
            usleep(250_000)
        }
        checkSchema(doc)
        #expect((doc["agent"] as? [String: Any])?["mode"] as? String == "local-only")
        #expect((doc["destination"] as? [String: Any])?["mode"] as? String == "local-only")
        let ws = try #require((doc["workspaces"] as? [[String: Any]])?.first)
        #expect(ws["pending_changes"] as? Int == 2)
        #expect((ws["failures_15m"] as? Int ?? 0) > 5)
        let alarm = doc["alarm"] as? [String: Any]
        #expect(alarm?["breached"] as? Bool == true)
        #expect(code == 1)
    }

    func doctor(_ t: Setup, _ extra: [String] = []) throws -> CLI.Result {
        try CLI.run(["doctor"] + extra, env: t.env)
    }

    func guideBucket(_ t: Setup) throws {
        try t.s3.putBucketEncryption(kms: true, kmsKeyId: "alias/ecocode-test")
        try t.s3.putPublicAccessBlock(PublicAccessBlock(blockPublicAcls: true, ignorePublicAcls: true, blockPublicPolicy: true, restrictPublicBuckets: true))
    }

    @Test func doctorPassesABucketSetUpAsTheGuideSays() throws {
        var t = try Setup()
        defer { t.cleanup() }
        t.env["AWS_SESSION_TOKEN"] = "SESSIONTOKEN-must-not-show"
        try guideBucket(t)
        let r = try doctor(t)
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        for check in ["settings", "credentials", "region", "bucket", "versioning", "public access", "encryption", "write test", "cloudwatch", "inotify"] {
            #expect(r.stdout.contains("ok   \(check):"), "\(check) in \(r.stdout)")
        }
        #expect(r.stdout.contains("from environment"))
        // The test write leaves nothing behind, not even a delete marker.
        #expect(try t.s3.allVersions(prefix: "").isEmpty)
        // No secret in any output of any command.
        let outputs = [r, try t.sync(), try CLI.run(["status", "--json"], env: t.env), try CLI.run(["--help"], env: t.env),
                       try CLI.run(["doctor", "--help"], env: t.env), try CLI.run(["versions", "x", "--workspace", t.ws.path], env: t.env)]
        for o in outputs {
            for secret in [TestServer.secretKey, "SESSIONTOKEN-must-not-show", TestServer.accessKey] {
                #expect(!o.stdout.contains(secret) && !o.stderr.contains(secret))
            }
        }
    }

    @Test(arguments: ["versioning", "encryption", "public access", "kms key"])
    func doctorFailsNamingTheCause(_ missing: String) throws {
        var t = try Setup(versioned: missing != "versioning")
        defer { t.cleanup() }
        if missing != "encryption" { try t.s3.putBucketEncryption(kms: true, kmsKeyId: missing == "kms key" ? "alias/some-other-key" : "alias/ecocode-test") }
        if missing != "public access" {
            try t.s3.putPublicAccessBlock(PublicAccessBlock(blockPublicAcls: true, ignorePublicAcls: true, blockPublicPolicy: true, restrictPublicBuckets: true))
        }
        if missing == "versioning" { t.env["ECOCODE_BACKUP_PREFIX"] = "doctor" }
        let r = try doctor(t, ["--no-write-test"])
        #expect(r.status == 1)
        let name = missing == "kms key" ? "encryption" : missing
        #expect(r.stdout.contains("FAIL \(name):"), "\(r.stdout)")
        #expect(r.stdout.components(separatedBy: "\n").filter { $0.hasPrefix("FAIL") }.count == 1, "\(r.stdout)")
    }
}
