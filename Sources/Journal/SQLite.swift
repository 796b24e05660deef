import CSQLite
import FoundationEssentials
import Glibc

/// A thin typed wrapper over one libsqlite3 connection. Not thread-safe by itself: `Journal` serializes use.
public final class SQLiteDatabase {
    let handle: OpaquePointer
    public let path: String

    /// Opens (creating if needed) with WAL and a busy timeout, so readers like `status` never block writers.
    public init(path: String, readOnly: Bool = false) throws {
        var db: OpaquePointer?
        let flags = readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
        let rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, nil)
        guard rc == SQLITE_OK, let db else {
            let msg = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close(db)
            throw JournalError.open(path: path, message: msg)
        }
        handle = db
        self.path = path
        sqlite3_busy_timeout(db, 5000)
    }

    deinit { sqlite3_close_v2(handle) }

    var errorMessage: String { String(cString: sqlite3_errmsg(handle)) }

    public func execute(_ sql: String) throws {
        var err: UnsafeMutablePointer<CChar>?
        guard sqlite3_exec(handle, sql, nil, nil, &err) == SQLITE_OK else {
            let msg = err.map { String(cString: $0) } ?? errorMessage
            sqlite3_free(err)
            throw JournalError.sql(path: path, message: msg)
        }
    }

    public func prepare(_ sql: String) throws -> Statement {
        var stmt: OpaquePointer?
        guard sqlite3_prepare_v2(handle, sql, -1, &stmt, nil) == SQLITE_OK, let stmt else {
            throw JournalError.sql(path: path, message: "\(errorMessage) in: \(sql)")
        }
        return Statement(stmt: stmt, db: self)
    }

    /// Runs `sql` with `values` bound, stepping to completion; returns rows through `row`.
    public func run(_ sql: String, _ values: [SQLValue] = [], row: ((Statement) throws -> Void)? = nil) throws {
        let s = try prepare(sql)
        try s.bind(values)
        while try s.step() { try row?(s) }
    }

    public func transaction<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let v = try body()
            try execute("COMMIT")
            return v
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    public var changes: Int { Int(sqlite3_changes(handle)) }
    public var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle) }
}

public enum SQLValue {
    case null
    case int(Int64)
    case double(Double)
    case text(String)
    case blob([UInt8])
}

public final class Statement {
    let stmt: OpaquePointer
    let db: SQLiteDatabase

    init(stmt: OpaquePointer, db: SQLiteDatabase) {
        self.stmt = stmt
        self.db = db
    }

    deinit { sqlite3_finalize(stmt) }

    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    func bind(_ values: [SQLValue]) throws {
        sqlite3_reset(stmt)
        sqlite3_clear_bindings(stmt)
        for (i, v) in values.enumerated() {
            let idx = Int32(i + 1)
            let rc: Int32
            switch v {
            case .null: rc = sqlite3_bind_null(stmt, idx)
            case .int(let x): rc = sqlite3_bind_int64(stmt, idx, x)
            case .double(let x): rc = sqlite3_bind_double(stmt, idx, x)
            case .text(let s): rc = sqlite3_bind_text(stmt, idx, s, -1, Self.transient)
            case .blob(let b): rc = b.withUnsafeBytes { sqlite3_bind_blob(stmt, idx, $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32(b.count), Self.transient) }
            }
            guard rc == SQLITE_OK else { throw JournalError.sql(path: db.path, message: db.errorMessage) }
        }
    }

    /// True while a row is available.
    func step() throws -> Bool {
        switch sqlite3_step(stmt) {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        case let rc:
            let msg = db.errorMessage
            if rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB { throw JournalError.corrupt(path: db.path, message: msg) }
            if rc == SQLITE_FULL || rc == SQLITE_IOERR { throw JournalError.diskFull(path: db.path, message: msg) }
            throw JournalError.sql(path: db.path, message: msg)
        }
    }

    public func int(_ i: Int32) -> Int64 { sqlite3_column_int64(stmt, i) }
    public func double(_ i: Int32) -> Double { sqlite3_column_double(stmt, i) }
    public func isNull(_ i: Int32) -> Bool { sqlite3_column_type(stmt, i) == SQLITE_NULL }
    public func text(_ i: Int32) -> String? {
        guard let p = sqlite3_column_text(stmt, i) else { return nil }
        return String(cString: p)
    }
    public func blob(_ i: Int32) -> [UInt8] {
        let n = Int(sqlite3_column_bytes(stmt, i))
        guard n > 0, let p = sqlite3_column_blob(stmt, i) else { return [] }
        return Array(UnsafeRawBufferPointer(start: p, count: n))
    }
}

public enum JournalError: Error, CustomStringConvertible {
    case open(path: String, message: String)
    case corrupt(path: String, message: String)
    case diskFull(path: String, message: String)
    case sql(path: String, message: String)
    case newerSchema(path: String, version: Int)
    case permissions(path: String, message: String)

    public var description: String {
        switch self {
        case .open(let p, let m): return "cannot open the journal \(p): \(m)"
        case .corrupt(let p, let m):
            return "the journal \(p) is corrupt (\(m)); run again with --rebuild-journal to rebuild it from a rescan (nothing in the backup is lost)"
        case .diskFull(let p, let m): return "cannot write the journal \(p): \(m) — free some disk space and run again"
        case .sql(let p, let m): return "journal \(p): \(m)"
        case .newerSchema(let p, let v):
            return "the journal \(p) has schema version \(v), newer than this ecocode-backup understands; upgrade ecocode-backup"
        case .permissions(let p, let m): return "\(p): \(m)"
        }
    }
}
