import Backup
import Foundation

/// A one-line progress bar on a terminal (files, bytes, rate); silent when stderr is not a TTY.
final class ProgressDisplay: @unchecked Sendable {
    let progress: SyncProgress
    private var timer: DispatchSourceTimer?
    private let enabled = isatty(STDERR_FILENO) == 1

    init(progress: SyncProgress) { self.progress = progress }

    func start() {
        guard enabled else { return }
        let t = DispatchSource.makeTimerSource(queue: .global())
        t.schedule(deadline: .now() + 0.2, repeating: 0.2)
        t.setEventHandler { [progress] in
            let s = progress.snapshot
            let elapsed = max(0.001, Date().timeIntervalSince(progress.started))
            let width = 24
            let filled = s.total == 0 ? 0 : width * s.done / max(1, s.total)
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            let line = String(format: "\r[%@] %d/%d files  %.1f MiB  %.1f MiB/s ", bar, s.done, s.total,
                              Double(s.bytes) / 1_048_576, Double(s.bytes) / 1_048_576 / elapsed)
            FileHandle.standardError.write(Data(line.utf8))
        }
        t.resume()
        timer = t
    }

    func stop() {
        guard let timer else { return }
        timer.cancel()
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }
}
