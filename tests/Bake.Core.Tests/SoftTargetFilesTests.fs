module Bake.Core.Tests.SoftTargetFilesTests

open System
open System.IO
open Expecto
open FsCheck.FSharp
open TorchSharp
open Bake.Core
open Bake.Core.Interop
open Bake.Core.Tests.TestUtil
open Bake.Core.Tests.Generators

let config = { FsCheckConfig.defaultConfig with maxTest = 25 }

/// Writes a generated batch's features and logits in the given extension and precision; returns both paths.
let writeBatch (dir: string) (extension: string) (precision: Precision) (batch: Batch) =
    let features = Path.Combine(dir, "features" + extension)
    let logits = Path.Combine(dir, "logits" + extension)
    scoped (fun () ->
        MatrixFiles.write (features, tensor precision batch.N batch.D batch.Features)
        MatrixFiles.write (logits, tensor precision batch.N batch.K batch.Logits))
    features, logits

/// The core function's targets, the file it wrote, and Propagation.softTargets on the tensors read from the inputs.
let checkAgainstCore (dir: string) (features: string, logits: string) (outExtension: string) (options: BakeOptions) =
    scoped (fun () ->
        let out = Path.Combine(dir, "targets" + outExtension)
        let targets = SoftTargetFiles.compute (features, logits, options, out)
        let expected = Propagation.softTargets (MatrixFiles.read features, MatrixFiles.read logits, options)
        Expect.equal targets.dtype expected.dtype "dtype of Q follows the logits"
        expectClose 0.0 "returned Q = Propagation.softTargets" targets expected
        let written = MatrixFiles.read out
        // CSV holds float32 values exactly but reads them as float64.
        expectClose 0.0 "written Q = returned Q" (written.to_type targets.dtype) targets)

let forms = [ "closed form", ClosedForm; "one step", OneStep; "3 steps", Steps 3 ]

let optionsOf (batch: Batch) form =
    { BakeOptions.Default with Omega = batch.Omega; Temperature = batch.Temperature; Propagation = form }

/// The exception compute throws for these inputs, after checking that no output file appeared.
let failure<'E when 'E :> exn> (dir: string) (features: string) (logits: string) (options: BakeOptions) (out: string) : string =
    let out = Path.Combine(dir, out)
    let error = throwsWith<'E> (fun () -> scoped (fun () -> SoftTargetFiles.compute (features, logits, options, out) |> ignore))
    Expect.isFalse (File.Exists out) "no output written"
    error.Message

let writeCsv (dir: string) (name: string) (text: string) =
    let path = Path.Combine(dir, name)
    File.WriteAllText(path, text)
    path

let threeSamples (dir: string) =
    writeCsv dir "f.csv" "1,0\n0.9,0.1\n0,1\n", writeCsv dir "z.csv" "2,0,1\n1,1,0\n0,3,0\n"

