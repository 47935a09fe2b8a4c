// A small, safe pickle machine for protocols 2 to 5 (the opcodes torch.save emits, plus the rest
// of the binary protocol-4/5 set that carries plain data). It never imports or calls anything:
// GLOBAL and STACK_GLOBAL yield names, and the few callables PyTorch's weights_only loader allows
// are implemented here in Swift (see `Allow-list`, below).
//
// Values live in arenas owned by the machine (tuples, lists, dicts, sets, objects, storages,
// tensors) and refer to one another by index, so:
//  - memo GETs never copy (a "memo bomb" that nests a value in itself 2^n ways costs n steps);
//  - arbitrarily deep nesting never makes recursive destruction overflow the stack;
//  - walkers that follow the graph carry explicit depth and visit budgets.
//
// Allow-list (the rule, applied by `classify(module:name:)` at GLOBAL time and at each use):
//  A. Callables REDUCE may apply, each implemented here as plain data construction:
//     collections.OrderedDict, collections.Counter, builtins.set/frozenset/bytearray/complex,
//     _codecs.encode, torch.Size, torch.device, torch._utils._rebuild_tensor(_v2,_v3),
//     torch._utils._rebuild_parameter(_with_state), torch._tensor._rebuild_from_type_v2 — PyTorch's
//     weights_only list — plus copyreg._reconstructor (object construction, see C) and the numpy
//     scalar/dtype/array reconstructors, whose results are inert records (never arrays we compute on).
//  B. Constants: torch dtypes, torch.<Name>Storage and torch.storage.UntypedStorage, torch.Tensor,
//     torch.nn.parameter.Parameter, builtins.object, numpy.ndarray / numpy.dtype.
//  C. Any other dotted name outside the denied modules (os, sys, subprocess, builtins' other names,
//     importlib, pickle, …, and torch.* outside torch.nn.*) is an opaque CLASS NAME. It may appear
//     ONLY as the class of an object built by NEWOBJ / NEWOBJ_EX, by copyreg._reconstructor, or as
//     the class a legacy ('module', cls, …) persistent id names. Such an object is an inert record
//     {class name, arguments, BUILD state}: no __new__, __init__, __setstate__ or __reduce__ runs.
//     A class name reaching REDUCE is refused (it would be a call), and one stored as data (into a
//     list, dict, set, object state or BUILD state, directly or inside a tuple) is refused too.
//  BUILD applies only to inert records (state kept as data), tensors and dicts (state ignored).
// Refusals name the global, the opcode and the byte offset.
//
// Extras that are not weights must not make a legitimate model unloadable, and can be held as
// inert data safely because nothing is ever called:
//  - numpy scalars (`numpy.core.multiarray.scalar(numpy.dtype('f8', ...), raw bytes)`, also under
//    `numpy._core`) are decoded to numbers in the metadata text for bool/int/uint/float dtypes;
//    numpy arrays (`_reconstruct` + BUILD) stay opaque records;
//  - argparse.Namespace and similar plain classes arrive by NEWOBJ + BUILD (rule C) and are
//    rendered as `Namespace(lr=0.1, ...)`.
// Whole pickled modules use the same rule: nn.Module subclasses (torch.nn.modules.* or the
// user's own) are category-C classes whose BUILD state (`__dict__`) is walked as data.

/// The pickle opcodes, by byte (the names are those of CPython's `pickletools`). `run` dispatches
/// on these cases and error messages take the opcode's name from `name`, so the two cannot drift
/// apart. Every opcode of protocols 0 to 5 is listed; the text-protocol and extension-registry
/// ones (INT, GET, INST, EXT1, ...) are known only to be refused by name.
enum Opcode: UInt8 {
    // Stack and memo.
    case mark = 0x28, stop = 0x2e, pop = 0x30, popMark = 0x31, dup = 0x32
    case get = 0x67, binget = 0x68, longBinget = 0x6a, put = 0x70, binput = 0x71, longBinput = 0x72
    case memoize = 0x94
    // Framing.
    case proto = 0x80, frame = 0x95
    // Scalars.
    case none = 0x4e, newtrue = 0x88, newfalse = 0x89
    case int = 0x49, binint = 0x4a, binint1 = 0x4b, binint2 = 0x4d, long = 0x4c, long1 = 0x8a, long4 = 0x8b
    case float = 0x46, binfloat = 0x47
    // Strings and bytes.
    case string = 0x53, binstring = 0x54, shortBinstring = 0x55
    case unicode = 0x56, binunicode = 0x58, shortBinunicode = 0x8c, binunicode8 = 0x8d
    case binbytes = 0x42, shortBinbytes = 0x43, binbytes8 = 0x8e, bytearray8 = 0x96
    case nextBuffer = 0x97, readonlyBuffer = 0x98
    // Containers.
    case emptyTuple = 0x29, tuple = 0x74, tuple1 = 0x85, tuple2 = 0x86, tuple3 = 0x87
    case emptyList = 0x5d, list = 0x6c, append = 0x61, appends = 0x65
    case emptyDict = 0x7d, dict = 0x64, setitem = 0x73, setitems = 0x75
    case emptySet = 0x8f, additems = 0x90, frozenset = 0x91
    // Objects.
    case global = 0x63, stackGlobal = 0x93, reduce = 0x52, build = 0x62, newobj = 0x81, newobjEx = 0x92
    case inst = 0x69, obj = 0x6f, persid = 0x50, binpersid = 0x51
    case ext1 = 0x82, ext2 = 0x83, ext4 = 0x84

