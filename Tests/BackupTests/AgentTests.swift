import Foundation
import Testing
@testable import AWS
@testable import Backup
@testable import Journal
import TestSupport

/// `ecocode-backup agent` as a real subprocess against moto: saves land, trees converge, signals behave.
@Suite(.serialized) struct AgentTests {
    typealias Setup = SyncTests.Setup

    /// What the bucket holds now under the workspace prefix: relative path → content (latest, not deleted).
    /// With `sizesOnly`, one listing and no downloads (content is the size's decimal digits).
    static func bucketTree(_ t: Setup, sizesOnly: Bool = false) throws -> [[UInt8]: [UInt8]] {
        var out: [[UInt8]: [UInt8]] = [:]
        for v in try t.s3.allVersions(prefix: t.prefix) where v.isLatest && !v.isDeleteMarker {
            out[Array(v.key.utf8.dropFirst(t.prefix.utf8.count))] = sizesOnly
                ? Array(String(v.size).utf8) : try t.s3.getObjectBytes(key: v.key, versionId: v.versionId).0
        }
        return out
    }

    /// The workspace's files (not ignored) with their content, keyed by path bytes.
    static func localTree(_ t: Setup) -> [[UInt8]: [UInt8]] {
        var out: [[UInt8]: [UInt8]] = [:]
        for f in Scanner(root: t.ws.path).scan().files where f.snapshot.isRegular {
            out[f.path.bytes] = Array(FileManager.default.contents(atPath: t.ws.path + "/" + f.path.description) ?? Data())
        }
        return out
    }

    /// Waits until the bucket mirrors the workspace; returns the seconds it took.
    @discardableResult
    static func converge(_ t: Setup, within seconds: Double = 45) throws -> Double {
        let start = Date()
        while Date().timeIntervalSince(start) < seconds {
            let local = localTree(t)
            // Cheap check first (keys and sizes from one listing), then the bytes.
            if try bucketTree(t, sizesOnly: true) == local.mapValues({ Array(String($0.count).utf8) }), try bucketTree(t) == local {
                return Date().timeIntervalSince(start)
            }
            usleep(200_000)
        }
        let missing = localTree(t).keys.filter { (try? bucketTree(t)[$0]) == nil }.prefix(5).map { String(decoding: $0, as: UTF8.self) }
        Issue.record("bucket did not converge within \(seconds) s; e.g. missing \(missing)")
        return seconds
    }

    func startAgent(_ t: Setup, _ extra: [String] = []) throws -> Process {
        try CLI.start(["agent", "--workspace", t.ws.path] + extra, env: t.env)
    }

    func stop(_ p: Process) -> (status: Int32, seconds: Double) {
        let start = Date()
        p.terminate()
        p.waitUntilExit()
        return (p.terminationStatus, Date().timeIntervalSince(start))
    }

    @Test func singleSavesLandAndSigtermExitsZeroQuickly() throws {
        let t = try Setup()
        defer { t.cleanup() }
        try t.ws.write("existing.txt", "was here before the agent")
        let agent = try startAgent(t)
        try Self.converge(t)
        try t.ws.write("notes.md", "first save")
        try Self.converge(t)
        try t.ws.write("notes.md", "second save")
        let took = try Self.converge(t)
        #expect(took < 10)
        #expect(try t.versions()["notes.md"]?.count == 2)
        let (status, seconds) = stop(agent)
        #expect(status == 0)
        #expect(seconds < 5)
        let beat = try #require(try Journal(stateDir: t.home.path + "/state/ecocode-backup").state("agent"))
        #expect(beat.contains("\"state\":\"stopped\""))
    }