[<Tests>]
let tests =
    testList "SoftTargetFiles" [
        testList "targets from files equal Propagation.softTargets on the same tensors" [
            for formName, form in forms do
                for extension, precision, outExtension in
                    [ ".csv", float64, ".csv"; ".npy", float64, ".npy"; ".npy", float32, ".npy"; ".npy", float32, ".csv" ] ->
                    testPropertyWithConfig config $"{formName}, {precision.Name} {extension} in, {outExtension} out" (Prop.forAll batches (fun batch ->
                        withTempDir (fun dir ->
                            checkAgainstCore dir (writeBatch dir extension precision batch) outExtension (optionsOf batch form))))
        ]

        test "features and logits may come in different formats" {
            withTempDir (fun dir ->
                let features, _ = threeSamples dir
                let logits = Path.Combine(repoRoot, "tests", "fixtures", "npy", "f8_3x4.npy")
                checkAgainstCore dir (features, logits) ".npy" BakeOptions.Default)
        }

        test "ω = 1 is a UsageException before any file is read" {
            withTempDir (fun dir ->
                let message = failure<UsageException> dir "absent.csv" "absent.npy" { BakeOptions.Default with Omega = 1.0 } "q.csv"
                Expect.stringContains message "Omega = 1 is not allowed" "says why")
        }

        test "invalid τ and step counts are UsageExceptions listing every problem" {
            withTempDir (fun dir ->
                let features, logits = threeSamples dir
                let message = failure<UsageException> dir features logits { BakeOptions.Default with Temperature = 0.0; Propagation = Steps 0 } "q.csv"
                Expect.stringContains message "Temperature = 0 is invalid" "τ"
                Expect.stringContains message "Propagation steps = 0 is invalid" "steps")
        }

        test "an unknown extension of any of the three paths is a UsageException before any file is read" {
            withTempDir (fun dir ->
                for features, logits, out in [ "f.txt", "z.csv", "q.csv"; "f.csv", "z.npz", "q.csv"; "f.csv", "z.csv", "q.json" ] do
                    let message = failure<UsageException> dir features logits BakeOptions.Default out
                    Expect.stringContains message "expected .csv or .npy" "says what is expected")
        }

        test "different row counts name both files and shapes" {
            withTempDir (fun dir ->
                let features, _ = threeSamples dir
                let logits = writeCsv dir "z2.csv" "1,2,3\n4,5,6\n"
                let message = failure<BakeException> dir features logits BakeOptions.Default "q.npy"
                Expect.stringContains message $"{features} has 3 rows (features [3×2]) but {logits} has 2 (logits [2×3])" "both files")
        }

        test "a missing input file is a BakeException naming it" {
            withTempDir (fun dir ->
                let features, _ = threeSamples dir
                let logits = Path.Combine(dir, "absent.npy")
                Expect.stringContains (failure<BakeException> dir features logits BakeOptions.Default "q.npy") $"{logits}: file not found" "names it")
        }

        test "a malformed input file is a BakeException naming file, line and column" {
            withTempDir (fun dir ->
                let _, logits = threeSamples dir
                let features = writeCsv dir "bad.csv" "1,0\n0.9,oops\n0,1\n"
                Expect.stringContains (failure<BakeException> dir features logits BakeOptions.Default "q.npy") $"{features}: line 2, column 2: 'oops'" "where")
        }

        test "an empty matrix is a BakeException" {
            withTempDir (fun dir ->
                let features = Path.Combine(repoRoot, "tests", "fixtures", "npy", "f8_0x3.npy")
                let message = failure<BakeException> dir features features BakeOptions.Default "q.npy"
                Expect.stringContains message "the features matrix [0×3] is empty" "says empty")
        }

        test "a non-finite value names the file, sample and column" {
            withTempDir (fun dir ->
                let features, _ = threeSamples dir
                let logits = writeCsv dir "nan.csv" "2,0,1\n1,1,nan\n0,inf,0\n"
                let message = failure<BakeException> dir features logits BakeOptions.Default "q.npy"
                Expect.stringContains message $"{logits}: the logits hold a non-finite value NaN at sample 2, column 3 (1-based; 2 such values)" "where")
        }

        test "an unwritable output is a BakeException and the inputs are untouched" {
            withTempDir (fun dir ->
                let features, logits = threeSamples dir
                let before = File.ReadAllText features
                // A regular file where the output's directory should be.
                File.WriteAllText(Path.Combine(dir, "blocker"), "")
                let error = throwsWith<BakeException> (fun () -> scoped (fun () -> SoftTargetFiles.compute (features, logits, BakeOptions.Default, Path.Combine(dir, "blocker", "q.npy")) |> ignore))
                Expect.stringContains error.Message "cannot write" "says it cannot write"
                Expect.equal (File.ReadAllText features) before "input unchanged")
        }
    ]

