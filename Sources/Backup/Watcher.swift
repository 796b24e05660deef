import FoundationEssentials
import Glibc
import Journal

/// inotify on every non-ignored directory of the watched workspaces. Turns kernel events into
/// `WatchEvent`s; never blocks (the agent polls its descriptor).
public final class Watcher {
    public enum WatchEvent: Equatable {
        /// A file was written, created, moved in or had its attributes changed.
        case changed(workspace: Int, path: RelativePath)
        /// A file was deleted or moved away.
        case removed(workspace: Int, path: RelativePath)
        /// A directory appeared (created or moved in): it is now watched and must be scanned.
        case directoryAdded(workspace: Int, path: RelativePath)
        /// A directory went away (deleted or moved out): every tracked file below it is gone.
        case directoryRemoved(workspace: Int, path: RelativePath)
        /// The kernel dropped events, or ignore rules changed: rescan the workspace.
        case rescan(workspace: Int?)
    }

    struct Watch {
        var workspace: Int
        var dir: RelativePath
        var rules: IgnoreRules
    }

    public let fd: Int32
    let roots: [String]
    var watches: [Int32: Watch] = [:]
    var byDir: [Int: [RelativePath: Int32]] = [:]
    /// Directories left unwatched because the inotify limit was reached; a periodic scan covers them.
    public private(set) var degraded: [(workspace: Int, dir: RelativePath)] = []
    public private(set) var overflows = 0
    var warnedLimit = false
    public var watchCount: Int { watches.count }
    public var onLimit: ((String) -> Void)?

    static let dirMask = UInt32(IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO
                               | IN_MODIFY | IN_DELETE_SELF | IN_MOVE_SELF | IN_DONT_FOLLOW | IN_EXCL_UNLINK | IN_ONLYDIR)

    public init(roots: [String]) throws {
        let fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard fd >= 0 else { throw FileError(path: "inotify", errno: errno) }
        self.fd = fd
        self.roots = roots
    }

    deinit { close(fd) }

    public static var systemWatchLimit: Int {
        (try? String(contentsOfFile: "/proc/sys/fs/inotify/max_user_watches", encoding: .utf8))
            .flatMap { Int($0.trimmed) } ?? 0
    }

    func absolute(_ ws: Int, _ dir: RelativePath) -> String {
        dir.bytes.isEmpty ? roots[ws] : roots[ws] + "/" + dir.description
    }

    /// Watches `dir` and every non-ignored directory below it; returns the directories now watched.
    @discardableResult
    public func watchTree(workspace ws: Int, dir: RelativePath) -> [RelativePath] {
        let scanner = Scanner(root: roots[ws])
        var parentRules = IgnoreRules()
        if !dir.bytes.isEmpty {
            if scanner.isIgnored(dir, isDirectory: true) { return [] }
            parentRules = scanner.rules(in: RelativePath(bytes: Array(dir.bytes[..<(dir.bytes.lastIndex(of: UInt8(ascii: "/")) ?? 0)])))
        }
        var added: [RelativePath] = []
        var stack = [(dir, parentRules)]
        while let (d, inherited) = stack.popLast() {
            let rules = d.bytes.isEmpty ? scanner.loadRules(IgnoreRules(), dir: d) : scanner.loadRules(inherited, dir: d)
            guard add(ws, d, rules: rules) else { continue }
            added.append(d)
            guard let handle = opendir(absolute(ws, d)) else { continue }
            while let entry = readdir(handle) {
                guard entry.pointee.d_type == UInt8(DT_DIR) || entry.pointee.d_type == UInt8(DT_UNKNOWN) else { continue }
                let name = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
                if name == [46] || name == [46, 46] { continue }
                let child = d.appending(name)
                var st = stat()
                guard lstat(absolute(ws, child), &st) == 0, st.st_mode & S_IFMT == S_IFDIR else { continue }
                if !rules.isIgnored(child, isDirectory: true) { stack.append((child, rules)) }
            }
            closedir(handle)
        }
        return added
    }

    func add(_ ws: Int, _ dir: RelativePath, rules: IgnoreRules) -> Bool {
        let wd = inotify_add_watch(fd, absolute(ws, dir), Self.dirMask)
        if wd < 0 {
            if errno == ENOSPC {
                // Warn once per episode, not once per directory that didn't fit or per retry.
                if !warnedLimit {
                    warnedLimit = true
                    onLimit?("inotify watch limit reached (fs.inotify.max_user_watches = \(Self.systemWatchLimit)) at \(absolute(ws, dir)); unwatched subtrees are covered by a periodic scan instead. Raise it: sudo sysctl fs.inotify.max_user_watches=524288")
                }
                if !degraded.contains(where: { $0.workspace == ws && $0.dir == dir }) { degraded.append((ws, dir)) }
            }
            return false
        }
        // A directory replaced under the same name gets the same wd from the kernel only if it is the same inode.
        watches[wd] = Watch(workspace: ws, dir: dir, rules: rules)
        byDir[ws, default: [:]][dir] = wd
        return true
    }

