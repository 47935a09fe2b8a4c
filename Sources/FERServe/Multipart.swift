/// `multipart/form-data` bodies (RFC 7578): the parts' names and bytes.
enum Multipart {
    /// Splits `body` by the boundary named in `contentType`. Each part's name is its `filename`
    /// (or `name`) from Content-Disposition, else `part N`.
    static func parts(of body: [UInt8], contentType: String) throws -> [(name: String, bytes: [UInt8])] {
        guard let range = contentType.range(of: "boundary=") else {
            throw ServiceError(.badRequest, "multipart content type without a boundary")
        }
        var boundary = String(contentType[range.upperBound...].prefix { $0 != ";" })
        if boundary.hasPrefix("\""), boundary.hasSuffix("\""), boundary.count >= 2 { boundary = String(boundary.dropFirst().dropLast()) }
        guard !boundary.isEmpty else { throw ServiceError(.badRequest, "empty multipart boundary") }
        let delimiter = Array("--\(boundary)".utf8)
        var positions: [Int] = []
        var i = 0
        while i + delimiter.count <= body.count {
            if body[i] == delimiter[0] && Array(body[i..<i + delimiter.count]) == delimiter {
                positions.append(i)
                i += delimiter.count
            } else {
                i += 1
            }
        }
        guard positions.count >= 2 else { throw ServiceError(.badRequest, "malformed multipart body: boundary '\(boundary)' not found twice") }
        var parts: [(String, [UInt8])] = []
        for (n, (start, end)) in zip(positions, positions.dropFirst()).enumerated() {
            var part = Array(body[(start + delimiter.count)..<end])
            if part.starts(with: [13, 10]) { part.removeFirst(2) }
            if part.count >= 2, part[part.count - 2] == 13, part[part.count - 1] == 10 { part.removeLast(2) }
            guard let split = headerEnd(part) else { throw ServiceError(.badRequest, "malformed multipart part \(n + 1): no header end") }
            let headers = String(decoding: part[..<split], as: UTF8.self)
            let content = Array(part[(split + 4)...])
            parts.append((partName(headers) ?? "part \(n + 1)", content))
        }
        return parts
    }

    private static func headerEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for i in 0...(bytes.count - 4) where bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 {
            return i
        }
        return nil
    }

    private static func partName(_ headers: String) -> String? {
        for key in ["filename=\"", "name=\""] {
            if let r = headers.range(of: key) {
                return String(headers[r.upperBound...].prefix { $0 != "\"" })
            }
        }
        return nil
    }
}
