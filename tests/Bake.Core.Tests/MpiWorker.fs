/// The test program's second entry: `Bake.Core.Tests.dll --mpi-worker <case>` runs one rank of an MPI check under
/// mpirun (DistributedTests starts it). Every rank computes the single-process reference itself, on the whole batch,
/// and compares it with the distributed computation of its shard; it prints `rank R: <measure> = <value>` lines and
/// `rank R: ok` and exits 0, or prints `rank R: FAILED …` and exits 1.
module Bake.Core.Tests.MpiWorker

open System
open TorchSharp
open Bake.Core
open Bake.Core.Distributed
open Bake.Core.Models

let private maxDiff (a: torch.Tensor) (b: torch.Tensor) =
    use d = a.detach().to_type(torch.float64).sub(b.detach().to_type torch.float64).abs().max ()
    d.item<float> ()

exception private CheckFailed of string

/// One whole line per write, so that the ranks' lines do not interleave in mpirun's merged output.
let private say (line: string) =
    Console.Out.Write(line + "\n")
    Console.Out.Flush()

let private require (_: World) (condition: bool) (what: string) =
    if not condition then raise (CheckFailed what)

/// all-reduce (sum, max), broadcast, all-gather with different row counts, barrier and Any on every dtype used.
let private collectives (world: World) =
    let r, k = world.Rank, world.Size
    use a = torch.full ([| 5L |], Tensors.scalar (float (r + 1)), dtype = torch.float32)
    world.AllReduceSum a
    require world (a.data<float32>().ToArray() |> Array.forall (fun v -> v = float32 (k * (k + 1) / 2))) "float32 all-reduce sum"
    use b = torch.tensor ([| float r; -float r |], dtype = torch.float64)
    world.AllReduce(b, MpiOp.Max)
    require world (b.data<float>().ToArray() = [| float (k - 1); 0.0 |]) "float64 all-reduce max"
    use c = torch.tensor ([| int64 r * 10000000000L |], dtype = torch.int64)
    world.AllReduceSum c
    require world (c.item<int64> () = int64 (k * (k - 1) / 2) * 10000000000L) "int64 all-reduce sum"
    use d = if r = 0 then torch.arange(6L, dtype = torch.float32).reshape (2L, 3L) else torch.zeros ([| 2L; 3L |], dtype = torch.float32)
    world.Broadcast(d, 0)
    require world (d.data<float32>().ToArray() = [| 0.0f; 1.0f; 2.0f; 3.0f; 4.0f; 5.0f |]) "broadcast"
    // Rank r contributes r + 1 rows of [r, r].
    use rows = torch.full ([| int64 (r + 1); 2L |], Tensors.scalar (float r), dtype = torch.float64)
    use gathered = world.AllGather rows
    let expected = [| for s in 0 .. k - 1 do for _ in 0 .. s do yield! [| float s; float s |] |]
    require world (gathered.shape = [| int64 (k * (k + 1) / 2); 2L |] && gathered.data<float>().ToArray() = expected) "all-gather-v"
    use strided = torch.arange(6L, dtype = torch.float32).reshape(2L, 3L).t ()
    world.AllReduceSum strided
    require world (strided.contiguous().data<float32>().ToArray() = Array.map (fun v -> float32 (v * k)) [| 0; 3; 1; 4; 2; 5 |]) "non-contiguous all-reduce"
    require world (world.Any((r = k - 1)) && not (world.Any false)) "any"
    world.Barrier()

/// The batch of the tests: BAKE's layout with anchors and one positive each, on 1×28×28 images.
let private batch (anchors: int) (classes: int) =
    use generator = new torch.Generator(7UL)
    let images = torch.randn ([| int64 (2 * anchors); 1L; 28L; 28L |], generator = generator)
    let anchorLabels = Array.init anchors (fun i -> int64 (i % classes))
    images, torch.tensor (Array.append anchorLabels anchorLabels, dtype = torch.int64)

let private tinyModel () =
    torch.manual_seed 3L |> ignore
    Models.create ("cnn-tiny", 4, 1, 28)

