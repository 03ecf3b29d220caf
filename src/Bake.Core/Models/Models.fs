namespace Bake.Core.Models

open System
open System.Text
open Bake.Core

/// <summary>One entry of the model registry.</summary>
[<NoComparison; NoEquality>]
type internal ModelEntry =
    {
        Name: string
        Summary: string
        /// <summary>Smallest image side the architecture accepts (its pooling must not reach zero).</summary>
        MinImageSize: int
        Build: string -> int64 -> int64 -> Classifier
    }

/// <summary>The model registry: every architecture Bake trains, by name.</summary>
[<RequireQualifiedAccess>]
module Models =

    let private entry name minImageSize summary (build: string -> int64 -> int64 -> Classifier) =
        { Name = name; Summary = summary; MinImageSize = minImageSize; Build = build }

    let private entries: ModelEntry list =
        let resnet name block depths groups width summary =
            entry name 1 summary (fun n classes channels -> new ResNet(n, block, depths, groups, width, classes, channels))
        let cifarResNet name stem widths blocks summary =
            entry name 1 summary (fun n classes channels -> new CifarResNet(n, stem, widths, blocks, classes, channels))
        [ entry "cnn" 8 "small CNN for CPU experiments (default): 3 × (conv3×3-BN-ReLU, 2×2 max pool), widths 32-64-128, global average pool, linear"
              (fun n classes channels -> new SmallCnn(n, [ 32L; 64L; 128L ], 1, classes, channels))
          entry "cnn-tiny" 4 "tiny CNN for tests: 2 × (conv3×3-BN-ReLU, 2×2 max pool), widths 8-16, global average pool, linear"
              (fun n classes channels -> new SmallCnn(n, [ 8L; 16L ], 1, classes, channels))
          entry "preact-resnet18" 1 "CIFAR PreAct ResNet-18 of the official small-scale code (docs/official-code.md §5.1)"
              (fun n classes channels -> new CifarPreActResNet18(n, classes, channels))
          entry "cifar-densenet121" 8 "CIFAR DenseNet-121 of the official small-scale code (docs/official-code.md §5.2)"
              (fun n classes channels -> new CifarDenseNet121(n, classes, channels))
          cifarResNet "resnet20" 16L [ 16L; 32L; 64L ] 3 "CIFAR ResNet-20 (He et al. 2016 §4.2 as in CRD's resnet.py: 16-32-64, 3 blocks per stage, 1×1 conv + BN projection shortcuts)"
          cifarResNet "resnet32" 16L [ 16L; 32L; 64L ] 5 "CIFAR ResNet-32 (16-32-64, 5 blocks per stage, CRD's)"
          cifarResNet "resnet56" 16L [ 16L; 32L; 64L ] 9 "CIFAR ResNet-56 (16-32-64, 9 blocks per stage, CRD's)"
          cifarResNet "resnet110" 16L [ 16L; 32L; 64L ] 18 "CIFAR ResNet-110 (16-32-64, 18 blocks per stage, CRD's)"
          cifarResNet "resnet8x4" 32L [ 64L; 128L; 256L ] 1 "CIFAR ResNet-8×4 of the KD literature (CRD's: stem 32, stages 64-128-256, 1 block per stage)"
          cifarResNet "resnet32x4" 32L [ 64L; 128L; 256L ] 5 "CIFAR ResNet-32×4 of the KD literature (CRD's: stem 32, stages 64-128-256, 5 blocks per stage)"
          resnet "resnet18" Basic [ 2; 2; 2; 2 ] 1L 64L "torchvision resnet18"
          resnet "resnet34" Basic [ 3; 4; 6; 3 ] 1L 64L "torchvision resnet34"
          resnet "resnet50" Bottleneck [ 3; 4; 6; 3 ] 1L 64L "torchvision resnet50"
          resnet "resnet101" Bottleneck [ 3; 4; 23; 3 ] 1L 64L "torchvision resnet101"
          resnet "resnet152" Bottleneck [ 3; 8; 36; 3 ] 1L 64L "torchvision resnet152"
          resnet "resnext50-32x4d" Bottleneck [ 3; 4; 6; 3 ] 32L 4L "torchvision resnext50_32x4d"
          resnet "resnext101-32x4d" Bottleneck [ 3; 4; 23; 3 ] 32L 4L "ResNeXt-101 32×4d (torchvision's ResNet class, groups 32, width 4)"
          resnet "resnext152-32x4d" Bottleneck [ 3; 8; 36; 3 ] 32L 4L "ResNeXt-152 32×4d (the official BAKE-X-152 config; torchvision's ResNet class)"
          entry "densenet121" 32 "torchvision densenet121"
              (fun n classes channels -> new DenseNet(n, [ 6; 12; 24; 16 ], 32L, 64L, 4L, classes, channels))
          entry "mobilenetv2" 1 "torchvision mobilenet_v2 (width 1.0)" (fun n classes channels -> new MobileNetV2(n, classes, channels))
          entry "efficientnet-b0" 1 "torchvision efficientnet_b0" (fun n classes channels -> new EfficientNetB0(n, classes, channels)) ]

    /// <summary>The registered names, in the order of <c>bake models</c>' listing.</summary>
    let names: string list = entries |> List.map (fun entry -> entry.Name)

    /// <summary>One line per model: name and what it is.</summary>
    [<CompiledName("Summaries")>]
    let summaries () : (string * string) list = entries |> List.map (fun entry -> entry.Name, entry.Summary)

    /// <summary>Accepts the registry's spelling and torchvision's (<c>resnext50_32x4d</c>, <c>mobilenet_v2</c>,
    /// <c>efficientnet_b0</c>), case-insensitively.</summary>
    let private normalize (name: string) =
        name.Trim().ToLowerInvariant().Replace('_', '-').Replace("mobilenet-v2", "mobilenetv2")

    /// <summary>Builds a freshly initialised model (train mode, CPU, float32).</summary>
    /// <param name="name">A registered name (see <see cref="P:Bake.Core.Models.Models.names"/>); torchvision's
    /// spelling with underscores is accepted too.</param>
    /// <param name="classes">K ≥ 1, the width of the logits.</param>
    /// <param name="channels">Image channels ≥ 1 (1 for grayscale, 3 for RGB).</param>
    /// <param name="imageSize">The side of the (square) training images; checked against the smallest size the
    /// architecture accepts. The models pool globally, so they work for any size at or above it.</param>
    /// <exception cref="T:Bake.Core.UsageException">Unknown name (the message lists the known names and suggests the
    /// nearest), or a count or size out of range.</exception>
    [<CompiledName("Create")>]
    let create (name: string, classes: int, channels: int, imageSize: int) : Classifier =
        let key = if isNull name then "" else normalize name
        match entries |> List.tryFind (fun entry -> entry.Name = key) with
        | None ->
            let nearest = Spelling.nearest (names, key)
            let suggestion = if Spelling.distance (key, nearest) <= max 2 (key.Length / 3) then $" Did you mean '{nearest}'?" else ""
            let known = String.Join(", ", names)
            raise (UsageException($"unknown model '{name}'.{suggestion} Known models: {known}."))
        | Some entry ->
            if classes < 1 then raise (UsageException($"model {entry.Name}: the number of classes must be at least 1, got {classes}"))
            if channels < 1 then raise (UsageException($"model {entry.Name}: the number of image channels must be at least 1, got {channels}"))
            if imageSize < entry.MinImageSize then
                raise (
                    UsageException(
                        $"model {entry.Name} needs images of at least {entry.MinImageSize}×{entry.MinImageSize} pixels, got {imageSize}×{imageSize}"
                    )
                )
            entry.Build entry.Name (int64 classes) (int64 channels)

    /// <summary>Groups digits by thousands with commas (invariant), e.g. 11,689,512.</summary>
    let internal thousands (value: int64) = value.ToString("N0", Globalization.CultureInfo.InvariantCulture)

    /// <summary>A text summary: the top-level children with their parameter counts, the total, the feature size
    /// and the number of classes.</summary>
    [<CompiledName("Describe")>]
    let describe (model: Classifier) : string =
        let children = model.named_children () |> Seq.map (fun struct (childName, child) -> childName, Classifier.parameterCount child) |> List.ofSeq
        let nameWidth = children |> List.fold (fun width (childName, _) -> max width childName.Length) 10
        let total = Classifier.parameterCount model
        let text = StringBuilder()
        text.AppendLine($"{model.GetName()}: {thousands total} parameters, {model.FeatureSize}-d features, {model.Classes} classes") |> ignore
        for childName, count in children do
            text.AppendLine($"  {childName.PadRight nameWidth}  {(thousands count).PadLeft 12}") |> ignore
        text.ToString().TrimEnd()
