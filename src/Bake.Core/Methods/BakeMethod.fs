namespace Bake.Core

open Bake.Core.Models

/// <summary>BAKE as a training method: anchors plus M same-class images per batch (the per-class sampler), Eq. (2)
/// with the soft targets of Eq. (9) (or Eq. 6 / 7).</summary>
[<RequireQualifiedAccess>]
module BakeMethod =

    /// <summary>TRAIN.OMEGA (pycls).</summary>
    let OMEGA = Key.number "TRAIN.OMEGA" BakeOptions.Default.Omega "ω: ensembling weight, in [0, 1)"
    /// <summary>TRAIN.TEMP (pycls).</summary>
    let TEMP = Key.number "TRAIN.TEMP" BakeOptions.Default.Temperature "τ: temperature"
    /// <summary>TRAIN.LAMBDA (pycls).</summary>
    let LAMBDA = Key.number "TRAIN.LAMBDA" BakeOptions.Default.Lambda "λ: distillation weight"
    /// <summary>METHOD.PROPAGATION.</summary>
    let PROPAGATION =
        Key.choice "METHOD.PROPAGATION" "closed-form" [ "closed-form", None; "one-step", Some OneStep; "steps", Some(Steps 0) ]
            "BAKE propagation: closed-form (Eq. 9), one-step (Eq. 6) or steps (Eq. 7, METHOD.STEPS times)"
    /// <summary>METHOD.STEPS.</summary>
    let STEPS = Key.integer "METHOD.STEPS" BakeOptions.DefaultSteps "propagation steps for METHOD.PROPAGATION = steps"

    /// <summary>The propagation form a config asks for.</summary>
    let private propagationOf (config: Config) =
        match PROPAGATION.Of config with
        | None -> ClosedForm
        | Some(Steps _) -> Steps(STEPS.Of config)
        | Some form -> form

    /// <summary>BAKE's options in a config, validated (the problems name the keys).</summary>
    [<CompiledName("OptionsOf")>]
    let optionsOf (config: Config) : Result<BakeOptions, string list> =
        Validate.bake { Temperature = TEMP.Of config; Omega = OMEGA.Of config; Lambda = LAMBDA.Of config; Propagation = propagationOf config }
        |> MethodSpec.validated [ "Temperature", TEMP.Name; "Omega", OMEGA.Name; "Lambda", LAMBDA.Name; "Propagation steps", STEPS.Name ]

    /// <summary>The options in words.</summary>
    let describe (options: BakeOptions) =
        let form =
            match options.Propagation with
            | ClosedForm -> "closed form (Eq. 9)"
            | OneStep -> "one step (Eq. 6)"
            | Steps t -> $"{t} steps (Eq. 7)"
        $"τ = {Tensors.fmt options.Temperature}, ω = {Tensors.fmt options.Omega}, λ = {Tensors.fmt options.Lambda}, {form}"

    /// <summary>The soft targets of this shard's rows when the ensemble runs over the global batch (TRAIN.GLOBAL_KE,
    /// docs/official-code.md §2.2): the features and logits of every rank are gathered without gradient, Â and Q
    /// (Eq. 9, or the configured form) are computed over all of them, and this rank's rows are kept. The official code
    /// gathers the normalised features and the tempered probabilities; gathering their inputs gives the same Q.</summary>
    /// <param name="features">This shard's F(x), N×D.</param>
    /// <param name="logits">This shard's z, N×K.</param>
    /// <param name="options">τ, ω and the propagation form.</param>
    /// <param name="global">How to gather the global batch, and this shard's first row in it.</param>
    /// <returns>A fresh N×K tensor without autograd history.</returns>
    [<CompiledName("GlobalSoftTargets")>]
    let globalSoftTargets (features: TorchSharp.torch.Tensor, logits: TorchSharp.torch.Tensor, options: BakeOptions, ``global``: GlobalBatch) =
        use _ = TorchSharp.torch.no_grad ()
        Tensors.scoped (fun () ->
            let allFeatures = ``global``.Gather (features.detach ())
            let allLogits = ``global``.Gather (logits.detach ())
            let targets = Propagation.softTargets (allFeatures, allLogits, options)
            targets.narrow(0L, ``global``.Offset, logits.shape[0]).contiguous ())

    /// <summary>One BAKE step: CE over all N images plus λ·τ²·KL towards the batch's soft targets, computed from the
    /// features and logits of the same forward pass (over the global batch when the batch is a shard of one). Under
    /// CutMix the CE term takes the mixed labels and the targets come from the mixed images' own predictions (the
    /// official ImageNet code).</summary>
    let private step (options: BakeOptions) (batch: MethodBatch) : MethodStep =
        let output = Classifier.featuresAndLogits (batch.Model, batch.Images)
        let loss =
            match batch.Global, batch.MixedTargets with
            | Some ``global``, mixed ->
                let targets = globalSoftTargets (output.Features, output.Logits, options, ``global``)
                let ce =
                    match mixed with
                    | Some labelTargets -> Losses.softCrossEntropy (output.Logits, labelTargets)
                    | None -> Losses.crossEntropy (output.Logits, batch.Labels)
                Losses.bakeTowards (ce, output.Logits, targets, options)
            | None, Some targets -> Losses.bakeSoftLabels (output.Features, output.Logits, targets, options)
            | None, None -> Losses.bake (output.Features, output.Logits, batch.Labels, options)
        { Loss = loss; Logits = output.Logits; Labels = batch.Labels }

    /// <summary>The table entry.</summary>
    let spec: MethodSpec =
        { Name = "bake"
          Summary = "BAKE: N̂ anchors + M same-class images each (TRAIN.INTRA_IMGS), CE + λτ²·KL to the batch's ensembled targets (τ = 4, ω = 0.5, λ = 1)"
          Keys = [ OMEGA.Spec; TEMP.Spec; LAMBDA.Spec; PROPAGATION.Spec; STEPS.Spec ]
          Sampler = Sampler.Standard
          CutMix = true
          Configure =
            fun config ->
                optionsOf config
                |> Result.map (fun options -> MethodSpec.stateless "bake" Sampler.Standard (describe options) (step options)) }
