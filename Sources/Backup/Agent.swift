import CSystem
import FoundationEssentials
import Dispatch
import Glibc
import Journal
import Synchronization

/// The background agent: watches workspaces with inotify, journals every change in batched transactions,
/// and lets a worker thread back each one up once it has been quiet for `debounce` seconds (never later
/// than `maxDelay` while it keeps changing). Keeps journaling while the destination is unreachable and
/// catches up when it returns. Idle, it blocks in poll(2): no busy polling.
public final class Agent: @unchecked Sendable {
    public struct Options: Sendable {
        public var debounce: Double = 1
        public var maxDelay: Double = 30
        public var heartbeat: Double = 5
        /// How often degraded (unwatched) subtrees are rescanned.
        public var degradedScanInterval: Double = 60
        public var metricsInterval: Double = 60
        /// Probes of an unreachable destination back off up to this.
        public var maxProbeDelay: Double = 300
        /// SIGTERM: in-flight work may finish within this, then the agent exits anyway (nothing is lost).
        public var shutdownGrace: Double = 10
        public init() {}
    }

    public enum Level: Sendable { case debug, info, warning, error }

    public let syncers: [Syncer]
    let journal: Journal
    let options: Options
    let log: @Sendable (Level, String) -> Void
    let watcher: Watcher
    let stopping = Atomic<Bool>(false)
    /// Signalled when events were journaled (or on stop); the worker waits on it between passes.
    let wakeSignal = DispatchSemaphore(value: 0)
    let stopPipe: (read: Int32, write: Int32)
    let startedAt = Date()
    let modeState = Mutex<(online: Bool, reason: String)>((true, ""))

