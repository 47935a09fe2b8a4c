/// A header value of the form `type/subtype; name=value; name="quoted value"` (RFC 9110 section 5.6.6):
/// parameter names compare case-insensitively, values (tokens or quoted strings) keep their case.
struct HeaderValue: Equatable {
    /// The part before the first `;`, lowercased (`multipart/form-data`, `form-data`).
    let value: String
    /// Parameters by lowercased name, values as sent (quotes and backslash escapes removed).
    let parameters: [String: String]

    init(parsing text: String) throws(ServiceError) {
        let bytes = Array(text.utf8)
        var i = 0
        func skipSpace() { while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x09 { i += 1 } }
        while i < bytes.count, bytes[i] != 0x3B { i += 1 }  // ';'
        value = String(decoding: bytes[..<i], as: UTF8.self).trimmingSpaces.lowercased()
        var parameters: [String: String] = [:]
        while i < bytes.count {
            i += 1  // the ';'
            skipSpace()
            if i == bytes.count { break }  // a trailing ';'
            let nameStart = i
            while i < bytes.count, bytes[i] != 0x3D, bytes[i] != 0x3B { i += 1 }  // '=' or ';'
            guard i < bytes.count, bytes[i] == 0x3D, i > nameStart else {
                throw ServiceError(.malformedHeader(text, detail: "parameter at byte \(nameStart) has no '=value'"))
            }
            let name = String(decoding: bytes[nameStart..<i], as: UTF8.self).trimmingSpaces.lowercased()
            i += 1
            skipSpace()
            var parameterValue: [UInt8] = []
            if i < bytes.count, bytes[i] == 0x22 {  // a quoted string, with backslash escapes
                i += 1
                var closed = false
                while i < bytes.count {
                    if bytes[i] == 0x5C, i + 1 < bytes.count {
                        parameterValue.append(bytes[i + 1])
                        i += 2
                    } else if bytes[i] == 0x22 {
                        closed = true
                        i += 1
                        break
                    } else {
                        parameterValue.append(bytes[i])
                        i += 1
                    }
                }
                guard closed else { throw ServiceError(.malformedHeader(text, detail: "parameter '\(name)' has an unclosed quote")) }
                skipSpace()
                guard i == bytes.count || bytes[i] == 0x3B else {
                    throw ServiceError(.malformedHeader(text, detail: "text after the quoted value of '\(name)'"))
                }
            } else {
                let start = i
                while i < bytes.count, bytes[i] != 0x3B { i += 1 }
                parameterValue = Array(String(decoding: bytes[start..<i], as: UTF8.self).trimmingSpaces.utf8)
            }
            parameters[name] = String(decoding: parameterValue, as: UTF8.self)
        }
        self.parameters = parameters
    }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" { s.removeLast() }
        return String(s)
    }
}
