import AWS
import ArgumentParser
import Backup
import FoundationEssentials
import Glibc
import Journal

/// Which workspace a read-only command (restore, versions) means: needs only settings and the store.
struct WorkspaceSelection: ParsableArguments {
    @Option(name: .long, help: "The workspace directory (its name selects the backup; it need not exist).")
    var workspace: String?
    @Option(help: "The workspace name in the backup (default: the directory's name).") var name: String?

    func resolve(_ runtime: Runtime) throws -> (name: String, prefix: String, dir: String?) {
        var dir: String?
        if let w = workspace {
            dir = w.hasPrefix("/") ? w : FileManager.default.currentDirectoryPath + "/" + w
            while dir!.count > 1 && dir!.hasSuffix("/") { dir!.removeLast() }
        }
        guard let n = name ?? dir.map({ $0.lastPathComponent }), !n.isEmpty, !n.contains("/"), n != ".", n != ".." else {
            throw Runtime.fail("say which workspace: --workspace DIR or --name NAME", Exit.usage)
        }
        return (n, Workspace.keyPrefix(prefix: runtime.settings.prefix, name: n), dir)
    }
}

struct Restore: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Bring a workspace (or some of its files) back as it was at a moment.",
        discussion: """
        Works from any machine that can read the backup; no journal is needed. Each file is downloaded to a \
        temporary name in the target, verified against its SHA-256, given its mode and mtime, then renamed into \
        place; symlinks are recreated as links. Existing files in the target are left alone unless --overwrite. \
        Keys that would escape the target (absolute, '.', '..', empty segments, NUL, through a symlink) are \
        refused with a warning. TIME: \(PointInTime.accepted). \
        Exit: 0 when every chosen file was restored, 1 otherwise, 2 for a bad TIME or usage.
        """
    )

    @Option(help: "The moment to restore (default: now).") var at: String = "now"
    @OptionGroup var selection: WorkspaceSelection
    @Option(help: "Target directory (default: a new sibling '<name>-restored-<timestamp>').") var to: String?
    @Argument(help: "Restrict to these files or subtrees (relative to the workspace).") var paths: [String] = []
    @Flag(help: "Print the plan (path, version id, size, LastModified) and write nothing.") var dryRun = false
    @Flag(help: "Replace files that already exist in the target (atomically).") var overwrite = false
    @Flag(help: "Machine-readable output.") var json = false
    @OptionGroup var settings: SettingsOptions

    func run() throws {
        let moment: Date
        do { moment = try PointInTime.parse(at) } catch let e as PointInTime.ParseError {
            throw Runtime.fail("\(e)", Exit.usage)
        }
        let runtime = try Runtime(options: settings)
        let ws = try selection.resolve(runtime)
        let stamp = Self.stamp(moment)
        let base = ws.dir.map { $0.deletingLastPathComponent } ?? FileManager.default.currentDirectoryPath
        var target = to ?? "\(base)/\(ws.name)-restored-\(stamp)"
        if !target.hasPrefix("/") { target = FileManager.default.currentDirectoryPath + "/" + target }
        var restorer = Restorer(store: runtime.store, prefix: ws.prefix, target: target)
        restorer.overwrite = overwrite
        if let mib = runtime.settings.environment["ECOCODE_BACKUP_RANGE_MIB"].flatMap(Int64.init), (1...1024).contains(mib) {
            restorer.rangeSize = mib << 20
        }
        let filters = paths.map { p -> RelativePath in
            var s = p
            while s.hasPrefix("./") { s.removeFirst(2) }
            while s.hasSuffix("/") { s.removeLast() }
            return RelativePath(s)
        }
        let plan: (entries: [RestoreEntry], skipped: [RestoreSkip])
        do { plan = try restorer.plan(at: moment, paths: filters) } catch {
            throw Runtime.fail("cannot list the backup under \(ws.prefix): \(error)", Exit.unreachable)
        }
        for s in plan.skipped { runtime.logger.warning("refusing key \(s)") }
        if dryRun {
            try printPlan(plan.entries, moment: moment, target: target)
            return
        }
        guard !plan.entries.isEmpty else {
            throw Runtime.fail("nothing to restore: no file of \(ws.prefix) existed at \(AWSTime.iso8601(moment))", Exit.notDurable)
        }
        do {
            try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        } catch {
            throw Runtime.fail("cannot create the target \(target): \(error)", Exit.usage)
        }
        let progress = SyncProgress()
        let display = ProgressDisplay(progress: progress)
        display.start()
        var report = restorer.restore(plan.entries, progress: progress)
        display.stop()
        report.skipped = plan.skipped + report.skipped
        try printReport(report, target: target)
        // Every chosen file restored, or exit 1: refused keys and files left in place count as not restored.
        if report.restored < plan.entries.count || !plan.skipped.isEmpty { throw Exit.notDurable }
    }

    static func stamp(_ d: Date) -> String {
        var t = time_t(d.timeIntervalSince1970)
        var parts = tm()
        localtime_r(&t, &parts)
        return (Int(parts.tm_year) + 1900).padded(4) + (Int(parts.tm_mon) + 1).padded(2) + Int(parts.tm_mday).padded(2) + "-"
            + Int(parts.tm_hour).padded(2) + Int(parts.tm_min).padded(2) + Int(parts.tm_sec).padded(2)
    }

    func printPlan(_ entries: [RestoreEntry], moment: Date, target: String) throws {
        if json {
            let rows: [JSONValue] = entries.map {
                ["path": .string($0.path.description), "version_id": .string($0.version.versionId), "size": .int($0.version.size),
                 "last_modified": .string(AWSTime.iso8601($0.version.lastModified))]
            }
            print(JSONValue.object(["at": .string(AWSTime.iso8601(moment)), "target": .string(target), "plan": .array(rows)]).rendered)
            return
        }
        print("restore plan for \(AWSTime.iso8601(moment)) into \(target) (dry run: nothing written)")
        for e in entries {
            print("\(AWSTime.iso8601(e.version.lastModified))  \(String(e.version.size).leftPad(12))  \(e.version.versionId)  \(e.path)")
        }
        print("\(entries.count) file(s), \(entries.reduce(0) { $0 + $1.version.size }) bytes")
    }

    func printReport(_ r: RestoreReport, target: String) throws {
        if json {
            let list = { (items: [RestoreSkip]) -> JSONValue in
                .array(items.map { ["path": .string($0.key), "reason": .string($0.reason)] })
            }
            print(JSONValue.object(["target": .string(target), "restored": .from(r.restored), "bytes": .int(r.bytes),
                                    "seconds": .double(r.seconds), "skipped": list(r.skipped), "failed": list(r.failed)]).rendered)
            return
        }
        for s in r.skipped { printError("  skipped \(s.key): \(s.reason)") }
        for f in r.failed { printError("  FAILED \(f.key): \(f.reason)") }
        print("restored \(r.restored) file(s), \((Double(r.bytes) / 1_048_576).fixed(1)) MiB into \(target) in \(r.seconds.fixed(1)) s; "
              + "\(r.skipped.count) skipped, \(r.failed.count) failed")
    }
}

