import AWS
import FoundationEssentials
import Dispatch
import Glibc
import Journal
import Synchronization

/// The newest entry of each key at or before `at`, in S3's list order (entries of one key newest first;
/// timestamps have one-second precision, so order decides ties). Keys whose chosen entry is a delete
/// marker did not exist then and are left out. A free function over the seam: any store's listing works.
public func chooseVersions(_ entries: [ObjectVersion], at: Date) -> [ObjectVersion] {
    var chosen: [ObjectVersion] = []
    var decided = Set<[UInt8]>()
    for e in entries where e.lastModified <= at {
        let key = Array(e.key.utf8)
        guard !decided.contains(key) else { continue }
        decided.insert(key)
        if !e.isDeleteMarker { chosen.append(e) }
    }
    return chosen
}

/// The workspace-relative path of `key`, or why it must not be written: empty, absolute, `.`/`..` or empty
/// segments, NUL. Nothing a key says can point outside the restore target.
public func safeRelativePath(key: String, prefix: String) -> Result<RelativePath, RestoreSkip> {
    let bytes = Array(key.utf8)
    guard bytes.starts(with: Array(prefix.utf8)) else { return .failure(RestoreSkip(key: key, reason: "not under \(prefix)")) }
    let rel = Array(bytes.dropFirst(prefix.utf8.count))
    func refuse(_ why: String) -> Result<RelativePath, RestoreSkip> { .failure(RestoreSkip(key: key, reason: why)) }
    if rel.isEmpty { return refuse("empty relative path") }
    if rel.first == UInt8(ascii: "/") { return refuse("absolute path") }
    if rel.contains(0) { return refuse("NUL in the name") }
    for seg in rel.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false) {
        if seg.isEmpty { return refuse("empty path segment (//)") }
        if seg.elementsEqual([46]) || seg.elementsEqual([46, 46]) { return refuse("'.' or '..' path segment") }
    }
    return .success(RelativePath(bytes: rel))
}

public struct RestoreSkip: Error, Sendable, CustomStringConvertible {
    public var key: String
    public var reason: String
    public var description: String { "\(key): \(reason)" }
}

public struct RestoreEntry: Sendable {
    public var path: RelativePath
    public var version: ObjectVersion
}

public struct RestoreReport: Sendable {
    public var restored = 0
    public var bytes: Int64 = 0
    public var skipped: [RestoreSkip] = []
    public var failed: [RestoreSkip] = []
    public var seconds = 0.0
}

/// Brings back one moment of a workspace into a target directory: every file downloaded to a temporary
/// name beside its final place, verified against its `sha256` metadata (and S3 checksum), given its mode
/// and mtime, then renamed into place. Directories are opened one component at a time without following
/// symlinks, so nothing is ever written outside the target.
public struct Restorer: Sendable {
    public let store: any ObjectStore
    public let prefix: String
    public let target: String
    public var overwrite = false
    public var workers = 8
    /// Objects above this are fetched with parallel ranged GETs.
    public var rangedThreshold: Int64 = 16 << 20
    /// Fixed range size; by default about 8 ranges per object, 8–64 MiB each (fewer requests, still 4 in flight).
    public var rangeSize: Int64?

    func rangeSize(for size: Int64) -> Int64 {
        if let rangeSize { return rangeSize }
        let mib: Int64 = 1 << 20
        return min(64 * mib, max(8 * mib, (size / 8 + mib - 1) / mib * mib))
    }
    public var attempts = 3

    public init(store: any ObjectStore, prefix: String, target: String) {
        self.store = store
        self.prefix = prefix
        self.target = target
    }

    /// What would be restored at `at`, limited to `paths` (files or subtrees) when given.
    public func plan(at: Date, paths: [RelativePath]) throws -> (entries: [RestoreEntry], skipped: [RestoreSkip]) {
        var entries: [RestoreEntry] = []
        var skipped: [RestoreSkip] = []
        for v in chooseVersions(try store.versions(prefix: prefix), at: at) {
            switch safeRelativePath(key: v.key, prefix: prefix) {
            case .failure(let skip): skipped.append(skip)
            case .success(let rel):
                if paths.isEmpty || paths.contains(where: { rel.isWithin($0) }) { entries.append(RestoreEntry(path: rel, version: v)) }
            }
        }
        return (entries, skipped)
    }

