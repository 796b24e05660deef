import AWS
import FoundationEssentials
import Dispatch
import Glibc
import Journal
import Synchronization

/// The S3 destination: SSE-KMS on every write, `x-amz-checksum-sha256` on every body (per part for
/// multipart, so S3 refuses bytes that differ from what was hashed), our metadata on every object.
public struct S3Store: ObjectStore {
    public let s3: S3Client
    public let encryption: ServerSideEncryption
    let region: String
    /// Parts uploaded at once for one file; memory stays bounded because parts stream from the file.
    public var partsInFlight = 4

    public init(s3: S3Client, encryption: ServerSideEncryption, region: String) {
        self.s3 = s3
        self.encryption = encryption
        self.region = region
    }

    public var destination: String { "s3://\(s3.bucket) (\(region))" }

    public func checkReady() throws {
        let status: String
        do { status = try s3.getBucketVersioning() } catch let e as AWSError {
            switch e {
            case .transport(_, _, let t): throw StoreError.unreachable("\(t)")
            case .service(let s) where s.status >= 500: throw StoreError.unreachable(s.description)
            default: throw StoreError.unusable("bucket \(s3.bucket): \(e)")
            }
        }
        guard status == "Enabled" else { throw StoreError.notVersioned(bucket: s3.bucket, status: status) }
    }

    public func put(key: String, source: SourceFile, metadata: [String: String], checkpoint: UploadCheckpoint?) throws -> StoredObject {
        let options = PutOptions(encryption: encryption, metadata: metadata)
        if let target = source.symlinkTarget {
            return StoredObject(versionId: try s3.putObject(key: key, payload: Payload(body: .bytes(target), sha256: source.sha256), options: options).versionId)
        }
        guard source.partSize > 0 else {
            let payload = Payload(body: .file(path: source.absolutePath, offset: 0, length: source.snapshot.size), sha256: source.sha256)
            return StoredObject(versionId: try s3.putObject(key: key, payload: payload, options: options).versionId)
        }
        return try putMultipart(key: key, source: source, options: options, checkpoint: checkpoint)
    }

