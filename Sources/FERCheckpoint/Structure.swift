// Finding the model's tensors in a decoded pickle, whatever shape the file's author gave it:
//  - the authors' training dict {'iter', 'model_state_dict', 'optimizer_state_dict'};
//  - a dict nesting the state dict (or a whole module) under 'state_dict', 'model' or
//    'model_state_dict' (first of these present wins);
//  - a bare state dict (a dict whose values include tensors);
//  - a whole pickled nn.Module: the inert records' `_parameters`, `_buffers` (minus
//    `_non_persistent_buffers_set`) and `_modules`, walked in the order `state_dict()` uses
//    (own parameters, own buffers, then children), skipping None entries.
// Names lose `module.` prefixes when every name has one (DataParallel), repeatedly.
// Everything else at the top level becomes metadata text; optimizer state is summarised, never
// materialised.

struct FoundTensors {
    var structure: String
    var named: [(name: String, tensor: Int)]
    var metadata: [(String, String)]
}

struct StructureFinder {
    let machine: PickleMachine
    let limits: ImportLimits
    private var visits = 0

    init(machine: PickleMachine, limits: ImportLimits) {
        self.machine = machine
        self.limits = limits
    }

    static let nestingKeys = ["model_state_dict", "state_dict", "model"]

    mutating func find(_ root: PValue) throws -> FoundTensors {
        var found: FoundTensors
        switch root {
        case .dict(let d):
            let dict = machine.dict(d)
            var chosen: (key: String, value: PValue)?
            for key in StructureFinder.nestingKeys {
                if let v = dict.value(forKey: key), isModelContainer(v) { chosen = (key, v); break }
            }
            if let chosen {
                found = FoundTensors(structure: "", named: [], metadata: [])
                let inner = try modelTensors(chosen.value, path: chosen.key)
                found.named = inner.named
                let hasTraining = dict.value(forKey: "optimizer_state_dict") != nil || dict.value(forKey: "iter") != nil
                if chosen.key == "model_state_dict" && hasTraining {
                    found.structure = "authors' training dict (model_state_dict)"
                } else {
                    found.structure = "nested under '\(chosen.key)'" + (inner.module.map { " (whole pickled module \($0))" } ?? "")
                }
                for (k, v) in zip(dict.keys, dict.values) {
                    if case .string(let ks) = k, ks == chosen.key { continue }
                    found.metadata.append((render(k, top: true), render(v, top: true)))
                }
            } else if dict.values.contains(where: { if case .tensor = $0 { return true }; return false }) {
                found = FoundTensors(structure: "bare state_dict", named: [], metadata: [])
                for (k, v) in zip(dict.keys, dict.values) {
                    if case .tensor(let t) = v {
                        guard case .string(let name) = k else {
                            throw CheckpointError(.unrecognizedStructure, "state_dict key \(render(k, top: false)) is not a string")
                        }
                        found.named.append((name, t))
                    } else {
                        found.metadata.append((render(k, top: true), render(v, top: true)))
                    }
                }
            } else {
                let keys = dict.keys.prefix(12).map { render($0, top: false) }.joined(separator: ", ")
                throw CheckpointError(.unrecognizedStructure,
                                      "top-level dict holds no tensors and no 'model_state_dict', 'state_dict' or 'model' entry (keys: \(keys))")
            }
        case .object(let o):
            var named: [(String, Int)] = []
            try walkModule(o, prefix: "", depth: 0, into: &named)
            found = FoundTensors(structure: "whole pickled module (\(className(o)))", named: named, metadata: [])
        default:
            throw CheckpointError(.unrecognizedStructure,
                                  "the pickled object is \(render(root, top: false)), not a dict or a module")
        }
        if found.named.isEmpty {
            throw CheckpointError(.unrecognizedStructure, "no tensors found (\(found.structure))")
        }
        // DataParallel / DistributedDataParallel: strip `module.` while every name has it.
        var stripped = 0
        while found.named.allSatisfy({ $0.name.hasPrefix("module.") }) {
            found.named = found.named.map { (String($0.name.dropFirst(7)), $0.tensor) }
            stripped += 1
        }
        if stripped > 0 { found.structure += ", 'module.' prefix removed" }
        return found
    }

    /// Whether `v` can hold the model: a dict with tensors (or nested model dicts) or a module record.
    private func isModelContainer(_ v: PValue) -> Bool {
        switch v {
        case .dict(let d): return machine.dict(d).values.contains { if case .tensor = $0 { return true }; return false }
        case .object(let o): return moduleState(o) != nil
        default: return false
        }
    }

