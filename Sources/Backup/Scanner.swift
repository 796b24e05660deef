import FoundationEssentials
import Glibc
import Journal

/// One backup candidate found by a scan.
public struct ScannedFile: Sendable {
    public var path: RelativePath
    public var snapshot: FileSnapshot
}

/// Something a scan could not back up, with the reason (reported, never fatal).
public struct ScanProblem: Sendable, CustomStringConvertible {
    public var path: String
    public var reason: String
    public var description: String { "\(path): \(reason)" }
}

/// Walks a workspace without following symlinks, applying ignore rules as it descends.
public struct Scanner: Sendable {
    public let root: String

    public init(root: String) { self.root = root }

    public struct Result: Sendable {
        public var files: [ScannedFile] = []
        public var problems: [ScanProblem] = []
        public var directories = 0
    }

    public func scan() -> Result {
        var result = Result()
        walk(RelativePath(bytes: []), rules: loadRules(IgnoreRules(), dir: RelativePath(bytes: [])), into: &result)
        return result
    }

    /// Scans only the subtree `dir` (a directory that just appeared), with the rules in force there.
    public func scan(under dir: RelativePath) -> Result {
        var result = Result()
        guard !dir.bytes.isEmpty else { return scan() }
        if isIgnored(dir, isDirectory: true) { return result }
        walk(dir, rules: rules(in: dir), into: &result)
        return result
    }

    /// The rules in force inside `dir`: every `.ecocodeignore` from the root down to it.
    public func rules(in dir: RelativePath) -> IgnoreRules {
        var rules = loadRules(IgnoreRules(), dir: RelativePath(bytes: []))
        var prefix = RelativePath(bytes: [])
        for part in dir.bytes.split(separator: UInt8(ascii: "/")) {
            prefix = prefix.appending(Array(part))
            rules = loadRules(rules, dir: prefix)
        }
        return rules
    }

    public func absolute(_ rel: RelativePath) -> String {
        rel.bytes.isEmpty ? root : root + "/" + String(decoding: rel.bytes, as: UTF8.self)
    }

    /// The rules in force inside `dir`: the parent's plus `dir/.ecocodeignore`.
    public func loadRules(_ parent: IgnoreRules, dir: RelativePath) -> IgnoreRules {
        let file = absolute(dir.appending(Array(IgnoreRules.fileName.utf8)))
        guard let data = FileManager.default.contents(atPath: file) else { return parent }
        var rules = parent
        rules.add(contents: Array(data), base: dir)
        return rules
    }

    func walk(_ dir: RelativePath, rules: IgnoreRules, into result: inout Result) {
        let absDir = absolute(dir)
        guard let d = opendir(absDir) else {
            result.problems.append(ScanProblem(path: absDir, reason: "cannot read directory: \(String(cString: strerror(errno)))"))
            return
        }
        defer { closedir(d) }
        result.directories += 1
        var subdirs: [RelativePath] = []
        while let entry = readdir(d) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in Array(raw.prefix { $0 != 0 }) }
            if name == [UInt8(ascii: ".")] || name == [UInt8(ascii: "."), UInt8(ascii: ".")] { continue }
            let rel = dir.appending(name)
            guard rel.utf8String != nil else {
                result.problems.append(ScanProblem(path: absolute(rel), reason: "name is not valid UTF-8, so it cannot be an S3 key; rename it to back it up"))
                continue
            }
            var st = stat()
            guard fstatat(dirfd(d), name.map { CChar(bitPattern: $0) } + [0], &st, AT_SYMLINK_NOFOLLOW) == 0 else {
                if errno != ENOENT { result.problems.append(ScanProblem(path: absolute(rel), reason: String(cString: strerror(errno)))) }
                continue
            }
            let snap = FileSnapshot(st)
            if snap.isDirectory {
                if !rules.isIgnored(rel, isDirectory: true) { subdirs.append(rel) }
            } else if snap.isRegular || snap.isSymlink {
                if !rules.isIgnored(rel, isDirectory: false) { result.files.append(ScannedFile(path: rel, snapshot: snap)) }
            } else if !rules.isIgnored(rel, isDirectory: false) {
                result.problems.append(ScanProblem(path: absolute(rel), reason: "not a regular file or symlink (socket, FIFO or device): skipped"))
            }
        }
        for sub in subdirs { walk(sub, rules: loadRules(rules, dir: sub), into: &result) }
    }

    /// Whether `path` would be ignored, evaluating every `.ecocodeignore` on the way down.
    public func isIgnored(_ path: RelativePath, isDirectory: Bool) -> Bool {
        var rules = loadRules(IgnoreRules(), dir: RelativePath(bytes: []))
        var prefix = RelativePath(bytes: [])
        let parts = path.bytes.split(separator: UInt8(ascii: "/"))
        for (i, part) in parts.enumerated() {
            prefix = prefix.appending(Array(part))
            let last = i == parts.count - 1
            if rules.isIgnored(prefix, isDirectory: last ? isDirectory : true) { return true }
            if !last { rules = loadRules(rules, dir: prefix) }
        }
        return false
    }
}