[<Tests>]
let cliTests =
    testSequenced <| testList "bake targets" [
        test "CSV in and out: the file equals the core's targets with the given ω and τ" {
            withTempDir (fun dir ->
                let features, logits = threeSamples dir
                let out = Path.Combine(dir, "q.csv")
                expectExit 0 [ "targets"; "--features"; features; "--logits"; logits; "--omega"; "0.3"; "--temperature"; "2"; "--out"; out ] "wrote soft targets [3×3]"
                scoped (fun () ->
                    let options = { BakeOptions.Default with Omega = 0.3; Temperature = 2.0 }
                    let expected = Propagation.softTargets (MatrixFiles.read features, MatrixFiles.read logits, options)
                    expectClose 0.0 "CLI output" (MatrixFiles.read out) expected))
        }

        testList ".npy in and out, each propagation flag" [
            for flags, form in [ [], ClosedForm; [ "--iterations"; "3" ], Steps 3; [ "--one-step" ], OneStep ] ->
                test (if flags.IsEmpty then "closed form" else String.concat " " flags) {
                    withTempDir (fun dir ->
                        let batch = Gen.sample 1 (batchesFrom 2) |> Seq.head
                        let features, logits = writeBatch dir ".npy" float32 batch
                        let out = Path.Combine(dir, "q.npy")
                        expectExit 0 ([ "targets"; "--features"; features; "--logits"; logits; "--out"; out ] @ flags) "wrote soft targets"
                        scoped (fun () ->
                            let options = { BakeOptions.Default with Propagation = form }
                            let written = MatrixFiles.read out
                            Expect.equal written.dtype torch.float32 "float32 logits give float32 targets"
                            expectClose 0.0 "CLI output" written (Propagation.softTargets (MatrixFiles.read features, MatrixFiles.read logits, options))))
                }
        ]

        test "--help shows the options and an example, exit 0" {
            expectExit 0 [ "targets"; "--help" ] "Example:\n  bake targets --features emb.npy"
        }

        test "argument mistakes exit with 2 and name the problem" {
            withTempDir (fun dir ->
                let features, logits = threeSamples dir
                let out = Path.Combine(dir, "q.npy")
                let common = [ "targets"; "--features"; features; "--logits"; logits ]
                expectExit 2 common "missing argument '--out'"
                expectExit 2 (common @ [ "--out"; out; "--omega"; "1" ]) "Omega = 1 is not allowed"
                expectExit 2 (common @ [ "--out"; out; "--omega"; "abc" ]) "--omega"
                expectExit 2 (common @ [ "--out"; out; "--temperature"; "-1" ]) "Temperature = -1 is invalid"
                expectExit 2 (common @ [ "--out"; out; "--iterations"; "0" ]) "Propagation steps = 0 is invalid"
                expectExit 2 (common @ [ "--out"; out; "--iterations"; "2"; "--one-step" ]) "--iterations and --one-step exclude each other"
                expectExit 2 (common @ [ "--out"; Path.Combine(dir, "q.txt") ]) "unknown matrix file extension '.txt'"
                Expect.isEmpty (Directory.GetFiles(dir, "q.*")) "nothing written")
        }

        test "bad files exit with 1 and name the file" {
            withTempDir (fun dir ->
                let features, _ = threeSamples dir
                let short = writeCsv dir "short.csv" "1,2,3\n"
                let out = Path.Combine(dir, "q.npy")
                expectExit 1 [ "targets"; "--features"; features; "--logits"; short; "--out"; out ] $"but {short} has 1 (logits [1×3])"
                let absent = Path.Combine(dir, "absent.csv")
                expectExit 1 [ "targets"; "--features"; features; "--logits"; absent; "--out"; out ] $"{absent}: file not found"
                let ragged = writeCsv dir "ragged.csv" "1,2,3\n1,2\n1,2,3\n"
                expectExit 1 [ "targets"; "--features"; features; "--logits"; ragged; "--out"; out ] "line 2 has 2 columns, expected 3"
                Expect.isFalse (File.Exists out) "nothing written")
        }
    
        test "batches: the targets of consecutive batches, each computed within its rows" {
            withTempDir (fun dir ->
                let features = writeCsv dir "f.csv" (String.concat "\n" [ for i in 0 .. 6 -> $"{i % 3},{(i * 7) % 5},1" ])
                let logits = writeCsv dir "z.csv" (String.concat "\n" [ for i in 0 .. 6 -> $"{i % 2},{(i * 3) % 4}" ])
                scoped (fun () ->
                    let out = Path.Combine(dir, "q.csv")
                    let q = SoftTargetFiles.computeBatched (features, logits, BakeOptions.Default, out, Some 3, Int64.MaxValue)
                    let f, z = MatrixFiles.read features, MatrixFiles.read logits
                    let expected =
                        torch.cat ([| for start, n in [ 0L, 3L; 3L, 3L; 6L, 1L ] -> Propagation.softTargets (f.narrow (0L, start, n), z.narrow (0L, start, n), BakeOptions.Default) |], 0L)
                    expectClose 0.0 "per-batch targets" q expected))
        }

        test "a batch that would not fit in memory is refused with the figure, before anything large is allocated" {
            withTempDir (fun dir ->
                let features = writeCsv dir "f.csv" "1,2\n3,4\n5,6\n7,8\n"
                let logits = writeCsv dir "z.csv" "1,0\n0,1\n1,1\n0,0\n"
                let error =
                    throwsWith<UsageException> (fun () ->
                        scoped (fun () -> SoftTargetFiles.computeBatched (features, logits, BakeOptions.Default, Path.Combine(dir, "q.csv"), None, 100L) |> ignore))
                Expect.stringContains error.Message "4 rows as batches of 4 need about" "the figure"
                Expect.stringContains error.Message "cut the rows into batches" "the way out"
                Expect.equal error.Parameter "batch" "the parameter (the command line adds --batch)"
                Expect.equal (SoftTargetFiles.peakBytes (10000L, 8)) 4_000_000_000L "10,000 float64 rows: about the 4.1 GB measured"
                Expect.isFalse (File.Exists(Path.Combine(dir, "q.csv"))) "nothing written")
        }
    ]
