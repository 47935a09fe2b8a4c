// The two torch.save containers.
//
// Zip (PyTorch >= 1.6): `<folder>/data.pkl` is the pickled object; each storage is the raw entry
// `<folder>/data/<key>`; `<folder>/byteorder` says "little" or "big" (absent before 2.1: little).
// The folder name varies (file stem, "archive"): it is taken from the entries, never assumed.
// TorchScript archives (`constants.pkl`, `code/`) are refused with their own error.
//
// Legacy (before 1.6, or `_use_new_zipfile_serialization=False`): consecutive pickles
//   magic (int 0x1950a86a20f9469cfc6c), protocol version (1001), sys_info dict,
//   the object, the list of storage keys
// then for each key in that list: int64 LE element count, then that many elements (raw LE).

enum TorchZip {
    static func load(block: ByteBlock, limits: ImportLimits, ledger: CopyLedger) throws -> Checkpoint {
        let archive = try ZipArchive(block: block, limits: limits)
        block.releaseResidentPages()
        guard let first = archive.entries.first else {
            throw CheckpointError(.missingEntry, "the zip archive is empty")
        }
        var folder = first.name.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        if archive.entry(named: folder + "/data.pkl") == nil,
           let other = archive.entries.first(where: { $0.name.hasSuffix("/data.pkl") && $0.name.split(separator: "/").count == 2 }) {
            folder = String(other.name.dropLast("/data.pkl".count))
        }
        // TorchScript archives also hold a data.pkl: check for them first.
        if archive.entry(named: folder + "/constants.pkl") != nil
            || archive.entries.contains(where: { $0.name.hasPrefix(folder + "/code/") }) {
            throw CheckpointError(.torchScriptArchive,
                                  "this is a TorchScript archive (torch.jit.save), not a torch.save checkpoint: export its state_dict() with torch.save instead",
                                  entry: folder + "/constants.pkl")
        }
        guard let pickleEntry = archive.entry(named: folder + "/data.pkl") else {
            throw CheckpointError(.missingEntry, "no data.pkl in the zip archive (is it a PyTorch checkpoint?)",
                                  entry: folder + "/data.pkl")
        }
        var bigEndian = false
        if let order = archive.entry(named: folder + "/byteorder") {
            let (b, r) = try archive.contents(of: order, ledger: ledger)
            let text = String(decoding: UnsafeRawBufferPointer(rebasing: b.buffer[r]), as: UTF8.self)
            switch text.trimmingSpaces {
            case "little": bigEndian = false
            case "big": bigEndian = true
            default:
                throw CheckpointError(.corruptZip, "byteorder says '\(text.prefix(20))' (expected little or big)", entry: order.name)
            }
        }
        let (pickleBlock, pickleRange) = try archive.contents(of: pickleEntry, ledger: ledger)
        let machine = PickleMachine(limits: limits)
        var reader = ByteReader(UnsafeRawBufferPointer(rebasing: pickleBlock.buffer[pickleRange]), entry: pickleEntry.name)
        let root: PValue
        do {
            root = try machine.run(&reader)
        } catch let error as CheckpointError {
            // Stored entries: the offset in data.pkl is also a known place in the file.
            guard pickleEntry.method == 0, let offset = error.offset, error.entry == pickleEntry.name else { throw error }
            throw error.adding(fileOffset: pickleEntry.dataOffset + offset)
        }
        var finder = StructureFinder(machine: machine, limits: limits)
        let found = try finder.find(root)

        // Storage entries are checked here but not read: a deflated one is inflated when one of its
        // tensors' values is first asked for.
        var storages: [String: StorageBytes] = [:]
        var tensors: [CheckpointTensor] = []
        tensors.reserveCapacity(found.named.count)
        for (name, t) in found.named {
            let ref = machine.tensors[t]
            let storage = machine.storages[ref.storage]
            let data: StorageBytes
            if let known = storages[storage.key] {
                data = known
            } else {
                let entryName = folder + "/data/" + storage.key
                guard let entry = archive.entry(named: entryName) else {
                    throw CheckpointError(.missingEntry, "storage '\(storage.key)' has no entry in the archive",
                                          entry: entryName, key: name)
                }
                data = try archive.storage(entry, ledger: ledger)
                storages[storage.key] = data
            }
            tensors.append(try Materializer.plan(named: name, ref, storage: storage, data: data,
                                                 bigEndian: bigEndian, limits: limits))
        }
        return try Checkpoint(container: .zip, structure: found.structure, tensors: tensors, metadata: found.metadata,
                              ledger: ledger)
    }
}