    /// The opcode's name as pickletools spells it.
    var name: String {
        switch self {
        case .mark: return "MARK"
        case .stop: return "STOP"
        case .pop: return "POP"
        case .popMark: return "POP_MARK"
        case .dup: return "DUP"
        case .get: return "GET"
        case .binget: return "BINGET"
        case .longBinget: return "LONG_BINGET"
        case .put: return "PUT"
        case .binput: return "BINPUT"
        case .longBinput: return "LONG_BINPUT"
        case .memoize: return "MEMOIZE"
        case .proto: return "PROTO"
        case .frame: return "FRAME"
        case .none: return "NONE"
        case .newtrue: return "NEWTRUE"
        case .newfalse: return "NEWFALSE"
        case .int: return "INT"
        case .binint: return "BININT"
        case .binint1: return "BININT1"
        case .binint2: return "BININT2"
        case .long: return "LONG"
        case .long1: return "LONG1"
        case .long4: return "LONG4"
        case .float: return "FLOAT"
        case .binfloat: return "BINFLOAT"
        case .string: return "STRING"
        case .binstring: return "BINSTRING"
        case .shortBinstring: return "SHORT_BINSTRING"
        case .unicode: return "UNICODE"
        case .binunicode: return "BINUNICODE"
        case .shortBinunicode: return "SHORT_BINUNICODE"
        case .binunicode8: return "BINUNICODE8"
        case .binbytes: return "BINBYTES"
        case .shortBinbytes: return "SHORT_BINBYTES"
        case .binbytes8: return "BINBYTES8"
        case .bytearray8: return "BYTEARRAY8"
        case .nextBuffer: return "NEXT_BUFFER"
        case .readonlyBuffer: return "READONLY_BUFFER"
        case .emptyTuple: return "EMPTY_TUPLE"
        case .tuple: return "TUPLE"
        case .tuple1: return "TUPLE1"
        case .tuple2: return "TUPLE2"
        case .tuple3: return "TUPLE3"
        case .emptyList: return "EMPTY_LIST"
        case .list: return "LIST"
        case .append: return "APPEND"
        case .appends: return "APPENDS"
        case .emptyDict: return "EMPTY_DICT"
        case .dict: return "DICT"
        case .setitem: return "SETITEM"
        case .setitems: return "SETITEMS"
        case .emptySet: return "EMPTY_SET"
        case .additems: return "ADDITEMS"
        case .frozenset: return "FROZENSET"
        case .global: return "GLOBAL"
        case .stackGlobal: return "STACK_GLOBAL"
        case .reduce: return "REDUCE"
        case .build: return "BUILD"
        case .newobj: return "NEWOBJ"
        case .newobjEx: return "NEWOBJ_EX"
        case .inst: return "INST"
        case .obj: return "OBJ"
        case .persid: return "PERSID"
        case .binpersid: return "BINPERSID"
        case .ext1: return "EXT1"
        case .ext2: return "EXT2"
        case .ext4: return "EXT4"
        }
    }

    /// `NAME (0xNN)` for error messages; `unknown (0xNN)` for a byte that is no opcode.
    static func label(_ byte: UInt8) -> String {
        let hex = String(byte, radix: 16, uppercase: false)
        return "\(Opcode(rawValue: byte)?.name ?? "unknown") (0x\(hex.count == 1 ? "0" + hex : hex))"
    }
}

/// A pickle value. Containers are indices into the machine's arenas.
enum PValue {
    case none
    case bool(Bool)
    case int(Int64)
    /// An integer wider than 64 bits, as two's-complement little-endian bytes.
    case bigInt([UInt8])
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple(Int)
    case list(Int)
    case dict(Int)
    case set(Int)
    case global(Int)
    case object(Int)
    case storage(Int)
    case tensor(Int)
}

/// An ordered dict (Python dicts keep insertion order). String and int keys are indexed, so a
/// repeated SETITEM replaces the value as Python would.
struct PDict {
    var keys: [PValue] = []
    var values: [PValue] = []
    var stringIndex: [String: Int] = [:]
    var intIndex: [Int64: Int] = [:]

    mutating func set(_ key: PValue, _ value: PValue) {
        switch key {
        case .string(let s):
            if let i = stringIndex[s] { values[i] = value; return }
            stringIndex[s] = keys.count
        case .int(let n):
            if let i = intIndex[n] { values[i] = value; return }
            intIndex[n] = keys.count
        default: break
        }
        keys.append(key)
        values.append(value)
    }

    func value(forKey key: String) -> PValue? { stringIndex[key].map { values[$0] } }
}

/// A GLOBAL's name and what the allow-list makes of it.
struct GlobalRef {
    enum Role: Equatable {
        case callable(Callable)
        case dtype(TensorDType?, String)          // nil: a dtype this importer cannot hold
        case storageType(TensorDType?)            // nil: UntypedStorage
        case unsupportedStorage                   // complex, quantized, ...: named in the error
        case tensorClass
        case builtinObject
        case numpyType
        case className                            // category C
    }
    enum Callable: Equatable {
        case orderedDict, counter, set, frozenset, bytearray, complex, codecsEncode
        case torchSize, torchDevice
        case rebuildTensor, rebuildTensorV2, rebuildTensorV3, rebuildParameter, rebuildParameterWithState
        case rebuildFromTypeV2, reconstructor, numpyScalar, numpyDtype, numpyReconstruct
    }
    let module: String
    let name: String
    let role: Role
    var qualified: String { module + "." + name }
}

/// An inert record of an object the pickle constructs: class name, arguments, BUILD state.
struct PObject {
    let cls: Int            // index into globals
    var args: PValue
    var state: PValue?
}

/// A storage named by a persistent id.
struct StorageRef {
    let key: String
    /// Element type; nil for an untyped (byte) storage, whose elements are bytes.
    let dtype: TensorDType?
    /// Elements the persistent id declares (bytes for untyped storages).
    let declaredCount: Int
    /// Offset into the root storage `key`, in elements (legacy views only; otherwise 0).
    let elementOffset: Int
    let location: String
}

/// A tensor as the pickle describes it: a strided view of a storage. Nothing is read yet.
struct TensorRef {
    let storage: Int
    let dtype: TensorDType
    let offset: Int
    let shape: [Int]
    let strides: [Int]
    /// Offset of the rebuild call in the stream, for error messages.
    let streamOffset: Int
}