    public func restore(_ entries: [RestoreEntry], progress: SyncProgress = SyncProgress()) -> RestoreReport {
        let start = Date()
        progress.add(total: entries.count)
        let report = Mutex(RestoreReport())
        let next = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: max(1, min(workers, entries.count))) { _ in
            while true {
                let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
                guard i < entries.count else { return }
                let e = entries[i]
                do {
                    let bytes = try restoreOne(e)
                    report.withLock { $0.restored += 1; $0.bytes += bytes }
                    progress.finished(bytes: bytes)
                } catch let skip as RestoreSkip {
                    report.withLock { $0.skipped.append(skip) }
                    progress.finished(bytes: 0)
                } catch {
                    report.withLock { $0.failed.append(RestoreSkip(key: e.path.description, reason: "\(error)")) }
                    progress.finished(bytes: 0)
                }
            }
        }
        var r = report.withLock { $0 }
        r.seconds = Date().timeIntervalSince(start)
        return r
    }

    /// Opens (creating) each directory of `components` below the target without following symlinks.
    func openParent(_ path: RelativePath) throws -> Int32 {
        var fd = open(target, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw FileError(path: target, errno: errno) }
        let parts = path.bytes.split(separator: UInt8(ascii: "/")).dropLast()
        for part in parts {
            let name = Array(part) + [0]
            let rc = name.withUnsafeBufferPointer { p in
                p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: name.count) { mkdirat(fd, $0, 0o755) }
            }
            if rc != 0 && errno != EEXIST { let e = errno; close(fd); throw FileError(path: "\(target)/\(path)", errno: e) }
            let child = name.withUnsafeBufferPointer { p in
                p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: name.count) { openat(fd, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            }
            let e = errno
            close(fd)
            guard child >= 0 else {
                if e == ELOOP || e == ENOTDIR {
                    throw RestoreSkip(key: path.description, reason: "its directory '\(String(decoding: part, as: UTF8.self))' is a symlink or a file in the target; refusing to write through it")
                }
                throw FileError(path: "\(target)/\(path)", errno: e)
            }
            fd = child
        }
        return fd
    }

    func restoreOne(_ e: RestoreEntry) throws -> Int64 {
        let dir = try openParent(e.path)
        defer { close(dir) }
        let name = String(decoding: e.path.bytes.split(separator: UInt8(ascii: "/")).last!, as: UTF8.self)
        var st = stat()
        if fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 {
            if !overwrite { throw RestoreSkip(key: e.path.description, reason: "already exists in the target (use --overwrite to replace it)") }
            if st.st_mode & S_IFMT == S_IFDIR { throw RestoreSkip(key: e.path.description, reason: "a directory of that name exists in the target") }
        }
        var lastError: Error = RestoreSkip(key: e.path.description, reason: "not attempted")
        for _ in 0..<attempts {
            do { return try attempt(e, dir: dir, name: name) } catch let skip as RestoreSkip { throw skip } catch { lastError = error }
        }
        throw lastError
    }

    /// One download into a temporary name, verified, then renamed over `name`. The GET itself carries the
    /// metadata (mode, mtime, sha256): no HEAD per file.
    func attempt(_ e: RestoreEntry, dir: Int32, name: String) throws -> Int64 {
        let tmp = ".ecocode-restore-\(UUID().uuidString.prefix(12)).tmp"
        var renamed = false
        defer { if !renamed { unlinkat(dir, tmp, 0) } }
        let fd = openat(dir, tmp, O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileError(path: "\(target)/\(e.path)", errno: errno) }
        let head: ObjectHead
        do { head = try download(e, into: fd) } catch { close(fd); throw error }
        let mode = head.metadata["mode"].flatMap { UInt32($0, radix: 8) } ?? 0o100644
        if mode & UInt32(S_IFMT) == UInt32(S_IFLNK) {
            var bytes = [UInt8](repeating: 0, count: Int(e.version.size))
            _ = pread(fd, &bytes, bytes.count, 0)
            close(fd)
            unlinkat(dir, tmp, 0)
            guard symlinkat(String(decoding: bytes, as: UTF8.self), dir, tmp) == 0 else { throw FileError(path: e.path.description, errno: errno) }
        } else {
            fchmod(fd, mode_t(mode & 0o7777))
            let synced = fsync(fd) == 0
            close(fd)
            guard synced else { throw FileError(path: "\(target)/\(e.path)", errno: errno) }
        }
        if let ns = head.metadata["mtime"].flatMap(Int64.init) {
            let t = timespec(tv_sec: Int(ns / 1_000_000_000), tv_nsec: Int(ns % 1_000_000_000))
            var times = [t, t]
            utimensat(dir, tmp, &times, AT_SYMLINK_NOFOLLOW)
        }
        guard renameat(dir, tmp, dir, name) == 0 else { throw FileError(path: "\(target)/\(e.path)", errno: errno) }
        renamed = true
        return e.version.size
    }

    /// Fetches the version into `fd` (ranged and parallel when large) and verifies size and SHA-256.
    func download(_ e: RestoreEntry, into fd: Int32) throws -> ObjectHead {
        let size = e.version.size
        var head: ObjectHead
        if size > rangedThreshold {
            guard ftruncate(fd, off_t(size)) == 0 else { throw FileError(path: "\(target)/\(e.path)", errno: errno) }
            let step = rangeSize(for: size)
            let ranges = stride(from: Int64(0), to: size, by: Int(step)).map { $0...min(size - 1, $0 + step - 1) }
            let result = Mutex<(head: ObjectHead?, error: Error?)>((nil, nil))
            let next = Atomic<Int>(0)
            DispatchQueue.concurrentPerform(iterations: min(4, ranges.count)) { _ in
                while true {
                    let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
                    guard i < ranges.count, result.withLock({ $0.error == nil }) else { return }
                    do {
                        let h = try store.download(key: e.version.key, versionId: e.version.versionId, range: ranges[i], to: fd, offset: ranges[i].lowerBound)
                        if i == 0 { result.withLock { $0.head = h } }
                    } catch { result.withLock { if $0.error == nil { $0.error = error } } }
                }
            }
            let (h, error) = result.withLock { ($0.head, $0.error) }
            if let error { throw error }
            head = h!
        } else {
            head = try store.download(key: e.version.key, versionId: e.version.versionId, range: nil, to: fd, offset: 0)
        }
        var st = stat()
        fstat(fd, &st)
        guard Int64(st.st_size) == size else {
            throw VerifyError(path: e.path.description, why: "download ended at \(st.st_size) of \(size) bytes")
        }
        let hash = try FileHashing.sha256(fd: fd, length: size, name: "\(target)/\(e.path)")
        if let expected = head.metadata["sha256"], expected != hash.hex {
            throw VerifyError(path: e.path.description, why: "SHA-256 \(hash.hex) does not match the backup's \(expected)")
        }
        if let checksum = head.checksumSHA256, checksum != hash.base64 {
            throw VerifyError(path: e.path.description, why: "S3 checksum does not match the downloaded bytes")
        }
        head.size = size
        return head
    }
}

public struct VerifyError: Error, CustomStringConvertible {
    public var path: String
    public var why: String
    public var description: String { "\(path): \(why)" }
}
