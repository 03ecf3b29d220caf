namespace Bake.Core.Models

open TorchSharp

/// <summary>torchvision's <c>_DenseLayer</c>: norm1-relu1-conv1 (1×1 to bn_size·growth), norm2-relu2-conv2 (3×3 to
/// growth); returns only the new <c>growth</c> channels.</summary>
type internal DenseLayer(inputs: int64, growth: int64, bottleneckWidth: int64) as this =
    inherit torch.nn.Module<torch.Tensor, torch.Tensor>("DenseLayer")
    let norm1 = torch.nn.BatchNorm2d inputs
    let conv1 = Layers.conv inputs (bottleneckWidth * growth) 1L 1L 1L
    let norm2 = torch.nn.BatchNorm2d(bottleneckWidth * growth)
    let conv2 = Layers.conv (bottleneckWidth * growth) growth 3L 1L 1L

    do Children.register this [ "norm1", norm1; "conv1", conv1; "norm2", norm2; "conv2", conv2 ]

    override _.forward(x: torch.Tensor) =
        use a = (norm1.call x).relu_ ()
        use b = conv1.call a
        use c = (norm2.call b).relu_ ()
        conv2.call c

/// <summary>torchvision's <c>_DenseBlock</c> (children <c>denselayer1</c>…): each layer sees the concatenation of
/// the block input and all earlier layers' outputs, in that order; returns the full concatenation.</summary>
type internal DenseBlock(inputs: int64, layers: int, growth: int64, bottleneckWidth: int64) as this =
    inherit torch.nn.Module<torch.Tensor, torch.Tensor>("DenseBlock")
    let denseLayers =
        [ for index in 0 .. layers - 1 -> new DenseLayer(inputs + int64 index * growth, growth, bottleneckWidth) ]

    do denseLayers |> List.iteri (fun index layer -> this.register_module ($"denselayer{index + 1}", layer))

    /// <summary>Channels out: inputs + layers · growth.</summary>
    member _.Outputs = inputs + int64 layers * growth

    override _.forward(x: torch.Tensor) =
        let mutable all = x.alias ()
        for layer in denseLayers do
            use fresh = layer.call all
            let next = torch.cat ([| all; fresh |], 1L)
            all.Dispose()
            all <- next
        all

module internal DenseNetLayers =

    /// <summary><c>features</c> = conv0 (7×7/2) norm0 relu0 pool0 (3×3/2 max), dense blocks with transitions (norm,
    /// relu, 1×1 conv halving the channels, 2×2 average pool), norm5; then a ReLU (torchvision's forward applies it).</summary>
    let trunk (blocks: int list) (growth: int64) (initialFeatures: int64) (bottleneckWidth: int64) (channels: int64) : Trunk =
        let children = ResizeArray<string * torch.nn.Module<torch.Tensor, torch.Tensor>>()
        children.Add("conv0", torch.nn.Conv2d(channels, initialFeatures, 7L, stride = 2L, padding = 3L, bias = false))
        children.Add("norm0", torch.nn.BatchNorm2d initialFeatures)
        children.Add("relu0", new Activation("ReLU", true))
        children.Add("pool0", torch.nn.MaxPool2d(3L, stride = 2L, padding = 1L))
        let mutable planes = initialFeatures
        for index, layers in List.indexed blocks do
            let block = new DenseBlock(planes, layers, growth, bottleneckWidth)
            children.Add($"denseblock{index + 1}", block)
            planes <- block.Outputs
            if index < blocks.Length - 1 then
                let transition =
                    new Chain(
                        $"transition{index + 1}",
                        [ "norm", torch.nn.BatchNorm2d planes :> torch.nn.Module<_, _>
                          "relu", new Activation("ReLU", true)
                          "conv", Layers.conv planes (planes / 2L) 1L 1L 1L
                          "pool", torch.nn.AvgPool2d(2L, stride = 2L) ]
                    )
                children.Add($"transition{index + 1}", transition)
                planes <- planes / 2L
        children.Add("norm5", torch.nn.BatchNorm2d planes)
        { Layers = [ "features", new Chain("features", List.ofSeq children); "relu", new Activation("ReLU", true) ]
          Width = planes }

/// <summary>torchvision's DenseNet (DenseNet-121: growth 32, blocks 6-12-24-16, 64 initial features, bn_size 4):
/// <c>features</c> (stem, dense blocks, transitions, norm5), ReLU, global average pooling to the feature (1024 for
/// DenseNet-121); <c>classifier</c> = Linear(·, K). torchvision's initialisation (Kaiming normal fan-in convs, BN
/// 1/0, Linear bias 0).</summary>
/// <remarks>State-dict keys equal torchvision's (<c>features.conv0</c>, <c>features.denseblock1.denselayer1.norm1</c>,
/// <c>features.transition1.conv</c>, <c>features.norm5</c>, <c>classifier</c>). Needs images of at least 32×32.</remarks>
type DenseNet(name: string, blocks: int list, growth: int64, initialFeatures: int64, bottleneckWidth: int64, classes: int64, channels: int64) as this =
    inherit PooledClassifier(name, DenseNetLayers.trunk blocks growth initialFeatures bottleneckWidth channels, "classifier", Heads.linear, classes)

    do
        Init.kaimingFanIn this
        Init.batchNormUnit this
        Init.linear ignore this
