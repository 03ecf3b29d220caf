module Bake.Core.Tests.WeightsTests

open System
open System.Collections
open System.Diagnostics
open System.IO
open Expecto
open TorchSharp
open TorchSharp.PyBridge
open Bake.Core
open Bake.Core.Models
open Bake.Core.Tests.TestUtil

// ------------------------------------------------------------------------------------------ PyTorch peer

/// Debian's PyTorch (python3-torch + python3-torchvision), never another interpreter on PATH; BAKE_TEST_PYTHON
/// overrides the path (e.g. to check the skip).
let python =
    match Environment.GetEnvironmentVariable "BAKE_TEST_PYTHON" with
    | null | "" -> "/usr/bin/python3"
    | path -> path

let parityScript = Path.Combine(repoRoot, "tests", "fixtures", "make_parity.py")

/// Runs the Python peer; Error carries the end of its standard error.
let runPython (arguments: string list) : Result<unit, string> =
    let info = ProcessStartInfo(python, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false)
    for argument in arguments do
        info.ArgumentList.Add argument
    use proc = Process.Start info
    let errors = proc.StandardError.ReadToEndAsync()
    proc.StandardOutput.ReadToEnd() |> ignore
    if not (proc.WaitForExit 300_000) then
        proc.Kill true
        Error "timed out after 300 s"
    elif proc.ExitCode = 0 then
        Ok()
    else
        let text = errors.Result.Trim()
        Error(if text.Length > 1500 then "…" + text.Substring(text.Length - 1500) else text)

/// Why the PyTorch parity tests cannot run here, if they cannot.
let pyTorchMissing: Lazy<string option> =
    lazy
        (if not (File.Exists python) then
             Some $"{python} not found (apt-get install python3-torch python3-torchvision)"
         else
             match runPython [ "-c"; "import torch, torchvision" ] with
             | Ok() -> None
             | Error message ->
                 let last = message.Split('\n') |> Array.last
                 Some $"{python} cannot import torch and torchvision ({last}); apt-get install python3-torch python3-torchvision")

/// A temporary directory with the PyTorch side's files (make_parity.py make), made once per test run.
let parityDirectory: Lazy<string> =
    lazy
        (let directory = Path.Combine(Path.GetTempPath(), $"bake-parity-{Guid.NewGuid():N}")
         Directory.CreateDirectory directory |> ignore
         AppDomain.CurrentDomain.ProcessExit.Add(fun _ -> try Directory.Delete(directory, true) with _ -> ())
         match runPython [ parityScript; "make"; directory ] with
         | Ok() -> directory
         | Error message -> failwithf "%s make failed:\n%s" parityScript message)

/// A test that needs the PyTorch peer; skipped with the reason printed when it is not installed.
let withPyTorch (name: string) (body: string -> unit) =
    test name {
        match pyTorchMissing.Force() with
        | Some reason ->
            printfn "skipped '%s': %s" name reason
            skiptest reason
        | None -> scoped (fun () -> body (parityDirectory.Force()))
    }

let tensorsIn (directory: string) (file: string) = Weights.read (Path.Combine(directory, file))

/// PyTorch and libtorch 2.10 differ by float32 round-off only.
let parityTolerance = 1e-4

/// 1e-4 relative to the largest expected logit (at least 1e-4 absolute): float32 round-off grows with the
/// magnitude, and some randomly initialised reference models have logits in the hundreds.
let expectParity (message: string) (actual: torch.Tensor) (expected: torch.Tensor) =
    use largest = expected.abs().max().to_type torch.float64
    expectClose (parityTolerance * max 1.0 (largest.item<float> ())) message actual expected

/// Random BatchNorm statistics and affine parameters, so eval-mode BatchNorm is far from the identity.
let randomizeBatchNorm (model: torch.nn.Module) =
    use _ = torch.no_grad ()
    for m in model.modules () do
        match m with
        | :? TorchSharp.Modules.BatchNorm2d as bn ->
            bn.weight.uniform_(0.5, 1.5) |> ignore
            bn.bias.normal_(0.0, 0.1) |> ignore
            bn.running_mean.normal_(0.0, 0.1) |> ignore
            bn.running_var.uniform_(0.5, 1.5) |> ignore
        | _ -> ()

