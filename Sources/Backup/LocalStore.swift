import AWS
import FoundationEssentials
import Glibc
import Journal

/// The local versioned store, for machines without a bucket: same version and delete-marker semantics as
/// a versioned S3 bucket, content stored once per SHA-256 under `objects/`, the version index in SQLite.
public final class LocalStore: ObjectStore, @unchecked Sendable {
    public let root: String
    let index: SQLiteDatabase
    let lock = Lock()

    public init(root: String) throws {
        self.root = root
        for dir in [root, root + "/objects", root + "/tmp"] {
            try Journal.makePrivateDirectory(dir)
        }
        index = try SQLiteDatabase(path: root + "/index.sqlite")
        chmod(root + "/index.sqlite", 0o600)
        try index.execute("""
            PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
            CREATE TABLE IF NOT EXISTS versions (seq INTEGER PRIMARY KEY AUTOINCREMENT, key BLOB NOT NULL,
                version_id TEXT NOT NULL UNIQUE, sha256 TEXT, size INTEGER NOT NULL DEFAULT 0, metadata TEXT,
                delete_marker INTEGER NOT NULL DEFAULT 0, at REAL NOT NULL);
            CREATE INDEX IF NOT EXISTS versions_by_key ON versions (key, seq);
            """)
    }

    public var destination: String { "local store \(root)" }

    public func checkReady() throws {}

    func objectPath(_ sha: String) -> String { "\(root)/objects/\(sha.prefix(2))/\(sha)" }

    public func put(key: String, source: SourceFile, metadata: [String: String], checkpoint: UploadCheckpoint?) throws -> StoredObject {
        let sha = source.sha256.hex
        let dest = objectPath(sha)
        if !FileManager.default.fileExists(atPath: dest) {
            try Journal.makePrivateDirectory(String(dest[..<dest.lastIndex(of: "/")!]))
            let tmp = "\(root)/tmp/\(UUID().uuidString)"
            defer { unlink(tmp) }
            let copied = try copyHashing(source: source, to: tmp)
            // What was copied must be the state that was hashed, or it isn't that version.
            guard copied == source.sha256 else { throw StoreError.changedWhileReading(path: source.absolutePath) }
            guard rename(tmp, dest) == 0 else { throw FileError(path: dest, errno: errno) }
        }
        return StoredObject(versionId: try addVersion(key: key, sha: sha, size: source.symlinkTarget.map { Int64($0.count) } ?? source.snapshot.size,
                                                      metadata: metadata, deleteMarker: false))
    }

