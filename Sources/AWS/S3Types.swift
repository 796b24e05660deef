import FoundationEssentials
import Glibc

/// SSE-KMS for every write: `x-amz-server-side-encryption: aws:kms`, the key when one is configured.
public struct ServerSideEncryption: Sendable, Equatable {
    public var kmsKeyId: String?
    public var bucketKeyEnabled: Bool

    public init(kmsKeyId: String? = nil, bucketKeyEnabled: Bool = true) {
        self.kmsKeyId = kmsKeyId
        self.bucketKeyEnabled = bucketKeyEnabled
    }

    var headers: [(String, String)] {
        var h = [("x-amz-server-side-encryption", "aws:kms")]
        if let k = kmsKeyId { h.append(("x-amz-server-side-encryption-aws-kms-key-id", k)) }
        if bucketKeyEnabled { h.append(("x-amz-server-side-encryption-bucket-key-enabled", "true")) }
        return h
    }
}

/// A body to upload and its SHA-256, which is both the SigV4 payload hash and `x-amz-checksum-sha256`.
public struct Payload: Sendable {
    public var body: RequestBody
    public var sha256: [UInt8]

    public init(body: RequestBody, sha256: [UInt8]) {
        self.body = body
        self.sha256 = sha256
    }

    public static func bytes(_ b: [UInt8]) -> Payload { Payload(body: .bytes(b), sha256: SHA256.hash(b)) }

    /// Hashes the range now; callers that already know the hash should use the initializer.
    public static func file(_ path: String, offset: Int64 = 0, length: Int64) throws -> Payload {
        Payload(body: .file(path: path, offset: offset, length: length),
                sha256: try FileHashing.sha256(path: path, offset: offset, length: length))
    }
}

public enum FileHashing {
    /// SHA-256 of a byte range of a file, read in 1 MiB blocks.
    public static func sha256(path: String, offset: Int64 = 0, length: Int64) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw TransportError(kind: .local, message: "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        return try sha256(fd: fd, offset: offset, length: length, name: path)
    }

    /// The same over an open descriptor (pread: the file position is left alone). `name` is for errors.
    public static func sha256(fd: Int32, offset: Int64 = 0, length: Int64, name: String) throws -> [UInt8] {
        var hasher = SHA256()
        let size = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
        defer { buffer.deallocate() }
        var done: Int64 = 0
        while done < length {
            let n = pread(fd, buffer.baseAddress, Int(min(Int64(size), length - done)), off_t(offset + done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                throw TransportError(kind: .local, message: "reading \(name): " + (n < 0 ? String(cString: strerror(errno)) : "file is shorter than expected"))
            }
            hasher.update(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            done += Int64(n)
        }
        return hasher.finalize()
    }
}

public struct PutOptions: Sendable {
    public var encryption: ServerSideEncryption?
    /// User metadata (`x-amz-meta-*`); names lowercase, values US-ASCII.
    public var metadata: [String: String]
    public var contentType: String?

    public init(encryption: ServerSideEncryption? = nil, metadata: [String: String] = [:], contentType: String? = nil) {
        self.encryption = encryption
        self.metadata = metadata
        self.contentType = contentType
    }
}

public struct PutResult: Sendable {
    public var etag: String
    public var versionId: String?
    public var checksumSHA256: String?
}

public struct ObjectInfo: Sendable {
    public var key: String
    public var size: Int64
    public var etag: String
    public var lastModified: Date?
    public var versionId: String?
    public var metadata: [String: String]
    public var serverSideEncryption: String?
    public var kmsKeyId: String?
    public var checksumSHA256: String?
    public var contentType: String?
    /// From `Content-Range` of a ranged GET: the whole object's size.
    public var totalSize: Int64?

    static func from(_ r: HTTPResponse, key: String) -> ObjectInfo {
        var meta: [String: String] = [:]
        for (k, v) in r.headers where k.hasPrefix("x-amz-meta-") { meta[String(k.dropFirst(11))] = v }
        let total = r.header("content-range").flatMap { $0.split(separator: "/").last }.flatMap { Int64($0) }
        return ObjectInfo(key: key, size: Int64(r.header("content-length") ?? "") ?? 0,
                          etag: r.header("etag") ?? "",
                          lastModified: r.header("last-modified").flatMap(AWSTime.parseHTTPDate),
                          versionId: r.header("x-amz-version-id"), metadata: meta,
                          serverSideEncryption: r.header("x-amz-server-side-encryption"),
                          kmsKeyId: r.header("x-amz-server-side-encryption-aws-kms-key-id"),
                          checksumSHA256: r.header("x-amz-checksum-sha256"),
                          contentType: r.header("content-type"), totalSize: total)
    }
}

/// One entry of ListObjectVersions: a version or a delete marker, in S3's list order.
public struct ObjectVersion: Sendable, Equatable {
    public var key: String
    public var versionId: String
    public var isLatest: Bool
    public var lastModified: Date
    public var isDeleteMarker: Bool
    public var size: Int64
    public var etag: String

    public init(key: String, versionId: String, isLatest: Bool, lastModified: Date, isDeleteMarker: Bool, size: Int64, etag: String) {
        self.key = key
        self.versionId = versionId
        self.isLatest = isLatest
        self.lastModified = lastModified
        self.isDeleteMarker = isDeleteMarker
        self.size = size
        self.etag = etag
    }
}

public struct VersionPage: Sendable {
    public var entries: [ObjectVersion]
    public var isTruncated: Bool
    public var nextKeyMarker: String?
    public var nextVersionIdMarker: String?
}

public struct UploadedPart: Sendable, Equatable {
    public var partNumber: Int
    public var etag: String
    public var checksumSHA256: String?
    public var size: Int64

    public init(partNumber: Int, etag: String, checksumSHA256: String?, size: Int64 = 0) {
        self.partNumber = partNumber
        self.etag = etag
        self.checksumSHA256 = checksumSHA256
        self.size = size
    }
}

public struct MultipartUpload: Sendable, Equatable {
    public var key: String
    public var uploadId: String
    public var initiated: Date?
}

public struct DeleteResult: Sendable {
    public var versionId: String?
    public var deleteMarker: Bool
}

public struct BucketEncryption: Sendable, Equatable {
    public var algorithm: String
    public var kmsKeyId: String?
    public var bucketKeyEnabled: Bool
}

public struct PublicAccessBlock: Sendable, Equatable {
    public var blockPublicAcls: Bool
    public var ignorePublicAcls: Bool
    public var blockPublicPolicy: Bool
    public var restrictPublicBuckets: Bool
    public var allOn: Bool { blockPublicAcls && ignorePublicAcls && blockPublicPolicy && restrictPublicBuckets }
}
