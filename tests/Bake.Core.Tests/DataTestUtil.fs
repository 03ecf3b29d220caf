/// Helpers for the data tests: temporary folders and writers of small files in the official dataset formats.
module Bake.Core.Tests.DataTestUtil

open System
open System.IO
open System.IO.Compression
open TorchSharp
open Bake.Core.Data

/// A fresh temporary folder, deleted when disposed.
type TempDir() =
    let path = Path.Combine(Path.GetTempPath(), "bake-tests-" + Guid.NewGuid().ToString "N")
    do Directory.CreateDirectory path |> ignore
    member _.Path = path
    member _.File(name: string) = Path.Combine(path, name)
    interface IDisposable with
        member _.Dispose() = try Directory.Delete(path, true) with _ -> ()

let gzip (bytes: byte[]) : byte[] =
    use output = new MemoryStream()
    do
        use zip = new GZipStream(output, CompressionLevel.Fastest)
        zip.Write(bytes, 0, bytes.Length)
    output.ToArray()

let bigEndian (value: int) = [| byte (value >>> 24); byte (value >>> 16); byte (value >>> 8); byte value |]

/// An IDX file of unsigned bytes with the given shape and data.
let idxBytes (shape: int[]) (data: byte[]) : byte[] =
    Array.concat [ [| 0uy; 0uy; 8uy; byte shape.Length |]; Array.collect bigEndian shape; data ]

/// Runs the action, expecting a BakeException whose message contains every fragment.
let expectError (action: unit -> unit) (fragments: string list) =
    let e = TestUtil.throwsWith<Bake.Core.BakeException> action
    for fragment in fragments do
        Expecto.Expect.stringContains e.Message fragment "the message"

/// Deterministic pseudo-random image bytes.
let pixels (seed: int) (count: int) : byte[] =
    let random = Random seed
    Array.init count (fun _ -> byte (random.Next 256))

/// Writes the four standard IDX files (gzip'd or raw) of a tiny dataset: n images of h×w per split, labels i % classes.
let writeIdxDataset (folder: string) (gz: bool) (train: int) (test: int) (classes: int) : unit =
    let write name bytes = File.WriteAllBytes(Path.Combine(folder, name + (if gz then ".gz" else "")), (if gz then gzip bytes else bytes))
    for prefix, n, seed in [ "train", train, 1; "t10k", test, 2 ] do
        write $"{prefix}-images-idx3-ubyte" (idxBytes [| n; 5; 4 |] (pixels seed (n * 20)))
        write $"{prefix}-labels-idx1-ubyte" (idxBytes [| n |] (Array.init n (fun i -> byte (i % classes))))

/// The bytes of a uint8 tensor, in row-major order.
let bytesOf (t: torch.Tensor) : byte[] = t.contiguous().data<byte>().ToArray()

/// Loads the given indices of a split and returns their bytes.
let loadBytes (split: ISplit) (indices: int[]) : byte[] =
    use images = split.Load indices
    bytesOf images

/// The CIFAR-10 JPEG archive in ../shared (development and CI only), if present.
let cifarJpegArchive =
    let path = Path.GetFullPath(Path.Combine(TestUtil.repoRoot, "..", "shared", "datasets", "cifar10-jpeg.tar.gz"))
    if File.Exists path then Some path else None

let private extracted = lazy (
    match cifarJpegArchive with
    | None -> None
    | Some archive ->
        // A subset (images 0000–0019 of every class, both splits), extracted once per test run.
        let target = Path.Combine(Path.GetTempPath(), $"bake-tests-cifar10-jpeg-{Environment.ProcessId}")
        Directory.CreateDirectory target |> ignore
        let tar = Diagnostics.ProcessStartInfo("tar", $"-xzf \"{archive}\" -C \"{target}\" --wildcards \"*/00[01][0-9].jpg\"")
        use p = Diagnostics.Process.Start tar
        p.WaitForExit()
        if p.ExitCode <> 0 then failwithf "tar exited with %d extracting %s" p.ExitCode archive
        AppDomain.CurrentDomain.ProcessExit.Add(fun _ -> try Directory.Delete(target, true) with _ -> ())
        // The archive holds train/ and test/ at its top level or under one folder.
        let root =
            if Directory.Exists(Path.Combine(target, "train")) then target
            else Directory.GetDirectories target |> Array.find (fun d -> Directory.Exists(Path.Combine(d, "train")))
        Some root)

/// The extracted CIFAR-10 JPEG subset, or None with the reason printed once.
let cifarJpegFolder () : string option =
    match extracted.Force() with
    | Some root -> Some root
    | None ->
        printfn "skipped: ../shared/datasets/cifar10-jpeg.tar.gz is absent, so the tests on real CIFAR-10 JPEGs do not run"
        None

/// The 32×32 TinyImageNet archive in ../shared (development and CI only), if present.
let tinyImageNet32Archive =
    let path = Path.GetFullPath(Path.Combine(TestUtil.repoRoot, "..", "shared", "datasets", "tinyimagenet32.tar.gz"))
    if File.Exists path then Some path else None

let private extractedTiny = lazy (
    match tinyImageNet32Archive with
    | None -> None
    | Some archive ->
        // wnids.txt, words.txt, the whole val/ split and 2 training images per class, extracted once per test run.
        let target = Path.Combine(Path.GetTempPath(), $"bake-tests-tinyimagenet32-{Environment.ProcessId}")
        Directory.CreateDirectory target |> ignore
        let members = "wnids.txt words.txt \"val/*\" \"train/*/images/*_0.JPEG\" \"train/*/images/*_1.JPEG\""
        let tar = Diagnostics.ProcessStartInfo("tar", $"-xzf \"{archive}\" -C \"{target}\" --wildcards {members}")
        use p = Diagnostics.Process.Start tar
        p.WaitForExit()
        if p.ExitCode <> 0 then failwithf "tar exited with %d extracting %s" p.ExitCode archive
        AppDomain.CurrentDomain.ProcessExit.Add(fun _ -> try Directory.Delete(target, true) with _ -> ())
        Some target)

/// The extracted TinyImageNet-32 subset, or None with the reason printed.
let tinyImageNet32Folder () : string option =
    match extractedTiny.Force() with
    | Some root -> Some root
    | None ->
        printfn "skipped: ../shared/datasets/tinyimagenet32.tar.gz is absent, so the tests on the real TinyImageNet-32 do not run"
        None