/// The safe pickle machine. One instance decodes one stream and then holds its values.
final class PickleMachine {
    let limits: ImportLimits
    private(set) var tuples: [[PValue]] = []
    /// Per tuple: whether it carries a class name (category C), directly or in a nested tuple.
    private var tupleCarriesClass: [Bool] = []
    private(set) var lists: [[PValue]] = []
    private(set) var dicts: [PDict] = []
    private(set) var sets: [[PValue]] = []
    private(set) var globals: [GlobalRef] = []
    private(set) var objects: [PObject] = []
    private(set) var storages: [StorageRef] = []
    private(set) var tensors: [TensorRef] = []
    /// Storages by persistent key (legacy views by view key), so shared storages stay shared.
    private var storageByKey: [String: Int] = [:]
    private var globalByName: [String: Int] = [:]
    private var elementCount = 0

    init(limits: ImportLimits) { self.limits = limits }

    // MARK: - Running a stream

    /// Decodes one pickle (up to its STOP) from `reader`, leaving the reader after the STOP.
    /// Offsets in errors are positions in `reader`'s buffer.
    func run(_ reader: inout ByteReader) throws -> PValue {
        var stack: [PValue] = []
        var marks: [Int] = []
        // The memo: dense low indices (what picklers write) in an array, anything else in a dict.
        var memoArray: [PValue?] = []
        var memoSparse: [UInt32: PValue] = [:]
        var memoCount = 0
        let denseMemoLimit: UInt32 = 1 << 18
        var opStart = reader.position
        var op: UInt8 = 0

        func fail(_ kind: CheckpointError.Kind, _ message: String) -> CheckpointError {
            CheckpointError(kind, message, entry: reader.entry, opcode: Opcode.label(op), offset: opStart)
        }
        func pop() throws -> PValue {
            guard let v = stack.popLast() else { throw fail(.corruptPickle, "stack underflow") }
            if let m = marks.last, stack.count < m { throw fail(.corruptPickle, "pop crosses a MARK") }
            return v
        }
        func top() throws -> PValue {
            guard let v = stack.last, stack.count > (marks.last ?? 0) || marks.isEmpty else {
                throw fail(.corruptPickle, "stack underflow")
            }
            return v
        }
        func push(_ v: PValue) throws {
            guard stack.count < limits.maxStackSize else {
                throw fail(.limitExceeded, "pickle stack exceeds \(limits.maxStackSize) values")
            }
            stack.append(v)
        }
        func popMark() throws -> [PValue] {
            guard let m = marks.popLast() else { throw fail(.corruptPickle, "no MARK on the stack") }
            guard m <= stack.count else { throw fail(.corruptPickle, "MARK above stack top") }
            let items = Array(stack[m...])
            stack.removeSubrange(m...)
            return items
        }
        func countElements(_ n: Int) throws {
            elementCount += n
            guard elementCount <= limits.maxElements else {
                throw fail(.limitExceeded, "pickle creates more than \(limits.maxElements) container elements")
            }
        }
        func memoPut(_ index: UInt32, _ v: PValue) throws {
            let isNew: Bool
            if index < denseMemoLimit {
                let i = Int(index)
                isNew = i >= memoArray.count || memoArray[i] == nil
                if isNew, memoCount >= limits.maxMemoEntries {
                    throw fail(.limitExceeded, "memo exceeds \(limits.maxMemoEntries) entries")
                }
                if i >= memoArray.count { memoArray.append(contentsOf: repeatElement(nil, count: i + 1 - memoArray.count)) }
                memoArray[i] = v
            } else {
                isNew = memoSparse[index] == nil
                if isNew, memoCount >= limits.maxMemoEntries {
                    throw fail(.limitExceeded, "memo exceeds \(limits.maxMemoEntries) entries")
                }
                memoSparse[index] = v
            }
            if isNew { memoCount += 1 }
        }
        func memoGet(_ index: UInt32) throws -> PValue {
            let found = index < denseMemoLimit ? (Int(index) < memoArray.count ? memoArray[Int(index)] : nil) : memoSparse[index]
            guard let v = found else { throw fail(.corruptPickle, "memo entry \(index) was never stored") }
            return v
        }
        func string(_ n: Int, _ what: @autoclosure () -> String) throws -> String {
            guard n <= limits.maxStringBytes else {
                throw fail(.limitExceeded, "\(what()) of \(n) bytes exceeds the \(limits.maxStringBytes)-byte limit")
            }
            let bytes = try reader.slice(n, what())
            guard let s = validUTF8(bytes) else {
                throw fail(.corruptPickle, "\(what()) is not valid UTF-8")
            }
            return s
        }
        func rawBytes(_ n: Int, _ what: @autoclosure () -> String) throws -> [UInt8] {
            guard n <= limits.maxStringBytes else {
                throw fail(.limitExceeded, "\(what()) of \(n) bytes exceeds the \(limits.maxStringBytes)-byte limit")
            }
            return Array(try reader.slice(n, what()))
        }
        func length(_ width: Int, _ what: @autoclosure () -> String) throws -> Int {
            let n = try reader.uintLE(width, what())
            guard n <= UInt64(Int.max) else { throw fail(.limitExceeded, "\(what()) declares \(n) bytes") }
            return Int(n)
        }
        func textLine(_ what: String) throws -> String {
            // GLOBAL operands: "module\n" and "name\n", printable ASCII.
            var bytes: [UInt8] = []
            while true {
                let b = try reader.u8(what)
                if b == 0x0a { break }
                guard b >= 0x20, b < 0x7f, bytes.count < 512 else {
                    throw fail(.corruptPickle, "\(what) is not a short printable line")
                }
                bytes.append(b)
            }
            return String(decoding: bytes, as: UTF8.self)
        }
        func integer(_ n: Int) throws -> PValue {
            guard n <= limits.maxIntegerBytes else {
                throw fail(.limitExceeded, "integer of \(n) bytes exceeds the \(limits.maxIntegerBytes)-byte limit")
            }
            let bytes = try reader.slice(n, "long integer")
            if n == 0 { return .int(0) }
            if n <= 8 {
                var v = ByteReader.uintLE(bytes, at: 0, width: n)
                if n < 8, bytes[n - 1] & 0x80 != 0 { v |= ~UInt64(0) << UInt64(8 * n) }
                return .int(Int64(bitPattern: v))
            }
            return .bigInt(Array(bytes))
        }
        func checkData(_ v: PValue, _ role: String) throws {
            if let name = carriedClass(v) {
                throw fail(.disallowedGlobal, "'\(name)' may only be the class of a rebuilt object, not \(role)")
            }
        }

        while true {
            opStart = reader.position
            op = try reader.u8("opcode")
            guard let opcode = Opcode(rawValue: op) else {
                throw fail(.unsupportedOpcode, "opcode not supported by the safe pickle reader (protocols 2-5)")
            }
            switch opcode {
            case .proto:
                let p = try reader.u8("protocol")
                guard p <= 5 else { throw fail(.corruptPickle, "pickle protocol \(p) (this machine reads up to 5)") }
            case .frame:  // framing is transparent to a reader of the whole stream
                let n = try reader.u64("frame length")
                guard n <= UInt64(reader.remaining) else {
                    throw fail(.truncated, "frame of \(n) bytes, only \(reader.remaining) left")
                }
            case .stop:
                let result = try pop()
                try checkData(result, "the pickled object")
                return result
            case .global:
                let module = try textLine("GLOBAL module")
                let name = try textLine("GLOBAL name")
                try push(.global(try global(module, name, fail)))
            case .stackGlobal:
                let nameValue = try pop()
                let moduleValue = try pop()
                guard case .string(let module) = moduleValue, case .string(let name) = nameValue else {
                    throw fail(.corruptPickle, "\(opcode.name) operands are not strings")
                }
                try push(.global(try global(module, name, fail)))
            case .reduce:
                let args = try pop()
                let callable = try pop()
                try push(try reduce(callable, args, at: opStart, fail))
            case .build:
                let state = try pop()
                let target = try top()
                try build(target, state, fail)
            case .newobj:
                let args = try pop()
                let cls = try pop()
                try push(try newObject(cls, args, fail))
            case .newobjEx:
                let kwargs = try pop()
                let args = try pop()
                let cls = try pop()
                let obj = try newObject(cls, args, fail)
                if case .object = obj { try checkData(kwargs, "keyword arguments") }
                try push(obj)
            case .binpersid:
                let pid = try pop()
                try push(try persistentLoad(pid, fail))
            case .mark:
                guard marks.count < limits.maxNestingDepth else {
                    throw fail(.limitExceeded, "more than \(limits.maxNestingDepth) MARKs open")
                }
                marks.append(stack.count)
            case .tuple: try push(try makeTuple(try popMark()))
            case .tuple1:
                let a = try pop()
                try push(try makeTuple([a]))
            case .tuple2:
                let b = try pop(), a = try pop()
                try push(try makeTuple([a, b]))
            case .tuple3:
                let c = try pop(), b = try pop(), a = try pop()
                try push(try makeTuple([a, b, c]))
            case .emptyTuple: try push(try makeTuple([]))
            case .emptyList:
                lists.append([])
                try push(.list(lists.count - 1))
            case .list:
                let items = try popMark()
                for item in items { try checkData(item, "a list item") }
                try countElements(items.count)
                lists.append(items)
                try push(.list(lists.count - 1))
            case .append, .appends:
                let items = opcode == .append ? [try pop()] : try popMark()
                guard case .list(let l) = try top() else {
                    throw fail(.disallowedCall, "\(opcode.name) target is not a list")
                }
                for item in items { try checkData(item, "a list item") }
                try countElements(items.count)
                lists[l].append(contentsOf: items)
            case .emptyDict:
                dicts.append(PDict())
                try push(.dict(dicts.count - 1))
            case .dict, .setitem, .setitems:
                let items: [PValue]
                if opcode == .setitem {
                    let v = try pop(), k = try pop()
                    items = [k, v]
                } else {
                    items = try popMark()
                }
                guard items.count % 2 == 0 else { throw fail(.corruptPickle, "odd number of items for a dict") }
                let d: Int
                if opcode == .dict {
                    dicts.append(PDict())
                    d = dicts.count - 1
                } else {
                    guard case .dict(let target) = try top() else {
                        throw fail(.disallowedCall, "\(opcode.name) target is not a dict")
                    }
                    d = target
                }
                try countElements(items.count / 2)
                var i = 0
                while i < items.count {
                    try checkData(items[i], "a dict key")
                    try checkData(items[i + 1], "a dict value")
                    dicts[d].set(items[i], items[i + 1])
                    i += 2
                }
                if opcode == .dict { try push(.dict(d)) }
            case .emptySet:
                sets.append([])
                try push(.set(sets.count - 1))
            case .additems:
                let items = try popMark()
                guard case .set(let s) = try top() else { throw fail(.disallowedCall, "\(opcode.name) target is not a set") }
                for item in items { try checkData(item, "a set item") }
                try countElements(items.count)
                sets[s].append(contentsOf: items)
            case .frozenset:
                let items = try popMark()
                for item in items { try checkData(item, "a set item") }
                try countElements(items.count)
                sets.append(items)
                try push(.set(sets.count - 1))
            case .none: try push(.none)
            case .newtrue: try push(.bool(true))
            case .newfalse: try push(.bool(false))
            case .binint: try push(.int(Int64(Int32(bitPattern: try reader.u32("\(opcode.name) operand")))))
            case .binint1: try push(.int(Int64(try reader.u8("\(opcode.name) operand"))))
            case .binint2: try push(.int(Int64(try reader.u16("\(opcode.name) operand"))))
            case .long1: try push(try integer(Int(try reader.u8("\(opcode.name) length"))))
            case .long4:
                let n = Int32(bitPattern: try reader.u32("\(opcode.name) length"))
                guard n >= 0 else { throw fail(.corruptPickle, "negative LONG4 length") }
                try push(try integer(Int(n)))
            case .binfloat:  // big-endian IEEE double
                let raw = try reader.slice(8, "\(opcode.name) operand")
                var bits: UInt64 = 0
                for b in raw { bits = bits << 8 | UInt64(b) }
                try push(.float(Double(bitPattern: bits)))
            case .binunicode: try push(.string(try string(try length(4, "\(opcode.name) length"), "\(opcode.name) string")))
            case .shortBinunicode: try push(.string(try string(Int(try reader.u8("\(opcode.name) length")), "\(opcode.name) string")))
            case .binunicode8: try push(.string(try string(try length(8, "\(opcode.name) length"), "\(opcode.name) string")))
            case .binstring, .shortBinstring:  // Python 2 str, decoded as latin-1
                let n: Int
                if opcode == .binstring {
                    let signed = Int32(bitPattern: try reader.u32("\(opcode.name) length"))
                    guard signed >= 0 else { throw fail(.corruptPickle, "negative BINSTRING length") }
                    n = Int(signed)
                } else {
                    n = Int(try reader.u8("\(opcode.name) length"))
                }
                let bytes = try rawBytes(n, "\(opcode.name) string")
                try push(.string(String(String.UnicodeScalarView(bytes.map { Unicode.Scalar($0) }))))
            case .binbytes: try push(.bytes(try rawBytes(try length(4, "\(opcode.name) length"), "\(opcode.name) data")))
            case .shortBinbytes: try push(.bytes(try rawBytes(Int(try reader.u8("\(opcode.name) length")), "\(opcode.name) data")))
            case .binbytes8, .bytearray8: try push(.bytes(try rawBytes(try length(8, "\(opcode.name) length"), "\(opcode.name) data")))
            case .binget: try push(try memoGet(UInt32(try reader.u8("\(opcode.name) index"))))
            case .longBinget: try push(try memoGet(try reader.u32("\(opcode.name) index")))
            case .binput: try memoPut(UInt32(try reader.u8("\(opcode.name) index")), try top())
            case .longBinput: try memoPut(try reader.u32("\(opcode.name) index"), try top())
            case .memoize:
                guard memoCount < Int(UInt32.max) else { throw fail(.limitExceeded, "memo index overflow") }
                try memoPut(UInt32(memoCount), try top())
            case .pop:
                if let m = marks.last, m == stack.count { marks.removeLast() } else { _ = try pop() }
            case .popMark: _ = try popMark()
            case .dup: try push(try top())
            case .readonlyBuffer: break  // bytes stay bytes
            case .nextBuffer:
                throw fail(.unsupportedOpcode, "out-of-band buffers (NEXT_BUFFER) cannot come from a file")
            case .float, .int, .long, .string, .unicode, .persid, .get, .put, .inst, .obj, .ext1, .ext2, .ext4:
                // Text-protocol and extension-registry opcodes: torch.save never writes them.
                throw fail(.unsupportedOpcode, "opcode not supported by the safe pickle reader (protocols 2-5)")
            }
        }
    }