/// (a) one SGD step of BAKE (M = 1, GLOBAL_KE) and of vanilla CE: K ranks × N/K images = one process × N images.
let private step (world: World) (methodName: string) =
    let anchors = 8
    let images, labels = batch anchors 4
    use images = images
    use labels = labels
    let config = Configs.defaultJob [ "MODEL.TYPE=cnn-tiny"; "TRAIN.BATCH_SIZE=16"; (if methodName = "bake" then "TRAIN.USE_BAKE=True" else "TRAIN.USE_BAKE=False") ]
    let settings = Settings.ofConfigOrThrow config
    let train (on: World) (model: Classifier) (images: torch.Tensor) (labels: torch.Tensor) (indices: int[]) ``global`` weight =
        // BN in eval mode: per-sample, so the batch split cannot change it (SyncBN is the train-mode case).
        model.eval ()
        use optimizer = Optimizer.sgd (model, settings.Optimizer, 0.1)
        use scope = torch.NewDisposeScope()
        optimizer.zero_grad ()
        let result =
            settings.Method.Step null
                { Model = model; Images = images; Labels = labels; MixedTargets = None; Indices = indices; Epoch = 0; Epochs = 1; Global = ``global`` }
        result.Loss.Total.backward ()
        DataParallel.averageGradients (on, model, weight)
        optimizer.step () |> ignore
    use reference = tinyModel ()
    let all = Array.init (2 * anchors) id
    train World.Single reference images labels all None 1.0
    use model = tinyModel ()
    DataParallel.broadcastModel (world, model)
    let shard = (DataParallel.shardBatch (all, 1, world.Size, world.Rank)).Value
    let offset = int64 (world.Rank * anchors / world.Size * 2)
    use index = torch.tensor (shard |> Array.map int64)
    use localImages = images.index_select (0L, index)
    use localLabels = labels.index_select (0L, index)
    train world model localImages localLabels shard (DataParallel.globalBatch (world, true, offset)) (float shard.Length / float all.Length)
    let diff = Seq.zip (reference.parameters ()) (model.parameters ()) |> Seq.map (fun (a, b) -> maxDiff a b) |> Seq.max
    let moved = Seq.zip (reference.parameters ()) ((tinyModel ()).parameters ()) |> Seq.map (fun (a, b) -> maxDiff a b) |> Seq.max
    say (sprintf "rank %d: %s weights max |Δ| = %.3g (the step moved them by up to %.3g)" world.Rank methodName diff moved)
    require world (moved > 1e-4) "the step changed the weights"
    require world (diff < 1e-5) $"{methodName}: updated weights equal the single-process step's"

/// (b) GLOBAL_KE: every sample's soft target over the sharded global batch equals the single-process batch's.
let private targets (world: World) =
    let n, d, k = 24, 12, 5
    use generator = new torch.Generator(11UL)
    use features = torch.randn ([| int64 n; int64 d |], generator = generator)
    use raw = torch.randn ([| int64 n; int64 k |], generator = generator)
    use logits = raw.mul (Tensors.scalar 3.0)
    let options = BakeOptions.Default
    use expected = Propagation.softTargets (features, logits, options)
    let all = Array.init n id
    // M = 2: 8 anchors, each with 2 positives.
    let shard = (DataParallel.shardBatch (all, 2, world.Size, world.Rank)).Value
    let offset = int64 (world.Rank * (n / 3) / world.Size * 3)
    use index = torch.tensor (shard |> Array.map int64)
    use localFeatures = features.index_select (0L, index)
    use localLogits = logits.index_select (0L, index)
    use actual = BakeMethod.globalSoftTargets (localFeatures, localLogits, options, (DataParallel.globalBatch (world, true, offset)).Value)
    use expectedRows = expected.index_select (0L, index)
    let diff = maxDiff actual expectedRows
    use localOnly = Propagation.softTargets (localFeatures, localLogits, options)
    let localDiff = maxDiff localOnly expectedRows
    say (sprintf "rank %d: GLOBAL_KE soft targets max |Δ| = %.3g (per-rank ensembling differs by %.3g)" world.Rank diff localDiff)
    require world (diff < 1e-6) "global soft targets equal the single-process batch's"
    require world (localDiff > 1e-3) "the check can fail: a per-rank ensemble differs"

