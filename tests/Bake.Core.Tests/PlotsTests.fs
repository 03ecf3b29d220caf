module Bake.Core.Tests.PlotsTests

open System
open System.Globalization
open System.IO
open Expecto
open SkiaSharp
open Bake.Core
open Bake.Core.Reporting
open Bake.Core.Tests.TestUtil

let private invariant (v: float) = v.ToString("R", CultureInfo.InvariantCulture)

/// Writes runDir/summary.csv in the engine's format: a cosine learning rate, decaying loss terms and rising
/// accuracies that level off at <paramref name="peak"/> percent; test columns are NaN where <paramref name="testEvery"/>
/// skips an epoch.
let writeSummary (root: string) (name: string) (terms: string list) (epochs: int) (peak: float) (testEvery: int) =
    let dir = Path.Combine(root, name)
    Directory.CreateDirectory dir |> ignore
    let header =
        [ "epoch"; "iterations"; "lr"; "train_loss" ] @ (terms |> List.map (fun t -> "train_" + t))
        @ [ "train_top1"; "test_top1"; "test_top5"; "test_nll"; "test_ece"; "seconds" ]
    let rows =
        [ for epoch in 1..epochs ->
            let e = float epoch
            let lr = 0.05 * (1.0 + cos (Math.PI * (e - 1.0) / float epochs))
            let termValues = terms |> List.mapi (fun i _ -> (2.0 / float (i + 1)) * exp (-e / 6.0) + 0.05)
            let tested = epoch % testEvery = 0
            let test v = if tested then v else nan
            let top1 = peak * (1.0 - exp (-e / 5.0))
            [ e; e * 390.0; lr; List.sum termValues ] @ termValues
            @ [ min 100.0 (top1 + 8.0); test top1; test (min 100.0 (top1 + 20.0)); test (3.0 * exp (-e / 8.0)); test 0.05; 31.5 ] ]
    let lines = (String.concat "," header) :: (rows |> List.map (List.map invariant >> String.concat ","))
    File.WriteAllText(Path.Combine(dir, Summary.FileName), String.concat "\n" lines + "\n")
    dir

let pngSignature = [| 0x89uy; 0x50uy; 0x4Euy; 0x47uy; 0x0Duy; 0x0Auy; 0x1Auy; 0x0Auy |]

/// Checks a PNG file: signature, IHDR size, decodability, and that it is not blank (many distinct colours);
/// returns a function counting the pixels close to a colour.
/// A PNG's width × height as its IHDR chunk (the first, after the signature) declares them.
let pngSize (bytes: byte[]) : int * int =
    Expect.equal (Text.Encoding.ASCII.GetString(bytes, 12, 4)) "IHDR" "IHDR first"
    let bigEndian (offset: int) = (int bytes[offset] <<< 24) ||| (int bytes[offset + 1] <<< 16) ||| (int bytes[offset + 2] <<< 8) ||| int bytes[offset + 3]
    bigEndian 16, bigEndian 20

let checkPng (path: string) : ScottPlot.Color -> int =
    let bytes = File.ReadAllBytes path
    Expect.sequenceEqual bytes[0..7] pngSignature $"{path}: PNG signature"
    Expect.equal (pngSize bytes) (Plots.Width, Plots.Height) "IHDR width × height"
    use bitmap = SKBitmap.Decode bytes
    Expect.isNotNull bitmap "decodes"
    Expect.equal (bitmap.Width, bitmap.Height) (Plots.Width, Plots.Height) "decoded size"
    let pixels = bitmap.Pixels
    let distinct = pixels |> Array.distinct |> Array.length
    Expect.isGreaterThan distinct 50 $"{path}: not blank ({distinct} distinct colours)"
    fun (color: ScottPlot.Color) ->
        pixels |> Array.sumBy (fun p ->
            if abs (int p.Red - int color.R) + abs (int p.Green - int color.G) + abs (int p.Blue - int color.B) < 24 then 1 else 0)

let palette = ScottPlot.Palettes.Category10()

/// Enough pixels of a curve's colour that a curve (not just a legend swatch) was drawn.
let expectCurve (count: ScottPlot.Color -> int) (color: ScottPlot.Color) (what: string) =
    let n = count color
    Expect.isGreaterThan n 400 $"{what}: {n} pixels of its colour"

let summaryError (content: string) : string =
    withTempDir (fun root ->
        let dir = Path.Combine(root, "run")
        Directory.CreateDirectory dir |> ignore
        let path = Path.Combine(dir, Summary.FileName)
        File.WriteAllText(path, content)
        let error = throwsWith<BakeException> (fun () -> Plots.summaryFigures dir |> ignore)
        Expect.stringContains error.Message path "names the file"
        Expect.isFalse (File.Exists(Path.Combine(dir, "loss.png"))) "no figure written"
        error.Message)

let goodHeader = "epoch,iterations,lr,train_loss,train_ce,train_kd,train_top1,test_top1,test_top5,test_nll,test_ece,seconds"