    // MARK: - Allow-list

    static let deniedModules: Set<String> = [
        "os", "posix", "nt", "sys", "subprocess", "shutil", "socket", "importlib", "pickle", "_pickle",
        "marshal", "ctypes", "runpy", "code", "codeop", "pty", "multiprocessing", "signal", "webbrowser",
        "functools", "operator", "types", "inspect", "io", "_io", "posixpath", "ntpath", "platform",
        "threading", "_thread", "asyncio", "pdb", "bdb", "timeit", "tempfile", "glob", "pathlib", "urllib",
        "http", "ftplib", "smtplib", "telnetlib", "zipimport", "pkgutil", "site", "gc", "weakref", "copy",
        "dill", "cloudpickle", "joblib", "yaml", "shelve", "dbm", "sqlite3", "ensurepip", "venv", "distutils",
        "setuptools", "pip", "__main__.__builtins__", "_posixsubprocess", "_winapi", "msvcrt", "winreg",
    ]

    static let storageDTypes: [String: TensorDType] = [
        "DoubleStorage": .float64, "FloatStorage": .float32, "HalfStorage": .float16, "BFloat16Storage": .bfloat16,
        "LongStorage": .int64, "IntStorage": .int32, "ShortStorage": .int16, "CharStorage": .int8,
        "ByteStorage": .uint8, "BoolStorage": .bool,
    ]

