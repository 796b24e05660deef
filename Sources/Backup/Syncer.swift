import AWS
import FoundationEssentials
import Dispatch
import Glibc
import Journal
import Synchronization

/// Counters shared by the workers of one pass, read by the progress display.
public final class SyncProgress: Sendable {
    struct Counts { var done = 0, total = 0, bytes: Int64 = 0 }
    private let counts = Mutex(Counts())
    public let started = Date()

    public init() {}

    func add(total: Int) { counts.withLock { $0.total += total } }
    func finished(bytes: Int64) { counts.withLock { $0.done += 1; $0.bytes += bytes } }

    public var snapshot: (done: Int, total: Int, bytes: Int64) { counts.withLock { ($0.done, $0.total, $0.bytes) } }
}

/// The result of `sync`: what became durable and what is still pending, with reasons.
public struct SyncReport: Sendable {
    public var uploaded = 0
    public var copied = 0
    public var deleted = 0
    public var touched = 0
    public var bytesUploaded: Int64 = 0
    public var failedAttempts = 0
    public var scanProblems: [ScanProblem] = []
    public var skipped: [(path: String, reason: String)] = []
    /// Changes still queued when the pass ended, with their last error.
    public var pending: [QueueEntry] = []
    public var abortedUploads = 0
    /// Set when the destination could not be reached or used at all.
    public var destinationError: StoreError?
    /// A failure that says the destination is out of reach (the agent switches to local-only).
    public var lastTransportError: String?
    public var seconds: Double = 0
}

/// Reconciles a workspace with the journal and works its queue with parallel workers. `sync` runs one
/// pass with `run`; the agent calls `prepare`, then `processDue` whenever events are journaled.
public final class Syncer: @unchecked Sendable {
    public let pipeline: Pipeline
    public let metrics: MetricsPublisher?
    public var workers = 8
    /// A file's own backoff after a failed attempt: 1 s, 2 s, 4 s … capped here.
    public var maxFileBackoff: Double = 60
    /// Checked between files: once true, workers take no new work (the agent is shutting down).
    public var stopRequested: @Sendable () -> Bool = { false }
    /// Latest stored versions, when the journal tracked nothing at `prepare` (see `Pipeline.Tracked`).
    var adoptable: [[UInt8]: (versionId: String, size: Int64)] = [:]

    public init(pipeline: Pipeline, metrics: MetricsPublisher?) {
        self.pipeline = pipeline
        self.metrics = metrics
    }

    var journal: Journal { pipeline.journal }
    var workspace: Workspace { pipeline.workspace }
    var cleanKey: String { "clean_exit.\(workspace.id)" }

    /// Compares the tree with the journal and queues every difference. Returns scan problems.
    public func reconcile() throws -> [ScanProblem] {
        let scanner = Scanner(root: workspace.root)
        let result = scanner.scan()
        let tracked = try journal.trackedFiles(workspace: workspace.id)
        let queued = Set(try journal.queue(workspace: workspace.id).map(\.path))
        let now = Date().timeIntervalSince1970
        var seen = Set<RelativePath>()
        try journal.transaction {
            for f in result.files {
                seen.insert(f.path)
                if let r = tracked[f.path], f.snapshot.matches(r) { continue }
                try journal.enqueueLocked(workspace: workspace.id, path: f.path, kind: .upsert, at: now)
            }
            for path in tracked.keys where !seen.contains(path) && !queued.contains(path) {
                // Still on disk as a file means it is ignored now: stop tracking it, keep what is in the backup.
                // Gone, or replaced by a directory: it was deleted.
                let onDisk = (try? FileSnapshot.lstat(workspace.absolute(path))) ?? nil
                if let onDisk, onDisk.isRegular || onDisk.isSymlink {
                    try journal.forgetLocked(workspace: workspace.id, path: path)
                } else {
                    try journal.enqueueLocked(workspace: workspace.id, path: path, kind: .delete, at: now)
                }
            }
        }
        return result.problems
    }