[<Tests>]
let tests =
    testList "Plots" [
        test "the summary's columns are found by name, with the loss terms in file order" {
            withTempDir (fun root ->
                let dir = writeSummary root "bake" [ "ce"; "kd" ] 6 70.0 2
                let summary = Summary.read dir
                Expect.equal summary.Name "bake" "folder name"
                Expect.equal summary.Epochs [| 1.0 .. 6.0 |] "epochs"
                Expect.equal (summary.Terms |> List.map fst) [ "ce"; "kd" ] "terms"
                Expect.isTrue (Double.IsNaN summary.TestTop1[0] && not (Double.IsNaN summary.TestTop1[1])) "NaN where not tested"
                for (_, values) in summary.Terms do
                    Expect.equal values.Length 6 "one value per epoch"
                Expect.floatClose Accuracy.veryHigh (summary.Terms |> List.sumBy (fun (_, v) -> v[2])) summary.TrainLoss[2] "terms add up to the loss")
        }

        test "summaryFigures writes loss.png and accuracy.png that show the curves" {
            withTempDir (fun root ->
                let dir = writeSummary root "bake" [ "ce"; "kd" ] 30 72.0 1
                let written = Plots.summaryFigures dir
                Expect.sequenceEqual written [| Path.Combine(dir, "loss.png"); Path.Combine(dir, "accuracy.png") |] "paths"
                let loss = checkPng written[0]
                expectCurve loss (palette.GetColor 0) "total loss"
                expectCurve loss (palette.GetColor 1) "ce term"
                expectCurve loss (palette.GetColor 2) "kd term"
                let accuracy = checkPng written[1]
                expectCurve accuracy (palette.GetColor 0) "train and test top-1")
        }

        test "a single-term loss (label smoothing) and sparse test epochs plot too" {
            withTempDir (fun root ->
                let dir = writeSummary root "ls" [ "smoothed_ce" ] 12 60.0 3
                for path in Plots.summaryFigures dir do
                    checkPng path |> ignore)
        }

        test "compareRuns overlays two runs in their own colours" {
            withTempDir (fun root ->
                let ce = writeSummary root "ce" [ "ce" ] 30 65.0 1
                let bake = writeSummary root "bake" [ "ce"; "kd" ] 30 72.0 1
                let out = Path.Combine(root, "compare.png")
                Plots.compareRuns ([ ce; bake ], out)
                let count = checkPng out
                expectCurve count (palette.GetColor 0) "first run"
                expectCurve count (palette.GetColor 1) "second run")
        }

        test "plotRuns: one run gives its two figures; several runs add the comparison" {
            withTempDir (fun root ->
                let ce = writeSummary root "ce" [ "ce" ] 5 65.0 1
                let bake = writeSummary root "bake" [ "ce"; "kd" ] 5 72.0 1
                Expect.equal (Plots.plotRuns ([ ce ], None)) [ Path.Combine(ce, "loss.png"); Path.Combine(ce, "accuracy.png") ] "one run"
                let out = Path.Combine(root, "both.png")
                let written = Plots.plotRuns ([ ce; bake ], Some out)
                Expect.equal written.Length 5 "four run figures and the comparison"
                Expect.equal (List.last written) out "comparison last"
                for path in written do
                    checkPng path |> ignore)
        }

        test "a missing column names the file, line 1 and the column" {
            let content = goodHeader.Replace(",test_top1,", ",") + "\n" + "1,390,0.1,2.5,2,0.5,10,20,0.9,0.1,30\n"
            Expect.stringContains (summaryError content) "line 1: the header has no 'test_top1' column" "column"
        }

        test "a non-numeric cell names the file, line and column" {
            let content = goodHeader + "\n1,390,0.1,2.5,2,0.5,10,12,20,0.9,0.1,30\n2,780,0.1,abc,2,0.5,10,12,20,0.9,0.1,30\n"
            Expect.stringContains (summaryError content) "line 3, column 4: 'abc' is not a number" "cell"
        }

        test "a ragged row names its line" {
            let content = goodHeader + "\n1,390,0.1,2.5,2,0.5,10,12\n"
            Expect.stringContains (summaryError content) "line 2 has 8 columns, expected 12" "row"
        }

        test "a summary without a header is rejected" {
            Expect.stringContains (summaryError "1,390,0.1,2.5,10,12\n") "line 1: expected a header" "header"
        }

        test "a summary with a header only is rejected" {
            Expect.stringContains (summaryError (goodHeader + "\n")) "no data rows" "no rows"
        }

        test "a missing run directory or summary.csv is a BakeException naming it" {
            withTempDir (fun root ->
                let absent = Path.Combine(root, "absent")
                Expect.stringContains (throwsWith<BakeException> (fun () -> Plots.summaryFigures absent |> ignore)).Message $"{absent}: run directory not found" "directory"
                let empty = Path.Combine(root, "empty")
                Directory.CreateDirectory empty |> ignore
                Expect.stringContains (throwsWith<BakeException> (fun () -> Plots.summaryFigures empty |> ignore)).Message $"{empty}: no summary.csv" "file")
        }

        test "a text font is found exactly when the machine has TrueType fonts" {
            let fontFiles =
                Directory.Exists "/usr/share/fonts"
                && not (Seq.isEmpty (Directory.EnumerateFiles("/usr/share/fonts", "*.ttf", SearchOption.AllDirectories)))
            if OperatingSystem.IsLinux() then
                Expect.equal (Plots.textFont().IsSome) fontFiles $"font found = .ttf files under /usr/share/fonts ({Plots.textFont ()})"
        }

        test "a comparison path not ending in .png, or no run at all, is a UsageException" {
            withTempDir (fun root ->
                let run = writeSummary root "ce" [ "ce" ] 3 65.0 1
                let error = throwsWith<UsageException> (fun () -> Plots.compareRuns ([ run ], Path.Combine(root, "c.jpg")))
                Expect.stringContains error.Message "expected a path ending in .png" "png"
                throwsWith<UsageException> (fun () -> Plots.plotRuns ([ run ], Some(Path.Combine(root, "c.svg"))) |> ignore) |> ignore
                Expect.isFalse (File.Exists(Path.Combine(run, "loss.png"))) "checked before any figure is written"
                throwsWith<UsageException> (fun () -> Plots.plotRuns ([], None) |> ignore) |> ignore)
        }

        test "grouped bars: one coloured bar per series and group, a missing value draws no bar, PNG only" {
            withTempDir (fun root ->
                let path = Path.Combine(root, "bars.png")
                let groups = [| "fmnist-limited"; "cifar10-limited" |]
                Plots.groupedBars ("Δ top-1", "points", groups,
                                   [ "bake", [| 1.5; -2.0 |], [| 0.3; 0.5 |]; "cskd", [| -1.0; nan |], [| 0.2; nan |] ], path)
                let count = checkPng path
                expectCurve count (palette.GetColor 0) "both bake bars"
                expectCurve count (palette.GetColor 1) "the cskd bar"
                // The same figure with the second series' only bar missing keeps just its legend swatch.
                let sparse = Path.Combine(root, "sparse.png")
                Plots.groupedBars ("Δ top-1", "points", groups,
                                   [ "bake", [| 1.5; -2.0 |], [| 0.3; 0.5 |]; "cskd", [| nan; nan |], [| nan; nan |] ], sparse)
                let withBar, withoutBar = count (palette.GetColor 1), (checkPng sparse) (palette.GetColor 1)
                Expect.isLessThan withoutBar (withBar / 4) $"no bar for NaN ({withoutBar} vs {withBar} pixels)"
                let error = throwsWith<UsageException> (fun () -> Plots.groupedBars ("t", "y", groups, [], Path.Combine(root, "b.svg")))
                Expect.stringContains error.Message "expected a path ending in .png" "png only")
        }
        test "a grouped bar chart with many long group names is wider, so the names do not run together" {
            withTempDir (fun root ->
                let path = Path.Combine(root, "wide.png")
                let groups = [| for i in 1 .. 7 -> $"tin32-limited-resnet{i}0" |]
                Plots.groupedBars ("Δ top-1", "points", groups, [ "bake", Array.create 7 1.0, Array.create 7 0.1 ], path)
                let width, _ = pngSize (File.ReadAllBytes path)
                Expect.isGreaterThan width Plots.Width "wider than the default figure"
                Expect.isGreaterThanOrEqual (width / groups.Length) 150 $"{width} px for {groups.Length} groups")
        }
    ]

