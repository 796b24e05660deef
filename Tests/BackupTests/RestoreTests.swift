import Foundation
import Testing
@testable import AWS
@testable import Backup
@testable import Journal
import TestSupport

struct PointInTimeTests {
    let now = Date(timeIntervalSince1970: 1_764_081_000)  // 2025-11-25T14:30:00Z

    @Test func everyAcceptedForm() throws {
        // Local time is the process's zone (TZ), as for the CLI; no other test here reads local time.
        let utc = "UTC", kolkata = "Asia/Kolkata"
        let saved = getenv("TZ").map { String(cString: $0) }
        defer { if let saved { setenv("TZ", saved, 1) } else { unsetenv("TZ") }; tzset() }
        func p(_ s: String, _ tz: String = utc) throws -> Double {
            setenv("TZ", tz, 1)
            tzset()
            return try PointInTime.parse(s, now: now).timeIntervalSince1970
        }
        #expect(try p("2025-11-25T14:30:00Z") == 1_764_081_000)
        #expect(try p("2025-11-25t14:30:00z") == 1_764_081_000)
        #expect(try p("2025-11-25T15:30:00+01:00") == 1_764_081_000)
        #expect(try p("2025-11-25T09:30:00-0500") == 1_764_081_000)
        #expect(try p("2025-11-25T14:30:00.250Z") == 1_764_081_000.25)
        #expect(try p("2025-11-25 14:30:00Z") == 1_764_081_000)
        #expect(try p("2025-11-25 20:00:00", kolkata) == 1_764_081_000)   // local time, UTC+05:30
        #expect(try p("2025-11-25 20:00", kolkata) == 1_764_081_000)
        #expect(try p("2025-11-25T20:00:00", kolkata) == 1_764_081_000)
        #expect(try p("@1764081000") == 1_764_081_000)
        #expect(try p("@1764081000.5") == 1_764_081_000.5)
        #expect(try p("90s ago") == 1_764_081_000 - 90)
        #expect(try p("5m ago") == 1_764_081_000 - 300)
        #expect(try p("2h ago") == 1_764_081_000 - 7200)
        #expect(try p("3d ago") == 1_764_081_000 - 3 * 86400)
        #expect(try p("10 minutes ago") == 1_764_081_000 - 600)
        #expect(try p("1 hour ago") == 1_764_081_000 - 3600)
        #expect(try p("now") == 1_764_081_000)
    }

    @Test(arguments: ["yesterday", "2025-11-25", "2025-13-01 10:00", "2025-02-30 10:00", "2025-11-25T25:00:00Z",
                      "10 fortnights ago", "@", "ago", "2025-11-25T14:30:00+1", "2025-11-25T14:30:00Zjunk", ""])
    func rejectsEverythingElse(_ s: String) {
        #expect(throws: PointInTime.ParseError.self) { try PointInTime.parse(s, now: now) }
    }

    @Test func versionChoiceFollowsListOrderAndDeleteMarkers() {
        let t = { (s: Double) in Date(timeIntervalSince1970: s) }
        let v = { (k: String, id: String, at: Double, dm: Bool) in
            ObjectVersion(key: k, versionId: id, isLatest: false, lastModified: t(at), isDeleteMarker: dm, size: 1, etag: "") }
        let list = [v("a", "a3", 30, false), v("a", "a2", 20, true), v("a", "a1", 10, false),
                    v("b", "b2", 20, false), v("b", "b1", 20, false),   // same second: list order decides
                    v("c", "c1", 25, false)]
        #expect(chooseVersions(list, at: t(5)).map(\.versionId) == [])
        #expect(chooseVersions(list, at: t(15)).map(\.versionId) == ["a1"])
        #expect(chooseVersions(list, at: t(20)).map(\.versionId) == ["b2"])
        #expect(chooseVersions(list, at: t(29)).map(\.versionId) == ["b2", "c1"])
        #expect(chooseVersions(list, at: t(31)).map(\.versionId) == ["a3", "b2", "c1"])
    }

    @Test func unsafeKeysAreRefused() {
        let prefix = "ws/p/"
        for key in ["ws/p/", "ws/p//abs", "ws/p/../x", "ws/p/a/../../x", "ws/p/./x", "ws/p/a/.", "ws/p/a//b", "ws/p/a\u{0}b", "other/x"] {
            if case .success(let r) = safeRelativePath(key: key, prefix: prefix) { Issue.record("\(key) accepted as \(r)") }
        }
        for key in ["ws/p/a", "ws/p/.git/HEAD", "ws/p/..hidden", "ws/p/a b/ü+.txt", "ws/p/x..y"] {
            guard case .success = safeRelativePath(key: key, prefix: prefix) else { Issue.record("\(key) refused"); continue }
        }
    }
}

/// `restore` and `versions` as real subprocesses against moto, over a history with three moments.
@Suite(.serialized) struct RestoreTests {
    typealias Setup = SyncTests.Setup

