import Foundation
import Testing
@testable import AWS
import TestSupport

/// Every S3 operation against moto, through the proxy that re-checks each request's encoding,
/// payload hash, checksum and signature with botocore (a bad request fails with 403 there).
@Suite(.serialized) struct S3OperationTests {
    static let trickyKeys = [
        "dir with space/file name.txt",
        "plus+equals=percent%star*paren(x)quote'tilde~.txt",
        "caf\u{E9}.txt",              // NFC
        "cafe\u{301}.txt",            // NFD: a different key, never normalized
        "emoji 😀/🎉 party.txt",
        "a//double//slash.txt",
        "question?hash#amp&semi;colon:comma,at@dollar$.txt",
        "./dot/../segments/./x.txt",
        String(repeating: "n", count: 196) + ".txt",   // a 200-character name
        "deep/" + Array(repeating: "ü", count: 20).joined(separator: "/") + "/end",
    ]

    @Test func trickyKeysRoundTripByteExactWithMetadataAndSSE() throws {
        let server = try TestServer.get()
        let s3 = try server.makeBucket()
        var versions: [(key: String, value: String)] = []
        for (i, key) in Self.trickyKeys.enumerated() {
            let body = Array("content \(i) of \(key)\n".utf8)
            let put = try s3.putObject(key: key, payload: .bytes(body),
                                       options: PutOptions(encryption: ServerSideEncryption(kmsKeyId: "alias/ecocode-test"),
                                                           metadata: ["sha256": SHA256.hash(body).hex, "mode": "100644"]))
            versions.append((key, try #require(put.versionId)))
            let head = try s3.headObject(key: key)
            #expect(head.size == Int64(body.count))
            #expect(head.metadata["sha256"] == SHA256.hash(body).hex)
            #expect(head.serverSideEncryption == "aws:kms")
            #expect(head.versionId == put.versionId)
            let (got, _) = try s3.getObjectBytes(key: key)
            #expect(got == body)
        }
        // An independent reader (boto3, straight to moto) sees exactly these keys, bytes and headers.
        let report = try server.boto("""
        out = []
        for v in s3.list_object_versions(Bucket='\(s3.bucket)')['Versions']:
            o = s3.get_object(Bucket='\(s3.bucket)', Key=v['Key'])
            out.append([v['Key'], o['Body'].read().decode(), o.get('ServerSideEncryption'), o.get('SSEKMSKeyId'), o['Metadata'].get('mode')])
        print(json.dumps(sorted(out)))
        """)
        let rows = try JSONDecoder().decode([[String?]].self, from: Data(report.utf8))
        #expect(rows.count == Self.trickyKeys.count)
        for (i, key) in Self.trickyKeys.enumerated() {
            // Swift's String == treats NFC and NFD as equal: compare keys by their bytes.
            let row = rows.first { $0[0].map { Array($0.utf8) } == Array(key.utf8) }
            #expect(row?[1] == "content \(i) of \(key)\n", "key \(key)")
            #expect(row?[2] == "aws:kms")
            #expect(row?[3] == "alias/ecocode-test")
            #expect(row?[4] == "100644")
        }
        let listed = try s3.allVersions(prefix: "")
        #expect(Set(listed.map { Array($0.key.utf8) }) == Set(Self.trickyKeys.map { Array($0.utf8) }))
        for entry in listed {
            #expect(versions.first { Array($0.key.utf8) == Array(entry.key.utf8) }?.value == entry.versionId)
        }
        let log = try server.log(bucket: s3.bucket)
        #expect(!log.isEmpty && log.allSatisfy { $0.verified })
        let puts = log.filter { $0.method == "PUT" && $0.headers["x-amz-server-side-encryption"] != nil }
        #expect(puts.count == Self.trickyKeys.count)
        #expect(puts.allSatisfy { $0.headers["x-amz-server-side-encryption-aws-kms-key-id"] == "alias/ecocode-test" && $0.headers["x-amz-checksum-sha256"] != nil })
    }

    @Test func multipartWithPartCopyFromAnOlderVersion() throws {
        let server = try TestServer.get()
        let s3 = try server.makeBucket()
        let mib = 1 << 20
        let v1Bytes = (0..<(6 * mib)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let v1 = try #require(try s3.putObject(key: "src/big file.bin", payload: .bytes(v1Bytes)).versionId)
        _ = try s3.putObject(key: "src/big file.bin", payload: .bytes(Array(repeating: 1, count: 10)))

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mp-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let local = dir.appendingPathComponent("local.bin").path
        let localBytes = (0..<(2 * mib)).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }
        FileManager.default.createFile(atPath: local, contents: Data(localBytes))

        let key = "assembled/ü+x.bin"
        let upload = try s3.createMultipartUpload(key: key, options: PutOptions(encryption: ServerSideEncryption(), metadata: ["sha256": "abc"]))
        #expect(try s3.listMultipartUploads(prefix: "assembled/").map(\.uploadId) == [upload])
        let p1 = try s3.uploadPartCopy(key: key, uploadId: upload, partNumber: 1, sourceKey: "src/big file.bin",
                                       sourceVersionId: v1, range: 0...Int64(5 * mib - 1))
        let p2 = try s3.uploadPart(key: key, uploadId: upload, partNumber: 2,
                                   payload: try .file(local, offset: Int64(mib), length: Int64(mib)))
        let listed = try s3.listParts(key: key, uploadId: upload)
        #expect(listed.map(\.partNumber) == [1, 2])
        #expect(listed.map(\.size) == [Int64(5 * mib), Int64(mib)])
        let done = try s3.completeMultipartUpload(key: key, uploadId: upload, parts: [p1, p2])
        #expect(done.versionId != nil)
        let (got, _) = try s3.getObjectBytes(key: key)
        #expect(got == Array(v1Bytes[0..<(5 * mib)]) + Array(localBytes[mib..<(2 * mib)]))
        #expect(try s3.listMultipartUploads(prefix: "assembled/").isEmpty)

        // An abandoned upload is listed, then aborted.
        let stray = try s3.createMultipartUpload(key: "assembled/stray")
        _ = try s3.uploadPart(key: "assembled/stray", uploadId: stray, partNumber: 1, payload: .bytes([1, 2, 3]))
        #expect(try s3.listMultipartUploads(prefix: "assembled/").map(\.key) == ["assembled/stray"])
        try s3.abortMultipartUpload(key: "assembled/stray", uploadId: stray)
        #expect(try s3.listMultipartUploads(prefix: "assembled/").isEmpty)
        #expect(try server.log(bucket: s3.bucket).allSatisfy { $0.verified })
    }

    @Test func versionsAndDeleteMarkersListedAcrossPages() throws {
        let server = try TestServer.get()
        let s3 = try server.makeBucket()
        var expected: [String: [(id: String, marker: Bool)]] = [:]
        func put(_ key: String) throws {
            expected[key, default: []].insert((try #require(try s3.putObject(key: key, payload: .bytes(Array(key.utf8))).versionId), false), at: 0)
        }
        func delete(_ key: String) throws {
            let r = try s3.deleteObject(key: key)
            #expect(r.deleteMarker)
            expected[key, default: []].insert((try #require(r.versionId), true), at: 0)
        }
        try put("ws/a"); try put("ws/a")
        try put("ws/b c"); try delete("ws/b c")
        try put("ws/d+"); try delete("ws/d+"); try put("ws/d+")
        try put("other/x")

        let all = try s3.allVersions(prefix: "ws/", pageSize: 2)
        #expect(all.count == 7)
        #expect(all.map(\.key) == ["ws/a", "ws/a", "ws/b c", "ws/b c", "ws/d+", "ws/d+", "ws/d+"])
        for (key, entries) in expected where key.hasPrefix("ws/") {
            let listed = all.filter { $0.key == key }
            #expect(listed.first?.versionId == entries.first?.id, "newest first for \(key)")
            #expect(listed.first?.isLatest == true)
            #expect(Set(listed.map(\.versionId)) == Set(entries.map(\.id)))
            #expect(Set(listed.filter(\.isDeleteMarker).map(\.versionId)) == Set(entries.filter(\.marker).map(\.id)))
        }
        let pages = try server.log(bucket: s3.bucket).filter { $0.method == "GET" && $0.path.contains("versions") }
        #expect(pages.count >= 4)
        #expect(pages.contains { $0.path.contains("key-marker=") && $0.path.contains("version-id-marker=") })

        // Removing a specific version leaves the others.
        let oldest = try #require(expected["ws/a"]?.last?.id)
        try s3.deleteObject(key: "ws/a", versionId: oldest)
        #expect(try s3.allVersions(prefix: "ws/a").map(\.versionId) == [expected["ws/a"]![0].id])
    }

    @Test func copyObjectFromAVersionKeepsMetadata() throws {
        let server = try TestServer.get()
        let s3 = try server.makeBucket()
        let v1 = try #require(try s3.putObject(key: "old name (1).txt", payload: .bytes(Array("first".utf8)),
                                               options: PutOptions(metadata: ["sha256": "aaa"])).versionId)
        _ = try s3.putObject(key: "old name (1).txt", payload: .bytes(Array("second".utf8)))
        let copy = try s3.copyObject(sourceKey: "old name (1).txt", sourceVersionId: v1, destinationKey: "new name ü.txt",
                                     encryption: ServerSideEncryption())
        #expect(copy.versionId != nil)
        let (body, info) = try s3.getObjectBytes(key: "new name ü.txt")
        #expect(String(decoding: body, as: UTF8.self) == "first")
        #expect(info.metadata["sha256"] == "aaa")
        let replaced = try s3.copyObject(sourceKey: "new name ü.txt", sourceVersionId: nil, destinationKey: "third.txt",
                                         encryption: nil, replaceMetadata: ["sha256": "bbb"])
        #expect(replaced.versionId != nil)
        #expect(try s3.headObject(key: "third.txt").metadata == ["sha256": "bbb"])
    }

    @Test func streamsBodiesFromAndToFileRanges() throws {
        let server = try TestServer.get()
        let s3 = try server.makeBucket()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("stream-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let src = dir.appendingPathComponent("src").path
        let bytes = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 % 251) }
        FileManager.default.createFile(atPath: src, contents: Data(bytes))
        _ = try s3.putObject(key: "r", payload: try .file(src, offset: 1000, length: 200_000))

        let dst = dir.appendingPathComponent("dst").path
        let fd = open(dst, O_CREAT | O_RDWR | O_TRUNC, 0o600)
        defer { close(fd) }
        let info = try s3.getObject(key: "r", range: 100...199, sink: .file(fd: fd, offset: 50))
        #expect(info.size == 100)
        #expect(info.totalSize == 200_000)
        let written = try Data(contentsOf: URL(fileURLWithPath: dst))
        #expect(Array(written.suffix(100)) == Array(bytes[1100..<1200]))
        #expect(written.count == 150)

        var chunks: [UInt8] = []
        try s3.getObject(key: "r", sink: .handler { chunks.append(contentsOf: $0) })
        #expect(chunks == Array(bytes[1000..<201_000]))
    }

    @Test func serviceErrorsAreTypedWithCodeAndRequestId() throws {
        let server = try TestServer.get()
        let s3 = try server.makeBucket()
        do {
            _ = try s3.getObjectBytes(key: "missing key")
            Issue.record("expected NoSuchKey")
        } catch let AWSError.service(e) {
            #expect(e.code == "NoSuchKey")
            #expect(e.status == 404)
            #expect(e.operation == "GetObject")
            #expect(e.resource == "s3://\(s3.bucket)/missing key")
            #expect(e.requestId != nil)
        }
        do {
            _ = try s3.headObject(key: "missing key")
            Issue.record("expected 404")
        } catch let AWSError.service(e) {
            #expect(e.code == "NotFound")
            #expect(e.status == 404)
        }
        let noBucket = S3Client(bucket: "no-such-bucket-\(UUID().uuidString.prefix(8).lowercased())", context: try server.context(),
                                transport: HTTPTransport(), retrier: Retrier())
        #expect(throws: AWSError.self) { try noBucket.headBucket() }
        do { _ = try noBucket.getBucketVersioning() } catch let AWSError.service(e) { #expect(e.code == "NoSuchBucket") }
    }

    @Test func bucketSettingsAreRead() throws {
        let server = try TestServer.get()
        let plain = try server.makeBucket(versioned: false)
        #expect(try plain.getBucketVersioning() == "")
        #expect(try plain.getBucketEncryption() == nil)
        #expect(try plain.getPublicAccessBlock() == nil)
        try plain.headBucket()

        try plain.putBucketVersioning(enabled: true)
        try plain.putBucketEncryption(kms: true, kmsKeyId: "alias/ecocode")
        try plain.putPublicAccessBlock(PublicAccessBlock(blockPublicAcls: true, ignorePublicAcls: true,
                                                         blockPublicPolicy: true, restrictPublicBuckets: true))
        #expect(try plain.getBucketVersioning() == "Enabled")
        #expect(try plain.getBucketEncryption() == BucketEncryption(algorithm: "aws:kms", kmsKeyId: "alias/ecocode", bucketKeyEnabled: true))
        #expect(try plain.getPublicAccessBlock()?.allOn == true)
        try plain.putBucketVersioning(enabled: false)
        #expect(try plain.getBucketVersioning() == "Suspended")
    }

    @Test func putMetricDataBatchesAndKeepsTimestamps() throws {
        let server = try TestServer.get()
        let cw = CloudWatchClient(context: try server.context(), transport: HTTPTransport(), retrier: Retrier())
        let namespace = "EcoCodeTest\(UUID().uuidString.prefix(8))"
        let base = Date().addingTimeInterval(-3600)
        let data = (0..<1001).map { MetricDatum(name: "WorkspaceSyncFailures", value: 1, timestamp: base.addingTimeInterval(Double($0))) }
        try cw.putMetricData(namespace: namespace, data)
        let posts = try JSONDecoder().decode([TestServer.LoggedRequest].self, from: Data(try server.control("log")))
            .filter { $0.method == "POST" && $0.headers["content-type"]?.hasPrefix("application/x-www-form-urlencoded") == true }
        #expect(posts.count >= 2)
        #expect(posts.allSatisfy { $0.verified })
        let sum = try server.boto("""
        import datetime
        r = cw.get_metric_statistics(Namespace='\(namespace)', MetricName='WorkspaceSyncFailures',
            StartTime=datetime.datetime.utcnow() - datetime.timedelta(hours=3), EndTime=datetime.datetime.utcnow(),
            Period=86400, Statistics=['Sum', 'SampleCount'])
        print(int(sum(p['Sum'] for p in r['Datapoints'])))
        """)
        #expect(sum == "1001")
    }
}