    @Test func treesMovedInRenamedAndBurstsConverge() throws {
        let t = try Setup()
        defer { t.cleanup() }
        let agent = try startAgent(t, ["--debounce", "0.5"])
        defer { _ = stop(agent) }
        // A tree built outside, then moved in whole.
        let outside = try TempTree("outside")
        defer { outside.remove() }
        for i in 0..<20 { try outside.write("lib/sub\(i % 3)/file \(i).swift", "content \(i)") }
        rename(outside.path + "/lib", t.ws.path + "/lib")
        try Self.converge(t)
        // A directory renamed inside: copies, not uploads.
        rename(t.ws.path + "/lib/sub1", t.ws.path + "/lib/renamed ü")
        try Self.converge(t)
        // A burst of 200 new files, then deletions of half of them.
        for i in 0..<200 { try t.ws.write("burst/\(i / 50)/f\(i).txt", "burst \(i)") }
        for i in stride(from: 0, to: 200, by: 2) { unlink(t.ws.path + "/burst/\(i / 50)/f\(i).txt") }
        try Self.converge(t)
        // Editors' save-by-rename ends as the right content under the real name.
        try t.ws.write(".notes.txt.tmp1234", "saved by rename")
        rename(t.ws.path + "/.notes.txt.tmp1234", t.ws.path + "/notes.txt")
        try Self.converge(t)
        #expect(try Self.bucketTree(t)[Array("notes.txt".utf8)] == Array("saved by rename".utf8))
        #expect(try t.server.log(bucket: t.s3.bucket).allSatisfy { $0.verified })
    }

    @Test func killDuringABurstThenRestartConverges() throws {
        let t = try Setup()
        defer { t.cleanup() }
        let first = try startAgent(t, ["--debounce", "0.2"])
        usleep(500_000)
        for i in 0..<150 { try t.ws.write("b/\(i % 10)/f\(i)", "v1 \(i)") }
        usleep(700_000)
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        // Changes made while no agent runs are found by the startup scan.
        for i in 0..<30 { try t.ws.write("b/\(i % 10)/f\(i)", "v2 \(i)") }
        let second = try startAgent(t, ["--debounce", "0.2"])
        try Self.converge(t)
        #expect(stop(second).status == 0)
    }

    @Test func aSecondAgentIsRefused() throws {
        let t = try Setup()
        defer { t.cleanup() }
        let agent = try startAgent(t)
        defer { _ = stop(agent) }
        usleep(1_000_000)
        let r = try CLI.run(["agent", "--workspace", t.ws.path], env: t.env)
        #expect(r.status == 6)
        #expect(r.stderr.contains("pid \(agent.processIdentifier)"))
    }

