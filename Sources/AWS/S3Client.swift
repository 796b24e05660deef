import FoundationEssentials
import Glibc

/// Typed S3 operations on one bucket. Thread-safe; connections are reused through the transport's pool.
public struct S3Client: Sendable {
    public let bucket: String
    public let client: AWSClient
    let endpoint: AWSContext.Endpoint

    public init(bucket: String, context: AWSContext, transport: HTTPTransport, retrier: Retrier) {
        self.bucket = bucket
        self.endpoint = context.s3Endpoint
        self.client = AWSClient(service: "s3", region: context.region, credentials: context.credentials,
                                transport: transport, retrier: retrier)
    }

    /// Path style for custom endpoints and dotted names (TLS wildcards don't cover dots); else virtual-hosted.
    public var usesPathStyle: Bool { endpoint.isCustom || bucket.contains(".") }

    func request(_ method: String, key: String? = nil, query: [(String, String)] = [],
                 headers: [(String, String)] = [], body: RequestBody = .empty) -> HTTPRequest {
        let encodedKey = key.map { URIEncoding.encode($0, keepSlash: true) } ?? ""
        let host = usesPathStyle ? endpoint.host : "\(bucket).\(endpoint.host)"
        let path = endpoint.basePath + (usesPathStyle ? "/\(bucket)/\(encodedKey)" : "/\(encodedKey)")
        return HTTPRequest(method: method, scheme: endpoint.scheme, host: host, path: path,
                           query: query, headers: headers, body: body)
    }

    func resource(_ key: String? = nil) -> String { "s3://\(bucket)/\(key ?? "")" }

    @discardableResult
    func send(_ op: String, _ req: HTTPRequest, key: String? = nil, payloadSHA256: String = SHA256.emptyHex,
              sink: ResponseSink = .memory) throws -> HTTPResponse {
        try client.send(req, payloadSHA256: payloadSHA256, operation: op, resource: resource(key), sink: sink)
    }

    func xml(_ op: String, _ response: HTTPResponse) throws -> XMLNode {
        do { return try XMLNode.parse(response.body) } catch {
            throw AWSError.malformedResponse(operation: op, "\(error)")
        }
    }

    /// CompleteMultipartUpload and the copy operations can fail after a 200: the error is in the body.
    func checkEmbeddedError(_ op: String, _ doc: XMLNode, _ response: HTTPResponse, key: String) throws {
        guard doc.name == "Error" else { return }
        var e = ServiceError.from(response, operation: op, resource: resource(key))
        e.status = 200
        throw AWSError.service(e)
    }