    static let dtypeNames: [String: TensorDType] = [
        "float32": .float32, "float": .float32, "float16": .float16, "half": .float16, "bfloat16": .bfloat16,
        "float64": .float64, "double": .float64, "int64": .int64, "long": .int64, "int32": .int32, "int": .int32,
        "int16": .int16, "short": .int16, "int8": .int8, "uint8": .uint8, "bool": .bool,
    ]
    static let otherDTypeNames: Set<String> = [
        "complex64", "complex128", "cfloat", "cdouble", "chalf", "complex32", "uint16", "uint32", "uint64",
        "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "qint8", "quint8", "qint32",
        "quint4x2", "quint2x4", "bits8", "bits16", "bits1x8", "bits2x4", "bits4x2",
    ]

    /// Classifies a GLOBAL by the allow-list rule above; refuses denied names outright.
    static func classify(module rawModule: String, name: String) -> GlobalRef.Role? {
        // Python 3 pickles at protocol < 3 use Python 2 names for a few modules.
        let module: String
        switch rawModule {
        case "__builtin__": module = "builtins"
        case "copy_reg": module = "copyreg"
        default: module = rawModule
        }
        switch (module, name) {
        case ("collections", "OrderedDict"): return .callable(.orderedDict)
        case ("collections", "Counter"): return .callable(.counter)
        case ("builtins", "set"): return .callable(.set)
        case ("builtins", "frozenset"): return .callable(.frozenset)
        case ("builtins", "bytearray"): return .callable(.bytearray)
        case ("builtins", "complex"): return .callable(.complex)
        case ("builtins", "object"): return .builtinObject
        case ("_codecs", "encode"): return .callable(.codecsEncode)
        case ("torch", "Size"): return .callable(.torchSize)
        case ("torch", "device"): return .callable(.torchDevice)
        case ("torch", "Tensor"), ("torch._tensor", "Tensor"), ("torch.nn.parameter", "Parameter"): return .tensorClass
        case ("torch._utils", "_rebuild_tensor"): return .callable(.rebuildTensor)
        case ("torch._utils", "_rebuild_tensor_v2"): return .callable(.rebuildTensorV2)
        case ("torch._utils", "_rebuild_tensor_v3"): return .callable(.rebuildTensorV3)
        case ("torch._utils", "_rebuild_parameter"): return .callable(.rebuildParameter)
        case ("torch._utils", "_rebuild_parameter_with_state"): return .callable(.rebuildParameterWithState)
        case ("torch._tensor", "_rebuild_from_type_v2"): return .callable(.rebuildFromTypeV2)
        case ("copyreg", "_reconstructor"): return .callable(.reconstructor)
        case ("torch.storage", "UntypedStorage"), ("torch", "UntypedStorage"): return .storageType(nil)
        case ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"): return .callable(.numpyScalar)
        case ("numpy", "dtype"): return .callable(.numpyDtype)
        case ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"):
            return .callable(.numpyReconstruct)
        case ("numpy", "ndarray"): return .numpyType
        default: break
        }
        if module == "torch.cuda", let dtype = storageDTypes[name] { return .storageType(dtype) }
        if module == "torch" || module == "torch.cuda" {
            if ["ComplexFloatStorage", "ComplexDoubleStorage", "QInt8Storage", "QUInt8Storage", "QInt32Storage",
                "QUInt4x2Storage", "QUInt2x4Storage"].contains(name) { return .unsupportedStorage }
        }
        if module == "torch" {
            if let dtype = storageDTypes[name] { return .storageType(dtype) }
            if let dtype = dtypeNames[name] { return .dtype(dtype, name) }
            if otherDTypeNames.contains(name) { return .dtype(nil, name) }
        }
        // Everything else may only be a class name (category C), outside the denied modules.
        let root = module.split(separator: ".", maxSplits: 1).first.map(String.init) ?? module
        if deniedModules.contains(root) || module == "builtins" { return nil }
        if root == "torch", !module.hasPrefix("torch.nn.") { return nil }
        if root == "numpy" || root == "_codecs" || root == "collections" || root == "copyreg" { return nil }
        let identifier = { (s: Substring) -> Bool in
            guard let first = s.first, first == "_" || first.isLetter else { return false }
            return s.allSatisfy { $0 == "_" || $0.isLetter || $0.isNumber }
        }
        guard module.split(separator: ".", omittingEmptySubsequences: false).allSatisfy(identifier),
              name.split(separator: ".", omittingEmptySubsequences: false).allSatisfy(identifier),
              !name.hasPrefix("__") || name == "__main__" else { return nil }
        return .className
    }

