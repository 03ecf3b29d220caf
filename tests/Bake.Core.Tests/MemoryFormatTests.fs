module Bake.Core.Tests.MemoryFormatTests

open System.IO
open Expecto
open TorchSharp
open Bake.Core
open Bake.Core.Models
open Bake.Core.Tests.TestUtil

/// Batch, channels and side per registry model: small, so that every model runs in both layouts quickly (the small
/// CNNs on one channel, the layout's corner case).
let private inputOf (name: string) =
    match name with
    | "cnn" | "cnn-tiny" -> 4L, 1, 28L
    | _ -> 2L, 3, 32L

/// The same freshly initialised model twice: standard layout and channels-last (the weights copied, not re-seeded:
/// tests running in parallel share the global generator).
let private twins (name: string) (channels: int) (side: int64) =
    let standard = Models.create (name, 10, channels, int side)
    let fast = Models.create (name, 10, channels, int side)
    (
        use _ = torch.no_grad ()
        let source = standard.state_dict ()
        for KeyValue(key, value) in fast.state_dict () do
            value.copy_ source[key] |> ignore
    )
    Classifier.useChannelsLast (fast, true)
    standard, fast

/// Laid out N×H×W×C in memory (strides of size-1 dimensions do not matter: a 1×1 map or a single channel is the
/// same memory in both layouts, whatever libtorch reads its strides as).
let private nhwcInMemory (t: torch.Tensor) =
    let size, stride = t.shape, t.stride ()
    let mutable expected = 1L
    let mutable ok = true
    for d in [ 1; 3; 2; 0 ] do
        if size[d] <> 1L then
            if stride[d] <> expected then ok <- false
            expected <- expected * size[d]
    ok

/// |actual − expected| ≤ tolerance × max(1, max |expected|): random-init deep networks have large activations.
let private expectRelative (tolerance: float) (message: string) (actual: torch.Tensor) (expected: torch.Tensor) =
    let scale = max 1.0 (expected.abs().max().to_type(torch.float64).item<float> ())
    expectClose (tolerance * scale) message actual expected

/// The models whose training step (features, logits, CE, gradients) is compared too: one per kind of block
/// (plain, pre-activation, basic residual, concatenating dense, depthwise with squeeze-and-excitation).
let private trainedNames = [ "cnn"; "preact-resnet18"; "resnet18"; "cifar-densenet121"; "mobilenetv2"; "efficientnet-b0" ]

