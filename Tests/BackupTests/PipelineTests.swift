import Foundation
import Dispatch
import Synchronization
import Testing
@testable import AWS
@testable import Backup
@testable import Journal
import TestSupport

struct IgnoreRuleTests {
    func ignored(_ rules: IgnoreRules, _ path: String, dir: Bool = false) -> Bool {
        rules.isIgnored(RelativePath(path), isDirectory: dir)
    }

    @Test func defaultsCoverGeneratedTreesAndEditorFilesButNotGit() {
        let r = IgnoreRules()
        #expect(ignored(r, "node_modules", dir: true))
        #expect(ignored(r, "web/node_modules", dir: true))
        #expect(!ignored(r, "node_modules"))  // a file of that name is kept
        #expect(ignored(r, ".build", dir: true) && ignored(r, "target", dir: true) && ignored(r, "a/__pycache__", dir: true))
        #expect(ignored(r, ".venv", dir: true))
        #expect(ignored(r, "src/.main.swift.swp") && ignored(r, "notes.txt~") && ignored(r, "src/.#lock") && ignored(r, "#auto#"))
        #expect(ignored(r, "src/4913"))
        #expect(!ignored(r, ".git", dir: true) && !ignored(r, ".git/HEAD"))
        #expect(!ignored(r, "src/main.swift"))
    }

    @Test func gitignoreSyntax() {
        var r = IgnoreRules(defaults: false)
        r.add(contents: Array("""
        # comment
        *.log
        !keep.log
        /build
        docs/**/*.pdf
        **/tmp/
        data/[0-9]*.csv
        secret?.txt
        \\#literal
        trailing   \n
        """.utf8), base: RelativePath(""))
        #expect(ignored(r, "a.log") && ignored(r, "x/y/z.log"))
        #expect(!ignored(r, "keep.log"))
        #expect(ignored(r, "build") && ignored(r, "build", dir: true) && !ignored(r, "src/build"))
        #expect(ignored(r, "docs/a.pdf") && ignored(r, "docs/x/y/b.pdf") && !ignored(r, "other/a.pdf"))
        #expect(ignored(r, "tmp", dir: true) && ignored(r, "a/b/tmp", dir: true) && !ignored(r, "a/tmp"))
        #expect(ignored(r, "data/1.csv") && !ignored(r, "data/a.csv"))
        #expect(ignored(r, "secret1.txt") && !ignored(r, "secret12.txt") && !ignored(r, "secret/.txt"))
        #expect(ignored(r, "#literal"))
        #expect(ignored(r, "trailing"))
    }

    @Test func nestedIgnoreFilesApplyBelowTheirDirectoryAndCanReinclude() throws {
        let tree = try TempTree("ignore")
        defer { tree.remove() }
        try tree.write(".ecocodeignore", "*.gen\n!node_modules/\n")
        try tree.write("sub/.ecocodeignore", "local-only.txt\n/anchored.txt\n")
        try tree.write("a.gen", "x")
        try tree.write("sub/local-only.txt", "x")
        try tree.write("sub/anchored.txt", "x")
        try tree.write("sub/deeper/anchored.txt", "x")
        try tree.write("local-only.txt", "x")
        try tree.write("node_modules/pkg/index.js", "x")
        try tree.write("target/out.o", "x")
        let found = Set(Scanner(root: tree.path).scan().files.map(\.path.description))
        #expect(found == [".ecocodeignore", "sub/.ecocodeignore", "sub/deeper/anchored.txt", "local-only.txt",
                          "node_modules/pkg/index.js"])
        #expect(Scanner(root: tree.path).isIgnored(RelativePath("sub/local-only.txt"), isDirectory: false))
        #expect(!Scanner(root: tree.path).isIgnored(RelativePath("local-only.txt"), isDirectory: false))
    }
}