    struct Entry: Equatable, CustomStringConvertible {
        var content: [UInt8]
        var mode: UInt32
        var mtimeNs: Int64
        var description: String { "mode \(String(mode, radix: 8)) mtime \(mtimeNs) \(content.count) bytes" }
    }

    /// path bytes → content (or link target), full mode, mtime: what a restore must reproduce.
    static func tree(_ root: String) throws -> [[UInt8]: Entry] {
        var out: [[UInt8]: Entry] = [:]
        for f in Scanner(root: root).scan().files {
            let abs = root + "/" + f.path.description
            var content: [UInt8]
            if f.snapshot.isSymlink {
                var buf = [UInt8](repeating: 0, count: 4096)
                let n = readlink(abs, &buf, buf.count)
                content = Array(buf[0..<max(0, n)])
            } else {
                content = Array(FileManager.default.contents(atPath: abs) ?? Data())
            }
            out[f.path.bytes] = Entry(content: content, mode: f.snapshot.mode, mtimeNs: f.snapshot.mtimeNs)
        }
        return out
    }

    static func moment() -> Date {
        usleep(1_100_000)
        let t = Date()
        usleep(1_100_000)
        return t
    }

    func restore(_ t: Setup, at: String, to: String, extra: [String] = [], env: [String: String]? = nil) throws -> CLI.Result {
        try CLI.run(["restore", "--workspace", t.ws.path, "--at", at, "--to", to] + extra, env: env ?? t.env)
    }

    @Test func threeMomentsRestoreExactlyWithEveryTimeForm() throws {
        let t = try Setup()
        defer { t.cleanup() }
        let mib = 1 << 20
        var big = (0..<(20 * mib)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) }
        try t.ws.write("a.txt", "a1")
        try t.ws.write("b.txt", "b1")
        try t.ws.write("dir/c.sh", "c1", mode: 0o644)
        try t.ws.write("empty", "")
        try t.ws.write("replaced", "a file that becomes a directory")
        try t.ws.write("big.bin", big)
        symlink("a.txt", t.ws.path + "/link")
        #expect(try t.sync().status == 0)
        let t1 = Self.moment()
        let tree1 = try Self.tree(t.ws.path)

        try t.ws.write("a.txt", "a2")
        unlink(t.ws.path + "/b.txt")
        chmod(t.ws.path + "/dir/c.sh", 0o755)
        try t.ws.write("d.txt", "d2")
        unlink(t.ws.path + "/replaced")
        try t.ws.write("replaced/inside.txt", "now a directory")
        #expect(try t.sync().status == 0)
        let t2 = Self.moment()
        let tree2 = try Self.tree(t.ws.path)

        try t.ws.write("b.txt", "b3, again")
        unlink(t.ws.path + "/d.txt")
        big[12 * mib] ^= 0xff
        try t.ws.write("big.bin", big)
        #expect(try t.sync().status == 0)
        let tree3 = try Self.tree(t.ws.path)