    static func writeHeaders(_ options: PutOptions) throws -> [(String, String)] {
        var h = options.encryption?.headers ?? []
        for (k, v) in options.metadata.sorted(by: { $0.key < $1.key }) {
            guard v.unicodeScalars.allSatisfy({ $0.isASCII && $0.value >= 0x20 && $0.value != 0x7f }),
                  !k.isEmpty, k.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "-" || $0 == "_") }) else {
                throw AWSError.malformedResponse(operation: "PutObject", "metadata \(k) must be printable US-ASCII")
            }
            h.append(("x-amz-meta-\(k.lowercased())", v))
        }
        if let t = options.contentType { h.append(("Content-Type", t)) }
        return h
    }

    // MARK: Objects

    public func putObject(key: String, payload: Payload, options: PutOptions = PutOptions()) throws -> PutResult {
        var headers = try Self.writeHeaders(options)
        headers.append(("x-amz-checksum-sha256", payload.sha256.base64))
        let r = try send("PutObject", request("PUT", key: key, headers: headers, body: payload.body),
                         key: key, payloadSHA256: payload.sha256.hex)
        return PutResult(etag: r.header("etag") ?? "", versionId: r.header("x-amz-version-id"),
                         checksumSHA256: r.header("x-amz-checksum-sha256"))
    }

    public func headObject(key: String, versionId: String? = nil) throws -> ObjectInfo {
        let q = versionId.map { [("versionId", $0)] } ?? []
        let r = try send("HeadObject", request("HEAD", key: key, query: q, headers: [("x-amz-checksum-mode", "ENABLED")]), key: key)
        return ObjectInfo.from(r, key: key)
    }

    /// Streams the object (or `range`, inclusive byte offsets) into `sink`.
    @discardableResult
    public func getObject(key: String, versionId: String? = nil, range: ClosedRange<Int64>? = nil,
                          sink: ResponseSink) throws -> ObjectInfo {
        let q = versionId.map { [("versionId", $0)] } ?? []
        // A range has no checksum of its own: ask for one only with the whole object.
        var h = range == nil ? [("x-amz-checksum-mode", "ENABLED")] : []
        if let range { h.append(("Range", "bytes=\(range.lowerBound)-\(range.upperBound)")) }
        let r = try send("GetObject", request("GET", key: key, query: q, headers: h), key: key, sink: sink)
        return ObjectInfo.from(r, key: key)
    }

    public func getObjectBytes(key: String, versionId: String? = nil, range: ClosedRange<Int64>? = nil) throws -> ([UInt8], ObjectInfo) {
        let q = versionId.map { [("versionId", $0)] } ?? []
        var h: [(String, String)] = []
        if let range { h.append(("Range", "bytes=\(range.lowerBound)-\(range.upperBound)")) }
        let r = try send("GetObject", request("GET", key: key, query: q, headers: h), key: key)
        return (r.body, ObjectInfo.from(r, key: key))
    }

    /// Server-side copy of one version; metadata is copied unless `replaceMetadata` is given.
    public func copyObject(sourceKey: String, sourceVersionId: String?, destinationKey: String,
                           encryption: ServerSideEncryption?, replaceMetadata: [String: String]? = nil) throws -> PutResult {
        var headers = [("x-amz-copy-source", copySource(sourceKey, sourceVersionId))]
        if let meta = replaceMetadata {
            headers.append(("x-amz-metadata-directive", "REPLACE"))
            headers += try Self.writeHeaders(PutOptions(metadata: meta))
        }
        headers += encryption?.headers ?? []
        headers.append(("x-amz-checksum-algorithm", "SHA256"))
        let r = try send("CopyObject", request("PUT", key: destinationKey, headers: headers), key: destinationKey)
        let doc = try xml("CopyObject", r)
        try checkEmbeddedError("CopyObject", doc, r, key: destinationKey)
        return PutResult(etag: doc["ETag"] ?? "", versionId: r.header("x-amz-version-id"), checksumSHA256: doc["ChecksumSHA256"])
    }

    func copySource(_ key: String, _ versionId: String?) -> String {
        "/\(bucket)/\(URIEncoding.encode(key, keepSlash: true))" + (versionId.map { "?versionId=\(URIEncoding.encode($0, keepSlash: false))" } ?? "")
    }

    /// Without a version id this writes a delete marker in a versioned bucket; with one it removes that version.
    @discardableResult
    public func deleteObject(key: String, versionId: String? = nil) throws -> DeleteResult {
        let q = versionId.map { [("versionId", $0)] } ?? []
        let r = try send("DeleteObject", request("DELETE", key: key, query: q), key: key)
        return DeleteResult(versionId: r.header("x-amz-version-id"), deleteMarker: r.header("x-amz-delete-marker") == "true")
    }

    // MARK: Multipart

    public func createMultipartUpload(key: String, options: PutOptions = PutOptions()) throws -> String {
        var headers = try Self.writeHeaders(options)
        headers.append(("x-amz-checksum-algorithm", "SHA256"))
        let r = try send("CreateMultipartUpload", request("POST", key: key, query: [("uploads", "")], headers: headers), key: key)
        guard let id = try xml("CreateMultipartUpload", r)["UploadId"], !id.isEmpty else {
            throw AWSError.malformedResponse(operation: "CreateMultipartUpload", "no UploadId")
        }
        return id
    }

    public func uploadPart(key: String, uploadId: String, partNumber: Int, payload: Payload) throws -> UploadedPart {
        let q = [("partNumber", String(partNumber)), ("uploadId", uploadId)]
        let r = try send("UploadPart", request("PUT", key: key, query: q,
                                                headers: [("x-amz-checksum-sha256", payload.sha256.base64)], body: payload.body),
                         key: key, payloadSHA256: payload.sha256.hex)
        return UploadedPart(partNumber: partNumber, etag: r.header("etag") ?? "",
                            checksumSHA256: r.header("x-amz-checksum-sha256") ?? payload.sha256.base64, size: payload.body.length)
    }

    /// Copies a byte range (inclusive) of one version into a part, server-side.
    public func uploadPartCopy(key: String, uploadId: String, partNumber: Int, sourceKey: String,
                               sourceVersionId: String?, range: ClosedRange<Int64>?) throws -> UploadedPart {
        let q = [("partNumber", String(partNumber)), ("uploadId", uploadId)]
        var h = [("x-amz-copy-source", copySource(sourceKey, sourceVersionId))]
        if let range { h.append(("x-amz-copy-source-range", "bytes=\(range.lowerBound)-\(range.upperBound)")) }
        let r = try send("UploadPartCopy", request("PUT", key: key, query: q, headers: h), key: key)
        let doc = try xml("UploadPartCopy", r)
        try checkEmbeddedError("UploadPartCopy", doc, r, key: key)
        return UploadedPart(partNumber: partNumber, etag: doc["ETag"] ?? "", checksumSHA256: doc["ChecksumSHA256"],
                            size: range.map { $0.upperBound - $0.lowerBound + 1 } ?? 0)
    }

    public func completeMultipartUpload(key: String, uploadId: String, parts: [UploadedPart]) throws -> PutResult {
        var body = "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        for p in parts.sorted(by: { $0.partNumber < $1.partNumber }) {
            body += "<Part>" + XMLWriter.element("PartNumber", String(p.partNumber)) + XMLWriter.element("ETag", p.etag)
            if let c = p.checksumSHA256 { body += XMLWriter.element("ChecksumSHA256", c) }
            body += "</Part>"
        }
        body += "</CompleteMultipartUpload>"
        let payload = Payload.bytes(Array(body.utf8))
        let r = try send("CompleteMultipartUpload",
                         request("POST", key: key, query: [("uploadId", uploadId)],
                                 headers: [("Content-Type", "application/xml")], body: payload.body),
                         key: key, payloadSHA256: payload.sha256.hex)
        let doc = try xml("CompleteMultipartUpload", r)
        try checkEmbeddedError("CompleteMultipartUpload", doc, r, key: key)
        return PutResult(etag: doc["ETag"] ?? "", versionId: r.header("x-amz-version-id"),
                         checksumSHA256: doc["ChecksumSHA256"] ?? r.header("x-amz-checksum-sha256"))
    }

    public func abortMultipartUpload(key: String, uploadId: String) throws {
        try send("AbortMultipartUpload", request("DELETE", key: key, query: [("uploadId", uploadId)]), key: key)
    }

    /// Every part uploaded so far, following `NextPartNumberMarker`.
    public func listParts(key: String, uploadId: String) throws -> [UploadedPart] {
        var parts: [UploadedPart] = []
        var marker: String?
        repeat {
            var q = [("uploadId", uploadId)]
            if let m = marker { q.append(("part-number-marker", m)) }
            let doc = try xml("ListParts", try send("ListParts", request("GET", key: key, query: q), key: key))
            for p in doc.all("Part") {
                parts.append(UploadedPart(partNumber: Int(p["PartNumber"] ?? "") ?? 0, etag: p["ETag"] ?? "",
                                          checksumSHA256: p["ChecksumSHA256"], size: Int64(p["Size"] ?? "") ?? 0))
            }
            marker = doc["IsTruncated"] == "true" ? doc["NextPartNumberMarker"] : nil
        } while marker != nil
        return parts
    }

    /// Unfinished multipart uploads under `prefix`, following both markers.
    public func listMultipartUploads(prefix: String) throws -> [MultipartUpload] {
        var uploads: [MultipartUpload] = []
        var keyMarker: String?, idMarker: String?
        repeat {
            var q = [("uploads", ""), ("prefix", prefix)]
            if let k = keyMarker { q.append(("key-marker", k)) }
            if let u = idMarker { q.append(("upload-id-marker", u)) }
            let doc = try xml("ListMultipartUploads", try send("ListMultipartUploads", request("GET", query: q)))
            for u in doc.all("Upload") {
                uploads.append(MultipartUpload(key: u["Key"] ?? "", uploadId: u["UploadId"] ?? "",
                                               initiated: u["Initiated"].flatMap(AWSTime.parseISO8601)))
            }
            let truncated = doc["IsTruncated"] == "true"
            keyMarker = truncated ? doc["NextKeyMarker"] : nil
            idMarker = truncated ? doc["NextUploadIdMarker"] : nil
        } while keyMarker != nil
        return uploads
    }

    // MARK: Versions

    /// One page of versions and delete markers, merged in S3's list order (by key, newest first).
    public func listObjectVersions(prefix: String, keyMarker: String? = nil, versionIdMarker: String? = nil,
                                   maxKeys: Int = 1000) throws -> VersionPage {
        var q = [("versions", ""), ("prefix", prefix), ("max-keys", String(maxKeys))]
        if let k = keyMarker { q.append(("key-marker", k)) }
        if let v = versionIdMarker { q.append(("version-id-marker", v)) }
        let doc = try xml("ListObjectVersions", try send("ListObjectVersions", request("GET", query: q), key: prefix))
        var entries: [ObjectVersion] = []
        for node in doc.children where node.name == "Version" || node.name == "DeleteMarker" {
            guard let key = node["Key"], let modified = node["LastModified"].flatMap(AWSTime.parseISO8601) else {
                throw AWSError.malformedResponse(operation: "ListObjectVersions", "an entry without Key or LastModified")
            }
            entries.append(ObjectVersion(key: key, versionId: node["VersionId"] ?? "null", isLatest: node["IsLatest"] == "true",
                                         lastModified: modified, isDeleteMarker: node.name == "DeleteMarker",
                                         size: Int64(node["Size"] ?? "") ?? 0, etag: node["ETag"] ?? ""))
        }
        let truncated = doc["IsTruncated"] == "true"
        return VersionPage(entries: Self.mergeInListOrder(entries), isTruncated: truncated,
                           nextKeyMarker: truncated ? doc["NextKeyMarker"] : nil,
                           nextVersionIdMarker: truncated ? doc["NextVersionIdMarker"] : nil)
    }

    /// Every version and delete marker under `prefix`, across all pages.
    public func allVersions(prefix: String, pageSize: Int = 1000) throws -> [ObjectVersion] {
        var all: [ObjectVersion] = []
        var keyMarker: String?, idMarker: String?
        repeat {
            let page = try listObjectVersions(prefix: prefix, keyMarker: keyMarker, versionIdMarker: idMarker, maxKeys: pageSize)
            all += page.entries
            guard page.isTruncated else { break }
            guard page.nextKeyMarker != keyMarker || page.nextVersionIdMarker != idMarker else {
                throw AWSError.malformedResponse(operation: "ListObjectVersions", "pagination markers did not advance")
            }
            keyMarker = page.nextKeyMarker
            idMarker = page.nextVersionIdMarker
        } while true
        return all
    }

    /// Some servers list all versions, then all delete markers. Within a page, regroup entries by key
    /// (keys keep their first-seen order) and order each key newest first: the latest entry leads, then by
    /// LastModified, ties kept in document order (timestamps have one-second precision).
    static func mergeInListOrder(_ entries: [ObjectVersion]) -> [ObjectVersion] {
        var order: [String] = []
        var byKey: [String: [(Int, ObjectVersion)]] = [:]
        for (i, e) in entries.enumerated() {
            if byKey[e.key] == nil { order.append(e.key) }
            byKey[e.key, default: []].append((i, e))
        }
        return order.flatMap { key in
            byKey[key]!.sorted { a, b in
                if a.1.isLatest != b.1.isLatest { return a.1.isLatest }
                if a.1.lastModified != b.1.lastModified { return a.1.lastModified > b.1.lastModified }
                return a.0 < b.0
            }.map(\.1)
        }
    }

    // MARK: Bucket

    public func headBucket() throws {
        try send("HeadBucket", request("HEAD"))
    }

    /// "Enabled", "Suspended", or "" for a bucket that never had versioning.
    public func getBucketVersioning() throws -> String {
        try xml("GetBucketVersioning", try send("GetBucketVersioning", request("GET", query: [("versioning", "")])))["Status"] ?? ""
    }

    /// nil when the bucket has no default encryption configuration.
    public func getBucketEncryption() throws -> BucketEncryption? {
        do {
            let doc = try xml("GetBucketEncryption", try send("GetBucketEncryption", request("GET", query: [("encryption", "")])))
            guard let rule = doc.child("Rule"), let apply = rule.child("ApplyServerSideEncryptionByDefault") else { return nil }
            return BucketEncryption(algorithm: apply["SSEAlgorithm"] ?? "", kmsKeyId: apply["KMSMasterKeyID"],
                                    bucketKeyEnabled: rule["BucketKeyEnabled"] == "true")
        } catch AWSError.service(let e) where e.code == "ServerSideEncryptionConfigurationNotFoundError" {
            return nil
        }
    }

    /// nil when the bucket has no public access block.
    public func getPublicAccessBlock() throws -> PublicAccessBlock? {
        do {
            let doc = try xml("GetPublicAccessBlock", try send("GetPublicAccessBlock", request("GET", query: [("publicAccessBlock", "")])))
            return PublicAccessBlock(blockPublicAcls: doc["BlockPublicAcls"] == "true",
                                     ignorePublicAcls: doc["IgnorePublicAcls"] == "true",
                                     blockPublicPolicy: doc["BlockPublicPolicy"] == "true",
                                     restrictPublicBuckets: doc["RestrictPublicBuckets"] == "true")
        } catch AWSError.service(let e) where e.code == "NoSuchPublicAccessBlockConfiguration" {
            return nil
        }
    }

    /// Creates the bucket (used by tests and by setting up a local endpoint); outside us-east-1 the region is named.
    public func createBucket() throws {
        var body = RequestBody.empty
        var hash = SHA256.emptyHex
        if client.signer.region != "us-east-1" {
            let p = Payload.bytes(Array(("<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                + XMLWriter.element("LocationConstraint", client.signer.region) + "</CreateBucketConfiguration>").utf8))
            body = p.body
            hash = p.sha256.hex
        }
        try send("CreateBucket", request("PUT", body: body), payloadSHA256: hash)
    }

    /// Sets default encryption to SSE-KMS (with bucket keys), or to SSE-S3 when `kmsKeyId` is nil and `kms` is false.
    public func putBucketEncryption(kms: Bool = true, kmsKeyId: String? = nil) throws {
        var apply = XMLWriter.element("SSEAlgorithm", kms ? "aws:kms" : "AES256")
        if let k = kmsKeyId { apply += XMLWriter.element("KMSMasterKeyID", k) }
        try putConfiguration("PutBucketEncryption", "encryption",
                             "<ServerSideEncryptionConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Rule>"
                             + "<ApplyServerSideEncryptionByDefault>\(apply)</ApplyServerSideEncryptionByDefault>"
                             + XMLWriter.element("BucketKeyEnabled", kms ? "true" : "false") + "</Rule></ServerSideEncryptionConfiguration>")
    }

    public func putPublicAccessBlock(_ block: PublicAccessBlock) throws {
        try putConfiguration("PutPublicAccessBlock", "publicAccessBlock",
                             "<PublicAccessBlockConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                             + XMLWriter.element("BlockPublicAcls", String(block.blockPublicAcls))
                             + XMLWriter.element("IgnorePublicAcls", String(block.ignorePublicAcls))
                             + XMLWriter.element("BlockPublicPolicy", String(block.blockPublicPolicy))
                             + XMLWriter.element("RestrictPublicBuckets", String(block.restrictPublicBuckets))
                             + "</PublicAccessBlockConfiguration>")
    }

    public func putBucketVersioning(enabled: Bool) throws {
        try putConfiguration("PutBucketVersioning", "versioning",
                             "<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                             + XMLWriter.element("Status", enabled ? "Enabled" : "Suspended") + "</VersioningConfiguration>")
    }

    /// Bucket sub-resource PUTs require an integrity header: x-amz-checksum-sha256 serves.
    func putConfiguration(_ op: String, _ subresource: String, _ document: String) throws {
        let p = Payload.bytes(Array(document.utf8))
        try send(op, request("PUT", query: [(subresource, "")],
                             headers: [("x-amz-checksum-sha256", p.sha256.base64), ("Content-Type", "application/xml")],
                             body: p.body),
                 payloadSHA256: p.sha256.hex)
    }
}