let evalLogits (model: Classifier) (images: torch.Tensor) =
    model.eval ()
    use _ = torch.no_grad ()
    model.forward images

// ------------------------------------------------------------------------------------------ helpers without PyTorch

let temporaryFile (extension: string) =
    Path.Combine(Path.GetTempPath(), $"bake-weights-{Guid.NewGuid():N}{extension}")

/// Deletes the file when disposed.
let deleting (path: string) =
    { new IDisposable with
        member _.Dispose() = try File.Delete path with _ -> () }

let expectSameState (message: string) (actual: torch.nn.Module) (expected: torch.nn.Module) =
    let expectedState = expected.state_dict ()
    for KeyValue(key, value) in actual.state_dict () do
        expectClose 0.0 $"{message}: {key}" value expectedState[key]

/// A trained-looking tiny model: BN statistics and num_batches_tracked moved by two training steps.
let trainedTiny (classes: int) =
    let model = Models.create ("cnn-tiny", classes, 1, 12)
    model.train ()
    for _ in 1..2 do
        use logits = model.forward (torch.randn (4L, 1L, 12L, 12L))
        ()
    model

[<Tests>]
let tests =
    testList "Weights" [
        withPyTorch "PyTorch → Bake: torchvision resnet18 state dict gives PyTorch's logits and features (1e-4)" (fun directory ->
            let images = (tensorsIn directory "inputs.pth")["images"]
            let expected = tensorsIn directory "resnet18_outputs.pth"
            use model = Models.create ("resnet18", 1000, 3, 64)
            Weights.load (model, Path.Combine(directory, "resnet18.pth"))
            expectClose parityTolerance "eval logits" (evalLogits model images) expected["eval"]
            use _ = torch.no_grad ()
            expectClose parityTolerance "pooled features" (model.Features images) expected["features"]
            Expect.equal (model.get_buffer("bn1.num_batches_tracked").item<int64> ()) 7L "BatchNorm buffers are loaded"
            model.train ()
            expectClose parityTolerance "train-mode logits (batch statistics)" (model.forward images) expected["train"])

        withPyTorch "Bake → PyTorch: an exported resnet18 (.pth and .safetensors) loads into torchvision with Bake's logits (1e-4)" (fun directory ->
            let images = (tensorsIn directory "inputs.pth")["images"]
            use model = Models.create ("resnet18", 1000, 3, 64)
            randomizeBatchNorm model
            let ours = evalLogits model images
            for extension in [ ".pth"; ".safetensors" ] do
                let exported = Path.Combine(directory, $"bake_resnet18{extension}")
                if extension = ".pth" then Weights.savePyTorch (model, exported) else Weights.saveSafetensors (model, exported)
                let output = Path.Combine(directory, $"torchvision_from_bake{extension}.pth")
                match runPython [ parityScript; "check"; exported; Path.Combine(directory, "inputs.pth"); output ] with
                | Ok() -> ()
                | Error message -> failtestf "torchvision could not load Bake's %s export:\n%s" extension message
                let theirs = Weights.read output
                expectClose parityTolerance $"torchvision logits from Bake's {extension}" theirs["eval"] ours)

        withPyTorch "PyTorch → Bake: DenseNet-121, MobileNetV2, EfficientNet-B0 and the CIFAR models give PyTorch's logits (1e-4 relative)" (fun directory ->
            let inputs = tensorsIn directory "inputs.pth"
            let cifar = set [ "preact-resnet18"; "cifar-densenet121"; "resnet20"; "resnet8x4" ]
            for name in [ "densenet121"; "mobilenetv2"; "efficientnet-b0"; "preact-resnet18"; "cifar-densenet121"; "resnet20"; "resnet8x4" ] do
                let images = if cifar.Contains name then inputs["cifar_images"] else inputs["images"]
                use model = Models.create (name, 10, 3, int images.shape[2])
                Weights.load (model, Path.Combine(directory, $"{name}.pth"))
                let expected = tensorsIn directory $"{name}_outputs.pth"
                expectParity $"{name} eval logits" (evalLogits model images) expected["eval"])

        withPyTorch "pycls/BAKE checkpoints {model_state, …} with module. keys load into the torchvision-named models (1e-4 relative)" (fun directory ->
            let images = (tensorsIn directory "inputs.pth")["images"]
            let cases: (string * (unit -> Classifier)) list =
                [ "anynet_r18", fun () -> Models.create ("resnet18", 10, 3, 64)
                  "anynet_x", fun () -> new ResNet("resnext-1-1-1-1", Bottleneck, [ 1; 1; 1; 1 ], 32L, 4L, 10L, 3L)
                  "effnet_b0", fun () -> Models.create ("efficientnet-b0", 10, 3, 64)
                  "bake_mobilenetv2", fun () -> Models.create ("mobilenetv2", 10, 3, 64) ]
            do
                // The optimizer state's momentum buffers are read too; they are freed at once, not left to the GC.
                use scope = torch.NewDisposeScope()
                let state = Weights.read (Path.Combine(directory, "bake_mobilenetv2.pyth"))
                Expect.equal scope.DisposablesCount state.Count "only the model_state tensors stay alive"
            for file, build in cases do
                use model = build ()
                do
                    use scope = torch.NewDisposeScope()
                    Weights.load (model, Path.Combine(directory, $"{file}.pyth"))
                    Expect.equal scope.DisposablesCount 0 $"{file}: loading leaves no tensors behind"
                let expected = tensorsIn directory $"{file}_outputs.pth"
                expectParity $"{file} eval logits" (evalLogits model images) expected["eval"])

        test "round trip: safetensors and .pth exports load back into a fresh model exactly" {
            scoped (fun () ->
                use original = trainedTiny 10
                for extension in [ ".safetensors"; ".pth" ] do
                    let path = temporaryFile extension
                    use _ = deleting path
                    if extension = ".pth" then Weights.savePyTorch (original, path) else Weights.saveSafetensors (original, path)
                    use copy = Models.create ("cnn-tiny", 10, 1, 12)
                    Weights.load (copy, path)
                    expectSameState extension copy original
                    let images = torch.randn (3L, 1L, 12L, 12L)
                    expectClose 0.0 $"{extension}: same logits" (evalLogits copy images) (evalLogits original images))
        }

        test "exports hold every parameter and buffer, including num_batches_tracked" {
            scoped (fun () ->
                use model = trainedTiny 3
                let path = temporaryFile ".safetensors"
                use _ = deleting path
                Weights.saveSafetensors (model, path)
                let saved = Weights.read path
                Expect.sequenceEqual (Seq.sort saved.Keys) (Seq.sort (model.state_dict().Keys)) "keys"
                Expect.equal (saved["block1.1.num_batches_tracked"].item<int64> ()) 2L "num_batches_tracked after two steps")
        }

        test "a checkpoint wrapping the state dict in model_state, with DDP's module. prefix, loads" {
            scoped (fun () ->
                use original = trainedTiny 4
                let path = temporaryFile ".pyth"
                use _ = deleting path
                let state = Specialized.OrderedDictionary()
                for KeyValue(key, value) in original.state_dict () do
                    state.Add("module." + key, value.detach ())
                let checkpoint = Hashtable()
                checkpoint["epoch"] <- 5
                checkpoint["cfg"] <- "MODEL:\n  TYPE: cnn-tiny\n"
                checkpoint["model_state"] <- state
                do
                    use stream = File.Create path
                    PyTorchPickler.PickleStateDict(stream, checkpoint, true)
                use copy = Models.create ("cnn-tiny", 4, 1, 12)
                Weights.load (copy, path)
                expectSameState "model_state" copy original)
        }

        test "files without num_batches_tracked (older torchvision) load; the rest must be complete" {
            scoped (fun () ->
                use original = trainedTiny 4
                let path = temporaryFile ".safetensors"
                use _ = deleting path
                let state = Collections.Generic.Dictionary<string, torch.Tensor>()
                for KeyValue(key, value) in original.state_dict () do
                    if not (key.EndsWith "num_batches_tracked") then state[key] <- value.detach().contiguous ()
                do
                    use stream = File.Create path
                    Safetensors.SaveStateDict(stream, state, true)
                use copy = Models.create ("cnn-tiny", 4, 1, 12)
                Weights.load (copy, path)
                expectClose 0.0 "weights loaded" (copy.get_parameter "fc.weight") (original.get_parameter "fc.weight"))
        }

        test "mismatched models fail with the missing, unexpected and mismatched keys and both shapes" {
            scoped (fun () ->
                use tiny = trainedTiny 10
                let path = temporaryFile ".safetensors"
                use _ = deleting path
                Weights.saveSafetensors (tiny, path)
                use fewerClasses = Models.create ("cnn-tiny", 5, 1, 12)
                let before = [ for KeyValue(key, value) in fewerClasses.state_dict () -> key, value.clone () ]
                let shape = throwsWith<BakeException> (fun () -> Weights.load (fewerClasses, path))
                Expect.stringContains shape.Message "2 shape mismatches: fc.weight (file [10×16], model [5×16]), fc.bias (file [10], model [5])" "shapes"
                Expect.stringContains shape.Message "does not fit model cnn-tiny" "names the model"
                Expect.stringContains shape.Message (Path.GetFullPath path) "names the file"
                use bigger = Models.create ("cnn", 10, 1, 12)
                let keys = throwsWith<BakeException> (fun () -> Weights.load (bigger, path))
                Expect.stringContains keys.Message "5 missing keys: block3.0.weight, block3.1.weight, block3.1.bias, block3.1.running_mean, block3.1.running_var;" "missing keys (num_batches_tracked may be missing)"
                Expect.stringContains keys.Message "11 shape mismatches: block1.0.weight (file [8×1×3×3], model [32×1×3×3])" "mismatches in model order"
                let biggerPath = temporaryFile ".pth"
                use _ = deleting biggerPath
                Weights.savePyTorch (bigger, biggerPath)
                let extra = throwsWith<BakeException> (fun () -> Weights.load (tiny, biggerPath))
                Expect.stringContains extra.Message "6 unexpected keys: block3.0.weight, block3.1.bias, block3.1.num_batches_tracked, block3.1.running_mean, block3.1.running_var, … (6 in all)" "unexpected keys, sorted, long lists cut"
                let after = fewerClasses.state_dict ()
                for key, value in before do
                    expectClose 0.0 $"a failed load leaves {key} untouched" after[key] value)
        }

        test "unreadable files fail with a BakeException naming the file" {
            scoped (fun () ->
                use model = Models.create ("cnn-tiny", 10, 1, 12)
                let missing = throwsWith<BakeException> (fun () -> Weights.load (model, "/nonexistent/weights.pth"))
                Expect.stringContains missing.Message "weights file not found: /nonexistent/weights.pth" "missing file"
                let wrongKind = temporaryFile ".onnx"
                use _ = deleting wrongKind
                File.WriteAllText(wrongKind, "x")
                let kind = throwsWith<BakeException> (fun () -> Weights.load (model, wrongKind))
                Expect.stringContains kind.Message "unknown weights format '.onnx'" "extension"
                for extension in [ ".pth"; ".safetensors" ] do
                    let corrupt = temporaryFile extension
                    use _ = deleting corrupt
                    File.WriteAllBytes(corrupt, Array.init 64 (fun i -> byte (i * 37 % 251)))
                    let e = throwsWith<BakeException> (fun () -> Weights.load (model, corrupt))
                    Expect.stringContains e.Message corrupt $"{extension}: names the file"
                    Expect.stringContains e.Message "not a readable" $"{extension}: says what is wrong"
                let truncated = temporaryFile ".safetensors"
                use _ = deleting truncated
                Weights.saveSafetensors (model, truncated)
                let bytes = File.ReadAllBytes truncated
                File.WriteAllBytes(truncated, bytes[.. bytes.Length / 2])
                let e = throwsWith<BakeException> (fun () -> Weights.load (model, truncated))
                Expect.stringContains e.Message "truncated or corrupt" "truncated safetensors")
        }

        test "a .pth without tensors (not a state dict) fails with its keys" {
            scoped (fun () ->
                let path = temporaryFile ".pth"
                use _ = deleting path
                let table = Hashtable()
                table["epoch"] <- 3
                table["cfg"] <- "x"
                do
                    use stream = File.Create path
                    PyTorchPickler.PickleStateDict(stream, table, true)
                use model = Models.create ("cnn-tiny", 10, 1, 12)
                let e = throwsWith<BakeException> (fun () -> Weights.load (model, path))
                Expect.stringContains e.Message "holds no tensors" "explains"
                Expect.stringContains e.Message "cfg, epoch" "lists the keys")
        }
    ]