    private func global(_ module: String, _ name: String,
                        _ fail: (CheckpointError.Kind, String) -> CheckpointError) throws -> Int {
        let key = module + "\n" + name
        if let i = globalByName[key] { return i }
        guard let role = PickleMachine.classify(module: module, name: name) else {
            throw fail(.disallowedGlobal, "GLOBAL '\(module).\(name)' is not allowed (not a tensor, container or class a checkpoint needs)")
        }
        globals.append(GlobalRef(module: module, name: name, role: role))
        globalByName[key] = globals.count - 1
        return globals.count - 1
    }

    /// The class name a value carries (a category-C global, or a tuple holding one), if any.
    func carriedClass(_ v: PValue) -> String? {
        switch v {
        case .global(let g):
            return globals[g].role == .className ? globals[g].qualified : nil
        case .tuple(let t):
            guard tupleCarriesClass[t] else { return nil }
            for item in tuples[t] { if let name = carriedClass(item) { return name } }
            return nil
        default: return nil
        }
    }

    private func makeTuple(_ items: [PValue]) throws -> PValue {
        elementCount += items.count
        guard elementCount <= limits.maxElements else {
            throw CheckpointError(.limitExceeded, "pickle creates more than \(limits.maxElements) container elements")
        }
        var carries = false
        for item in items {
            switch item {
            case .global(let g) where globals[g].role == .className: carries = true
            case .tuple(let t) where tupleCarriesClass[t]: carries = true
            default: break
            }
        }
        tuples.append(items)
        tupleCarriesClass.append(carries)
        return .tuple(tuples.count - 1)
    }

    // MARK: - REDUCE, NEWOBJ, BUILD, persistent ids

    private func tupleItems(_ v: PValue) -> [PValue]? {
        if case .tuple(let t) = v { return tuples[t] }
        return nil
    }

    private func ints(_ v: PValue) -> [Int]? {
        let items: [PValue]
        switch v {
        case .tuple(let t): items = tuples[t]
        case .list(let l): items = lists[l]
        default: return nil
        }
        var out: [Int] = []
        out.reserveCapacity(items.count)
        for item in items {
            guard case .int(let n) = item, let i = Int(exactly: n) else { return nil }
            out.append(i)
        }
        return out
    }