[<Tests>]
let cliTests =
    testSequenced <| testList "bake plot" [
        test "two runs: per-run figures and the comparison, exit 0" {
            withTempDir (fun root ->
                let ce = writeSummary root "ce" [ "ce" ] 4 65.0 1
                let bake = writeSummary root "bake" [ "ce"; "kd" ] 4 72.0 1
                let out = Path.Combine(root, "c.png")
                expectExit 0 [ "plot"; ce; bake; "--out"; out ] $"wrote {out}"
                for path in [ out; Path.Combine(ce, "loss.png"); Path.Combine(bake, "accuracy.png") ] do
                    checkPng path |> ignore)
        }

        test "mistakes: no run (2), a bad --out (2), a malformed summary (1)" {
            withTempDir (fun root ->
                expectExit 2 [ "plot" ] "missing argument"
                let run = writeSummary root "ce" [ "ce" ] 3 65.0 1
                expectExit 2 [ "plot"; run; "--out"; Path.Combine(root, "c.pdf") ] "ending in .png"
                File.WriteAllText(Path.Combine(run, Summary.FileName), "epoch,lr\n1,0.1\n")
                expectExit 1 [ "plot"; run ] "the header has no 'iterations' column")
        }

        test "--help shows an example" {
            expectExit 0 [ "plot"; "--help" ] "bake plot runs/ce runs/bake --out"
        }
    ]
