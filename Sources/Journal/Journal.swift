import FoundationEssentials
import Glibc

/// What the journal knows about a file that is backed up.
public struct FileRecord: Sendable, Equatable {
    public var path: RelativePath
    public var size: Int64
    public var mtimeNs: Int64
    public var ctimeNs: Int64
    public var inode: UInt64
    public var mode: UInt32
    public var sha256: String
    public var versionId: String?
    /// For multipart objects: the part size and each part's SHA-256 (32 bytes each, concatenated).
    public var partSize: Int64
    public var partHashes: [UInt8]

    public init(path: RelativePath, size: Int64, mtimeNs: Int64, ctimeNs: Int64, inode: UInt64, mode: UInt32,
                sha256: String, versionId: String?, partSize: Int64 = 0, partHashes: [UInt8] = []) {
        self.path = path
        self.size = size
        self.mtimeNs = mtimeNs
        self.ctimeNs = ctimeNs
        self.inode = inode
        self.mode = mode
        self.sha256 = sha256
        self.versionId = versionId
        self.partSize = partSize
        self.partHashes = partHashes
    }
}

public enum ChangeKind: String, Sendable { case upsert, delete }

/// A pending change: never dropped, only retried later, until it is durable.
public struct QueueEntry: Sendable, Equatable {
    public var path: RelativePath
    public var kind: ChangeKind
    public var firstSeen: Double
    public var lastSeen: Double
    public var attempts: Int
    public var nextAttempt: Double
    public var lastError: String?
}

/// A multipart upload that was started and not yet completed or aborted.
public struct InFlightUpload: Sendable, Equatable {
    public var path: RelativePath
    public var key: String
    public var uploadId: String
    public var partSize: Int64
    public var size: Int64
    public var mtimeNs: Int64
    public var sha256: String

    public init(path: RelativePath, key: String, uploadId: String, partSize: Int64, size: Int64, mtimeNs: Int64, sha256: String) {
        self.path = path
        self.key = key
        self.uploadId = uploadId
        self.partSize = partSize
        self.size = size
        self.mtimeNs = mtimeNs
        self.sha256 = sha256
    }
}

public struct BufferedMetric: Sendable {
    public var id: Int64
    public var name: String
    public var value: Double
    public var unit: String
    public var at: Double
}

/// The SQLite change journal: tracked files, the pending-change queue, in-flight multipart uploads,
/// failed sync attempts and unsent metric values. One per state directory; thread-safe.
public final class Journal: @unchecked Sendable {
    public static let schemaVersion = 2
    let db: SQLiteDatabase
    let lock = Lock()
    public let path: String
    /// The schema this file has: read-only openers (status) may meet a journal an older agent wrote.
    public private(set) var schema = 0

