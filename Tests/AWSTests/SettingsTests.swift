import Foundation
import Testing
@testable import AWS
import TestSupport

struct SettingsTests {
    func tempFile(_ text: String) -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("env-\(UUID().uuidString)").path
        FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    @Test func flagsBeatEnvironmentBeatFile() throws {
        let file = tempFile("""
        # EcoCode settings
        export ECOCODE_AWS_WORKSPACE_BUCKET=from-file-bucket
        ECOCODE_AWS_REGION_NAME="eu-west-1"
        ECOCODE_AWS_PROFILE_NAME='dev' # trailing comment
        ECOCODE_BACKUP_PREFIX=team/alice/
        ECOCODE_AWS_USE_BEDROCK=true
        """)
        defer { unlink(file) }
        let s = try Settings.load(flags: ["ECOCODE_AWS_REGION_NAME": "us-west-2"],
                                  environment: ["ECOCODE_AWS_WORKSPACE_BUCKET": "from-env-bucket", "HOME": "/home/a", "USER": "alice",
                                                "ECOCODE_AWS_REGION_NAME": "ap-south-1"],
                                  configFile: file)
        #expect(s.bucket == "from-env-bucket")
        #expect(s.sources["ECOCODE_AWS_WORKSPACE_BUCKET"] == .environment)
        #expect(s.region == "us-west-2")
        #expect(s.sources["ECOCODE_AWS_REGION_NAME"] == .flag)
        #expect(s.profile == "dev")
        #expect(s.sources["ECOCODE_AWS_PROFILE_NAME"] == .file)
        #expect(s.prefix == "team/alice")
        #expect(s.usesS3)
        #expect(s.stateDir == "/home/a/.local/state/ecocode-backup")
    }

    @Test func defaultsWithoutAnything() throws {
        let s = try Settings.load(environment: ["HOME": "/home/b", "USER": "bob", "XDG_STATE_HOME": "/xdg/state"], configFile: "/nonexistent")
        #expect(s.bucket == nil)
        #expect(!s.usesS3)
        #expect(s.prefix == "workspaces/bob")
        #expect(s.stateDir == "/xdg/state/ecocode-backup")
        #expect(s.sources["ECOCODE_AWS_WORKSPACE_BUCKET"] == .default)
        #expect(Settings.configFilePath(environment: ["HOME": "/home/b"]) == "/home/b/.config/ecocode/backup.env")
        #expect(Settings.configFilePath(environment: ["HOME": "/home/b", "XDG_CONFIG_HOME": "/cfg"]) == "/cfg/ecocode/backup.env")
    }

    @Test func booleansAndLocalFallback() throws {
        for (v, expected) in [("true", true), ("1", true), ("YES", true), ("false", false), ("0", false), ("no", false)] {
            let s = try Settings.load(environment: ["ECOCODE_AWS_USE_S3_SYNC": v, "ECOCODE_AWS_WORKSPACE_BUCKET": "my-bucket"], configFile: "/nonexistent")
            #expect(s.useS3Sync == expected)
            #expect(s.usesS3 == expected)
        }
        let s = try Settings.load(environment: ["ECOCODE_AWS_USE_S3_SYNC": "true"], configFile: "/nonexistent")
        #expect(!s.usesS3)
        #expect(s.warnings.count == 1)
    }

    @Test(arguments: [
        ("ECOCODE_AWS_USE_S3_SYNC", "maybe", "true/false"),
        ("ECOCODE_AWS_WORKSPACE_BUCKET", "My_Bucket", "lowercase"),
        ("ECOCODE_AWS_WORKSPACE_BUCKET", "ab", "3 to 63"),
        ("ECOCODE_AWS_WORKSPACE_BUCKET", "a..b", "adjacent dots"),
        ("ECOCODE_AWS_WORKSPACE_BUCKET", "192.168.1.10", "IP address"),
        ("ECOCODE_AWS_WORKSPACE_BUCKET", "-abc", "begin and end"),
        ("ECOCODE_AWS_WORKSPACE_BUCKET", "xn--abc", "reserved"),
        ("ECOCODE_AWS_REGION_NAME", "useast1", "region"),
        ("ECOCODE_AWS_REGION_NAME", "US-EAST-1", "region"),
        ("ECOCODE_AWS_KMS_KEY_ID", "not a key", "KMS key"),
        ("ECOCODE_BACKUP_PREFIX", "/abs", "relative"),
        ("ECOCODE_BACKUP_PREFIX", "a/../b", "relative"),
        ("ECOCODE_BACKUP_STATE_DIR", "relative/dir", "absolute"),
    ])
    func invalidValuesAreRefusedNamingTheVariable(variable: String, value: String, hint: String) {
        do {
            _ = try Settings.load(environment: [variable: value], configFile: "/nonexistent")
            Issue.record("\(variable)=\(value) was accepted")
        } catch let e as SettingsError {
            #expect(e.variable == variable)
            #expect(e.description.contains(hint), "\(e)")
        } catch { Issue.record("\(error)") }
    }

