import Foundation
import Testing
@testable import AWS
@testable import Backup
@testable import Journal
import TestSupport

/// `ecocode-backup sync` run as a real subprocess against moto (through the verifying proxy).
@Suite(.serialized) struct SyncTests {
    struct Setup {
        let server: TestServer
        let s3: S3Client
        let ws: TempTree
        let home: TempTree
        var env: [String: String]

        init(versioned: Bool = true, name: String = "proj") throws {
            server = try TestServer.get()
            s3 = try server.makeBucket(versioned: versioned)
            let parent = try TempTree("ws")
            try FileManager.default.createDirectory(atPath: parent.path + "/" + name, withIntermediateDirectories: true)
            ws = TempTree(existing: parent.path + "/" + name)
            home = try TempTree("home")
            env = server.environment(extra: [
                "ECOCODE_AWS_WORKSPACE_BUCKET": s3.bucket, "ECOCODE_AWS_KMS_KEY_ID": "alias/ecocode-test",
                "XDG_STATE_HOME": home.path + "/state", "XDG_DATA_HOME": home.path + "/data",
                "XDG_CONFIG_HOME": home.path + "/config", "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin",
            ])
        }

        func sync(_ extra: [String] = []) throws -> CLI.Result {
            try CLI.run(["sync", "--workspace", ws.path, "--timeout", "60"] + extra, env: env)
        }

        var prefix: String { "workspaces/tester/proj/" }

        /// Versions per relative path, newest first, as S3 lists them.
        func versions() throws -> [String: [ObjectVersion]] {
            var out: [String: [ObjectVersion]] = [:]
            for v in try s3.allVersions(prefix: prefix) { out[String(v.key.dropFirst(prefix.count)), default: []].append(v) }
            return out
        }

        func cleanup() { ws.remove(); home.remove() }
    }

    static let trickyNames = [
        "src/main.swift", "with space/file name.txt", "plus+equals=percent%star*(paren)'quote'~.txt",
        "caf\u{E9}.txt", "cafe\u{301}.txt", "emoji 😀/🎉.md", String(repeating: "L", count: 200),
        ".git/refs/heads/main", ".hidden", "deep/a/b/c/d/e/f/g.txt",
    ]

    @Test func trickyNamesRoundTripByteExactWithMetadataAndSSE() throws {
        let t = try Setup()
        defer { t.cleanup() }
        for (i, name) in Self.trickyNames.enumerated() {
            try t.ws.write(name, Array("file \(i): \(name)\n".utf8) + (0..<UInt8(i)).map { $0 }, mode: i == 0 ? 0o755 : 0o644)
        }
        try t.ws.write("node_modules/dep/index.js", "ignored")
        try t.ws.write(".main.swift.swp", "ignored")
        symlink("src/main.swift", t.ws.path + "/link to main")
        let r = try t.sync()
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("\(Self.trickyNames.count + 1) uploaded"))

        let report = try t.server.boto("""
        out = []
        for v in s3.list_object_versions(Bucket='\(t.s3.bucket)', Prefix='\(t.prefix)')['Versions']:
            o = s3.get_object(Bucket='\(t.s3.bucket)', Key=v['Key'])
            body = o['Body'].read()
            out.append([v['Key'][len('\(t.prefix)'):], body.hex(), o['Metadata'], o.get('ServerSideEncryption'), o.get('SSEKMSKeyId')])
        print(json.dumps(out))
        """)
        // A list, not a dictionary: Swift's String keys would merge the NFC and NFD names.
        let rows = (try JSONSerialization.jsonObject(with: Data(report.utf8)) as! [[Any]]).map { ($0[0] as! String, Array($0.dropFirst())) }
        #expect(rows.count == Self.trickyNames.count + 1)
        for (i, name) in Self.trickyNames.enumerated() {
            let content = Array("file \(i): \(name)\n".utf8) + (0..<UInt8(i)).map { $0 }
            // Compare by bytes: Swift's String == would equate the NFC and NFD names.
            let row = rows.first { Array($0.0.utf8) == Array(name.utf8) }?.1
            #expect(row?[0] as? String == content.hex, "content of \(name)")
            let meta = row?[1] as? [String: String]
            #expect(meta?["sha256"] == SHA256.hash(content).hex)
            #expect(meta?["mode"] == (i == 0 ? "100755" : "100644"))
            var st = stat()
            lstat(t.ws.path + "/" + name, &st)
            #expect(meta?["mtime"] == String(Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)))
            #expect(row?[2] as? String == "aws:kms")
            #expect(row?[3] as? String == "alias/ecocode-test")
        }
        let link = rows.first { $0.0 == "link to main" }?.1
        #expect(link?[0] as? String == Array("src/main.swift".utf8).hex)
        #expect((link?[1] as? [String: String])?["mode"] == "120777")
        #expect(try t.server.log(bucket: t.s3.bucket).allSatisfy { $0.verified })

