import AWS
import Foundation
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
    public var seconds: Double = 0
}

/// One reconcile-and-upload pass over a workspace: scan, queue what changed, work the queue with
/// parallel workers until it is empty or the deadline passes, publish metrics.
public struct Syncer: Sendable {
    public let pipeline: Pipeline
    public let metrics: MetricsPublisher?
    public var workers = 8
    /// A file's own backoff after a failed attempt: 1 s, 2 s, 4 s … capped here.
    public var maxFileBackoff: Double = 60

    public init(pipeline: Pipeline, metrics: MetricsPublisher?) {
        self.pipeline = pipeline
        self.metrics = metrics
    }

    var journal: Journal { pipeline.journal }
    var workspace: Workspace { pipeline.workspace }

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
                // Still on disk means it is ignored now: stop tracking it, keep what is in the backup.
                if (try? FileSnapshot.lstat(workspace.absolute(path))) ?? nil != nil {
                    try journal.forgetLocked(workspace: workspace.id, path: path)
                } else {
                    try journal.enqueueLocked(workspace: workspace.id, path: path, kind: .delete, at: now)
                }
            }
        }
        return result.problems
    }

    public func run(timeout: Double, progress: SyncProgress = SyncProgress()) throws -> SyncReport {
        var report = SyncReport()
        let start = Date()
        let deadline = start.addingTimeInterval(timeout)
        report.scanProblems = try reconcile()
        do {
            try pipeline.store.checkReady()
            // Listing unfinished uploads costs a LIST: do it only after a run that did not end cleanly,
            // the one way an upload can exist that the journal doesn't know.
            let cleanKey = "clean_exit.\(workspace.id)"
            if try journal.state(cleanKey) != "1" {
                let known = Set(try journal.uploads(workspace: workspace.id).map(\.uploadId))
                report.abortedUploads = try pipeline.store.abortUnknownUploads(prefix: workspace.keyPrefix, known: known)
            }
            try journal.setState(cleanKey, "0")
            defer { try? journal.setState(cleanKey, "1") }
        } catch let e as StoreError {
            report.destinationError = e
        } catch {
            report.destinationError = .unreachable("\(error)")
        }
        if report.destinationError == nil {
            try work(until: deadline, report: &report, progress: progress)
        }
        report.pending = try journal.queue(workspace: workspace.id)
        if report.pending.isEmpty && report.destinationError == nil {
            try journal.markSuccess(workspace: workspace.id, at: Date().timeIntervalSince1970)
        }
        let now = Date().timeIntervalSince1970
        if report.uploaded + report.copied + report.deleted > 0 {
            try journal.bufferMetric(name: "WorkspaceSyncSuccesses", value: Double(report.uploaded + report.copied + report.deleted), unit: "Count", at: now)
        }
        if report.bytesUploaded > 0 {
            try journal.bufferMetric(name: "BytesUploaded", value: Double(report.bytesUploaded), unit: "Bytes", at: now)
        }
        if report.destinationError == nil { metrics?.publish(journal: journal) }
        report.seconds = Date().timeIntervalSince(start)
        return report
    }

    func work(until deadline: Date, report: inout SyncReport, progress: SyncProgress) throws {
        // A journal that tracks nothing yet (first run on this machine, or rebuilt) may face a backup that
        // already holds these files: one listing lets them be adopted rather than uploaded again.
        var adoptable: [[UInt8]: (versionId: String, size: Int64)] = [:]
        if try journal.trackedFiles(workspace: workspace.id).isEmpty {
            for v in try pipeline.store.versions(prefix: workspace.keyPrefix) where v.isLatest && !v.isDeleteMarker {
                adoptable[Array(v.key.utf8)] = (v.versionId, v.size)
            }
        }
        while true {
            let now = Date().timeIntervalSince1970
            let queue = try journal.queue(workspace: workspace.id)
            if queue.isEmpty { return }
            let due = queue.filter { $0.nextAttempt <= now }
            if due.isEmpty {
                let wake = queue.map(\.nextAttempt).min()!
                if wake >= deadline.timeIntervalSince1970 { return }
                usleep(useconds_t(max(0.01, wake - now) * 1_000_000))
                continue
            }
            if Date() >= deadline { return }
            progress.add(total: due.count)
            let tracked = Pipeline.Tracked(files: try journal.trackedFiles(workspace: workspace.id), adoptable: adoptable)
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
                guard i < entries.count else { return }
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
