namespace Bake.Core.Distributed

open System
open System.Collections.Generic
open TorchSharp
open Bake.Core

/// <summary>A sum over the ranks inside the autograd graph: the forward pass all-reduces the values, the backward pass
/// all-reduces the gradients (each rank's loss depends on every rank's inputs through the sum). On
/// <see cref="P:Bake.Core.Distributed.World.Current"/>.</summary>
type AllReduceSumFunction() =
    inherit torch.autograd.SingleTensorFunction<AllReduceSumFunction>()
    override _.Name = "AllReduceSum"
    override _.forward(_ctx, vars) =
        let input = vars[0] :?> torch.Tensor
        let sum = input.detach().contiguous().clone ()
        World.Current.AllReduceSum sum
        sum
    override _.backward(_ctx, gradient) =
        let sum = gradient.contiguous().clone ()
        World.Current.AllReduceSum sum
        List<torch.Tensor> [ sum ]

/// <summary>SyncBN (TRAIN.SYNC_BN, docs/distributed.md): in training, every BatchNorm normalises with the mean and
/// variance of the global batch (the per-channel sums of all ranks), updates its running statistics with them, and
/// its gradients flow to every rank's inputs. In evaluation BN is unchanged (running statistics).</summary>
/// <remarks>TorchSharp's BatchNorm is native, so the layers are not replaced: a pre-hook runs the native layer in
/// evaluation mode (no update of its running statistics) and a forward hook replaces its output with the synchronised
/// one. The backward all-reduce sums the ranks' gradients, which is exact when the shards have equal sizes (every
/// batch but possibly an epoch's last).</remarks>
[<RequireQualifiedAccess>]
module SyncBatchNorm =

    /// <summary>The synchronised training-mode output of a BatchNorm on this rank's input, and the update of its
    /// running statistics.</summary>
    let private forward (norm: Modules.BatchNorm) (input: torch.Tensor) : torch.Tensor =
        let dims = [| yield 0L; for d in 2L .. input.dim () - 1L -> d |]
        let shape = [| yield 1L; yield input.shape[1]; for _ in 2L .. input.dim () - 1L -> 1L |]
        let local = input.numel () / input.shape[1]
        use count = torch.tensor ([| float local |], dtype = torch.float64)
        World.Current.AllReduceSum count
        let n = count.item<float> ()
        let sum = AllReduceSumFunction.apply (input.sum (dims))
        let squares = AllReduceSumFunction.apply (input.mul(input).sum (dims))
        let mean = sum.div (Tensors.scalar n)
        let variance = squares.div(Tensors.scalar n).sub (mean.mul mean)
        use _ = torch.no_grad ()
        let momentum = if norm.momentum.HasValue then norm.momentum.Value else 0.1
        let unbiased = variance.detach().mul (Tensors.scalar (n / max 1.0 (n - 1.0)))
        norm.running_mean.mul_(Tensors.scalar (1.0 - momentum)).add_ (mean.detach().mul (Tensors.scalar momentum)) |> ignore
        norm.running_var.mul_(Tensors.scalar (1.0 - momentum)).add_ (unbiased.mul (Tensors.scalar momentum)) |> ignore
        use _ = torch.enable_grad ()
        let normalised = input.sub(mean.reshape shape).div (variance.add(Tensors.scalar norm.eps).sqrt().reshape shape)
        if isNull norm.weight then normalised
        else normalised.mul(norm.weight.reshape shape).add (norm.bias.reshape shape)

    /// <summary>Makes every BatchNorm of a model synchronise its training statistics over the world's ranks (nothing
    /// with one process). Dispose the result to detach the hooks.</summary>
    [<CompiledName("Attach")>]
    let attach (world: World, model: torch.nn.Module) : IDisposable =
        let removers = ResizeArray<unit -> unit>()
        if world.IsDistributed then
            for m in model.modules () do
                match m with
                | :? Modules.BatchNorm as norm ->
                    let mutable training = false
                    let pre =
                        norm.register_forward_pre_hook (Func<_, _, _>(fun (layer: torch.nn.Module<torch.Tensor, torch.Tensor>) input ->
                            training <- layer.training
                            if training then layer.eval ()
                            input))
                    let post =
                        norm.register_forward_hook (Func<_, _, _, _>(fun (layer: torch.nn.Module<torch.Tensor, torch.Tensor>) input output ->
                            if training then
                                layer.train ()
                                forward norm input
                            else output))
                    removers.Add(fun () -> pre.remove ())
                    removers.Add(fun () -> post.remove ())
                | _ -> ()
        { new IDisposable with
            member _.Dispose() =
                for remove in removers do remove ()
                removers.Clear() }
