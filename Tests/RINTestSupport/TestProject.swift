// Where the repository is, for tests that read its scripts and fixtures.
import Foundation

/// The repository's own folders, found from this file's path (no test target bundles resources).
public enum TestProject {
    /// The repository root (Tests/RINTestSupport/ sits two levels below it).
    public static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
}