    private func reduce(_ callable: PValue, _ args: PValue, at offset: Int,
                        _ fail: (CheckpointError.Kind, String) -> CheckpointError) throws -> PValue {
        guard case .global(let g) = callable else {
            throw fail(.disallowedCall, "REDUCE on a value that is not a GLOBAL")
        }
        let ref = globals[g]
        guard case .callable(let function) = ref.role else {
            throw fail(.disallowedCall, "REDUCE would call '\(ref.qualified)', which is not an allowed callable")
        }
        guard let a = tupleItems(args) else {
            throw fail(.corruptPickle, "REDUCE arguments for '\(ref.qualified)' are not a tuple")
        }
        if function != .reconstructor {
            for item in a {
                if let name = carriedClass(item) {
                    throw fail(.disallowedGlobal, "'\(name)' may only be the class of a rebuilt object, not an argument of '\(ref.qualified)'")
                }
            }
        }
        func bad(_ what: String) -> CheckpointError {
            fail(.corruptPickle, "bad arguments for '\(ref.qualified)': \(what)")
        }
        switch function {
        case .orderedDict, .counter:
            dicts.append(PDict())
            let d = dicts.count - 1
            if let first = a.first {
                switch first {
                case .dict(let src): dicts[d] = dicts[src]
                case .list(let l):
                    for pair in lists[l] {
                        guard let kv = tupleItems(pair), kv.count == 2 else { throw bad("items are not pairs") }
                        dicts[d].set(kv[0], kv[1])
                    }
                default: throw bad("expected () or an iterable of pairs")
                }
            }
            return .dict(d)
        case .set, .frozenset:
            var items: [PValue] = []
            if let first = a.first {
                switch first {
                case .list(let l): items = lists[l]
                case .tuple(let t): items = tuples[t]
                case .set(let s): items = sets[s]
                default: throw bad("expected an iterable")
                }
            }
            sets.append(items)
            return .set(sets.count - 1)
        case .bytearray:
            guard let first = a.first else { return .bytes([]) }
            switch first {
            case .bytes(let b): return .bytes(b)
            case .string(let s): return .bytes(try latin1(s, bad))
            default: throw bad("expected bytes")
            }
        case .complex:
            func num(_ v: PValue?) -> Double? {
                switch v { case .float(let d): return d; case .int(let i): return Double(i); case nil: return 0; default: return nil }
            }
            guard let re = num(a.first), let im = num(a.count > 1 ? a[1] : nil) else { throw bad("expected numbers") }
            return .string("(\(re)\(im < 0 ? "-" : "+")\(abs(im))j)")
        case .codecsEncode:
            guard a.count >= 1, case .string(let s) = a[0] else { throw bad("expected a string") }
            if a.count > 1 {
                guard case .string(let encoding) = a[1], ["latin1", "latin-1", "iso-8859-1", "l1"].contains(encoding.lowercased()) else {
                    throw bad("only the latin1 encoding is used for bytes")
                }
            }
            return .bytes(try latin1(s, bad))
        case .torchSize:
            guard a.count == 1, let dims = ints(a[0]) else { throw bad("expected a tuple of ints") }
            return try makeTuple(dims.map { .int(Int64($0)) })
        case .torchDevice:
            guard a.count >= 1 else { throw bad("expected a device string") }
            switch a[0] {
            case .string(let s):
                if a.count > 1, case .int(let index) = a[1] { return .string("\(s):\(index)") }
                return .string(s)
            default: throw bad("expected a device string")
            }
        case .rebuildTensor, .rebuildTensorV2, .rebuildTensorV3:
            let needed = function == .rebuildTensor ? 4 : (function == .rebuildTensorV3 ? 7 : 6)
            guard a.count >= needed else { throw bad("expected \(needed) arguments, got \(a.count)") }
            guard case .storage(let s) = a[0] else { throw bad("argument 1 is not a storage") }
            guard case .int(let off) = a[1], let storageOffset = Int(exactly: off), storageOffset >= 0 else {
                throw bad("storage offset is not a non-negative int")
            }
            guard let shape = ints(a[2]), let strides = ints(a[3]) else { throw bad("size or stride is not a tuple of ints") }
            var dtype = storages[s].dtype
            if function == .rebuildTensorV3 {
                guard case .global(let dg) = a[6], case .dtype(let d, let dname) = globals[dg].role else {
                    throw bad("argument 7 is not a dtype")
                }
                guard let d else {
                    throw fail(.invalidTensor, "dtype torch.\(dname) is not supported")
                }
                if let sd = storages[s].dtype, sd != d {
                    throw bad("dtype torch.\(dname) does not match the \(sd.rawValue) storage")
                }
                dtype = d
            }
            guard let dtype else { throw bad("an untyped storage needs _rebuild_tensor_v3's dtype") }
            guard shape.count == strides.count else {
                throw bad("size has \(shape.count) dimensions, stride \(strides.count)")
            }
            guard shape.count <= limits.maxRank else {
                throw fail(.limitExceeded, "tensor rank \(shape.count) exceeds \(limits.maxRank)")
            }
            guard shape.allSatisfy({ $0 >= 0 }), strides.allSatisfy({ $0 >= 0 }) else {
                throw bad("negative size or stride \(shape) / \(strides)")
            }
            guard tensors.count < limits.maxTensors else {
                throw fail(.limitExceeded, "more than \(limits.maxTensors) tensors")
            }
            tensors.append(TensorRef(storage: s, dtype: dtype, offset: storageOffset, shape: shape, strides: strides,
                                     streamOffset: offset))
            return .tensor(tensors.count - 1)
        case .rebuildParameter, .rebuildParameterWithState:
            guard let first = a.first, case .tensor = first else { throw bad("argument 1 is not a tensor") }
            return first
        case .rebuildFromTypeV2:
            guard a.count >= 3, let inner = tupleItems(a[2]) else { throw bad("expected (func, type, args, state)") }
            guard case .global(let fg) = a[1], globals[fg].role == .tensorClass else {
                throw fail(.disallowedCall, "_rebuild_from_type_v2 to a type that is not torch.Tensor or Parameter")
            }
            _ = inner
            let result = try reduce(a[0], a[2], at: offset, fail)
            guard case .tensor = result else { throw bad("the rebuilt value is not a tensor") }
            return result
        case .reconstructor:
            guard a.count == 3, case .global(let cg) = a[0] else { throw bad("expected (class, base, state)") }
            guard globals[cg].role == .className else {
                throw fail(.disallowedCall, "copyreg._reconstructor of '\(globals[cg].qualified)'")
            }
            guard case .global(let bg) = a[1], globals[bg].role == .builtinObject else {
                throw fail(.disallowedCall, "copyreg._reconstructor with a base other than builtins.object")
            }
            if let name = carriedClass(a[2]) {
                throw fail(.disallowedGlobal, "'\(name)' may only be the class of a rebuilt object, not reconstructor state")
            }
            objects.append(PObject(cls: cg, args: a[2], state: nil))
            return .object(objects.count - 1)
        case .numpyScalar, .numpyDtype, .numpyReconstruct:
            // Inert record; numpy scalars are decoded to numbers when rendered.
            objects.append(PObject(cls: g, args: args, state: nil))
            return .object(objects.count - 1)
        }
    }

