import Foundation
import Testing

/// A plain `swift test` (no test cluster) must skip, not crash in, the database suites.
@Suite("Test layout")
struct TestLayoutTests {
    @Test("every suite of the integration target carries .needsDatabase")
    func databaseSuitesAreMarked() throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("TanhuiIntegrationTests")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".swift") }
        #expect(files.count > 10, "found \(files.count) files in \(folder.path)")
        for file in files {
            let text = try String(contentsOf: folder.appendingPathComponent(file), encoding: .utf8)
            for line in text.split(separator: "\n") where line.trimmingCharacters(in: .whitespaces).hasPrefix("@Suite") {
                #expect(line.contains(".needsDatabase"), "\(file): \(line)")
            }
        }
    }
}
