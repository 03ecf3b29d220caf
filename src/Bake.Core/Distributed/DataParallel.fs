namespace Bake.Core.Distributed

open System
open TorchSharp
open Bake.Core
open Bake.Core.Data
open Bake.Core.Models

/// <summary>One epoch's plan as this rank trains it: its shard of every global batch, and the share of the global
/// batch that shard is (its gradient weight).</summary>
[<NoComparison>]
type ShardedPlan =
    { /// <summary>This rank's index lists, one per trained global batch.</summary>
      Local: int[][]
      /// <summary>Images in this rank's shard / images in the global batch, per batch.</summary>
      Weights: float[]
      /// <summary>This rank's first row in the global batch (rank after rank), per batch.</summary>
      Offsets: int64[]
      /// <summary>Global batches left out because they had fewer anchors than ranks (only an epoch's last can).</summary>
      Dropped: int }

/// <summary>Data-parallel training on a <see cref="T:Bake.Core.Distributed.World"/> (docs/distributed.md): sharding
/// every global batch over the ranks, broadcasting the weights, averaging the gradients, reducing the step's numbers
/// and sharding evaluation. With one process every function is the identity (or the undistributed computation).</summary>
[<RequireQualifiedAccess>]
module DataParallel =

    /// <summary>Elements per gradient bucket (4 Mi float32 = 16 MiB): one all-reduce per bucket.</summary>
    [<Literal>]
    let BucketElements = 4194304L

    /// <summary>Positives per anchor in a batch of the method's sampler: a batch is [anchors…, M positives of anchor 1…,
    /// …] (Sampling.bakeBatches; CS-KD's pairs are M = 1; plain batches M = 0).</summary>
    let private positivesPerAnchor (settings: TrainingSettings) =
        match settings.Method.Sampler with
        | Sampler.ClassPairs -> 1
        | Sampler.Standard -> settings.IntraImages
        | Sampler.RepeatLastHalf ->
            raise (UsageException($"METHOD.NAME {settings.Method.Name} repeats the previous batch's images and cannot be sharded over processes: run it in one process", "METHOD.NAME"))

    /// <summary>Refuses what cannot run on several processes: methods whose carried state follows every image
    /// (each rank would update its own images' rows only, and rank 0 alone saves it).</summary>
    [<CompiledName("RequireSupported")>]
    let requireSupported (world: World, settings: TrainingSettings) : unit =
        if world.IsDistributed then
            positivesPerAnchor settings |> ignore
            if settings.Method.Name = "pskd" then
                raise (UsageException("METHOD.NAME pskd keeps a prediction per training image and cannot train on several processes yet: run it in one process", "METHOD.NAME"))

    /// <summary>Rank <paramref name="rank"/>'s shard of one batch of <paramref name="positives"/> positives per anchor:
    /// the anchors are split into <paramref name="size"/> contiguous runs (sizes differ by at most one) and each rank
    /// takes its anchors with all their positives, in the sampler's layout [its anchors…, their positives…]. None when
    /// the batch has fewer anchors than ranks.</summary>
    [<CompiledName("ShardBatch")>]
    let shardBatch (batch: int[], positives: int, size: int, rank: int) : int[] option =
        if batch.Length % (positives + 1) <> 0 then
            invalidArg "batch" $"a batch of {batch.Length} images is not anchors × {positives + 1}"
        let anchors = batch.Length / (positives + 1)
        if anchors < size then None
        else
            let lo = rank * anchors / size
            let hi = (rank + 1) * anchors / size
            Some(Array.append batch[lo .. hi - 1] [| for a in lo .. hi - 1 do yield! batch[anchors + a * positives .. anchors + (a + 1) * positives - 1] |])

    /// <summary>This rank's shards of an epoch's global batches (the method's plan at TRAIN.BATCH_SIZE = the global N;
    /// each rank trains about N / K images per step).</summary>
    [<CompiledName("Shard")>]
    let shard (world: World, settings: TrainingSettings, batches: int[][]) : ShardedPlan =
        if not world.IsDistributed then
            { Local = batches; Weights = Array.create batches.Length 1.0; Offsets = Array.zeroCreate batches.Length; Dropped = 0 }
        else
            let positives = positivesPerAnchor settings
            let kept =
                batches
                |> Array.choose (fun b ->
                    let offset = int64 (world.Rank * (b.Length / (positives + 1)) / world.Size * (positives + 1))
                    shardBatch (b, positives, world.Size, world.Rank) |> Option.map (fun s -> s, b.Length, offset))
            { Local = kept |> Array.map (fun (s, _, _) -> s)
              Weights = kept |> Array.map (fun (s, n, _) -> float s.Length / float n)
              Offsets = kept |> Array.map (fun (_, _, o) -> o)
              Dropped = batches.Length - kept.Length }

    /// <summary>The global batch a shard belongs to, for a method's ensemble: None with one process or when the
    /// ensemble stays within each rank's shard (TRAIN.GLOBAL_KE off).</summary>
    [<CompiledName("GlobalBatch")>]
    let globalBatch (world: World, globalEnsemble: bool, offset: int64) : GlobalBatch option =
        if world.IsDistributed && globalEnsemble then Some { Gather = world.AllGather; Offset = offset } else None

    /// <summary>Copies rank 0's parameters and buffers (BN running statistics) into every rank's model.</summary>
    [<CompiledName("BroadcastModel")>]
    let broadcastModel (world: World, model: torch.nn.Module) : unit =
        if world.IsDistributed then
            use _ = torch.no_grad ()
            for p in model.parameters () do world.Broadcast(p, 0)
            for b in model.buffers () do world.Broadcast(b, 0)

    /// <summary>Copies rank 0's buffers (BN running statistics, which each rank updates from its own shard) into
    /// every rank's model, as DDP does: called at the end of every epoch, so evaluation and checkpoints see one
    /// model, and a resumed run (whose ranks all load rank 0's checkpoint) continues exactly.</summary>
    [<CompiledName("BroadcastBuffers")>]
    let broadcastBuffers (world: World, model: torch.nn.Module) : unit =
        if world.IsDistributed then
            use _ = torch.no_grad ()
            for b in model.buffers () do world.Broadcast(b, 0)

    /// <summary>Averages the gradients over the ranks before the optimizer step, in buckets of about
    /// <see cref="F:Bake.Core.Distributed.DataParallel.BucketElements"/> elements: each rank's gradient (of its loss
    /// averaged over its shard) is weighted by its share of the global batch and the weighted gradients are summed,
    /// so the result is the gradient of the loss averaged over the global batch, also when shards differ in size
    /// (equal shards: the plain average DDP takes). Parameters without a gradient contribute zeros and keep none.</summary>
    [<CompiledName("AverageGradients")>]
    let averageGradients (world: World, model: torch.nn.Module, weight: float) : unit =
        if world.IsDistributed then
            use _ = torch.no_grad ()
            let parameters = model.parameters () |> Seq.filter (fun p -> p.requires_grad) |> Array.ofSeq
            let flush (bucket: torch.Tensor list) =
                if not bucket.IsEmpty then
                    use scope = torch.NewDisposeScope()
                    let bucket = List.rev bucket
                    let flat = torch.cat ([| for p in bucket -> (if isNull p.grad then torch.zeros_like p else p.grad).reshape -1L |], 0L)
                    flat.mul_ (Tensors.scalar weight) |> ignore
                    world.AllReduceSum flat
                    let mutable offset = 0L
                    for p in bucket do
                        let n = p.numel ()
                        if not (isNull p.grad) then p.grad.copy_ (flat.narrow(0L, offset, n).view_as p.grad) |> ignore
                        offset <- offset + n
            let mutable bucket : torch.Tensor list = []
            let mutable elements = 0L
            for p in parameters do
                let differentType = match bucket with last :: _ -> last.dtype <> p.dtype | [] -> false
                if differentType || (elements > 0L && elements + p.numel () > BucketElements) then
                    flush bucket
                    bucket <- []
                    elements <- 0L
                bucket <- p :: bucket
                elements <- elements + p.numel ()
            flush bucket

    /// <summary>The step's numbers over the global batch: the loss and its terms averaged with the shards' weights,
    /// correct and counted predictions summed (one all-reduce of a short vector).</summary>
    [<CompiledName("ReduceStep")>]
    let reduceStep (world: World, weight: float, loss: float, terms: (string * float) list, correct: int64, seen: int64) =
        if not world.IsDistributed then loss, terms, correct, seen
        else
            let values = Array.concat [ [| loss * weight; float correct; float seen |]; terms |> List.map (fun (_, v) -> v * weight) |> Array.ofList ]
            use vector = torch.tensor (values, dtype = torch.float64)
            world.AllReduceSum vector
            let reduced = vector.data<float>().ToArray()
            reduced[0], List.mapi (fun i (name, _) -> name, reduced[3 + i]) terms, int64 reduced[1], int64 reduced[2]

    /// <summary>Clean test metrics with the test split sharded: each rank evaluates a contiguous part, the logits and
    /// labels are gathered in order, and every rank computes the metrics of the whole split (equal to
    /// <see cref="M:Bake.Core.Evaluation.Evaluate"/> up to the batching of the forward passes).</summary>
    [<CompiledName("Evaluate")>]
    let evaluate (world: World, model: Classifier, dataset: Dataset, transform: TransformSpec, batchSize: int, device: torch.Device, workers: int) : EvalMetrics =
        if not world.IsDistributed then Evaluation.evaluate (model, dataset, transform, batchSize, device, workers)
        else
            let count = dataset.Test.Count
            let lo, hi = world.Rank * count / world.Size, (world.Rank + 1) * count / world.Size
            let part = Split.subset dataset.Test [| lo .. hi - 1 |]
            let logits, labels =
                if part.Count > 0 then Evaluation.logits (model, part, transform, dataset.Mean, dataset.Std, batchSize, device, workers, Clean)
                else torch.zeros ([| 0L; int64 dataset.Classes.Length |], dtype = torch.float64), torch.zeros ([| 0L |], dtype = torch.int64)
            use logits = logits
            use labels = labels
            use allLogits = world.AllGather logits
            use allLabels = world.AllGather labels
            Evaluation.metricsOf (allLogits, allLabels, 1.0)
