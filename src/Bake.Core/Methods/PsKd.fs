namespace Bake.Core

open TorchSharp

/// <summary>PS-KD (Kim et al., ICCV 2021, "Self-Knowledge Distillation with Progressive Refinement of Targets") as a
/// training method: plain batches, cross-entropy against (1 − αₜ)·y + αₜ·pₜ₋₁(x). The carried state is every
/// training image's softmax prediction at its last visit (N_train × K, the one-hot label before the first visit), so
/// it is part of every checkpoint. Choices where the paper leaves room: docs/official-code.md.</summary>
[<RequireQualifiedAccess>]
module PsKd =

    /// <summary>METHOD.PSKD_ALPHA.</summary>
    let ALPHA = Key.number "METHOD.PSKD_ALPHA" PsKdOptions.Default.Alpha "PS-KD α_T: the weight of the model's past prediction at the last epoch (αₜ = α_T·t/T)"

    /// <summary>The name of the carried tensor: N_train×K probabilities, float32, on the model's device.</summary>
    [<Literal>]
    let Predictions = "pskd.predictions"

    /// <summary>Every training image starts with its one-hot label as its "previous prediction", so the first epoch's
    /// targets are the labels themselves (the official code's first-epoch rule).</summary>
    let private initialise (state: CarriedState) (labels: int[]) (classes: int) =
        use labelTensor = torch.tensor (labels |> Array.map int64)
        state.Set(Predictions, torch.nn.functional.one_hot(labelTensor, int64 classes).to_type torch.float32)

    let private step (options: PsKdOptions) (state: CarriedState) (batch: MethodBatch) : MethodStep =
        let predictions =
            match state.TryGet Predictions with
            | Some p -> p
            | None -> raise (BakeException $"PS-KD: the carried state has no {Predictions} (a checkpoint written by another method?)")
        // The trainer keeps carried tensors on the model's device.
        let rows = torch.tensor (batch.Indices |> Array.map int64, device = predictions.device)
        let previous = predictions.index_select (0L, rows)
        let logits = batch.Model.forward batch.Images
        let loss = Losses.psKd (logits, batch.Labels, previous, Losses.psKdAlpha (options, batch.Epoch, batch.Epochs))
        // This visit's prediction (train mode, as trained on) is the image's target at its next visit.
        using (torch.no_grad ()) (fun _ ->
            predictions.index_copy_ (0L, rows, torch.nn.functional.softmax (logits.detach (), dim = 1L)) |> ignore)
        { Loss = loss; Logits = logits; Labels = batch.Labels }

    /// <summary>The table entry.</summary>
    let spec: MethodSpec =
        { Name = "pskd"
          Summary = "PS-KD: CE to (1 − αₜ)·y + αₜ·(the model's prediction for the image last epoch), αₜ = α_T·t/T (α_T = 0.8)"
          Keys = [ ALPHA.Spec ]
          Sampler = Sampler.Standard
          CutMix = false
          Configure =
            fun config ->
                Validate.psKd { Alpha = ALPHA.Of config }
                |> MethodSpec.validated [ "Alpha", ALPHA.Name ]
                |> Result.map (fun options ->
                    { Name = "pskd"; Sampler = Sampler.Standard; Options = $"α_T = {Tensors.fmt options.Alpha}"
                      Initialise = initialise; Step = step options }) }
