import Foundation

/// The classes of one model as users name them: an id (the model's row, or the class's id in the
/// model's label space such as ImageNet-1k), a name, or a synonym, matched case-insensitively with
/// `_` read as a space. The one place where class text becomes a class row, used by the HTTP API
/// and the CLI alike (checkpoints/README.md, "Classes and label spaces").
public struct ClassCatalog: Sendable, Equatable {
    /// One class of the label space (or of the model, when it has no label space).
    public struct Label: Sendable, Equatable {
        /// The id users give (the label-space id, or the row for models without a label space).
        public let id: Int
        public let name: String?
        public let synonyms: [String]
        public init(id: Int, name: String?, synonyms: [String] = []) { self.id = id; self.name = name; self.synonyms = synonyms }
    }

    /// The model's name in messages.
    public let modelName: String
    /// `classes.label_space.name`, or nil: then ids are the model's rows.
    public let spaceName: String?
    /// The model's classes in row order.
    public let classes: [Label]
    /// Every label of the space (the table), by id; the model's own classes when there is no table.
    private let space: [Int: Label]
    private let rowOfId: [Int: Int]

    /// The catalog of `config`; `table` is the label space's table (`LabelTable.parse`), if any.
    public init(modelName: String, config: RINConfig, table: [Label]? = nil) {
        self.modelName = modelName
        let classes = config.classes
        let ids = classes.labelSpace?.ids ?? Array(0..<max(0, classes.count))
        var space: [Int: Label] = [:]
        for label in table ?? [] { space[label.id] = label }
        var own: [Label] = []
        for (row, id) in ids.enumerated() {
            let tabled = space[id]
            let name = classes.names?[row] ?? tabled?.name
            var synonyms = tabled?.synonyms ?? []
            if let name, !synonyms.contains(name) { synonyms.insert(name, at: 0) }
            let label = Label(id: id, name: name, synonyms: synonyms)
            own.append(label)
            space[id] = label
        }
        self.spaceName = classes.labelSpace?.name
        self.classes = own
        self.space = space
        self.rowOfId = Dictionary(uniqueKeysWithValues: ids.enumerated().map { ($1, $0) })
    }

    /// How the label space is called in messages: "ImageNet" for imagenet-1k.
    public var spaceTitle: String? {
        guard let spaceName else { return nil }
        return spaceName.lowercased().hasPrefix("imagenet") ? "ImageNet" : spaceName
    }

    /// The model row for a class given as an id, a name or a synonym.
    public func resolve(_ text: String) throws(ClassLookupError) -> Int {
        let raw = text.trimmingCharacters(in: .whitespaces)
        guard !classes.isEmpty else { throw .unconditional(model: modelName, text: raw) }
        if let id = Int(raw) {
            if let row = rowOfId[id] { return row }
            if let label = space[id], spaceName != nil {
                throw .notInModel(space: spaceTitle ?? "", id: id, name: label.name, model: modelName, count: classes.count)
            }
            if spaceName != nil {
                throw .unknownId(space: spaceTitle ?? "", id: id, model: modelName, count: classes.count)
            }
            throw .outOfRange(id: id, model: modelName, count: classes.count)
        }
        let key = Self.normalize(raw)
        let matches = space.values.filter { label in label.synonyms.contains { Self.normalize($0) == key } }
            .sorted { $0.id < $1.id }
        if matches.count > 1 {
            throw .ambiguous(text: raw, space: spaceTitle, candidates: matches.map { label in
                ClassLookupError.Candidate(id: label.id, name: label.name ?? "", synonyms: label.synonyms,
                                           inModel: rowOfId[label.id] != nil)
            })
        }
        if let label = matches.first {
            if let row = rowOfId[label.id] { return row }
            throw .notInModel(space: spaceTitle ?? "", id: label.id, name: label.name, model: modelName, count: classes.count)
        }
        throw .unknownName(text: raw, model: modelName, count: classes.count,
                           examples: classes.prefix(10).compactMap(\.name))
    }

    /// The label of model row `row`.
    public func label(row: Int) -> Label? { classes.indices.contains(row) ? classes[row] : nil }

