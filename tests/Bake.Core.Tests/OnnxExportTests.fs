/// ONNX export (src/Bake.Core/Export): every registry model gives the same logits in ONNX Runtime as in TorchSharp
/// (eval mode), the ONNX checker of Debian's python3-onnx accepts the files, and an exported trained model classifies
/// the embedded test split exactly as `bake eval` does.
module Bake.Core.Tests.OnnxExportTests

open System
open System.Diagnostics
open System.IO
open Expecto
open Microsoft.ML.OnnxRuntime
open Microsoft.ML.OnnxRuntime.Tensors
open TorchSharp
open Bake.Core
open Bake.Core.Export
open Bake.Core.Models
open Bake.Core.Tests.TestUtil

/// The input of the parity check per model: the smallest cheap image the architecture accepts.
let private inputOf (name: string) : int * int =
    match name with
    | "cnn" | "cnn-tiny" -> 1, 16
    | "cifar-densenet121" -> 3, 16
    | _ -> 3, 32

let private infoFor (name: string) (classes: int) (channels: int) (side: int) : OnnxModelInfo =
    { Model = name
      Classes = Array.init classes (sprintf "class%d")
      InputShape = [| channels; side; side |]
      Mean = Array.create channels 0.5
      Std = Array.create channels 0.25 }

/// Runs an ONNX model in ONNX Runtime on N×C×H×W float32 images; returns each output as a float32 tensor.
let runOnnx (model: byte[]) (images: torch.Tensor) : Map<string, torch.Tensor> =
    use options = new SessionOptions(IntraOpNumThreads = 2, InterOpNumThreads = 1)
    use session = new InferenceSession(model, options)
    let shape = images.shape |> Array.map int
    let values = images.contiguous().data<float32>().ToArray()
    let input = NamedOnnxValue.CreateFromTensor("images", DenseTensor<float32>(Memory<float32>(values), ReadOnlySpan<int>(shape)))
    use results = session.Run [ input ]
    results
    |> Seq.map (fun r ->
        let t = r.AsTensor<float32>()
        let dims = t.Dimensions.ToArray() |> Array.map int64
        r.Name, torch.tensor(Seq.toArray t, ReadOnlySpan<int64>(dims)))
    |> Map.ofSeq

/// max |onnx − torch| / max |torch|.
let relativeDifference (onnx: torch.Tensor) (reference: torch.Tensor) =
    let scale = max 1e-12 (use m = reference.abs().max() in m.ToDouble())
    maxAbsDiff onnx reference / scale

/// The Debian ONNX checker (python3-onnx), or why it cannot run.
let private onnxChecker =
    lazy
        (let python = "/usr/bin/python3"
         if not (File.Exists python) then Error "no /usr/bin/python3 (install python3-onnx)"
         else
             let probe = Process.Start(ProcessStartInfo(python, [| "-c"; "import onnx; print(onnx.__version__)" |], RedirectStandardOutput = true, RedirectStandardError = true))
             let version = probe.StandardOutput.ReadToEnd().Trim()
             probe.WaitForExit()
             if probe.ExitCode <> 0 then Error "python3 has no onnx module (apt-get install python3-onnx)" else Ok(python, version))

/// Runs onnx.checker.check_model (full check: types and shapes inferred) on files; returns (exit code, output).
let private check (python: string) (files: string list) =
    let script = "import onnx, sys\nfor p in sys.argv[1:]:\n    onnx.checker.check_model(onnx.load(p), full_check=True)\n    print('ok', p)"
    let start = ProcessStartInfo(python, "-c" :: script :: files, RedirectStandardOutput = true, RedirectStandardError = true)
    use p = Process.Start start
    let stdout = p.StandardOutput.ReadToEndAsync()
    let stderr = p.StandardError.ReadToEnd()
    p.WaitForExit()
    p.ExitCode, stdout.Result + stderr