struct FileReaderTests {
    @Test func partSizesCoverTheFileIn10000PartsOfWholeMebibytes() {
        let mib: Int64 = 1 << 20
        #expect(PartSizing.partSize(for: 9 * mib) == 8 * mib)
        #expect(PartSizing.partSize(for: 80_000 * mib) == 8 * mib)
        #expect(PartSizing.partSize(for: 80_001 * mib) == 9 * mib)
        let huge: Int64 = 5 << 40  // 5 TiB, S3's maximum object size
        let part = PartSizing.partSize(for: huge)
        #expect(part % mib == 0 && (huge + part - 1) / part <= 10_000)
    }

    @Test func hashesTheWholeFileAndSizesItsParts() throws {
        let tree = try TempTree("read")
        defer { tree.remove() }
        let mib = 1 << 20
        let bytes = (0..<(17 * mib + 5)).map { UInt8(truncatingIfNeeded: $0 &* 3) }
        let path = try tree.write("f", bytes)
        let snap = try #require(try FileSnapshot.lstat(path))
        let src = try FileReader.read(absolutePath: path, expected: snap)
        #expect(src.sha256 == SHA256.hash(bytes))
        #expect(src.partSize == 8 * Int64(mib))
    }

    @Test func aFileThatChangedSinceItWasSeenIsNotRead() throws {
        let tree = try TempTree("read")
        defer { tree.remove() }
        let path = try tree.write("f", Array("one".utf8))
        let snap = try #require(try FileSnapshot.lstat(path))
        try tree.write("f", Array("three".utf8))
        #expect(throws: StoreError.self) { try FileReader.read(absolutePath: path, expected: snap) }
    }
}

/// A store double that edits the file while "uploading" it, to prove such a version is withdrawn.
final class EditingStore: ObjectStore, @unchecked Sendable {
    let lock = NSLock()
    var discarded: [String] = []
    var puts = 0
    let edit: () -> Void
    init(edit: @escaping () -> Void) { self.edit = edit }
    var destination: String { "test double" }
    func checkReady() throws {}
    func put(key: String, source: SourceFile, metadata: [String: String], checkpoint: UploadCheckpoint?) throws -> StoredObject {
        lock.lock(); puts += 1; lock.unlock()
        edit()
        return StoredObject(versionId: "v\(puts)")
    }
    func copy(from key: String, versionId: String?, to newKey: String, metadata: [String: String]) throws -> String? { nil }
    func delete(key: String) throws {}
    func discardVersion(key: String, versionId: String) throws { lock.lock(); discarded.append(versionId); lock.unlock() }
    func versions(prefix: String) throws -> [ObjectVersion] { [] }
    func head(key: String, versionId: String) throws -> ObjectHead { ObjectHead(size: 0, metadata: [:]) }
    func download(key: String, versionId: String, range: ClosedRange<Int64>?, to fd: Int32, offset: Int64) throws -> ObjectHead {
        ObjectHead(size: 0, metadata: [:])
    }
    func abortUnknownUploads(prefix: String, known: Set<String>) throws -> Int { 0 }
}

struct PipelineTests {
    @Test func aFileChangedDuringUploadIsWithdrawnAndStaysQueued() throws {
        let tree = try TempTree("pipe")
        let state = try TempTree("state")
        defer { tree.remove(); state.remove() }
        let path = try tree.write("live.txt", Array("first".utf8))
        var edits = 0
        let store = EditingStore { if edits == 0 { edits += 1; try? Data("second, longer".utf8).write(to: URL(fileURLWithPath: path)) } }
        let journal = try Journal(stateDir: state.path)
        let ws = Workspace(id: try journal.workspace(root: tree.path, name: "t", keyPrefix: "p/t/"), root: tree.path, name: "t", keyPrefix: "p/t/")
        try journal.enqueue(workspace: ws.id, path: RelativePath("live.txt"), kind: .upsert, at: 1)
        let pipeline = Pipeline(store: store, journal: journal, workspace: ws)
        let entry = try #require(try journal.queue(workspace: ws.id).first)
        #expect(try pipeline.process(entry, tracked: .init(files: [:])) == .changing)
        #expect(store.discarded == ["v1"])
        #expect(try journal.trackedFiles(workspace: ws.id).isEmpty)
        #expect(try journal.queue(workspace: ws.id).count == 1)
        // Once it settles, the next attempt stores the final content.
        #expect(try pipeline.process(entry, tracked: .init(files: [:])) == .uploaded(bytes: 14))
        #expect(try journal.trackedFiles(workspace: ws.id)[RelativePath("live.txt")]?.sha256 == SHA256.hash(Array("second, longer".utf8)).hex)
        #expect(try journal.queue(workspace: ws.id).isEmpty)
    }
}