    /// Forgets the watches of `dir` and below (the kernel drops them itself when a directory is deleted).
    func unwatchTree(_ ws: Int, _ dir: RelativePath) {
        guard let dirs = byDir[ws] else { return }
        for (d, wd) in dirs where d.isWithin(dir) {
            inotify_rm_watch(fd, wd)
            watches[wd] = nil
            byDir[ws]?[d] = nil
        }
    }

    /// Retries watching degraded subtrees (after the limit was raised or watches were freed).
    public func retryDegraded() {
        let pending = degraded
        degraded = []
        for d in pending { watchTree(workspace: d.workspace, dir: d.dir) }
        if degraded.isEmpty { warnedLimit = false }
    }

    /// Reads every event available now.
    public func read() -> [WatchEvent] {
        var events: [WatchEvent] = []
        var moves: [UInt32: (ws: Int, path: RelativePath, isDir: Bool)] = [:]
        let size = 64 * 1024
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 8)
        defer { buffer.deallocate() }
        while true {
            let n = Glibc.read(fd, buffer.baseAddress, size)
            if n <= 0 { break }
            var offset = 0
            while offset + 16 <= n {
                let base = buffer.baseAddress! + offset
                let wd = base.loadUnaligned(as: Int32.self)
                let mask = base.loadUnaligned(fromByteOffset: 4, as: UInt32.self)
                let cookie = base.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
                let len = Int(base.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
                let nameBytes = UnsafeRawBufferPointer(start: base + 16, count: len)
                let name = Array(nameBytes.prefix { $0 != 0 })
                offset += 16 + len
                handle(wd: wd, mask: mask, cookie: cookie, name: name, moves: &moves, into: &events)
            }
        }
        // Halves of a move without their pair: moved out of, or into, the watched trees.
        for (_, m) in moves {
            events.append(m.isDir ? .directoryRemoved(workspace: m.ws, path: m.path) : .removed(workspace: m.ws, path: m.path))
            if m.isDir { unwatchTree(m.ws, m.path) }
        }
        return events
    }

    func handle(wd: Int32, mask: UInt32, cookie: UInt32, name: [UInt8],
                moves: inout [UInt32: (ws: Int, path: RelativePath, isDir: Bool)], into events: inout [WatchEvent]) {
        if mask & UInt32(IN_Q_OVERFLOW) != 0 {
            overflows += 1
            events.append(.rescan(workspace: nil))
            return
        }
        guard let w = watches[wd] else { return }
        if mask & UInt32(IN_IGNORED) != 0 {
            watches[wd] = nil
            if byDir[w.workspace]?[w.dir] == wd { byDir[w.workspace]?[w.dir] = nil }
            return
        }
        if mask & UInt32(IN_DELETE_SELF | IN_MOVE_SELF) != 0 {
            if w.dir.bytes.isEmpty { events.append(.rescan(workspace: w.workspace)) }
            return
        }
        guard !name.isEmpty else { return }
        let path = w.dir.appending(name)
        let isDir = mask & UInt32(IN_ISDIR) != 0
        if name == Array(IgnoreRules.fileName.utf8) && !isDir {
            events.append(.rescan(workspace: w.workspace))
        }
        if w.rules.isIgnored(path, isDirectory: isDir) { return }
        if isDir {
            if mask & UInt32(IN_CREATE) != 0 {
                watchTree(workspace: w.workspace, dir: path)
                events.append(.directoryAdded(workspace: w.workspace, path: path))
            } else if mask & UInt32(IN_MOVED_FROM) != 0 {
                moves[cookie] = (w.workspace, path, true)
            } else if mask & UInt32(IN_MOVED_TO) != 0 {
                if let from = moves.removeValue(forKey: cookie) {
                    // A rename inside the trees: the old subtree is gone, the new one must be scanned.
                    unwatchTree(from.ws, from.path)
                    events.append(.directoryRemoved(workspace: from.ws, path: from.path))
                }
                watchTree(workspace: w.workspace, dir: path)
                events.append(.directoryAdded(workspace: w.workspace, path: path))
            } else if mask & UInt32(IN_DELETE) != 0 {
                unwatchTree(w.workspace, path)
                events.append(.directoryRemoved(workspace: w.workspace, path: path))
            }
            return
        }
        if mask & UInt32(IN_MOVED_FROM) != 0 {
            moves[cookie] = (w.workspace, path, false)
        } else if mask & UInt32(IN_MOVED_TO) != 0 {
            if let from = moves.removeValue(forKey: cookie) { events.append(.removed(workspace: from.ws, path: from.path)) }
            events.append(.changed(workspace: w.workspace, path: path))
        } else if mask & UInt32(IN_DELETE) != 0 {
            events.append(.removed(workspace: w.workspace, path: path))
        } else {
            events.append(.changed(workspace: w.workspace, path: path))
        }
    }
}