    @Test func offlineAgentKeepsJournalingAndCatchesUp() throws {
        let t = try Setup()
        defer { t.cleanup() }
        // Every request to this bucket drops its connection until the faults are used up.
        try t.server.injectFaults(#"[{"path_contains": "/\#(t.s3.bucket)", "reset": true, "times": 40}]"#)
        try t.ws.write("offline.txt", "written while offline")
        let agent = try startAgent(t)
        defer { _ = stop(agent) }
        let journal = try Journal(stateDir: t.home.path + "/state/ecocode-backup")
        var sawLocalOnly = false
        for _ in 0..<80 where !sawLocalOnly {
            sawLocalOnly = (try journal.state("agent"))?.contains("\"mode\":\"local-only\"") ?? false
            usleep(250_000)
        }
        #expect(sawLocalOnly)
        #expect(try journal.queue(workspace: 1).map(\.path.description).contains("offline.txt"))
        try t.ws.write("also offline.txt", "queued too")
        _ = try t.server.control("clear", json: #"{"path_contains": "/\#(t.s3.bucket)"}"#)
        try Self.converge(t, within: 60)
    }
}

/// Kernel-level edge cases of the watcher, against the local store (no network needed).
@Suite(.serialized) struct WatcherEdgeTests {
    @Test func queueOverflowTriggersARescanThatConverges() throws {
        var t = try SyncTests.Setup()
        defer { t.cleanup() }
        t.env["ECOCODE_AWS_WORKSPACE_BUCKET"] = nil
        let agent = try CLI.start(["agent", "--workspace", t.ws.path, "--debounce", "0.2"], env: t.env)
        defer { agent.terminate(); agent.waitUntilExit() }
        let journal = try Journal(stateDir: t.home.path + "/state/ecocode-backup")
        for _ in 0..<40 where (try journal.state("agent")) == nil { usleep(100_000) }
        // Freeze the agent so the kernel's event queue (fs.inotify.max_queued_events) overflows.
        let limit = Int((try? String(contentsOfFile: "/proc/sys/fs/inotify/max_queued_events", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? "16384") ?? 16384
        kill(agent.processIdentifier, SIGSTOP)
        // Into a directory that is already watched: each new file queues create, modify and close-write.
        let count = limit / 2 + 1000
        for i in 0..<count { try t.ws.write("f\(i)", "x\(i)") }
        kill(agent.processIdentifier, SIGCONT)
        let store = try LocalStore(root: t.home.path + "/data/ecocode-backup/store")
        var stored = 0
        let start = Date()
        while Date().timeIntervalSince(start) < 120 {
            stored = try store.versions(prefix: t.prefix).filter { !$0.isDeleteMarker }.count
            if stored == count { break }
            usleep(500_000)
        }
        #expect(stored == count)
        // The heartbeat (every 5 s) reports the overflow.
        var overflows = 0
        for _ in 0..<80 where overflows == 0 {
            let beat = try #require(try journal.state("agent"))
            overflows = (try JSONSerialization.jsonObject(with: Data(beat.utf8)) as? [String: Any])?["overflows"] as? Int ?? 0
            usleep(100_000)
        }
        #expect(overflows >= 1)
    }
}

extension WatcherEdgeTests {
    /// Runs the agent in its own user namespace whose inotify watch limit is 4 (`user.max_inotify_watches`
    /// is per user namespace), so the limit is hit without touching the machine's setting.
    @Test func runningOutOfWatchesDegradesToPeriodicScans() throws {
        var t = try SyncTests.Setup()
        defer { t.cleanup() }
        t.env["ECOCODE_AWS_WORKSPACE_BUCKET"] = nil
        for i in 0..<10 { try t.ws.write("dir\(i)/sub/file.txt", "v\(i)") }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
        p.arguments = ["-Ur", "sh", "-c", "echo 4 > /proc/sys/user/max_inotify_watches && exec \"$0\" \"$@\"", CLI.binary,
                       "agent", "--workspace", t.ws.path, "--debounce", "0.2", "--degraded-scan-interval", "2"]
        p.environment = t.env
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        defer { p.terminate(); p.waitUntilExit() }
        let journal = try Journal(stateDir: t.home.path + "/state/ecocode-backup")
        var degraded: [String] = []
        for _ in 0..<100 where degraded.isEmpty {
            usleep(100_000)
            degraded = Heartbeat.read(journal)?.degraded ?? []
        }
        #expect(!degraded.isEmpty, "no degraded subtree reported")
        // A file written into an unwatched subtree is still backed up, by the periodic scan.
        try t.ws.write("dir9/sub/late.txt", "found by the scan")
        let store = try LocalStore(root: t.home.path + "/data/ecocode-backup/store")
        var found = false
        for _ in 0..<100 where !found {
            usleep(200_000)
            found = try store.versions(prefix: t.prefix).contains { $0.key.hasSuffix("dir9/sub/late.txt") }
        }
        #expect(found)
        let status = try CLI.run(["status", "--json"], env: t.env.merging(["ECOCODE_BACKUP_WORKSPACES": t.ws.path]) { $1 })
        #expect(status.status == 1)
        #expect(status.stdout.contains("watcher degraded"))
        p.terminate()
        p.waitUntilExit()
        let log = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(log.contains("fs.inotify.max_user_watches"))
        #expect(log.components(separatedBy: "inotify watch limit reached").count == 2, "warned once")
    }
}
