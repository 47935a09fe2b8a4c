/// Places buffers in one arena so that buffers alive at the same time never overlap.
///
/// Greedy by size (as TFLite's arena planner does): the largest buffers are placed first, each at
/// the lowest offset that clears every already-placed buffer whose lifetime meets its own.
public enum MemoryPlanner {
    public struct Buffer: Sendable, Equatable {
        /// Floats, before alignment.
        public var size: Int
        /// First and last step (inclusive) that touch the buffer.
        public var first: Int, last: Int
        public init(size: Int, first: Int, last: Int) {
            self.size = size
            self.first = first
            self.last = last
        }
    }

    /// Offsets are multiples of this many floats (64 bytes), so offsets scaled by a batch size stay aligned.
    public static let alignment = 16

    /// Offsets of `buffers` (in floats) and the arena size they need.
    public static func place(_ buffers: [Buffer]) -> (offsets: [Int], size: Int) {
        func aligned(_ n: Int) -> Int { (n + alignment - 1) / alignment * alignment }
        let order = buffers.indices.sorted { (buffers[$0].size, $1) > (buffers[$1].size, $0) }
        var offsets = [Int](repeating: 0, count: buffers.count)
        var placed: [Int] = []
        var total = 0
        for i in order {
            let b = buffers[i]
            let size = aligned(max(b.size, 1))
            // Live neighbours, by offset; walk the gaps between them.
            let live = placed.filter { buffers[$0].first <= b.last && b.first <= buffers[$0].last }
                .sorted { offsets[$0] < offsets[$1] }
            var offset = 0
            for j in live {
                if offset + size <= offsets[j] { break }
                offset = max(offset, offsets[j] + aligned(max(buffers[j].size, 1)))
            }
            offsets[i] = offset
            placed.append(i)
            total = max(total, offset + size)
        }
        return (offsets, total)
    }
}
