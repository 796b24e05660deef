import ArgumentParser
import Backup
import Dispatch
import FoundationEssentials
import Glibc
import Journal

struct AgentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Watch workspaces and back up every change within seconds (runs until SIGTERM/SIGINT).",
        discussion: """
        Starts with one reconcile scan (changes made while it was down), resumes queued changes and interrupted \
        multipart uploads, then watches with inotify. A change is backed up once the file has been quiet for \
        --debounce seconds, and never later than --max-delay while it keeps changing. If the destination can't \
        be reached, changes keep being journaled and are sent when it returns. Logs go to stderr. \
        Workspaces come from --workspace (repeatable) or ECOCODE_BACKUP_WORKSPACES (colon-separated). \
        Exit: 0 after SIGTERM/SIGINT; 6 if another agent runs for the same state directory.
        """
    )

    @Option(name: .long, help: "A workspace directory to watch (repeat for several).") var workspace: [String] = []
    @Option(help: "Seconds a file must be quiet before it is backed up.") var debounce: Double = 1
    @Option(help: "Longest wait, in seconds, for a file that keeps changing.") var maxDelay: Double = 30
    @Option(help: "Seconds between scans of subtrees left unwatched when the inotify limit is reached.")
    var degradedScanInterval: Double = 60
    @OptionGroup var settings: SettingsOptions

    func run() throws {
        let runtime = try Runtime(options: settings)
        guard debounce >= 0, maxDelay >= debounce else {
            throw Runtime.fail("--debounce must be ≥ 0 and --max-delay ≥ --debounce", Exit.usage)
        }
        var dirs = workspace
        if dirs.isEmpty, let list = runtime.settings.environment["ECOCODE_BACKUP_WORKSPACES"] {
            dirs = list.split(separator: ":").map(String.init).filter { !$0.isEmpty }
        }
        guard !dirs.isEmpty else {
            throw Runtime.fail("no workspace: pass --workspace DIR or set ECOCODE_BACKUP_WORKSPACES", Exit.usage)
        }
        let journal = try runtime.openJournal(rebuild: false)
        let lockFD: Int32
        do { lockFD = try Agent.lock(stateDir: runtime.settings.stateDir) } catch let e as AgentError {
            throw Runtime.fail("\(e)", Exit.alreadyRunning)
        }
        defer { close(lockFD) }
        let syncers = try dirs.map { dir in
            Syncer(pipeline: Pipeline(store: runtime.store, journal: journal,
                                      workspace: try runtime.workspace(dir, name: nil, journal: journal)),
                   metrics: runtime.metrics)
        }
        var options = Agent.Options()
        options.debounce = debounce
        options.maxDelay = maxDelay
        options.degradedScanInterval = max(1, degradedScanInterval)
        let logger = runtime.logger
        let agent = try Agent(syncers: syncers, journal: journal, options: options) { level, message in
            switch level {
            case .debug: logger.debug("\(message)")
            case .info: logger.info("\(message)")
            case .warning: logger.warning("\(message)")
            case .error: logger.error("\(message)")
            }
        }
        // Signals become a byte on the agent's stop pipe, read by its poll loop.
        var sources: [DispatchSourceSignal] = []
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { agent.requestStop() }
            source.resume()
            sources.append(source)
        }
        do { try agent.run() } catch let e as JournalError {
            throw Runtime.fail("\(e)", Exit.journal)
        }
        _ = sources
    }
}
