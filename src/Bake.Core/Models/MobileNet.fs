namespace Bake.Core.Models

open System
open TorchSharp

/// <summary>Blocks shared by MobileNetV2 and EfficientNet.</summary>
module internal MobileBlocks =

    /// <summary>torchvision's <c>Conv2dNormActivation</c>: children "0" conv (no bias, "same" padding), "1"
    /// BatchNorm, and "2" the activation when there is one.</summary>
    let convNormActivation (inputs: int64) (outputs: int64) (kernel: int64) (stride: int64) (groups: int64) (activation: string option) =
        let layers: torch.nn.Module<torch.Tensor, torch.Tensor> list =
            [ Layers.conv inputs outputs kernel stride groups; torch.nn.BatchNorm2d outputs ]
        let withActivation =
            match activation with
            | Some kind -> layers @ [ new Activation(kind, true) ]
            | None -> layers
        new Chain("Conv2dNormActivation", withActivation)

    /// <summary>Drops the whole residual branch of each sample with probability <paramref name="probability"/>
    /// in training and rescales survivors by 1/(1−p) (torchvision's <c>StochasticDepth</c>, mode "row");
    /// the identity in evaluation. Returns a fresh tensor.</summary>
    let stochasticDepth (training: bool) (probability: float) (branch: torch.Tensor) : torch.Tensor =
        if not training || probability = 0.0 then
            branch.alias ()
        else
            let survival = 1.0 - probability
            use noise = torch.empty([| branch.shape[0]; 1L; 1L; 1L |], dtype = branch.dtype, device = branch.device)
            noise.bernoulli_(survival).div_ (Bake.Core.Tensors.scalar survival) |> ignore
            branch.mul noise

/// <summary>torchvision's MobileNetV2 <c>InvertedResidual</c>: child <c>conv</c> = [1×1 expansion ConvBNReLU6 when
/// t ≠ 1], 3×3 depthwise ConvBNReLU6, 1×1 linear projection conv, BN; residual when stride 1 and widths match.</summary>
type internal InvertedResidual(inputs: int64, outputs: int64, stride: int64, expansion: int64) as this =
    inherit torch.nn.Module<torch.Tensor, torch.Tensor>("InvertedResidual")
    let hidden = inputs * expansion
    let residual = stride = 1L && inputs = outputs
    let conv =
        new Chain(
            "conv",
            [ if expansion <> 1L then MobileBlocks.convNormActivation inputs hidden 1L 1L 1L (Some "ReLU6") :> torch.nn.Module<_, _>
              MobileBlocks.convNormActivation hidden hidden 3L stride hidden (Some "ReLU6")
              Layers.conv hidden outputs 1L 1L 1L
              torch.nn.BatchNorm2d outputs ]
        )

    do this.register_module ("conv", conv)

    /// <summary>Whether the block adds its input (stride 1 and equal widths; read by the ONNX exporter).</summary>
    member internal _.Residual = residual

    override _.forward(x: torch.Tensor) =
        let out = conv.call x
        if residual then out.add_ x else out

/// <summary>torchvision's <c>SqueezeExcitation</c>: <c>x · sigmoid(fc2(SiLU(fc1(avgpool x))))</c>, fc1/fc2 1×1
/// convs with bias.</summary>
type internal SqueezeExcitation(channels: int64, squeezed: int64) as this =
    inherit torch.nn.Module<torch.Tensor, torch.Tensor>("SqueezeExcitation")
    let fc1 = torch.nn.Conv2d(channels, squeezed, 1L)
    let fc2 = torch.nn.Conv2d(squeezed, channels, 1L)

    do Children.register this [ "fc1", fc1; "fc2", fc2 ]

    override _.forward(x: torch.Tensor) =
        use pooled = torch.nn.functional.adaptive_avg_pool2d (x, 1L)
        use a = fc1.call pooled
        use b = torch.nn.functional.silu (a, true)
        use c = fc2.call b
        use scale = torch.sigmoid c
        x.mul scale

/// <summary>torchvision's EfficientNet <c>MBConv</c>: child <c>block</c> = ["0" 1×1 expansion ConvBNSiLU when the
/// ratio ≠ 1], depthwise k×k ConvBNSiLU, squeeze-excitation (squeeze = max(1, inputs/4)), 1×1 projection ConvBN;
/// residual with stochastic depth when stride 1 and widths match.</summary>
type internal MBConv(inputs: int64, outputs: int64, kernel: int64, stride: int64, expansion: int64, dropProbability: float) as this =
    inherit torch.nn.Module<torch.Tensor, torch.Tensor>("MBConv")
    let expanded = inputs * expansion
    let residual = stride = 1L && inputs = outputs
    let block =
        new Chain(
            "block",
            [ if expansion <> 1L then MobileBlocks.convNormActivation inputs expanded 1L 1L 1L (Some "SiLU") :> torch.nn.Module<_, _>
              MobileBlocks.convNormActivation expanded expanded kernel stride expanded (Some "SiLU")
              new SqueezeExcitation(expanded, max 1L (inputs / 4L))
              MobileBlocks.convNormActivation expanded outputs 1L 1L 1L None ]
        )

    do this.register_module ("block", block)

    /// <summary>Whether the block adds its input (stride 1 and equal widths; read by the ONNX exporter). Stochastic
    /// depth is the identity in evaluation.</summary>
    member internal _.Residual = residual

    override this.forward(x: torch.Tensor) =
        if residual then
            use branch = block.call x
            let out = MobileBlocks.stochasticDepth this.training dropProbability branch
            out.add_ x
        else
            block.call x