    /// Checks the destination can take backups and cleans up after a run that did not end cleanly.
    /// Throws `StoreError`; returns the number of abandoned multipart uploads aborted.
    public func prepare() throws -> Int {
        var aborted = 0
        do {
            try pipeline.store.checkReady()
            // Listing unfinished uploads costs a LIST: do it only after a run that did not end cleanly,
            // the one way an upload can exist that the journal doesn't know.
            if try journal.state(cleanKey) != "1" {
                let known = Set(try journal.uploads(workspace: workspace.id).map(\.uploadId))
                aborted = try pipeline.store.abortUnknownUploads(prefix: workspace.keyPrefix, known: known)
            }
            try journal.setState(cleanKey, "0")
            // A journal that tracks nothing yet (first run on this machine, or rebuilt) may face a backup that
            // already holds these files: one listing lets them be adopted rather than uploaded again.
            adoptable = [:]
            if try journal.trackedFiles(workspace: workspace.id).isEmpty {
                for v in try pipeline.store.versions(prefix: workspace.keyPrefix) where v.isLatest && !v.isDeleteMarker {
                    adoptable[Array(v.key.utf8)] = (v.versionId, v.size)
                }
            }
        } catch let e as StoreError {
            throw e
        } catch let e as JournalError {
            throw e
        } catch {
            throw StoreError.unreachable("\(error)")
        }
        return aborted
    }

    /// Marks the end of a run that stopped on its own (not killed): the next `prepare` skips the uploads LIST.
    public func finish() {
        try? journal.setState(cleanKey, "1")
    }

    public func run(timeout: Double, progress: SyncProgress = SyncProgress()) throws -> SyncReport {
        var report = SyncReport()
        let start = Date()
        let deadline = start.addingTimeInterval(timeout)
        report.scanProblems = try reconcile()
        do {
            report.abortedUploads = try prepare()
            while Date() < deadline {
                guard let wake = try processDue(report: &report, progress: progress) else { break }
                if wake >= deadline.timeIntervalSince1970 { break }
                usleep(useconds_t(max(0.01, wake - Date().timeIntervalSince1970) * 1_000_000))
            }
            finish()
        } catch let e as StoreError {
            report.destinationError = e
        }
        report.pending = try journal.queue(workspace: workspace.id)
        try recordPass(report, publish: report.destinationError == nil)
        report.seconds = Date().timeIntervalSince(start)
        return report
    }

    /// Buffers the pass's success metrics, marks the workspace synced when nothing is pending, publishes.
    public func recordPass(_ report: SyncReport, publish: Bool) throws {
        let now = Date().timeIntervalSince1970
        if report.pending.isEmpty && report.destinationError == nil {
            try journal.markSuccess(workspace: workspace.id, at: now)
        }
        let durable = report.uploaded + report.copied + report.deleted
        if durable > 0 {
            try journal.bufferMetric(name: "WorkspaceSyncSuccesses", value: Double(durable), unit: "Count", at: now)
        }
        if report.bytesUploaded > 0 {
            try journal.bufferMetric(name: "BytesUploaded", value: Double(report.bytesUploaded), unit: "Bytes", at: now)
            try journal.recordTransfer(workspace: workspace.id, bytes: report.bytesUploaded, at: now)
        }
        if publish { metrics?.publish(journal: journal) }
    }

