module Bake.Core.Tests.PredictionTests

open System
open System.IO
open Expecto
open TorchSharp
open Bake.Core
open Bake.Core.Data
open Bake.Core.Tests.TestUtil
open Bake.Core.Tests.Fixtures

/// Writes test images 0 .. count − 1 of the embedded dataset as PNG files; returns their paths and labels.
let private writeTestImages (dir: string) (count: int) =
    let dataset = Datasets.embedded ()
    use images = dataset.Test.Load(Array.init count id)
    let paths = Array.init count (fun i -> Path.Combine(dir, $"test-{i}.png"))
    paths |> Array.iteri (fun i path -> use image = images[int64 i] in ImageFolder.savePng (path, image))
    paths, Array.init count (fun i -> dataset.Test.Labels[i])

/// Probabilities of the model on the same test images through the evaluation pipeline (dataset → transform → model).
let private pipelineProbabilities (predictor: Predictor) (count: int) =
    let dataset = Datasets.embedded ()
    use raw = dataset.Test.Load(Array.init count id)
    use inputs = Transforms.apply (Transforms.forEvaluation dataset) (SeededRandom.Derive 0L) raw
    Prediction.probabilities (predictor, inputs)

[<Tests>]
let tests =
    testSequenced <| testList "Prediction" [
        test "PNG round trip: savePng then decode gives the same pixels, gray and RGB" {
            withTempDir (fun dir ->
                scoped (fun () ->
                    for channels in [ 1L; 3L ] do
                        let image = torch.randint(0L, 256L, [| channels; 5L; 7L |], dtype = torch.uint8)
                        let path = Path.Combine(dir, $"c{channels}.png")
                        ImageFolder.savePng (path, image)
                        let planar, h, w = ImageFolder.decode path
                        Expect.equal (h, w) (5, 7) "size"
                        let expected = (if channels = 1L then image.expand(3L, -1L, -1L) else image).contiguous().data<byte>().ToArray()
                        Expect.sequenceEqual planar expected $"{channels} channel(s) decode to the same pixels"
                    let error = throwsWith<ArgumentException> (fun () -> ImageFolder.savePng (Path.Combine(dir, "x.png"), torch.zeros(2L, 4L, 4L, dtype = torch.uint8)))
                    Expect.stringContains error.Message "1 or 3 channels" "explains"))
        }

        test "a PNG of a test image is classified as the evaluation pipeline classifies that image" {
            withTempDir (fun dir ->
                let paths, _ = writeTestImages dir 6
                use predictor = Prediction.load trainedRun.Value
                let predictions = Prediction.predictFiles (predictor, paths, 10)
                use expected = pipelineProbabilities predictor 6
                let expected = expected.to_type(torch.float64).data<float>().ToArray()
                for row in 0 .. 5 do
                    Expect.hasLength predictions[row] 10 "all 10 classes"
                    for score in predictions[row] do
                        Expect.floatClose Accuracy.medium score.Probability expected[row * 10 + score.Label] $"image {row}, class {score.Label}"
                        Expect.equal score.ClassName predictor.Classes[score.Label] "the class name of the label"
                    let probabilities = predictions[row] |> Array.map (fun s -> s.Probability)
                    Expect.isTrue (probabilities = Array.sortDescending probabilities) "most probable first"
                    Expect.floatClose Accuracy.medium (Array.sum probabilities) 1.0 "all classes sum to 1")
        }

        test "top-k keeps the k most probable classes and clamps k to the class count" {
            withTempDir (fun dir ->
                let paths, _ = writeTestImages dir 2
                use predictor = Prediction.load trainedRun.Value
                let all = Prediction.predictFiles (predictor, paths, 10)
                let top3 = Prediction.predictFiles (predictor, paths, 3)
                let many = Prediction.predictFiles (predictor, paths, 50)
                for row in 0 .. 1 do
                    Expect.sequenceEqual (top3[row] |> Array.map (fun s -> s.Label)) (all[row] |> Array.take 3 |> Array.map (fun s -> s.Label)) "top 3 = first 3"
                    Expect.hasLength many[row] 10 "k > K gives K classes"
                throwsWith<ArgumentException> (fun () -> Prediction.predictFiles (predictor, paths, 0) |> ignore) |> ignore)
        }

        test "RGB, other sizes and pixel tensors are brought to the checkpoint's input" {
            use predictor = Prediction.load trainedRun.Value
            scoped (fun () ->
                let gray = torch.randint(0L, 256L, [| 2L; 1L; 28L; 28L |], dtype = torch.uint8)
                let rgb = gray.expand(-1L, 3L, -1L, -1L).contiguous ()
                let fromGray = Prediction.prepare (predictor.State, gray)
                expectClose 1e-5 "RGB with equal channels = gray" (Prediction.prepare (predictor.State, rgb)) fromGray
                expectClose 1e-6 "floats in [0, 1] = uint8 / 255" (Prediction.prepare (predictor.State, gray.to_type(torch.float32).div (Tensors.scalar 255.0))) fromGray
                let large = torch.randint(0L, 256L, [| 3L; 40L; 60L |], dtype = torch.uint8)
                Expect.sequenceEqual (Prediction.prepare (predictor.State, large)).shape [| 1L; 1L; 28L; 28L |] "one 60×40 RGB image → 1×1×28×28"
                let scores = Prediction.predictPixels (predictor, gray, 2)
                Expect.hasLength scores 2 "one list per image"
                let error = throwsWith<ArgumentException> (fun () -> Prediction.prepare (predictor.State, torch.zeros(1L, 2L, 28L, 28L)) |> ignore)
                Expect.stringContains error.Message "2 channels" "names the channel count")
        }

        test "missing and undecodable images are errors naming the file" {
            withTempDir (fun dir ->
                use predictor = Prediction.load trainedRun.Value
                let missing = Path.Combine(dir, "absent.png")
                let error = throwsWith<BakeException> (fun () -> Prediction.predictFiles (predictor, [ missing ], 3) |> ignore)
                Expect.stringContains error.Message missing "names the missing file"
                let text = Path.Combine(dir, "notes.png")
                File.WriteAllText(text, "not an image")
                let error = throwsWith<BakeException> (fun () -> Prediction.predictFiles (predictor, [ text ], 3) |> ignore)
                Expect.stringContains error.Message text "names the undecodable file"
                Expect.stringContains error.Message "undecodable" "says what is wrong")
        }

        test "a path without a checkpoint is an error naming it" {
            withTempDir (fun dir ->
                let error = throwsWith<BakeException> (fun () -> Prediction.load dir |> ignore)
                Expect.stringContains error.Message dir "names the path"
                Expect.stringContains error.Message "no Bake checkpoint" "says what is missing")
        }

        test "bake predict prints the top-k per image; its mistakes exit 2 or 1 with one clear line" {
            withTempDir (fun dir ->
                let paths, _ = writeTestImages dir 2
                let run = trainedRun.Value
                let code, stdout, _ = bake ([ "predict"; "--checkpoint"; run; "--top"; "3" ] @ List.ofArray paths)
                Expect.equal code 0 "exit 0"
                use predictor = Prediction.load run
                let expected = Prediction.predictFiles (predictor, paths, 3)
                for path, scores in Array.zip paths expected do
                    Expect.stringContains stdout path "names each image"
                    Expect.stringContains stdout $"1. {scores[0].ClassName}" "the most probable class first"
                    Expect.stringContains stdout $"{100.0 * scores[0].Probability:F2}%%" "with its probability"
                Expect.equal (stdout.Split("  3. ").Length - 1) 2 "three classes per image"
                expectExit 0 [ "predict"; "--help" ] "Example:\n  bake predict --checkpoint"
                expectExit 2 [ "predict"; "--checkpoint"; run ] "missing argument '<image>...'"
                expectExit 2 [ "predict"; paths[0] ] "missing argument '--checkpoint'"
                expectExit 2 [ "predict"; "--checkpoint"; run; "--top"; "0"; paths[0] ] "--top 0: expected at least 1"
                expectExit 1 [ "predict"; "--checkpoint"; run; Path.Combine(dir, "absent.png") ] "absent.png: image file not found"
                expectExit 1 [ "predict"; "--checkpoint"; dir; paths[0] ] "no Bake checkpoint")
        }

        test "C# Predictor: same predictions as the core, null and range checks" {
            withTempDir (fun dir ->
                let path = Path.Combine(dir, "image.png")
                let className = Bake.Datasets.SaveImage("embedded", "test", 3, path)
                Expect.equal className (Datasets.embedded ()).Classes[(Datasets.embedded ()).Test.Labels[3]] "returns the image's class"
                use predictor = Bake.Predictor.Load trainedRun.Value
                use core = Prediction.load trainedRun.Value
                let fromFile = predictor.Predict(path, 4)
                let expected = (Prediction.predictFiles (core, [ path ], 4))[0]
                Expect.sequenceEqual (fromFile |> Seq.map (fun p -> p.Label, p.ClassName, p.Probability)) (expected |> Seq.map (fun s -> s.Label, s.ClassName, s.Probability)) "same top-4"
                scoped (fun () ->
                    let pixels = torch.randint(0L, 256L, [| 3L; 1L; 28L; 28L |], dtype = torch.uint8)
                    let lists = predictor.Predict(pixels, 2)
                    Expect.equal lists.Count 3 "one list per image"
                    Expect.isTrue (lists |> Seq.forall (fun l -> l.Count = 2)) "two classes each")
                Expect.equal (List.ofSeq predictor.Classes) (List.ofArray core.Classes) "classes"
                throwsWith<ArgumentNullException> (fun () -> Bake.Predictor.Load null |> ignore) |> ignore
                throwsWith<ArgumentNullException> (fun () -> predictor.Predict(null: string) |> ignore) |> ignore
                throwsWith<ArgumentOutOfRangeException> (fun () -> predictor.Predict(path, 0) |> ignore) |> ignore
                throwsWith<ArgumentException> (fun () -> Bake.Datasets.SaveImage("embedded", "validation", 0, path) |> ignore) |> ignore
                throwsWith<ArgumentOutOfRangeException> (fun () -> Bake.Datasets.SaveImage("embedded", "test", 1_000_000, path) |> ignore) |> ignore
                predictor.Dispose()
                throwsWith<ObjectDisposedException> (fun () -> predictor.Predict path |> ignore) |> ignore)
        }
    ]
