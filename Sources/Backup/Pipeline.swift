import AWS
import FoundationEssentials
import Glibc
import Journal

/// A workspace as the pipeline sees it.
public struct Workspace: Sendable {
    public var id: Int64
    /// Absolute, without a trailing slash.
    public var root: String
    public var name: String
    /// `<ECOCODE_BACKUP_PREFIX>/<name>/`: every key of this workspace starts with it.
    public var keyPrefix: String

    public init(id: Int64, root: String, name: String, keyPrefix: String) {
        self.id = id
        self.root = root
        self.name = name
        self.keyPrefix = keyPrefix
    }

    public static func keyPrefix(prefix: String, name: String) -> String {
        (prefix.isEmpty ? "" : prefix + "/") + name + "/"
    }

    public func key(_ path: RelativePath) -> String { keyPrefix + (path.utf8String ?? path.description) }
    public func absolute(_ path: RelativePath) -> String { root + "/" + path.description }
}

/// What happened to one pending change.
public enum Outcome: Sendable, Equatable {
    case uploaded(bytes: Int64)
    case copied(from: RelativePath)
    case touched
    case unchanged
    case deleted
    case skipped(String)
    /// Not an error: the file was changing; it stays queued and is tried again shortly.
    case changing
}

/// Turns one queued change into at most one durable step in the store, then records it in the journal.
/// This is where files are hashed (`FileReader`) and where uploads, copies and deletes are decided.
public struct Pipeline: Sendable {
    public let store: any ObjectStore
    public let journal: Journal
    public let workspace: Workspace

    public init(store: any ObjectStore, journal: Journal, workspace: Workspace) {
        self.store = store
        self.journal = journal
        self.workspace = workspace
    }

    /// Journal state at the start of a pass. A large pass loads the whole table once; a small one (the
    /// agent's usual single save) asks the journal per path, so its cost doesn't grow with the workspace.
    public struct Tracked: Sendable {
        enum Source: Sendable {
            case loaded(files: [RelativePath: FileRecord], bySHA: [String: [FileRecord]])
            case journal(Journal, workspace: Int64)
        }
        let source: Source
        /// With a new or rebuilt journal: the latest stored version of each key (version id, size), so files
        /// already in the backup are adopted instead of uploaded again.
        /// Keyed by the key's UTF-8 bytes: `String` keys would merge NFC and NFD names.
        public var adoptable: [[UInt8]: (versionId: String, size: Int64)] = [:]

        public init(files: [RelativePath: FileRecord], adoptable: [[UInt8]: (versionId: String, size: Int64)] = [:]) {
            var bySHA: [String: [FileRecord]] = [:]
            for f in files.values { bySHA[f.sha256, default: []].append(f) }
            source = .loaded(files: files, bySHA: bySHA)
            self.adoptable = adoptable
        }

        public init(journal: Journal, workspace: Int64, adoptable: [[UInt8]: (versionId: String, size: Int64)] = [:]) {
            source = .journal(journal, workspace: workspace)
            self.adoptable = adoptable
        }

        func record(_ path: RelativePath) throws -> FileRecord? {
            switch source {
            case .loaded(let files, _): return files[path]
            case .journal(let j, let ws): return try j.trackedFile(workspace: ws, path: path)
            }
        }

        func records(withContent sha: String) throws -> [FileRecord] {
            switch source {
            case .loaded(_, let bySHA): return bySHA[sha] ?? []
            case .journal(let j, let ws): return try j.trackedFiles(workspace: ws, sha256: sha)
            }
        }
    }

    public func process(_ entry: QueueEntry, tracked: Tracked) throws -> Outcome {
        let started = Date().timeIntervalSince1970
        let abs = workspace.absolute(entry.path)
        let outcome: Outcome
        if let snap = try FileSnapshot.lstat(abs) {
            outcome = try upsert(entry.path, abs: abs, snapshot: snap, tracked: tracked)
        } else {
            outcome = try delete(entry.path, tracked: tracked)
        }
        if outcome != .changing {
            try journal.dequeue(workspace: workspace.id, path: entry.path, seenBefore: started)
        }
        return outcome
    }

