import AWS
import FoundationEssentials
import Glibc
import Journal

/// The parts of `lstat` that tell whether a file changed.
public struct FileSnapshot: Sendable, Equatable {
    public var size: Int64
    public var mtimeNs: Int64
    public var ctimeNs: Int64
    public var inode: UInt64
    public var mode: UInt32

    public var isRegular: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFREG) }
    public var isSymlink: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFLNK) }
    public var isDirectory: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFDIR) }

    init(_ st: stat) {
        size = Int64(st.st_size)
        mtimeNs = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        ctimeNs = Int64(st.st_ctim.tv_sec) * 1_000_000_000 + Int64(st.st_ctim.tv_nsec)
        inode = UInt64(st.st_ino)
        mode = UInt32(st.st_mode)
    }

    /// nil when the path does not exist; throws for other errors (permissions, I/O).
    public static func lstat(_ path: String) throws -> FileSnapshot? {
        var st = stat()
        if Glibc.lstat(path, &st) == 0 { return FileSnapshot(st) }
        if errno == ENOENT || errno == ENOTDIR { return nil }
        throw FileError(path: path, errno: errno)
    }

    /// Same content state as the journal's record (size, times, inode, mode).
    public func matches(_ r: FileRecord) -> Bool {
        size == r.size && mtimeNs == r.mtimeNs && ctimeNs == r.ctimeNs && inode == r.inode && mode == r.mode
    }
}

public struct FileError: Error, CustomStringConvertible {
    public var path: String
    public var errno: Int32
    public var description: String { "\(path): \(String(cString: strerror(errno)))" }
}

/// Multipart part size: at least 8 MiB, and large enough that 10,000 parts cover the file (in whole MiB).
public enum PartSizing {
    public static let singlePutLimit: Int64 = 8 << 20
    public static func partSize(for size: Int64) -> Int64 {
        let mib: Int64 = 1 << 20
        let needed = (size + 9_999) / 10_000
        return max(8 * mib, (needed + mib - 1) / mib * mib)
    }
}

/// Reads a file once to compute its SHA-256. The file is re-checked after the read: if it changed
/// meanwhile, the read does not count. Part hashes are computed later, by the upload workers, in parallel.
public enum FileReader {
    public static func read(absolutePath: String, expected: FileSnapshot) throws -> SourceFile {
        if expected.isSymlink {
            var buf = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
            let n = readlink(absolutePath, &buf, buf.count)
            guard n >= 0 else { throw FileError(path: absolutePath, errno: errno) }
            let target = Array(buf[0..<n])
            guard try FileSnapshot.lstat(absolutePath) == expected else { throw StoreError.changedWhileReading(path: absolutePath) }
            return SourceFile(absolutePath: absolutePath, snapshot: expected, sha256: SHA256.hash(target), partSize: 0,
                              symlinkTarget: target)
        }
        let fd = open(absolutePath, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw FileError(path: absolutePath, errno: errno) }
        defer { close(fd) }
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        var before = stat()
        fstat(fd, &before)
        guard FileSnapshot(before) == expected else { throw StoreError.changedWhileReading(path: absolutePath) }

        let hashed = Result { try FileHashing.sha256(fd: fd, length: expected.size, name: absolutePath) }
        // A short read after the file changed is a change, not an error; an I/O error on a still file is one.
        var after = stat()
        fstat(fd, &after)
        guard FileSnapshot(after) == expected, try FileSnapshot.lstat(absolutePath) == expected else {
            throw StoreError.changedWhileReading(path: absolutePath)
        }
        let hash = try hashed.get()
        let partSize = expected.size > PartSizing.singlePutLimit ? PartSizing.partSize(for: expected.size) : 0
        return SourceFile(absolutePath: absolutePath, snapshot: expected, sha256: hash, partSize: partSize,
                          symlinkTarget: nil)
    }
}