    func copyHashing(source: SourceFile, to tmp: String) throws -> [UInt8] {
        let out = open(tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
        guard out >= 0 else { throw FileError(path: tmp, errno: errno) }
        defer { close(out) }
        var hasher = SHA256()
        func write(_ chunk: UnsafeRawBufferPointer) throws {
            var done = 0
            while done < chunk.count {
                let n = Glibc.write(out, chunk.baseAddress! + done, chunk.count - done)
                if n < 0 { if errno == EINTR { continue }; throw FileError(path: tmp, errno: errno) }
                done += n
            }
        }
        if let target = source.symlinkTarget {
            try target.withUnsafeBytes { try write($0) }
            hasher.update(target)
        } else {
            let fd = open(source.absolutePath, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { throw FileError(path: source.absolutePath, errno: errno) }
            defer { close(fd) }
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
            defer { buffer.deallocate() }
            while true {
                let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
                if n < 0 { if errno == EINTR { continue }; throw FileError(path: source.absolutePath, errno: errno) }
                if n == 0 { break }
                let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
                try write(chunk)
                hasher.update(chunk)
            }
        }
        guard fsync(out) == 0 else { throw FileError(path: tmp, errno: errno) }
        return hasher.finalize()
    }

    func addVersion(key: String, sha: String?, size: Int64, metadata: [String: String], deleteMarker: Bool) throws -> String {
        let id = UUID().uuidString.lowercased()
        let meta = String(decoding: try JSONEncoder().encode(metadata), as: UTF8.self)
        lock.lock()
        defer { lock.unlock() }
        try index.run("INSERT INTO versions (key, version_id, sha256, size, metadata, delete_marker, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                      [.blob(Array(key.utf8)), .text(id), sha.map { .text($0) } ?? .null, .int(size), .text(meta),
                       .int(deleteMarker ? 1 : 0), .double(Date().timeIntervalSince1970)])
        return id
    }

    public func copy(from key: String, versionId: String?, to newKey: String, metadata: [String: String]) throws -> String? {
        lock.lock()
        var found: (String, Int64)?
        do {
            let sql = versionId == nil
                ? "SELECT sha256, size FROM versions WHERE key = ? AND delete_marker = 0 ORDER BY seq DESC LIMIT 1"
                : "SELECT sha256, size FROM versions WHERE key = ? AND version_id = ? AND delete_marker = 0"
            try index.run(sql, [.blob(Array(key.utf8))] + (versionId.map { [.text($0)] } ?? [])) { found = ($0.text(0) ?? "", $0.int(1)) }
        } catch { lock.unlock(); throw error }
        lock.unlock()
        guard let (sha, size) = found else { throw StoreError.unusable("local store: no version \(versionId ?? "latest") of \(key)") }
        return try addVersion(key: newKey, sha: sha, size: size, metadata: metadata, deleteMarker: false)
    }

    public func delete(key: String) throws {
        _ = try addVersion(key: key, sha: nil, size: 0, metadata: [:], deleteMarker: true)
    }

    public func discardVersion(key: String, versionId: String) throws {
        lock.lock()
        defer { lock.unlock() }
        try index.run("DELETE FROM versions WHERE key = ? AND version_id = ?", [.blob(Array(key.utf8)), .text(versionId)])
    }

    public func versions(prefix: String) throws -> [ObjectVersion] {
        lock.lock()
        defer { lock.unlock() }
        var rows: [ObjectVersion] = []
        let p = Array(prefix.utf8)
        // Byte-prefix match on the BLOB key: substr() on BLOBs counts bytes.
        try index.run("SELECT key, version_id, delete_marker, size, at, sha256 FROM versions WHERE substr(key, 1, ?) = ? ORDER BY key, seq DESC",
                      [.int(Int64(p.count)), .blob(p)]) { r in
            let key = String(decoding: r.blob(0), as: UTF8.self)
            let latest = rows.last.map { Array($0.key.utf8) != r.blob(0) } ?? true
            rows.append(ObjectVersion(key: key, versionId: r.text(1) ?? "", isLatest: latest,
                                      lastModified: Date(timeIntervalSince1970: r.double(4)), isDeleteMarker: r.int(2) != 0,
                                      size: r.int(3), etag: r.text(5) ?? ""))
        }
        return rows
    }

    public func head(key: String, versionId: String) throws -> ObjectHead {
        guard let c = try contentPath(key: key, versionId: versionId) else {
            throw StoreError.unusable("local store: no version \(versionId) of \(key)")
        }
        let size = (try? FileSnapshot.lstat(c.path))??.size ?? 0
        return ObjectHead(size: size, metadata: c.metadata)
    }

    @discardableResult
    public func download(key: String, versionId: String, range: ClosedRange<Int64>?, to fd: Int32, offset: Int64) throws -> ObjectHead {
        guard let c = try contentPath(key: key, versionId: versionId) else {
            throw StoreError.unusable("local store: no version \(versionId) of \(key)")
        }
        let src = open(c.path, O_RDONLY | O_CLOEXEC)
        guard src >= 0 else { throw FileError(path: c.path, errno: errno) }
        defer { close(src) }
        let size = (try FileSnapshot.lstat(c.path))?.size ?? 0
        let r = range ?? 0...max(0, size - 1)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
        defer { buffer.deallocate() }
        var pos = r.lowerBound
        while pos <= r.upperBound && pos < size {
            let n = pread(src, buffer.baseAddress, Int(min(Int64(buffer.count), r.upperBound - pos + 1)), off_t(pos))
            if n < 0 { if errno == EINTR { continue }; throw FileError(path: c.path, errno: errno) }
            if n == 0 { break }
            var done = 0
            while done < n {
                let w = pwrite(fd, buffer.baseAddress! + done, n - done, off_t(offset + pos - r.lowerBound + Int64(done)))
                if w < 0 { if errno == EINTR { continue }; throw FileError(path: "restore target", errno: errno) }
                done += w
            }
            pos += Int64(n)
        }
        return ObjectHead(size: size, metadata: c.metadata)
    }

    /// The stored bytes of one version (for restore and tests).
    public func contentPath(key: String, versionId: String) throws -> (path: String, metadata: [String: String])? {
        lock.lock()
        defer { lock.unlock() }
        var out: (String, [String: String])?
        try index.run("SELECT sha256, metadata FROM versions WHERE key = ? AND version_id = ? AND delete_marker = 0",
                      [.blob(Array(key.utf8)), .text(versionId)]) { r in
            let meta = (try? JSONDecoder().decode([String: String].self, from: Data((r.text(1) ?? "{}").utf8))) ?? [:]
            out = (self.objectPath(r.text(0) ?? ""), meta)
        }
        return out
    }

    public func abortUnknownUploads(prefix: String, known: Set<String>) throws -> Int {
        // Interrupted copies leave only temp files, never index rows.
        let tmp = root + "/tmp"
        for name in (try? FileManager.default.contentsOfDirectory(atPath: tmp)) ?? [] { unlink(tmp + "/" + name) }
        return 0
    }
}
