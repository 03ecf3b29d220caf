namespace Bake.Core.Models

open TorchSharp

/// <summary>A small CNN for CPU experiments (the default model): per block, <c>convsPerBlock</c> × (3×3 conv
/// without bias, BatchNorm, ReLU), then 2×2 max pooling; global average pooling gives the feature (the last
/// block's width); a linear layer gives the logits.</summary>
/// <remarks>Works for any channel count and any image size ≥ 2^blocks (8 for three blocks). PyTorch's default
/// initialisation. State-dict keys: <c>block1.0.weight</c> (conv), <c>block1.1.*</c> (BatchNorm), …, <c>fc.*</c>.</remarks>
type SmallCnn(name: string, widths: int64 list, convsPerBlock: int, classes: int64, channels: int64) as this =
    inherit Classifier(name)

    let blocks =
        widths
        |> List.mapi (fun index width ->
            let inputs = if index = 0 then channels else widths[index - 1]
            let layers =
                [ for conv in 0 .. convsPerBlock - 1 do
                      Layers.conv (if conv = 0 then inputs else width) width 3L 1L 1L :> torch.nn.Module<_, _>
                      torch.nn.BatchNorm2d width
                      new Activation("ReLU", true) ]
            new Chain($"block{index + 1}", layers @ [ torch.nn.MaxPool2d(2L) ]))
    let featureSize = List.last widths
    let fc = torch.nn.Linear(featureSize, classes)

    do
        blocks |> List.iteri (fun index block -> this.register_module ($"block{index + 1}", block))
        this.register_module ("fc", fc)

    override _.FeatureSize = featureSize
    override _.Classes = classes

    override _.Features(images: torch.Tensor) =
        use maps = Layers.run (blocks |> Seq.cast) images
        Layers.globalAveragePool maps

    override _.Head(features: torch.Tensor) = fc.call features