enum LegacyFormat {
    static func load(block: ByteBlock, limits: ImportLimits, ledger: CopyLedger) throws -> Checkpoint {
        let bytes = block.buffer
        var reader = ByteReader(bytes, entry: nil)
        // 1. magic number: the int 0x1950a86a20f9469cfc6c, pickled at the caller's protocol.
        let header = PickleMachine(limits: limits)
        let magic: [UInt8] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]
        let first: PValue
        do {
            first = try header.run(&reader)
        } catch let error as CheckpointError where error.kind != .disallowedGlobal {
            throw CheckpointError(.corruptLegacyHeader,
                                  "not a legacy torch.save file: its first pickle does not decode (\(error.message))", offset: 0)
        }
        guard case .bigInt(let value) = first, value == magic else {
            throw CheckpointError(.corruptLegacyHeader,
                                  "a pickle without the legacy torch.save magic number (not a PyTorch checkpoint)", offset: 0)
        }
        // 2. protocol version.
        let versionOffset = reader.position
        guard case .int(1001) = try header.run(&reader) else {
            throw CheckpointError(.corruptLegacyHeader, "legacy protocol version is not 1001", offset: versionOffset)
        }
        // 3. sys_info: a dict; little_endian must be true (big-endian legacy files are refused).
        let infoOffset = reader.position
        let info = try header.run(&reader)
        guard case .dict(let d) = info else {
            throw CheckpointError(.corruptLegacyHeader, "legacy sys_info is not a dict", offset: infoOffset)
        }
        if case .bool(false)? = header.dict(d).value(forKey: "little_endian") {
            // PyTorch itself byte-swaps these; no such file has been seen in the wild.
            throw CheckpointError(.corruptLegacyHeader, "big-endian legacy files are not supported", offset: infoOffset)
        }
        // 4. the object.
        let machine = PickleMachine(limits: limits)
        let root = try machine.run(&reader)
        // 5. storage keys.
        let keysOffset = reader.position
        let keysValue = try machine.run(&reader)
        guard case .list(let l) = keysValue else {
            throw CheckpointError(.corruptLegacyHeader, "legacy storage key list is not a list", offset: keysOffset)
        }
        var keys: [String] = []
        for item in machine.list(l) {
            guard case .string(let k) = item else {
                throw CheckpointError(.corruptLegacyHeader, "legacy storage key is not a string", offset: keysOffset)
            }
            keys.append(k)
        }
        // Element sizes by key, from the storages the object named.
        var elementSize: [String: Int] = [:]
        for s in machine.storages {
            elementSize[s.key] = s.dtype?.byteSize ?? 1
        }
        // 6. raw data.
        var data: [String: StorageBytes] = [:]
        for key in keys {
            let start = reader.position
            let count = try reader.u64("element count of storage '\(key)'")
            guard let size = elementSize[key] else {
                throw CheckpointError(.corruptLegacyHeader, "storage '\(key)' is listed but no tensor names it",
                                      entry: "storage data", key: key, offset: start)
            }
            guard count <= UInt64(limits.maxTensorBytes) else {
                throw CheckpointError(.limitExceeded, "storage '\(key)' declares \(count) elements", key: key, offset: start)
            }
            let byteCount = try checkedMul(Int(count), size, "storage size")
            guard byteCount <= reader.remaining else {
                throw CheckpointError(.truncated, "storage '\(key)' needs \(byteCount) bytes, only \(reader.remaining) left",
                                      key: key, offset: reader.position)
            }
            data[key] = StorageBytes(entry: "legacy storage '\(key)'",
                                     origin: .view(block, reader.position..<(reader.position + byteCount)), ledger: ledger)
            reader.position += byteCount
        }
        var finder = StructureFinder(machine: machine, limits: limits)
        let found = try finder.find(root)
        var tensors: [CheckpointTensor] = []
        tensors.reserveCapacity(found.named.count)
        for (name, t) in found.named {
            let ref = machine.tensors[t]
            let storage = machine.storages[ref.storage]
            guard let d = data[storage.key] else {
                throw CheckpointError(.missingEntry, "storage '\(storage.key)' has no data in the file", key: name)
            }
            // Legacy files are little-endian (checked above); `cuda:0` locations are plain data.
            tensors.append(try Materializer.plan(named: name, ref, storage: storage, data: d, bigEndian: false, limits: limits))
        }
        return try Checkpoint(container: .legacy, structure: found.structure, tensors: tensors, metadata: found.metadata,
                              ledger: ledger)
    }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
}
