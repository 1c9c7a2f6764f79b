// DatabaseURL: what `rind serve --database URL` accepts, and the refusals (a password above all).
import RINCluster
import XCTest

final class DatabaseURLTests: XCTestCase {
    func testParsesTheParts() throws {
        let url = try DatabaseURL(parsing: "postgres://render@db.internal:6543/rind_jobs?sslmode=require")
        XCTAssertEqual(url, DatabaseURL(host: "db.internal", port: 6543, user: "render", database: "rind_jobs",
                                        tls: .require))
        XCTAssertEqual(url.description, "postgres://render@db.internal:6543/rind_jobs?sslmode=require")
    }

    func testDefaults() throws {
        let url = try DatabaseURL(parsing: "postgresql://rind@127.0.0.1/rind")
        XCTAssertEqual(url.port, 5432)
        XCTAssertEqual(url.tls, .prefer)
        XCTAssertEqual(url.description, "postgres://rind@127.0.0.1:5432/rind")
        let ipv6 = try DatabaseURL(parsing: "postgres://rind@[::1]:5433/jobs?sslmode=disable")
        XCTAssertEqual(ipv6.host, "::1")
        XCTAssertEqual(ipv6.tls, .disable)
        XCTAssertEqual(ipv6.description, "postgres://rind@[::1]:5433/jobs?sslmode=disable")
    }

    func testRefusesAPasswordInTheURL() {
        for string in ["postgres://rind:secret@db/rind", "postgres://rind:@db/rind",
                       "postgres://rind@db/rind?password=secret"] {
            XCTAssertThrowsError(try DatabaseURL(parsing: string), string) { error in
                let message = "\(error)"
                XCTAssertTrue(message.contains("password"), message)
                XCTAssertTrue(message.contains("--database-password-file"), message)
                XCTAssertFalse(message.contains("secret"), "the refusal must not echo the password: \(message)")
            }
        }
    }

    func testRefusesIncompleteOrUnknownURLs() {
        let cases: [(String, String)] = [
            ("mysql://rind@db/rind", "scheme"),
            ("postgres://db/rind", "no user"),
            ("postgres://rind@db", "no database"),
            ("postgres://rind@db/", "no database"),
            ("postgres://rind@db/a/b", "no database"),
            ("postgres://rind@db/rind?sslmode=verify-full", "sslmode"),
            ("postgres://rind@db/rind?application_name=x", "unknown database URL parameter"),
            ("postgres://rind@db:0/rind", "port"),
        ]
        for (string, expected) in cases {
            XCTAssertThrowsError(try DatabaseURL(parsing: string), string) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(string): \(error)")
            }
        }
    }
}
