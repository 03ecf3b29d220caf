namespace Bake.Core

open TorchSharp
open TorchSharp.Modules

/// <summary>SGD with momentum, Nesterov and weight decay, with separate decay for BatchNorm and bias parameters.</summary>
[<RequireQualifiedAccess>]
module Optimizer =

    /// <summary>Builds SGD over the model's trainable parameters. Parameters are grouped so that BatchNorm
    /// weights/biases can get <c>BatchNormDecay</c> (pycls BN.CUSTOM_WEIGHT_DECAY) and other biases no decay
    /// when <c>BiasDecay</c> is false.</summary>
    [<CompiledName("Sgd")>]
    let sgd (model: torch.nn.Module, settings: OptimizerSettings, learningRate: float) : SGD =
        let isBatchNorm (name: string) =
            model.named_modules ()
            |> Seq.exists (fun struct (moduleName: string, m: torch.nn.Module) ->
                (m :? BatchNorm1d || m :? BatchNorm2d || m :? BatchNorm3d) && name.StartsWith(moduleName + "."))
        let groups =
            model.named_parameters ()
            |> Seq.filter (fun struct (_, p: Parameter) -> p.requires_grad)
            |> Seq.groupBy (fun struct (name: string, _) ->
                if isBatchNorm name then settings.BatchNormDecay |> Option.defaultValue settings.WeightDecay
                elif name.EndsWith ".bias" && not settings.BiasDecay then 0.0
                else settings.WeightDecay)
            |> Seq.map (fun (decay, parameters) ->
                SGD.ParamGroup(parameters |> Seq.map (fun struct (_, p: Parameter) -> p) |> Array.ofSeq,
                               learningRate, settings.Momentum, settings.Dampening, decay, settings.Nesterov, false))
            |> Array.ofSeq
        new SGD(groups, learningRate, settings.Momentum, settings.Dampening, settings.WeightDecay, settings.Nesterov, false)

    /// <summary>Sets the learning rate of every parameter group.</summary>
    [<CompiledName("SetLearningRate")>]
    let setLearningRate (optimizer: SGD, learningRate: float) : unit =
        for group in optimizer.ParamGroups do
            group.LearningRate <- learningRate
