import AWS
import Journal

/// A file ready to be stored: where it is, the state it was read in, and its hashes from that read.
public struct SourceFile: Sendable {
    public var absolutePath: String
    public var snapshot: FileSnapshot
    public var sha256: [UInt8]
    /// For files stored in parts (larger than 8 MiB): the part size; 0 for one-request uploads.
    public var partSize: Int64
    /// A symlink's target bytes, which are the object's content.
    public var symlinkTarget: [UInt8]?
}

/// Remembers a multipart upload across crashes so the next run can resume it.
public protocol UploadCheckpoint: Sendable {
    func existing() -> InFlightUpload?
    func started(_ upload: InFlightUpload)
    func finished(uploadId: String)
}

/// Where backups live: S3 or the local versioned store. Every method is one durable step; a thrown
/// error means nothing new is visible (a half-done multipart upload stays invisible until completed).
public protocol ObjectStore: Sendable {
    /// For logs: "s3://bucket/prefix (us-east-1)" or "local store /path".
    var destination: String { get }
    /// Checks the destination can take backups (reachable, versioned); throws `StoreError` otherwise.
    func checkReady() throws
    /// Writes `source` as the newest version of `key`.
    func put(key: String, source: SourceFile, metadata: [String: String], checkpoint: UploadCheckpoint?) throws -> StoredObject
    /// Server-side copy of one version to a new key (renames: no re-upload).
    func copy(from key: String, versionId: String?, to newKey: String, metadata: [String: String]) throws -> String?
    /// Hides `key` behind a delete marker; older versions stay restorable.
    func delete(key: String) throws
    /// Removes one version we just wrote (the file changed while it was uploaded).
    func discardVersion(key: String, versionId: String) throws
    /// Size, user metadata (`sha256`, `mtime`, `mode`) and S3 checksum of one version.
    func head(key: String, versionId: String) throws -> ObjectHead
    /// Writes the bytes of one version (or an inclusive `range` of them) into `fd` at `offset`; returns what the
    /// answer said of the object (metadata; the checksum only for a whole single-part object).
    @discardableResult
    func download(key: String, versionId: String, range: ClosedRange<Int64>?, to fd: Int32, offset: Int64) throws -> ObjectHead
    /// Every version and delete marker under `prefix`, newest first within a key.
    func versions(prefix: String) throws -> [ObjectVersion]
    /// Aborts unfinished multipart uploads under `prefix` that are not in `known`; returns how many.
    func abortUnknownUploads(prefix: String, known: Set<String>) throws -> Int
}

public struct ObjectHead: Sendable {
    public var size: Int64
    public var metadata: [String: String]
    /// `x-amz-checksum-sha256` (base64) when it is the SHA-256 of the whole content (single-part objects).
    public var checksumSHA256: String?

    public init(size: Int64, metadata: [String: String], checksumSHA256: String? = nil) {
        self.size = size
        self.metadata = metadata
        self.checksumSHA256 = checksumSHA256
    }
}

public struct StoredObject: Sendable {
    public var versionId: String?
    /// For multipart uploads: each part's SHA-256, 32 bytes each, concatenated.
    public var partHashes: [UInt8] = []

    public init(versionId: String?, partHashes: [UInt8] = []) {
        self.versionId = versionId
        self.partHashes = partHashes
    }
}

public enum StoreError: Error, CustomStringConvertible {
    case unreachable(String)
    case notVersioned(bucket: String, status: String)
    case unusable(String)
    case changedWhileReading(path: String)

    public var description: String {
        switch self {
        case .unreachable(let why): return "the backup destination cannot be reached: \(why)"
        case .notVersioned(let b, let s):
            return "bucket \(b) does not have versioning enabled (status: \(s.isEmpty ? "never enabled" : s)); without it old versions are lost. Enable it: aws s3api put-bucket-versioning --bucket \(b) --versioning-configuration Status=Enabled"
        case .unusable(let why): return why
        case .changedWhileReading(let p): return "\(p) changed while it was being read; it will be backed up once it settles"
        }
    }
}

/// The object metadata every backup carries (documented in the README).
public enum BackupMetadata {
    /// `sha256`: lowercase hex of the content; `mtime`: nanoseconds since the epoch; `mode`: st_mode in octal.
    public static func make(sha256: [UInt8], snapshot: FileSnapshot) -> [String: String] {
        ["sha256": sha256.hex, "mtime": String(snapshot.mtimeNs), "mode": String(snapshot.mode, radix: 8)]
    }
}
