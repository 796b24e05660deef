import AWS
import ArgumentParser
import Backup
import Foundation
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
        var beat: [String: Any] = [:]
        if let text = try journal?.state("agent"), let obj = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] {
            beat = obj
        }
        let pid = beat["pid"] as? Int
        let running = Self.lockHeld(stateDir: loaded.stateDir) && beat["state"] as? String == "running"
        let heartbeat = beat["heartbeat"] as? Double
        let maxDelay = beat["max_delay"] as? Double ?? 30
        let debounce = beat["debounce"] as? Double ?? 1
        let mode = running ? (beat["mode"] as? String ?? "online") : "stopped"

        let summaries: [Journal.WorkspaceSummary]
        do {
            summaries = try journal?.summaries(failuresSince: now - Double(Self.alarmWindowMinutes) * 60, bytesSince: now - 86400) ?? []
        } catch let e as JournalError {
            throw Runtime.fail("\(e)", Exit.journal)
        }
        let failures = summaries.reduce(0) { $0 + $1.failuresSince }
        let breached = failures > Self.alarmThreshold
        let degradedDirs = running ? (beat["degraded"] as? [String] ?? []) : []
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
        if running, mode != "online" { problems.append("agent is local-only: \(beat["reason"] as? String ?? "destination unreachable")") }

        let destination: [String: Any] = loaded.usesS3
            ? ["kind": "s3", "bucket": loaded.bucket ?? "", "prefix": loaded.prefix, "region": loaded.region ?? loaded.environment["AWS_REGION"] ?? "", "mode": mode]
            : ["kind": "local", "path": Self.localStorePath(loaded), "prefix": loaded.prefix, "mode": mode]
        let doc: [String: Any] = [
            "agent": ["running": running, "pid": pid.map { $0 as Any } ?? NSNull(),
                      "last_heartbeat": heartbeat.map { AWSTime.iso8601(Date(timeIntervalSince1970: $0)) as Any } ?? NSNull(),
                      "uptime_seconds": running ? (beat["started"] as? Double).map { Int(now - $0) as Any } ?? NSNull() : NSNull(),
                      "mode": mode, "reason": beat["reason"] as? String ?? ""],
            "destination": destination,
            "workspaces": summaries.map { w -> [String: Any] in
                ["path": w.root, "name": w.name, "prefix": w.keyPrefix, "tracked_files": w.trackedFiles,
                 "pending_changes": w.pending,
                 "oldest_pending_seconds": w.oldestPending.map { Int(now - $0) as Any } ?? NSNull(),
                 "in_flight": w.inFlight,
                 "last_success": w.lastSuccess.map { AWSTime.iso8601(Date(timeIntervalSince1970: $0)) as Any } ?? NSNull(),
                 "failures_15m": w.failuresSince, "bytes_uploaded_24h": w.bytesSince]
            },
            "watcher": ["watches": running ? beat["watches"] as? Int ?? 0 : 0, "limit": Watcher.systemWatchLimit,
                        "overflows": beat["overflows"] as? Int ?? 0, "degraded": degradedDirs],
            "alarm": ["name": Self.alarmName, "threshold": Self.alarmThreshold, "window_minutes": Self.alarmWindowMinutes,
                      "failures": failures, "breached": breached],
            "healthy": problems.isEmpty,
            "problems": problems,
        ]
        if json {
            print(String(decoding: try JSONSerialization.data(withJSONObject: doc, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self))
        } else {
            printHuman(doc, summaries: summaries, problems: problems, now: now)
        }
        if !problems.isEmpty { throw ExitCode(1) }
    }

    static func localStorePath(_ s: Settings) -> String {
        (s.environment["XDG_DATA_HOME"].flatMap { $0.hasPrefix("/") ? $0 : nil } ?? (s.environment["HOME"] ?? NSHomeDirectory()) + "/.local/share")
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

    func printHuman(_ doc: [String: Any], summaries: [Journal.WorkspaceSummary], problems: [String], now: Double) {
        let tty = isatty(STDOUT_FILENO) == 1
        func paint(_ s: String, _ code: String) -> String { tty ? "\u{1B}[\(code)m\(s)\u{1B}[0m" : s }
        let agent = doc["agent"] as! [String: Any]
        let dest = doc["destination"] as! [String: Any]
        let alarm = doc["alarm"] as! [String: Any]
        let running = agent["running"] as! Bool
        print("agent        " + (running ? paint("running", "32") + " pid \(agent["pid"]!) up \(agent["uptime_seconds"]!) s, \(agent["mode"]!)"
                                          : paint("not running", "33")))
        if dest["kind"] as! String == "s3" {
            print("destination  s3://\(dest["bucket"]!)/\(dest["prefix"]!) (\(dest["region"]!))")
        } else {
            print("destination  local store \(dest["path"]!) (prefix \(dest["prefix"]!))")
        }
        print("")
        print("workspace".padding(toLength: 24, withPad: " ", startingAt: 0) + "tracked".leftPad(9) + "pending".leftPad(9)
              + "oldest".leftPad(8) + "uploads".leftPad(9) + "fail15m".leftPad(9) + "  last success")
        for w in summaries {
            let oldest = w.oldestPending.map { "\(Int(now - $0))s" } ?? "-"
            let last = w.lastSuccess.map { AWSTime.iso8601(Date(timeIntervalSince1970: $0)) } ?? "never"
            print(w.name.padding(toLength: 24, withPad: " ", startingAt: 0) + "\(w.trackedFiles)".leftPad(9) + "\(w.pending)".leftPad(9)
                  + oldest.leftPad(8) + "\(w.inFlight)".leftPad(9) + "\(w.failuresSince)".leftPad(9) + "  \(last)")
        }
        let breached = alarm["breached"] as! Bool
        print("")
        print("alarm        \(alarm["name"]!): \(alarm["failures"]!) failures in \(alarm["window_minutes"]!) min (threshold \(alarm["threshold"]!)) "
              + (breached ? paint("BREACHED", "31") : paint("ok", "32")))
        let watcher = doc["watcher"] as! [String: Any]
        print("watcher      \(watcher["watches"]!) watches of \(watcher["limit"]!), \(watcher["overflows"]!) overflows")
        print(problems.isEmpty ? paint("healthy", "32") : paint("degraded:", "31") + "\n" + problems.map { "  - \($0)" }.joined(separator: "\n"))
    }
}
