import ArgumentParser

@main
struct EcocodeBackup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ecocode-backup",
        abstract: "Back up code workspaces to a versioned, KMS-encrypted S3 bucket (or a local versioned store).",
        discussion: """
        Settings come from flags, then the environment, then ~/.config/ecocode/backup.env \
        (ECOCODE_AWS_WORKSPACE_BUCKET, ECOCODE_AWS_REGION_NAME, ECOCODE_AWS_PROFILE_NAME, ECOCODE_AWS_USE_S3_SYNC, \
        ECOCODE_AWS_KMS_KEY_ID, ECOCODE_BACKUP_PREFIX, ECOCODE_BACKUP_STATE_DIR). See README.md.

        Exit codes: 0 done; 1 some changes are not yet durable; 2 bad usage or settings; \
        3 the destination cannot be reached (changes stay queued); 4 journal error; 5 the destination is not usable \
        (bucket without versioning, access denied, no credentials); 6 another agent already runs for the state directory.
        """,
        version: "0.1.0",
        subcommands: [Sync.self, AgentCommand.self, Restore.self, Versions.self, Status.self, Doctor.self]
    )
}
