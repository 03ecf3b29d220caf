module Bake.Core.Tests.ImageFolderTests

open System.IO
open Expecto
open SkiaSharp
open Bake.Core
open Bake.Core.Data
open Bake.Core.Tests.TestUtil
open Bake.Core.Tests.DataTestUtil

/// Writes an RGB image of h×w from channel-planar bytes, as PNG (lossless) or JPEG (quality 100).
let writeImage (path: string) (h: int) (w: int) (planar: byte[]) =
    Directory.CreateDirectory(Path.GetDirectoryName path) |> ignore
    use bitmap = new SKBitmap(SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Unpremul))
    for y in 0 .. h - 1 do
        for x in 0 .. w - 1 do
            let p = y * w + x
            bitmap.SetPixel(x, y, SKColor(planar[p], planar[h * w + p], planar[2 * h * w + p], 255uy))
    let format = if path.EndsWith ".png" then SKEncodedImageFormat.Png else SKEncodedImageFormat.Jpeg
    use data = bitmap.Encode(format, 100)
    File.WriteAllBytes(path, data.ToArray())

/// A small ImageFolder: classes a, b, c; 3 train and 2 test PNGs each, 6×5 pixels; returns the pixels by file.
let writeFolder (root: string) (testName: string) =
    [ for split, count in [ "train", 3; testName, 2 ] do
          for c, name in List.indexed [ "a"; "b"; "c" ] do
              for k in 0 .. count - 1 do
                  let planar = pixels (100 * c + 10 * k + split.Length) (3 * 6 * 5)
                  let path = Path.Combine(root, split, name, $"{k:D4}.png")
                  writeImage path 6 5 planar
                  yield path, planar ]
    |> dict

let inMemory = { ImageFolder.defaultOptions with InMemory = Some true }
let onDemand = { ImageFolder.defaultOptions with InMemory = Some false }