    func putMultipart(key: String, source: SourceFile, options: PutOptions, checkpoint: UploadCheckpoint?) throws -> StoredObject {
        let partCount = Int((source.snapshot.size + source.partSize - 1) / source.partSize)
        @Sendable func range(_ n: Int) -> (offset: Int64, length: Int64) {
            let offset = Int64(n - 1) * source.partSize
            return (offset, min(source.partSize, source.snapshot.size - offset))
        }
        @Sendable func partHash(_ n: Int) throws -> [UInt8] {
            let r = range(n)
            return try FileHashing.sha256(path: source.absolutePath, offset: r.offset, length: r.length)
        }
        var done: [Int: UploadedPart] = [:]
        var hashes: [Int: [UInt8]] = [:]
        var uploadId: String?
        // Resume an interrupted upload of this very state of the file; anything else is aborted.
        if let previous = checkpoint?.existing() {
            if previous.key == key, previous.sha256 == source.sha256.hex, previous.size == source.snapshot.size,
               previous.partSize == source.partSize,
               let parts = try? s3.listParts(key: key, uploadId: previous.uploadId) {
                uploadId = previous.uploadId
                // S3 verified each part against the checksum we sent, computed from this same file state.
                // Servers that don't echo checksums in ListParts are trusted on the part's size.
                for var p in parts where p.partNumber >= 1 && p.partNumber <= partCount {
                    let hash = try partHash(p.partNumber)
                    guard p.checksumSHA256 == hash.base64 || (p.checksumSHA256 == nil && p.size == range(p.partNumber).length) else { continue }
                    p.checksumSHA256 = hash.base64
                    done[p.partNumber] = p
                    hashes[p.partNumber] = hash
                }
            } else {
                try? s3.abortMultipartUpload(key: previous.key, uploadId: previous.uploadId)
                checkpoint?.finished(uploadId: previous.uploadId)
            }
        }
        let id: String
        if let uploadId { id = uploadId } else {
            id = try s3.createMultipartUpload(key: key, options: options)
            checkpoint?.started(InFlightUpload(path: RelativePath(""), key: key, uploadId: id, partSize: source.partSize,
                                               size: source.snapshot.size, mtimeNs: source.snapshot.mtimeNs, sha256: source.sha256.hex))
        }
        let todo = (1...partCount).filter { done[$0] == nil }
        let results = Mutex<(parts: [Int: UploadedPart], hashes: [Int: [UInt8]], error: Error?)>((done, hashes, nil))
        let next = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: min(partsInFlight, max(1, todo.count))) { _ in
            while true {
                let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
                guard i < todo.count, results.withLock({ $0.error == nil }) else { return }
                let n = todo[i]
                let r = range(n)
                do {
                    // Hashing here, per part, spreads it over the workers and overlaps it with the network.
                    let hash = try partHash(n)
                    let part = try s3.uploadPart(key: key, uploadId: id, partNumber: n,
                                                 payload: Payload(body: .file(path: source.absolutePath, offset: r.offset, length: r.length),
                                                                  sha256: hash))
                    results.withLock { $0.parts[n] = part; $0.hashes[n] = hash }
                } catch {
                    results.withLock { if $0.error == nil { $0.error = error } }
                }
            }
        }
        let (parts, partHashes, error) = results.withLock { ($0.parts, $0.hashes, $0.error) }
        // The upload stays open (and in the journal) so the next attempt resumes it.
        if let error { throw error }
        let result = try s3.completeMultipartUpload(key: key, uploadId: id, parts: parts.values.sorted { $0.partNumber < $1.partNumber })
        checkpoint?.finished(uploadId: id)
        return StoredObject(versionId: result.versionId, partHashes: (1...partCount).flatMap { partHashes[$0] ?? [] })
    }

    public func copy(from key: String, versionId: String?, to newKey: String, metadata: [String: String]) throws -> String? {
        try s3.copyObject(sourceKey: key, sourceVersionId: versionId, destinationKey: newKey, encryption: encryption,
                          replaceMetadata: metadata).versionId
    }

    public func delete(key: String) throws {
        try s3.deleteObject(key: key)
    }

    public func discardVersion(key: String, versionId: String) throws {
        try s3.deleteObject(key: key, versionId: versionId)
    }

    public func head(key: String, versionId: String) throws -> ObjectHead {
        Self.head(try s3.headObject(key: key, versionId: versionId))
    }

    /// A multipart object's checksum is a checksum of part checksums (its ETag ends in -N), and a range has
    /// none: only a whole single-part object's checksum is the SHA-256 of its bytes.
    static func head(_ info: ObjectInfo, ranged: Bool = false) -> ObjectHead {
        let whole = !ranged && !info.etag.contains("-")
        return ObjectHead(size: info.totalSize ?? info.size, metadata: info.metadata, checksumSHA256: whole ? info.checksumSHA256 : nil)
    }

    @discardableResult
    public func download(key: String, versionId: String, range: ClosedRange<Int64>?, to fd: Int32, offset: Int64) throws -> ObjectHead {
        Self.head(try s3.getObject(key: key, versionId: versionId, range: range, sink: .file(fd: fd, offset: offset)), ranged: range != nil)
    }

    public func versions(prefix: String) throws -> [ObjectVersion] {
        try s3.allVersions(prefix: prefix)
    }

    public func abortUnknownUploads(prefix: String, known: Set<String>) throws -> Int {
        var aborted = 0
        for u in try s3.listMultipartUploads(prefix: prefix) where !known.contains(u.uploadId) {
            try s3.abortMultipartUpload(key: u.key, uploadId: u.uploadId)
            aborted += 1
        }
        return aborted
    }
}
