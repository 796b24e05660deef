import AWS
import ArgumentParser
import Backup
import FoundationEssentials
import Glibc
import Journal
import Logging

/// Exit codes shared by all subcommands (listed in the root command's help).
enum Exit {
    static let notDurable = ExitCode(1)
    static let usage = ExitCode(2)
    static let unreachable = ExitCode(3)
    static let journal = ExitCode(4)
    static let unusable = ExitCode(5)
    static let alreadyRunning = ExitCode(6)
}

/// Setting flags common to every subcommand; each overrides its environment variable.
struct SettingsOptions: ParsableArguments {
    @Option(help: "S3 bucket (ECOCODE_AWS_WORKSPACE_BUCKET).") var bucket: String?
    @Option(help: "AWS region (ECOCODE_AWS_REGION_NAME).") var region: String?
    @Option(help: "AWS profile (ECOCODE_AWS_PROFILE_NAME).") var profile: String?
    @Option(help: "Key prefix (ECOCODE_BACKUP_PREFIX).") var prefix: String?
    @Option(help: "Journal and state directory (ECOCODE_BACKUP_STATE_DIR).") var stateDir: String?
    @Flag(help: "Back up to the local store even if a bucket is configured (ECOCODE_AWS_USE_S3_SYNC=false).") var local = false
    @Flag(name: .shortAndLong, help: "Log debug detail.") var verbose = false

    var flags: [String: String] {
        var f: [String: String] = [:]
        f["ECOCODE_AWS_WORKSPACE_BUCKET"] = bucket
        f["ECOCODE_AWS_REGION_NAME"] = region
        f["ECOCODE_AWS_PROFILE_NAME"] = profile
        f["ECOCODE_BACKUP_PREFIX"] = prefix
        f["ECOCODE_BACKUP_STATE_DIR"] = stateDir
        if local { f["ECOCODE_AWS_USE_S3_SYNC"] = "false" }
        return f
    }
}

/// Everything a subcommand needs, built once from the settings: logger, journal, destination.
struct Runtime {
    let settings: Settings
    let logger: Logger
    let store: any ObjectStore
    let metrics: MetricsPublisher?

    static func makeLogger(verbose: Bool) -> Logger {
        var logger = Logger(label: "ecocode-backup") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = verbose ? .debug : .info
        return logger
    }

    static func fail(_ message: String, _ code: ExitCode) -> ExitCode {
        printError("ecocode-backup: \(message)")
        return code
    }

    init(options: SettingsOptions) throws {
        logger = Self.makeLogger(verbose: options.verbose)
        do { settings = try Settings.load(flags: options.flags) } catch let e as SettingsError {
            throw Self.fail("\(e)", Exit.usage)
        }
        for w in settings.warnings { logger.warning("\(w)") }
        if settings.usesS3, let bucket = settings.bucket {
            let context: AWSContext
            do { context = try AWSContext.resolve(settings: settings) } catch let e as SettingsError {
                throw Self.fail("\(e)", Exit.usage)
            }
            let transport = HTTPTransport()
            let retrier = Retrier()
            let s3 = S3Client(bucket: bucket, context: context, transport: transport, retrier: retrier)
            var s3Store = S3Store(s3: s3, encryption: ServerSideEncryption(kmsKeyId: settings.kmsKeyId), region: context.region)
            if let n = settings.environment["ECOCODE_BACKUP_PARTS_IN_FLIGHT"].flatMap(Int.init), (1...64).contains(n) {
                s3Store.partsInFlight = n
            }
            store = s3Store
            metrics = MetricsPublisher(cloudWatch: CloudWatchClient(context: context, transport: transport, retrier: retrier))
        } else {
            let env = settings.environment
            let dataHome = env["XDG_DATA_HOME"].flatMap { $0.hasPrefix("/") ? $0 : nil } ?? (env["HOME"] ?? Env.home) + "/.local/share"
            do { store = try LocalStore(root: dataHome + "/ecocode-backup/store") } catch {
                throw Self.fail("cannot open the local store: \(error)", Exit.journal)
            }
            metrics = nil
        }
        logger.info("destination: \(store.destination), prefix \(settings.prefix.isEmpty ? "(none)" : settings.prefix)")
    }

    /// Opens the journal; a damaged one is moved aside only when the user asked for a rebuild.
    func openJournal(rebuild: Bool) throws -> Journal {
        if rebuild, let aside = try? Journal.moveAside(stateDir: settings.stateDir) {
            logger.warning("moved the old journal to \(aside); rebuilding it from a rescan")
        }
        do { return try Journal(stateDir: settings.stateDir) } catch let e as JournalError {
            throw Self.fail("\(e)", Exit.journal)
        }
    }

    /// Resolves a workspace directory to its absolute, symlink-free path and registers it.
    func workspace(_ dir: String, name: String?, journal: Journal) throws -> Workspace {
        guard let real = realpath(dir, nil) else {
            throw Self.fail("workspace \(dir): \(String(cString: strerror(errno)))", Exit.usage)
        }
        let root = String(cString: real)
        free(real)
        var st = stat()
        guard stat(root, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
            throw Self.fail("workspace \(dir) is not a directory", Exit.usage)
        }
        let wsName = name ?? root.lastPathComponent
        guard !wsName.isEmpty, !wsName.contains("/"), wsName != ".", wsName != ".." else {
            throw Self.fail("workspace name '\(wsName)' must be a single path segment (use --name)", Exit.usage)
        }
        let prefix = Workspace.keyPrefix(prefix: settings.prefix, name: wsName)
        do {
            let id = try journal.workspace(root: root, name: wsName, keyPrefix: prefix)
            return Workspace(id: id, root: root, name: wsName, keyPrefix: prefix)
        } catch let e as JournalError {
            throw Self.fail("\(e)", Exit.journal)
        }
    }
}