[<Tests>]
let tests =
    testList "Data.ImageFolder" [
        test "real CIFAR-10 JPEGs (a subset of ../shared/datasets/cifar10-jpeg.tar.gz): classes, counts, shape, pixels" {
            match cifarJpegFolder () with
            | None -> ()
            | Some root ->
                let data = Datasets.loadFolder root None ImageFolder.defaultOptions
                Expect.equal data.Classes Cifar.cifar10Classes "the ten CIFAR-10 classes, sorted by name = label order"
                Expect.sequenceEqual data.ImageShape [| 3; 32; 32 |] "3×32×32"
                Expect.equal data.Train.Count 200 "20 per class extracted"
                Expect.isTrue (DatasetStats.classCounts 10 data.Test |> Array.forall ((=) 20)) "20 test images per class"
                for c in 0..2 do
                    Expect.isTrue (data.Mean[c] > 0.3 && data.Mean[c] < 0.65 && data.Std[c] > 0.15 && data.Std[c] < 0.35) $"natural-image statistics {data.Mean[c]}, {data.Std[c]}"
                // Decoding on demand gives the same bytes as decoding into memory.
                let lazyData = Datasets.loadFolder root None onDemand
                Expect.stringContains lazyData.Source "decoded on demand" "lazy split"
                Expect.sequenceEqual (loadBytes lazyData.Train [| 0; 57; 199 |]) (loadBytes data.Train [| 0; 57; 199 |]) "same pixels"
                Expect.equal (Datasets.detect root None |> Option.map fst) (Some DataFormat.ImageFolder) "detected"
        }

        test "a training selection holds only the selected images: same pixels, labels and statistics as the whole folder" {
            use dir = new TempDir()
            let files = writeFolder dir.Path "test"
            let whole = Datasets.loadFolder dir.Path None inMemory
            let selected = [| 1; 3; 8 |]
            let asked = ref [||]
            let partial =
                Datasets.loadFolder dir.Path None { inMemory with TrainingSelection = Some(fun labels -> asked.Value <- Array.copy labels; selected) }
            Expect.sequenceEqual asked.Value whole.Train.Labels "the selection is given every training label, in index order"
            Expect.equal partial.Train.Count whole.Train.Count "every image keeps its index"
            Expect.sequenceEqual partial.Train.Labels whole.Train.Labels "and its label"
            Expect.sequenceEqual (loadBytes partial.Train [| 8; 1; 3; 1 |]) (loadBytes whole.Train [| 8; 1; 3; 1 |]) "selected images: the same pixels"
            Expect.sequenceEqual partial.Mean whole.Mean "statistics over every training image, selected or not"
            Expect.sequenceEqual partial.Std whole.Std "std too"
            Expect.sequenceEqual (loadBytes partial.Test [| 0; 5 |]) (loadBytes whole.Test [| 0; 5 |]) "the test split is whole"
            Expect.throwsT<System.InvalidOperationException> (fun () -> (partial.Train.Load [| 0 |]).Dispose()) "an image left out cannot be loaded"
            match partial.Train with
            | :? SelectedSplit as split -> Expect.equal split.Images.shape[0] 3L "only the three selected images are held"
            | other -> failtest $"expected a SelectedSplit, got {other.GetType().Name}"
            // The pixels written are the ones decoded (PNG), so the statistics are those of the written bytes, exactly.
            let train = files |> Seq.filter (fun kv -> kv.Key.Contains "/train/") |> Seq.map (fun kv -> kv.Value) |> Array.ofSeq
            let pixelsPerChannel = 6 * 5
            for c in 0 .. 2 do
                let values = train |> Array.collect (fun planar -> planar[c * pixelsPerChannel .. (c + 1) * pixelsPerChannel - 1]) |> Array.map (fun b -> float b / 255.0)
                let mean = Array.average values
                Expect.floatClose Accuracy.veryHigh whole.Mean[c] mean $"channel {c} mean"
                Expect.floatClose Accuracy.veryHigh whole.Std[c] (sqrt (values |> Array.averageBy (fun v -> (v - mean) * (v - mean)))) $"channel {c} std"
            (whole :> System.IDisposable).Dispose()
            (partial :> System.IDisposable).Dispose()
        }

        test "loading for the test split alone decodes no training image: a corrupt one goes unnoticed, statistics are empty" {
            use dir = new TempDir()
            let _ = writeFolder dir.Path "test"
            let whole = Datasets.loadFolder dir.Path None inMemory
            // A training file that cannot be decoded: loading the training split fails on it, naming it...
            let corrupt = Path.Combine(dir.Path, "train", "b", "0001.png")
            File.WriteAllBytes(corrupt, [| 1uy; 2uy; 3uy |])
            expectError (fun () -> (Datasets.loadIn (dir.Path, None, Some(fun _ -> [||])) :> System.IDisposable).Dispose()) [ "0001.png" ]
            // ...while the test split alone never reads it.
            let testOnly = Datasets.loadTestSplit (dir.Path, None)
            Expect.isEmpty testOnly.Mean "no statistics"
            Expect.isEmpty testOnly.Std "no std"
            Expect.equal testOnly.Train.Labels whole.Train.Labels "the training labels are still listed"
            Expect.sequenceEqual (loadBytes testOnly.Test [| 0; 3; 5 |]) (loadBytes whole.Test [| 0; 3; 5 |]) "the test split: the same pixels"
            Expect.throwsT<System.InvalidOperationException> (fun () -> (testOnly.Train.Load [| 0 |]).Dispose()) "no training image is held"
            (whole :> System.IDisposable).Dispose()
            (testOnly :> System.IDisposable).Dispose()
        }

        test "statistics are exact integer sums: independent of chunking and of the order images come in" {
            let images = Array.init 2100 (fun i -> byte ((i * 7919 + i / 13) % 256))
            use tensor = DataFile.uint8Tensor (Array.init (700 * 3 * 4) (fun i -> images[i % images.Length])) [| 700L; 3L; 2L; 2L |]
            let mean, std = DatasetStats.meanStd tensor
            use reversed = tensor.flip [| 0L |]
            let mean', std' = DatasetStats.meanStd reversed
            Expect.sequenceEqual mean' mean "same mean in reverse order, to the last bit"
            Expect.sequenceEqual std' std "same std"
            use asFloat = tensor.to_type(TorchSharp.torch.float64).div(Tensors.scalar 255.0)
            let expectedMean = asFloat.mean([| 0L; 2L; 3L |]).data<float>().ToArray()
            let expectedStd = asFloat.std([| 0L; 2L; 3L |], false).data<float>().ToArray()
            for c in 0 .. 2 do
                Expect.floatClose Accuracy.veryHigh mean[c] expectedMean[c] $"mean {c}"
                Expect.floatClose Accuracy.veryHigh std[c] expectedStd[c] $"std {c}"
        }

        test "PNG files round-trip exactly, JPEG closely; classes sorted; test/ or val/" {
            for testName in [ "test"; "val" ] do
                use dir = new TempDir()
                let written = writeFolder dir.Path testName
                let data = ImageFolder.load dir.Path inMemory
                Expect.equal data.Classes [| "a"; "b"; "c" |] "classes"
                Expect.sequenceEqual data.Train.Labels [| 0; 0; 0; 1; 1; 1; 2; 2; 2 |] "labels"
                Expect.sequenceEqual data.ImageShape [| 3; 6; 5 |] "3×H×W"
                Expect.sequenceEqual (loadBytes data.Train [| 4 |]) written[Path.Combine(dir.Path, "train", "b", "0001.png")] "exact PNG pixels"
                Expect.sequenceEqual (loadBytes data.Test [| 5 |]) written[Path.Combine(dir.Path, testName, "c", "0001.png")] "test pixels"
            use dir = new TempDir()
            let planar = Array.init (3 * 8 * 8) (fun i -> byte (if i < 64 then 200 elif i < 128 then 100 else 30))
            for split in [ "train"; "test" ] do
                writeImage (Path.Combine(dir.Path, split, "x", "0.jpg")) 8 8 planar
            let data = ImageFolder.load dir.Path inMemory
            let decoded = loadBytes data.Train [| 0 |]
            Expect.isTrue (Array.forall2 (fun (a: byte) (b: byte) -> abs (int a - int b) <= 8) decoded planar) "JPEG within 8 levels"
        }

        test "images of different sizes are resized and center-cropped: to the size given, else the smallest side" {
            use dir = new TempDir()
            writeImage (Path.Combine(dir.Path, "train", "a", "0.png")) 10 10 (pixels 1 300)
            writeImage (Path.Combine(dir.Path, "train", "a", "1.png")) 12 20 (pixels 2 720)
            writeImage (Path.Combine(dir.Path, "test", "a", "0.png")) 10 10 (pixels 3 300)
            let automatic = ImageFolder.load dir.Path inMemory
            Expect.sequenceEqual automatic.ImageShape [| 3; 10; 10 |] "the smallest side (10), square"
            Expect.stringContains automatic.Source "images of different sizes" "says so"
            let data = ImageFolder.load dir.Path { inMemory with ImageSize = Some 8 }
            Expect.sequenceEqual data.ImageShape [| 3; 8; 8 |] "resized"
            Expect.equal data.Train.Count 2 "both images"
        }

        test "an empty class folder is named" {
            use dir = new TempDir()
            writeFolder dir.Path "test" |> ignore
            Directory.CreateDirectory(Path.Combine(dir.Path, "train", "d")) |> ignore
            expectError (fun () -> ImageFolder.load dir.Path inMemory |> ignore) [ Path.Combine("train", "d"); "empty class folder" ]
        }

        test "an undecodable image is named, or skipped and counted when asked" {
            for options in [ inMemory; onDemand ] do
                use dir = new TempDir()
                writeFolder dir.Path "test" |> ignore
                let bad = Path.Combine(dir.Path, "train", "b", "0009.jpg")
                File.WriteAllBytes(bad, pixels 9 500)
                let load () =
                    let data = ImageFolder.load dir.Path options
                    // On demand, the image is only decoded when a batch needs it.
                    use _ = data.Train.Load(Array.init data.Train.Count id)
                    ()
                expectError load [ "0009.jpg"; "undecodable image" ]
                let data = ImageFolder.load dir.Path { options with SkipUndecodable = true }
                Expect.equal data.Train.Count 9 "the 9 good images"
                Expect.stringContains data.Source "1 undecodable image(s) skipped" "reported"
                Expect.stringContains data.Source "0009.jpg" "named"
        }

        test "a truncated JPEG (valid header, cut body) is named, not decoded into a silent gray image" {
            use dir = new TempDir()
            writeFolder dir.Path "test" |> ignore
            let jpeg = Path.Combine(dir.Path, "train", "a", "0100.jpg")
            writeImage jpeg 64 64 (pixels 5 (3 * 64 * 64))
            let bytes = File.ReadAllBytes jpeg
            File.WriteAllBytes(jpeg, bytes[.. bytes.Length / 2])
            expectError (fun () -> ImageFolder.load dir.Path { inMemory with ImageSize = Some 6 } |> ignore) [ "0100.jpg"; "IncompleteInput" ]
        }

        test "a missing split and a test class without a training folder are named" {
            use dir = new TempDir()
            writeFolder dir.Path "test" |> ignore
            Directory.Move(Path.Combine(dir.Path, "test"), Path.Combine(dir.Path, "holdout"))
            expectError (fun () -> ImageFolder.load dir.Path inMemory |> ignore) [ "test"; "missing split folder"; "val/" ]
            Directory.Move(Path.Combine(dir.Path, "holdout"), Path.Combine(dir.Path, "test"))
            writeImage (Path.Combine(dir.Path, "test", "zebra", "0.png")) 6 5 (pixels 1 90)
            expectError (fun () -> ImageFolder.load dir.Path inMemory |> ignore) [ "zebra"; "has no folder in" ]
        }

        test "TinyImageNet's layout: train/<wnid>/images, val/images + val_annotations.txt" {
            use dir = new TempDir()
            let wnids = [| "n02"; "n01" |]
            File.WriteAllLines(dir.File "wnids.txt", wnids)
            for wnid in wnids do
                for k in 0..1 do
                    writeImage (Path.Combine(dir.Path, "train", wnid, "images", $"{wnid}_{k}.JPEG")) 8 8 (pixels k 192)
            let annotations = [| "val_0.JPEG\tn02\t0\t0\t7\t7"; "val_1.JPEG\tn01\t1\t1\t5\t5"; "val_2.JPEG\tn02\t0\t0\t3\t3" |]
            for k in 0..2 do
                writeImage (Path.Combine(dir.Path, "val", "images", $"val_{k}.JPEG")) 8 8 (pixels (10 + k) 192)
            File.WriteAllLines(Path.Combine(dir.Path, "val", "val_annotations.txt"), annotations)
            Expect.equal (Datasets.detect dir.Path None |> Option.map fst) (Some DataFormat.TinyImageNet) "detected"
            let data = Datasets.loadFolder dir.Path None ImageFolder.defaultOptions
            Expect.equal data.Classes [| "n01"; "n02" |] "wnids sorted"
            Expect.sequenceEqual data.Train.Labels [| 0; 0; 1; 1 |] "train labels"
            Expect.sequenceEqual data.Test.Labels [| 1; 0; 1 |] "val labels from the annotations"
            File.AppendAllLines(Path.Combine(dir.Path, "val", "val_annotations.txt"), [ "val_3.JPEG\tn99\t0\t0\t1\t1" ])
            expectError (fun () -> ImageFolder.loadTinyImageNet dir.Path inMemory |> ignore) [ "val_annotations.txt"; "line 4"; "n99" ]
        }
    ]
