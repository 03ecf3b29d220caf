module Bake.Core.Tests.ExportTests

open System
open System.IO
open Expecto
open TorchSharp
open Bake.Core
open Bake.Core.Models
open Bake.Core.Tests.TestUtil
open Bake.Core.Tests.Fixtures

/// Logits of a model on fixed random images (eval mode).
let private logitsOf (model: Classifier) =
    use _ = torch.no_grad ()
    model.eval ()
    torch.manual_seed 5L |> ignore
    use images = torch.randn (4L, 1L, 28L, 28L)
    model.forward images

[<Tests>]
let tests =
    // Sequenced: one test changes the working directory and the CLI tests redirect the console.
    testSequenced <| testList "Export" [
        test "safetensors holds the checkpoint's tensors; a .pth loads into a fresh model with the same logits" {
            withTempDir (fun dir ->
                scoped (fun () ->
                    let checkpoint = Checkpoints.ofPath trainedRun.Value
                    let safetensors, state = Checkpoints.export (trainedRun.Value, "safetensors", Some(Path.Combine(dir, "w.safetensors")))
                    let written = Weights.read safetensors
                    let original = Weights.read (Path.Combine(checkpoint, "model.safetensors"))
                    Expect.equal (Set.ofSeq written.Keys) (Set.ofSeq original.Keys) "same keys"
                    for KeyValue(key, tensor) in original do
                        expectClose 0.0 key written[key] tensor
                    let pth, _ = Checkpoints.export (trainedRun.Value, "PTH", Some(Path.Combine(dir, "w.pth")))
                    let _, model = Checkpoints.loadModel checkpoint
                    use model = model
                    use fresh = Models.create (state.Model, state.Classes.Length, state.ImageShape[0], state.ImageShape[1])
                    Weights.load (fresh, pth)
                    // Same layout as loadModel's (channels-last), so the logits are bit-identical.
                    Classifier.useChannelsLast (fresh, true)
                    expectClose 0.0 "logits after loading the .pth" (logitsOf fresh) (logitsOf model)
                    Expect.isEmpty (Directory.GetFiles(dir, "*.tmp")) "no temporary file left"))
        }

        test "without --out, the file is <model>-<checkpoint>.<format> in the working directory" {
            withTempDir (fun dir ->
                let saved = Directory.GetCurrentDirectory()
                Directory.SetCurrentDirectory dir
                try
                    let file, state = Checkpoints.export (trainedRun.Value, "safetensors", None)
                    let checkpointName = Path.GetFileName(Checkpoints.ofPath trainedRun.Value)
                    Expect.equal file (Path.Combine(Path.GetFullPath dir, $"{state.Model}-{checkpointName}.safetensors")) "default name"
                    Expect.isTrue (File.Exists file) "written"
                finally
                    Directory.SetCurrentDirectory saved)
        }

        test "bake export writes the file; its mistakes exit 2 (usage) or 1 (files) with one clear line" {
            withTempDir (fun dir ->
                let run = trainedRun.Value
                let out = Path.Combine(dir, "cnn.pth")
                let code, stdout, _ = bake [ "export"; "--checkpoint"; run; "--format"; "pth"; "--out"; out ]
                Expect.equal code 0 "exit 0"
                Expect.stringContains stdout $"wrote {out}: cnn-tiny weights, 10 classes in label order: T-shirt/top" "what was written"
                Expect.isTrue (File.Exists out) "the file"
                expectExit 0 [ "export"; "--help" ] "Example:\n  bake export --checkpoint"
                expectExit 2 [ "export"; "--checkpoint"; run; "--format"; "tflite" ] "unknown export format 'tflite': expected safetensors, pth or onnx"
                expectExit 2 [ "export"; "--checkpoint"; run; "--format"; "onnx"; "--out"; Path.Combine(dir, "w.pth") ] "an onnx file should end in .onnx"
                expectExit 2 [ "export"; "--checkpoint"; run; "--format"; "pth"; "--features" ] "only the onnx format has a features output"
                expectExit 2 [ "export"; "--checkpoint"; run; "--format"; "pth"; "--out"; Path.Combine(dir, "w.safetensors") ] "a pth file should end in .pth or .pt"
                expectExit 2 [ "export"; "--checkpoint"; run ] "missing argument '--format'"
                expectExit 1 [ "export"; "--checkpoint"; dir; "--format"; "pth" ] "no Bake checkpoint"
                expectExit 1 [ "export"; "--checkpoint"; run; "--format"; "pth"; "--out"; "/proc/bake-cannot-write.pth" ] "cannot write /proc/bake-cannot-write.pth"
                Expect.sequenceEqual (Directory.GetFiles dir) [| out |] "nothing else written")
        }
    ]