    @Test func validValuesAreAccepted() throws {
        for region in ["us-east-1", "eu-central-2", "us-gov-west-1", "ap-southeast-4", "cn-north-1"] {
            #expect(try Settings.validateRegion(region, variable: "R") == region)
        }
        for bucket in ["ecocode-dev-workspaces", "a.b.c", "abc", String(repeating: "a", count: 63)] {
            #expect(try Settings.validateBucket(bucket) == bucket)
        }
        for key in ["1234abcd-12ab-34cd-56ef-1234567890ab", "alias/ecocode", "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", "mrk-1234abcd12ab34cd56ef1234567890ab"] {
            #expect(try Settings.validateKMSKey(key) == key)
        }
    }

    @Test func malformedEnvFileLinesAreReportedWithTheirLine() {
        let file = tempFile("A=1\nthis is not an assignment\n")
        defer { unlink(file) }
        do {
            _ = try Settings.load(environment: [:], configFile: file)
            Issue.record("accepted")
        } catch let e as SettingsError {
            #expect(e.variable == "\(file):2")
        } catch { Issue.record("\(error)") }
    }
}

struct CredentialTests {
    func dir() throws -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("aws-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    @Test func environmentComesFirst() throws {
        let c = try DefaultCredentialChain(environment: ["AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": "s3cr3t", "AWS_SESSION_TOKEN": "tok"],
                                           profile: nil).credentials()
        #expect(c.accessKeyId == "AKIAENV" && c.sessionToken == "tok" && c.source == "environment")
        #expect(throws: CredentialsError.self) {
            try DefaultCredentialChain(environment: ["AWS_ACCESS_KEY_ID": "AKIAENV", "HOME": "/nonexistent"], profile: nil).credentials()
        }
    }

    @Test func profilesFromSharedFiles() throws {
        let d = try dir()
        defer { try? FileManager.default.removeItem(atPath: d) }
        try """
        [default]
        aws_access_key_id = AKIADEFAULT
        aws_secret_access_key = defaultsecret

        [dev]
        aws_access_key_id=AKIADEV
        aws_secret_access_key=devsecret
        aws_session_token=devtoken
        """.write(toFile: "\(d)/credentials", atomically: true, encoding: .utf8)
        try """
        [default]
        region = eu-west-1
        [profile dev]
        region = us-west-2
        s3 =
          max_concurrent_requests = 4
        [profile proc]
        region = ap-south-1
        credential_process = printf '{"Version": 1, "AccessKeyId": "AKIAPROC", "SecretAccessKey": "procsecret", "SessionToken": "proctoken", "Expiration": "2099-01-01T00:00:00Z"}'
        [profile expired]
        credential_process = printf '{"Version": 1, "AccessKeyId": "AKIAOLD", "SecretAccessKey": "x", "Expiration": "2001-01-01T00:00:00Z"}'
        [profile broken]
        credential_process = sh -c 'echo nope >&2; exit 3'
        [profile sso]
        sso_session = corp
        """.write(toFile: "\(d)/config", atomically: true, encoding: .utf8)
        let env = ["AWS_SHARED_CREDENTIALS_FILE": "\(d)/credentials", "AWS_CONFIG_FILE": "\(d)/config", "HOME": "/nonexistent"]

        let def = try DefaultCredentialChain(environment: env, profile: nil).credentials()
        #expect(def.accessKeyId == "AKIADEFAULT" && def.source == "profile default")
        let dev = try DefaultCredentialChain(environment: env.merging(["AWS_PROFILE": "dev"]) { $1 }, profile: nil).credentials()
        #expect(dev.accessKeyId == "AKIADEV" && dev.sessionToken == "devtoken")
        // ECOCODE_AWS_PROFILE_NAME (passed as profile) wins over AWS_PROFILE.
        let proc = try DefaultCredentialChain(environment: env.merging(["AWS_PROFILE": "dev"]) { $1 }, profile: "proc").credentials()
        #expect(proc.accessKeyId == "AKIAPROC" && proc.sessionToken == "proctoken")
        #expect(proc.expiration == AWSTime.parseISO8601("2099-01-01T00:00:00Z"))
        #expect(proc.source == "credential_process (profile proc)")

        for (profile, hint) in [("expired", "expired"), ("broken", "status 3"), ("sso", "sso_session"), ("nope", "not in")] {
            do {
                _ = try DefaultCredentialChain(environment: env, profile: profile).credentials()
                Issue.record("profile \(profile) gave credentials")
            } catch let e as CredentialsError {
                #expect(e.message.contains(hint), "\(e.message)")
            }
        }

        var settings = try Settings.load(environment: env.merging(["ECOCODE_AWS_PROFILE_NAME": "proc"]) { $1 }, configFile: "/nonexistent")
        #expect(try AWSContext.resolve(settings: settings).region == "ap-south-1")
        settings = try Settings.load(environment: env.merging(["AWS_REGION": "ca-central-1"]) { $1 }, configFile: "/nonexistent")
        #expect(try AWSContext.resolve(settings: settings).region == "ca-central-1")
        settings = try Settings.load(environment: ["HOME": "/nonexistent"], configFile: "/nonexistent")
        #expect(throws: SettingsError.self) { try AWSContext.resolve(settings: settings) }
    }

    @Test func secretsNeverShowInDescriptions() {
        let c = Credentials(accessKeyId: "AKIAABCDEFGHIJKL1234", secretAccessKey: "very/secret+key", sessionToken: "sessiontok", source: "environment")
        let text = "\(c) \(String(reflecting: c))"
        #expect(!c.description.contains("very/secret+key"))
        #expect(!c.description.contains("sessiontok"))
        #expect(!c.description.contains("AKIAABCDEFGHIJKL"))
        #expect(c.description.contains("1234"))
        #expect(!text.contains("very/secret+key"))
    }
}

