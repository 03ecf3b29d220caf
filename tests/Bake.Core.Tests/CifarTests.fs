module Bake.Core.Tests.CifarTests

open System
open System.IO
open System.Text
open Expecto
open Bake.Core
open Bake.Core.Data
open Bake.Core.Tests.TestUtil
open Bake.Core.Tests.DataTestUtil

/// Emits pickle bytes the way the official files were written: Python 2 cPickle protocol 2 (byte-string keys,
/// GLOBAL, BINSTRING data) or Python 3 protocol 4 (str keys, STACK_GLOBAL, BINBYTES, FRAME, MEMOIZE).
type PickleWriter(python2: bool) =
    let out = new MemoryStream()
    member _.Byte(b: int) = out.WriteByte(byte b)
    member w.Raw(bytes: byte[]) = out.Write(bytes, 0, bytes.Length)
    member w.Int32(v: int) = w.Raw(BitConverter.GetBytes v)
    member w.Memo() = if python2 then (w.Byte(int 'q'); w.Byte 1) else w.Byte 0x94
    member w.Str(s: string) =
        let b = Encoding.UTF8.GetBytes s
        if python2 then (w.Byte(int 'U'); w.Byte b.Length; w.Raw b) else (w.Byte 0x8c; w.Byte b.Length; w.Raw b)
    member w.Global(m: string, n: string) =
        if python2 then (w.Byte(int 'c'); w.Raw(Encoding.ASCII.GetBytes(m + "\n" + n + "\n")))
        else (w.Str m; w.Str n; w.Byte 0x93)
        w.Memo()
    member w.Bytes(b: byte[]) =
        if python2 then (w.Byte(int 'T'); w.Int32 b.Length; w.Raw b) else (w.Byte(int 'B'); w.Int32 b.Length; w.Raw b)
    member w.Int(v: int) = if v >= 0 && v < 256 then (w.Byte(int 'K'); w.Byte v) else (w.Byte(int 'J'); w.Int32 v)
    member w.Ints(values: int[]) =
        w.Byte(int ']')
        w.Memo()
        w.Byte(int '(')
        for v in values do w.Int v
        w.Byte(int 'e')
    member w.Strs(values: string[]) =
        w.Byte(int ']')
        w.Byte(int '(')
        for v in values do w.Str v
        w.Byte(int 'e')
    /// numpy's ndarray.__reduce__: _reconstruct(ndarray, (0,), b'b') then BUILD (1, shape, dtype, False, data).
    member w.Ndarray(shape: int[], data: byte[]) =
        w.Global("numpy.core.multiarray", "_reconstruct")
        w.Global("numpy", "ndarray")
        w.Int 0
        w.Byte 0x85
        if python2 then w.Str "b" else (w.Byte(int 'C'); w.Byte 1; w.Byte(int 'b'))
        w.Byte 0x87
        w.Byte(int 'R')
        w.Memo()
        w.Byte(int '(')
        w.Int 1
        w.Byte(int '(')
        for d in shape do w.Int d
        w.Byte(int 't')
        w.Global("numpy", "dtype")
        w.Str "u1"
        w.Byte 0x89
        w.Byte 0x88
        w.Byte 0x87
        w.Byte(int 'R')
        w.Memo()
        w.Byte(int '(')
        w.Int 3
        w.Str "|"
        for _ in 1..3 do w.Byte(int 'N')
        w.Int -1
        w.Int -1
        w.Int 0
        w.Byte(int 't')
        w.Byte(int 'b')
        w.Byte 0x89
        w.Bytes data
        w.Byte(int 't')
        w.Byte(int 'b')
    member w.Dict(entries: (string * (PickleWriter -> unit)) list) =
        w.Byte 0x80
        w.Byte(if python2 then 2 else 4)
        if not python2 then (w.Byte 0x95; w.Raw(BitConverter.GetBytes 0L)) // a FRAME opcode (its length is only a hint)
        w.Byte(int '}')
        w.Memo()
        w.Byte(int '(')
        for key, value in entries do
            w.Str key
            value w
        w.Byte(int 'u')
        w.Byte(int '.')
        out.ToArray()

/// A CIFAR batch dict: data (n×3072 uint8), labels, filenames, batch_label (CIFAR-100: fine and coarse labels).
let batchPickle (python2: bool) (pixels: byte[]) (labels: int[]) (coarse: int[] option) =
    let n = labels.Length
    PickleWriter(python2).Dict [
        yield "batch_label", (fun w -> w.Str "training batch 1 of 5")
        match coarse with
        | None -> yield "labels", (fun w -> w.Ints labels)
        | Some c ->
            yield "fine_labels", (fun w -> w.Ints labels)
            yield "coarse_labels", (fun w -> w.Ints c)
        yield "data", (fun w -> w.Ndarray([| n; 3072 |], pixels))
        yield "filenames", (fun w -> w.Strs(Array.init n (fun i -> $"image_{i}.png")))
    ]