    public init(syncers: [Syncer], journal: Journal, options: Options, log: @escaping @Sendable (Level, String) -> Void) throws {
        self.syncers = syncers
        self.journal = journal
        self.options = options
        self.log = log
        watcher = try Watcher(roots: syncers.map { $0.workspace.root })
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw FileError(path: "pipe", errno: errno) }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        stopPipe = (fds[0], fds[1])
        for s in syncers { s.stopRequested = { [unowned self] in self.stopping.load(ordering: .relaxed) } }
        watcher.onLimit = { message in log(.warning, message) }
    }

    /// Asks the agent to stop (from a signal handler's queue); `run` returns soon after.
    public func requestStop() {
        var byte: UInt8 = 1
        _ = write(stopPipe.write, &byte, 1)
    }

    /// Takes the per-state-directory lock; throws `AgentError.alreadyRunning` naming the holder's pid.
    public static func lock(stateDir: String) throws -> Int32 {
        let path = stateDir + "/agent.lock"
        let fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileError(path: path, errno: errno) }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let holder = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmed ?? "?"
            close(fd)
            throw AgentError.alreadyRunning(pid: holder, lockFile: path)
        }
        ftruncate(fd, 0)
        let pid = "\(getpid())\n"
        _ = pid.withCString { write(fd, $0, strlen($0)) }
        return fd
    }

    public func run() throws {
        // One malloc arena instead of one per busy thread: the long-running agent's heap stays compact.
        mallopt(M_ARENA_MAX, 1)
        log(.info, "agent \(getpid()) starting: \(syncers.count) workspace(s), debounce \(options.debounce) s, max delay \(options.maxDelay) s")
        // Watch first, then reconcile: a change between the two is seen twice, never missed.
        for (i, s) in syncers.enumerated() {
            let t = Date()
            watcher.watchTree(workspace: i, dir: RelativePath(bytes: []))
            let problems = try s.reconcile()
            for p in problems { log(.warning, "skipped \(p)") }
            log(.info, "watching \(s.workspace.root) (\(watcher.watchCount) directories, \(Date().timeIntervalSince(t).fixed(2)) s)")
        }
        // The startup scan's transient tables are freed now: hand the pages back so the idle agent stays small.
        malloc_trim(0)
        try writeHeartbeat(state: "running")
        let doneSignal = DispatchSemaphore(value: 0)
        DispatchQueue(label: "ecocode-backup.worker").async { [self] in
            workerLoop()
            doneSignal.signal()
        }
        try eventLoop()

        // Shutdown: no new work; give in-flight work the grace period, then go.
        log(.info, "stopping: letting in-flight uploads finish (up to \(Int(options.shutdownGrace)) s)")
        stopping.store(true, ordering: .relaxed)
        wake()
        if doneSignal.wait(timeout: .now() + options.shutdownGrace) == .timedOut {
            log(.warning, "in-flight work did not finish in time; it is recorded in the journal and resumes at the next start")
        } else {
            for s in syncers { s.finish() }
        }
        try? writeHeartbeat(state: "stopped")
        log(.info, "stopped")
    }

    func wake() {
        wakeSignal.signal()
    }

    /// Blocks in poll(2) on inotify and the stop pipe; journals events; rescans degraded subtrees.
    func eventLoop() throws {
        var lastHeartbeat = Date()
        var lastDegradedScan = Date()
        while true {
            var fds = [pollfd(fd: watcher.fd, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: stopPipe.read, events: Int16(POLLIN), revents: 0)]
            let timeout = Int32(options.heartbeat * 1000)
            let rc = poll(&fds, 2, timeout)
            if rc < 0 && errno != EINTR { throw FileError(path: "poll", errno: errno) }
            if fds[1].revents != 0 { return }
            if fds[0].revents != 0 {
                // Let a burst settle a little so it lands in one transaction.
                usleep(20_000)
                try journalEvents(watcher.read())
            }
            if !watcher.degraded.isEmpty && Date().timeIntervalSince(lastDegradedScan) >= options.degradedScanInterval {
                lastDegradedScan = Date()
                watcher.retryDegraded()
                for s in syncers { _ = try s.reconcile() }
                wake()
            }
            if Date().timeIntervalSince(lastHeartbeat) >= options.heartbeat {
                lastHeartbeat = Date()
                try writeHeartbeat(state: "running")
            }
        }
    }

    func journalEvents(_ events: [Watcher.WatchEvent]) throws {
        guard !events.isEmpty else { return }
        let now = Date().timeIntervalSince1970
        var rescans = Set<Int>()
        var added: [(Int, RelativePath)] = []
        var removedDirs: [(Int, RelativePath)] = []
        try journal.transaction {
            for e in events {
                switch e {
                case .changed(let ws, let path):
                    try journal.enqueueLocked(workspace: syncers[ws].workspace.id, path: path, kind: .upsert, at: now)
                case .removed(let ws, let path):
                    try journal.enqueueLocked(workspace: syncers[ws].workspace.id, path: path, kind: .delete, at: now)
                case .directoryAdded(let ws, let path): added.append((ws, path))
                case .directoryRemoved(let ws, let path): removedDirs.append((ws, path))
                case .rescan(let ws):
                    if let ws { rescans.insert(ws) } else { rescans.formUnion(syncers.indices) }
                }
            }
        }
        for (ws, dir) in removedDirs {
            let id = syncers[ws].workspace.id
            let gone = try journal.trackedFiles(workspace: id).keys.filter { $0.isWithin(dir) }
            try journal.transaction { for p in gone { try journal.enqueueLocked(workspace: id, path: p, kind: .delete, at: now) } }
        }
        for (ws, dir) in added {
            // Files created before the watch existed are found by scanning right after adding it.
            let found = Scanner(root: syncers[ws].workspace.root).scan(under: dir)
            let id = syncers[ws].workspace.id
            try journal.transaction { for f in found.files { try journal.enqueueLocked(workspace: id, path: f.path, kind: .upsert, at: now) } }
        }
        for ws in rescans {
            if watcher.overflows > 0 { log(.warning, "inotify queue overflowed: rescanning \(syncers[ws].workspace.root)") }
            _ = try syncers[ws].reconcile()
        }
        log(.debug, "journaled \(events.count) event(s)")
        wake()
    }

    var isOnline: Bool { modeState.withLock { $0.online } }

    func setMode(online: Bool, reason: String) {
        let changed = modeState.withLock { state -> Bool in
            defer { state = (online, reason) }
            return state.online != online
        }
        if changed {
            if online { log(.info, "destination reachable again: catching up") }
            else { log(.warning, "destination unreachable (\(reason)); working local-only: changes are journaled and sent when it returns") }
        }
    }

    /// Backs up due changes; while offline, probes the destination with backoff.
    func workerLoop() {
        var probeDelay = 5.0
        var nextProbe = Date.distantPast
        var lastMetrics = Date.distantPast
        var prepared = false
        while !stopping.load(ordering: .relaxed) {
            var wakeAt = Date().addingTimeInterval(options.heartbeat * 4)
            if !prepared || !isOnline {
                if Date() >= nextProbe {
                    do {
                        for s in syncers {
                            let aborted = try s.prepare()
                            if aborted > 0 { log(.info, "aborted \(aborted) abandoned multipart upload(s) under \(s.workspace.keyPrefix)") }
                        }
                        prepared = true
                        probeDelay = 5
                        setMode(online: true, reason: "")
                    } catch {
                        setMode(online: false, reason: "\(error)")
                        nextProbe = Date().addingTimeInterval(probeDelay)
                        probeDelay = min(options.maxProbeDelay, probeDelay * 2)
                    }
                }
                if !isOnline { wakeAt = min(wakeAt, nextProbe) }
            }
            if prepared && isOnline {
                for s in syncers {
                    var report = SyncReport()
                    do {
                        if let next = try s.processDue(debounce: options.debounce, maxDelay: options.maxDelay, report: &report) {
                            wakeAt = min(wakeAt, Date(timeIntervalSince1970: next))
                        }
                        for (path, why) in report.skipped { log(.warning, "skipped \(path): \(why)") }
                        let done = report.uploaded + report.copied + report.deleted + report.touched
                        if done > 0 {
                            log(.info, "\(s.workspace.name): \(report.uploaded) uploaded, \(report.copied) copied, \(report.deleted) deleted, \(report.touched) touched")
                        }
                        report.pending = try journal.queue(workspace: s.workspace.id)
                        try s.recordPass(report, publish: false)
                        if let t = report.lastTransportError {
                            setMode(online: false, reason: t)
                            nextProbe = Date().addingTimeInterval(probeDelay)
                        }
                    } catch {
                        log(.error, "\(s.workspace.root): \(error)")
                        wakeAt = min(wakeAt, Date().addingTimeInterval(5))
                    }
                }
                malloc_trim(0)
                if Date().timeIntervalSince(lastMetrics) >= options.metricsInterval {
                    lastMetrics = Date()
                    syncers.first?.metrics?.publish(journal: journal)
                }
            }
            if !stopping.load(ordering: .relaxed) {
                let seconds = max(0, wakeAt.timeIntervalSinceNow)
                _ = wakeSignal.wait(timeout: .now() + .milliseconds(Int(seconds * 1000)))
            }
        }
    }

    /// The heartbeat `status` reads: pid, start, last beat, mode and why, watcher health.
    func writeHeartbeat(state: String) throws {
        let mode = modeState.withLock { $0 }
        let beat = Heartbeat(state: state, pid: Int(getpid()), started: startedAt.timeIntervalSince1970,
                             heartbeat: Date().timeIntervalSince1970, mode: mode.online ? "online" : "local-only",
                             reason: mode.reason, watches: watcher.watchCount, watchLimit: Watcher.systemWatchLimit,
                             overflows: watcher.overflows,
                             degraded: watcher.degraded.map { syncers[$0.workspace].workspace.absolute($0.dir) },
                             debounce: options.debounce, maxDelay: options.maxDelay)
        try journal.setState(Heartbeat.stateKey, beat.json)
    }
}