struct EndpointAndAddressingTests {
    func client(bucket: String, env: [String: String]) throws -> S3Client {
        let settings = try Settings.load(environment: env.merging(["AWS_ACCESS_KEY_ID": "A", "AWS_SECRET_ACCESS_KEY": "B"]) { $1 }, configFile: "/nonexistent")
        return S3Client(bucket: bucket, context: try AWSContext.resolve(settings: settings), transport: HTTPTransport(), retrier: Retrier())
    }

    @Test func awsEndpointsAreVirtualHostedUnlessTheBucketHasDots() throws {
        let s3 = try client(bucket: "my-bucket", env: ["ECOCODE_AWS_REGION_NAME": "eu-west-1"])
        #expect(s3.request("GET", key: "a b/ü+.txt").url == "https://my-bucket.s3.eu-west-1.amazonaws.com/a%20b/%C3%BC%2B.txt")
        let dotted = try client(bucket: "my.bucket", env: ["ECOCODE_AWS_REGION_NAME": "eu-west-1"])
        #expect(dotted.request("GET", key: "k").url == "https://s3.eu-west-1.amazonaws.com/my.bucket/k")
        let cn = try client(bucket: "b-cn", env: ["ECOCODE_AWS_REGION_NAME": "cn-north-1"])
        #expect(cn.request("GET", key: "k").url == "https://b-cn.s3.cn-north-1.amazonaws.com.cn/k")
    }

    @Test func customEndpointsArePathStyleAndServiceSpecificOnesWin() throws {
        let env = ["ECOCODE_AWS_REGION_NAME": "us-east-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
                   "AWS_ENDPOINT_URL_S3": "http://localhost:5000/s3/"]
        let s3 = try client(bucket: "bkt", env: env)
        #expect(s3.request("GET", key: "x/y", query: [("versions", ""), ("prefix", "a b")]).url
                == "http://localhost:5000/s3/bkt/x/y?prefix=a%20b&versions=")
        let ctx = try AWSContext.resolve(settings: try Settings.load(environment: env, configFile: "/nonexistent"))
        #expect(ctx.cloudWatchEndpoint.host == "127.0.0.1:9000")
        #expect(throws: SettingsError.self) {
            try AWSContext.resolve(settings: try Settings.load(environment: ["ECOCODE_AWS_REGION_NAME": "us-east-1", "AWS_ENDPOINT_URL": "ftp://x"], configFile: "/nonexistent"))
        }
    }
}

