#if canImport(Glibc)
import CMalloc
#endif

/// Process-wide memory settings for programs that analyse photo after photo.
public enum ProcessMemory {
    /// Largest allocation glibc's malloc serves from its heaps once ``keepFreedBuffers()`` ran;
    /// larger ones are mapped and unmapped each time.
    public static let heapAllocationLimit = 32 << 20
    /// Free memory a heap keeps before giving it back to the system.
    public static let retainedLimit = 64 << 20

    /// Makes glibc's malloc reuse freed photo-sized buffers instead of returning them to the
    /// system: by default a buffer of more than 128 KiB (a decoded photo, the detector's input) is
    /// mapped fresh and unmapped when freed, and every page of it is faulted in and zeroed again
    /// for the next photo (about 4 ms of a 1280x886 photo's 72 ms: docs/BENCHMARKS.md). Peak
    /// memory barely moves; what was freed stays with the process up to ``retainedLimit``.
    /// `fer-infer` calls it once the detector is loaded (model loading keeps malloc's defaults:
    /// its temporary buffers, returned to the system, do not raise the peak of a run that
    /// classifies crops), `fer-serve` at start; a service embedding the runtime may do the same.
    /// Returns false where the C library does not take the settings (not glibc).
    @discardableResult
    public static func keepFreedBuffers() -> Bool {
        #if canImport(Glibc)
        return mallopt(M_MMAP_THRESHOLD, Int32(heapAllocationLimit)) == 1 && mallopt(M_TRIM_THRESHOLD, Int32(retainedLimit)) == 1
        #else
        return false
        #endif
    }

    /// Gives the free memory of every malloc heap back to the system (glibc's `malloc_trim(0)`: free
    /// pages anywhere in a heap, not only at its top, which is all ``retainedLimit`` governs). For a
    /// service after a burst of large buffers has been freed: without it, what the burst held stays
    /// resident. Takes each heap's lock in turn, a few milliseconds; call it off the hot path.
    /// Returns whether memory was released (false where the C library is not glibc).
    @discardableResult
    public static func returnFreedMemory() -> Bool {
        #if canImport(Glibc)
        return malloc_trim(0) == 1
        #else
        return false
        #endif
    }
}