/// Exports one registry model with random weights and BatchNorm statistics, compares ONNX Runtime's logits and
/// features with TorchSharp's in eval mode, and hands the file to the checker when it is installed.
let private parity (name: string) =
    test name {
        withTempDir (fun dir ->
            scoped (fun () ->
                torch.manual_seed 11L |> ignore
                let channels, side = inputOf name
                let watch = Stopwatch.StartNew()
                use model = Models.create (name, 5, channels, side)
                // Non-trivial BatchNorm statistics: a fresh model would hide a mistake in the exported normalisation.
                WeightsTests.randomizeBatchNorm model
                model.eval ()
                let images = torch.randn (2L, int64 channels, int64 side, int64 side)
                let original = images.clone ()
                let reference =
                    use _ = torch.no_grad ()
                    Classifier.featuresAndLogits (model, images)
                let file = Path.Combine(dir, $"{name}.onnx")
                OnnxExport.write (model, infoFor name 5 channels side, true, file)
                let outputs = runOnnx (File.ReadAllBytes file) images
                expectClose 0.0 "the images are not modified" images original
                let logits = relativeDifference outputs["logits"] reference.Logits
                let features = relativeDifference outputs["features"] reference.Features
                printfn "onnx parity %-18s %d×%d×%d: logits max rel diff %.2e, features %.2e, %.1f MB, %.1f s"
                    name channels side side logits features (float (FileInfo(file).Length) / 1e6) watch.Elapsed.TotalSeconds
                Expect.sequenceEqual outputs["logits"].shape reference.Logits.shape "logits shape N×K"
                Expect.sequenceEqual outputs["features"].shape reference.Features.shape "features shape N×D"
                Expect.isLessThanOrEqual logits 1e-4 $"{name}: logits within 1e-4 relative"
                Expect.isLessThanOrEqual features 1e-4 $"{name}: features within 1e-4 relative"
                match onnxChecker.Force() with
                | Ok(python, _) ->
                    let code, output = check python [ file ]
                    Expect.equal code 0 $"onnx.checker rejects {name}: {output}"
                | Error _ -> ()))
    }

/// A classifier the exporter does not know (not built by the registry).
type private Custom() =
    inherit Classifier("custom")
    override _.FeatureSize = 1L
    override _.Classes = 1L
    override _.Features(images) = images.mean([| 1L; 2L; 3L |]).unsqueeze 1L
    override _.Head(features) = features.alias ()