    /// Opens `<stateDir>/journal.sqlite`, creating the directory 0700 and the file 0600.
    public init(stateDir: String, readOnly: Bool = false) throws {
        try Self.makePrivateDirectory(stateDir)
        path = stateDir + "/journal.sqlite"
        if !readOnly && !FileManager.default.fileExists(atPath: path) {
            let fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw JournalError.permissions(path: path, message: String(cString: strerror(errno))) }
            close(fd)
        }
        db = try SQLiteDatabase(path: path, readOnly: readOnly)
        do {
            if !readOnly {
                // Switching to WAL and migrating need the database to themselves for a moment; another process
                // opening it at the same time gets SQLITE_BUSY without the busy handler: try again shortly.
                var attempt = 0
                while true {
                    do {
                        // A 1 MiB page cache: the journal is read in scans, and the agent should stay small when idle.
                        try db.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA cache_size=-1024;")
                        try migrate()
                        break
                    } catch JournalError.sql(_, let message) where message.contains("locked") && attempt < 250 {
                        attempt += 1
                        usleep(20_000)
                    }
                }
            }
            try db.execute("SELECT count(*) FROM sqlite_master")
            var v = 0
            try db.run("PRAGMA user_version") { v = Int($0.int(0)) }
            schema = v
        } catch JournalError.sql(let p, let m) where m.contains("not a database") || m.contains("malformed") {
            throw JournalError.corrupt(path: p, message: m)
        }
    }

    public static func makePrivateDirectory(_ dir: String) throws {
        var st = stat()
        if stat(dir, &st) != 0 {
            do {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
            } catch {
                throw JournalError.permissions(path: dir, message: "cannot create the state directory: \(error)")
            }
        } else if st.st_mode & S_IFMT != S_IFDIR {
            throw JournalError.permissions(path: dir, message: "is not a directory (ECOCODE_BACKUP_STATE_DIR)")
        }
        chmod(dir, 0o700)
    }

    /// Moves a damaged journal aside (kept for inspection) so a fresh one can be built by a rescan.
    public static func moveAside(stateDir: String) throws -> String? {
        let path = stateDir + "/journal.sqlite"
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let aside = path + ".broken-\(Int(Date().timeIntervalSince1970))"
        try FileManager.default.moveItem(atPath: path, toPath: aside)
        for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        return aside
    }

    func locked<T>(_ body: () throws -> T) throws -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    public func transaction<T>(_ body: () throws -> T) throws -> T {
        try locked { try db.transaction(body) }
    }

    /// Brings the schema up to date. The version is read inside the write transaction, so two processes
    /// opening a new journal at once (the agent and a `status` or a test) don't both try to create it.
    func migrate() throws {
        try db.transaction {
            var version = 0
            try db.run("PRAGMA user_version") { version = Int($0.int(0)) }
            if version > Self.schemaVersion { throw JournalError.newerSchema(path: path, version: version) }
            if version < 1 {
                try db.execute("""
                CREATE TABLE workspaces (id INTEGER PRIMARY KEY, root BLOB NOT NULL UNIQUE, name TEXT NOT NULL,
                    key_prefix TEXT NOT NULL, last_success REAL);
                CREATE TABLE files (workspace INTEGER NOT NULL REFERENCES workspaces(id), path BLOB NOT NULL,
                    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, inode INTEGER NOT NULL,
                    mode INTEGER NOT NULL, sha256 TEXT NOT NULL, version_id TEXT, part_size INTEGER NOT NULL DEFAULT 0,
                    part_hashes BLOB, synced_at REAL, PRIMARY KEY (workspace, path)) WITHOUT ROWID;
                CREATE INDEX files_by_hash ON files (workspace, sha256);
                CREATE TABLE queue (workspace INTEGER NOT NULL REFERENCES workspaces(id), path BLOB NOT NULL,
                    kind TEXT NOT NULL, first_seen REAL NOT NULL, last_seen REAL NOT NULL,
                    attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL DEFAULT 0, last_error TEXT,
                    PRIMARY KEY (workspace, path)) WITHOUT ROWID;
                CREATE TABLE uploads (workspace INTEGER NOT NULL REFERENCES workspaces(id), path BLOB NOT NULL,
                    key TEXT NOT NULL, upload_id TEXT NOT NULL, part_size INTEGER NOT NULL, size INTEGER NOT NULL,
                    mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL, started REAL NOT NULL,
                    PRIMARY KEY (workspace, path)) WITHOUT ROWID;
                CREATE TABLE failures (id INTEGER PRIMARY KEY, workspace INTEGER NOT NULL, at REAL NOT NULL,
                    path BLOB NOT NULL, error TEXT NOT NULL);
                CREATE INDEX failures_by_time ON failures (at);
                CREATE TABLE metrics (id INTEGER PRIMARY KEY, name TEXT NOT NULL, value REAL NOT NULL,
                    unit TEXT NOT NULL, at REAL NOT NULL);
                CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                """)
            }
            if version < 2 {
                // v2: bytes uploaded per pass, kept a day for `status` (metric values leave once published).
                try db.execute("""
                CREATE TABLE transfers (id INTEGER PRIMARY KEY, workspace INTEGER NOT NULL, at REAL NOT NULL,
                    bytes INTEGER NOT NULL);
                """)
            }
            if version < Self.schemaVersion { try db.execute("PRAGMA user_version = \(Self.schemaVersion)") }
        }
    }

    public func recordTransfer(workspace: Int64, bytes: Int64, at: Double) throws {
        try locked {
            try db.run("DELETE FROM transfers WHERE at < ?", [.double(at - 86400)])
            try db.run("INSERT INTO transfers (workspace, at, bytes) VALUES (?, ?, ?)", [.int(workspace), .double(at), .int(bytes)])
        }
    }

    /// What `status` shows for one workspace.
    public struct WorkspaceSummary: Sendable {
        public var id: Int64
        public var root: String
        public var name: String
        public var keyPrefix: String
        public var trackedFiles: Int
        public var pending: Int
        public var oldestPending: Double?
        public var inFlight: Int
        public var lastSuccess: Double?
        public var failuresSince: Int
        public var bytesSince: Int64
    }

    /// One row per registered workspace; failures and bytes counted from `failuresSince` / `bytesSince`.
    public func summaries(failuresSince: Double, bytesSince: Double) throws -> [WorkspaceSummary] {
        try locked {
            var out: [WorkspaceSummary] = []
            try db.run("""
                SELECT w.id, w.root, w.name, w.key_prefix, w.last_success,
                    (SELECT count(*) FROM files f WHERE f.workspace = w.id),
                    (SELECT count(*) FROM queue q WHERE q.workspace = w.id),
                    (SELECT min(first_seen) FROM queue q WHERE q.workspace = w.id),
                    (SELECT count(*) FROM uploads u WHERE u.workspace = w.id),
                    (SELECT count(*) FROM failures x WHERE x.workspace = w.id AND x.at >= ?),
                    \(schema >= 2 ? "(SELECT coalesce(sum(bytes), 0) FROM transfers t WHERE t.workspace = w.id AND t.at >= ?)" : "? * 0")
                FROM workspaces w ORDER BY w.id
                """, [.double(failuresSince), .double(bytesSince)]) { r in
                out.append(WorkspaceSummary(id: r.int(0), root: String(decoding: r.blob(1), as: UTF8.self), name: r.text(2) ?? "",
                                            keyPrefix: r.text(3) ?? "", trackedFiles: Int(r.int(5)), pending: Int(r.int(6)),
                                            oldestPending: r.isNull(7) ? nil : r.double(7), inFlight: Int(r.int(8)),
                                            lastSuccess: r.isNull(4) ? nil : r.double(4), failuresSince: Int(r.int(9)),
                                            bytesSince: r.int(10)))
            }
            return out
        }
    }

    // MARK: Workspaces

    /// The id of the workspace rooted at `root`, registering it (or updating its name and prefix).
    public func workspace(root: String, name: String, keyPrefix: String) throws -> Int64 {
        try locked {
            try db.run("""
                INSERT INTO workspaces (root, name, key_prefix) VALUES (?, ?, ?)
                ON CONFLICT (root) DO UPDATE SET name = excluded.name, key_prefix = excluded.key_prefix
                """, [.blob(Array(root.utf8)), .text(name), .text(keyPrefix)])
            var id: Int64 = 0
            try db.run("SELECT id FROM workspaces WHERE root = ?", [.blob(Array(root.utf8))]) { id = $0.int(0) }
            return id
        }
    }

    public func markSuccess(workspace: Int64, at: Double) throws {
        try locked { try db.run("UPDATE workspaces SET last_success = ? WHERE id = ?", [.double(at), .int(workspace)]) }
    }

    // MARK: Files

    static let fileColumns = "path, size, mtime_ns, ctime_ns, inode, mode, sha256, version_id, part_size, part_hashes"

    static func fileRecord(_ r: Statement) -> FileRecord {
        FileRecord(path: RelativePath(bytes: r.blob(0)), size: r.int(1), mtimeNs: r.int(2), ctimeNs: r.int(3),
                   inode: UInt64(bitPattern: r.int(4)), mode: UInt32(truncatingIfNeeded: r.int(5)),
                   sha256: r.text(6) ?? "", versionId: r.text(7), partSize: r.int(8), partHashes: r.blob(9))
    }

    public func trackedFiles(workspace: Int64) throws -> [RelativePath: FileRecord] {
        try locked {
            var out: [RelativePath: FileRecord] = [:]
            try db.run("SELECT \(Self.fileColumns) FROM files WHERE workspace = ?", [.int(workspace)]) { r in
                let f = Self.fileRecord(r)
                out[f.path] = f
            }
            return out
        }
    }

    /// One tracked file, for passes too small to be worth loading the whole table.
    public func trackedFile(workspace: Int64, path: RelativePath) throws -> FileRecord? {
        try locked {
            var out: FileRecord?
            try db.run("SELECT \(Self.fileColumns) FROM files WHERE workspace = ? AND path = ?",
                       [.int(workspace), .blob(path.bytes)]) { out = Self.fileRecord($0) }
            return out
        }
    }

    /// Tracked files with this content (rename detection), through the `files_by_hash` index.
    public func trackedFiles(workspace: Int64, sha256: String) throws -> [FileRecord] {
        try locked {
            var out: [FileRecord] = []
            try db.run("SELECT \(Self.fileColumns) FROM files WHERE workspace = ? AND sha256 = ?",
                       [.int(workspace), .text(sha256)]) { out.append(Self.fileRecord($0)) }
            return out
        }
    }

    public func record(workspace: Int64, _ f: FileRecord, at: Double) throws {
        try locked {
            try db.run("""
                INSERT OR REPLACE INTO files (workspace, path, size, mtime_ns, ctime_ns, inode, mode, sha256, version_id,
                    part_size, part_hashes, synced_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, [.int(workspace), .blob(f.path.bytes), .int(f.size), .int(f.mtimeNs), .int(f.ctimeNs),
                      .int(Int64(bitPattern: f.inode)), .int(Int64(f.mode)), .text(f.sha256),
                      f.versionId.map { .text($0) } ?? .null, .int(f.partSize), .blob(f.partHashes), .double(at)])
        }
    }

    public func forget(workspace: Int64, path: RelativePath) throws {
        try locked { try forgetLocked(workspace: workspace, path: path) }
    }

    // MARK: Queue

    /// Adds or refreshes a pending change; a newer kind replaces an older one for the same path.
    public func enqueue(workspace: Int64, path: RelativePath, kind: ChangeKind, at: Double) throws {
        try locked { try enqueueLocked(workspace: workspace, path: path, kind: kind, at: at) }
    }

    public func queue(workspace: Int64) throws -> [QueueEntry] {
        try locked {
            var out: [QueueEntry] = []
            try db.run("""
                SELECT path, kind, first_seen, last_seen, attempts, next_attempt, last_error FROM queue
                WHERE workspace = ? ORDER BY first_seen
                """, [.int(workspace)]) { r in
                out.append(QueueEntry(path: RelativePath(bytes: r.blob(0)), kind: ChangeKind(rawValue: r.text(1) ?? "") ?? .upsert,
                                      firstSeen: r.double(2), lastSeen: r.double(3), attempts: Int(r.int(4)),
                                      nextAttempt: r.double(5), lastError: r.text(6)))
            }
            return out
        }
    }

    /// Removes a change once it is durable — unless it was seen again after `seenBefore` (changed meanwhile).
    public func dequeue(workspace: Int64, path: RelativePath, seenBefore: Double = .infinity) throws {
        try locked {
            try db.run("DELETE FROM queue WHERE workspace = ? AND path = ? AND last_seen <= ?",
                       [.int(workspace), .blob(path.bytes), .double(seenBefore)])
        }
    }

    /// A failed sync attempt: logged, counted in the metric buffer, and the change kept with its own backoff.
    public func recordFailure(workspace: Int64, path: RelativePath, error: String, at: Double, nextAttempt: Double,
                              countInMetric: Bool = true) throws {
        try transaction {
            try db.run("UPDATE queue SET attempts = attempts + 1, next_attempt = ?, last_error = ? WHERE workspace = ? AND path = ?",
                       [.double(nextAttempt), .text(error), .int(workspace), .blob(path.bytes)])
            try db.run("INSERT INTO failures (workspace, at, path, error) VALUES (?, ?, ?, ?)",
                       [.int(workspace), .double(at), .blob(path.bytes), .text(error)])
            if countInMetric {
                try db.run("INSERT INTO metrics (name, value, unit, at) VALUES ('WorkspaceSyncFailures', 1, 'Count', ?)", [.double(at)])
            }
        }
    }

    public func failures(since: Double) throws -> [(at: Double, path: RelativePath, error: String)] {
        try locked {
            var out: [(Double, RelativePath, String)] = []
            try db.run("SELECT at, path, error FROM failures WHERE at >= ? ORDER BY at", [.double(since)]) {
                out.append(($0.double(0), RelativePath(bytes: $0.blob(1)), $0.text(2) ?? ""))
            }
            return out
        }
    }

    /// Waits before retrying a change that was still being written (not counted as a failure).
    public func postpone(workspace: Int64, path: RelativePath, until: Double) throws {
        try locked {
            try db.run("UPDATE queue SET next_attempt = ? WHERE workspace = ? AND path = ?",
                       [.double(until), .int(workspace), .blob(path.bytes)])
        }
    }

    /// Variants for use inside `transaction { }`, which already holds the lock.
    public func enqueueLocked(workspace: Int64, path: RelativePath, kind: ChangeKind, at: Double) throws {
        try db.run("""
            INSERT INTO queue (workspace, path, kind, first_seen, last_seen, next_attempt) VALUES (?, ?, ?, ?, ?, 0)
            ON CONFLICT (workspace, path) DO UPDATE SET kind = excluded.kind, last_seen = excluded.last_seen
            """, [.int(workspace), .blob(path.bytes), .text(kind.rawValue), .double(at), .double(at)])
    }

    public func forgetLocked(workspace: Int64, path: RelativePath) throws {
        try db.run("DELETE FROM files WHERE workspace = ? AND path = ?", [.int(workspace), .blob(path.bytes)])
    }

    // MARK: Multipart uploads

    public func beginUpload(workspace: Int64, _ u: InFlightUpload, at: Double) throws {
        try locked {
            try db.run("""
                INSERT OR REPLACE INTO uploads (workspace, path, key, upload_id, part_size, size, mtime_ns, sha256, started)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, [.int(workspace), .blob(u.path.bytes), .text(u.key), .text(u.uploadId), .int(u.partSize),
                      .int(u.size), .int(u.mtimeNs), .text(u.sha256), .double(at)])
        }
    }

    public func uploads(workspace: Int64) throws -> [InFlightUpload] {
        try locked {
            var out: [InFlightUpload] = []
            try db.run("SELECT path, key, upload_id, part_size, size, mtime_ns, sha256 FROM uploads WHERE workspace = ?",
                       [.int(workspace)]) { r in
                out.append(InFlightUpload(path: RelativePath(bytes: r.blob(0)), key: r.text(1) ?? "", uploadId: r.text(2) ?? "",
                                          partSize: r.int(3), size: r.int(4), mtimeNs: r.int(5), sha256: r.text(6) ?? ""))
            }
            return out
        }
    }

    public func endUpload(workspace: Int64, uploadId: String) throws {
        try locked { try db.run("DELETE FROM uploads WHERE workspace = ? AND upload_id = ?", [.int(workspace), .text(uploadId)]) }
    }

    // MARK: Metrics

    public func bufferMetric(name: String, value: Double, unit: String, at: Double) throws {
        try locked {
            try db.run("INSERT INTO metrics (name, value, unit, at) VALUES (?, ?, ?, ?)",
                       [.text(name), .double(value), .text(unit), .double(at)])
        }
    }

    /// Oldest first. Values older than CloudWatch accepts (two weeks) are dropped first.
    public func pendingMetrics(limit: Int, now: Double) throws -> [BufferedMetric] {
        try locked {
            try db.run("DELETE FROM metrics WHERE at < ?", [.double(now - 14 * 86400 + 3600)])
            var out: [BufferedMetric] = []
            try db.run("SELECT id, name, value, unit, at FROM metrics ORDER BY id LIMIT ?", [.int(Int64(limit))]) { r in
                out.append(BufferedMetric(id: r.int(0), name: r.text(1) ?? "", value: r.double(2), unit: r.text(3) ?? "Count", at: r.double(4)))
            }
            return out
        }
    }

    public func deleteMetrics(upTo id: Int64) throws {
        try locked { try db.run("DELETE FROM metrics WHERE id <= ?", [.int(id)]) }
    }

    // MARK: State

    public func setState(_ key: String, _ value: String) throws {
        try locked { try db.run("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", [.text(key), .text(value)]) }
    }

    public func state(_ key: String) throws -> String? {
        try locked {
            var v: String?
            try db.run("SELECT value FROM state WHERE key = ?", [.text(key)]) { v = $0.text(0) }
            return v
        }
    }
}
