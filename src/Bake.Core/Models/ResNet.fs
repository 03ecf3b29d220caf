namespace Bake.Core.Models

open TorchSharp

/// <summary>The two residual blocks of torchvision's ResNet.</summary>
type ResNetBlock =
    /// <summary>Two 3×3 convs (ResNet-18/34), expansion 1.</summary>
    | Basic
    /// <summary>1×1, 3×3 (stride and groups here: "v1.5"), 1×1 (ResNet-50+ and ResNeXt), expansion 4.</summary>
    | Bottleneck

/// <summary>torchvision's <c>BasicBlock</c>: conv1-bn1-relu-conv2-bn2, plus the identity or <c>downsample</c>
/// (1×1 strided conv + BN), then ReLU.</summary>
type internal BasicBlock(inputs: int64, planes: int64, stride: int64) as this =
    inherit torch.nn.Module<torch.Tensor, torch.Tensor>("BasicBlock")
    let conv1 = Layers.conv inputs planes 3L stride 1L
    let bn1 = torch.nn.BatchNorm2d planes
    let conv2 = Layers.conv planes planes 3L 1L 1L
    let bn2 = torch.nn.BatchNorm2d planes
    let downsample =
        if stride <> 1L || inputs <> planes then
            Some(new Chain("downsample", [ Layers.conv inputs planes 1L stride 1L :> torch.nn.Module<_, _>; torch.nn.BatchNorm2d planes ]))
        else
            None

    do
        this.register_module ("conv1", conv1)
        this.register_module ("bn1", bn1)
        this.register_module ("conv2", conv2)
        this.register_module ("bn2", bn2)
        downsample |> Option.iter (fun d -> this.register_module ("downsample", d))

    override _.forward(x: torch.Tensor) =
        use a = conv1.call x
        use b = torch.nn.functional.relu (bn1.call a, true)
        use c = conv2.call b
        let out = bn2.call c
        match downsample with
        | Some d ->
            use identity = d.call x
            out.add_(identity).relu_ ()
        | None -> out.add_(x).relu_ ()

/// <summary>torchvision's <c>Bottleneck</c>: conv1 (1×1) - conv2 (3×3, stride, groups) - conv3 (1×1, ×4), each
/// followed by BN (and ReLU but the last), plus the identity or <c>downsample</c>, then ReLU.</summary>
type internal BottleneckBlock(inputs: int64, planes: int64, stride: int64, groups: int64, widthPerGroup: int64) as this =
    inherit torch.nn.Module<torch.Tensor, torch.Tensor>("Bottleneck")
    // torchvision: width = int(planes * (base_width / 64.)) * groups
    let width = planes * widthPerGroup / 64L * groups
    let outputs = planes * 4L
    let conv1 = Layers.conv inputs width 1L 1L 1L
    let bn1 = torch.nn.BatchNorm2d width
    let conv2 = Layers.conv width width 3L stride groups
    let bn2 = torch.nn.BatchNorm2d width
    let conv3 = Layers.conv width outputs 1L 1L 1L
    let bn3 = torch.nn.BatchNorm2d outputs
    let downsample =
        if stride <> 1L || inputs <> outputs then
            Some(new Chain("downsample", [ Layers.conv inputs outputs 1L stride 1L :> torch.nn.Module<_, _>; torch.nn.BatchNorm2d outputs ]))
        else
            None

    do
        this.register_module ("conv1", conv1)
        this.register_module ("bn1", bn1)
        this.register_module ("conv2", conv2)
        this.register_module ("bn2", bn2)
        this.register_module ("conv3", conv3)
        this.register_module ("bn3", bn3)
        downsample |> Option.iter (fun d -> this.register_module ("downsample", d))

    override _.forward(x: torch.Tensor) =
        use a = conv1.call x
        use b = torch.nn.functional.relu (bn1.call a, true)
        use c = conv2.call b
        use d = torch.nn.functional.relu (bn2.call c, true)
        use e = conv3.call d
        let out = bn3.call e
        match downsample with
        | Some projection ->
            use identity = projection.call x
            out.add_(identity).relu_ ()
        | None -> out.add_(x).relu_ ()

/// <summary>torchvision's ImageNet ResNet / ResNeXt: 7×7/2 stem conv + BN + ReLU + 3×3/2 max pool; four stages
/// (64/128/256/512 planes, strides 1/2/2/2); global average pooling to the feature (512 or 2048); <c>fc</c>.
/// Initialisation as torchvision (Kaiming normal fan-out convs, BN 1/0, default Linear, no zero-init residual).</summary>
/// <remarks>State-dict keys equal torchvision's (<c>conv1</c>, <c>bn1</c>, <c>layer1.0.conv1</c>,
/// <c>layer2.0.downsample.0</c>, <c>fc</c>), so torchvision state dicts load by name.</remarks>
type ResNet(name: string, block: ResNetBlock, depths: int list, groups: int64, widthPerGroup: int64, classes: int64, channels: int64) as this =
    inherit Classifier(name)
    let expansion = match block with Basic -> 1L | Bottleneck -> 4L
    let conv1 = torch.nn.Conv2d(channels, 64L, 7L, stride = 2L, padding = 3L, bias = false)
    let bn1 = torch.nn.BatchNorm2d 64L
    let maxpool = torch.nn.MaxPool2d(3L, stride = 2L, padding = 1L)
    let stages =
        let mutable inputs = 64L
        let stages = ResizeArray<Chain>()
        for index, depth in List.indexed depths do
            let planes = 64L <<< index
            let blocks = ResizeArray<torch.nn.Module<torch.Tensor, torch.Tensor>>()
            for position in 0 .. depth - 1 do
                let stride = if index > 0 && position = 0 then 2L else 1L
                match block with
                | Basic -> blocks.Add(new BasicBlock(inputs, planes, stride))
                | Bottleneck -> blocks.Add(new BottleneckBlock(inputs, planes, stride, groups, widthPerGroup))
                inputs <- planes * expansion
            stages.Add(new Chain($"layer{index + 1}", List.ofSeq blocks))
        List.ofSeq stages
    let featureSize = 512L * expansion
    let fc = torch.nn.Linear(featureSize, classes)

    do
        this.register_module ("conv1", conv1)
        this.register_module ("bn1", bn1)
        this.register_module ("maxpool", maxpool)
        stages |> List.iteri (fun index stage -> this.register_module ($"layer{index + 1}", stage))
        this.register_module ("fc", fc)
        Init.kaimingFanOut this
        Init.batchNormUnit this

    override _.FeatureSize = featureSize
    override _.Classes = classes

    override _.Features(images: torch.Tensor) =
        use stem = conv1.call images
        use activated = torch.nn.functional.relu (bn1.call stem, true)
        use pooled = maxpool.call activated
        use maps = Layers.run (stages |> Seq.cast) pooled
        Layers.globalAveragePool maps

    override _.Head(features: torch.Tensor) = fc.call features