[<Tests>]
let tests =
    testList "OnnxExport" [
        testList "ONNX Runtime logits equal TorchSharp's (eval mode, 1e-4 relative)" [ for name in Models.names -> parity name ]

        test "the ONNX checker (python3-onnx) is installed, or the checks above were skipped" {
            match onnxChecker.Force() with
            | Ok(_, version) -> printfn "onnx.checker: python3-onnx %s checked every exported model" version
            | Error reason -> skiptestf "onnx.checker not run: %s" reason
        }

        test "the metadata holds the classes, input shape and normalisation; the batch dimension is dynamic" {
            withTempDir (fun dir ->
                scoped (fun () ->
                    use model = Models.create ("cnn-tiny", 3, 1, 8)
                    let file = Path.Combine(dir, "m.onnx")
                    let info = { infoFor "cnn-tiny" 3 1 8 with Classes = [| "a \"quoted\" name"; "b, c"; "ü" |]; Mean = [| 0.286 |]; Std = [| 0.353 |] }
                    OnnxExport.write (model, info, false, file)
                    let back = OnnxExport.readInfo file
                    Expect.sequenceEqual back.Classes info.Classes "classes"
                    Expect.sequenceEqual back.InputShape [| 1; 8; 8 |] "input shape"
                    Expect.sequenceEqual back.Mean [| 0.286 |] "mean"
                    Expect.sequenceEqual back.Std [| 0.353 |] "std"
                    use session = new InferenceSession(file)
                    let meta = session.ModelMetadata.CustomMetadataMap
                    Expect.equal meta["bake.model"] "cnn-tiny" "model name, as ONNX Runtime reads it"
                    Expect.sequenceEqual (session.InputMetadata.Keys |> Seq.toList) [ "images" ] "one input"
                    Expect.sequenceEqual session.InputMetadata["images"].Dimensions [| -1; 1; 8; 8 |] "dynamic batch, fixed C×H×W"
                    Expect.sequenceEqual (session.OutputMetadata.Keys |> Seq.toList) [ "logits" ] "logits only without features"
                    for batch in [ 1L; 3L ] do
                        let outputs = runOnnx (File.ReadAllBytes file) (torch.randn (batch, 1L, 8L, 8L))
                        Expect.sequenceEqual outputs["logits"].shape [| batch; 3L |] $"batch of {batch}"))
        }

        test "a model outside the registry is a clear error and writes nothing" {
            withTempDir (fun dir ->
                use model = new Custom()
                let file = Path.Combine(dir, "custom.onnx")
                let e = throwsWith<BakeException> (fun () -> OnnxExport.write (model, infoFor "custom" 1 1 4, false, file))
                Expect.stringContains e.Message "ONNX export: the model of type Custom is not supported" "names the module"
                Expect.isEmpty (Directory.GetFiles dir) "no file")
        }

        test "the C# façade: ModelExport.ToOnnx writes a model whose metadata names the checkpoint's classes; nulls throw" {
            withTempDir (fun dir ->
                let file = Bake.ModelExport.ToOnnx(Fixtures.trainedRun.Value, Path.Combine(dir, "m.onnx"), true)
                let info = OnnxExport.readInfo file
                Expect.equal info.Model "cnn-tiny" "model"
                Expect.equal info.Classes[9] "Ankle boot" "classes"
                use session = new InferenceSession(file)
                Expect.sequenceEqual (session.OutputMetadata.Keys |> Seq.toList) [ "logits"; "features" ] "features asked for"
                throwsWith<ArgumentNullException> (fun () -> Bake.ModelExport.ToOnnx(null, file) |> ignore) |> ignore
                let weights = Bake.ModelExport.ToWeights(Fixtures.trainedRun.Value, Path.Combine(dir, "w.safetensors"))
                Expect.isTrue (File.Exists weights) "safetensors"
                let e = throwsWith<UsageException> (fun () -> Bake.ModelExport.ToOnnx(Fixtures.trainedRun.Value, Path.Combine(dir, "m.pb")) |> ignore)
                Expect.stringContains e.Message "an onnx file should end in .onnx" "extension checked")
        }

        testSequenced <| test "the default job's model (1 epoch on 100 images per class) exported as ONNX gives bake eval's top-1 on the embedded test split" {
            withTempDir (fun dir ->
                scoped (fun () ->
                    let run = Path.Combine(dir, "run")
                    let overrides = [ "OPTIM.MAX_EPOCH=1"; "TRAIN.PER_CLASS=100"; "DATA_LOADER.NUM_WORKERS=1"; "TEST.BATCH_SIZE=500" ]
                    let code, _, stderr = bake ([ "train"; "--out"; run ] @ (overrides |> List.collect (fun o -> [ "--set"; o ])))
                    Expect.equal code 0 $"bake train (stderr: {stderr})"
                    let file = Path.Combine(dir, "cnn.onnx")
                    let code, stdout, stderr = bake [ "export"; "--checkpoint"; run; "--format"; "onnx"; "--out"; file ]
                    Expect.equal code 0 $"bake export --format onnx (stderr: {stderr})"
                    Expect.stringContains stdout $"wrote {file}: cnn ONNX model, 10 classes in label order: T-shirt/top" "what was written"
                    let code, evalOut, _ = bake [ "eval"; "--checkpoint"; run ]
                    Expect.equal code 0 "bake eval"
                    let state = Checkpoints.readState (Checkpoints.ofPath run)
                    let split = (Data.Datasets.embedded ()).Test
                    use pixels = split.Load(Array.init split.Count id)
                    use images = Prediction.prepare (state, pixels)
                    let outputs = runOnnx (File.ReadAllBytes file) images
                    let predicted = outputs["logits"].argmax(1L).data<int64>().ToArray()
                    let correct = Array.map2 (fun p l -> if int p = l then 1 else 0) predicted split.Labels |> Array.sum
                    let top1 = 100.0 * float correct / float split.Count
                    printfn "onnx top-1 on the embedded test split: %.2f %% (%d images); bake eval: %s" top1 split.Count (evalOut.Split('\n')[0])
                    Expect.isGreaterThan top1 30.0 "a model that learnt something (not one class for all)"
                    Expect.stringContains evalOut (sprintf "%d images): top-1 %.2f%%" split.Count top1) "bake eval prints the same top-1 on the same images"))
        }
    ]
