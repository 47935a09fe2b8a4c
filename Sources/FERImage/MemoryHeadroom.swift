#if canImport(Glibc)
import Glibc
#endif

/// What this process can still allocate before an allocation fails, which for Swift's allocator means the
/// process aborts ("failed to allocate N bytes"). Decoders check the buffers an image needs against it
/// before making them, so that a huge image under a memory limit is refused with the numbers instead.
///
/// The headroom is the least of: the address-space limit (`ulimit -v`, RLIMIT_AS) less the address space
/// mapped, the data limit (`ulimit -d`, RLIMIT_DATA) less the data and stack mapped, physical memory plus
/// swap (the most Linux's default heuristic overcommit grants one allocation), and the limit of the
/// process's cgroup v2 (`memory.max`, as containers set) less what the cgroup uses. Linux only; elsewhere
/// nothing is known and everything passes.
public enum MemoryHeadroom {
    /// Bytes this process may still allocate (`Int.max` when nothing limits it).
    public static func bytes() -> Int {
        #if os(Linux)
        let page = sysconf(Int32(_SC_PAGESIZE))
        var least = Int.max
        let (mapped, data) = mappedPages()
        if let limit = softLimit(Int32(RLIMIT_AS.rawValue)) { least = min(least, limit - mapped * page) }
        if let limit = softLimit(Int32(RLIMIT_DATA.rawValue)) { least = min(least, limit - data * page) }
        if let total = memoryPlusSwap() { least = min(least, total) }
        if let cgroup = cgroupRoom() { least = min(least, cgroup) }
        return max(least, 0)
        #else
        return Int.max
        #endif
    }

    /// Nil when `needed` bytes fit in ``bytes()``, otherwise the headroom that was short.
    public static func shortfall(needing needed: Int) -> Int? {
        let room = bytes()
        return needed > room ? room : nil
    }

    #if os(Linux)
    private static func softLimit(_ resource: Int32) -> Int? {
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0, limit.rlim_cur < UInt(Int.max) else {
            return nil
        }
        return Int(limit.rlim_cur)
    }

    /// Pages mapped in all, and pages of data plus stack (`/proc/self/statm` fields 1 and 6).
    private static func mappedPages() -> (Int, Int) {
        let fields = (readSmallFile("/proc/self/statm") ?? "").split(separator: " ").compactMap { Int($0) }
        return fields.count >= 6 ? (fields[0], fields[5]) : (0, 0)
    }

    /// MemTotal plus SwapTotal of `/proc/meminfo`, in bytes.
    private static func memoryPlusSwap() -> Int? {
        var total = 0, found = 0
        for line in (readSmallFile("/proc/meminfo") ?? "").split(separator: "\n")
        where line.hasPrefix("MemTotal:") || line.hasPrefix("SwapTotal:") {
            guard let kib = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else { return nil }
            total += kib * 1024
            found += 1
        }
        return found == 2 ? total : nil
    }

    /// `memory.max - memory.current` of this process's cgroup (v2), when it has a limit.
    private static func cgroupRoom() -> Int? {
        guard let line = readSmallFile("/proc/self/cgroup")?.split(separator: "\n").first(where: { $0.hasPrefix("0::") })
        else { return nil }
        let directory = "/sys/fs/cgroup" + trimmed(line.dropFirst(3))
        guard let maxText = readSmallFile(directory + "/memory.max"), let limit = Int(trimmed(maxText[...])),
              let usedText = readSmallFile(directory + "/memory.current"), let used = Int(trimmed(usedText[...]))
        else { return nil }  // "max": no limit
        return limit - used
    }

    private static func trimmed(_ text: Substring) -> String { String(text.filter { $0 != "\n" && $0 != " " }) }

    /// The first 4 KiB of a small text file (procfs and cgroupfs report no size).
    private static func readSmallFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        return n > 0 ? String(decoding: buffer[..<n], as: UTF8.self) : nil
    }
    #endif
}