[<Tests>]
let tests =
    testList "MemoryFormat" [
        test "channels-last copies keep values and read as channels-last; standard tensors do not" {
            scoped (fun () ->
                let x = torch.randn (2L, 3L, 4L, 5L)
                let cl = MemoryFormat.channelsLast x
                Expect.isTrue (MemoryFormat.isChannelsLast cl) "the copy is channels-last"
                Expect.isFalse (MemoryFormat.isChannelsLast x) "a contiguous N×C×H×W tensor is not"
                Expect.sequenceEqual (cl.stride ()) [| 60L; 1L; 15L; 3L |] "NHWC strides"
                expectClose 0.0 "same values" cl x
                Expect.isFalse (MemoryFormat.isChannelsLast (torch.randn (2L, 3L, 1L, 1L))) "a contiguous N×C×1×1 tensor is not (libtorch's rule)"
                let gray = MemoryFormat.channelsLast (torch.randn (2L, 1L, 4L, 5L))
                Expect.sequenceEqual (gray.stride ()) [| 20L; 1L; 5L; 1L |] "one channel: libtorch's channels-last strides"
                Expect.isTrue (MemoryFormat.isChannelsLast gray) "and it reads as channels-last"
                Expect.isFalse (MemoryFormat.isChannelsLast (torch.randn (2L, 1L, 4L, 5L))) "a contiguous single-channel tensor is not")
        }

        testList "every registry model: channels-last forward equals the standard layout's (eval)" [
            for name in Models.names ->
                test name {
                    scoped (fun () ->
                        let batch, channels, side = inputOf name
                        let standard, fast = twins name channels side
                        use _ = standard
                        use _ = fast
                        standard.eval ()
                        fast.eval ()
                        use _ = torch.no_grad ()
                        let images = torch.randn (batch, int64 channels, side, side)
                        expectRelative 1e-4 $"{name}: logits" (fast.forward images) (standard.forward images)
                        if channels > 1 then Expect.isFalse (MemoryFormat.isChannelsLast images) "the caller's images keep their layout")
                }
        ]

        // Sequenced: dropout and stochastic depth draw from the global generator, reseeded for each model.
        testSequenced <| testList "training step: features, logits and every gradient equal the standard layout's" [
            for name in trainedNames ->
                test name {
                    scoped (fun () ->
                        // Train-mode BatchNorm over a few values is ill-conditioned (e.g. two 1×1 maps normalise to ±1
                        // whatever their difference): models that downsample 32× get 64×64 images, 4 of them.
                        let batch, _, side = inputOf name
                        let batch, side = if List.contains name [ "resnet18"; "mobilenetv2"; "efficientnet-b0" ] then 4L, 64L else batch, side
                        let standard, fast = twins name 3 side
                        use _ = standard
                        use _ = fast
                        // The first-layer gradients of MobileNetV2 and the CIFAR DenseNet pass back through 50–120
                        // train-mode BatchNorms: float32 rounding alone moves them by ~1% (in either layout), so these
                        // two are compared in float64, where the layouts must agree as closely as elsewhere.
                        let dtype = if name = "mobilenetv2" || name = "cifar-densenet121" then torch.float64 else torch.float32
                        standard.``to`` dtype |> ignore
                        fast.``to`` dtype |> ignore
                        let images = torch.randn (batch, 3L, side, side, dtype = dtype)
                        let labels = torch.tensor [| for i in 0L .. batch - 1L -> i % 10L |]
                        let step (model: Classifier) =
                            // The same dropout and stochastic-depth draws for both.
                            torch.manual_seed 11L |> ignore
                            model.train ()
                            let output = Classifier.featuresAndLogits (model, images)
                            torch.nn.functional.cross_entropy(output.Logits, labels).backward ()
                            output
                        let a, b = step standard, step fast
                        expectRelative 1e-4 $"{name}: features" b.Features a.Features
                        expectRelative 1e-4 $"{name}: logits" b.Logits a.Logits
                        let gradients (model: Classifier) = [ for struct (key, p) in model.named_parameters () -> key, p.grad ]
                        for (key, g), (_, h) in List.zip (gradients standard) (gradients fast) do
                            expectRelative 5e-3 $"{name}: gradient of {key}" h g
                        for struct (key, p) in fast.named_parameters () do
                            if p.dim () = 4L then
                                Expect.isTrue (MemoryFormat.isChannelsLast p) $"{name}: {key} is channels-last"
                                Expect.isTrue (MemoryFormat.isChannelsLast p.grad) $"{name}: the gradient of {key} is channels-last")
                }
        ]

        testList "the layout carries through every layer of every registry model" [
            for name in Models.names ->
                test name {
                    scoped (fun () ->
                        let batch, channels, side = inputOf name
                        use fast = Models.create (name, 10, channels, int side)
                        Classifier.useChannelsLast (fast, true)
                        let standardOutputs = ResizeArray<string>()
                        let hooks =
                            [ for struct (path, m) in fast.named_modules () do
                                  match m with
                                  | :? torch.nn.Module<torch.Tensor, torch.Tensor> as layer when path <> "" ->
                                      layer.register_forward_hook (fun _ _ output ->
                                          if output.dim () = 4L && not (nhwcInMemory output) then
                                              standardOutputs.Add $"{path} ({layer.GetType().Name}, strides {output.stride ()})"
                                          output)
                                  | _ -> () ]
                        fast.train ()
                        fast.forward (torch.randn (batch, int64 channels, side, side)) |> ignore
                        for hook in hooks do hook.remove ()
                        let listed = String.concat "; " standardOutputs
                        Expect.isEmpty standardOutputs $"{name}: 4-D outputs in the standard layout: {listed}")
                }
        ]

        test "state dicts written from a channels-last model are in the standard layout, with the same values" {
            withTempDir (fun dir ->
                scoped (fun () ->
                    let standard, fast = twins "resnet18" 3 32L
                    use _ = standard
                    use _ = fast
                    let path = Path.Combine(dir, "w.safetensors")
                    Weights.saveSafetensors (fast, path)
                    let read = Weights.read path
                    let expected = standard.state_dict ()
                    for KeyValue(key, tensor) in read do
                        Expect.isTrue (tensor.is_contiguous ()) $"{key} is contiguous in the file"
                        expectClose 0.0 $"{key} equals the standard model's" tensor expected[key]
                        tensor.Dispose()
                    // Loading into a channels-last model keeps its layout.
                    Weights.load (fast, path)
                    let weight = fast.state_dict().["conv1.weight"]
                    Expect.isTrue (MemoryFormat.isChannelsLast weight) "conv1.weight stays channels-last"))
        }
    ]