struct EncodingAndXMLTests {
    @Test func uriEncodingKeepsOnlyUnreservedCharacters() {
        #expect(URIEncoding.encode("a b+c=d%e*f(g)h'i~j_k.l-m/n", keepSlash: true) == "a%20b%2Bc%3Dd%25e%2Af%28g%29h%27i~j_k.l-m/n")
        #expect(URIEncoding.encode("x/y", keepSlash: false) == "x%2Fy")
        #expect(URIEncoding.encode("caf\u{E9}", keepSlash: true) == "caf%C3%A9")
        #expect(URIEncoding.encode("cafe\u{301}", keepSlash: true) == "cafe%CC%81")
        #expect(URIEncoding.encode("😀", keepSlash: true) == "%F0%9F%98%80")
        #expect(URIEncoding.decode("a%20b%2B%zz") == "a b+%zz")
    }

    @Test func xmlReaderHandlesEntitiesCDATAAndNamespaces() throws {
        let doc = try XMLNode.parse(Array("""
        <?xml version="1.0" encoding="UTF-8"?>
        <!-- comment -->
        <s3:Root xmlns:s3="http://s3.amazonaws.com/doc/2006-03-01/" attr='x>y'>
          <Key>a &amp; b &lt;c&gt; &quot;d&quot; &apos;e&apos; &#233;&#x1F600;</Key>
          <Empty/>
          <Data><![CDATA[<raw & text>]]></Data>
          <Item><N>1</N></Item><Item><N>2</N></Item>
        </s3:Root>
        """.utf8))
        #expect(doc.name == "Root")
        #expect(doc["Key"] == "a & b <c> \"d\" 'e' é😀")
        #expect(doc["Empty"] == "")
        #expect(doc["Data"] == "<raw & text>")
        #expect(doc.all("Item").map { $0["N"] } == ["1", "2"])
        #expect(throws: XMLError.self) { try XMLNode.parse(Array("<a><b></a>".utf8)) }
        #expect(XMLWriter.escape("<a & 'b'>") == "&lt;a &amp; &apos;b&apos;&gt;")
    }

    @Test func serviceErrorsParseS3AndQueryDocuments() {
        let s3 = ServiceError.from(HTTPResponse(status: 403, headers: ["x-amz-request-id": "hdr"],
                                                body: Array("<Error><Code>AccessDenied</Code><Message>no</Message><RequestId>R1</RequestId></Error>".utf8)),
                                   operation: "PutObject", resource: "s3://b/k")
        #expect(s3.code == "AccessDenied" && s3.message == "no" && s3.requestId == "R1")
        let cw = ServiceError.from(HTTPResponse(status: 400, headers: [:],
                                                body: Array("<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>slow</Message></Error><RequestId>R2</RequestId></ErrorResponse>".utf8)),
                                   operation: "PutMetricData", resource: "cw")
        #expect(cw.code == "Throttling" && cw.requestId == "R2")
        let redirect = ServiceError.from(HTTPResponse(status: 301, headers: ["x-amz-bucket-region": "eu-west-1"], body: []),
                                         operation: "HeadBucket", resource: "s3://b/")
        #expect(redirect.code == "PermanentRedirect")
        #expect(redirect.description.contains("ECOCODE_AWS_REGION_NAME=eu-west-1"))
    }

    @Test func cloudWatchFormBodyIsEncodedAndNumbered() {
        let d = Date(timeIntervalSince1970: 1_700_000_000)
        let body = CloudWatchClient.formBody(namespace: "EcoCode", [
            MetricDatum(name: "WorkspaceSyncFailures", value: 1, timestamp: d, dimensions: [("Workspace", "my ws")]),
            MetricDatum(name: "BytesUploaded", value: 1.5, unit: "Bytes", timestamp: d),
        ][...])
        #expect(body == "Action=PutMetricData&Version=2010-08-01&Namespace=EcoCode"
                + "&MetricData.member.1.MetricName=WorkspaceSyncFailures&MetricData.member.1.Value=1&MetricData.member.1.Unit=Count"
                + "&MetricData.member.1.Timestamp=2023-11-14T22%3A13%3A20Z"
                + "&MetricData.member.1.Dimensions.member.1.Name=Workspace&MetricData.member.1.Dimensions.member.1.Value=my%20ws"
                + "&MetricData.member.2.MetricName=BytesUploaded&MetricData.member.2.Value=1.5&MetricData.member.2.Unit=Bytes"
                + "&MetricData.member.2.Timestamp=2023-11-14T22%3A13%3A20Z")
    }

    @Test func sha256MatchesKnownVectors() {
        #expect(SHA256.hash([UInt8]()).hex == SHA256.emptyHex)
        #expect(SHA256.hash(Array("abc".utf8)).hex == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect([UInt8](hex: "00ff10") == [0, 255, 16])
        #expect([UInt8](hex: "0g") == nil)
    }
}
