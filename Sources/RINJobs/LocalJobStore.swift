// The local files implementation of `JobStorage` (JobStorage.swift). Layout under the state directory:
//
//   jobs/<id>/job.json        the job record (JobRecord), replaced atomically on every change
//   jobs/<id>/image-<k>.<ext> final images, written before the record that says "succeeded"
//   jobs/<id>/preview.<ext>   the latest preview (not fsynced: a restart discards it anyway)
//   jobs/<id>/job.json.corrupt a record that could not be read, moved aside at start
//   tombstones.json           ids of deleted and expired jobs, so readers can tell 410 from 404
//
// Every file is written to a temporary name, fsynced, renamed over the old one, and the directory is
// fsynced: after a crash a file is either the old version or the new one, never half of each.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Logging
import RINDiffusion

/// `write(2)`, under a name that `LocalJobStore.write(_:)` does not shadow.
private func posixWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    write(fd, buffer, count)
}

/// `JobStorage` on a local file system: the state directory. Holds no state of its own beyond
/// paths: callers order the writes of one job (see `JobEntry.writeLock`).
struct LocalJobStore: JobStorage {
    let root: URL
    let fileExtension: String

    var jobsDirectory: URL { root.appendingPathComponent("jobs", isDirectory: true) }
    var tombstonesFile: URL { root.appendingPathComponent("tombstones.json") }

    func directory(of id: JobID) -> URL {
        jobsDirectory.appendingPathComponent(id.rawValue, isDirectory: true)
    }
    func recordFile(of id: JobID) -> URL { directory(of: id).appendingPathComponent("job.json") }
    func imageFile(of id: JobID, index: Int) -> URL {
        directory(of: id).appendingPathComponent("image-\(index).\(fileExtension)")
    }
    func previewFile(of id: JobID) -> URL {
        directory(of: id).appendingPathComponent("preview.\(fileExtension)")
    }

    func prepare() throws(JobError) {
        try makeDirectory(jobsDirectory)
    }

    func makeDirectory(_ url: URL) throws(JobError) {
        if mkdir(url.path, 0o755) == 0 || errno == EEXIST { return }
        if errno == ENOENT {
            do {
                try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
                return
            } catch {
                throw .storage(path: url.path, message: "\(error)")
            }
        }
        throw Self.error(path: url.path)
    }

    /// Writes 64 KiB (no fsync) to a probe file and removes it.
    func probeWritable() -> Bool {
        let probe = root.appendingPathComponent(".write-probe")
        defer { unlink(probe.path) }
        do {
            try writeAtomically(Data(count: 64 * 1024), to: probe, durable: false)
            return true
        } catch {
            return false
        }
    }

    // MARK: Records

