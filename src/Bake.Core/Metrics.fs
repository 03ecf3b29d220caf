namespace Bake.Core

open System
open TorchSharp

/// <summary>Evaluation totals accumulated over batches; combine with <see cref="M:Bake.Core.Metrics.Add"/>.</summary>
/// <remarks>Plain .NET numbers, so nothing tensor-valued outlives an iteration.</remarks>
[<NoComparison>]
type EvalTotals =
    {
        /// <summary>Images seen.</summary>
        Count: int64
        /// <summary>Images whose top-1 prediction is right.</summary>
        Top1: int64
        /// <summary>Images whose label is among the top-5 predictions (top-K when K &lt; 5).</summary>
        Top5: int64
        /// <summary>Σ −log p(y).</summary>
        NllSum: float
        /// <summary>Per confidence bin (15 equal-width bins over [0, 1]): image count.</summary>
        BinCounts: int64[]
        /// <summary>Per bin: Σ confidence.</summary>
        BinConfidence: float[]
        /// <summary>Per bin: number correct.</summary>
        BinCorrect: int64[]
        /// <summary>Per class: images.</summary>
        ClassCounts: int64[]
        /// <summary>Per class: correct top-1.</summary>
        ClassCorrect: int64[]
    }

/// <summary>Final evaluation metrics. Accuracies in percent.</summary>
[<NoComparison>]
type EvalMetrics =
    {
        /// <summary>Images evaluated.</summary>
        Count: int64
        /// <summary>Top-1 accuracy, %.</summary>
        Top1: float
        /// <summary>Top-5 accuracy, % (top-K when K &lt; 5).</summary>
        Top5: float
        /// <summary>Mean negative log-likelihood of the true class (nats).</summary>
        Nll: float
        /// <summary>Expected calibration error with 15 equal-width bins, %.</summary>
        Ece: float
        /// <summary>Per-class top-1 accuracy, % (NaN for a class with no image).</summary>
        PerClassTop1: float[]
    }

/// <summary>Top-k accuracy, NLL and expected calibration error (Guo et al. 2017, 15 bins).</summary>
[<RequireQualifiedAccess>]
module Metrics =

    /// <summary>The number of calibration bins.</summary>
    [<Literal>]
    let EceBins = 15

    /// <summary>Empty totals for <paramref name="classes"/> classes.</summary>
    [<CompiledName("Empty")>]
    let empty (classes: int) : EvalTotals =
        { Count = 0L; Top1 = 0L; Top5 = 0L; NllSum = 0.0
          BinCounts = Array.zeroCreate EceBins; BinConfidence = Array.zeroCreate EceBins; BinCorrect = Array.zeroCreate EceBins
          ClassCounts = Array.zeroCreate classes; ClassCorrect = Array.zeroCreate classes }

    /// <summary>The totals of one batch.</summary>
    /// <param name="logits">N×K logits (any float dtype); not modified.</param>
    /// <param name="labels">int64 vector of N labels.</param>
    [<CompiledName("OfBatch")>]
    let ofBatch (logits: torch.Tensor, labels: torch.Tensor) : EvalTotals =
        Tensors.requireMatrix "logits" logits
        Tensors.requireLabels labels logits
        use _ = torch.no_grad ()
        use _scope = torch.NewDisposeScope()
        let classes = int logits.shape[1]
        let logProbs = torch.nn.functional.log_softmax (logits.to_type torch.float64, dim = 1L)
        let k = min 5L logits.shape[1]
        let struct (_, top) = logProbs.topk (int k, dim = 1)
        let hits = top.eq (labels.unsqueeze 1L)
        let correct1 = hits.select(1L, 0L).cpu().data<bool>().ToArray()
        let correct5 = hits.any(1L).cpu().data<bool>().ToArray()
        let nll = logProbs.gather(1L, labels.unsqueeze 1L).neg().sum().item<float> ()
        let maxProbs = logProbs.amax([| 1L |]).exp().cpu().data<float>().ToArray()
        let labelsArray = labels.cpu().data<int64>().ToArray()
        let totals = empty classes
        let totals =
            { totals with
                Count = int64 labelsArray.Length
                Top1 = correct1 |> Array.sumBy (fun c -> if c then 1L else 0L)
                Top5 = correct5 |> Array.sumBy (fun c -> if c then 1L else 0L)
                NllSum = nll }
        for i in 0 .. labelsArray.Length - 1 do
            let bin = min (EceBins - 1) (int (maxProbs[i] * float EceBins))
            totals.BinCounts[bin] <- totals.BinCounts[bin] + 1L
            totals.BinConfidence[bin] <- totals.BinConfidence[bin] + maxProbs[i]
            let label = int labelsArray[i]
            totals.ClassCounts[label] <- totals.ClassCounts[label] + 1L
            if correct1[i] then
                totals.BinCorrect[bin] <- totals.BinCorrect[bin] + 1L
                totals.ClassCorrect[label] <- totals.ClassCorrect[label] + 1L
        totals

    /// <summary>The totals of two disjoint sets of images.</summary>
    [<CompiledName("Add")>]
    let add (a: EvalTotals) (b: EvalTotals) : EvalTotals =
        { Count = a.Count + b.Count; Top1 = a.Top1 + b.Top1; Top5 = a.Top5 + b.Top5; NllSum = a.NllSum + b.NllSum
          BinCounts = Array.map2 (+) a.BinCounts b.BinCounts
          BinConfidence = Array.map2 (+) a.BinConfidence b.BinConfidence
          BinCorrect = Array.map2 (+) a.BinCorrect b.BinCorrect
          ClassCounts = Array.map2 (+) a.ClassCounts b.ClassCounts
          ClassCorrect = Array.map2 (+) a.ClassCorrect b.ClassCorrect }

    /// <summary>Accuracies, NLL and ECE = Σ_b (n_b / n) |acc_b − conf_b| from the totals.</summary>
    [<CompiledName("Summarize")>]
    let summarize (totals: EvalTotals) : EvalMetrics =
        let n = float (max 1L totals.Count)
        let ece =
            Array.init EceBins (fun b ->
                if totals.BinCounts[b] = 0L then 0.0
                else
                    let count = float totals.BinCounts[b]
                    count / n * abs (float totals.BinCorrect[b] / count - totals.BinConfidence[b] / count))
            |> Array.sum
        { Count = totals.Count
          Top1 = 100.0 * float totals.Top1 / n
          Top5 = 100.0 * float totals.Top5 / n
          Nll = totals.NllSum / n
          Ece = 100.0 * ece
          PerClassTop1 =
            Array.map2 (fun correct count -> if count = 0L then nan else 100.0 * float correct / float count)
                totals.ClassCorrect totals.ClassCounts }
