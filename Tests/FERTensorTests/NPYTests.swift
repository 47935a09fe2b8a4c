import FERTensor
import XCTest

final class NPYTests: XCTestCase {
    func testRoundTripKeepsShapeAndBits() throws {
        let t = Tensor(shape: [2, 1, 3], data: [1, -2.5, .pi, 0, -0, 1e-30])
        let bytes = NPY.encode(t)
        XCTAssertEqual(bytes.count % 64, (6 * 4) % 64, "data starts on a 64-byte boundary")
        let back = try NPY.decode(bytes)
        XCTAssertEqual(back.shape, [2, 1, 3])
        XCTAssertEqual(back.data.map(\.bitPattern), t.data.map(\.bitPattern))
    }

    func testReadsNumPyWrittenHeaderAndBigEndianAndDoubles() throws {
        // Header exactly as numpy 2 writes np.array([[1.5, -2]], dtype='>f8').
        var header = "{'descr': '>f8', 'fortran_order': False, 'shape': (1, 2), }"
        header += String(repeating: " ", count: (64 - (10 + header.count + 1) % 64) % 64) + "\n"
        var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.count), 0] + Array(header.utf8)
        for v in [1.5, -2.0] { withUnsafeBytes(of: v.bitPattern.bigEndian) { bytes += $0 } }
        let t = try NPY.decode(bytes)
        XCTAssertEqual(t.shape, [1, 2])
        XCTAssertEqual(t.data, [1.5, -2])
    }

    func testRefusesWhatItCannotReadWithTheReason() {
        let good = NPY.encode(Tensor(shape: [4], data: [1, 2, 3, 4]))
        XCTAssertThrowsError(try NPY.decode(Array(good.dropLast(3)))) { error in
            XCTAssertTrue("\(error)".contains("truncated"), "\(error)")
        }
        XCTAssertThrowsError(try NPY.decode(Array("not numpy at all".utf8))) { error in
            XCTAssertTrue("\(error)".contains("bad magic"), "\(error)")
        }
        XCTAssertThrowsError(try NPY.decode(replacing("<f4", with: "<i4", in: good))) { error in
            XCTAssertTrue("\(error)".contains("'<i4'"), "\(error)")
        }
        XCTAssertThrowsError(try NPY.decode(replacing("False", with: "True ", in: good))) { error in
            XCTAssertTrue("\(error)".contains("Fortran"), "\(error)")
        }
        XCTAssertThrowsError(try NPY.read(path: "/nonexistent/x.npy")) { error in
            XCTAssertTrue("\(error)".contains("no such file"), "\(error)")
        }
    }

    private func replacing(_ old: String, with new: String, in bytes: [UInt8]) -> [UInt8] {
        let (o, n) = (Array(old.utf8), Array(new.utf8))
        var out = bytes
        for i in 0...(out.count - o.count) where Array(out[i..<i + o.count]) == o {
            out.replaceSubrange(i..<i + o.count, with: n)
            break
        }
        return out
    }
}