    static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        // Seconds as a float keep sub-second order, which re-queueing by creation time needs.
        encoder.dateEncodingStrategy = .secondsSince1970
        encoder.keyEncodingStrategy = .convertToSnakeCase
        return encoder
    }

    static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .secondsSince1970
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return decoder
    }

    func create(_ record: JobRecord) throws(JobError) {
        let directory = directory(of: record.id)
        try makeDirectory(directory)
        try fsyncDirectory(jobsDirectory)
        try write(record)
    }

    func write(_ record: JobRecord) throws(JobError) {
        let data: Data
        do {
            data = try Self.encoder().encode(record)
        } catch {
            throw .storage(path: recordFile(of: record.id).path, message: "cannot encode: \(error)")
        }
        try writeAtomically(data, to: recordFile(of: record.id))
    }

    func writeImage(_ data: Data, of id: JobID, index: Int) throws(JobError) {
        try writeAtomically(data, to: imageFile(of: id, index: index))
    }

    func readImage(of id: JobID, index: Int) throws(JobError) -> Data {
        try read(imageFile(of: id, index: index))
    }

    func writePreview(_ data: Data, of id: JobID, durable: Bool) throws(JobError) {
        try writeAtomically(data, to: previewFile(of: id), durable: durable)
    }

    func readPreview(of id: JobID) throws(JobError) -> Data {
        try read(previewFile(of: id))
    }

    func remove(_ id: JobID) throws(JobError) {
        let directory = directory(of: id)
        guard FileManager.default.fileExists(atPath: directory.path) else { return }
        do {
            try FileManager.default.removeItem(at: directory)
        } catch {
            throw .storage(path: directory.path, message: "\(error)")
        }
        try fsyncDirectory(jobsDirectory)
    }

    /// A directory without `job.json` (a crash between mkdir and the first write, or a removal cut
    /// short) is removed, so it is not met again at every start; one holding a record moved aside
    /// as corrupt is kept for the operator (and logged).
    private func removeOrphan(_ id: JobID, logger: Logger) {
        let corrupt = recordFile(of: id).appendingPathExtension("corrupt")
        if FileManager.default.fileExists(atPath: corrupt.path) {
            logger.warning("job directory with only a corrupt record; kept for inspection", metadata: ["job": "\(id)"])
            return
        }
        do {
            try remove(id)
            logger.warning("job directory without a record removed", metadata: ["job": "\(id)"])
        } catch {
            logger.error("cannot remove a job directory without a record", metadata: ["job": "\(id)", "error": "\(error)"])
        }
    }

    func loadAll(logger: Logger) throws(JobError) -> [JobRecord] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: jobsDirectory.path)
        } catch {
            throw .storage(path: jobsDirectory.path, message: "\(error)")
        }
        var records: [JobRecord] = []
        for name in names.sorted() {
            guard let id = JobID(name) else {
                logger.warning("ignoring unexpected entry in the jobs directory", metadata: ["name": "\(name)"])
                continue
            }
            let file = recordFile(of: id)
            guard let data = FileManager.default.contents(atPath: file.path) else {
                removeOrphan(id, logger: logger)
                continue
            }
            do {
                let record = try Self.decoder().decode(JobRecord.self, from: data)
                guard record.id == id, record.formatVersion == 1 else {
                    throw DecodingError.dataCorrupted(.init(
                        codingPath: [], debugDescription: "id \(record.id) or format \(record.formatVersion) does not match"))
                }
                records.append(record)
            } catch {
                let aside = file.appendingPathExtension("corrupt")
                logger.error("corrupt job record moved aside", metadata: [
                    "job": "\(id)", "file": "\(aside.path)", "error": "\(error)",
                ])
                _ = try? FileManager.default.removeItem(at: aside)
                if rename(file.path, aside.path) != 0 {
                    logger.error("cannot move corrupt record aside", metadata: ["errno": "\(errno)"])
                }
            }
        }
        return records
    }

    // MARK: Tombstones

    func loadTombstones(logger: Logger) -> [Tombstone] {
        guard let data = FileManager.default.contents(atPath: tombstonesFile.path) else { return [] }
        do {
            return try Self.decoder().decode([Tombstone].self, from: data)
        } catch {
            // Losing tombstones only turns some 410s into 404s: log and go on.
            logger.error("unreadable tombstones file ignored", metadata: ["error": "\(error)"])
            return []
        }
    }

    func writeTombstones(_ tombstones: [Tombstone]) throws(JobError) {
        let data: Data
        do {
            data = try Self.encoder().encode(tombstones)
        } catch {
            throw .storage(path: tombstonesFile.path, message: "cannot encode: \(error)")
        }
        try writeAtomically(data, to: tombstonesFile)
    }

    // MARK: Files

    /// Writes `data` to a temporary file beside `url`, fsyncs it, renames it over `url`, fsyncs the
    /// directory (POSIX rename is atomic; the directory fsync makes the rename itself durable).
    /// `durable: false` skips both fsyncs: still never half a file for readers, but a crash may
    /// lose it. For previews, which a restart discards anyway and which can come every step.
    func writeAtomically(_ data: Data, to url: URL, durable: Bool = true) throws(JobError) {
        let directory = url.deletingLastPathComponent()
        let temporary = directory.appendingPathComponent(".\(url.lastPathComponent).tmp")
        let fd = open(temporary.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Self.error(path: temporary.path) }
        var failure: JobError?
        data.withUnsafeBytes { (buffer: UnsafeRawBufferPointer) in
            var offset = 0
            while offset < buffer.count {
                let written = posixWrite(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    failure = Self.error(path: temporary.path)
                    return
                }
                offset += written
            }
        }
        if failure == nil, durable, fsync(fd) != 0 { failure = Self.error(path: temporary.path) }
        if close(fd) != 0 && failure == nil { failure = Self.error(path: temporary.path) }
        if let failure {
            unlink(temporary.path)
            throw failure
        }
        guard rename(temporary.path, url.path) == 0 else {
            let error = Self.error(path: url.path)
            unlink(temporary.path)
            throw error
        }
        if durable { try fsyncDirectory(directory) }
    }

    func fsyncDirectory(_ url: URL) throws(JobError) {
        let fd = open(url.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw Self.error(path: url.path) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw Self.error(path: url.path) }
    }

    func read(_ url: URL) throws(JobError) -> Data {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw .storage(path: url.path, message: "missing or unreadable")
        }
        return data
    }

    /// The error for the current `errno`: `storageFull` when the file system is full.
    static func error(path: String) -> JobError {
        let code = errno
        let message = String(cString: strerror(code))
        return code == ENOSPC || code == EDQUOT ? .storageFull(path: path, message: message)
                                                : .storage(path: path, message: message)
    }
}