        let out = try TempTree("restored")
        defer { out.remove() }
        for (label, at, expected) in [("t1", "@\(t1.timeIntervalSince1970)", tree1),
                                      ("t2", AWSTime.iso8601(t2), tree2),
                                      ("t3", "now", tree3)] {
            let r = try restore(t, at: at, to: out.path + "/" + label)
            #expect(r.status == 0, "\(label): \(r.stderr.suffix(600))")
            let got = try Self.tree(out.path + "/" + label)
            #expect(got == expected, "\(label) differs")
        }
        // Local time under a non-UTC zone names the same moment as the UTC form.
        var tz = t.env
        tz["TZ"] = "Asia/Kolkata"
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = TimeZone(identifier: "Asia/Kolkata")!
        let c = cal.dateComponents([.year, .month, .day, .hour, .minute, .second], from: t2)
        let local = String(format: "%04d-%02d-%02d %02d:%02d:%02d", c.year!, c.month!, c.day!, c.hour!, c.minute!, c.second!)
        let r = try restore(t, at: local, to: out.path + "/local", env: tz)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try Self.tree(out.path + "/local") == tree2)
        // Relative form: "N s ago" just after t3 is t3's tree.
        let rel = try restore(t, at: "1s ago", to: out.path + "/relative")
        #expect(rel.status == 0)
        #expect(try Self.tree(out.path + "/relative") == tree3)
        // A bad time writes nothing and exits 2, listing the forms.
        let bad = try restore(t, at: "last tuesday", to: out.path + "/bad")
        #expect(bad.status == 2 && bad.stderr.contains("accepted forms"))
        #expect(!FileManager.default.fileExists(atPath: out.path + "/bad"))

        // History of one file and the dry-run plan.
        let v = try CLI.run(["versions", "b.txt", "--workspace", t.ws.path, "--json"], env: t.env)
        let doc = try JSONSerialization.jsonObject(with: Data(v.stdout.utf8)) as! [String: Any]
        let rows = doc["versions"] as! [[String: Any]]
        #expect(rows.map { $0["delete_marker"] as! Bool } == [false, true, false])
        #expect(rows.map { $0["size"] as! Int } == [9, 0, 2])
        let plan = try restore(t, at: AWSTime.iso8601(t2), to: out.path + "/dry", extra: ["--dry-run"])
        #expect(plan.status == 0 && plan.stdout.contains("d.txt") && !plan.stdout.contains("b.txt"))
        #expect(!FileManager.default.fileExists(atPath: out.path + "/dry"))
    }

    @Test func plantedKeysCannotEscapeTheTarget() throws {
        let t = try Setup()
        defer { t.cleanup() }
        try t.ws.write("ok.txt", "fine")
        #expect(try t.sync().status == 0)
        for key in ["../escape.txt", "/absolute.txt", "./dot/x.txt", "a/../../up.txt", "sub//x.txt"] {
            _ = try t.s3.putObject(key: t.prefix + key, payload: .bytes(Array("evil".utf8)))
        }
        // A symlink pointing out, and a file "inside" it.
        let outside = try TempTree("outside")
        defer { outside.remove() }
        _ = try t.s3.putObject(key: t.prefix + "ln", payload: .bytes(Array(outside.path.utf8)), options: PutOptions(metadata: ["mode": "120777"]))
        _ = try t.s3.putObject(key: t.prefix + "ln/inside.txt", payload: .bytes(Array("evil".utf8)))
        let parent = try TempTree("parent")
        defer { parent.remove() }
        let r = try restore(t, at: "now", to: parent.path + "/target")
        #expect(r.status == 1)
        for key in ["../escape.txt", "/absolute.txt", "./dot/x.txt", "a/../../up.txt", "sub//x.txt"] {
            #expect(r.stderr.contains(t.prefix + key), "no warning for \(key)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: parent.path) == ["target"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside.path).isEmpty)
        #expect(FileManager.default.contents(atPath: parent.path + "/target/ok.txt") == Data("fine".utf8))
        #expect(!FileManager.default.fileExists(atPath: parent.path + "/escape.txt"))
    }

    @Test func overwriteSemanticsAndInterruptedDownloadsAreRetried() throws {
        let t = try Setup()
        defer { t.cleanup() }
        let mib = 1 << 20
        let big = (0..<(18 * mib)).map { UInt8(truncatingIfNeeded: $0 &* 5) }
        try t.ws.write("a.txt", "backed up")
        try t.ws.write("big.bin", big)
        #expect(try t.sync().status == 0)
        let out = try TempTree("over")
        defer { out.remove() }
        try out.write("a.txt", "local edit")
        // Drop one GET of a.txt halfway and reset one ranged GET of big.bin: both are retried.
        try t.server.injectFaults(#"[{"method": "GET", "path_contains": "\#(t.s3.bucket)/workspaces/tester/proj/big.bin", "reset": true, "times": 1}, {"method": "GET", "path_contains": "\#(t.s3.bucket)/workspaces/tester/proj/a.txt?", "truncate": true, "times": 1}]"#)
        let kept = try restore(t, at: "now", to: out.path)
        #expect(kept.status == 1)
        #expect(kept.stderr.contains("already exists"))
        #expect(FileManager.default.contents(atPath: out.path + "/a.txt") == Data("local edit".utf8))
        #expect(FileManager.default.contents(atPath: out.path + "/big.bin") == Data(big))
        let replaced = try restore(t, at: "now", to: out.path, extra: ["--overwrite"])
        #expect(replaced.status == 0, "\(replaced.stderr)")
        #expect(FileManager.default.contents(atPath: out.path + "/a.txt") == Data("backed up".utf8))
        let gets = try t.server.log(bucket: t.s3.bucket).filter { $0.method == "GET" && $0.path.contains("proj/a.txt?") }
        #expect(gets.count == 2)
        #expect(try FileManager.default.contentsOfDirectory(atPath: out.path).sorted() == ["a.txt", "big.bin"])
    }

    @Test func localStoreRestoresTheSameWay() throws {
        var t = try Setup()
        defer { t.cleanup() }
        t.env["ECOCODE_AWS_WORKSPACE_BUCKET"] = nil
        try t.ws.write("x/y.txt", "one")
        symlink("x/y.txt", t.ws.path + "/l")
        #expect(try t.sync().status == 0)
        let t1 = Self.moment()
        let tree1 = try Self.tree(t.ws.path)
        try t.ws.write("x/y.txt", "two")
        unlink(t.ws.path + "/l")
        #expect(try t.sync().status == 0)
        let out = try TempTree("local")
        defer { out.remove() }
        let r = try restore(t, at: AWSTime.iso8601(t1), to: out.path + "/r")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try Self.tree(out.path + "/r") == tree1)
    }
}