        // A second run with nothing changed makes no writes and no LIST.
        let before = try t.server.log(bucket: t.s3.bucket).count
        let again = try t.sync()
        #expect(again.status == 0)
        let after = try t.server.log(bucket: t.s3.bucket).dropFirst(before)
        #expect(after.filter { $0.method != "GET" && $0.method != "HEAD" }.isEmpty)
        #expect(after.filter { $0.path.contains("?versions") || $0.path.contains("list-type") }.isEmpty)
    }

    @Test func fiveChangeKindsProduceExactlyTheExpectedVersions() throws {
        let t = try Setup()
        defer { t.cleanup() }
        try t.ws.write("modify.txt", "v1")
        try t.ws.write("touch.txt", "same")
        try t.ws.write("delete.txt", "bye")
        try t.ws.write("old name.txt", String(repeating: "rename me ", count: 100))
        #expect(try t.sync().status == 0)

        try t.ws.write("modify.txt", "v2")
        let touchPath = t.ws.path + "/touch.txt"
        var times = [timespec(tv_sec: 1_700_000_000, tv_nsec: 0), timespec(tv_sec: 1_700_000_000, tv_nsec: 0)]
        utimensat(AT_FDCWD, touchPath, &times, 0)
        unlink(t.ws.path + "/delete.txt")
        try FileManager.default.createDirectory(atPath: t.ws.path + "/moved", withIntermediateDirectories: true)
        rename(t.ws.path + "/old name.txt", t.ws.path + "/moved/new name.txt")
        try t.ws.write("created.txt", "new")
        let before = try t.server.log(bucket: t.s3.bucket).count
        let r = try t.sync()
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("2 uploaded") && r.stdout.contains("1 copied") && r.stdout.contains("2 deleted") && r.stdout.contains("1 touched"), "\(r.stdout)")

        let v = try t.versions()
        #expect(v["modify.txt"]?.count == 2 && v["modify.txt"]?.allSatisfy { !$0.isDeleteMarker } == true)
        #expect(v["touch.txt"]?.count == 1)
        #expect(v["delete.txt"]?.map(\.isDeleteMarker) == [true, false])
        #expect(v["old name.txt"]?.map(\.isDeleteMarker) == [true, false])
        #expect(v["moved/new name.txt"]?.count == 1)
        #expect(v["created.txt"]?.count == 1)
        let (moved, info) = try t.s3.getObjectBytes(key: t.prefix + "moved/new name.txt")
        #expect(moved == Array(String(repeating: "rename me ", count: 100).utf8))
        #expect(info.metadata["sha256"] == SHA256.hash(moved).hex)
        // The rename was a server-side copy: no body was uploaded for the new key.
        let writes = try t.server.log(bucket: t.s3.bucket).dropFirst(before).filter { $0.method == "PUT" }
        let newKey = writes.filter { $0.path.contains("moved/new%20name.txt") }
        #expect(newKey.count == 1 && newKey[0].headers["x-amz-copy-source"] != nil)
        #expect(Set(try Journal(stateDir: t.home.path + "/state/ecocode-backup").trackedFiles(workspace: 1).keys.map(\.description))
                == ["modify.txt", "touch.txt", "moved/new name.txt", "created.txt"])
    }

    @Test func killDuringMultipartThenRerunResumesWithoutOrphans() throws {
        var t = try Setup()
        defer { t.cleanup() }
        let mib = 1 << 20
        let big = (0..<(20 * mib)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 12) }
        try t.ws.write("big.bin", big)
        // Part 3 hangs long enough for us to kill the process while parts 1 and 2 are done.
        try t.server.injectFaults(#"[{"method": "PUT", "path_contains": "\#(t.s3.bucket)/workspaces/tester/proj/big.bin?partNumber=3", "delay": 30, "times": 1}]"#)
        t.env["ECOCODE_BACKUP_PARTS_IN_FLIGHT"] = "1"
        let p = try CLI.start(["sync", "--workspace", t.ws.path], env: t.env)
        var waited = 0
        while waited < 300 {
            let parts = try t.server.log(bucket: t.s3.bucket).filter { $0.path.contains("partNumber=3") }
            if !parts.isEmpty { break }
            usleep(100_000); waited += 1
        }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        #expect(try t.s3.listMultipartUploads(prefix: t.prefix).count == 1)
        let journal = try Journal(stateDir: t.home.path + "/state/ecocode-backup")
        #expect(try journal.uploads(workspace: 1).count == 1)

        let r = try t.sync()
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try t.s3.listMultipartUploads(prefix: t.prefix).isEmpty)
        #expect(try journal.uploads(workspace: 1).isEmpty)
        let (body, info) = try t.s3.getObjectBytes(key: t.prefix + "big.bin")
        #expect(body == big)
        #expect(info.metadata["sha256"] == SHA256.hash(big).hex)
        // Parts 1 and 2 were not sent again: the upload was resumed from ListParts.
        let log = try t.server.log(bucket: t.s3.bucket)
        #expect(log.filter { $0.method == "PUT" && $0.path.contains("partNumber=1&") }.count == 1)
        #expect(log.contains { $0.method == "GET" && $0.path.contains("uploadId=") && !$0.path.contains("partNumber") })
    }

    @Test func strayMultipartUploadsUnderOurPrefixAreAborted() throws {
        let t = try Setup()
        defer { t.cleanup() }
        _ = try t.s3.createMultipartUpload(key: t.prefix + "stray.bin")
        _ = try t.s3.createMultipartUpload(key: "someone-else/keep.bin")
        try t.ws.write("a.txt", "a")
        let r = try t.sync()
        #expect(r.status == 0)
        #expect(try t.s3.listMultipartUploads(prefix: t.prefix).isEmpty)
        #expect(try t.s3.listMultipartUploads(prefix: "someone-else/").count == 1)
    }

    @Test func injectedFailuresConvergeAndAreCountedInTheMetric() throws {
        let t = try Setup()
        defer { t.cleanup() }
        try t.ws.write("flaky.txt", "eventually")
        try t.ws.write("fine.txt", "at once")
        try t.server.injectFaults(#"[{"method": "PUT", "path_contains": "\#(t.s3.bucket)/workspaces/tester/proj/flaky.txt", "status": 503, "code": "SlowDown", "times": 6}]"#)
        let r = try t.sync()
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("2 failed attempts"), "\(r.stdout)")
        let journal = try Journal(stateDir: t.home.path + "/state/ecocode-backup")
        let failures = try journal.failures(since: 0)
        #expect(failures.count == 2 && failures.allSatisfy { $0.path.description == "flaky.txt" })
        #expect(try journal.pendingMetrics(limit: 10, now: Date().timeIntervalSince1970).isEmpty, "metrics were published")
        let (body, _) = try t.s3.getObjectBytes(key: t.prefix + "flaky.txt")
        #expect(String(decoding: body, as: UTF8.self) == "eventually")
        let sums = try t.server.boto("""
        import datetime
        now = datetime.datetime.utcnow()
        def total(name):
            r = cw.get_metric_statistics(Namespace='EcoCode', MetricName=name, StartTime=now - datetime.timedelta(minutes=30),
                                         EndTime=now + datetime.timedelta(minutes=5), Period=3600, Statistics=['Sum'])
            return int(sum(p['Sum'] for p in r['Datapoints']))
        print(total('WorkspaceSyncFailures'), total('WorkspaceSyncSuccesses') > 0, total('BytesUploaded') > 0)
        """)
        let parts = sums.split(separator: " ")
        #expect(Int(parts[0]) ?? 0 >= 2)
        #expect(parts.dropFirst() == ["True", "True"])
    }

    @Test func unreachableEndpointKeepsChangesQueuedAndExitsThree() throws {
        var t = try Setup()
        defer { t.cleanup() }
        try t.ws.write("a.txt", "a")
        t.env["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"
        let r = try t.sync()
        #expect(r.status == 3, "\(r.stderr)")
        #expect(r.stderr.contains("stay queued"))
        let journal = try Journal(stateDir: t.home.path + "/state/ecocode-backup")
        #expect(try journal.queue(workspace: 1).map(\.path.description) == ["a.txt"])
    }

    @Test func bucketWithoutVersioningIsRefused() throws {
        let t = try Setup(versioned: false)
        defer { t.cleanup() }
        try t.ws.write("a.txt", "a")
        let r = try t.sync()
        #expect(r.status == 5)
        #expect(r.stderr.contains("versioning") && r.stderr.contains("put-bucket-versioning"))
        #expect(try t.s3.allVersions(prefix: "").isEmpty)
    }

    @Test func badNamesAreReportedAndSkippedNotFatal() throws {
        let t = try Setup()
        defer { t.cleanup() }
        try t.ws.write("good.txt", "ok")
        let bad = t.ws.path + "/bad-\u{FFFD}".replacingOccurrences(of: "\u{FFFD}", with: "")
        let badBytes = Array(bad.utf8) + [0xff, 0xfe, 0]
        badBytes.withUnsafeBufferPointer { p in
            p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: badBytes.count) { _ = creat($0, 0o644) }
        }
        mkfifo(t.ws.path + "/a fifo", 0o644)
        let r = try t.sync()
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("not valid UTF-8"))
        #expect(r.stderr.contains("FIFO"))
        #expect(try t.versions().keys.sorted() == ["good.txt"])
    }

    @Test func corruptJournalIsReportedAndRebuiltOnRequest() throws {
        let t = try Setup()
        defer { t.cleanup() }
        try t.ws.write("a.txt", "a")
        #expect(try t.sync().status == 0)
        let path = t.home.path + "/state/ecocode-backup/journal.sqlite"
        try Data(repeating: 0x42, count: 8192).write(to: URL(fileURLWithPath: path))
        let r = try t.sync()
        #expect(r.status == 4)
        #expect(r.stderr.contains("--rebuild-journal"))
        try t.ws.write("b.txt", "b")
        let rebuilt = try t.sync(["--rebuild-journal"])
        #expect(rebuilt.status == 0, "\(rebuilt.stderr)")
        // What the backup already holds is adopted, not uploaded again.
        #expect(rebuilt.stdout.contains("1 uploaded") && rebuilt.stdout.contains("1 touched"), "\(rebuilt.stdout)")
        #expect(try t.versions().mapValues(\.count) == ["a.txt": 1, "b.txt": 1])
        var st = stat()
        stat(path, &st)
        #expect(st.st_mode & 0o777 == 0o600)
        stat(t.home.path + "/state/ecocode-backup", &st)
        #expect(st.st_mode & 0o777 == 0o700)
    }

    @Test func localStoreRoundTripsTheSameWorkspace() throws {
        var t = try Setup()
        defer { t.cleanup() }
        t.env["ECOCODE_AWS_WORKSPACE_BUCKET"] = nil
        for (i, name) in Self.trickyNames.enumerated() { try t.ws.write(name, "local \(i)") }
        let r = try t.sync()
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("destination: local store"))
        unlink(t.ws.path + "/.hidden")
        #expect(try t.sync().status == 0)
        let store = try LocalStore(root: t.home.path + "/data/ecocode-backup/store")
        let versions = try store.versions(prefix: t.prefix)
        for (i, name) in Self.trickyNames.enumerated() {
            let entries = versions.filter { Array($0.key.utf8) == Array((t.prefix + name).utf8) }
            if name == ".hidden" {
                #expect(entries.map(\.isDeleteMarker) == [true, false])
                continue
            }
            #expect(entries.count == 1, "\(name)")
            let stored = try #require(try store.contentPath(key: entries[0].key, versionId: entries[0].versionId))
            #expect(FileManager.default.contents(atPath: stored.path) == Data("local \(i)".utf8))
            #expect(stored.metadata["sha256"] == SHA256.hash(Array("local \(i)".utf8)).hex)
        }
        #expect(try t.server.log(bucket: t.s3.bucket).filter { $0.path.contains("workspaces") }.isEmpty)
    }
}