    private mutating func modelTensors(_ v: PValue, path: String) throws -> (named: [(name: String, tensor: Int)], module: String?) {
        switch v {
        case .dict(let d):
            var named: [(name: String, tensor: Int)] = []
            let dict = machine.dict(d)
            for (k, value) in zip(dict.keys, dict.values) {
                guard case .tensor(let t) = value else { continue }
                guard case .string(let name) = k else {
                    throw CheckpointError(.unrecognizedStructure, "'\(path)' key \(render(k, top: false)) is not a string")
                }
                named.append((name, t))
            }
            return (named, nil)
        case .object(let o):
            var named: [(String, Int)] = []
            try walkModule(o, prefix: "", depth: 0, into: &named)
            return (named.map { (name: $0.0, tensor: $0.1) }, className(o))
        default:
            throw CheckpointError(.unrecognizedStructure, "'\(path)' is not a state dict")
        }
    }

    private func className(_ o: Int) -> String { machine.globalRef(machine.object(o).cls).qualified }

    /// The `__dict__` of a module record, if it looks like an nn.Module.
    private func moduleState(_ o: Int) -> PDict? {
        guard var state = machine.object(o).state else { return nil }
        // BUILD state may be (dict, slotstate).
        if case .tuple(let t) = state, let first = machine.tuple(t).first { state = first }
        guard case .dict(let d) = state else { return nil }
        let dict = machine.dict(d)
        guard dict.value(forKey: "_parameters") != nil || dict.value(forKey: "_modules") != nil else { return nil }
        return dict
    }

    private mutating func walkModule(_ o: Int, prefix: String, depth: Int, into named: inout [(String, Int)]) throws {
        guard depth < limits.maxNestingDepth else {
            throw CheckpointError(.limitExceeded, "modules nest deeper than \(limits.maxNestingDepth) at '\(prefix)'", key: prefix)
        }
        visits += 1
        guard visits <= limits.maxElements else {
            throw CheckpointError(.limitExceeded, "more than \(limits.maxElements) modules", key: prefix)
        }
        guard let state = moduleState(o) else {
            throw CheckpointError(.unrecognizedStructure,
                                  "object of class \(className(o)) at '\(prefix)' is not an nn.Module (no _parameters / _modules)",
                                  key: prefix.isEmpty ? nil : prefix)
        }
        func entries(_ key: String) throws -> [(String, PValue)] {
            guard let v = state.value(forKey: key) else { return [] }
            guard case .dict(let d) = v else {
                throw CheckpointError(.unrecognizedStructure, "\(key) of module '\(prefix)' is not a dict", key: prefix)
            }
            let dict = machine.dict(d)
            return try zip(dict.keys, dict.values).map { k, v in
                guard case .string(let s) = k else {
                    throw CheckpointError(.unrecognizedStructure, "\(key) of module '\(prefix)' has a non-string key", key: prefix)
                }
                return (s, v)
            }
        }
        var nonPersistent = Set<String>()
        if let v = state.value(forKey: "_non_persistent_buffers_set") {
            let items: [PValue]
            switch v {
            case .set(let s): items = machine.set(s)
            case .list(let l): items = machine.list(l)
            default: items = []
            }
            for case .string(let s) in items { nonPersistent.insert(s) }
        }
        for (name, v) in try entries("_parameters") {
            switch v {
            case .tensor(let t): named.append((prefix + name, t))
            case .none: break
            default:
                throw CheckpointError(.unrecognizedStructure, "parameter is \(render(v, top: false)), not a tensor", key: prefix + name)
            }
        }
        for (name, v) in try entries("_buffers") where !nonPersistent.contains(name) {
            switch v {
            case .tensor(let t): named.append((prefix + name, t))
            case .none: break
            default:
                throw CheckpointError(.unrecognizedStructure, "buffer is \(render(v, top: false)), not a tensor", key: prefix + name)
            }
        }
        for (name, v) in try entries("_modules") {
            switch v {
            case .object(let child): try walkModule(child, prefix: prefix + name + ".", depth: depth + 1, into: &named)
            case .none: break
            default:
                throw CheckpointError(.unrecognizedStructure, "submodule is \(render(v, top: false)), not a module", key: prefix + name)
            }
        }
    }

    // MARK: - Rendering values as text

    /// Renders a value as short Python-like text (bounded in length and in nodes visited, so
    /// shared or cyclic structures cost little).
    func render(_ v: PValue, top: Bool) -> String {
        var out = ""
        var budget = 2_000
        if top, case .string(let s) = v { return s.count > 1000 ? String(s.prefix(1000)) + "…" : s }
        renderInto(&out, v, depth: 0, budget: &budget)
        return out
    }

