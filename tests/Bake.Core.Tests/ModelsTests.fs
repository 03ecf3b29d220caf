module Bake.Core.Tests.ModelsTests

open System
open System.IO
open System.Text.Json
open Expecto
open TorchSharp
open Bake.Core
open Bake.Core.Models
open Bake.Core.Tests.TestUtil

/// Parameter counts and "key [shape]" state-dict entries of the reference PyTorch models, written by
/// tests/fixtures/make_model_keys.py (torchvision, and the official small-scale CIFAR models).
let reference = lazy (JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "fixtures", "model_keys.json"))))

let referenceModel (name: string) = reference.Force().RootElement.GetProperty("models").GetProperty(name)

/// Bake's state dict in the fixture's notation, e.g. "conv1.weight [64, 3, 7, 7]".
let stateEntries (model: torch.nn.Module) =
    [ for KeyValue(key, value) in model.state_dict () -> $"""{key} [{value.shape |> Array.map string |> String.concat ", "}]""" ]

/// The submodule at a dotted path, e.g. "layer1.0.bn1".
let submodule (model: torch.nn.Module) (path: string) =
    model.named_modules () |> Seq.pick (fun struct (name, m) -> if name = path then Some(m :?> torch.nn.Module<torch.Tensor, torch.Tensor>) else None)

let preview (items: string seq) = items |> Seq.truncate 8 |> String.concat "; "

/// Image side used for shape tests: CIFAR models on 32×32, the others on 64×64 (batch 1 for the big ones).
let inputFor (name: string) =
    match name with
    | "preact-resnet18" | "cifar-densenet121" | "resnet20" | "resnet32" | "resnet56" | "resnet110" | "resnet8x4" | "resnet32x4" -> 2L, 32L
    | "cnn" | "cnn-tiny" -> 2L, 28L
    | _ -> 1L, 64L

let referenceNames = [ "resnet18"; "resnet34"; "resnet50"; "resnet101"; "resnet152"; "resnext50-32x4d"; "resnext101-32x4d"; "densenet121"; "mobilenetv2"; "efficientnet-b0"; "preact-resnet18"; "cifar-densenet121"; "resnet20"; "resnet32"; "resnet56"; "resnet110"; "resnet8x4"; "resnet32x4" ]

/// A training-mode forward pass leaves only its output alive (every intermediate is freed as soon as it is used,
/// so peak memory stays low), does not modify its input, and the backward pass reaches every parameter.
let expectTrainable (name: string) (model: Classifier) (batch: int64) (channels: int64) (side: int64) =
    model.train ()
    use scope = torch.NewDisposeScope()
    let images = torch.randn (batch, channels, side, side)
    let original = images.clone ()
    let alive = scope.DisposablesCount
    let logits = model.forward images
    Expect.equal scope.DisposablesCount (alive + 1) $"{name}: only the logits are added to the live tensors by forward"
    logits.sum().backward ()
    expectClose 0.0 $"{name}: the images are not modified" images original
    for struct (parameterName, parameter) in model.named_parameters () do
        Expect.isNotNull parameter.grad $"{name}: {parameterName} receives a gradient"
    model.zero_grad ()

/// Builds the model as the fixture did (its class count, 3 channels), checks parameter count, state-dict keys and
/// shapes against PyTorch's, then runs one forward pass in eval mode and checks the output shapes.
let matchesReference (name: string) =
    test name {
        scoped (fun () ->
            let expected = referenceModel name
            let classes = expected.GetProperty("classes").GetInt32()
            let batch, side = inputFor name
            use model = Models.create (name, classes, 3, int side)
            let count = Classifier.parameterCount model
            Expect.equal count (expected.GetProperty("parameters").GetInt64()) $"{name}: parameter count (PyTorch's sum of numel)"
            let ours = set (stateEntries model)
            let theirs = set [ for entry in expected.GetProperty("state").EnumerateArray() -> entry.GetString() ]
            let missing = Set.difference theirs ours
            let extra = Set.difference ours theirs
            Expect.isTrue (missing.IsEmpty && extra.IsEmpty) $"{name}: state dict differs from PyTorch's: missing {missing.Count} [{preview missing}], extra {extra.Count} [{preview extra}]"
            expectTrainable name model batch 3L side
            model.eval ()
            use _ = torch.no_grad ()
            let images = torch.randn (batch, 3L, side, side)
            use output = Classifier.featuresAndLogits (model, images)
            Expect.sequenceEqual output.Features.shape [| batch; model.FeatureSize |] $"{name}: features N×D"
            Expect.sequenceEqual output.Logits.shape [| batch; int64 classes |] $"{name}: logits N×K"
            Expect.equal model.Classes (int64 classes) "Classes"
            let logits = model.forward images
            expectClose 1e-5 $"{name}: forward = Head(Features)" logits output.Logits)
    }

