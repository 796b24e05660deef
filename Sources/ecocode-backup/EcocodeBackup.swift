import ArgumentParser

@main
struct EcocodeBackup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ecocode-backup",
        abstract: "Continuously back up code workspaces to a versioned, KMS-encrypted S3 bucket.",
        version: "0.1.0",
        subcommands: []
    )
}
