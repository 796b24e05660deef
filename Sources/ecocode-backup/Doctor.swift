import AWS
import ArgumentParser
import Backup
import FoundationEssentials
import Glibc
import Journal

struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check settings, credentials and the bucket against what the EcoCode cloud guide requires.",
        discussion: """
        One line per check with a fix hint: settings; credentials (where from, never the secret); region; bucket \
        reachable; versioning Enabled; Block Public Access (all four settings); default encryption aws:kms (and the \
        key matches ECOCODE_AWS_KMS_KEY_ID when set); a test write with SSE-KMS and its cleanup (--no-write-test \
        skips it); CloudWatch PutMetricData; inotify limits for the configured workspaces. \
        Exit 0 when every check passes, 1 otherwise.
        """
    )

    @Flag(help: "Skip the test write to the bucket.") var noWriteTest = false
    @Option(name: .long, help: "A workspace to size the inotify check for (default: ECOCODE_BACKUP_WORKSPACES).")
    var workspace: [String] = []
    @OptionGroup var settings: SettingsOptions

    final class Checks {
        var failed = 0
        let tty = isatty(STDOUT_FILENO) == 1

        func pass(_ name: String, _ detail: String) {
            print((tty ? "\u{1B}[32m✔\u{1B}[0m " : "ok   ") + "\(name): \(detail)")
        }

        func fail(_ name: String, _ detail: String, fix: String) {
            failed += 1
            print((tty ? "\u{1B}[31m✘\u{1B}[0m " : "FAIL ") + "\(name): \(detail)")
            print("       fix: \(fix)")
        }
    }

    func run() throws {
        let c = Checks()
        let loaded: Settings
        do {
            loaded = try Settings.load(flags: settings.flags)
            c.pass("settings", "valid (file \(Settings.configFilePath(environment: ProcessInfo.processInfo.environment)))")
        } catch let e as SettingsError {
            c.fail("settings", "\(e)", fix: "correct \(e.variable)")
            throw ExitCode(1)
        }
        for w in loaded.warnings { print("note: \(w)") }
        if loaded.usesS3, let bucket = loaded.bucket {
            try checkAWS(c, loaded, bucket: bucket)
        } else {
            c.pass("destination", "local store \(Status.localStorePath(loaded)) (no bucket configured: AWS checks skipped)")
        }
        checkInotify(c, loaded)
        if c.failed > 0 {
            print("\(c.failed) check(s) failed")
            throw ExitCode(1)
        }
        print("all checks passed")
    }

    func checkAWS(_ c: Checks, _ loaded: Settings, bucket: String) throws {
        let context: AWSContext
        do { context = try AWSContext.resolve(settings: loaded) } catch let e as SettingsError {
            c.fail("region", "\(e)", fix: "set \(e.variable.hasPrefix("ECOCODE") ? e.variable : "ECOCODE_AWS_REGION_NAME")")
            return
        }
        do {
            let creds = try context.credentials.credentials()
            c.pass("credentials", "found, from \(creds.source) (access key \(Credentials.redact(creds.accessKeyId)))")
        } catch {
            c.fail("credentials", "\(error)", fix: "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or configure the profile (ECOCODE_AWS_PROFILE_NAME)")
            return
        }
        c.pass("region", "\(context.region) (from \(context.regionSource))")
        var policy = Retrier.Policy()
        policy.maxAttempts = 2
        let transport = HTTPTransport()
        let s3 = S3Client(bucket: bucket, context: context, transport: transport, retrier: Retrier(policy: policy))
        do {
            try s3.headBucket()
            c.pass("bucket", "s3://\(bucket) is reachable")
        } catch {
            c.fail("bucket", "s3://\(bucket) cannot be reached: \(error)", fix: "check the bucket name, region and network; the agent works local-only until it is reachable")
            return
        }
        do {
            let status = try s3.getBucketVersioning()
            if status == "Enabled" { c.pass("versioning", "Enabled") } else {
                c.fail("versioning", "is \(status.isEmpty ? "not enabled" : status): old versions would be lost",
                       fix: "aws s3api put-bucket-versioning --bucket \(bucket) --versioning-configuration Status=Enabled")
            }
        } catch { c.fail("versioning", "cannot be read: \(error)", fix: "allow s3:GetBucketVersioning") }
        do {
            if let pab = try s3.getPublicAccessBlock(), pab.allOn {
                c.pass("public access", "Block Public Access: all four settings on")
            } else {
                let pab = try s3.getPublicAccessBlock()
                c.fail("public access", pab == nil ? "no Block Public Access configuration" : "Block Public Access is not fully on (\(pab!))",
                       fix: "aws s3api put-public-access-block --bucket \(bucket) --public-access-block-configuration BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true")
            }
        } catch { c.fail("public access", "cannot be read: \(error)", fix: "allow s3:GetBucketPublicAccessBlock") }
        do {
            let enc = try s3.getBucketEncryption()
            if let enc, enc.algorithm == "aws:kms" {
                if let want = loaded.kmsKeyId, let have = enc.kmsKeyId, !Self.sameKey(want, have) {
                    c.fail("encryption", "default key is \(have), ECOCODE_AWS_KMS_KEY_ID is \(want)",
                           fix: "use the bucket's key in ECOCODE_AWS_KMS_KEY_ID, or change the bucket's default encryption")
                } else {
                    c.pass("encryption", "default aws:kms" + (enc.kmsKeyId.map { " with \($0)" } ?? "") + (enc.bucketKeyEnabled ? ", bucket keys on" : ""))
                }
            } else {
                c.fail("encryption", enc == nil ? "no default encryption" : "default encryption is \(enc!.algorithm), not aws:kms",
                       fix: "aws s3api put-bucket-encryption --bucket \(bucket) --server-side-encryption-configuration '{\"Rules\":[{\"ApplyServerSideEncryptionByDefault\":{\"SSEAlgorithm\":\"aws:kms\"},\"BucketKeyEnabled\":true}]}'")
            }
        } catch { c.fail("encryption", "cannot be read: \(error)", fix: "allow s3:GetEncryptionConfiguration") }
        if !noWriteTest {
            let key = "\(loaded.prefix.isEmpty ? "" : loaded.prefix + "/").ecocode-doctor-\(UUID().uuidString.lowercased())"
            do {
                let put = try s3.putObject(key: key, payload: .bytes(Array("ecocode-backup doctor write test\n".utf8)),
                                           options: PutOptions(encryption: ServerSideEncryption(kmsKeyId: loaded.kmsKeyId)))
                let head = try s3.headObject(key: key, versionId: put.versionId)
                // Remove the version itself, not just hide it behind a marker.
                try s3.deleteObject(key: key, versionId: put.versionId)
                if head.serverSideEncryption == "aws:kms" { c.pass("write test", "SSE-KMS write, read back and removed (\(key))") }
                else { c.fail("write test", "the object was stored with \(head.serverSideEncryption ?? "no") encryption", fix: "check the bucket policy and KMS key") }
            } catch {
                c.fail("write test", "\(error)", fix: "allow s3:PutObject, s3:DeleteObjectVersion and kms:GenerateDataKey/kms:Decrypt on the key")
            }
        }
        do {
            let cw = CloudWatchClient(context: context, transport: transport, retrier: Retrier(policy: policy))
            // A zero leaves the alarm's Sum untouched.
            try cw.putMetricData(namespace: MetricsPublisher.namespace, [MetricDatum(name: "WorkspaceSyncFailures", value: 0, timestamp: Date())])
            c.pass("cloudwatch", "PutMetricData to namespace \(MetricsPublisher.namespace) allowed")
        } catch {
            c.fail("cloudwatch", "PutMetricData failed: \(error)", fix: "allow cloudwatch:PutMetricData (namespace EcoCode); failures stay buffered meanwhile")
        }
    }

    static func sameKey(_ a: String, _ b: String) -> Bool {
        a == b || a.hasSuffix(":" + b) || b.hasSuffix(":" + a) || a.hasSuffix("/" + b) || b.hasSuffix("/" + a)
    }

    func checkInotify(_ c: Checks, _ loaded: Settings) {
        var dirs = workspace
        if dirs.isEmpty { dirs = (loaded.environment["ECOCODE_BACKUP_WORKSPACES"] ?? "").split(separator: ":").map(String.init) }
        let limit = Watcher.systemWatchLimit
        guard !dirs.isEmpty else {
            c.pass("inotify", "limit \(limit) watches (no workspaces configured to size it against)")
            return
        }
        let needed = dirs.reduce(0) { $0 + Scanner(root: $1).scan().directories }
        if needed * 10 / 9 < limit {
            c.pass("inotify", "\(needed) directories to watch, limit \(limit)")
        } else {
            c.fail("inotify", "\(needed) directories to watch but fs.inotify.max_user_watches is \(limit)",
                   fix: "sudo sysctl fs.inotify.max_user_watches=\(max(524_288, needed * 2)) (and persist it in /etc/sysctl.d/)")
        }
    }
}