/// (c) SyncBN: in training mode, BN's batch statistics on 2 ranks × N/2 are the full batch's: the running statistics,
/// the logits of every sample and the weights after one SGD step of CE equal the single-process step's.
let private syncBn (world: World) =
    let anchors = 8
    let images, labels = batch anchors 4
    use images = images
    use labels = labels
    let stepOn (on: World) (model: Classifier) (images: torch.Tensor) (labels: torch.Tensor) weight =
        model.train ()
        use optimizer = torch.optim.SGD (model.parameters (), 0.1)
        use scope = torch.NewDisposeScope()
        optimizer.zero_grad ()
        let logits = model.forward images
        use loss = torch.nn.functional.cross_entropy (logits, labels)
        loss.backward ()
        DataParallel.averageGradients (on, model, weight)
        optimizer.step () |> ignore
        logits.detach().clone().MoveToOuterDisposeScope ()
    let statistics (model: Classifier) = model.buffers () |> Seq.filter (fun b -> b.dtype = torch.float32) |> Array.ofSeq
    use reference = tinyModel ()
    use expectedLogits = stepOn World.Single reference images labels 1.0
    let all = Array.init (2 * anchors) id
    let shard = (DataParallel.shardBatch (all, 1, world.Size, world.Rank)).Value
    use index = torch.tensor (shard |> Array.map int64)
    use localImages = images.index_select (0L, index)
    use localLabels = labels.index_select (0L, index)
    let run synced =
        let model = tinyModel ()
        DataParallel.broadcastModel (world, model)
        use _hooks = if synced then SyncBatchNorm.attach (world, model) else { new IDisposable with member _.Dispose() = () }
        use logits = stepOn world model localImages localLabels (float shard.Length / float all.Length)
        use expectedRows = expectedLogits.index_select (0L, index)
        let statsDiff = Seq.zip (statistics reference) (statistics model) |> Seq.map (fun (a, b) -> maxDiff a b) |> Seq.max
        let weightDiff = Seq.zip (reference.parameters ()) (model.parameters ()) |> Seq.map (fun (a, b) -> maxDiff a b) |> Seq.max
        let logitDiff = maxDiff logits expectedRows
        model.Dispose()
        statsDiff, logitDiff, weightDiff
    let stats, logits, weights = run true
    let plainStats, plainLogits, _ = run false
    say (sprintf "rank %d: SyncBN max |Δ| running statistics = %.3g, logits = %.3g, weights after the step = %.3g (per-rank BN: %.3g, %.3g)" world.Rank stats logits weights plainStats plainLogits)
    require world (stats < 1e-5 && logits < 1e-4 && weights < 1e-5) "SyncBN equals the full batch's BN"
    require world (plainStats > 1e-4 && plainLogits > 1e-3) "the check can fail: per-rank BN differs"

/// Not a check, a measurement (docs/distributed.md): the time of one gradient all-reduce (in DataParallel's 16 MiB
/// buckets) for resnet18 and resnet50 at 1000 classes, and of BAKE's GLOBAL_KE all-gather (features and logits of
/// 64 images per rank), median of 10 after 2 warm-ups.
let private costs (world: World) =
    let median (action: unit -> unit) =
        for _ in 1 .. 2 do action ()
        let times = Array.init 10 (fun _ -> let c = Diagnostics.Stopwatch.StartNew() in action (); c.Elapsed.TotalMilliseconds)
        Array.sortInPlace times
        times[5]
    for name, featureWidth in [ "resnet18", 512L; "resnet50", 2048L ] do
        use model = Models.create (name, 1000, 3, 224)
        for p in model.parameters () do p.grad <- torch.ones_like p
        let count = model.parameters () |> Seq.sumBy (fun p -> p.numel ())
        let reduce = median (fun () -> DataParallel.averageGradients (world, model, 1.0 / float world.Size))
        use features = torch.randn (64L, featureWidth)
        use logits = torch.randn (64L, 1000L)
        let gather = median (fun () -> (world.AllGather features).Dispose(); (world.AllGather logits).Dispose())
        if world.IsRoot then
            say (sprintf "%s: %d gradients (%.1f MB float32): all-reduce %.1f ms; GLOBAL_KE all-gather of 64×%d features + 64×1000 logits per rank: %.2f ms"
                     name count (float count * 4.0 / 1e6) reduce featureWidth gather)

/// Runs one case on this rank.
let run (case: string) : int =
    let world = World.Current
    let code =
        try
            match case with
            | "collectives" -> collectives world
            | "step" -> step world "vanilla"; step world "bake"
            | "targets" -> targets world
            | "syncbn" -> syncBn world
            | "costs" -> costs world
            | other -> raise (CheckFailed $"unknown case {other}")
            say (sprintf "rank %d: ok" world.Rank)
            0
        with
        | CheckFailed what -> say (sprintf "rank %d: FAILED %s" world.Rank what); 1
        | e -> say (sprintf "rank %d: FAILED %O" world.Rank e); 1
    Console.Out.Flush()
    world.Exit code
