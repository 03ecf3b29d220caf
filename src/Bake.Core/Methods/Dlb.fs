namespace Bake.Core

open TorchSharp

/// <summary>DLB (Shen et al., CVPR 2022, "Self-Distillation from Last Mini-Batch for Consistency Regularization") as a
/// training method: every batch is N/2 images of the previous batch (freshly augmented) and N/2 new ones
/// (<c>Sampling.lastHalfBatches</c>); the previous iteration's softened predictions on the repeated images are the
/// targets of an α·τ²-weighted KL term. The carried state is the last batch's new images and their softened
/// predictions, part of every checkpoint. Choices where the paper leaves room: docs/official-code.md.</summary>
[<RequireQualifiedAccess>]
module Dlb =

    /// <summary>METHOD.DLB_TEMP.</summary>
    let TEMP = Key.number "METHOD.DLB_TEMP" DlbOptions.Default.Temperature "DLB τ: temperature of the last-batch consistency term"
    /// <summary>METHOD.DLB_WEIGHT.</summary>
    let WEIGHT = Key.number "METHOD.DLB_WEIGHT" DlbOptions.Default.Weight "DLB α: weight of the last-batch consistency term"

    /// <summary>The carried training-split indices (int64) of the last batch's new images.</summary>
    [<Literal>]
    let Indices = "dlb.indices"

    /// <summary>The carried softmax(z/τ) of those images (float32, r×K), computed without gradient.</summary>
    [<Literal>]
    let Targets = "dlb.targets"

    let private step (options: DlbOptions) (state: CarriedState) (batch: MethodBatch) : MethodStep =
        let device = batch.Images.device
        let logits = batch.Model.forward batch.Images
        let classes = logits.shape[1]
        let repeated, previous =
            match state.TryGet Indices, state.TryGet Targets with
            | Some indices, Some targets ->
                let carried = indices.cpu().data<int64>().ToArray()
                let r = carried.Length
                // The sampler repeats exactly the last batch's new images, in order; anything else is a state that
                // belongs to another plan (a bug, or a checkpoint of another run).
                if r > batch.Indices.Length || Array.sub batch.Indices 0 r |> Array.map int64 <> carried then
                    raise (BakeException "DLB: the batch does not begin with the previous batch's new images (the carried state belongs to another plan)")
                r, targets
            | _ -> 0, torch.zeros ([| 0L; classes |], device = device)
        let loss = Losses.dlb (logits, batch.Labels, previous, options)
        let fresh = int64 (batch.Indices.Length - repeated)
        using (torch.no_grad ()) (fun _ ->
            let softened = torch.nn.functional.softmax (logits.detach().narrow(0L, int64 repeated, fresh).div (Tensors.scalar options.Temperature), dim = 1L)
            state.Set(Targets, softened.to_type torch.float32)
            state.Set(Indices, torch.tensor (batch.Indices[repeated..] |> Array.map int64)))
        { Loss = loss; Logits = logits; Labels = batch.Labels }

    /// <summary>The table entry.</summary>
    let spec: MethodSpec =
        { Name = "dlb"
          Summary = "DLB: N/2 images of the last batch + N/2 new, α·τ²·KL to the last batch's predictions on the repeated half (τ = 3, α = 1)"
          Keys = [ TEMP.Spec; WEIGHT.Spec ]
          Sampler = Sampler.RepeatLastHalf
          CutMix = false
          Configure =
            fun config ->
                Validate.dlb { Temperature = TEMP.Of config; Weight = WEIGHT.Of config }
                |> MethodSpec.validated [ "Temperature", TEMP.Name; "Weight", WEIGHT.Name ]
                |> Result.map (fun options ->
                    { Name = "dlb"; Sampler = Sampler.RepeatLastHalf
                      Options = $"τ = {Tensors.fmt options.Temperature}, α = {Tensors.fmt options.Weight}"
                      Initialise = (fun _ _ _ -> ()); Step = step options }) }
