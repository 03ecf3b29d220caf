namespace Bake.Core

open TorchSharp
open Bake.Core.Models

/// <summary>The baselines of the paper's comparisons (docs/official-code.md): vanilla cross-entropy, label
/// smoothing and Tf-KD_reg in the Tf-KD code's form, and CS-KD.</summary>
[<RequireQualifiedAccess>]
module Baselines =

    /// <summary>Vanilla: cross-entropy alone (soft CE on the mixed labels under CutMix).</summary>
    let vanilla: MethodSpec =
        { Name = "vanilla"
          Summary = "cross-entropy only"
          Keys = []
          Sampler = Sampler.Standard
          CutMix = true
          Configure =
            fun _ ->
                Ok(
                    MethodSpec.stateless "vanilla" Sampler.Standard "cross-entropy" (fun batch ->
                        match batch.MixedTargets with
                        | Some targets -> MethodSpec.onLogits (fun logits _ -> Losses.softLabels (logits, targets)) batch
                        | None -> MethodSpec.onLogits (fun logits labels -> Losses.vanilla (logits, labels)) batch)
                ) }

    /// <summary>METHOD.LS_ALPHA.</summary>
    let LS_ALPHA = Key.number "METHOD.LS_ALPHA" LabelSmoothingOptions.Default.Alpha "label smoothing α: 1 − α on the true class, α/(K−1) elsewhere"

    /// <summary>Label smoothing (Tf-KD form).</summary>
    let labelSmoothing: MethodSpec =
        { Name = "label-smoothing"
          Summary = "label smoothing, Tf-KD form (1 − α on the true class, α/(K − 1) elsewhere; α = 0.1)"
          Keys = [ LS_ALPHA.Spec ]
          Sampler = Sampler.Standard
          CutMix = false
          Configure =
            fun config ->
                Validate.labelSmoothing { Alpha = LS_ALPHA.Of config }
                |> MethodSpec.validated [ "Alpha", LS_ALPHA.Name ]
                |> Result.map (fun options ->
                    MethodSpec.stateless "label-smoothing" Sampler.Standard $"α = {Tensors.fmt options.Alpha}"
                        (MethodSpec.onLogits (fun logits labels -> Losses.labelSmoothing (logits, labels, options)))) }

    /// <summary>METHOD.TFKD_ALPHA.</summary>
    let TFKD_ALPHA = Key.number "METHOD.TFKD_ALPHA" TfKdRegOptions.Default.Alpha "Tf-KD_reg α"
    /// <summary>METHOD.TFKD_TEMP.</summary>
    let TFKD_TEMP = Key.number "METHOD.TFKD_TEMP" TfKdRegOptions.Default.Temperature "Tf-KD_reg temperature"
    /// <summary>METHOD.TFKD_MULT.</summary>
    let TFKD_MULT = Key.number "METHOD.TFKD_MULT" TfKdRegOptions.Default.Multiplier "Tf-KD_reg multiplier"
    /// <summary>METHOD.TFKD_CORRECT.</summary>
    let TFKD_CORRECT = Key.number "METHOD.TFKD_CORRECT" TfKdRegOptions.Default.Correct "Tf-KD_reg teacher probability on the true class"

    /// <summary>Tf-KD with a designed teacher.</summary>
    let tfKdReg: MethodSpec =
        { Name = "tfkd-reg"
          Summary = "Tf-KD_reg, a designed teacher (α = 0.1, T = 20, ×100)"
          Keys = [ TFKD_ALPHA.Spec; TFKD_TEMP.Spec; TFKD_MULT.Spec; TFKD_CORRECT.Spec ]
          Sampler = Sampler.Standard
          CutMix = false
          Configure =
            fun config ->
                Validate.tfKdReg
                    { Alpha = TFKD_ALPHA.Of config; Temperature = TFKD_TEMP.Of config
                      Multiplier = TFKD_MULT.Of config; Correct = TFKD_CORRECT.Of config }
                |> MethodSpec.validated
                    [ "Alpha", TFKD_ALPHA.Name; "Temperature", TFKD_TEMP.Name; "Multiplier", TFKD_MULT.Name; "Correct", TFKD_CORRECT.Name ]
                |> Result.map (fun options ->
                    let words =
                        $"α = {Tensors.fmt options.Alpha}, T = {Tensors.fmt options.Temperature}, ×{Tensors.fmt options.Multiplier}, teacher {Tensors.fmt options.Correct} on the true class"
                    MethodSpec.stateless "tfkd-reg" Sampler.Standard words
                        (MethodSpec.onLogits (fun logits labels -> Losses.tfKdReg (logits, labels, options)))) }

    /// <summary>METHOD.CSKD_TEMP.</summary>
    let CSKD_TEMP = Key.number "METHOD.CSKD_TEMP" CsKdOptions.Default.Temperature "CS-KD temperature"
    /// <summary>METHOD.CSKD_LAMBDA.</summary>
    let CSKD_LAMBDA = Key.number "METHOD.CSKD_LAMBDA" CsKdOptions.Default.Lambda "CS-KD λ"

    /// <summary>CS-KD's step: anchors first, partners second. The partners' forward runs without gradient but in
    /// train mode, so BN statistics see both halves, as in the official code.</summary>
    let private csKdStep (options: CsKdOptions) (batch: MethodBatch) : MethodStep =
        let half = batch.Images.shape[0] / 2L
        let anchors, partners = batch.Images.narrow (0L, 0L, half), batch.Images.narrow (0L, half, half)
        let anchorLabels = batch.Labels.narrow (0L, 0L, half)
        let logits = batch.Model.forward anchors
        let partnerLogits = using (torch.no_grad ()) (fun _ -> batch.Model.forward partners)
        { Loss = Losses.csKd (logits, partnerLogits, anchorLabels, options); Logits = logits; Labels = anchorLabels }

    /// <summary>Class-wise self-knowledge distillation.</summary>
    let csKd: MethodSpec =
        { Name = "cskd"
          Summary = "CS-KD: N/2 anchors + N/2 same-class partners, KL to the partners' predictions (T = 4, λ = 1)"
          Keys = [ CSKD_TEMP.Spec; CSKD_LAMBDA.Spec ]
          Sampler = Sampler.ClassPairs
          CutMix = false
          Configure =
            fun config ->
                Validate.csKd { Temperature = CSKD_TEMP.Of config; Lambda = CSKD_LAMBDA.Of config }
                |> MethodSpec.validated [ "Temperature", CSKD_TEMP.Name; "Lambda", CSKD_LAMBDA.Name ]
                |> Result.map (fun options ->
                    MethodSpec.stateless "cskd" Sampler.ClassPairs $"T = {Tensors.fmt options.Temperature}, λ = {Tensors.fmt options.Lambda}" (csKdStep options)) }