struct JournalTests {
    @Test func createsPrivateFilesAndKeepsQueueSemantics() throws {
        let state = try TempTree("journal")
        defer { state.remove() }
        let dir = state.path + "/nested/state"
        let j = try Journal(stateDir: dir)
        var st = stat()
        stat(dir, &st)
        #expect(st.st_mode & 0o777 == 0o700)
        stat(dir + "/journal.sqlite", &st)
        #expect(st.st_mode & 0o777 == 0o600)
        let ws = try j.workspace(root: "/w", name: "w", keyPrefix: "p/w/")
        #expect(try j.workspace(root: "/w", name: "w", keyPrefix: "p/w/") == ws)
        let nfc = RelativePath("caf\u{E9}"), nfd = RelativePath("cafe\u{301}")
        try j.enqueue(workspace: ws, path: nfc, kind: .upsert, at: 10)
        try j.enqueue(workspace: ws, path: nfd, kind: .upsert, at: 11)
        #expect(try j.queue(workspace: ws).count == 2)  // byte-wise distinct
        try j.enqueue(workspace: ws, path: nfc, kind: .delete, at: 20)
        let q = try j.queue(workspace: ws)
        #expect(q.first { $0.path == nfc }?.kind == .delete)
        #expect(q.first { $0.path == nfc }?.firstSeen == 10)
        // A change seen again after processing started is not dequeued.
        try j.dequeue(workspace: ws, path: nfc, seenBefore: 15)
        #expect(try j.queue(workspace: ws).count == 2)
        try j.dequeue(workspace: ws, path: nfc, seenBefore: 25)
        #expect(try j.queue(workspace: ws).map(\.path) == [nfd])
        try j.recordFailure(workspace: ws, path: nfd, error: "boom", at: 30, nextAttempt: 40)
        let failed = try #require(try j.queue(workspace: ws).first)
        #expect(failed.attempts == 1 && failed.nextAttempt == 40 && failed.lastError == "boom")
        #expect(try j.failures(since: 0).count == 1)
        #expect(try j.pendingMetrics(limit: 10, now: 31).map(\.name) == ["WorkspaceSyncFailures"])
    }

    @Test func refusesAJournalFromANewerVersion() throws {
        let state = try TempTree("journal")
        defer { state.remove() }
        _ = try Journal(stateDir: state.path)
        try SQLiteDatabase(path: state.path + "/journal.sqlite").execute("PRAGMA user_version = 99")
        #expect(throws: JournalError.self) { try Journal(stateDir: state.path) }
    }
}

extension JournalTests {
    @Test func concurrentFirstOpensDoNotRaceTheMigration() throws {
        let state = try TempTree("race")
        defer { state.remove() }
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            do { _ = try Journal(stateDir: state.path) } catch { failures.withLock { $0.append("\(error)") } }
        }
        #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0 })")
    }

    @Test func aVersion1JournalIsMigrated() throws {
        let state = try TempTree("v1")
        defer { state.remove() }
        _ = try Journal(stateDir: state.path)
        let db = try SQLiteDatabase(path: state.path + "/journal.sqlite")
        try db.execute("DROP TABLE transfers; PRAGMA user_version = 1;")
        let j = try Journal(stateDir: state.path)
        #expect(j.schema == 2)
        try j.recordTransfer(workspace: 1, bytes: 10, at: 1)
    }
}
