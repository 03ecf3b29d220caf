module Bake.Core.Tests.SoftTargetFigureTests

open System
open System.IO
open Expecto
open SkiaSharp
open Bake.Core
open Bake.Core.Data
open Bake.Core.Reporting
open Bake.Core.Tests.TestUtil
open Bake.Core.Tests.Fixtures

/// A copy of the fixture run whose config.yaml has the overrides applied (None: no config.yaml at all).
let private copyRun (dir: string) (overrides: string list option) =
    let source = trainedRun.Value
    for file in Directory.GetFiles(source, "*", SearchOption.AllDirectories) do
        let target = Path.Combine(dir, Path.GetRelativePath(source, file))
        Directory.CreateDirectory(Path.GetDirectoryName target) |> ignore
        File.Copy(file, target)
    let config = Path.Combine(dir, "config.yaml")
    match overrides with
    | Some overrides -> File.WriteAllText(config, Configs.toYaml (Configs.load (config, overrides)))
    | None -> File.Delete config
    dir

let private probabilities (scores: ClassScore[]) = scores |> Array.map (fun s -> s.Label, Math.Round(s.Probability, 6))

[<Tests>]
let tests =
    testSequenced <| testList "SoftTargetFigure" [
        test "the panels are the batch's first images with their labels, pixels and sorted top-3 soft targets" {
            let sample = SoftTargetFigure.compute (trainedRun.Value, None, 5, 7)
            let dataset = Datasets.embedded ()
            Expect.equal sample.BatchSize 16 "the run's batch: 8 anchors × (M = 1 + 1)"
            Expect.equal sample.IntraImages 1 "the run's M"
            Expect.equal sample.Options.Omega 0.5 "the run's ω"
            Expect.stringContains sample.SettingsSource "config.yaml" "settings from the run's config"
            Expect.hasLength sample.Panels 5 "five panels"
            // Sampled from the run's own training images (its TRAIN.PER_CLASS selection), indexed in the training split.
            let run = (RunDirectory.tryConfiguration trainedRun.Value).Value
            let kept = Setup.trainingIndices run.Settings dataset
            let batch = (Sampling.bakeBatches (Array.map (fun i -> dataset.Train.Labels[i]) kept, 8, 1, 7, 0))[0]
            Expect.sequenceEqual (sample.Panels |> List.map (fun p -> p.Index)) (Array.truncate 5 batch |> Array.map (fun i -> kept[i])) "the sampler's first images of the run's training set"
            for panel in sample.Panels do
                Expect.equal panel.Label dataset.Train.Labels[panel.Index] "label"
                Expect.equal panel.LabelName dataset.Classes[panel.Label] "label name"
                Expect.sequenceEqual panel.Pixels (DataTestUtil.loadBytes dataset.Train [| panel.Index |]) "the image's pixels"
                Expect.hasLength panel.Target 3 "top-3"
                let ps = panel.Target |> Array.map (fun s -> s.Probability)
                Expect.isTrue (ps = Array.sortDescending ps && Array.sum ps <= 1.0 + 1e-6 && ps[2] > 0.0) $"sorted probabilities {ps}"
        }

        test "ω and M come from the run's config: ω = 0 gives the model's own predictions as targets" {
            withTempDir (fun dir ->
                let run = copyRun dir (Some [ "TRAIN.OMEGA=0.0"; "TRAIN.INTRA_IMGS=3" ])
                let sample = SoftTargetFigure.compute (run, None, 8, 1)
                Expect.equal sample.Options.Omega 0.0 "ω"
                Expect.equal sample.IntraImages 3 "M"
                Expect.equal sample.BatchSize 16 "4 anchors × 4"
                for panel in sample.Panels do
                    Expect.sequenceEqual (probabilities panel.Target) (probabilities panel.Own) "Q = P at ω = 0"
                let sample = SoftTargetFigure.compute (copyRun (Path.Combine(dir, "b")) (Some []), None, 8, 1)
                Expect.isFalse (sample.Panels |> List.forall (fun p -> probabilities p.Target = probabilities p.Own)) "at ω = 0.5 Q ≠ P")
        }

        test "without config.yaml the paper's defaults are used and the dataset must be given" {
            withTempDir (fun dir ->
                let run = copyRun dir None
                let error = throwsWith<UsageException> (fun () -> SoftTargetFigure.compute (run, None, 8, 1) |> ignore)
                Expect.stringContains error.Message "name the dataset to sample from" "says what to do"
                Expect.equal error.Parameter "dataset" "names the parameter (the command line adds its flag)"
                let sample = SoftTargetFigure.compute (run, Some "embedded", 8, 1)
                Expect.equal (sample.IntraImages, sample.BatchSize) (1, 128) "M = 1, batch 128"
                Expect.stringContains sample.SettingsSource "paper's defaults" "says so")
        }

        test "the PNG decodes, has the grid's size, is not blank and shows each image" {
            withTempDir (fun dir ->
                let out = Path.Combine(dir, "figure.png")
                let sample = SoftTargetFigure.render (trainedRun.Value, None, 6, 1, out)
                use bitmap = SKBitmap.Decode out
                Expect.isNotNull bitmap "decodes"
                Expect.equal (bitmap.Width, bitmap.Height) (SoftTargetFigure.size 6) "4 columns × 2 rows"
                Expect.equal (SoftTargetFigure.size 6) (4 * SoftTargetFigure.TileWidth, SoftTargetFigure.TitleHeight + 2 * SoftTargetFigure.TileHeight) "size"
                let distinct = bitmap.Pixels |> Array.distinct |> Array.length
                Expect.isGreaterThan distinct 50 $"not blank ({distinct} distinct colours)"
                // The 28-pixel image is scaled ×128/28 with nearest-neighbour sampling into the tile at (12, 16).
                sample.Panels
                |> List.iteri (fun i panel ->
                    let left = (i % 4) * SoftTargetFigure.TileWidth + 12
                    let top = SoftTargetFigure.TitleHeight + (i / 4) * SoftTargetFigure.TileHeight + 16
                    for sy, sx in [ 3, 5; 14, 14; 20, 9 ] do
                        let pixel = bitmap.GetPixel(left + (sx * 128 + 64) / 28, top + (sy * 128 + 64) / 28)
                        let expected = panel.Pixels[sy * 28 + sx]
                        Expect.isLessThanOrEqual (abs (int pixel.Red - int expected)) 1 $"panel {i}, image pixel ({sx}, {sy})"))
        }

        test "bake soft-targets writes the figure and prints each image's targets; mistakes exit 2 or 1" {
            withTempDir (fun dir ->
                let run = trainedRun.Value
                let out = Path.Combine(dir, "st.png")
                let code, stdout, _ = bake [ "soft-targets"; "--checkpoint"; run; "--count"; "3"; "--out"; out ]
                Expect.equal code 0 "exit 0"
                Expect.stringContains stdout $"wrote {out}: soft targets of 3 images of a BAKE batch of 16" "what was drawn"
                Expect.equal (stdout.Split(" GT ").Length - 1) 3 "one line per image"
                Expect.isTrue (File.Exists out) "the figure"
                // An image folder of three classes, two 28×28 images each per split.
                let other = Path.Combine(dir, "three-classes")
                for split in [ "train"; "test" ] do
                    for c in [ "a"; "b"; "c" ] do
                        for i in 0 .. 1 do
                            use image = TorchSharp.torch.randint(0L, 256L, [| 1L; 28L; 28L |], dtype = TorchSharp.torch.uint8)
                            ImageFolder.savePng (Path.Combine(other, split, c, $"{i}.png"), image)
                expectExit 0 [ "soft-targets"; "--help" ] "Example:\n  bake soft-targets --checkpoint"
                expectExit 2 [ "soft-targets"; "--checkpoint"; run ] "missing argument '--out'"
                expectExit 2 [ "soft-targets"; "--checkpoint"; run; "--out"; Path.Combine(dir, "st.jpg") ] "the figure is a PNG file"
                expectExit 2 [ "soft-targets"; "--checkpoint"; run; "--count"; "0"; "--out"; out ] "count 0: expected at least 1 image (--count)"
                expectExit 2 [ "soft-targets"; "--checkpoint"; run; "--dataset"; "imagenet-22k"; "--out"; out ] "unknown dataset 'imagenet-22k'"
                expectExit 1 [ "soft-targets"; "--checkpoint"; dir; "--out"; out ] "no Bake checkpoint"
                expectExit 1 [ "soft-targets"; "--checkpoint"; run; "--dataset"; other; "--out"; out ] "has 3 classes but the checkpoint"
                expectExit 1 [ "soft-targets"; "--checkpoint"; run; "--out"; "/proc/bake-cannot-write.png" ] "cannot write /proc/bake-cannot-write.png")
        }
    ]
