import AWS
import ArgumentParser
import Backup
import FoundationEssentials
import Glibc
import Journal

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Where things stand: agent, destination, workspaces, watcher, and the failure alarm.",
        discussion: """
        Reads the journal read-only (works whether or not the agent runs; never blocks it). Exit 0 when healthy, \
        1 when degraded: pending work older than the agent's max delay, the alarm breached (more than 5 failed \
        sync attempts in 15 minutes), the watcher degraded (inotify limit reached), or the agent not running \
        while workspaces are configured (ECOCODE_BACKUP_WORKSPACES).
        """
    )

    @Flag(help: "Machine-readable output (times RFC 3339).") var json = false
    @OptionGroup var settings: SettingsOptions

    static let alarmName = "EcoCodeWorkspaceSyncFailures"
    static let alarmThreshold = 5
    static let alarmWindowMinutes = 15

    func run() throws {
        let loaded: Settings
        do { loaded = try Settings.load(flags: settings.flags) } catch let e as SettingsError {
            throw Runtime.fail("\(e)", Exit.usage)
        }
        let now = Date().timeIntervalSince1970
        var journal: Journal?
        if FileManager.default.fileExists(atPath: loaded.stateDir + "/journal.sqlite") {
            do { journal = try Journal(stateDir: loaded.stateDir, readOnly: true) } catch let e as JournalError {
                throw Runtime.fail("\(e)", Exit.journal)
            }
        }
        // The agent: its heartbeat, and whether it still holds the lock.
        let beat = journal.flatMap(Heartbeat.read)
        let running = Self.lockHeld(stateDir: loaded.stateDir) && beat?.state == "running"
        let maxDelay = beat?.maxDelay ?? 30
        let debounce = beat?.debounce ?? 1
        let mode = running ? (beat?.mode ?? "online") : "stopped"

        let summaries: [Journal.WorkspaceSummary]
        do {
            summaries = try journal?.summaries(failuresSince: now - Double(Self.alarmWindowMinutes) * 60, bytesSince: now - 86400) ?? []
        } catch let e as JournalError {
            throw Runtime.fail("\(e)", Exit.journal)
        }
        let failures = summaries.reduce(0) { $0 + $1.failuresSince }
        let breached = failures > Self.alarmThreshold
        let degradedDirs = running ? (beat?.degraded ?? []) : []
        let configured = (loaded.environment["ECOCODE_BACKUP_WORKSPACES"] ?? "").split(separator: ":").filter { !$0.isEmpty }

        var problems: [String] = []
        for w in summaries {
            if let oldest = w.oldestPending, now - oldest > maxDelay + debounce + 5 {
                problems.append("\(w.name): \(w.pending) change(s) pending for \(Int(now - oldest)) s")
            }
        }
        if breached { problems.append("alarm \(Self.alarmName): \(failures) failed sync attempts in the last \(Self.alarmWindowMinutes) minutes (threshold \(Self.alarmThreshold))") }
        if !degradedDirs.isEmpty { problems.append("watcher degraded: \(degradedDirs.count) subtree(s) unwatched (fs.inotify.max_user_watches)") }
        if !configured.isEmpty && !running { problems.append("agent not running while workspaces are configured (systemctl --user start ecocode-backup)") }
        if running, mode != "online" { problems.append("agent is local-only: \(beat?.reason ?? "destination unreachable")") }

        func time(_ t: Double?) -> JSONValue { t.map { .string(AWSTime.iso8601(Date(timeIntervalSince1970: $0))) } ?? .null }
        let destination: JSONValue = loaded.usesS3
            ? ["kind": "s3", "bucket": .from(loaded.bucket), "prefix": .string(loaded.prefix),
               "region": .string(loaded.region ?? loaded.environment["AWS_REGION"] ?? ""), "mode": .string(mode)]
            : ["kind": "local", "path": .string(Self.localStorePath(loaded)), "prefix": .string(loaded.prefix), "mode": .string(mode)]
        let workspaces: [JSONValue] = summaries.map { w in
            ["path": .string(w.root), "name": .string(w.name), "prefix": .string(w.keyPrefix), "tracked_files": .from(w.trackedFiles),
             "pending_changes": .from(w.pending), "oldest_pending_seconds": .from(w.oldestPending.map { Int(now - $0) }),
             "in_flight": .from(w.inFlight), "last_success": time(w.lastSuccess), "failures_15m": .from(w.failuresSince),
             "bytes_uploaded_24h": .int(w.bytesSince)]
        }
        let doc: JSONValue = [
            "agent": ["running": .bool(running), "pid": .from(beat?.pid), "last_heartbeat": time(beat?.heartbeat),
                      "uptime_seconds": running ? .from(beat.map { Int(now - $0.started) }) : .null,
                      "mode": .string(mode), "reason": .string(beat?.reason ?? "")],
            "destination": destination,
            "workspaces": .array(workspaces),
            "watcher": ["watches": .from(running ? beat?.watches ?? 0 : 0), "limit": .from(Watcher.systemWatchLimit),
                        "overflows": .from(beat?.overflows ?? 0), "degraded": .array(degradedDirs.map { .string($0) })],
            "alarm": ["name": .string(Self.alarmName), "threshold": .from(Self.alarmThreshold), "window_minutes": .from(Self.alarmWindowMinutes),
                      "failures": .from(failures), "breached": .bool(breached)],
            "healthy": .bool(problems.isEmpty),
            "problems": .array(problems.map { .string($0) }),
        ]
        if json {
            print(doc.rendered)
        } else {
            printHuman(running: running, beat: beat, loaded: loaded, mode: mode, summaries: summaries, failures: failures,
                       breached: breached, problems: problems, now: now)
        }
        if !problems.isEmpty { throw ExitCode(1) }
    }

    static func localStorePath(_ s: Settings) -> String {
        (s.environment["XDG_DATA_HOME"].flatMap { $0.hasPrefix("/") ? $0 : nil } ?? (s.environment["HOME"] ?? Env.home) + "/.local/share")
            + "/ecocode-backup/store"
    }

    /// True when some process holds the agent lock (a shared lock can't be taken).
    static func lockHeld(stateDir: String) -> Bool {
        let fd = open(stateDir + "/agent.lock", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 { flock(fd, LOCK_UN); return false }
        return true
    }

    func printHuman(running: Bool, beat: Heartbeat?, loaded: Settings, mode: String, summaries: [Journal.WorkspaceSummary],
                    failures: Int, breached: Bool, problems: [String], now: Double) {
        let tty = isatty(STDOUT_FILENO) == 1
        func paint(_ s: String, _ code: String) -> String { tty ? "\u{1B}[\(code)m\(s)\u{1B}[0m" : s }
        if running, let beat {
            print("agent        " + paint("running", "32") + " pid \(beat.pid), up \(Int(now - beat.started)) s, \(mode)")
        } else {
            print("agent        " + paint("not running", "33"))
        }
        if loaded.usesS3 {
            print("destination  s3://\(loaded.bucket ?? "")/\(loaded.prefix) (\(loaded.region ?? loaded.environment["AWS_REGION"] ?? "region from profile"))")
        } else {
            print("destination  local store \(Self.localStorePath(loaded)) (prefix \(loaded.prefix))")
        }
        print("")
        print("workspace".rightPad(24) + "tracked".leftPad(9) + "pending".leftPad(9) + "oldest".leftPad(8) + "uploads".leftPad(9)
              + "fail15m".leftPad(9) + "  last success")
        for w in summaries {
            let oldest = w.oldestPending.map { "\(Int(now - $0))s" } ?? "-"
            let last = w.lastSuccess.map { AWSTime.iso8601(Date(timeIntervalSince1970: $0)) } ?? "never"
            print(w.name.rightPad(24) + "\(w.trackedFiles)".leftPad(9) + "\(w.pending)".leftPad(9) + oldest.leftPad(8)
                  + "\(w.inFlight)".leftPad(9) + "\(w.failuresSince)".leftPad(9) + "  \(last)")
        }
        print("")
        print("alarm        \(Self.alarmName): \(failures) failures in \(Self.alarmWindowMinutes) min (threshold \(Self.alarmThreshold)) "
              + (breached ? paint("BREACHED", "31") : paint("ok", "32")))
        print("watcher      \(running ? beat?.watches ?? 0 : 0) watches of \(Watcher.systemWatchLimit), \(beat?.overflows ?? 0) overflows")
        print(problems.isEmpty ? paint("healthy", "32") : paint("degraded:", "31") + "\n" + problems.map { "  - \($0)" }.joined(separator: "\n"))
    }
}
