// What a user reads about the commands matches what the commands do (issue 13): the README's flag tables list
// exactly the flags each command's --help shows, and the shell completion scripts the README tells people to
// install complete file names, directories and the --priority presets, not only flag names.

import Foundation
import Testing

/// The package root: Tests/CommandTests/<this file> → three levels up.
private let packageRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The `--flags` in the first column of the table rows of the README's `### title` section.
private func readmeTableFlags(section title: String) throws -> Set<String> {
    let readme = try String(contentsOf: packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
    var flags: Set<String> = []
    var inSection = false
    for line in readme.split(separator: "\n", omittingEmptySubsequences: false) {
        if line.hasPrefix("#") {
            inSection = line == "### \(title)"
            continue
        }
        guard inSection, line.hasPrefix("| `") else { continue }
        // The first cell ends at the first '|' not escaped as '\|' (as in `none\|optional\|required`).
        var cell = ""
        var previous: Character = " "
        for character in line.dropFirst() {
            if character == "|" && previous != "\\" { break }
            cell.append(character)
            previous = character
        }
        flags.formUnion(backtickedFlags(in: cell))
    }
    return flags
}

/// `--name` at the start of each backticked span of `text`.
private func backtickedFlags(in text: String) -> [String] {
    text.split(separator: "`", omittingEmptySubsequences: false).enumerated()
        .filter { $0.offset % 2 == 1 && $0.element.hasPrefix("--") }
        .map { String($0.element.prefix { $0.isLetter || $0.isNumber || $0 == "-" }) }
}

/// The long flags swift-argument-parser lists under OPTIONS in `--help` (`  --name`, `  -h, --help`).
private func helpFlags(_ tool: String, _ arguments: [String] = []) async throws -> Set<String> {
    let result = try await runTool(tool, arguments + ["--help"])
    #expect(result.status == 0, "\(result)")
    var flags: Set<String> = []
    for line in result.output.split(separator: "\n") where line.hasPrefix("  -") {
        let words = line.split(separator: " ").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: ",")) }
        if let long = words.first(where: { $0.hasPrefix("--") }) { flags.insert(long) }
    }
    return flags
}

@Suite("Documented options: README flag tables and shell completion", .timeLimit(.minutes(5)))
struct DocumentedOptionsTests {
    @Test(
        "The README's flag table of each command lists exactly the flags its --help shows",
        arguments: [
            ("tls-server", [[String]()]), ("tls-client", [[]]), ("tls-certs", [[], ["ca"], ["issue"], ["ticket-key"]]),
        ])
    func readmeTablesMatchHelp(tool: String, invocations: [[String]]) async throws {
        var help: Set<String> = []
        for arguments in invocations { help.formUnion(try await helpFlags(tool, arguments)) }
        let table = try readmeTableFlags(section: tool)
        #expect(help.count > 5, "--help of \(tool) was not read: \(help)")
        #expect(help.subtracting(table).sorted() == [], "in --help of \(tool) but not in the README's table")
        #expect(table.subtracting(help).sorted() == [], "in the README's table of \(tool) but not in --help")
    }

    @Test("The bash completion scripts complete file names, directories and the --priority presets")
    func bashCompletion() async throws {
        let folder = try TemporaryDirectory()
        try Data().write(to: folder.url.appendingPathComponent("ca.crt"))
        try FileManager.default.createDirectory(
            at: folder.url.appendingPathComponent("cadir"), withIntermediateDirectories: false)
        var scripts: [String: String] = [:]
        for tool in ["tls-client", "tls-server"] {
            let script = try await runTool(tool, ["--generate-completion-script", "bash"])
            #expect(script.status == 0, "\(script)")
            let path = folder.path("\(tool).bash")
            try script.stdout.write(to: URL(fileURLWithPath: path))
            scripts[tool] = path
        }
        // What bash's completion machinery does on TAB: COMP_* set, the function called with the command, the
        // word being completed and the one before it; COMPREPLY printed one per line.
        func complete(_ tool: String, _ words: [String]) async throws -> [String] {
            let quoted = words.map { "'\($0)'" }.joined(separator: " ")
            let program = """
                source '\(scripts[tool]!)'
                COMP_WORDS=(\(tool) \(quoted)); COMP_CWORD=\(words.count)
                COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}
                _\(tool) \(tool) "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
                printf '%s\\n' "${COMPREPLY[@]}"
                """
            let result = try await runTool("/bin/bash", ["-c", program], directory: folder.url)
            #expect(result.status == 0, "\(result)")
            return result.output.split(separator: "\n").map(String.init).sorted()
        }
        #expect(try await complete("tls-client", ["--cafile", "c"]).contains("ca.crt"))
        #expect(try await complete("tls-client", ["--capath", "c"]) == ["cadir"])
        #expect(try await complete("tls-server", ["--crlfile", "c"]).contains("ca.crt"))
        #expect(try await complete("tls-client", ["--priority", ""]) == ["intermediate", "modern"])
        #expect(try await complete("tls-server", ["--priority", "m"]) == ["modern"])
        #expect(try await complete("tls-client", ["--show"]) == ["--showcerts"])
    }
}
