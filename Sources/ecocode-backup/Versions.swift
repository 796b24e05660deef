import AWS
import ArgumentParser
import Backup
import FoundationEssentials
import Glibc
import Journal

struct Versions: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The history of one file, newest first: time, size, version id, delete markers.")

    @Argument(help: "The file, relative to the workspace.") var path: String
    @OptionGroup var selection: WorkspaceSelection
    @Flag(help: "Machine-readable output.") var json = false
    @OptionGroup var settings: SettingsOptions

    func run() throws {
        let runtime = try Runtime(options: settings)
        let ws = try selection.resolve(runtime)
        var rel = path
        while rel.hasPrefix("./") { rel.removeFirst(2) }
        let key = ws.prefix + rel
        let entries: [ObjectVersion]
        do { entries = try runtime.store.versions(prefix: key).filter { Array($0.key.utf8) == Array(key.utf8) } } catch {
            throw Runtime.fail("cannot list versions of \(key): \(error)", Exit.unreachable)
        }
        if json {
            let rows: [JSONValue] = entries.map {
                ["last_modified": .string(AWSTime.iso8601($0.lastModified)), "size": .int($0.size), "version_id": .string($0.versionId),
                 "delete_marker": .bool($0.isDeleteMarker), "latest": .bool($0.isLatest)]
            }
            print(JSONValue.object(["path": .string(rel), "key": .string(key), "versions": .array(rows)]).rendered)
            return
        }
        guard !entries.isEmpty else { throw Runtime.fail("no versions of \(rel) in \(runtime.store.destination) under \(ws.prefix)", Exit.notDurable) }
        for e in entries {
            let what = e.isDeleteMarker ? "deleted".leftPad(12) : "\(e.size)".leftPad(12)
            print("\(AWSTime.iso8601(e.lastModified))  \(what)  \(e.versionId)\(e.isLatest ? "  (latest)" : "")")
        }
    }
}
