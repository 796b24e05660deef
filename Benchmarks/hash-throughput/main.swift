import Backup
import Foundation

// Prints SHA-256 throughput of FileReader (the pipeline's one read per file) over a file, warm cache.
let args = CommandLine.arguments
guard args.count == 2, let snap = try FileSnapshot.lstat(args[1]) else {
    print("usage: hash-throughput FILE")
    exit(2)
}
_ = try FileReader.read(absolutePath: args[1], expected: snap)  // warm the page cache
var best = Double.infinity
for _ in 0..<5 {
    let start = Date()
    _ = try FileReader.read(absolutePath: args[1], expected: snap)
    best = min(best, Date().timeIntervalSince(start))
}
print(String(format: "FileReader SHA-256: %.2f GiB/s over %.0f MiB (best of 5, warm cache)",
             Double(snap.size) / best / 1_073_741_824, Double(snap.size) / 1_048_576))
