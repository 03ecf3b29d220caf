namespace Bake.Core.Models

open TorchSharp

module internal SmallCnnLayers =

    /// <summary>Blocks "block1"…: per block, convsPerBlock × (3×3 conv, BN, ReLU), then 2×2 max pooling.</summary>
    let trunk (widths: int64 list) (convsPerBlock: int) (channels: int64) : Trunk =
        let blocks =
            widths
            |> List.mapi (fun index width ->
                let inputs = if index = 0 then channels else widths[index - 1]
                let layers =
                    [ for conv in 0 .. convsPerBlock - 1 do
                          Layers.conv (if conv = 0 then inputs else width) width 3L 1L 1L :> torch.nn.Module<_, _>
                          torch.nn.BatchNorm2d width
                          new Activation("ReLU", true) ]
                let name = $"block{index + 1}"
                name, new Chain(name, layers @ [ torch.nn.MaxPool2d(2L) ]) :> torch.nn.Module<_, _>)
        { Layers = blocks; Width = List.last widths }

/// <summary>A small CNN for CPU experiments (the default model): per block, <c>convsPerBlock</c> × (3×3 conv
/// without bias, BatchNorm, ReLU), then 2×2 max pooling; global average pooling gives the feature (the last
/// block's width); a linear layer <c>fc</c> gives the logits.</summary>
/// <remarks>Works for any channel count and any image size ≥ 2^blocks (8 for three blocks). PyTorch's default
/// initialisation. State-dict keys: <c>block1.0.weight</c> (conv), <c>block1.1.*</c> (BatchNorm), …, <c>fc.*</c>.</remarks>
type SmallCnn(name: string, widths: int64 list, convsPerBlock: int, classes: int64, channels: int64) =
    inherit PooledClassifier(name, SmallCnnLayers.trunk widths convsPerBlock channels, "fc", Heads.linear, classes)