    private func renderInto(_ out: inout String, _ v: PValue, depth: Int, budget: inout Int) {
        budget -= 1
        if budget <= 0 || out.utf8.count > 300 || depth > 16 {
            if !out.hasSuffix("…") { out += "…" }
            return
        }
        func sequence(_ items: [PValue], _ open: String, _ close: String, trailingComma: Bool = false) {
            out += open
            for (i, item) in items.enumerated() {
                if i > 0 { out += ", " }
                if budget <= 0 || out.utf8.count > 300 { out += "…"; break }
                renderInto(&out, item, depth: depth + 1, budget: &budget)
            }
            if trailingComma && items.count == 1 { out += "," }
            out += close
        }
        switch v {
        case .none: out += "None"
        case .bool(let b): out += b ? "True" : "False"
        case .int(let i): out += String(i)
        case .bigInt(let bytes):
            out += "0x" + bytes.reversed().map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        case .float(let d): out += pythonFloat(d)
        case .string(let s): out += "'" + (s.count > 200 ? String(s.prefix(200)) + "…" : s) + "'"
        case .bytes(let b): out += "b<\(b.count) bytes>"
        case .tuple(let t): sequence(machine.tuple(t), "(", ")", trailingComma: true)
        case .list(let l): sequence(machine.list(l), "[", "]")
        case .set(let s): sequence(machine.set(s), "{", "}")
        case .dict(let d):
            let dict = machine.dict(d)
            out += "{"
            for i in 0..<dict.keys.count {
                if i > 0 { out += ", " }
                if budget <= 0 || out.utf8.count > 300 { out += "…"; break }
                renderInto(&out, dict.keys[i], depth: depth + 1, budget: &budget)
                out += ": "
                renderInto(&out, dict.values[i], depth: depth + 1, budget: &budget)
            }
            out += "}"
        case .global(let g): out += machine.globalRef(g).qualified
        case .storage(let s): out += "storage('\(machine.storages[s].key)')"
        case .tensor(let t):
            let ref = machine.tensors[t]
            out += "tensor(\(ref.dtype.rawValue) \(ref.shape))"
        case .object(let o):
            if let scalar = numpyScalar(o) { out += scalar; return }
            let obj = machine.object(o)
            let cls = machine.globalRef(obj.cls)
            if cls.role == .callable(.numpyReconstruct) {
                // BUILD state (version, shape, dtype, is_fortran, data).
                out += "numpy.ndarray"
                if case .tuple(let st)? = obj.state, machine.tuple(st).count > 1 {
                    out += " of shape "
                    renderInto(&out, machine.tuple(st)[1], depth: depth + 1, budget: &budget)
                }
                return
            }
            out += cls.name
            if var state = obj.state {
                if case .tuple(let t) = state, cls.role != .callable(.numpyDtype), let first = machine.tuple(t).first { state = first }
                if case .dict(let d) = state {
                    let dict = machine.dict(d)
                    out += "("
                    for i in 0..<dict.keys.count {
                        if i > 0 { out += ", " }
                        if budget <= 0 || out.utf8.count > 300 { out += "…"; break }
                        if case .string(let k) = dict.keys[i] { out += k } else { renderInto(&out, dict.keys[i], depth: depth + 1, budget: &budget) }
                        out += "="
                        renderInto(&out, dict.values[i], depth: depth + 1, budget: &budget)
                    }
                    out += ")"
                    return
                }
            }
            renderInto(&out, obj.args, depth: depth + 1, budget: &budget)
        }
    }

    /// Decodes numpy.core.multiarray.scalar(dtype, bytes) records of simple dtypes to numbers.
    private func numpyScalar(_ o: Int) -> String? {
        let obj = machine.object(o)
        guard machine.globalRef(obj.cls).role == .callable(.numpyScalar), case .tuple(let t) = obj.args else { return nil }
        let args = machine.tuple(t)
        guard args.count == 2, case .object(let dtypeObject) = args[0], case .bytes(let raw) = args[1] else { return nil }
        let dtype = machine.object(dtypeObject)
        guard case .tuple(let dt) = dtype.args, case .string(let code)? = machine.tuple(dt).first else { return nil }
        var bigEndian = false
        if case .tuple(let st)? = dtype.state, machine.tuple(st).count > 1, case .string(let order) = machine.tuple(st)[1] {
            bigEndian = order == ">"
        }
        guard let kind = code.first, let width = Int(code.dropFirst()), width == raw.count, [1, 2, 4, 8].contains(width) else { return nil }
        var bits: UInt64 = 0
        for b in (bigEndian ? raw : raw.reversed()) { bits = bits << 8 | UInt64(b) }
        switch kind {
        case "f":
            switch width {
            case 8: return pythonFloat(Double(bitPattern: bits))
            case 4: return pythonFloat(Double(Float(bitPattern: UInt32(bits))))
            case 2: return pythonFloat(Double(halfToFloat(UInt16(bits))))
            default: return nil
            }
        case "i":
            let shift = UInt64(64 - 8 * width)
            return String(Int64(bitPattern: bits << shift) >> Int64(shift))
        case "u": return String(bits)
        case "b": return bits != 0 ? "True" : "False"
        default: return nil
        }
    }

    private func pythonFloat(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d < 0 ? "-inf" : "inf" }
        return "\(d)"
    }
}
