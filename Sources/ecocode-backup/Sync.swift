import ArgumentParser
import Backup
import FoundationEssentials
import Glibc
import Journal

struct Sync: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "One reconcile-and-upload pass over a workspace.",
        discussion: """
        Scans the workspace, queues every change since the last run, and makes it durable in the destination: \
        new and modified files are uploaded, touched files only update the journal, deleted files get a delete \
        marker, renamed files are copied server-side. Failed files are retried with backoff until --timeout; \
        exits 0 only if every change is durable, else 1 with a per-file summary.
        """
    )

    @Option(name: .long, help: "The workspace directory to back up.") var workspace: String
    @Option(help: "Workspace name in the key (default: the directory's name).") var name: String?
    @Option(help: "Keep retrying failed files for up to this many seconds.") var timeout: Double = 300
    @Flag(help: "Move a damaged journal aside and rebuild it from a rescan (the backup itself is untouched).")
    var rebuildJournal = false
    @OptionGroup var settings: SettingsOptions

    func run() throws {
        let runtime = try Runtime(options: settings)
        let journal = try runtime.openJournal(rebuild: rebuildJournal)
        let ws = try runtime.workspace(workspace, name: name, journal: journal)
        runtime.logger.info("syncing \(ws.root) to \(ws.keyPrefix)")

        let progress = SyncProgress()
        let display = ProgressDisplay(progress: progress)
        display.start()
        let report: SyncReport
        do {
            report = try Syncer(pipeline: Pipeline(store: runtime.store, journal: journal, workspace: ws),
                                metrics: runtime.metrics).run(timeout: timeout, progress: progress)
        } catch let e as JournalError {
            display.stop()
            throw Runtime.fail("\(e)", Exit.journal)
        }
        display.stop()

        for p in report.scanProblems { runtime.logger.warning("skipped \(p)") }
        for s in report.skipped { runtime.logger.warning("skipped \(s.path): \(s.reason)") }
        if report.abortedUploads > 0 { runtime.logger.info("aborted \(report.abortedUploads) abandoned multipart upload(s)") }
        let mib = Double(report.bytesUploaded) / 1_048_576
        print("synced \(ws.name): \(report.uploaded) uploaded (\(mib.fixed(1)) MiB), \(report.copied) copied, "
              + "\(report.deleted) deleted, \(report.touched) touched, \(report.pending.count) pending, "
              + "\(report.failedAttempts) failed attempts in \(report.seconds.fixed(1)) s")
        if let e = report.destinationError {
            switch e {
            case .unreachable:
                throw Runtime.fail("\(e) — \(report.pending.count) change(s) stay queued in the journal and will be sent by the next sync", Exit.unreachable)
            default:
                throw Runtime.fail("\(e)", Exit.unusable)
            }
        }
        if !report.pending.isEmpty {
            for p in report.pending.prefix(50) {
                printError("  not durable: \(p.path) (\(p.kind.rawValue), \(p.attempts) attempt(s)): \(p.lastError ?? "not attempted before the timeout")")
            }
            if report.pending.count > 50 { printError("  … and \(report.pending.count - 50) more") }
            throw Runtime.fail("\(report.pending.count) change(s) are not durable yet; they stay queued (run sync again, or check the errors above)", Exit.notDurable)
        }
    }
}