    private func latin1(_ s: String, _ bad: (String) -> CheckpointError) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(s.unicodeScalars.count)
        for scalar in s.unicodeScalars {
            guard scalar.value < 256 else { throw bad("character U+\(String(scalar.value, radix: 16)) is not latin-1") }
            out.append(UInt8(scalar.value))
        }
        return out
    }

    private func newObject(_ cls: PValue, _ args: PValue,
                           _ fail: (CheckpointError.Kind, String) -> CheckpointError) throws -> PValue {
        guard case .global(let g) = cls else { throw fail(.disallowedCall, "NEWOBJ on a value that is not a class") }
        guard globals[g].role == .className else {
            throw fail(.disallowedCall, "NEWOBJ of '\(globals[g].qualified)', which is not a class a checkpoint may rebuild")
        }
        guard case .tuple = args else { throw fail(.corruptPickle, "NEWOBJ arguments are not a tuple") }
        if let name = carriedClass(args) {
            throw fail(.disallowedGlobal, "'\(name)' may only be the class of a rebuilt object, not a constructor argument")
        }
        objects.append(PObject(cls: g, args: args, state: nil))
        return .object(objects.count - 1)
    }

    private func build(_ target: PValue, _ state: PValue,
                       _ fail: (CheckpointError.Kind, String) -> CheckpointError) throws {
        if let name = carriedClass(state) {
            throw fail(.disallowedGlobal, "'\(name)' may only be the class of a rebuilt object, not BUILD state")
        }
        switch target {
        case .object(let o):
            objects[o].state = state
        case .tensor, .dict:
            break  // tensor attributes and OrderedDict._metadata carry no weights
        default:
            throw fail(.disallowedCall, "BUILD on a value that is not an object, tensor or dict")
        }
    }

    private func persistentLoad(_ pid: PValue,
                                _ fail: (CheckpointError.Kind, String) -> CheckpointError) throws -> PValue {
        guard let items = tupleItems(pid), let first = items.first, case .string(let tag) = first else {
            throw fail(.corruptPickle, "persistent id is not a tagged tuple")
        }
        switch tag {
        case "module":
            // Legacy whole-module saves: ('module', cls, source file, source). The class is inert.
            guard items.count >= 2, case .global(let g) = items[1], globals[g].role == .className else {
                throw fail(.corruptPickle, "('module', …) persistent id without a class")
            }
            return .global(g)
        case "storage":
            guard items.count == 5 || items.count == 6 else {
                throw fail(.corruptPickle, "storage persistent id has \(items.count) fields (5 or 6 expected)")
            }
            if case .global(let tg) = items[1], globals[tg].role == .unsupportedStorage {
                throw fail(.invalidTensor, "\(globals[tg].qualified) holds a dtype this importer does not support")
            }
            guard case .global(let tg) = items[1], case .storageType(let dtype) = globals[tg].role else {
                throw fail(.corruptPickle, "storage persistent id without a storage type")
            }
            guard case .string(let key) = items[2] else { throw fail(.corruptPickle, "storage key is not a string") }
            let location: String
            switch items[3] {
            case .string(let s): location = s
            default: location = "?"
            }
            guard case .int(let n) = items[4], let numel = Int(exactly: n), numel >= 0 else {
                throw fail(.corruptPickle, "storage size is not a non-negative int")
            }
            var cacheKey = key
            var elementOffset = 0
            var count = numel
            if items.count == 6, case .tuple(let vt) = items[5] {
                let view = tuples[vt]
                guard view.count == 3, case .string(let viewKey) = view[0], case .int(let o) = view[1],
                      case .int(let size) = view[2], let vo = Int(exactly: o), let vs = Int(exactly: size),
                      vo >= 0, vs >= 0 else {
                    throw fail(.corruptPickle, "bad storage view metadata")
                }
                cacheKey = "view:" + viewKey
                elementOffset = vo
                count = vs
            }
            if let existing = storageByKey[cacheKey] {
                let old = storages[existing]
                guard old.dtype == dtype else {
                    throw fail(.corruptPickle, "storage '\(key)' is named with two different types")
                }
                return .storage(existing)
            }
            guard storages.count < limits.maxTensors else {
                throw fail(.limitExceeded, "more than \(limits.maxTensors) storages")
            }
            storages.append(StorageRef(key: key, dtype: dtype, declaredCount: count, elementOffset: elementOffset,
                                       location: location))
            storageByKey[cacheKey] = storages.count - 1
            return .storage(storages.count - 1)
        default:
            throw fail(.corruptPickle, "persistent id tag '\(tag)' (expected 'storage' or 'module')")
        }
    }

    // MARK: - Access for walkers

    func tuple(_ i: Int) -> [PValue] { tuples[i] }
    func list(_ i: Int) -> [PValue] { lists[i] }
    func dict(_ i: Int) -> PDict { dicts[i] }
    func set(_ i: Int) -> [PValue] { sets[i] }
    func object(_ i: Int) -> PObject { objects[i] }
    func globalRef(_ i: Int) -> GlobalRef { globals[i] }
}