/// Binary records: [coarse] label, 3072 pixels.
let binaryRecords (pixels: byte[]) (labels: int[]) (coarse: int[] option) =
    labels
    |> Array.mapi (fun i label ->
        Array.concat [ (match coarse with Some c -> [| byte c[i] |] | None -> [||]); [| byte label |]; pixels[i * 3072 .. (i + 1) * 3072 - 1] ])
    |> Array.concat

let labelsOf n classes seed = let r = Random seed in Array.init n (fun _ -> r.Next classes)

/// Writes a CIFAR-10 binary folder: two training batches of 6 and a test batch of 4.
let writeCifar10Binary (folder: string) =
    Directory.CreateDirectory folder |> ignore
    for k, seed in [ 1, 10; 2, 11 ] do
        File.WriteAllBytes(Path.Combine(folder, $"data_batch_{k}.bin"), binaryRecords (pixels seed (6 * 3072)) (labelsOf 6 10 seed) None)
    File.WriteAllBytes(Path.Combine(folder, "test_batch.bin"), binaryRecords (pixels 12 (4 * 3072)) (labelsOf 4 10 12) None)

let writeCifar10Pickle (python2: bool) (folder: string) =
    Directory.CreateDirectory folder |> ignore
    for k, seed in [ 1, 10; 2, 11 ] do
        File.WriteAllBytes(Path.Combine(folder, $"data_batch_{k}"), batchPickle python2 (pixels seed (6 * 3072)) (labelsOf 6 10 seed) None)
    File.WriteAllBytes(Path.Combine(folder, "test_batch"), batchPickle python2 (pixels 12 (4 * 3072)) (labelsOf 4 10 12) None)
    File.WriteAllBytes(Path.Combine(folder, "batches.meta"), PickleWriter(python2).Dict [ "label_names", (fun w -> w.Strs Cifar.cifar10Classes); "num_vis", (fun w -> w.Int 3072) ])

/// Checks a CIFAR-10 dataset written by the writers above.
let expectCifar10 (data: Dataset) =
    Expect.equal data.Train.Count 12 "two batches of 6"
    Expect.equal data.Test.Count 4 "test batch"
    Expect.sequenceEqual data.ImageShape [| 3; 32; 32 |] "3×32×32"
    Expect.sequenceEqual data.Train.Labels (Array.append (labelsOf 6 10 10) (labelsOf 6 10 11)) "labels in batch order"
    Expect.sequenceEqual (loadBytes data.Train [| 6 .. 11 |]) (pixels 11 (6 * 3072)) "second batch's pixels"
    Expect.sequenceEqual (loadBytes data.Test [| 0 .. 3 |]) (pixels 12 (4 * 3072)) "test pixels"
    Expect.equal data.Classes Cifar.cifar10Classes "class names"

