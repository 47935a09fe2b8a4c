import ArgumentParser
import FERImage

#if canImport(Glibc)
import Glibc
#endif

/// A file an option names for writing at the end of a run (`eval --plot`, `--errors`): checked before the
/// run starts, so that a path that cannot be written is a usage error at once instead of a report lost
/// after the whole dataset was classified.
enum OutputFile {
    /// Throws a usage error when `path` names a directory, a file this process may not write, or sits in a
    /// folder that does not exist or may not be written.
    static func checkWritable(_ path: String, option: String) throws {
        let bytes = FileNames.commandLineBytes(for: [path])[0]
        let shown = FileNames.display(bytes)
        var info = stat()
        if FileNames.withCString(bytes, { stat($0, &info) }) == 0 {
            guard (info.st_mode & S_IFMT) != S_IFDIR else { throw ValidationError("\(option) \(shown): is a directory") }
            guard FileNames.withCString(bytes, { access($0, W_OK) }) == 0 else {
                throw ValidationError("\(option) \(shown): cannot be written (\(String(cString: strerror(errno))))")
            }
            return
        }
        let slash = bytes.lastIndex(of: UInt8(ascii: "/"))
        let folder = slash.map { $0 == 0 ? [UInt8(ascii: "/")] : Array(bytes[..<$0]) } ?? [UInt8(ascii: ".")]
        let folderShown = FileNames.display(folder)
        guard FileNames.withCString(folder, { stat($0, &info) }) == 0 else {
            throw ValidationError("\(option) \(shown): folder \(folderShown) does not exist")
        }
        guard (info.st_mode & S_IFMT) == S_IFDIR else {
            throw ValidationError("\(option) \(shown): \(folderShown) is not a folder")
        }
        guard FileNames.withCString(folder, { access($0, W_OK) }) == 0 else {
            throw ValidationError("\(option) \(shown): folder \(folderShown) cannot be written (\(String(cString: strerror(errno))))")
        }
    }
}
