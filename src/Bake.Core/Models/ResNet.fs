namespace Bake.Core.Models

open TorchSharp

/// <summary>The two residual blocks of torchvision's ResNet.</summary>
type ResNetBlock =
    /// <summary>Two 3×3 convs (ResNet-18/34), expansion 1.</summary>
    | Basic
    /// <summary>1×1, 3×3 (stride and groups here: "v1.5"), 1×1 (ResNet-50+ and ResNeXt), expansion 4.</summary>
    | Bottleneck

module internal Residual =

    /// <summary>torchvision's <c>downsample</c> (1×1 strided conv + BN) when the block changes the shape.</summary>
    let downsample (inputs: int64) (outputs: int64) (stride: int64) =
        if stride <> 1L || inputs <> outputs then
            Some(new Chain("downsample", [ Layers.conv inputs outputs 1L stride 1L :> torch.nn.Module<_, _>; torch.nn.BatchNorm2d outputs ]))
        else
            None

    /// <summary><c>relu(out + shortcut x)</c>, in place on <paramref name="out"/> (a fresh block output).</summary>
    let add (shortcut: Chain option) (x: torch.Tensor) (out: torch.Tensor) =
        match shortcut with
        | Some projection ->
            use identity = projection.call x
            out.add_(identity).relu_ ()
        | None -> out.add_(x).relu_ ()

/// <summary>torchvision's <c>BasicBlock</c>: conv1-bn1-relu-conv2-bn2, plus the identity or <c>downsample</c>,
/// then ReLU.</summary>
type internal BasicBlock(inputs: int64, planes: int64, stride: int64) as this =
    inherit torch.nn.Module<torch.Tensor, torch.Tensor>("BasicBlock")
    let conv1 = Layers.conv inputs planes 3L stride 1L
    let bn1 = torch.nn.BatchNorm2d planes
    let conv2 = Layers.conv planes planes 3L 1L 1L
    let bn2 = torch.nn.BatchNorm2d planes
    let downsample = Residual.downsample inputs planes stride

    do
        Children.register this [ "conv1", conv1; "bn1", bn1; "conv2", conv2; "bn2", bn2 ]
        downsample |> Option.iter (fun d -> this.register_module ("downsample", d))

    override _.forward(x: torch.Tensor) =
        use a = conv1.call x
        use b = (bn1.call a).relu_ ()
        use c = conv2.call b
        Residual.add downsample x (bn2.call c)

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
    let downsample = Residual.downsample inputs outputs stride

    do
        Children.register this [ "conv1", conv1; "bn1", bn1; "conv2", conv2; "bn2", bn2; "conv3", conv3; "bn3", bn3 ]
        downsample |> Option.iter (fun d -> this.register_module ("downsample", d))

    override _.forward(x: torch.Tensor) =
        use a = conv1.call x
        use b = (bn1.call a).relu_ ()
        use c = conv2.call b
        use d = (bn2.call c).relu_ ()
        use e = conv3.call d
        Residual.add downsample x (bn3.call e)

module internal ResNetLayers =

    /// <summary>conv1 (7×7/2) bn1 relu maxpool (3×3/2), then layer1…layer4 (64/128/256/512 planes, strides 1/2/2/2).</summary>
    let trunk (block: ResNetBlock) (depths: int list) (groups: int64) (widthPerGroup: int64) (channels: int64) : Trunk =
        let expansion = match block with Basic -> 1L | Bottleneck -> 4L
        let stages = ResizeArray<string * torch.nn.Module<torch.Tensor, torch.Tensor>>()
        let mutable inputs = 64L
        for index, depth in List.indexed depths do
            let planes = 64L <<< index
            let blocks = ResizeArray<torch.nn.Module<torch.Tensor, torch.Tensor>>()
            for position in 0 .. depth - 1 do
                let stride = if index > 0 && position = 0 then 2L else 1L
                match block with
                | Basic -> blocks.Add(new BasicBlock(inputs, planes, stride))
                | Bottleneck -> blocks.Add(new BottleneckBlock(inputs, planes, stride, groups, widthPerGroup))
                inputs <- planes * expansion
            stages.Add($"layer{index + 1}", new Chain($"layer{index + 1}", List.ofSeq blocks))
        { Layers =
            [ "conv1", torch.nn.Conv2d(channels, 64L, 7L, stride = 2L, padding = 3L, bias = false) :> torch.nn.Module<_, _>
              "bn1", torch.nn.BatchNorm2d 64L
              "relu", new Activation("ReLU", true)
              "maxpool", torch.nn.MaxPool2d(3L, stride = 2L, padding = 1L) ]
            @ List.ofSeq stages
          Width = inputs }

/// <summary>torchvision's ImageNet ResNet / ResNeXt: 7×7/2 stem conv + BN + ReLU + 3×3/2 max pool; four stages
/// (64/128/256/512 planes, strides 1/2/2/2); global average pooling to the feature (512 or 2048); <c>fc</c>.
/// Initialisation as torchvision (Kaiming normal fan-out convs, BN 1/0, default Linear, no zero-init residual).</summary>
/// <remarks>State-dict keys equal torchvision's (<c>conv1</c>, <c>bn1</c>, <c>layer1.0.conv1</c>,
/// <c>layer2.0.downsample.0</c>, <c>fc</c>), so torchvision state dicts load by name. ResNeXt-AxBd is
/// <c>groups</c> = A, <c>widthPerGroup</c> = B with bottleneck blocks.</remarks>
type ResNet(name: string, block: ResNetBlock, depths: int list, groups: int64, widthPerGroup: int64, classes: int64, channels: int64) as this =
    inherit PooledClassifier(name, ResNetLayers.trunk block depths groups widthPerGroup channels, "fc", Heads.linear, classes)

    do
        Init.kaimingFanOut this
        Init.batchNormUnit this