[<Tests>]
let tests =
    testList "Models" [
        testList "match PyTorch: parameter count, state-dict keys and shapes, forward shapes" [
            for name in referenceNames -> matchesReference name
        ]

        test "the registry covers every fixture model and the two small CNNs" {
            Expect.containsAll Models.names ("cnn" :: "cnn-tiny" :: referenceNames) "registered names"
            Expect.equal (List.length Models.names) (List.length (List.distinct Models.names)) "no duplicates"
        }

        test "small CNNs work for any channel count and image size ≥ 8, and train" {
            scoped (fun () ->
                for name in [ "cnn"; "cnn-tiny" ] do
                    for channels, side in [ 1, 28; 3, 32; 1, 8; 4, 13 ] do
                        use model = Models.create (name, 10, channels, side)
                        let images = torch.randn (3L, int64 channels, int64 side, int64 side)
                        use output = Classifier.featuresAndLogits (model, images)
                        Expect.sequenceEqual output.Logits.shape [| 3L; 10L |] $"{name} {channels}×{side}×{side}: logits"
                        Expect.sequenceEqual output.Features.shape [| 3L; model.FeatureSize |] $"{name}: features"
                        expectTrainable name model 3L (int64 channels) (int64 side))
        }

        test "the default CNN: 3 blocks 32-64-128, 128-d features" {
            scoped (fun () ->
                use model = Models.create ("cnn", 10, 1, 28)
                Expect.equal model.FeatureSize 128L "feature size"
                // Per block: 3×3 conv without bias (cin·cout·9) and BatchNorm (2·cout); then Linear(128, 10).
                let blocks = [ 1L, 32L; 32L, 64L; 64L, 128L ] |> List.sumBy (fun (cin, cout) -> cin * cout * 9L + 2L * cout)
                Expect.equal (Classifier.parameterCount model) (blocks + 128L * 10L + 10L) "parameter count"
                let describe = Models.describe model
                Expect.stringContains describe "block3" "describe lists the blocks"
                Expect.stringContains describe $"{Classifier.parameterCount model:N0}" "describe gives the total")
        }

        test "describe lists the top-level children with their parameter counts and the total" {
            scoped (fun () ->
                use model = Models.create ("resnet18", 1000, 3, 224)
                let text = Models.describe model
                Expect.stringStarts text "resnet18: 11,689,512 parameters, 512-d features, 1000 classes" "header"
                Expect.stringContains text "layer4" "children"
                Expect.stringContains text "513,000" "fc: 512·1000 + 1000")
        }

        test "CIFAR ResNets (CRD's): depth 6n+2, the published parameter counts, 1×1 conv + BN projections only where the shape changes" {
            scoped (fun () ->
                // resnet20 at 10 classes: He et al.'s 269,722 (option A, "0.27M") + two projections, 16·32 + 2·32 and
                // 32·64 + 2·64; CRD's resnet8x4 1.23M and resnet32x4 7.43M at 100 classes.
                for name, classes, expected in [ "resnet20", 10, 269_722L + 576L + 2_176L; "resnet8x4", 100, 1_233_540L; "resnet32x4", 100, 7_433_860L ] do
                    use model = Models.create (name, classes, 3, 32)
                    Expect.equal (Classifier.parameterCount model) expected $"{name}: parameters at {classes} classes"
                let projections (model: torch.nn.Module) =
                    [ for struct (key, _) in model.named_modules () do if key.EndsWith ".downsample" then key ] |> List.sort
                use r20 = Models.create ("resnet20", 10, 3, 32)
                Expect.equal (projections r20) [ "layer2.0.downsample"; "layer3.0.downsample" ] "resnet20: 16→32 and 32→64 project"
                Expect.equal r20.FeatureSize 64L "resnet20: 64-d features"
                use r8 = Models.create ("resnet8x4", 10, 3, 32)
                Expect.equal (projections r8) [ "layer1.0.downsample"; "layer2.0.downsample"; "layer3.0.downsample" ] "resnet8x4: the 32-wide stem projects into 64 too"
                Expect.equal r8.FeatureSize 256L "resnet8x4: 256-d features"
                for name, blocks in [ "resnet32", 5; "resnet56", 9; "resnet110", 18 ] do
                    use model = Models.create (name, 10, 3, 32)
                    let convs = model.named_parameters () |> Seq.filter (fun struct (key, p) -> p.dim () = 4L && not (key.Contains "downsample")) |> Seq.length
                    Expect.equal convs (6 * blocks + 1) $"{name}: 6n + 1 conv layers (+ fc = depth {6 * blocks + 2})"
                // Any image size and channel count: global pooling (CRD's AvgPool2d(8) needs 32×32).
                use gray = Models.create ("resnet20", 5, 1, 28)
                use logits = gray.forward (torch.randn (2L, 1L, 28L, 28L))
                Expect.sequenceEqual logits.shape [| 2L; 5L |] "1×28×28 input")
        }

        test "the CIFAR PreAct block takes its identity shortcut from relu(bn1(x)) (official quirk)" {
            scoped (fun () ->
                // With conv2 zeroed, a block outputs exactly its shortcut: relu(bn1 x) for the identity case.
                use model = Models.create ("preact-resnet18", 10, 3, 32)
                let block = submodule model "layer1.0"
                use _ = torch.no_grad ()
                let weight = model.get_parameter "layer1.0.conv2.weight"
                weight.zero_ () |> ignore
                model.eval ()
                let x = torch.randn (2L, 64L, 8L, 8L)
                let bn1 = submodule model "layer1.0.bn1"
                let expected = torch.nn.functional.relu (bn1.call x)
                expectClose 1e-6 "block output = relu(bn1 x)" (block.call x) expected)
        }

        test "train-mode Head does not modify the features (dropout is not in place)" {
            scoped (fun () ->
                for name in [ "mobilenetv2"; "efficientnet-b0" ] do
                    use model = Models.create (name, 5, 3, 32)
                    model.train ()
                    let features = torch.rand (4L, model.FeatureSize)
                    let before = features.clone ()
                    model.Head features |> ignore
                    expectClose 0.0 $"{name}: features unchanged" features before)
        }

        test "unknown names fail with the known names and a suggestion; torchvision spellings are accepted" {
            let e = throwsWith<UsageException> (fun () -> Models.create ("resnet19", 10, 3, 32) |> ignore)
            Expect.stringContains e.Message "unknown model 'resnet19'" "names the input"
            Expect.stringContains e.Message "Did you mean 'resnet18'?" "suggests the nearest"
            Expect.stringContains e.Message "efficientnet-b0" "lists the known names"
            let far = throwsWith<UsageException> (fun () -> Models.create ("transformer", 10, 3, 32) |> ignore)
            Expect.isFalse (far.Message.Contains "Did you mean") "no suggestion when nothing is close"
            scoped (fun () ->
                use model = Models.create ("ResNeXt50_32x4d", 10, 3, 32)
                Expect.equal (model.GetName()) "resnext50-32x4d" "torchvision spelling, any case"
                use mobile = Models.create ("mobilenet_v2", 10, 3, 32)
                Expect.equal (mobile.GetName()) "mobilenetv2" "mobilenet_v2")
        }

        test "bad sizes fail with a usage error naming the model and the limit" {
            let small = throwsWith<UsageException> (fun () -> Models.create ("densenet121", 10, 3, 28) |> ignore)
            Expect.stringContains small.Message "densenet121 needs images of at least 32×32 pixels, got 28×28" "image size"
            let cnn = throwsWith<UsageException> (fun () -> Models.create ("cnn", 10, 1, 7) |> ignore)
            Expect.stringContains cnn.Message "at least 8×8" "cnn"
            let classes = throwsWith<UsageException> (fun () -> Models.create ("cnn", 0, 1, 28) |> ignore)
            Expect.stringContains classes.Message "classes must be at least 1, got 0" "classes"
            let channels = throwsWith<UsageException> (fun () -> Models.create ("cnn", 10, 0, 28) |> ignore)
            Expect.stringContains channels.Message "channels must be at least 1, got 0" "channels"
        }

        test "EfficientNet stochastic depth: random in training, the identity in evaluation" {
            scoped (fun () ->
                use model = Models.create ("efficientnet-b0", 4, 3, 32)
                let images = torch.randn (8L, 3L, 32L, 32L)
                use _ = torch.no_grad ()
                model.eval ()
                let a = model.forward images
                let b = model.forward images
                expectClose 0.0 "eval is deterministic" a b
                model.train ()
                // Features have no dropout: in training they differ between passes only by stochastic depth.
                let c = model.Features images
                let d = model.Features images
                Expect.isGreaterThan (maxAbsDiff c d) 1e-6 "training drops residual branches at random")
        }
    ]

