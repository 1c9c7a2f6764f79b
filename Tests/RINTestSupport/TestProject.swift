// Where the repository is, for tests that read its scripts and fixtures.
import Foundation

/// The repository's own folders, found from this file's path (no test target bundles resources).
public enum TestProject {
    /// The repository root (Tests/RINTestSupport/ sits two levels below it).
    public static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Tests/Fixtures: the checkpoints and parity records the tests share (its README says how each
    /// was made).
    public static let fixtures = root.appendingPathComponent("Tests/Fixtures")

    /// The tiny checkpoint (8x8 RGB, 3 classes + null, v-pred, 4 steps by default): the model of the
    /// job-layer and HTTP tests.
    public static let tinyCheckpoint = fixtures.appendingPathComponent("checkpoints/tiny")
}