module internal MobileNetLayers =

    /// <summary><c>features</c> = "0" 3×3/2 ConvBNReLU6 (32), "1"…"17" inverted residuals, "18" 1×1 ConvBNReLU6 (1280).</summary>
    let mobileNetV2 (channels: int64) : Trunk =
        let settings = [ 1L, 16L, 1, 1L; 6L, 24L, 2, 2L; 6L, 32L, 3, 2L; 6L, 64L, 4, 2L; 6L, 96L, 3, 1L; 6L, 160L, 3, 2L; 6L, 320L, 1, 1L ]
        let layers = ResizeArray<torch.nn.Module<torch.Tensor, torch.Tensor>>()
        layers.Add(MobileBlocks.convNormActivation channels 32L 3L 2L 1L (Some "ReLU6"))
        let mutable inputs = 32L
        for expansion, outputs, repeats, stride in settings do
            for index in 0 .. repeats - 1 do
                layers.Add(new InvertedResidual(inputs, outputs, (if index = 0 then stride else 1L), expansion))
                inputs <- outputs
        layers.Add(MobileBlocks.convNormActivation inputs 1280L 1L 1L 1L (Some "ReLU6"))
        { Layers = [ "features", new Chain("features", List.ofSeq layers) ]; Width = 1280L }

/// <summary>torchvision's MobileNetV2 (width 1.0): <c>features</c> = "0" 3×3/2 ConvBNReLU6 (32), "1"…"17"
/// inverted residuals (t,c,n,s = 1,16,1,1 · 6,24,2,2 · 6,32,3,2 · 6,64,4,2 · 6,96,3,1 · 6,160,3,2 · 6,320,1,1),
/// "18" 1×1 ConvBNReLU6 (1280); global average pooling to the 1280-d feature; <c>classifier</c> = "0" Dropout(0.2),
/// "1" Linear(1280, K). torchvision's initialisation (Kaiming normal fan-out convs, BN 1/0, Linear N(0, 0.01), biases 0).</summary>
type MobileNetV2(name: string, classes: int64, channels: int64) as this =
    inherit PooledClassifier(name, MobileNetLayers.mobileNetV2 channels, "classifier", Heads.dropoutLinear 0.2, classes)

    do
        Init.kaimingFanOut this
        Init.batchNormUnit this
        Init.linear (fun fc -> torch.nn.init.normal_ (fc.weight, 0.0, 0.01) |> ignore) this

module internal EfficientNetLayers =

    /// <summary><c>features</c> = "0" 3×3/2 ConvBNSiLU (32), "1"…"7" MBConv stages, "8" 1×1 ConvBNSiLU (1280).</summary>
    let b0 (channels: int64) : Trunk =
        let settings = [ 1L, 3L, 1L, 16L, 1; 6L, 3L, 2L, 24L, 2; 6L, 5L, 2L, 40L, 2; 6L, 3L, 2L, 80L, 3; 6L, 5L, 1L, 112L, 3; 6L, 5L, 2L, 192L, 4; 6L, 3L, 1L, 320L, 1 ]
        let stochasticDepth = 0.2
        let totalBlocks = settings |> List.sumBy (fun (_, _, _, _, repeats) -> repeats)
        let layers = ResizeArray<torch.nn.Module<torch.Tensor, torch.Tensor>>()
        layers.Add(MobileBlocks.convNormActivation channels 32L 3L 2L 1L (Some "SiLU"))
        let mutable inputs = 32L
        let mutable blockIndex = 0
        for expansion, kernel, stride, outputs, repeats in settings do
            let stage = ResizeArray<torch.nn.Module<torch.Tensor, torch.Tensor>>()
            for index in 0 .. repeats - 1 do
                let drop = stochasticDepth * float blockIndex / float totalBlocks
                stage.Add(new MBConv(inputs, outputs, kernel, (if index = 0 then stride else 1L), expansion, drop))
                inputs <- outputs
                blockIndex <- blockIndex + 1
            layers.Add(new Chain("stage", List.ofSeq stage))
        layers.Add(MobileBlocks.convNormActivation inputs 1280L 1L 1L 1L (Some "SiLU"))
        { Layers = [ "features", new Chain("features", List.ofSeq layers) ]; Width = 1280L }

/// <summary>torchvision's EfficientNet-B0: <c>features</c> = "0" 3×3/2 ConvBNSiLU (32), "1"…"7" MBConv stages
/// (expansion, kernel, stride, out, repeats = 1,3,1,16,1 · 6,3,2,24,2 · 6,5,2,40,2 · 6,3,2,80,3 · 6,5,1,112,3 ·
/// 6,5,2,192,4 · 6,3,1,320,1; stochastic depth 0.2 · block/16), "8" 1×1 ConvBNSiLU (1280); global average pooling to
/// the 1280-d feature; <c>classifier</c> = "0" Dropout(0.2), "1" Linear(1280, K). torchvision's initialisation
/// (Kaiming normal fan-out convs, biases 0, BN 1/0, Linear U(±1/√K)).</summary>
type EfficientNetB0(name: string, classes: int64, channels: int64) as this =
    inherit PooledClassifier(name, EfficientNetLayers.b0 channels, "classifier", Heads.dropoutLinear 0.2, classes)

    do
        Init.kaimingFanOut this
        Init.batchNormUnit this
        let range = 1.0 / Math.Sqrt(float classes)
        Init.linear (fun fc -> torch.nn.init.uniform_ (fc.weight, -range, range) |> ignore) this