/// What a running agent writes to the journal every few seconds, for `status`.
public struct Heartbeat: Codable, Sendable {
    public static let stateKey = "agent"
    public var state: String
    public var pid: Int
    public var started: Double
    public var heartbeat: Double
    public var mode: String
    public var reason: String
    public var watches: Int
    public var watchLimit: Int
    public var overflows: Int
    public var degraded: [String]
    public var debounce: Double
    public var maxDelay: Double

    enum CodingKeys: String, CodingKey {
        case state, pid, started, heartbeat, mode, reason, watches, watchLimit = "watch_limit", overflows, degraded,
             debounce, maxDelay = "max_delay"
    }

    var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
    }

    public static func read(_ journal: Journal) -> Heartbeat? {
        guard let text = try? journal.state(stateKey) else { return nil }
        return try? JSONDecoder().decode(Heartbeat.self, from: Data(text.utf8))
    }
}

public enum AgentError: Error, CustomStringConvertible {
    case alreadyRunning(pid: String, lockFile: String)

    public var description: String {
        switch self {
        case .alreadyRunning(let pid, let file):
            return "another ecocode-backup agent (pid \(pid)) is already running for this state directory (\(file)); stop it first (systemctl --user stop ecocode-backup) or use another ECOCODE_BACKUP_STATE_DIR"
        }
    }
}
