namespace Bake.Core.Models

open TorchSharp

/// <summary>The pre-activation block of the official small-scale code (docs/official-code.md §5.1), quirk included:
/// <c>out = relu(bn1 x)</c>; the shortcut (identity, or a 1×1 strided conv without BatchNorm) is taken from
/// <c>out</c>, not from <c>x</c>; <c>conv2(relu(bn2(conv1 out))) + shortcut</c>.</summary>
type internal PreActBlock(inputs: int64, planes: int64, stride: int64) as this =
    inherit torch.nn.Module<torch.Tensor, torch.Tensor>("PreActBlock")
    let bn1 = torch.nn.BatchNorm2d inputs
    let conv1 = Layers.conv inputs planes 3L stride 1L
    let bn2 = torch.nn.BatchNorm2d planes
    let conv2 = Layers.conv planes planes 3L 1L 1L
    let projection =
        if stride <> 1L || inputs <> planes then Some(Layers.conv inputs planes 1L stride 1L) else None

    do
        Children.register this [ "bn1", bn1; "conv1", conv1; "bn2", bn2; "conv2", conv2 ]
        projection |> Option.iter (fun conv -> this.register_module ("shortcut", new Chain("shortcut", [ conv :> torch.nn.Module<_, _> ])))

    override _.forward(x: torch.Tensor) =
        use activated = (bn1.call x).relu_ ()
        use projected = match projection with Some conv -> conv.call activated | None -> null
        let shortcut = if isNull projected then activated else projected
        use h = conv1.call activated
        use hidden = (bn2.call h).relu_ ()
        let out = conv2.call hidden
        out.add_ shortcut

/// <summary>The official small-scale DenseNet bottleneck (kuangliu style): BN-ReLU-conv1×1(4g), BN-ReLU-conv3×3(g),
/// then <c>cat [new; x]</c> (new channels first, as the official code concatenates).</summary>
type internal CifarDenseBottleneck(inputs: int64, growth: int64) as this =
    inherit torch.nn.Module<torch.Tensor, torch.Tensor>("Bottleneck")
    let bn1 = torch.nn.BatchNorm2d inputs
    let conv1 = Layers.conv inputs (4L * growth) 1L 1L 1L
    let bn2 = torch.nn.BatchNorm2d(4L * growth)
    let conv2 = Layers.conv (4L * growth) growth 3L 1L 1L

    do Children.register this [ "bn1", bn1; "conv1", conv1; "bn2", bn2; "conv2", conv2 ]

    override _.forward(x: torch.Tensor) =
        use a = (bn1.call x).relu_ ()
        use b = conv1.call a
        use c = (bn2.call b).relu_ ()
        use fresh = conv2.call c
        torch.cat ([| fresh; x |], 1L)

/// <summary>The official small-scale DenseNet transition: BN-ReLU-conv1×1, then 2×2 average pooling.</summary>
type internal CifarTransition(inputs: int64, outputs: int64) as this =
    inherit torch.nn.Module<torch.Tensor, torch.Tensor>("Transition")
    let bn = torch.nn.BatchNorm2d inputs
    let conv = Layers.conv inputs outputs 1L 1L 1L

    do Children.register this [ "bn", bn; "conv", conv ]

    override _.forward(x: torch.Tensor) =
        use a = (bn.call x).relu_ ()
        use b = conv.call a
        torch.nn.functional.avg_pool2d (b, 2L)

module internal CifarLayers =

    /// <summary>3×3 stem conv + BN + ReLU, four stages of two PreAct blocks (64/128/256/512, strides 1/2/2/2).</summary>
    let preActResNet18 (channels: int64) : Trunk =
        let stages =
            [ 64L, 1L; 128L, 2L; 256L, 2L; 512L, 2L ]
            |> List.mapi (fun index (planes, stride) ->
                let inputs = if index = 0 then 64L else planes / 2L
                let name = $"layer{index + 1}"
                name, new Chain(name, [ new PreActBlock(inputs, planes, stride) :> torch.nn.Module<_, _>; new PreActBlock(planes, planes, 1L) ]) :> torch.nn.Module<_, _>)
        { Layers =
            [ "conv1", Layers.conv channels 64L 3L 1L 1L :> torch.nn.Module<_, _>
              "bn1", torch.nn.BatchNorm2d 64L
              "relu", new Activation("ReLU", true) ]
            @ stages
          Width = 512L }

    /// <summary>3×3 stem conv (2·growth), dense blocks dense1…dense4 with transitions trans1…trans3 (reduction 0.5),
    /// final BN and ReLU.</summary>
    let denseNet121 (channels: int64) : Trunk =
        let growth = 32L
        let layers = ResizeArray<string * torch.nn.Module<torch.Tensor, torch.Tensor>>()
        layers.Add("conv1", Layers.conv channels (2L * growth) 3L 1L 1L)
        let mutable planes = 2L * growth
        for index, count in List.indexed [ 6; 12; 24; 16 ] do
            let bottlenecks = ResizeArray<torch.nn.Module<torch.Tensor, torch.Tensor>>()
            for _ in 1..count do
                bottlenecks.Add(new CifarDenseBottleneck(planes, growth))
                planes <- planes + growth
            layers.Add($"dense{index + 1}", new Chain($"dense{index + 1}", List.ofSeq bottlenecks))
            if index < 3 then
                layers.Add($"trans{index + 1}", new CifarTransition(planes, planes / 2L))
                planes <- planes / 2L
        layers.Add("bn", torch.nn.BatchNorm2d planes)
        layers.Add("relu", new Activation("ReLU", true))
        { Layers = List.ofSeq layers; Width = planes }

/// <summary>CIFAR PreAct ResNet-18 exactly as the official small-scale code (CS-KD fork) builds it
/// (docs/official-code.md §5.1): 3×3 stem conv (stride 1, no bias) + BN + ReLU; four stages of two pre-activation blocks
/// (64/128/256/512, strides 1/2/2/2) whose identity shortcut is taken after the block's BN-ReLU; no final BN-ReLU;
/// average pooling to the 512-d feature (pre-activation, may be negative); Linear(512, K). PyTorch's default init.</summary>
/// <remarks>State-dict keys are the official ones (<c>conv1</c>, <c>bn1</c>, <c>layer1.0.bn1</c>,
/// <c>layer2.0.shortcut.0.weight</c>, <c>linear</c>), so CS-KD/BAKE small-scale checkpoints load. The official
/// code pools with AvgPool2d(4), which on 32×32 inputs is the global average used here; global pooling also
/// makes other sizes work.</remarks>
type CifarPreActResNet18(name: string, classes: int64, channels: int64) =
    inherit PooledClassifier(name, CifarLayers.preActResNet18 channels, "linear", Heads.linear, classes)

/// <summary>CIFAR DenseNet-121 as the official small-scale code builds it (docs/official-code.md §5.2): growth 32, blocks
/// 6-12-24-16, reduction 0.5; 3×3 stem conv (64, no bias) with no BN or pooling; final BN, ReLU, average pooling to
/// the 1024-d feature; Linear(1024, K). PyTorch's default init.</summary>
/// <remarks>State-dict keys are the official ones (<c>conv1</c>, <c>dense1.0.bn1</c>, <c>trans1.conv</c>,
/// <c>bn</c>, <c>linear</c>). Needs images of at least 8×8 (three 2×2 average poolings).</remarks>
type CifarDenseNet121(name: string, classes: int64, channels: int64) =
    inherit PooledClassifier(name, CifarLayers.denseNet121 channels, "linear", Heads.linear, classes)