[<Tests>]
let tests =
    testList "Data.Cifar" [
        test "the built-in class lists have 100 fine and 20 coarse names" {
            Expect.equal Cifar.cifar100Classes.Length 100 "fine"
            Expect.equal (Array.distinct Cifar.cifar100Classes).Length 100 "distinct"
            Expect.equal Cifar.cifar100CoarseClasses.Length 20 "coarse"
            Expect.equal (Array.sort Cifar.cifar100Classes) Cifar.cifar100Classes "alphabetical, like the meta file"
        }

        test "CIFAR-10 binary: batches concatenated in order, found inside cifar-10-batches-bin/" {
            use dir = new TempDir()
            writeCifar10Binary (dir.File "cifar-10-batches-bin")
            expectCifar10 (Datasets.loadFolder dir.Path None ImageFolder.defaultOptions)
            Expect.equal (Datasets.detect dir.Path None |> Option.map fst) (Some DataFormat.Cifar10Binary) "detected"
        }

        test "CIFAR-10 Python pickles as written by Python 2 (cPickle, protocol 2) and Python 3 (protocol 4)" {
            for python2 in [ true; false ] do
                use dir = new TempDir()
                writeCifar10Pickle python2 (dir.File "cifar-10-batches-py")
                let data = Datasets.loadFolder dir.Path None ImageFolder.defaultOptions
                expectCifar10 data
                Expect.stringContains data.Source "cifar10-pickle" "format"
        }

        test "CIFAR-100 binary and pickle: fine labels, coarse labels and names" {
            use dir = new TempDir()
            let trainPixels, testPixels = pixels 20 (5 * 3072), pixels 21 (3 * 3072)
            let fine, coarse = labelsOf 5 100 20, labelsOf 5 20 21
            let testFine, testCoarse = labelsOf 3 100 22, labelsOf 3 20 23
            let bin = dir.File "cifar-100-binary"
            Directory.CreateDirectory bin |> ignore
            File.WriteAllBytes(Path.Combine(bin, "train.bin"), binaryRecords trainPixels fine (Some coarse))
            File.WriteAllBytes(Path.Combine(bin, "test.bin"), binaryRecords testPixels testFine (Some testCoarse))
            File.WriteAllLines(Path.Combine(bin, "coarse_label_names.txt"), Array.init 20 (fun i -> $"super{i}"))
            let py = dir.File "cifar-100-python"
            Directory.CreateDirectory py |> ignore
            File.WriteAllBytes(Path.Combine(py, "train"), batchPickle true trainPixels fine (Some coarse))
            File.WriteAllBytes(Path.Combine(py, "test"), batchPickle true testPixels testFine (Some testCoarse))
            File.WriteAllBytes(
                Path.Combine(py, "meta"),
                PickleWriter(true).Dict [ "fine_label_names", (fun w -> w.Strs Cifar.cifar100Classes); "coarse_label_names", (fun w -> w.Strs(Array.init 20 (fun i -> $"super{i}"))) ])
            for folder in [ bin; py ] do
                let data = Datasets.loadFolder folder None ImageFolder.defaultOptions
                Expect.equal data.Classes.Length 100 "100 classes"
                Expect.sequenceEqual data.Train.Labels fine "fine labels"
                Expect.sequenceEqual data.Test.Labels testFine "test fine labels"
                Expect.sequenceEqual (loadBytes data.Train [| 0 .. 4 |]) trainPixels "pixels"
                let coarseSplit = data.Train :?> ICoarseLabelled
                Expect.sequenceEqual coarseSplit.CoarseLabels coarse "coarse labels"
                Expect.equal coarseSplit.CoarseClasses[7] "super7" "coarse names from the meta file"
                Expect.stringContains (Datasets.describe data) "coarse classes 20" "info shows the coarse classes"
        }

        test "a truncated binary batch names the file, the record and its offset" {
            use dir = new TempDir()
            writeCifar10Binary dir.Path
            let path = dir.File "data_batch_2.bin"
            File.WriteAllBytes(path, (File.ReadAllBytes path)[.. 3 * 3073 + 99])
            expectError (fun () -> Cifar.loadCifar10Binary dir.Path |> ignore) [ "data_batch_2.bin"; "record 3 at offset 9219 is cut short" ]
        }

        test "a binary label outside the class range names the record and offset" {
            use dir = new TempDir()
            writeCifar10Binary dir.Path
            let path = dir.File "test_batch.bin"
            let bytes = File.ReadAllBytes path
            bytes[2 * 3073] <- 12uy
            File.WriteAllBytes(path, bytes)
            expectError (fun () -> Cifar.loadCifar10Binary dir.Path |> ignore) [ "test_batch.bin"; "record 2 (offset 6146)"; "label 12"; "[0, 10)" ]
        }

        test "a pickled label outside the class range names the entry" {
            use dir = new TempDir()
            writeCifar10Pickle false dir.Path
            File.WriteAllBytes(dir.File "test_batch", batchPickle false (pixels 12 (4 * 3072)) [| 1; 2; 3; 10 |] None)
            expectError (fun () -> Cifar.loadCifar10Pickle dir.Path |> ignore) [ "test_batch"; "entry 'labels'[3]"; "label 10" ]
        }

        test "a truncated pickle names the file and the offset" {
            use dir = new TempDir()
            writeCifar10Pickle true dir.Path
            let path = dir.File "data_batch_1"
            File.WriteAllBytes(path, (File.ReadAllBytes path)[.. 5000])
            expectError (fun () -> Cifar.loadCifar10Pickle dir.Path |> ignore) [ "data_batch_1"; "truncated"; "offset" ]
        }

        test "a pickle without labels, or not a pickle at all, is rejected with what is missing" {
            use dir = new TempDir()
            writeCifar10Pickle false dir.Path
            File.WriteAllBytes(dir.File "data_batch_1", PickleWriter(false).Dict [ "data", (fun w -> w.Ndarray([| 1; 3072 |], pixels 1 3072)) ])
            expectError (fun () -> Cifar.loadCifar10Pickle dir.Path |> ignore) [ "data_batch_1"; "no 'labels' entry"; "its keys: data" ]
            File.WriteAllBytes(dir.File "data_batch_1", Encoding.ASCII.GetBytes "<html>not found</html>")
            expectError (fun () -> Cifar.loadCifar10Pickle dir.Path |> ignore) [ "data_batch_1"; "unsupported opcode 0x3c"; "offset 0" ]
        }

        test "a missing test split is named" {
            use dir = new TempDir()
            writeCifar10Binary dir.Path
            File.Delete(dir.File "test_batch.bin")
            expectError (fun () -> Cifar.loadCifar10Binary dir.Path |> ignore) [ "test_batch.bin"; "missing split file" ]
        }
    ]
