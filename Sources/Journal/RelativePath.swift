/// A path relative to a workspace root, kept as the file system's bytes. Equality and hashing are
/// byte-wise: Swift's `String` treats NFC and NFD spellings as equal, but they are different files.
public struct RelativePath: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) { self.bytes = bytes }
    public init(_ string: String) { self.bytes = Array(string.utf8) }

    /// The path as UTF-8 text, or nil when the name is not valid UTF-8 (it can't become an S3 key).
    public var utf8String: String? { String(validating: bytes, as: UTF8.self) }

    public var description: String { String(decoding: bytes, as: UTF8.self) }

    public static func < (a: RelativePath, b: RelativePath) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }

    public func appending(_ name: [UInt8]) -> RelativePath {
        RelativePath(bytes: bytes.isEmpty ? name : bytes + [UInt8(ascii: "/")] + name)
    }

    /// True for `dir` itself and everything below it.
    public func isWithin(_ dir: RelativePath) -> Bool {
        bytes == dir.bytes || (bytes.count > dir.bytes.count && bytes.starts(with: dir.bytes) && bytes[dir.bytes.count] == UInt8(ascii: "/"))
    }
}