    /// Processes every queued change that is due: past its own backoff, and quiet for `debounce` seconds
    /// (or first seen `maxDelay` ago while it keeps changing). Returns when the next one falls due, or nil
    /// when the queue is empty.
    public func processDue(debounce: Double = 0, maxDelay: Double = 0, report: inout SyncReport,
                           progress: SyncProgress = SyncProgress()) throws -> Double? {
        while true {
            let now = Date().timeIntervalSince1970
            let queue = try journal.queue(workspace: workspace.id)
            if queue.isEmpty || stopRequested() { return queue.isEmpty ? nil : now + 1 }
            func dueAt(_ e: QueueEntry) -> Double {
                max(e.nextAttempt, debounce <= 0 ? 0 : min(e.lastSeen + debounce, e.firstSeen + maxDelay))
            }
            let due = queue.filter { dueAt($0) <= now }
            if due.isEmpty { return queue.map(dueAt).min() }
            progress.add(total: due.count)
            let tracked = due.count > 256
                ? Pipeline.Tracked(files: try journal.trackedFiles(workspace: workspace.id), adoptable: adoptable)
                : Pipeline.Tracked(journal: journal, workspace: workspace.id, adoptable: adoptable)
            // Upserts first, so a rename's new path is copied from the old object before the old one is deleted.
            try runParallel(due.filter { $0.kind == .upsert }, tracked: tracked, report: &report, progress: progress)
            try runParallel(due.filter { $0.kind == .delete }, tracked: tracked, report: &report, progress: progress)
        }
    }

    func runParallel(_ entries: [QueueEntry], tracked: Pipeline.Tracked, report: inout SyncReport, progress: SyncProgress) throws {
        guard !entries.isEmpty else { return }
        let results = Mutex<[(QueueEntry, Result<Outcome, Error>)]>([])
        let next = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: min(workers, entries.count)) { _ in
            while true {
                let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
                guard i < entries.count, !stopRequested() else { return }
                let r = Result { try pipeline.process(entries[i], tracked: tracked) }
                if case .success(.uploaded(let bytes)) = r { progress.finished(bytes: bytes) } else { progress.finished(bytes: 0) }
                results.withLock { $0.append((entries[i], r)) }
            }
        }
        let now = Date().timeIntervalSince1970
        for (entry, result) in results.withLock({ $0 }) {
            switch result {
            case .success(.uploaded(let bytes)): report.uploaded += 1; report.bytesUploaded += bytes
            case .success(.copied): report.copied += 1
            case .success(.deleted): report.deleted += 1
            case .success(.touched): report.touched += 1
            case .success(.unchanged): break
            case .success(.skipped(let why)): report.skipped.append((entry.path.description, why))
            case .success(.changing):
                try journal.postpone(workspace: workspace.id, path: entry.path, until: now + 1)
            case .failure(let error):
                if case JournalError.diskFull = error { throw error }
                report.failedAttempts += 1
                if case AWSError.transport(_, _, let t)? = error as? AWSError, t.kind != .local {
                    report.lastTransportError = "\(error)"
                }
                let backoff = min(maxFileBackoff, pow(2, Double(entry.attempts))) * Double.random(in: 0.5...1)
                try journal.recordFailure(workspace: workspace.id, path: entry.path, error: "\(error)", at: now,
                                          nextAttempt: now + backoff)
            }
        }
    }
}

/// Publishes buffered metric values to CloudWatch (namespace `EcoCode`) with their original timestamps;
/// values stay buffered in the journal until CloudWatch has accepted them.
public struct MetricsPublisher: Sendable {
    public static let namespace = "EcoCode"
    public let cloudWatch: CloudWatchClient
    public let dimensions: [(String, String)]

    public init(cloudWatch: CloudWatchClient, dimensions: [(String, String)] = []) {
        self.cloudWatch = cloudWatch
        self.dimensions = dimensions
    }

    /// Returns the number of values sent; failures leave them buffered for the next call.
    @discardableResult
    public func publish(journal: Journal) -> Int {
        var sent = 0
        while let batch = try? journal.pendingMetrics(limit: CloudWatchClient.maxPerRequest, now: Date().timeIntervalSince1970), !batch.isEmpty {
            let data = batch.map { MetricDatum(name: $0.name, value: $0.value, unit: $0.unit,
                                               timestamp: Date(timeIntervalSince1970: $0.at), dimensions: dimensions) }
            do { try cloudWatch.putMetricData(namespace: Self.namespace, data) } catch { break }
            try? journal.deleteMetrics(upTo: batch.last!.id)
            sent += batch.count
        }
        return sent
    }
}
