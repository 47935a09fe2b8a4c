import COpenBLAS

/// Dense matrix products, through OpenBLAS's `sgemm`.
///
/// Every matrix is row-major with an explicit leading dimension (the distance between rows, in
/// elements), so sub-matrices of larger buffers can be used in place.
public enum GEMM {
    /// `c[m, n] = a[m, k] · b[k, n]  (+ c[m, n] when accumulate)`.
    ///
    /// Products under ``smallProductLimit`` multiply-accumulates run on ``multiplySmall(m:n:k:a:lda:b:ldb:c:ldc:accumulate:)``:
    /// OpenBLAS's small-matrix path allocates a buffer on every call, and these shapes (the
    /// attention gates, the heads) are too small for its packing to pay off anyway.
    ///
    /// - Parameters:
    ///   - a: `m` rows of `k` values, row stride `lda`.
    ///   - b: `k` rows of `n` values, row stride `ldb`.
    ///   - c: `m` rows of `n` values, row stride `ldc`; read first when `accumulate` is true.
    @inlinable
    public static func multiply(
        m: Int, n: Int, k: Int,
        a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        c: UnsafeMutablePointer<Float>, ldc: Int,
        accumulate: Bool = false
    ) {
        precondition(m >= 0 && n >= 0 && k >= 0 && lda >= k && ldb >= n && ldc >= n)
        if m == 0 || n == 0 { return }
        if m * n * k <= smallProductLimit {
            multiplySmall(m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, accumulate: accumulate)
            return
        }
        cblas_sgemm(
            CblasRowMajor, CblasNoTrans, CblasNoTrans,
            Int32(m), Int32(n), Int32(k), 1, a, Int32(lda), b, Int32(ldb),
            accumulate ? 1 : 0, c, Int32(ldc))
    }

    /// Products of at most this many multiply-accumulates skip OpenBLAS (see ``multiply(m:n:k:a:lda:b:ldb:c:ldc:accumulate:)``).
    public static let smallProductLimit = 1 << 20

    /// SIMD kernel for small products: each row of `c` is built 16 (then 8) columns at a time by
    /// broadcasting `a[i, p]` against row `p` of `b`.
    public static func multiplySmall(
        m: Int, n: Int, k: Int,
        a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        c: UnsafeMutablePointer<Float>, ldc: Int,
        accumulate: Bool = false
    ) {
        for i in 0..<m {
            let arow = a + i * lda
            let crow = c + i * ldc
            var j = 0
            while j + 16 <= n {
                var lo = accumulate ? loadVector(crow + j) : SIMD8<Float>(repeating: 0)
                var hi = accumulate ? loadVector(crow + j + 8) : SIMD8<Float>(repeating: 0)
                var bp = b + j
                for p in 0..<k {
                    let x = SIMD8<Float>(repeating: arow[p])
                    lo.addProduct(x, loadVector(bp))
                    hi.addProduct(x, loadVector(bp + 8))
                    bp += ldb
                }
                storeVector(lo, crow + j)
                storeVector(hi, crow + j + 8)
                j += 16
            }
            while j + 8 <= n {
                var acc = accumulate ? loadVector(crow + j) : SIMD8<Float>(repeating: 0)
                var bp = b + j
                for p in 0..<k {
                    acc.addProduct(SIMD8<Float>(repeating: arow[p]), loadVector(bp))
                    bp += ldb
                }
                storeVector(acc, crow + j)
                j += 8
            }
            while j < n {
                var acc: Float = accumulate ? crow[j] : 0
                for p in 0..<k { acc = acc.addingProduct(arow[p], b[p * ldb + j]) }
                crow[j] = acc
                j += 1
            }
        }
    }

    /// The plain triple loop that ``multiply(m:n:k:a:lda:b:ldb:c:ldc:accumulate:)`` must agree with.
    public static func multiplyReference(
        m: Int, n: Int, k: Int,
        a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        c: UnsafeMutablePointer<Float>, ldc: Int,
        accumulate: Bool = false
    ) {
        for i in 0..<m {
            for j in 0..<n {
                var sum: Double = accumulate ? Double(c[i * ldc + j]) : 0
                for p in 0..<k { sum += Double(a[i * lda + p]) * Double(b[p * ldb + j]) }
                c[i * ldc + j] = Float(sum)
            }
        }
    }
}

/// OpenBLAS's own worker threads. The runtime sets their number explicitly instead of leaving
/// OpenBLAS to take every core.
public enum BLASThreads {
    /// Sets the number of threads OpenBLAS uses for each call.
    public static func set(_ count: Int) { openblas_set_num_threads(Int32(max(1, count))) }
    /// The number of threads OpenBLAS currently uses.
    public static var current: Int { Int(openblas_get_num_threads()) }
}
