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

/// Part of an archive in ../shared/datasets (development and CI only), extracted on first use into a temporary
/// folder deleted when the test process exits: the folder that holds its train/ (at the archive's top level or under
/// one folder), or None when the archive is absent.
let private sharedSubset (archive: string) (members: string) : Lazy<string option> =
    lazy (
        let path = Path.GetFullPath(Path.Combine(TestUtil.repoRoot, "..", "shared", "datasets", archive))
        if not (File.Exists path) then None
        else
            let stem = archive.Replace(".tar.gz", "")
            let target = Path.Combine(Path.GetTempPath(), $"bake-tests-{stem}-{Environment.ProcessId}")
            Directory.CreateDirectory target |> ignore
            let tar = Diagnostics.ProcessStartInfo("tar", $"-xzf \"{path}\" -C \"{target}\" --wildcards {members}")
            use p = Diagnostics.Process.Start tar
            p.WaitForExit()
            if p.ExitCode <> 0 then failwithf "tar exited with %d extracting %s" p.ExitCode path
            AppDomain.CurrentDomain.ProcessExit.Add(fun _ -> try Directory.Delete(target, true) with _ -> ())
            if Directory.Exists(Path.Combine(target, "train")) then Some target
            else Directory.GetDirectories target |> Array.tryFind (fun d -> Directory.Exists(Path.Combine(d, "train"))))

/// The extracted subset, or None with the reason printed.
let private orSkip (archive: string) (what: string) (subset: Lazy<string option>) : string option =
    match subset.Force() with
    | Some root -> Some root
    | None ->
        printfn "skipped: ../shared/datasets/%s is absent, so the tests on %s do not run" archive what
        None

/// Images 0000–0019 of every class, both splits.
let private cifarJpeg = sharedSubset "cifar10-jpeg.tar.gz" "\"*/00[01][0-9].jpg\""

/// The extracted CIFAR-10 JPEG subset (../shared/datasets/cifar10-jpeg.tar.gz), or None with the reason printed.
let cifarJpegFolder () : string option = orSkip "cifar10-jpeg.tar.gz" "real CIFAR-10 JPEGs" cifarJpeg

/// wnids.txt, words.txt, the whole val/ split and 2 training images per class.
let private tinyImageNet32 =
    sharedSubset "tinyimagenet32.tar.gz" "wnids.txt words.txt \"val/*\" \"train/*/images/*_0.JPEG\" \"train/*/images/*_1.JPEG\""

/// The extracted TinyImageNet-32 subset (../shared/datasets/tinyimagenet32.tar.gz), or None with the reason printed.
let tinyImageNet32Folder () : string option = orSkip "tinyimagenet32.tar.gz" "the real TinyImageNet-32" tinyImageNet32
