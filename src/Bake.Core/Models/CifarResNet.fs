namespace Bake.Core.Models

open TorchSharp

module internal CifarResNetLayers =

    /// <summary>CRD's CIFAR ResNet trunk: <c>conv1</c> (3×3, stride 1, <paramref name="stem"/> channels, no bias),
    /// <c>bn1</c>, <c>relu</c>, then <c>layer1</c>…<c>layer3</c> of <paramref name="blocks"/> basic blocks each with
    /// <paramref name="widths"/> channels and strides 1/2/2. The first block of a stage projects its shortcut with a
    /// 1×1 strided conv + BN (<c>downsample.0</c>, <c>downsample.1</c>) whenever the stride or the width changes.</summary>
    let trunk (stem: int64) (widths: int64 list) (blocks: int) (channels: int64) : Trunk =
        let mutable inputs = stem
        let stages =
            widths
            |> List.mapi (fun index planes ->
                let stageBlocks =
                    [ for position in 0 .. blocks - 1 do
                          let stride = if index > 0 && position = 0 then 2L else 1L
                          let block = new BasicBlock(inputs, planes, stride) :> torch.nn.Module<torch.Tensor, torch.Tensor>
                          inputs <- planes
                          block ]
                let name = $"layer{index + 1}"
                name, new Chain(name, stageBlocks) :> torch.nn.Module<torch.Tensor, torch.Tensor>)
        { Layers =
            [ "conv1", Layers.conv channels stem 3L 1L 1L :> torch.nn.Module<_, _>
              "bn1", torch.nn.BatchNorm2d stem
              "relu", new Activation("ReLU", true) ]
            @ stages
          Width = inputs }

/// <summary>The CIFAR ResNets of He et al. (2016, §4.2) as the knowledge-distillation literature builds them: the
/// <c>resnet.py</c> of the CRD repository (Tian et al., "Contrastive Representation Distillation", 2020), which
/// torchdistill and most KD papers reuse. A 3×3 stem conv (stride 1) + BN + ReLU; three stages of n basic blocks
/// (two 3×3 conv + BN, ReLU after the sum) at strides 1/2/2, so a 32×32 image ends in 8×8 maps; global average
/// pooling to the feature (D = the last stage's width); <c>fc</c>. Depth = 6n + 2.</summary>
/// <remarks>
/// <para><b>Shortcut option B</b> (CRD's, not the option A of He et al.'s CIFAR experiments): where a block changes
/// the stride or the width, its shortcut is a 1×1 strided conv + BN (<c>layerK.0.downsample.0/1</c>); otherwise the
/// identity. He et al. used option A (a strided identity zero-padded to the new width, no parameters), which is why
/// their counts are a little lower: ResNet-20 at 10 classes has 272,474 parameters here and 269,722 with option A
/// (the paper's "0.27M"); each projection adds C_in·C_out + 2·C_out. In the widened <c>x4</c> models the stem (32)
/// is narrower than the first stage (64), so <c>layer1.0</c> projects too.</para>
/// <para>State-dict keys are CRD's (<c>conv1</c>, <c>bn1</c>, <c>layer1.0.conv1</c>, <c>layer1.0.bn1</c>,
/// <c>layer2.0.downsample.0</c>, <c>fc</c>), so its checkpoints (and torchdistill's) load by name. CRD pools with
/// <c>AvgPool2d(8)</c>, which on 32×32 inputs is the global average used here; global pooling also accepts other
/// sizes. Initialisation as CRD: Kaiming normal (fan-out, ReLU) convs, BN weight 1 and bias 0, PyTorch's default
/// Linear.</para>
/// <para>Ownership as every <see cref="T:Bake.Core.Models.Classifier"/>: inputs are never modified or disposed,
/// outputs are fresh tensors.</para>
/// </remarks>
/// <param name="name">The registry name.</param>
/// <param name="stem">Channels of the stem conv (16, or 32 for the x4 models).</param>
/// <param name="widths">The three stages' widths (16-32-64, or 64-128-256).</param>
/// <param name="blocks">n, basic blocks per stage (depth 6n + 2).</param>
/// <param name="classes">K, the width of the logits.</param>
/// <param name="channels">Image channels.</param>
type CifarResNet(name: string, stem: int64, widths: int64 list, blocks: int, classes: int64, channels: int64) as this =
    inherit PooledClassifier(name, CifarResNetLayers.trunk stem widths blocks channels, "fc", Heads.linear, classes)

    do
        Init.kaimingFanOut this
        Init.batchNormUnit this