    /// Lowercased, `_` as a space, runs of spaces as one.
    static func normalize(_ text: String) -> String {
        text.lowercased().replacingOccurrences(of: "_", with: " ")
            .split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }
}

/// Why a class given as text does not name one of the model's classes; `description` is the
/// one-line message users see (API `detail`, CLI error).
public enum ClassLookupError: Error, Equatable, CustomStringConvertible {
    public struct Candidate: Sendable, Equatable {
        public let id: Int, name: String, synonyms: [String], inModel: Bool
    }
    case unconditional(model: String, text: String)
    /// A row outside 0..<count of a model without a label space.
    case outOfRange(id: Int, model: String, count: Int)
    /// An id of the label space that the model was not trained on.
    case notInModel(space: String, id: Int, name: String?, model: String, count: Int)
    /// A number that is no id of the label space.
    case unknownId(space: String, id: Int, model: String, count: Int)
    case unknownName(text: String, model: String, count: Int, examples: [String])
    case ambiguous(text: String, space: String?, candidates: [Candidate])

    static let listHint = "the model's classes are listed by GET /models"

    public var description: String {
        switch self {
        case let .unconditional(model, text):
            return "model '\(model)' is unconditional and takes no class (got '\(text)')"
        case let .outOfRange(id, model, count):
            return "class \(id) is out of range: model '\(model)' has classes 0...\(count - 1)"
        case let .notInModel(space, id, name, model, count):
            let named = name.map { " (\($0))" } ?? ""
            return "\(space) class \(id)\(named) is not one of the \(count) classes of model '\(model)'; \(Self.listHint)"
        case let .unknownId(space, id, model, count):
            return "\(space) has no class \(id); model '\(model)' has \(count) classes; \(Self.listHint)"
        case let .unknownName(text, model, count, examples):
            let some = examples.isEmpty ? "" : " (for example \(examples.prefix(5).joined(separator: ", ")))"
            return "unknown class '\(text)': model '\(model)' takes one of its \(count) class ids or names\(some); \(Self.listHint)"
        case let .ambiguous(text, space, candidates):
            let list = candidates.map { candidate in
                let words = candidate.synonyms.filter { $0 != candidate.name }
                let detail = words.isEmpty ? "" : " [\(words.joined(separator: ", "))]"
                let model = candidate.inModel ? "" : ", not in this model"
                return "\(candidate.id) (\(candidate.name)\(detail)\(model))"
            }.joined(separator: " or ")
            return "class '\(text)' is ambiguous\(space.map { " in \($0)" } ?? ""): it names \(list); give the id"
        }
    }
}

/// The label-space table of a checkpoint (`classes.label_space.table`): tab-separated, a header
/// line, then `id`, `wnid`, `name`, `synonyms` (comma-separated) per line, as
/// `imagenet-1k-classes.tsv`.
public enum LabelTable {
    public static func load(path: String) throws(CheckpointError) -> [ClassCatalog.Label] {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw .missingFile(path: path)
        }
        return try parse(text, path: path)
    }

    public static func parse(_ text: String, path: String) throws(CheckpointError) -> [ClassCatalog.Label] {
        var labels: [ClassCatalog.Label] = []
        var seen = Set<Int>()
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if number == 0 || line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard fields.count >= 3, let id = Int(fields[0]), id >= 0 else {
                throw .invalidConfig(path: path, key: "line \(number + 1)",
                                     message: "expected 'id<TAB>wnid<TAB>name<TAB>synonyms' with an id >= 0")
            }
            guard seen.insert(id).inserted else {
                throw .invalidConfig(path: path, key: "line \(number + 1)", message: "id \(id) appears twice")
            }
            let name = fields[2].trimmingCharacters(in: .whitespaces)
            var synonyms = fields.count > 3
                ? fields[3].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
                : []
            if !name.isEmpty && !synonyms.contains(name) { synonyms.insert(name, at: 0) }
            labels.append(.init(id: id, name: name.isEmpty ? nil : name, synonyms: synonyms))
        }
        return labels
    }
}
