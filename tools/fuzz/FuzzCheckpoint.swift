// libFuzzer entry point over the checkpoint decoders. Compiled together with the sources of
// Sources/FERCheckpoint into one module (see build.sh), so it reaches the internal pickle machine
// and zip reader directly as well as the public `Checkpoint.load(bytes:)`.
//
// The input's first byte picks the decoder, the rest is the payload:
//   0: Checkpoint.load(bytes:)  (format detection, zip, legacy, safetensors, structure, tensors)
//   1: PickleMachine.run on the bare stream, then the structure finder
//   2: ZipArchive over the bytes, reading (inflating) every entry under one copy budget
// Any thrown CheckpointError is an acceptable outcome; a crash, hang or sanitizer report is not.

/// Tight limits keep each execution fast; they are the same checks with smaller numbers.
let fuzzLimits: ImportLimits = {
    var l = ImportLimits()
    l.maxMemoEntries = 10_000
    l.maxStackSize = 10_000
    l.maxElements = 100_000
    l.maxStringBytes = 1 << 20
    l.maxTensorBytes = 16 << 20
    l.maxZipEntries = 10_000
    l.maxTensors = 10_000
    l.minCopyBudget = 16 << 20
    return l
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let selector = data[0] % 3
    let payload = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    switch selector {
    case 0:
        if let checkpoint = try? Checkpoint.load(bytes: payload, limits: fuzzLimits) {
            // Produce every tensor's values (inflating, gathering, swapping on first use) and touch
            // them; convert small float tensors. Refusals (copy budget, bad deflate data) are fine.
            var sum: UInt64 = 0
            for t in checkpoint.tensors {
                _ = try? t.withUnsafeRawBytes { raw in
                    if let first = raw.first, let last = raw.last { sum &+= UInt64(first) &+ UInt64(last) }
                }
                if t.dtype.isFloatingPoint, t.count <= 4096 { _ = try? t.floats() }
            }
            precondition(checkpoint.copiedBytes <= checkpoint.copyBudget, "copies exceed the copy budget")
            if sum == 0x1234_5678_9abc { print("unlikely") }
        }
    case 1:
        payload.withUnsafeBytes { raw in
            let machine = PickleMachine(limits: fuzzLimits)
            var reader = ByteReader(raw, entry: "fuzz")
            if let root = try? machine.run(&reader) {
                var finder = StructureFinder(machine: machine, limits: fuzzLimits)
                _ = try? finder.find(root)
                _ = finder.render(root, top: true)
            }
        }
    default:
        let block = payload.withUnsafeBytes { ByteBlock(copying: $0) }
        if let archive = try? ZipArchive(block: block, limits: fuzzLimits) {
            let ledger = CopyLedger(fileSize: block.count, limits: fuzzLimits, file: nil)
            for entry in archive.entries {
                if let (b, r) = try? archive.contents(of: entry, ledger: ledger) {
                    precondition(r.lowerBound >= 0 && r.upperBound <= b.count, "entry range escapes its block")
                }
            }
            precondition(ledger.charged <= ledger.budget, "inflated entries exceed the copy budget")
        }
    }
    return 0
}
