import Backup
import Dispatch
import FoundationEssentials
import Glibc

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
            let mib = Double(s.bytes) / 1_048_576
            let line = "\r[\(bar)] \(s.done)/\(s.total) files  \(mib.fixed(1)) MiB  \((mib / elapsed).fixed(1)) MiB/s "
            _ = line.withCString { write(STDERR_FILENO, $0, strlen($0)) }
        }
        t.resume()
        timer = t
    }

    func stop() {
        guard let timer else { return }
        timer.cancel()
        _ = "\r\u{1B}[K".withCString { write(STDERR_FILENO, $0, strlen($0)) }
    }
}