    func upsert(_ path: RelativePath, abs: String, snapshot: FileSnapshot, tracked: Tracked) throws -> Outcome {
        let previous = try tracked.record(path)
        if let previous, snapshot.matches(previous) { return .unchanged }
        guard snapshot.isRegular || snapshot.isSymlink else {
            // A backed-up file replaced by a directory (or a FIFO…) is gone as a file.
            if previous != nil { return try delete(path, tracked: tracked) }
            return snapshot.isDirectory ? .unchanged : .skipped("not a regular file or symlink")
        }
        guard path.utf8String != nil else { return .skipped("name is not valid UTF-8") }
        let source: SourceFile
        do { source = try FileReader.read(absolutePath: abs, expected: snapshot) } catch StoreError.changedWhileReading {
            return .changing
        }
        let sha = source.sha256.hex
        let now = Date().timeIntervalSince1970
        func record(_ versionId: String?, partHashes: [UInt8] = previous?.partHashes ?? []) -> FileRecord {
            FileRecord(path: path, size: snapshot.size, mtimeNs: snapshot.mtimeNs, ctimeNs: snapshot.ctimeNs, inode: snapshot.inode,
                       mode: snapshot.mode, sha256: sha, versionId: versionId, partSize: source.partSize, partHashes: partHashes)
        }
        let metadata = BackupMetadata.make(sha256: source.sha256, snapshot: snapshot)
        // Same content, new times (touch, or a save of identical bytes): only the journal changes…
        // unless the mode changed, which the stored metadata must follow.
        if let previous, previous.sha256 == sha {
            if previous.mode == snapshot.mode {
                try journal.record(workspace: workspace.id, record(previous.versionId), at: now)
                return .touched
            }
            if previous.versionId != nil, snapshot.size < 5 << 30 {
                let key = workspace.key(path)
                let version = try store.copy(from: key, versionId: previous.versionId, to: key, metadata: metadata)
                return try commit(record(version), snapshot: snapshot, outcome: .copied(from: path))
            }
        }
        // A path with the same content that vanished: a rename or move. Copy server-side, don't re-upload.
        if previous == nil, snapshot.size < 5 << 30,
           let origin = try tracked.records(withContent: sha).first(where: { $0.path != path && $0.versionId != nil
                                                        && (try? FileSnapshot.lstat(workspace.absolute($0.path))) == .some(nil) }) {
            let version = try store.copy(from: workspace.key(origin.path), versionId: origin.versionId, to: workspace.key(path), metadata: metadata)
            return try commit(record(version, partHashes: origin.partHashes), snapshot: snapshot, outcome: .copied(from: origin.path))
        }
        if previous == nil, let stored = tracked.adoptable[Array(workspace.key(path).utf8)], stored.size == (source.symlinkTarget.map { Int64($0.count) } ?? snapshot.size),
           let meta = try? store.head(key: workspace.key(path), versionId: stored.versionId).metadata,
           meta["sha256"] == sha, meta["mode"] == metadata["mode"] {
            try journal.record(workspace: workspace.id, record(stored.versionId), at: now)
            return .touched
        }
        let checkpoint = JournalCheckpoint(journal: journal, workspace: workspace.id, path: path)
        let stored = try store.put(key: workspace.key(path), source: source, metadata: metadata, checkpoint: checkpoint)
        return try commit(record(stored.versionId, partHashes: stored.partHashes), snapshot: snapshot, outcome: .uploaded(bytes: source.symlinkTarget.map { Int64($0.count) } ?? snapshot.size))
    }

    /// Records a stored version, unless the file changed while it went up: then that version is withdrawn.
    func commit(_ r: FileRecord, snapshot: FileSnapshot, outcome: Outcome) throws -> Outcome {
        if try FileSnapshot.lstat(workspace.absolute(r.path)) != snapshot {
            if let v = r.versionId { try store.discardVersion(key: workspace.key(r.path), versionId: v) }
            return .changing
        }
        try journal.record(workspace: workspace.id, r, at: Date().timeIntervalSince1970)
        return outcome
    }

    func delete(_ path: RelativePath, tracked: Tracked) throws -> Outcome {
        guard try tracked.record(path) != nil else { return .unchanged }
        try store.delete(key: workspace.key(path))
        try journal.forget(workspace: workspace.id, path: path)
        return .deleted
    }
}

/// Keeps a file's in-flight multipart upload in the journal so a crash doesn't lose its parts.
struct JournalCheckpoint: UploadCheckpoint {
    let journal: Journal
    let workspace: Int64
    let path: RelativePath

    func existing() -> InFlightUpload? {
        (try? journal.uploads(workspace: workspace))?.first { $0.path == path }
    }

    func started(_ upload: InFlightUpload) {
        var u = upload
        u.path = path
        try? journal.beginUpload(workspace: workspace, u, at: Date().timeIntervalSince1970)
    }

    func finished(uploadId: String) {
        try? journal.endUpload(workspace: workspace, uploadId: uploadId)
    }
}
